"""The one state file of an install: <prefix>/.kata-deploy-state.json.

It survives reboots (it lives with the files it describes) and holds:
  artifacts: the manifest of every file, symlink and directory the install wrote
  cri:       every runtime configuration file we own or edited, with the original
             bytes of the edited ones, so revert-cri can restore them exactly
Writes go through fsutil (atomic); a missing file means "not installed".
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from kata_installer import config, errors, fsutil, hostpaths, layout

VERSION = 1


def empty() -> dict[str, Any]:
    return {"version": VERSION, "artifacts": {}, "cri": {"entries": []}}


def encode(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def load_from(path: pathlib.Path) -> dict[str, Any] | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise errors.HostError(f"state file {path} is corrupt: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise errors.HostError(f"state file {path} has an unknown format")
    doc.setdefault("artifacts", {})
    doc.setdefault("cri", {"entries": []})
    return doc


def load(host: hostpaths.HostRoot, cfg: config.InstallerConfig) -> dict[str, Any] | None:
    return load_from(host.path(layout.state_path(cfg)))


def save(
    host: hostpaths.HostRoot,
    writer: fsutil.HostWriter,
    cfg: config.InstallerConfig,
    doc: dict[str, Any],
) -> None:
    writer.write_file(host.path(layout.state_path(cfg)), encode(doc), mode=0o644)


def other_installs(host: hostpaths.HostRoot, cfg: config.InstallerConfig) -> list[str]:
    """Prefixes of other kata-deploy installs on this host (other suffixes)."""
    opt = host.path("/opt")
    if not opt.is_dir():
        return []
    found = []
    for d in sorted(opt.iterdir()):
        name = d.name
        if name == cfg.install_name or not (name == "kata" or name.startswith("kata-")):
            continue
        if (d / layout.STATE_FILE).is_file():
            found.append(f"/opt/{name}")
    return found


def other_created_dirs(host: hostpaths.HostRoot, cfg: config.InstallerConfig) -> set[str]:
    """Directories other installs on this host created for their runtime configuration.

    A directory one install created and another one also uses is removed by whichever
    install is removed last, so each install inherits the others' claims.
    """
    dirs: set[str] = set()
    for prefix in other_installs(host, cfg):
        doc = load_from(host.path(f"{prefix}/{layout.STATE_FILE}"))
        for entry in (doc or {}).get("cri", {}).get("entries", []):
            dirs.update(entry.get("created_dirs", []))
    return dirs
