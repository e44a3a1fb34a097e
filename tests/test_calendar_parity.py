"""One corpus of interviews through every calendar source gives the core the same facts.

Each case is written once as neutral data (`Case`) and rendered the way each real service shows
it: an iCalendar VEVENT as Google's exporter writes it (UTC times, X-WR-TIMEZONE, CUTYPE/ROLE/
PARTSTAT/CN, X-NUM-GUESTS) and as Outlook's does (Windows zone names with their VTIMEZONE,
X-MICROSOFT-CDO-*, ROLE=NON-PARTICIPANT rooms), a Calendar API event resource (the instances
``singleEvents=true`` lists) and a Graph event resource (held in the event's own zone; the
emulator answers calendarView in UTC as Graph does). The iCalendar renderings go through all
three iCalendar sources (a local file, a feed URL, CalDAV on a real Radicale); the API resources
through the Google and Graph emulators. The provider's reading code runs unchanged.

What is compared is what the engine keeps of an event: every fact but the source's own ids
(EventKey.uid and .calendar), with a cancelled event (or instance) counted as absent, since the
engine cancels the interview either way; and `mailbridge.detect`'s verdict on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import caldav
import pytest
from mailbridge_providers import gmail, ics, local, outlook
from mailbridge_providers.caldav import CalDavSettings
from mailbridge_providers.caldav import open_calendar as open_caldav

from mailbridge import detect, secrets
from mailbridge.model import AttendeeKind, Event, EventStatus, Policy, Response, Window
from mailbridge.settings import AccountSettings, CalendarSettings, DetectionRules
from tests.emulators.google import GoogleEmulator, running
from tests.emulators.graph import GraphEmulator
from tests.servers import PASSWORD, Radicale
from tests.test_gmail import fast_api, make_account
from tests.test_outlook import Sleeps, sign_in

ME = "jordan.lee@gmail.com"
OWN = (ME,)
ZONE = "America/Los_Angeles"  # the user's: a floating time is read in it
POLICY = Policy(timezone=ZONE)
WINDOW = Window(datetime(2031, 3, 1, tzinfo=UTC), datetime(2031, 5, 1, tzinfo=UTC))
# Recurring series are judged too: the series case is about keys and moved instances.
RULES = DetectionRules(include_recurring=True)
STAMP = "20310101T000000Z"


# --- the corpus, as neutral data ---------------------------------------------------------------


@dataclass(frozen=True)
class Guest:
    email: str
    name: str = ""
    role: str = "required"  # required | optional | room
    response: Response = Response.ACCEPTED


@dataclass(frozen=True)
class Series:
    """A weekly series of ``count`` instances; some moved (index -> new local start), some
    cancelled (left out of the series, as EXDATE or as a deleted occurrence)."""

    count: int
    moved: dict[int, datetime] = field(default_factory=dict)
    cancelled: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    start: datetime  # local, in `zone` (a date's midnight for an all-day event)
    minutes: int
    organizer: Guest
    guests: tuple[Guest, ...]
    zone: str = "UTC"  # IANA
    location: str = ""
    all_day: bool = False
    cancelled: bool = False
    duration: bool = False  # iCalendar only: DURATION instead of DTEND
    floating: bool = False  # iCalendar only: local times without a zone (the user's zone)
    series: Series | None = None

    @property
    def uid(self) -> str:
        return f"{self.name}-7f3a@mailbridge.test"

    def instances(self) -> list[tuple[int, datetime, datetime]]:
        """(index, original local start, actual local start) of each instance still held."""
        if self.series is None:
            return [(0, self.start, self.start)]
        found = []
        for i in range(self.series.count):
            original = self.start + timedelta(weeks=i)
            if i not in self.series.cancelled:
                found.append((i, original, self.series.moved.get(i, original)))
        return found


def local_time(value: datetime, zone: str) -> datetime:
    return value.replace(tzinfo=ZoneInfo(zone))


def you(email: str = ME, response: Response = Response.ACCEPTED) -> Guest:
    return Guest(email, "Jordan Lee", response=response)


AVERY = Guest("avery.chen@acme.example", "Avery Chen")
CORPUS: tuple[Case, ...] = (
    Case("plain", "Interview: Backend Engineer at Acme", datetime(2031, 3, 10, 16), 60,
         organizer=AVERY, zone="Europe/Berlin", location="Acme HQ, Boardroom",
         guests=(AVERY, Guest("raj.patel@acme.example", "Raj Patel"), you(),
                 Guest("boardroom@acme.example", "Boardroom", role="room"))),
    Case("optional", "Technical interview - Globex", datetime(2031, 3, 11, 14), 60,
         organizer=Guest("maria@globex.example", "Maria Gomez"),
         guests=(Guest("maria@globex.example", "Maria Gomez"), you(),
                 Guest("ken@globex.example", "Ken Ito", role="optional",
                       response=Response.NEEDS_ACTION))),
    Case("declined", "Panel interview with Initech", datetime(2031, 3, 12, 13), 90,
         organizer=Guest("bill@initech.example", "Bill Lumbergh"),
         guests=(Guest("bill@initech.example", "Bill Lumbergh"), you(),
                 Guest("peter@initech.example", "Peter Gibbons", response=Response.DECLINED),
                 Guest("samir@initech.example", "Samir N", response=Response.TENTATIVE))),
    Case("series", "Interview loop - Hooli", datetime(2031, 3, 11, 10), 60,
         organizer=Guest("gavin@hooli.example", "Gavin Belson"), zone="America/Los_Angeles",
         guests=(Guest("gavin@hooli.example", "Gavin Belson"), you()),
         series=Series(3, moved={1: datetime(2031, 3, 19, 11)}, cancelled=frozenset({2}))),
    Case("cancelled", "Interview: Data Scientist at Umbrella", datetime(2031, 3, 13, 9), 60,
         organizer=Guest("alice@umbrella.example", "Alice Abernathy"), cancelled=True,
         guests=(Guest("alice@umbrella.example", "Alice Abernathy"), you())),
    Case("all-day", "Onsite interview day - Stark", datetime(2031, 3, 20), 24 * 60,
         organizer=Guest("pepper@stark.example", "Pepper Potts"), all_day=True,
         guests=(Guest("pepper@stark.example", "Pepper Potts"), you())),
    Case("windows-zone", "Interview with Wayne Enterprises", datetime(2031, 3, 12, 9), 45,
         organizer=Guest("lucius@wayne.example", "Lucius Fox"), zone="America/Los_Angeles",
         guests=(Guest("lucius@wayne.example", "Lucius Fox"), you())),
    Case("duration", "Phone screen interview - Cyberdyne", datetime(2031, 3, 14, 17), 30,
         organizer=Guest("miles@cyberdyne.example", "Miles Dyson"), duration=True,
         guests=(Guest("miles@cyberdyne.example", "Miles Dyson"), you())),
    Case("recruiter", "Interview: Product Manager at Soylent", datetime(2031, 3, 17, 15), 60,
         organizer=Guest("recruiting@soylent.example", "Soylent Recruiting"),
         guests=(Guest("dana@soylent.example", "Dana Scully"),
                 Guest("eli@soylent.example", "Eli Vance"), you())),
    Case("floating", "Interview: QA Lead at Tyrell", datetime(2031, 3, 19, 9), 60,
         organizer=Guest("rachael@tyrell.example", "Rachael Rosen"), zone=ZONE, floating=True,
         guests=(Guest("rachael@tyrell.example", "Rachael Rosen"), you())),
    Case("declined-by-me", "Interview: SRE at Massive Dynamic", datetime(2031, 3, 21, 11), 60,
         organizer=Guest("nina@massive.example", "Nina Sharp"),
         guests=(Guest("nina@massive.example", "Nina Sharp"), you(response=Response.DECLINED))),
    Case("mixed-case", "Final interview - Vandelay Industries", datetime(2031, 3, 18, 16), 60,
         organizer=Guest("Art.Vandelay@Vandelay.example", "Art Vandelay"),
         guests=(Guest("Art.Vandelay@Vandelay.example", "Art Vandelay"),
                 Guest("H.E.Pennypacker@VANDELAY.example", "H. E. Pennypacker"),
                 you("Jordan.Lee+Jobs@Gmail.com"))),
)


# --- the truth: what every source must report ---------------------------------------------------


Facts = tuple[Any, ...]


def expected() -> dict[tuple[str, str], Facts]:
    """The facts of every live instance, from the neutral data alone."""
    found: dict[tuple[str, str], Facts] = {}
    for case in CORPUS:
        if case.cancelled:
            continue
        organizer = case.organizer.email.lower()
        attendees = sorted(
            (
                g.email.lower(),
                g.name,
                AttendeeKind.RESOURCE if g.role == "room" else AttendeeKind.PERSON,
                g.response,
                _is_me(g),
                g.email.lower() == organizer,
            )
            for g in case.guests
        )
        for _, original, actual in case.instances():
            if case.all_day:
                start = datetime(actual.year, actual.month, actual.day, tzinfo=UTC)
            else:
                start = local_time(actual, case.zone).astimezone(UTC)
            instance = ""
            if case.series is not None:
                instance = local_time(original, case.zone).astimezone(UTC).isoformat()
            found[(case.title, instance)] = (
                start,
                start + timedelta(minutes=case.minutes),
                case.all_day,
                EventStatus.CONFIRMED,
                (organizer, case.organizer.name),
                tuple(attendees),
                case.series is not None,
                case.location,
            )
    return found


def facts(events: list[Event]) -> dict[tuple[str, str], Facts]:
    """What the core keeps of each event, without the source's own ids; cancelled = absent."""
    found: dict[tuple[str, str], Facts] = {}
    for e in events:
        if e.status == EventStatus.CANCELLED:
            continue
        key = (e.title, e.key.instance)
        assert key not in found, f"{key} reported twice"
        found[key] = (
            e.start.astimezone(UTC),
            e.end.astimezone(UTC),
            e.all_day,
            e.status,
            (e.organizer.email, e.organizer.name) if e.organizer else None,
            tuple(sorted((a.email, a.name, a.kind, a.response, a.is_self, a.is_organizer)
                         for a in e.attendees)),
            e.recurring,
            e.location,
        )
    return found


