"""Bad input never crashes the service; huge input stays bounded.

Every parser fed by other people's data is driven with real-world-shaped samples
(tests/data/ics, tests/data/mail), with mutations of them (byte flips, dropped and
duplicated lines, truncation) and with generated junk. The rule: a mapping function returns,
or raises its documented exception; one bad item is dropped and the rest survive; nothing
hangs or grows without bound. Bounds here are generous on purpose: bench/huge_inputs.py
measures the real cost.
"""

from __future__ import annotations

import logging
import signal
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mailbridge_providers import ics, outlook

from mailbridge import classify, compose, detect, mailparse
from mailbridge.adapters import ProviderError
from mailbridge.model import (
    Attendee,
    AttendeeKind,
    DraftKind,
    Event,
    EventKey,
    EventStatus,
    Folder,
    InterviewRow,
    InterviewState,
    MailHeaders,
    Person,
    Response,
    Window,
)
from mailbridge.settings import DetectionRules
from tests.test_engine import END, LEAD, USER, World, event_ics

DATA = Path(__file__).parent / "data"
ICS_SAMPLES = sorted((DATA / "ics").glob("*.ics"))
MAIL_SAMPLES = sorted((DATA / "mail").glob("*.eml"))
WINDOW = Window(datetime(2026, 11, 10, tzinfo=UTC), datetime(2027, 1, 10, tzinfo=UTC))
OWN = ("jordan.lee@example.com",)
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Hang(Exception):
    pass


def _alarm(*_: object) -> None:
    raise Hang("events_from_ics took more than 60 seconds")


def read_ics(data: bytes | str) -> list[Event]:
    """events_from_ics as the providers call it; ProviderError is its documented refusal.

    A hang fails the test (SIGALRM) instead of stalling the suite; the bound is generous.
    """
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    try:
        events = ics.events_from_ics(data, "fuzz.ics", WINDOW, OWN, default_tz="America/Chicago")
    except ProviderError:
        return []
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    for event in events:
        assert isinstance(event, Event)
        assert event.start.tzinfo is not None and event.end >= event.start
        assert event.key.uid
    return events


# --- iCalendar: real-world shapes -----------------------------------------------------------

NORTHWIND_START = datetime(2026, 11, 17, 17, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("sample", "uid", "start", "end", "interviewers"),
    [
        # Outlook: display-name TZID without VTIMEZONE, BOM, folded lines, no mailto: on the
        # organizer, a room, an attendee without an address, odd X- parameters.
        ("outlook_display_tzid.ics", "040000008200E00074C5B7101A82E00800000000A0B1C2D3E4F5",
         NORTHWIND_START, NORTHWIND_START + timedelta(hours=1),
         {"priya.raman@northwind-robotics.com", "room4@northwind-robotics.com"}),
        # Exchange: Windows zone id, DURATION instead of DTEND, LF line ends.
        ("windows_tzid_duration.ics", "exchange-duration-1",
         NORTHWIND_START, NORTHWIND_START + timedelta(minutes=45),
         {"dana.whitfield@northwind-robotics.com"}),
        # Rules that repeat every second, Feb 30, COUNT=0, junk BYDAY, bad dates, 8-bit junk,
        # a duplicate UID, an orphan RECURRENCE-ID, year 9999: the interview survives them.
        ("broken_mix.ics", "good-interview",
         NORTHWIND_START, NORTHWIND_START + timedelta(hours=1),
         {"dana.whitfield@northwind-robotics.com"}),
        # A download cut off in the middle of the second event.
        ("truncated.ics", "good-interview",
         NORTHWIND_START, NORTHWIND_START + timedelta(hours=1),
         {"dana.whitfield@northwind-robotics.com"}),
    ],
)
def test_real_world_samples_keep_the_interview(
    sample: str, uid: str, start: datetime, end: datetime, interviewers: set[str]
) -> None:
    events = read_ics((DATA / "ics" / sample).read_bytes())
    found = [e for e in events if e.key.uid == uid]
    assert len(found) == 1, [e.key for e in events]
    event = found[0]
    assert (event.start, event.end) == (start, end)
    others = {a.email for a in event.attendees if not a.is_self}
    assert others == interviewers
    assert any(a.is_self for a in event.attendees)


