"""Fixtures of the end-to-end suite: one real local cluster for the whole session.

The session cluster ("fleet") has 44 kwok nodes and 6 runner-backed nodes (50 in all).
Scenarios each use their own namespace and release and clean up after themselves;
modules that need a different fleet (test_dispatcher_cluster: 220 nodes, failing ones;
test_faults: 200 kwok and 2 runner-backed nodes) start their own cluster. Missing tools
fail loudly: e2e is never silently skipped.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.cluster import TOOLS_BIN, Cluster, ClusterSpec

FLEET = ClusterSpec(nodes=44, runner_nodes=6, job_seconds=0.8)


def _require_tools() -> None:
    needed = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "helm"]
    missing = [t for t in needed if not (TOOLS_BIN / t).exists()]
    if missing:
        pytest.fail(
            f"e2e needs {', '.join(missing)} in {TOOLS_BIN}: run `make setup` "
            "(bash hack/setup.sh) first",
            pytrace=False,
        )


def _keep_logs(cluster: Cluster, dest: Path) -> None:
    """Copy the cluster's component and pod logs out before the cluster dir is removed."""
    for sub in ("logs", "pod-logs"):
        if (cluster.dir / sub).is_dir():
            shutil.copytree(cluster.dir / sub, dest / sub, dirs_exist_ok=True)
    for node_logs in cluster.dir.glob("nodes/*/logs"):  # real nodes' containerd, kubelet...
        shutil.copytree(node_logs, dest / "nodes" / node_logs.parent.name, dirs_exist_ok=True)


@contextlib.contextmanager
def running_cluster(
    tmp_path_factory: pytest.TempPathFactory, name: str, spec: ClusterSpec
) -> Iterator[Cluster]:
    """A cluster for the duration of a fixture; its logs are kept as <basetemp>/<name>-logs."""
    _require_tools()
    logging.getLogger("tests.cluster").setLevel(logging.INFO)
    cluster = Cluster(tmp_path_factory.mktemp(name))
    try:
        cluster.up(spec)
        yield cluster
    finally:
        _keep_logs(cluster, tmp_path_factory.getbasetemp() / f"{name}-logs")
        cluster.down()


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory, "fleet", FLEET) as cluster:
        yield cluster


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.e2e.helpers import FAULTS, TIMES
    from tests.faults import report

    if FAULTS:
        terminalreporter.section("faults on the real control plane")
        for line in report.markdown(FAULTS).splitlines():
            terminalreporter.write_line(line)
    if TIMES:
        terminalreporter.section("scenario times")
        for name, seconds in TIMES.items():
            terminalreporter.write_line(f"{name}: {seconds:.1f}s")
