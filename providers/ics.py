"""An iCalendar feed at a URL (a "secret address" / webcal link) as a mailbridge `CalendarSource`.

What maps to what:

- ``changes`` GETs ``account.calendar.url`` (``webcal://`` means https; plain http only to this
  machine) with ``If-None-Match`` / ``If-Modified-Since`` from the cursor. 304 -> an empty
  batch and the same cursor; 200 -> every event of the window, ``complete=True``. The cursor is
  JSON: the ETag, Last-Modified and the window start it was made for.
- ``events_from_ics`` is the iCalendar -> `Event` mapping shared with the CalDAV and local file
  providers: recurring series are expanded inside the window (``recurring_ical_events``), each
  instance keyed by its original start (``EventKey.instance`` = ISO UTC, or the ISO date of an
  all-day instance; "" for a single event); ORGANIZER and ATTENDEE (mailto:, CN, CUTYPE,
  PARTSTAT), STATUS and all-day (DATE values) are translated; the user's own attendee (an
  address in ``own_addresses``) is marked ``is_self``. Floating times are read in
  ``default_tz``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events
import requests

from mailbridge.adapters import AuthError, ProviderError
from mailbridge.model import (
    Attendee,
    AttendeeKind,
    CalendarBatch,
    Event,
    EventKey,
    EventStatus,
    Person,
    Response,
    Window,
)
from mailbridge.settings import AccountSettings

TIMEOUT = (10.0, 60.0)  # connect, read (seconds)
MAX_FEED_BYTES = 50 * 1024 * 1024

_KINDS = {
    "INDIVIDUAL": AttendeeKind.PERSON,
    "ROOM": AttendeeKind.RESOURCE,
    "RESOURCE": AttendeeKind.RESOURCE,
    "GROUP": AttendeeKind.GROUP,
    "UNKNOWN": AttendeeKind.UNKNOWN,
}
_RESPONSES = {
    "ACCEPTED": Response.ACCEPTED,
    "DECLINED": Response.DECLINED,
    "TENTATIVE": Response.TENTATIVE,
    "NEEDS-ACTION": Response.NEEDS_ACTION,
}
_STATUSES = {
    "CANCELLED": EventStatus.CANCELLED,
    "TENTATIVE": EventStatus.TENTATIVE,
    "CONFIRMED": EventStatus.CONFIRMED,
}


# --- iCalendar -> Event ----------------------------------------------------------------


def events_from_ics(
    data: bytes | str,
    calendar_id: str,
    window: Window,
    own_addresses: Iterable[str],
    *,
    default_tz: str = "UTC",
) -> list[Event]:
    """Every event instance of an iCalendar document that overlaps ``window``."""
    try:
        calendar = icalendar.Calendar.from_ical(data)
    except ValueError as exc:
        raise ProviderError(f"calendar {calendar_id!r}: not valid iCalendar data ({exc})") from None
    own = {a.lower() for a in own_addresses}
    floating = _zone(default_tz)
    # Which UIDs are series: recurring_ical_events sets RECURRENCE-ID on every occurrence,
    # single events included, so the source components decide.
    series = {
        str(c.get("UID", ""))
        for c in calendar.walk("VEVENT")
        if "RRULE" in c or "RDATE" in c or "RECURRENCE-ID" in c
    }
    try:
        occurrences = recurring_ical_events.of(calendar).between(window.start, window.end)
    except Exception as exc:  # noqa: BLE001 - the library raises many kinds on broken rules
        raise ProviderError(
            f"calendar {calendar_id!r}: cannot expand recurring events ({type(exc).__name__}: "
            f"{exc})"
        ) from None
    events = []
    for component in occurrences:
        event = _event(component, calendar_id, own, floating, series)
        if event is not None:
            events.append(event)
    return events


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return UTC


def _event(
    component: Any, calendar_id: str, own: set[str], floating: tzinfo, series: set[str]
) -> Event | None:
    uid = str(component.get("UID", "")).strip()
    if not uid or "DTSTART" not in component:
        return None
    raw_start = component.decoded("DTSTART")
    all_day = not isinstance(raw_start, datetime)
    start = _instant(raw_start, floating)
    if "DTEND" in component:
        end = _instant(component.decoded("DTEND"), floating)
    elif "DURATION" in component:
        end = start + component.decoded("DURATION")
    else:
        end = start + (timedelta(days=1) if all_day else timedelta(0))
    instance = ""
    if uid in series and "RECURRENCE-ID" in component:
        original = component.decoded("RECURRENCE-ID")
        instance = (
            _instant(original, floating).isoformat()
            if isinstance(original, datetime)
            else original.isoformat()
        )
    organizer = _person(component.get("ORGANIZER"))
    attendees = tuple(
        _attendee(value, own, organizer) for value in _as_list(component.get("ATTENDEE"))
    )
    status = _STATUSES.get(str(component.get("STATUS", "CONFIRMED")).upper(), EventStatus.CONFIRMED)
    return Event(
        key=EventKey(calendar=calendar_id, uid=uid, instance=instance),
        title=str(component.get("SUMMARY", "")),
        start=start,
        end=max(end, start),
        description=str(component.get("DESCRIPTION", "")),
        location=str(component.get("LOCATION", "")),
        all_day=all_day,
        status=status,
        organizer=organizer,
        attendees=tuple(a for a in attendees if a.email),
        recurring=uid in series,
    )


def _instant(value: date | datetime, floating: tzinfo) -> datetime:
    """An aware UTC datetime; an all-day date becomes midnight UTC of that date."""
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=floating)
    return value.astimezone(UTC)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _address(value: Any) -> str:
    text = str(value).strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    return text.strip().lower() if "@" in text else ""


def _person(value: Any) -> Person | None:
    if value is None:
        return None
    email = _address(value)
    if not email:
        return None
    return Person(email=email, name=str(getattr(value, "params", {}).get("CN", "")).strip())


def _attendee(value: Any, own: set[str], organizer: Person | None) -> Attendee:
    params = getattr(value, "params", {})
    email = _address(value)
    return Attendee(
        email=email,
        name=str(params.get("CN", "")).strip(),
        kind=_KINDS.get(str(params.get("CUTYPE", "INDIVIDUAL")).upper(), AttendeeKind.UNKNOWN),
        response=_RESPONSES.get(str(params.get("PARTSTAT", "")).upper(), Response.UNKNOWN),
        is_self=email in own,
        is_organizer=organizer is not None and email == organizer.email,
    )


# --- the feed --------------------------------------------------------------------------


def feed_url(url: str, *, account: str = "") -> str:
    """The URL to GET: webcal:// means https; plain http only to this machine."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme in ("webcal", "webcals"):
        parts = parts._replace(scheme="https")
    elif scheme == "http":
        host = (parts.hostname or "").lower()
        if host not in ("localhost", "127.0.0.1", "::1"):
            raise ProviderError(
                f"account {account!r}: calendar.url {url!r} uses plain http; use https "
                "(http is only allowed to this machine)"
            )
    elif scheme != "https":
        raise ProviderError(f"account {account!r}: calendar.url {url!r} is not an http(s) URL")
    return urlunsplit(parts)


