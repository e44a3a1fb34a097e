"""providers.gmail through the real google-api-python-client against tests/emulators/google.py.

Every request the client makes is checked by the emulator against Google's discovery
documents; the `emu` fixture fails a test that made a request the published API would refuse.
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from mailbridge_providers import gmail
from mailbridge_providers.gmail import GoogleSettings

from mailbridge import drafts, secrets
from mailbridge.adapters import AuthError, ProviderError
from mailbridge.compose import fingerprint
from mailbridge.model import (
    AttendeeKind,
    DraftKind,
    DraftMessage,
    EventKey,
    EventStatus,
    Folder,
    Person,
    Presence,
    Response,
    SentHint,
    Window,
)
from mailbridge.settings import AccountSettings, CalendarSettings
from tests.emulators import half_request
from tests.emulators.google import ROUTES, GoogleEmulator, interview_event, make_raw, running

ME = "jordan.lee@gmail.com"
SEND_METHODS = {
    "gmail.users.drafts.send",
    "gmail.users.messages.send",
    "gmail.users.messages.insert",
    "gmail.users.messages.import",
}
NOW = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
WINDOW = Window(NOW - timedelta(days=3), NOW + timedelta(days=60))


@pytest.fixture
def emu() -> Iterator[GoogleEmulator]:
    with running(ME) as emulator:
        yield emulator
        assert emulator.violations == [], "requests the real API would refuse"
        assert not SEND_METHODS & set(emulator.counts), "a send method was called"


@pytest.fixture
def keyring_dir(tmp_path: Path) -> Path:
    """Where the client file goes; tests/conftest.py already isolates the keyring per test."""
    return tmp_path


def make_account(
    emu: GoogleEmulator, tmp: Path, calendars: tuple[str, ...] = ()
) -> AccountSettings:
    return AccountSettings(
        name="personal",
        provider="gmail",
        address=ME,
        display_name="Jordan Lee",
        calendar=CalendarSettings(kind="google",
                                  options=gmail.GoogleCalendarSettings(calendars=calendars)),
        tables={"google": GoogleSettings(
            client_secrets=str(emu.client_secrets(tmp / "client_secret.json")),
            api_endpoint=emu.url,
            calendar_endpoint=emu.calendar_endpoint,
            token_uri=emu.url + "/token",
            auth_uri=emu.url + "/auth",
        )},
    )


@pytest.fixture
def account(emu: GoogleEmulator, keyring_dir: Path) -> AccountSettings:
    secrets.store("personal", gmail.KEYRING_PURPOSE, "refresh-1")
    return make_account(emu, keyring_dir)


def fast_api(account: AccountSettings, kind: str) -> gmail.Api:
    """The real service, with a short backoff so storms finish in well under a second."""
    if kind == "gmail":
        google = account.tables["google"]
        service = gmail._service(account, "gmail", "v1", google.api_endpoint)
        return gmail.Api(account, service, gmail.GMAIL_METHODS, backoff=0.01)
    google = account.tables["google"]
    service = gmail._service(account, "calendar", "v3", google.calendar_endpoint)
    return gmail.Api(account, service, gmail.CALENDAR_METHODS, backoff=0.01)


@pytest.fixture
def mailbox(account: AccountSettings) -> gmail.GmailMailbox:
    return gmail.GmailMailbox(account, fast_api(account, "gmail"))


@pytest.fixture
def calendar(account: AccountSettings) -> gmail.GoogleCalendar:
    return gmail.GoogleCalendar(account, fast_api(account, "calendar"))


def draft(to: str, subject: str, body: str, message_id: str, in_reply_to: str = "") -> DraftMessage:
    msg = EmailMessage()
    msg["From"] = f"Jordan Lee <{ME}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(body)
    return DraftMessage(
        kind=DraftKind.FOLLOW_UP if in_reply_to else DraftKind.THANK_YOU,
        message_id=message_id,
        sender=Person(ME, "Jordan Lee"),
        to=Person(to),
        subject=subject,
        body=body,
        raw=msg.as_bytes(),
        in_reply_to=in_reply_to,
        references=(in_reply_to,) if in_reply_to else (),
    )


# --- calendar -----------------------------------------------------------------------------


def test_calendar_full_pass_maps_events_and_pages(
    emu: GoogleEmulator, calendar: gmail.GoogleCalendar
) -> None:
    emu.page_size = 1  # force paging
    emu.add_event(interview_event("ev1", NOW + timedelta(days=1)))
    emu.add_event(
        {
            "id": "allday",
            "summary": "Offsite",
            "start": {"date": "2024-05-08"},
            "end": {"date": "2024-05-09"},
        }
    )
    emu.add_event(
        {
            "id": "old",
            "summary": "Long ago",
            "start": {"dateTime": "2023-01-01T10:00:00Z"},
            "end": {"dateTime": "2023-01-01T11:00:00Z"},
        }
    )

    batch = calendar.changes(None, WINDOW)

    assert batch.complete
    by_id = {e.key.uid: e for e in batch.events}
    assert set(by_id) == {"ev1", "allday"}  # "old" is outside the window
    ev = by_id["ev1"]
    assert ev.key == EventKey("primary", "ev1", "")
    assert ev.start == NOW + timedelta(days=1) and not ev.all_day and not ev.recurring
    assert ev.organizer == Person("maria@acme.example", "Maria Chen")
    people = {a.email: a for a in ev.attendees}
    assert people[ME].is_self and people[ME].response is Response.ACCEPTED
    assert people["maria@acme.example"].is_organizer
    assert people["raj@acme.example"].response is Response.NEEDS_ACTION
    assert people["room-4@resource.calendar.google.com"].kind is AttendeeKind.RESOURCE
    assert people["sam@acme.example"].response is Response.DECLINED
    assert by_id["allday"].all_day and by_id["allday"].start == datetime(2024, 5, 8, tzinfo=UTC)
    lists = [c for c in emu.api_calls() if c.method_id == "calendar.events.list"]
    assert len(lists) == 2  # two pages
    assert lists[0].query["timeMin"] == [WINDOW.start.isoformat()]
    assert lists[0].query["singleEvents"] == ["true"]


def test_calendar_incremental_uses_sync_token_and_reports_cancellations(
    emu: GoogleEmulator, calendar: gmail.GoogleCalendar
) -> None:
    emu.add_event(interview_event("ev1", NOW + timedelta(days=1)))
    emu.add_event(interview_event("ev2", NOW + timedelta(days=2)))
    first = calendar.changes(None, WINDOW)
    assert len(first.events) == 2

    idle = calendar.changes(first.cursor, WINDOW)
    assert idle.events == () and idle.removed == () and not idle.complete

    emu.add_event(interview_event("ev3", NOW + timedelta(days=3)))
    emu.cancel_event("ev1")  # a stub: id and status only
    emu.add_event(interview_event("ev2", NOW + timedelta(days=2), status="cancelled"))
    later = calendar.changes(idle.cursor, WINDOW)

    assert not later.complete
    assert {e.key.uid: e.status for e in later.events} == {
        "ev3": EventStatus.CONFIRMED,
        "ev2": EventStatus.CANCELLED,
    }
    assert later.removed == (EventKey("primary", "ev1"),)
    incremental = [c for c in emu.api_calls() if "syncToken" in c.query]
    assert len(incremental) == 2
    assert all("timeMin" not in c.query and "timeMax" not in c.query for c in incremental)


def test_calendar_410_restarts_with_a_full_pass(
    emu: GoogleEmulator, calendar: gmail.GoogleCalendar
) -> None:
    emu.add_event(interview_event("ev1", NOW + timedelta(days=1)))
    first = calendar.changes(None, WINDOW)
    emu.expire_sync_tokens()

    again = calendar.changes(first.cursor, WINDOW)

    assert again.complete and [e.key.uid for e in again.events] == ["ev1"]
    statuses = [c.status for c in emu.api_calls()]
    assert statuses == [200, 410, 200]


def test_calendar_each_configured_calendar_has_its_own_token(
    emu: GoogleEmulator, keyring_dir: Path
) -> None:
    secrets.store("personal", gmail.KEYRING_PURPOSE, "refresh-1")
    account = make_account(
        emu, keyring_dir, calendars=("primary", "work@group.calendar.google.com")
    )
    emu.add_event(interview_event("a", NOW + timedelta(days=1)))
    emu.add_event(
        interview_event("b", NOW + timedelta(days=1)), calendar="work@group.calendar.google.com"
    )
    cal = gmail.GoogleCalendar(account, fast_api(account, "calendar"))

    batch = cal.changes(None, WINDOW)

    assert {(e.key.calendar, e.key.uid) for e in batch.events} == {
        ("primary", "a"),
        ("work@group.calendar.google.com", "b"),
    }
    tokens = gmail.json.loads(gmail.json.loads(batch.cursor or "{}")["cursor"])  # inside its span
    assert set(tokens) == {
        "primary",
        "work@group.calendar.google.com",
    }


def test_recurring_instances_are_keyed_by_original_start(
    emu: GoogleEmulator, calendar: gmail.GoogleCalendar
) -> None:
    starts = [NOW + timedelta(days=d) for d in (1, 8)]
    emu.add_recurring("series9", starts, 30, summary="Weekly interview loop sync")
    first = calendar.changes(None, WINDOW)
    emu.cancel_event(f"series9_{starts[1]:%Y%m%dT%H%M%SZ}")

    later = calendar.changes(first.cursor, WINDOW)

    assert [e.key for e in first.events] == [
        EventKey("primary", "series9", s.isoformat()) for s in starts
    ]
    assert all(e.recurring for e in first.events)
    (cancelled,) = later.events  # the stub keeps originalStartTime, so it is still an event
    assert cancelled.key == EventKey("primary", "series9", starts[1].isoformat())
    assert cancelled.status is EventStatus.CANCELLED


# --- drafts -------------------------------------------------------------------------------


def test_draft_create_find_observe_update_retract(
    emu: GoogleEmulator, mailbox: gmail.GmailMailbox
) -> None:
    mid = "<ty-1@mailbridge.test>"
    first = draft("maria@acme.example", "Thank you, Maria", "Dear Maria,\nthank you.\n", mid)

    pid = mailbox.create_draft(first)

    assert mailbox.find_draft(mid) == pid
    seen = mailbox.observe(pid, mid)
    assert seen.presence is Presence.PRESENT
    assert seen.content_hash == fingerprint(
        "Thank you, Maria", ["maria@acme.example"], "Dear Maria,\nthank you.\n"
    )
    create = next(c for c in emu.api_calls() if c.method_id == "gmail.users.drafts.create")
    assert "threadId" not in create.body["message"]  # a thank-you starts its own thread

    noted = draft("maria@acme.example", "Thank you, Maria", "Dear Maria,\nthank you. Notes.\n", mid)
    new_pid = mailbox.update_draft(pid, noted)
    assert new_pid.split(":")[0] == pid.split(":")[0] and new_pid != pid
    assert mailbox.observe(new_pid, mid).content_hash == fingerprint(
        "Thank you, Maria", ["maria@acme.example"], "Dear Maria,\nthank you. Notes.\n"
    )
    assert len(emu.drafts) == 1

    mailbox.retract(new_pid)
    assert emu.drafts == {}
    assert mailbox.observe(new_pid, mid).presence is Presence.GONE
    assert mailbox.find_draft(mid) is None
    mailbox.retract(new_pid)  # twice is harmless


def test_observe_tells_user_edit_send_and_delete_apart(
    emu: GoogleEmulator, mailbox: gmail.GmailMailbox
) -> None:
    edited = mailbox.create_draft(draft("raj@acme.example", "Thanks", "Hi Raj\n", "<a@x.test>"))
    sent = mailbox.create_draft(draft("maria@acme.example", "Thanks", "Hi Maria\n", "<b@x.test>"))
    deleted = mailbox.create_draft(draft("sam@acme.example", "Thanks", "Hi Sam\n", "<c@x.test>"))
    before = mailbox.observe(edited, "<a@x.test>").content_hash

    emu.user_edits_draft(
        edited.split(":")[0],
        make_raw(ME, "raj@acme.example", "Thanks", "Hi Raj, more\n", message_id="<a@x.test>"),
    )
    emu.user_sends_draft(sent.split(":")[0])
    emu.user_deletes_draft(deleted.split(":")[0])

    now_edited = mailbox.observe(edited, "<a@x.test>")
    assert now_edited.presence is Presence.PRESENT and now_edited.content_hash != before
    assert now_edited.provider_id != edited  # the message id inside the draft changed
    assert mailbox.observe(sent, "<b@x.test>").presence is Presence.SENT
    assert mailbox.observe(deleted, "<c@x.test>").presence is Presence.GONE


def test_follow_up_joins_the_thread_of_the_sent_thank_you(
    emu: GoogleEmulator, mailbox: gmail.GmailMailbox
) -> None:
    thank_you = mailbox.create_draft(
        draft("maria@acme.example", "Thank you, Maria", "Thanks\n", "<ty@x.test>")
    )
    emu.user_sends_draft(thank_you.split(":")[0])
    follow = draft(
        "maria@acme.example",
        "Re: Thank you, Maria",
        "Following up\n",
        "<fu@x.test>",
        in_reply_to="<ty@x.test>",
    )

    pid = mailbox.create_draft(follow)

    thread = thank_you.split(":")[2]
    assert pid.split(":")[2] == thread
    msg = emu.draft_messages()[pid.split(":")[0]]
    assert msg["In-Reply-To"] == "<ty@x.test>"


def test_find_draft_falls_back_to_scanning_when_search_misses(
    emu: GoogleEmulator, mailbox: gmail.GmailMailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = mailbox.create_draft(draft("maria@acme.example", "Thanks", "Hi\n", "<fresh@x.test>"))
    real_search = emu._search
    # Search lags for the drafts list; a scan still finds the fresh draft.
    monkeypatch.setattr(emu, "_search", lambda q, pool: [] if q else real_search(q, pool))

    assert mailbox.find_draft("<fresh@x.test>") == pid


# --- drafts carry only DRAFT --------------------------------------------------------------


def labels_of(emu: GoogleEmulator, provider_id: str) -> set[str]:
    return set(emu.messages[emu.drafts[provider_id.split(":")[0]]].labels)


def test_drafts_carry_only_the_draft_label_and_no_label_scope_is_asked(
    emu: GoogleEmulator, mailbox: gmail.GmailMailbox
) -> None:
    """Google's drafts guide: a draft message cannot have any label other than DRAFT."""
    one = mailbox.create_draft(draft("maria@acme.example", "Thanks", "Hi Maria\n", "<l1@x.test>"))
    updated = mailbox.update_draft(
        one, draft("maria@acme.example", "Thanks", "Hi!\n", "<l1@x.test>")
    )
    assert labels_of(emu, updated) == {"DRAFT"}
    assert not [c for c in emu.api_calls() if ".labels." in c.method_id]
    assert not [m for m in gmail.GMAIL_METHODS if m.startswith("users.labels.")]
    assert not [s for s in gmail.SCOPES if "labels" in s]
    assert emu.violations == []


