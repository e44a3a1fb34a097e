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

import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events
import requests

from mailbridge import domains, retry
from mailbridge.adapters import AuthError, CalendarSource, ProviderConfig, ProviderError
from mailbridge.config import FORBID, FeedAddress, Text, doc
from mailbridge.model import (
    Attendee,
    AttendeeKind,
    CalendarBatch,
    Event,
    EventKey,
    EventStatus,
    Person,
    Response,
    Unreadable,
    Window,
)
from mailbridge.settings import AccountSettings

# --- settings: calendar kind "ics" ----------------------------------------------------------

UserName = Annotated[Text | None, doc("the user name, when the server asks for one",
                                      "you@example.com")]
PasswordCommand = Annotated[Text | None, doc(
    "a command that prints the password; default: the keyring", "pass show mail/calendar")]


@dataclass(frozen=True)
class IcsCalendarSettings:
    __pydantic_config__ = FORBID
    url: Annotated[FeedAddress, doc("the feed (https://, or webcal://)",
                                    "https://example.com/calendar.ics")]
    username: UserName = None
    password_command: PasswordCommand = None


CONFIG = ProviderConfig(calendars={"ics": IcsCalendarSettings})

log = logging.getLogger("mailbridge")

CONNECT_TIMEOUT = 10.0  # seconds; the read timeout is the retry policy's
POLICY = retry.RetryPolicy(attempts=3, timeout=60.0)  # a feed is read again next pass anyway
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
    skipped: list[Unreadable] | None = None,
) -> list[Event]:
    """Every event instance of an iCalendar document that overlaps ``window``.

    Other people's calendars are often broken. One bad event (unreadable date, broken rule,
    a series that would repeat every second) is dropped with a log line and the rest of the
    document is still read; a truncated document yields the events it holds completely.
    Raises `ProviderError` only when the data is not iCalendar at all. Dropped events are
    also appended to ``skipped``, when given, for the audit log.
    """
    sink: list[Unreadable] = skipped if skipped is not None else []
    calendar = _parse(data, calendar_id)
    own = domains.own_keys(own_addresses)
    floating = _zone(default_tz)
    groups: dict[str, list[Any]] = {}
    for component in calendar.walk("VEVENT"):
        _drop_broken_extras(component)
        _drop_far_rules(component)
        groups.setdefault(str(component.get("UID", "")).strip(), []).append(component)
    groups.pop("", None)  # without a UID an event cannot be tracked from one sync to the next
    groups = {uid: _one_master(parts) for uid, parts in groups.items()}
    # Which UIDs are series: recurring_ical_events sets RECURRENCE-ID on every occurrence,
    # single events included, so the source components decide.
    series = {
        uid for uid, parts in groups.items()
        if any("RRULE" in c or "RDATE" in c or "RECURRENCE-ID" in c for c in parts)
    }
    zones = {uid: _named_zone(parts[0]) for uid, parts in groups.items()}
    timezones = list(calendar.walk("VTIMEZONE"))
    wr_zone = calendar.get("X-WR-TIMEZONE")
    events: list[Event] = []
    budget = _Budget(EXPANSION_SECONDS)

    def expand(uids: list[str]) -> list[Any]:
        sub = icalendar.Calendar()
        if wr_zone is not None:
            sub.add("X-WR-TIMEZONE", wr_zone)
        for tz in timezones:
            sub.add_component(tz)
        for uid in uids:
            for part in groups[uid]:
                sub.add_component(part)
        found: list[Any] = list(recurring_ical_events.of(sub).between(window.start, window.end))
        # Series are expanded one at a time: the cap bounds what one rule may add.
        return found if len(uids) != 1 else found[:MAX_INSTANCES]

    def keep(occurrences: list[Any]) -> None:
        for component in occurrences:
            uid = str(component.get("UID", "")).strip()
            try:
                event = _event(component, calendar_id, own, zones.get(uid) or floating, series)
            except Exception as exc:  # noqa: BLE001 - one unreadable event must not stop the rest
                _skip(calendar_id, uid, exc, sink)
                continue
            if event is not None and _overlaps(event, window):
                events.append(event)

    singles = [uid for uid in groups if uid not in series]
    try:
        keep(expand(singles))  # one pass for plain events; a broken one sends us uid by uid
    except Exception:  # noqa: BLE001 - the library raises many kinds on broken data
        for uid in singles:
            _expand_one(uid, expand, keep, calendar_id, budget, sink)
    for uid in sorted(series):
        problem = _series_problem(groups[uid], window)
        if problem:
            _skip(calendar_id, uid, problem, sink)
            continue
        _expand_one(uid, expand, keep, calendar_id, budget, sink)
    return events


