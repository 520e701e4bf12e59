"""Command line of the local cluster: ``python3 -m tests.cluster COMMAND``.

Commands: ``up`` (start or complete a cluster), ``down`` (stop it, remove its state),
``add-nodes``, ``status``, ``demo`` (the whole job-mode story, end to end) and ``runner``
(the pod runner itself; ``up`` starts it). Progress goes to stderr; ``up`` prints the
kubeconfig path and how to use it on stdout.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.cluster import cluster as cluster_mod
from tests.cluster import procs


@dataclass(frozen=True)
class Settings:
    """Everything the chosen command needs, parsed once."""

    command: str
    state_dir: Path
    nodes: int
    runner_nodes: int
    real_nodes: int
    job_seconds: float
    failing_nodes: tuple[str, ...]
    host_fixture: str | None
    control_plane: int | None
    tainted: int | None
    verbose: bool
    keep: bool


class _Elapsed(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self.t0 = time.monotonic()

    def format(self, record: logging.LogRecord) -> str:
        return f"[cluster {time.monotonic() - self.t0:6.1f}s] {record.getMessage()}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.cluster",
        description=(
            "A local Kubernetes cluster for kata-deploy: real etcd, kube-apiserver, "
            "kube-controller-manager and kube-scheduler on 127.0.0.1, kwok faking most "
            "nodes, and a pod runner that really executes the dispatcher and, on "
            "runner-backed nodes, the node installer. State lives in one directory "
            f"(default {cluster_mod.DEFAULT_DIR}, or $KATA_DEPLOY_CLUSTER_DIR)."
        ),
    )
    parser.add_argument("--dir", type=Path, default=None, help="cluster state directory")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def fleet(p: argparse.ArgumentParser, nodes: int, real: int = 0) -> None:
        p.add_argument("--nodes", type=int, default=nodes, help=f"kwok nodes (default {nodes})")
        p.add_argument(
            "--runner-nodes", type=int, default=3,
            help="runner-backed nodes with a host directory (default 3)",
        )  # fmt: skip
        p.add_argument(
            "--real-nodes", type=int, default=real,
            help="real worker nodes: kubelet, containerd, runc, CNI and kube-proxy in their "
            f"own namespaces (default {real}; needs root)",
        )  # fmt: skip
        p.add_argument(
            "--job-seconds", type=float, default=1.0,
            help="how long a Job pod on a kwok node 'runs' before it succeeds (default 1.0)",
        )  # fmt: skip
        p.add_argument(
            "--failing-nodes", default="",
            help="comma-separated kwok node names whose Job pods fail with exit code 1",
        )  # fmt: skip
        p.add_argument(
            "--control-plane",
            type=int,
            default=None,
            help="kwok nodes labelled and tainted as control-plane (default 1 + N/100)",
        )
        p.add_argument(
            "--tainted",
            type=int,
            default=None,
            help="kwok nodes with a dedicated=special:NoSchedule taint (default 1 + N/100)",
        )
        p.add_argument(
            "--host-fixture",
            default=None,
            help="fixture host under node-installer/tests/fixtures/hosts/ for runner nodes",
        )

    up = sub.add_parser("up", help="start a cluster (or complete the running one)")
    fleet(up, 20)
    sub.add_parser("down", help="stop the cluster's processes and remove its directory")
    sub.add_parser("status", help="say whether the cluster is running, and how to use it")
    add = sub.add_parser("add-nodes", help="add nodes to the running cluster")
    add.add_argument("--nodes", type=int, default=5, help="kwok nodes to add (default 5)")
    add.add_argument("--runner-nodes", type=int, default=0, help="runner-backed nodes to add")
    add.add_argument("--real-nodes", type=int, default=0, help="real worker nodes to add")
    demo = sub.add_parser("demo", help="cluster up, job-mode install, upgrade, uninstall, down")
    fleet(demo, 20, real=1)
    demo.add_argument("--keep", action="store_true", help="leave the cluster running at the end")
    sub.add_parser("runner", help="run the pod runner in the foreground (started by `up`)")
    return parser


def _default_dir(command: str) -> Path:
    """The demo keeps its own cluster, so it never tears down one made by `up`."""
    base = cluster_mod.default_dir()
    return base.with_name("demo-cluster") if command == "demo" else base


def settings(argv: list[str] | None = None) -> Settings:
    ns = _parser().parse_args(argv)
    failing = tuple(n for n in getattr(ns, "failing_nodes", "").split(",") if n)
    return Settings(
        command=ns.command,
        state_dir=(ns.dir or _default_dir(ns.command)).expanduser(),
        nodes=getattr(ns, "nodes", 0),
        runner_nodes=getattr(ns, "runner_nodes", 0),
        real_nodes=getattr(ns, "real_nodes", 0),
        job_seconds=getattr(ns, "job_seconds", 1.0),
        failing_nodes=failing,
        host_fixture=getattr(ns, "host_fixture", None),
        control_plane=getattr(ns, "control_plane", None),
        tainted=getattr(ns, "tainted", None),
        verbose=ns.verbose,
        keep=getattr(ns, "keep", False),
    )


def spec(s: Settings) -> cluster_mod.ClusterSpec:
    return cluster_mod.ClusterSpec(
        nodes=s.nodes,
        runner_nodes=s.runner_nodes,
        real_nodes=s.real_nodes,
        control_plane=s.control_plane,
        tainted=s.tainted,
        job_seconds=s.job_seconds,
        failing_nodes=s.failing_nodes,
        host_fixture=s.host_fixture,
    )


def _out(lines: list[str]) -> None:
    sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    s = settings(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Elapsed())
    logging.basicConfig(level=logging.DEBUG if s.verbose else logging.INFO, handlers=[handler])
    for noisy in ("kubernetes", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    c = cluster_mod.Cluster(s.state_dir)
    try:
        if s.command == "up":
            c.up(spec(s))
            _out(cluster_mod.summary_lines(c))
        elif s.command == "down":
            c.down()
        elif s.command == "status":
            if c.healthy():
                _out(["running", *cluster_mod.summary_lines(c)])
            else:
                _out([f"no running cluster in {c.dir}"])
                return 1
        elif s.command == "add-nodes":
            if not c.healthy():
                logging.getLogger(__name__).error("no running cluster in %s", c.dir)
                return 1
            added = c.add_nodes(kwok=s.nodes, runner=s.runner_nodes, real=s.real_nodes)
            _out([f"added {len(added)} nodes: {', '.join(added)}"])
        elif s.command == "runner":
            from tests.cluster import runner

            runner.main(c.dir)
        elif s.command == "demo":
            from tests.cluster import demo

            return demo.run(c, spec(s), keep=s.keep)
    except (procs.StartError, FileNotFoundError, RuntimeError) as exc:
        logging.getLogger(__name__).error("%s", exc)
        return 1
    return 0