def test_the_requested_scopes_cover_every_method_the_adapter_calls(
    emu: GoogleEmulator, mailbox: gmail.GmailMailbox
) -> None:
    emu.granted = set(gmail.SCOPES)
    for method in sorted(gmail.GMAIL_METHODS):
        route = next(r for r in ROUTES if r.method_id == "gmail." + method)
        assert set(route.spec["scopes"]) & emu.granted, method
    pid = mailbox.create_draft(draft("maria@acme.example", "Thanks", "Hi\n", "<g@x.test>"))
    assert labels_of(emu, pid) == {"DRAFT"}


# --- a draft sent under a new Message-ID --------------------------------------------------


def fresh_mailbox(account: AccountSettings) -> gmail.GmailMailbox:
    """A new adapter instance, as after a restart: nothing remembered in memory."""
    return gmail.GmailMailbox(account, fast_api(account, "gmail"))


def test_a_thank_you_sent_under_a_new_message_id_is_sent(
    emu: GoogleEmulator, account: AccountSettings, mailbox: gmail.GmailMailbox
) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    pid = mailbox.create_draft(
        draft("Maria Chen <maria@acme.example>", "Thank you, Maria", "Hi\n", "<n1@x.test>")
    )
    emu.user_sends_as_new(pid.split(":")[0])
    hint = SentHint("maria@acme.example", "Thank you, Maria", since)

    seen = fresh_mailbox(account).observe(pid, "<n1@x.test>", hint)

    assert drafts.presence(seen, hint) is Presence.SENT
    assert fresh_mailbox(account).observe(pid, "<n1@x.test>").presence is Presence.GONE  # no hint


