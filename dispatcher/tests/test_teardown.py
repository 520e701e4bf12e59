"""The DaemonSet teardown (teardown.py) against the in-memory cluster in fakes.py.

Cases: a foreground DELETE, then one watch until the DaemonSet is gone (no polling of
the DaemonSet, progress lines with the pods left at the steady cadence); an absent
DaemonSet is success (idempotent re-run); one already being deleted is waited for; a
DELETE answered with a Status is done at once; 410 Gone on the watch relists; a broken
stream resumes from the last resourceVersion; a DaemonSet re-created under the same
name does not keep the run waiting; --timeout ends with exit 4 naming the stuck pods
(or the finalizer that holds a DaemonSet with no pods left);
transient errors (429 with Retry-After, 5xx, broken connections) are retried, an
exhausted budget is raised; a 409 on delete is tried again; no right to list pods still
tears down; only pods the DaemonSet owns are counted; SIGTERM; dry run; the selector
string of a DaemonSet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import fakes
import pytest
from kata_dispatcher import errors, settings, teardown, watching

DS = "kata-deploy"
NODES = ["worker-000", "worker-001", "worker-002"]


def config(**overrides: Any) -> settings.Teardown:
    values: dict[str, Any] = {
        "daemonset": DS,
        "namespace": "kata",
        "progress_interval": 10.0,
        "retry_budget": 60.0,
    }
    values.update(overrides)
    return settings.Teardown(**values)


def run(
    api: fakes.FakeApi,
    clock: fakes.FakeClock,
    stop: watching.StopFlag | None = None,
    **overrides: Any,
) -> teardown.Summary:
    return teardown.Teardown(api, config(**overrides), clock=clock, stop=stop).run()


@pytest.fixture
def api(clock: fakes.FakeClock) -> fakes.FakeApi:
    return fakes.FakeApi(clock, owner=None)


def progress(caplog: pytest.LogCaptureFixture) -> list[Any]:
    return [r.pods_remaining for r in caplog.records if r.getMessage().startswith("progress:")]


def test_deletes_in_the_foreground_and_waits_on_one_watch_until_gone(
    api: fakes.FakeApi, clock: fakes.FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    api.add_daemonset(DS, nodes=NODES, revert_seconds=4.0)
    api.revert_seconds[f"{DS}-worker-002"] = 25.0
    start = clock.now
    summary = run(api, clock)
    assert summary.outcome is teardown.Outcome.DELETED
    assert summary.exit_code is errors.ExitCode.OK
    assert DS not in api.daemonsets and api.ds_pods == {}
    assert summary.pods_remaining == 0 and summary.remaining == []
    assert clock.now - start == pytest.approx(25)
    assert api.calls_of("delete_daemonset") == [
        fakes.Call("delete_daemonset", {"namespace": "kata", "name": DS})
    ]
    # One LIST for the resourceVersion, then watches only: the DaemonSet is never polled.
    [listed] = api.calls_of("list_daemonsets")
    assert listed.args["field_selector"] == f"metadata.name={DS}"
    watches = api.calls_of("watch_daemonsets")
    assert 3 <= len(watches) <= 4  # one per progress tick: 0-10, 10-20, 20-25 s
    assert all(w.args["field_selector"] == f"metadata.name={DS}" for w in watches)
    assert all(1 <= w.args["timeout_seconds"] <= 10 for w in watches)
    assert watches[0].args["resource_version"] != ""
    # Pods are counted at start and at each tick: 3, then 1 left at 10 s and 20 s.
    assert progress(caplog) == [3, 1, 1]
    pods = [c.args["label_selector"] for c in api.calls_of("list_pods")]
    assert set(pods) == {"app.kubernetes.io/component=installer,app.kubernetes.io/instance=" + DS}
    assert summary.as_dict()["result"] == "deleted"
    assert summary.api_requests == api.api_requests


def test_summary_line_is_one_json_object(api: fakes.FakeApi, clock: fakes.FakeClock) -> None:
    api.add_daemonset(DS, nodes=NODES[:1])
    line = run(api, clock).to_json()
    assert "\n" not in line
    assert line.startswith('{"result":"deleted","exit_code":0,"daemonset":"kata-deploy",')


def test_an_absent_daemonset_is_success(api: fakes.FakeApi, clock: fakes.FakeClock) -> None:
    summary = run(api, clock)
    assert summary.outcome is teardown.Outcome.ABSENT
    assert summary.exit_code is errors.ExitCode.OK
    assert summary.pods_remaining == 0
    assert [c.method for c in api.calls] == ["delete_daemonset"]


def test_a_second_run_after_the_first_finished_is_success(
    api: fakes.FakeApi, clock: fakes.FakeClock
) -> None:
    api.add_daemonset(DS, nodes=NODES)
    assert run(api, clock).outcome is teardown.Outcome.DELETED
    assert run(api, clock).outcome is teardown.Outcome.ABSENT


def test_a_daemonset_already_being_deleted_is_waited_for(
    api: fakes.FakeApi, clock: fakes.FakeClock
) -> None:
    api.add_daemonset(DS, nodes=NODES, revert_seconds=30.0)
    api.delete_daemonset("kata", DS)  # an earlier, interrupted run
    summary = run(api, clock)
    assert summary.outcome is teardown.Outcome.DELETED
    assert DS not in api.daemonsets


def test_a_status_answer_means_deleted_at_once(api: fakes.FakeApi, clock: fakes.FakeClock) -> None:
    api.add_daemonset(DS, nodes=NODES)
    api.delete_at_once = True
    summary = run(api, clock)
    assert summary.outcome is teardown.Outcome.DELETED
    assert api.calls_of("watch_daemonsets") == []


def test_a_daemonset_without_pods_goes_after_the_garbage_collector(
    api: fakes.FakeApi, clock: fakes.FakeClock
) -> None:
    api.add_daemonset(DS)
    summary = run(api, clock)
    assert summary.outcome is teardown.Outcome.DELETED
    assert summary.elapsed_seconds < 1


def test_410_gone_relists_and_watches_again(api: fakes.FakeApi, clock: fakes.FakeClock) -> None:
    api.add_daemonset(DS, nodes=NODES, revert_seconds=15.0)
    expired: list[int] = []

    def expire(fake: fakes.FakeApi) -> None:
        if not expired:  # the first watch finds its resourceVersion compacted away
            fake.compacted_below = fake.next_rv()
            expired.append(fake.compacted_below)

    api.on_watch = expire
    summary = run(api, clock)
    assert summary.outcome is teardown.Outcome.DELETED
    assert len(api.calls_of("list_daemonsets")) == 2
    watches = api.calls_of("watch_daemonsets")
    assert int(watches[1].args["resource_version"]) >= expired[0]


def test_410_gone_when_the_daemonset_went_meanwhile(
    api: fakes.FakeApi, clock: fakes.FakeClock
) -> None:
    api.add_daemonset(DS, nodes=NODES, revert_seconds=1.0)

    def expire_after_removal(fake: fakes.FakeApi) -> None:
        fake.advance_to(fake.clock.now + 5)  # every pod reverted, the DaemonSet went
        fake.compacted_below = fake.next_rv()

    api.on_watch = expire_after_removal
    summary = run(api, clock)
    assert summary.outcome is teardown.Outcome.DELETED
    assert len(api.calls_of("watch_daemonsets")) == 1
    assert len(api.calls_of("list_daemonsets")) == 2


def test_a_broken_stream_resumes_from_the_last_resource_version(
    api: fakes.FakeApi, clock: fakes.FakeClock
) -> None:
    api.add_daemonset(DS, nodes=NODES, revert_seconds=5.0)
    bookmarks: list[str] = []

    def bookmark_then_break(fake: fakes.FakeApi) -> None:
        if not bookmarks:  # the server sends a bookmark, then the connection breaks
            bookmarks.append(str(fake.next_rv()))
            fake.ds_events.append(
                (int(bookmarks[0]), "BOOKMARK", {"metadata": {"resourceVersion": bookmarks[0]}})
            )
            fake.break_stream_after = 1

    api.on_watch = bookmark_then_break
    summary = run(api, clock)
    assert summary.outcome is teardown.Outcome.DELETED
    first, second = api.calls_of("watch_daemonsets")[:2]
    assert first.args["resource_version"] != bookmarks[0]
    assert second.args["resource_version"] == bookmarks[0]


def test_a_recreated_daemonset_does_not_keep_the_run_waiting(
    api: fakes.FakeApi, clock: fakes.FakeClock
) -> None:
    api.add_daemonset(DS, nodes=NODES, revert_seconds=2.0, uid="old")

    def recreate(fake: fakes.FakeApi) -> None:
        if "new" not in [d["metadata"]["uid"] for d in fake.daemonsets.values()]:
            fake.advance_to(fake.clock.now + 10)
            fake.add_daemonset(DS, nodes=NODES, uid="new")

    api.on_watch = recreate
    summary = run(api, clock)
    assert summary.outcome is teardown.Outcome.DELETED
    assert api.daemonsets[DS]["metadata"]["uid"] == "new"
    assert len(api.calls_of("delete_daemonset")) == 1


def test_timeout_is_exit_4_and_names_the_pods_left(
    api: fakes.FakeApi, clock: fakes.FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    api.add_daemonset(DS, nodes=NODES, revert_seconds=2.0, stuck=["worker-001"])
    start = clock.now
    summary = run(api, clock, timeout=45.0)
    assert summary.outcome is teardown.Outcome.TIMEOUT
    assert summary.exit_code is errors.ExitCode.TIMEOUT
    assert clock.now - start == pytest.approx(45)
    assert summary.pods_remaining == 1
    assert summary.remaining == [
        {"pod": f"{DS}-worker-001", "node": "worker-001", "terminating": True}
    ]
    assert DS in api.daemonsets
    assert "--timeout of 45s reached" in caplog.text
    assert f"{DS}-worker-001 on worker-001" in caplog.text
    # The watch never asks past the deadline.
    watches = api.calls_of("watch_daemonsets")
    assert watches[-1].args["timeout_seconds"] == 5


def test_timeout_with_no_pods_left_names_the_finalizer(
    api: fakes.FakeApi, clock: fakes.FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    api.add_daemonset(DS, nodes=NODES, revert_seconds=1.0, finalizers=["example.com/hold"])
    summary = run(api, clock, timeout=20.0)
    assert summary.outcome is teardown.Outcome.TIMEOUT
    assert summary.pods_remaining == 0 and api.ds_pods == {}
    assert "none of its pods is left; its finalizers ['example.com/hold'] hold it" in caplog.text


def test_transient_errors_are_retried(
    api: fakes.FakeApi, clock: fakes.FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    api.add_daemonset(DS, nodes=NODES, revert_seconds=12.0)
    api.fail(
        "delete_daemonset",
        errors.Transient("delete", status=429, retry_after=2.0),
        errors.Transient("delete", status=503),
    )
    api.fail("list_daemonsets", errors.Transient("list", message="connection refused"))
    api.fail("watch_daemonsets", errors.Transient("watch", status=500))
    api.fail("list_pods", errors.Transient("list pods", status=502))
    summary = run(api, clock)
    assert summary.outcome is teardown.Outcome.DELETED
    assert len(api.calls_of("delete_daemonset")) == 3
    assert 2.0 in clock.sleeps
    assert caplog.text.count("(attempt 1)") == 4


def test_an_exhausted_retry_budget_is_raised(api: fakes.FakeApi, clock: fakes.FakeClock) -> None:
    api.add_daemonset(DS, nodes=NODES)
    api.fail("delete_daemonset", *[errors.Transient("delete", status=503)] * 1000)
    with pytest.raises(errors.Transient) as info:
        run(api, clock, retry_budget=10.0)
    assert info.value.exhausted
    assert info.value.exit_code is errors.ExitCode.API_UNREACHABLE


def test_a_conflict_on_delete_is_tried_again(api: fakes.FakeApi, clock: fakes.FakeClock) -> None:
    api.add_daemonset(DS, nodes=NODES)
    api.fail("delete_daemonset", errors.Conflict("delete", status=409, reason="Conflict"))
    assert run(api, clock).outcome is teardown.Outcome.DELETED
    assert len(api.calls_of("delete_daemonset")) == 2


def test_forbidden_delete_is_a_usage_error(api: fakes.FakeApi, clock: fakes.FakeClock) -> None:
    api.add_daemonset(DS, nodes=NODES)
    api.fail("delete_daemonset", errors.Forbidden("delete", status=403))
    with pytest.raises(errors.Forbidden) as info:
        run(api, clock)
    assert info.value.exit_code is errors.ExitCode.USAGE


def test_no_right_to_list_pods_still_tears_down(
    api: fakes.FakeApi, clock: fakes.FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    api.add_daemonset(DS, nodes=NODES, revert_seconds=15.0)
    api.fail("list_pods", errors.Forbidden("list pods", status=403))
    summary = run(api, clock)
    assert summary.outcome is teardown.Outcome.DELETED
    assert len(api.calls_of("list_pods")) == 1  # asked once, then not again
    assert progress(caplog)[0] is None
    assert "an unknown number of pods remaining" in caplog.text


def test_only_pods_the_daemonset_owns_are_counted(
    api: fakes.FakeApi, clock: fakes.FakeClock
) -> None:
    api.add_daemonset(DS, nodes=NODES, stuck=NODES)
    foreign = dict(api.ds_pods[f"{DS}-worker-000"])
    foreign["metadata"] = {
        **foreign["metadata"],
        "name": "foreign",
        "ownerReferences": [{"kind": "DaemonSet", "name": "other", "uid": "other-uid"}],
    }
    api.ds_pods["foreign"] = foreign
    summary = run(api, clock, timeout=5.0)
    assert summary.pods_remaining == 3
    assert [p["pod"] for p in summary.remaining] == [f"{DS}-{n}" for n in NODES]


def test_pods_are_counted_across_pages(api: fakes.FakeApi, clock: fakes.FakeClock) -> None:
    nodes = [f"n{i:02d}" for i in range(7)]
    api.add_daemonset(DS, nodes=nodes, stuck=nodes)
    summary = run(api, clock, timeout=5.0, page_size=3)
    assert summary.pods_remaining == 7
    tokens = [c.args["continue_token"] for c in api.calls_of("list_pods")[:3]]
    assert tokens == [None, "3", "6"]


def test_sigterm_stops_waiting(api: fakes.FakeApi, clock: fakes.FakeClock) -> None:
    api.add_daemonset(DS, nodes=NODES, revert_seconds=50.0)
    stop = watching.StopFlag()
    api.on_watch = lambda _: stop.request("received SIGTERM")
    summary = run(api, clock, stop=stop)
    assert summary.outcome is teardown.Outcome.TERMINATED
    assert summary.exit_code is errors.ExitCode.TERMINATED
    assert summary.pods_remaining == 3


def test_sigterm_while_blocked_on_the_stream(api: fakes.FakeApi, clock: fakes.FakeClock) -> None:
    api.add_daemonset(DS, nodes=NODES, revert_seconds=50.0)
    stop = watching.StopFlag()
    original: Callable[..., Any] = api.advance_to

    def advance(when: float) -> None:
        original(when)
        stop.request("received SIGTERM")  # arrives while the stream is being read

    api.advance_to = advance  # type: ignore[method-assign]
    summary = run(api, clock, stop=stop)
    assert summary.outcome is teardown.Outcome.TERMINATED


def test_dry_run_deletes_nothing(
    api: fakes.FakeApi, clock: fakes.FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    api.add_daemonset(DS, nodes=NODES)
    summary = run(api, clock, dry_run=True)
    assert summary.outcome is teardown.Outcome.DRY_RUN
    assert summary.exit_code is errors.ExitCode.OK
    assert summary.pods_remaining == 3
    assert api.calls_of("delete_daemonset") == []
    assert "would delete DaemonSet kata/kata-deploy" in caplog.text
    assert run(fakes.FakeApi(clock, owner=None), clock, dry_run=True).outcome is (
        teardown.Outcome.ABSENT
    )


def test_label_selector_of_a_daemonset() -> None:
    ds = {
        "spec": {
            "selector": {
                "matchLabels": {"b": "2", "a": "1"},
                "matchExpressions": [
                    {"key": "c", "operator": "In", "values": ["x", "y"]},
                    {"key": "d", "operator": "NotIn", "values": ["z"]},
                    {"key": "e", "operator": "Exists"},
                    {"key": "f", "operator": "DoesNotExist"},
                ],
            }
        }
    }
    assert teardown.label_selector(ds) == "a=1,b=2,c in (x,y),d notin (z),e,!f"
    assert teardown.label_selector({}) == ""
