"""label / unlabel against a fake of kube.Kube, and the DaemonSet lifecycle.

Cases: label then skip; unlabel keeps the label while another install remains;
daemonset on SIGTERM keeps Kata during a rolling update and uninstalls when the
DaemonSet is gone or being deleted; dry-run changes nothing.
"""

from __future__ import annotations

import pathlib
import signal

import fakes
import pytest
from conftest import FIXTURES, NODE, MakeCtx, diff, seed_host, snapshot
from kata_installer import cli, kube, markers, stages

LABEL = "katacontainers.io/kata-runtime"


def test_label_and_unlabel(tmp_path: pathlib.Path, make_ctx: MakeCtx, kube: fakes.FakeKube) -> None:
    root = seed_host("containerd2-noimports", tmp_path / "host")
    cfg = FIXTURES / "containerd2-noimports" / "installer.yaml"
    _, label = stages.by_name("label")
    assert stages.run_apply(make_ctx(root, cfg), label) == "applied"
    assert kube.labels[NODE][LABEL] == "true"
    assert stages.run_apply(make_ctx(root, cfg), label) == "skipped"
    assert stages.run_revert(make_ctx(root, cfg), label) == "reverted"
    assert LABEL not in kube.labels[NODE]
    assert stages.run_revert(make_ctx(root, cfg), label) == "skipped"


def test_unlabel_keeps_label_while_other_install_remains(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, kube: fakes.FakeKube
) -> None:
    root = seed_host("two-suffixes", tmp_path / "host")
    a, b = (
        FIXTURES / "two-suffixes" / "installer-a.yaml",
        FIXTURES / "two-suffixes" / "installer-b.yaml",
    )
    stages.install(make_ctx(root, a))
    stages.install(make_ctx(root, b))
    _, label = stages.by_name("unlabel")
    assert stages.run_revert(make_ctx(root, b), label) == "skipped"
    assert kube.labels[NODE][LABEL] == "true"
    stages.uninstall(make_ctx(root, b))
    assert kube.labels[NODE][LABEL] == "true"
    stages.uninstall(make_ctx(root, a))
    assert LABEL not in kube.labels[NODE]


@pytest.mark.parametrize(
    ("ds", "uninstalled"),
    [
        (kube.DaemonSetState("kata-deploy", deleting=False), False),
        (kube.DaemonSetState("kata-deploy", deleting=True), True),
        (None, True),
    ],
)
def test_daemonset_lifecycle(
    tmp_path: pathlib.Path,
    make_ctx: MakeCtx,
    kube: fakes.FakeKube,
    ds: kube.DaemonSetState | None,
    uninstalled: bool,
) -> None:
    root = seed_host("containerd2-confd", tmp_path / "host")
    original = snapshot(root)
    ctx = make_ctx(
        root,
        FIXTURES / "containerd2-confd" / "installer.yaml",
        daemonset_name="kata-deploy",
        namespace="kube-system",
    )
    if ds is not None:
        kube.daemonsets[("kube-system", "kata-deploy")] = ds

    def wait() -> int:
        assert markers.is_ready(ctx.host, ctx.cfg.install_name)
        return signal.SIGTERM

    cli.daemonset(ctx, wait=wait)
    assert not markers.is_ready(ctx.host, ctx.cfg.install_name)
    assert (diff(original, snapshot(root)) == []) == uninstalled
    assert (LABEL not in kube.labels[NODE]) == uninstalled


def test_dry_run_changes_nothing(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, kube: fakes.FakeKube
) -> None:
    root = seed_host("containerd2-noimports", tmp_path / "host")
    before = snapshot(root)
    ctx = make_ctx(root, FIXTURES / "containerd2-noimports" / "installer.yaml", dry_run=True)
    for st in stages.STAGES:
        if st.name in ("artifacts", "label"):
            stages.run_apply(ctx, st)
    assert ctx.writer.changes > 0
    assert diff(before, snapshot(root)) == []
    assert LABEL not in kube.labels[NODE]
