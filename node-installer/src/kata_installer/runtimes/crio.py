"""CRI-O: one drop-in of ours in /etc/crio/crio.conf.d/, nothing else touched.

CRI-O reads every file in its drop-in directory in lexical order, so no main-file edit
is needed. Each handler is a VM runtime running the shim binary; TEE shims with guest
pull (and custom runtimes with crio.pullType guest-pull) set runtime_pull_image.
"""

from __future__ import annotations

import posixpath

from kata_installer import config, layout
from kata_installer.runtimes import Runtime, Target
from kata_installer.runtimes import containerd as ctd


def render(cfg: config.InstallerConfig, handlers: list[layout.Handler]) -> bytes:
    tables: list[ctd.Table] = []
    for h in handlers:
        values: dict[str, object] = {
            "runtime_path": h.binary_path(cfg.prefix),
            "runtime_type": "vm",
            "runtime_root": "/run/vc",
            "runtime_config_path": h.config_path(cfg.prefix),
            "privileged_without_host_devices": True,
            "allowed_annotations": ["io.katacontainers.*"],
        }
        if h.guest_pull:
            values["runtime_pull_image"] = True
        tables.append((("crio", "runtime", "runtimes", h.name), values))
    return (ctd.HEADER + "\n" + ctd.render_tables(tables)).encode()


def targets(
    runtime: Runtime, cfg: config.InstallerConfig, handlers: list[layout.Handler]
) -> list[Target]:
    path = posixpath.join(runtime.drop_in_dir, f"50-{cfg.install_name}.toml")
    content = render(cfg, handlers)
    return [Target(path, True, lambda _raw: content, lambda _raw: None, "drop-in")]