def test_a_follow_up_sent_under_a_new_message_id_is_found_in_its_thread(
    emu: GoogleEmulator, account: AccountSettings, mailbox: gmail.GmailMailbox
) -> None:
    thank_you = mailbox.create_draft(
        draft("maria@acme.example", "Thank you, Maria", "Thanks\n", "<t1@x.test>")
    )
    emu.user_sends_draft(thank_you.split(":")[0])
    since = datetime.now(UTC) - timedelta(seconds=1)
    follow = draft(
        "maria@acme.example", "Re: Thank you, Maria", "Following up\n", "<f1@x.test>",
        in_reply_to="<t1@x.test>",
    )  # fmt: skip
    pid = mailbox.create_draft(follow)
    emu.user_sends_as_new(pid.split(":")[0])
    # The subject was edited before sending: the thread still tells.
    sent = next(
        m for m in emu.messages.values() if "SENT" in m.labels and m.id != thank_you.split(":")[1]
    )
    assert sent.thread_id == pid.split(":")[2]
    emu.calls.clear()

    hint = SentHint("maria@acme.example", "Checking in", since, ("<t1@x.test>",))
    seen = fresh_mailbox(account).observe(pid, "<f1@x.test>", hint)
    # Both in the thread: the thank-you it replies to (never taken for it) and the new copy.
    assert [c.in_draft_thread for c in seen.sent_candidates] == [True, True]
    copies = [c for c in seen.sent_candidates if drafts.is_sent_copy(c, hint)]
    assert len(copies) == 1 and copies[0].message_id != "<t1@x.test>"
    assert drafts.presence(seen, hint) is Presence.SENT
    assert "gmail.users.threads.get" in [c.method_id for c in emu.api_calls()]