def verdicts(events: list[Event]) -> dict[tuple[str, str], detect.Detection]:
    return {
        (e.title, e.key.instance): detect.judge(e, OWN, detect.default_org_domains(ME), RULES)
        for e in events
        if e.status != EventStatus.CANCELLED
    }


# --- iCalendar, as Google and Outlook export it ------------------------------------------------

WINDOWS_ZONES = {"UTC": "UTC", "Europe/Berlin": "W. Europe Standard Time",
                 "America/Los_Angeles": "Pacific Standard Time"}
OUTLOOK_TIMEZONES = """BEGIN:VTIMEZONE
TZID:Pacific Standard Time
BEGIN:STANDARD
DTSTART:16010101T020000
TZOFFSETFROM:-0700
TZOFFSETTO:-0800
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=1SU;BYMONTH=11
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T020000
TZOFFSETFROM:-0800
TZOFFSETTO:-0700
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=2SU;BYMONTH=3
END:DAYLIGHT
END:VTIMEZONE
BEGIN:VTIMEZONE
TZID:W. Europe Standard Time
BEGIN:STANDARD
DTSTART:16010101T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3
END:DAYLIGHT
END:VTIMEZONE
BEGIN:VTIMEZONE
TZID:UTC
BEGIN:STANDARD
DTSTART:16010101T000000
TZOFFSETFROM:+0000
TZOFFSETTO:+0000
END:STANDARD
END:VTIMEZONE
"""
GOOGLE_TIMEZONES = """BEGIN:VTIMEZONE
TZID:America/Los_Angeles
X-LIC-LOCATION:America/Los_Angeles
BEGIN:DAYLIGHT
TZOFFSETFROM:-0800
TZOFFSETTO:-0700
TZNAME:PDT
DTSTART:19700308T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:-0700
TZOFFSETTO:-0800
TZNAME:PST
DTSTART:19701101T020000
RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU
END:STANDARD
END:VTIMEZONE
"""

