"""The local pod runner: the kubelet of runner-backed nodes and of every dispatcher pod.

kwok only pretends to run containers. The pods whose work we want to prove (the
dispatcher hook, and the node installer on nodes that have a host-root directory) are run
here instead, as local processes of the project's own programs:

- it keeps its nodes Ready (node status plus Lease renewals in ``kube-node-lease``);
- it watches pods bound to its nodes and every pod labelled
  ``app.kubernetes.io/component=dispatcher`` wherever the scheduler put it;
- per pod: init containers in order, then the containers; ``command[0]`` is looked up in
  the project virtualenv; env (values, ``fieldRef``, ``configMapKeyRef``, ``secretKeyRef``,
  ``envFrom``) is materialised; ConfigMap, Secret, downward API, projected and emptyDir
  volumes are written to a per-pod directory and each arg or env value starting with a
  mount path is rewritten to it; ``hostPath`` volumes must be mounted at ``/host`` + the
  host path and ``/host`` becomes the node's directory; ``/opt/kata-artifacts`` becomes
  the synthetic payload; containers that mount a ServiceAccount token get ``KUBECONFIG``
  with a TokenRequest token bound to the pod, so RBAC is the chart's; its server is the
  apiserver, or the pod's ``kata-deploy.test/api-server`` annotation (a fault proxy);
- it writes status back like a kubelet (phase, conditions, init/container statuses with
  exit codes, reason, and the output tail as termination message) and keeps each
  container's output under ``<cluster>/pod-logs/``;
- on deletion: SIGTERM, the grace period, SIGKILL, then the pod is deleted with grace 0;
- fault injection for tests: a pod annotated ``kata-deploy.test/kill-once`` with a JSON
  map ``{"<node>": ["<regex>", ...]}`` has its container SIGKILLed (the whole process
  group, as a kernel OOM kill or a node crash would) right after it writes the first
  output line matching one of its node's patterns; each (node, pattern) fires once in
  the runner's life, so the Job's retry runs to the end. The container's log then holds
  ``--- runner: SIGKILL after: <line>``.

See tests/cluster/README.md for what it does not emulate.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tests.cluster import kubeapi, kwokconfig
from tests.cluster.certs import kubeconfig_text
from tests.cluster.cluster import VENV_BIN, Cluster

LOG = logging.getLogger(__name__)

Obj = dict[str, Any]
PAYLOAD_MOUNT = "/opt/kata-artifacts"
HOST_MOUNT = "/host"
# A pod annotated with this gets it as the server of its kubeconfig instead of the
# apiserver's own address: tests/faults routes a release's pods through its fault proxy
# with the chart's `podAnnotations`. Only https://127.0.0.1:PORT is accepted.
API_SERVER_ANNOTATION = "kata-deploy.test/api-server"
_LOCAL_SERVER = re.compile(r"https://127\.0\.0\.1:[0-9]{1,5}")
LEASE_SECONDS = 40
RENEW_SECONDS = 10
STATUS_SECONDS = 60
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
KILL_ONCE = "kata-deploy.test/kill-once"


class PodError(Exception):
    """The pod cannot be run here; the message becomes the pod's failure message."""


@dataclass
class ContainerRun:
    """The runtime record of one container."""

    spec: Obj
    init: bool
    restarts: int = 0
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "PodInitializing"}})
    proc: subprocess.Popen[bytes] | None = None

    def status(self) -> Obj:
        running = "running" in self.state
        return {
            "name": self.spec["name"],
            "image": self.spec.get("image", ""),
            "imageID": "",
            "containerID": f"runner://{self.proc.pid}" if self.proc else "",
            "ready": running,
            "started": running,
            "restartCount": self.restarts,
            "state": self.state,
        }


