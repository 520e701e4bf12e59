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
- uninstall removes the annotation and records KataRemoved.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
from typing import Any

import fakes
import pytest
from conftest import FIXTURES, NODE, MakeCtx, seed_host
from kata_installer import cli, errors, report, restart, stages

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
