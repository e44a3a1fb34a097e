"""providers.ics: the iCalendar -> Event mapping, and the feed's conditional GET (local server)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from mailbridge_providers import ics as ics_module
from mailbridge_providers.ics import (
    IcsCalendarSettings,
    events_from_ics,
    feed_url,
    open_calendar,
)

from mailbridge.adapters import AuthError, ProviderError
from mailbridge.model import AttendeeKind, EventStatus, Response, Window
from mailbridge.settings import AccountSettings, CalendarSettings

WINDOW = Window(datetime(2031, 3, 1, tzinfo=UTC), datetime(2031, 5, 1, tzinfo=UTC))
OWN = ("jordan@example.org",)


def ics(*events: str) -> bytes:
    body = "".join(f"BEGIN:VEVENT\r\n{e.strip()}\r\nEND:VEVENT\r\n" for e in events)
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n{body}END:VCALENDAR\r\n".encode()


INTERVIEW = """
UID:int-1
SUMMARY:Interview: Backend Engineer
DTSTART:20310310T150000Z
DTEND:20310310T160000Z
STATUS:CONFIRMED
ORGANIZER;CN="Avery Chen":mailto:Avery.Chen@acme.example
ATTENDEE;CN=Avery Chen;PARTSTAT=ACCEPTED:mailto:avery.chen@acme.example
ATTENDEE;CN=Jordan Lee;PARTSTAT=TENTATIVE:MAILTO:Jordan@Example.org
ATTENDEE;CUTYPE=ROOM;CN=Boardroom:mailto:boardroom@acme.example
ATTENDEE;CUTYPE=RESOURCE:mailto:projector@acme.example
ATTENDEE;CUTYPE=GROUP;CN=Eng:mailto:eng@acme.example
ATTENDEE;PARTSTAT=DECLINED:mailto:sam@acme.example
ATTENDEE:urn:uuid:no-address
"""


def test_attendees_organizer_and_self() -> None:
    (event,) = events_from_ics(ics(INTERVIEW), "cal", WINDOW, OWN)
    assert event.key.uid == "int-1" and event.key.instance == ""
    assert event.start == datetime(2031, 3, 10, 15, tzinfo=UTC)
    assert event.organizer is not None and event.organizer.email == "avery.chen@acme.example"
    assert event.organizer.name == "Avery Chen"
    table = [(a.email, a.kind, a.response, a.is_self, a.is_organizer) for a in event.attendees]
    assert table == [
        ("avery.chen@acme.example", AttendeeKind.PERSON, Response.ACCEPTED, False, True),
        ("jordan@example.org", AttendeeKind.PERSON, Response.TENTATIVE, True, False),
        ("boardroom@acme.example", AttendeeKind.RESOURCE, Response.UNKNOWN, False, False),
        ("projector@acme.example", AttendeeKind.RESOURCE, Response.UNKNOWN, False, False),
        ("eng@acme.example", AttendeeKind.GROUP, Response.UNKNOWN, False, False),
        ("sam@acme.example", AttendeeKind.PERSON, Response.DECLINED, False, False),
    ]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("DTSTART;VALUE=DATE:20310310\nSUMMARY:Off", (True, "2031-03-10T00:00:00+00:00", 24 * 60)),
        ("DTSTART:20310310T090000\nDURATION:PT45M", (False, "2031-03-10T09:00:00+00:00", 45)),
        (
            "DTSTART;TZID=America/Chicago:20310310T090000\nDTEND;TZID=America/Chicago:20310310T100000",
            (False, "2031-03-10T14:00:00+00:00", 60),
        ),
        ("DTSTART:20310310T090000Z", (False, "2031-03-10T09:00:00+00:00", 0)),
    ],
)
def test_times(source: str, expected: tuple[bool, str, int]) -> None:
    (event,) = events_from_ics(ics("UID:t\n" + source), "cal", WINDOW, OWN)
    minutes = int((event.end - event.start).total_seconds() // 60)
    assert (event.all_day, event.start.isoformat(), minutes) == expected


def test_floating_time_in_the_users_zone() -> None:
    data = ics("UID:f\nDTSTART:20310310T090000\nDTEND:20310310T100000")
    (event,) = events_from_ics(data, "cal", WINDOW, OWN, default_tz="Europe/Berlin")
    assert event.start == datetime(2031, 3, 10, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "expected"),
    [("CANCELLED", EventStatus.CANCELLED), ("TENTATIVE", EventStatus.TENTATIVE),
     ("CONFIRMED", EventStatus.CONFIRMED), ("bogus", EventStatus.CONFIRMED)],
)  # fmt: skip
def test_status(status: str, expected: EventStatus) -> None:
    data = ics(f"UID:s\nDTSTART:20310310T090000Z\nSTATUS:{status}")
    assert events_from_ics(data, "cal", WINDOW, OWN)[0].status is expected


def test_recurring_instances_keyed_by_original_start() -> None:
    data = ics(
        "UID:r\nSUMMARY:Weekly\nDTSTART:20310303T170000Z\nDTEND:20310303T180000Z\n"
        "RRULE:FREQ=WEEKLY;COUNT=3",
        "UID:r\nSUMMARY:Moved\nRECURRENCE-ID:20310310T170000Z\nDTSTART:20310311T090000Z\n"
        "DTEND:20310311T100000Z",
        "UID:outside\nDTSTART:20320101T090000Z",
    )
    events = events_from_ics(data, "cal", WINDOW, OWN)
    assert [(e.key.instance, e.title, e.start.day, e.recurring) for e in events] == [
        ("2031-03-03T17:00:00+00:00", "Weekly", 3, True),
        ("2031-03-10T17:00:00+00:00", "Moved", 11, True),
        ("2031-03-17T17:00:00+00:00", "Weekly", 17, True),
    ]


def test_broken_data_is_a_clear_error() -> None:
    with pytest.raises(ProviderError, match="not valid iCalendar"):
        events_from_ics(b"this is not a calendar", "feed", WINDOW, OWN)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("webcal://calendar.example.com/x.ics", "https://calendar.example.com/x.ics"),
        ("https://calendar.example.com/x.ics", "https://calendar.example.com/x.ics"),
        ("http://127.0.0.1:8080/x.ics", "http://127.0.0.1:8080/x.ics"),
        ("http://calendar.example.com/x.ics", None),
        ("ftp://calendar.example.com/x.ics", None),
    ],
)
def test_feed_url(url: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(ProviderError, match="work"):
            feed_url(url, account="work")
    else:
        assert feed_url(url, account="work") == expected


# --- the feed over HTTP ----------------------------------------------------------------


class Feed:
    """A calendar feed with ETag and Last-Modified, counting what it served."""

    def __init__(self) -> None:
        self.body = ics(INTERVIEW)
        self.version = 1
        self.full = 0
        self.not_modified = 0
        self.status = 200
        self.busy = 0  # answer this many requests with 503 and Retry-After: 0 first
        self.requests = 0
        self.modified = formatdate(1_900_000_000, usegmt=True)

    def etag(self) -> str:
        return f'"v{self.version}"'


@pytest.fixture
def feed() -> Iterator[tuple[Feed, str]]:
    state = Feed()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            state.requests += 1
            if state.busy:
                state.busy -= 1
                self.send_response(503)
                self.send_header("Retry-After", "0")
                self.end_headers()
                return
            if state.status != 200:
                self.send_response(state.status)
                self.end_headers()
                return
            if self.headers.get("If-None-Match") == state.etag():
                state.not_modified += 1
                self.send_response(304)
                self.end_headers()
                return
            state.full += 1
            self.send_response(200)
            self.send_header("Content-Type", "text/calendar")
            self.send_header("ETag", state.etag())
            self.send_header("Last-Modified", state.modified)
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/calendar.ics"
    server.shutdown()
    server.server_close()


def account_for(url: str) -> AccountSettings:
    return AccountSettings(
        name="work",
        provider="local",
        address="jordan@example.org",
        calendar=CalendarSettings(kind="ics", options=IcsCalendarSettings(url=url)),
    )


def test_conditional_get(feed) -> None:
    state, url = feed
    source = open_calendar(account_for(url))
    first = source.changes(None, WINDOW)
    assert first.complete and [e.key.uid for e in first.events] == ["int-1"]

    second = source.changes(first.cursor, WINDOW)
    assert (second.events, second.complete, second.cursor) == ((), False, first.cursor)
    assert (state.full, state.not_modified) == (1, 1)

    state.body = ics(INTERVIEW.replace("int-1", "int-2"))
    state.version = 2
    third = source.changes(second.cursor, WINDOW)
    assert third.complete and [e.key.uid for e in third.events] == ["int-2"]
    assert (state.full, state.not_modified) == (2, 1)

    # A new window needs the whole feed again, whatever the validators say.
    later = Window(WINDOW.start + timedelta(days=1), WINDOW.end + timedelta(days=1))
    assert source.changes(third.cursor, later).complete
    assert state.full == 3
    source.close()


@pytest.mark.parametrize(("status", "error"), [(401, AuthError), (500, ProviderError)])
def test_http_errors(feed, status: int, error: type[Exception]) -> None:
    state, url = feed
    state.status = status
    with pytest.raises(error, match="work"):
        open_calendar(account_for(url)).changes(None, WINDOW)


def test_a_busy_feed_is_asked_again_as_the_retry_policy_says(feed) -> None:
    state, url = feed
    state.busy = 2
    batch = open_calendar(account_for(url)).changes(None, WINDOW)
    assert [e.key.uid for e in batch.events] == ["int-1"] and state.requests == 3

    state.busy = 10  # still busy after every attempt: a fault for this pass, said once
    with pytest.raises(ProviderError, match="503"):
        open_calendar(account_for(url)).changes(None, WINDOW)
    assert state.requests == 3 + ics_module.POLICY.attempts


def test_unreachable_feed() -> None:
    with pytest.raises(ProviderError, match="cannot fetch"):
        open_calendar(account_for("http://127.0.0.1:9/nothing.ics")).changes(None, WINDOW)
