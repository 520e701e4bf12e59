"""What the real-node scenarios share: the cluster with its registry, images and OCI chart,
and ways to read a real node's truth (its runtime handlers, its files, its processes).

Everything here reads the real thing: `status.runtimeHandlers` as the kubelet reports
what the node's running containerd serves; the node's /etc and /opt through
`/proc/<PID 1>/root`, i.e. as the node's own mount namespace shows them; the dispatcher's
process status from /proc, i.e. what the kernel enforces for its securityContext.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import kubeapi
from tests.cluster.cluster import Cluster, ClusterSpec
from tests.e2e import conftest
from tests.e2e.helpers import CHART, helm, wait_for

Obj = dict[str, Any]
SPEC = ClusterSpec(nodes=0, runner_nodes=0, real_nodes=1)
TAG = "e2e"


@dataclass(frozen=True)
class RealCluster:
    """The real-node cluster, the images it serves and where its chart is published."""

    cluster: Cluster
    images: dict[str, str]  # image name -> reference in the cluster's registry
    chart_ref: str
    chart_version: str

    def image_args(self) -> list[str]:
        installer, _, installer_tag = self.images["kata-installer"].rpartition(":")
        dispatcher, _, dispatcher_tag = self.images["kata-dispatcher"].rpartition(":")
        return [
            "--set", f"image.reference={installer}", "--set", f"image.tag={installer_tag}",
            "--set", f"job.dispatcherImage.reference={dispatcher}",
            "--set", f"job.dispatcherImage.tag={dispatcher_tag}",
        ]  # fmt: skip


@contextlib.contextmanager
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    from tests.images import build

    with conftest.running_cluster(tmp_path_factory, "real", SPEC) as cluster:
        registry = cluster.ensure_registry()
        built = build.build_and_push(registry, tag=TAG, pause=True)
        images = {name: image.reference for name, image in built.items()}
        version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
        work = tmp_path_factory.mktemp("chart")
        helm(cluster, "package", str(CHART), "-d", str(work))
        helm(cluster, "push", str(work / f"kata-deploy-{version}.tgz"),
             f"oci://{registry}/charts", "--plain-http")  # fmt: skip
        yield RealCluster(
            cluster=cluster,
            images=images,
            chart_ref=f"oci://{registry}/charts/kata-deploy",
            chart_version=str(version),
        )


# ------------------------------------------------------------------ the node's truth


def release_handlers(cluster: Cluster, release: str, namespace: str, node: str) -> list[str]:
    """The handlers the release's installer gives ``node``: its RuntimeClasses' handlers
    of the shims whose ``supportedArches`` include the node's architecture.

    (A RuntimeClass does not say its shim's architectures: its pods can land on a node
    that lacks the handler. The real node shows it; see the closing note of this work.)
    """
    import json

    values = json.loads(
        helm(cluster, "get", "values", release, "-n", namespace, "--all", "-o", "json").stdout
    )
    arch = kubeapi.get_json(cluster.core().read_node, node)["metadata"]["labels"][
        "kubernetes.io/arch"
    ]
    elsewhere = {
        f"kata-{name}"
        for name, shim in (values.get("shims") or {}).items()
        if isinstance(shim, dict) and arch not in (shim.get("supportedArches") or [arch])
    }
    data = kubeapi.get_json(
        cluster.api("NodeV1Api").list_runtime_class,
        label_selector=f"app.kubernetes.io/instance={release}",
    )
    return sorted(rc["handler"] for rc in data["items"] if rc["handler"] not in elsewhere)


def node_tree(
    cluster: Cluster, node: str, dirs: tuple[str, ...] = ("etc", "opt")
) -> dict[str, str]:
    """Every path under the node's ``dirs`` (as its mount namespace shows them): kind + hash."""
    root = Path(f"/proc/{cluster.real_node_pid(node)}/root")
    result: dict[str, str] = {}
    for top in dirs:
        for dirpath, dirnames, filenames in os.walk(root / top):
            base = Path(dirpath)
            for name in [*dirnames, *filenames]:
                path = base / name
                rel = str(path.relative_to(root))
                if path.is_symlink():
                    result[rel] = f"link:{path.readlink()}"
                elif path.is_dir():
                    result[rel] = f"dir:{path.stat().st_mode:o}"
                elif path.is_file():
                    result[rel] = "file:" + hashlib.sha256(path.read_bytes()).hexdigest()
                else:
                    result[rel] = "other"
    return result