def test_broken_events_are_dropped_and_the_readable_ones_kept() -> None:
    events = read_ics((DATA / "ics" / "broken_mix.ics").read_bytes())
    uids = {e.key.uid for e in events}
    # Readable despite a broken DTEND, an unknown zone, COUNT=0 and a lone RECURRENCE-ID.
    assert {"bad-end", "mars-zone", "count-zero", "orphan-instance", "good-interview"} <= uids
    # Unusable: no start, an unreadable start, runaway or impossible rules, out of range.
    dropped = {"bad-start", "no-start", "every-second", "every-minute-by-parts", "february-30",
               "daily-since-1400", "year-9999", "byday-junk", "until-before-start"}
    assert not uids & dropped
    # The duplicate UID is read once, from its later copy (the one with attendees).
    good = [e for e in events if e.key.uid == "good-interview"]
    assert len(good) == 1 and good[0].attendees


def test_a_broken_event_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mailbridge"):
        read_ics((DATA / "ics" / "broken_mix.ics").read_bytes())
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "'every-second'" in logged and "'bad-start'" in logged


@pytest.mark.parametrize(
    ("tzid", "utc_hour"),
    [
        ("Pacific Standard Time", 17),  # Windows id (CLDR table in icalendar)
        ('"(UTC-08:00) Pacific Time (US & Canada)"', 17),  # Outlook display name
        ('"(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna"', 8),
        ('"(UTC+05:30) Somewhere Unlisted"', 3),  # unknown label: its fixed offset (03:30)
        ('"tzone://Microsoft/Utc"', 9),
        ("Mars/Olympus_Mons", 15),  # unknown: floating, read in the user's zone (Chicago)
    ],
)
def test_time_zone_names_from_the_wild(tzid: str, utc_hour: int) -> None:
    data = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:tz\r\n"
        f"DTSTART;TZID={tzid}:20261117T090000\r\nSUMMARY:Interview\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    (event,) = read_ics(data)
    assert event.start.hour == utc_hour


def _with_rule(rule: str, start: str = "20261110T100000Z") -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"
        f"BEGIN:VEVENT\r\nUID:series\r\nDTSTART:{start}\r\nDURATION:PT1H\r\nRRULE:{rule}\r\n"
        "SUMMARY:Weekly sync\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:single\r\nDTSTART:20261117T170000Z\r\nDURATION:PT1H\r\n"
        "SUMMARY:Interview\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


@pytest.mark.parametrize(
    ("rule", "start", "at_most"),
    [
        ("FREQ=SECONDLY", "20261110T100000Z", 0),
        ("FREQ=MINUTELY;INTERVAL=1", "20261110T100000Z", 0),
        ("FREQ=HOURLY", "20261110T100000Z", 0),
        ("FREQ=DAILY;BYHOUR=0,1,2,3,4,5,6;BYMINUTE=0,10,20,30,40,50", "20261110T100000Z", 0),
        ("FREQ=DAILY;COUNT=0", "20261110T100000Z", 1),
        ("FREQ=DAILY;COUNT=1000000000", "20261110T100000Z", ics.MAX_INSTANCES),
        ("FREQ=DAILY;UNTIL=20200101T000000Z", "20261110T100000Z", 1),
        ("FREQ=DAILY;INTERVAL=0", "20261110T100000Z", 100),
        ("FREQ=WEEKLY;INTERVAL=99999", "20261110T100000Z", 1),
        ("FREQ=WEEKLY;BYDAY=XX,99ZZ", "20261110T100000Z", 0),
        ("FREQ=MONTHLY;BYMONTH=4;BYMONTHDAY=31", "20261110T100000Z", 0),
        ("FREQ=DAILY", "15000101T100000Z", 0),
        ("FREQ=YEARLY", "19500101T100000Z", 1),  # a birthday series: fine
        ("FREQ=NEVER", "20261110T100000Z", 0),
        ("", "20261110T100000Z", 1),
        ("FREQ=WEEKLY;UNTIL=garbage", "20261110T100000Z", 10),
    ],
)
def test_recurrence_oddities_are_bounded(rule: str, start: str, at_most: int) -> None:
    events = read_ics(_with_rule(rule, start))
    series = [e for e in events if e.key.uid == "series"]
    assert len(series) <= at_most
    assert [e.key.uid for e in events if e.key.uid == "single"] == ["single"]


