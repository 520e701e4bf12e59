"""The state file as typed data, and its JSON kept byte for byte.

Cases: a file as earlier installers wrote it decodes and re-encodes to the same bytes;
a State round-trips through encode/decode; load/save through the host root; a missing
file is "not installed"; missing sections are empty; corrupt JSON, a non-object, an
unknown or missing version, missing or mistyped fields, bad base64 and a bad mode each
raise a HostError naming the file (and the field); record() replaces an entry in place;
other installs' created directories are read from their state files.
"""

from __future__ import annotations

import pathlib

import pytest
from conftest import FIXTURES, MakeCtx, seed_host
from kata_installer import errors, state

# As the installer has written it since VERSION 1: sorted keys, indent 1, base64 originals.
WRITTEN = b"""{
 "artifacts": {
  "manifest": {
   "bin": {
    "mode": "0755",
    "type": "dir"
   },
   "bin/containerd-shim-kata-v2": {
    "mode": "0755",
    "sha256": "aa",
    "type": "file"
   },
   "bin/kata-runtime": {
    "target": "containerd-shim-kata-v2",
    "type": "link"
   }
  },
  "prefix": "/opt/kata"
 },
 "cri": {
  "entries": [
   {
    "created_dirs": [
     "/etc/containerd/conf.d"
    ],
    "original": null,
    "owned": true,
    "path": "/etc/containerd/conf.d/50-kata.toml",
    "what": "drop-in",
    "written": "bb"
   },
   {
    "created_dirs": [],
    "original": "dmVyc2lvbiA9IDMK",
    "owned": false,
    "path": "/etc/containerd/config.toml",
    "what": "imports entry",
    "written": "cc"
   }
  ],
  "restart_owed": "containerd",
  "unit": "containerd"
 },
 "version": 1
}
"""
PATH = pathlib.Path("/host/opt/kata/.kata-deploy-state.json")


def test_a_written_file_decodes_to_types_and_encodes_to_the_same_bytes() -> None:
    doc = state.decode(WRITTEN, PATH)
    assert doc.artifacts is not None
    assert doc.artifacts.prefix == "/opt/kata"
    assert doc.artifacts.manifest["bin"] == state.ManifestEntry(state.Kind.DIR, mode=0o755)
    assert doc.artifacts.manifest["bin/kata-runtime"].target == "containerd-shim-kata-v2"
    drop_in, imports = doc.cri.entries
    assert drop_in.owned and drop_in.original is None
    assert drop_in.created_dirs == ("/etc/containerd/conf.d",)
    assert imports.original == b"version = 3\n"
    assert doc.cri.unit == "containerd" and doc.cri.restart_owed == "containerd"
    assert state.encode(doc) == WRITTEN


def test_a_state_round_trips() -> None:
    doc = state.State(
        artifacts=state.Artifacts(
            prefix="/opt/kata-ci",
            manifest={"f": state.ManifestEntry(state.Kind.FILE, mode=0o4755, sha256="dd")},
        ),
        cri=state.CriState(
            entries=[
                state.CriEntry(
                    path="/etc/crio/crio.conf.d/50-kata-ci.toml",
                    owned=False,
                    what="template block",
                    original=b"\x00\xff binary\n",
                    created_dirs=("/a", "/a/b"),
                    written="absent",
                )
            ],
            unit="crio",
        ),
    )
    assert state.decode(state.encode(doc), PATH) == doc


def test_an_empty_state_encodes_empty_sections() -> None:
    assert state.encode(state.State()) == (
        b'{\n "artifacts": {},\n "cri": {\n  "entries": []\n },\n "version": 1\n}\n'
    )
    assert state.decode(state.encode(state.State()), PATH) == state.State()


def test_missing_sections_are_empty() -> None:
    assert state.decode(b'{"version": 1}', PATH) == state.State()
    assert state.decode(b'{"version": 1, "cri": {}}', PATH) == state.State()


