"""providers.caldav against a real Radicale on 127.0.0.1 (tests.servers)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import caldav
import pytest
import requests
from mailbridge_providers.caldav import CalDavCalendar, CalDavSettings, load_cursor, open_calendar

from mailbridge.adapters import ProviderError
from mailbridge.model import EventKey, EventStatus, Window
from mailbridge.settings import AccountSettings, CalendarSettings
from tests.servers import PASSWORD, Radicale

pytestmark = pytest.mark.server

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
WINDOW = Window(NOW - timedelta(days=3), NOW + timedelta(days=60))


def vevent(
    uid: str, start: datetime, *, summary: str = "Interview with Acme", extra: str = ""
) -> str:
    fmt = "%Y%m%dT%H%M%SZ"
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//mailbridge tests//EN\r\n"
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:{NOW.strftime(fmt)}\r\n"
        f"DTSTART:{start.strftime(fmt)}\r\nDTEND:{(start + timedelta(hours=1)).strftime(fmt)}\r\n"
        f"SUMMARY:{summary}\r\n"
        "ORGANIZER;CN=Avery Chen:mailto:avery.chen@acme.example\r\n"
        "ATTENDEE;CN=Avery Chen;PARTSTAT=ACCEPTED:mailto:avery.chen@acme.example\r\n"
        "ATTENDEE;CN=Jordan Lee;PARTSTAT=ACCEPTED:mailto:jordan@example.org\r\n"
        "ATTENDEE;CUTYPE=ROOM;CN=Room 4:mailto:room4@acme.example\r\n"
        f"{extra}END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


@pytest.fixture
def dav(radicale: Radicale) -> Iterator[tuple[caldav.Calendar, AccountSettings]]:
    """A fresh user with one calendar, and the account settings a user would write."""
    user = radicale.new_user()
    client = caldav.DAVClient(url=radicale.url, username=user, password=PASSWORD)
    calendar = client.principal().make_calendar(name="Work")
    account = AccountSettings(
        name="work",
        provider="imap",
        address="jordan@example.org",
        calendar=CalendarSettings(kind="caldav", options=CalDavSettings(
            url=radicale.url, username=user, password_command=f"echo {PASSWORD}")),
    )
    yield calendar, account
    client.close()


def test_created_moved_deleted(dav) -> None:
    calendar, account = dav
    source = open_calendar(account)
    calendar.save_event(vevent("one@acme", NOW + timedelta(days=2)))

    first = source.changes(None, WINDOW)
    assert first.complete
    (event,) = first.events
    assert event.key == EventKey(str(calendar.url), "one@acme", "")
    assert event.start == NOW + timedelta(days=2)
    assert event.organizer is not None and event.organizer.email == "avery.chen@acme.example"
    assert [(a.email, a.is_self, a.kind.value) for a in event.attendees] == [
        ("avery.chen@acme.example", False, "person"),
        ("jordan@example.org", True, "person"),
        ("room4@acme.example", False, "resource"),
    ]

    quiet = source.changes(first.cursor, WINDOW)
    assert (quiet.events, quiet.removed, quiet.complete) == ((), (), False)

    # Moved to a new time, and a second interview added.
    calendar.save_event(vevent("one@acme", NOW + timedelta(days=5)))
    calendar.save_event(vevent("two@acme", NOW + timedelta(days=9), summary="Onsite"))
    second = source.changes(quiet.cursor, WINDOW)
    assert not second.complete
    assert sorted((e.key.uid, e.start) for e in second.events) == [
        ("one@acme", NOW + timedelta(days=5)),
        ("two@acme", NOW + timedelta(days=9)),
    ]
    assert second.removed == ()

    calendar.event_by_uid("one@acme").delete()
    third = source.changes(second.cursor, WINDOW)
    assert third.events == ()
    assert third.removed == (EventKey(str(calendar.url), "one@acme", "*"),)
    source.close()


def test_cancelled_and_moved_out_of_window(dav) -> None:
    calendar, account = dav
    source = open_calendar(account)
    calendar.save_event(vevent("a@acme", NOW + timedelta(days=1)))
    calendar.save_event(vevent("b@acme", NOW + timedelta(days=2)))
    cursor = source.changes(None, WINDOW).cursor

    calendar.save_event(vevent("a@acme", NOW + timedelta(days=1), extra="STATUS:CANCELLED\r\n"))
    calendar.save_event(vevent("b@acme", NOW + timedelta(days=400)))
    batch = source.changes(cursor, WINDOW)
    assert [(e.key.uid, e.status) for e in batch.events] == [("a@acme", EventStatus.CANCELLED)]
    assert batch.removed == (EventKey(str(calendar.url), "b@acme", "*"),)


def test_rejected_sync_token_falls_back_to_full_listing(dav) -> None:
    calendar, account = dav
    source = open_calendar(account)
    calendar.save_event(vevent("one@acme", NOW + timedelta(days=2)))
    wrapped = json.loads(source.changes(None, WINDOW).cursor)  # the token inside its span
    states = load_cursor(wrapped["cursor"])
    for state in states.values():
        state["token"] = "http://radicale.org/ns/sync/" + "0" * 64  # never issued
    forged = json.dumps({**wrapped, "cursor": json.dumps({"v": 1, "calendars": states})})

    batch = source.changes(forged, WINDOW)
    assert batch.complete
    assert [e.key.uid for e in batch.events] == ["one@acme"]
    fresh = load_cursor(json.loads(batch.cursor)["cursor"])
    assert fresh and fresh != states  # a fresh token
    assert source.changes(batch.cursor, WINDOW).events == ()


def test_recurring_series_expanded_in_window(dav) -> None:
    calendar, account = dav
    start = NOW + timedelta(days=1)
    calendar.save_event(vevent("weekly@acme", start, extra="RRULE:FREQ=WEEKLY;COUNT=3\r\n"))
    batch = open_calendar(account).changes(None, WINDOW)
    assert [e.key.instance for e in batch.events] == [
        (start + timedelta(weeks=n)).isoformat() for n in range(3)
    ]
    assert all(e.recurring for e in batch.events)


def test_calendar_selection_by_name(dav, radicale) -> None:
    calendar, account = dav
    client = caldav.DAVClient(
        url=radicale.url, username=account.calendar.options.username, password=PASSWORD
    )
    other = client.principal().make_calendar(name="Birthdays")
    other.save_event(vevent("bday@x", NOW + timedelta(days=1), summary="Birthday"))
    calendar.save_event(vevent("one@acme", NOW + timedelta(days=2)))

    everything = open_calendar(account).changes(None, WINDOW)
    assert sorted(e.key.uid for e in everything.events) == ["bday@x", "one@acme"]

    only_work = replace(account, calendar=replace(
        account.calendar, options=replace(account.calendar.options, calendars=("Work",))))
    batch = CalDavCalendar(only_work).changes(None, WINDOW)
    assert [e.key.uid for e in batch.events] == ["one@acme"]


def test_wrong_password_is_auth_error(dav) -> None:
    from mailbridge.adapters import AuthError

    _, account = dav
    wrong = replace(account, calendar=replace(
        account.calendar, options=replace(account.calendar.options, password_command="echo nope")))
    with pytest.raises(AuthError, match="work"):
        open_calendar(wrong).changes(None, WINDOW)


class _Unsteady(http.server.ThreadingHTTPServer):
    """A reverse proxy in front of Radicale that answers the first ``failures`` requests with
    503 and ``Retry-After: 0``, as a busy CalDAV server does."""

    def __init__(self, target: str, failures: int) -> None:
        self.target, self.failures = target.rstrip("/"), failures
        self.seen: list[str] = []
        super().__init__(("127.0.0.1", 0), _Forward)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class _Forward(http.server.BaseHTTPRequestHandler):
    server: _Unsteady

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        pass

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append(self.command)
        if self.server.failures > 0:
            self.server.failures -= 1
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host",)}
        answer = requests.request(self.command, self.server.target + self.path, data=body,
                                  headers=headers, timeout=30)
        self.send_response(answer.status_code)
        for name, value in answer.headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection",
                                    "content-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    do_GET = do_PROPFIND = do_REPORT = do_OPTIONS = do_HEAD = _any  # noqa: N815


def test_a_busy_server_is_asked_again_under_the_one_retry_policy(dav) -> None:
    calendar, account = dav
    calendar.save_event(vevent("one@acme", NOW + timedelta(days=1)))
    proxy = _Unsteady(account.calendar.options.url, failures=2)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        busy = replace(account, calendar=replace(
            account.calendar, options=replace(account.calendar.options, url=proxy.url)))
        batch = open_calendar(busy).changes(None, WINDOW)
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert [e.key.uid for e in batch.events] == ["one@acme"]
    assert proxy.failures == 0 and len(proxy.seen) > 2  # both 503s were read, then retried


def test_a_server_that_stays_busy_is_a_fault_for_this_pass(dav) -> None:
    _, account = dav
    proxy = _Unsteady(account.calendar.options.url, failures=1000)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        busy = replace(account, calendar=replace(
            account.calendar, options=replace(account.calendar.options, url=proxy.url)))
        with pytest.raises(ProviderError, match="work"):
            open_calendar(busy).changes(None, WINDOW)
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert len(proxy.seen) == 3  # the policy's three attempts, then the pass gives up