def containerd_restarts(cluster: Cluster, node: str) -> int:
    """How often the node's service manager restarted containerd (its PID 1's log)."""
    log = cluster.dir / "logs" / f"node-{node}.log"
    return log.read_text().count("restarted containerd") if log.exists() else 0


def installer_pod(cluster: Cluster, namespace: str) -> Obj:
    pods = kubeapi.get_json(
        cluster.core().list_namespaced_pod,
        namespace,
        label_selector="app.kubernetes.io/component=installer",
    )["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return dict(pods[0])


def pod_logs(cluster: Cluster, namespace: str, *, container: str) -> str:
    """``kubectl logs`` of ``container`` in every installer pod of ``namespace``."""
    out = []
    pods = kubeapi.get_json(
        cluster.core().list_namespaced_pod,
        namespace,
        label_selector="app.kubernetes.io/component=installer",
    )["items"]
    for pod in pods:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "logs", "-n", namespace,
             pod["metadata"]["name"], "-c", container],
            capture_output=True, text=True, check=False, env=cluster.env(), timeout=60,
        )  # fmt: skip
        out.append(done.stdout + done.stderr)
    return "\n".join(out)


def node_result(cluster: Cluster, node: str, release: str) -> dict[str, Any]:
    """The release's result annotation on ``node`` (docs/contracts.md), or {}."""
    import json

    from kata_installer import report

    annotations = kubeapi.get_json(cluster.core().read_node, node)["metadata"].get("annotations")
    raw = (annotations or {}).get(report.annotation_key(release, ""))
    return dict(json.loads(raw)) if raw else {}


def node_event_reasons(cluster: Cluster, namespace: str, node: str) -> list[str]:
    events = kubeapi.get_json(
        cluster.core().list_namespaced_event,
        namespace,
        field_selector=f"involvedObject.kind=Node,involvedObject.name={node}",
    )["items"]
    return [str(e.get("reason", "")) for e in events]


def shell(cluster: Cluster, command: str) -> str:
    """Run a command line as an operator would (NOTES.txt's), against ``cluster``."""
    done = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, check=False,
        env=cluster.env(), timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, f"{command}: {done.stderr}"
    return done.stdout


def init_container_order(cluster: Cluster, namespace: str) -> list[str]:
    """The per-node install pod's containers, ordered by when each started."""
    pods = kubeapi.get_json(
        cluster.core().list_namespaced_pod,
        namespace,
        label_selector="app.kubernetes.io/component=installer",
    )["items"]
    assert pods, f"no per-node pod in {namespace}"
    pod = pods[0]
    statuses = [
        *(pod["status"].get("initContainerStatuses") or []),
        *(pod["status"].get("containerStatuses") or []),
    ]
    started = []
    for st in statuses:
        term = (st.get("state") or {}).get("terminated") or {}
        assert term.get("exitCode") == 0, st
        started.append((term["startedAt"], term["finishedAt"], st["name"]))
    started.sort()
    return [name for *_, name in started]


