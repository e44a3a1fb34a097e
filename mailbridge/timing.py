"""Time arithmetic for the planner: business days, mornings, the thank-you window, quiet hours.

Pure functions. Every decision is taken on the user's wall clock (``policy.timezone``) and every
instant returned is in UTC. Business days are Monday to Friday minus the public holidays of
``policy.country`` / ``policy.subdivision`` (the ``holidays`` package, which works offline).

Wall-clock times that do not exist or happen twice (DST changes) resolve the way ``zoneinfo``
does with ``fold=0``: a time inside the spring-forward gap lands one hour later on the clock
(02:30 becomes 03:30), a time that happens twice means its first occurrence.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from mailbridge.model import BusinessDays, Delay, NextBusinessMorning, Policy, Timing

__all__ = [
    "add_business_days",
    "after_quiet_hours",
    "after_timing",
    "at_local",
    "first_business_day_on_or_after",
    "follow_up_due",
    "in_quiet_hours",
    "is_business_day",
    "local_date",
    "next_business_morning",
    "next_follow_up_due",
    "out_of_office_due",
    "system_timezone",
    "thank_you_due",
]

# Only to stop a loop on absurd input (a holiday table that covered every day); real gaps
# between business days are a few days at most.
_MAX_SCAN_DAYS = 366


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=256)
def _holidays(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    # Memoised per year: the holiday table is fixed data, so this stays pure in effect.
    try:
        table = holidays.country_holidays(country, subdiv=subdivision, years=year)
    except NotImplementedError as exc:
        where = f"{country}/{subdivision}" if subdivision else country
        raise ValueError(
            f"No public holiday calendar is known for {where!r}: set 'country' (and "
            "'subdivision') to an ISO 3166 code the holidays package supports, or leave "
            "it unset for weekends only."
        ) from exc
    return frozenset(table.keys())


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t.isoformat()} given where an aware instant is needed")
    return t.astimezone(UTC)


def local_date(t: datetime, policy: Policy) -> date:
    """The user's calendar date at instant ``t``."""
    return _utc(t).astimezone(_zone(policy.timezone)).date()


def at_local(day: date, at: time, policy: Policy) -> datetime:
    """The instant (UTC) when the user's wall clock shows ``at`` on ``day``."""
    wall = datetime.combine(day, at.replace(tzinfo=None, fold=0), tzinfo=_zone(policy.timezone))
    return wall.astimezone(UTC)


def is_business_day(day: date, policy: Policy) -> bool:
    """Monday to Friday, and not a public holiday of the policy's country (observed dates count)."""
    if day.weekday() >= 5:
        return False
    if policy.country is None:
        return True
    return day not in _holidays(policy.country, policy.subdivision, day.year)


def add_business_days(day: date, n: int, policy: Policy) -> date:
    """The ``n``-th business day after ``day`` (before it when ``n`` is negative).

    ``n == 0`` returns ``day`` itself, business day or not. ``day`` need not be a business day:
    one business day after a Saturday is the Monday.
    """
    step = 1 if n >= 0 else -1
    remaining = abs(n)
    current = day
    scanned = 0
    while remaining:
        current += timedelta(days=step)
        scanned += 1
        if scanned > _MAX_SCAN_DAYS * (abs(n) + 1):
            raise ValueError("no business day found: check the holiday calendar")
        if is_business_day(current, policy):
            remaining -= 1
    return current


def first_business_day_on_or_after(day: date, policy: Policy) -> date:
    current = day
    for _ in range(_MAX_SCAN_DAYS):
        if is_business_day(current, policy):
            return current
        current += timedelta(days=1)
    raise ValueError("no business day found within a year: check the holiday calendar")


def next_business_morning(after: datetime, at: time, policy: Policy) -> datetime:
    """The first instant strictly after ``after`` at which a business day's wall clock shows ``at``.

    So the same day counts when it is a business day and its local time is still before ``at``
    (an interview ending at 07:00 on a Tuesday gets "next business morning 08:00" an hour later);
    otherwise it is the next business day. Returned in UTC; 08:00 stays 08:00 local across DST.
    """
    day = local_date(after, policy)
    moment = _utc(after)
    for _ in range(_MAX_SCAN_DAYS):
        if is_business_day(day, policy):
            candidate = at_local(day, at, policy)
            if candidate > moment:
                return candidate
        day += timedelta(days=1)
    raise ValueError("no business morning found within a year: check the holiday calendar")


def after_timing(start: datetime, timing: Timing, policy: Policy) -> datetime:
    """``start`` plus a timing, unclamped (UTC).

    Delay: start + amount. NextBusinessMorning: as next_business_morning. BusinessDays(n): the
    n-th business day after start's local date, at policy.morning local.
    """
    if isinstance(timing, Delay):
        return _utc(start) + timing.amount
    if isinstance(timing, NextBusinessMorning):
        return next_business_morning(start, timing.at, policy)
    return at_local(
        add_business_days(local_date(start, policy), timing.days, policy), policy.morning, policy
    )