def test_not_icalendar_at_all_is_a_provider_error() -> None:
    for data in (b"", b"<html><body>Sign in</body></html>", b"\x00\xff" * 100):
        with pytest.raises(ProviderError, match="not valid iCalendar"):
            ics.events_from_ics(data, "feed", WINDOW, OWN)


def test_pasted_calendars_and_a_bare_event_are_read() -> None:
    one = event_ics("a", NORTHWIND_START, NORTHWIND_START + timedelta(hours=1), title="Interview")
    two = event_ics("b", NORTHWIND_START, NORTHWIND_START + timedelta(hours=1), title="Interview")
    assert {e.key.uid for e in read_ics(one + two)} == {"a", "b"}
    bare = one.split("BEGIN:VEVENT", 1)[1].split("END:VCALENDAR")[0]
    assert [e.key.uid for e in read_ics("BEGIN:VEVENT" + bare)] == ["a"]


# --- iCalendar: mutation and generation -----------------------------------------------------


def _mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    lines = data.splitlines(keepends=True)
    for op, at, value in ops:
        if not lines:
            break
        i = at % len(lines)
        if op == 0:  # flip a byte
            line = bytearray(lines[i])
            if line:
                line[value % len(line)] ^= 1 << (value % 8)
            lines[i] = bytes(line)
        elif op == 1:  # drop a line
            del lines[i]
        elif op == 2:  # duplicate a line
            lines.insert(i, lines[i])
        elif op == 3:  # truncate the document
            lines = lines[:i]
        elif op == 4:  # swap two lines
            j = value % len(lines)
            lines[i], lines[j] = lines[j], lines[i]
    return b"".join(lines)


@FUZZ
@given(
    sample=st.sampled_from(ICS_SAMPLES),
    ops=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 10_000), st.integers(0, 255)),
                 max_size=8),
)
def test_mutated_calendars_never_crash(sample: Path, ops: list[tuple[int, int, int]]) -> None:
    read_ics(_mutate(sample.read_bytes(), ops))


_RULE_PART = st.one_of(
    st.sampled_from(["FREQ=YEARLY", "FREQ=MONTHLY", "FREQ=WEEKLY", "FREQ=DAILY",
                     "FREQ=HOURLY", "FREQ=MINUTELY", "FREQ=SECONDLY", "FREQ=junk"]),
    st.integers(-5, 10**9).map(lambda n: f"INTERVAL={n}"),
    st.integers(-5, 10**9).map(lambda n: f"COUNT={n}"),
    st.sampled_from(["UNTIL=19000101T000000Z", "UNTIL=20270101", "UNTIL=99991231T235959Z",
                     "UNTIL=soon"]),
    st.lists(st.sampled_from(["MO", "TU", "-1FR", "2SU", "XX", "53MO", ""]), max_size=4)
    .map(lambda d: "BYDAY=" + ",".join(d)),
    st.lists(st.integers(-32, 32), max_size=4).map(lambda d: "BYMONTHDAY=" + ",".join(map(str, d))),
    st.lists(st.integers(0, 13), max_size=3).map(lambda d: "BYMONTH=" + ",".join(map(str, d))),
    st.lists(st.integers(-400, 400), max_size=3).map(lambda d: "BYSETPOS=" + ",".join(map(str, d))),
    st.lists(st.integers(0, 24), max_size=5).map(lambda d: "BYHOUR=" + ",".join(map(str, d))),
    st.sampled_from(["WKST=SU", "WKST=ZZ", "BYWEEKNO=20", "BYYEARDAY=-1", "X-JUNK=1"]),
)


