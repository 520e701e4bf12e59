"""The retry policy (retry.py).

Cases: a transient error is retried and the call then succeeds; Retry-After is slept
exactly; the budget bounds the total time and the last error is re-raised, marked
exhausted; an exhausted error is not retried again by an outer retry; non-transient
errors (409 already exists, 404) are not retried; a Retry-After beyond the budget stops
at once; before_sleep logs a WARNING with the attempt number; backoff bounds; the
tally counts each retry by its cause (429, 5xx, no HTTP answer), not the attempt that
ends the call, and says so in the log's words.
"""

from __future__ import annotations

import logging
import random

import fakes
import pytest
from kata_dispatcher import errors, retry


def flaky(*failures: Exception, result: str = "ok") -> tuple[list[int], object]:
    calls: list[int] = []
    pending = list(failures)

    def fn() -> str:
        calls.append(1)
        if pending:
            raise pending.pop(0)
        return result

    return calls, fn


def test_transient_then_success(clock: fakes.FakeClock) -> None:
    calls, fn = flaky(errors.Transient("x", status=500), errors.Transient("x", status=None))
    assert retry.call(fn, policy=retry.Policy(budget=30), clock=clock, what="x") == "ok"  # type: ignore[arg-type]
    assert len(calls) == 3
    assert len(clock.sleeps) == 2


def test_retry_after_is_honoured_exactly(clock: fakes.FakeClock) -> None:
    _, fn = flaky(errors.Transient("x", status=429, retry_after=7.0))
    retry.call(fn, policy=retry.Policy(budget=30), clock=clock, what="x")  # type: ignore[arg-type]
    assert clock.sleeps == [7.0]


def test_budget_exhausted_reraises_the_last_error(clock: fakes.FakeClock) -> None:
    failures = [errors.Transient("x", status=503, message=f"try {i}") for i in range(1000)]
    calls, fn = flaky(*failures)
    with pytest.raises(errors.Transient) as info:
        retry.call(fn, policy=retry.Policy(budget=20, maximum=4), clock=clock, what="x")  # type: ignore[arg-type]
    assert info.value.exhausted
    assert info.value.message == f"try {len(calls) - 1}"
    assert sum(clock.sleeps) <= 20 + 1e-9
    assert len(calls) > 3


def test_exhausted_error_is_not_retried_by_an_outer_call(clock: fakes.FakeClock) -> None:
    outer_calls: list[int] = []

    def outer() -> None:
        outer_calls.append(1)
        _, inner = flaky(*[errors.Transient("x", status=503) for _ in range(100)])
        retry.call(inner, policy=retry.Policy(budget=5), clock=clock, what="inner")  # type: ignore[arg-type]

    with pytest.raises(errors.Transient):
        retry.call(outer, policy=retry.Policy(budget=60), clock=clock, what="outer")
    assert len(outer_calls) == 1


@pytest.mark.parametrize(
    "exc",
    [
        errors.AlreadyExists("x", status=409),
        errors.NotFound("x", status=404),
        errors.Forbidden("x"),
    ],
)
def test_other_errors_are_not_retried(clock: fakes.FakeClock, exc: Exception) -> None:
    calls, fn = flaky(exc)
    with pytest.raises(type(exc)):
        retry.call(fn, policy=retry.Policy(budget=30), clock=clock, what="x")  # type: ignore[arg-type]
    assert len(calls) == 1 and clock.sleeps == []


def test_retry_after_beyond_the_budget_stops_at_once(clock: fakes.FakeClock) -> None:
    calls, fn = flaky(errors.Transient("x", status=429, retry_after=600))
    with pytest.raises(errors.Transient):
        retry.call(fn, policy=retry.Policy(budget=30), clock=clock, what="x")  # type: ignore[arg-type]
    assert len(calls) == 1 and clock.sleeps == []


def test_before_sleep_logs_warning_with_attempt(
    clock: fakes.FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    _, fn = flaky(errors.Transient("create Job j", status=429, retry_after=1.0))
    with caplog.at_level(logging.WARNING, logger="kata_dispatcher.retry"):
        retry.call(fn, policy=retry.Policy(budget=30), clock=clock, what="create Job j")  # type: ignore[arg-type]
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "create Job j failed (attempt 1)" in record.getMessage()
    assert "HTTP 429" in record.getMessage()


def test_backoff_grows_and_is_capped() -> None:
    policy = retry.Policy(initial=0.5, maximum=4)
    rng = random.Random(1)  # noqa: S311 - jitter, not secrets
    for attempt in range(1, 12):
        delay = retry.backoff(policy, attempt, rng=rng)
        assert 0.25 <= delay <= min(4, 0.5 * 2 ** (attempt - 1)) or delay == 0.25


def test_system_clock_moves() -> None:
    clock = retry.SystemClock()
    first = clock.monotonic()
    clock.sleep(0)
    assert clock.monotonic() >= first


def test_the_tally_counts_each_retry_by_its_cause(clock: fakes.FakeClock) -> None:
    tally = retry.Tally()
    _, fn = flaky(
        errors.Transient("x", status=429, retry_after=1.0),
        errors.Transient("x", status=503),
        errors.Transient("x", status=500),
        errors.Transient("x", message="connection refused"),
        errors.Transient("x", status=403, message="refused by an API server still starting"),
    )
    retry.call(fn, policy=retry.Policy(budget=30), clock=clock, what="x", tally=tally)  # type: ignore[arg-type]
    assert tally.as_dict() == {
        "total": 5,
        "rate_limited": 1,
        "server_error": 2,
        "connection": 1,
        "refused": 1,
        "watch_restarts": 0,
        "relists": 0,
    }
    assert tally.describe() == (
        "5 retries (429: 1, 5xx: 2, connection: 1, 401/403: 1), 0 watch restarts, 0 relists"
    )


def test_the_tally_counts_retries_not_the_attempt_that_gives_up(clock: fakes.FakeClock) -> None:
    tally = retry.Tally()
    calls, fn = flaky(*[errors.Transient("x", status=502) for _ in range(1000)])
    with pytest.raises(errors.Transient):
        retry.call(
            fn, policy=retry.Policy(budget=10, maximum=2), clock=clock, what="x", tally=tally
        )  # type: ignore[arg-type]
    assert tally.server_error == tally.total == len(calls) - 1 == len(clock.sleeps)
    calls, fn = flaky(errors.NotFound("x", status=404))
    with pytest.raises(errors.NotFound):
        retry.call(fn, policy=retry.Policy(budget=10), clock=clock, what="x", tally=tally)  # type: ignore[arg-type]
    assert tally.total == len(clock.sleeps)  # a 404 is not retried, not counted
