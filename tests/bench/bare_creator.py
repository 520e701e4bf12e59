"""The bare creator: the least a job-mode rollout can do, to measure ours against.

Not our dispatcher and nothing of it: a plain loop that keeps P Jobs in flight, each a
copy of the same per-node template pinned to one node, and learns when they finish from
one watch on their label. No owner lookup, no node listing, no adoption, no retries, no
summary: what is left is the API server's and the Job controller's own pace, which is
the floor any dispatcher stands on. bench_rollout.py runs it on the same cluster right
after our dispatcher, and prints both.

Usage: python -m tests.bench.bare_creator KUBECONFIG NAMESPACE TEMPLATE PARALLELISM NODES_FILE
Prints one JSON line: {"seconds", "created", "peak_in_flight", "api_requests"}.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

LABEL = "kata-deploy.bench/bare"


def _finished(job: dict[str, Any]) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def _events(batch: Any, namespace: str, rv: str) -> Iterator[dict[str, Any]]:
    resp = batch.list_namespaced_job(
        namespace,
        label_selector=f"{LABEL}=yes",
        watch=True,
        resource_version=rv,
        timeout_seconds=3600,
        allow_watch_bookmarks=False,
        _preload_content=False,
    )
    buffer = b""
    for chunk in resp.stream(65536):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                event: dict[str, Any] = json.loads(line)
                yield event


def main() -> None:
    kubeconfig, namespace, template_path, parallelism, nodes_file = sys.argv[1:6]
    config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    # raw JSON in and out (_preload_content=False): no model (de)serialisation, as ours
    batch: Any = client.BatchV1Api()
    template: dict[str, Any] = yaml.safe_load(Path(template_path).read_text())
    nodes = Path(nodes_file).read_text().split()
    cap = int(parallelism)
    requests = 0

    def body(i: int, node: str) -> dict[str, Any]:
        job: dict[str, Any] = copy.deepcopy(template)
        job["metadata"] = {"name": f"bare-{i}", "namespace": namespace, "labels": {LABEL: "yes"}}
        pod = job["spec"]["template"]
        pod.setdefault("metadata", {}).setdefault("labels", {})[LABEL] = "yes"
        pod["spec"]["nodeName"] = node
        return job

    start = time.monotonic()
    listed = json.loads(
        batch.list_namespaced_job(
            namespace, label_selector=f"{LABEL}=yes", limit=1, _preload_content=False
        ).data
    )
    requests += 1
    rv = listed["metadata"]["resourceVersion"]
    queue = list(enumerate(nodes))
    in_flight: set[str] = set()
    peak = done = 0

    def fill() -> None:
        nonlocal requests, peak
        while queue and len(in_flight) < cap:
            i, node = queue.pop(0)
            batch.create_namespaced_job(namespace, body(i, node), _preload_content=False)
            requests += 1
            in_flight.add(f"bare-{i}")
            peak = max(peak, len(in_flight))

    fill()
    while done < len(nodes):
        requests += 1
        for event in _events(batch, namespace, rv):
            job = event["object"]
            rv = job["metadata"].get("resourceVersion", rv)
            name = job["metadata"]["name"]
            if name in in_flight and _finished(job):
                in_flight.discard(name)
                done += 1
                fill()
            if done == len(nodes):
                break
    seconds = time.monotonic() - start
    sys.stdout.write(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "created": len(nodes),
                "peak_in_flight": peak,
                "api_requests": requests,
            }
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