class PodRun:
    """Runs one pod to completion (or until it is deleted) on a thread."""

    def __init__(self, runner: Runner, pod: Obj) -> None:
        self.runner = runner
        self.pod = pod
        meta = pod["metadata"]
        self.ns, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.node = pod["spec"].get("nodeName", "")
        self.stopping = threading.Event()
        self.finished = threading.Event()
        self.grace = float(pod["spec"].get("terminationGracePeriodSeconds", 30))
        self.workdir = runner.cluster.dir / "pods" / f"{self.ns}_{self.name}_{self.uid[:8]}"
        self.logdir = runner.cluster.pod_logs
        self.inits = [ContainerRun(c, True) for c in pod["spec"].get("initContainers") or []]
        self.mains = [ContainerRun(c, False) for c in pod["spec"].get("containers") or []]
        self.started_at = kubeapi.now()
        self.volumes: dict[str, Path] = {}
        self.token_volumes: set[str] = set()
        self.kubeconfig: Path | None = None
        self.plans: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.thread = threading.Thread(target=self._run, name=f"pod-{self.name}", daemon=True)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self.thread.start()

    def request_stop(self, grace: float | None) -> None:
        if grace is not None:
            self.grace = grace
        self.stopping.set()

    def _run(self) -> None:
        try:
            phase, message = self._execute()
            reason = ""
        except PodError as exc:
            LOG.warning("pod %s/%s cannot run here: %s", self.ns, self.name, exc)
            phase, message, reason = "Failed", str(exc), "RunnerRefused"
        except Exception as exc:
            LOG.exception("pod %s/%s: runner error", self.ns, self.name)
            phase, message, reason = "Failed", f"local runner error: {exc}", "RunnerError"
        with contextlib.suppress(Exception):
            self._report(phase, message=message, reason=reason)
        LOG.info("pod %s/%s on %s: %s %s", self.ns, self.name, self.node, phase, message)
        self.finished.set()
        if self.stopping.is_set():
            self.runner.delete_pod(self.ns, self.name, self.uid)

    def _execute(self) -> tuple[str, str]:
        self._report("Pending")
        self._prepare()
        # Refuse the whole pod up front (as a kubelet would) if any container cannot run.
        for c in self.inits + self.mains:
            mapping = self._mapping(c.spec)
            env = self._env(c.spec, mapping)
            self.plans[c.spec["name"]] = (self._argv(c.spec, env, mapping), env)
        policy = self.pod["spec"].get("restartPolicy", "Always")
        for c in self.inits:
            while True:
                code = self._run_container(c)
                if code == 0 or self.stopping.is_set() or policy == "Never":
                    break
                c.restarts += 1
                self._backoff(c)
            if code != 0:
                return "Failed", f"init container {c.spec['name']} exited with {code}"
        self._report("Running")
        threads = [
            threading.Thread(target=self._run_main, args=(c, policy), daemon=True)
            for c in self.mains
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = [c.state.get("terminated", {}).get("exitCode", 137) for c in self.mains]
        if all(code == 0 for code in codes):
            return "Succeeded", ""
        failed = [c.spec["name"] for c in self.mains if c.state["terminated"]["exitCode"] != 0]
        return "Failed", f"container(s) {', '.join(failed)} failed"

    def _run_main(self, c: ContainerRun, policy: str) -> None:
        while True:
            code = self._run_container(c)
            if self.stopping.is_set() or policy == "Never" or (policy == "OnFailure" and code == 0):
                return
            c.restarts += 1
            self._backoff(c)

    def _backoff(self, c: ContainerRun) -> None:
        delay = min(10.0 * 2 ** (c.restarts - 1), 60.0)
        c.state = {"waiting": {"reason": "CrashLoopBackOff"}}
        self._report("Running" if not c.init else "Pending")
        self.stopping.wait(delay)

    # ---------------------------------------------------------------- volumes

    def _prepare(self) -> None:
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        (self.workdir / "volumes").mkdir(parents=True)
        (self.workdir / "home").mkdir()
        self.logdir.mkdir(parents=True, exist_ok=True)
        node_root = self.runner.node_root(self.node)
        for vol in self.pod["spec"].get("volumes") or []:
            name = vol["name"]
            target = self.workdir / "volumes" / name
            if "hostPath" in vol:
                if node_root is None:
                    raise PodError(
                        f"volume {name}: hostPath {vol['hostPath']['path']} on node {self.node}, "
                        "which has no host directory (only runner-backed nodes have one)"
                    )
                host_path = vol["hostPath"]["path"]
                local = node_root / host_path.lstrip("/")
                if vol["hostPath"].get("type") in {"DirectoryOrCreate", None, ""}:
                    local.mkdir(parents=True, exist_ok=True)
                self.volumes[name] = local
                continue
            target.mkdir(parents=True)
            self.volumes[name] = target
            if "configMap" in vol:
                self._write_configmap(target, vol["configMap"])
            elif "secret" in vol:
                self._write_secret(target, vol["secret"])
            elif "downwardAPI" in vol:
                self._write_downward(target, vol["downwardAPI"].get("items") or [])
            elif "projected" in vol:
                for src in vol["projected"].get("sources") or []:
                    if "serviceAccountToken" in src:
                        self.token_volumes.add(name)
                        sat = src["serviceAccountToken"]
                        _write(target / sat["path"], self._token(sat.get("audience")))
                    elif "configMap" in src:
                        self._write_configmap(target, src["configMap"])
                    elif "secret" in src:
                        self._write_secret(target, src["secret"])
                    elif "downwardAPI" in src:
                        self._write_downward(target, src["downwardAPI"].get("items") or [])
            elif "emptyDir" not in vol:
                kinds = sorted(set(vol) - {"name"})
                raise PodError(f"volume {name}: type {kinds} is not supported by the local runner")

    def _items(self, data: dict[str, str], items: list[Obj] | None) -> dict[str, str]:
        if not items:
            return dict(data)
        return {i["path"]: data[i["key"]] for i in items if i["key"] in data}

    def _write_configmap(self, target: Path, ref: Obj) -> None:
        cm = self.runner.read(
            "ConfigMap", self.ns, ref["name"], optional=ref.get("optional", False)
        )
        if cm is None:
            return
        data = dict(cm.get("data") or {})
        for key, value in (cm.get("binaryData") or {}).items():
            data[key] = base64.b64decode(value).decode("latin-1")
        for path, text in self._items(data, ref.get("items")).items():
            _write(target / path, text)

    def _write_secret(self, target: Path, ref: Obj) -> None:
        name = ref.get("secretName") or ref.get("name", "")
        secret = self.runner.read("Secret", self.ns, name, optional=ref.get("optional", False))
        if secret is None:
            return
        data = {
            k: base64.b64decode(v).decode("latin-1") for k, v in (secret.get("data") or {}).items()
        }
        for path, text in self._items(data, ref.get("items")).items():
            _write(target / path, text)

    def _write_downward(self, target: Path, items: list[Obj]) -> None:
        for item in items:
            if "fieldRef" in item:
                _write(target / item["path"], self._field(item["fieldRef"]["fieldPath"]))

    def _token(self, audience: str | None) -> str:
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        token = self.runner.token(self.ns, sa, pod=self.name, uid=self.uid, audience=audience)
        if self.kubeconfig is None:
            self.kubeconfig = self.workdir / "kubeconfig"
            self.kubeconfig.write_text(
                kubeconfig_text(
                    server=self._api_server(),
                    ca_cert=self.runner.cluster.certs.ca_cert,
                    user={"token": token},
                )
            )
        return token

    def _api_server(self) -> str:
        """The apiserver, or the server the pod's annotation names (a fault proxy)."""
        annotations = self.pod["metadata"].get("annotations") or {}
        server = annotations.get(API_SERVER_ANNOTATION)
        if server is None:
            return self.runner.cluster.server
        if not _LOCAL_SERVER.fullmatch(server):
            raise PodError(
                f"annotation {API_SERVER_ANNOTATION}: {server!r} is not https://127.0.0.1:PORT"
            )
        return str(server)

    def _field(self, path: str) -> str:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        simple = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", ""),
            "status.hostIP": "127.0.0.1",
            "status.podIP": "127.0.0.1",
        }
        if path in simple:
            return str(simple[path])
        m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
        if m:
            return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
        raise PodError(f"fieldRef {path} is not supported by the local runner")

    # ---------------------------------------------------------------- containers

    def _mapping(self, c: Obj) -> list[tuple[str, str]]:
        mapping: dict[str, str] = {}
        node_root = self.runner.node_root(self.node)
        for m in c.get("volumeMounts") or []:
            vol = self.volumes.get(m["name"])
            if vol is None:
                raise PodError(f"container {c['name']}: mount of unknown volume {m['name']}")
            mount = str(PurePosixPath(m["mountPath"]))
            spec_vol = self._volume_spec(m["name"])
            if "hostPath" in spec_vol:
                host_path = str(PurePosixPath(spec_vol["hostPath"]["path"]))
                if mount != HOST_MOUNT + host_path:
                    raise PodError(
                        f"container {c['name']}: hostPath {host_path} is mounted at {mount}; "
                        "the local runner (see docs/contracts.md) needs it at "
                        f"{HOST_MOUNT}{host_path}"
                    )
            local = vol / m["subPath"] if m.get("subPath") else vol
            mapping[mount] = str(local)
        if node_root is not None:
            mapping.setdefault(HOST_MOUNT, str(node_root))
        payload = self.runner.cluster.payload
        mapping.setdefault(PAYLOAD_MOUNT, str(payload))
        return sorted(mapping.items(), key=lambda kv: len(kv[0]), reverse=True)

    def _volume_spec(self, name: str) -> Obj:
        for vol in self.pod["spec"].get("volumes") or []:
            if vol["name"] == name:
                return dict(vol)
        return {}

    def _env(self, c: Obj, mapping: list[tuple[str, str]]) -> dict[str, str]:
        env: dict[str, str] = {
            "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.workdir / "home"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "TMPDIR": str(self.workdir),
            "HOSTNAME": self.name,
            # The installer image's own ENV: where its payload is (rewritten below).
            "KATA_INSTALLER_PAYLOAD": PAYLOAD_MOUNT,
            # A runner-backed node has no running container runtime, and nsenter into
            # PID 1 would reach this machine's init: the installer is told no restart is
            # wanted (real nodes restart theirs; tests/e2e/test_real_node.py).
            "KATA_INSTALLER_RESTART": "none",
        }
        for src in c.get("envFrom") or []:
            prefix = src.get("prefix", "")
            if "configMapRef" in src:
                ref = src["configMapRef"]
                cm = self.runner.read(
                    "ConfigMap", self.ns, ref["name"], optional=ref.get("optional", False)
                )
                for k, v in ((cm or {}).get("data") or {}).items():
                    env[prefix + k] = v
            elif "secretRef" in src:
                ref = src["secretRef"]
                s = self.runner.read(
                    "Secret", self.ns, ref["name"], optional=ref.get("optional", False)
                )
                for k, v in ((s or {}).get("data") or {}).items():
                    env[prefix + k] = base64.b64decode(v).decode()
        for item in c.get("env") or []:
            env[item["name"]] = self._env_value(item, env)
        env = {k: _rewrite(v, mapping) for k, v in env.items()}
        mounts = {m["name"] for m in c.get("volumeMounts") or []}
        if mounts & self.token_volumes and self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        else:
            env.pop("KUBECONFIG", None)
        return env

    def _env_value(self, item: Obj, env: dict[str, str]) -> str:
        if "value" in item:
            return _expand(str(item["value"]), env)
        src = item.get("valueFrom") or {}
        if "fieldRef" in src:
            return self._field(src["fieldRef"]["fieldPath"])
        for kind, key in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            if kind in src:
                ref = src[kind]
                obj = self.runner.read(
                    key, self.ns, ref["name"], optional=ref.get("optional", False)
                )
                data = (obj or {}).get("data") or {}
                if ref["key"] not in data:
                    if ref.get("optional"):
                        return ""
                    raise PodError(
                        f"env {item['name']}: {key} {ref['name']} has no key {ref['key']}"
                    )
                value = str(data[ref["key"]])
                return base64.b64decode(value).decode() if key == "Secret" else value
        if "resourceFieldRef" in src:
            return "1"
        return ""

    def _argv(self, c: Obj, env: dict[str, str], mapping: list[tuple[str, str]]) -> list[str]:
        command = c.get("command") or []
        if not command:
            raise PodError(
                f"container {c['name']}: no command; the local runner starts programs by name "
                "(command: [kata-installer] or [kata-dispatcher]) and cannot know image entrypoints"
            )
        program = PurePosixPath(command[0]).name
        exe = VENV_BIN / program
        if not exe.exists():
            raise PodError(f"container {c['name']}: {program} is not a program of {VENV_BIN}")
        args = [*command[1:], *(c.get("args") or [])]
        return [str(exe), *(_rewrite(_expand(a, env), mapping) for a in args)]

    def _run_container(self, c: ContainerRun) -> int:
        if self.stopping.is_set():
            c.state = {"terminated": {"exitCode": 137, "reason": "Killed"}}
            return 137
        argv, env = self.plans[c.spec["name"]]
        log_path = self.logdir / f"{self.ns}_{self.name}_{c.spec['name']}.log"
        started = kubeapi.now()
        kills = self.runner.pending_kills(self.node, self.pod)
        copier: threading.Thread | None = None
        with log_path.open("ab") as log:
            log.write(f"--- runner: {' '.join(argv)}\n".encode())
            log.flush()
            offset = log.tell()
            c.proc = subprocess.Popen(
                argv,
                env=env,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if kills else log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if kills:
            copier = threading.Thread(
                target=self._copy_and_kill, args=(c.proc, log_path, kills), daemon=True
            )
            copier.start()
        c.state = {"running": {"startedAt": started}}
        self._report("Pending" if c.init else "Running")
        code = self._wait(c.proc)
        if copier is not None:
            copier.join(timeout=10)
        state: Obj = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else ("Error" if code > 0 else "Killed"),
            "startedAt": started,
            "finishedAt": kubeapi.now(),
        }
        if code < 0:
            state["exitCode"] = 128 - code
            state["signal"] = -code
        if code != 0:
            state["message"] = _tail(log_path, offset)
        c.state = {"terminated": state}
        self._report("Pending" if c.init else "Running")
        return int(state["exitCode"])

    def _copy_and_kill(
        self, proc: subprocess.Popen[bytes], log_path: Path, kills: list[re.Pattern[str]]
    ) -> None:
        """Copy the container's output to its log; SIGKILL it after the first line that
        matches a pending kill pattern of this node (KILL_ONCE)."""
        assert proc.stdout is not None
        with log_path.open("ab") as log:
            for raw in proc.stdout:
                log.write(raw)
                log.flush()
                line = raw.decode(errors="replace").rstrip("\n")
                hit = next((k for k in kills if k.search(line)), None)
                if hit is None or not self.runner.take_kill(self.node, hit.pattern):
                    continue
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                log.write(f"--- runner: SIGKILL after: {line}\n".encode())
                log.flush()
                LOG.info("pod %s/%s on %s: SIGKILL after %r", self.ns, self.name, self.node, line)
                kills = []

    def _wait(self, proc: subprocess.Popen[bytes]) -> int:
        while True:
            try:
                return proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            if self.stopping.is_set():
                break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout=self.grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait()

    # ---------------------------------------------------------------- status

    def _report(self, phase: str, *, message: str = "", reason: str = "") -> None:
        inits_done = all(
            "terminated" in c.state and c.state["terminated"]["exitCode"] == 0 for c in self.inits
        )
        ready = phase == "Running" and all("running" in c.state for c in self.mains)
        t = kubeapi.now()

        def cond(kind: str, ok: bool) -> Obj:
            return {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": t}

        status: Obj = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.started_at,
            "conditions": [
                cond("PodScheduled", True),
                cond("Initialized", inits_done),
                cond("ContainersReady", ready),
                cond("Ready", ready),
            ],
            "initContainerStatuses": [c.status() for c in self.inits],
            "containerStatuses": [c.status() for c in self.mains],
        }
        if message:
            status["message"] = message
        if reason:
            status["reason"] = reason
        self.runner.patch_status(self.ns, self.name, status)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _expand(value: str, env: dict[str, str]) -> str:
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), value)