# Bounds on what one document may cost: other people's data must not hang the service.
MAX_INSTANCES = 400  # instances of one series inside the window
MAX_PERIODS = 50_000  # rule periods from a series' start to the window's end
EXPANSION_SECONDS = 20.0  # after this much expansion work, further series are skipped
_PERIOD_SECONDS = {
    "YEARLY": 366 * 86400, "MONTHLY": 28 * 86400, "WEEKLY": 7 * 86400, "DAILY": 86400,
}


class _Budget:
    def __init__(self, seconds: float) -> None:
        self.left = seconds

    def spend(self, seconds: float) -> None:
        self.left -= seconds


def _expand_one(
    uid: str,
    expand: Callable[[list[str]], list[Any]],
    keep: Callable[[list[Any]], None],
    calendar_id: str,
    budget: _Budget,
    sink: list[Unreadable],
) -> None:
    if budget.left <= 0:
        _skip(calendar_id, uid, "the document took too long to expand; skipped the rest", sink)
        return
    began = time.monotonic()
    try:
        keep(expand([uid]))
    except Exception as exc:  # noqa: BLE001 - the library raises many kinds on broken rules
        _skip(calendar_id, uid, exc, sink)
    finally:
        budget.spend(time.monotonic() - began)


def _skip(calendar_id: str, uid: str, why: object, sink: list[Unreadable]) -> None:
    reason = f"{type(why).__name__}: {why}" if isinstance(why, BaseException) else str(why)
    log.warning("calendar %r: skipped event %r (%s)", calendar_id, uid[:200], reason[:300])
    sink.append(Unreadable(f"event {uid[:200]!r} in {calendar_id}", reason[:300], uid=uid))