class IcsFeed:
    def __init__(self, account: AccountSettings, *, session: requests.Session | None = None):
        if not account.calendar.url:
            raise ProviderError(f"account {account.name!r}: calendar.url is not set")
        self.account = account
        self.url = feed_url(account.calendar.url, account=account.name)
        self.session = session or requests.Session()

    def changes(self, cursor: str | None, window: Window) -> CalendarBatch:
        state = _load(cursor)
        headers = {"Accept": "text/calendar"}
        # A validator only counts for the same window: a new day needs the events it adds.
        if state.get("window") == window.start.date().isoformat():
            if state.get("etag"):
                headers["If-None-Match"] = state["etag"]
            if state.get("modified"):
                headers["If-Modified-Since"] = state["modified"]
        name = self.account.name
        try:
            response = self.session.get(self.url, headers=headers, timeout=TIMEOUT, stream=True)
            if response.status_code == 304:
                return CalendarBatch(events=(), complete=False, cursor=cursor)
            body = _read_limited(response)
        except requests.RequestException as exc:
            raise ProviderError(
                f"account {name!r}: cannot fetch the calendar feed ({type(exc).__name__})"
            ) from None
        if response.status_code in (401, 403):
            raise AuthError(
                f"account {name!r}: the calendar feed refused access ({response.status_code}); "
                "check calendar.url (secret addresses change when reset)"
            )
        if response.status_code != 200:
            raise ProviderError(
                f"account {name!r}: the calendar feed answered HTTP {response.status_code}"
            )
        events = events_from_ics(
            body,
            self.url,
            window,
            self.account.own_addresses,
            default_tz=self.account.policy.timezone,
        )
        new_state = {
            "etag": response.headers.get("ETag", ""),
            "modified": response.headers.get("Last-Modified", ""),
            "window": window.start.date().isoformat(),
        }
        return CalendarBatch(events=tuple(events), complete=True, cursor=json.dumps(new_state))

    def close(self) -> None:
        self.session.close()


def _load(cursor: str | None) -> dict[str, str]:
    try:
        data = json.loads(cursor or "{}")
    except ValueError:
        return {}
    return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _read_limited(response: requests.Response) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_content(65536):
        size += len(chunk)
        if size > MAX_FEED_BYTES:
            raise ProviderError("the calendar feed is larger than 50 MB; refusing to read it")
        chunks.append(chunk)
    return b"".join(chunks)


def open_calendar(account: AccountSettings) -> IcsFeed:
    return IcsFeed(account)