@pytest.mark.slow
@FUZZ
@given(parts=st.lists(_RULE_PART, min_size=1, max_size=5),
       start=st.sampled_from(["20261110T100000Z", "20261110", "19990101T100000",
                              "20261110T100000Z\r\nEXDATE:20261111T100000Z"]))
def test_generated_rules_never_crash_and_stay_bounded(parts: list[str], start: str) -> None:
    events = read_ics(_with_rule(";".join(parts), start))
    assert sum(e.key.uid == "series" for e in events) <= ics.MAX_INSTANCES
    assert [e.key.uid for e in events if e.key.uid == "single"] == ["single"]


_PARAM = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)


@FUZZ
@given(
    cn=_PARAM, partstat=_PARAM, cutype=_PARAM, address=_PARAM,
    organizer=st.sampled_from(["mailto:dana@acme.test", "dana@acme.test", "MAILTO:", "", "x:y:z"]),
    newline=st.sampled_from(["\r\n", "\n"]), bom=st.booleans(),
)
def test_attendee_and_organizer_junk_never_crashes(
    cn: str, partstat: str, cutype: str, address: str, organizer: str, newline: str, bom: bool
) -> None:
    def quoted(value: str) -> str:
        return '"' + value.replace('"', "").replace("\r", "").replace("\n", "") + '"'

    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "BEGIN:VEVENT", "UID:x", "DTSTART:20261117T170000Z",
        "SUMMARY:Interview", f"ORGANIZER;CN={quoted(cn)}:{organizer}",
        f"ATTENDEE;CN={quoted(cn)};PARTSTAT={quoted(partstat)};CUTYPE={quoted(cutype)}:"
        f"mailto:{address.replace(chr(13), '').replace(chr(10), '')}",
        "ATTENDEE:mailto:ok@acme.test", "END:VEVENT", "END:VCALENDAR", "",
    ]
    data = ("\ufeff" if bom else "") + newline.join(lines)
    events = read_ics(data)
    assert [e.key.uid for e in events] == ["x"]
    assert "ok@acme.test" in {a.email for a in events[0].attendees}


# --- mail headers and bodies ----------------------------------------------------------------


def _candidates() -> list[classify.Candidate]:
    return [classify.Candidate(
        interview_id=1, attendees=(LEAD,), employer_domains=("northwind-robotics.com",),
        company="Northwind Robotics", start=END - timedelta(hours=1), end=END,
    )]


def _through_classification(headers: MailHeaders) -> None:
    assert isinstance(headers, MailHeaders)
    assert len(headers.excerpt) <= 2_000
    verdict = classify.classify(headers, OWN)
    assert verdict.reason
    found, how = classify.match(headers, _candidates(), {"<known@x>": 1}, OWN)
    assert found in (None, 1) and isinstance(how, str)
    assert classify.sender_authentication(headers).verdict in ("pass", "fail", "none")


@FUZZ
@given(
    sample=st.sampled_from(MAIL_SAMPLES),
    ops=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 10_000), st.integers(0, 255)),
                 max_size=8),
)
def test_mutated_mail_never_crashes(sample: Path, ops: list[tuple[int, int, int]]) -> None:
    raw = _mutate(sample.read_bytes(), ops)
    _through_classification(mailparse.headers_from_bytes(raw, folder=Folder.INBOX,
                                                         provider_id="1"))


@FUZZ
@given(raw=st.binary(max_size=2_000))
def test_random_bytes_as_mail_never_crash(raw: bytes) -> None:
    _through_classification(mailparse.headers_from_bytes(raw, folder=Folder.INBOX,
                                                         provider_id="1"))


