"""The one state file of an install: <prefix>/.kata-deploy-state.json, as typed data.

It survives reboots (it lives with the files it describes) and holds:
  artifacts: the manifest of every file, symlink and directory the install wrote
  cri:       every runtime configuration file we own or edited, with the original
             bytes of the edited ones, so revert-cri can restore them exactly, and the
             runtime restart a write still owes
The stages work on `State`; `decode`/`encode` are the only code that knows the JSON, and
its bytes stay those of every earlier release of the same VERSION (sorted keys, indent 1),
so the files already on nodes keep working. A file of the wrong shape is a HostError
naming it. Writes go through fsutil (atomic); a missing file means "not installed".
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import json
import pathlib
from typing import Any

from kata_installer import config, errors, fsutil, hostpaths, layout

VERSION = 1


class Kind(enum.StrEnum):
    """What a manifest path is."""

    FILE = "file"
    LINK = "link"
    DIR = "dir"


@dataclasses.dataclass(frozen=True)
class ManifestEntry:
    """One path the artifacts stage wrote under the prefix."""

    kind: Kind
    mode: int = 0  # file and dir
    sha256: str = ""  # file
    target: str = ""  # link


@dataclasses.dataclass(frozen=True)
class Artifacts:
    """What the artifacts stage installed."""

    prefix: str  # host path of the install prefix
    manifest: dict[str, ManifestEntry]  # by path relative to the prefix


@dataclasses.dataclass(frozen=True)
class CriEntry:
    """One runtime configuration file the cri stage wrote or edited."""

    path: str  # host path
    owned: bool  # ours entirely (revert removes it), or an edit of a file that is not ours
    what: str  # which part is ours: drop-in, imports entry, template block, ...
    original: bytes | None  # the bytes before our first write; None: there was no file
    created_dirs: tuple[str, ...]  # directories made on the way to it, outermost first
    written: str  # sha256 of the bytes we last wrote ("absent": we removed the file)


@dataclasses.dataclass
class CriState:
    """The cri stage's record, written ahead of every change it makes."""

    entries: list[CriEntry] = dataclasses.field(default_factory=list)
    unit: str | None = None  # the runtime's unit when the entries were applied
    restart_owed: str = ""  # unit whose restart an earlier write still owes, or ""

    def entry(self, path: str) -> CriEntry | None:
        return next((e for e in self.entries if e.path == path), None)

    def record(self, entry: CriEntry) -> None:
        """Add the entry, or replace the one for the same path in place."""
        for i, e in enumerate(self.entries):
            if e.path == entry.path:
                self.entries[i] = entry
                return
        self.entries.append(entry)


@dataclasses.dataclass
class State:
    """The whole state file."""

    artifacts: Artifacts | None = None  # None: no artifacts recorded
    cri: CriState = dataclasses.field(default_factory=CriState)


# --- the JSON mapping -------------------------------------------------------------------


def _manifest_json(entry: ManifestEntry) -> dict[str, str]:
    if entry.kind is Kind.FILE:
        return {"type": "file", "sha256": entry.sha256, "mode": f"{entry.mode:04o}"}
    if entry.kind is Kind.LINK:
        return {"type": "link", "target": entry.target}
    return {"type": "dir", "mode": f"{entry.mode:04o}"}


def _cri_entry_json(entry: CriEntry) -> dict[str, Any]:
    return {
        "path": entry.path,
        "owned": entry.owned,
        "what": entry.what,
        "original": None if entry.original is None else base64.b64encode(entry.original).decode(),
        "created_dirs": list(entry.created_dirs),
        "written": entry.written,
    }


def to_json(doc: State) -> dict[str, Any]:
    artifacts: dict[str, Any] = {}
    if doc.artifacts is not None:
        artifacts = {
            "prefix": doc.artifacts.prefix,
            "manifest": {rel: _manifest_json(e) for rel, e in doc.artifacts.manifest.items()},
        }
    cri: dict[str, Any] = {"entries": [_cri_entry_json(e) for e in doc.cri.entries]}
    if doc.cri.unit is not None:
        cri["unit"] = doc.cri.unit
    if doc.cri.restart_owed:
        cri["restart_owed"] = doc.cri.restart_owed
    return {"version": VERSION, "artifacts": artifacts, "cri": cri}


def encode(doc: State) -> bytes:
    return (json.dumps(to_json(doc), indent=1, sort_keys=True) + "\n").encode()


class _Corrupt(Exception):
    """A field of the wrong shape; decode() turns it into a HostError naming the file."""


