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
from kata_installer import cli, errors, kube, markers, stages

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
    results = set(kube.annotations[NODE])
    assert results == {
        "katacontainers.io/kata-deploy.kata-deploy-ci-a",
        "katacontainers.io/kata-deploy.kata-deploy-ci-b",
    }
    # b's result goes; the label stays for a
    assert stages.run_revert(make_ctx(root, b), label) == "reverted"
    assert kube.labels[NODE][LABEL] == "true"
    assert set(kube.annotations[NODE]) == {"katacontainers.io/kata-deploy.kata-deploy-ci-a"}
    assert stages.run_revert(make_ctx(root, b), label) == "skipped"
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


# ---------------------------------------------------------------- label only when served
# (the node-truth issue: today's main labelled straight after `cri`, whatever the node
# reported, and revert-cri never waited for the handlers to go)


class ServingLater(fakes.FakeKube):
    """A kubelet that reports the restarted runtime's handlers after a few polls."""

    def __init__(self, handlers: list[str], *, after: int, ready: bool = True) -> None:
        super().__init__([NODE])
        self.final = handlers
        self.after = after
        self.polls = 0
        self.ready[NODE] = ready
        self.handlers[NODE] = ["", "runc"]

    def get_node(self, name: str) -> kube.NodeView:
        self.polls += 1
        if self.polls > self.after:
            self.handlers[NODE] = ["", "runc", *self.final]
        return super().get_node(name)


def _label_ctx(make_ctx: MakeCtx, root: pathlib.Path, fake: fakes.FakeKube) -> stages.Context:
    ctx = make_ctx(root, FIXTURES / "containerd2-noimports" / "installer.yaml")
    ctx.kube_factory = lambda: fake
    return ctx


@pytest.fixture
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    from kata_installer.stages import label

    monkeypatch.setattr(label, "POLL_SECONDS", 0.01)


@pytest.mark.usefixtures("fast_polls")
def test_label_waits_until_the_runtime_serves_every_handler(
    tmp_path: pathlib.Path, make_ctx: MakeCtx
) -> None:
    from kata_installer.stages import label

    root = seed_host("containerd2-noimports", tmp_path / "host")
    probe = _label_ctx(make_ctx, root, fakes.FakeKube([NODE]))
    wanted = label.expected_handlers(probe)
    assert "kata-qemu" in wanted
    fake = ServingLater(wanted, after=3)
    _, stage = stages.by_name("label")
    assert stages.run_apply(_label_ctx(make_ctx, root, fake), stage) == "applied"
    assert fake.polls > 3  # it waited for the kubelet
    assert fake.labels[NODE][LABEL] == "true"


@pytest.mark.usefixtures("fast_polls")
def test_label_times_out_naming_what_it_saw(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kata_installer.stages import label

    root = seed_host("containerd2-noimports", tmp_path / "host")
    fake = ServingLater(["kata-qemu"], after=10**9)
    ctx = _label_ctx(make_ctx, root, fake)
    ticks = iter(range(0, 10**6, 100))
    with pytest.raises(errors.HostError, match=r"waited 300s for Ready and the runtime serving .*"
                       r"runtimeHandlers=\['', 'runc'\]"):  # fmt: skip
        label.wait_for_node(
            ctx, NODE, "Ready and the runtime serving kata-qemu",
            lambda v: label.served(v, ["kata-qemu"]),
            clock=lambda: float(next(ticks)), sleep=lambda s: None,
        )  # fmt: skip
    assert LABEL not in fake.labels[NODE]


@pytest.mark.usefixtures("fast_polls")
def test_label_relies_on_ready_where_no_handlers_are_reported(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, caplog: pytest.LogCaptureFixture
) -> None:
    root = seed_host("containerd2-noimports", tmp_path / "host")
    fake = fakes.FakeKube([NODE])  # containerd 1.x: status.runtimeHandlers is empty
    _, stage = stages.by_name("label")
    with caplog.at_level("INFO"):
        assert stages.run_apply(_label_ctx(make_ctx, root, fake), stage) == "applied"
    assert "reports no runtime handlers" in caplog.text


@pytest.mark.usefixtures("fast_polls")
def test_label_waits_for_ready(tmp_path: pathlib.Path, make_ctx: MakeCtx) -> None:
    root = seed_host("containerd2-noimports", tmp_path / "host")

    class ReadyLater(fakes.FakeKube):
        polls = 0

        def get_node(self, name: str) -> kube.NodeView:
            self.polls += 1
            self.ready[NODE] = self.polls > 2
            return super().get_node(name)

    fake = ReadyLater([NODE])
    _, stage = stages.by_name("label")
    stages.run_apply(_label_ctx(make_ctx, root, fake), stage)
    assert fake.polls > 2 and fake.labels[NODE][LABEL] == "true"


@pytest.mark.usefixtures("fast_polls")
def test_revert_cri_waits_until_the_handlers_are_gone(
    tmp_path: pathlib.Path, make_ctx: MakeCtx
) -> None:
    root = seed_host("containerd2-noimports", tmp_path / "host")
    stages.install(make_ctx(root, FIXTURES / "containerd2-noimports" / "installer.yaml"))

    class DroppingLater(fakes.FakeKube):
        polls = 0

        def get_node(self, name: str) -> kube.NodeView:
            self.polls += 1
            self.handlers[NODE] = ["", "runc"] + (["kata-qemu"] if self.polls <= 3 else [])
            return super().get_node(name)

    fake = DroppingLater([NODE])
    _, stage = stages.by_name("revert-cri")
    assert stages.run_revert(_label_ctx(make_ctx, root, fake), stage) == "reverted"
    assert fake.polls > 3