_PARTSTAT = {Response.ACCEPTED: "ACCEPTED", Response.DECLINED: "DECLINED",
             Response.TENTATIVE: "TENTATIVE", Response.NEEDS_ACTION: "NEEDS-ACTION"}


def _mailto(email: str) -> str:
    # Exporters keep the address as it was typed; Outlook writes an upper-case scheme for it.
    return ("MAILTO:" if email != email.lower() else "mailto:") + email


def _utc(value: datetime, zone: str) -> str:
    return local_time(value, zone).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _google_when(name: str, case: Case, value: datetime, zoned: bool) -> str:
    if case.all_day:
        return f"{name};VALUE=DATE:{value:%Y%m%d}"
    if case.floating:
        return f"{name}:{value:%Y%m%dT%H%M%S}"
    if zoned:  # Google writes a series in its zone, so that the rule keeps its wall time
        return f"{name};TZID={case.zone}:{value:%Y%m%dT%H%M%S}"
    return f"{name}:{_utc(value, case.zone)}"


def _outlook_when(name: str, case: Case, value: datetime) -> str:
    if case.all_day:
        return f"{name};VALUE=DATE:{value:%Y%m%d}"
    if case.floating:
        return f"{name}:{value:%Y%m%dT%H%M%S}"
    return f"{name};TZID={WINDOWS_ZONES[case.zone]}:{value:%Y%m%dT%H%M%S}"