_HEADER_NAMES = st.sampled_from([
    "From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
    "Auto-Submitted", "Precedence", "List-Id", "Content-Type", "X-Autoreply",
    "X-MS-Exchange-Inbox-Rules-Loop", "Return-Path", "Reply-To", "",
])
_HEADER_VALUES = st.one_of(
    st.text(max_size=200),
    st.sampled_from([
        "=?utf-8?B?SW50ZXJ2aWV3?=", "=?utf-8?Q?=E2=82=AC_broken", "=?x-unknown?B?////?=",
        "=?utf-8?B?not base64!?=", "\"Dana, Whitfield\" <dana@northwind-robotics.com>",
        "<a@b>, , ,<@>", "undisclosed-recipients:;", "Tue, 31 Feb 2026 99:99:99 +9999",
        "multipart/report; report-type=delivery-status; boundary=", "<" * 500,
        "Re: " * 200, "\x00\x01\x7f", "auto-replied",
    ]),
)


@FUZZ
@given(fields=st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=12),
       excerpt=st.text(max_size=300), folder=st.sampled_from(list(Folder)))
def test_header_fields_from_apis_never_crash(
    fields: list[tuple[str, str]], excerpt: str, folder: Folder
) -> None:
    _through_classification(mailparse.headers_from_fields(
        fields, folder=folder, provider_id="g1", excerpt=excerpt))


def _peak(run: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = run()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("header", ["Subject", "References", "To", "X-Junk"])
def test_a_one_megabyte_header_stays_bounded(header: str) -> None:
    value = {"Subject": "Interview " * 100_000, "References": " ".join(
        f"<m{i}@x.test>" for i in range(80_000)), "To": ", ".join(
        f"p{i}@x.test" for i in range(50_000)), "X-Junk": "x" * 1_000_000}[header]
    raw = (f"From: Dana <{LEAD}>\r\n{header}: {value}\r\nMessage-ID: <big@x>\r\n\r\nHello\r\n"
           ).encode()
    headers, peak = _peak(lambda: mailparse.headers_from_bytes(raw, folder=Folder.INBOX,
                                                                provider_id="big"))
    _through_classification(headers)
    assert peak < 200 * 1024 * 1024  # generous: a few copies of the megabyte, not thousands


def test_deeply_nested_multipart_is_bounded() -> None:
    depth = 400
    head = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'
                   for i in range(depth))
    tail = "".join(f"\r\n--b{i}--\r\n" for i in reversed(range(depth)))
    raw = (f"From: {LEAD}\r\nSubject: Re: Interview\r\nMIME-Version: 1.0\r\n{head}"
           f"Content-Type: text/plain\r\n\r\nThanks for coming in.{tail}").encode()
    _through_classification(mailparse.headers_from_bytes(raw, folder=Folder.INBOX,
                                                         provider_id="deep"))


def test_a_megabyte_body_gives_a_short_excerpt() -> None:
    raw = (f"From: {LEAD}\r\nSubject: Re: Interview\r\n\r\n" + "word " * 220_000).encode()
    headers = mailparse.headers_from_bytes(raw, folder=Folder.INBOX, provider_id="b")
    assert 0 < len(headers.excerpt) <= 600
    _through_classification(headers)


# --- Graph and Gmail JSON -------------------------------------------------------------------

_JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=30),
                       st.sampled_from(["2026-11-17T17:00:00.0000000", "2026-11-17", "Z", ""]))
_JSON = st.recursive(_JSON_LEAF, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)),
    max_leaves=10)


def _graph_event() -> dict[str, Any]:
    return {
        "id": "AAMk1", "type": "singleInstance", "subject": "Interview with Northwind",
        "start": {"dateTime": "2026-11-17T17:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2026-11-17T18:00:00.0000000", "timeZone": "UTC"},
        "organizer": {"emailAddress": {"name": "Dana", "address": LEAD}},
        "attendees": [{"type": "required", "status": {"response": "accepted"},
                       "emailAddress": {"name": "Dana", "address": LEAD}}],
        "body": {"content": "See you"}, "location": {"displayName": "Teams"},
        "isAllDay": False, "isCancelled": False, "responseStatus": {"response": "accepted"},
    }


_GRAPH_KEYS = st.sampled_from(["id", "type", "subject", "start", "end", "organizer",
                               "attendees", "body", "location", "isAllDay", "isCancelled",
                               "responseStatus", "seriesMasterId", "originalStart"])


