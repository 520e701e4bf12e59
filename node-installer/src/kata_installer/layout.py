"""Where an install puts things, and which handlers it registers: pure functions.

Shared by the artifacts stage (which writes the files) and the cri stage (which points
the runtime at them), so both agree on every path. Nothing here touches the host.

Install prefix /opt/kata[-suffix]:
  <payload files the enabled shims need, at their release paths>
  share/defaults/kata-containers/runtimes/<shim>/<configuration>.toml + config.d/
  share/defaults/kata-containers/custom-runtimes/<name>/<configuration>.toml + config.d/
  .kata-deploy-state.json   the one state file that must survive a reboot
"""

from __future__ import annotations

import dataclasses
import logging

from kata_installer import config, shims

log = logging.getLogger(__name__)

STATE_FILE = ".kata-deploy-state.json"
RUNTIMES_DIR = "share/defaults/kata-containers/runtimes"
CUSTOM_DIR = "share/defaults/kata-containers/custom-runtimes"


@dataclasses.dataclass(frozen=True)
class Handler:
    """One CRI runtime handler (= RuntimeClass handler) this install registers."""

    name: str  # kata-qemu[-suffix]
    shim: shims.Shim
    config_dir: str  # relative to the prefix
    snapshotter: str = ""
    guest_pull: bool = False

    def config_path(self, prefix: str) -> str:
        return f"{prefix}/{self.config_dir}/{self.shim.config_file}"

    def binary_path(self, prefix: str) -> str:
        return f"{prefix}/{self.shim.binary}"


def active_shims(cfg: config.InstallerConfig, arch: str) -> list[config.ShimConfig]:
    """Enabled shims that support this node's architecture (empty arches = any)."""
    return [s for n, s in sorted(cfg.shims.items()) if not s.arches or arch in s.arches]


def skipped_shims(cfg: config.InstallerConfig, arch: str) -> list[str]:
    return sorted(n for n, s in cfg.shims.items() if s.arches and arch not in s.arches)


def handlers(cfg: config.InstallerConfig, arch: str) -> list[Handler]:
    """Every handler, in a stable order: shims, the default `kata` handler, custom runtimes."""
    out: list[Handler] = []
    for s in active_shims(cfg, arch):
        out.append(
            Handler(
                name=cfg.handler(s.name),
                shim=shims.CATALOGUE[s.name],
                config_dir=f"{RUNTIMES_DIR}/{s.name}",
                snapshotter=s.snapshotter,
                guest_pull=s.crio_guest_pull,
            )
        )
    default = cfg.default_shim.get(arch, "")
    if default and any(s.name == default for s in active_shims(cfg, arch)):
        base = next(h for h in out if h.shim.name == default)
        out.append(dataclasses.replace(base, name=cfg.install_name))
    for name, c in sorted(cfg.custom_runtimes.items()):
        out.append(
            Handler(
                name=cfg.handler(name),
                shim=shims.CATALOGUE[c.base_config],
                config_dir=f"{CUSTOM_DIR}/{name}",
                snapshotter=c.snapshotter,
                guest_pull=c.crio_pull_type == "guest-pull",
            )
        )
    return out


def state_path(cfg: config.InstallerConfig) -> str:
    return f"{cfg.prefix}/{STATE_FILE}"
