"""The paced fan-out (rollout.py) against the in-memory cluster in fakes.py.

Cases: every node gets exactly one Job, never more than min(parallelism, nodes)
unfinished; the pacer's decisions; failed nodes do not stop the others and are named
with reason (and, with --inspect-pods, container, exit code, termination message);
unknown and tainted nodes; adoption of this owner's Jobs, replacement of an earlier
owner's (immediately gone, or lingering until its DELETED event); a re-run after a
crash converges; 429 with Retry-After and 5xx are retried and counted by cause in the
summary's `retries` (and logged); an exhausted budget before any Job ends the run with
the error, one mid-rollout with an `api-unreachable` summary naming the nodes left (exit
3); a 401/403 kube.py took for passing is retried and counted; any other error
mid-rollout still names the nodes left (`error`, the error's exit code); 410 Gone
relists (counted) without losing results; a broken stream resumes (a watch restart,
counted); SIGTERM stops dispatching; --timeout; progress lines; a Job deleted under
us; a rejected Job; --remove-install-jobs; dry run; the pacing invariant under random
schedules (hypothesis).
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Callable
from typing import Any

import fakes
import pytest
from conftest import node_names
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from kata_dispatcher import errors, jobs, rollout, settings, watching

MakeApi = Callable[..., fakes.FakeApi]
MakeSettings = Callable[..., settings.Settings]
PREFIX = "kata-deploy-install"


def run(
    api: fakes.FakeApi,
    config: settings.Settings,
    template: dict[str, Any],
    clock: fakes.FakeClock,
    stop: watching.StopFlag | None = None,
) -> rollout.Summary:
    return rollout.Rollout(api, config, template, clock=clock, stop=stop).run()


def job_of(node: str) -> str:
    return jobs.job_name(PREFIX, node)


def test_every_node_gets_exactly_one_job_paced(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(10)
    summary = run(api, make_settings(parallelism=3), template, clock)
    assert summary.outcome is rollout.Outcome.SUCCEEDED
    assert summary.exit_code is errors.ExitCode.OK
    assert summary.succeeded == 10 and summary.nodes_total == 10
    assert dict(api.created) == {job_of(n): 1 for n in node_names(10)}
    assert api.max_unfinished == 3
    assert summary.peak_in_flight == 3
    # 10 nodes, 3 at a time, 5 s each: 4 waves.
    assert summary.elapsed_seconds == pytest.approx(20)
    assert summary.api_requests == api.api_requests
    # No per-Job polling: Jobs are never read one by one on the happy path; the owner is
    # read once, with a LIST by name.
    owner_reads = [c for c in api.calls_of("list_jobs") if c.args["field_selector"]]
    assert [c.args["field_selector"] for c in owner_reads] == ["metadata.name=dispatcher"]
    watch = api.calls_of("watch_jobs")[0].args
    # every dispatcher's Jobs of this release and stage: any of them may be taken over
    assert watch["label_selector"] == (
        "kata-deploy.katacontainers.io/release=kata-deploy,kata-deploy.katacontainers.io/stage=install"
    )
    assert watch["resource_version"] != ""
    assert 1 <= watch["timeout_seconds"] <= 10


def test_created_job_is_pinned_labelled_and_owned(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(1)
    run(api, make_settings(), template, clock)
    job = api.jobs[job_of("worker-000")]
    assert job["spec"]["template"]["spec"]["nodeName"] == "worker-000"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "owner-uid"
    assert job["metadata"]["labels"][jobs.NODE_LABEL] == "worker-000"


def test_parallelism_is_capped_at_the_node_count(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(4)
    summary = run(api, make_settings(parallelism=50), template, clock)
    assert summary.peak_in_flight == 4 and summary.succeeded == 4


def test_pacer_decisions() -> None:
    pacer = rollout.Pacer(["a", "b", "c", "d"], parallelism=2)
    assert pacer.cap == 2
    assert [pacer.take(), pacer.take(), pacer.take()] == ["a", "b", None]
    pacer.finish("a")
    assert pacer.take() == "c"
    pacer.adopt("d", running=True)  # already existed: counts, even above the cap
    assert pacer.active == {"b", "c", "d"} and not pacer.queue
    assert pacer.peak == 3
    assert rollout.Pacer([], parallelism=5).cap == 0
    assert rollout.Pacer(["x"], parallelism=5).cap == 1


def test_failed_nodes_do_not_stop_the_others(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(6)
    api.scripts["worker-001"] = fakes.Script(succeed=False, duration=1)
    api.scripts["worker-004"] = fakes.Script(
        succeed=False, reason="DeadlineExceeded", message="too slow"
    )
    summary = run(api, make_settings(parallelism=2), template, clock)
    assert summary.outcome is rollout.Outcome.FAILED
    assert summary.exit_code is errors.ExitCode.NODES_FAILED
    assert summary.succeeded == 4
    assert summary.failed == [
        {
            "node": "worker-001",
            "job": job_of("worker-001"),
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
        },
        {
            "node": "worker-004",
            "job": job_of("worker-004"),
            "reason": "DeadlineExceeded",
            "message": "too slow",
        },
    ]
    assert api.calls_of("list_pods") == []


def test_inspect_pods_reports_container_exit_code_and_message(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(2)
    api.scripts["worker-001"] = fakes.Script(succeed=False, container="cri", exit_code=3)
    summary = run(api, make_settings(inspect_pods=True), template, clock)
    [failure] = summary.failed
    assert failure["container"] == "cri"
    assert failure["exit_code"] == 3
    assert failure["termination_message"] == "containerd config is not valid TOML"
    assert failure["pod"].startswith(job_of("worker-001"))
    assert len(api.calls_of("list_pods")) == 1


def test_inspect_pods_without_rights_degrades_to_the_job_condition(
    make_api: MakeApi,
    make_settings: MakeSettings,
    template: dict[str, Any],
    clock: fakes.FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = make_api(3)
    api.default = fakes.Script(succeed=False)
    api.fail("list_pods", errors.Forbidden("list Pods", status=403))
    summary = run(api, make_settings(inspect_pods=True), template, clock)
    assert len(summary.failed) == 3
    assert all(
        f["reason"] == "BackoffLimitExceeded" and "container" not in f for f in summary.failed
    )
    assert len(api.calls_of("list_pods")) == 1  # turned off after the first refusal
    assert "not allowed to list pods" in caplog.text


def test_a_pod_stuck_pending_is_read_before_its_deadline_and_named(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(3)
    api.scripts["worker-001"] = fakes.Script(duration=120, pending_reason="ImagePullBackOff")
    template["spec"]["activeDeadlineSeconds"] = 120
    summary = run(api, make_settings(inspect_pods=True, progress_interval=10), template, clock)
    [failure] = summary.failed
    assert failure["reason"] == "DeadlineExceeded"
    assert failure["container"] == "host-check"
    assert failure["container_reason"] == "ImagePullBackOff"
    assert failure["termination_message"] == "Back-off pulling image"
    # read once as the deadline neared, once more when it failed (the pod was gone)
    assert len(api.calls_of("list_pods")) == 2


def test_no_pod_is_read_early_without_a_deadline(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(2)
    api.default = fakes.Script(duration=300)
    template["spec"].pop("activeDeadlineSeconds", None)
    summary = run(api, make_settings(inspect_pods=True, progress_interval=10), template, clock)
    assert summary.succeeded == 2 and not api.calls_of("list_pods")


def _with_result(name: str, result: dict[str, str] | None, *, label: bool = True) -> Any:
    obj = fakes.node(name, labels={"katacontainers.io/kata-runtime": "true"} if label else {})
    if result is not None:
        obj["metadata"]["annotations"] = {"katacontainers.io/kata-deploy.rel": json.dumps(result)}
    return obj


def test_skip_done_creates_no_job_for_nodes_already_installed(
    clock: fakes.FakeClock, make_settings: MakeSettings, template: dict[str, Any]
) -> None:
    current = {"outcome": "installed", "configHash": "aaaa000011112222"}
    api = fakes.FakeApi(
        clock,
        nodes=[
            _with_result("done-1", current),
            _with_result("done-2", current),
            _with_result("old-config", {**current, "configHash": "ffff000011112222"}),
            _with_result("failed", {**current, "outcome": "failed"}),
            _with_result("unlabelled", current, label=False),
            _with_result("new", None, label=False),
        ],
    )
    config = make_settings(
        skip_done=True,
        result_annotation="katacontainers.io/kata-deploy.rel",
        config_hash="aaaa000011112222",
    )
    summary = run(api, config, template, clock)
    assert summary.outcome is rollout.Outcome.SUCCEEDED
    assert summary.already_done == 2 and summary.succeeded == 4 and summary.nodes_total == 6
    assert set(api.created) == {job_of(n) for n in ("old-config", "failed", "unlabelled", "new")}
    # nothing to do at all: no Job, no watch
    api2 = fakes.FakeApi(clock, nodes=[_with_result("done-1", current)])
    again = run(api2, config, template, clock)
    assert again.already_done == 1 and not api2.created
    assert not api2.calls_of("watch_jobs")
    assert [c.args["field_selector"] for c in api2.calls_of("list_jobs")] == [
        "metadata.name=dispatcher"  # the owner, and nothing else
    ]


def test_skip_clean_cleans_only_the_nodes_that_carry_the_annotation(
    clock: fakes.FakeClock, make_settings: MakeSettings, template: dict[str, Any]
) -> None:
    """DaemonSet mode's sweep: whatever the annotation says (an installer pod killed
    while removing, a failed install, one never reverted), the node gets a cleanup Job;
    a node without it gets none."""
    api = fakes.FakeApi(
        clock,
        nodes=[
            _with_result("removing", {"outcome": "removing"}, label=False),
            _with_result("failed", {"outcome": "failed"}, label=False),
            _with_result("never-reverted", {"outcome": "installed"}),
            _with_result("clean-1", None, label=False),
            _with_result("clean-2", None, label=False),
        ],
    )
    config = make_settings(
        stage=settings.Stage.CLEANUP,
        skip_clean=True,
        result_annotation="katacontainers.io/kata-deploy.rel",
    )
    summary = run(api, config, template, clock)
    assert summary.outcome is rollout.Outcome.SUCCEEDED
    assert summary.already_done == 2 and summary.succeeded == 3 and summary.nodes_total == 5
    assert set(api.created) == {job_of(n) for n in ("removing", "failed", "never-reverted")}
    # every node clean: no Job, no watch
    api2 = fakes.FakeApi(clock, nodes=[_with_result("clean-1", None, label=False)])
    again = run(api2, config, template, clock)
    assert again.already_done == 1 and not api2.created and not api2.calls_of("watch_jobs")


def test_a_missing_anchor_is_a_usage_error(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(1)
    with pytest.raises(errors.UsageError, match="ConfigMap kata/templates not found"):
        run(api, make_settings(anchor_configmap="templates"), template, clock)


def test_unknown_names_fail_and_the_rest_proceed(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(3)
    summary = run(api, make_settings(nodes=("worker-002", "ghost", "worker-000")), template, clock)
    assert summary.succeeded == 2 and summary.nodes_total == 3
    assert summary.failed == [
        {"node": "ghost", "reason": "NodeNotFound", "message": "no node with this name exists"}
    ]
    assert summary.exit_code is errors.ExitCode.NODES_FAILED
    assert set(api.created) == {job_of("worker-000"), job_of("worker-002")}


def test_no_schedule_taints_do_not_keep_a_pinned_job_off(
    clock: fakes.FakeClock, make_settings: MakeSettings, template: dict[str, Any]
) -> None:
    # A kubeadm control plane and a GPU node: selected, so they get Kata.
    api = fakes.FakeApi(
        clock,
        nodes=[
            fakes.node("cp", taints=[("node-role.kubernetes.io/control-plane", "", "NoSchedule")]),
            fakes.node("gpu", taints=[("nvidia.com/gpu", "", "NoSchedule")]),
            fakes.node("w"),
        ],
    )
    summary = run(api, make_settings(), template, clock)
    assert summary.outcome is rollout.Outcome.SUCCEEDED and summary.succeeded == 3
    assert summary.skipped == []


def _unreachable_nodes(clock: fakes.FakeClock) -> fakes.FakeApi:
    return fakes.FakeApi(
        clock,
        nodes=[
            fakes.node("evicting", taints=[("maintenance", "", "NoExecute")]),
            fakes.node("down", ready=False),
            fakes.node("w1"),
            fakes.node("w2"),
        ],
    )


def test_nodes_a_pinned_pod_cannot_run_on_are_not_done(
    clock: fakes.FakeClock, make_settings: MakeSettings, template: dict[str, Any]
) -> None:
    api = _unreachable_nodes(clock)
    summary = run(api, make_settings(), template, clock)
    assert summary.outcome is rollout.Outcome.FAILED
    assert summary.exit_code is errors.ExitCode.NODES_FAILED
    assert summary.succeeded == 2
    assert [(s["node"], s["reason"]) for s in summary.skipped] == [
        ("down", "NodeNotReady"),
        ("evicting", "UntoleratedTaint"),
    ]
    assert summary.skipped[1]["taint"] == "maintenance:NoExecute"
    assert set(api.created) == {job_of("w1"), job_of("w2")}


@pytest.mark.parametrize(
    ("budget", "outcome"),
    [
        (settings.Budget(1), rollout.Outcome.FAILED),
        (settings.Budget(2), rollout.Outcome.SUCCEEDED),
        (settings.Budget(25, percent=True), rollout.Outcome.FAILED),  # 1 of 4 nodes
        (settings.Budget(50, percent=True), rollout.Outcome.SUCCEEDED),
    ],
)
def test_the_failure_budget_counts_skipped_and_failed_nodes(
    clock: fakes.FakeClock,
    make_settings: MakeSettings,
    template: dict[str, Any],
    budget: settings.Budget,
    outcome: rollout.Outcome,
) -> None:
    api = _unreachable_nodes(clock)
    summary = run(api, make_settings(max_failed_nodes=budget), template, clock)
    assert summary.outcome is outcome
    assert summary.max_failed_nodes == budget.allowed(4)
    assert len(summary.skipped) == 2  # named either way


def test_a_failed_node_within_the_budget_is_still_named(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(5)
    api.scripts["worker-003"] = fakes.Script(succeed=False, reason="BackoffLimitExceeded")
    summary = run(api, make_settings(max_failed_nodes=settings.Budget(1)), template, clock)
    assert summary.outcome is rollout.Outcome.SUCCEEDED
    assert summary.exit_code is errors.ExitCode.OK
    assert [f["node"] for f in summary.failed] == ["worker-003"]
    assert summary.as_dict()["max_failed_nodes"] == 1


def test_this_owners_jobs_are_adopted_not_duplicated(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(4)
    labels = jobs.selector_labels(release="kata-deploy", stage="install", owner="dispatcher")
    api.add_job(job_of("worker-000"), labels=labels, owner_uid="owner-uid", finished=True)
    api.add_job(job_of("worker-001"), labels=labels, owner_uid="owner-uid", node="worker-001")
    summary = run(api, make_settings(parallelism=2), template, clock)
    assert summary.succeeded == 4
    assert set(api.created) == {job_of("worker-002"), job_of("worker-003")}
    assert api.max_unfinished <= 2


def _earlier(template: dict[str, Any], *, same_template: bool) -> dict[str, str]:
    """Labels of a per-node Job an earlier dispatcher built."""
    labels = jobs.selector_labels(release="kata-deploy", stage="install", owner="dispatcher")
    if same_template:
        labels[jobs.TEMPLATE_HASH_LABEL] = jobs.template_hash(template)
    return labels


def test_jobs_taken_over_above_the_cap_hold_back_new_ones(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    # an interrupted run at parallelism 5, then an upgrade that lowers it to 2: the five
    # running Jobs are taken over (never killed), and no new Job starts until fewer
    # than 2 are unfinished
    api = make_api(8)
    api.default = fakes.Script(duration=20)
    labels = _earlier(template, same_template=True)
    for n in node_names(8)[:5]:
        api.add_job(job_of(n), labels=labels, owner_uid="old-uid", node=n)
    summary = run(api, make_settings(parallelism=2), template, clock)
    assert summary.outcome is rollout.Outcome.SUCCEEDED and summary.succeeded == 8
    assert summary.adopted == 5
    assert set(api.created) == {job_of(n) for n in node_names(8)[5:]}
    assert api.max_unfinished <= 2  # counted at each create: the taken-over ones included
    assert summary.peak_in_flight == 5  # the summary does not hide them


def test_an_earlier_owners_failed_job_is_replaced(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(2)
    labels = _earlier(template, same_template=True)
    stale = api.add_job(job_of("worker-000"), labels=labels, owner_uid="old-uid", finished=False)
    summary = run(api, make_settings(), template, clock)
    assert summary.succeeded == 2 and summary.adopted == 0
    [delete] = api.calls_of("delete_job")
    assert delete.args == {
        "namespace": "kata",
        "name": job_of("worker-000"),
        "uid": stale["metadata"]["uid"],
    }
    assert api.jobs[job_of("worker-000")]["metadata"]["ownerReferences"][0]["uid"] == "owner-uid"


def test_an_earlier_owners_running_job_is_taken_over_not_killed(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(3)
    api.configmaps["templates"] = {"metadata": {"name": "templates", "uid": "cm-uid"}}
    labels = _earlier(template, same_template=True)
    running = api.add_job(
        job_of("worker-000"), labels=labels, owner_uid="old-uid", node="worker-000"
    )
    done = api.add_job(job_of("worker-001"), labels=labels, owner_uid="old-uid", finished=True)
    config = make_settings(anchor_configmap="templates")
    summary = run(api, config, template, clock)
    assert summary.outcome is rollout.Outcome.SUCCEEDED and summary.succeeded == 3
    assert summary.adopted == 2
    assert set(api.created) == {job_of("worker-002")}  # the other two kept their Jobs
    assert not api.calls_of("delete_job")
    for job, name in ((running, "worker-000"), (done, "worker-001")):
        [patch] = [c for c in api.calls_of("patch_job") if c.args["name"] == job_of(name)]
        assert patch.args["patch"][0] == {
            "op": "test",
            "path": "/metadata/uid",
            "value": job["metadata"]["uid"],
        }
        refs = api.jobs[job_of(name)]["metadata"]["ownerReferences"]
        assert [(r["kind"], r["uid"]) for r in refs] == [
            ("Job", "owner-uid"),
            ("ConfigMap", "cm-uid"),
        ]
    created = api.jobs[job_of("worker-002")]
    assert [r["uid"] for r in created["metadata"]["ownerReferences"]] == ["owner-uid", "cm-uid"]
    assert created["metadata"]["labels"][jobs.TEMPLATE_HASH_LABEL] == jobs.template_hash(template)


def test_a_job_from_another_template_finishes_then_is_replaced(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(2)
    old = _earlier(template, same_template=False)
    running = api.add_job(job_of("worker-000"), labels=old, owner_uid="old-uid", node="worker-000")
    api.add_job(job_of("worker-001"), labels=old, owner_uid="old-uid", finished=True)
    summary = run(api, make_settings(parallelism=1), template, clock)
    assert summary.outcome is rollout.Outcome.SUCCEEDED and summary.succeeded == 2
    # The running one was taken over and left to finish (never deleted mid-install),
    # then replaced; the finished one was replaced straight away.
    deletes = [c.args["uid"] for c in api.calls_of("delete_job")]
    assert running["metadata"]["uid"] in deletes and len(deletes) == 2
    assert api.created == {job_of("worker-000"): 1, job_of("worker-001"): 1}
    assert api.max_unfinished <= 1


def test_a_job_whose_uid_changed_under_the_take_over_is_looked_at_again(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(1)
    labels = _earlier(template, same_template=True)
    api.add_job(job_of("worker-000"), labels=labels, owner_uid="old-uid", node="worker-000")
    api.fail("patch_job", errors.Invalid("patch Job", status=422, reason="Invalid"))
    summary = run(api, make_settings(), template, clock)
    assert summary.outcome is rollout.Outcome.SUCCEEDED and summary.adopted == 1
    assert len(api.calls_of("patch_job")) == 2 and not api.created


def test_a_lingering_old_job_is_replaced_once_it_is_gone(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(2)
    api.deletion_delay = 7
    # Labelled for another owner name: the watch does not see it, only create attempts do.
    api.add_job(job_of("worker-001"), labels={}, owner_uid="old-uid", finished=True)
    labels = jobs.selector_labels(release="kata-deploy", stage="install", owner="dispatcher")
    api.add_job(job_of("worker-000"), labels=labels, owner_uid="old-uid", finished=True)
    summary = run(api, make_settings(parallelism=2, progress_interval=2), template, clock)
    assert summary.succeeded == 2 and not summary.failed
    assert api.created[job_of("worker-000")] == 1 and api.created[job_of("worker-001")] == 1
    for name in (job_of("worker-000"), job_of("worker-001")):
        assert api.jobs[name]["metadata"]["ownerReferences"][0]["uid"] == "owner-uid"


def test_rerun_after_a_crash_converges(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(9)
    stop = watching.StopFlag()
    watches = {"n": 0}

    def crash_on_third_watch(_: fakes.FakeApi) -> None:
        watches["n"] += 1
        if watches["n"] == 3:
            stop.requested = True  # the process dies: nothing more is dispatched

    api.on_watch = crash_on_third_watch
    first = run(api, make_settings(parallelism=2, progress_interval=3), template, clock, stop)
    assert first.outcome is rollout.Outcome.TERMINATED
    assert first.not_dispatched
    api.on_watch = None
    # Same owner Job (a restarted dispatcher pod): adopt everything that exists.
    second = run(api, make_settings(parallelism=2), template, clock)
    assert second.outcome is rollout.Outcome.SUCCEEDED and second.succeeded == 9
    assert set(api.created.values()) == {1}
    assert len(api.created) == 9
    # A new owner (helm upgrade re-created the dispatcher Job) with the same template:
    # every Job is taken over, none created again.
    api.jobs["dispatcher"]["metadata"]["uid"] = "owner-uid-2"
    third = run(api, make_settings(parallelism=2), template, clock)
    assert third.succeeded == 9 and third.adopted == 9
    assert set(api.created.values()) == {1}
    # Another template (new values): every finished Job is replaced once.
    api.jobs["dispatcher"]["metadata"]["uid"] = "owner-uid-3"
    template["spec"]["backoffLimit"] = 5
    fourth = run(api, make_settings(parallelism=2), template, clock)
    assert fourth.succeeded == 9 and fourth.adopted == 0
    assert set(api.created.values()) == {2}
    assert api.max_unfinished <= 2


def test_429_with_retry_after_and_5xx_are_retried(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(3)
    api.fail("create_job", errors.Transient("create", status=429, retry_after=4.0))
    api.fail(
        "list_jobs", errors.Transient("list", status=503), errors.Transient("list", status=502)
    )
    api.fail("watch_jobs", errors.Transient("watch", status=500))
    summary = run(api, make_settings(), template, clock)
    assert summary.succeeded == 3
    assert 4.0 in clock.sleeps
    assert dict(api.created) == {job_of(n): 1 for n in node_names(3)}
    assert summary.as_dict()["retries"] == {
        "total": 4,
        "rate_limited": 1,
        "server_error": 3,
        "connection": 0,
        "refused": 0,
        "watch_restarts": 1,  # the watch that could not be opened (500)
        "relists": 0,
    }


def test_retries_are_logged_at_the_end(
    make_api: MakeApi,
    make_settings: MakeSettings,
    template: dict[str, Any],
    clock: fakes.FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = make_api(2)
    api.fail("create_job", errors.Transient("create", message="connection reset"))
    with caplog.at_level(logging.INFO):
        run(api, make_settings(), template, clock)
    line = next(r for r in caplog.records if r.getMessage().startswith("retries: "))
    assert line.getMessage() == (
        "retries: 1 retries (429: 0, 5xx: 0, connection: 1, 401/403: 0), 0 watch restarts, "
        "0 relists"
    )
    assert line.__dict__["retries"]["connection"] == 1


def _after_the_first_watch(api: fakes.FakeApi, method: str, *exc: Exception) -> None:
    """Once the first Jobs are created and watched, the next calls of `method` raise these."""
    watches = {"n": 0}

    def hook(fake: fakes.FakeApi) -> None:
        watches["n"] += 1
        if watches["n"] == 1:
            fake.fail(method, *exc)

    api.on_watch = hook


def test_an_exhausted_budget_mid_rollout_names_what_was_not_done(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(5)
    api.default = fakes.Script(duration=100)
    # the API goes away after the first Jobs
    refused = errors.Transient("watch Jobs", message="connection refused")
    _after_the_first_watch(api, "watch_jobs", *[refused] * 1000)
    summary = run(api, make_settings(parallelism=2, retry_budget=30), template, clock)
    assert summary.outcome is rollout.Outcome.UNREACHABLE
    assert summary.exit_code is errors.ExitCode.API_UNREACHABLE
    out = summary.as_dict()
    assert out["result"] == "api-unreachable"
    assert "watch Jobs" in out["error"] and "connection refused" in out["error"]
    assert out["unfinished"] == [
        {"node": n, "job": job_of(n), "reason": "ApiUnreachable"} for n in node_names(2)
    ]
    assert out["not_dispatched"] == node_names(5)[2:]
    assert out["retries"]["connection"] == out["retries"]["watch_restarts"] > 3


def test_a_refusal_from_an_api_server_still_starting_is_retried_and_counted(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    # what kube.py makes of a 403 from a kube-apiserver whose authorizer has not synced
    api = make_api(4)
    api.fail(
        "create_job",
        *[
            errors.Transient("create Job", status=403, message="cannot create (taken as passing)")
            for _ in range(3)
        ],
    )
    summary = run(api, make_settings(parallelism=2), template, clock)
    assert summary.outcome is rollout.Outcome.SUCCEEDED
    assert dict(api.created) == {job_of(n): 1 for n in node_names(4)}
    assert summary.as_dict()["retries"]["refused"] == 3
    assert summary.as_dict()["retries"]["total"] == 3


def test_any_error_mid_rollout_still_names_what_was_not_done(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(5)
    api.default = fakes.Script(duration=100)
    # a right taken away once the first Jobs run
    refused = errors.Forbidden("watch Jobs in kata", status=403, message="cannot watch jobs")
    _after_the_first_watch(api, "watch_jobs", refused)
    summary = run(api, make_settings(parallelism=2), template, clock)
    assert summary.outcome is rollout.Outcome.ERROR
    assert summary.exit_code is errors.ExitCode.USAGE
    out = summary.as_dict()
    assert out["result"] == "error" and out["exit_code"] == 2
    assert out["error"] == "watch Jobs in kata: HTTP 403: cannot watch jobs"
    assert out["unfinished"] == [
        {"node": n, "job": job_of(n), "reason": "Error"} for n in node_names(2)
    ]
    assert out["not_dispatched"] == node_names(5)[2:]
    assert out["succeeded"] == 0 and out["nodes_total"] == 5
    assert dict(api.created) == {job_of(n): 1 for n in node_names(2)}


def test_an_exhausted_budget_ends_the_run(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(2)
    api.fail("list_nodes", *[errors.Transient("list nodes", message="connection refused")] * 500)
    with pytest.raises(errors.Transient) as info:
        run(api, make_settings(retry_budget=30), template, clock)
    assert info.value.exhausted
    assert info.value.exit_code is errors.ExitCode.API_UNREACHABLE


def test_a_missing_owner_is_a_usage_error(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(2, owner=None)
    with pytest.raises(errors.UsageError, match="owner Job kata/dispatcher not found"):
        run(api, make_settings(), template, clock)


def test_410_gone_relists_and_loses_no_result(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(6)
    watches = {"n": 0}

    def expire(fake: fakes.FakeApi) -> None:
        watches["n"] += 1
        if watches["n"] == 2:
            fake.advance_to(fake.clock.now + 6)  # Jobs finish while nobody watches ...
            fake.compacted_below = fake.next_rv()  # ... and history is compacted

    api.on_watch = expire
    summary = run(api, make_settings(parallelism=3, progress_interval=3), template, clock)
    assert summary.succeeded == 6
    assert summary.retries.relists == 1 and summary.retries.total == 0
    assert len([c for c in api.calls_of("list_jobs") if not c.args["field_selector"]]) == 2
    assert dict(api.created) == {job_of(n): 1 for n in node_names(6)}


def test_a_broken_stream_resumes_from_the_last_resource_version(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(5)
    api.break_stream_after = 4
    summary = run(api, make_settings(parallelism=5), template, clock)
    assert summary.succeeded == 5
    assert (summary.retries.watch_restarts, summary.retries.connection) == (1, 1)
    versions = [c.args["resource_version"] for c in api.calls_of("watch_jobs")]
    assert int(versions[1]) > int(versions[0])


def test_sigterm_stops_dispatching_and_reports(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(6)
    stop = watching.StopFlag()
    api.on_watch = lambda _: stop.request("received SIGTERM")
    summary = run(api, make_settings(parallelism=2), template, clock, stop)
    assert summary.outcome is rollout.Outcome.TERMINATED
    assert summary.exit_code is errors.ExitCode.TERMINATED
    assert len(api.created) == 2
    assert [u["node"] for u in summary.unfinished] == ["worker-000", "worker-001"]
    assert summary.not_dispatched == node_names(6)[2:]


def test_timeout_ends_the_run_with_its_own_code(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(4)
    api.default = fakes.Script(duration=100)
    summary = run(api, make_settings(parallelism=2, timeout=30), template, clock)
    assert summary.outcome is rollout.Outcome.TIMEOUT
    assert summary.exit_code is errors.ExitCode.TIMEOUT
    assert len(summary.unfinished) == 2 and len(summary.not_dispatched) == 2
    assert clock.now - 1000 == pytest.approx(30)


def test_progress_lines_at_a_steady_cadence(
    make_api: MakeApi,
    make_settings: MakeSettings,
    template: dict[str, Any],
    clock: fakes.FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = make_api(6)
    with caplog.at_level(logging.INFO, logger="kata_dispatcher.rollout"):
        run(api, make_settings(parallelism=1, progress_interval=5), template, clock)
    lines = [r for r in caplog.records if r.getMessage().startswith("progress:")]
    # 30 s of work, a line every 5 s, plus the final one.
    assert len(lines) == 7
    assert lines[0].getMessage() == "progress: 1/6 done, 1 running, 4 queued, 0 failed, 5s elapsed"
    assert lines[-1].__dict__["done"] == 6


def test_a_job_deleted_under_us_is_a_failure(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(2)
    api.scripts["worker-000"] = fakes.Script(duration=50)
    watches = {"n": 0}

    def delete(fake: fakes.FakeApi) -> None:
        watches["n"] += 1
        if watches["n"] == 2:
            fake.delete_job("kata", job_of("worker-000"))

    api.on_watch = delete
    summary = run(api, make_settings(parallelism=2), template, clock)
    assert summary.failed == [
        {
            "node": "worker-000",
            "job": job_of("worker-000"),
            "reason": "JobDeleted",
            "message": "the Job was deleted before it finished",
        }
    ]
    assert summary.succeeded == 1


def test_a_rejected_job_fails_only_its_node(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(3)
    api.fail(
        "create_job", errors.Invalid("create", status=422, message="spec.template: Invalid value")
    )
    summary = run(api, make_settings(), template, clock)
    assert summary.succeeded == 2
    assert summary.failed[0]["reason"] == "JobRejected"


def test_create_race_with_our_own_job_adopts_it(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(1)
    original = api.create_job

    def racing(namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        original(namespace, body)  # it got created, but the answer was lost ...
        raise errors.AlreadyExists("create", status=409, reason="AlreadyExists")

    api.create_job = racing  # type: ignore[method-assign]
    summary = run(api, make_settings(), template, clock)
    assert summary.succeeded == 1
    assert api.created[job_of("worker-000")] == 1
    # Re-read with LIST + name field selector: RBAC grants `get` only on the owner Job.
    assert (
        api.calls_of("list_jobs")[-1].args["field_selector"]
        == f"metadata.name={job_of('worker-000')}"
    )
    assert api.calls_of("list_jobs")[0].args["field_selector"] == "metadata.name=dispatcher"


def test_cleanup_removes_the_install_jobs_after_full_success(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(2)
    install = jobs.selector_labels(release="kata-deploy", stage="install", owner="d-install")
    api.add_job("kata-deploy-dispatcher-install", labels={}, finished=True)
    api.add_job("kata-deploy-install-worker-000", labels=install, finished=True)
    api.add_job("other-release-install", labels={**install, jobs.RELEASE_LABEL: "other"})
    template["metadata"]["name"] = "kata-deploy-cleanup"
    config = make_settings(
        stage=settings.Stage.CLEANUP, remove_install_jobs="kata-deploy-dispatcher-install"
    )
    summary = run(api, config, template, clock)
    assert summary.succeeded == 2
    deleted = [c.args["name"] for c in api.calls_of("delete_job")]
    assert deleted == ["kata-deploy-dispatcher-install", "kata-deploy-install-worker-000"]
    assert "other-release-install" in api.jobs


def test_cleanup_keeps_the_install_jobs_when_a_node_failed(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(2)
    api.scripts["worker-001"] = fakes.Script(succeed=False)
    config = make_settings(stage=settings.Stage.CLEANUP, remove_install_jobs="d-install")
    run(api, config, template, clock)
    assert api.calls_of("delete_job") == []


def test_dry_run_creates_nothing(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(3, owner=None)
    summary = run(api, make_settings(dry_run=True), template, clock)
    assert summary.outcome is rollout.Outcome.DRY_RUN and summary.exit_code is errors.ExitCode.OK
    assert [j["metadata"]["name"] for j in summary.jobs] == [job_of(n) for n in node_names(3)]
    assert summary.jobs[0]["metadata"]["ownerReferences"][0]["uid"] == rollout.DRY_RUN_UID
    assert {c.method for c in api.calls} == {"list_jobs", "list_nodes"}


def test_no_nodes_selected_is_success_with_nothing_to_do(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(3)
    summary = run(api, make_settings(selector="kata=yes"), template, clock)
    assert summary.outcome is rollout.Outcome.SUCCEEDED
    assert summary.nodes_total == 0 and api.calls_of("watch_jobs") == []


def test_summary_json_is_one_line(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    import json

    summary = run(make_api(2), make_settings(), template, clock)
    text = summary.to_json()
    assert "\n" not in text
    data = json.loads(text)
    assert set(data) >= {
        "result",
        "nodes_total",
        "succeeded",
        "failed",
        "skipped",
        "peak_in_flight",
        "api_requests",
        "elapsed_seconds",
        "exit_code",
    }


@hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    count=st.integers(1, 40),
    parallelism=st.integers(1, 12),
    durations=st.lists(st.floats(0.5, 30), min_size=40, max_size=40),
    failures=st.sets(st.integers(0, 39), max_size=10),
    interval=st.sampled_from([1.0, 3.0, 10.0]),
)
def test_pacing_invariant(  # noqa: PLR0917 - hypothesis passes strategies by keyword
    template: dict[str, Any],
    make_settings: MakeSettings,
    count: int,
    parallelism: int,
    durations: list[float],
    failures: set[int],
    interval: float,
) -> None:
    clock = fakes.FakeClock()
    names = node_names(count)
    api = fakes.FakeApi(clock, nodes=[fakes.node(n) for n in names])
    for i, name in enumerate(names):
        api.scripts[name] = fakes.Script(succeed=i not in failures, duration=durations[i])
    summary = run(
        api, make_settings(parallelism=parallelism, progress_interval=interval), template, clock
    )
    assert api.max_unfinished <= min(parallelism, count)
    assert summary.peak_in_flight == min(parallelism, count)
    assert dict(api.created) == {job_of(n): 1 for n in names}
    failed = {f["node"] for f in summary.failed}
    assert failed == {names[i] for i in failures if i < count}
    assert summary.succeeded + len(failed) == count


# -- one run at a time: the Lease, and the reconcile CronJob on cleanup -------------------


def test_a_run_holds_the_lease_renews_it_and_releases_it(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(6)
    api.default = fakes.Script(duration=25)
    config = make_settings(lease="kata-deploy-dispatcher", progress_interval=10, parallelism=2)
    summary = run(api, config, template, clock)
    assert summary.outcome is rollout.Outcome.SUCCEEDED and summary.succeeded == 6
    writes = [c.args["body"]["spec"]["holderIdentity"] for c in api.calls_of("replace_lease")]
    assert len(writes) >= 3 and writes[-1] == ""  # renewed on ticks, released at the end
    assert set(writes[:-1]) == {"dispatcher/owner-uid"}
    assert api.leases["kata-deploy-dispatcher"]["spec"]["holderIdentity"] == ""


def test_the_lease_is_owned_by_the_anchor_so_it_goes_with_the_release(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(2)
    api.configmaps["templates"] = {"metadata": {"name": "templates", "uid": "cm-uid"}}
    # one left by an earlier chart version, with no owner: taken, and given one
    api.leases["kata-deploy-dispatcher"] = {
        "metadata": {"name": "kata-deploy-dispatcher", "resourceVersion": "1"},
        "spec": {"holderIdentity": ""},
    }
    config = make_settings(lease="kata-deploy-dispatcher", anchor_configmap="templates")
    assert run(api, config, template, clock).outcome is rollout.Outcome.SUCCEEDED
    owner = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "templates",
        "uid": "cm-uid",
        "controller": False,
        "blockOwnerDeletion": False,
    }
    writes = api.calls_of("replace_lease")
    assert len(writes) >= 2  # taken, released
    assert all(c.args["body"]["metadata"]["ownerReferences"] == [owner] for c in writes)
    assert api.leases["kata-deploy-dispatcher"]["metadata"]["ownerReferences"] == [owner]
    # and a Lease created afresh carries it from the start
    del api.leases["kata-deploy-dispatcher"]
    run(api, config, template, clock)
    [create] = api.calls_of("create_lease")
    assert create.args["body"]["metadata"]["ownerReferences"] == [owner]


def test_a_run_the_api_left_does_not_wait_a_second_budget_to_release_its_lease(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(2)
    api.fail("list_nodes", *[errors.Transient("list", message="refused") for _ in range(500)])
    api.fail("replace_lease", *[errors.Transient("put", message="refused") for _ in range(500)])
    start = clock.monotonic()
    with pytest.raises(errors.Transient):
        run(api, make_settings(lease="kata-deploy-dispatcher", retry_budget=60), template, clock)
    spent = clock.monotonic() - start
    # the run's own budget, then a short try at the release: the Lease expires by itself
    assert 60 <= spent <= 60 + rollout.RELEASE_BUDGET + 5, spent
    assert api.calls_of("replace_lease")


def test_a_reconcile_run_yields_to_a_live_run(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(3)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    api.leases["kata-deploy-dispatcher"] = {
        "metadata": {"name": "kata-deploy-dispatcher", "resourceVersion": "3"},
        "spec": {"holderIdentity": "kata-deploy-job-dispatcher@pod", "leaseDurationSeconds": 60,
                 "renewTime": now},
    }  # fmt: skip
    config = make_settings(lease="kata-deploy-dispatcher", lease_mode=settings.LeaseMode.YIELD)
    summary = run(api, config, template, clock)
    assert summary.outcome is rollout.Outcome.YIELDED and summary.exit_code is errors.ExitCode.OK
    assert not api.created and not api.calls_of("list_nodes")
    assert summary.as_dict()["result"] == "yielded"


def test_a_cleanup_deletes_the_reconcile_cronjob_before_anything_else(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(2)
    api.cronjobs["kata-deploy-reconcile"] = {"metadata": {"name": "kata-deploy-reconcile"}}
    config = make_settings(
        stage=settings.Stage.CLEANUP, delete_cronjob="kata-deploy-reconcile", lease="l"
    )
    summary = run(api, config, template, clock)
    assert summary.succeeded == 2 and not api.cronjobs
    assert api.calls[0].method == "delete_cronjob"
    again = run(api, config, template, clock)  # already gone: fine
    assert again.outcome is rollout.Outcome.SUCCEEDED


def test_a_reconcile_run_takes_over_a_helm_runs_job_and_sees_it_finish(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    # The reconcile CronJob's Jobs have generated names: its owner label differs from the
    # one on the Jobs the Helm run created, and its watch must still see them.
    api = make_api(2)
    api.add_job("kata-deploy-reconcile-29012345", uid="reconcile-uid", labels={})
    labels = _earlier(template, same_template=True)  # owner label: "dispatcher"
    api.add_job(job_of("worker-000"), labels=labels, owner_uid="owner-uid", node="worker-000")
    config = make_settings(owner_job="kata-deploy-reconcile-29012345")
    summary = run(api, config, template, clock)
    assert summary.outcome is rollout.Outcome.SUCCEEDED and summary.succeeded == 2
    assert summary.adopted == 1 and set(api.created) == {job_of("worker-001")}
    taken = api.jobs[job_of("worker-000")]["metadata"]
    assert taken["labels"][jobs.OWNER_LABEL] == "kata-deploy-reconcile-29012345"
    assert taken["ownerReferences"][0]["uid"] == "reconcile-uid"


def test_cleanup_stops_an_install_run_in_progress_and_waits_for_its_jobs(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    # `helm install` timed out; its dispatcher still runs, one per-node Job is in flight.
    api = make_api(2)
    install = jobs.selector_labels(release="kata-deploy", stage="install", owner="d-install")
    api.add_job("kata-deploy-dispatcher-install", labels={})
    api.scripts["worker-001"] = fakes.Script(duration=30)
    api.add_job("kata-deploy-install-worker-001", labels=install, node="worker-001")
    template["metadata"]["name"] = "kata-deploy-cleanup"
    config = make_settings(
        stage=settings.Stage.CLEANUP, remove_install_jobs="kata-deploy-dispatcher-install"
    )
    start = clock.now
    summary = run(api, config, template, clock)
    assert summary.succeeded == 2
    deleted = [c.args["name"] for c in api.calls_of("delete_job")]
    assert deleted[0] == "kata-deploy-dispatcher-install"  # before anything else
    # the in-flight install Job finished (30 s) before the cleanup listed nodes
    first_node_list = next(i for i, c in enumerate(api.calls) if c.method == "list_nodes")
    assert clock.now - start >= 30
    assert all(c.method != "create_job" for c in api.calls[:first_node_list])


def test_a_job_whose_pod_never_terminates_fails_after_the_grace(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    # The deadline passed (FailureTarget) but the pod is on a node with no kubelet, so
    # Failed never comes: the slot is freed FAILING_GRACE later, with the reason.
    api = make_api(3)
    api.scripts["worker-001"] = fakes.Script(
        duration=25, pending_reason="ImagePullBackOff", never_terminates=True
    )
    template["spec"]["activeDeadlineSeconds"] = 25
    summary = run(api, make_settings(parallelism=1, inspect_pods=True), template, clock)
    [failure] = summary.failed
    assert failure["node"] == "worker-001" and failure["reason"] == "DeadlineExceeded"
    assert "did not terminate within 60s" in failure["message"]
    assert failure["container_reason"] == "ImagePullBackOff"  # read before the deadline
    assert summary.succeeded == 2
    assert summary.elapsed_seconds >= 25 + rollout.FAILING_GRACE
    # Its slot stayed taken for the grace; Kubernetes itself never calls that Job
    # finished, so an observer counting unfinished Jobs sees it and the next one.
    assert api.max_unfinished <= 2


def test_cleanup_does_not_wait_for_an_install_job_decided_to_fail(
    make_api: MakeApi, make_settings: MakeSettings, template: dict[str, Any], clock: fakes.FakeClock
) -> None:
    api = make_api(1)
    install = jobs.selector_labels(release="kata-deploy", stage="install", owner="d-install")
    api.scripts["ghost"] = fakes.Script(duration=1, pending_reason="Pending", never_terminates=True)
    api.add_job("kata-deploy-install-ghost", labels=install, node="ghost")
    clock.sleep(2)  # its deadline passed: FailureTarget, and its pod never terminates
    template["metadata"]["name"] = "kata-deploy-cleanup"
    config = make_settings(stage=settings.Stage.CLEANUP, remove_install_jobs="d-install")
    summary = run(api, config, template, clock)
    assert summary.succeeded == 1 and clock.sleeps.count(5.0) == 0
