"""In-memory fakes of the dispatcher's own interfaces: `kube.Api` and `retry.Clock`.

FakeApi is a tiny simulated cluster: nodes, Jobs with resourceVersions and an event log,
a Job "controller" that finishes each Job after a scripted duration of simulated time
(advanced only while the dispatcher waits on the watch), scripted failures with pod
statuses, and injectable faults (429, 5xx, conflicts, 410 Gone, broken streams). Every
call is recorded. It speaks plain JSON dicts, like kube.KubeApi.

It stays fast and lean at fleet scale (tests/bench/bench_dispatcher_memory.py runs it
with 10000 nodes): the event logs keep each event as its JSON text (decoded afresh for
every watcher, as a real server serialises), a watch finds its start by bisection, and
the unfinished-Job count looks only at the Jobs not yet finished.

DaemonSets (for delete-daemonset) have their own event log and owned pods. A
foreground DELETE behaves like the API server plus the garbage collector: the DaemonSet
gets a deletionTimestamp and the foregroundDeletion finalizer, each pod is marked
terminating and goes after its scripted revert time (or never, if stuck), and the
DaemonSet is removed (DELETED event) once its last pod is gone.
"""

from __future__ import annotations

import bisect
import collections
import copy
import dataclasses
import heapq
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kata_dispatcher import errors, jobs, kube

Obj = dict[str, Any]
# (resourceVersion, type, the object as JSON text; a test may append a dict)
EventLog = list[tuple[int, str, str | Obj]]


class FakeClock:
    """Simulated monotonic time: sleep() advances it instantly."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def node(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    taints: Iterable[tuple[str, str, str]] = (),
    ready: bool = True,
) -> Obj:
    return {
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": {"taints": [{"key": k, "value": v, "effect": e} for k, v, e in taints]},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def matches(selector: str | None, labels: dict[str, str]) -> bool:
    """Equality-based label selectors: k=v, k==v, k!=v, k, !k, joined by commas."""
    if not selector:
        return True
    for term in (t.strip() for t in selector.split(",")):
        if not term:
            continue
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def _select(
    store: dict[str, Obj], label_selector: str | None, field_selector: str | None
) -> list[Obj]:
    """The objects of `store` (by name, sorted) that match both selectors; the only field
    selector understood is `metadata.name=NAME`."""
    return [
        obj
        for name, obj in sorted(store.items())
        if matches(label_selector, obj["metadata"].get("labels") or {})
        and (not field_selector or field_selector == f"metadata.name={name}")
    ]


@dataclasses.dataclass
class Script:
    """What happens to a node's Job: finishes `duration` seconds after creation."""

    succeed: bool = True
    duration: float = 5.0
    reason: str = "BackoffLimitExceeded"
    message: str = "Job has reached the specified backoff limit"
    container: str = "cri"
    exit_code: int = 1
    termination_message: str = "containerd config is not valid TOML"
    # the pod never starts: it waits with this reason until the Job's deadline
    # (`duration`) fails the Job, and the Job controller deletes the pod with it
    pending_reason: str = ""
    # with pending_reason: the pod never terminates either (its node has no kubelet), so
    # the Job keeps FailureTarget and never gets Failed
    never_terminates: bool = False


@dataclasses.dataclass
class Call:
    method: str
    args: dict[str, Any]


