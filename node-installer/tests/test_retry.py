"""The retry policy (retry.py), the same as kata-dispatcher's.

Cases: a transient error is retried and the call then succeeds, each retry counted;
Retry-After is slept exactly; the budget bounds the total time and the last error is
re-raised; non-transient errors (not found, conflict, refused) are not retried; a
Retry-After beyond the budget stops at once; before_sleep logs a WARNING with the
attempt number; backoff bounds; the defaults are the dispatcher's (120 s, 0.5 s to 10 s).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import fakes
import pytest
from kata_installer import errors, retry


def flaky(*failures: Exception, result: str = "ok") -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []
    pending = list(failures)

    def fn() -> str:
        calls.append(1)
        if pending:
            raise pending.pop(0)
        return result

    return calls, fn


@pytest.fixture
def clock() -> fakes.FakeClock:
    return fakes.FakeClock()


def _call(
    fn: Callable[[], str], clock: fakes.FakeClock, counter: retry.Counter, **kw: float
) -> str:
    return retry.call(fn, policy=retry.Policy(**kw), clock=clock, what="x", counter=counter)


def test_transient_then_success_is_counted(clock: fakes.FakeClock) -> None:
    counter = retry.Counter()
    calls, fn = flaky(errors.Transient("x: 500"), errors.Transient("x: refused"))
    assert _call(fn, clock, counter, budget=30) == "ok"
    assert len(calls) == 3 and len(clock.sleeps) == 2 and counter.retries == 2


def test_retry_after_is_honoured_exactly(clock: fakes.FakeClock) -> None:
    _, fn = flaky(errors.Transient("x: 429", retry_after=7.0))
    _call(fn, clock, retry.Counter(), budget=30)
    assert clock.sleeps == [7.0]


def test_budget_exhausted_reraises_the_last_error(clock: fakes.FakeClock) -> None:
    counter = retry.Counter()
    calls, fn = flaky(*[errors.Transient(f"try {i}") for i in range(1000)])
    with pytest.raises(errors.Transient) as info:
        _call(fn, clock, counter, budget=20, maximum=4)
    assert str(info.value) == f"try {len(calls) - 1}"
    assert sum(clock.sleeps) <= 20 + 1e-9
    assert len(calls) > 3 and counter.retries == len(calls) - 1


@pytest.mark.parametrize(
    "exc",
    [errors.NotFound("x"), errors.Conflict("x"), errors.KubeRefused("x"), errors.HostError("x")],
)
def test_other_errors_are_not_retried(clock: fakes.FakeClock, exc: Exception) -> None:
    calls, fn = flaky(exc)
    with pytest.raises(type(exc)):
        _call(fn, clock, retry.Counter(), budget=30)
    assert len(calls) == 1 and clock.sleeps == []


def test_retry_after_beyond_the_budget_stops_at_once(clock: fakes.FakeClock) -> None:
    calls, fn = flaky(errors.Transient("x: 429", retry_after=600))
    with pytest.raises(errors.Transient):
        _call(fn, clock, retry.Counter(), budget=30)
    assert len(calls) == 1 and clock.sleeps == []


def test_before_sleep_logs_warning_with_attempt(
    clock: fakes.FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    _, fn = flaky(errors.Transient("patch node n: API error 429", retry_after=1.0))
    with caplog.at_level(logging.WARNING, logger="kata_installer.retry"):
        retry.call(
            fn, policy=retry.Policy(), clock=clock, what="patch node n", counter=retry.Counter()
        )
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "patch node n failed (attempt 1)" in record.getMessage()
    assert "retrying in 1.0s" in record.getMessage()


def test_backoff_grows_and_is_capped() -> None:
    policy = retry.Policy(initial=0.5, maximum=4)
    rng = random.Random(1)  # noqa: S311 - jitter, not secrets
    for attempt in range(1, 12):
        delay = retry.backoff(policy, attempt, rng=rng)
        assert 0.25 <= delay <= min(4, 0.5 * 2 ** (attempt - 1)) or delay == 0.25


def test_defaults_are_the_documented_policy() -> None:
    assert retry.Policy() == retry.Policy(budget=120.0, initial=0.5, maximum=10.0)


def test_system_clock_moves() -> None:
    clock = retry.SystemClock()
    first = clock.monotonic()
    clock.sleep(0)
    assert clock.monotonic() >= first
