from __future__ import annotations

from datetime import time, timedelta

import pytest

from mailbridge.durations import (
    DurationError,
    describe,
    parse_clock,
    parse_delay,
    parse_quiet_hours,
    parse_timing,
)
from mailbridge.model import BusinessDays, Delay, NextBusinessMorning


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", timedelta(hours=2)),
        ("90m", timedelta(minutes=90)),
        ("90 minutes", timedelta(minutes=90)),
        ("1 minute", timedelta(minutes=1)),
        ("1 day", timedelta(days=1)),
        ("3 days", timedelta(days=3)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("1 hour and 30 minutes", timedelta(hours=1, minutes=30)),
        ("1 hour, 30 minutes", timedelta(hours=1, minutes=30)),
        ("2 weeks", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
        ("  20H ", timedelta(hours=20)),
        ("45s", timedelta(seconds=45)),
        ("2 hrs", timedelta(hours=2)),
        ("1w2d", timedelta(days=9)),
    ],
)
def test_parse_delay_accepts(text: str, expected: timedelta) -> None:
    assert parse_delay(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "got nothing"),
        ("-2h", "cannot be negative"),
        ("0h", "longer than zero"),
        ("0 minutes", "longer than zero"),
        ("90", "needs a unit"),
        ("2 fortnights", 'unknown unit "fortnights"'),
        ("soon", "expected a duration"),
        ("h2", "expected a duration"),
        ("2h30", "expected a duration"),
        ("7 business days", "business days are not allowed"),
        ("400 days", "too long"),
        ("99999999999999 weeks", "too long"),
    ],
)
def test_parse_delay_rejects(text: str, fragment: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_delay(text)
    assert fragment in str(info.value)


def test_parse_delay_zero_when_allowed_and_custom_maximum() -> None:
    assert parse_delay("0m", allow_zero=True) == timedelta(0)
    with pytest.raises(DurationError, match="the most allowed here is 1 day"):
        parse_delay("25h", maximum=timedelta(days=1))


def test_messages_carry_examples() -> None:
    with pytest.raises(DurationError) as info:
        parse_delay("soon")
    assert '"2h"' in str(info.value) and '"90 minutes"' in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("08:00", time(8, 0)),
        ("8:00", time(8, 0)),
        ("17:30", time(17, 30)),
        ("0:00", time(0, 0)),
        ("23:59", time(23, 59)),
        ("8am", time(8, 0)),
        ("5:30 pm", time(17, 30)),
        ("12am", time(0, 0)),
        ("12pm", time(12, 0)),
        ("8.15", time(8, 15)),
    ],
)
def test_parse_clock_accepts(text: str, expected: time) -> None:
    assert parse_clock(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("24:00", "hours go from 0 to 23"),
        ("8:60", "minutes go from 00 to 59"),
        ("13pm", "from 1 to 12"),
        ("8", "expected a time of day"),
        ("morning", "expected a time of day"),
        ("", "expected a time of day"),
    ],
)
def test_parse_clock_rejects(text: str, fragment: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_clock(text)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("21:00-08:00", (time(21), time(8))),
        ("21:00 - 08:00", (time(21), time(8))),
        ("22:30–7:00", (time(22, 30), time(7))),
        ("9pm to 7am", (time(21), time(7))),
        ("12:00-13:00", (time(12), time(13))),
    ],
)
def test_parse_quiet_hours_accepts(text: str, expected: tuple[time, time]) -> None:
    assert parse_quiet_hours(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("21:00", "a start and an end"),
        ("21:00-21:00", "same time"),
        ("21:00-25:00", "hours go from 0 to 23"),
        ("night", "a start and an end"),
    ],
)
def test_parse_quiet_hours_rejects(text: str, fragment: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_quiet_hours(text)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7 business days", BusinessDays(7)),
        ("1 business day", BusinessDays(1)),
        ("10 working days", BusinessDays(10)),
        ("next business morning 08:00", NextBusinessMorning(time(8, 0))),
        ("next business morning at 8:00", NextBusinessMorning(time(8, 0))),
        ("Next Business Morning at 7:30am", NextBusinessMorning(time(7, 30))),
        ("next business morning", NextBusinessMorning(time(9, 0))),
        ("2h", Delay(timedelta(hours=2))),
        ("10 days", Delay(timedelta(days=10))),
    ],
)
def test_parse_timing_accepts(text: str, expected: object) -> None:
    assert parse_timing(text) == expected


def test_parse_timing_morning_default_is_configurable() -> None:
    assert parse_timing("next business morning", morning=time(7)) == NextBusinessMorning(time(7))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0 business days", "at least 1 business day"),
        ("-3 business days", "cannot be negative"),
        ("seven business days", "whole number of business days"),
        ("1.5 business days", "whole number of business days"),
        ("200 business days", "the most allowed is 90"),
        ("next business morning at noonish", "expected a time of day"),
        ("whenever", "expected a timing such as"),
        ("0h", "longer than zero"),
        ("-1 day", "cannot be negative"),
    ],
)
def test_parse_timing_rejects(text: str, fragment: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_timing(text)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        (timedelta(hours=2), "2 hours"),
        (timedelta(days=1, hours=6), "1 day 6 hours"),
        (timedelta(minutes=90), "1 hour 30 minutes"),
        (timedelta(0), "0 minutes"),
    ],
)
def test_describe(span: timedelta, expected: str) -> None:
    assert describe(span) == expected
