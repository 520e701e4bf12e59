"""Stage `artifacts`: the payload the enabled shims need, into /opt/kata[-suffix].

Only what the enabled shims need is copied: each shim's binary, its configuration, and
every file its configuration's [hypervisor.*] table points at under /opt/kata
(hypervisor, kernel, image, firmware...), symlinks followed inside the payload. Each
handler gets its own configuration directory with config.d/ drop-ins:
  10-install-prefix.toml      paths moved to /opt/kata-<suffix> (suffixed installs)
  20-debug.toml               env.debug
  30-agent-proxy.toml         agent.https_proxy / agent.no_proxy (TEE shims)
  40-hypervisor-annotations.toml  allowedHypervisorAnnotations
  50-user-overrides.toml      the shim's (or custom runtime's) dropIn, verbatim
The new tree is built in /opt/.kata[-suffix].staging and renamed into place, so the
prefix is always either the old install or the new one. The state file inside it holds
the manifest; remove-artifacts deletes exactly what the manifest lists.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import pathlib
import posixpath
import shutil
import stat
import tomllib
from typing import Any

import tomlkit

from kata_installer import config, errors, layout, shims, state
from kata_installer.stages import Context

log = logging.getLogger(__name__)

GENERATED_HEADER = "# Written by kata-deploy (kata-installer); local changes are overwritten.\n"
_SPACE_MARGIN = 16 << 20


@dataclasses.dataclass(frozen=True)
class Entry:
    """One path of the desired tree, with where its bytes come from."""

    kind: state.Kind
    mode: int = 0o644
    src: pathlib.Path | None = None
    data: bytes | None = None
    target: str = ""
    sha256: str = ""
    size: int = 0

    def manifest(self) -> state.ManifestEntry:
        if self.kind is state.Kind.FILE:
            return state.ManifestEntry(self.kind, mode=self.mode, sha256=self.sha256)
        if self.kind is state.Kind.LINK:
            return state.ManifestEntry(self.kind, target=self.target)
        return state.ManifestEntry(self.kind, mode=self.mode)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha_file(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Planner:
    """Computes the desired tree (relative path -> Entry); reads only the payload."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.payload = ctx.settings.payload
        self.entries: dict[str, Entry] = {}

    def _add_dirs(self, rel: str) -> None:
        parent = posixpath.dirname(rel)
        while parent:
            self.entries.setdefault(parent, Entry(state.Kind.DIR, mode=0o755))
            parent = posixpath.dirname(parent)

    def _add_payload(self, rel: str, why: str, depth: int = 0) -> None:
        if rel in self.entries or depth > 20:
            return
        src = self.payload / rel
        try:
            st = src.lstat()
        except FileNotFoundError:
            raise errors.HostError(
                f"payload {self.payload} is missing {rel}, needed by {why}"
            ) from None
        self._add_dirs(rel)
        if stat.S_ISLNK(st.st_mode):
            target = str(src.readlink())
            self.entries[rel] = Entry(state.Kind.LINK, target=target)
            if target.startswith(shims.RELEASE_PREFIX + "/"):
                resolved = target[len(shims.RELEASE_PREFIX) + 1 :]
            elif target.startswith("/"):
                raise errors.HostError(
                    f"payload symlink {rel} points outside the payload: {target}"
                )
            else:
                resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
            if resolved.startswith("../") or resolved == "..":
                raise errors.HostError(
                    f"payload symlink {rel} points outside the payload: {target}"
                )
            self._add_payload(resolved, f"{why} (through symlink {rel})", depth + 1)
        elif stat.S_ISDIR(st.st_mode):
            self.entries[rel] = Entry(state.Kind.DIR, mode=stat.S_IMODE(st.st_mode) | 0o700)
            for child in sorted(c.name for c in src.iterdir()):
                self._add_payload(f"{rel}/{child}", why, depth)
        elif stat.S_ISREG(st.st_mode):
            self.entries[rel] = Entry(
                state.Kind.FILE,
                mode=stat.S_IMODE(st.st_mode),
                src=src,
                sha256=_sha_file(src),
                size=st.st_size,
            )
        else:
            raise errors.HostError(f"payload entry {rel} is not a file, directory or symlink")

    def _generated(self, rel: str, data: bytes) -> None:
        self._add_dirs(rel)
        self.entries[rel] = Entry(
            state.Kind.FILE, mode=0o644, data=data, sha256=_sha(data), size=len(data)
        )

    def base_config(self, shim: shims.Shim, why: str) -> tuple[str, bytes, dict[str, Any]]:
        for rel in shim.config_candidates:
            path = self.payload / rel
            if path.is_file():
                raw = path.read_bytes()
                try:
                    return rel, raw, tomllib.loads(raw.decode("utf-8"))
                except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                    raise errors.HostError(f"payload file {path} is not valid TOML: {exc}") from exc
        raise errors.HostError(
            f"payload {self.payload} has no configuration for {why} "
            f"(looked for {', '.join(shim.config_candidates)})"
        )

    def _shim_files(self, shim: shims.Shim, why: str) -> tuple[str, dict[str, Any], bytes]:
        rel, raw, doc = self.base_config(shim, why)
        self._add_payload(shim.binary, why)
        self._add_payload(rel, why)
        hv_name, hv = _hypervisor(doc, rel)
        for key, value in sorted(hv.items()):
            if key.startswith("valid_") or not isinstance(value, str):
                continue
            if value.startswith(shims.RELEASE_PREFIX + "/"):
                self._add_payload(
                    value[len(shims.RELEASE_PREFIX) + 1 :],
                    f"{why} ({rel}: hypervisor.{hv_name}.{key})",
                )
        return rel, doc, raw

    def plan(self) -> dict[str, Entry]:
        for h in layout.handlers(self.cfg, self.ctx.arch):
            if h.origin is layout.Origin.DEFAULT:
                continue  # the default handler shares its shim's directory
            _, doc, raw = self._shim_files(h.shim, h.describe())
            self._generated(f"{h.config_dir}/{h.shim.config_file}", raw)
            for name, data in drop_ins(self.cfg, h, doc).items():
                self._generated(f"{h.config_dir}/config.d/{name}", data)
        return dict(sorted(self.entries.items()))


