"""Start, extend and stop one local cluster living in one directory.

``Cluster(state_dir).up(spec)`` brings up etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok and the pod runner as background processes of that directory (pid
files under ``pids/``, logs under ``logs/``), creates the nodes and waits until they are
Ready. It is idempotent: on a directory whose cluster is healthy it only adds missing
nodes. ``down()`` stops exactly those processes and removes the directory. The state a
later command needs (ports, nodes, kwok settings) is kept in ``cluster.json``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster import certs, kwokconfig, nodes, procs, realnode, registry
from tests.cluster.certs import kubeconfig_text

LOG = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO / ".tools" / "bin"
VENV_BIN = REPO / ".venv" / "bin"
PAYLOAD_SCRIPT = REPO / "node-installer" / "tests" / "payload.py"
DEFAULT_DIR = Path.home() / ".cache" / "kata-deploy" / "cluster"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
STOP_ORDER = (
    "gateway",
    "runner",
    "kwok",
    "kube-scheduler",
    "kube-controller-manager",
    "kube-apiserver",
    "etcd",
    "registry",
)


def default_dir() -> Path:
    env = os.environ.get("KATA_DEPLOY_CLUSTER_DIR")
    return Path(env).expanduser() if env else DEFAULT_DIR


def tool(name: str) -> str:
    """Path of a pinned tool from hack/setup.sh; a clear error when it is missing."""
    path = TOOLS_BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(
        f"{name} not found in {TOOLS_BIN}: run `make setup` (or `bash hack/setup.sh`) first"
    )


@dataclass(frozen=True)
class ClusterSpec:
    """What ``up`` should create."""

    nodes: int = 20
    runner_nodes: int = 3
    control_plane: int | None = None
    tainted: int | None = None
    job_seconds: float = 1.0
    failing_nodes: tuple[str, ...] = ()
    host_fixture: str | None = None
    real_nodes: int = 0


@dataclass
class State:
    """What a running cluster remembers in ``cluster.json``."""

    ports: dict[str, int] = field(default_factory=dict)
    kwok_nodes: int = 0
    runner_nodes: int = 0
    control_plane: int = 0
    tainted: int = 0
    job_seconds: float = 1.0
    failing_nodes: list[str] = field(default_factory=list)
    host_fixture: str | None = None
    real_nodes: int = 0
    real_subnet: int | None = None

    @classmethod
    def load(cls, path: Path) -> State:
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)


class Cluster:
    """One local cluster under ``state_dir``."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.dir = (state_dir or default_dir()).resolve()
        self.kubeconfig = self.dir / "kubeconfig"
        self.state_file = self.dir / "cluster.json"
        self.certs = certs.Certs.under(self.dir / "pki")
        self.payload = self.dir / "payload"
        self.nodes_dir = self.dir / "nodes"
        self.pod_logs = self.dir / "pod-logs"

    # ---------------------------------------------------------------- state

    @property
    def state(self) -> State:
        return State.load(self.state_file)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.state.ports['apiserver']}"

    def node_root(self, name: str) -> Path:
        return self.nodes_dir / name / "root"

    def node_original(self, name: str) -> Path:
        return self.nodes_dir / name / "original"

    def real_node_names(self) -> list[str]:
        return [realnode.node_name(i) for i in range(self.state.real_nodes)]

    def real_node(self, name: str) -> realnode.RealNode:
        st = self.state
        if st.real_subnet is None or name not in self.real_node_names():
            raise KeyError(f"{name} is not a real node of the cluster in {self.dir}")
        return realnode.RealNode(
            name=name,
            index=self.real_node_names().index(name),
            net=self.real_network(st.real_subnet),
            dir=self.nodes_dir / name,
        )

    def real_network(self, subnet: int) -> realnode.Network:
        return realnode.Network(tag=realnode.cluster_tag(self.dir), subnet=subnet)

    def real_node_pid(self, name: str) -> int:
        """Host PID of a real node's PID 1 (its namespaces: ``/proc/PID/root`` etc.)."""
        node = self.real_node(name)
        unshare = procs.read_pid(self.dir, node.process)
        pid = node.init_pid(unshare) if unshare is not None else None
        if pid is None:
            raise RuntimeError(f"real node {name} is not running (see {self.dir / 'logs'})")
        return pid

    def runtime_handlers(self, node: str) -> list[str]:
        """What a node's running runtime serves, as its kubelet reports it (sorted names;
        the default handler is "")."""
        from tests.cluster import kubeapi

        data = kubeapi.get_json(self.core().read_node, node)
        return sorted(h.get("name", "") for h in data["status"].get("runtimeHandlers") or [])

    @property
    def registry(self) -> str:
        """The registry as users (and the nodes, through their mirror config) name it."""
        return f"127.0.0.1:{self.state.ports['registry']}"

    def runner_node_names(self) -> list[str]:
        return [nodes.runner_node(i).name for i in range(self.state.runner_nodes)]

    def kwok_node_names(self) -> list[str]:
        st = self.state
        return [
            nodes.kwok_node(i, control_plane=st.control_plane, tainted=st.tainted).name
            for i in range(st.kwok_nodes)
        ]

    def healthy(self) -> bool:
        if not self.state_file.exists():
            return False
        if not all(procs.running(self.dir, c) for c in (*COMPONENTS, "runner")):
            return False
        nodes_running = (
            procs.running(self.dir, self.real_node(n).process) for n in self.real_node_names()
        )
        if not all(nodes_running):
            return False
        return self._apiserver_ready()

    # ---------------------------------------------------------------- up / down

    def up(self, spec: ClusterSpec) -> None:
        """Bring the cluster up (or complete it), with ``spec.nodes`` kwok nodes ready."""
        t0 = time.monotonic()
        if self.healthy():
            LOG.info("cluster in %s is already running", self.dir)
            st = self.state
            self.add_nodes(
                kwok=max(0, spec.nodes - st.kwok_nodes),
                runner=max(0, spec.runner_nodes - st.runner_nodes),
                real=max(0, spec.real_nodes - st.real_nodes),
            )
            return
        if self.state_file.exists() or any((self.dir / "pids").glob("*.pid")):
            LOG.info("found a stopped or broken cluster in %s; removing it first", self.dir)
            self.down()
        self.dir.mkdir(parents=True, exist_ok=True)
        control_plane, tainted = nodes.default_mix(spec.nodes)
        st = State(
            ports={
                name: procs.free_port()
                for name in (
                    "etcd",
                    "etcd_peer",
                    "apiserver",
                    "kcm",
                    "scheduler",
                    "kwok",
                    "registry",
                )
            },
            control_plane=control_plane if spec.control_plane is None else spec.control_plane,
            tainted=tainted if spec.tainted is None else spec.tainted,
            job_seconds=spec.job_seconds,
            failing_nodes=list(spec.failing_nodes),
            host_fixture=spec.host_fixture,
        )
        st.save(self.state_file)
        try:
            certs.ensure(self.dir / "pki")
            self._write_kubeconfig()
            self._start_etcd(st)
            self._start_apiserver(st)
            self._start_controllers(st)
            self._start_kwok()
            self._make_payload()
            self._start_runner()
            self._wait_default_serviceaccount()
            self.add_nodes(kwok=spec.nodes, runner=spec.runner_nodes, real=spec.real_nodes)
        except BaseException:
            LOG.error("cluster start failed; logs are in %s", self.dir / "logs")
            raise
        LOG.info(
            "cluster ready in %.1fs: %d kwok + %d runner-backed + %d real nodes",
            time.monotonic() - t0,
            spec.nodes,
            spec.runner_nodes,
            spec.real_nodes,
        )

    def down(self) -> None:
        """Stop every process this directory started and remove the directory.

        Real nodes go first: their PID namespaces end, then their veths, cgroups and the
        bridge are removed. Safe after a crash: whatever ``cluster.json`` and ``pids/``
        still name is stopped, and devices and cgroups are found by this directory's tag.
        """
        self._stop_real_nodes()
        for name in STOP_ORDER:
            if procs.read_pid(self.dir, name) is not None:
                LOG.info("stopping %s", name)
            procs.stop(self.dir, name)
        if self.dir.exists():
            shutil.rmtree(self.dir)
            LOG.info("removed %s", self.dir)

    # ---------------------------------------------------------------- components

    def _stop_real_nodes(self) -> None:
        try:
            st = self.state
        except (FileNotFoundError, ValueError):
            st = None
        tag = realnode.cluster_tag(self.dir)
        for pid_path in sorted((self.dir / "pids").glob("node-*.pid")):
            name = pid_path.stem.removeprefix("node-")
            index = int(name.rsplit("-", 1)[1]) if name.rsplit("-", 1)[-1].isdigit() else 0
            net = realnode.Network(tag=tag, subnet=(st.real_subnet if st else None) or 0)
            node = realnode.RealNode(name=name, index=index, net=net, dir=self.nodes_dir / name)
            realnode.stop(node, state_dir=self.dir)
        if st is not None and st.real_subnet is not None:
            procs.stop(self.dir, "gateway")
            realnode.remove_bridge(self.real_network(st.real_subnet))
        # A crash before pids/ was written can still have left cgroups behind.
        for hierarchy in realnode.cgroup_hierarchies(unified=True):
            for leftover in hierarchy.glob(f"kata-deploy-{tag}-*"):
                realnode.remove_cgroup_root(leftover.name)

    def _write_kubeconfig(self) -> None:
        self.kubeconfig.write_text(
            kubeconfig_text(
                server=f"https://127.0.0.1:{self.state.ports['apiserver']}",
                ca_cert=self.certs.ca_cert,
                user={
                    "client-certificate-data": certs.b64(self.certs.admin_cert),
                    "client-key-data": certs.b64(self.certs.admin_key),
                },
            )
        )

    def _start_etcd(self, st: State) -> None:
        LOG.info("starting etcd on 127.0.0.1:%d", st.ports["etcd"])
        client = f"http://127.0.0.1:{st.ports['etcd']}"
        peer = f"http://127.0.0.1:{st.ports['etcd_peer']}"
        procs.start(
            self.dir,
            "etcd",
            [
                tool("etcd"),
                "--name=default",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--unsafe-no-fsync",
                "--quota-backend-bytes=8589934592",
                "--log-level=warn",
            ],
        )
        self._wait("etcd", lambda: _http_ok(f"{client}/health"), timeout=30)

    def _start_apiserver(self, st: State) -> None:
        LOG.info("starting kube-apiserver on 127.0.0.1:%d", st.ports["apiserver"])
        c = self.certs
        procs.start(
            self.dir,
            "kube-apiserver",
            [
                tool("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{st.ports['etcd']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={st.ports['apiserver']}",
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={c.serving_cert}",
                f"--tls-private-key-file={c.serving_key}",
                f"--client-ca-file={c.ca_cert}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={c.sa_pub}",
                f"--service-account-signing-key-file={c.sa_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                "--max-requests-inflight=1000",
                "--max-mutating-requests-inflight=500",
                "--profiling=false",
                # For `kubectl logs`/`exec` on real nodes (their kubelets trust this CA).
                f"--kubelet-client-certificate={c.admin_cert}",
                f"--kubelet-client-key={c.admin_key}",
                "--kubelet-preferred-address-types=InternalIP",
                f"--cert-dir={self.dir / 'pki' / 'apiserver-generated'}",
            ],
        )
        self._wait("kube-apiserver", self._apiserver_ready, timeout=90)

    def restart_apiserver(self, *, down: float = 0.0) -> float:
        """SIGKILL the kube-apiserver, wait ``down`` seconds, start it again with the same
        flags on the same port and etcd (nothing of the cluster's state is lost), and wait
        until it is ready. Returns the seconds it was unavailable."""
        t0 = time.monotonic()
        LOG.info("killing kube-apiserver (SIGKILL); etcd keeps running")
        procs.stop(self.dir, "kube-apiserver", grace=0, first=signal.SIGKILL)
        time.sleep(down)
        self._start_apiserver(self.state)
        return time.monotonic() - t0

    def _start_controllers(self, st: State) -> None:
        kc = str(self.kubeconfig)
        LOG.info("starting kube-controller-manager and kube-scheduler")
        procs.start(
            self.dir,
            "kube-controller-manager",
            [
                tool("kube-controller-manager"),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={st.ports['kcm']}",
                "--leader-elect=false",
                "--controllers=*",
                f"--service-account-private-key-file={self.certs.sa_key}",
                f"--root-ca-file={self.certs.ca_cert}",
                "--use-service-account-credentials=false",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--concurrent-job-syncs=20",
                "--concurrent-gc-syncs=40",
                "--concurrent-ttl-after-finished-syncs=20",
                f"--cert-dir={self.dir / 'pki' / 'kcm-generated'}",
            ],
        )
        procs.start(
            self.dir,
            "kube-scheduler",
            [
                tool("kube-scheduler"),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={st.ports['scheduler']}",
                "--leader-elect=false",
                f"--cert-dir={self.dir / 'pki' / 'scheduler-generated'}",
            ],
        )
        self._wait(
            "kube-controller-manager",
            lambda: _http_ok(f"https://127.0.0.1:{st.ports['kcm']}/healthz"),
            timeout=60,
        )
        self._wait(
            "kube-scheduler",
            lambda: _http_ok(f"https://127.0.0.1:{st.ports['scheduler']}/healthz"),
            timeout=60,
        )

    def _start_kwok(self) -> None:
        st = self.state
        config = self.dir / "kwok.yaml"
        config.write_text(
            kwokconfig.render(job_seconds=st.job_seconds, failing_nodes=st.failing_nodes)
        )
        LOG.info(
            "starting kwok (job pods finish after ~%.1fs; failing nodes: %s)",
            st.job_seconds,
            ", ".join(st.failing_nodes) or "none",
        )
        procs.start(
            self.dir,
            "kwok",
            [
                tool("kwok"),
                f"--kubeconfig={self.kubeconfig}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-label-selector={kwokconfig.MANAGED_NODES_SELECTOR}",
                f"--config={config}",
                f"--server-address=127.0.0.1:{st.ports['kwok']}",
            ],
        )
        self._wait(
            "kwok", lambda: _http_ok(f"http://127.0.0.1:{st.ports['kwok']}/healthz"), timeout=30
        )

    def set_failing_nodes(self, names: Sequence[str]) -> None:
        """Make kwok fail the Job pods of exactly ``names`` from now on (restarts kwok)."""
        st = self.state
        st.failing_nodes = list(names)
        st.save(self.state_file)
        procs.stop(self.dir, "kwok")
        # The new kwok would wait for the old one's node Leases to expire before it
        # manages those nodes again: hand them over at once.
        coordination = self._coordination()
        for name in self.kwok_node_names():
            with contextlib.suppress(Exception):
                coordination.delete_namespaced_lease(name, "kube-node-lease")
        self._start_kwok()

    def _make_payload(self) -> None:
        if (self.payload / ".complete").exists():
            return
        if not PAYLOAD_SCRIPT.exists():
            LOG.warning(
                "%s does not exist yet: installer pods on runner nodes will have no payload",
                PAYLOAD_SCRIPT,
            )
            return
        LOG.info("generating the synthetic Kata payload in %s", self.payload)
        shutil.rmtree(self.payload, ignore_errors=True)
        result = subprocess.run(
            [_python(), str(PAYLOAD_SCRIPT), "--out", str(self.payload)],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
        )
        if result.returncode != 0:
            raise procs.StartError(
                f"{PAYLOAD_SCRIPT} --out {self.payload} failed:\n{result.stderr.strip()}"
            )
        (self.payload / ".complete").touch()

    def _start_runner(self) -> None:
        LOG.info("starting the pod runner")
        ready = self.dir / "runner.ready"
        ready.unlink(missing_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        procs.start(
            self.dir,
            "runner",
            [_python(), "-m", "tests.cluster", "--dir", str(self.dir), "runner"],
            env=env,
            cwd=REPO,
        )
        self._wait("runner", ready.exists, timeout=60)

    def restart_runner(self) -> None:
        procs.stop(self.dir, "runner")
        self._start_runner()

    def _wait(self, name: str, check: Any, *, timeout: float) -> None:
        procs.wait_until(
            name,
            check,
            timeout=timeout,
            alive_check=lambda: procs.running(self.dir, name),
            log_path=procs.log_file(self.dir, name),
        )

    def _apiserver_ready(self) -> bool:
        try:
            port = self.state.ports["apiserver"]
        except (FileNotFoundError, KeyError):
            return False
        ctx = ssl.create_default_context(cafile=str(self.certs.ca_cert))
        ctx.load_cert_chain(str(self.certs.admin_cert), str(self.certs.admin_key))
        return _http_ok(f"https://127.0.0.1:{port}/readyz", context=ctx)

    def _wait_default_serviceaccount(self) -> None:
        core = self.core()

        def exists() -> bool:
            try:
                core.read_namespaced_service_account("default", "default")
            except Exception:  # noqa: BLE001 - any failure means "not yet"
                return False
            return True

        LOG.info("waiting for the controllers (default ServiceAccount)")
        procs.wait_until(
            "the default ServiceAccount (kube-controller-manager)",
            exists,
            timeout=60,
            log_path=procs.log_file(self.dir, "kube-controller-manager"),
        )

    # ---------------------------------------------------------------- nodes

    def add_nodes(self, *, kwok: int = 0, runner: int = 0, real: int = 0) -> list[str]:
        """Create ``kwok`` kwok, ``runner`` runner-backed and ``real`` real nodes; wait Ready."""
        added = self._add_simulated_nodes(kwok=kwok, runner=runner)
        if real:
            added += self.add_real_nodes(real)
        return added

    def _add_simulated_nodes(self, *, kwok: int, runner: int) -> list[str]:
        st = self.state
        specs = [
            nodes.kwok_node(i, control_plane=st.control_plane, tainted=st.tainted)
            for i in range(st.kwok_nodes, st.kwok_nodes + kwok)
        ]
        runner_specs = [
            nodes.runner_node(i) for i in range(st.runner_nodes, st.runner_nodes + runner)
        ]
        if runner_specs:
            fixture = nodes.fixture_host(st.host_fixture)
            for spec in runner_specs:
                nodes.seed_host(
                    self.node_root(spec.name), self.node_original(spec.name), fixture=fixture
                )
        all_specs = specs + runner_specs
        if not all_specs:
            return []
        LOG.info("creating %d kwok and %d runner-backed nodes", len(specs), len(runner_specs))
        core = self.core(pool=16)

        def create(spec: nodes.NodeSpec) -> None:
            from kubernetes.client.exceptions import ApiException

            try:
                core.create_node(spec.manifest())
            except ApiException as exc:
                if exc.status != 409:
                    raise

        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(create, all_specs))
        st.kwok_nodes += kwok
        st.runner_nodes += runner
        st.save(self.state_file)
        self.wait_nodes_ready([s.name for s in all_specs])
        return [s.name for s in all_specs]

    def ensure_registry(self) -> str:
        """Start the cluster's OCI registry unless it runs; return its host:port."""
        if not procs.running(self.dir, "registry"):
            LOG.info("starting the registry on %s", self.registry)
            registry.start(
                self.dir, binary=tool("docker-registry"), port=self.state.ports["registry"]
            )
        return self.registry

    def add_real_nodes(self, count: int) -> list[str]:
        """Start ``count`` more real nodes (kubelet + containerd + kube-proxy); wait Ready."""
        if os.geteuid() != 0:
            raise RuntimeError(
                "real nodes need root: they make namespaces, mounts, cgroups and a bridge "
                "(run as root, or use --real-nodes 0)"
            )
        self.ensure_registry()
        if not registry.has(self.state.ports["registry"], "pause", realnode.PAUSE_TAG):
            from tests.images import build

            LOG.info("building and pushing the pause image (real nodes' pod sandboxes)")
            build.push_pause(self.registry)
        st = self.state
        if st.real_subnet is None:
            st.real_subnet = realnode.pick_subnet(realnode.cluster_tag(self.dir))
            st.save(self.state_file)
        net = self.real_network(st.real_subnet)
        realnode.ensure_bridge(net)
        ports = st.ports
        if not procs.running(self.dir, "gateway"):
            procs.start(
                self.dir,
                "gateway",
                [_python(), "-m", "tests.cluster.gateway", f"--listen={net.gateway}",
                 f"--port={ports['apiserver']}", f"--port={ports['registry']}"],
                env={**os.environ, "PYTHONPATH": str(REPO)},
                cwd=REPO,
            )  # fmt: skip
        self._point_kubernetes_service(net)
        tools = {
            name: str(Path(tool(binary)).resolve())
            for name, binary in (
                ("containerd", "containerd2"),
                ("containerd-shim-runc-v2", "containerd-shim-runc-v2"),
                ("runc", "runc"),
                ("kubelet", "kubelet"),
                ("kube-proxy", "kube-proxy"),
            )
        }
        names = []
        for index in range(st.real_nodes, st.real_nodes + count):
            name = realnode.node_name(index)
            node = realnode.RealNode(name=name, index=index, net=net, dir=self.nodes_dir / name)
            node.dir.mkdir(parents=True, exist_ok=True)
            LOG.info("starting real node %s (%s)", name, node.ip)
            realnode.write_config(
                node,
                pki=self.certs,
                endpoints=realnode.Endpoints(ports["apiserver"], ports["registry"]),
                tools=tools,
            )
            st.real_nodes = index + 1
            st.save(self.state_file)
            realnode.start(node, state_dir=self.dir, spec_path=node.dir / "node.json",
                           python=_python())  # fmt: skip
            names.append(name)
        self.wait_nodes_ready(names, timeout=120, log_name=f"node-{names[-1]}")
        return names

    def _point_kubernetes_service(self, net: realnode.Network) -> None:
        from kubernetes.client.exceptions import ApiException

        body = realnode.kubernetes_endpointslice(net.gateway, self.state.ports["apiserver"])
        discovery = self.api("DiscoveryV1Api")
        try:
            discovery.create_namespaced_endpoint_slice("default", body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            discovery.replace_namespaced_endpoint_slice(body["metadata"]["name"], "default", body)

    def wait_nodes_ready(
        self, names: Iterable[str], *, timeout: float = 180, log_name: str = "kwok"
    ) -> None:
        wanted = set(names)
        core = self.core()
        t0 = time.monotonic()
        last = -1

        def ready() -> bool:
            nonlocal last
            items = core.list_node(resource_version="0").items
            done = {
                n.metadata.name
                for n in items
                if n.metadata.name in wanted and node_ready(n) and not _not_ready_taint(n)
            }
            if len(done) != last and time.monotonic() - t0 > 2:
                LOG.info("nodes ready: %d/%d", len(done), len(wanted))
            last = len(done)
            return done == wanted

        procs.wait_until(
            f"{len(wanted)} nodes Ready",
            ready,
            timeout=timeout,
            interval=1.0,
            log_path=procs.log_file(self.dir, log_name),
        )

    # ---------------------------------------------------------------- clients

    def api_client(self, *, pool: int = 4) -> Any:
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig), client_configuration=configuration
        )
        configuration.connection_pool_maxsize = pool
        return client.ApiClient(configuration)

    def api(self, kind: str, *, pool: int = 4) -> Any:
        """A client API group object by class name, e.g. ``api("BatchV1Api")``."""
        from kubernetes import client

        return getattr(client, kind)(self.api_client(pool=pool))

    def _coordination(self) -> Any:
        return self.api("CoordinationV1Api")

    def core(self, *, pool: int = 4) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api_client(pool=pool))

    def env(self) -> dict[str, str]:
        """Environment for helm/kubectl/our programs against this cluster."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{TOOLS_BIN}{os.pathsep}{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        helm = REPO / ".tools" / "helm"
        for key, sub in (
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
            ("HELM_PLUGINS", "plugins"),
        ):
            env.setdefault(key, str(helm / sub))
        return env


# -------------------------------------------------------------------- helpers


def _python() -> str:
    venv = VENV_BIN / "python3"
    return str(venv) if venv.exists() else sys.executable


def _http_ok(url: str, *, context: ssl.SSLContext | None = None) -> bool:
    if context is None and url.startswith("https://"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def node_ready(node: Any) -> bool:
    for cond in node.status.conditions or []:
        if cond.type == "Ready":
            return bool(cond.status == "True")
    return False


def _not_ready_taint(node: Any) -> bool:
    return any(
        t.key in {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
        for t in node.spec.taints or []
    )


def summary_lines(cluster: Cluster) -> list[str]:
    st = cluster.state
    with contextlib.suppress(KeyError):
        return [
            f"kubeconfig: {cluster.kubeconfig}",
            f"apiserver:  https://127.0.0.1:{st.ports['apiserver']}",
            f"nodes:      {st.kwok_nodes} kwok ({st.control_plane} control-plane, "
            f"{st.tainted} tainted) + {st.runner_nodes} runner-backed + {st.real_nodes} real",
            f"logs:       {cluster.dir / 'logs'} (pods run by the runner: {cluster.pod_logs})",
            f"use it:     export KUBECONFIG={cluster.kubeconfig}",
        ]
    return []
