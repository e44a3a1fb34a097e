"""When to try a remote request again, and how long to wait: one policy for every HTTP provider.

Providers ask three questions of it: may this failure be retried (`retryable`), how long to
wait before attempt N (`RetryPolicy.wait`, never sooner than the server's ``Retry-After``),
and is this request safe to repeat at all (`ambiguous`). A request that changes something and
is not idempotent (create a draft) must never be sent twice blindly after a failure that may
have come after the server did the work (timeout, connection reset, 5xx): the caller raises
`mailbridge.adapters.AmbiguousWrite` instead, and the engine looks the draft's Message-ID up
before it tries again.

The backoff is urllib3's (exponential, capped); jitter spreads clients that failed together.
A provider that sends its own requests loops with `read` (ICS) or its own loop over these
three questions (Gmail, Graph); one whose library sends them (caldav's session) mounts
`RetryPolicy.adapter_retry` on it, the same policy as urllib3's ``Retry``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:  # imported where used: urllib3's HTTP stack costs every command (`check`)
    from urllib3.util import Retry

# Throttled (429) or the server's fault (5xx): worth another try.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Only these are repeated by a library's session: they change nothing on the server.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PROPFIND", "REPORT"})
# A 403 with one of these reasons is throttling, not a refusal (Google's usage limits).
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying a throttled or failing request before giving up for this pass."""

    attempts: int = 5
    base: float = 0.5  # seconds; doubled per attempt
    cap: float = 30.0
    max_retry_after: float = 120.0  # a longer Retry-After is a fault for this pass
    timeout: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep)

    def backoff(self, attempt: int) -> float:
        """The pause after failed attempt ``attempt`` (1-based): `exponential`, with full
        jitter."""
        return random.uniform(0, exponential(attempt, self.base, self.cap))

    def wait(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before the next attempt, or None: give up (out of attempts, or
        the server asked for a longer pause than this pass may take)."""
        if attempt >= self.attempts:
            return None
        if retry_after is not None:
            return None if retry_after > self.max_retry_after else retry_after
        return self.backoff(attempt)

    def adapter_retry(self) -> Retry:
        """This policy as urllib3's ``Retry``, for a session that a library drives: reads
        only, throttling and server faults, ``Retry-After`` honoured up to its limit."""
        from urllib3.util import Retry

        return Retry(
            total=self.attempts - 1, status_forcelist=RETRY_STATUSES,
            allowed_methods=IDEMPOTENT_METHODS, backoff_factor=self.base,
            backoff_max=self.cap, backoff_jitter=self.base, respect_retry_after_header=True,
            retry_after_max=int(self.max_retry_after), raise_on_status=False,
        )


class Answer(Protocol):
    """What `read` needs of an HTTP response (requests' and niquests' both fit)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def close(self) -> None: ...


A = TypeVar("A", bound=Answer)


def read(send: Callable[[], A], policy: RetryPolicy,
         errors: tuple[type[Exception], ...] = (OSError,)) -> A:
    """Sends an idempotent request (a GET) again while it fails with one of ``errors`` (no
    answer) or is answered throttled or failing, as ``policy`` says; returns the last answer
    (the caller maps its status) or raises the last error."""
    attempt = 1
    while True:
        try:
            answer = send()
        except errors:
            if attempt >= policy.attempts:
                raise
            policy.sleep(policy.backoff(attempt))
            attempt += 1
            continue
        if not retryable(answer.status_code):
            return answer
        wait = policy.wait(attempt, retry_after(answer.headers.get("Retry-After")))
        if wait is None:
            return answer
        answer.close()
        policy.sleep(wait)
        attempt += 1


def exponential(attempt: int, first: float, cap: float) -> float:
    """The one backoff curve of mailbridge: ``first`` after the first failure, doubled after
    each further one, never more than ``cap``. It is urllib3's ``Retry`` backoff, so a session
    that a library drives (`RetryPolicy.adapter_retry`) waits the same way. Callers add their
    own jitter."""
    from urllib3.util import Retry

    steps = max(1, min(attempt, 64))  # 2**63 times anything is past every cap
    retry = Retry(total=steps + 1, backoff_factor=first, backoff_max=cap)
    for _ in range(steps):
        retry = retry.increment()
    # urllib3 waits 0 after the first failure; one ``first`` keeps the first retry apart.
    return min(cap, retry.get_backoff_time() or first)


def retryable(status: int, reasons: Iterable[str] = ()) -> bool:
    """Whether an HTTP answer is worth another try: throttled, a server fault, or Google's
    403 that means "slow down"."""
    return status in RETRY_STATUSES or (status == 403 and bool(RATE_LIMIT_REASONS & set(reasons)))


def ambiguous(status: int | None) -> bool:
    """Whether a failed request may still have been carried out: no answer at all (None:
    timeout, reset) or a server fault. 429 and 403 rate limits mean it was refused unread."""
    return status is None or status >= 500


def retry_after(value: str | None, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> (
    float | None
):
    """Seconds a ``Retry-After`` header asks for (delta seconds or an HTTP date), if any."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())
