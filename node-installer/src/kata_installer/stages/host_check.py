"""Stage `host-check` (read-only): can this node take the install as configured?

Finds the runtime and its configuration file (and proves the file parses and that the
cri stage can edit it: cri.preview renders every runtime file without writing), matches
the node's architecture against the enabled shims, looks for /dev/kvm, requires drop-in
support when a suffix is set, checks the payload has what the shims need and that
/opt has room for it. Every problem is named; nothing on the host changes.
"""

from __future__ import annotations

import logging

from kata_installer import errors, layout, runtimes
from kata_installer.stages import Context, artifacts, cri

log = logging.getLogger(__name__)


class HostCheck:
    name = "host-check"
    revert_name = "host-check"
    read_only = True

    def check(self, ctx: Context) -> bool:
        cfg = ctx.cfg
        problems: list[str] = []
        rt = ctx.runtime()
        log.info("runtime: %s", rt.describe())
        skipped = layout.skipped_shims(cfg, ctx.arch)
        if skipped:
            log.info(
                "shims not built for %s, skipped on this node: %s", ctx.arch, ", ".join(skipped)
            )
        handlers = layout.handlers(cfg, ctx.arch)
        if not handlers:
            problems.append(
                f"none of the enabled shims ({', '.join(sorted(cfg.shims))}) supports this "
                f"node's architecture {ctx.arch}"
            )
        if not ctx.host.exists("/dev/kvm"):
            problems.append(
                "/dev/kvm does not exist: this node cannot run Kata VMs (no hardware "
                "virtualisation, or nested virtualisation is off)"
            )
        if cfg.suffix and not rt.supports_drop_in:
            problems.append(
                f"env.multiInstallSuffix={cfg.suffix!r} needs a runtime with drop-in "
                f"configuration (containerd >= 2.0 or CRI-O); this node has {rt.describe()}"
            )
        old = rt.kind is runtimes.Kind.CONTAINERD and rt.version is not None and rt.version < (1, 7)
        if old and any(h.snapshotter for h in handlers):
            problems.append("a per-handler containerd snapshotter needs containerd 1.7 or newer")
        if handlers:
            try:
                cri.preview(ctx)
            except errors.HostError as exc:
                problems.append(str(exc))
        try:
            entries = artifacts.plan(ctx)
        except errors.HostError as exc:
            problems.append(str(exc))
        else:
            target = ctx.host.path(cfg.prefix)
            free = artifacts.free_bytes(target.parent)
            need = artifacts.needed_bytes(entries)
            if free < need and not target.exists():
                problems.append(
                    f"not enough space under /opt: need {need >> 20} MiB, {free >> 20} MiB free"
                )
        if problems:
            raise errors.HostError("host-check failed:\n  - " + "\n  - ".join(problems))
        log.info(
            "ok: %d handlers for %s (%s)",
            len(handlers),
            ctx.arch,
            ", ".join(h.name for h in handlers),
        )
        return True

    def apply(self, ctx: Context) -> None:
        self.check(ctx)

    def revert(self, ctx: Context) -> bool:
        return False