def _google_people(case: Case) -> list[str]:
    lines = [f"ORGANIZER;CN={case.organizer.name}:{_mailto(case.organizer.email)}"]
    for g in case.guests:
        cutype = "RESOURCE" if g.role == "room" else "INDIVIDUAL"
        role = "OPT-PARTICIPANT" if g.role == "optional" else "REQ-PARTICIPANT"
        lines.append(f"ATTENDEE;CUTYPE={cutype};ROLE={role};PARTSTAT={_PARTSTAT[g.response]};"
                     f"CN={g.name};X-NUM-GUESTS=0:{_mailto(g.email)}")
    return lines


def _outlook_people(case: Case) -> list[str]:
    lines = [f'ORGANIZER;CN="{case.organizer.name}":{_mailto(case.organizer.email)}']
    for g in case.guests:
        if g.role == "room":
            params = "CUTYPE=RESOURCE;ROLE=NON-PARTICIPANT;RSVP=TRUE"
        else:
            role = "OPT-PARTICIPANT" if g.role == "optional" else "REQ-PARTICIPANT"
            params = f"ROLE={role};RSVP=TRUE"
        lines.append(f'ATTENDEE;CN="{g.name}";{params};PARTSTAT={_PARTSTAT[g.response]}:'
                     f"{_mailto(g.email)}")
    return lines


def _end_lines(case: Case, when: Callable[[str, Case, datetime], str], start: datetime) -> str:
    if case.duration:
        return f"DURATION:PT{case.minutes}M"
    return when("DTEND", case, start + timedelta(minutes=case.minutes))


