"""Shared helpers of the end-to-end scenarios: helm, waiting, and an independent Job watch.

Everything here talks to a real local cluster (:mod:`tests.cluster`): helm is the real
binary from hack/setup.sh, and :class:`JobWatch` observes per-node Jobs through its own
watch, so "never more than P in flight" is measured independently of the dispatcher.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.cluster import kubeapi
from tests.cluster.certs import kubeconfig_text
from tests.cluster.cluster import REPO, VENV_BIN, Cluster

CHART = REPO / "helm-chart" / "kata-deploy"
NODE_LABEL = "katacontainers.io/kata-runtime"
PREFIX = "kata-deploy.katacontainers.io"
Obj = dict[str, Any]
# Wall time of each scenario, printed at the end of the session (conftest).
TIMES: dict[str, float] = {}
# The figures of each fault scenario (test_faults.py), printed as a table (conftest).
FAULTS: dict[str, dict[str, Any]] = {}


def helm(
    cluster: Cluster,
    *args: str,
    check: bool = True,
    timeout: float = 300,
    binary: str = "helm",
) -> subprocess.CompletedProcess[str]:
    """Run real helm against ``cluster``; on failure with ``check`` show its output."""
    argv = [binary, "--kubeconfig", str(cluster.kubeconfig), *args]
    result = subprocess.run(
        argv,
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\n"
            f"runner pod logs: {cluster.pod_logs}"
        )
    return result


def kubectl(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["kubectl", "--kubeconfig", str(cluster.kubeconfig), *args]
    result = subprocess.run(
        argv, env=cluster.env(), capture_output=True, text=True, check=False, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {result.stderr}")
    return result


def wait_for(what: str, check: Callable[[], bool], *, timeout: float = 120) -> None:
    """Poll ``check`` (at most twice a second) until it holds, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def node_labels(cluster: Cluster) -> dict[str, dict[str, str]]:
    core = cluster.core()
    data = kubeapi.get_json(core.list_node)
    return {n["metadata"]["name"]: n["metadata"].get("labels") or {} for n in data["items"]}


def node_annotations(cluster: Cluster, name: str) -> dict[str, str]:
    node = kubeapi.get_json(cluster.core().read_node, name)
    return dict(node["metadata"].get("annotations") or {})


def labelled(cluster: Cluster, label: str = NODE_LABEL) -> set[str]:
    return {name for name, labels in node_labels(cluster).items() if labels.get(label) == "true"}


def label_nodes(cluster: Cluster, names: Iterable[str], labels: dict[str, str | None]) -> None:
    core = cluster.core()
    for name in names:
        core.patch_node(name, {"metadata": {"labels": labels}})


def jobs(cluster: Cluster, namespace: str, selector: str = "") -> list[Obj]:

    batch = cluster.api("BatchV1Api")
    data = kubeapi.get_json(batch.list_namespaced_job, namespace, label_selector=selector)
    return list(data["items"])