@FUZZ
@given(changes=st.dictionaries(_GRAPH_KEYS, _JSON, max_size=4),
       drop=st.lists(_GRAPH_KEYS, max_size=3))
def test_graph_events_with_junk_map_or_raise_the_documented_errors(
    changes: dict[str, Any], drop: list[str]
) -> None:
    item = {**_graph_event(), **changes}
    for key in drop:
        item.pop(key, None)
    try:
        event, key = outlook.event_from_graph(item, OWN)
    except outlook.UNREADABLE:
        return
    assert isinstance(event, Event) and event.key == key


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(
    ["from", "toRecipients", "ccRecipients", "subject", "internetMessageId",
     "receivedDateTime", "sentDateTime", "internetMessageHeaders", "bodyPreview"]), _JSON,
    max_size=4))
def test_graph_messages_with_junk_map_or_raise_the_documented_errors(
    changes: dict[str, Any]
) -> None:
    item = {"id": "m1", "from": {"emailAddress": {"address": LEAD, "name": "Dana"}},
            "subject": "Re: Interview", "receivedDateTime": "2026-11-18T10:00:00Z", **changes}
    try:
        fields = outlook._fields(item)
    except outlook.UNREADABLE:
        return
    _through_classification(mailparse.headers_from_fields(fields, folder=Folder.INBOX,
                                                          provider_id="m1"))


def test_one_unreadable_graph_event_does_not_stop_the_calendar(world: World) -> None:
    class Pages:
        base = "https://graph.test/v1.0"

        def pages(self, *args: Any) -> Any:
            yield {"value": [{"id": "broken", "start": None}, _graph_event(),
                             {"id": "typed", "start": {"dateTime": 5}, "end": []}],
                   "@odata.deltaLink": "https://graph.test/delta?token=1"}

        def close(self) -> None:
            pass

    calendar = outlook.OutlookCalendar(world.account, Pages())  # type: ignore[arg-type]
    batch = calendar.changes(None, WINDOW)
    assert [e.key.uid for e in batch.events] == ["AAMk1"]


# The Gmail provider is someone else's file: these tests record what a fuzz run found.


def _google_event(**changes: Any) -> dict[str, Any]:
    item = {"id": "g1", "status": "confirmed", "summary": "Interview with Northwind",
            "start": {"dateTime": "2026-11-17T17:00:00Z"},
            "end": {"dateTime": "2026-11-17T18:00:00Z"},
            "organizer": {"email": LEAD},
            "attendees": [{"email": LEAD}, {"email": USER, "self": True}]}
    item.update(changes)
    return item


@pytest.mark.parametrize("bad", [
    {"status": "weird"},  # ValueError: not an EventStatus
    {"start": {"dateTime": "tomorrow"}},  # ValueError from fromisoformat
    {"start": {"timeZone": "UTC"}},  # KeyError: neither dateTime nor date
    {"attendees": [{"email": None}, "junk"]},  # AttributeError on a string attendee
    {"recurringEventId": "s1"},  # KeyError: originalStartTime missing
])
def test_one_malformed_google_event_does_not_stop_the_calendar(
    world: World, bad: dict[str, Any]
) -> None:
    from mailbridge_providers import gmail

    class Api:
        def pages(self, method: str, **params: Any) -> Any:
            yield {"items": [_google_event(id="bad", **bad), _google_event()],
                   "nextSyncToken": "t1"}

    calendar = gmail.GoogleCalendar(world.account, api=Api())  # type: ignore[arg-type]
    batch = calendar.changes(None, WINDOW)
    assert "g1" in [e.key.uid for e in batch.events]
    assert [(s.what, s.uid) for s in batch.skipped] == [("event 'bad' of 'primary'", "bad")]


# --- detection and composition over any Event ------------------------------------------------

