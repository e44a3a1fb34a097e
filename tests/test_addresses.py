"""One definition of "my address" and one of "this machine", used everywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mailbridge_providers import ics, imap, outlook
from mailbridge_providers.imap import ImapSettings

from mailbridge import classify, detect, domains
from mailbridge.adapters import ProviderError
from mailbridge.config import ConfigError, loads
from mailbridge.mailparse import headers_from_fields
from mailbridge.model import Attendee, Event, EventKey, Folder, MessageKind, Person
from mailbridge.settings import AccountSettings

OWN = ("Jordan.Lee@Example.com", "jordan@fastmail.com")  # the address and an alias


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("jordan.lee@example.com", "jordan.lee@example.com"),
        ("Jordan.Lee@EXAMPLE.com", "jordan.lee@example.com"),
        ("jordan.lee+jobs@example.com", "jordan.lee@example.com"),
        ("jordan.lee+jobs+2026@example.com", "jordan.lee@example.com"),
        ("  <Jordan.Lee+Jobs@Example.com>  ", "jordan.lee@example.com"),
        ("jordan.lee@example.com.", "jordan.lee@example.com"),
        ("+only@example.com", "+only@example.com"),  # a tag with nothing before it is the name
        ("not an address", "not an address"),
        ("", ""),
    ],
)
def test_address_key(address: str, key: str) -> None:
    assert domains.address_key(address) == key


@pytest.mark.parametrize(
    ("address", "own"),
    [
        ("jordan.lee@example.com", True),
        ("JORDAN.LEE@example.com", True),
        ("jordan.lee+jobs@example.com", True),  # a +tag is still the user
        ("jordan+interviews@fastmail.com", True),  # an alias, tagged
        ("jordan.lee@example.org", False),  # another domain
        ("jordan.leee@example.com", False),
        ("dana@example.com", False),  # a colleague at the same domain
        ("", False),
    ],
)
def test_is_own_address(address: str, own: bool) -> None:
    assert domains.is_own_address(address, OWN) is own


def test_a_tagged_alias_configured_as_the_address_matches_the_plain_one() -> None:
    assert domains.is_own_address("me@example.com", ["me+jobs@example.com"])


# --- every caller agrees ------------------------------------------------------------------------

TAGGED = "jordan.lee+jobs@example.com"
START = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)


def test_classify_and_match_take_a_tagged_address_for_the_user() -> None:
    message = headers_from_fields(
        [("From", f"Jordan <{TAGGED}>"), ("To", "dana@acme.example"), ("Subject", "Hello")],
        folder=Folder.INBOX,
        provider_id="m1",
    )
    assert classify.classify(message, OWN).kind is MessageKind.OWN
    candidate = classify.Candidate(1, ("dana@acme.example",), ("acme.example",), "Acme",
                                   START, START + timedelta(hours=1))  # fmt: skip
    found, how = classify.match(message, [candidate], {}, OWN)
    assert found == 1 and "recipients dana@acme.example" in how


def test_detection_never_takes_a_tagged_address_for_an_interviewer() -> None:
    event = Event(
        key=EventKey("cal", "uid-1"),
        title="Interview with Acme",
        start=START,
        end=START + timedelta(hours=1),
        organizer=Person("dana@acme.example", "Dana"),
        attendees=(
            Attendee("dana@acme.example", "Dana", is_organizer=True),
            Attendee(TAGGED, "Jordan Lee"),
        ),
    )
    found = detect.detect(event, OWN, (), detect.DetectionRules())
    assert found.is_interview, found.reason
    assert [p.email for p in found.attendees] == ["dana@acme.example"]
    assert any(s.email == TAGGED and s.reason == detect.SKIP_YOU for s in found.skipped)


def test_ics_and_graph_mark_a_tagged_address_as_the_user() -> None:
    text = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:u1\r\n"
        "DTSTART:20260504T150000Z\r\nDTEND:20260504T160000Z\r\nSUMMARY:Interview\r\n"
        f"ATTENDEE;CN=Jordan:mailto:{TAGGED}\r\nATTENDEE;CN=Dana:mailto:dana@acme.example\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    window = ics.Window(START - timedelta(days=1), START + timedelta(days=1))
    (event,) = ics.events_from_ics(text.encode(), "cal", window, OWN)
    assert {a.email: a.is_self for a in event.attendees} == {
        TAGGED: True,
        "dana@acme.example": False,
    }
    graph_item = {
        "id": "e1",
        "iCalUId": "u1",
        "subject": "Interview",
        "start": {"dateTime": "2026-05-04T15:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2026-05-04T16:00:00.0000000", "timeZone": "UTC"},
        "attendees": [
            {"emailAddress": {"address": TAGGED, "name": "Jordan"}, "type": "required"},
            {"emailAddress": {"address": "dana@acme.example", "name": "Dana"}, "type": "required"},
        ],
    }
    event, _ = outlook.event_from_graph(graph_item, tuple(a.lower() for a in OWN))
    assert {a.email: a.is_self for a in event.attendees} == {
        TAGGED: True,
        "dana@acme.example": False,
    }


# --- loopback -----------------------------------------------------------------------------------

LOOPBACK = [
    ("127.0.0.1", True),
    ("127.0.0.2", True),
    ("127.255.255.254", True),
    ("::1", True),
    ("[::1]", True),
    ("::ffff:127.0.0.1", True),
    ("localhost", True),
    ("LOCALHOST", True),
    ("localhost.", True),
    ("calendar.localhost", True),
    ("localhost.localdomain", True),
    ("10.0.0.1", False),
    ("192.168.1.10", False),
    ("0.0.0.0", False),
    ("::", False),
    ("localhost.example.com", False),
    ("mylocalhost", False),
    ("calendar.example.com", False),
    ("", False),
]


@pytest.mark.parametrize(("host", "loopback"), LOOPBACK)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert domains.is_loopback_host(host) is loopback


def _url_host(host: str) -> str:
    return f"[{host.strip('[]')}]" if ":" in host else host


@pytest.mark.parametrize(("host", "loopback"), [h for h in LOOPBACK if h[0]])
def test_config_and_the_ics_reader_agree_on_plain_http(
    host: str, loopback: bool, tmp_path: Path
) -> None:
    url = f"http://{_url_host(host)}:8080/cal.ics"
    text = (
        '[accounts.main]\nprovider = "local"\naddress = "me@example.com"\n'
        'maildir = { path = "Maildir" }\n'
        f'calendar = {{ kind = "ics", url = "{url}" }}\n'
    )
    try:
        loads(text, tmp_path / "config.toml")
        config_accepts = True
    except ConfigError:
        config_accepts = False
    try:
        ics.feed_url(url, account="main")
        reader_accepts = True
    except ProviderError:
        reader_accepts = False
    assert config_accepts is reader_accepts is loopback


@pytest.mark.parametrize(("host", "loopback"), [h for h in LOOPBACK if h[0]])
def test_imap_allows_plain_text_to_loopback_only(host: str, loopback: bool) -> None:
    account = AccountSettings(
        name="work",
        provider="imap",
        address="a@example.org",
        tables={"imap": ImapSettings(host=host, port=9, security="plain", password_command="echo x",
                          timeout=1)},
    )  # fmt: skip
    with pytest.raises(ProviderError) as refused:
        imap.connect(account)  # port 9 (discard) is closed here: refused either way
    assert ("only allowed" in str(refused.value)) is not loopback