def kata_pod_failure(rc: RealCluster, namespace: str, *, runtime_class: str) -> str:
    """Run a pod with ``runtime_class`` and return why its sandbox could not start.

    The Kata payload is synthetic (no VM can start), so the expected end is containerd
    failing to run the shim binary the installer put under /opt/kata.
    """
    core = rc.cluster.core()
    name = f"try-{runtime_class}"
    pause = rc.images["pause"]
    core.create_namespaced_pod(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "runtimeClassName": runtime_class,
                "nodeName": None,
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "c", "image": pause}],
            },
        },
    )
    message = ""

    def failed() -> bool:
        nonlocal message
        events = kubeapi.get_json(
            core.list_namespaced_event,
            namespace,
            field_selector=f"involvedObject.name={name}",
        )["items"]
        for event in events:
            if event.get("reason") == "FailedCreatePodSandBox":
                message = str(event.get("message", ""))
                return True
        return False

    try:
        wait_for(f"pod {name} to fail its sandbox", failed, timeout=120)
    finally:
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        wait_for(
            f"pod {name} to go",
            lambda: (
                name
                not in {
                    p["metadata"]["name"]
                    for p in kubeapi.get_json(core.list_namespaced_pod, namespace)["items"]
                }
            ),
            timeout=60,
        )
    return message


# ------------------------------------------------------------------ process facts


@dataclass(frozen=True)
class ProcessFacts:
    """What the kernel says about a process: the securityContext as enforced."""

    pid: int
    uid: int
    gid: int
    cap_eff: int
    seccomp: int
    no_new_privs: bool
    root_read_only: bool


def process_facts(pid: int) -> ProcessFacts | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        mountinfo = Path(f"/proc/{pid}/mountinfo").read_text()
    except OSError:
        return None
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    root_opts = next(
        (line.split()[5] for line in mountinfo.splitlines() if line.split()[4] == "/"), ""
    )
    return ProcessFacts(
        pid=pid,
        uid=int(fields["Uid"].split()[1]),
        gid=int(fields["Gid"].split()[1]),
        cap_eff=int(fields["CapEff"].strip(), 16),
        seccomp=int(fields["Seccomp"].strip()),
        no_new_privs=fields["NoNewPrivs"].strip() == "1",
        root_read_only="ro" in root_opts.split(","),
    )


