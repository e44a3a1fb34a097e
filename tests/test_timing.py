"""Table tests for mailbridge.timing: business days, mornings, the thank-you window, quiet hours."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbridge.model import BusinessDays, Delay, NextBusinessMorning, Policy, Timing
from mailbridge.timing import (
    add_business_days,
    after_quiet_hours,
    first_business_day_on_or_after,
    follow_up_due,
    in_quiet_hours,
    is_business_day,
    next_business_morning,
    next_follow_up_due,
    out_of_office_due,
    thank_you_due,
)

CHICAGO = ZoneInfo("America/Chicago")
US = Policy(timezone="America/Chicago", country="US", morning=time(9, 0))


def local(text: str) -> datetime:
    """'2026-11-24 17:00' on a Chicago wall clock, as an aware UTC instant."""
    return datetime.fromisoformat(text).replace(tzinfo=CHICAGO).astimezone(UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def d(text: str) -> date:
    return date.fromisoformat(text)


def policy(**changes: object) -> Policy:
    base = {"timezone": "America/Chicago", "country": "US", "morning": time(9, 0)}
    base.update(changes)
    return Policy(**base)  # type: ignore[arg-type]


# --- business days -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "pol", "expected"),
    [
        pytest.param("2026-11-24", US, True, id="tuesday"),
        pytest.param("2026-11-21", US, False, id="saturday"),
        pytest.param("2026-11-22", US, False, id="sunday"),
        pytest.param("2026-11-26", US, False, id="thanksgiving"),
        pytest.param("2026-11-26", Policy(), True, id="thanksgiving-without-country"),
        pytest.param("2026-07-03", US, False, id="independence-day-observed-friday"),
        pytest.param("2026-11-27", US, True, id="day-after-thanksgiving-federal"),
        pytest.param(
            "2026-11-27", policy(subdivision="CA"), False, id="day-after-thanksgiving-california"
        ),
        pytest.param("2026-12-25", policy(country="DE"), False, id="christmas-germany"),
        pytest.param("2026-11-26", policy(country="DE"), True, id="thanksgiving-germany"),
    ],
)
def test_is_business_day(day: str, pol: Policy, expected: bool) -> None:
    assert is_business_day(d(day), pol) is expected


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        pytest.param("2026-11-20", 1, "2026-11-23", id="friday-plus-1-is-monday"),
        pytest.param("2026-11-25", 1, "2026-11-27", id="over-thanksgiving"),
        pytest.param("2026-11-20", 7, "2026-12-02", id="7-over-weekend-and-thanksgiving"),
        pytest.param("2026-11-21", 1, "2026-11-23", id="from-saturday"),
        pytest.param("2026-11-21", 0, "2026-11-21", id="zero-is-identity"),
        pytest.param("2026-11-30", -1, "2026-11-27", id="back-over-weekend"),
        pytest.param("2026-11-27", -1, "2026-11-25", id="back-over-thanksgiving"),
        pytest.param("2026-12-31", 1, "2027-01-04", id="over-new-year-into-next-year"),
    ],
)
def test_add_business_days(start: str, n: int, expected: str) -> None:
    assert add_business_days(d(start), n, US) == d(expected)


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        pytest.param("2026-11-24", "2026-11-24", id="business-day-itself"),
        pytest.param("2026-11-26", "2026-11-27", id="thanksgiving"),
        pytest.param("2026-11-21", "2026-11-23", id="saturday"),
    ],
)
def test_first_business_day_on_or_after(start: str, expected: str) -> None:
    assert first_business_day_on_or_after(d(start), US) == d(expected)


def test_unknown_country_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="No public holiday calendar is known for 'XX'"):
        is_business_day(d("2026-11-24"), policy(country="XX"))


# --- next business morning ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("after", "expected_utc"),
    [
        pytest.param("2026-11-24 17:00", "2026-11-25 14:00", id="tuesday-evening-to-wednesday"),
        pytest.param("2026-11-25 17:00", "2026-11-27 14:00", id="skips-thanksgiving"),
        pytest.param("2026-11-20 18:00", "2026-11-23 14:00", id="friday-evening-to-monday"),
        pytest.param("2026-11-24 07:00", "2026-11-24 14:00", id="same-day-before-8"),
        pytest.param("2026-11-24 08:00", "2026-11-25 14:00", id="exactly-8-is-not-after"),
        # DST starts Sunday 2026-03-08: 08:00 CST before, 08:00 CDT after.
        pytest.param("2026-03-06 17:00", "2026-03-09 13:00", id="dst-start-weekend"),
        # DST ends Sunday 2026-11-01: 08:00 CDT before, 08:00 CST after.
        pytest.param("2026-10-30 17:00", "2026-11-02 14:00", id="dst-end-weekend"),
    ],
)
def test_next_business_morning(after: str, expected_utc: str) -> None:
    got = next_business_morning(local(after), time(8, 0), US)
    assert got == utc(expected_utc)
    assert got.tzinfo is UTC
    assert got.astimezone(CHICAGO).time() == time(8, 0)


ZONES = ["America/Chicago", "Europe/Berlin", "Asia/Tokyo", "Australia/Sydney", "UTC"]
COUNTRIES = [None, "US", "DE", "GB", "JP"]
instants = st.datetimes(
    min_value=datetime(2015, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=150, deadline=None)
@given(
    after=instants,
    hour=st.integers(5, 12),
    minute=st.integers(0, 59),
    zone=st.sampled_from(ZONES),
    country=st.sampled_from(COUNTRIES),
)
def test_next_business_morning_property(
    after: datetime, hour: int, minute: int, zone: str, country: str | None
) -> None:
    pol = Policy(timezone=zone, country=country)
    at = time(hour, minute)
    got = next_business_morning(after, at, pol)
    wall = got.astimezone(ZoneInfo(zone))
    assert got > after
    assert wall.time() == at
    assert is_business_day(wall.date(), pol)
    # the first such moment: no business morning lies between
    day = after.astimezone(ZoneInfo(zone)).date()
    while day < wall.date():
        if is_business_day(day, pol):
            assert datetime.combine(day, at, tzinfo=ZoneInfo(zone)) <= after
        day += timedelta(days=1)


# --- thank-you --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timing", "end", "expected_local", "bound"),
    [
        pytest.param(
            Delay(timedelta(hours=2)),
            "2026-11-24 15:00",
            "2026-11-24 17:00",
            None,
            id="two-hour-delay",
        ),
        pytest.param(
            NextBusinessMorning(time(8)),
            "2026-11-24 17:00",
            "2026-11-25 08:00",
            None,
            id="next-business-morning",
        ),
        pytest.param(
            NextBusinessMorning(time(8)),
            "2026-11-20 17:00",
            "2026-11-21 17:00",
            None,
            id="friday-evening-clamped-to-24h",
        ),
        pytest.param(
            NextBusinessMorning(time(8)),
            "2026-11-25 16:00",
            "2026-11-26 16:00",
            None,
            id="before-thanksgiving-clamped-to-24h",
        ),
        pytest.param(
            NextBusinessMorning(time(8)),
            "2026-11-24 06:00",
            "2026-11-24 08:00",
            None,
            id="early-interview-same-morning",
        ),
        pytest.param(
            BusinessDays(1),
            "2026-11-23 15:00",
            "2026-11-24 09:00",
            None,
            id="one-business-day-is-next-morning",
        ),
        pytest.param(
            BusinessDays(2),
            "2026-11-23 06:00",
            "2026-11-24 06:00",
            None,
            id="two-business-days-clamped",
        ),
        pytest.param(
            Delay(timedelta(hours=30)),
            "2026-11-24 15:00",
            "2026-11-25 15:00",
            None,
            id="long-delay-clamped",
        ),
        pytest.param(
            Delay(timedelta(0)), "2026-11-24 15:00", "2026-11-24 15:00", None, id="no-delay"
        ),
        pytest.param(
            Delay(timedelta(hours=20)),
            "2026-11-24 15:00",
            "2026-11-25 03:00",
            timedelta(hours=12),
            id="smaller-configured-bound",
        ),
        # Saturday 20:00 CST + 24 real hours = Sunday 21:00 CDT (the clocks sprang forward).
        pytest.param(
            NextBusinessMorning(time(8)),
            "2026-03-07 20:00",
            "2026-03-08 21:00",
            None,
            id="bound-is-24-real-hours-across-dst",
        ),
    ],
)
def test_thank_you_due(
    timing: Timing, end: str, expected_local: str, bound: timedelta | None
) -> None:
    pol = (
        policy(thank_you=timing)
        if bound is None
        else policy(thank_you=timing, thank_you_bound=bound)
    )
    assert thank_you_due(local(end), pol) == local(expected_local)


timings = st.one_of(
    st.builds(Delay, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=5))),
    st.builds(NextBusinessMorning, st.times()),
    st.builds(BusinessDays, st.integers(0, 15)),
)


@settings(max_examples=200, deadline=None)
@given(
    end=instants,
    timing=timings,
    zone=st.sampled_from(ZONES),
    country=st.sampled_from(COUNTRIES),
    morning=st.times(),
)
def test_thank_you_within_24_hours(
    end: datetime, timing: Timing, zone: str, country: str | None, morning: time
) -> None:
    pol = Policy(timezone=zone, country=country, thank_you=timing, morning=morning)
    due = thank_you_due(end, pol)
    assert end <= due <= end + timedelta(hours=24)


@settings(max_examples=100, deadline=None)
@given(
    end=instants,
    timing=timings,
    bound=st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=48)),
)
def test_thank_you_within_configured_bound(end: datetime, timing: Timing, bound: timedelta) -> None:
    due = thank_you_due(
        end,
        Policy(timezone="America/Chicago", country="US", thank_you=timing, thank_you_bound=bound),
    )
    assert end <= due <= end + bound


# --- follow-up --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "end", "decision", "expected_local"),
    [
        pytest.param(
            {},
            "2026-11-20 15:00",
            None,
            "2026-12-02 09:00",
            id="7-business-days-over-weekend-and-thanksgiving",
        ),
        pytest.param(
            {"follow_up": BusinessDays(3)},
            "2026-11-24 15:00",
            None,
            "2026-11-30 09:00",
            id="3-business-days-over-thanksgiving",
        ),
        pytest.param(
            {},
            "2026-11-23 15:00",
            "2026-11-25",
            "2026-11-27 09:00",
            id="decision-date-before-thanksgiving",
        ),
        pytest.param(
            {}, "2026-11-16 15:00", "2026-11-20", "2026-11-23 09:00", id="decision-date-friday"
        ),
        pytest.param(
            {"follow_up": Delay(timedelta(days=5))},
            "2026-11-23 15:00",
            None,
            "2026-11-28 15:00",
            id="fixed-delay",
        ),
        pytest.param(
            {},
            "2026-11-23 15:00",
            "2026-11-20",
            "2026-11-24 15:00",
            id="stale-decision-date-waits-out-thank-you-window",
        ),
        pytest.param(
            {"follow_up": BusinessDays(1), "morning": time(8)},
            "2026-03-06 15:00",
            None,
            "2026-03-09 08:00",
            id="dst-start-morning-stays-8",
        ),
        pytest.param(
            {"follow_up": BusinessDays(1), "morning": time(8)},
            "2026-10-30 15:00",
            None,
            "2026-11-02 08:00",
            id="dst-end-morning-stays-8",
        ),
    ],
)
def test_follow_up_due(
    changes: dict[str, object], end: str, decision: str | None, expected_local: str
) -> None:
    due = follow_up_due(local(end), d(decision) if decision else None, policy(**changes))
    assert due == local(expected_local)


@pytest.mark.parametrize("decision", ["9999-12-31", "2029-01-01"])
def test_an_implausible_decision_date_is_ignored_not_overflowed(decision: str) -> None:
    end = local("2026-11-23 15:00")
    assert follow_up_due(end, d(decision), policy()) == follow_up_due(end, None, policy())


def test_follow_up_dst_in_utc() -> None:
    # 08:00 local is 14:00 UTC in CST and 13:00 UTC in CDT: the wall clock wins.
    pol = policy(follow_up=BusinessDays(1), morning=time(8))
    assert follow_up_due(local("2026-03-06 15:00"), None, pol) == utc("2026-03-09 13:00")
    assert follow_up_due(local("2026-10-30 15:00"), None, pol) == utc("2026-11-02 14:00")


@pytest.mark.parametrize(
    ("changes", "previous", "expected_local"),
    [
        pytest.param({}, "2026-11-23 10:00", "2026-12-03 09:00", id="business-days-win"),
        pytest.param(
            {"follow_up": Delay(timedelta(days=2))},
            "2026-11-23 10:00",
            "2026-11-30 10:00",
            id="spacing-wins",
        ),
        pytest.param(
            {"follow_up": Delay(timedelta(days=2)), "follow_up_spacing": timedelta(days=14)},
            "2026-11-23 10:00",
            "2026-12-07 10:00",
            id="longer-spacing",
        ),
    ],
)
def test_next_follow_up_due(changes: dict[str, object], previous: str, expected_local: str) -> None:
    assert next_follow_up_due(local(previous), policy(**changes)) == local(expected_local)


@pytest.mark.parametrize(
    ("due", "back", "expected_local"),
    [
        pytest.param(
            "2026-11-23 09:00", "2026-11-26", "2026-11-27 09:00", id="returns-on-thanksgiving"
        ),
        pytest.param("2026-11-23 09:00", "2026-11-21", "2026-11-23 09:00", id="already-back"),
        pytest.param("2026-11-23 09:00", "2026-11-23", "2026-11-23 09:00", id="back-that-morning"),
        pytest.param("2026-11-23 11:00", "2026-11-24", "2026-11-24 09:00", id="back-next-day"),
    ],
)
def test_out_of_office_due(due: str, back: str, expected_local: str) -> None:
    assert out_of_office_due(local(due), d(back), US) == local(expected_local)


# --- quiet hours ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "start", "end", "expected"),
    [
        pytest.param("2026-11-24 20:59", time(21), time(8), False, id="before-start"),
        pytest.param("2026-11-24 21:00", time(21), time(8), True, id="at-start"),
        pytest.param("2026-11-24 23:30", time(21), time(8), True, id="late-evening"),
        pytest.param("2026-11-25 03:00", time(21), time(8), True, id="small-hours"),
        pytest.param("2026-11-25 07:59", time(21), time(8), True, id="just-before-end"),
        pytest.param("2026-11-25 08:00", time(21), time(8), False, id="at-end"),
        pytest.param("2026-11-25 12:00", time(21), time(8), False, id="midday"),
        pytest.param("2026-11-25 13:30", time(13), time(14), True, id="non-wrapping-inside"),
        pytest.param("2026-11-25 14:00", time(13), time(14), False, id="non-wrapping-end"),
        pytest.param("2026-11-25 03:00", time(8), time(8), False, id="empty-span-never-quiet"),
    ],
)
def test_in_quiet_hours(at: str, start: time, end: time, expected: bool) -> None:
    assert in_quiet_hours(local(at), policy(quiet_start=start, quiet_end=end)) is expected


@pytest.mark.parametrize(
    ("at", "expected_utc"),
    [
        pytest.param("2026-11-24 22:00", "2026-11-25 14:00", id="evening-to-next-morning"),
        pytest.param("2026-11-25 03:00", "2026-11-25 14:00", id="small-hours-to-same-morning"),
        pytest.param("2026-11-25 12:00", "2026-11-25 18:00", id="outside-unchanged"),
        pytest.param("2026-03-07 23:00", "2026-03-08 13:00", id="dst-start-night"),
        pytest.param("2026-10-31 23:00", "2026-11-01 14:00", id="dst-end-night"),
    ],
)
def test_after_quiet_hours(at: str, expected_utc: str) -> None:
    got = after_quiet_hours(local(at), US)
    assert got == utc(expected_utc)
    assert not in_quiet_hours(got, US)


def test_naive_datetime_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        thank_you_due(datetime(2026, 11, 24, 15, 0), US)
