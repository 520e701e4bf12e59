"""Lifecycle of every fixture host: install, compare with golden files, install again
(nothing changes: bytes, modes, mtimes; no restart requested), uninstall (the tree equals
the original byte for byte, and no marker is left in /run); a job-mode cleanup (its three
revert stages alone) leaves no marker in /run either.

Cases: every directory under fixtures/hosts/ (see each case.yaml). Golden files live in
fixtures/hosts/<case>/golden/: every host file outside /opt and /run that the install
creates or changes, plus opt-tree.txt listing each install prefix. Regenerate them with
KATA_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import os
import pathlib
import shutil

import fakes
import pytest
from conftest import CASES, FIXTURES, NODE, MakeCtx, case_meta, diff, seed_host, snapshot
from kata_installer import stages

UPDATE = os.environ.get("KATA_UPDATE_GOLDEN") == "1"


def _golden(case: str, before: dict, after: dict, root: pathlib.Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for rel, entry in sorted(after.items()):
        if rel.startswith("opt/") or entry[0] != "file" or before.get(rel) == entry:
            continue
        out[rel] = entry[1]
    listing = [
        f"{rel} {entry[0]}" + (f" -> {entry[1]}" if entry[0] == "link" else "")
        for rel, entry in sorted(after.items())
        if rel.startswith("opt/")
    ]
    out["opt-tree.txt"] = ("\n".join(listing) + "\n").encode()
    return out


def _markers(root: pathlib.Path) -> list[str]:
    """What is in the host's /run/kata-deploy (the snapshots leave /run out). The
    directory itself stays: the chart's hostPath volume makes it, and the host lock of
    every install (lock.py) lives in it."""
    return sorted(str(p.relative_to(root)) for p in (root / "run/kata-deploy").rglob("*"))


def test_a_cleanup_job_leaves_no_marker_in_run(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, kube: fakes.FakeKube
) -> None:
    # job mode: the cleanup Job runs only unlabel, revert-cri and remove-artifacts, each
    # a process of its own; host-check's marker from the install goes with the last one
    root = seed_host("containerd2-noimports", tmp_path / "host")
    cfg = FIXTURES / "containerd2-noimports" / "installer.yaml"
    stages.install(make_ctx(root, cfg))
    assert "run/kata-deploy/kata/host-check.done" in _markers(root)
    for name in ("unlabel", "revert-cri", "remove-artifacts"):
        stages.run_revert(make_ctx(root, cfg), stages.by_name(name)[1])
        left = _markers(root)
        assert ("run/kata-deploy/kata/host-check.done" in left) == (name != "remove-artifacts")
    assert _markers(root) == []


@pytest.mark.parametrize("case", CASES)
def test_lifecycle(
    case: str, tmp_path: pathlib.Path, make_ctx: MakeCtx, kube: fakes.FakeKube
) -> None:
    meta = case_meta(case)
    root = seed_host(case, tmp_path / "host")
    original = snapshot(root)

    for name in meta["installs"]:
        ctx = make_ctx(root, FIXTURES / case / name)
        outcome = stages.install(ctx)
        assert outcome["host-check"] == "passed"
        assert outcome["cri"] == "applied"
    assert kube.labels[NODE]["katacontainers.io/kata-runtime"] == "true"

    installed = snapshot(root, mtimes=True)
    golden = _golden(case, original, snapshot(root), root)
    gdir = FIXTURES / case / "golden"
    if UPDATE:
        shutil.rmtree(gdir, ignore_errors=True)
        for rel, data in golden.items():
            (gdir / rel).parent.mkdir(parents=True, exist_ok=True)
            (gdir / rel).write_bytes(data)
    expected = {str(p.relative_to(gdir)): p.read_bytes() for p in gdir.rglob("*") if p.is_file()}
    assert sorted(golden) == sorted(expected), "files changed by install differ from golden/"
    for rel, data in golden.items():
        assert data == expected[rel], f"{case}: {rel} differs from golden/{rel}"

    # idempotent re-run: nothing written, nothing restarted
    for name in meta["installs"]:
        ctx = make_ctx(root, FIXTURES / case / name)
        outcome = stages.install(ctx)
        assert outcome == {
            "host-check": "passed",
            "artifacts": "skipped",
            "cri": "skipped",
            "label": "skipped",
        }
        assert ctx.restarter.requests == []
        assert ctx.writer.changes == 0
    assert diff(installed, snapshot(root, mtimes=True)) == []

    for i, name in enumerate(meta["uninstall"]):
        ctx = make_ctx(root, FIXTURES / case / name)
        outcome = stages.uninstall(ctx)
        assert outcome["revert-cri"] == "reverted"
        assert outcome["remove-artifacts"] == "reverted"
        last = i == len(meta["uninstall"]) - 1
        assert ("katacontainers.io/kata-runtime" in kube.labels[NODE]) == (not last)
    assert diff(original, snapshot(root)) == []
    assert _markers(root) == []  # no marker left in /run either

    # uninstall again: safe, changes nothing
    for name in meta["uninstall"]:
        ctx = make_ctx(root, FIXTURES / case / name)
        assert set(stages.uninstall(ctx).values()) == {"skipped"}
    assert diff(original, snapshot(root)) == []


def test_restart_requested_once_when_config_changes(
    tmp_path: pathlib.Path, make_ctx: MakeCtx
) -> None:
    root = seed_host("containerd2-noimports", tmp_path / "host")
    ctx = make_ctx(root, FIXTURES / "containerd2-noimports" / "installer.yaml")
    stages.install(ctx)
    assert ctx.restarter.requests == ["containerd"]
    ctx = make_ctx(root, FIXTURES / "containerd2-noimports" / "installer.yaml")
    stages.uninstall(ctx)
    assert ctx.restarter.requests == ["containerd"]


def test_comments_and_formatting_survive(tmp_path: pathlib.Path, make_ctx: MakeCtx) -> None:
    case = "containerd17-comments"
    root = seed_host(case, tmp_path / "host")
    before = (root / "etc/containerd/config.toml").read_text()
    stages.install(make_ctx(root, FIXTURES / case / "installer.yaml"))
    after = (root / "etc/containerd/config.toml").read_text()
    for line in before.splitlines():
        assert line in after.splitlines(), f"lost line: {line!r}"
    assert "kata-qemu" in after


def test_k3s_template_is_created_from_base(tmp_path: pathlib.Path, make_ctx: MakeCtx) -> None:
    root = seed_host("k3s", tmp_path / "host")
    ctx = make_ctx(root, FIXTURES / "k3s" / "installer.yaml")
    stages.install(ctx)
    tmpl = root / "var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.tmpl"
    assert tmpl.read_text().startswith('{{ template "base" . }}\n')
    assert ctx.restarter.requests == ["k3s-agent"]


@pytest.mark.parametrize(
    ("case", "config_file"),
    [("containerd16-fresh", "etc/containerd/config.toml"),
     ("containerd2-noimports", "etc/containerd/conf.d/50-kata.toml")],
)  # fmt: skip
def test_upgrade_that_drops_a_shim_and_the_default_removes_them(
    case: str, config_file: str, tmp_path: pathlib.Path, make_ctx: MakeCtx
) -> None:
    """Owned entries are reconciled, never only appended (the node-truth issue)."""
    root = seed_host(case, tmp_path / "host")
    full = tmp_path / "full.yaml"
    full.write_text(
        "version: 2\nshims:\n"
        "  qemu: {supportedArches: [amd64]}\n"
        "  clh: {supportedArches: [amd64]}\n"
        "defaultShim: {amd64: qemu}\n"
    )
    fewer = tmp_path / "fewer.yaml"
    fewer.write_text("version: 2\nshims:\n  qemu: {supportedArches: [amd64]}\n")
    stages.install(make_ctx(root, full))
    text = (root / config_file).read_text()
    assert "kata-clh" in text and "runtimes.kata]" in text
    assert (root / "opt/kata/share/defaults/kata-containers/runtimes/clh").is_dir()

    stages.install(make_ctx(root, fewer))
    text = (root / config_file).read_text()
    assert "kata-qemu" in text
    assert "kata-clh" not in text, "the dropped shim's handler is still registered"
    assert "runtimes.kata]" not in text, "the dropped default handler is still registered"
    assert not (root / "opt/kata/share/defaults/kata-containers/runtimes/clh").exists()

    stages.uninstall(make_ctx(root, fewer))
    original = seed_host(case, tmp_path / "original")
    assert diff(snapshot(original), snapshot(root)) == []
