"""Reading the durations, clock times and timings people write in the config file.

Pure functions: text in, values out, or a `DurationError` whose message says what was
expected, with examples the user can copy.
"""

from __future__ import annotations

import re
from datetime import time, timedelta

from mailbridge.model import BusinessDays, Delay, NextBusinessMorning, Timing

DELAY_EXAMPLES = '"2h", "90 minutes", "1 day", "1h30m" or "2 weeks"'
TIMING_EXAMPLES = '"2h", "3 days", "7 business days" or "next business morning 08:00"'
CLOCK_EXAMPLES = '"08:00", "8:00", "17:30" or "5:30pm"'

# Longer than this is almost certainly a typo ("2000h" for "2h"), never a wish.
MAX_DELAY = timedelta(days=366)
MAX_BUSINESS_DAYS = 90

_UNITS: dict[str, timedelta] = {}
for _names, _unit in (
    (("s", "sec", "secs", "second", "seconds"), timedelta(seconds=1)),
    (("m", "min", "mins", "minute", "minutes"), timedelta(minutes=1)),
    (("h", "hr", "hrs", "hour", "hours"), timedelta(hours=1)),
    (("d", "day", "days"), timedelta(days=1)),
    (("w", "wk", "wks", "week", "weeks"), timedelta(weeks=1)),
):
    for _name in _names:
        _UNITS[_name] = _unit

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_DELAY = re.compile(r"(?:\d+(?:\.\d+)?\s*[a-z]+)(?:\s*(?:,|and)?\s*\d+(?:\.\d+)?\s*[a-z]+)*")
_BUSINESS = re.compile(r"(\S+)\s+(?:business|working)\s+days?")
_MORNING = re.compile(r"next\s+business\s+morning(?:\s+(?:at\s+)?(.*))?")
_CLOCK = re.compile(r"(\d{1,2})(?:[:.](\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)?")


class DurationError(ValueError):
    """Text that is not a duration, time or timing we understand; the message says why."""


def _normal(text: str) -> str:
    return " ".join(text.strip().lower().split())


def parse_delay(
    text: str, *, allow_zero: bool = False, maximum: timedelta = MAX_DELAY
) -> timedelta:
    """A fixed length of time: "2h", "90m", "90 minutes", "1 day", "1h30m", "2 weeks"."""
    if not isinstance(text, str):
        raise DurationError(f"expected a duration in quotes such as {DELAY_EXAMPLES}")
    norm = _normal(text)
    if not norm:
        raise DurationError(f"expected a duration such as {DELAY_EXAMPLES}, got nothing")
    if norm.startswith("-"):
        raise DurationError(f'a duration cannot be negative, got "{text}"')
    if _BUSINESS.fullmatch(norm):
        raise DurationError(
            f'business days are not allowed here, got "{text}"; '
            f"use a plain duration such as {DELAY_EXAMPLES}"
        )
    if re.fullmatch(r"\d+(?:\.\d+)?", norm):
        raise DurationError(f'the number "{text}" needs a unit, such as "{norm}m" or "{norm}h"')
    if not _DELAY.fullmatch(norm):
        raise DurationError(f'expected a duration such as {DELAY_EXAMPLES}, got "{text}"')
    total = timedelta(0)
    try:
        for number, unit in _PART.findall(norm):
            if unit not in _UNITS:
                raise DurationError(
                    f'unknown unit "{unit}" in "{text}"; use minutes, hours, days or weeks '
                    f"(for example {DELAY_EXAMPLES})"
                )
            total += _UNITS[unit] * float(number)
    except OverflowError:
        raise DurationError(f'"{text}" is far too long; the most allowed is a year') from None
    if total <= timedelta(0) and not allow_zero:
        raise DurationError(f'expected a duration longer than zero, got "{text}"')
    if total > maximum:
        raise DurationError(f'"{text}" is too long; the most allowed here is {describe(maximum)}')
    return total


def parse_clock(text: str) -> time:
    """A time of day: "08:00", "8:00", "17:30", "8am", "5:30 pm"."""
    if not isinstance(text, str):
        raise DurationError(f"expected a time of day in quotes such as {CLOCK_EXAMPLES}")
    norm = _normal(text)
    match = _CLOCK.fullmatch(norm)
    if not match:
        raise DurationError(f'expected a time of day such as {CLOCK_EXAMPLES}, got "{text}"')
    hour, minute, meridiem = int(match.group(1)), int(match.group(2) or 0), match.group(3)
    if meridiem is None and match.group(2) is None:
        # A lone "8" is ambiguous between a time and a count: ask for the colon.
        raise DurationError(f'expected a time of day such as {CLOCK_EXAMPLES}, got "{text}"')
    if minute > 59:
        raise DurationError(f'"{text}" has {minute} minutes; minutes go from 00 to 59')
    if meridiem:
        if not 1 <= hour <= 12:
            raise DurationError(f'"{text}": with am/pm the hour goes from 1 to 12')
        hour = hour % 12 + (12 if meridiem.startswith("p") else 0)
    elif hour > 23:
        raise DurationError(f'"{text}" has hour {hour}; hours go from 0 to 23 (24-hour clock)')
    return time(hour, minute)


def parse_quiet_hours(text: str) -> tuple[time, time]:
    """A span of the night: "21:00-08:00" (start, end; it may wrap past midnight)."""
    if not isinstance(text, str):
        raise DurationError('expected a span of time in quotes such as "21:00-08:00"')
    parts = re.split(r"\s*(?:-|–|—|\bto\b)\s*", _normal(text))
    if len(parts) != 2 or not all(parts):
        raise DurationError(f'expected a start and an end such as "21:00-08:00", got "{text}"')
    start, end = parse_clock(parts[0]), parse_clock(parts[1])
    if start == end:
        raise DurationError(
            f'"{text}" starts and ends at the same time; give a span such as "21:00-08:00"'
        )
    return start, end


def parse_timing(text: str, *, morning: time = time(9, 0), allow_zero: bool = False) -> Timing:
    """When something happens, counted from an event: a delay, business days, or the next
    business morning ("next business morning 08:00"; without a time, ``morning``)."""
    if not isinstance(text, str):
        raise DurationError(f"expected a timing in quotes such as {TIMING_EXAMPLES}")
    norm = _normal(text)
    business = _BUSINESS.fullmatch(norm)
    if business:
        count = business.group(1)
        if count.startswith("-"):
            raise DurationError(f'a number of business days cannot be negative, got "{text}"')
        if not count.isdigit():
            raise DurationError(
                f'expected a whole number of business days such as "7 business days", got "{text}"'
            )
        days = int(count)
        if days < 1:
            raise DurationError(f'expected at least 1 business day, got "{text}"')
        if days > MAX_BUSINESS_DAYS:
            raise DurationError(
                f'"{text}" is too long; the most allowed is {MAX_BUSINESS_DAYS} business days'
            )
        return BusinessDays(days)
    nbm = _MORNING.fullmatch(norm)
    if nbm:
        at = nbm.group(1)
        return NextBusinessMorning(parse_clock(at) if at else morning)
    try:
        return Delay(parse_delay(text, allow_zero=allow_zero))
    except DurationError as exc:
        if "expected a duration such as" in str(exc):
            raise DurationError(
                f'expected a timing such as {TIMING_EXAMPLES}, got "{text}"'
            ) from None
        raise


def describe(span: timedelta) -> str:
    """A short human form of a duration: "2 hours", "1 day 6 hours", "90 minutes"."""
    seconds = int(span.total_seconds())
    parts: list[str] = []
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return " ".join(parts) or "0 minutes"
