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
  own peak was 59 MiB).

Prints a table and writes tests/bench/results/rollout.json. Sizes come from
$KATA_DEPLOY_BENCH_SIZES (default "100,1000,5000").
"""

from __future__ import annotations

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
    return max(10, nodes // 50)


def _setup_chart(cluster: Cluster, tmp: Path, parallelism: int) -> tuple[list[str], str]:
    out = helpers.helm(cluster, "template", RELEASE, str(helpers.CHART), "-n", NS,
                       "--set", "deploymentMode=job", "--set", f"job.parallelism={parallelism}",
                       "--set", "job.backoffLimit=0", "--set", "job.nodeSelectorExpressions=null",
                       ).stdout  # fmt: skip
    docs = [d for d in yaml.safe_load_all(out) if isinstance(d, dict)]
    helpers.kubectl(cluster, "create", "namespace", NS)
    keep = [d for d in docs if d["kind"] in {"ServiceAccount", "ConfigMap"}]
    (tmp / "objects.yaml").write_text(yaml.safe_dump_all(keep))
    helpers.kubectl(cluster, "apply", "-n", NS, "-f", str(tmp / "objects.yaml"))
    owner = next(
        d
        for d in docs
        if d["kind"] == "Job" and "post-install" in d["metadata"]["annotations"]["helm.sh/hook"]
    )
    owner["spec"]["suspend"] = True

    cluster.api("BatchV1Api").create_namespaced_job(NS, owner)
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and "install-job.yaml" in d["data"])
    template = tmp / "install-job.yaml"
    template.write_text(cm["data"]["install-job.yaml"])
    args = list(owner["spec"]["template"]["spec"]["containers"][0]["args"])
    args[args.index("--template") + 1] = str(template)
    return args, owner["metadata"]["name"]


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
        args, _ = _setup_chart(cluster, tmp, parallelism)
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
        return {
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
        ("ideal_seconds", "ideal s"), ("overhead_ratio", "ratio"), ("job_seconds", "job s"),
        ("peak_in_flight_watch", "peak"), ("api_requests_per_node", "req/node"),
        ("dispatcher_peak_rss_mib", "RSS MiB"), ("succeeded", "ok"),
    ]  # fmt: skip
    return bench.table(rows, cols, width=9)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[bench] %(message)s", stream=sys.stderr)
    for noisy in ("kubernetes", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    sizes = [int(s) for s in os.environ.get("KATA_DEPLOY_BENCH_SIZES", "100,1000,5000").split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="kata-bench-") as tmp:
        for nodes in sizes:
            sys.stderr.write(f"bench_rollout: {nodes} nodes...\n")
            rows.append(_run(nodes, Path(tmp)))
            sys.stdout.write(_table(rows[-1:]) + "\n")
    table = _table(rows)
    sys.stdout.write("\nrollout vs ideal ceil(N/P) * job time\n" + table + "\n")
    bench.write_json(RESULTS, {"machine": bench.machine(), "repo": REPO.name, "results": rows})
    sys.stdout.write(f"results written to {RESULTS}\n")


if __name__ == "__main__":
    main()
