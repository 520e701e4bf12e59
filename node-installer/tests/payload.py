"""A small synthetic Kata payload with the static release's `opt/kata` layout.

Used by the installer's tests, the benchmark and the local cluster (which mounts it as
/opt/kata-artifacts). Binaries are filler bytes; configurations are real TOML with the
keys the installer reads ([hypervisor.<name>] paths under /opt/kata, kernel_params,
enable_annotations, [agent.kata], [runtime]). Kernels and images are symlinks to
versioned files, as in the release.

Usage: python node-installer/tests/payload.py --out DIR [--binary-size BYTES]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

P = "/opt/kata"
KERNEL = "share/kata-containers/vmlinux-6.12.36-162"
KERNEL_Z = "share/kata-containers/vmlinuz-6.12.36-162"
CONF_KERNEL = "share/kata-containers/vmlinuz-6.12.36-162-confidential"
GPU_KERNEL = "share/kata-containers/vmlinuz-6.12.36-162-nvidia-gpu"
IMAGE = "share/kata-containers/kata-ubuntu-noble.image"
INITRD = "share/kata-containers/kata-alpine-3.22.initrd"
CONF_IMAGE = "share/kata-containers/kata-ubuntu-noble-confidential.image"
GPU_IMAGE = "share/kata-containers/kata-ubuntu-noble-nvidia-gpu.image"
LINKS = {
    "share/kata-containers/vmlinux.container": "vmlinux-6.12.36-162",
    "share/kata-containers/vmlinuz.container": "vmlinuz-6.12.36-162",
    "share/kata-containers/vmlinuz-confidential.container": "vmlinuz-6.12.36-162-confidential",
    "share/kata-containers/vmlinuz-nvidia-gpu.container": "vmlinuz-6.12.36-162-nvidia-gpu",
    "share/kata-containers/kata-containers.img": "kata-ubuntu-noble.image",
    "share/kata-containers/kata-containers-initrd.img": "kata-alpine-3.22.initrd",
    "share/kata-containers/kata-containers-confidential.img": (
        "kata-ubuntu-noble-confidential.image"
    ),
    "share/kata-containers/kata-containers-nvidia-gpu.img": "kata-ubuntu-noble-nvidia-gpu.image",
}
BINARIES = [
    "bin/containerd-shim-kata-v2",
    "bin/kata-runtime",
    "bin/kata-monitor",
    "bin/kata-collect-data.sh",
    "bin/qemu-system-x86_64",
    "bin/qemu-system-x86_64-snp-experimental",
    "bin/qemu-system-x86_64-tdx-experimental",
    "bin/cloud-hypervisor",
    "bin/firecracker",
    "bin/jailer",
    "bin/stratovirt",
    "libexec/virtiofsd",
    "runtime-rs/bin/containerd-shim-kata-v2",
    "runtime-rs/bin/dragonball",
]
DATA = [
    KERNEL,
    KERNEL_Z,
    CONF_KERNEL,
    GPU_KERNEL,
    IMAGE,
    INITRD,
    CONF_IMAGE,
    GPU_IMAGE,
    "share/ovmf/OVMF.fd",
    "share/ovmf/AMDSEV.fd",
    "share/ovmf/OVMF.inteltdx.fd",
    "share/kata-containers/kata-containers-se.img",
]

GO = "share/defaults/kata-containers"
RS = "share/defaults/kata-containers/runtime-rs"
# file -> (hypervisor table, binary, kernel, image key/value, firmware)
CONFIGS: dict[str, tuple[str, str, str, tuple[str, str], str]] = {
    f"{GO}/configuration-qemu.toml": (
        "qemu",
        "bin/qemu-system-x86_64",
        "share/kata-containers/vmlinux.container",
        ("image", "share/kata-containers/kata-containers.img"),
        "",
    ),
    f"{GO}/configuration-qemu-coco-dev.toml": (
        "qemu",
        "bin/qemu-system-x86_64",
        "share/kata-containers/vmlinuz-confidential.container",
        ("image", "share/kata-containers/kata-containers-confidential.img"),
        "",
    ),
    f"{GO}/configuration-qemu-snp.toml": (
        "qemu",
        "bin/qemu-system-x86_64-snp-experimental",
        "share/kata-containers/vmlinuz-confidential.container",
        ("initrd", "share/kata-containers/kata-containers-initrd.img"),
        "share/ovmf/AMDSEV.fd",
    ),
    f"{GO}/configuration-qemu-tdx.toml": (
        "qemu",
        "bin/qemu-system-x86_64-tdx-experimental",
        "share/kata-containers/vmlinuz-confidential.container",
        ("image", "share/kata-containers/kata-containers-confidential.img"),
        "share/ovmf/OVMF.inteltdx.fd",
    ),
    f"{GO}/configuration-qemu-se.toml": (
        "qemu",
        "bin/qemu-system-x86_64",
        "share/kata-containers/kata-containers-se.img",
        ("image", ""),
        "",
    ),
    f"{GO}/configuration-qemu-nvidia-gpu.toml": (
        "qemu",
        "bin/qemu-system-x86_64",
        "share/kata-containers/vmlinuz-nvidia-gpu.container",
        ("image", "share/kata-containers/kata-containers-nvidia-gpu.img"),
        "",
    ),
    f"{GO}/configuration-qemu-nvidia-gpu-snp.toml": (
        "qemu",
        "bin/qemu-system-x86_64-snp-experimental",
        "share/kata-containers/vmlinuz-nvidia-gpu.container",
        ("image", "share/kata-containers/kata-containers-nvidia-gpu.img"),
        "share/ovmf/AMDSEV.fd",
    ),
    f"{GO}/configuration-qemu-nvidia-gpu-tdx.toml": (
        "qemu",
        "bin/qemu-system-x86_64-tdx-experimental",
        "share/kata-containers/vmlinuz-nvidia-gpu.container",
        ("image", "share/kata-containers/kata-containers-nvidia-gpu.img"),
        "share/ovmf/OVMF.inteltdx.fd",
    ),
    f"{GO}/configuration-clh.toml": (
        "clh",
        "bin/cloud-hypervisor",
        "share/kata-containers/vmlinux.container",
        ("image", "share/kata-containers/kata-containers.img"),
        "",
    ),
    f"{GO}/configuration-fc.toml": (
        "firecracker",
        "bin/firecracker",
        "share/kata-containers/vmlinux.container",
        ("image", "share/kata-containers/kata-containers.img"),
        "",
    ),
    f"{GO}/configuration-stratovirt.toml": (
        "stratovirt",
        "bin/stratovirt",
        "share/kata-containers/vmlinux.container",
        ("image", "share/kata-containers/kata-containers.img"),
        "",
    ),
    f"{RS}/configuration-dragonball.toml": (
        "dragonball",
        "runtime-rs/bin/dragonball",
        "share/kata-containers/vmlinux.container",
        ("image", "share/kata-containers/kata-containers.img"),
        "",
    ),
    f"{RS}/configuration-cloud-hypervisor.toml": (
        "cloud-hypervisor",
        "bin/cloud-hypervisor",
        "share/kata-containers/vmlinux.container",
        ("image", "share/kata-containers/kata-containers.img"),
        "",
    ),
    f"{RS}/configuration-qemu-runtime-rs.toml": (
        "qemu",
        "bin/qemu-system-x86_64",
        "share/kata-containers/vmlinux.container",
        ("image", "share/kata-containers/kata-containers.img"),
        "",
    ),
    f"{RS}/configuration-qemu-coco-dev-runtime-rs.toml": (
        "qemu",
        "bin/qemu-system-x86_64",
        "share/kata-containers/vmlinuz-confidential.container",
        ("image", "share/kata-containers/kata-containers-confidential.img"),
        "",
    ),
    f"{RS}/configuration-qemu-se-runtime-rs.toml": (
        "qemu",
        "bin/qemu-system-x86_64",
        "share/kata-containers/kata-containers-se.img",
        ("image", ""),
        "",
    ),
}


def _config(hv: str, binary: str, kernel: str, image: tuple[str, str], firmware: str) -> str:
    lines = [
        "# Synthetic Kata configuration (kata-deploy tests); same keys as the release.",
        f"[hypervisor.{hv}]",
        f'path = "{P}/{binary}"',
        f'kernel = "{P}/{kernel}"',
    ]
    if image[1]:
        lines.append(f'{image[0]} = "{P}/{image[1]}"')
    lines.append(f'firmware = "{P}/{firmware}"' if firmware else 'firmware = ""')
    if hv in ("qemu", "clh", "cloud-hypervisor"):
        lines.append(f'virtio_fs_daemon = "{P}/libexec/virtiofsd"')
        lines.append(f'valid_virtio_fs_daemon_paths = ["{P}/libexec/virtiofsd"]')
    lines += [
        f'valid_hypervisor_paths = ["{P}/{binary}"]',
        'kernel_params = "cgroup_no_v1=all"',
        'enable_annotations = ["enable_iommu", "virtio_fs_extra_args", "kernel_params"]',
        "default_vcpus = 1",
        "default_memory = 2048",
        "enable_debug = false",
        "",
        "[agent.kata]",
        "enable_debug = false",
        "dial_timeout = 45",
        "",
        "[runtime]",
        "enable_debug = false",
        'internetworking_model = "tcfilter"',
        "",
    ]
    return "\n".join(lines)


def generate(out: pathlib.Path, *, binary_size: int = 512) -> pathlib.Path:
    """Write the payload into `out` (created; must not hold a different payload)."""
    out.mkdir(parents=True, exist_ok=True)

    def write(rel: str, data: bytes, mode: int) -> None:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)

    for rel in BINARIES:
        seed = f"#!synthetic {rel}\n".encode()
        write(rel, (seed * (binary_size // len(seed) + 1))[:binary_size], 0o755)
    for rel in DATA:
        seed = f"synthetic {rel}\n".encode()
        write(rel, (seed * (binary_size // len(seed) + 1))[:binary_size], 0o644)
    for rel, target in LINKS.items():
        link = out / rel
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target)
    for rel, spec in CONFIGS.items():
        write(rel, _config(*spec).encode(), 0o644)
    write("VERSION", b"3.99.0-synthetic\n", 0o644)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--out", required=True, type=pathlib.Path, help="payload directory to write")
    p.add_argument("--binary-size", type=int, default=512, help="bytes per binary/image file")
    args = p.parse_args(argv)
    generate(args.out, binary_size=args.binary_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
