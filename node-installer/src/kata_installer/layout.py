"""Where an install puts things, and which handlers it registers: pure functions.

Shared by the artifacts stage (which writes the files) and the cri stage (which points
the runtime at them), so both agree on every path. Nothing here touches the host.
`handlers()` is the one place that reads the shims and custom runtimes of the config:
each Handler carries every per-handler setting the stages and runtime modules need, so
nothing downstream looks a handler's shim or custom runtime up again
(config -> handlers -> targets -> files).

Install prefix /opt/kata[-suffix]:
  <payload files the enabled shims need, at their release paths>
  share/defaults/kata-containers/runtimes/<shim>/<configuration>.toml + config.d/
  share/defaults/kata-containers/custom-runtimes/<name>/<configuration>.toml + config.d/
  .kata-deploy-state.json   the one state file that must survive a reboot
"""

from __future__ import annotations

import dataclasses
import enum
import logging

from kata_installer import config, shims

log = logging.getLogger(__name__)

STATE_FILE = ".kata-deploy-state.json"
RUNTIMES_DIR = "share/defaults/kata-containers/runtimes"
CUSTOM_DIR = "share/defaults/kata-containers/custom-runtimes"


class Origin(enum.StrEnum):
    """What a handler was made from."""

    SHIM = "shim"  # an enabled shim: kata-<shim>[-suffix]
    DEFAULT = "default shim"  # defaultShim: kata[-suffix], sharing its shim's configuration
    CUSTOM = "custom runtime"  # customRuntimes.runtimes.<name>: kata-<name>[-suffix]


@dataclasses.dataclass(frozen=True)
class Handler:
    """One CRI runtime handler (= RuntimeClass handler) this install registers."""

    name: str  # kata-qemu[-suffix]
    shim: shims.Shim  # the catalogue shim it runs (a custom runtime's baseConfig)
    config_dir: str  # relative to the prefix
    origin: Origin = Origin.SHIM
    source: str = ""  # name of the shim or custom runtime it was made from
    drop_in: str = ""  # the user's dropIn -> config.d/50-user-overrides.toml
    allowed_hypervisor_annotations: tuple[str, ...] = ()
    agent_https_proxy: str = ""  # TEE shims
    agent_no_proxy: str = ""  # TEE shims
    snapshotter: str = ""  # containerd snapshotter; "" = the runtime's default
    guest_pull: bool = False  # CRI-O pulls the image in the guest

    def describe(self) -> str:
        """`shim qemu`, `custom runtime my-gpu-runtime`: for messages."""
        return f"{self.origin} {self.source}"

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
    """Every handler, in a stable order: shims, the default `kata` handler, custom runtimes.

    Custom runtimes take their dropIn, snapshotter and pull type from their own entry;
    the allowed annotations and agent proxy of their base shim do not apply to them.
    """
    out: list[Handler] = []
    for s in active_shims(cfg, arch):
        out.append(
            Handler(
                name=cfg.handler(s.name),
                shim=shims.CATALOGUE[s.name],
                config_dir=f"{RUNTIMES_DIR}/{s.name}",
                origin=Origin.SHIM,
                source=s.name,
                drop_in=s.drop_in,
                allowed_hypervisor_annotations=s.allowed_hypervisor_annotations,
                agent_https_proxy=s.agent_https_proxy,
                agent_no_proxy=s.agent_no_proxy,
                snapshotter=s.snapshotter,
                guest_pull=s.crio_guest_pull,
            )
        )
    default = cfg.default_shim.get(arch, "")
    base = next((h for h in out if h.source == default), None)
    if base is not None:
        out.append(dataclasses.replace(base, name=cfg.install_name, origin=Origin.DEFAULT))
    for name, c in sorted(cfg.custom_runtimes.items()):
        out.append(
            Handler(
                name=cfg.handler(name),
                shim=shims.CATALOGUE[c.base_config],
                config_dir=f"{CUSTOM_DIR}/{name}",
                origin=Origin.CUSTOM,
                source=name,
                drop_in=c.drop_in,
                snapshotter=c.snapshotter,
                guest_pull=c.crio_pull_type == "guest-pull",
            )
        )
    return out


def state_path(cfg: config.InstallerConfig) -> str:
    return f"{cfg.prefix}/{STATE_FILE}"
