"""The chart against the real apiserver: the NFD `lookup` (issue 6 scenario 8) and a
server-side dry run of every try-kata-*.values.yaml.

Cases:
- test_every_try_kata_values_file_passes_a_server_dry_run: `helm install
  --dry-run=server` of each example values file is accepted by kube-apiserver;
- test_tee_runtimeclasses_get_nfd_labels_when_nfd_runs (8): without a
  node-feature-discovery-worker DaemonSet the TEE RuntimeClasses carry no NFD label;
  with one present (another namespace, no pods) a real install gives SNP, TDX and SE
  shims their NFD labels, while a shim with a manual selector keeps only its own.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from tests.cluster.cluster import Cluster
from tests.e2e import helpers
from tests.e2e.helpers import CHART, TIMES, helm

EXAMPLES = sorted(CHART.glob("try-kata-*.values.yaml"))
TEE_VALUES = str(CHART / "try-kata-tee.values.yaml")
NFD_LABELS = {
    "qemu-snp": "amd.feature.node.kubernetes.io/snp",
    "qemu-tdx": "intel.feature.node.kubernetes.io/tdx",
    "qemu-se": "feature.node.kubernetes.io/cpu-security.se.enabled",
    "qemu-se-runtime-rs": "feature.node.kubernetes.io/cpu-security.se.enabled",
}


@pytest.mark.parametrize("values", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_try_kata_values_file_passes_a_server_dry_run(fleet: Cluster, values: object) -> None:
    out = helm(fleet, "install", "dry", str(CHART), "-n", "default", "-f", str(values),
               "--dry-run=server").stdout  # fmt: skip
    kinds = {d.get("kind") for d in _manifest(out)}
    assert "RuntimeClass" in kinds


def _manifest(out: str) -> list[dict[str, Any]]:
    """The objects of `helm install --dry-run` output (between MANIFEST: and NOTES:)."""
    text = out.split("MANIFEST:", 1)[-1].split("\nNOTES:", 1)[0]
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def _rendered_classes(cluster: Cluster) -> dict[str, dict[str, str]]:
    out = helm(cluster, "install", "nfd-probe", str(CHART), "-n", "default", "-f", TEE_VALUES,
               "--dry-run=server").stdout  # fmt: skip
    return {
        d["metadata"]["name"]: d.get("scheduling", {}).get("nodeSelector", {})
        for d in _manifest(out)
        if d.get("kind") == "RuntimeClass"
    }


def test_tee_runtimeclasses_get_nfd_labels_when_nfd_runs(fleet: Cluster) -> None:
    t0 = time.monotonic()
    before = _rendered_classes(fleet)
    for shim, label in NFD_LABELS.items():
        if f"kata-{shim}" in before:
            assert label not in before[f"kata-{shim}"], shim

    helpers.kubectl(fleet, "create", "namespace", "nfd")
    worker = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "node-feature-discovery-worker", "namespace": "nfd"},
        "spec": {
            "selector": {"matchLabels": {"app": "nfd-worker"}},
            "template": {
                "metadata": {"labels": {"app": "nfd-worker"}},
                "spec": {
                    "nodeSelector": {"kata-deploy.test/no-such-node": "true"},
                    "containers": [{"name": "worker", "image": "example.invalid/nfd"}],
                },
            },
        },
    }

    apps = fleet.api("AppsV1Api")
    apps.create_namespaced_daemon_set("nfd", worker)
    release, ns = "kata-tee", "kata-tee"
    try:
        helm(fleet, "install", release, str(CHART), "-n", ns, "--create-namespace",
             "-f", TEE_VALUES, "--set", "deploymentMode=job",
             "--set", "shims.qemu-tdx.runtimeClass.nodeSelector.tdx-pool=yes",
             "--set", "job.nodes={kwok-0010}", "--timeout", "3m")  # fmt: skip
        classes = helpers.runtimeclasses(fleet)
        seen = 0
        for shim, label in NFD_LABELS.items():
            rc = classes.get(f"kata-{shim}")
            if rc is None:
                continue
            selector = rc["scheduling"]["nodeSelector"]
            assert selector[helpers.NODE_LABEL] == "true"
            if shim == "qemu-tdx":
                assert selector.get("tdx-pool") == "yes"
                assert label not in selector, "a manual selector must replace the NFD label"
            else:
                assert selector.get(label) == "true", (shim, selector)
            seen += 1
        assert seen >= 3, sorted(classes)
        helm(fleet, "uninstall", release, "-n", ns, "--timeout", "3m")
        assert not helpers.release_objects(fleet, release)
    finally:
        apps.delete_namespaced_daemon_set("node-feature-discovery-worker", "nfd")
        helpers.kubectl(fleet, "delete", "namespace", "nfd", "--wait=false")
    TIMES["8 NFD lookup"] = time.monotonic() - t0
