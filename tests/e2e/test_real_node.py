"""The chart's whole life on a real node: real images, a real kubelet, containerd and runc.

The module's cluster has one real worker node (tests/cluster/realnode.py) and no
simulated ones, so the scheduler puts every pod there: the dispatcher hook, the installer
DaemonSet's pod and the per-node Jobs all run as real containers pulled by the node's
containerd from the cluster's registry, where `make images`' builds of
images/*/Dockerfile were pushed. The chart itself is installed from that registry
(`helm push` to oci://, `helm show values` and `helm install` from the reference).

Cases (each runs alone: `pytest tests/e2e/test_real_node.py -k NAME`):
- test_daemonset_mode_lifecycle: install; the installer pod is privileged with hostPID
  on the real node; it restarts the node's containerd, whose handlers then show in
  `status.runtimeHandlers`, and labels the node; a `kata-qemu` pod reaches the Kata shim
  we installed; `helm upgrade` disabling a shim removes that handler; `helm uninstall`
  removes every handler and the label and leaves the node's /etc and /opt byte-identical;
- test_job_mode_lifecycle: the dispatcher hook runs as a real pod whose securityContext
  the kernel enforces (uid 65532, no capabilities, seccomp, read-only root), the per-node
  Job's init containers run in order on the real node; same handler, label, kata pod and
  byte-identical checks through uninstall;
- test_chart_from_oci_registry: `helm show values` from the OCI reference is the chart's
  values.yaml;
- test_refused_restart_is_paid_by_the_next_upgrade: the node's service manager refuses
  the installer's containerd restart once; the per-node Job fails and the node stays
  unlabelled; the next `helm upgrade` pays the owed restart (no file changes) and labels
  the node, its handlers listed at that moment;
- test_pod_security_admission: with real admission, the dispatcher's pods pass
  `restricted` and the installer's pods are refused there and admitted under
  `privileged`;
- test_installer_killed_while_containerd_is_down[job|daemonset]: the node's service
  manager holds containerd stopped for a few seconds in the middle of the restart the
  installer asked for, and in that window the installer is SIGKILLed (its `cri`
  container in job mode, the DaemonSet's one container running every stage); the
  restart still finishes, the retry (a new pod of the per-node Job, or the kubelet
  starting the DaemonSet's container again) finds the restart still owed and pays it,
  and the node is labelled with its handlers served: exactly two containerd restarts,
  the one the kill interrupted and the one the retry owed. In job mode the same kill
  hits the per-node cleanup Job's `revert-cri` during `helm uninstall`, whose retry pays
  that restart too. Either way the node's /etc and /opt end byte-identical to before
  the install;
- test_daemonset_pod_killed_while_reverting: a DaemonSet pod killed while it reverts on
  SIGTERM is not started again by the kubelet (its pod is being deleted), and nothing
  else finishes its revert yet: `helm uninstall` succeeds with Kata's files and state
  left under /opt/kata, though /etc is restored, the label gone and the handlers no
  longer served. `helm install` and `helm uninstall` again complete the revert,
  byte-identical. (A pre-delete hook that finishes such nodes itself is still to come.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import evidence
from tests.cluster.cluster import Cluster
from tests.e2e import helpers, realnode_helpers
from tests.e2e.helpers import CHART, PREFIX, TIMES, helm, wait_for

NODE = "real-00"


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[realnode_helpers.RealCluster]:
    with realnode_helpers.real_cluster(tmp_path_factory) as rc:
        yield rc


def _install_args(rc: realnode_helpers.RealCluster, release: str, ns: str) -> list[str]:
    return [
        "install", release, rc.chart_ref, "--version", rc.chart_version, "--plain-http",
        "-n", ns, "--create-namespace", *rc.image_args(),
    ]  # fmt: skip


def _assert_installed(rc: realnode_helpers.RealCluster, release: str, ns: str) -> list[str]:
    """Handlers served, label set, containerd restarted; return the release's handlers."""
    cluster = rc.cluster
    wait_for(
        f"{NODE} to be labelled",
        lambda: NODE in helpers.labelled(cluster),
        timeout=240,
    )
    handlers = realnode_helpers.release_handlers(cluster, release, ns, NODE)
    assert "kata-qemu" in handlers, handlers
    # `label` waits for the kubelet to report the restarted runtime's handlers: they are
    # listed by the time the label is there.
    served = cluster.runtime_handlers(NODE)
    missing = sorted(set(handlers) - set(served))
    assert not missing, f"labelled, but containerd does not serve {missing} (it serves {served})"
    return handlers