def finished(job: Obj) -> str | None:
    """ "Complete" or "Failed" once the Job is finished, else None."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond["type"] in {"Complete", "Failed"} and cond["status"] == "True":
            return str(cond["type"])
    return None


def job_node(job: Obj) -> str:
    meta = job["metadata"]
    return str(
        (meta.get("annotations") or {}).get(f"{PREFIX}/node-name")
        or job["spec"]["template"]["spec"].get("nodeName", "")
    )


def namespace_empty(cluster: Cluster, namespace: str) -> list[str]:
    """What of ours is still in ``namespace`` (Jobs, pods, ConfigMaps, SAs, RBAC, Leases)."""
    out = kubectl(
        cluster,
        "get",
        "jobs,pods,configmaps,serviceaccounts,roles,rolebindings,daemonsets,secrets,leases",
        "-n",
        namespace,
        "-o",
        "name",
        check=False,
    ).stdout.split()
    return [
        o
        for o in out
        if not o.endswith(("/default", "/kube-root-ca.crt")) and o != "serviceaccount/default"
    ]


@dataclass
class JobWatch:
    """Watches Jobs of a namespace from the side; records peak unfinished and every node seen."""

    cluster: Cluster
    namespace: str
    selector: str = ""
    unfinished: set[str] = field(default_factory=set)
    peak: int = 0
    created: dict[str, Obj] = field(default_factory=dict)
    history: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> JobWatch:

        self._batch = self.cluster.api("BatchV1Api")
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.5)
        self._stop.set()

    def _on(self, kind: str, job: Obj) -> None:
        name = job["metadata"]["name"]
        with self._lock:
            if kind == "DELETED" or finished(job) or job["metadata"].get("deletionTimestamp"):
                self.unfinished.discard(name)
            else:
                self.unfinished.add(name)
            if kind != "DELETED":
                self.created.setdefault(job["metadata"]["uid"], job)
            self.peak = max(self.peak, len(self.unfinished))
            self.history.append((time.monotonic(), len(self.unfinished)))

    def _run(self) -> None:
        def on_list(items: list[Obj]) -> None:
            for job in items:
                self._on("ADDED", job)
            self._ready.set()

        kubeapi.list_and_watch(
            self._batch.list_namespaced_job,
            on_list=on_list,
            on_event=self._on,
            stop=self._stop,
            namespace=self.namespace,
            label_selector=self.selector,
        )

    def nodes_created(self, stage: str = "install") -> list[str]:
        """Node of every distinct per-node Job of ``stage`` seen (duplicates kept)."""
        with self._lock:
            return [
                job_node(j)
                for j in self.created.values()
                if (j["metadata"].get("labels") or {}).get(f"{PREFIX}/stage") == stage
            ]


def release_objects(cluster: Cluster, release: str) -> list[str]:
    """Cluster-scoped objects still labelled with ``release`` (RBAC, RuntimeClasses)."""
    out = kubectl(
        cluster,
        "get",
        "clusterroles,clusterrolebindings,runtimeclasses",
        "-l",
        f"app.kubernetes.io/instance={release}",
        "-o",
        "name",
        check=False,
    ).stdout.split()
    return list(out)


def runtimeclasses(cluster: Cluster) -> dict[str, Obj]:

    node = cluster.api("NodeV1Api")
    data = kubeapi.get_json(node.list_runtime_class)
    return {rc["metadata"]["name"]: rc for rc in data["items"]}


def values_file(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


def assert_hosts_pristine(cluster: Cluster, names: Sequence[str]) -> None:
    from tests.cluster import nodes

    for name in names:
        now = nodes.tree_digest(cluster.node_root(name))
        before = nodes.tree_digest(cluster.node_original(name))
        changed = sorted(set(now.items()) ^ set(before.items()))
        assert now == before, f"host directory of {name} differs from its original: {changed[:10]}"


@dataclass(frozen=True)
class ChartDispatcher:
    """The chart's install dispatcher, set up to run as a local process: the chart's
    RBAC and ConfigMaps applied, its dispatcher Job created suspended (the owner of the
    per-node Jobs), its container's arguments with the job template written locally, and
    a token of its ServiceAccount (so the chart's RBAC is what it gets)."""

    namespace: str
    args: list[str]
    token: str
    owner: Obj  # the dispatcher Job, as the chart renders it (suspended)
    objects: Path  # what was applied, for `kubectl delete -f`

    @property
    def owner_name(self) -> str:
        return str(self.owner["metadata"]["name"])

    def run(self, cluster: Cluster, server: str, log: Path, *extra: str) -> subprocess.Popen[str]:
        """Start it against `server` (the apiserver, or a proxy in front of it); its
        stderr goes to `log`, its stdout (the summary) to the returned process."""
        kubeconfig = log.with_suffix(".kubeconfig")
        kubeconfig.write_text(
            kubeconfig_text(
                server=server, ca_cert=cluster.certs.ca_cert, user={"token": self.token}
            )
        )
        argv = [str(VENV_BIN / "kata-dispatcher"), *self.args, "--kubeconfig", str(kubeconfig),
                "--progress-interval", "5", "--timeout", "300", *extra]  # fmt: skip
        env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(log.parent),
               "POD_NAMESPACE": self.namespace}  # fmt: skip
        with log.open("w") as err:
            return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True, env=env)


def chart_dispatcher(
    cluster: Cluster, tmp: Path, namespace: str, release: str, *helm_args: str
) -> ChartDispatcher:
    """`helm template` the chart with `helm_args`, apply what the install dispatcher
    needs and return it ready to run (ChartDispatcher)."""
    out = helm(cluster, "template", release, str(CHART), "-n", namespace, *helm_args).stdout
    docs = [d for d in yaml.safe_load_all(out) if isinstance(d, dict)]
    keep = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
            "ConfigMap"}  # fmt: skip
    kubectl(cluster, "create", "namespace", namespace)
    objects = tmp / "objects.yaml"
    objects.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] in keep]))
    # Every object names its namespace (the installer's Events Role lives in "default").
    kubectl(cluster, "apply", "-f", str(objects))
    owner = next(
        d
        for d in docs
        if d["kind"] == "Job" and "post-install" in d["metadata"]["annotations"]["helm.sh/hook"]
    )
    owner["spec"]["suspend"] = True
    cluster.api("BatchV1Api").create_namespaced_job(namespace, owner)
    templates = next(
        d for d in docs if d["kind"] == "ConfigMap" and "install-job.yaml" in d["data"]
    )
    template = tmp / "install-job.yaml"
    template.write_text(templates["data"]["install-job.yaml"])
    pod = owner["spec"]["template"]["spec"]
    args = list(pod["containers"][0]["args"])
    args[args.index("--template") + 1] = str(template)
    token = kubeapi.get_json(
        cluster.core().create_namespaced_service_account_token,
        pod["serviceAccountName"],
        namespace,
        {"spec": {"audiences": [], "expirationSeconds": 3600}},
    )["status"]["token"]
    return ChartDispatcher(namespace, args, str(token), owner, objects)