def _hypervisor(doc: dict[str, Any], rel: str) -> tuple[str, dict[str, Any]]:
    tables = doc.get("hypervisor")
    if not isinstance(tables, dict) or len(tables) != 1:
        raise errors.HostError(
            f"payload configuration {rel} must have exactly one [hypervisor.*] table"
        )
    name, table = next(iter(tables.items()))
    if not isinstance(table, dict):
        raise errors.HostError(f"payload configuration {rel}: hypervisor.{name} is not a table")
    return str(name), table


def _toml(doc: dict[str, Any]) -> bytes:
    return (GENERATED_HEADER + tomlkit.dumps(doc)).encode()


def drop_ins(
    cfg: config.InstallerConfig, handler: layout.Handler, base: dict[str, Any]
) -> dict[str, bytes]:
    """The config.d files of one handler, by file name; `base` is its shim's configuration."""
    hv_name, hv = _hypervisor(base, handler.shim.config_file)
    out: dict[str, bytes] = {}
    if cfg.prefix != shims.RELEASE_PREFIX:
        old, new = shims.RELEASE_PREFIX + "/", cfg.prefix + "/"
        moved: dict[str, Any] = {}
        for key, value in sorted(hv.items()):
            if isinstance(value, str) and value.startswith(old):
                moved[key] = new + value[len(old) :]
            elif isinstance(value, list) and any(
                isinstance(v, str) and v.startswith(old) for v in value
            ):
                moved[key] = [
                    new + v[len(old) :] if isinstance(v, str) and v.startswith(old) else v
                    for v in value
                ]
        if moved:
            out["10-install-prefix.toml"] = _toml({"hypervisor": {hv_name: moved}})
    if cfg.debug:
        out["20-debug.toml"] = _toml(
            {
                "hypervisor": {hv_name: {"enable_debug": True}},
                "agent": {"kata": {"enable_debug": True}},
                "runtime": {"enable_debug": True},
            }
        )
    if handler.shim.tee and (handler.agent_https_proxy or handler.agent_no_proxy):
        params = [str(hv.get("kernel_params", ""))] if hv.get("kernel_params") else []
        if handler.agent_https_proxy:
            params.append(f"agent.https_proxy={handler.agent_https_proxy}")
        if handler.agent_no_proxy:
            params.append(f"agent.no_proxy={handler.agent_no_proxy}")
        out["30-agent-proxy.toml"] = _toml(
            {"hypervisor": {hv_name: {"kernel_params": " ".join(params)}}}
        )
    if handler.allowed_hypervisor_annotations:
        current = [str(a) for a in hv.get("enable_annotations", []) or []]
        merged = current + [a for a in handler.allowed_hypervisor_annotations if a not in current]
        out["40-hypervisor-annotations.toml"] = _toml(
            {"hypervisor": {hv_name: {"enable_annotations": merged}}}
        )
    if handler.drop_in.strip():
        data = handler.drop_in if handler.drop_in.endswith("\n") else handler.drop_in + "\n"
        out["50-user-overrides.toml"] = data.encode()
    return out


def plan(ctx: Context) -> dict[str, Entry]:
    """The desired tree, computed once per run (it hashes the payload)."""
    if "artifacts.plan" not in ctx.cache:
        ctx.cache["artifacts.plan"] = _Planner(ctx).plan()
    entries: dict[str, Entry] = ctx.cache["artifacts.plan"]
    return entries


def manifest(entries: dict[str, Entry]) -> dict[str, state.ManifestEntry]:
    return {rel: e.manifest() for rel, e in entries.items()}