def test_a_deleted_draft_with_a_hint_is_still_gone(
    emu: GoogleEmulator, account: AccountSettings, mailbox: gmail.GmailMailbox
) -> None:
    earlier = mailbox.create_draft(draft("maria@acme.example", "Thank you", "a\n", "<e@x.test>"))
    emu.user_sends_as_new(earlier.split(":")[0])  # sent before the draft below was made
    since = datetime.now(UTC) + drafts.SENT_SLACK + timedelta(minutes=30)
    pid = mailbox.create_draft(draft("maria@acme.example", "Thank you", "b\n", "<g1@x.test>"))
    other = mailbox.create_draft(draft("raj@acme.example", "Thank you", "c\n", "<g2@x.test>"))
    emu.user_deletes_draft(pid.split(":")[0])
    emu.user_sends_as_new(other.split(":")[0])  # same subject, someone else
    hint = SentHint("maria@acme.example", "Thank you", since)

    seen = fresh_mailbox(account).observe(pid, "<g1@x.test>", hint)
    assert seen.sent_candidates  # the earlier one to Maria: reported, and too old to be it
    assert drafts.presence(seen, hint) is Presence.GONE


# --- inbox --------------------------------------------------------------------------------


def test_history_reports_new_inbox_and_sent_mail_only(
    emu: GoogleEmulator, mailbox: gmail.GmailMailbox
) -> None:
    emu.deliver(make_raw("Maria Chen <maria@acme.example>", ME, "Hello", "Old mail"))
    first = mailbox.messages(None, NOW - timedelta(days=3))
    assert [m.subject for m in first.messages] == ["Hello"]

    idle = mailbox.messages(first.cursor, NOW)
    assert idle.messages == ()
    emu.counts.clear()
    idle = mailbox.messages(idle.cursor, NOW)
    assert dict(emu.counts) == {"gmail.users.history.list": 1}  # one request per idle cycle

    reply_id = emu.deliver(
        make_raw(
            "Maria Chen <maria@acme.example>",
            ME,
            "Re: Thank you",
            "We'd love to move forward",
            in_reply_to="<ty@x.test>",
            extra={"Auto-Submitted": "no"},
        )
    )
    mailbox.create_draft(draft("raj@acme.example", "Thanks", "Hi\n", "<d@x.test>"))
    emu.deliver(make_raw(ME, "raj@acme.example", "Sent by hand", "Hi"), labels=("SENT",))
    emu.deliver(make_raw("news@list.example", ME, "Spam", "x"), labels=("SPAM",))

    batch = mailbox.messages(idle.cursor, NOW)

    assert [(m.folder, m.subject) for m in batch.messages] == [
        (Folder.INBOX, "Re: Thank you"),
        (Folder.SENT, "Sent by hand"),
    ]
    reply = batch.messages[0]
    assert reply.provider_id == reply_id and reply.sender == Person(
        "maria@acme.example", "Maria Chen"
    )
    assert reply.in_reply_to == "<ty@x.test>" and reply.header("auto-submitted") == "no"
    assert "move forward" in reply.excerpt
    get = next(c for c in emu.api_calls() if c.method_id == "gmail.users.messages.get")
    # format=full narrowed to headers and the MIME tree's types: no body is downloaded
    assert get.query["format"] == ["full"] and get.query["fields"] == [gmail.MESSAGE_FIELDS]
    assert reply.part_types == ("text/plain",)
    assert ("gmail.label", "INBOX") in reply.hints
    assert int(batch.cursor or 0) > int(idle.cursor or 0)