def google_vevents(case: Case) -> list[str]:
    zoned = case.series is not None
    def when(name: str, c: Case, value: datetime) -> str:
        return _google_when(name, c, value, zoned)

    common = [f"DTSTAMP:{STAMP}", *_google_people(case), f"UID:{case.uid}",
              f"CREATED:{STAMP}", "DESCRIPTION:", f"LAST-MODIFIED:{STAMP}",
              f"LOCATION:{case.location}", "SEQUENCE:0",
              f"STATUS:{'CANCELLED' if case.cancelled else 'CONFIRMED'}",
              f"SUMMARY:{case.title}", "TRANSP:OPAQUE"]
    master = [when("DTSTART", case, case.start), _end_lines(case, when, case.start)]
    if case.series is not None:
        master.append(f"RRULE:FREQ=WEEKLY;COUNT={case.series.count}")
        master += [when("EXDATE", case, case.start + timedelta(weeks=i))
                   for i in sorted(case.series.cancelled)]
    events = ["\r\n".join(["BEGIN:VEVENT", *master, *common, "END:VEVENT"])]
    for i, moved in (case.series.moved if case.series else {}).items():
        events.append("\r\n".join([
            "BEGIN:VEVENT", when("DTSTART", case, moved), _end_lines(case, when, moved),
            when("RECURRENCE-ID", case, case.start + timedelta(weeks=i)), *common,
            "END:VEVENT"]))
    return events


def outlook_vevents(case: Case) -> list[str]:
    flags = [
        "X-MICROSOFT-CDO-APPT-SEQUENCE:0",
        "X-MICROSOFT-CDO-BUSYSTATUS:" + ("FREE" if case.cancelled else "BUSY"),
        "X-MICROSOFT-CDO-INTENDEDSTATUS:BUSY",
        "X-MICROSOFT-CDO-ALLDAYEVENT:" + ("TRUE" if case.all_day else "FALSE"),
        "X-MICROSOFT-CDO-IMPORTANCE:1", "X-MICROSOFT-CDO-INSTTYPE:"
        + ("1" if case.series else "0"), "X-MICROSOFT-DISALLOW-COUNTER:FALSE",
    ]
    common = ["CLASS:PUBLIC", f"CREATED:{STAMP}", "DESCRIPTION:\\n", f"DTSTAMP:{STAMP}",
              *_outlook_people(case), f"LAST-MODIFIED:{STAMP}",
              f"LOCATION;LANGUAGE=en-US:{case.location}", "PRIORITY:5", "SEQUENCE:0",
              *(["STATUS:CANCELLED"] if case.cancelled else []),
              f"SUMMARY;LANGUAGE=en-US:{case.title}", "TRANSP:OPAQUE", f"UID:{case.uid}",
              *flags]
    master = [_outlook_when("DTSTART", case, case.start),
              _end_lines(case, _outlook_when, case.start)]
    if case.series is not None:
        day = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"][case.start.weekday()]
        master.append(f"RRULE:FREQ=WEEKLY;COUNT={case.series.count};INTERVAL=1;BYDAY={day};"
                      "WKST=SU")
        master += [_outlook_when("EXDATE", case, case.start + timedelta(weeks=i))
                   for i in sorted(case.series.cancelled)]
    events = ["\r\n".join(["BEGIN:VEVENT", *master, *common, "END:VEVENT"])]
    for i, moved in (case.series.moved if case.series else {}).items():
        events.append("\r\n".join([
            "BEGIN:VEVENT", _outlook_when("DTSTART", case, moved),
            _end_lines(case, _outlook_when, moved),
            _outlook_when("RECURRENCE-ID", case, case.start + timedelta(weeks=i)), *common,
            "END:VEVENT"]))
    return events


def calendar_text(flavour: str, cases: tuple[Case, ...]) -> str:
    if flavour == "google":
        head = ["BEGIN:VCALENDAR", "PRODID:-//Google Inc//Google Calendar 70.9054//EN",
                "VERSION:2.0", "CALSCALE:GREGORIAN", "METHOD:PUBLISH",
                "X-WR-CALNAME:jordan.lee@gmail.com", "X-WR-TIMEZONE:America/Los_Angeles",
                GOOGLE_TIMEZONES.strip().replace("\n", "\r\n")]
        body = [v for c in cases for v in google_vevents(c)]
    else:
        head = ["BEGIN:VCALENDAR", "METHOD:PUBLISH",
                "PRODID:Microsoft Exchange Server 2010", "VERSION:2.0",
                "X-WR-CALNAME:Calendar",
                OUTLOOK_TIMEZONES.strip().replace("\n", "\r\n")]
        body = [v for c in cases for v in outlook_vevents(c)]
    return "\r\n".join([*head, *body, "END:VCALENDAR"]) + "\r\n"


