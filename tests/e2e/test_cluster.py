"""The local cluster itself: kwok nodes, kwok Job pods, and the pod runner.

Cases:
- every node is Ready, the mix has control-plane, tainted and arm64 kwok nodes, and the
  runner-backed nodes hold a Lease renewed by the runner;
- a plain Job scheduled on a kwok node completes;
- a pod on a runner-backed node runs for real: init container first, env from fieldRef
  and configMapKeyRef, a ConfigMap volume and a hostPath rewritten to the node's
  directory, and a ServiceAccount token that RBAC checks (listing pods is forbidden);
- a hostPath mounted elsewhere than /host + path is refused with a clear pod failure;
- deleting a running pod sends SIGTERM and the pod disappears.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.cluster import kubeapi, nodes
from tests.cluster.cluster import Cluster
from tests.e2e.helpers import kubectl, wait_for

PROBE = """
import os, sys
from kubernetes import client, config
print("config:", open(sys.argv[1]).read().strip())
print("host:", open(sys.argv[2]).read().splitlines()[0])
print("env:", os.environ["NS"], os.environ["NODE"], os.environ["GREETING"])
config.load_kube_config()
try:
    client.CoreV1Api().list_namespaced_pod(os.environ["NS"])
except client.exceptions.ApiException as exc:
    print("list pods:", exc.status)
    sys.exit(0 if exc.status == 403 else 5)
sys.exit(6)
"""


def _pod(name: str, node: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "restartPolicy": "Never", "containers": containers, **spec},
    }


def _phase(cluster: Cluster, name: str) -> str:
    pod = kubeapi.get_json(cluster.core().read_namespaced_pod, name, "default")
    return str(pod.get("status", {}).get("phase", ""))


def test_nodes_are_ready_with_the_configured_mix(fleet: Cluster) -> None:
    items = kubeapi.get_json(fleet.core().list_node)["items"]
    names = {n["metadata"]["name"] for n in items}
    assert set(fleet.kwok_node_names()) | set(fleet.runner_node_names()) <= names
    for node in items:
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", node["metadata"]["name"]
    labels = {n["metadata"]["name"]: n["metadata"]["labels"] for n in items}
    assert any(nodes.CONTROL_PLANE_LABEL in lab for lab in labels.values())
    assert any(lab["kubernetes.io/arch"] == "arm64" for lab in labels.values())
    taints = [t["key"] for n in items for t in n["spec"].get("taints") or []]
    assert nodes.TAINT_KEY in taints

    leases = fleet.api("CoordinationV1Api")
    for name in fleet.runner_node_names():
        lease = kubeapi.get_json(leases.read_namespaced_lease, name, "kube-node-lease")
        assert lease["spec"]["holderIdentity"] == name


def test_plain_job_on_kwok_nodes_completes(fleet: Cluster) -> None:
    name = f"smoke-{uuid.uuid4().hex[:6]}"
    kubectl(fleet, "create", "job", name, "--image=example.invalid/none", "--", "true")
    wait_for(
        f"Job {name} to complete",
        lambda: "Complete" in kubectl(fleet, "get", "job", name, "-o",
                                      "jsonpath={.status.conditions[*].type}").stdout,
        timeout=60,
    )  # fmt: skip
    kubectl(fleet, "delete", "job", name, "--cascade=foreground")


def test_runner_runs_a_pod_with_env_volumes_and_an_rbac_checked_token(fleet: Cluster) -> None:
    node = fleet.runner_node_names()[0]
    core = fleet.core()
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "probe"}, "data": {"greeting": "hello", "cfg": "x=1"}}
    )
    container = {
        "name": "probe",
        "image": "unused",
        "command": ["python3", "-c", PROBE, "/etc/probe/cfg", "/host/etc/containerd/config.toml"],
        "env": [
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {
                "name": "GREETING",
                "valueFrom": {"configMapKeyRef": {"name": "probe", "key": "greeting"}},
            },
        ],
        "volumeMounts": [
            {"name": "probe", "mountPath": "/etc/probe"},
            {"name": "etc", "mountPath": "/host/etc"},
        ],
    }
    init = {"name": "first", "image": "unused", "command": ["python3", "-c", "print('init ran')"]}
    pod = _pod(
        "probe",
        node,
        [container],
        initContainers=[init],
        volumes=[
            {"name": "probe", "configMap": {"name": "probe"}},
            {"name": "etc", "hostPath": {"path": "/etc"}},
        ],
    )
    core.create_namespaced_pod("default", pod)
    try:
        wait_for("pod probe to finish", lambda: _phase(fleet, "probe") in {"Succeeded", "Failed"})
        log = (fleet.pod_logs / "default_probe_probe.log").read_text()
        assert _phase(fleet, "probe") == "Succeeded", log
        assert "config: x=1" in log
        assert f"env: default {node} hello" in log
        assert "list pods: 403" in log
        assert "init ran" in (fleet.pod_logs / "default_probe_first.log").read_text()
        status = kubeapi.get_json(core.read_namespaced_pod, "probe", "default")["status"]
        assert status["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
        assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    finally:
        core.delete_namespaced_pod("probe", "default")
        core.delete_namespaced_config_map("probe", "default")


def test_runner_refuses_a_hostpath_outside_slash_host(fleet: Cluster) -> None:
    node = fleet.runner_node_names()[0]
    container = {
        "name": "c",
        "image": "unused",
        "command": ["python3", "-c", "pass"],
        "volumeMounts": [{"name": "etc", "mountPath": "/host-etc"}],
    }
    core = fleet.core()
    core.create_namespaced_pod(
        "default",
        _pod(
            "badmount", node, [container], volumes=[{"name": "etc", "hostPath": {"path": "/etc"}}]
        ),
    )
    try:
        wait_for("pod badmount to fail", lambda: _phase(fleet, "badmount") == "Failed")
        status = kubeapi.get_json(core.read_namespaced_pod, "badmount", "default")["status"]
        assert "/host/etc" in status["message"]
        assert status["reason"] == "RunnerRefused"
    finally:
        core.delete_namespaced_pod("badmount", "default")


def test_deleting_a_running_pod_sends_sigterm(fleet: Cluster) -> None:
    node = fleet.runner_node_names()[1]
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (print('SIGTERM', flush=True), sys.exit(0)))\n"
        "print('up', flush=True)\n"
        "time.sleep(120)\n"
    )
    container = {"name": "c", "image": "unused", "command": ["python3", "-c", script]}
    core = fleet.core()
    core.create_namespaced_pod("default", _pod("sleeper", node, [container]))
    log = fleet.pod_logs / "default_sleeper_c.log"
    wait_for("sleeper to start", lambda: log.exists() and "up" in log.read_text().splitlines())
    core.delete_namespaced_pod("sleeper", "default")

    def gone() -> bool:
        names = [
            p["metadata"]["name"]
            for p in kubeapi.get_json(core.list_namespaced_pod, "default")["items"]
        ]
        return "sleeper" not in names

    wait_for("sleeper to be deleted", gone, timeout=30)
    assert "SIGTERM" in log.read_text()