def _get(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in obj:
        raise _Corrupt(f"{where}{key}: missing")
    value = obj[key]
    if not isinstance(value, kind):
        raise _Corrupt(f"{where}{key}: must be {kind.__name__}, got {value!r}")
    return value


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Corrupt(f"{where}: must be an object, got {value!r}")
    return value


def _mode(text: str, where: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise _Corrupt(f"{where}mode: {text!r} is not an octal mode") from None


def _manifest_entry(raw: Any, where: str) -> ManifestEntry:
    obj = _mapping(raw, where)
    where += "."
    kind = _get(obj, "type", str, where)
    if kind == Kind.FILE:
        return ManifestEntry(
            Kind.FILE,
            mode=_mode(_get(obj, "mode", str, where), where),
            sha256=_get(obj, "sha256", str, where),
        )
    if kind == Kind.LINK:
        return ManifestEntry(Kind.LINK, target=_get(obj, "target", str, where))
    if kind == Kind.DIR:
        return ManifestEntry(Kind.DIR, mode=_mode(_get(obj, "mode", str, where), where))
    raise _Corrupt(f"{where}type: {kind!r} is not file, link or dir")


def _artifacts(raw: Any) -> Artifacts | None:
    obj = _mapping(raw, "artifacts")
    if not obj:
        return None
    manifest = _mapping(_get(obj, "manifest", dict, "artifacts."), "artifacts.manifest")
    return Artifacts(
        prefix=_get(obj, "prefix", str, "artifacts."),
        manifest={
            str(rel): _manifest_entry(e, f"artifacts.manifest[{rel!r}]")
            for rel, e in manifest.items()
        },
    )


def _cri_entry(raw: Any, where: str) -> CriEntry:
    obj = _mapping(raw, where)
    where += "."
    if "original" not in obj:
        raise _Corrupt(f"{where}original: missing")
    original: bytes | None = None
    if obj["original"] is not None:
        if not isinstance(obj["original"], str):
            raise _Corrupt(f"{where}original: must be base64 text or null")
        try:
            original = base64.b64decode(obj["original"], validate=True)
        except binascii.Error as exc:
            raise _Corrupt(f"{where}original: not base64: {exc}") from None
    dirs = _get(obj, "created_dirs", list, where)
    if not all(isinstance(d, str) for d in dirs):
        raise _Corrupt(f"{where}created_dirs: must be a list of paths")
    return CriEntry(
        path=_get(obj, "path", str, where),
        owned=_get(obj, "owned", bool, where),
        what=_get(obj, "what", str, where),
        original=original,
        created_dirs=tuple(dirs),
        written=_get(obj, "written", str, where),
    )


def _cri(raw: Any) -> CriState:
    obj = _mapping(raw, "cri")
    entries = obj.get("entries", [])
    if not isinstance(entries, list):
        raise _Corrupt(f"cri.entries: must be a list, got {entries!r}")
    unit = obj.get("unit")
    if unit is not None and not isinstance(unit, str):
        raise _Corrupt(f"cri.unit: must be str, got {unit!r}")
    owed = obj.get("restart_owed") or ""
    if not isinstance(owed, str):
        raise _Corrupt(f"cri.restart_owed: must be str, got {owed!r}")
    return CriState(
        entries=[_cri_entry(e, f"cri.entries[{i}]") for i, e in enumerate(entries)],
        unit=unit,
        restart_owed=owed,
    )


def decode(raw: bytes, path: pathlib.Path) -> State:
    """Parse a state file's bytes; HostError naming `path` if they are not one.

    A missing `artifacts` or `cri` section is an empty one; everything inside a section
    must be complete.
    """
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise errors.HostError(f"state file {path} is corrupt: {exc}") from exc
    if not isinstance(doc, dict):
        raise errors.HostError(f"state file {path} is corrupt: not a JSON object")
    if doc.get("version") != VERSION:
        raise errors.HostError(
            f"state file {path} has format version {doc.get('version')!r}; this installer "
            f"reads version {VERSION}"
        )
    try:
        return State(artifacts=_artifacts(doc.get("artifacts", {})), cri=_cri(doc.get("cri", {})))
    except _Corrupt as exc:
        raise errors.HostError(f"state file {path} is corrupt: {exc}") from None


# --- the file on the host ---------------------------------------------------------------


def load_from(path: pathlib.Path) -> State | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    return decode(raw, path)


def load(host: hostpaths.HostRoot, cfg: config.InstallerConfig) -> State | None:
    return load_from(host.path(layout.state_path(cfg)))


def save(
    host: hostpaths.HostRoot,
    writer: fsutil.HostWriter,
    cfg: config.InstallerConfig,
    doc: State,
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
        for entry in doc.cri.entries if doc else []:
            dirs.update(entry.created_dirs)
    return dirs
