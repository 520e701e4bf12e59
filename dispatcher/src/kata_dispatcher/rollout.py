"""The paced fan-out: one Job per selected node, at most `parallelism` unfinished at once.

Why: this is the dispatcher's whole purpose. It plans the run (owner UID, live node
selection, taint admission, one Job name per node), then creates Jobs as slots free up,
learning every result from ONE watch on this release's and stage's Jobs (resumed from
its resourceVersion, relisted on 410 Gone: `watching.Watcher`), never by polling Jobs
one by one. It adopts a Job this same owner already created and replaces one an earlier
owner left, so a re-run after a crash converges with no node skipped or given two Jobs.

Memory grows slowly with the fleet: per node it keeps a `Task` (names, state, and the
failure only if there is one), never the node object, a page, a watched Job or a built
Job body. A body is built just before its create and dropped after it; a LIST of Jobs
is reduced page by page to a `Seen` per name. A dry run, which prints every body, is the
one exception.

What it must not do: stop the other nodes because one failed; exceed the cap with Jobs
it creates; create anything in a dry run; swallow API errors it does not understand
(they end the run with their exit code).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from kata_dispatcher import errors, jobs, kube, nodes, retry, settings, watching

log = logging.getLogger(__name__)

Obj = dict[str, Any]

DRY_RUN_UID = "00000000-0000-0000-0000-000000000000"
MAX_REPLACE_ATTEMPTS = 5


class Pacer:
    """The pacing decision: which node's Job to start next, given what is unfinished.

    Invariant: `take` never lets the number of active (unfinished) Jobs exceed `cap`.
    `adopt` records a Job that already exists (created before this process started),
    which is active whether or not the cap allows it."""

    def __init__(self, names: Sequence[str], *, parallelism: int) -> None:
        self.cap = max(1, min(parallelism, len(names))) if names else 0
        self.queue: collections.deque[str] = collections.deque(names)
        self.active: set[str] = set()
        self.peak = 0

    def take(self) -> str | None:
        if len(self.active) >= self.cap or not self.queue:
            return None
        name = self.queue.popleft()
        self.active.add(name)
        self.peak = max(self.peak, len(self.active))
        return name

    def adopt(self, name: str, *, running: bool) -> None:
        if name in self.queue:
            self.queue.remove(name)
        if running:
            self.active.add(name)
            self.peak = max(self.peak, len(self.active))

    def finish(self, name: str) -> None:
        self.active.discard(name)


class TaskState(enum.StrEnum):
    QUEUED = "queued"
    REPLACING = "replacing"  # an earlier owner's Job with this name is being deleted
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclasses.dataclass(slots=True)
class Task:
    """One node's Job as the run tracks it; its body is built only to create it."""

    node: str
    job: str
    state: TaskState = TaskState.QUEUED
    uid: str = ""
    stale_uid: str = ""
    replace_attempts: int = 0
    failure: Obj | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Seen:
    """What the run needs of one Job it listed or re-read: not the Job itself."""

    uid: str
    owned: bool  # carries this run's owner reference
    result: jobs.Result


@dataclasses.dataclass(frozen=True)
class Plan:
    owner: jobs.Owner
    tasks: list[Task]
    skipped: list[nodes.Skipped]
    failed: list[Obj]  # nodes that failed before any Job: unknown names, name clashes
    selected: int


class Outcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TERMINATED = "terminated"
    TIMEOUT = "timeout"
    DRY_RUN = "dry-run"


_EXIT = {
    Outcome.SUCCEEDED: errors.ExitCode.OK,
    Outcome.DRY_RUN: errors.ExitCode.OK,
    Outcome.FAILED: errors.ExitCode.NODES_FAILED,
    Outcome.TERMINATED: errors.ExitCode.TERMINATED,
    Outcome.TIMEOUT: errors.ExitCode.TIMEOUT,
}


