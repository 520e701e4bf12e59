"""Stage `cri`: register one runtime handler per shim with containerd or CRI-O.

For each file the runtime module names (runtimes.Target), the desired bytes are rendered
from the current ones and compared; only differing files are written (atomically), and
the runtime is restarted only if one was. Before touching a file, its entry is recorded
in the state file (write-ahead): the original bytes of a file that is not ours and the
hash of what we write, so revert-cri can put back the exact original bytes. If someone
changed the file after us, revert removes only our part (format-preserving) instead.

A restart is owed until it is done: before the first file changes, the state file
records `restart_owed: <unit>`; it is cleared only after the restart succeeded. A run
that finds the debt (a failed or interrupted restart, a pod killed between the write and
the restart) pays it even when no file changes; the check fails while it is owed, so
`label` never follows an unpaid restart. revert-cri does the same.

`preview` renders every file without writing: host-check runs it, so a runtime file we
cannot edit (or a file of ours someone else already wrote) is refused before any stage
changes the host.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import posixpath

from kata_installer import errors, layout, runtimes, state
from kata_installer.runtimes import containerd, crio, detect
from kata_installer.stages import Context, label

log = logging.getLogger(__name__)


def _sha(data: bytes | None) -> str:
    return "absent" if data is None else hashlib.sha256(data).hexdigest()


def owed(doc: state.State | None) -> str:
    """The unit whose restart an earlier write still owes, or ""."""
    return doc.cri.restart_owed if doc is not None else ""


def _owe(ctx: Context, doc: state.State, unit: str) -> None:
    if unit and doc.cri.restart_owed != unit:
        doc.cri.restart_owed = unit
        state.save(ctx.host, ctx.writer, ctx.cfg, doc)


def _pay(ctx: Context, doc: state.State) -> None:
    """Restart the unit owed (HostError leaves the debt in place), then clear the debt."""
    unit = doc.cri.restart_owed
    if not unit:
        return
    ctx.restarter.restart(unit)
    doc.cri.restart_owed = ""
    state.save(ctx.host, ctx.writer, ctx.cfg, doc)


def _config_tree(rt: runtimes.Runtime) -> str:
    """The directory holding this runtime's configuration (/etc/containerd, /etc/crio...)."""
    main = rt.config_path or rt.template_path or rt.drop_in_dir
    return posixpath.dirname(main.rstrip("/")) or "/"


def _refuse_odd_link(ctx: Context, host_path: str) -> None:
    detect.refuse_odd_link(ctx.host, host_path, _config_tree(ctx.runtime()))


def targets(ctx: Context) -> list[runtimes.Target]:
    rt = ctx.runtime()
    handlers = layout.handlers(ctx.cfg, ctx.arch)
    if rt.kind is runtimes.Kind.CRIO:
        return crio.targets(rt, ctx.cfg, handlers)
    return containerd.targets(rt, ctx.cfg, handlers)


def _refuse_foreign(t: runtimes.Target, current: bytes | None, doc: state.State | None) -> None:
    """A file that should be ours entirely, found with bytes we did not write."""
    if t.owned and current is not None and (doc is None or doc.cri.entry(t.path) is None):
        raise errors.HostError(
            f"{t.path} exists and was not written by this install; refusing to "
            "overwrite it (is another kata-deploy using the same suffix?)"
        )


def preview(ctx: Context) -> None:
    """Read-only: every target renders, and none would overwrite a file that is not ours.

    Raises the HostError apply would raise, naming the file, before anything is written.
    """
    doc = state.load(ctx.host, ctx.cfg)
    for t in targets(ctx):
        _refuse_odd_link(ctx, t.path)
        current = ctx.host.read_bytes(t.path)
        if t.render(current) != current:
            _refuse_foreign(t, current, doc)


def _created_dirs(ctx: Context, host_path: str) -> list[str]:
    """Directories on the way to host_path that no one had before kata-deploy came."""
    claimed = state.other_created_dirs(ctx.host, ctx.cfg)
    out = []
    d = posixpath.dirname(host_path)
    while d != "/" and (d in claimed or not ctx.host.path(d).exists()):
        out.append(d)
        d = posixpath.dirname(d)
    return list(reversed(out))