# --- the Calendar API and Graph resources ---------------------------------------------------------

_GOOGLE_RESPONSE = {Response.ACCEPTED: "accepted", Response.DECLINED: "declined",
                    Response.TENTATIVE: "tentative", Response.NEEDS_ACTION: "needsAction"}
_GRAPH_RESPONSE = {Response.ACCEPTED: "accepted", Response.DECLINED: "declined",
                   Response.TENTATIVE: "tentativelyAccepted",
                   Response.NEEDS_ACTION: "notResponded"}


def _is_me(g: Guest) -> bool:
    return g.name == "Jordan Lee"


def google_resources(case: Case, number: int) -> list[dict[str, Any]]:
    """The events ``events.list(singleEvents=true)`` returns for the case (an event id is
    base32hex; an instance's id is the series id and its original start)."""
    def when(value: datetime) -> dict[str, str]:
        if case.all_day:
            return {"date": value.date().isoformat()}
        return {"dateTime": local_time(value, case.zone).isoformat(), "timeZone": case.zone}

    attendees = []
    for g in case.guests:
        entry: dict[str, Any] = {"email": g.email, "responseStatus": _GOOGLE_RESPONSE[g.response]}
        if g.name:
            entry["displayName"] = g.name
        if g.role == "optional":
            entry["optional"] = True
        if g.role == "room":
            entry["resource"] = True
        if g.email.lower() == case.organizer.email.lower():
            entry["organizer"] = True
        if _is_me(g):
            entry["self"] = True
        attendees.append(entry)
    series_id = f"ser{number:03d}abc"
    found = []
    for _, original, actual in case.instances():
        item: dict[str, Any] = {
            "id": f"ev{number:03d}abc",
            "iCalUID": case.uid,
            "status": "cancelled" if case.cancelled else "confirmed",
            "summary": case.title,
            "location": case.location,
            "organizer": {"email": case.organizer.email, "displayName": case.organizer.name},
            "start": when(actual),
            "end": when(actual + timedelta(minutes=case.minutes)),
            "attendees": attendees,
        }
        if not case.location:
            del item["location"]
        if case.series is not None:
            stamp = local_time(original, case.zone).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
            item.update(id=f"{series_id}_{stamp}", recurringEventId=series_id,
                        originalStartTime=when(original))
        found.append(item)
    return found