@dataclasses.dataclass
class Summary:
    outcome: Outcome
    release: str
    stage: str
    namespace: str
    parallelism: int
    nodes_total: int
    succeeded: int
    failed: list[Obj]
    skipped: list[Obj]
    unfinished: list[Obj]
    not_dispatched: list[str]
    peak_in_flight: int
    api_requests: int
    elapsed_seconds: float
    jobs: list[Obj] = dataclasses.field(default_factory=list)  # dry run only

    @property
    def exit_code(self) -> errors.ExitCode:
        if self.outcome is Outcome.SUCCEEDED and self.failed:
            return errors.ExitCode.NODES_FAILED
        return _EXIT[self.outcome]

    def as_dict(self) -> Obj:
        return {
            "result": self.outcome.value,
            "exit_code": int(self.exit_code),
            "release": self.release,
            "stage": self.stage,
            "namespace": self.namespace,
            "parallelism": self.parallelism,
            "nodes_total": self.nodes_total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "skipped": self.skipped,
            "unfinished": self.unfinished,
            "not_dispatched": self.not_dispatched,
            "peak_in_flight": self.peak_in_flight,
            "api_requests": self.api_requests,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"), sort_keys=False)


class Rollout(watching.Watcher):
    """One run of the dispatcher against `api`. `run()` returns the Summary."""

    def __init__(
        self,
        api: kube.Api,
        config: settings.Settings,
        template: Obj,
        *,
        clock: retry.Clock,
        stop: watching.StopFlag | None = None,
    ) -> None:
        super().__init__(
            api,
            clock=clock,
            stop=stop,
            watching="watch Jobs",
            retry_budget=config.retry_budget,
            timeout=config.timeout,
            progress_interval=config.progress_interval,
        )
        self._cfg = config
        self._template = template
        self._tasks: dict[str, Task] = {}
        self._pacer = Pacer([], parallelism=config.parallelism)
        self._owner = jobs.Owner(config.owner_job, "")
        self._selector = ""
        self._inspect = config.inspect_pods

    # -- planning ---------------------------------------------------------------------

    def _read_owner(self) -> jobs.Owner:
        ns, name = self._cfg.namespace, self._cfg.owner_job
        try:
            obj = self._call(lambda: self._api.read_job(ns, name), f"read owner Job {ns}/{name}")
        except errors.NotFound as exc:
            if self._cfg.dry_run:
                log.warning("owner Job %s/%s not found; dry run uses a placeholder UID", ns, name)
                return jobs.Owner(name, DRY_RUN_UID)
            raise errors.UsageError(
                f"owner Job {ns}/{name} not found: --owner-job must name the dispatcher's "
                "own Job in --namespace"
            ) from exc
        uid = jobs.uid_of(obj)
        if not uid:
            raise errors.UsageError(f"owner Job {ns}/{name} has no metadata.uid")
        return jobs.Owner(name, uid)

    def plan(self) -> Plan:
        """Read the owner, select and admit nodes, name each node's Job."""
        cfg = self._cfg
        owner = self._read_owner()
        selector = nodes.Selector(
            self._api, policy=self._policy, clock=self._clock, page_size=cfg.page_size
        )
        if cfg.wait_for_nodes > 0:
            selection = selector.wait(
                names=cfg.nodes, label_selector=cfg.selector, seconds=cfg.wait_for_nodes
            )
        else:
            selection = selector.select(names=cfg.nodes, label_selector=cfg.selector)
        failed: list[Obj] = [
            {"node": n, "reason": "NodeNotFound", "message": "no node with this name exists"}
            for n in selection.unknown
        ]
        for name in selection.unknown:
            log.error("node %s does not exist; the other nodes proceed", name, extra={"node": name})
        tolerations = nodes.tolerations_from_pod_spec(jobs.pod_spec_of(self._template))
        admitted, skipped = nodes.admit(selection.nodes, tolerations)
        for skip in skipped:
            log.warning(
                "skipping node %s: the Job's pod does not tolerate taint %s",
                skip.node,
                skip.taint,
                extra={"node": skip.node},
            )
        tasks: list[Task] = []
        by_job: dict[str, str] = {}
        prefix = jobs.prefix_of(self._template)
        for node in admitted:
            name = jobs.job_name(prefix, node.name)
            if name in by_job:  # only through a SHA-256 prefix collision; never silently
                failed.append(
                    {
                        "node": node.name,
                        "reason": "JobNameCollision",
                        "message": f"Job name {name} is already taken by node {by_job[name]}",
                    }
                )
                continue
            by_job[name] = node.name
            tasks.append(Task(node.name, name))
        total = len(selection.nodes) + len(selection.unknown)
        return Plan(owner, tasks, skipped, failed, total)

    # -- running ----------------------------------------------------------------------

    def run(self) -> Summary:
        plan = self.plan()
        self._owner = plan.owner
        if self._cfg.dry_run:
            return self._summary(plan, Outcome.DRY_RUN)
        self._tasks = {t.job: t for t in plan.tasks}
        self._pacer = Pacer([t.job for t in plan.tasks], parallelism=self._cfg.parallelism)
        self._selector = jobs.label_selector(
            jobs.selector_labels(
                release=self._cfg.release, stage=self._cfg.stage.value, owner=plan.owner.name
            )
        )
        log.info(
            "dispatching %d Jobs, at most %d at a time (%d nodes skipped, %d failed before start)",
            len(plan.tasks),
            self._pacer.cap,
            len(plan.skipped),
            len(plan.failed),
        )
        try:
            if plan.tasks:
                self._relist(initial=True)
                self._fill()
                while self._pacer.active and not self._halted():
                    self._watch_once()
                    self._tick()
        except watching.Interrupted:
            log.warning("stopping: %s", self._stop.reason)
        if self._stop.requested:
            outcome = Outcome.TERMINATED
        elif self._pacer.active or self._pacer.queue:
            outcome = Outcome.TIMEOUT
            log.error("--timeout of %.0fs reached before every node finished", self._cfg.timeout)
        else:
            failed = plan.failed or any(t.state is TaskState.FAILED for t in plan.tasks)
            outcome = Outcome.FAILED if failed else Outcome.SUCCEEDED
        self._log_progress()
        if outcome is Outcome.SUCCEEDED and self._cfg.remove_install_jobs:
            self._remove_install_jobs(self._cfg.remove_install_jobs)
        elif self._cfg.remove_install_jobs:
            log.warning("keeping the install Jobs: the cleanup did not succeed on every node")
        return self._summary(plan, outcome)

    def _summary(self, plan: Plan, outcome: Outcome) -> Summary:
        tasks = plan.tasks
        unfinished = [
            {
                "node": t.node,
                "job": t.job,
                "reason": "Terminated" if outcome is Outcome.TERMINATED else "Timeout",
            }
            for t in tasks
            if t.job in self._pacer.active
        ]
        queued = [t.node for t in tasks if t.state is TaskState.QUEUED]
        if outcome is Outcome.DRY_RUN:
            queued = []
        return Summary(
            outcome=outcome,
            release=self._cfg.release,
            stage=self._cfg.stage.value,
            namespace=self._cfg.namespace,
            parallelism=self._cfg.parallelism,
            nodes_total=plan.selected,
            succeeded=sum(t.state is TaskState.SUCCEEDED for t in tasks),
            failed=plan.failed + [t.failure for t in tasks if t.failure is not None],
            skipped=[s.as_dict() for s in plan.skipped],
            unfinished=unfinished,
            not_dispatched=queued,
            peak_in_flight=self._pacer.peak,
            api_requests=self._api.api_requests,
            elapsed_seconds=self._elapsed(),
            jobs=[self._body(t) for t in tasks] if outcome is Outcome.DRY_RUN else [],
        )

    def _body(self, task: Task) -> Obj:
        """The node's Job, built from the template when it is about to be sent."""
        cfg = self._cfg
        return jobs.build(
            self._template,
            task.node,
            owner=self._owner,
            release=cfg.release,
            stage=cfg.stage.value,
            namespace=cfg.namespace,
        )

    def _seen(self, obj: Obj) -> Seen:
        return Seen(jobs.uid_of(obj), jobs.is_owned_by(obj, self._owner.uid), jobs.interpret(obj))

    def _list_jobs(self, selector: str) -> tuple[dict[str, Seen], str]:
        """Every Job the selector matches, by name, each reduced to a `Seen` as its page
        arrives; with the list's resourceVersion."""

        def fetch(token: str | None) -> kube.Page:
            return self._api.list_jobs(
                self._cfg.namespace,
                label_selector=selector,
                limit=self._cfg.page_size,
                continue_token=token,
            )

        def named(obj: Obj) -> tuple[str, Seen]:
            return jobs.name_of(obj), self._seen(obj)

        listing = kube.list_all(fetch, named, send=self._call, what=f"list Jobs {selector}")
        return dict(listing.items), listing.resource_version

    def _relist(self, *, initial: bool) -> None:
        """Read every Job of this release/stage/owner label; the initial pass adopts or
        marks stale, a relist after 410 Gone catches up on what the watch missed."""
        listed, self._rv = self._list_jobs(self._selector)
        for name, task in self._tasks.items():
            seen = listed.get(name)
            if initial:
                if seen is None:
                    continue
                if seen.owned:
                    self._adopt(task, seen)
                else:
                    task.stale_uid = seen.uid
            elif task.state is TaskState.RUNNING:
                if seen is not None and seen.owned:
                    self._observe(task, seen.result)
                else:
                    self._finish(
                        task,
                        jobs.Result(
                            jobs.State.FAILED,
                            "JobDisappeared",
                            "the Job was deleted before its result was observed",
                        ),
                    )
            elif task.state is TaskState.REPLACING and (seen is None or seen.uid != task.stale_uid):
                self._create_replacement(task)

    def _adopt(self, task: Task, seen: Seen) -> None:
        result = seen.result
        task.uid = seen.uid
        task.state = TaskState.RUNNING
        self._pacer.adopt(task.job, running=not result.finished)
        log.info(
            "node %s: adopted existing Job %s (%s)",
            task.node,
            task.job,
            result.state.value,
            extra={"node": task.node, "job": task.job},
        )
        if result.finished:
            self._finish(task, result)

    def _fill(self) -> None:
        while not self._halted():
            name = self._pacer.take()
            if name is None:
                return
            task = self._tasks[name]
            if task.stale_uid:
                self._replace(task, task.stale_uid)
            else:
                self._create(task)

    def _create(self, task: Task) -> None:
        """Create the node's Job; one that already holds the name is adopted (ours) or
        replaced (an earlier owner's)."""
        try:
            self._post(task)
        except errors.AlreadyExists:
            existing = self._read(task.job)
            if existing is None:  # deleted between our create and our read: try again
                task.replace_attempts += 1
                if task.replace_attempts > MAX_REPLACE_ATTEMPTS:
                    self._finish(
                        task,
                        jobs.Result(
                            jobs.State.FAILED, "CreateFailed", f"Job {task.job} kept vanishing"
                        ),
                    )
                else:
                    self._create(task)
                return
            if existing.owned:
                self._adopt(task, existing)
            else:
                self._replace(task, existing.uid)

    def _post(self, task: Task) -> None:
        """POST the node's Job: it is then RUNNING, or FAILED if the API server rejects
        it as invalid. `errors.AlreadyExists` is the caller's to handle. The body lives
        only for this call."""
        ns = self._cfg.namespace
        body = self._body(task)
        try:
            obj = self._call(lambda: self._api.create_job(ns, body), f"create Job {task.job}")
        except errors.Invalid as exc:
            self._finish(task, jobs.Result(jobs.State.FAILED, "JobRejected", exc.message))
            return
        task.uid = jobs.uid_of(obj)
        task.state = TaskState.RUNNING
        task.stale_uid = ""
        log.info(
            "node %s: created Job %s",
            task.node,
            task.job,
            extra={"node": task.node, "job": task.job},
        )

    def _read(self, name: str) -> Seen | None:
        """Re-read one Job by name. A LIST with a name field selector, not a GET: the
        chart grants `get` on Jobs only for the owner Job (resourceNames)."""
        ns = self._cfg.namespace
        page = self._call(
            lambda: self._api.list_jobs(ns, field_selector=f"metadata.name={name}", limit=1),
            f"read Job {name}",
        )
        return self._seen(page.items[0]) if page.items else None

    def _replace(self, task: Task, stale_uid: str) -> None:
        """Delete an earlier owner's Job with this name (only that exact object: UID
        precondition), then create ours once it is gone."""
        task.replace_attempts += 1
        if task.replace_attempts > MAX_REPLACE_ATTEMPTS:
            self._finish(
                task,
                jobs.Result(
                    jobs.State.FAILED,
                    "ReplaceFailed",
                    f"an earlier Job named {task.job} could not be replaced",
                ),
            )
            return
        ns = self._cfg.namespace
        log.info(
            "node %s: replacing Job %s left by an earlier dispatcher",
            task.node,
            task.job,
            extra={"node": task.node, "job": task.job},
        )
        try:
            self._call(
                lambda: self._api.delete_job(ns, task.job, uid=stale_uid), f"delete Job {task.job}"
            )
        except errors.NotFound:
            pass
        except errors.Conflict:
            # The UID precondition failed: the name now holds another Job. Re-read.
            existing = self._read(task.job)
            if existing is not None and existing.owned:
                self._adopt(task, existing)
                return
            if existing is not None:
                self._replace(task, existing.uid)
                return
        task.state = TaskState.REPLACING
        task.stale_uid = stale_uid
        self._create_replacement(task)

    def _create_replacement(self, task: Task) -> None:
        # AlreadyExists: the old Job is still terminating; its DELETED event (or a tick)
        # retries.
        with contextlib.suppress(errors.AlreadyExists):
            self._post(task)

    def _observe(self, task: Task, result: jobs.Result) -> None:
        if result.finished:
            self._finish(task, result)

    def _finish(self, task: Task, result: jobs.Result) -> None:
        self._pacer.finish(task.job)
        extra = {"node": task.node, "job": task.job}
        if result.state is jobs.State.SUCCEEDED:
            task.state = TaskState.SUCCEEDED
            log.info("node %s: Job %s succeeded", task.node, task.job, extra=extra)
            return
        task.state = TaskState.FAILED
        failure: Obj = {
            "node": task.node,
            "job": task.job,
            "reason": result.reason,
            "message": result.message,
        }
        pod = self._pod_failure(task) if task.uid else None
        if pod is not None:
            failure.update(pod.as_dict())
        task.failure = failure
        log.warning(
            "node %s: Job %s failed: %s %s%s",
            task.node,
            task.job,
            result.reason,
            result.message,
            (
                f" (container {pod.container} exited {pod.exit_code}: {pod.termination_message})"
                if pod and pod.container
                else ""
            ),
            extra=extra,
        )

    def _pod_failure(self, task: Task) -> jobs.PodFailure | None:
        if not self._inspect:
            return None
        ns = self._cfg.namespace
        selector = f"batch.kubernetes.io/controller-uid={task.uid}"
        try:
            page = self._call(
                lambda: self._api.list_pods(ns, label_selector=selector, limit=50),
                f"list Pods of Job {task.job}",
            )
        except errors.Forbidden:
            log.warning("--inspect-pods: not allowed to list pods in %s; turning it off", ns)
            self._inspect = False
            return None
        found = [f for f in (jobs.pod_failure(p) for p in page.items) if f is not None]
        return found[-1] if found else None

    # -- the watch --------------------------------------------------------------------

    def _open_watch(self, timeout_seconds: int) -> Iterator[kube.WatchEvent]:
        return self._api.watch_jobs(
            self._cfg.namespace,
            label_selector=self._selector,
            resource_version=self._rv,
            timeout_seconds=timeout_seconds,
        )

    def _expired(self) -> None:
        log.info("watch resourceVersion %s expired (410 Gone); relisting Jobs", self._rv)
        self._relist(initial=False)
        self._fill()

    def _handle(self, event: kube.WatchEvent) -> bool:
        """Until nothing is left to wait for or the run must stop."""
        self._on_event(event)
        self._fill()
        self._tick()
        return bool(self._pacer.active) and not self._halted()

    def _on_event(self, event: kube.WatchEvent) -> None:
        meta = event.object.get("metadata") or {}
        if event.type == "BOOKMARK":
            return
        task = self._tasks.get(str(meta.get("name") or ""))
        if task is None:
            return
        owned = jobs.is_owned_by(event.object, self._owner.uid)
        if event.type == "DELETED":
            if task.state is TaskState.REPLACING and not owned:
                self._create_replacement(task)
            elif task.state is TaskState.RUNNING and owned:
                result = jobs.interpret(event.object)
                if not result.finished:
                    result = jobs.Result(
                        jobs.State.FAILED, "JobDeleted", "the Job was deleted before it finished"
                    )
                self._finish(task, result)
        elif task.state is TaskState.RUNNING and owned:
            self._observe(task, jobs.interpret(event.object))

    def _on_tick(self) -> None:
        self._log_progress()
        for task in list(self._tasks.values()):
            if task.state is TaskState.REPLACING:
                self._create_replacement(task)
        self._fill()

    def _log_progress(self) -> None:
        counts = collections.Counter(t.state for t in self._tasks.values())
        done = counts[TaskState.SUCCEEDED]
        failed = counts[TaskState.FAILED]
        running = counts[TaskState.RUNNING] + counts[TaskState.REPLACING]
        queued = counts[TaskState.QUEUED]
        log.info(
            "progress: %d/%d done, %d running, %d queued, %d failed, %.0fs elapsed",
            done,
            len(self._tasks),
            running,
            queued,
            failed,
            self._elapsed(),
            extra={
                "done": done,
                "running": running,
                "queued": queued,
                "failed": failed,
                "elapsed_seconds": round(self._elapsed(), 1),
            },
        )

    # -- cleanup of the install Jobs ---------------------------------------------------

    def _remove_install_jobs(self, dispatcher_job: str) -> None:
        """After a fully successful cleanup: delete the install dispatcher Job and every
        install-stage Job of this release (Background propagation), so uninstall leaves
        nothing behind even before the garbage collector or TTL would."""
        ns = self._cfg.namespace
        selector = jobs.label_selector(
            jobs.selector_labels(release=self._cfg.release, stage=settings.Stage.INSTALL.value)
        )
        listed, _ = self._list_jobs(selector)
        names = [dispatcher_job, *sorted(n for n in listed if n != dispatcher_job)]
        removed = 0
        for name in names:

            def delete(name: str = name) -> None:
                self._api.delete_job(ns, name)

            try:
                self._call(delete, f"delete Job {name}")
                removed += 1
            except errors.NotFound:
                continue
        log.info("removed %d install Jobs of release %s", removed, self._cfg.release)
