"""The one retry policy for API calls, and the clock it runs on.

Why: transient API trouble (connection errors, 429, 5xx) must not fail a rollout, but a
dead API server must not hang it either. Every API call goes through `call`, which
retries only `errors.Transient`, honours a server's Retry-After, and gives up once the
total time budget since the first failure is spent, re-raising the last error. A 409 on
create is not transient: the caller handles it. Time comes from a `Clock`, so tests
replace the clock and nothing else.
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


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, errors.Transient) and not exc.exhausted


def backoff(policy: Policy, attempt: int, *, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff for the given 1-based attempt number."""
    ceiling = min(policy.maximum, policy.initial * (2 ** (attempt - 1)))
    return (rng or random).uniform(policy.initial / 2, max(ceiling, policy.initial / 2))


def call(fn: Callable[[], T], *, policy: Policy, clock: Clock, what: str) -> T:
    """Run `fn`, retrying `errors.Transient` until `policy.budget` is spent.

    The budget starts at the first failure. A Retry-After hint is honoured exactly when
    it fits in what is left of the budget; when it does not, the call gives up at once.
    The last error is re-raised, marked `exhausted`.
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
