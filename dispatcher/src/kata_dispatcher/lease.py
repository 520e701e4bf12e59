"""One run at a time per release: a coordination.k8s.io/v1 Lease held while a run works.

Why: Helm's install, upgrade and uninstall hooks and the reconcile CronJob each start a
dispatcher, and two of them dispatching for the same release at once would race for the
same per-node Jobs (and an uninstall would race a reconcile that installs). A Lease in
the release namespace is the lock: `acquire` takes it (creating it the first time), the
run renews it on every progress tick, `release` empties it at the end, SIGTERM included.
Its owner is the release's Job-template ConfigMap, when the run has one (`owner`), so
the garbage collector deletes the Lease when `helm uninstall` deletes the ConfigMap:
nothing of the release is left in its namespace.
A dispatcher killed outright (SIGKILL, a lost node) stops renewing it, and anyone may
take it once `leaseDurationSeconds` have passed since its `renewTime`: the lock survives
the pod without outliving it. Taking and renewing are updates with the resourceVersion
read (optimistic concurrency), so two takers cannot both win.

Modes: WAIT (Helm's runs) waits for a live holder to let go; YIELD (the reconcile
CronJob) steps aside at once, since the next schedule will come. Expiry compares the
holder's `renewTime` with this machine's UTC clock, so it assumes the cluster's clocks
agree within `SKEW` seconds (NTP).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Callable
from typing import Any

from kata_dispatcher import errors, kube, retry, settings

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SKEW = 5.0  # seconds of clock difference tolerated between dispatcher pods
POLL = 2.0  # seconds between looks at a held Lease in WAIT mode


Mode = settings.LeaseMode


class LeaseLost(errors.DispatcherError):
    """Another run took the Lease while this one held it (it stopped renewing in time)."""

    exit_code = errors.ExitCode.API_UNREACHABLE


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _micro(when: datetime.datetime) -> str:
    """A Kubernetes MicroTime."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True)
class Holder:
    """Who holds a Lease as read, and until when (None: nobody, or it has expired)."""

    identity: str
    expires: datetime.datetime | None

    def live(self, now: datetime.datetime) -> bool:
        return bool(self.identity) and self.expires is not None and now < self.expires

    @classmethod
    def of(cls, lease: Obj) -> Holder:
        spec = lease.get("spec") or {}
        renewed = _parse(str(spec.get("renewTime") or spec.get("acquireTime") or ""))
        seconds = int(spec.get("leaseDurationSeconds") or 0)
        expires = renewed + datetime.timedelta(seconds=seconds + SKEW) if renewed else None
        return cls(str(spec.get("holderIdentity") or ""), expires)


class Lease:
    """The Lease `name` in `namespace`, held as `identity` for `duration` seconds at a
    time. `send` runs one API call with the caller's retry policy."""

    def __init__(
        self,
        api: kube.Api,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration: int,
        send: Callable[[Callable[[], Obj], str], Obj],
        clock: retry.Clock,
        owner: Obj | None = None,
        now: Callable[[], datetime.datetime] = _utc_now,
    ) -> None:
        self._api = api
        self._owner = owner  # an ownerReference, written with every update
        self._ns = namespace
        self._name = name
        self._identity = identity
        self._duration = duration
        self._send = send
        self._clock = clock
        self._now = now
        self._lease: Obj | None = None  # as last written by us

    @property
    def what(self) -> str:
        return f"Lease {self._ns}/{self._name}"

    def _read(self) -> Obj | None:
        try:
            return self._send(
                lambda: self._api.read_lease(self._ns, self._name), f"read {self.what}"
            )
        except errors.NotFound:
            return None

    def _body(self, lease: Obj | None, *, holder: str) -> Obj:
        now = _micro(self._now())
        spec: Obj = dict((lease or {}).get("spec") or {})
        taking = spec.get("holderIdentity") != holder
        spec.update(
            {
                "holderIdentity": holder,
                "leaseDurationSeconds": self._duration,
                "renewTime": now,
            }
        )
        if holder and taking:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if lease else 0)
        meta: Obj = {"name": self._name, "namespace": self._ns}
        if self._owner is not None:
            meta["ownerReferences"] = [self._owner]
        if lease is not None:
            meta["resourceVersion"] = (lease.get("metadata") or {}).get("resourceVersion", "")
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": spec,
        }

    def _take(self, lease: Obj | None) -> bool:
        """Write ourselves in as the holder; False when someone else wrote first."""
        body = self._body(lease, holder=self._identity)
        try:
            if lease is None:
                self._lease = self._send(
                    lambda: self._api.create_lease(self._ns, body), f"create {self.what}"
                )
            else:
                self._lease = self._send(
                    lambda: self._api.replace_lease(self._ns, self._name, body), f"take {self.what}"
                )
        except errors.Conflict:  # AlreadyExists included: another run was quicker
            return False
        return True

    def acquire(self, mode: Mode, *, give_up: Callable[[], bool]) -> bool:
        """Hold the Lease. WAIT: until it is free, or `give_up()` (then False); YIELD:
        False at once when a live run holds it."""
        waited = False
        while True:
            lease = self._read()
            holder = Holder.of(lease) if lease is not None else Holder("", None)
            if holder.identity == self._identity or not holder.live(self._now()):
                if holder.identity and holder.identity != self._identity:
                    log.warning(
                        "%s: %s stopped renewing it; taking it over", self.what, holder.identity
                    )
                if self._take(lease):
                    log.info("%s held by %s", self.what, self._identity)
                    return True
                continue
            if mode is Mode.YIELD:
                log.info(
                    "%s is held by %s: another run is dispatching; nothing to do now",
                    self.what,
                    holder.identity,
                )
                return False
            if not waited:
                log.info("waiting for %s to finish (it holds %s)", holder.identity, self.what)
                waited = True
            if give_up():
                return False
            self._clock.sleep(POLL)

    def renew(self) -> None:
        """Extend our hold; LeaseLost if another run has taken it meanwhile."""
        if self._lease is None:
            return
        body = self._body(self._lease, holder=self._identity)
        try:
            self._lease = self._send(
                lambda: self._api.replace_lease(self._ns, self._name, body), f"renew {self.what}"
            )
            return
        except errors.Conflict:
            pass
        current = self._read()
        if current is not None and Holder.of(current).identity == self._identity:
            self._lease = current  # someone touched it without taking it: try once more
            self.renew()
            return
        self._lease = None
        raise LeaseLost(f"{self.what} was taken by another run; stopping")

    def release(self) -> None:
        """Let go (empty holder), so the next run need not wait for expiry. Best effort:
        a failure here leaves a Lease that expires by itself."""
        if self._lease is None:
            return
        body = self._body(self._lease, holder="")
        self._lease = None
        try:
            self._send(
                lambda: self._api.replace_lease(self._ns, self._name, body), f"release {self.what}"
            )
            log.info("%s released", self.what)
        except errors.DispatcherError as exc:
            log.warning("could not release %s (%s); it expires by itself", self.what, exc)