def _assert_kata_pod_reaches_shim(rc: realnode_helpers.RealCluster, ns: str) -> None:
    """A kata-qemu pod is admitted and containerd execs the shim we installed."""
    message = realnode_helpers.kata_pod_failure(rc, ns, runtime_class="kata-qemu")
    shim = "/opt/kata/bin/containerd-shim-kata-v2"
    assert shim in message, f"containerd did not try {shim}: {message}"


def _assert_unserved(cluster: Cluster, handlers: list[str]) -> None:
    """Nothing serves the release's handlers any more, and no label says so."""
    wait_for(
        "the kata handlers to leave status.runtimeHandlers",
        lambda: not set(handlers) & set(cluster.runtime_handlers(NODE)),
        timeout=120,
    )
    assert NODE not in helpers.labelled(cluster)


def _assert_removed(
    rc: realnode_helpers.RealCluster, handlers: list[str], before: dict[str, str]
) -> None:
    cluster = rc.cluster
    _assert_unserved(cluster, handlers)
    after = realnode_helpers.node_tree(cluster, NODE)
    changed = sorted(set(after.items()) ^ set(before.items()))
    assert after == before, f"{NODE}'s /etc or /opt differs after uninstall: {changed[:10]}"


def test_chart_from_oci_registry(real: realnode_helpers.RealCluster) -> None:
    shown = helm(
        real.cluster, "show", "values", real.chart_ref, "--version", real.chart_version,
        "--plain-http",
    ).stdout  # fmt: skip
    # helm prints the file and then a newline of its own
    assert shown.rstrip("\n") == (CHART / "values.yaml").read_text().rstrip("\n")


def test_daemonset_mode_lifecycle(real: realnode_helpers.RealCluster) -> None:
    cluster = real.cluster
    release, ns = "kata-real-ds", "kata-real-ds"
    before = realnode_helpers.node_tree(cluster, NODE)
    restarts = realnode_helpers.containerd_restarts(cluster, NODE)
    t0 = time.monotonic()
    helm(cluster, *_install_args(real, release, ns), "--set", "deploymentMode=daemonset",
         "--wait", "--timeout", "5m")  # fmt: skip
    handlers = _assert_installed(real, release, ns)
    TIMES["real node: daemonset install to handlers served"] = time.monotonic() - t0
    pod = realnode_helpers.installer_pod(cluster, ns)
    assert pod["spec"]["hostPID"] is True
    assert pod["spec"]["nodeName"] == NODE
    assert realnode_helpers.containerd_restarts(cluster, NODE) > restarts, (
        "the installer did not restart the node's containerd"
    )
    _assert_kata_pod_reaches_shim(real, ns)

    t1 = time.monotonic()
    helm(cluster, "upgrade", release, real.chart_ref, "--version", real.chart_version,
         "--plain-http", "-n", ns, *real.image_args(), "--reuse-values",
         "--set", "shims.qemu-runtime-rs.enabled=false", "--wait", "--timeout", "5m")  # fmt: skip
    wait_for(
        "kata-qemu-runtime-rs to leave status.runtimeHandlers",
        lambda: "kata-qemu-runtime-rs" not in cluster.runtime_handlers(NODE),
        timeout=180,
    )
    assert "kata-qemu" in cluster.runtime_handlers(NODE)
    TIMES["real node: daemonset upgrade, shim removed"] = time.monotonic() - t1

    t2 = time.monotonic()
    with realnode_helpers.ProcessSpy("remove-artifacts") as sweep:
        helm(cluster, "uninstall", release, "-n", ns, "--wait", "--timeout", "5m")
    _assert_removed(real, handlers, before)
    assert realnode_helpers.node_result(cluster, NODE, release) == {}
    assert not sweep.seen(), "the sweep ran a cleanup Job on a node its pod had reverted"
    TIMES["real node: daemonset uninstall"] = time.monotonic() - t2