def thank_you_due(end: datetime, policy: Policy) -> datetime:
    """When the thank-you drafts of an interview that ended at ``end`` should appear (UTC).

    Delay: end + amount. NextBusinessMorning: the next business morning after end.
    BusinessDays(n): the next business morning after end at policy.morning, then n-1 business
    days later (so BusinessDays(1) is the next business morning). The result always lies within
    [end, end + policy.thank_you_bound]: the advice is a thank-you within 24 hours, so a Friday
    evening interview with "next business morning" still gets its draft on Saturday evening.
    """
    end = _utc(end)
    timing = policy.thank_you
    if isinstance(timing, BusinessDays):
        first = next_business_morning(end, policy.morning, policy)
        if timing.days <= 1:
            due = first
        else:
            day = add_business_days(local_date(first, policy), timing.days - 1, policy)
            due = at_local(day, policy.morning, policy)
    else:
        due = after_timing(end, timing, policy)
    bound = end + max(policy.thank_you_bound, timedelta(0))
    return max(end, min(due, bound))


# A decision date further than this past the interview is not one an employer gives (a typo,
# or 9999-12-31 from an old ledger): it is ignored rather than allowed to overflow the calendar.
DECISION_HORIZON = timedelta(days=2 * 366)


def follow_up_due(end: datetime, decision_date: date | None, policy: Policy) -> datetime:
    """When the first follow-up should appear (UTC).

    A known decision date wins: the next business day after it, at policy.morning local
    (unless it lies beyond DECISION_HORIZON from the interview: then it is ignored).
    Otherwise end + policy.follow_up (see after_timing). Never before end +
    policy.thank_you_bound: a follow-up must not overtake the thank-you window.
    """
    end = _utc(end)
    if decision_date is not None and decision_date <= (end + DECISION_HORIZON).date():
        due = at_local(add_business_days(decision_date, 1, policy), policy.morning, policy)
    else:
        due = after_timing(end, policy.follow_up, policy)
    return max(due, end + max(policy.thank_you_bound, timedelta(0)))


def next_follow_up_due(previous: datetime, policy: Policy) -> datetime:
    """When follow-up k+1 is due, given when follow-up k was sent (or created) (UTC).

    The later of previous + policy.follow_up_spacing and previous + policy.follow_up: a stream
    of follow-ups would hurt the candidate, so they are spaced at least that far apart.
    """
    previous = _utc(previous)
    return max(
        previous + policy.follow_up_spacing, after_timing(previous, policy.follow_up, policy)
    )


def out_of_office_due(due: datetime, return_date: date, policy: Policy) -> datetime:
    """A follow-up due moved past an out-of-office: the later of ``due`` and the first business
    morning on or after the return date at policy.morning (UTC)."""
    back = at_local(first_business_day_on_or_after(return_date, policy), policy.morning, policy)
    return max(_utc(due), back)


def _quiet(local: time, policy: Policy) -> bool:
    start, end = policy.quiet_start, policy.quiet_end
    if start == end:  # an empty span: no quiet hours at all
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end  # wraps midnight (21:00..08:00)


def in_quiet_hours(t: datetime, policy: Policy) -> bool:
    """Whether ``t`` falls in the user's quiet hours [quiet_start, quiet_end), local time."""
    local = _utc(t).astimezone(_zone(policy.timezone))
    return _quiet(local.time().replace(tzinfo=None), policy)


def after_quiet_hours(t: datetime, policy: Policy) -> datetime:
    """``t`` itself (UTC) outside quiet hours; otherwise the end of the quiet span it falls in."""
    t = _utc(t)
    if not in_quiet_hours(t, policy):
        return t
    local = t.astimezone(_zone(policy.timezone))
    day = local.date()
    wall = local.time().replace(tzinfo=None)
    # Past quiet_start in a span that wraps midnight: the span ends tomorrow morning.
    if policy.quiet_start > policy.quiet_end and wall >= policy.quiet_start:
        day += timedelta(days=1)
    end = at_local(day, policy.quiet_end, policy)
    return end if end > t else t


def system_timezone() -> str:
    """The system's zone name without tzlocal: $TZ, the /etc/localtime link, /etc/timezone."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        target = os.path.realpath("/etc/localtime")
        candidates.append(target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else "")
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    for name in filter(None, candidates):
        with contextlib.suppress(ZoneInfoNotFoundError, ValueError, OSError):
            ZoneInfo(name)
            return name
    return "UTC"
