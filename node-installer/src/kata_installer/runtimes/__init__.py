"""What a node's container runtime is, and what the cri stage writes to it: the data.

`Runtime` describes the runtime `detect.py` found (read-only detection from the host's
files); each runtime module (containerd.py, crio.py) turns a Runtime plus the install's
handlers into `Target`s: one per file the cri stage must own or edit, each with a pure
render (current bytes -> desired bytes) and unrender (current bytes -> bytes without
our part). The cri stage does the I/O. Kinds and configuration modes are StrEnums.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable

Render = Callable[[bytes | None], bytes | None]
Unrender = Callable[[bytes], bytes | None]


class Kind(enum.StrEnum):
    """Which container runtime."""

    CONTAINERD = "containerd"
    CRIO = "crio"


class ConfigMode(enum.StrEnum):
    """How handlers reach the runtime's configuration."""

    IMPORTS = "imports"  # containerd 2.x: a drop-in plus an `imports` entry
    DIRECT = "direct"  # containerd 1.x: our tables in the main file
    DROP_IN = "drop-in"  # a directory the runtime reads by itself (CRI-O, k0s, glob import)
    TEMPLATE = "template"  # k3s/rke2/microk8s: a marked block in their config template


@dataclasses.dataclass(frozen=True)
class Target:
    """One file the cri stage writes: ours entirely (`owned`) or an edit of the host's."""

    path: str  # host path
    owned: bool
    render: Render
    unrender: Unrender
    what: str


@dataclasses.dataclass(frozen=True)
class Runtime:
    kind: Kind
    distribution: str  # k8s | k3s | rke2 | k0s | microk8s
    unit: str  # systemd unit to restart
    mode: ConfigMode
    config_path: str  # main configuration file (k3s/rke2: the rendered one)
    config_version: int = 0  # containerd config schema: 1, 2 or 3 (0: CRI-O)
    version: tuple[int, int] | None = None
    version_source: str = ""
    drop_in_dir: str = ""
    template_path: str = ""
    imports: tuple[str, ...] = ()
    blank_config: bool = False

    @property
    def supports_drop_in(self) -> bool:
        return self.mode in (ConfigMode.IMPORTS, ConfigMode.DROP_IN, ConfigMode.TEMPLATE)

    def describe(self) -> str:
        ver = ".".join(map(str, self.version)) if self.version else "unknown version"
        name = "CRI-O" if self.kind is Kind.CRIO else f"containerd {ver}"
        if self.version_source:
            name += f" (from {self.version_source})"
        where = self.template_path or self.config_path or self.drop_in_dir
        dist = "" if self.distribution == "k8s" else f" under {self.distribution}"
        return f"{name}{dist}, config {where}, mode {self.mode}"