def graph_resources(case: Case, number: int) -> list[dict[str, Any]]:
    """The events calendarView holds for the case, each in the event's own (Windows) zone."""
    zone = WINDOWS_ZONES[case.zone]

    def when(value: datetime) -> dict[str, str]:
        return {"dateTime": value.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": zone}

    def address(g: Guest) -> dict[str, Any]:
        return {"emailAddress": {"name": g.name, "address": g.email}}

    me = next(g for g in case.guests if _is_me(g))

    def status(g: Guest) -> str:
        # "Getting the organizer's response for the event in anybody's calendar also returns
        # none" (responseStatus resource); the user's own answer is the event's responseStatus.
        if g.email.lower() == case.organizer.email.lower() or _is_me(g):
            return "none"
        return _GRAPH_RESPONSE[g.response]
    found = []
    for index, original, actual in case.instances():
        item: dict[str, Any] = {
            "id": f"AAMkEv{number:03d}-{index}",
            "iCalUId": "040000008200E00074C5B7101A82E008" + case.uid.encode().hex(),
            "subject": case.title,
            "body": {"contentType": "text", "content": ""},
            "start": when(actual),
            "end": when(actual + timedelta(minutes=case.minutes)),
            "originalStartTimeZone": zone,
            "originalEndTimeZone": zone,
            "location": {"displayName": case.location},
            "isAllDay": case.all_day,
            "isCancelled": case.cancelled,
            "isOrganizer": False,
            "type": "singleInstance",
            "responseStatus": {"response": _GRAPH_RESPONSE[me.response],
                               "time": "2031-01-01T00:00:00Z"},
            "organizer": address(case.organizer),
            "attendees": [
                {"type": {"room": "resource"}.get(g.role, g.role),
                 "status": {"response": status(g), "time": "2031-01-01T00:00:00Z"},
                 **address(g)}
                for g in case.guests
            ],
        }
        if case.series is not None:
            moved = index in case.series.moved
            item.update(type="exception" if moved else "occurrence",
                        seriesMasterId=f"AAMkSeries{number:03d}",
                        originalStart=local_time(original, case.zone).astimezone(UTC)
                        .strftime("%Y-%m-%dT%H:%M:%SZ"))
        found.append(item)
    return found


# --- the sources -------------------------------------------------------------------------------

Reader = Callable[[tuple[Case, ...]], list[Event]]
FLAVOURS = ("google", "outlook")


def read_file(tmp_path: Path, flavour: str) -> Reader:
    def read(cases: tuple[Case, ...]) -> list[Event]:
        folder = tmp_path / f"calendar-{flavour}"
        folder.mkdir()
        (folder / "export.ics").write_text(calendar_text(flavour, cases), newline="")
        account = AccountSettings(
            name="file", provider="local", address=ME, policy=POLICY,
            calendar=CalendarSettings(kind="file", options=local.FileCalendarSettings(
                path=str(folder))))
        return list(local.open_calendar(account).changes(None, WINDOW).events)

    return read


@pytest.fixture
def feed() -> Iterator[dict[str, bytes]]:
    """A feed server on 127.0.0.1: path -> body."""
    bodies: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            body = bodies.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "text/calendar; charset=utf-8")
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    bodies["/"] = f"http://127.0.0.1:{server.server_address[1]}".encode()
    yield bodies
    server.shutdown()
    server.server_close()


def read_feed(bodies: dict[str, bytes], flavour: str) -> Reader:
    def read(cases: tuple[Case, ...]) -> list[Event]:
        path = f"/{flavour}/basic.ics"
        bodies[path] = calendar_text(flavour, cases).encode()
        account = AccountSettings(
            name="feed", provider="local", address=ME, policy=POLICY,
            calendar=CalendarSettings(kind="ics", options=ics.IcsCalendarSettings(
                url=bodies["/"].decode() + path)))
        source = ics.open_calendar(account)
        try:
            return list(source.changes(None, WINDOW).events)
        finally:
            source.close()

    return read


def read_caldav(radicale: Radicale, flavour: str) -> Reader:
    def read(cases: tuple[Case, ...]) -> list[Event]:
        user = radicale.new_user()
        client = caldav.DAVClient(url=radicale.url, username=user, password=PASSWORD)
        try:
            calendar = client.principal().make_calendar(name="Work")
            for case in cases:  # one object per UID, as CalDAV stores them
                calendar.save_event(calendar_text(flavour, (case,)))
        finally:
            client.close()
        account = AccountSettings(
            name="dav", provider="local", address=ME, policy=POLICY,
            calendar=CalendarSettings(kind="caldav", options=CalDavSettings(
                url=radicale.url, username=user, password_command=f"echo {PASSWORD}")))
        source = open_caldav(account)
        try:
            return list(source.changes(None, WINDOW).events)
        finally:
            source.close()

    return read


@pytest.fixture
def google_emulator() -> Iterator[GoogleEmulator]:
    with running(ME) as emulator:
        yield emulator
        assert emulator.violations == [], "requests the real API would refuse"