def _rewrite(value: str, mapping: list[tuple[str, str]]) -> str:
    """Rewrite a value that is (or ends with ``=``) a path under a mounted directory."""
    if value.startswith("--") and "=" in value:
        flag, rest = value.split("=", 1)
        return f"{flag}={_rewrite(rest, mapping)}"
    for mount, local in mapping:
        if value == mount or value.startswith(mount.rstrip("/") + "/"):
            return local + value[len(mount) :]
    return value


def _tail(path: Path, offset: int, limit: int = 2048) -> str:
    """The last lines of a container's output (this run only), as a termination message."""
    with path.open("rb") as f:
        f.seek(max(offset, path.stat().st_size - limit))
        data = f.read().decode(errors="replace")
    return "\n".join(data.splitlines()[-20:])


class Runner:
    """Watches the pods it owns and runs each on a :class:`PodRun`."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.runs: dict[str, PodRun] = {}
        self.kills_fired: set[tuple[str, str]] = set()
        self.node_watches: set[str] = set()
        self.core = cluster.api("CoreV1Api", pool=32)
        self.coordination = cluster.api("CoordinationV1Api", pool=8)

    def pending_kills(self, node: str, pod: Obj) -> list[re.Pattern[str]]:
        """The KILL_ONCE patterns of `pod` for `node` that have not fired yet."""
        text = (pod["metadata"].get("annotations") or {}).get(KILL_ONCE)
        if not text or not node:
            return []
        try:
            patterns = json.loads(text).get(node) or []
            compiled = [re.compile(str(p)) for p in patterns]
        except (ValueError, AttributeError, re.error) as exc:
            raise PodError(
                f"annotation {KILL_ONCE} is not a map of node to regexes: {exc}"
            ) from exc
        with self.lock:
            return [p for p in compiled if (node, p.pattern) not in self.kills_fired]

    def take_kill(self, node: str, pattern: str) -> bool:
        """Claim the (node, pattern) kill; False if another container fired it first."""
        with self.lock:
            if (node, pattern) in self.kills_fired:
                return False
            self.kills_fired.add((node, pattern))
            return True

    def real_nodes(self) -> set[str]:
        """Nodes with a real kubelet (cluster.json; they can be added while we run)."""
        try:
            return set(self.cluster.real_node_names())
        except (FileNotFoundError, ValueError):
            return set()

    def node_root(self, node: str) -> Path | None:
        root = self.cluster.node_root(node)
        return root if root.is_dir() else None

    # ---------------------------------------------------------------- API calls

    def read(self, kind: str, ns: str, name: str, *, optional: bool) -> Obj | None:
        from kubernetes.client.exceptions import ApiException

        fn = (
            self.core.read_namespaced_config_map
            if kind == "ConfigMap"
            else self.core.read_namespaced_secret
        )
        try:
            return kubeapi.get_json(fn, name, ns)
        except ApiException as exc:
            if exc.status == 404 and optional:
                return None
            if exc.status == 404:
                raise PodError(f"{kind} {ns}/{name} not found") from exc
            raise

    def token(self, ns: str, sa: str, *, pod: str, uid: str, audience: str | None) -> str:
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": 3600,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": uid},
            },
        }
        data = kubeapi.get_json(self.core.create_namespaced_service_account_token, sa, ns, body)
        return str(data["status"]["token"])

    def patch_status(self, ns: str, name: str, status: Obj) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.patch_namespaced_pod_status(name, ns, {"status": status})
        except ApiException as exc:
            if exc.status != 404:
                LOG.warning("status of pod %s/%s: %s", ns, name, exc.reason)

    def delete_pod(self, ns: str, name: str, uid: str) -> None:
        from kubernetes.client.exceptions import ApiException

        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        try:
            self.core.delete_namespaced_pod(name, ns, body=body, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status not in {404, 409}:
                LOG.warning("deleting pod %s/%s: %s", ns, name, exc.reason)
        with self.lock:
            run = self.runs.pop(uid, None)
        if run is not None:
            shutil.rmtree(run.workdir, ignore_errors=True)

    # ---------------------------------------------------------------- pods

    def on_pods(self, items: list[Obj]) -> None:
        for pod in items:
            self.on_pod("ADDED", pod)

    def on_pod(self, kind: str, pod: Obj) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        node = spec.get("nodeName")
        if not node or kind == "DELETED":
            with self.lock:
                run = self.runs.pop(meta["uid"], None)
            if run is not None:
                run.request_stop(0)
            return
        if node in self.real_nodes():
            return  # a real kubelet runs it
        uid = meta["uid"]
        phase = (pod.get("status") or {}).get("phase", "Pending")
        deleting = bool(meta.get("deletionTimestamp"))
        with self.lock:
            run = self.runs.get(uid)
            fresh = run is None and phase == "Pending" and not deleting
            if fresh:
                run = self.runs[uid] = PodRun(self, pod)
        if fresh and run is not None:
            LOG.info("pod %s/%s on %s: starting", run.ns, run.name, node)
            run.start()
            return
        if deleting:
            if run is not None:
                run.request_stop(float(meta.get("deletionGracePeriodSeconds", run.grace)))
            if run is None or run.finished.is_set():
                self.delete_pod(meta["namespace"], meta["name"], uid)
            return
        if run is not None:
            return
        if phase == "Pending":
            return
        if phase == "Running":
            # Left running by an earlier runner process: its processes are gone.
            self.patch_status(
                meta["namespace"],
                meta["name"],
                {
                    "phase": "Failed",
                    "reason": "RunnerRestarted",
                    "message": "the local runner restarted",
                },
            )

    # ---------------------------------------------------------------- nodes

    def _runner_nodes(self) -> list[str]:
        try:
            return self.cluster.runner_node_names()
        except (FileNotFoundError, json.JSONDecodeError):
            return []

    def heartbeat(self) -> None:
        from kubernetes.client.exceptions import ApiException

        last_status: dict[str, float] = {}
        while not self.stop.is_set():
            for node in self._runner_nodes():
                if node not in self.node_watches:
                    self._watch(node)
                try:
                    self._renew_lease(node)
                    if time.monotonic() - last_status.get(node, 0) > STATUS_SECONDS:
                        self._node_status(node)
                        last_status[node] = time.monotonic()
                except ApiException as exc:
                    if exc.status != 404:
                        LOG.warning("heartbeat of node %s: %s", node, exc.reason)
                except Exception as exc:  # noqa: BLE001 - keep beating through API hiccups
                    LOG.warning("heartbeat of node %s: %s", node, exc)
            self.stop.wait(RENEW_SECONDS)

    def _renew_lease(self, node: str) -> None:
        from kubernetes.client.exceptions import ApiException

        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": node, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": node,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": kubeapi.now_micro(),
            },
        }
        try:
            self.coordination.patch_namespaced_lease(
                node, "kube-node-lease", {"spec": body["spec"]}
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.coordination.create_namespaced_lease("kube-node-lease", body)

    def _node_status(self, node: str) -> None:
        t = kubeapi.now()

        def cond(kind: str, status: str, reason: str) -> Obj:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": "kata-deploy local runner",
                "lastHeartbeatTime": t,
                "lastTransitionTime": t,
            }

        resources = {"cpu": "8", "memory": "32Gi", "pods": "110"}
        status = {
            "conditions": [
                cond("Ready", "True", "KubeletReady"),
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": node},
            ],
            "capacity": resources,
            "allocatable": resources,
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "containerRuntimeVersion": "containerd://2.1.0",
                "kubeletVersion": "v1.36.3-kata-deploy-runner",
                "kernelVersion": os.uname().release,
                "osImage": "kata-deploy local runner",
                "kubeProxyVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        }
        self.core.patch_node_status(node, {"status": status})

    # ---------------------------------------------------------------- watches

    def _watch(self, node: str | None) -> None:
        """Watch the pods of ``node`` (or, with None, every dispatcher pod) on a thread."""
        if node is not None:
            self.node_watches.add(node)
            selectors = {"field_selector": f"spec.nodeName={node}"}
        else:
            selectors = {"label_selector": f"{kwokconfig.COMPONENT_LABEL}=dispatcher"}

        def loop() -> None:
            kubeapi.list_and_watch(
                self.core.list_pod_for_all_namespaces,
                on_list=self.on_pods,
                on_event=self.on_pod,
                stop=self.stop,
                **selectors,
            )

        threading.Thread(target=loop, name=f"watch-{node or 'dispatchers'}", daemon=True).start()

    def run(self) -> None:
        self._watch(None)
        beat = threading.Thread(target=self.heartbeat, name="heartbeat", daemon=True)
        beat.start()
        (self.cluster.dir / "runner.ready").touch()
        LOG.info("runner ready (cluster %s)", self.cluster.dir)
        self.stop.wait()
        with self.lock:
            runs = list(self.runs.values())
        for run in runs:
            run.request_stop(2)
        deadline = time.monotonic() + 5
        for run in runs:
            run.finished.wait(max(0.0, deadline - time.monotonic()))


def main(state_dir: Path) -> None:
    """Entry point of ``python -m tests.cluster runner``: run until SIGTERM."""
    runner = Runner(Cluster(state_dir))

    def on_term(signum: int, frame: object) -> None:
        runner.stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    runner.run()
