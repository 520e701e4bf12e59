"""Real worker nodes: a kubelet, containerd (with runc and CNI) and kube-proxy per node.

Each node runs ``nodeinit.py`` as PID 1 of its own mount, PID, network, UTS and IPC
namespaces (started with ``unshare``), with its own ``/etc`` and ``/var`` (overlays of
the machine's), ``/opt``, ``/run`` and ``/tmp``, so nothing of the machine changes. This
module is the host side: it writes the node's configuration, gives it a cgroup root in
every cgroup v1 hierarchy, connects its network namespace to the cluster's bridge with a
veth pair, and on ``stop`` removes every one of those again.

The cluster network (one per cluster directory): a bridge ``kdbr-<hash>`` with
``10.213.N.1/24`` on the host side (N picked free on this machine), node ``i`` at
``10.213.N.(10+i)`` behind its veth, pod addresses ``10.244.i.0/24`` inside the node.
The control plane stays on 127.0.0.1: ``gateway.py`` relays the bridge address's
apiserver and registry ports to it, and the ``kubernetes`` Service gets an EndpointSlice
pointing at that relay, so pods reach the API through real kube-proxy rules. Nothing is
routed or NATed on the host: every packet from a node is addressed to the bridge IP.

What must not happen: a write to the machine's cgroup mounts, sysctls or network
configuration outside the devices made here; a mount outside a node's namespace.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.cluster import certs
from tests.cluster.kwokconfig import REAL_LABEL

LOG = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
SYSTEMCTL_STANDIN = Path(__file__).resolve().with_name("node_systemctl.py")
CGROUP_FS = Path("/sys/fs/cgroup")
NET_PREFIX = "10.213"
# The sandbox image containerd pins: tests/cluster/images/pause, pushed by the cluster.
PAUSE_TAG = "kata-deploy-test"
POD_PREFIX = "10.244"
# The values the kubelet checks (and would otherwise try to write machine-wide).
KUBELET_SYSCTLS = {
    "kernel.panic": 10,
    "kernel.panic_on_oops": 1,
    "vm.overcommit_memory": 1,
    "vm.panic_on_oom": 0,
    "kernel.keys.root_maxkeys": 1000000,
    "kernel.keys.root_maxbytes": 25000000,
}


class NodeError(RuntimeError):
    """A real node could not be started or stopped; the message says which and why."""


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise NodeError(f"`{' '.join(argv)}` failed: {(done.stderr or done.stdout).strip()}")
    return done


def cluster_tag(cluster_dir: Path) -> str:
    """Eight hex digits naming this cluster's devices and cgroups."""
    return hashlib.sha256(str(cluster_dir.resolve()).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Network:
    """The bridge real nodes of one cluster share, and its addresses."""

    tag: str
    subnet: int  # N of 10.213.N.0/24

    @property
    def bridge(self) -> str:
        return f"kdbr-{self.tag}"

    @property
    def gateway(self) -> str:
        return f"{NET_PREFIX}.{self.subnet}.1"

    def node_ip(self, index: int) -> str:
        return f"{NET_PREFIX}.{self.subnet}.{10 + index}"

    def veth(self, index: int) -> str:
        return f"kdv{self.tag}-{index}"


def pick_subnet(tag: str) -> int:
    """A /24 of 10.213.0.0/16 no interface of this machine uses yet."""
    used = set()
    for line in _sh("ip", "-4", "-o", "addr", "show").stdout.splitlines():
        addr = ipaddress.ip_interface(line.split()[3])
        used.add(addr.network)
    start = int(tag, 16) % 250
    for offset in range(250):
        n = (start + offset) % 250 + 1
        net = ipaddress.ip_network(f"{NET_PREFIX}.{n}.0/24")
        if not any(net.overlaps(u) for u in used):
            return n
    raise NodeError(f"no free /24 in {NET_PREFIX}.0.0/16 for the real nodes' bridge")


def ensure_bridge(net: Network) -> None:
    if _sh("ip", "link", "show", net.bridge, check=False).returncode == 0:
        return
    LOG.info("creating bridge %s (%s/24) for the real nodes", net.bridge, net.gateway)
    _sh("ip", "link", "add", net.bridge, "type", "bridge")
    _sh("ip", "addr", "add", f"{net.gateway}/24", "dev", net.bridge)
    _sh("ip", "link", "set", net.bridge, "up")


def remove_bridge(net: Network) -> None:
    if _sh("ip", "link", "show", net.bridge, check=False).returncode == 0:
        LOG.info("removing bridge %s", net.bridge)
        _sh("ip", "link", "del", net.bridge)


# ------------------------------------------------------------------ cgroups


def cgroup_hierarchies(*, unified: bool = False) -> list[Path]:
    """The machine's cgroup hierarchies (never remounted, only written below).

    The v1 ones, where the kubelet's cgroup root is made; with ``unified``, also the
    hybrid layout's cgroup2 mount, where runc adds each container's cgroup too.
    """
    found = []
    for p in CGROUP_FS.iterdir():
        wanted = p.name != "unified" or unified
        if wanted and p.is_dir() and not p.is_symlink() and (p / "cgroup.procs").exists():
            found.append(p)
    return sorted(found)


def make_cgroup_root(name: str) -> None:
    for hierarchy in cgroup_hierarchies():
        path = hierarchy / name
        path.mkdir(exist_ok=True)
        if hierarchy.name == "cpuset":
            for knob in ("cpuset.cpus", "cpuset.mems"):
                (path / knob).write_text((hierarchy / knob).read_text())


def remove_cgroup_root(name: str, *, timeout: float = 20.0) -> None:
    """Remove ``name`` and everything the kubelet and runc made below it."""
    deadline = time.monotonic() + timeout
    for hierarchy in cgroup_hierarchies(unified=True):
        root = hierarchy / name
        if not root.exists():
            continue
        dirs = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for path in [*dirs, root]:
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if time.monotonic() > deadline:
                        raise NodeError(f"cannot remove cgroup {path}: {exc}") from exc
                    time.sleep(0.2)


# ------------------------------------------------------------------ the node


@dataclass(frozen=True)
class Endpoints:
    """Where a node reaches the control plane and the registry (through the gateway)."""

    apiserver_port: int
    registry_port: int


@dataclass(frozen=True)
class RealNode:
    """One real node of a cluster: names, addresses, directories."""

    name: str
    index: int
    net: Network
    dir: Path

    @property
    def ip(self) -> str:
        return self.net.node_ip(self.index)

    @property
    def cgroup_root(self) -> str:
        return f"kata-deploy-{self.net.tag}-{self.name}"

    @property
    def pod_cidr(self) -> str:
        return f"{POD_PREFIX}.{self.index}.0/24"

    @property
    def process(self) -> str:
        """Name of its process (``unshare`` + nodeinit) in the cluster's ``pids/``."""
        return f"node-{self.name}"

    def init_pid(self, unshare_pid: int) -> int | None:
        """The host PID of the node's PID 1 (unshare's only child)."""
        try:
            children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text()
        except OSError:
            return None
        pids = children.split()
        return int(pids[0]) if pids else None


def node_name(index: int) -> str:
    return f"real-{index:02d}"


def write_config(
    node: RealNode, *, pki: certs.Certs, endpoints: Endpoints, tools: dict[str, str]
) -> dict[str, Any]:
    """Write the node's ``config/`` tree and ``node.json``; return the latter's content."""
    config = node.dir / "config"
    if config.exists():
        shutil.rmtree(config)
    etc = config / "etc"
    kube = etc / "kubernetes"
    (kube / "pki").mkdir(parents=True)
    shutil.copyfile(pki.ca_cert, kube / "pki" / "ca.crt")
    server = f"https://{node.net.gateway}:{endpoints.apiserver_port}"
    registry = f"127.0.0.1:{endpoints.registry_port}"
    for user, subject in (
        ("kubelet", f"/O=system:nodes/CN=system:node:{node.name}"),
        ("kube-proxy", "/CN=system:kube-proxy"),
    ):
        crt, key = certs.client_cert(pki, f"{node.name}-{user}", subject)
        credentials = {"client-certificate-data": certs.b64(crt), "client-key-data": certs.b64(key)}
        (kube / f"{user}.kubeconfig").write_text(
            # The gateway's address is not in the apiserver's serving certificate.
            certs.kubeconfig_text(
                server=server, ca_cert=pki.ca_cert, user=credentials, tls_server_name="kubernetes"
            )
        )
    (kube / "kubelet-config.yaml").write_text(yaml.safe_dump(_kubelet_config(node)))
    (kube / "kube-proxy-config.yaml").write_text(yaml.safe_dump(_kube_proxy_config(node)))
    containerd = etc / "containerd"
    (containerd / "conf.d").mkdir(parents=True)
    (containerd / "config.toml").write_text(_containerd_config(registry))
    hosts = containerd / "certs.d" / registry
    hosts.mkdir(parents=True)
    gateway_registry = f"http://{node.net.gateway}:{endpoints.registry_port}"
    (hosts / "hosts.toml").write_text(
        f'server = "{gateway_registry}"\n\n[host."{gateway_registry}"]\n'
        '  capabilities = ["pull", "resolve"]\n  skip_verify = true\n'
    )
    (etc / "cni" / "net.d").mkdir(parents=True)
    (etc / "cni" / "net.d" / "10-kata-deploy-test.conflist").write_text(
        json.dumps(_cni_config(node), indent=2) + "\n"
    )
    (node.dir / "logs").mkdir(parents=True, exist_ok=True)
    path_dirs = sorted({str(Path(t).parent) for t in tools.values()})
    spec = {
        "name": node.name,
        "dir": str(node.dir),
        "systemctl": str(SYSTEMCTL_STANDIN),
        "sysctls": KUBELET_SYSCTLS,
        "env": {
            "PATH": os.pathsep.join(
                [
                    *path_dirs,
                    "/usr/local/sbin",
                    "/usr/local/bin",
                    "/usr/sbin",
                    "/usr/bin",
                    "/sbin",
                    "/bin",
                ]
            ),
            "HOME": "/root",
        },
        "units": [
            {
                "name": "containerd",
                "argv": [tools["containerd"], "--config", "/etc/containerd/config.toml"],
                "ready": "/run/containerd/containerd.sock",
            },
            {
                "name": "kubelet",
                "argv": [
                    tools["kubelet"],
                    "--config=/etc/kubernetes/kubelet-config.yaml",
                    "--kubeconfig=/etc/kubernetes/kubelet.kubeconfig",
                    f"--hostname-override={node.name}",
                    f"--node-ip={node.ip}",
                    f"--node-labels={REAL_LABEL}=true",
                    "--v=1",
                ],
            },
            {
                "name": "kube-proxy",
                "argv": [tools["kube-proxy"], "--config=/etc/kubernetes/kube-proxy-config.yaml"],
            },
        ],
    }
    (node.dir / "node.json").write_text(json.dumps(spec, indent=2) + "\n")
    return spec


def _kubelet_config(node: RealNode) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # This machine has cgroup v1 (hybrid); kubelet 1.35+ refuses it unless told.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{node.cgroup_root}",
        "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
        "address": node.ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "nodeStatusUpdateFrequency": "5s",
        "nodeStatusReportFrequency": "10s",
        "failSwapOn": False,
        "resolvConf": "/etc/resolv.conf",
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 99,
        "imageGCLowThresholdPercent": 98,
        "serializeImagePulls": False,
        "maxPods": 30,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "protectKernelDefaults": False,
        "staticPodPath": "",
        "containerLogMaxSize": "1Mi",
        "shutdownGracePeriod": "0s",
    }


