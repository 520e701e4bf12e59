"""containerd (plain, k3s, rke2, k0s, microk8s): what we write, as pure render functions.

Handlers go under the CRI plugin of the config schema in use:
  version 3 (containerd 2.x):  plugins."io.containerd.cri.v1.runtime".containerd.runtimes.<h>
  version 2 (1.x and 2.x):     plugins."io.containerd.grpc.v1.cri".containerd.runtimes.<h>
  version 1 (legacy 1.x):      plugins.cri.containerd.runtimes.<h>
Each handler runs the install's shim binary through `runtime_path` with its
configuration in `options.ConfigPath`; `runtime_type` is io.containerd.<handler>.v2.

Files: our own drop-in plus one `imports` entry (containerd >= 2.0), a direct edit of the
main config (older), the k3s/rke2 template (a Go template, so a marked block of text, not
a TOML edit), a k0s drop-in, or the microk8s template (TOML, edited in place). Edits of
files that are not ours go through tomlkit so comments and formatting survive.

tomlkit cannot edit every valid layout faithfully (inline tables, tables out of order,
dotted keys on the way to ours: it raises, or writes our tables under the wrong key).
So every edit is checked with tomllib before it is used: the result must be valid TOML
that means the original plus exactly our part. Anything else is a HostError naming the
file, raised while rendering, which host-check does before anything is written.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import posixpath
import re
import tomllib
from collections.abc import Callable
from typing import Any

import tomlkit
from tomlkit import items as tk_items

from kata_installer import config, errors, layout
from kata_installer.runtimes import ConfigMode, Runtime, Target

HEADER = "# Written by kata-deploy (kata-installer). Do not edit: it is rewritten and removed.\n"
TEMPLATE_BASE = '{{ template "base" . }}\n'
POD_ANNOTATIONS = ["io.katacontainers.*"]
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")

Table = tuple[tuple[str, ...], dict[str, Any]]


def plugin_path(config_version: int) -> tuple[str, ...]:
    if config_version == 3:
        return ("plugins", "io.containerd.cri.v1.runtime", "containerd", "runtimes")
    if config_version == 2:
        return ("plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes")
    return ("plugins", "cri", "containerd", "runtimes")


def drop_in_name(cfg: config.InstallerConfig) -> str:
    return f"50-{cfg.install_name}.toml"


def handler_tables(
    cfg: config.InstallerConfig, handlers: list[layout.Handler], config_version: int
) -> list[Table]:
    tables: list[Table] = []
    for h in handlers:
        base = (*plugin_path(config_version), h.name)
        values: dict[str, Any] = {
            "runtime_type": f"io.containerd.{h.name}.v2",
            "runtime_path": h.binary_path(cfg.prefix),
            "privileged_without_host_devices": True,
            "pod_annotations": list(POD_ANNOTATIONS),
        }
        if h.snapshotter:
            values["snapshotter"] = h.snapshotter
        tables.append((base, values))
        tables.append(((*base, "options"), {"ConfigPath": h.config_path(cfg.prefix)}))
        if h.snapshotter and config_version == 3:
            # containerd 2.x pulls images through a separate plugin: it must also know
            # which snapshotter this handler's images go to.
            platforms = ("plugins", "io.containerd.cri.v1.images", "runtime_platforms", h.name)
            tables.append((platforms, {"snapshotter": h.snapshotter}))
    return tables


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def render_tables(tables: list[Table]) -> str:
    out = []
    for path, values in tables:
        out.append("[" + ".".join(_key(p) for p in path) + "]")
        for k, v in values.items():
            out.append(f"  {_key(k)} = {tomlkit.item(v).as_string()}")
        out.append("")
    return "\n".join(out)


def render_drop_in(cfg: config.InstallerConfig, tables: list[Table], version: int) -> bytes:
    return (HEADER + f"version = {version}\n\n" + render_tables(tables)).encode()


# What tomlkit raises on a layout it cannot edit: its own errors, ValueError ("Inline
# tables cannot contain a table") and AttributeError (tables out of order).
_TOMLKIT_ERRORS = (tomlkit.exceptions.TOMLKitError, ValueError, AttributeError)


class _Layout(Exception):
    """Where our tables go, the existing file has something we cannot edit."""


def _cannot_edit(
    path: str, why: str, *, action: str = "add the Kata runtime handlers to"
) -> errors.HostError:
    return errors.HostError(
        f"{path}: cannot {action} this file as it is laid out ({why}); it was left "
        "unchanged. Write the tables on the way to the runtimes as [section] headers, "
        "parents before children, and run again"
    )


def _parse(raw: bytes, path: str) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise errors.HostError(f"{path} is not valid TOML, refusing to edit it: {exc}") from exc
    except _TOMLKIT_ERRORS as exc:
        try:
            tomllib.loads(raw.decode("utf-8"))
        except tomllib.TOMLDecodeError:
            raise errors.HostError(f"{path} is not valid TOML, refusing to edit it: {exc}") from exc
        raise _cannot_edit(path, f"tomlkit cannot read it: {exc}") from exc


def _meaning(raw: bytes | None, path: str) -> dict[str, Any]:
    try:
        return tomllib.loads((raw or b"").decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise errors.HostError(f"{path} is not valid TOML, refusing to edit it: {exc}") from exc


def _edit(
    path: str, raw: bytes | None, change: Callable[[Any], None], *, removing: bool = False
) -> bytes:
    """Parse with tomlkit, apply `change` to the document, dump; HostError naming the file
    if tomlkit cannot (the caller checks what the result means)."""
    action = (
        "remove the Kata runtime handlers from" if removing else "add the Kata runtime handlers to"
    )
    doc = _parse(raw or b"", path)
    try:
        change(doc)
        return tomlkit.dumps(doc).encode()
    except _Layout as exc:
        raise _cannot_edit(path, str(exc), action=action) from exc
    except _TOMLKIT_ERRORS as exc:
        raise _cannot_edit(path, f"tomlkit: {exc}", action=action) from exc


def _edited_meaning(path: str, edited: bytes) -> dict[str, Any]:
    try:
        return tomllib.loads(edited.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise _cannot_edit(path, f"the edit would not be valid TOML: {exc}") from exc


def _without(doc: dict[str, Any], paths: list[tuple[str, ...]]) -> dict[str, Any]:
    """A copy of a plain document without the tables at `paths` and the tables on their
    way that this leaves empty (what an edit of ours may add or remove)."""
    out = copy.deepcopy(doc)
    for path in paths:
        chain = [out]
        for k in path[:-1]:
            nxt = chain[-1].get(k)
            if not isinstance(nxt, dict):
                break
            chain.append(nxt)
        else:
            chain[-1].pop(path[-1], None)
            for depth in range(len(chain) - 1, 0, -1):
                if chain[depth]:
                    break
                del chain[depth - 1][path[depth - 1]]
    return out


def _check_meaning(path: str, before: dict[str, Any], edited: bytes, ours: list[Table]) -> None:
    """The edit is valid TOML holding our tables, and apart from them (and a `version`
    it added) it means exactly what the file meant before."""
    after = _edited_meaning(path, edited)
    if "version" not in before:
        after.pop("version", None)
    paths = [p for p, _ in ours]
    try:
        placed = _has_tables(after, [t for t in ours if t[1]]) and not any(
            _walk(after, p, create=False) is not None for p, values in ours if not values
        )
    except _Layout:
        placed = False
    if not placed or _without(before, paths) != _without(after, paths):
        raise _cannot_edit(path, "tomlkit would put the tables somewhere else")


def _walk(container: Any, path: tuple[str, ...], *, create: bool) -> Any:
    """The table at `path` (None if missing and not `create`); _Layout if something on
    the way is not a table, or (creating) is an inline table tomlkit cannot add to."""
    for i, k in enumerate(path):
        if k not in container:
            if not create:
                return None
            if isinstance(container, tk_items.InlineTable):
                raise _Layout(f"`{'.'.join(path[:i])}` is an inline table")
            container[k] = tomlkit.table(is_super_table=True)
        container = container[k]
        if not isinstance(container, dict):
            raise _Layout(f"`{'.'.join(path[: i + 1])}` is not a table")
    if create and isinstance(container, tk_items.InlineTable):
        raise _Layout(f"`{'.'.join(path)}` is an inline table")
    return container


def _plain(value: Any) -> Any:
    return value.unwrap() if hasattr(value, "unwrap") else value


def _has_tables(doc: Any, tables: list[Table]) -> bool:
    for path, values in tables:
        t = _walk(doc, path, create=False)
        if t is None:
            return False
        current = {k: _plain(v) for k, v in t.items() if not isinstance(v, dict)}
        if current != values:
            return False
    return True


def _remove_tables(doc: Any, tables: list[Table]) -> bool:
    """Delete our handler tables, then any table on their path left empty."""
    removed = False
    for path, _ in tables:
        parent = _walk(doc, path[:-1], create=False)
        if parent is not None and path[-1] in parent:
            del parent[path[-1]]
            removed = True
    if removed:
        for path, _ in sorted(tables, key=lambda t: -len(t[0])):
            for depth in range(len(path) - 1, 0, -1):
                parent = _walk(doc, path[: depth - 1], create=False)
                key = path[depth - 1]
                if parent is not None and key in parent and len(parent[key]) == 0:
                    del parent[key]
    return removed


def _add_tables(doc: Any, tables: list[Table]) -> None:
    for path, values in tables:
        parent = _walk(doc, path[:-1], create=True)
        table = parent.get(path[-1])
        if table is None:
            table = tomlkit.table()
            parent[path[-1]] = table
        for k, v in values.items():
            table[k] = v


def _with_default_runc(doc: Any, tables: list[Table], version: int) -> list[Table]:
    """containerd 1.x replaces its default runtimes map with the file's: keep runc.

    A config that names no runtime (a blank placeholder) gets runc from containerd's
    built-in defaults; the moment we add a runtimes table, that default is gone and
    every non-Kata pod would fail. So we write containerd's own default runc entry too
    (it goes away with the rest of the edit on revert).
    """
    if _walk(doc, plugin_path(version), create=False) is not None:
        return tables
    runc = ((*plugin_path(version), "runc"), {"runtime_type": "io.containerd.runc.v2"})
    return [runc, *tables]


def _stale_tables(doc: Any, tables: list[Table], version: int, prefix: str) -> list[Table]:
    """Runtime tables an earlier install of this prefix wrote that are no longer wanted.

    Ours are recognised by their runtime_path under the install prefix (a shim dropped by
    an upgrade, or the default handler when defaultShim changed).
    """
    runtimes = _walk(doc, plugin_path(version), create=False)
    if runtimes is None:
        return []
    wanted = {path[-1] for path, _ in tables}
    return [
        ((*plugin_path(version), str(name)), {})
        for name, table in runtimes.items()
        if name not in wanted
        and isinstance(table, dict)
        and str(table.get("runtime_path", "")).startswith(f"{prefix}/")
    ]


def direct_edit(tables: list[Table], *, version: int, path: str, prefix: str) -> tuple[Any, Any]:
    """Render/unrender our handler tables in a config that is not ours.

    The config keeps exactly the handlers of the current install: tables of handlers an
    earlier install of the same prefix registered and this one no longer has go.
    """

    def render(raw: bytes | None) -> bytes | None:
        before = _meaning(raw, path)
        try:
            stale = _stale_tables(before, tables, version, prefix)
            if raw is not None and not stale and _has_tables(before, tables):
                return raw
        except _Layout as exc:
            raise _cannot_edit(path, str(exc)) from exc
        ours: list[Table] = []

        def change(doc: Any) -> None:
            _remove_tables(doc, stale + tables)
            wanted = _with_default_runc(doc, tables, version)
            if "version" not in doc and not before:
                doc.add("version", version)
                doc.add(tomlkit.nl())
            _add_tables(doc, wanted)
            ours.extend(stale + wanted)

        edited = _edit(path, raw, change)
        _check_meaning(path, before, edited, ours)
        return edited

    def unrender(raw: bytes) -> bytes | None:
        removed = False

        def change(doc: Any) -> None:
            nonlocal removed
            removed = _remove_tables(doc, tables)

        edited = _edit(path, raw, change, removing=True)
        return edited if removed else raw

    return render, unrender


def imports_edit(entry: str, *, version: int, path: str) -> tuple[Any, Any]:
    """Render/unrender keeping exactly one `imports` entry for our drop-in."""

    def render(raw: bytes | None) -> bytes | None:
        if raw is None:
            return f"version = {version}\nimports = [{json.dumps(entry)}]\n".encode()
        before = _meaning(raw, path)
        imports = before.get("imports", [])
        if not isinstance(imports, list):
            raise errors.HostError(f"{path}: `imports` is not a list")
        if entry in imports:
            return raw

        def change(doc: Any) -> None:
            current = doc.get("imports")
            if current is not None:
                current.append(entry)
                return
            if "version" not in doc and not before:
                doc.add("version", version)
            arr = tomlkit.array()
            arr.append(entry)
            doc.add("imports", arr)

        edited = _edit(path, raw, change)
        expected = {**before, "imports": [*imports, entry]}
        after = _edited_meaning(path, edited)
        if "version" not in before:
            after.pop("version", None)
        if after != expected:
            raise _cannot_edit(path, "tomlkit would not add the `imports` entry alone")
        return edited

    def unrender(raw: bytes) -> bytes | None:
        removed = False

        def change(doc: Any) -> None:
            nonlocal removed
            current = doc.get("imports")
            if not isinstance(current, tk_items.Array) or entry not in [_plain(v) for v in current]:
                return
            current.remove(entry)
            if len(current) == 0:
                del doc["imports"]
            removed = True

        edited = _edit(path, raw, change, removing=True)
        return edited if removed else raw

    return render, unrender


def _markers(cfg: config.InstallerConfig) -> tuple[str, str]:
    return (
        f"# BEGIN {cfg.install_name} (kata-deploy; do not edit this block)\n",
        f"# END {cfg.install_name} (kata-deploy)\n",
    )


def template_edit(cfg: config.InstallerConfig, body: str) -> tuple[Any, Any]:
    """k3s/rke2 config templates are Go templates: we own one marked block of text."""
    begin, end = _markers(cfg)
    block = begin + body.rstrip("\n") + "\n" + end

    def strip(text: str) -> tuple[str, bool]:
        start = text.find(begin)
        if start < 0:
            return text, False
        stop = text.find(end, start)
        if stop < 0:
            raise errors.HostError(f"the {cfg.install_name} block in the template has no END line")
        head, tail = text[:start], text[stop + len(end) :]
        if head.endswith("\n\n"):
            head = head[:-1]
        return head + tail, True

    def render(raw: bytes | None) -> bytes | None:
        text = TEMPLATE_BASE if raw is None else raw.decode()
        text, _ = strip(text)
        if not text.endswith("\n"):
            text += "\n"
        return (text + "\n" + block).encode()

    def unrender(raw: bytes) -> bytes | None:
        text, found = strip(raw.decode())
        if not found:
            return raw
        if text.strip() == TEMPLATE_BASE.strip():
            return None
        return text.encode()

    return render, unrender


def _glob_dir(runtime: Runtime, name: str) -> str | None:
    """A directory already imported by a glob in the main config, if any."""
    base = posixpath.dirname(runtime.config_path)
    for pattern in runtime.imports:
        full = pattern if pattern.startswith("/") else posixpath.join(base, pattern)
        if not any(c in full for c in "*?["):
            continue
        directory = posixpath.dirname(full)
        if ".." in directory.split("/") or any(c in directory for c in "*?["):
            # a directory we would have to guess (or climb to): import our file by name
            continue
        if fnmatch.fnmatchcase(posixpath.join(directory, name), full):
            return directory
    return None


def targets(
    runtime: Runtime, cfg: config.InstallerConfig, handlers: list[layout.Handler]
) -> list[Target]:
    name = drop_in_name(cfg)
    tables = handler_tables(cfg, handlers, runtime.config_version)

    def owned(path: str, content: bytes, what: str) -> Target:
        return Target(path, True, lambda _raw: content, lambda _raw: None, what)

    if runtime.mode is ConfigMode.IMPORTS:
        directory = _glob_dir(runtime, name)
        path = posixpath.join(directory or runtime.drop_in_dir, name)
        out = [owned(path, render_drop_in(cfg, tables, runtime.config_version), "drop-in")]
        if directory is None:
            render, unrender = imports_edit(
                path, version=runtime.config_version, path=runtime.config_path
            )
            out.append(Target(runtime.config_path, False, render, unrender, "imports entry"))
        return out
    if runtime.mode is ConfigMode.DROP_IN:
        path = posixpath.join(runtime.drop_in_dir, name)
        return [owned(path, render_drop_in(cfg, tables, runtime.config_version), "drop-in")]
    if runtime.mode is ConfigMode.TEMPLATE:
        render, unrender = template_edit(cfg, render_tables(tables))
        return [Target(runtime.template_path, False, render, unrender, "template block")]
    render, unrender = direct_edit(
        tables, version=runtime.config_version, path=runtime.config_path, prefix=cfg.prefix
    )
    return [Target(runtime.config_path, False, render, unrender, "handler tables")]