def test_expired_history_resyncs_by_date(emu: GoogleEmulator, mailbox: gmail.GmailMailbox) -> None:
    first = mailbox.messages(None, NOW)
    emu.deliver(make_raw("maria@acme.example", ME, "While away", "x"))
    emu.expire_history()

    batch = mailbox.messages(first.cursor, datetime.now(UTC) - timedelta(days=1))

    assert [m.subject for m in batch.messages] == ["While away"]
    methods = [c.method_id for c in emu.api_calls()][2:]
    assert methods[:3] == [
        "gmail.users.history.list",
        "gmail.users.getProfile",
        "gmail.users.messages.list",
    ]
    listing = next(c for c in emu.api_calls()[2:] if c.method_id == "gmail.users.messages.list")
    assert listing.query["q"][0].startswith("after:")
    assert batch.cursor == str(emu.history_id)


# --- faults and credentials ---------------------------------------------------------------


def test_429_storm_waits_as_long_as_retry_after_says(
    emu: GoogleEmulator, mailbox: gmail.GmailMailbox
) -> None:
    mailbox.messages(None, NOW)
    emu.fail_next(429, 1, retry_after=1)

    mailbox.messages(str(emu.history_id), NOW)

    attempts = [c for c in emu.api_calls() if c.method_id == "gmail.users.history.list"]
    assert [c.status for c in attempts] == [429, 200]
    gaps = [b.at - a.at for a, b in zip(attempts, attempts[1:], strict=False)]
    assert all(gap >= 1.0 for gap in gaps), gaps  # the backoff alone would be ~0.01 s