_TEXT = st.text(max_size=60)
_EMAILS = st.one_of(
    st.sampled_from([LEAD, USER, "priya@northwind-robotics.com", "bob@gmail.com",
                     "noreply@greenhouse.io", "room@resource.calendar.google.com", "", "@",
                     "a@b@c", "UPPER@NORTHWIND-ROBOTICS.COM", "x@localhost", "é@ü.de"]),
    st.emails(), _TEXT,
)
_ATTENDEES = st.builds(
    Attendee, email=_EMAILS, name=_TEXT, kind=st.sampled_from(list(AttendeeKind)),
    response=st.sampled_from(list(Response)), is_self=st.booleans(), is_organizer=st.booleans(),
)
_MOMENTS = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30),
                        timezones=st.just(UTC))
_EVENTS = st.builds(
    Event,
    key=st.builds(EventKey, calendar=_TEXT, uid=_TEXT, instance=_TEXT),
    title=st.one_of(_TEXT, st.just("Interview: Senior Engineer - Northwind Robotics")),
    start=_MOMENTS, end=_MOMENTS, description=st.text(max_size=300), location=_TEXT,
    all_day=st.booleans(), status=st.sampled_from(list(EventStatus)),
    organizer=st.one_of(st.none(), st.builds(Person, email=_EMAILS, name=_TEXT)),
    attendees=st.lists(_ATTENDEES, max_size=6).map(tuple), recurring=st.booleans(),
)


@FUZZ
@given(event=_EVENTS)
def test_detection_and_drafts_for_any_event(event: Event, tmp_path_factory: Any) -> None:
    account = _account(tmp_path_factory)
    found = detect.detect(event, OWN, ("example.com",), DetectionRules())
    assert found.reason
    if not found.is_interview:
        return
    interview = InterviewRow(
        id=1, account="me", key=event.key, title=event.title, company=found.company,
        role=found.role, start=event.start, end=event.end, state=InterviewState.ACTIVE,
        attendees=found.attendees, lead=found.lead, employer_domains=found.employer_domains,
    )
    for person in found.attendees:
        for kind in DraftKind:
            try:
                draft = compose.render(kind, interview, person, account)
            except compose.ComposeError:
                continue  # documented: an address that cannot be written into a header
            assert draft.raw and (b"\r\n\r\n" in draft.raw or b"\n\n" in draft.raw)


_ACCOUNT: list[Any] = []


def _account(factory: Any) -> Any:
    if not _ACCOUNT:
        world = World(factory.mktemp("fuzz-account"))
        _ACCOUNT.append(world.account)
        world.ledger.close()
    return _ACCOUNT[0]


@FUZZ
@given(name=st.text(max_size=80), email=_EMAILS, company=_TEXT, role=_TEXT, notes=st.text())
def test_composition_with_any_names_and_notes(
    name: str, email: str, company: str, role: str, notes: str, tmp_path_factory: Any
) -> None:
    account = _account(tmp_path_factory)
    interview = InterviewRow(
        id=1, account="me", key=EventKey("c", "u"), title="Interview", company=company,
        role=role, start=END - timedelta(hours=1), end=END, state=InterviewState.ACTIVE,
        attendees=(Person(email, name),), lead=Person(email, name), notes=notes,
    )
    try:
        draft = compose.render(DraftKind.THANK_YOU, interview, Person(email, name), account)
    except compose.ComposeError as exc:
        assert str(exc)  # a sentence, not a traceback
        return
    assert draft.message_id.startswith("<") and draft.to.email == email


# --- end to end: a broken calendar file next to a good one ---------------------------------


@pytest.fixture
def world(tmp_path: Path) -> Any:
    w = World(tmp_path)
    yield w
    w.ledger.close()


