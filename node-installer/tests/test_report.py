"""The node's result annotation and Events (report.py), and the node identity guard.

Cases:
- the annotation key: katacontainers.io/kata-deploy.<release>[-<suffix>], its name part
  kept within 63 characters however long the release;
- an install leaves {"outcome": "installed", "configHash": ...} on the node with the
  label, in one uid-guarded patch, and a KataInstalled Event (in "default", the only
  namespace the API takes Events about a Node in);
- a failed stage leaves {"outcome": "failed", "stage", "reason"} and a KataInstallFailed
  Warning Event, and no label (today's main left only Job status and stdout);
- a node deleted and re-created under the same name between the identity read and the
  label is not touched: Conflict, no label (today's main merge-patched it by name);
- a changed configuration hash makes `label` run again (its check reads the result);
- uninstall removes the annotation and records KataRemoved;
- DaemonSet mode keeps it as a marker for the whole host change: "installing" before the
  first host write, "removing" from unlabel until the last revert is done, then gone; an
  uninstall cut short after unlabel leaves "removing" (the chart's sweep finds the node
  by it), and a node that already has a result keeps it when the pod starts again.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
from typing import Any

import fakes
import pytest
from conftest import FIXTURES, NODE, MakeCtx, diff, seed_host, snapshot
from kata_installer import cli, errors, report, restart, stages
from kata_installer import kube as kube_api

CASE = "containerd2-noimports"
LABEL = "katacontainers.io/kata-runtime"
KEY = "katacontainers.io/kata-deploy.rel"


def _ctx(make_ctx: MakeCtx, root: pathlib.Path, **kw: Any) -> stages.Context:
    kw.setdefault("release", "rel")
    kw.setdefault("namespace", "kata-system")
    kw.setdefault("config_hash", "0123456789abcdef")
    return make_ctx(root, FIXTURES / CASE / "installer.yaml", **kw)


def _result(kube: fakes.FakeKube) -> dict[str, Any]:
    return dict(json.loads(kube.annotations[NODE][KEY]))


def test_annotation_key() -> None:
    assert report.annotation_key("rel", "") == KEY
    assert report.annotation_key("rel", "ci") == KEY + "-ci"
    long = report.annotation_key("r" * 53, "s" * 32)
    name = long.removeprefix("katacontainers.io/")
    assert len(name) <= 63 and name.startswith("kata-deploy.rrr")
    assert long != report.annotation_key("r" * 53, "s" * 31)


def test_install_records_the_result_with_the_label(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, kube: fakes.FakeKube
) -> None:
    root = seed_host(CASE, tmp_path / "host")
    cli.run_command(_ctx(make_ctx, root), "install")
    assert kube.labels[NODE][LABEL] == "true"
    result = _result(kube)
    assert result["outcome"] == "installed" and result["configHash"] == "0123456789abcdef"
    assert "stage" not in result
    patches = [c for c in kube.calls if c[0] == "patch_node"]
    assert len(patches) == 1, "label and result must be one guarded patch"
    assert kube.events == [("default", NODE, "KataInstalled", kube.events[0][3], False)]
    assert "kata-qemu" in kube.events[0][3]


def test_failed_stage_is_recorded_on_the_node(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, kube: fakes.FakeKube
) -> None:
    root = seed_host(CASE, tmp_path / "host")
    ctx = _ctx(make_ctx, root, restart="systemd")

    def refuse(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 1, "", "Job for containerd.service failed.")

    ctx.restarter = restart.Restarter("systemd", ctx.host, run=refuse)
    with pytest.raises(errors.HostError):
        cli.run_command(ctx, "install")
    result = _result(kube)
    assert result["outcome"] == "failed" and result["stage"] == "cri"
    assert "systemctl restart containerd failed" in result["reason"]
    assert LABEL not in kube.labels[NODE]
    (ns, node, reason, message, warning) = kube.events[-1]
    assert (ns, node, reason, warning) == ("default", NODE, "KataInstallFailed", True)
    assert "stage cri failed" in message


def test_a_failure_keeps_the_annotations_others_added_since_the_first_read(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, kube: fakes.FakeKube
) -> None:
    root = seed_host(CASE, tmp_path / "host")
    ctx = _ctx(make_ctx, root)
    assert ctx.identity().annotations is None  # no annotations map when first read
    kube.annotations[NODE] = {"example.com/other": "kept"}
    report.failed(ctx, "cri", errors.HostError("boom"), removing=False)
    assert kube.annotations[NODE]["example.com/other"] == "kept"
    assert _result(kube)["outcome"] == "failed"


def test_recreated_node_is_not_touched(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, kube: fakes.FakeKube
) -> None:
    root = seed_host(CASE, tmp_path / "host")
    ctx = _ctx(make_ctx, root)
    stages.run_apply(ctx, stages.by_name("host-check")[1])
    ctx.identity()  # the run reads its node once
    kube.uids[NODE] = "uid-of-a-new-node"  # deleted and re-created under the same name
    with pytest.raises(errors.Conflict, match="re-created"):
        stages.install(ctx)
    assert LABEL not in kube.labels[NODE]
    assert KEY not in kube.annotations.get(NODE, {})


def test_changed_configuration_runs_label_again(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, kube: fakes.FakeKube
) -> None:
    root = seed_host(CASE, tmp_path / "host")
    stages.install(_ctx(make_ctx, root))
    _, label = stages.by_name("label")
    assert stages.run_apply(_ctx(make_ctx, root), label) == "skipped"
    assert (
        stages.run_apply(_ctx(make_ctx, root, config_hash="fedcba9876543210"), label) == "applied"
    )
    assert _result(kube)["configHash"] == "fedcba9876543210"


def test_uninstall_removes_the_result(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, kube: fakes.FakeKube
) -> None:
    root = seed_host(CASE, tmp_path / "host")
    cli.run_command(_ctx(make_ctx, root), "install")
    cli.run_command(_ctx(make_ctx, root), "uninstall")
    assert KEY not in kube.annotations[NODE] and LABEL not in kube.labels[NODE]
    assert kube.events[-1][2] == "KataRemoved"
    # job mode's cleanup Job: its unlabel container removes both at once
    cli.run_command(_ctx(make_ctx, root), "install")
    cli.run_command(_ctx(make_ctx, root), "unlabel")
    assert KEY not in kube.annotations[NODE] and LABEL not in kube.labels[NODE]


def _ds_ctx(make_ctx: MakeCtx, root: pathlib.Path) -> stages.Context:
    return _ctx(make_ctx, root, daemonset_name="kata-deploy")


def _deleting(kube: fakes.FakeKube, deleting: bool = True) -> None:
    kube.daemonsets[("kata-system", "kata-deploy")] = kube_api.DaemonSetState(
        "kata-deploy", deleting=deleting
    )


def test_daemonset_marks_the_node_before_changing_the_host(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, kube: fakes.FakeKube
) -> None:
    root = seed_host(CASE, tmp_path / "host")
    before = snapshot(root)
    ctx = _ds_ctx(make_ctx, root)
    ctx.stop.set()  # a SIGTERM right after the pod started: no stage runs
    with pytest.raises(errors.Terminated):
        cli.daemonset(ctx, wait=lambda: 15)
    assert diff(before, snapshot(root)) == []
    assert _result(kube)["outcome"] == "installing"

    seen: list[str] = []

    def wait() -> int:
        seen.append(_result(kube)["outcome"])
        _deleting(kube)
        return 15

    cli.daemonset(_ds_ctx(make_ctx, root), wait=wait)
    assert seen == ["installed"]
    assert KEY not in kube.annotations[NODE] and LABEL not in kube.labels[NODE]
    assert diff(before, snapshot(root)) == []
    assert kube.events[-1][2] == "KataRemoved"


def test_daemonset_keeps_an_existing_result_when_its_pod_starts_again(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, kube: fakes.FakeKube
) -> None:
    root = seed_host(CASE, tmp_path / "host")
    cli.run_command(_ctx(make_ctx, root), "install")
    patches = len([c for c in kube.calls if c[0] == "patch_node"])
    _deleting(kube, False)
    cli.daemonset(_ds_ctx(make_ctx, root), wait=lambda: 15)  # a restart: the DaemonSet stays
    assert _result(kube)["outcome"] == "installed"
    assert len([c for c in kube.calls if c[0] == "patch_node"]) == patches


def test_daemonset_uninstall_cut_short_leaves_removing(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, kube: fakes.FakeKube
) -> None:
    root = seed_host(CASE, tmp_path / "host")
    cli.run_command(_ctx(make_ctx, root), "install")
    ctx = _ds_ctx(make_ctx, root)
    ctx.keep_result = True
    assert stages.run_revert(ctx, stages.by_name("unlabel")[1]) == "reverted"
    assert LABEL not in kube.labels[NODE]
    assert _result(kube)["outcome"] == "removing"  # the pod dies here: the node says so
    assert stages.run_revert(ctx, stages.by_name("unlabel")[1]) == "skipped"

    # what the chart's sweep runs there: job mode's cleanup stages
    for name in ("unlabel", "revert-cri", "remove-artifacts"):
        cli.run_command(_ctx(make_ctx, root), name)
    assert KEY not in kube.annotations[NODE]