def test_500_storm_recovers_and_a_longer_one_is_a_provider_error(
    emu: GoogleEmulator, calendar: gmail.GoogleCalendar
) -> None:
    emu.fail_next(500, 3)
    assert calendar.changes(None, WINDOW).complete

    emu.fail_next(503, 10)
    with pytest.raises(ProviderError, match="HTTP 503.*5 attempt"):
        calendar.changes(None, WINDOW)
    emu._faults.clear()


def test_access_token_is_refreshed_at_the_configured_token_endpoint(
    emu: GoogleEmulator, mailbox: gmail.GmailMailbox
) -> None:
    mailbox.messages(None, NOW)
    assert emu.token_requests == 1
    emu.expire_access_tokens()

    mailbox.messages(str(emu.history_id), NOW)

    assert emu.token_requests == 2


def test_the_mailbox_and_calendar_of_an_account_share_one_sign_in_and_accounts_a_connection(
    emu: GoogleEmulator, account: AccountSettings, keyring_dir: Path
) -> None:
    mailbox, calendar = gmail.open_mailbox(account), gmail.open_calendar(account)
    mailbox.messages(None, NOW)
    calendar.changes(None, WINDOW)
    assert emu.token_requests == 1

    other = dataclasses.replace(account, name="other")  # another account signs in itself
    secrets.store("other", gmail.KEYRING_PURPOSE, "refresh-1")
    gmail.open_mailbox(other).messages(None, NOW)
    assert emu.token_requests == 2
    assert emu.violations == []
    # ... over the same kept connection: accounts keep none of their own between passes.
    assert emu.server is not None
    port = f":{emu.server.server_address[1]}"
    shared = gmail._shared_http(gmail._google(account).timeout)
    kept = [key for http in shared._idle for key in http.connections if key.endswith(port)]
    assert len(kept) == 1


def test_https_connections_share_one_tls_context_that_checks_the_server() -> None:
    one = gmail._SharedTls("gmail.googleapis.com")
    two = gmail._SharedTls("www.googleapis.com", timeout=5)
    assert one._context is two._context
    assert one._context.verify_mode == ssl.CERT_REQUIRED and one._context.check_hostname


def test_revoked_grant_asks_the_user_to_sign_in_again(
    emu: GoogleEmulator, mailbox: gmail.GmailMailbox
) -> None:
    emu.revoke_grant()
    with pytest.raises(AuthError, match=r"revoked.*run `mailbridge auth personal`"):
        mailbox.messages(None, NOW)


def test_missing_refresh_token_and_client_file_are_clear(
    emu: GoogleEmulator, keyring_dir: Path
) -> None:
    account = make_account(emu, keyring_dir)
    with pytest.raises(AuthError, match="mailbridge auth personal"):
        gmail.open_mailbox(account)
    no_client = AccountSettings(name="personal", provider="gmail", address=ME)
    with pytest.raises(AuthError, match="google.client_secrets is not set"):
        gmail.open_calendar(no_client)


def test_authenticate_runs_the_loopback_flow_and_keeps_only_the_refresh_token(
    emu: GoogleEmulator, keyring_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the emulator's token URL is http
    account = make_account(emu, keyring_dir)
    opened: list[str] = []

    class Browser:  # the user: opens the URL, consents, gets redirected to the loopback port
        def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
            opened.append(url)
            threading.Thread(target=lambda: urllib.request.urlopen(url, timeout=10).read()).start()
            return True

    monkeypatch.setattr("webbrowser.get", lambda using=None: Browser())

    message = gmail.authenticate(account)

    assert "signed in" in message
    assert opened and opened[0].startswith(emu.url + "/auth?")
    requested = urllib.parse.parse_qs(urllib.parse.urlsplit(opened[0]).query)["scope"][0].split()
    assert sorted(requested) == sorted(gmail.SCOPES)
    stored = secrets.lookup("personal", gmail.KEYRING_PURPOSE)
    assert stored in emu.refresh_tokens and stored != "refresh-1"


# --- never sends --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method",
    ["users.drafts.send", "users.messages.send", "users.messages.insert", "users.messages.import"],
)
def test_the_allow_list_refuses_every_send_method(
    emu: GoogleEmulator, account: AccountSettings, method: str
) -> None:
    api = fast_api(account, "gmail")
    with pytest.raises(PermissionError, match="never calls"):
        api.call(method, userId="me", body={"raw": "eA"})
    assert emu.api_calls() == []  # refused before any request was built


