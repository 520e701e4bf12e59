"""An in-memory fake of the kube.Kube interface: nodes with labels, DaemonSets."""

from __future__ import annotations

from kata_installer import errors, kube


class FakeKube:
    def __init__(self, nodes: list[str] | None = None) -> None:
        self.labels: dict[str, dict[str, str]] = {n: {} for n in (nodes or ["node-1"])}
        self.daemonsets: dict[tuple[str, str], kube.DaemonSetState] = {}
        # What the kubelet reports: Ready, and status.runtimeHandlers (empty: unreported).
        self.ready: dict[str, bool] = {}
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
            uid=f"uid-{name}",
            labels=dict(self.labels[name]),
            ready=self.ready.get(name, True),
            runtime_handlers=tuple(self.handlers.get(name, [])),
        )

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
