"""The chart under Helm 3, which it says it supports: every other e2e scenario uses Helm 4.

One job-mode release on two runner-backed nodes (the real kata-installer on a host
directory) and four kwok nodes, installed, upgraded with a changed value and uninstalled
by the Helm 3 binary hack/setup.sh builds (`helm3`). What only a real install shows:
the post-install/post-upgrade and pre-delete hooks run in order with their delete
policies (the dispatcher Job is replaced on upgrade, not duplicated), the schema is
checked at install, and the uninstall leaves nothing: no label, the hosts byte-equal
to their originals, nothing in the namespace (the dispatcher's Lease included) and no
cluster-scoped object of the release.
"""

from __future__ import annotations

import time

from tests.cluster.cluster import Cluster
from tests.e2e import helpers
from tests.e2e.helpers import CHART, PREFIX, TIMES, wait_for

HELM3 = "helm3"
RELEASE = "kata-h3"
NS = "kata-helm3"
SELECT = "kata-deploy.test/helm3"
GPU_VALUES = str(CHART / "try-kata-nvidia-gpu.values.yaml")


def _helm3(cluster: Cluster, *args: str, check: bool = True) -> str:
    return helpers.helm(cluster, *args, check=check, binary=HELM3).stdout


def test_helm3_installs_upgrades_and_uninstalls_job_mode(fleet: Cluster) -> None:
    t0 = time.monotonic()
    assert _helm3(fleet, "version", "--short").startswith("v3."), "helm3 is not Helm 3"
    st = fleet.state
    kwok = fleet.kwok_node_names()[st.control_plane + st.tainted :][:4]
    runner = fleet.runner_node_names()[-2:]
    targets = kwok + runner
    helpers.label_nodes(fleet, targets, {SELECT: "yes"})
    chart = [str(CHART), "-n", NS, "-f", GPU_VALUES,
             "--set", f"job.nodeSelector.{SELECT.replace('.', chr(92) + '.')}=yes",
             "--timeout", "3m"]  # fmt: skip
    try:
        _helm3(fleet, "install", RELEASE, *chart, "--create-namespace")
        assert helpers.labelled(fleet) >= set(runner)  # (kwok nodes only simulate a Job)
        install = f"{PREFIX}/release={RELEASE},{PREFIX}/stage=install"
        first = {j["metadata"]["name"] for j in helpers.jobs(fleet, NS, install)}
        assert len(first) == len(targets), first
        for name in runner:
            assert (fleet.node_root(name) / "opt" / "kata").is_dir(), name

        # an upgrade that changes the per-node template: the hook runs again, once
        _helm3(fleet, "upgrade", RELEASE, *chart, "--set", "env.debug=true")
        dispatchers = helpers.jobs(fleet, NS, "app.kubernetes.io/component=dispatcher")
        assert len(dispatchers) == 1, [d["metadata"]["name"] for d in dispatchers]
        nodes = [
            j["spec"]["template"]["spec"]["nodeName"] for j in helpers.jobs(fleet, NS, install)
        ]
        assert sorted(nodes) == sorted(targets), nodes  # one Job per node, no duplicate

        _helm3(fleet, "uninstall", RELEASE, "-n", NS, "--timeout", "3m")
        assert not helpers.labelled(fleet) & set(runner)
        helpers.assert_hosts_pristine(fleet, runner)
        wait_for(
            f"namespace {NS} to be empty",
            lambda: not helpers.namespace_empty(fleet, NS),
            timeout=60,
        )
        assert not helpers.release_objects(fleet, RELEASE)
    finally:
        if RELEASE in _helm3(fleet, "list", "-n", NS, "-q", check=False).split():
            _helm3(fleet, "uninstall", RELEASE, "-n", NS, "--timeout", "3m", check=False)
        helpers.label_nodes(fleet, targets, {SELECT: None})
    TIMES["helm 3: install, upgrade, uninstall (job mode)"] = time.monotonic() - t0