def test_allow_list_has_no_method_that_sends() -> None:
    assert not {m for m in gmail.GMAIL_METHODS if "send" in m or "insert" in m or "import" in m}


def test_emulator_rejects_what_the_real_api_would(
    emu: GoogleEmulator, account: AccountSettings
) -> None:
    """The checker can fail: an unknown body field and an unknown parameter are caught."""
    service = gmail._service(account, "gmail", "v1", emu.url)
    request = (
        service.users().drafts().create(userId="me", body={"message": {"raw": "eA", "bogus": 1}})
    )
    request.uri += "&madeUp=1"
    with pytest.raises(gmail.HttpError):
        request.execute()
    assert any("unknown field 'bogus'" in v for v in emu.violations)
    assert any("unknown query parameter madeUp" in v for v in emu.violations)
    emu.violations.clear()


def test_a_request_cut_short_by_a_killed_client_is_not_acted_on(emu: GoogleEmulator) -> None:
    half_request(emu.url, "POST", "/gmail/v1/users/me/drafts")
    assert emu.calls == [] and emu.drafts == {}  # the fixture checks for violations


def test_mail_past_the_inbox_is_read_and_spam_trash_and_drafts_are_not(
    emu: GoogleEmulator, mailbox: gmail.GmailMailbox
) -> None:
    """A reply a filter kept out of the inbox, or that the user archived before the pass, is
    still a reply; so is one the user took back out of Spam. Spam and Trash are not read, by
    a history read as by a first listing."""
    start = mailbox.messages(None, NOW - timedelta(days=3))
    maria = "Maria Chen <maria@acme.example>"
    emu.deliver(make_raw(maria, ME, "Filtered", "x"), labels=("Label_7", "UNREAD"))
    archived = emu.deliver(make_raw(maria, ME, "Archived", "x"))
    emu.user_relabels(archived, remove=["INBOX", "UNREAD"])
    junk = emu.deliver(make_raw(maria, ME, "Junk", "x"), labels=("SPAM",))
    emu.deliver(make_raw(maria, ME, "Thrown away", "x"), labels=("TRASH",))
    emu.deliver(make_raw(ME, "maria@acme.example", "Sent", "x"), labels=("SENT",))
    emu.deliver(make_raw(ME, "maria@acme.example", "Sent, then deleted", "x"),
                labels=("SENT", "TRASH"))
    batch = mailbox.messages(start.cursor, NOW)
    assert sorted((m.folder, m.subject) for m in batch.messages) == [
        (Folder.INBOX, "Archived"), (Folder.INBOX, "Filtered"), (Folder.SENT, "Sent")]
    emu.user_relabels(junk, add=["INBOX"], remove=["SPAM"])  # "Not spam"
    later = mailbox.messages(batch.cursor, NOW)
    assert [m.subject for m in later.messages] == ["Junk"]
    # A lost cursor lists the look-back window again: the same mail, wherever it is filed.
    again = mailbox.messages(None, NOW - timedelta(days=3))
    assert sorted(m.subject for m in again.messages) == ["Archived", "Filtered", "Junk", "Sent"]


# --- the whole loop through the engine ----------------------------------------------------


