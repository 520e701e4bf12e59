"""An in-memory fake of the kube.Kube interface (nodes with labels, DaemonSets), and a
simulated clock for the retry policy."""

from __future__ import annotations

import json
from typing import Any

from kata_installer import errors, kube


class FakeClock:
    """Simulated monotonic time: sleep() advances it instantly."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeKube:
    retries = 0  # the real one counts its retried API calls

    def __init__(self, nodes: list[str] | None = None) -> None:
        self.labels: dict[str, dict[str, str]] = {n: {} for n in (nodes or ["node-1"])}
        self.daemonsets: dict[tuple[str, str], kube.DaemonSetState] = {}
        # What the kubelet reports: Ready, and status.runtimeHandlers (empty: unreported).
        self.ready: dict[str, bool] = {}
        self.annotations: dict[str, dict[str, str]] = {}
        self.uids: dict[str, str] = {}
        self.events: list[tuple[str, str, str, str, bool]] = []
        self.handlers: dict[str, list[str]] = {}
        self.calls: list[tuple[str, ...]] = []

    def get_node_labels(self, name: str) -> dict[str, str]:
        self.calls.append(("get_node", name))
        if name not in self.labels:
            raise errors.NotFound(f"get node {name}: not found")
        return dict(self.labels[name])

    def get_node(self, name: str) -> kube.NodeView:
        self.calls.append(("get_node", name))
        if name not in self.labels:
            raise errors.NotFound(f"get node {name}: not found")
        return kube.NodeView(
            name=name,
            uid=self.uids.get(name, f"uid-{name}"),
            labels=dict(self.labels[name]),
            ready=self.ready.get(name, True),
            runtime_handlers=tuple(self.handlers.get(name, [])),
            annotations=dict(self.annotations[name]) if name in self.annotations else None,
        )

    def patch_node(self, node: kube.NodeView, ops: list[dict[str, Any]]) -> None:
        """JSON patch on the fake: label/annotation add and remove, uid-guarded."""
        self.calls.append(("patch_node", node.name, json.dumps(ops, sort_keys=True)))
        if node.name not in self.labels or self.uids.get(node.name, f"uid-{node.name}") != node.uid:
            raise errors.Conflict(f"node {node.name} is not the node this installer started on")
        for op in ops:
            path = op["path"].split("/")[1:]
            field = {"labels": self.labels, "annotations": self.annotations}[path[1]]
            if len(path) == 2:  # the whole map: JSON patch `add` replaces what is there
                field[node.name] = dict(op["value"])
                continue
            target = field.setdefault(node.name, {})
            key = path[2].replace("~1", "/").replace("~0", "~")
            if op["op"] == "remove":
                if key not in target:
                    raise errors.Unprocessable(f"remove {key}: not there")
                del target[key]
            else:
                target[key] = op["value"]

    def post_event(
        self, namespace: str, node: kube.NodeView, *, reason: str, message: str, warning: bool
    ) -> None:
        self.events.append((namespace, node.name, reason, message, warning))

    def set_node_label(self, name: str, key: str, value: str | None) -> None:
        self.calls.append(("patch_node", name, key, str(value)))
        if name not in self.labels:
            raise errors.NotFound(f"patch node {name}: not found")
        if value is None:
            self.labels[name].pop(key, None)
        else:
            self.labels[name][key] = value

    def get_daemonset(self, namespace: str, name: str) -> kube.DaemonSetState | None:
        self.calls.append(("get_daemonset", namespace, name))
        return self.daemonsets.get((namespace, name))
