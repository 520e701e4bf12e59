"""Benchmark (not a test): how the dispatcher's memory grows with the number of nodes.

For each fleet size N it runs the real `kata_dispatcher.rollout.Rollout` in a fresh
Python process against the in-memory fake cluster of the unit tests
(dispatcher/tests/fakes.py) with N kwok-like nodes (labels, annotations, conditions,
capacity, images: a few KiB of JSON each) and the chart's own per-node Job template
(`helm template --set deploymentMode=job`, the `install-job.yaml` ConfigMap key).

The fake runs in a forked server process and answers over a pipe, so every object the
dispatcher sees is freshly decoded, as from a real API server, and the fake's own store
(every Job, every event) is not counted as the dispatcher's. Jobs complete five
simulated seconds after creation: the run takes seconds of wall time.

Each size runs twice, each time in a new process: once plain, for the peak RSS
(getrusage ru_maxrss), and once under tracemalloc, for the peak of traced Python memory,
the memory the run still holds once planning is over, and the allocation sites that
hold the most at that point.

Prints a table and writes tests/bench/results/dispatcher_memory.json. Sizes come from
$KATA_DEPLOY_BENCH_MEMORY_SIZES (default "1000,5000,10000"), the parallelism from
$KATA_DEPLOY_BENCH_MEMORY_PARALLELISM (default 100); $KATA_DEPLOY_BENCH_MEMORY_OUT writes
the JSON elsewhere (to keep a before/after pair).
Usage: python3 -m tests.bench dispatcher_memory
"""

from __future__ import annotations

import importlib.util
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import yaml

from tests import bench

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "helm-chart" / "kata-deploy"
FAKES = REPO / "dispatcher" / "tests" / "fakes.py"
RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "dispatcher_memory.json"
NS = "kata"
RELEASE = "kata-deploy"
OWNER = "kata-deploy-dispatcher"
TOP_SITES = 8
FRAMES = 32  # deep enough to reach the dispatcher line under a recursive deepcopy

Obj = dict[str, Any]


