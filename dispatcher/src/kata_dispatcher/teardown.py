"""DaemonSet-mode uninstall: delete the installer DaemonSet, wait until it is gone.

Why: `helm uninstall` deletes the DaemonSet, the installer's ServiceAccount and its RBAC
in one pass, so an installer pod reverting its node on SIGTERM may find its token or
its rights already gone. The chart runs this as a pre-delete hook instead. It DELETEs
the DaemonSet with propagationPolicy=Foreground: the DaemonSet keeps a
deletionTimestamp (which tells each installer pod "this is a removal, revert the node")
until the garbage collector has deleted every pod it owns, and only then goes. This
module waits for that on ONE watch of the single named object (field selector
`metadata.name`, resumed from its resourceVersion, relisted on 410 Gone, a timeout on
every request: `watching.Watcher`), so Helm deletes the RBAC only after every pod has
reverted. At a steady cadence it counts the DaemonSet's pods that are left, for the
progress line.

What it must not do: touch anything but the one named DaemonSet; fail when that
DaemonSet is already absent (a re-run after an interrupted uninstall must succeed);
poll the DaemonSet; wait on a different DaemonSet that was created under the same name.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
from collections.abc import Iterator
from typing import Any

from kata_dispatcher import errors, kube, retry, settings, watching

log = logging.getLogger(__name__)

Obj = dict[str, Any]

MAX_LISTED_PODS = 50  # pods named in the summary; the count is always complete
MAX_DELETE_CONFLICTS = 3
FINAL_COUNT_BUDGET = 10.0  # seconds of retries for the last pod count after a timeout


class Outcome(enum.StrEnum):
    DELETED = "deleted"  # the DaemonSet was deleted and is gone
    ABSENT = "absent"  # there was nothing to delete
    TIMEOUT = "timeout"
    TERMINATED = "terminated"
    DRY_RUN = "dry-run"


_EXIT = {
    Outcome.DELETED: errors.ExitCode.OK,
    Outcome.ABSENT: errors.ExitCode.OK,
    Outcome.DRY_RUN: errors.ExitCode.OK,
    Outcome.TIMEOUT: errors.ExitCode.TIMEOUT,
    Outcome.TERMINATED: errors.ExitCode.TERMINATED,
}


@dataclasses.dataclass
class Summary:
    outcome: Outcome
    daemonset: str
    namespace: str
    pods_remaining: int | None  # None: not known (no right to list pods)
    remaining: list[Obj]  # up to MAX_LISTED_PODS of them: pod, node, terminating
    api_requests: int
    elapsed_seconds: float
    retries: retry.Tally = dataclasses.field(default_factory=retry.Tally)

    @property
    def exit_code(self) -> errors.ExitCode:
        return _EXIT[self.outcome]

    def as_dict(self) -> Obj:
        return {
            "result": self.outcome.value,
            "exit_code": int(self.exit_code),
            "daemonset": self.daemonset,
            "namespace": self.namespace,
            "pods_remaining": self.pods_remaining,
            "remaining": self.remaining,
            "api_requests": self.api_requests,
            "retries": self.retries.as_dict(),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"))


def label_selector(daemonset: Obj) -> str:
    """The DaemonSet's `spec.selector` as a label-selector string ("" if it has none)."""
    selector = (daemonset.get("spec") or {}).get("selector") or {}
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, operator = expr.get("key"), expr.get("operator")
        values = ",".join(expr.get("values") or [])
        if operator == "In":
            terms.append(f"{key} in ({values})")
        elif operator == "NotIn":
            terms.append(f"{key} notin ({values})")
        elif operator == "Exists":
            terms.append(str(key))
        elif operator == "DoesNotExist":
            terms.append(f"!{key}")
    return ",".join(terms)


