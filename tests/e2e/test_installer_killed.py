"""The installer SIGKILLed for real at each stage of install and of uninstall (issue 13,
"The installer killed for real"), on runner-backed nodes of the session fleet.

Job mode, six runner nodes; each stage is a container of its own in the per-node Job's
pod. The chart's own `podAnnotations` carry the local runner's
`kata-deploy.test/kill-once` map (tests/cluster/runner.py): on each of five nodes the
installer's process group is SIGKILLed right after it logs a line of one install stage,
on three of them again after a line of one uninstall stage; the sixth node is never
killed and is the reference. Each kill fires once, so the per-node Job's retry (its
`backoffLimit`) runs the installer again on a host left exactly as the kill left it.

A log line marks where the kill is sent; the kernel delivers it within a few
instructions, so each kill lands just after the named line, before the stage's next
step (a stage's container ends soon after its last line).
Every write point inside a stage is covered deterministically, without a real process
kill, by node-installer/tests/test_crash.py on fixture hosts; this test is the real
signal, the real Job retry and the real chart.

Must hold:
- `helm install` succeeds; each killed node's Job shows one failed pod and one
  success, every node is labelled, and each killed node's host tree is byte-identical
  to the reference node's (the same fixture host, installed without a kill);
- `helm uninstall` succeeds; no node is labelled and every host is byte-identical to
  its copy from before the install;
- every kill happened: its `--- runner: SIGKILL after:` line is in the pod logs.
Its evidence record (tests/evidence.py) names where each kill landed.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests import evidence
from tests.cluster import nodes
from tests.cluster.cluster import Cluster
from tests.cluster.runner import KILL_ONCE
from tests.e2e import helpers
from tests.e2e.helpers import CHART, PREFIX, TIMES, helm

RELEASE = "kata-killed"
NS = "kata-killed"
GPU_VALUES = str(CHART / "try-kata-nvidia-gpu.values.yaml")

# Where to kill: a message the installer logs inside (or at the end of) each stage.
INSTALL_KILLS = {
    "host-check (after reading the runtime)": r"runtime: ",
    "artifacts (at its start)": r"kata-installer \S+ artifacts:",
    "artifacts (installed, before its marker)": r"installed \d+ files for \d+ handlers",
    "cri (drop-in written, before its marker)": r"wrote /",
    "label (before the patch)": r"node \S+ is Ready",
}
UNINSTALL_KILLS = {
    "unlabel (after the patch)": r"removed .* label and result from node",
    "revert-cri (restored, before its marker)": r"restored the runtime configuration",
    "remove-artifacts (at its start)": r"kata-installer \S+ remove-artifacts:",
}
KILLED = re.compile(r"^--- runner: SIGKILL after: (?P<line>.*)$", re.MULTILINE)


def _kill_plan(names: list[str]) -> dict[str, list[str]]:
    plan: dict[str, list[str]] = {n: [] for n in names}
    for node, pattern in zip(names, INSTALL_KILLS.values(), strict=False):
        plan[node].append(pattern)
    for node, pattern in zip(names, UNINSTALL_KILLS.values(), strict=False):
        plan[node].append(pattern)
    return plan


def _kills_seen(cluster: Cluster) -> list[tuple[str, str]]:
    """(log file, line the kill followed) for every kill of this release's pods."""
    seen = []
    for log in sorted(cluster.pod_logs.glob(f"{NS}_*.log")):
        for m in KILLED.finditer(log.read_text(errors="replace")):
            seen.append((log.name, m["line"]))
    return seen


def _landed(seen: list[tuple[str, str]], pattern: str) -> str:
    """The message of the line the one kill after /pattern/ followed, shortened."""
    lines = [line for _, line in seen if re.search(pattern, line)]
    assert len(lines) == 1, f"expected one kill after /{pattern}/, saw {lines}"
    found = re.search(pattern, lines[0])
    assert found is not None
    return lines[0][found.start() :][:100]


@pytest.fixture
def runner_nodes(fleet: Cluster) -> list[str]:
    names = fleet.runner_node_names()[:6]
    assert len(names) == 6, names
    helpers.assert_hosts_pristine(fleet, names)
    return names


def test_installer_killed_at_each_stage_converges(fleet: Cluster, runner_nodes: list[str]) -> None:
    t0 = time.monotonic()
    names = runner_nodes
    reference = names[-1]
    plan = _kill_plan(names[:-1])
    annotations = json.dumps({"podAnnotations": {KILL_ONCE: json.dumps(plan)}})
    args = [
        RELEASE, str(CHART), "-n", NS, "-f", GPU_VALUES,
        "--set", f"job.nodes={{{','.join(names)}}}", "--set", "job.parallelism=6",
        "--set-json", annotations, "--timeout", "4m",
    ]  # fmt: skip
    try:
        helm(fleet, "install", "--create-namespace", *args)
        jobs = helpers.jobs(fleet, NS, f"{PREFIX}/release={RELEASE},{PREFIX}/stage=install")
        failed = {helpers.job_node(j): j["status"].get("failed", 0) for j in jobs}
        assert all(helpers.finished(j) == "Complete" for j in jobs)
        killed_on_install = names[: len(INSTALL_KILLS)]
        assert failed == {n: int(n in killed_on_install) for n in names}, failed
        assert set(names) <= helpers.labelled(fleet)
        want = nodes.tree_digest(fleet.node_root(reference))
        for node in killed_on_install:
            got = nodes.tree_digest(fleet.node_root(node))
            diff = sorted(set(got.items()) ^ set(want.items()))
            assert got == want, f"{node} differs from {reference} after install: {diff[:6]}"
        install_seen = _kills_seen(fleet)

        helm(fleet, "uninstall", RELEASE, "-n", NS, "--timeout", "4m")
        assert not set(names) & helpers.labelled(fleet)
        helpers.assert_hosts_pristine(fleet, names)
    finally:
        helm(fleet, "uninstall", RELEASE, "-n", NS, "--ignore-not-found", "--timeout", "4m",
             check=False)  # fmt: skip
    seen = _kills_seen(fleet)
    assert len(install_seen) == len(INSTALL_KILLS), install_seen
    assert len(seen) == len(INSTALL_KILLS) + len(UNINSTALL_KILLS), seen
    landed = {
        **{f"install: {k}": _landed(seen, p) for k, p in INSTALL_KILLS.items()},
        **{f"uninstall: {k}": _landed(seen, p) for k, p in UNINSTALL_KILLS.items()},
    }
    evidence.record(
        "installer-killed",
        area="kills",
        what=f"the installer's process group SIGKILLed at {len(seen)} points on "
        f"{len(names) - 1} runner-backed nodes, in job mode: " + "; ".join(landed),
        happened="every Job retried once and completed; each killed node's host "
        "byte-identical to the never-killed node's after install, and to its original "
        "after uninstall; no label left",
        test="tests/e2e/test_installer_killed.py::test_installer_killed_at_each_stage_converges",
        stable={"kills": len(seen), "nodes": len(names), "converged": True},
        measured={"landed_after": landed},
    )
    TIMES[f"installer SIGKILLed at {len(seen)} points, converged"] = time.monotonic() - t0
