"""The one retry policy (mailbridge/retry.py), by table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailbridge import retry

NOW = datetime(2026, 11, 17, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "reasons", "expected"),
    [
        (429, (), True),
        (500, (), True),
        (502, (), True),
        (503, (), True),
        (504, (), True),
        (403, ("rateLimitExceeded",), True),
        (403, ("userRateLimitExceeded",), True),
        (403, ("insufficientPermissions",), False),
        (403, (), False),
        (400, (), False),
        (404, (), False),
        (410, (), False),
    ],
)
def test_what_is_worth_another_try(status: int, reasons: tuple[str, ...], expected: bool) -> None:
    assert retry.retryable(status, reasons) is expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [(None, True), (500, True), (503, True), (504, True), (429, False), (403, False)],
)
def test_what_may_have_been_carried_out(status: int | None, expected: bool) -> None:
    assert retry.ambiguous(status) is expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        ("-3", 0.0),
        ("Tue, 17 Nov 2026 12:00:30 GMT", 30.0),
        ("Tue, 17 Nov 2026 11:00:00 GMT", 0.0),
        ("soon", None),
    ],
)
def test_retry_after_header(header: str | None, expected: float | None) -> None:
    assert retry.retry_after(header, now=lambda: NOW) == expected


def test_the_wait_honours_retry_after_and_gives_up_past_its_limits() -> None:
    policy = retry.RetryPolicy(attempts=4, base=0.5, cap=3.0, max_retry_after=60.0)
    assert policy.wait(1, retry_after=12.0) == 12.0  # never sooner than the server asked
    assert policy.wait(1, retry_after=61.0) is None  # longer than this pass may wait
    assert policy.wait(4) is None  # out of attempts
    for attempt in range(1, 4):
        pause = policy.wait(attempt)
        assert pause is not None and 0.0 <= pause <= 3.0  # capped


def test_the_backoff_grows_with_each_attempt() -> None:
    policy = retry.RetryPolicy(attempts=10, base=1.0, cap=1000.0)
    # Full jitter: compare the largest of many draws per attempt.
    peaks = [max(policy.backoff(attempt) for _ in range(200)) for attempt in (1, 3, 5)]
    assert peaks[0] < peaks[1] < peaks[2]
    assert peaks[2] > 4.0


class _Answer:
    def __init__(self, status: int, retry_after: str | None = None) -> None:
        self.status_code = status
        self.headers = {"Retry-After": retry_after} if retry_after else {}
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_read_retries_throttling_and_faults_then_returns_the_answer() -> None:
    waits: list[float] = []
    policy = retry.RetryPolicy(attempts=4, base=0.5, cap=3.0, sleep=waits.append)
    answers = iter([_Answer(503), _Answer(429, "7"), _Answer(200)])
    assert retry.read(lambda: next(answers), policy).status_code == 200
    assert len(waits) == 2 and waits[1] == 7.0  # the server's Retry-After, not a guess


def test_read_gives_back_a_refusal_at_once_and_a_fault_after_the_last_attempt() -> None:
    waits: list[float] = []
    policy = retry.RetryPolicy(attempts=2, sleep=waits.append)
    assert retry.read(lambda: _Answer(404), policy).status_code == 404 and waits == []
    assert retry.read(lambda: _Answer(500), policy).status_code == 500 and len(waits) == 1


def test_read_raises_the_last_error_when_nothing_answers() -> None:
    calls: list[int] = []

    def send() -> _Answer:
        calls.append(1)
        raise ConnectionError("reset")

    with pytest.raises(ConnectionError):
        retry.read(send, retry.RetryPolicy(attempts=3, sleep=lambda _: None))
    assert len(calls) == 3


def test_a_library_session_retries_reads_only() -> None:
    adapter = retry.RetryPolicy(attempts=3).adapter_retry()
    assert adapter.total == 2 and 503 in adapter.status_forcelist
    assert adapter.is_retry("PROPFIND", 503) and adapter.is_retry("GET", 429)
    assert not adapter.is_retry("PUT", 503) and not adapter.is_retry("GET", 404)


@pytest.mark.parametrize(("attempt", "expected"), [
    (1, 10.0), (2, 20.0), (3, 40.0), (5, 160.0), (8, 1000.0), (500, 1000.0),
])
def test_the_one_backoff_curve_doubles_up_to_its_cap(attempt: int, expected: float) -> None:
    assert retry.exponential(attempt, 10.0, 1000.0) == expected
