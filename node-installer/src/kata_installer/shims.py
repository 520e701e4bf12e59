"""The shim catalogue: which runtime and which payload configuration each shim uses.

A shim's name is the chart's (`shims.<name>`); its handler is `kata-<name>[-suffix]`.
Go-runtime shims run `bin/containerd-shim-kata-v2` and read their configuration from
`share/defaults/kata-containers/`; runtime-rs shims run
`runtime-rs/bin/containerd-shim-kata-v2` and read from
`share/defaults/kata-containers/runtime-rs/` (older releases kept them one level up,
which is also accepted). Everything else a shim needs (hypervisor, kernel, image,
firmware) is read from its configuration, not listed here.
"""

from __future__ import annotations

import dataclasses

RELEASE_PREFIX = "/opt/kata"
CONFIG_DIR = "share/defaults/kata-containers"
RS_CONFIG_DIR = "share/defaults/kata-containers/runtime-rs"
ARCHES = ("amd64", "arm64", "s390x", "ppc64le")
MACHINE_TO_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "s390x": "s390x",
    "ppc64le": "ppc64le",
}


@dataclasses.dataclass(frozen=True)
class Shim:
    name: str
    rust: bool
    config_file: str  # file name of the payload configuration
    tee: bool = False

    @property
    def binary(self) -> str:
        """Shim binary, relative to the install prefix."""
        return (
            "runtime-rs/bin/containerd-shim-kata-v2" if self.rust else "bin/containerd-shim-kata-v2"
        )

    @property
    def config_candidates(self) -> tuple[str, ...]:
        """Where the payload may hold this shim's configuration (first match wins)."""
        if self.rust:
            return (f"{RS_CONFIG_DIR}/{self.config_file}", f"{CONFIG_DIR}/{self.config_file}")
        return (f"{CONFIG_DIR}/{self.config_file}",)


def _go(name: str, *, tee: bool = False) -> Shim:
    return Shim(name, rust=False, config_file=f"configuration-{name}.toml", tee=tee)


def _rs(name: str, config_file: str, *, tee: bool = False) -> Shim:
    return Shim(name, rust=True, config_file=config_file, tee=tee)


CATALOGUE: dict[str, Shim] = {
    s.name: s
    for s in (
        _go("clh"),
        _rs("clh-runtime-rs", "configuration-cloud-hypervisor.toml"),
        _rs("dragonball", "configuration-dragonball.toml"),
        _go("fc"),
        _go("qemu"),
        _rs("qemu-runtime-rs", "configuration-qemu-runtime-rs.toml"),
        _go("qemu-coco-dev", tee=True),
        _rs("qemu-coco-dev-runtime-rs", "configuration-qemu-coco-dev-runtime-rs.toml", tee=True),
        _go("qemu-nvidia-gpu"),
        _go("qemu-nvidia-gpu-snp", tee=True),
        _go("qemu-nvidia-gpu-tdx", tee=True),
        _go("qemu-snp", tee=True),
        _go("qemu-tdx", tee=True),
        _go("qemu-se", tee=True),
        _rs("qemu-se-runtime-rs", "configuration-qemu-se-runtime-rs.toml", tee=True),
        _go("stratovirt"),
    )
}
