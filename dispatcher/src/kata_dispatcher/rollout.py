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
it creates (Jobs it takes over running count against the cap, and may be above it: they
are never killed to get under it); create anything in a dry run; swallow API errors it
does not understand (they end the run with their exit code).
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

from kata_dispatcher import errors, jobs, kube, lease, nodes, retry, settings, watching

log = logging.getLogger(__name__)

Obj = dict[str, Any]

DRY_RUN_UID = "00000000-0000-0000-0000-000000000000"
# Seconds a Job may stay decided-to-fail (FailureTarget) before it counts as failed
# without its Failed condition: its pod is being killed on a node whose kubelet may be
# gone, and would hold its slot for ever.
FAILING_GRACE = 60.0
MAX_REPLACE_ATTEMPTS = 5
# Seconds of retries for releasing the Lease once the run is over: a release that cannot
# get through leaves it to expire by itself, rather than spending a second --retry-budget.
RELEASE_BUDGET = 10.0


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
    # adopted from an earlier dispatcher but built from another template: replaced with
    # ours once it has finished
    superseded: bool = False
    started: float = 0.0  # monotonic time it was created or adopted
    probed: bool = False  # its pod was read once as its deadline neared
    stuck: jobs.PodFailure | None = None  # what that read found keeping it from finishing
    failing: jobs.Result | None = None  # FailureTarget seen (and when), Failed not yet
    failing_since: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Seen:
    """What the run needs of one Job it listed or re-read: not the Job itself."""

    uid: str
    owned: bool  # carries this run's owner reference
    result: jobs.Result
    template_hash: str = ""
    terminating: bool = False


@dataclasses.dataclass(frozen=True)
class Plan:
    owner: jobs.Owner
    tasks: list[Task]
    skipped: list[nodes.Skipped]
    failed: list[Obj]  # nodes that failed before any Job: unknown names, name clashes
    selected: int
    already_done: int = 0  # --skip-done: selected nodes that need no Job


class Outcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TERMINATED = "terminated"
    TIMEOUT = "timeout"
    DRY_RUN = "dry-run"
    YIELDED = "yielded"  # another run holds the release's Lease (--lease-mode yield)
    # a request kept failing transiently for the whole --retry-budget mid-rollout
    UNREACHABLE = "api-unreachable"
    # any other error stopped the run mid-rollout (e.g. a right refused by a ready API
    # server); the exit code is the error's own
    ERROR = "error"