def test_broken_calendar_files_do_not_stop_the_good_interview(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.add_interview("iv1")
    calendar = world.root / "calendar"
    (calendar / "broken_mix.ics").write_bytes((DATA / "ics" / "broken_mix.ics").read_bytes())
    (calendar / "truncated.ics").write_bytes((DATA / "ics" / "truncated.ics").read_bytes())
    outlook_file = (DATA / "ics" / "outlook_display_tzid.ics").read_bytes()
    (calendar / "mutated.ics").write_bytes(outlook_file.replace(b"DTSTART;", b"DTSTART;\xff", 1)
                                           .replace(b"END:VCALENDAR", b"END:VCALEN"))
    with caplog.at_level(logging.WARNING, logger="mailbridge"):
        world.run(END + timedelta(hours=3))
    recipients = sorted(m["To"].addresses[0].addr_spec for m in world.messages("Drafts"))
    assert LEAD in recipients and "priya.raman@northwind-robotics.com" in recipients
    assert "skipped event 'every-second'" in caplog.text


def test_a_file_that_is_not_icalendar_does_not_stop_the_folder(world: World) -> None:
    world.add_interview("iv1")
    (world.root / "calendar" / "junk.ics").write_bytes(b"<html>Sign in to continue</html>")
    world.run(END + timedelta(hours=3))
    assert world.messages("Drafts")
    skipped = [a.reason for a in world.ledger.audit_entries() if a.decision == "event skipped"]
    assert len(skipped) == 1 and "junk.ics" in skipped[0]


def test_an_event_the_engine_cannot_use_is_audited_and_the_rest_go_on(world: World) -> None:
    """The engine's own net: an event that fails after mapping is skipped with an audit entry."""
    world.add_interview("iv1")
    account = world.account
    good = world.root / "calendar" / "iv1.ics"
    events = read_ics(good.read_bytes()) or ics.events_from_ics(
        good.read_bytes(), "iv1.ics", Window(END - timedelta(days=5), END + timedelta(days=5)),
        account.own_addresses)
    # An event the ledger cannot store: a provider handed over a title that is not text.
    bad = replace(events[0], key=replace(events[0].key, uid="odd"), title=None)  # type: ignore[arg-type]

    class Calendar:
        def changes(self, cursor: str | None, window: Window) -> Any:
            from mailbridge.model import CalendarBatch
            return CalendarBatch(events=(bad, events[0]), complete=True, cursor="c")

        def close(self) -> None:
            pass

    from mailbridge import engine
    report = engine.reconcile(account, world.ledger, now=END + timedelta(hours=3),
                              calendar=Calendar())
    assert report.error is None
    decisions = [(a.decision, a.reason) for a in world.ledger.audit_entries(account.name)]
    assert any(d == "event skipped" and "'odd'" in r for d, r in decisions), decisions
    assert world.messages("Drafts")


# --- huge inputs, light (bench/huge_inputs.py measures the full sizes) ----------------------


def _big_calendar(events: int, attendees: int = 2, description: str = "") -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0"]
    for n in range(events):
        start = NORTHWIND_START + timedelta(minutes=7 * n)
        lines += ["BEGIN:VEVENT", f"UID:big-{n}", f"DTSTART:{start:%Y%m%dT%H%M%SZ}",
                  "DURATION:PT1H", f"SUMMARY:Interview {n}", f"DESCRIPTION:{description}"]
        lines += [f"ATTENDEE;CN=P {i}:mailto:p{i}@northwind-robotics.com"
                  for i in range(attendees)]
        lines += [f"ATTENDEE:mailto:{OWN[0]}", "END:VEVENT"]
    return "\r\n".join([*lines, "END:VCALENDAR", ""])


@pytest.mark.parametrize(
    ("events", "attendees", "description"),
    [(300, 2, "x"), (1, 500, "x"), (1, 2, "word " * 210_000)],
    ids=["300 events", "500 attendees", "1 MB description"],
)
def test_huge_calendars_stay_bounded(events: int, attendees: int, description: str) -> None:
    data = _big_calendar(events, attendees, description)
    found, peak = _peak(lambda: read_ics(data))
    assert len(found) == events
    assert len(found[0].attendees) == attendees + 1
    verdicts = [detect.detect(e, OWN, ("example.com",), DetectionRules(max_attendees=1000))
                for e in found[:50]]
    assert all(v.reason for v in verdicts)
    assert peak < 50 * len(data) + 64 * 1024 * 1024  # generous: proportional, no blow-up