class _Background:
    """A context manager running ``_run`` in a thread until the block ends; ``_run``
    polls ``self._stop``."""

    def _start(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _halt(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        raise NotImplementedError


@dataclass
class ProcessSpy(_Background):
    """Watches /proc for processes whose command line contains ``needle``."""

    needle: str
    interval: float = 0.05
    found: dict[int, ProcessFacts] = field(default_factory=dict)

    def __enter__(self) -> ProcessSpy:
        self._start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt()

    def _run(self) -> None:
        needle = self.needle.encode()
        own = os.getpid()
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit() or int(entry.name) in self.found:
                    continue
                pid = int(entry.name)
                if pid == own:
                    continue
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if needle in cmdline and b"pytest" not in cmdline:
                    facts = process_facts(pid)
                    if facts is not None:
                        self.found[pid] = facts
            time.sleep(self.interval)

    def seen(self) -> list[ProcessFacts]:
        return list(self.found.values())


def nodeinit_command(cluster: Cluster, node: str, *words: str) -> None:
    """Tell a real node's service manager something (e.g. ``fail-next containerd 1``)."""
    pid = cluster.real_node_pid(node)
    script = (
        "import socket,sys;s=socket.socket(socket.AF_UNIX);"
        "s.connect('/run/kata-node/control.sock');"
        "s.sendall((' '.join(sys.argv[1:])+'\\n').encode());print(s.makefile().readline())"
    )
    subprocess.run(
        [
            "nsenter",
            "--target",
            str(pid),
            "--mount",
            "--",
            "/usr/bin/python3",
            "-c",
            script,
            *words,
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )


# ------------------------------------------------------------------ kills


def installer_processes(stage: str) -> list[int]:
    """PIDs (as this machine sees them) of installer processes running ``stage``.

    The chart starts each stage as ``kata-installer --config FILE STAGE``, the container's
    first process: killing it ends the container, as an OOM kill or a node fault would.
    """
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")[:-1]
        except OSError:
            continue
        named = any(a.endswith(b"kata-installer") for a in argv[:2])
        if named and argv[-1] == stage.encode():
            found.append(int(entry.name))
    return found


@dataclass
class KillDuringRestart(_Background):
    """SIGKILLs the installer's ``stage`` while the node's containerd is stopped mid-restart.

    On entry it asks the node's service manager to hold its next containerd restart
    ``pause`` seconds between the stop and the start (``pause-next``, tests/cluster/
    nodeinit.py), then follows the node's PID 1 log; when the pause begins, the installer
    is blocked in ``systemctl restart containerd`` and containerd is down: that is when
    every process running ``stage`` is SIGKILLed. The service manager finishes the
    restart anyway, as systemd does for a client that died. ``killed`` lists the PIDs.
    An empty ``stage`` kills nothing: the restart is only held (the same timing, no kill).
    """

    cluster: Cluster
    node: str
    stage: str
    pause: float = 4.0
    killed: list[int] = field(default_factory=list)

    def __enter__(self) -> KillDuringRestart:
        self._log = self.cluster.dir / "logs" / f"node-{self.node}.log"
        self._offset = self._log.stat().st_size
        nodeinit_command(self.cluster, self.node, "pause-next", "containerd", f"{self.pause:g}")
        self._start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt()
        nodeinit_command(self.cluster, self.node, "pause-next", "containerd", "0")

    def _paused(self) -> bool:
        with self._log.open("rb") as f:
            f.seek(self._offset)
            return b"containerd is stopped; starting it in" in f.read()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            if not self._paused():
                continue
            for pid in installer_processes(self.stage) if self.stage else []:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
            return


# ------------------------------------------------------------------ pod security


def render_pods(rc: RealCluster) -> dict[str, Obj]:
    """Every pod the chart can start, from the published chart, as bare Pod objects.

    Keys: ``dispatcher:<hook>`` for the hook Jobs' pods, ``installer:<kind>`` for the
    DaemonSet's pod and each per-node Job template's pod (job mode's ConfigMap).
    """
    pods: dict[str, Obj] = {}
    for mode in ("daemonset", "job"):
        out = helm(
            rc.cluster, "template", "psa", rc.chart_ref, "--version", rc.chart_version,
            "--plain-http", "--set", f"deploymentMode={mode}", *rc.image_args(),
        ).stdout  # fmt: skip
        for doc in yaml.safe_load_all(out):
            if not doc:
                continue
            kind, name = doc["kind"], doc["metadata"]["name"]
            if kind == "Job":
                pods[f"dispatcher:{name}"] = _pod(doc["spec"]["template"])
            elif kind == "DaemonSet":
                pods[f"installer:{name}"] = _pod(doc["spec"]["template"])
            elif kind == "ConfigMap":
                for key, text in (doc.get("data") or {}).items():
                    job = yaml.safe_load(text) if key.endswith("-job.yaml") else None
                    if job and job.get("kind") == "Job":
                        pods[f"installer:{key}"] = _pod(job["spec"]["template"])
    return pods


def _pod(template: Obj) -> Obj:
    spec = dict(template["spec"])
    spec["nodeName"] = "real-00"
    # Pod Security looks at the pod alone; the release's ServiceAccounts live elsewhere.
    spec.pop("serviceAccountName", None)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "psa-", "labels": template.get("metadata", {}).get("labels")},
        "spec": spec,
    }


def namespace(cluster: Cluster, name: str, *, level: str) -> None:
    cluster.core().create_namespace(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "labels": {
                    "pod-security.kubernetes.io/enforce": level,
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            },
        }
    )

    def has_default_sa() -> bool:
        names = kubeapi.get_json(cluster.core().list_namespaced_service_account, name)["items"]
        return any(sa["metadata"]["name"] == "default" for sa in names)

    wait_for(f"the default ServiceAccount of {name}", has_default_sa, timeout=60)


def dry_run_pod(cluster: Cluster, namespace: str, pod: Obj) -> tuple[bool, str]:
    """Create ``pod`` with a server-side dry run: real admission, nothing stored."""
    from kubernetes.client.exceptions import ApiException

    try:
        cluster.core().create_namespaced_pod(namespace, pod, dry_run="All")
    except ApiException as exc:
        return False, str(exc.body)
    return True, ""
