"""The shared watch-loop pieces (watching.py); the loop itself runs in test_rollout.py
and test_teardown.py against the fake cluster.

Cases: SIGTERM while blocked on the watch raises `Interrupted`, later only sets the
flag; `StopFlag.events` is interruptible only while it waits for the next event, ends
with the stream, and reads nothing once a stop is requested.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kata_dispatcher import kube, watching


def test_sigterm_while_blocked_on_the_watch_interrupts_it() -> None:
    stop = watching.StopFlag()
    stop.interruptible = True
    with pytest.raises(watching.Interrupted):
        stop.request("received SIGTERM")
    assert stop.requested and not stop.interruptible
    stop.request("again")  # not interruptible now: only the flag


def _stream(stop: watching.StopFlag, seen: list[bool], count: int) -> Iterator[kube.WatchEvent]:
    """`count` events, noting for each whether the wait for it was interruptible."""
    for i in range(count):
        seen.append(stop.interruptible)
        yield kube.WatchEvent("MODIFIED", {"metadata": {"resourceVersion": str(i)}})
    seen.append(stop.interruptible)


def test_events_are_interruptible_only_while_waiting() -> None:
    stop = watching.StopFlag()
    waits: list[bool] = []
    handled: list[bool] = []
    for _ in stop.events(_stream(stop, waits, 3)):
        handled.append(stop.interruptible)
    assert waits == [True, True, True, True]  # three events, then the end of the stream
    assert handled == [False, False, False]
    assert not stop.interruptible


def test_events_stop_reading_once_a_stop_is_requested() -> None:
    stop = watching.StopFlag()
    waits: list[bool] = []
    got: list[str] = []
    for event in stop.events(_stream(stop, waits, 5)):
        got.append(event.object["metadata"]["resourceVersion"])
        stop.request("received SIGTERM")
    assert got == ["0"]
    assert len(waits) == 1  # the stream was not read again


def test_sigterm_during_the_wait_ends_the_iteration() -> None:
    stop = watching.StopFlag()

    def blocked() -> Iterator[kube.WatchEvent]:
        stop.request("received SIGTERM")  # as the signal handler would, mid-read
        yield kube.WatchEvent("BOOKMARK", {})

    with pytest.raises(watching.Interrupted):
        list(stop.events(blocked()))
    assert stop.requested and not stop.interruptible
