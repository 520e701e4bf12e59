"""Stage `cri`: register one runtime handler per shim with containerd or CRI-O.

For each file the runtime module names (runtimes.Target), the desired bytes are rendered
from the current ones and compared; only differing files are written (atomically), and
the runtime is restarted only if one was. Before touching a file, its entry is recorded
in the state file (write-ahead): the original bytes of a file that is not ours and the
hash of what we write, so revert-cri can put back the exact original bytes. If someone
changed the file after us, revert removes only our part (format-preserving) instead.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import posixpath
from typing import Any

from kata_installer import errors, layout, runtimes, state
from kata_installer.runtimes import containerd, crio
from kata_installer.stages import Context

log = logging.getLogger(__name__)


def _sha(data: bytes | None) -> str:
    return "absent" if data is None else hashlib.sha256(data).hexdigest()


def targets(ctx: Context) -> list[runtimes.Target]:
    rt = ctx.runtime()
    handlers = layout.handlers(ctx.cfg, ctx.arch)
    if rt.kind == "crio":
        return crio.targets(rt, ctx.cfg, handlers)
    return containerd.targets(rt, ctx.cfg, handlers)


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
        for t in targets(ctx):
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
        entries: list[dict[str, Any]] = doc["cri"].setdefault("entries", [])
        doc["cri"]["unit"] = ctx.runtime().unit
        changed = False
        for t in targets(ctx):
            current = ctx.host.read_bytes(t.path)
            desired = t.render(current)
            if desired == current:
                continue
            entry = next((e for e in entries if e["path"] == t.path), None)
            if entry is None:
                if t.owned and current is not None:
                    raise errors.HostError(
                        f"{t.path} exists and was not written by this install; refusing to "
                        "overwrite it (is another kata-deploy using the same suffix?)"
                    )
                entry = {
                    "path": t.path,
                    "owned": t.owned,
                    "what": t.what,
                    "original": None if current is None else base64.b64encode(current).decode(),
                    "created_dirs": _created_dirs(ctx, t.path),
                }
                entries.append(entry)
            entry["written"] = _sha(desired)
            state.save(ctx.host, ctx.writer, ctx.cfg, doc)
            real = ctx.host.path(t.path)
            ctx.writer.make_dirs(real.parent)
            if desired is None:
                ctx.writer.remove_file(real)
            else:
                ctx.writer.write_file(real, desired)
            log.info("wrote %s (%s)", t.path, t.what)
            changed = True
        if changed:
            ctx.restarter.restart(ctx.runtime().unit)

    def revert(self, ctx: Context) -> bool:
        doc = state.load(ctx.host, ctx.cfg)
        if doc is None or not doc["cri"].get("entries"):
            return False
        entries: list[dict[str, Any]] = doc["cri"]["entries"]
        unit = str(doc["cri"].get("unit", ""))
        w = ctx.writer
        changed = False
        unrender = {t.path: t.unrender for t in self._targets_or_empty(ctx)}
        for entry in reversed(entries):
            path = str(entry["path"])
            real = ctx.host.path(path)
            current = ctx.host.read_bytes(path)
            original = None if entry["original"] is None else base64.b64decode(entry["original"])
            if entry["owned"]:
                changed |= w.remove_file(real)
            elif current is None:
                log.warning("%s is gone; nothing to restore", path)
            elif _sha(current) == entry.get("written"):
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
                        entry.get("what", "part"),
                    )
                    if cleaned is None:
                        changed |= w.remove_file(real)
                    else:
                        changed |= w.write_file(real, cleaned)
            for d in reversed(entry.get("created_dirs", [])):
                w.remove_dir_if_empty(ctx.host.path(d))
        doc["cri"] = {"entries": []}
        state.save(ctx.host, ctx.writer, ctx.cfg, doc)
        if changed and unit:
            ctx.restarter.restart(unit)
        return True

    def _targets_or_empty(self, ctx: Context) -> list[runtimes.Target]:
        try:
            return targets(ctx)
        except errors.InstallerError as exc:
            log.warning(
                "cannot work out the runtime configuration (%s); restoring from state only", exc
            )
            return []