def _fakes() -> ModuleType:
    """dispatcher/tests/fakes.py, loaded by path (it is not an installed module)."""
    spec = importlib.util.spec_from_file_location("kata_dispatcher_fakes", FAKES)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {FAKES}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def render_template(path: pathlib.Path) -> None:
    """The chart's per-node Job template, as the dispatcher reads it in job mode."""
    helm = shutil.which("helm") or str(REPO / ".tools" / "bin" / "helm")
    if not pathlib.Path(helm).is_file():
        raise SystemExit("helm not found: run `bash hack/setup.sh helm4` or put helm on PATH")
    out = subprocess.run(
        [helm, "template", RELEASE, str(CHART), "-n", NS, "--set", "deploymentMode=job"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for doc in yaml.safe_load_all(out):
        if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
            text = (doc.get("data") or {}).get("install-job.yaml")
            if text:
                path.write_text(text, encoding="utf-8")
                return
    raise SystemExit(f"helm template {CHART}: no ConfigMap with key install-job.yaml")


def kwok_node(index: int) -> Obj:
    """A node as a kwok cluster lists it: ~3.5 KiB of JSON."""
    name = f"kwok-node-{index:05d}"
    zone = f"zone-{index % 3}"
    stamp = "2026-01-01T00:00:00Z"
    conditions = [
        {"type": t, "status": "False", "reason": f"KubeletHas{r}", "message": m,
         "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}
        for t, r, m in (
            ("MemoryPressure", "SufficientMemory", "kubelet has sufficient memory available"),
            ("DiskPressure", "NoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "SufficientPID", "kubelet has sufficient PID available"),
            ("NetworkUnavailable", "RouteCreated", "RouteController created a route"),
        )
    ]  # fmt: skip
    conditions.append(
        {"type": "Ready", "status": "True", "reason": "KubeletReady",
         "message": "kubelet is posting ready status", "lastHeartbeatTime": stamp,
         "lastTransitionTime": stamp}
    )  # fmt: skip
    images = [
        {"names": [f"registry.example.com/team-{i}/service-{i}@sha256:{'%064x' % (i * 7919)}",
                   f"registry.example.com/team-{i}/service-{i}:v1.{i}.0"],
         "sizeBytes": 10_000_000 + i * 1_234_567}
        for i in range(8)
    ]  # fmt: skip
    capacity = {"cpu": "32", "memory": "131901876Ki", "pods": "110",
                "ephemeral-storage": "102687672Ki", "hugepages-2Mi": "0"}  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": f"{index:08x}-0000-4000-8000-{index:012x}",
            "resourceVersion": str(1000 + index),
            "creationTimestamp": stamp,
            "labels": {
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
                "node.kubernetes.io/instance-type": "m5.8xlarge",
                "topology.kubernetes.io/region": "region-1",
                "topology.kubernetes.io/zone": zone,
                "type": "kwok",
            },
            "annotations": {
                "kwok.x-k8s.io/node": "fake",
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {
            "podCIDR": f"10.{index // 256 % 256}.{index % 256}.0/24",
            "podCIDRs": [f"10.{index // 256 % 256}.{index % 256}.0/24"],
            "providerID": f"kwok://{name}",
            "taints": [{"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}]
            if index % 50 == 0
            else [],
        },
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": f"10.0.{index // 256 % 256}.{index % 256}"},
                {"type": "Hostname", "address": name},
            ],
            "allocatable": dict(capacity),
            "capacity": capacity,
            "conditions": conditions,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "images": images,
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": "",
                "containerRuntimeVersion": "kwok-v0.7.0",
                "kernelVersion": "",
                "kubeProxyVersion": "",
                "kubeletVersion": "fake",
                "machineID": "",
                "operatingSystem": "linux",
                "osImage": "",
                "systemUUID": "",
            },
            "phase": "Running",
        },
    }


# -- the fake cluster, served from a forked process -----------------------------------


def _serve(conn: multiprocessing.connection.Connection, nodes: int) -> None:
    """The server side: a FakeApi with `nodes` kwok-like nodes and the owner Job."""
    fakes = _fakes()
    clock = fakes.FakeClock()
    api = fakes.FakeApi(
        clock, nodes=(kwok_node(i) for i in range(nodes)), namespace=NS, owner=OWNER
    )
    streams: dict[int, Iterator[Any]] = {}
    while True:
        method, args, kwargs = conn.recv()
        if method == "quit":
            conn.close()
            return
        try:
            if method == "sleep":
                clock.sleep(*args)
                value: Any = None
            elif method == "next":
                value = next(streams[args[0]], StopIteration)
                if value is StopIteration:
                    del streams[args[0]]
            elif method.startswith("watch_"):
                streams[id(kwargs)] = getattr(api, method)(*args, **kwargs)
                value = id(kwargs)
            else:
                value = getattr(api, method)(*args, **kwargs)
            conn.send(("ok", value, clock.now))
        except Exception as exc:  # noqa: BLE001 - handed to the client, which raises it
            conn.send(("raise", exc, clock.now))


class RemoteClock:
    """`retry.Clock` following the server's simulated time."""

    def __init__(self, remote: RemoteApi) -> None:
        self._remote = remote
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self._remote.call("sleep", seconds)


class RemoteApi:
    """`kube.Api` whose every method is a round trip to the fake in the server process."""

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        self._conn = conn
        self.clock = RemoteClock(self)
        self.requests = 0

    @property
    def api_requests(self) -> int:
        return self.requests

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self._conn.send((method, args, kwargs))
        status, value, now = self._conn.recv()
        self.clock.now = now
        if status == "raise":
            raise value
        return value

    def _api(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        return self.call(method, *args, **kwargs)

    def __getattr__(self, method: str) -> Any:
        if method.startswith("watch_"):
            return lambda *a, **kw: self._stream(self._api(method, *a, **kw))
        if method.startswith(("list_", "read_", "create_", "delete_")):
            return lambda *a, **kw: self._api(method, *a, **kw)
        raise AttributeError(method)

    def _stream(self, stream: int) -> Iterator[Any]:
        while True:
            event = self.call("next", stream)
            if event is StopIteration:
                return
            yield event


# -- one measured run -------------------------------------------------------------------


def _measure(nodes: int, parallelism: int, template: pathlib.Path, *, traced: bool) -> Obj:
    """One rollout of `nodes` nodes in this process; returns its figures."""
    from kata_dispatcher import jobs, rollout, settings

    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    server = context.Process(target=_serve, args=(theirs, nodes), daemon=True)
    server.start()
    theirs.close()
    api = RemoteApi(ours)
    api.call("read_job", NS, OWNER)  # the server is up and its nodes are built
    # The run logs as in production (INFO, JSON lines), to nowhere.
    sink = pathlib.Path(os.devnull).open("w", encoding="utf-8")  # noqa: SIM115 - closed below
    from kata_dispatcher import logs

    logs.setup(settings.LogFormat.JSON, "INFO", stream=sink)
    config = settings.Settings(
        template=template,
        owner_job=OWNER,
        namespace=NS,
        release=RELEASE,
        parallelism=parallelism,
        progress_interval=10.0,
        retry_budget=60.0,
    )
    marks: dict[str, Any] = {}

    class Measured(rollout.Rollout):
        def plan(self) -> rollout.Plan:
            plan = super().plan()
            if traced:
                marks["after_plan"], marks["peak_in_plan"] = tracemalloc.get_traced_memory()
                # The snapshot is itself traced: read it, drop it, then restart the peak.
                marks["sites"] = _top_sites(tracemalloc.take_snapshot())
                tracemalloc.reset_peak()
            return plan

    if traced:
        tracemalloc.start(FRAMES)
    start = time.monotonic()
    try:
        body = jobs.load_template(template)
        summary = Measured(api, config, body, clock=api.clock).run()
        wall = time.monotonic() - start
        figures: Obj = {
            "exit_code": int(summary.exit_code),
            "succeeded": summary.succeeded,
            "skipped": len(summary.skipped),
            "api_requests": summary.api_requests,
            "peak_in_flight": summary.peak_in_flight,
            "wall_seconds": round(wall, 1),
        }
        if traced:
            current, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            figures.update(
                traced_peak_mib=round(max(peak, marks["peak_in_plan"]) / 2**20, 1),
                traced_after_plan_mib=round(marks["after_plan"] / 2**20, 1),
                traced_end_mib=round(current / 2**20, 1),
                top_sites_after_plan=marks["sites"],
            )
        else:
            figures["peak_rss_mib"] = round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
            )
        return figures
    finally:
        ours.send(("quit", (), {}))
        server.join(timeout=30)
        sink.close()


def _top_sites(snapshot: tracemalloc.Snapshot) -> list[Obj]:
    """The allocation sites holding the most memory, each named by the innermost frame
    in kata_dispatcher (the line that made or kept it), else the innermost frame."""
    snapshot = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    sites: dict[str, list[int]] = {}
    for stat in snapshot.statistics("traceback"):
        frames = list(reversed(stat.traceback))  # most recent call first
        ours = next((f for f in frames if "kata_dispatcher" in f.filename), frames[0])
        key = f"{pathlib.Path(ours.filename).name}:{ours.lineno}"
        entry = sites.setdefault(key, [0, 0])
        entry[0] += stat.size
        entry[1] += stat.count
    top = sorted(sites.items(), key=lambda kv: kv[1][0], reverse=True)[:TOP_SITES]
    return [{"site": k, "mib": round(v[0] / 2**20, 2), "blocks": v[1]} for k, v in top]


# -- the driver -----------------------------------------------------------------------


def _child(nodes: int, parallelism: int, template: pathlib.Path, *, traced: bool) -> Obj:
    """Run `_measure` in a new interpreter, so ru_maxrss belongs to this size alone."""
    code = (
        "import json, pathlib, sys\n"
        "from tests.bench import bench_dispatcher_memory as b\n"
        f"r = b._measure({nodes}, {parallelism}, pathlib.Path({str(template)!r}), "
        f"traced={traced})\n"
        "sys.stdout.write(json.dumps(r))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO
    )
    result: Obj = json.loads(out.stdout)
    return result


def _table(rows: list[Obj]) -> str:
    cols = [
        ("nodes", "N"), ("parallelism", "P"), ("wall_seconds", "wall s"),
        ("api_requests", "requests"), ("peak_rss_mib", "RSS MiB"),
        ("traced_peak_mib", "traced pk"), ("traced_after_plan_mib", "after plan"),
        ("kib_per_node", "KiB/node"), ("succeeded", "ok"),
    ]  # fmt: skip
    return bench.table(rows, cols, width=10)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[bench] %(message)s", stream=sys.stderr)
    raw = os.environ.get("KATA_DEPLOY_BENCH_MEMORY_SIZES", "1000,5000,10000")
    sizes = [int(s) for s in raw.split(",")]
    parallelism = int(os.environ.get("KATA_DEPLOY_BENCH_MEMORY_PARALLELISM", "100"))
    rows: list[Obj] = []
    sizes_of: Obj = {"node_bytes": len(json.dumps(kwok_node(0)))}
    with tempfile.TemporaryDirectory(prefix="kata-bench-memory-") as tmp:
        template = pathlib.Path(tmp) / "install-job.yaml"
        render_template(template)
        sizes_of["template_bytes"] = len(json.dumps(yaml.safe_load(template.read_text())))
        for nodes in sizes:
            sys.stderr.write(f"bench_dispatcher_memory: {nodes} nodes...\n")
            plain = _child(nodes, parallelism, template, traced=False)
            traced = _child(nodes, parallelism, template, traced=True)
            row: Obj = {"nodes": nodes, "parallelism": parallelism, **plain}
            row.update({k: v for k, v in traced.items() if k.startswith(("traced", "top"))})
            row["kib_per_node"] = round(row["traced_after_plan_mib"] * 1024 / nodes, 2)
            rows.append(row)
            sys.stdout.write(_table(rows[-1:]) + "\n")
    sys.stdout.write("\ndispatcher memory vs fleet size (fake API server out of process)\n")
    sys.stdout.write(_table(rows) + "\n")
    for row in rows:
        sys.stdout.write(f"\nN={row['nodes']}: held after planning, by site\n")
        for site in row["top_sites_after_plan"]:
            sys.stdout.write(
                f"  {site['mib']:>8.2f} MiB {site['blocks']:>8} blocks  {site['site']}\n"
            )
    out = pathlib.Path(os.environ.get("KATA_DEPLOY_BENCH_MEMORY_OUT") or RESULTS)
    bench.write_json(
        out,
        {
            "machine": bench.machine(),
            "fake_server": "forked process, answers over a pipe (not counted)",
            **sizes_of,
            "results": rows,
        },
    )
    sys.stdout.write(f"results written to {out}\n")


if __name__ == "__main__":
    main()