def _parse(data: bytes | str, calendar_id: str) -> Any:
    """The calendar in ``data``; a truncated or concatenated document is read as far as it goes."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.lstrip("\ufeff")
    try:
        return icalendar.Calendar.from_ical(text)
    except Exception:  # noqa: BLE001 - repaired below, or reported as not iCalendar
        pass
    try:
        return _repaired(text)
    except Exception as exc:  # noqa: BLE001 - anything here means "not iCalendar"
        raise ProviderError(
            f"calendar {calendar_id!r}: not valid iCalendar data ({str(exc)[:200]})"
        ) from None


_END_EVENT = re.compile(r"^END:VEVENT[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_BEGIN = re.compile(r"^BEGIN:(VCALENDAR|VEVENT)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)


def _repaired(text: str) -> Any:
    """Every complete VEVENT (and VTIMEZONE) of a document the strict parser refused.

    Covers a download cut off midway, several calendars pasted into one file and a bare
    VEVENT without its VCALENDAR; a component that is not complete is left out.
    """
    if not _BEGIN.search(text):
        raise ValueError("no BEGIN:VCALENDAR or BEGIN:VEVENT line")
    merged = icalendar.Calendar()
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    block: list[str] = []
    depth = 0
    for line in lines:
        upper = line.strip().upper()
        if upper in ("BEGIN:VEVENT", "BEGIN:VTIMEZONE") and depth == 0:
            block, depth = [line], 1
            continue
        if depth:
            block.append(line)
            if upper.startswith("BEGIN:"):
                depth += 1
            elif upper.startswith("END:"):
                depth -= 1
                if depth == 0:
                    with contextlib.suppress(Exception):
                        for part in icalendar.Calendar.from_ical("\r\n".join(block), multiple=True):
                            merged.add_component(part)
            if upper in ("BEGIN:VEVENT", "BEGIN:VTIMEZONE") and depth > 1 and block[0].strip(
            ).upper() == upper:
                # A component that never ended: start over from the new one.
                block, depth = [line], 1
    if not merged.subcomponents:
        raise ValueError("no complete event")
    return merged


def _drop_broken_extras(component: Any) -> None:
    """Remove an unreadable end, duration or date list, so the event itself survives them."""
    for name in ("DTEND", "DURATION", "EXDATE", "RDATE"):
        if name not in component:
            continue
        try:
            for value in _as_list(component.get(name)):
                if type(value).__name__ == "vBroken":
                    raise ValueError(name)
            component.decoded(name)
        except Exception:  # noqa: BLE001 - any failure to read it means it is broken
            del component[name]


_FAR = 100 * 365 * 86400  # seconds: a rule whose next instance is further off repeats never


def _drop_far_rules(component: Any) -> None:
    """A rule with INTERVAL=99999 means "once"; dateutil would still crawl towards year 9999."""
    rules = _rules(component)
    if not rules:
        return
    for rule in rules:
        try:
            interval = int(rule.get("INTERVAL", "1") or "1")
        except ValueError:
            return
        period = _PERIOD_SECONDS.get(rule.get("FREQ", ""))
        if period is None or interval * period <= _FAR:
            return
    del component["RRULE"]


def _one_master(parts: list[Any]) -> list[Any]:
    """Of several copies of one event (same UID, no RECURRENCE-ID) keep the newest.

    Newest is the highest SEQUENCE, then the later copy in the file: an export that appended
    an update without removing the original.
    """
    masters = [c for c in parts if "RECURRENCE-ID" not in c]
    if len(masters) <= 1:
        return parts

    def sequence(component: Any) -> int:
        try:
            return int(str(component.get("SEQUENCE", 0)))
        except ValueError:
            return 0

    newest = max(reversed(range(len(masters))), key=lambda i: (sequence(masters[i]), i))
    return [masters[newest]] + [c for c in parts if "RECURRENCE-ID" in c]


def _rules(component: Any) -> list[dict[str, str]]:
    rules = []
    for value in _as_list(component.get("RRULE")):
        raw = value.to_ical() if hasattr(value, "to_ical") else value
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        parts = dict(item.partition("=")[::2] for item in text.upper().split(";") if item)
        rules.append({k.strip(): v.strip() for k, v in parts.items()})
    return rules


def _series_problem(parts: list[Any], window: Window) -> str | None:
    """Why a series must not be expanded, if it would cost more than any calendar is worth."""
    for component in parts:
        for rule in _rules(component):
            freq = rule.get("FREQ", "")
            if freq in ("HOURLY", "MINUTELY", "SECONDLY"):
                return f"the event repeats {freq.lower()}; no interview does"
            per_day = 1
            for key in ("BYHOUR", "BYMINUTE", "BYSECOND"):
                per_day *= max(1, len(rule.get(key, "").split(",")))
            if per_day > 24:
                return "the event repeats more than 24 times a day; no interview does"
            try:
                interval = int(rule.get("INTERVAL", "1") or "1")
            except ValueError:
                return "the rule has an unreadable INTERVAL"
            if interval < 1:
                return "the rule has INTERVAL below 1 (it would never advance)"
            if freq not in _PERIOD_SECONDS:
                continue  # a broken rule: the expansion reports it
            try:
                begin = _instant(component.decoded("DTSTART"), UTC)
            except Exception:  # noqa: BLE001 - the expansion reports a broken start
                continue
            span = (window.end - begin).total_seconds()
            if span / (_PERIOD_SECONDS[freq] * interval) > MAX_PERIODS:
                return "the series starts too long before the window to expand"
            if _never(rule):
                return "the rule can never happen (a day that no month has)"
    return None


_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _never(rule: dict[str, str]) -> bool:
    """A BYMONTH/BYMONTHDAY rule no date satisfies: dateutil would search until year 9999."""
    try:
        months = [int(m) for m in rule.get("BYMONTH", "").split(",") if m] or list(range(1, 13))
        days = [int(d) for d in rule.get("BYMONTHDAY", "").split(",") if d]
    except ValueError:
        return False  # a broken rule: the expansion reports it
    if not days:
        return False
    return not any(
        1 <= m <= 12 and (d < 0 and -d <= _MONTH_DAYS[m - 1] or 0 < d <= _MONTH_DAYS[m - 1])
        for m in months
        for d in days
    )


def _sort_start(component: Any, floating: tzinfo) -> datetime:
    try:
        return _instant(component.decoded("DTSTART"), floating)
    except Exception:  # noqa: BLE001 - mapping reports it; keep iterating
        return datetime.min.replace(tzinfo=UTC)


def _overlaps(event: Event, window: Window) -> bool:
    if event.end == event.start:
        return window.start <= event.start < window.end
    return event.start < window.end and event.end > window.start


# Outlook writes a zone's display name as the TZID and sometimes leaves out its VTIMEZONE
# ("(UTC-08:00) Pacific Time (US & Canada)"); icalendar then returns a naive time. These are
# the display names of the common Windows zones; any other "(UTC+hh:mm) ..." name falls back
# to its fixed offset, which is at most an hour off in summer rather than a whole day.
_DISPLAY_ZONES = {
    "pacific time (us & canada)": "America/Los_Angeles",
    "mountain time (us & canada)": "America/Denver",
    "central time (us & canada)": "America/Chicago",
    "eastern time (us & canada)": "America/New_York",
    "arizona": "America/Phoenix",
    "alaska": "America/Anchorage",
    "hawaii": "Pacific/Honolulu",
    "atlantic time (canada)": "America/Halifax",
    "dublin, edinburgh, lisbon, london": "Europe/London",
    "amsterdam, berlin, bern, rome, stockholm, vienna": "Europe/Berlin",
    "brussels, copenhagen, madrid, paris": "Europe/Paris",
    "belgrade, bratislava, budapest, ljubljana, prague": "Europe/Budapest",
    "sarajevo, skopje, warsaw, zagreb": "Europe/Warsaw",
    "athens, bucharest": "Europe/Bucharest",
    "helsinki, kyiv, riga, sofia, tallinn, vilnius": "Europe/Helsinki",
    "jerusalem": "Asia/Jerusalem",
    "moscow, st. petersburg": "Europe/Moscow",
    "abu dhabi, muscat": "Asia/Dubai",
    "chennai, kolkata, mumbai, new delhi": "Asia/Kolkata",
    "beijing, chongqing, hong kong, urumqi": "Asia/Shanghai",
    "kuala lumpur, singapore": "Asia/Singapore",
    "osaka, sapporo, tokyo": "Asia/Tokyo",
    "seoul": "Asia/Seoul",
    "canberra, melbourne, sydney": "Australia/Sydney",
    "brisbane": "Australia/Brisbane",
    "auckland, wellington": "Pacific/Auckland",
    "brasilia": "America/Sao_Paulo",
    "coordinated universal time": "UTC",
}
_DISPLAY = re.compile(
    r"^\(\s*(?:UTC|GMT)\s*(?:([+-])(\d{1,2}):?(\d{2}))?\s*\)\s*(.*)$", re.IGNORECASE
)


def _windows_zone(tzid: str) -> tzinfo | None:
    """The zone an unresolvable TZID most likely means, or None."""
    name = tzid.strip().strip('"')
    if name.lower() in ("tzone://microsoft/utc", "utc", "gmt", "z"):
        return UTC
    match = _DISPLAY.match(name)
    if not match:
        return None
    sign, hours, minutes, label = match.groups()
    known = _DISPLAY_ZONES.get(label.strip().lower())
    if known:
        return _zone(known)
    if not hours:
        return UTC
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    if offset > timedelta(hours=14):
        return None
    return timezone(-offset if sign == "-" else offset)


def _named_zone(component: Any) -> tzinfo | None:
    """For an event whose DTSTART names a zone icalendar could not resolve: that zone."""
    try:
        prop = component.get("DTSTART")
        tzid = str(getattr(prop, "params", {}).get("TZID", "") or "")
        if not tzid or not isinstance(component.decoded("DTSTART"), datetime):
            return None
        if component.decoded("DTSTART").tzinfo is not None:
            return None
        return _windows_zone(tzid)
    except Exception:  # noqa: BLE001 - a broken start is reported when the event is mapped
        return None


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return UTC


def _event(
    component: Any, calendar_id: str, own: frozenset[str], floating: tzinfo, series: set[str]
) -> Event | None:
    uid = str(component.get("UID", "")).strip()
    if not uid or "DTSTART" not in component:
        return None
    raw_start = component.decoded("DTSTART")
    all_day = not isinstance(raw_start, datetime)
    start = _instant(raw_start, floating)
    end = start + (timedelta(days=1) if all_day else timedelta(0))
    # A broken end is no reason to lose the interview: it then ends when it starts.
    with contextlib.suppress(Exception):
        if "DTEND" in component:
            end = _instant(component.decoded("DTEND"), floating)
        elif "DURATION" in component:
            end = start + component.decoded("DURATION")
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


def _attendee(value: Any, own: frozenset[str], organizer: Person | None) -> Attendee:
    params = getattr(value, "params", {})
    email = _address(value)
    return Attendee(
        email=email,
        name=str(params.get("CN", "")).strip(),
        kind=_KINDS.get(str(params.get("CUTYPE", "INDIVIDUAL")).upper(), AttendeeKind.UNKNOWN),
        response=_RESPONSES.get(str(params.get("PARTSTAT", "")).upper(), Response.UNKNOWN),
        is_self=domains.address_key(email) in own,
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
        if not domains.is_loopback_host(parts.hostname or ""):
            raise ProviderError(
                f"account {account!r}: calendar.url {url!r} uses plain http; use https "
                "(http is only allowed to this machine)"
            )
    elif scheme != "https":
        raise ProviderError(f"account {account!r}: calendar.url {url!r} is not an http(s) URL")
    return urlunsplit(parts)


class IcsFeed(CalendarSource):
    config = CONFIG

    @classmethod
    def open(cls, account: AccountSettings) -> IcsFeed:
        return open_calendar(account)  # the module's opener builds it

    def __init__(self, account: AccountSettings, *, session: requests.Session | None = None,
                 policy: retry.RetryPolicy = POLICY):
        own = account.calendar.settings_of(IcsCalendarSettings)
        if own is None:
            raise ProviderError(f"account {account.name!r}: calendar.url is not set")
        self.account = account
        self.url = feed_url(own.url, account=account.name)
        self.session = session or requests.Session()
        self.policy = policy

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
            response = retry.read(lambda: self.session.get(
                self.url, headers=headers, timeout=(CONNECT_TIMEOUT, self.policy.timeout),
                stream=True), self.policy, (requests.RequestException,))
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
        skipped: list[Unreadable] = []
        events = events_from_ics(
            body,
            self.url,
            window,
            self.account.own_addresses,
            default_tz=self.account.policy.timezone,
            skipped=skipped,
        )
        new_state = {
            "etag": response.headers.get("ETag", ""),
            "modified": response.headers.get("Last-Modified", ""),
            "window": window.start.date().isoformat(),
        }
        return CalendarBatch(events=tuple(events), complete=True, cursor=json.dumps(new_state),
                             skipped=tuple(skipped))

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