class FakeApi:
    def __init__(
        self,
        clock: FakeClock,
        *,
        nodes: Iterable[Obj] = (),
        namespace: str = "kata",
        owner: str | None = "dispatcher",
    ) -> None:
        self.clock = clock
        self.namespace = namespace
        self.nodes: dict[str, Obj] = {n["metadata"]["name"]: n for n in nodes}
        self.jobs: dict[str, Obj] = {}
        self.pods: dict[str, list[Obj]] = {}  # by Job uid
        self.events: EventLog = []
        self.calls: list[Call] = []
        self.faults: dict[str, collections.deque[Exception]] = collections.defaultdict(
            collections.deque
        )
        self.scripts: dict[str, Script] = {}
        self.default = Script()
        self.deletion_delay = 0.0
        self.compacted_below = 0  # watches from an older resourceVersion get 410
        self.break_stream_after: int | None = None
        self.on_watch: Callable[[FakeApi], None] | None = None
        self.created: collections.Counter[str] = collections.Counter()
        self.daemonsets: dict[str, Obj] = {}
        self.ds_events: EventLog = []
        self.ds_pods: dict[str, Obj] = {}  # pods owned by DaemonSets, by pod name
        self.revert_seconds: dict[str, float | None] = {}  # by pod name; None = stuck
        self.delete_at_once = False  # a DaemonSet DELETE answers Status and removes it
        self.max_unfinished = 0
        self.configmaps: dict[str, Obj] = {}
        self.leases: dict[str, Obj] = {}
        self.cronjobs: dict[str, Obj] = {}
        self._live: set[str] = set()  # Jobs that may be unfinished: what unfinished() reads
        self._rv = 100
        self._uids = itertools.count(1)
        self._actions: list[tuple[float, int, str, str, str]] = []  # (when, seq, kind, name, uid)
        self._seq = itertools.count()
        if owner:
            self.add_job(owner, uid="owner-uid", labels={})

    # -- helpers for tests -------------------------------------------------------------

    def next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def add_job(
        self,
        name: str,
        *,
        uid: str | None = None,
        labels: dict[str, str] | None = None,
        owner_uid: str | None = None,
        node: str | None = None,
        finished: bool | None = None,
    ) -> Obj:
        """Put a Job straight into the store (as if left by an earlier run). `finished`
        None: it runs (with `node`, it finishes per the node's Script); True: it
        succeeded; False: it failed."""
        meta: Obj = {
            "name": name,
            "namespace": self.namespace,
            "uid": uid or f"uid-{next(self._uids)}",
            "labels": dict(labels or {}),
            "annotations": {jobs.NODE_NAME_ANNOTATION: node} if node else {},
            "resourceVersion": str(self.next_rv()),
        }
        if owner_uid:
            meta["ownerReferences"] = [
                {"apiVersion": "batch/v1", "kind": "Job", "name": "old", "uid": owner_uid}
            ]
        job: Obj = {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "status": {}}
        if finished is not None:
            self._set_finished(job, succeed=finished, script=self.default)
        elif node is not None:
            self._schedule(name, meta["uid"], node)
        self.jobs[name] = job
        if finished is None:
            self._live.add(name)
        self.events.append((self._rv, "ADDED", json.dumps(job)))
        return job

    def add_daemonset(
        self,
        name: str,
        *,
        nodes: Iterable[str] = (),
        revert_seconds: float = 3.0,
        stuck: Iterable[str] = (),
        uid: str | None = None,
        finalizers: Iterable[str] = (),
    ) -> Obj:
        """A DaemonSet with one running pod per node; a pod on a `stuck` node never goes.
        Pods revert `revert_seconds` after the DaemonSet's deletion, one second apart.
        Extra `finalizers` keep the DaemonSet after its last pod has gone."""
        labels = {"app.kubernetes.io/instance": name, "app.kubernetes.io/component": "installer"}
        ds: Obj = {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "uid": uid or f"uid-{next(self._uids)}",
                "resourceVersion": str(self.next_rv()),
                "finalizers": list(finalizers),
            },
            "spec": {"selector": {"matchLabels": dict(labels)}},
        }
        self.daemonsets[name] = ds
        self.ds_events.append((self._rv, "ADDED", json.dumps(ds)))
        stuck_nodes = set(stuck)
        for i, node_name in enumerate(nodes):
            pod_name = f"{name}-{node_name}"
            self.ds_pods[pod_name] = {
                "metadata": {
                    "name": pod_name,
                    "namespace": self.namespace,
                    "labels": dict(labels),
                    "ownerReferences": [
                        {"kind": "DaemonSet", "name": name, "uid": ds["metadata"]["uid"]}
                    ],
                },
                "spec": {"nodeName": node_name},
                "status": {"phase": "Running"},
            }
            self.revert_seconds[pod_name] = None if node_name in stuck_nodes else revert_seconds + i
        return ds

    def _ds_event(self, kind: str, ds: Obj) -> None:
        ds["metadata"]["resourceVersion"] = str(self.next_rv())
        self.ds_events.append((self._rv, kind, json.dumps(ds)))

    def _owned_pods(self, uid: str) -> list[str]:
        return [
            name
            for name, pod in self.ds_pods.items()
            if any(r["uid"] == uid for r in pod["metadata"]["ownerReferences"])
        ]

    def _remove_daemonset_if_free(self, name: str, uid: str) -> None:
        ds = self.daemonsets.get(name)
        if ds is None or ds["metadata"]["uid"] != uid or self._owned_pods(uid):
            return
        finalizers = [f for f in ds["metadata"]["finalizers"] if f != "foregroundDeletion"]
        if finalizers:  # the garbage collector is done; someone else's finalizer holds it
            ds["metadata"]["finalizers"] = finalizers
            self._ds_event("MODIFIED", ds)
            return
        del self.daemonsets[name]
        self._ds_event("DELETED", ds)

    def fail(self, method: str, *exc: Exception) -> None:
        """The next calls of `method` raise these, in order (each still counts)."""
        self.faults[method].extend(exc)

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def unfinished(self) -> int:
        live = [self.jobs[n] for n in self._live if n in self.jobs]
        return sum(
            1
            for j in live
            if j["metadata"].get("labels", {}).get(jobs.STAGE_LABEL)
            and not jobs.interpret(j).finished
            and not j["metadata"].get("deletionTimestamp")
        )

    # -- plumbing ----------------------------------------------------------------------

    @property
    def api_requests(self) -> int:
        return len(self.calls)

    def _enter(self, method: str, **args: Any) -> None:
        self.calls.append(Call(method, args))
        if self.faults[method]:
            raise self.faults[method].popleft()

    def _page(self, items: list[Obj], limit: int, token: str | None) -> kube.Page:
        start = int(token or 0)
        chunk = items[start : start + limit]
        more = start + limit < len(items)
        return kube.Page(
            [copy.deepcopy(i) for i in chunk], str(start + limit) if more else None, str(self._rv)
        )

    def _event(self, kind: str, job: Obj) -> None:
        job["metadata"]["resourceVersion"] = str(self.next_rv())
        self.events.append((self._rv, kind, json.dumps(job)))

    def _schedule(self, name: str, uid: str, node_name: str) -> None:
        script = self.scripts.get(node_name, self.default)
        if script.pending_reason:
            self.pods[uid] = [
                {
                    "metadata": {"name": f"{name}-pending"},
                    "status": {
                        "phase": "Pending",
                        "initContainerStatuses": [
                            {
                                "name": "host-check",
                                "state": {
                                    "waiting": {
                                        "reason": script.pending_reason,
                                        "message": "Back-off pulling image",
                                    }
                                },
                            }
                        ],
                    },
                }
            ]
        heapq.heappush(
            self._actions,
            (self.clock.now + script.duration, next(self._seq), "finish", name, uid),
        )

    def _set_finished(self, job: Obj, *, succeed: bool, script: Script) -> None:
        self._live.discard(job["metadata"]["name"])
        if script.pending_reason and script.never_terminates:
            job["status"] = {
                "conditions": [
                    {
                        "type": "FailureTarget",
                        "status": "True",
                        "reason": "DeadlineExceeded",
                        "message": "Job was active longer than specified deadline",
                    }
                ],
            }
            self._live.add(job["metadata"]["name"])
            return
        if script.pending_reason:
            job["status"] = {
                "failed": 1,
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "DeadlineExceeded",
                        "message": "Job was active longer than specified deadline",
                    }
                ],
            }
            self.pods[job["metadata"]["uid"]] = []
            return
        if succeed:
            job["status"] = {
                "succeeded": 1,
                "conditions": [{"type": "Complete", "status": "True"}],
            }
            return
        job["status"] = {
            "failed": 1,
            "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": script.reason},
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": script.reason,
                    "message": script.message,
                },
            ],
        }
        uid = job["metadata"]["uid"]
        self.pods[uid] = [
            {
                "metadata": {"name": f"{job['metadata']['name']}-abcde"},
                "status": {
                    "phase": "Failed",
                    "initContainerStatuses": [
                        {"name": "host-check", "state": {"terminated": {"exitCode": 0}}},
                        {
                            "name": script.container,
                            "state": {
                                "terminated": {
                                    "exitCode": script.exit_code,
                                    "reason": "Error",
                                    "message": script.termination_message,
                                }
                            },
                        },
                    ],
                },
            }
        ]

    def _run_action(self, kind: str, name: str, uid: str) -> None:
        job = self.jobs.get(name)
        if job is None or job["metadata"]["uid"] != uid:
            return
        if kind == "finish":
            node_name = job["metadata"]["annotations"].get(jobs.NODE_NAME_ANNOTATION, "")
            script = self.scripts.get(node_name, self.default)
            self._set_finished(job, succeed=script.succeed, script=script)
            self._event("MODIFIED", job)
        elif kind == "remove":
            del self.jobs[name]
            self._event("DELETED", job)

    def _run_ds_action(self, kind: str, name: str, uid: str) -> None:
        if kind == "pod-gone":
            self.ds_pods.pop(name, None)
        self._remove_daemonset_if_free(
            name if kind == "ds-gone" else self._pod_owner_name(uid), uid
        )

    def _pod_owner_name(self, uid: str) -> str:
        for ds_name, ds in self.daemonsets.items():
            if ds["metadata"]["uid"] == uid:
                return ds_name
        return ""

    def advance_to(self, when: float) -> None:
        """Run every scheduled action due by `when`, then set the clock to it."""
        while self._actions and self._actions[0][0] <= when:
            at, _, kind, name, uid = heapq.heappop(self._actions)
            self.clock.now = max(self.clock.now, at)
            if kind in ("pod-gone", "ds-gone"):
                self._run_ds_action(kind, name, uid)
            else:
                self._run_action(kind, name, uid)
        self.clock.now = max(self.clock.now, when)

    # -- kube.Api ----------------------------------------------------------------------

    def list_nodes(
        self,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int,
        continue_token: str | None = None,
    ) -> kube.Page:
        self._enter(
            "list_nodes",
            label_selector=label_selector,
            field_selector=field_selector,
            limit=limit,
            continue_token=continue_token,
        )
        return self._page(
            _select(self.nodes, label_selector, field_selector=field_selector),
            limit,
            continue_token,
        )

    def create_job(self, namespace: str, body: Obj) -> Obj:
        name = body["metadata"]["name"]
        self._enter("create_job", namespace=namespace, name=name)
        if name in self.jobs:
            raise errors.AlreadyExists(f"create Job {name}", status=409, reason="AlreadyExists")
        job = copy.deepcopy(body)
        job["metadata"]["uid"] = f"uid-{next(self._uids)}"
        job["status"] = {}
        self.jobs[name] = job
        self._live.add(name)
        self.created[name] += 1
        self._event("ADDED", job)
        self._schedule(name, job["metadata"]["uid"], job["spec"]["template"]["spec"]["nodeName"])
        self.max_unfinished = max(self.max_unfinished, self.unfinished())
        return copy.deepcopy(job)

    def delete_job(self, namespace: str, name: str, *, uid: str | None = None) -> None:
        self._enter("delete_job", namespace=namespace, name=name, uid=uid)
        job = self.jobs.get(name)
        if job is None:
            raise errors.NotFound(f"delete Job {name}", status=404, reason="NotFound")
        if uid and job["metadata"]["uid"] != uid:
            raise errors.Conflict(f"delete Job {name}", status=409, reason="Conflict")
        if self.deletion_delay > 0:
            if not job["metadata"].get("deletionTimestamp"):
                job["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
                self._live.discard(name)
                self._event("MODIFIED", job)
                heapq.heappush(
                    self._actions,
                    (
                        self.clock.now + self.deletion_delay,
                        next(self._seq),
                        "remove",
                        name,
                        job["metadata"]["uid"],
                    ),
                )
            return
        del self.jobs[name]
        self._live.discard(name)
        self._event("DELETED", job)

    def patch_job(self, namespace: str, name: str, patch: list[Obj]) -> Obj:
        """JSON patch with the two operations the dispatcher sends: `test` (a failed one
        is 422, as the API server answers) and `replace` of a top-level metadata field."""
        self._enter("patch_job", namespace=namespace, name=name, patch=patch)
        job = self.jobs.get(name)
        if job is None:
            raise errors.NotFound(f"patch Job {name}", status=404, reason="NotFound")
        for op in patch:
            field = op["path"].removeprefix("/metadata/")
            if op["op"] == "test" and job["metadata"].get(field) != op["value"]:
                raise errors.Invalid(f"patch Job {name}", status=422, reason="Invalid")
        for op in patch:
            if op["op"] in ("replace", "add"):
                *parents, key = [
                    part.replace("~1", "/").replace("~0", "~") for part in op["path"].split("/")[1:]
                ]
                target = job
                for part in parents:
                    target = target[part]
                target[key] = copy.deepcopy(op["value"])
        self._event("MODIFIED", job)
        return copy.deepcopy(job)

    def delete_cronjob(self, namespace: str, name: str) -> None:
        self._enter("delete_cronjob", namespace=namespace, name=name)
        if name not in self.cronjobs:
            raise errors.NotFound(f"delete CronJob {name}", status=404, reason="NotFound")
        del self.cronjobs[name]

    def read_lease(self, namespace: str, name: str) -> Obj:
        self._enter("read_lease", namespace=namespace, name=name)
        if name not in self.leases:
            raise errors.NotFound(f"read Lease {name}", status=404, reason="NotFound")
        return copy.deepcopy(self.leases[name])

    def create_lease(self, namespace: str, body: Obj) -> Obj:
        name = body["metadata"]["name"]
        self._enter("create_lease", namespace=namespace, name=name, body=body)
        if name in self.leases:
            raise errors.AlreadyExists(f"create Lease {name}", status=409, reason="AlreadyExists")
        lease = copy.deepcopy(body)
        lease["metadata"]["resourceVersion"] = str(self.next_rv())
        self.leases[name] = lease
        return copy.deepcopy(lease)

    def replace_lease(self, namespace: str, name: str, body: Obj) -> Obj:
        self._enter("replace_lease", namespace=namespace, name=name, body=body)
        current = self.leases.get(name)
        if current is None:
            raise errors.NotFound(f"update Lease {name}", status=404, reason="NotFound")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise errors.Conflict(f"update Lease {name}", status=409, reason="Conflict")
        lease = copy.deepcopy(body)
        lease["metadata"]["resourceVersion"] = str(self.next_rv())
        self.leases[name] = lease
        return copy.deepcopy(lease)

    def read_configmap(self, namespace: str, name: str) -> Obj:
        self._enter("read_configmap", namespace=namespace, name=name)
        if name not in self.configmaps:
            raise errors.NotFound(f"read ConfigMap {name}", status=404, reason="NotFound")
        return copy.deepcopy(self.configmaps[name])

    def list_jobs(
        self,
        namespace: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int,
        continue_token: str | None = None,
    ) -> kube.Page:
        self.advance_to(self.clock.now)  # what finished meanwhile shows in a LIST too
        self._enter(
            "list_jobs",
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            limit=limit,
            continue_token=continue_token,
        )
        return self._page(
            _select(self.jobs, label_selector, field_selector=field_selector), limit, continue_token
        )

    def watch_jobs(
        self,
        namespace: str,
        *,
        label_selector: str,
        resource_version: str,
        timeout_seconds: int,
    ) -> Iterator[kube.WatchEvent]:
        self._enter(
            "watch_jobs",
            namespace=namespace,
            label_selector=label_selector,
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
        )
        return self._watch(
            "watch Jobs",
            self.events,
            keep=lambda obj: matches(label_selector, obj["metadata"].get("labels") or {}),
            resource_version=resource_version,
            timeout=timeout_seconds,
        )

    def _watch(
        self,
        what: str,
        log: EventLog,
        *,
        keep: Callable[[Obj], bool],
        resource_version: str,
        timeout: int,
    ) -> Iterator[kube.WatchEvent]:
        """After `_enter`: the `on_watch` hook, 410 below `compacted_below`, else the
        events of `log` that `keep` accepts, from `resource_version` on."""
        if self.on_watch is not None:
            self.on_watch(self)
        if int(resource_version or 0) < self.compacted_below:
            raise errors.Gone(what, status=410, reason="Expired")
        return self._stream(log, keep, since=int(resource_version or 0), timeout=timeout)

    def _stream(
        self,
        log: EventLog,
        keep: Callable[[Obj], bool],
        *,
        since: int,
        timeout: int,
    ) -> Iterator[kube.WatchEvent]:
        end = self.clock.now + timeout
        index = bisect.bisect_right(log, since, key=lambda e: e[0])
        sent = 0
        while True:
            if index < len(log):
                rv, kind, text = log[index]
                index += 1
                since = rv
                obj = json.loads(text) if isinstance(text, str) else copy.deepcopy(text)
                if keep(obj):
                    if self.break_stream_after is not None and sent >= self.break_stream_after:
                        self.break_stream_after = None
                        raise errors.Transient("watch", message="stream broke")
                    sent += 1
                    yield kube.WatchEvent(kind, obj)
                continue
            if self._actions and self._actions[0][0] <= end:
                self.advance_to(self._actions[0][0])
                continue
            self.clock.now = max(self.clock.now, end)
            return

    def list_pods(
        self,
        namespace: str,
        *,
        label_selector: str,
        limit: int,
        continue_token: str | None = None,
    ) -> kube.Page:
        self._enter(
            "list_pods",
            namespace=namespace,
            label_selector=label_selector,
            limit=limit,
            continue_token=continue_token,
        )
        if label_selector.startswith("batch.kubernetes.io/controller-uid="):
            uid = label_selector.split("=", 1)[1]
            return self._page(self.pods.get(uid, []), limit, continue_token)
        items = [
            pod
            for _, pod in sorted(self.ds_pods.items())
            if matches(label_selector, pod["metadata"].get("labels") or {})
        ]
        return self._page(items, limit, continue_token)

    def delete_daemonset(self, namespace: str, name: str) -> Obj:
        self._enter("delete_daemonset", namespace=namespace, name=name)
        ds = self.daemonsets.get(name)
        if ds is None:
            raise errors.NotFound(f"delete DaemonSet {name}", status=404, reason="NotFound")
        uid = ds["metadata"]["uid"]
        if self.delete_at_once:
            for pod_name in self._owned_pods(uid):
                del self.ds_pods[pod_name]
            del self.daemonsets[name]
            self._ds_event("DELETED", ds)
            return {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        if ds["metadata"].get("deletionTimestamp"):
            return copy.deepcopy(ds)  # already being deleted: nothing new happens
        ds["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        ds["metadata"]["finalizers"] = ["foregroundDeletion", *ds["metadata"]["finalizers"]]
        self._ds_event("MODIFIED", ds)
        owned = self._owned_pods(uid)
        for pod_name in owned:
            self.ds_pods[pod_name]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
            seconds = self.revert_seconds.get(pod_name)
            if seconds is not None:
                heapq.heappush(
                    self._actions,
                    (self.clock.now + seconds, next(self._seq), "pod-gone", pod_name, uid),
                )
        if not owned:
            heapq.heappush(
                self._actions, (self.clock.now + 0.1, next(self._seq), "ds-gone", name, uid)
            )
        return copy.deepcopy(ds)

    def list_daemonsets(
        self,
        namespace: str,
        *,
        field_selector: str,
        limit: int,
        continue_token: str | None = None,
    ) -> kube.Page:
        self._enter(
            "list_daemonsets",
            namespace=namespace,
            field_selector=field_selector,
            limit=limit,
            continue_token=continue_token,
        )
        items = [
            ds
            for name, ds in sorted(self.daemonsets.items())
            if field_selector == f"metadata.name={name}"
        ]
        return self._page(items, limit, continue_token)

    def watch_daemonsets(
        self,
        namespace: str,
        *,
        field_selector: str,
        resource_version: str,
        timeout_seconds: int,
    ) -> Iterator[kube.WatchEvent]:
        self._enter(
            "watch_daemonsets",
            namespace=namespace,
            field_selector=field_selector,
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
        )
        return self._watch(
            "watch DaemonSets",
            self.ds_events,
            # Bookmarks carry no name and pass any field selector, as on a real server.
            keep=lambda obj: (
                "name" not in obj["metadata"]
                or field_selector == f"metadata.name={obj['metadata']['name']}"
            ),
            resource_version=resource_version,
            timeout=timeout_seconds,
        )
