"""The one retry policy for API calls, the same as kata-dispatcher's (docs/contracts.md,
"Retries"), and the clock it runs on.

Why: transient API trouble (connection errors, 429, 5xx) must not fail a node's install,
but a dead API server must not hang it either. Every API call goes through `call`, which
retries only `errors.Transient`, honours a server's Retry-After, and gives up once the
total time budget since the first failure is spent, re-raising the last error. Each
retry is logged at WARNING with the attempt number and counted, so the run's last line
can say how many there were. The two programs are separate distributions, so this module
mirrors the dispatcher's `retry.py` instead of importing it; the contract test runs both
on the same failures.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import tenacity

from kata_installer import errors

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
class Counter:
    """How many times calls were retried in this process (every call, every attempt)."""

    retries: int = 0


def backoff(policy: Policy, attempt: int, *, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff for the given 1-based attempt number."""
    ceiling = min(policy.maximum, policy.initial * (2 ** (attempt - 1)))
    return (rng or random).uniform(policy.initial / 2, max(ceiling, policy.initial / 2))


def call(fn: Callable[[], T], *, policy: Policy, clock: Clock, what: str, counter: Counter) -> T:
    """Run `fn`, retrying `errors.Transient` until `policy.budget` is spent.

    The budget starts at the first failure. A Retry-After hint is honoured exactly when
    it fits in what is left of the budget; when it does not, the call gives up at once.
    The last error is re-raised.
    """
    first_failure: list[float] = []

    def remaining() -> float:
        if not first_failure:
            first_failure.append(clock.monotonic())
        return policy.budget - (clock.monotonic() - first_failure[0])

    def hint_of(state: tenacity.RetryCallState) -> float | None:
        exc = state.outcome.exception() if state.outcome else None
        return exc.retry_after if isinstance(exc, errors.Transient) else None

    def wait(state: tenacity.RetryCallState) -> float:
        left = remaining()
        hint = hint_of(state)
        delay = hint if hint is not None else backoff(policy, state.attempt_number)
        return max(0.0, min(delay, left))

    def stop(state: tenacity.RetryCallState) -> bool:
        left = remaining()
        if left <= 0:
            return True
        hint = hint_of(state)
        return hint is not None and hint > left

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        counter.retries += 1
        log.warning(
            "%s failed (attempt %d): %s; retrying in %.1fs",
            what,
            state.attempt_number,
            exc,
            delay,
        )

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(errors.Transient),
        stop=stop,
        wait=wait,
        sleep=clock.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(fn)
