"""kwok's configuration: which nodes it fakes and how their pods behave (Stage objects).

Since v0.8 standalone kwok ships no Stages; these are ours:

- ``node-initialize`` makes a new node Ready; ``node-heartbeat`` refreshes its status
  now and then (kwok itself renews the node's Lease in kube-node-lease).
- ``pod-ready`` takes every Pending pod to Running (DaemonSet pods stay there).
- ``pod-complete`` finishes pods owned by a Job with exit code 0 after ``job_seconds``;
  ``pod-fail`` finishes them with exit code 1 instead when the pod is pinned to one of
  ``failing_nodes``.
- ``pod-delete`` removes pods being deleted.

Every pod Stage excludes pods labelled ``app.kubernetes.io/component=dispatcher``: the
local runner executes those for real, wherever they are scheduled. kwok manages only the
nodes NOT labelled ``kata-deploy.test/runner=true``; the runner is the kubelet of those.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

RUNNER_LABEL = "kata-deploy.test/runner"
# Real nodes (tests/cluster/realnode.py) have their own kubelet: kwok leaves them alone.
REAL_LABEL = "kata-deploy.test/real"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_NODES_SELECTOR = f"!{RUNNER_LABEL},!{REAL_LABEL}"

_NOT_DELETED: dict[str, Any] = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
_NOT_DISPATCHER: dict[str, Any] = {
    "key": f'.metadata.labels["{COMPONENT_LABEL}"]',
    "operator": "NotIn",
    "values": ["dispatcher"],
}
_RUNNING_JOB_POD: list[dict[str, Any]] = [
    _NOT_DELETED,
    _NOT_DISPATCHER,
    {"key": ".status.phase", "operator": "In", "values": ["Running"]},
    {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]},
]

_NODE_CONDITIONS = """\
{{ $now := Now }}
{{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $lastTransitionTime | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type | Quote }}
{{ end }}
"""

_NODE_INITIALIZE = (
    _NODE_CONDITIONS
    + """\
addresses:
- address: 127.0.0.1
  type: InternalIP
- address: {{ .metadata.name | Quote }}
  type: Hostname
allocatable:
  cpu: "64"
  memory: 256Gi
  pods: "110"
capacity:
  cpu: "64"
  memory: 256Gi
  pods: "110"
nodeInfo:
  architecture: {{ or (index .metadata.labels "kubernetes.io/arch") "amd64" | Quote }}
  bootID: ""
  containerRuntimeVersion: "containerd://2.1.0"
  kernelVersion: "6.1.0-kwok"
  kubeProxyVersion: ""
  kubeletVersion: "v1.36.3-kwok"
  machineID: ""
  operatingSystem: linux
  osImage: "kwok"
  systemUUID: ""
phase: Running
"""
)

_POD_READY = """\
{{ $now := Now }}
conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Initialized
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Ready
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: ContainersReady
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: true
  restartCount: 0
  started: true
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
initContainerStatuses:
{{ range .spec.initContainers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: true
  restartCount: 0
  state:
    terminated:
      exitCode: 0
      finishedAt: {{ $now | Quote }}
      reason: Completed
      startedAt: {{ $now | Quote }}
{{ end }}
hostIP: 127.0.0.1
phase: Running
startTime: {{ $now | Quote }}
"""


def _pod_finished(exit_code: int) -> str:
    phase = "Succeeded" if exit_code == 0 else "Failed"
    reason = "Completed" if exit_code == 0 else "Error"
    message = "" if exit_code == 0 else 'message: "simulated failure on a kwok failing node"\n'
    return (
        """\
{{ $now := Now }}
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
"""
        + f"      exitCode: {exit_code}\n      reason: {reason}\n"
        + ('      message: "simulated failure on a kwok failing node"\n' if exit_code else "")
        + """\
      finishedAt: {{ $now | Quote }}
      startedAt: {{ $now | Quote }}
{{ end }}
"""
        + f"phase: {phase}\n"
        + message
    )


def _stage(name: str, kind: str, selector: list[dict[str, Any]], nxt: dict[str, Any], *,
           delay_ms: int = 0, jitter_ms: int = 0) -> dict[str, Any]:  # fmt: skip
    spec: dict[str, Any] = {
        "resourceRef": {"apiGroup": "v1", "kind": kind},
        "selector": {"matchExpressions": selector},
        "next": nxt,
    }
    if delay_ms:
        spec["delay"] = {"durationMilliseconds": delay_ms, "jitterDurationMilliseconds": jitter_ms}
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": spec,
    }


def stages(*, job_seconds: float, failing_nodes: Sequence[str]) -> list[dict[str, Any]]:
    """The Stage objects of our kwok, as dicts."""
    ready_not_true: dict[str, Any] = {
        "key": '.status.conditions.[] | select( .type == "Ready" ) | .status',
        "operator": "NotIn",
        "values": ["True"],
    }
    delay = max(1, int(job_seconds * 1000))
    complete_selector = list(_RUNNING_JOB_POD)
    if failing_nodes:
        complete_selector.append(
            {"key": ".spec.nodeName", "operator": "NotIn", "values": list(failing_nodes)}
        )
    result = [
        _stage("node-initialize", "Node", [ready_not_true], {"statusTemplate": _NODE_INITIALIZE}),
        _stage(
            "node-heartbeat",
            "Node",
            [
                {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                {
                    "key": '.status.conditions.[] | select( .type == "Ready" ) | .status',
                    "operator": "In",
                    "values": ["True"],
                },
            ],
            {"statusTemplate": _NODE_CONDITIONS},
            delay_ms=300_000,
            jitter_ms=320_000,
        ),
        _stage(
            "pod-ready",
            "Pod",
            [
                _NOT_DELETED,
                _NOT_DISPATCHER,
                {"key": ".status.phase", "operator": "In", "values": ["Pending"]},
            ],
            {"statusTemplate": _POD_READY},
        ),
        _stage(
            "pod-complete",
            "Pod",
            complete_selector,
            {"statusTemplate": _pod_finished(0)},
            delay_ms=delay,
            jitter_ms=delay + delay // 5,
        ),
        _stage(
            "pod-delete",
            "Pod",
            [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}, _NOT_DISPATCHER],
            {"delete": True},
        ),
    ]
    if failing_nodes:
        result.append(
            _stage(
                "pod-fail",
                "Pod",
                [
                    *_RUNNING_JOB_POD,
                    {"key": ".spec.nodeName", "operator": "In", "values": list(failing_nodes)},
                ],
                {"statusTemplate": _pod_finished(1)},
                delay_ms=delay,
                jitter_ms=delay + delay // 5,
            )
        )
    return result


def render(*, job_seconds: float, failing_nodes: Sequence[str]) -> str:
    """kwok's ``--config`` file: its options followed by our Stages."""
    options = {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokConfiguration",
        # kwok applies its defaults only to the flags' configuration: set them all here.
        "options": {
            "cidr": "10.128.0.0/12",
            "nodeLeaseDurationSeconds": 40,
            "nodeLeaseParallelism": 16,
            "podPlayStageParallelism": 16,
            "nodePlayStageParallelism": 8,
            "podsOnNodeSyncParallelism": 4,
            "enablePodsOnNodeSyncListPager": True,
            "enablePodsOnNodeSyncStreamWatch": False,
            "enableDebuggingHandlers": False,
            "enableProfilingHandler": False,
            "enableContentionProfiling": False,
        },
    }
    docs = [options, *stages(job_seconds=job_seconds, failing_nodes=failing_nodes)]
    return yaml.safe_dump_all(docs, sort_keys=False)
