"""Benchmark (not a test): job-mode rollout time against the ideal, at fleet scale.

For each fleet size N it starts a local cluster of N kwok nodes (tests/cluster), applies
the chart's ConfigMaps and ServiceAccounts rendered by `helm template`, creates the
chart's dispatcher Job suspended as the owner, measures the time one per-node Job takes
on this cluster (create to Complete, the "job time"), then runs the real kata-dispatcher
with parallelism P and records:

- wall time of the rollout vs the ideal ceil(N/P) * job time;
- peak Jobs in flight, seen by an independent watch (must not exceed P);
- API requests per node, from the dispatcher's final JSON summary;
- the dispatcher's peak RSS: its VmHWM, sampled from /proc while it runs. Not wait4's
  ru_maxrss: Linux carries the forking parent's resident size across exec into it, so
  it reported this benchmark's own memory (119 MiB at 1000 nodes where the dispatcher's
  own peak was 59 MiB);
- the bare creator (bare_creator.py) on the same cluster right after, with the same
  template, nodes and P: its wall time, and ours divided by it (the target is within 5%);
- `helm upgrade` with nothing changed: every node is given the result annotation and
  label an installer would have left (kwok nodes run no installer), the owner Job is
  re-created as Helm would, and the dispatcher runs again with the chart's arguments:
  its wall time, the per-node Jobs it created (the target is none) and its API requests.

Prints a table and writes tests/bench/results/rollout.json. Sizes come from
$KATA_DEPLOY_BENCH_SIZES (default "100,1000,5000"). A run of some sizes replaces only
those sizes' rows in the file and keeps the others; every row carries the date it was
measured, and the comparisons inside a row (ours, the bare creator, the upgrade) always
come from one run on one cluster.
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from tests import bench
from tests.cluster import kubeapi
from tests.cluster.cluster import REPO, VENV_BIN, Cluster, ClusterSpec
from tests.e2e import helpers

RESULTS = Path(__file__).resolve().parent / "results" / "rollout.json"
NS = "bench"
RELEASE = "bench"
JOB_SECONDS = 2.0


def _parallelism(nodes: int) -> int:
    """The issue's operating points: P=100 at N=1000, P=500 at N=5000 (10 below 1000)."""
    return 10 if nodes < 1000 else nodes // 10


def chart_args(parallelism: int) -> list[str]:
    """The values this benchmark renders the chart with: job mode, every node selected.

    tests/contracts renders them too, so a schema change that refuses them fails
    `make test` rather than the next benchmark run.
    """
    return [
        "--set", "deploymentMode=job", "--set", f"job.parallelism={parallelism}",
        "--set", "job.backoffLimit=0", "--set-json", "job.nodeSelectorExpressions=[]",
    ]  # fmt: skip


def _setup_chart(cluster: Cluster, tmp: Path, parallelism: int) -> tuple[list[str], dict[str, Any]]:
    out = helpers.helm(
        cluster, "template", RELEASE, str(helpers.CHART), "-n", NS, *chart_args(parallelism)
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if isinstance(d, dict)]
    helpers.kubectl(cluster, "create", "namespace", NS)
    keep = [d for d in docs if d["kind"] in {"ServiceAccount", "ConfigMap"}]
    owner_copy = None
    (tmp / "objects.yaml").write_text(yaml.safe_dump_all(keep))
    helpers.kubectl(cluster, "apply", "-n", NS, "-f", str(tmp / "objects.yaml"))
    owner = next(
        d
        for d in docs
        if d["kind"] == "Job" and "post-install" in d["metadata"]["annotations"]["helm.sh/hook"]
    )
    owner["spec"]["suspend"] = True
    owner_copy = copy.deepcopy(owner)
    cluster.api("BatchV1Api").create_namespaced_job(NS, owner)
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and "install-job.yaml" in d["data"])
    template = tmp / "install-job.yaml"
    template.write_text(cm["data"]["install-job.yaml"])
    args = list(owner["spec"]["template"]["spec"]["containers"][0]["args"])
    args[args.index("--template") + 1] = str(template)
    assert owner_copy is not None
    return args, owner_copy


def _single_job_seconds(cluster: Cluster, node: str) -> float:
    """Create-to-Complete time of one plain Job pinned to ``node``."""

    batch = cluster.api("BatchV1Api")
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "probe", "namespace": NS},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "nodeName": node,
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "unused"}],
                }
            },
        },
    }
    t0 = time.monotonic()
    batch.create_namespaced_job(NS, job)
    helpers.wait_for(
        "the probe Job",
        lambda: (
            helpers.finished(kubeapi.get_json(batch.read_namespaced_job, "probe", NS)) is not None
        ),
        timeout=120,
    )
    seconds = time.monotonic() - t0
    batch.delete_namespaced_job("probe", NS, propagation_policy="Background")
    return seconds