_EXIT = {
    Outcome.SUCCEEDED: errors.ExitCode.OK,
    Outcome.DRY_RUN: errors.ExitCode.OK,
    Outcome.YIELDED: errors.ExitCode.OK,
    Outcome.FAILED: errors.ExitCode.NODES_FAILED,
    Outcome.TERMINATED: errors.ExitCode.TERMINATED,
    Outcome.TIMEOUT: errors.ExitCode.TIMEOUT,
    Outcome.UNREACHABLE: errors.ExitCode.API_UNREACHABLE,
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
    already_done: int = 0
    adopted: int = 0
    max_failed_nodes: int = 0  # the budget, resolved to a count of nodes
    jobs: list[Obj] = dataclasses.field(default_factory=list)  # dry run only
    retries: retry.Tally = dataclasses.field(default_factory=retry.Tally)
    error: str = ""  # api-unreachable, error: the request that failed, and how
    error_exit: errors.ExitCode = errors.ExitCode.USAGE  # the exit code of an ERROR

    @property
    def not_done(self) -> int:
        """Selected nodes that failed or got no Job: what the budget is measured against."""
        return len(self.failed) + len(self.skipped)

    @property
    def exit_code(self) -> errors.ExitCode:
        return self.error_exit if self.outcome is Outcome.ERROR else _EXIT[self.outcome]

    def as_dict(self) -> Obj:
        return {
            "result": self.outcome.value,
            "exit_code": int(self.exit_code),
            "release": self.release,
            "stage": self.stage,
            "namespace": self.namespace,
            "parallelism": self.parallelism,
            "nodes_total": self.nodes_total,
            "already_done": self.already_done,
            "succeeded": self.succeeded,
            "adopted": self.adopted,
            "max_failed_nodes": self.max_failed_nodes,
            "failed": self.failed,
            "skipped": self.skipped,
            "unfinished": self.unfinished,
            "not_dispatched": self.not_dispatched,
            "peak_in_flight": self.peak_in_flight,
            "api_requests": self.api_requests,
            "retries": self.retries.as_dict(),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
        } | ({"error": self.error} if self.error else {})

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"), sort_keys=False)


def _pod_words(pod: jobs.PodFailure | None) -> str:
    """What a failed Job's pod said, for the log line."""
    if pod is None:
        return ""
    if pod.exit_code is not None:
        return f" (container {pod.container} exited {pod.exit_code}: {pod.termination_message})"
    where = f"container {pod.container} " if pod.container else "its pod "
    return f" ({where}was waiting: {pod.reason} {pod.termination_message})".replace("  ", " ")


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
        tally: retry.Tally | None = None,
    ) -> None:
        super().__init__(
            api,
            clock=clock,
            stop=stop,
            watching="watch Jobs",
            retry_budget=config.retry_budget,
            timeout=config.timeout,
            progress_interval=config.progress_interval,
            tally=tally,
        )
        self._cfg = config
        self._template = template
        self._tasks: dict[str, Task] = {}
        self._pacer = Pacer([], parallelism=config.parallelism)
        self._owner = jobs.Owner(config.owner_job, "")
        self._anchor: jobs.Owner | None = None
        self._digest = jobs.template_hash(template)
        # the per-node Jobs' own deadline: their pods are read once as it nears
        self._job_deadline = float((template.get("spec") or {}).get("activeDeadlineSeconds") or 0)
        self._adopted = 0
        self._selector = ""
        self._inspect = config.inspect_pods
        self._lease: lease.Lease | None = None
        self._error = ""
        self._error_exit = errors.ExitCode.USAGE

    # -- planning ---------------------------------------------------------------------

    def _read_owner(self) -> jobs.Owner:
        """The owner Job's UID, read with a LIST by name: the reconcile CronJob's Jobs have
        generated names, which a `get` rule with resourceNames could not grant."""
        ns, name = self._cfg.namespace, self._cfg.owner_job
        owner = self._find_job(name, f"read owner Job {ns}/{name}")
        if owner is None:
            if self._cfg.dry_run:
                log.warning("owner Job %s/%s not found; dry run uses a placeholder UID", ns, name)
                return jobs.Owner(name, DRY_RUN_UID)
            raise errors.UsageError(
                f"owner Job {ns}/{name} not found: --owner-job must name the dispatcher's "
                "own Job in --namespace"
            )
        uid = jobs.uid_of(owner)
        if not uid:
            raise errors.UsageError(f"owner Job {ns}/{name} has no metadata.uid")
        return jobs.Owner(name, uid)

    def _read_anchor(self) -> jobs.Owner | None:
        name = self._cfg.anchor_configmap
        if not name:
            return None
        ns = self._cfg.namespace
        try:
            obj = self._call(
                lambda: self._api.read_configmap(ns, name), f"read ConfigMap {ns}/{name}"
            )
        except errors.NotFound as exc:
            if self._cfg.dry_run:
                return jobs.Owner(name, DRY_RUN_UID, "ConfigMap", "v1")
            raise errors.UsageError(
                f"ConfigMap {ns}/{name} not found: --anchor-configmap must name an existing "
                "ConfigMap in --namespace"
            ) from exc
        return jobs.Owner(name, jobs.uid_of(obj), "ConfigMap", "v1")

    def _done_rule(self) -> nodes.Rule | None:
        cfg = self._cfg
        if cfg.skip_clean:
            return nodes.CleanRule(cfg.result_annotation)
        if not cfg.skip_done:
            return None
        return nodes.DoneRule(cfg.result_annotation, cfg.config_hash, cfg.done_label)

    def plan(self) -> Plan:
        """Read the owner, select and admit nodes, name each node's Job."""
        cfg = self._cfg
        owner = self._owner if self._owner.uid else self._read_owner()
        if self._anchor is None:  # run() read it already, unless this is a dry run
            self._anchor = self._read_anchor()
        rule = self._done_rule()
        selector = nodes.Selector(
            self._api,
            policy=self._policy,
            clock=self._clock,
            page_size=cfg.page_size,
            done_rule=rule,
            tally=self._tally,
        )
        if cfg.wait_for_nodes > 0:
            selection = selector.wait(
                names=cfg.nodes,
                label_selector=cfg.selector,
                seconds=cfg.wait_for_nodes,
                on_poll=self._renew,
            )
        else:
            selection = selector.select(names=cfg.nodes, label_selector=cfg.selector)
        failed: list[Obj] = [
            {"node": n, "reason": "NodeNotFound", "message": "no node with this name exists"}
            for n in selection.unknown
        ]
        for name in selection.unknown:
            log.error("node %s does not exist; the other nodes proceed", name, extra={"node": name})
        done = [n for n in selection.nodes if n.done]
        if done and rule is not None:
            log.info("%d nodes %s: no Job for them", len(done), rule.why)
        tolerations = nodes.tolerations_from_pod_spec(jobs.pod_spec_of(self._template))
        admitted, skipped = nodes.admit([n for n in selection.nodes if not n.done], tolerations)
        for skip in skipped:
            log.warning(
                "node %s gets no Job: %s",
                skip.node,
                skip.as_dict()["message"],
                extra={"node": skip.node, "reason": skip.reason.value},
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
        return Plan(owner, tasks, skipped, failed, total, len(done))

    # -- running ----------------------------------------------------------------------

    def run(self) -> Summary:
        if self._cfg.dry_run:
            plan = self.plan()
            self._owner = plan.owner
            return self._summary(plan, Outcome.DRY_RUN)
        cleanup = self._cfg.stage is settings.Stage.CLEANUP
        if self._cfg.delete_cronjob:
            self._delete_cronjob(self._cfg.delete_cronjob)
        if cleanup and self._cfg.remove_install_jobs:
            self._stop_install_run(self._cfg.remove_install_jobs)
        self._owner = self._read_owner()
        self._anchor = self._read_anchor()
        if self._cfg.lease:
            self._lease = lease.Lease(
                self._api,
                namespace=self._cfg.namespace,
                name=self._cfg.lease,
                # the owner Job's UID: unique per run, shared by nothing else
                identity=f"{self._owner.name}/{self._owner.uid}",
                duration=self._cfg.lease_duration,
                send=self._call,
                clock=self._clock,
                # gone with the release's ConfigMap at `helm uninstall`
                owner=self._anchor.reference() if self._anchor is not None else None,
            )
        if self._lease is not None and not self._lease.acquire(
            self._cfg.lease_mode, give_up=self._halted
        ):
            if self._cfg.lease_mode is settings.LeaseMode.YIELD:
                outcome = Outcome.YIELDED
            else:
                outcome = Outcome.TERMINATED if self._stop.requested else Outcome.TIMEOUT
            nothing = Plan(self._owner, [], [], [], 0)
            return self._summary(nothing, outcome)
        try:
            if cleanup and self._cfg.remove_install_jobs:
                self._await_install_jobs()
            return self._dispatch()
        finally:
            if self._lease is not None:
                self._policy = retry.Policy(budget=min(RELEASE_BUDGET, self._cfg.retry_budget))
                self._lease.release()

    def _renew(self) -> None:
        if self._lease is not None:
            self._lease.renew()

    def _delete_cronjob(self, name: str) -> None:
        """Before a cleanup: no reconcile may install again behind it. Its running Job
        goes too (its dispatcher releases the Lease on SIGTERM)."""
        ns = self._cfg.namespace
        try:
            self._call(lambda: self._api.delete_cronjob(ns, name), f"delete CronJob {ns}/{name}")
            log.info("deleted the reconcile CronJob %s/%s before cleaning up", ns, name)
        except errors.NotFound:
            pass

    def _stop_install_run(self, name: str) -> None:
        """An uninstall overrides an install still in progress (a `helm install` that
        timed out leaves its dispatcher running): delete that dispatcher's Job, whose pod
        stops creating Jobs and releases the Lease on SIGTERM. A finished one is kept for
        its log until the cleanup has succeeded."""
        ns = self._cfg.namespace
        job = self._find_job(name, f"read Job {ns}/{name}")
        if job is None or jobs.interpret(job).finished:
            return
        log.warning("stopping the install run still in progress (Job %s) before cleaning up", name)
        with contextlib.suppress(errors.NotFound):
            self._call(lambda: self._api.delete_job(ns, name), f"delete Job {ns}/{name}")

    def _await_install_jobs(self, poll: float = 5.0) -> None:
        """Before choosing which nodes to clean up: let the install Jobs still running
        finish (each is bounded by its own deadline), so no node is labelled behind the
        cleanup's back."""
        selector = jobs.label_selector(
            jobs.selector_labels(release=self._cfg.release, stage=settings.Stage.INSTALL.value)
        )
        while not self._halted():
            listed, _ = self._list_jobs(selector)
            # a Job decided to fail (FailureTarget) installs nothing more, even if its pod
            # never terminates (a node with no kubelet): not worth waiting for
            running = sorted(
                n for n, seen in listed.items() if not (seen.result.finished or seen.result.failing)
            )
            if not running:
                return
            log.info(
                "waiting for %d install Jobs still running before cleaning up (%s%s)",
                len(running),
                ", ".join(running[:5]),
                ", ..." if len(running) > 5 else "",
            )
            self._clock.sleep(poll)
            self._renew()

    def _dispatch(self) -> Summary:
        plan = self.plan()
        self._owner = plan.owner
        self._tasks = {t.job: t for t in plan.tasks}
        self._pacer = Pacer([t.job for t in plan.tasks], parallelism=self._cfg.parallelism)
        # Every Job of this release and stage, whichever dispatcher created it: an earlier
        # one's (a Helm run's, or a reconcile run's, whose names differ) may be taken over.
        self._selector = jobs.label_selector(
            jobs.selector_labels(release=self._cfg.release, stage=self._cfg.stage.value)
        )
        log.info(
            "dispatching %d Jobs, at most %d at a time (%d nodes skipped, %d failed before start)",
            len(plan.tasks),
            self._pacer.cap,
            len(plan.skipped),
            len(plan.failed),
        )
        outcome: Outcome | None = None
        try:
            if plan.tasks:
                self._relist(initial=True)
                self._fill()
                while self._pacer.active and not self._halted():
                    self._watch_once()
                    self._tick()
        except watching.Interrupted:
            log.warning("stopping: %s", self._stop.reason)
        except errors.Transient as exc:
            # retry.call gave up: this request failed for the whole --retry-budget. Say
            # which nodes are left, rather than only which request failed.
            self._error = str(exc)
            log.error(
                "giving up: the API server stayed unavailable for the whole retry budget "
                "(%.0fs): %s",
                self._cfg.retry_budget,
                exc,
            )
            outcome = Outcome.UNREACHABLE
        except errors.DispatcherError as exc:
            # Any other error ends the run just as surely: say which nodes are left too.
            self._error, self._error_exit = str(exc), exc.exit_code
            log.error("stopping: %s", exc)
            outcome = Outcome.ERROR
        if outcome is None:
            outcome = self._verdict(plan)
        self._log_progress()
        log.info("retries: %s", self._tally.describe(), extra={"retries": self._tally.as_dict()})
        complete = outcome is Outcome.SUCCEEDED and not (
            plan.failed or plan.skipped or any(t.state is TaskState.FAILED for t in plan.tasks)
        )
        if complete and self._cfg.remove_install_jobs:
            self._remove_install_jobs(self._cfg.remove_install_jobs)
        elif self._cfg.remove_install_jobs:
            log.warning("keeping the install Jobs: the cleanup did not succeed on every node")
        return self._summary(plan, outcome)

    def _verdict(self, plan: Plan) -> Outcome:
        """How a run that was not stopped by an error ended."""
        if self._stop.requested:
            return Outcome.TERMINATED
        if self._pacer.active or self._pacer.queue:
            log.error("--timeout of %.0fs reached before every node finished", self._cfg.timeout)
            return Outcome.TIMEOUT
        not_done = (
            len(plan.failed)
            + len(plan.skipped)
            + sum(t.state is TaskState.FAILED for t in plan.tasks)
        )
        allowed = self._cfg.max_failed_nodes.allowed(plan.selected)
        if not_done > allowed:
            return Outcome.FAILED
        if not_done:
            log.warning(
                "%d selected nodes are not done, within --max-failed-nodes %s (%d nodes)",
                not_done,
                self._cfg.max_failed_nodes,
                allowed,
            )
        return Outcome.SUCCEEDED

    def _summary(self, plan: Plan, outcome: Outcome) -> Summary:
        tasks = plan.tasks
        reason = {
            Outcome.TERMINATED: "Terminated",
            Outcome.UNREACHABLE: "ApiUnreachable",
            Outcome.ERROR: "Error",
        }
        unfinished = [
            {
                "node": t.node,
                "job": t.job,
                "reason": reason.get(outcome, "Timeout"),
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
            already_done=plan.already_done,
            adopted=self._adopted,
            max_failed_nodes=self._cfg.max_failed_nodes.allowed(plan.selected),
            jobs=[self._body(t) for t in tasks] if outcome is Outcome.DRY_RUN else [],
            retries=self._tally,
            error=self._error,
            error_exit=self._error_exit,
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
            anchor=self._anchor,
            digest=self._digest,
        )

    def _seen(self, obj: Obj) -> Seen:
        return Seen(
            jobs.uid_of(obj),
            jobs.is_owned_by(obj, self._owner.uid),
            jobs.interpret(obj),
            jobs.template_hash_of(obj),
            jobs.is_terminating(obj),
        )

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
                if seen is not None:
                    self._claim(task, seen, now=False)
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

    def _reusable(self, seen: Seen) -> bool:
        """An earlier dispatcher's Job this run takes over rather than replaces: one still
        running (whatever its template: a pod mid-install is never killed), or one that
        succeeded with this run's template."""
        if seen.terminating or seen.result.state is jobs.State.FAILED:
            return False
        return not seen.result.finished or seen.template_hash == self._digest

    def _claim(self, task: Task, seen: Seen, *, now: bool) -> None:
        """A Job already holds the task's name: adopt it if it is ours, take it over from
        an earlier dispatcher if it can be reused, else replace it (at once when `now`,
        else when the task's turn comes)."""
        if seen.owned:
            self._adopt(task, seen)
        elif self._reusable(seen):
            self._take_over(task, seen)
        elif now:
            self._replace(task, seen.uid)
        else:
            task.stale_uid = seen.uid

    def _take_over(self, task: Task, seen: Seen) -> None:
        """Move an earlier dispatcher's Job to this one (one JSON patch, guarded by the
        Job's UID) and adopt it: its pod keeps running and its result counts."""
        ns = self._cfg.namespace
        patch = jobs.adoption_patch(seen.uid, self._owner, self._anchor)
        try:
            obj = self._call(
                lambda: self._api.patch_job(ns, task.job, patch), f"adopt Job {task.job}"
            )
        except (errors.NotFound, errors.Invalid):
            # Gone, or its UID changed under us (the patch's test failed): look again.
            task.replace_attempts += 1
            existing = self._read(task.job)
            if existing is not None and task.replace_attempts <= MAX_REPLACE_ATTEMPTS:
                self._claim(task, existing, now=task.state is not TaskState.QUEUED)
            return
        self._adopted += 1
        log.info(
            "node %s: took over Job %s from an earlier dispatcher",
            task.node,
            task.job,
            extra={"node": task.node, "job": task.job},
        )
        self._adopt(task, self._seen(obj), earlier=True)

    def _adopt(self, task: Task, seen: Seen, *, earlier: bool = False) -> None:
        """Track a Job that exists already: this owner's, or (`earlier`) one just taken
        over from an earlier dispatcher, which may have been built from another template."""
        result = seen.result
        task.uid = seen.uid
        task.state = TaskState.RUNNING
        task.stale_uid = ""
        task.started = self._clock.monotonic()
        task.failing = None
        task.superseded = earlier and not result.finished and seen.template_hash != self._digest
        self._pacer.adopt(task.job, running=not result.finished)
        log.info(
            "node %s: adopted existing Job %s (%s%s)",
            task.node,
            task.job,
            result.state.value,
            ", built from another template: replaced once it finishes" if task.superseded else "",
            extra={"node": task.node, "job": task.job},
        )
        self._observe(task, result)

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
            self._claim(task, existing, now=True)

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
        task.started = self._clock.monotonic()
        task.failing = None
        log.info(
            "node %s: created Job %s",
            task.node,
            task.job,
            extra={"node": task.node, "job": task.job},
        )

    def _find_job(self, name: str, what: str) -> Obj | None:
        """One Job by name, or None. A LIST with a name field selector, not a GET: the
        chart grants no `get` on Jobs (the reconcile CronJob's names are generated)."""
        ns = self._cfg.namespace
        page = self._call(
            lambda: self._api.list_jobs(ns, field_selector=f"metadata.name={name}", limit=1),
            what,
        )
        return page.items[0] if page.items else None

    def _read(self, name: str) -> Seen | None:
        """Re-read one Job by name."""
        job = self._find_job(name, f"read Job {name}")
        return self._seen(job) if job is not None else None

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
            if existing is not None:
                self._claim(task, existing, now=True)
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
        elif result.failing and task.failing is None:
            task.failing, task.failing_since = result, self._clock.monotonic()

    def _end_failing(self) -> None:
        """A Job decided to fail whose pod has not terminated within FAILING_GRACE: count
        it as failed and free its slot (its pod is on a node that does not answer)."""
        now = self._clock.monotonic()
        for task in list(self._tasks.values()):
            failing = task.failing
            if (
                task.state is TaskState.RUNNING
                and failing
                and now - task.failing_since >= FAILING_GRACE
            ):
                message = (
                    f"{failing.message} (its pod did not terminate within {FAILING_GRACE:.0f}s)"
                )
                self._finish(task, jobs.Result(jobs.State.FAILED, failing.reason, message.strip()))

    def _finish(self, task: Task, result: jobs.Result) -> None:
        if task.superseded:
            # An earlier template's Job, left to finish; now the node gets ours. Its
            # slot stays taken.
            task.superseded = False
            log.info(
                "node %s: the earlier Job %s finished (%s); replacing it with this run's",
                task.node,
                task.job,
                result.state.value,
                extra={"node": task.node, "job": task.job},
            )
            self._replace(task, task.uid)
            return
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
        if pod is None:
            pod = task.stuck  # read as its deadline neared; the pod may be gone by now
        if pod is not None:
            failure.update(pod.as_dict())
        task.failure = failure
        log.warning(
            "node %s: Job %s failed: %s %s%s",
            task.node,
            task.job,
            result.reason,
            result.message,
            _pod_words(pod),
            extra=extra,
        )

    def _pods_of(self, task: Task) -> list[Obj]:
        """The pods of the task's Job (--inspect-pods); [] when not allowed."""
        if not self._inspect:
            return []
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
            return []
        return page.items

    def _pod_failure(self, task: Task) -> jobs.PodFailure | None:
        found = [f for f in (jobs.pod_failure(p) for p in self._pods_of(task)) if f is not None]
        return found[-1] if found else None

    def _probe_stuck(self) -> None:
        """Read, once, the pod of each Job whose own deadline (the template's
        activeDeadlineSeconds) is two progress ticks away: when the deadline passes, the
        Job controller deletes the pod, and with it why the pod never finished (an image
        it cannot pull, a node that never started it)."""
        if not self._inspect or self._job_deadline <= 0:
            return
        soon = self._clock.monotonic() - self._job_deadline + 2 * self._cfg.progress_interval
        for task in self._tasks.values():
            if task.state is TaskState.RUNNING and not task.probed and task.started <= soon:
                task.probed = True
                found = [s for s in map(jobs.pod_stuck, self._pods_of(task)) if s is not None]
                task.stuck = found[-1] if found else None

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
        uid = jobs.uid_of(event.object)
        if event.type == "DELETED" and task.state is TaskState.REPLACING:
            if uid == task.stale_uid:
                self._create_replacement(task)
            return
        # Only the Job this task is waiting for: an event about an earlier object that
        # held the name (a replaced Job's DELETED) says nothing about ours.
        if task.state is not TaskState.RUNNING or uid != task.uid:
            return
        if not jobs.is_owned_by(event.object, self._owner.uid):
            return
        result = jobs.interpret(event.object)
        if event.type == "DELETED" and not result.finished:
            result = jobs.Result(
                jobs.State.FAILED, "JobDeleted", "the Job was deleted before it finished"
            )
        self._observe(task, result)

    def _on_tick(self) -> None:
        self._renew()
        self._log_progress()
        self._probe_stuck()
        self._end_failing()
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
