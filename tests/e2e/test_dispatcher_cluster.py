"""kata-dispatcher against a real control plane at fleet scale (issue 4's cluster tests).

A cluster of its own: 220 kwok nodes, two control-plane and two tainted among them, and
three nodes whose Job pods fail. The chart's RBAC, ServiceAccounts and job-templates
ConfigMap are rendered with `helm template` and applied; the owner is the chart's own
install dispatcher Job, created suspended. The real `kata-dispatcher` then runs as a
local process with a TokenRequest token of the chart's dispatcher ServiceAccount (so
the chart's RBAC is what it gets) and the chart's own arguments, parallelism 7.

The chart is rendered with `job.nodeSelectorExpressions: []`, so every node is
selected, the kubeadm-style control-plane nodes (NoSchedule) and the tainted ones
included: the per-node Jobs' default toleration and `nodeName` pinning must get them
Kata, as the seed promises for single-node clusters and CI.

Cases (the second starts from the Jobs the first leaves, and makes them itself when
run alone):
- the first run is SIGKILLed mid-rollout; the second run converges: every selected node
  has exactly one Job (adopted, never duplicated), control-plane and tainted nodes
  included, nothing skipped, the failing nodes are named in the summary and the exit
  code is 1; an independent watch never sees more than 7 unfinished Jobs;
- deleting the dispatcher Job leaves the per-node Jobs (the job-templates ConfigMap
  co-owns them); a new dispatcher Job (what `helm upgrade` creates) takes every one
  over without creating a Job, their UIDs unchanged; deleting the ConfigMap then
  garbage-collects them all.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import kubeapi
from tests.cluster.cluster import Cluster, ClusterSpec
from tests.e2e import helpers
from tests.e2e.conftest import running_cluster
from tests.e2e.helpers import PREFIX, TIMES, wait_for

NS = "dispatch"
RELEASE = "disp"
PARALLELISM = 7
FAILING = ("kwok-0050", "kwok-0120", "kwok-0190")
SPEC = ClusterSpec(
    nodes=220, runner_nodes=0, control_plane=2, tainted=2, job_seconds=0.5, failing_nodes=FAILING
)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory, "dispatch-cluster", SPEC) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def chart(big: Cluster, tmp_path_factory: pytest.TempPathFactory) -> helpers.ChartDispatcher:
    """The chart's install dispatcher, every node selected, ready to run locally."""
    return helpers.chart_dispatcher(
        big, tmp_path_factory.mktemp("dispatch-chart"), NS, RELEASE,
        "--set", "deploymentMode=job", "--set", f"job.parallelism={PARALLELISM}",
        "--set", "job.backoffLimit=0", "--set", "job.reinstall=true",
        "--set-json", "job.nodeSelectorExpressions=[]",
    )  # fmt: skip


def _dispatcher(big: Cluster, chart: helpers.ChartDispatcher, log: Path) -> subprocess.Popen[str]:
    return chart.run(big, big.server, log)