def test_record_replaces_the_entry_of_the_same_path_in_place() -> None:
    cri = state.decode(WRITTEN, PATH).cri
    first = cri.entries[0]
    newer = state.CriEntry(first.path, True, "drop-in", None, (), "ee")
    cri.record(newer)
    assert cri.entries[0] == newer and len(cri.entries) == 2
    assert cri.entry(first.path) == newer
    assert cri.entry("/nowhere") is None


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"{not json", "is corrupt: Expecting property name"),
        (b"[]", "is corrupt: not a JSON object"),
        (b'{"version": 2}', "has format version 2; this installer reads version 1"),
        (b'{"artifacts": {}}', "has format version None"),
        (b'{"version": 1, "artifacts": []}', "artifacts: must be an object"),
        (b'{"version": 1, "artifacts": {"prefix": "/opt/kata"}}', "artifacts.manifest: missing"),
        (
            b'{"version": 1, "artifacts": {"prefix": "/opt/kata", "manifest": {"x": {}}}}',
            "artifacts.manifest['x'].type: missing",
        ),
        (
            b'{"version": 1, "artifacts": {"prefix": "/o", "manifest": '
            b'{"x": {"type": "file", "mode": "rw", "sha256": "a"}}}}',
            "artifacts.manifest['x'].mode: 'rw' is not an octal mode",
        ),
        (
            b'{"version": 1, "artifacts": {"prefix": "/o", "manifest": {"x": {"type": "fifo"}}}}',
            "artifacts.manifest['x'].type: 'fifo' is not file, link or dir",
        ),
        (b'{"version": 1, "cri": {"entries": {}}}', "cri.entries: must be a list"),
        (
            b'{"version": 1, "cri": {"entries": [{"path": "/x"}]}}',
            "cri.entries[0].original: missing",
        ),
        (
            b'{"version": 1, "cri": {"entries": [{"path": "/x", "original": null, "owned": "yes",'
            b' "what": "", "created_dirs": [], "written": ""}]}}',
            "cri.entries[0].owned: must be bool, got 'yes'",
        ),
        (
            b'{"version": 1, "cri": {"entries": [{"path": "/x", "original": "%%%", "owned": true,'
            b' "what": "", "created_dirs": [], "written": ""}]}}',
            "cri.entries[0].original: not base64",
        ),
        (
            b'{"version": 1, "cri": {"entries": [{"path": "/x", "original": null, "owned": true,'
            b' "what": "", "created_dirs": [], "written": 1}]}}',
            "cri.entries[0].written: must be str",
        ),
        (b'{"version": 1, "cri": {"restart_owed": 3}}', "cri.restart_owed: must be str"),
    ],
)
def test_a_bad_file_is_a_host_error_naming_it(raw: bytes, needle: str) -> None:
    with pytest.raises(errors.HostError) as exc:
        state.decode(raw, PATH)
    assert str(PATH) in str(exc.value)
    assert needle in str(exc.value)


def test_load_and_save_through_the_host_root(tmp_path: pathlib.Path, make_ctx: MakeCtx) -> None:
    root = seed_host("containerd2-fresh", tmp_path / "host")
    ctx = make_ctx(root, FIXTURES / "containerd2-fresh" / "installer.yaml")
    assert state.load(ctx.host, ctx.cfg) is None  # not installed
    (root / "opt/kata").mkdir()
    doc = state.decode(WRITTEN, PATH)
    state.save(ctx.host, ctx.writer, ctx.cfg, doc)
    assert (root / "opt/kata/.kata-deploy-state.json").read_bytes() == WRITTEN
    assert state.load(ctx.host, ctx.cfg) == doc
    (root / "opt/kata/.kata-deploy-state.json").write_bytes(b"{")
    with pytest.raises(errors.HostError, match=r"state file .*/opt/kata/\.kata-deploy-state"):
        state.load(ctx.host, ctx.cfg)


def test_other_installs_created_dirs(tmp_path: pathlib.Path, make_ctx: MakeCtx) -> None:
    root = seed_host("containerd2-fresh", tmp_path / "host")
    ctx = make_ctx(root, FIXTURES / "containerd2-fresh" / "installer.yaml")
    (root / "opt/kata-other").mkdir()
    (root / "opt/kata-other/.kata-deploy-state.json").write_bytes(WRITTEN)
    (root / "opt/unrelated").mkdir()
    assert state.other_installs(ctx.host, ctx.cfg) == ["/opt/kata-other"]
    assert state.other_created_dirs(ctx.host, ctx.cfg) == {"/etc/containerd/conf.d"}
