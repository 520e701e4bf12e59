"""The one retry policy for API calls, and the clock it runs on.

Why: transient API trouble (connection errors, 429, 5xx) must not fail a rollout, but a
dead API server must not hang it either. Every API call goes through `call`, which
retries only `errors.Transient`, honours a server's Retry-After, and gives up once the
total time budget since the first failure is spent, re-raising the last error. A 409 on
create is not transient: the caller handles it. Time comes from a `Clock`, so tests
replace the clock and nothing else. Each retry is counted in the run's `Tally` by what
caused it, so the summary shows what the run went through, not only that it ended well.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import tenacity

from kata_dispatcher import errors

log = logging.getLogger(__name__)

T = TypeVar("T")


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclasses.dataclass(frozen=True)
class Policy:
    """budget: seconds allowed from the first failure to the last attempt.
    initial/maximum: bounds of the exponential backoff (with full jitter) between tries,
    used when the server gives no Retry-After."""

    budget: float = 120.0
    initial: float = 0.5
    maximum: float = 10.0


@dataclasses.dataclass
class Tally:
    """The retries of one run, by cause (the summary's `retries`).

    rate_limited, server_error, connection, refused: each retry `call` made (one more
    attempt after a sleep), by the failure before it: HTTP 429, HTTP 5xx (a watch's
    ERROR event with a 5xx code too), no HTTP answer at all (refused, reset, timed out, a
    stream that broke off), or a 401/403 from an API server still starting (see
    kube.py). Their sum is `total`.
    watch_restarts: how many of those re-opened a watch, counted by the watch loop.
    relists: a watch's resourceVersion expired (410 Gone) and everything was listed
    again; not a failed request, so not in `total`."""

    rate_limited: int = 0
    server_error: int = 0
    connection: int = 0
    refused: int = 0
    watch_restarts: int = 0
    relists: int = 0

    @property
    def total(self) -> int:
        return self.rate_limited + self.server_error + self.connection + self.refused

    def count(self, exc: BaseException | None) -> None:
        """One retry after `exc`."""
        status = exc.status if isinstance(exc, errors.ApiError) else None
        if status == 429:
            self.rate_limited += 1
        elif status is not None and status >= 500:
            self.server_error += 1
        elif status in (401, 403):
            self.refused += 1
        else:
            self.connection += 1

    def as_dict(self) -> dict[str, int]:
        return {
            "total": self.total,
            "rate_limited": self.rate_limited,
            "server_error": self.server_error,
            "connection": self.connection,
            "refused": self.refused,
            "watch_restarts": self.watch_restarts,
            "relists": self.relists,
        }

    def describe(self) -> str:
        """The log's words for it."""
        return (
            f"{self.total} retries (429: {self.rate_limited}, 5xx: {self.server_error}, "
            f"connection: {self.connection}, 401/403: {self.refused}), "
            f"{self.watch_restarts} watch restarts, "
            f"{self.relists} relists"
        )


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, errors.Transient) and not exc.exhausted


def backoff(policy: Policy, attempt: int, *, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff for the given 1-based attempt number."""
    ceiling = min(policy.maximum, policy.initial * (2 ** (attempt - 1)))
    return (rng or random).uniform(policy.initial / 2, max(ceiling, policy.initial / 2))


def call(
    fn: Callable[[], T],
    *,
    policy: Policy,
    clock: Clock,
    what: str,
    tally: Tally | None = None,
) -> T:
    """Run `fn`, retrying `errors.Transient` until `policy.budget` is spent.

    The budget starts at the first failure. A Retry-After hint is honoured exactly when
    it fits in what is left of the budget; when it does not, the call gives up at once.
    The last error is re-raised, marked `exhausted`. Each retry is counted in `tally`.
    """
    first_failure: list[float] = []

    def remaining() -> float:
        if not first_failure:
            first_failure.append(clock.monotonic())
        return policy.budget - (clock.monotonic() - first_failure[0])

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        left = remaining()
        hint = exc.retry_after if isinstance(exc, errors.Transient) else None
        delay = hint if hint is not None else backoff(policy, state.attempt_number)
        return max(0.0, min(delay, left))

    def stop(state: tenacity.RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        left = remaining()
        if left <= 0:
            return True
        hint = exc.retry_after if isinstance(exc, errors.Transient) else None
        return hint is not None and hint > left

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        if tally is not None:
            tally.count(exc)
        log.warning(
            "%s failed (attempt %d): %s; retrying in %.1fs",
            what,
            state.attempt_number,
            exc,
            delay,
        )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_retryable),
        stop=stop,
        wait=wait,
        sleep=clock.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(fn)
    except errors.Transient as exc:
        exc.exhausted = True
        raise