def _paths(ctx: Context) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    target = ctx.host.path(ctx.cfg.prefix)
    return (
        target,
        target.with_name(f".{target.name}.staging"),
        target.with_name(f".{target.name}.old"),
    )


def _on_disk_matches(root: pathlib.Path, entries: dict[str, Entry]) -> bool:
    for rel, e in entries.items():
        p = root / rel
        try:
            st = p.lstat()
        except FileNotFoundError:
            return False
        if e.kind is state.Kind.DIR:
            if not stat.S_ISDIR(st.st_mode):
                return False
        elif e.kind is state.Kind.LINK:
            if not stat.S_ISLNK(st.st_mode) or str(p.readlink()) != e.target:
                return False
        elif (
            not stat.S_ISREG(st.st_mode)
            or stat.S_IMODE(st.st_mode) != e.mode
            or st.st_size != e.size
            or _sha_file(p) != e.sha256
        ):
            return False
    return True


def needed_bytes(entries: dict[str, Entry]) -> int:
    return sum(e.size for e in entries.values()) + _SPACE_MARGIN


def free_bytes(path: pathlib.Path) -> int:
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


class Artifacts:
    name = "artifacts"
    revert_name = "remove-artifacts"
    read_only = False

    def check(self, ctx: Context) -> bool:
        target, staging, old = _paths(ctx)
        if staging.exists() or old.exists():
            return False
        doc = state.load(ctx.host, ctx.cfg)
        if doc is None or doc.artifacts is None:
            return False
        entries = plan(ctx)
        return doc.artifacts.manifest == manifest(entries) and _on_disk_matches(target, entries)

    def _recover(self, ctx: Context) -> None:
        """Finish or undo a swap an earlier run died in the middle of."""
        target, staging, old = _paths(ctx)
        if not target.exists() and old.exists():
            log.warning("found %s from an interrupted run; putting it back", old)
            ctx.writer.rename(old, target)
        ctx.writer.remove_tree(old)
        ctx.writer.remove_tree(staging)

    def apply(self, ctx: Context) -> None:
        self._recover(ctx)
        if self.check(ctx):
            return
        target, staging, old = _paths(ctx)
        entries = plan(ctx)
        previous = state.load(ctx.host, ctx.cfg)
        free = free_bytes(target.parent)
        if free < needed_bytes(entries):
            raise errors.HostError(
                f"not enough space in {ctx.host.host_path(target.parent)}: "
                f"need {needed_bytes(entries) >> 20} MiB, {free >> 20} MiB free"
            )
        w = ctx.writer
        w.make_dirs(staging)
        for rel, e in entries.items():
            dst = staging / rel
            if e.kind is state.Kind.DIR:
                w.make_dirs(dst, mode=e.mode)
            elif e.kind is state.Kind.LINK:
                w.symlink(e.target, dst)
            elif e.src is not None:
                w.copy_file(e.src, dst, mode=e.mode)
            else:
                w.new_file(dst, e.data or b"", mode=e.mode)
        doc = state.State(
            artifacts=state.Artifacts(prefix=ctx.cfg.prefix, manifest=manifest(entries)),
            cri=previous.cri if previous is not None else state.CriState(),
        )
        w.new_file(staging / layout.STATE_FILE, state.encode(doc))
        if target.exists():
            w.rename(target, old)
        w.rename(staging, target)
        w.remove_tree(old)
        log.info(
            "installed %d files for %d handlers into %s",
            sum(1 for e in entries.values() if e.kind is not state.Kind.DIR),
            len(layout.handlers(ctx.cfg, ctx.arch)),
            ctx.cfg.prefix,
        )

    def revert(self, ctx: Context) -> bool:
        self._recover(ctx)
        target, _, _ = _paths(ctx)
        doc = state.load(ctx.host, ctx.cfg)
        w = ctx.writer
        if doc is None:
            if target.is_dir() and not any(target.iterdir()):
                return w.remove_dir_if_empty(target)
            if target.exists():
                log.warning(
                    "%s exists but has no kata-deploy state file; leaving it", ctx.cfg.prefix
                )
            return False
        if doc.cri.entries:
            raise errors.HostError(
                f"the container runtime is still configured to use {ctx.cfg.prefix}; "
                "run revert-cri before remove-artifacts"
            )
        entries = doc.artifacts.manifest if doc.artifacts is not None else {}
        for rel in sorted(entries, key=lambda r: (-r.count("/"), r), reverse=False):
            p = target / rel
            if entries[rel].kind is state.Kind.DIR:
                w.remove_dir_if_empty(p)
            else:
                w.remove_file(p)
        w.remove_file(target / layout.STATE_FILE)
        if not w.remove_dir_if_empty(target) and target.exists():
            left = sorted(p.name for p in target.iterdir())[:5]
            log.warning("%s still holds files kata-deploy did not write: %s", ctx.cfg.prefix, left)
        return True