def test_job_mode_lifecycle(real: realnode_helpers.RealCluster, tmp_path: Path) -> None:
    cluster = real.cluster
    release, ns = "kata-real-job", "kata-real-job"
    before = realnode_helpers.node_tree(cluster, NODE)
    restarts = realnode_helpers.containerd_restarts(cluster, NODE)
    t0 = time.monotonic()
    with realnode_helpers.ProcessSpy("kata-dispatcher") as spy:
        helm(cluster, *_install_args(real, release, ns), "--set", "deploymentMode=job",
             "--wait", "--timeout", "5m")  # fmt: skip
    handlers = _assert_installed(real, release, ns)
    TIMES["real node: job mode install to handlers served"] = time.monotonic() - t0
    assert realnode_helpers.containerd_restarts(cluster, NODE) > restarts
    seen = spy.seen()
    assert seen, "never saw the dispatcher's process on the node"
    for proc in seen:
        assert proc.uid == 65532 and proc.gid == 65532, proc
        assert proc.cap_eff == 0, proc
        assert proc.seccomp == 2 and proc.no_new_privs, proc
        assert proc.root_read_only, proc
    order = realnode_helpers.init_container_order(cluster, ns)
    assert order == ["host-check", "artifacts", "cri", "label"], order
    _assert_kata_pod_reaches_shim(real, ns)

    t1 = time.monotonic()
    helm(cluster, "uninstall", release, "-n", ns, "--wait", "--timeout", "5m")
    _assert_removed(real, handlers, before)
    assert realnode_helpers.node_result(cluster, NODE, release) == {}
    TIMES["real node: job mode uninstall"] = time.monotonic() - t1


def test_pod_security_admission(real: realnode_helpers.RealCluster) -> None:
    """The dispatcher pod passes `restricted`; the installer pods need `privileged`."""
    cluster = real.cluster
    rendered = realnode_helpers.render_pods(real)
    restricted, privileged = "kata-psa-restricted", "kata-psa-privileged"
    realnode_helpers.namespace(cluster, restricted, level="restricted")
    realnode_helpers.namespace(cluster, privileged, level="privileged")
    try:
        for name, pod in rendered.items():
            admitted, message = realnode_helpers.dry_run_pod(cluster, restricted, pod)
            if name.startswith("dispatcher"):
                assert admitted, f"{name} refused under restricted: {message}"
            else:
                assert not admitted, f"{name} admitted under restricted"
                assert "violates PodSecurity" in message, message
                ok, why = realnode_helpers.dry_run_pod(cluster, privileged, pod)
                assert ok, f"{name} refused under privileged: {why}"
        assert {n.split(":")[0] for n in rendered} == {"dispatcher", "installer"}
    finally:
        for ns in (restricted, privileged):
            cluster.core().delete_namespace(ns)