def read_google(emulator: GoogleEmulator, tmp_path: Path) -> Reader:
    def read(cases: tuple[Case, ...]) -> list[Event]:
        for number, case in enumerate(cases):
            for item in google_resources(case, number):
                emulator.add_event(item)
        secrets.store("personal", gmail.KEYRING_PURPOSE, "refresh-1")
        account = replace(make_account(emulator, tmp_path), policy=POLICY)
        source = gmail.GoogleCalendar(account, fast_api(account, "calendar"))
        return list(source.changes(None, WINDOW).events)

    return read


@pytest.fixture
def graph_emulator() -> Iterator[GraphEmulator]:
    emulator = GraphEmulator(user=ME).start()
    yield emulator
    emulator.stop()
    assert emulator.violations == [], "requests the real Graph would reject"


def read_graph(emulator: GraphEmulator) -> Reader:
    def read(cases: tuple[Case, ...]) -> list[Event]:
        for number, case in enumerate(cases):
            for item in graph_resources(case, number):
                emulator.put_event(item)
        account = replace(sign_in(emulator), policy=POLICY)
        retry = outlook.RetryPolicy(base=0.01, cap=0.05, sleep=Sleeps())
        source = outlook.open_calendar(account, http_client=emulator.http_client(), retry=retry)
        try:
            return list(source.changes(None, WINDOW).events)
        finally:
            source.close()

    return read


# --- the tests ----------------------------------------------------------------------------------


def _differences(found: dict[Any, Any], truth: dict[Any, Any]) -> list[str]:
    lines = [f"missing {k}" for k in truth if k not in found]
    lines += [f"unexpected {k}" for k in found if k not in truth]
    lines += [f"{k}:\n  got  {found[k]}\n  want {truth[k]}"
              for k in truth if k in found and found[k] != truth[k]]
    return lines


@pytest.mark.server
def test_every_calendar_source_gives_the_core_the_same_facts(
    tmp_path: Path, feed: dict[str, bytes], radicale: Radicale,
    google_emulator: GoogleEmulator, graph_emulator: GraphEmulator,
) -> None:
    readers: dict[str, Reader] = {}
    for flavour in FLAVOURS:
        readers[f"file ({flavour} export)"] = read_file(tmp_path, flavour)
        readers[f"feed ({flavour} export)"] = read_feed(feed, flavour)
        readers[f"caldav ({flavour} export)"] = read_caldav(radicale, flavour)
    readers["google calendar api"] = read_google(google_emulator, tmp_path)
    readers["graph"] = read_graph(graph_emulator)
    truth = expected()
    seen = {name: reader(CORPUS) for name, reader in readers.items()}
    problems = {name: _differences(facts(events), truth) for name, events in seen.items()}
    report = [f"{name}: {line}" for name, lines in problems.items() for line in lines]
    assert not report, "\n".join(report)
    judged = {name: verdicts(events) for name, events in seen.items()}
    reference = judged["file (google export)"]
    assert {n for n, v in judged.items() if v != reference} == set()
    interviews = {k[0] for k, v in reference.items() if v.is_interview}
    assert interviews == {c.title for c in CORPUS
                          if not (c.cancelled or c.all_day or c.name == "declined-by-me")}


def test_the_corpus_renders_what_it_says() -> None:
    """The truth and the renderings come from the same data: check a few by eye-able facts."""
    truth = expected()
    assert len(truth) == len(CORPUS)  # one event cancelled; the series holds 2 instances
    assert "DTSTART:20310319T090000\r\n" in calendar_text("google", CORPUS)  # floating
    text = calendar_text("outlook", CORPUS)
    assert "TZID=Pacific Standard Time:20310312T090000" in text
    assert "DURATION:PT30M" in text and "MAILTO:Jordan.Lee+Jobs@Gmail.com" in text
    moved = [k for k in truth if k[0] == "Interview loop - Hooli"]
    assert sorted(k[1] for k in moved) == ["2031-03-11T17:00:00+00:00",
                                           "2031-03-18T17:00:00+00:00"]
    assert replace(CORPUS[0], name="x").uid == "x-7f3a@mailbridge.test"
    assert date(2031, 3, 20) == truth[("Onsite interview day - Stark", "")][0].date()