def test_whole_loop_interview_to_retracted_follow_up(
    emu: GoogleEmulator,
    account: AccountSettings,
    mailbox: gmail.GmailMailbox,
    calendar: gmail.GoogleCalendar,
    tmp_path: Path,
) -> None:
    """Calendar interview -> thank-you drafts -> sent -> silence -> threaded follow-up ->
    employer replies -> follow-up retracted; no request along the way could send mail."""
    from mailbridge.engine import reconcile
    from mailbridge.ledger import Ledger

    start = datetime(2024, 5, 6, 14, 0, tzinfo=UTC)  # a Monday
    emu.add_event(interview_event("iv1", start))
    ledger = Ledger.open(tmp_path / "state")

    def run(now: datetime) -> None:
        for _ in range(2):  # a pass plans what is due, then carries it out; the second settles
            report = reconcile(account, ledger, now=now, mailbox=mailbox, calendar=calendar)
            assert report.error is None, report.error

    def drafts_to() -> dict[str, EmailMessage]:
        return {str(m["To"]): m for m in emu.draft_messages().values()}

    emu.granted = set(gmail.SCOPES)  # every request is one the requested consent allows
    run(start + timedelta(hours=3))
    thank_yous = drafts_to()
    assert set(thank_yous) == {"Maria Chen <maria@acme.example>", "Raj Patel <raj@acme.example>"}
    assert all(emu.messages[m].labels == {"DRAFT"} for m in emu.drafts.values())

    emu.counts.clear()
    run(start + timedelta(hours=4))  # idempotent: nothing new
    assert len(emu.drafts) == 2

    for draft_id in list(emu.drafts):
        emu.user_sends_draft(draft_id)
    run(start + timedelta(days=1))
    assert emu.drafts == {}

    run(start + timedelta(days=3))  # the daily full listing of mailbox and calendar
    emu.counts.clear()
    run(start + timedelta(days=3, hours=1))  # idle, waiting for the employer: as cheap as before
    assert emu.counts == Counter({"gmail.users.history.list": 2, "calendar.events.list": 2})

    run(start + timedelta(days=12))  # seven business days of silence have passed
    (follow_up,) = drafts_to().values()
    to_maria = thank_yous["Maria Chen <maria@acme.example>"]
    assert follow_up["To"] == "Maria Chen <maria@acme.example>"
    assert follow_up["In-Reply-To"] == to_maria["Message-ID"]
    threads = {m.thread_id for m in emu.messages.values() if m.header("To") == follow_up["To"]}
    assert len(threads) == 1  # the sent thank-you and the follow-up share a thread

    emu.deliver(
        make_raw(
            "Maria Chen <maria@acme.example>",
            ME,
            "Re: " + str(to_maria["Subject"]),
            "Thanks, Jordan! We would like to invite you to a final round.",
            in_reply_to=str(to_maria["Message-ID"]),
        )
    )
    run(start + timedelta(days=12, hours=2))

    assert emu.drafts == {}  # the follow-up was taken back
    assert "gmail.users.drafts.delete" in emu.counts
    assert not SEND_METHODS & set(emu.counts)


def test_a_retry_after_beyond_the_limit_gives_up_at_once(
    emu: GoogleEmulator, mailbox: gmail.GmailMailbox
) -> None:
    emu.fail_next(429, 1, retry_after=3600)
    with pytest.raises(ProviderError, match=r"HTTP 429\) after 1 attempt"):
        mailbox.messages(None, NOW)


def test_an_unreachable_server_is_a_provider_error(account: AccountSettings) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    service = gmail._service(account, "gmail", "v1", f"http://127.0.0.1:{port}")
    slept: list[float] = []
    api = gmail.Api(account, service, gmail.GMAIL_METHODS, attempts=3, sleep=slept.append)
    with pytest.raises(ProviderError, match="ConnectionRefusedError.*3 attempt"):
        gmail.GmailMailbox(account, api).messages(None, NOW)
    # the core policy (mailbridge.retry): exponential backoff (up to 1 s, then up to 2 s),
    # full jitter, between the three attempts
    assert len(slept) == 2 and 0.0 <= slept[0] <= 1.0 and 0.0 <= slept[1] <= 2.0


def test_authenticate_without_a_browser_takes_the_pasted_address(
    emu: GoogleEmulator, keyring_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    monkeypatch.setattr("webbrowser.get", lambda using=None: pytest.fail("opened a browser"))
    account = make_account(emu, keyring_dir)
    said: list[str] = []

    def user(prompt: str) -> str:  # opens the printed URL elsewhere; pastes where it ended
        url = next(w for w in said[-1].split() if w.startswith(emu.url + "/auth?"))
        return redirected_to(url)

    assert "signed in" in gmail.authenticate(account, no_browser=True, say=said.append, ask=user)
    assert secrets.lookup("personal", gmail.KEYRING_PURPOSE) in emu.refresh_tokens


def redirected_to(url: str) -> str:
    """Where the consent page sends the browser (a localhost page that does not load)."""

    class Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    try:
        urllib.request.build_opener(Stay).open(url, timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 302
        return str(exc.headers["Location"])
    raise AssertionError("the consent page did not redirect")


def test_the_core_finds_this_provider_by_entry_point(account: AccountSettings) -> None:
    from mailbridge import adapters

    assert isinstance(adapters.open_mailbox(account), gmail.GmailMailbox)
    assert isinstance(adapters.open_calendar(account), gmail.GoogleCalendar)


def test_a_hanging_endpoint_times_out_as_configured(emu: GoogleEmulator, account) -> None:
    """google.timeout bounds every request, so a hanging Google cannot hold a pass."""
    import dataclasses

    quick = dataclasses.replace(
        account, tables={"google": dataclasses.replace(account.tables["google"], timeout=1.0)})
    endpoint = quick.tables["google"].calendar_endpoint
    api = gmail.Api(quick, gmail._service(quick, "calendar", "v3", endpoint),
                    gmail.CALENDAR_METHODS, attempts=1, backoff=0.01)
    emu.latency = 3.0
    started = time.monotonic()
    with pytest.raises(ProviderError):
        gmail.GoogleCalendar(quick, api).changes(None, WINDOW)
    assert time.monotonic() - started < 2.5