class Cri:
    name = "cri"
    revert_name = "revert-cri"
    read_only = False

    def check(self, ctx: Context) -> bool:
        unit = owed(state.load(ctx.host, ctx.cfg))
        if unit:
            log.info("a restart of %s is still owed by an earlier run", unit)
            return False
        for t in targets(ctx):
            _refuse_odd_link(ctx, t.path)
            current = ctx.host.read_bytes(t.path)
            if t.render(current) != current:
                return False
        return True

    def apply(self, ctx: Context) -> None:
        doc = state.load(ctx.host, ctx.cfg)
        if doc is None:
            raise errors.HostError(
                f"{ctx.cfg.prefix} is not installed on this node; run the artifacts stage first"
            )
        unit = ctx.runtime().unit
        doc.cri.unit = unit
        for t in targets(ctx):
            _refuse_odd_link(ctx, t.path)
            current = ctx.host.read_bytes(t.path)
            desired = t.render(current)
            if desired == current:
                continue
            _owe(ctx, doc, unit)
            _refuse_foreign(t, current, doc)
            entry = doc.cri.entry(t.path)
            if entry is None:
                entry = state.CriEntry(
                    path=t.path,
                    owned=t.owned,
                    what=t.what,
                    original=current,
                    created_dirs=tuple(_created_dirs(ctx, t.path)),
                    written=_sha(desired),
                )
            else:
                entry = dataclasses.replace(entry, written=_sha(desired))
            doc.cri.record(entry)
            state.save(ctx.host, ctx.writer, ctx.cfg, doc)
            real = ctx.host.path(t.path)
            ctx.writer.make_dirs(real.parent)
            if desired is None:
                ctx.writer.remove_file(real)
            else:
                ctx.writer.write_file(real, desired)
            log.info("wrote %s (%s)", t.path, t.what)
        _pay(ctx, doc)

    def revert(self, ctx: Context) -> bool:
        doc = state.load(ctx.host, ctx.cfg)
        if doc is None or not (doc.cri.entries or doc.cri.restart_owed):
            return False
        entries = list(doc.cri.entries)
        unit = doc.cri.unit or ""
        if entries:
            _owe(ctx, doc, unit)
        w = ctx.writer
        changed = False
        unrender = {t.path: t.unrender for t in self._targets_or_empty(ctx)}
        for entry in reversed(entries):
            path = entry.path
            real = ctx.host.path(path)
            current = ctx.host.read_bytes(path)
            original = entry.original
            if entry.owned:
                changed |= w.remove_file(real)
            elif current is None:
                log.warning("%s is gone; nothing to restore", path)
            elif _sha(current) == entry.written:
                if original is None:
                    changed |= w.remove_file(real)
                else:
                    changed |= w.write_file(real, original)
                log.info("restored %s to its original bytes", path)
            elif path in unrender:
                cleaned = unrender[path](current)
                if cleaned != current:
                    log.warning(
                        "%s changed since kata-deploy edited it; removing only our %s",
                        path,
                        entry.what or "part",
                    )
                    if cleaned is None:
                        changed |= w.remove_file(real)
                    else:
                        changed |= w.write_file(real, cleaned)
            for d in reversed(entry.created_dirs):
                w.remove_dir_if_empty(ctx.host.path(d))
        doc.cri = state.CriState(restart_owed=doc.cri.restart_owed)
        state.save(ctx.host, ctx.writer, ctx.cfg, doc)
        if changed:
            log.info("restored the runtime configuration")
        _pay(ctx, doc)
        self._wait_handlers_gone(ctx)
        return True

    def _wait_handlers_gone(self, ctx: Context) -> None:
        """Before remove-artifacts deletes what they point at: the handlers are gone."""
        if ctx.settings.dry_run or not ctx.settings.node_name:
            return
        handlers = label.expected_handlers(ctx)
        try:
            label.wait_for_node(
                ctx,
                ctx.settings.node_name,
                f"the runtime to stop serving {', '.join(handlers)}",
                lambda v: not set(handlers) & set(v.runtime_handlers),
            )
        except errors.KubeUnavailable as exc:
            log.warning("cannot confirm the runtime dropped the handlers (%s)", exc)

    def _targets_or_empty(self, ctx: Context) -> list[runtimes.Target]:
        try:
            return targets(ctx)
        except errors.InstallerError as exc:
            log.warning(
                "cannot work out the runtime configuration (%s); restoring from state only", exc
            )
            return []
