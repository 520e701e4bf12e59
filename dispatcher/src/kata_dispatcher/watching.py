"""The wait-on-one-watch loop shared by `rollout` (Jobs) and `teardown` (a DaemonSet).

Why: both runs wait the same way: ONE watch session at a time, resumed from the last
resourceVersion, ended by the server at the next progress tick or the deadline, a
relist on 410 Gone, every request through `retry.call`, and a SIGTERM that ends a
blocked read at once. `Watcher` holds that mechanism once; a subclass says which watch
to open, what an event means, what a tick does and how to catch up after 410 Gone.

What it must not do: talk to the API itself (the subclass opens the watch through
`kube.Api`), decide when a run is finished, or log on the subclasses' behalf.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterator
from typing import TypeVar

from kata_dispatcher import errors, kube, retry

T = TypeVar("T")

MAX_WATCH_SECONDS = 300


class Interrupted(Exception):
    """Raised from the SIGTERM handler while the loop is blocked reading the watch."""


class StopFlag:
    """Set by the SIGTERM handler. While `interruptible` (the loop is only waiting on the
    watch stream) the handler also raises `Interrupted` to end the wait at once;
    otherwise the loop sees the flag at its next check and stops dispatching."""

    def __init__(self) -> None:
        self.requested = False
        self.interruptible = False
        self.reason = ""

    def request(self, reason: str) -> None:
        self.requested = True
        self.reason = reason
        if self.interruptible:
            self.interruptible = False
            raise Interrupted(reason)

    def events(self, stream: Iterator[kube.WatchEvent]) -> Iterator[kube.WatchEvent]:
        """The stream's events until it ends or a stop is requested; only the wait for
        the next event is interruptible, never the handling of one."""
        while True:
            self.interruptible = True
            try:
                if self.requested:
                    return
                event = next(stream, None)
            finally:
                self.interruptible = False
            if event is None:
                return
            yield event


class Watcher(abc.ABC):
    """A run that waits on one watch: deadline, progress ticks, retried calls, and one
    watch session after another (`_watch_once`). `watching` names the watch in retry
    warnings and errors."""

    def __init__(
        self,
        api: kube.Api,
        *,
        clock: retry.Clock,
        stop: StopFlag | None,
        watching: str,
        retry_budget: float,
        timeout: float,
        progress_interval: float,
        tally: retry.Tally | None = None,
    ) -> None:
        self._api = api
        self._tally = tally if tally is not None else retry.Tally()
        self._watching = watching
        self._clock = clock
        self._stop = stop or StopFlag()
        self._policy = retry.Policy(budget=retry_budget)
        self._started = clock.monotonic()
        self._deadline = self._started + timeout if timeout > 0 else math.inf
        self._progress_interval = progress_interval
        self._next_tick = self._started + progress_interval
        self._rv = ""

    # -- what a subclass supplies -------------------------------------------------------

    @abc.abstractmethod
    def _open_watch(self, timeout_seconds: int) -> Iterator[kube.WatchEvent]:
        """Open the watch from `_rv` (errors raise here, and are retried)."""

    @abc.abstractmethod
    def _handle(self, event: kube.WatchEvent) -> bool:
        """Act on one event (`_rv` already follows it); False ends the session."""

    @abc.abstractmethod
    def _expired(self) -> None:
        """The watch's resourceVersion is gone (410): log it and list again."""

    @abc.abstractmethod
    def _on_tick(self) -> None:
        """The periodic work of a progress tick."""

    # -- the mechanism ------------------------------------------------------------------

    def _call(self, fn: Callable[[], T], what: str) -> T:
        return retry.call(fn, policy=self._policy, clock=self._clock, what=what, tally=self._tally)

    def _elapsed(self) -> float:
        return self._clock.monotonic() - self._started

    def _halted(self) -> bool:
        return self._stop.requested or self._clock.monotonic() >= self._deadline

    def _watch_seconds(self) -> int:
        until = min(self._next_tick, self._deadline) - self._clock.monotonic()
        return int(max(1, min(MAX_WATCH_SECONDS, math.ceil(until))))

    def _watch_once(self) -> None:
        """One watch session from the last resourceVersion, until the server ends it at
        the next progress tick, `_handle` says it is over, or the run must stop."""
        timeout = self._watch_seconds()
        attempts = 0

        def session() -> None:
            nonlocal attempts
            attempts += 1
            if attempts > 1:  # the one before broke off or could not be opened
                self._tally.watch_restarts += 1
            for event in self._stop.events(self._open_watch(timeout)):
                meta = event.object.get("metadata")
                if isinstance(meta, dict) and meta.get("resourceVersion"):
                    self._rv = str(meta["resourceVersion"])
                if not self._handle(event):
                    return

        try:
            self._call(session, self._watching)
        except errors.Gone:
            self._tally.relists += 1
            self._expired()

    def _tick(self) -> None:
        now = self._clock.monotonic()
        if now < self._next_tick:
            return
        while self._next_tick <= now:
            self._next_tick += self._progress_interval
        self._on_tick()
