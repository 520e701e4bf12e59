"""The simulated fleet: node objects for kwok, and runner-backed nodes with a host root.

kwok nodes are named ``kwok-NNNN`` and get a mix the chart must cope with: the first
ones are control-plane nodes (label plus ``NoSchedule`` taint), the next ones carry a
``dedicated=special:NoSchedule`` taint, and every fourth is arm64. Runner-backed nodes
are named ``runner-NN``, labelled ``kata-deploy.test/runner=true`` and get a directory
seeded as a containerd 2.x host (a copy of a node-installer fixture host), plus an
untouched copy of it to compare with after an uninstall.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster import kwokconfig

LOG = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
FIXTURE_HOSTS = REPO / "node-installer" / "tests" / "fixtures" / "hosts"
# Preferred fixture hosts for runner-backed nodes (containerd 2.x), first found wins.
FIXTURE_CANDIDATES = ("containerd2-confd", "containerd2-fresh")
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
TAINT_KEY = "dedicated"


@dataclass(frozen=True)
class NodeSpec:
    """One node to create: its name, labels and taints."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()
    runner: bool = False

    def manifest(self) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        if self.taints:
            spec["taints"] = [dict(t) for t in self.taints]
        annotations = {"node.alpha.kubernetes.io/ttl": "0"}
        if not self.runner:
            annotations["kwok.x-k8s.io/node"] = "fake"
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": self.labels, "annotations": annotations},
            "spec": spec,
        }


def _base_labels(name: str, arch: str) -> dict[str, str]:
    return {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": arch,
    }


def kwok_node(index: int, *, control_plane: int, tainted: int) -> NodeSpec:
    """The ``index``-th kwok node of a fleet with the given mix."""
    name = f"kwok-{index:04d}"
    arch = "arm64" if index % 4 == 3 else "amd64"
    labels = _base_labels(name, arch) | {"type": "kwok"}
    taints: tuple[dict[str, str], ...] = ()
    if index < control_plane:
        labels[CONTROL_PLANE_LABEL] = ""
        taints = ({"key": CONTROL_PLANE_LABEL, "effect": "NoSchedule"},)
    elif index < control_plane + tainted:
        taints = ({"key": TAINT_KEY, "value": "special", "effect": "NoSchedule"},)
    return NodeSpec(name=name, labels=labels, taints=taints)


def runner_node(index: int) -> NodeSpec:
    name = f"runner-{index:02d}"
    labels = _base_labels(name, "amd64") | {kwokconfig.RUNNER_LABEL: "true"}
    return NodeSpec(name=name, labels=labels, runner=True)


def default_mix(nodes: int) -> tuple[int, int]:
    """(control-plane count, tainted count) for a fleet of ``nodes`` kwok nodes."""
    control_plane = 0 if nodes < 3 else 1 + nodes // 100
    tainted = 0 if nodes < 5 else 1 + nodes // 100
    return control_plane, tainted


def fixture_host(name: str | None = None) -> Path | None:
    """The node-installer fixture host runner nodes are seeded from, if it exists."""
    if name:
        path = FIXTURE_HOSTS / name
        if not path.is_dir():
            raise FileNotFoundError(f"no fixture host {path}")
        return path
    for candidate in FIXTURE_CANDIDATES:
        if (FIXTURE_HOSTS / candidate).is_dir():
            return FIXTURE_HOSTS / candidate
    return None


_MINIMAL_CONFIG = 'version = 3\n\n[plugins."io.containerd.cri.v1.runtime".containerd]\n'


def seed_host(root: Path, original: Path, *, fixture: Path | None) -> None:
    """Create a node's host root (and its pristine copy) unless it exists."""
    if root.exists():
        return
    if fixture is not None:
        tree = fixture / "host" if (fixture / "host").is_dir() else fixture
        shutil.copytree(tree, root, symlinks=True)
    else:
        LOG.warning(
            "no containerd 2.x fixture under %s yet; seeding %s with a minimal "
            "/etc/containerd/config.toml",
            FIXTURE_HOSTS,
            root,
        )
        (root / "etc" / "containerd").mkdir(parents=True)
        (root / "etc" / "containerd" / "config.toml").write_text(_MINIMAL_CONFIG)
    for sub in ("opt", "run", "var/lib", "dev"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    # What a Kata-capable node has and a fixture tree does not: the KVM device node.
    (root / "dev" / "kvm").touch()
    if original.exists():
        shutil.rmtree(original)
    shutil.copytree(root, original, symlinks=True)


def tree_digest(root: Path, *, ignore: tuple[str, ...] = ("run",)) -> dict[str, str]:
    """Map every path under ``root`` (except ``ignore`` subtrees) to its kind and bytes.

    Two hosts are "byte-equal" when their digests are equal; used after an uninstall.
    """
    result: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts and rel.parts[0] in ignore:
            continue
        if path.is_symlink():
            result[str(rel)] = "link:" + str(path.readlink())
        elif path.is_dir():
            result[str(rel)] = "dir"
        else:
            result[str(rel)] = "file:" + path.read_bytes().hex()
    return result