class _PeakRss:
    """Samples a child's VmHWM (its own peak resident size since exec) until it exits."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self._status = Path(f"/proc/{pid}/status")
        self._interval = interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.peak_kib = 0

    def _sample(self) -> None:
        while not self._done.is_set():
            try:
                text = self._status.read_text()
            except OSError:  # the process is gone (or a zombie without a status)
                return
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_kib = max(self.peak_kib, int(line.split()[1]))
            self._done.wait(self._interval)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()


def _clear_jobs(cluster: Cluster, selector: str) -> None:
    batch = cluster.api("BatchV1Api")
    for job in helpers.jobs(cluster, NS, selector):
        batch.delete_namespaced_job(job["metadata"]["name"], NS, propagation_policy="Background")
    helpers.wait_for("the Jobs to be gone", lambda: not helpers.jobs(cluster, NS, selector),
                     timeout=600)  # fmt: skip


def _bare(cluster: Cluster, tmp: Path, parallelism: int) -> dict[str, Any]:
    """The bare creator on this cluster, after our Jobs are gone."""
    _clear_jobs(cluster, f"{helpers.PREFIX}/release={RELEASE}")
    nodes_file = tmp / "nodes.txt"
    nodes_file.write_text("\n".join(cluster.kwok_node_names()) + "\n")
    argv = [str(VENV_BIN / "python"), "-m", "tests.bench.bare_creator", str(cluster.kubeconfig),
            NS, str(tmp / "install-job.yaml"), str(parallelism), str(nodes_file)]  # fmt: skip
    out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=REPO).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    _clear_jobs(cluster, "kata-deploy.bench/bare=yes")
    return result


def _mark_done(cluster: Cluster, args: list[str]) -> None:
    """What the installer leaves on a node it installed, on every node (in parallel)."""
    key = args[args.index("--result-annotation") + 1]
    digest = args[args.index("--config-hash") + 1]
    result = json.dumps(
        {"configHash": digest, "installer": "bench", "outcome": "installed",
         "time": "2026-01-01T00:00:00Z"}, sort_keys=True, separators=(",", ":"),
    )  # fmt: skip
    patch = {"metadata": {"labels": {helpers.NODE_LABEL: "true"}, "annotations": {key: result}}}
    core = cluster.core(pool=16)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: core.patch_node(n, patch), cluster.kwok_node_names()))


def _upgrade_nothing_changed(cluster: Cluster, tmp: Path, args: list[str], owner: dict[str, Any]
                             ) -> dict[str, Any]:  # fmt: skip
    """A second run as `helm upgrade` with the same values starts it: new owner Job."""
    _mark_done(cluster, args)
    batch = cluster.api("BatchV1Api")
    batch.delete_namespaced_job(owner["metadata"]["name"], NS, propagation_policy="Orphan")
    helpers.wait_for("the old owner Job to be gone", lambda: not [
        j for j in helpers.jobs(cluster, NS) if j["metadata"]["name"] == owner["metadata"]["name"]
    ], timeout=60)  # fmt: skip
    batch.create_namespaced_job(NS, owner)
    argv = [str(VENV_BIN / "kata-dispatcher"), *args, "--namespace", NS,
            "--kubeconfig", str(cluster.kubeconfig), "--progress-interval", "30"]  # fmt: skip
    with helpers.JobWatch(cluster, NS, f"{helpers.PREFIX}/release={RELEASE}") as watch:
        with watch._lock:
            before = set(watch.created)
        start = time.monotonic()
        with (tmp / "upgrade.log").open("w") as err:
            run = subprocess.run(argv, check=False, stdout=subprocess.PIPE, stderr=err, text=True)
        out = run.stdout
        wall = time.monotonic() - start
        with watch._lock:
            created = len(set(watch.created) - before)
    summary = json.loads(out.strip().splitlines()[-1])
    return {
        "upgrade_seconds": round(wall, 2),
        "upgrade_jobs_created": created,
        "upgrade_already_done": summary.get("already_done"),
        "upgrade_api_requests": summary["api_requests"],
    }


def _run(nodes: int, root: Path) -> dict[str, Any]:
    parallelism = _parallelism(nodes)
    cluster = Cluster(root / f"cluster-{nodes}")
    t0 = time.monotonic()
    cluster.up(
        ClusterSpec(
            nodes=nodes, runner_nodes=0, control_plane=0, tainted=0, job_seconds=JOB_SECONDS
        )
    )
    startup = time.monotonic() - t0
    try:
        tmp = root / f"chart-{nodes}"
        tmp.mkdir()
        args, owner = _setup_chart(cluster, tmp, parallelism)
        job_seconds = (
            sum(_single_job_seconds(cluster, n) for n in cluster.kwok_node_names()[:3]) / 3
        )
        argv = [str(VENV_BIN / "kata-dispatcher"), *args, "--namespace", NS,
                "--kubeconfig", str(cluster.kubeconfig), "--progress-interval", "30"]  # fmt: skip
        with helpers.JobWatch(cluster, NS, f"{helpers.PREFIX}/release={RELEASE}") as watch:
            start = time.monotonic()
            with (tmp / "dispatcher.log").open("w") as err, (tmp / "summary.json").open("w") as out:
                proc = subprocess.Popen(argv, stdout=out, stderr=err)
                with _PeakRss(proc.pid) as rss:
                    proc.wait()
            wall = time.monotonic() - start
        summary = json.loads((tmp / "summary.json").read_text().strip().splitlines()[-1])
        ideal = math.ceil(nodes / parallelism) * job_seconds
        bare = _bare(cluster, tmp, parallelism)
        upgrade = _upgrade_nothing_changed(cluster, tmp, args, owner)
        return {
            **upgrade,
            "bare_seconds": bare["seconds"],
            "bare_peak_in_flight": bare["peak_in_flight"],
            "vs_bare": round(wall / bare["seconds"], 3),
            "nodes": nodes,
            "parallelism": parallelism,
            "exit_code": proc.returncode,
            "succeeded": summary["succeeded"],
            "cluster_start_seconds": round(startup, 1),
            "job_seconds": round(job_seconds, 2),
            "kwok_job_delay_seconds": JOB_SECONDS,
            "rollout_seconds": round(wall, 1),
            "ideal_seconds": round(ideal, 1),
            "overhead_ratio": round(wall / ideal, 2),
            "peak_in_flight_watch": watch.peak,
            "peak_in_flight_dispatcher": summary.get("peak_in_flight"),
            "api_requests": summary["api_requests"],
            "api_requests_per_node": round(summary["api_requests"] / nodes, 2),
            "dispatcher_peak_rss_mib": round(rss.peak_kib / 1024, 1),
        }
    finally:
        cluster.down()


def _table(rows: list[dict[str, Any]]) -> str:
    cols = [
        ("nodes", "N"), ("parallelism", "P"), ("rollout_seconds", "rollout s"),
        ("bare_seconds", "bare s"), ("vs_bare", "vs bare"),
        ("ideal_seconds", "ideal s"), ("overhead_ratio", "vs ideal"), ("job_seconds", "job s"),
        ("peak_in_flight_watch", "peak"), ("api_requests_per_node", "req/node"),
        ("dispatcher_peak_rss_mib", "RSS MiB"), ("succeeded", "ok"),
    ]  # fmt: skip
    return bench.table(rows, cols, width=9)


def _upgrade_table(rows: list[dict[str, Any]]) -> str:
    cols = [
        ("nodes", "N"), ("upgrade_seconds", "wall s"), ("upgrade_jobs_created", "Jobs made"),
        ("upgrade_already_done", "done"), ("upgrade_api_requests", "API reqs"),
    ]  # fmt: skip
    return bench.table(rows, cols, width=10)


def _previous_rows() -> list[dict[str, Any]]:
    if not RESULTS.exists():
        return []
    return list(json.loads(RESULTS.read_text(encoding="utf-8")).get("results", []))


def _merged(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """This run's rows replace the file's rows of the same size; the rest stay, by size."""
    by_size = {row["nodes"]: row for row in old}
    by_size.update({row["nodes"]: row for row in new})
    return [by_size[n] for n in sorted(by_size)]


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[bench] %(message)s", stream=sys.stderr)
    for noisy in ("kubernetes", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    sizes = [int(s) for s in os.environ.get("KATA_DEPLOY_BENCH_SIZES", "100,1000,5000").split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="kata-bench-") as tmp:
        for nodes in sizes:
            sys.stderr.write(f"bench_rollout: {nodes} nodes...\n")
            row = _run(nodes, Path(tmp))
            row["measured_on"] = time.strftime("%Y-%m-%d", time.gmtime())
            rows.append(row)
            sys.stdout.write(_table(rows[-1:]) + "\n")
    table = _table(rows)
    sys.stdout.write(
        "\nrollout vs the bare creator (same cluster, same run) and vs ideal ceil(N/P) * job time\n"
        + table + "\n"
    )  # fmt: skip
    sys.stdout.write("\nhelm upgrade with nothing changed\n" + _upgrade_table(rows) + "\n")
    kept = _merged(_previous_rows(), rows)
    bench.write_json(RESULTS, {"machine": bench.machine(), "repo": REPO.name, "results": kept})
    sys.stdout.write(f"results written to {RESULTS}\n")


if __name__ == "__main__":
    main()