def test_refused_restart_is_paid_by_the_next_upgrade(real: realnode_helpers.RealCluster) -> None:
    cluster = real.cluster
    release, ns = "kata-real-refused", "kata-real-refused"
    before = realnode_helpers.node_tree(cluster, NODE)
    restarts = realnode_helpers.containerd_restarts(cluster, NODE)
    realnode_helpers.nodeinit_command(cluster, NODE, "fail-next", "containerd", "1")
    t0 = time.monotonic()
    failed = helm(
        cluster, *_install_args(real, release, ns), "--set", "deploymentMode=job",
        "--set", "job.backoffLimit=0", "--wait", "--timeout", "5m", check=False,
    )  # fmt: skip
    assert failed.returncode != 0, "the install succeeded although containerd was not restarted"
    assert NODE not in helpers.labelled(cluster)
    assert realnode_helpers.containerd_restarts(cluster, NODE) == restarts
    logs = realnode_helpers.pod_logs(cluster, ns, container="cri")
    assert "systemctl restart containerd failed" in logs, logs
    # The reason outlives the Job: on the Node, and as an Event about it.
    result = realnode_helpers.node_result(cluster, NODE, release)
    assert result["outcome"] == "failed" and result["stage"] == "cri", result
    assert "systemctl restart containerd failed" in result["reason"], result
    reasons = realnode_helpers.node_event_reasons(cluster, "default", NODE)
    assert "KataInstallFailed" in reasons, (reasons, logs)

    helm(cluster, "upgrade", release, real.chart_ref, "--version", real.chart_version,
         "--plain-http", "-n", ns, "--reuse-values", "--wait", "--timeout", "5m")  # fmt: skip
    handlers = _assert_installed(real, release, ns)
    assert realnode_helpers.containerd_restarts(cluster, NODE) == restarts + 1
    assert realnode_helpers.node_result(cluster, NODE, release)["outcome"] == "installed"
    assert "KataInstalled" in realnode_helpers.node_event_reasons(cluster, "default", NODE)
    # The command NOTES.txt gives operators shows it.
    notes = helm(cluster, "get", "notes", release, "-n", ns).stdout
    command = next(line.strip() for line in notes.splitlines() if "custom-columns" in line)
    shown = realnode_helpers.shell(cluster, command)
    assert NODE in shown and '"outcome":"installed"' in shown, shown
    TIMES["real node: refused restart, then paid by helm upgrade"] = time.monotonic() - t0

    helm(cluster, "uninstall", release, "-n", ns, "--wait", "--timeout", "5m")
    _assert_removed(real, handlers, before)
    assert realnode_helpers.node_result(cluster, NODE, release) == {}


# mode -> (the installer process killed during install, the container that logs its cri)
KILLED_ON_INSTALL = {"job": ("cri", "cri"), "daemonset": ("daemonset", "kata-installer")}


def _install_retries(cluster: Cluster, ns: str, release: str, mode: str) -> int:
    """How often Kubernetes itself ran the killed installer again during install."""
    if mode == "daemonset":
        pod = realnode_helpers.installer_pod(cluster, ns)
        return int(pod["status"]["containerStatuses"][0]["restartCount"])
    jobs = helpers.jobs(cluster, ns, f"{PREFIX}/release={release},{PREFIX}/stage=install")
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
    assert helpers.finished(jobs[0]) == "Complete", jobs[0]["status"]
    return int(jobs[0]["status"].get("failed", 0))


