"""DaemonSet mode, and two suffixed releases side by side (issue 6 scenarios 6 and 7),
with real helm on the session fleet's runner-backed nodes (real kata-installer).

Cases:
- test_daemonset_install_and_uninstall (6): the installer DaemonSet, limited by
  `nodeSelector` to three runner-backed nodes, installs and labels exactly those; on
  `helm uninstall` its pods revert them: no label, hosts byte-equal, nothing left;
- test_two_suffixed_releases_one_uninstalled (7): releases with
  `env.multiInstallSuffix` a and b on the same two nodes each get their own
  RuntimeClasses and /opt/kata-<suffix>; uninstalling a keeps b's RuntimeClasses,
  files and the node label; uninstalling b then leaves the hosts as they were.
"""

from __future__ import annotations

import time

from tests.cluster import kubeapi
from tests.cluster.cluster import Cluster
from tests.e2e import helpers
from tests.e2e.helpers import CHART, TIMES, helm, wait_for

DS_SELECT = "kata-deploy.test/daemonset"
GPU_VALUES = str(CHART / "try-kata-nvidia-gpu.values.yaml")


def test_daemonset_install_and_uninstall(fleet: Cluster) -> None:
    t0 = time.monotonic()
    targets = fleet.runner_node_names()[:3]
    others = fleet.runner_node_names()[3:]
    helpers.label_nodes(fleet, targets, {DS_SELECT: "yes"})
    release, ns = "kata-ds", "kata-ds"
    try:
        helm(fleet, "install", release, str(CHART), "-n", ns, "--create-namespace",
             "--set", "deploymentMode=daemonset",
             "--set", f"nodeSelector.{DS_SELECT.replace('.', chr(92) + '.')}=yes",
             "--wait", "--timeout", "3m")  # fmt: skip
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

        helm(fleet, "uninstall", release, "-n", ns, "--wait", "--timeout", "3m")
        wait_for(
            "the installer pods to go", lambda: not helpers.namespace_empty(fleet, ns), timeout=120
        )
        assert not helpers.labelled(fleet)
        helpers.assert_hosts_pristine(fleet, fleet.runner_node_names())
        assert not helpers.release_objects(fleet, release)
    finally:
        helpers.label_nodes(fleet, targets, {DS_SELECT: None})
    TIMES["6 daemonset install+uninstall"] = time.monotonic() - t0


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
