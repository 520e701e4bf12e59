"""A real node's own life: it changes nothing of the machine, and `down` undoes it all.

Cases (each starts and stops its own cluster with the real CLI, as a user would):
- test_real_node_leaves_machine_untouched: while a real node runs, the machine's
  sysctls, mounts, iptables rules and /run are as before (the node's kernel settings
  hold only inside it); the node's containerd restarts through its `systemctl`; after
  the node's PID 1 is killed (a crash), `down` from a fresh process still removes every
  process, cgroup, network device and file it made.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster import realnode
from tests.cluster.cluster import REPO, Cluster
from tests.e2e.helpers import TIMES, wait_for

SYSCTLS = [*realnode.KUBELET_SYSCTLS, "net.ipv4.ip_forward", "net.ipv4.conf.all.route_localnet"]


def _sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def machine_state() -> dict[str, object]:
    """What a real node must never change on this machine."""
    return {
        "links": sorted(
            line.split(":")[1].strip().split("@")[0]
            for line in _sh("ip", "-o", "link").splitlines()
        ),
        "addresses": sorted(_sh("ip", "-o", "addr").split("\n")),
        "routes": _sh("ip", "route"),
        "iptables": [
            line
            for line in _sh("iptables-save").splitlines()
            if not line.startswith(("#", ":"))  # comments and packet counters
        ],
        "mounts": sorted(
            line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
        ),
        "cgroups": sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/kata-deploy-*")),
        "sysctls": {
            name: (Path("/proc/sys") / name.replace(".", "/")).read_text() for name in SYSCTLS
        },
        "run": sorted(p.name for p in Path("/run").iterdir()),
    }


def _cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "tests.cluster", "--dir", str(state_dir), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env=env,
        timeout=600,
    )


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and "pytest" not in cmdline:
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def test_real_node_leaves_machine_untouched(tmp_path_factory: pytest.TempPathFactory) -> None:
    t0 = time.monotonic()
    state_dir = tmp_path_factory.mktemp("crash")
    before = machine_state()
    up = _cli(state_dir, "up", "--nodes", "0", "--runner-nodes", "0", "--real-nodes", "1")
    try:
        assert up.returncode == 0, up.stderr
        cluster = Cluster(state_dir)
        pid = cluster.real_node_pid("real-00")
        during = machine_state()
        # The node's own devices and cgroups exist; nothing else of the machine changed.
        assert during["sysctls"] == before["sysctls"]
        assert during["mounts"] == before["mounts"]
        assert during["iptables"] == before["iptables"]
        assert during["run"] == before["run"]
        inside = Path(f"/proc/{pid}/root/proc/sys/kernel/panic")
        assert inside.read_text().strip() == "10"
        restarted = subprocess.run(
            [*realnode.nsenter_argv(pid), "systemctl", "restart", "containerd"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert restarted.returncode == 0, restarted.stderr
        wait_for(
            "containerd to come back",
            lambda: Path(f"/proc/{pid}/root/run/containerd/containerd.sock").exists(),
            timeout=30,
        )
        # A crash: the node's PID 1 dies at once; the CLI that started it is long gone.
        os.kill(pid, signal.SIGKILL)
    finally:
        down = _cli(state_dir, "down")
    assert down.returncode == 0, down.stderr
    wait_for(
        "every process of the cluster to end",
        lambda: not _processes_mentioning(str(state_dir)),
        timeout=30,
    )
    after = machine_state()
    assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not state_dir.exists()
    TIMES["real node: up, crash, down leaves the machine as it was"] = time.monotonic() - t0