@pytest.mark.parametrize("mode", ["job", "daemonset"])
def test_installer_killed_while_containerd_is_down(
    real: realnode_helpers.RealCluster, mode: str
) -> None:
    cluster = real.cluster
    release = ns = f"kata-real-killed-{mode}"
    before = realnode_helpers.node_tree(cluster, NODE)
    restarts = realnode_helpers.containerd_restarts(cluster, NODE)
    t0 = time.monotonic()
    process, container = KILLED_ON_INSTALL[mode]
    with realnode_helpers.KillDuringRestart(cluster, NODE, process) as install_kill:
        helm(cluster, *_install_args(real, release, ns), "--set", f"deploymentMode={mode}",
             "--wait", "--timeout", "5m")  # fmt: skip
        handlers = _assert_installed(real, release, ns)
    assert install_kill.killed, f"`kata-installer {process}` was never seen during the restart"
    assert realnode_helpers.containerd_restarts(cluster, NODE) == restarts + 2
    logs = realnode_helpers.pod_logs(cluster, ns, container=container)
    assert "a restart of containerd is still owed by an earlier run" in logs, logs
    install_retries = _install_retries(cluster, ns, release, mode)
    assert install_retries == 1, install_retries
    assert realnode_helpers.node_result(cluster, NODE, release)["outcome"] == "installed"
    TIMES[f"real node ({mode}): install, killed while containerd was down"] = time.monotonic() - t0

    t1 = time.monotonic()
    kill_on_uninstall = mode == "job"
    with realnode_helpers.KillDuringRestart(
        cluster, NODE, "revert-cri" if kill_on_uninstall else ""
    ) as uninstall_kill:
        helm(cluster, "uninstall", release, "-n", ns, "--wait", "--timeout", "5m")
    assert bool(uninstall_kill.killed) == kill_on_uninstall, uninstall_kill.killed
    _assert_removed(real, handlers, before)
    kills = 1 + kill_on_uninstall
    assert realnode_helpers.containerd_restarts(cluster, NODE) == restarts + 2 + kills
    assert realnode_helpers.node_result(cluster, NODE, release) == {}
    TIMES[f"real node ({mode}): uninstall after the kill"] = time.monotonic() - t1
    on_uninstall = (
        " and once in the per-node cleanup Job's `revert-cri` during `helm uninstall`"
        if kill_on_uninstall
        else ""
    )
    evidence.record(
        f"installer-killed-real-node-{mode}",
        area="kills",
        what=f"on the real kubelet + containerd node, {mode} mode: the installer SIGKILLed "
        "while containerd was stopped in the middle of the restart it asked for, in "
        f"`kata-installer {process}` during `helm install`{on_uninstall}",
        happened="the restart finished without its caller; the retry found it still owed "
        f"and paid it ({2 + kills} restarts in all); the node labelled with its handlers "
        "served, then after uninstall no handler, no label, no result, /etc and /opt "
        "byte-identical to before",
        test=f"tests/e2e/test_real_node.py::test_installer_killed_while_containerd_is_down[{mode}]",
        stable={"kills": kills, "containerd_restarts": 2 + kills, "byte_identical": True},
        measured={
            "install_seconds": round(t1 - t0, 1),
            "uninstall_seconds": round(time.monotonic() - t1, 1),
        },
    )


def test_daemonset_pod_killed_while_reverting(real: realnode_helpers.RealCluster) -> None:
    cluster = real.cluster
    release = ns = "kata-real-killed-revert"
    before = realnode_helpers.node_tree(cluster, NODE)
    install = [*_install_args(real, release, ns), "--set", "deploymentMode=daemonset",
               "--wait", "--timeout", "5m"]  # fmt: skip
    t0 = time.monotonic()
    helm(cluster, *install)
    handlers = _assert_installed(real, release, ns)
    restarts = realnode_helpers.containerd_restarts(cluster, NODE)
    with (
        realnode_helpers.KillDuringRestart(cluster, NODE, "daemonset") as kill,
        realnode_helpers.ProcessSpy("remove-artifacts") as sweep,
    ):
        helm(cluster, "uninstall", release, "-n", ns, "--wait", "--timeout", "5m")
    assert kill.killed, "`kata-installer daemonset` was never seen during the restart"
    # The kubelet does not start a container of a pod being deleted, so the killed
    # revert stops there; the node's result annotation ("removing") outlives it, and the
    # sweep hook's cleanup Job finishes the revert on that node.
    assert sweep.seen(), "no cleanup Job ran on the node whose revert was killed"
    _assert_removed(real, handlers, before)
    assert realnode_helpers.node_result(cluster, NODE, release) == {}
    paid = realnode_helpers.containerd_restarts(cluster, NODE) - restarts
    TIMES["real node (daemonset): revert killed, the sweep finished it"] = time.monotonic() - t0
    evidence.record(
        "installer-killed-real-node-daemonset-revert",
        area="kills",
        what="on the real kubelet + containerd node, daemonset mode: the installer pod "
        "SIGKILLed while it reverted the node on SIGTERM, with containerd stopped in the "
        "middle of the revert's restart",
        happened="the kubelet did not start it again (its pod was being deleted); the "
        "node still carried its result annotation, so the uninstall's sweep hook ran a "
        "cleanup Job there, and the one `helm uninstall` left /etc and /opt "
        "byte-identical, with no label, annotation or handler",
        test="tests/e2e/test_real_node.py::test_daemonset_pod_killed_while_reverting",
        stable={"kills": 1, "cleanup_job_ran": True, "byte_identical": True},
        measured={
            "containerd_restarts_during_uninstall": paid,
            "seconds": round(time.monotonic() - t0, 1),
        },
    )