def _meta(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _owned_by(pod: Obj, uid: str) -> bool:
    return any(r.get("uid") == uid for r in _meta(pod).get("ownerReferences") or [])


class Teardown(watching.Watcher):
    """One `delete-daemonset` run against `api`. `run()` returns the Summary."""

    def __init__(
        self,
        api: kube.Api,
        config: settings.Teardown,
        *,
        clock: retry.Clock,
        stop: watching.StopFlag | None = None,
        tally: retry.Tally | None = None,
    ) -> None:
        self._what = f"DaemonSet {config.namespace}/{config.daemonset}"
        super().__init__(
            api,
            clock=clock,
            stop=stop,
            watching=f"watch {self._what}",
            retry_budget=config.retry_budget,
            timeout=config.timeout,
            progress_interval=config.progress_interval,
            tally=tally,
        )
        self._cfg = config
        self._field = f"metadata.name={config.daemonset}"
        self._uid = ""
        self._selector = ""
        self._present = True
        self._pods_readable = True
        self._pods: int | None = None
        self._remaining: list[Obj] = []
        self._finalizers: list[str] = []

    # -- helpers ----------------------------------------------------------------------

    def _summary(self, outcome: Outcome) -> Summary:
        return Summary(
            outcome=outcome,
            daemonset=self._cfg.daemonset,
            namespace=self._cfg.namespace,
            pods_remaining=self._pods,
            remaining=self._remaining,
            api_requests=self._api.api_requests,
            elapsed_seconds=self._elapsed(),
            retries=self._tally,
        )

    def _remember(self, daemonset: Obj) -> None:
        self._uid = str(_meta(daemonset).get("uid") or self._uid)
        self._selector = label_selector(daemonset) or self._selector
        self._finalizers = [str(f) for f in _meta(daemonset).get("finalizers") or []]

    # -- running ----------------------------------------------------------------------

    def run(self) -> Summary:
        if self._cfg.dry_run:
            return self._dry_run()
        answer = self._delete()
        if answer is None:
            log.info("%s does not exist: nothing to delete", self._what)
            self._pods, self._remaining = 0, []
            return self._summary(Outcome.ABSENT)
        if answer.get("kind") == "Status":  # deleted at once: no pods held it back
            log.info("%s deleted", self._what)
            self._pods, self._remaining = 0, []
            return self._summary(Outcome.DELETED)
        self._remember(answer)
        log.info(
            "deleting %s (uid %s) with foreground propagation: each of its pods reverts its "
            "node, then the DaemonSet goes",
            self._what,
            self._uid,
        )
        try:
            self._relist()
            if self._present:
                self._count_pods()
                self._log_progress()
            while self._present and not self._halted():
                self._watch_once()
                self._tick()
        except watching.Interrupted:
            log.warning("stopping: %s", self._stop.reason)
        if not self._present:
            self._pods, self._remaining = 0, []
            log.info("%s is gone: every pod reverted its node", self._what)
            return self._summary(Outcome.DELETED)
        if self._stop.requested:
            return self._summary(Outcome.TERMINATED)
        self._final_count()
        if self._pods == 0:
            log.error(
                "--timeout of %.0fs reached: %s still exists though none of its pods is left; "
                "its finalizers %s hold it",
                self._cfg.timeout,
                self._what,
                self._finalizers,
            )
        else:
            log.error(
                "--timeout of %.0fs reached: %s still exists with %s pods left%s; they may "
                "still be reverting their nodes, or be stuck (kubectl -n %s get pods -l '%s')",
                self._cfg.timeout,
                self._what,
                "an unknown number of" if self._pods is None else self._pods,
                (
                    " ("
                    + ", ".join(f"{p['pod']} on {p['node'] or '?'}" for p in self._remaining)
                    + ")"
                    if self._remaining
                    else ""
                ),
                self._cfg.namespace,
                self._selector,
            )
        return self._summary(Outcome.TIMEOUT)

    def _dry_run(self) -> Summary:
        current, _ = self._find()
        if current is None:
            log.info("dry run: %s does not exist; nothing would be deleted", self._what)
            self._pods, self._remaining = 0, []
            return self._summary(Outcome.ABSENT)
        self._remember(current)
        self._count_pods()
        log.info(
            "dry run: would delete %s (uid %s) with foreground propagation and wait for its "
            "%s pods to revert their nodes",
            self._what,
            self._uid,
            "(uncounted)" if self._pods is None else self._pods,
        )
        return self._summary(Outcome.DRY_RUN)

    def _delete(self) -> Obj | None:
        """DELETE (Foreground); None when there is no such DaemonSet. Deleting one that is
        already being deleted is fine: the API server keeps (or switches to) foreground."""
        ns, name = self._cfg.namespace, self._cfg.daemonset
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._call(
                    lambda: self._api.delete_daemonset(ns, name), f"delete {self._what}"
                )
            except errors.NotFound:
                return None
            except errors.Conflict:
                if attempt >= MAX_DELETE_CONFLICTS:
                    raise
                log.warning("delete %s: conflict (attempt %d); trying again", self._what, attempt)

    def _find(self) -> tuple[Obj | None, str]:
        """The DaemonSet (a LIST with a name field selector: RBAC grants it by
        resourceNames, and it yields the resourceVersion to watch from)."""
        ns = self._cfg.namespace
        page = self._call(
            lambda: self._api.list_daemonsets(ns, field_selector=self._field, limit=1),
            f"list {self._what}",
        )
        return (page.items[0] if page.items else None), page.resource_version

    def _relist(self) -> None:
        current, self._rv = self._find()
        if current is None or (self._uid and _meta(current).get("uid") != self._uid):
            self._present = False
        else:
            self._remember(current)

    # -- the watch --------------------------------------------------------------------

    def _open_watch(self, timeout_seconds: int) -> Iterator[kube.WatchEvent]:
        return self._api.watch_daemonsets(
            self._cfg.namespace,
            field_selector=self._field,
            resource_version=self._rv,
            timeout_seconds=timeout_seconds,
        )

    def _expired(self) -> None:
        log.info("watch resourceVersion %s expired (410 Gone); listing again", self._rv)
        self._relist()

    def _handle(self, event: kube.WatchEvent) -> bool:
        """Until the DaemonSet is gone or the run must stop."""
        self._on_event(event)
        if not self._present or self._halted():
            return False
        self._tick()
        return True

    def _on_event(self, event: kube.WatchEvent) -> None:
        meta = _meta(event.object)
        if event.type == "BOOKMARK" or meta.get("name") != self._cfg.daemonset:
            return
        uid = str(meta.get("uid") or "")
        if event.type == "DELETED":
            if not self._uid or uid == self._uid:
                self._present = False
        elif self._uid and uid and uid != self._uid:
            log.warning("%s was re-created (uid %s): ours is gone", self._what, uid)
            self._present = False
        else:
            self._remember(event.object)

    # -- progress ---------------------------------------------------------------------

    def _on_tick(self) -> None:
        self._count_pods()
        self._log_progress()

    def _list_pods(self) -> list[Obj]:
        """Every pod of the DaemonSet's selector that it owns, all pages."""
        ns, selector = self._cfg.namespace, self._selector

        def fetch(token: str | None) -> kube.Page:
            return self._api.list_pods(
                ns, label_selector=selector, limit=self._cfg.page_size, continue_token=token
            )

        def ours(pod: Obj) -> Obj | None:
            return pod if not self._uid or _owned_by(pod, self._uid) else None

        return kube.list_all(fetch, ours, send=self._call, what=f"list pods of {self._what}").items

    def _count_pods(self) -> None:
        if not self._pods_readable or not self._selector:
            return
        try:
            pods = self._list_pods()
        except errors.Forbidden:
            log.warning(
                "not allowed to list pods in %s: progress shows no pod count",
                self._cfg.namespace,
            )
            self._pods_readable = False
            return
        pods.sort(key=lambda p: str(_meta(p).get("name") or ""))
        self._pods = len(pods)
        self._remaining = [
            {
                "pod": str(_meta(p).get("name") or ""),
                "node": str((p.get("spec") or {}).get("nodeName") or ""),
                "terminating": bool(_meta(p).get("deletionTimestamp")),
            }
            for p in pods[:MAX_LISTED_PODS]
        ]

    def _final_count(self) -> None:
        """A last count for the timeout summary; keeps the previous one if the API
        does not answer within a short budget (the run is already over time)."""
        self._policy = retry.Policy(budget=min(FINAL_COUNT_BUDGET, self._cfg.retry_budget))
        try:
            self._count_pods()
        except errors.ApiError as exc:
            log.warning("could not count the pods left: %s", exc)

    def _log_progress(self) -> None:
        pods = "an unknown number of" if self._pods is None else str(self._pods)
        log.info(
            "progress: %s being deleted, %s pods remaining, %.0fs elapsed",
            self._what,
            pods,
            self._elapsed(),
            extra={"pods_remaining": self._pods, "elapsed_seconds": round(self._elapsed(), 1)},
        )
