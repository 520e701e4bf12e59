"""One run at a time (lease.py) against the in-memory API of fakes.py.

Cases: a missing Lease is created and held; renew and release write it back; a live
holder makes YIELD step aside and WAIT wait until it lets go (or give up); a holder that
stopped renewing is taken over (leaseTransitions counted); a lost race on the write is
read again; a Lease taken by another run while held is LeaseLost; a failed release only
warns.
"""

from __future__ import annotations

import datetime
from typing import Any

import fakes
import pytest
from kata_dispatcher import errors, lease

EPOCH = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
NAME = "kata-deploy-dispatcher"


def _send(fn: Any, what: str) -> Any:
    return fn()


def make(api: fakes.FakeApi, clock: fakes.FakeClock, identity: str = "me") -> lease.Lease:
    return lease.Lease(
        api,
        namespace="kata",
        name=NAME,
        identity=identity,
        duration=60,
        send=_send,
        clock=clock,
        now=lambda: EPOCH + datetime.timedelta(seconds=clock.monotonic()),
    )


def held_by(api: fakes.FakeApi, clock: fakes.FakeClock, holder: str, *, age: float = 0) -> None:
    renewed = EPOCH + datetime.timedelta(seconds=clock.monotonic() - age)
    api.leases[NAME] = {
        "metadata": {"name": NAME, "namespace": "kata", "resourceVersion": "7"},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 60,
            "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "leaseTransitions": 2,
        },
    }


@pytest.fixture
def clock() -> fakes.FakeClock:
    return fakes.FakeClock()


@pytest.fixture
def api(clock: fakes.FakeClock) -> fakes.FakeApi:
    return fakes.FakeApi(clock, owner=None)


def test_a_missing_lease_is_created_held_renewed_and_released(
    api: fakes.FakeApi, clock: fakes.FakeClock
) -> None:
    held = make(api, clock)
    assert held.acquire(lease.Mode.YIELD, give_up=lambda: False)
    spec = api.leases[NAME]["spec"]
    assert spec["holderIdentity"] == "me" and spec["leaseDurationSeconds"] == 60
    first = spec["renewTime"]
    clock.sleep(10)
    held.renew()
    assert api.leases[NAME]["spec"]["renewTime"] > first
    held.release()
    assert api.leases[NAME]["spec"]["holderIdentity"] == ""
    # the next run takes a released Lease at once, even in YIELD mode
    assert make(api, clock, "next").acquire(lease.Mode.YIELD, give_up=lambda: False)


def test_yield_steps_aside_for_a_live_holder(api: fakes.FakeApi, clock: fakes.FakeClock) -> None:
    held_by(api, clock, "helm-upgrade@pod", age=30)
    assert not make(api, clock).acquire(lease.Mode.YIELD, give_up=lambda: False)
    assert api.leases[NAME]["spec"]["holderIdentity"] == "helm-upgrade@pod"
    assert not api.calls_of("replace_lease")


def test_wait_waits_until_the_holder_lets_go(api: fakes.FakeApi, clock: fakes.FakeClock) -> None:
    held_by(api, clock, "reconcile@pod")
    looks = {"n": 0}

    def give_up() -> bool:
        looks["n"] += 1
        if looks["n"] == 3:  # the reconcile run finishes and releases
            api.leases[NAME]["spec"]["holderIdentity"] = ""
        return False

    assert make(api, clock).acquire(lease.Mode.WAIT, give_up=give_up)
    assert api.leases[NAME]["spec"]["holderIdentity"] == "me"
    assert clock.sleeps == [lease.POLL] * 3


def test_wait_gives_up_when_told(api: fakes.FakeApi, clock: fakes.FakeClock) -> None:
    held_by(api, clock, "reconcile@pod")
    assert not make(api, clock).acquire(lease.Mode.WAIT, give_up=lambda: True)


def test_a_holder_that_stopped_renewing_is_taken_over(
    api: fakes.FakeApi, clock: fakes.FakeClock
) -> None:
    held_by(api, clock, "killed@pod", age=60 + lease.SKEW + 1)
    assert make(api, clock).acquire(lease.Mode.YIELD, give_up=lambda: False)
    spec = api.leases[NAME]["spec"]
    assert spec["holderIdentity"] == "me" and spec["leaseTransitions"] == 3


def test_a_lost_race_reads_again(api: fakes.FakeApi, clock: fakes.FakeClock) -> None:
    real_create = api.create_lease

    def quicker_run_first(namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        held_by(api, clock, "quicker@pod")  # another run created it between our read and write
        api.create_lease = real_create  # type: ignore[method-assign]
        return real_create(namespace, body)

    api.create_lease = quicker_run_first  # type: ignore[method-assign]
    assert not make(api, clock).acquire(lease.Mode.YIELD, give_up=lambda: False)
    assert api.leases[NAME]["spec"]["holderIdentity"] == "quicker@pod"


def test_a_lease_taken_while_held_is_lost(api: fakes.FakeApi, clock: fakes.FakeClock) -> None:
    held = make(api, clock)
    assert held.acquire(lease.Mode.WAIT, give_up=lambda: False)
    held_by(api, clock, "usurper@pod")
    with pytest.raises(lease.LeaseLost, match="taken by another run"):
        held.renew()


def test_a_failed_release_only_warns(
    api: fakes.FakeApi, clock: fakes.FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    held = make(api, clock)
    assert held.acquire(lease.Mode.WAIT, give_up=lambda: False)
    api.fail("replace_lease", errors.Forbidden("update Lease", status=403))
    held.release()
    assert "expires by itself" in caplog.text


def test_holder_of_reads_expiry_from_renew_time() -> None:
    holder = lease.Holder.of(
        {
            "spec": {
                "holderIdentity": "x",
                "leaseDurationSeconds": 10,
                "renewTime": "2026-12-01T00:00:00.000000Z",
            }
        }
    )
    assert holder.live(EPOCH + datetime.timedelta(seconds=10 + lease.SKEW - 1))
    assert not holder.live(EPOCH + datetime.timedelta(seconds=10 + lease.SKEW + 1))
    assert not lease.Holder.of({"spec": {"holderIdentity": "x"}}).live(EPOCH)
    assert not lease.Holder.of({"spec": {"renewTime": "2026-12-01T00:00:00Z"}}).live(EPOCH)