def test_killed_and_rerun_dispatcher_converges_within_parallelism(
    big: Cluster, chart: helpers.ChartDispatcher, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    st = big.state
    names = big.kwok_node_names()
    control_plane = set(names[: st.control_plane])
    tainted = set(names[st.control_plane : st.control_plane + st.tainted])
    assert control_plane and tainted
    selected = installed = set(names)
    with helpers.JobWatch(big, NS, f"{PREFIX}/release={RELEASE}") as watch:
        first = _dispatcher(big, chart, tmp_path / "first.log")
        wait_for("40 per-node Jobs", lambda: len(watch.created) >= 40, timeout=180)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
        assert len(watch.created) < len(installed), "the first run finished before it was killed"

        second = _dispatcher(big, chart, tmp_path / "second.log")
        out, _ = second.communicate(timeout=600)
        log = (tmp_path / "second.log").read_text()
    assert second.returncode == 1, log[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert sorted(f["node"] for f in summary["failed"]) == sorted(FAILING)
    assert summary["skipped"] == []
    assert summary["nodes_total"] == len(selected)
    assert summary["succeeded"] == len(installed) - len(FAILING)
    assert summary["peak_in_flight"] <= PARALLELISM

    assert watch.peak <= PARALLELISM, watch.peak
    assert watch.peak >= PARALLELISM - 2, f"never near the parallelism: peak {watch.peak}"
    created = Counter(watch.nodes_created())
    assert set(created) == installed
    duplicates = {n: c for n, c in created.items() if c > 1}
    assert not duplicates, f"nodes given more than one Job: {duplicates}"
    jobs = helpers.jobs(big, NS, f"{PREFIX}/release={RELEASE}")
    outcome = {helpers.job_node(j): helpers.finished(j) for j in jobs}
    assert outcome == {n: "Failed" if n in FAILING else "Complete" for n in installed}
    TIMES["dispatcher 220 nodes killed + rerun"] = time.monotonic() - t0


def test_a_new_dispatcher_takes_over_and_the_configmap_collects_them(
    big: Cluster, chart: helpers.ChartDispatcher, tmp_path: Path
) -> None:
    if not helpers.jobs(big, NS, f"{PREFIX}/release={RELEASE}"):
        # Run alone: the finished rollout the first case leaves, made here.
        first = _dispatcher(big, chart, tmp_path / "first.log")
        first.communicate(timeout=600)
        assert first.returncode == 1, (tmp_path / "first.log").read_text()[-3000:]
    before = {j["metadata"]["name"]: j["metadata"]["uid"]
              for j in helpers.jobs(big, NS, f"{PREFIX}/release={RELEASE}")}  # fmt: skip
    assert len(before) == len(big.kwok_node_names())
    batch = big.api("BatchV1Api")
    batch.delete_namespaced_job(chart.owner_name, NS, propagation_policy="Background")
    wait_for(
        "the dispatcher Job to be gone",
        lambda: (
            not [j for j in helpers.jobs(big, NS, "") if j["metadata"]["name"] == chart.owner_name]
        ),
        timeout=60,
    )
    time.sleep(3)  # give the garbage collector time to act, were it going to
    survivors = {j["metadata"]["name"]: j["metadata"]["uid"]
                 for j in helpers.jobs(big, NS, f"{PREFIX}/release={RELEASE}")}  # fmt: skip
    assert survivors == before, "deleting the dispatcher Job collected per-node Jobs"

    # What helm upgrade does: a new dispatcher Job of the same name, then the dispatcher.
    owner = chart.owner
    batch.create_namespaced_job(NS, owner)
    rerun = _dispatcher(big, chart, tmp_path / "rerun.log")
    out, _ = rerun.communicate(timeout=300)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["adopted"] == len(before) - len(FAILING), (tmp_path / "rerun.log").read_text()[
        -3000:
    ]
    after = {j["metadata"]["name"]: j["metadata"]["uid"]
             for j in helpers.jobs(big, NS, f"{PREFIX}/release={RELEASE}")}  # fmt: skip
    kept = {n: u for n, u in after.items() if before.get(n) == u}
    assert len(kept) == len(before) - len(FAILING), "succeeded Jobs were re-created, not adopted"

    templates = next(
        c["metadata"]["name"]
        for c in kubeapi.get_json(big.core().list_namespaced_config_map, NS)["items"]
        if "install-job.yaml" in (c.get("data") or {})
    )
    big.core().delete_namespaced_config_map(templates, NS, propagation_policy="Background")
    batch.delete_namespaced_job(owner["metadata"]["name"], NS, propagation_policy="Background")
    wait_for(
        "the garbage collector to remove every per-node Job",
        lambda: not helpers.jobs(big, NS, f"{PREFIX}/release={RELEASE}"),
        timeout=120,
    )