def _kube_proxy_config(node: RealNode) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": "/etc/kubernetes/kube-proxy.kubeconfig"},
        "hostnameOverride": node.name,
        "bindAddress": node.ip,
        "mode": "iptables",
        "clusterCIDR": f"{POD_PREFIX}.0.0/16",
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
        # 0 = leave the machine-wide conntrack settings alone.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def _containerd_config(registry: str) -> str:
    return f"""version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
imports = ["/etc/containerd/conf.d/*.toml"]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.cri.v1.runtime"]
  # This machine's bounding set lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj.
  restrict_oom_score_adj = true

[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"

  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["/usr/lib/cni"]
  conf_dir = "/etc/cni/net.d"

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{registry}/pause:{PAUSE_TAG}"

[plugins."io.containerd.cri.v1.images".registry]
  config_path = "/etc/containerd/certs.d"
"""


def _cni_config(node: RealNode) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "kata-deploy-test",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": node.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": "/var/lib/cni/networks",
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


# ------------------------------------------------------------------ lifecycle


def start(node: RealNode, *, state_dir: Path, spec_path: Path, python: str) -> int:
    """Start the node's namespaces and PID 1; return the host PID of that PID 1."""
    from tests.cluster import procs

    for stale in ("mounts.ready", "net.ready", "units.ready"):
        (node.dir / stale).unlink(missing_ok=True)
    make_cgroup_root(node.cgroup_root)
    unshare_pid = procs.start(
        state_dir,
        node.process,
        [
            "unshare", "--mount", "--pid", "--net", "--uts", "--ipc", "--fork",
            "--kill-child", "--mount-proc", "--propagation", "private",
            python, "-m", "tests.cluster.nodeinit", str(spec_path),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )  # fmt: skip
    log = procs.log_file(state_dir, node.process)

    def unshare_alive() -> bool:
        return procs.alive(unshare_pid)

    procs.wait_until(
        f"node {node.name}: mounts",
        (node.dir / "mounts.ready").exists,
        timeout=30,
        alive_check=unshare_alive,
        log_path=log,
    )
    init = node.init_pid(unshare_pid)
    if init is None:
        raise NodeError(f"node {node.name}: no PID 1 under unshare (pid {unshare_pid}); see {log}")
    _connect(node, init)
    (node.dir / "net.ready").touch()
    procs.wait_until(
        f"node {node.name}: containerd, kubelet and kube-proxy started",
        (node.dir / "units.ready").exists,
        timeout=90,
        alive_check=unshare_alive,
        log_path=log,
    )
    return init


def _connect(node: RealNode, init_pid: int) -> None:
    """A veth from the bridge into the node's network namespace, addressed and routed."""
    host_end = node.net.veth(node.index)
    _sh("ip", "link", "del", host_end, check=False)
    _sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0",
        "netns", str(init_pid))  # fmt: skip
    _sh("ip", "link", "set", host_end, "master", node.net.bridge)
    _sh("ip", "link", "set", host_end, "up")
    inside = ("nsenter", "--target", str(init_pid), "--net", "--")
    _sh(*inside, "ip", "link", "set", "lo", "up")
    _sh(*inside, "ip", "addr", "add", f"{node.ip}/24", "dev", "eth0")
    _sh(*inside, "ip", "link", "set", "eth0", "up")
    _sh(*inside, "ip", "route", "add", "default", "via", node.net.gateway)


def stop(node: RealNode, *, state_dir: Path) -> None:
    """Stop the node (its PID namespace ends with its PID 1) and remove what it left."""
    from tests.cluster import procs

    pid = procs.read_pid(state_dir, node.process)
    if pid is not None:
        LOG.info("stopping real node %s", node.name)
    procs.stop(state_dir, node.process, grace=15)
    _sh("ip", "link", "del", node.net.veth(node.index), check=False)
    remove_cgroup_root(node.cgroup_root)


def nsenter_argv(init_pid: int) -> list[str]:
    """Run a command inside a node, as the installer's restart does."""
    return ["nsenter", "--target", str(init_pid), "--mount", "--uts", "--ipc", "--net",
            "--pid", "--"]  # fmt: skip


def kubernetes_endpointslice(gateway: str, port: int) -> dict[str, Any]:
    """Where the ``kubernetes`` Service leads: the gateway on the bridge."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes-kata-deploy-test",
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": "kata-deploy.test",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [gateway], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }
