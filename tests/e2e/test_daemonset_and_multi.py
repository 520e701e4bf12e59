"""DaemonSet mode, and two suffixed releases side by side (issue 6 scenarios 6 and 7),
with real helm on the session fleet's runner-backed nodes (real kata-installer).

Cases:
- test_daemonset_install_and_uninstall (6): the installer DaemonSet, limited by
  `nodeSelector` to three runner-backed nodes, installs and labels exactly those. One
  node then leaves the selector: its pod goes, but the DaemonSet stays, so Kata stays
  there (as job mode, an upgrade never removes). On `helm uninstall` the other pods
  revert their nodes; one of them is SIGKILLed (the runner's `kata-deploy.test/kill-once`)
  right after its unlabel, and its pod, being deleted, is not run again. The sweep hook
  then runs a cleanup Job on exactly those two nodes, which still carry the release's
  result annotation. In the end: no label, no annotation, hosts byte-equal, nothing left;
- test_two_suffixed_releases_one_uninstalled (7): releases with
  `env.multiInstallSuffix` a and b on the same two nodes each get their own
  RuntimeClasses and /opt/kata-<suffix>; uninstalling a keeps b's RuntimeClasses,
  files and the node label; uninstalling b then leaves the hosts as they were.
"""

from __future__ import annotations

import json
import time

from tests import evidence
from tests.cluster import kubeapi
from tests.cluster.cluster import Cluster
from tests.cluster.runner import KILL_ONCE
from tests.e2e import helpers
from tests.e2e.helpers import CHART, TIMES, helm, wait_for

DS_SELECT = "kata-deploy.test/daemonset"
RESULT = "katacontainers.io/kata-deploy.kata-ds"
GPU_VALUES = str(CHART / "try-kata-nvidia-gpu.values.yaml")


def test_daemonset_install_and_uninstall(fleet: Cluster) -> None:
    t0 = time.monotonic()
    targets = fleet.runner_node_names()[:3]
    others = fleet.runner_node_names()[3:]
    helpers.label_nodes(fleet, targets, {DS_SELECT: "yes"})
    release, ns = "kata-ds", "kata-ds"
    killed = targets[-1]  # SIGKILLed in its revert, right after unlabel
    kill = json.dumps({"podAnnotations": {KILL_ONCE: json.dumps({killed: ["unlabel: reverted"]})}})
    try:
        helm(fleet, "install", release, str(CHART), "-n", ns, "--create-namespace",
             "--set", "deploymentMode=daemonset",
             "--set", f"nodeSelector.{DS_SELECT.replace('.', chr(92) + '.')}=yes",
             "--set-json", kill, "--wait", "--timeout", "3m")  # fmt: skip
        wait_for(
            "the DaemonSet to label its three nodes",
            lambda: helpers.labelled(fleet) == set(targets),
            timeout=120,
        )
        pods = kubeapi.get_json(fleet.core().list_namespaced_pod, ns)["items"]
        assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(targets)
        assert all(p["status"]["phase"] == "Running" for p in pods)
        for name in targets:
            assert (fleet.node_root(name) / "opt" / "kata").is_dir(), name
        helpers.assert_hosts_pristine(fleet, others)

        left = targets[0]  # leaves the DaemonSet's selector: not a removal
        helpers.label_nodes(fleet, [left], {DS_SELECT: None})
        wait_for(
            f"the installer pod on {left} to go",
            lambda: left not in _pod_nodes(fleet, ns),
            timeout=120,
        )
        assert helpers.labelled(fleet) == set(targets), "Kata stays where only the pod went"
        with helpers.JobWatch(fleet, ns) as watch:
            helm(fleet, "uninstall", release, "-n", ns, "--wait", "--timeout", "3m")
        swept = sorted(watch.nodes_created("cleanup"))
        assert swept == sorted([left, killed]), swept
        wait_for(
            "the installer pods to go", lambda: not helpers.namespace_empty(fleet, ns), timeout=120
        )
        assert not helpers.labelled(fleet)
        helpers.assert_hosts_pristine(fleet, fleet.runner_node_names())
        assert not helpers.release_objects(fleet, release)
        assert not [n for n in targets if RESULT in helpers.node_annotations(fleet, n)]
    finally:
        helpers.label_nodes(fleet, targets, {DS_SELECT: None})
    TIMES["6 daemonset install+uninstall"] = time.monotonic() - t0
    evidence.record(
        "daemonset-uninstall-sweep",
        area="kills",
        what="daemonset mode on 3 runner-backed nodes: one node taken out of `nodeSelector` "
        "after install (its pod goes, Kata stays), and at `helm uninstall` one installer "
        "SIGKILLed right after its unlabel",
        happened="the uninstall's sweep hook ran a cleanup Job on exactly those 2 nodes and "
        "none on the node its pod reverted; every host byte-identical to before, no label, "
        "no result annotation",
        test="tests/e2e/test_daemonset_and_multi.py::test_daemonset_install_and_uninstall",
        stable={"nodes": 3, "cleanup_jobs": 2, "byte_identical": True},
        measured={"seconds": round(time.monotonic() - t0, 1)},
    )


def _pod_nodes(fleet: Cluster, namespace: str) -> set[str]:
    pods = kubeapi.get_json(fleet.core().list_namespaced_pod, namespace)["items"]
    return {p["spec"].get("nodeName", "") for p in pods}


def test_two_suffixed_releases_one_uninstalled(fleet: Cluster) -> None:
    t0 = time.monotonic()
    targets = fleet.runner_node_names()[:2]
    shims = ("qemu-nvidia-gpu", "qemu-nvidia-gpu-snp", "qemu-nvidia-gpu-tdx")

    def install(suffix: str) -> None:
        helm(fleet, "install", f"kata-{suffix}", str(CHART), "-n", f"kata-{suffix}",
             "--create-namespace", "-f", GPU_VALUES,
             "--set", f"env.multiInstallSuffix={suffix}",
             "--set", f"job.nodes={{{','.join(targets)}}}", "--timeout", "3m")  # fmt: skip

    install("a")
    install("b")
    classes = helpers.runtimeclasses(fleet)
    for suffix in ("a", "b"):
        for shim in shims:
            assert classes[f"kata-{shim}-{suffix}"]["handler"] == f"kata-{shim}-{suffix}"
    assert helpers.labelled(fleet) == set(targets)
    for name in targets:
        assert (fleet.node_root(name) / "opt" / "kata-a").is_dir()
        assert (fleet.node_root(name) / "opt" / "kata-b").is_dir()

    helm(fleet, "uninstall", "kata-a", "-n", "kata-a", "--timeout", "3m")
    classes = helpers.runtimeclasses(fleet)
    assert not [n for n in classes if n.endswith("-a")]
    assert all(f"kata-{shim}-b" in classes for shim in shims)
    assert helpers.labelled(fleet) == set(targets), "uninstalling a removed b's node label"
    for name in targets:
        assert not (fleet.node_root(name) / "opt" / "kata-a").exists()
        assert (fleet.node_root(name) / "opt" / "kata-b").is_dir()
    assert not helpers.release_objects(fleet, "kata-a")

    helm(fleet, "uninstall", "kata-b", "-n", "kata-b", "--timeout", "3m")
    assert not helpers.labelled(fleet)
    helpers.assert_hosts_pristine(fleet, fleet.runner_node_names())
    assert not helpers.runtimeclasses(fleet)
    TIMES["7 two suffixed releases"] = time.monotonic() - t0
