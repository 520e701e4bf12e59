"""Job mode end to end with real helm: install, add nodes, a failing node, a killed
dispatcher, uninstall (issue 6 scenarios 1-5), on the session fleet (44 kwok + 6
runner-backed nodes; the runner-backed ones run the real kata-installer on a host
directory, the kwok ones only simulate a successful Job).

Cases 1, 2, 4 and 5 share one release (RELEASE in NS on a pool of 20 nodes); each
brings it to the state it starts from (`release_absent`, `release_installed`), so in
file order nothing is done twice and each also runs alone (`pytest -k NAME`); the
module's teardown uninstalls whatever is left. Each asserts one scenario:
- test_failing_node_fails_install_then_converges (3): a runner node with a malformed
  containerd config makes `helm install` fail while the other nodes install; with
  `job.maxFailedNodes=1` an upgrade succeeds and its summary names the node; after
  fixing the file `helm upgrade` converges; uninstall leaves the host as it was;
- test_install_on_a_selected_subset (1): `job.nodeSelector` picks 20 of the nodes,
  parallelism 5: exactly one per-node Job per selected node, each owned by the
  dispatcher Job, never more than 5 unfinished (independent watch), the selected
  runner nodes labelled and changed, the others untouched, RuntimeClasses present;
- test_added_nodes_get_installed_on_upgrade (2): new nodes + `helm upgrade
  --reuse-values`: the new nodes are installed, the old hosts are not rewritten;
- test_killed_dispatcher_then_upgrade_converges (4): an upgrade that changes a value
  has its dispatcher pod killed mid-rollout, helm reports the failure, the next upgrade
  adopts the Jobs in flight and covers every node with exactly one Job of the new
  template across both runs;
- test_uninstall_leaves_nothing (5): the cleanup dispatcher reverts every labelled
  node: no label, hosts byte-equal to their originals, nothing of the release left.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import kubeapi, kwokconfig, nodes
from tests.cluster.cluster import Cluster
from tests.e2e import helpers
from tests.e2e.helpers import CHART, PREFIX, TIMES, helm, wait_for

RELEASE = "kata"
NS = "kata-job"
FAIL_RELEASE = "kata-broken"
FAIL_NS = "kata-fail"
POOL = "kata-deploy.test/pool"
TEMPLATE_HASH = f"{PREFIX}/template-hash"
GPU_VALUES = str(CHART / "try-kata-nvidia-gpu.values.yaml")
DISPATCHER = f"{RELEASE}-kata-deploy-job-dispatcher"


@pytest.fixture(scope="module")
def pool(fleet: Cluster) -> dict[str, list[str]]:
    """20 selected nodes: 16 plain kwok nodes and runner-00..03 (runner-04 stays out)."""
    st = fleet.state
    kwok = fleet.kwok_node_names()[st.control_plane + st.tainted :][:16]
    runner = fleet.runner_node_names()[:4]
    helpers.label_nodes(fleet, kwok + runner, {POOL: "a"})
    return {"kwok": kwok, "runner": runner}


@pytest.fixture(scope="module")
def values(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("values") / "pool.yaml"
    path.write_text(
        f"job:\n  parallelism: 5\n  nodeSelector:\n    {POOL}: a\n  ttlSecondsAfterFinished: 600\n"
    )
    return str(path)


def _installed(cluster: Cluster) -> bool:
    return RELEASE in helm(cluster, "list", "-n", NS, "-q").stdout.split()


def _install(cluster: Cluster, values: str) -> None:
    helm(cluster, "install", RELEASE, str(CHART), "-n", NS, "--create-namespace",
         "-f", GPU_VALUES, "-f", values, "--timeout", "3m")  # fmt: skip


def _uninstall(cluster: Cluster) -> None:
    helm(cluster, "uninstall", RELEASE, "-n", NS, "--timeout", "3m")


@pytest.fixture(scope="module")
def shared_release(fleet: Cluster, pool: dict[str, list[str]]) -> Iterator[None]:
    """The release of cases 1, 2, 4 and 5; whatever state they leave it in, it and the
    pool labels are gone after the module."""
    yield
    if _installed(fleet):
        _uninstall(fleet)
    helpers.label_nodes(fleet, pool["kwok"] + pool["runner"], {POOL: None})


@pytest.fixture
def release_absent(fleet: Cluster, shared_release: None) -> None:
    """The shared release is not installed (case 1 installs it itself)."""
    if _installed(fleet):
        _uninstall(fleet)


@pytest.fixture
def release_installed(fleet: Cluster, shared_release: None, values: str) -> None:
    """The shared release is installed on the pool (what case 1 leaves)."""
    if not _installed(fleet):
        _install(fleet, values)


def _install_jobs(cluster: Cluster, ns: str, release: str) -> list[helpers.Obj]:
    return helpers.jobs(cluster, ns, f"{PREFIX}/release={release},{PREFIX}/stage=install")


def _dispatcher_uid(cluster: Cluster) -> str:

    batch = cluster.api("BatchV1Api")
    return str(kubeapi.get_json(batch.read_namespaced_job, DISPATCHER, NS)["metadata"]["uid"])


def _dispatcher_summary(cluster: Cluster, ns: str, release: str) -> dict[str, Any]:
    """The last install dispatcher run's summary: the last line of its pod's log."""
    logs = sorted(
        cluster.pod_logs.glob(f"{ns}_{release}-kata-deploy-job-dispatcher-*_dispatcher.log"),
        key=lambda p: p.stat().st_mtime,
    )
    assert logs, f"no dispatcher log in {cluster.pod_logs}"
    lines = [ln for ln in logs[-1].read_text().splitlines() if ln.startswith("{")]
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


def _pods_of(cluster: Cluster, jobs: list[helpers.Obj]) -> dict[str, list[str]]:
    """Each Job's pods' UIDs (pods carry their Job's UID in `controller-uid`)."""
    uids = {j["metadata"]["uid"]: j["metadata"]["name"] for j in jobs}
    pods = kubeapi.get_json(cluster.core().list_namespaced_pod, NS)["items"]
    found: dict[str, list[str]] = {}
    for pod in pods:
        owner = (pod["metadata"].get("labels") or {}).get("batch.kubernetes.io/controller-uid")
        if owner in uids:
            found.setdefault(uids[owner], []).append(pod["metadata"]["uid"])
    return {name: sorted(u) for name, u in found.items()}


def _host_state(cluster: Cluster, names: list[str]) -> dict[str, dict[str, object]]:
    """Content and mtime of every file of each host (what "no real work" must not change)."""
    result: dict[str, dict[str, object]] = {}
    for name in names:
        root = cluster.node_root(name)
        result[name] = {
            str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in root.rglob("*")
            if p.is_file() and not p.is_symlink() and p.relative_to(root).parts[0] != "run"
        }
    return result


def test_failing_node_fails_install_then_converges(fleet: Cluster, tmp_path: Path) -> None:
    t0 = time.monotonic()
    broken = fleet.runner_node_names()[5]
    kwok = fleet.kwok_node_names()[-3:]
    config = fleet.node_root(broken) / "etc" / "containerd" / "config.toml"
    original = config.read_bytes()
    config.write_text("version = 3\n[plugins\nthis is not toml\n")
    args = [
        FAIL_RELEASE, str(CHART), "-n", FAIL_NS, "-f", GPU_VALUES,
        "--set", f"job.nodes={{{','.join([broken, *kwok])}}}", "--set", "job.backoffLimit=0",
        "--timeout", "3m",
    ]  # fmt: skip
    result = helm(fleet, "install", "--create-namespace", *args, check=False)
    assert result.returncode != 0, result.stdout
    assert "post-install" in result.stderr, result.stderr
    outcome = {
        helpers.job_node(j): helpers.finished(j)
        for j in _install_jobs(fleet, FAIL_NS, FAIL_RELEASE)
    }
    assert outcome == {broken: "Failed", **dict.fromkeys(kwok, "Complete")}
    assert broken not in helpers.labelled(fleet)

    # Within a failure budget the same broken node no longer fails the release change,
    # and the dispatcher's summary still names it.
    helm(fleet, "upgrade", *args, "--set", "job.maxFailedNodes=1")
    summary = _dispatcher_summary(fleet, FAIL_NS, FAIL_RELEASE)
    assert summary["result"] == "succeeded" and summary["max_failed_nodes"] == 1
    assert [f["node"] for f in summary["failed"]] == [broken]
    assert broken not in helpers.labelled(fleet)

    config.write_bytes(original)
    helm(fleet, "upgrade", *args)
    outcome = {
        helpers.job_node(j): helpers.finished(j)
        for j in _install_jobs(fleet, FAIL_NS, FAIL_RELEASE)
    }
    assert outcome == dict.fromkeys([broken, *kwok], "Complete")
    assert broken in helpers.labelled(fleet)

    helm(fleet, "uninstall", FAIL_RELEASE, "-n", FAIL_NS, "--timeout", "3m")
    assert broken not in helpers.labelled(fleet)
    helpers.assert_hosts_pristine(fleet, [broken])
    TIMES["3 failing node"] = time.monotonic() - t0


def test_install_on_a_selected_subset(
    fleet: Cluster, pool: dict[str, list[str]], values: str, release_absent: None
) -> None:
    t0 = time.monotonic()
    selected = pool["kwok"] + pool["runner"]
    with helpers.JobWatch(fleet, NS, f"{PREFIX}/release={RELEASE}") as watch:
        _install(fleet, values)
    owner = _dispatcher_uid(fleet)
    jobs = _install_jobs(fleet, NS, RELEASE)
    per_node = Counter(helpers.job_node(j) for j in jobs)
    assert sorted(per_node) == sorted(selected)
    assert set(per_node.values()) == {1}
    for job in jobs:
        assert helpers.finished(job) == "Complete", job["metadata"]["name"]
        refs = job["metadata"]["ownerReferences"]
        assert [(r["kind"], r["name"], r["uid"]) for r in refs[:1]] == [("Job", DISPATCHER, owner)]
        # co-owned by the release's job-templates ConfigMap, so a re-run adopts it
        assert [(r["kind"], r["name"].endswith("-job-templates")) for r in refs[1:]] == [
            ("ConfigMap", True)
        ]
        assert not any(r.get("controller") for r in refs)
        assert job["spec"]["template"]["spec"]["nodeName"] == helpers.job_node(job)
    assert 2 <= watch.peak <= 5, watch.peak
    assert sorted(watch.nodes_created()) == sorted(selected)

    labelled = helpers.labelled(fleet)
    assert set(pool["runner"]) <= labelled
    outside = fleet.runner_node_names()[4]
    assert outside not in labelled
    helpers.assert_hosts_pristine(fleet, [outside])
    for name in pool["runner"]:
        assert nodes.tree_digest(fleet.node_root(name)) != nodes.tree_digest(
            fleet.node_original(name)
        )
    classes = helpers.runtimeclasses(fleet)
    for shim in ("qemu-nvidia-gpu", "qemu-nvidia-gpu-snp", "qemu-nvidia-gpu-tdx"):
        rc = classes[f"kata-{shim}"]
        assert rc["handler"] == f"kata-{shim}"
        assert rc["scheduling"]["nodeSelector"][helpers.NODE_LABEL] == "true"
    TIMES["1 install 20/50 nodes"] = time.monotonic() - t0


def test_added_nodes_get_installed_on_upgrade(
    fleet: Cluster, pool: dict[str, list[str]], release_installed: None
) -> None:
    t0 = time.monotonic()
    before = _host_state(fleet, pool["runner"])
    added = fleet.add_nodes(kwok=3, runner=1)
    helpers.label_nodes(fleet, added, {POOL: "a"})
    pool["kwok"] += [n for n in added if n.startswith("kwok-")]
    new_runner = [n for n in added if n.startswith("runner-")]
    pool["runner"] += new_runner
    helm(fleet, "upgrade", RELEASE, str(CHART), "-n", NS, "--reuse-values", "--timeout", "3m")
    jobs = _install_jobs(fleet, NS, RELEASE)
    per_node = Counter(helpers.job_node(j) for j in jobs)
    assert sorted(per_node) == sorted(pool["kwok"] + pool["runner"])
    assert set(per_node.values()) == {1}
    assert all(helpers.finished(j) == "Complete" for j in jobs)
    assert set(new_runner) <= helpers.labelled(fleet)
    after = _host_state(fleet, [n for n in pool["runner"] if n not in new_runner])
    assert after == before, "an upgrade rewrote files on nodes that were already installed"
    TIMES["2 add nodes + upgrade"] = time.monotonic() - t0


def test_killed_dispatcher_then_upgrade_converges(
    fleet: Cluster, pool: dict[str, list[str]], release_installed: None
) -> None:
    t0 = time.monotonic()
    selected = pool["kwok"] + pool["runner"]
    core = fleet.core()
    with helpers.JobWatch(fleet, NS, f"{PREFIX}/release={RELEASE}") as watch:
        with watch._lock:
            earlier = set(watch.created)
        # A changed value (debug logging) changes what every node gets: every node needs
        # a Job built from the new template.
        upgrade = subprocess.Popen(
            ["helm", "--kubeconfig", str(fleet.kubeconfig), "upgrade", RELEASE, str(CHART),
             "-n", NS, "--reuse-values", "--set", "env.debug=true", "--timeout", "3m"],
            env=fleet.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

        def new_jobs() -> list[helpers.Obj]:
            with watch._lock:
                return [j for uid, j in watch.created.items() if uid not in earlier]

        wait_for("the new dispatcher to create 7 Jobs", lambda: len(new_jobs()) >= 7, timeout=120)
        pods = kubeapi.get_json(
            core.list_namespaced_pod, NS, label_selector="app.kubernetes.io/component=dispatcher"
        )["items"]
        running = [p for p in pods if p["status"].get("phase") in {"Pending", "Running"}]
        assert len(running) == 1, [p["metadata"]["name"] for p in pods]
        core.delete_namespaced_pod(running[0]["metadata"]["name"], NS, grace_period_seconds=0)
        _, err = upgrade.communicate(timeout=240)
        assert upgrade.returncode != 0, "helm upgrade succeeded although its dispatcher was killed"
        assert "post-upgrade" in err, err
        assert DISPATCHER in err, err
        partial = {helpers.job_node(j) for j in new_jobs()}
        assert partial < set(selected), "the killed dispatcher still covered every node"
        pods_before = _pods_of(fleet, new_jobs())
        assert pods_before, "the killed run's Jobs have no pods to compare"

        # --reuse-values takes the last *deployed* release's values: name the change again.
        helm(fleet, "upgrade", RELEASE, str(CHART), "-n", NS, "--reuse-values",
             "--set", "env.debug=true", "--timeout", "3m")  # fmt: skip
        created = Counter(helpers.job_node(j) for j in new_jobs())
    # Across the killed run and the re-run, every node got exactly one Job of the new
    # template: the ones the killed dispatcher started were adopted, never re-created.
    assert sorted(created) == sorted(selected)
    assert set(created.values()) == {1}, {n: c for n, c in created.items() if c > 1}
    jobs = _install_jobs(fleet, NS, RELEASE)
    per_node = Counter(helpers.job_node(j) for j in jobs)
    assert sorted(per_node) == sorted(selected)
    assert set(per_node.values()) == {1}
    assert all(helpers.finished(j) == "Complete" for j in jobs)
    # no pod was lost on the way: an adopted Job kept the pod it had
    assert all(not j["status"].get("failed") for j in jobs), [
        j["metadata"]["name"] for j in jobs if j["status"].get("failed")
    ]
    assert len({j["metadata"]["labels"][TEMPLATE_HASH] for j in jobs}) == 1
    # the Jobs the killed run started kept their pods: same pod UIDs after the adoption
    pods_after = _pods_of(fleet, jobs)
    assert {j: pods_after.get(j) for j in pods_before} == pods_before
    assert watch.peak <= 5, watch.peak
    assert set(pool["runner"]) <= helpers.labelled(fleet)
    TIMES["4 killed dispatcher + upgrade"] = time.monotonic() - t0


def test_uninstall_leaves_nothing(
    fleet: Cluster, pool: dict[str, list[str]], release_installed: None
) -> None:
    t0 = time.monotonic()
    _uninstall(fleet)
    assert not helpers.labelled(fleet)
    helpers.assert_hosts_pristine(fleet, fleet.runner_node_names())
    wait_for(
        f"namespace {NS} to be empty",
        lambda: not helpers.namespace_empty(fleet, NS),
        timeout=60,
    )
    assert not helpers.release_objects(fleet, RELEASE)
    assert not _installed(fleet)
    TIMES["5 uninstall"] = time.monotonic() - t0


REC_RELEASE = "kata-rec"
REC_NS = "kata-rec"
REC_LABEL = "kata-deploy.test/reconcile"


def test_reconcile_cronjob_covers_a_node_added_later(fleet: Cluster) -> None:
    """job.reconcile: a node added after `helm install` gets Kata with no helm command; a
    node already done gets no second Job; `helm uninstall` removes the CronJob before it
    cleans up, and nothing installs again behind it."""
    t0 = time.monotonic()
    done_runner = fleet.runner_node_names()[4]
    first_kwok = fleet.kwok_node_names()[-1]
    helpers.label_nodes(fleet, [done_runner, first_kwok], {REC_LABEL: "yes"})
    helm(fleet, "install", REC_RELEASE, str(CHART), "-n", REC_NS, "--create-namespace",
         "-f", GPU_VALUES, "--set-json", f'job.nodeSelector={{"{REC_LABEL}":"yes"}}',
         "--set-json", "job.nodeSelectorExpressions=[]",
         "--set", "job.reconcile.enabled=true", "--set", "job.reconcile.schedule=* * * * *",
         "--timeout", "3m")  # fmt: skip
    assert done_runner in helpers.labelled(fleet)
    selector = f"{PREFIX}/release={REC_RELEASE},{PREFIX}/stage=install"
    before = {
        helpers.job_node(j): j["metadata"]["uid"] for j in helpers.jobs(fleet, REC_NS, selector)
    }
    assert set(before) == {done_runner, first_kwok}

    [added] = fleet.add_nodes(kwok=1)
    helpers.label_nodes(fleet, [added], {REC_LABEL: "yes"})

    def installed_by_the_cronjob() -> bool:
        jobs = [j for j in helpers.jobs(fleet, REC_NS, selector) if helpers.job_node(j) == added]
        return bool(jobs) and helpers.finished(jobs[0]) == "Complete"

    wait_for(f"the reconcile CronJob to install {added}", installed_by_the_cronjob, timeout=200)
    after = {helpers.job_node(j): j for j in helpers.jobs(fleet, REC_NS, selector)}
    owner = after[added]["metadata"]["labels"][f"{PREFIX}/owner"]
    assert owner.startswith(f"{REC_RELEASE}-kata-deploy-reconcile-"), owner
    # the runner node was done: no Job was made for it again
    assert after[done_runner]["metadata"]["uid"] == before[done_runner]

    helm(fleet, "uninstall", REC_RELEASE, "-n", REC_NS, "--timeout", "3m")
    batch = fleet.api("BatchV1Api")
    assert not kubeapi.get_json(batch.list_namespaced_cron_job, REC_NS)["items"]
    assert done_runner not in helpers.labelled(fleet)
    helpers.assert_hosts_pristine(fleet, [done_runner])
    # Nothing can install again: no CronJob (above), and no Job of any kind left in the
    # namespace (a reconcile run in flight at uninstall would show here), so no schedule
    # needs waiting out.
    wait_for(
        f"every Job in {REC_NS} to be gone",
        lambda: not helpers.jobs(fleet, REC_NS, ""),
        timeout=60,
    )
    assert done_runner not in helpers.labelled(fleet)
    helpers.label_nodes(fleet, [done_runner, first_kwok, added], {REC_LABEL: None})
    TIMES["6 reconcile CronJob covers a new node"] = time.monotonic() - t0


GHOST = "ghost-00"


def test_a_pod_that_never_starts_ends_by_its_deadline_with_the_reason(fleet: Cluster) -> None:
    """A selected node whose kubelet never runs the pod (a Node object no kubelet, kwok or
    runner serves): its per-node Job fails at job.activeDeadlineSeconds, freeing its slot,
    and the summary says the pod never started."""
    t0 = time.monotonic()
    core = fleet.core()
    # Labelled as a real node, so neither kwok nor the local runner serves it: its pods
    # stay Pending, as on a node whose kubelet is wedged.
    labels = {"kubernetes.io/hostname": GHOST, "kubernetes.io/os": "linux",
              "kubernetes.io/arch": "amd64", kwokconfig.REAL_LABEL: "true"}  # fmt: skip
    core.create_node({"metadata": {"name": GHOST, "labels": labels}})
    try:
        now = kubeapi.now()
        core.patch_node_status(GHOST, {"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test",
             "lastHeartbeatTime": now, "lastTransitionTime": now}]}})  # fmt: skip
        result = helm(fleet, "install", "kata-ghost", str(CHART), "-n", "kata-ghost",
                      "--create-namespace", "-f", GPU_VALUES, "--set", f"job.nodes={{{GHOST}}}",
                      "--set", "job.activeDeadlineSeconds=25", "--timeout", "3m",
                      check=False)  # fmt: skip
        assert result.returncode != 0, result.stdout
        summary = _dispatcher_summary(fleet, "kata-ghost", "kata-ghost")
        [failure] = summary["failed"]
        assert failure["node"] == GHOST and failure["reason"] == "DeadlineExceeded", failure
        assert failure.get("container_reason") == "Pending", failure
        assert summary["elapsed_seconds"] < 150  # the 25 s deadline, then the 60 s grace
        # the uninstall does not wait for that pod either
        helm(fleet, "uninstall", "kata-ghost", "-n", "kata-ghost", "--timeout", "2m")
    finally:
        helm(fleet, "uninstall", "kata-ghost", "-n", "kata-ghost", "--ignore-not-found",
             "--timeout", "2m", check=False)  # fmt: skip
        core.delete_node(GHOST)
    TIMES["7 a pod that never starts, ended by its deadline"] = time.monotonic() - t0
