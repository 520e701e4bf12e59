"""Which nodes get a per-node Job: live, paginated selection and kubelet-like admission.

Why: the set of nodes is resolved when the dispatcher runs, not when Helm renders. The
selection is the operator's intent: every selected node should get Kata. A per-node
Job's pod is pinned with `nodeName`, so the scheduler never sees it and NoSchedule
taints do not apply; what can still keep it off a node is what the kubelet checks for a
pinned pod: a NoExecute taint the pod does not tolerate. A node that is not Ready would
never run it either. Such a node gets no Job and is reported, by name and reason, as
not done. This module reads the API only through `kube.Api` and never writes anything.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kata_dispatcher import errors, kube, retry

log = logging.getLogger(__name__)

# The one effect the kubelet checks when it admits a pod pinned to its node.
BLOCKING_EFFECT = "NoExecute"

# Explicit names are looked up one by one (fieldSelector metadata.name) up to this many;
# beyond it one paginated LIST of every node is cheaper.
NAME_LOOKUP_LIMIT = 20


@dataclasses.dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = ""

    def __str__(self) -> str:
        value = f"={self.value}" if self.value else ""
        return f"{self.key}{value}:{self.effect}"


@dataclasses.dataclass(frozen=True)
class Toleration:
    key: str = ""
    operator: str = ""  # "" means Equal
    value: str = ""
    effect: str = ""  # "" matches every effect

    def tolerates(self, taint: Taint) -> bool:
        """Kubernetes' Toleration.ToleratesTaint (k8s.io/api/core/v1), rule for rule:
        a set effect must equal the taint's; a set key must equal the taint's (an empty
        key with Exists tolerates every taint); Exists ignores the value; Equal (or no
        operator) needs equal values; any other operator tolerates nothing."""
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator == "Exists":
            return True
        if self.operator in ("", "Equal"):
            return self.value == taint.value
        return False


@dataclasses.dataclass(frozen=True)
class DoneRule:
    """When a node already has what this run would install (--skip-done): its result
    annotation (docs/contracts.md) says `installed` with this configuration hash, and it
    carries the node label with the value `true`."""

    annotation: str
    config_hash: str
    label: str
    why = "already have this configuration (result annotation and label)"

    def done(self, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if (meta.get("labels") or {}).get(self.label) != "true":
            return False
        raw = (meta.get("annotations") or {}).get(self.annotation)
        if not raw:
            return False
        try:
            result = json.loads(raw)
        except ValueError:
            return False
        return (
            isinstance(result, dict)
            and result.get("outcome") == "installed"
            and result.get("configHash") == self.config_hash
        )


@dataclasses.dataclass(frozen=True)
class CleanRule:
    """When a node needs no cleanup (--skip-clean): it carries no result annotation of
    this release. In DaemonSet mode the installer writes one before its first host
    change and deletes it only after its last revert (docs/contracts.md), so a node
    without it holds nothing of the release."""

    annotation: str
    why = "carry no result annotation of this release, so nothing of it"

    def done(self, obj: dict[str, Any]) -> bool:
        return self.annotation not in ((obj.get("metadata") or {}).get("annotations") or {})


Rule = DoneRule | CleanRule


@dataclasses.dataclass(frozen=True, slots=True)
class Node:
    """What admission, --wait-for-nodes and --skip-done (or --skip-clean) need of a node,
    and nothing else:
    a run keeps one per selected node, so the rest of the node object (labels, images,
    addresses, conditions) is dropped as each page is read."""

    name: str
    taints: tuple[Taint, ...] = ()
    ready: bool = True
    done: bool = False

    @classmethod
    def from_api(cls, obj: dict[str, Any], rule: Rule | None = None) -> Node:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        conditions = (obj.get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        taints = tuple(
            Taint(str(t.get("key", "")), str(t.get("value") or ""), str(t.get("effect", "")))
            for t in spec.get("taints") or []
        )
        return cls(str(meta["name"]), taints, ready, rule is not None and rule.done(obj))


def tolerations_from_pod_spec(pod_spec: dict[str, Any]) -> tuple[Toleration, ...]:
    """The tolerations the per-node pod carries (the kubelet adds none of its own)."""
    return tuple(
        Toleration(
            str(t.get("key") or ""),
            str(t.get("operator") or ""),
            str(t.get("value") or ""),
            str(t.get("effect") or ""),
        )
        for t in pod_spec.get("tolerations") or []
    )


def blocking_taint(node: Node, tolerations: Sequence[Toleration]) -> Taint | None:
    """The first NoExecute taint of `node` no toleration tolerates, or None."""
    for taint in node.taints:
        if taint.effect != BLOCKING_EFFECT:
            continue
        if not any(t.tolerates(taint) for t in tolerations):
            return taint
    return None


class SkipReason(enum.StrEnum):
    UNTOLERATED_TAINT = "UntoleratedTaint"
    NOT_READY = "NodeNotReady"


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A selected node that gets no Job: it counts as not done."""

    node: str
    reason: SkipReason
    taint: Taint | None = None

    def as_dict(self) -> dict[str, str]:
        if self.reason is SkipReason.NOT_READY:
            message = "the node is not Ready, so its pinned pod would not run"
            return {"node": self.node, "reason": self.reason.value, "message": message}
        return {
            "node": self.node,
            "reason": self.reason.value,
            "taint": str(self.taint),
            "message": f"the per-node Job's pod does not tolerate taint {self.taint}",
        }


def admit(
    nodes: Iterable[Node], tolerations: Sequence[Toleration]
) -> tuple[list[Node], list[Skipped]]:
    """Split nodes into those that get a Job and those that cannot run it."""
    admitted: list[Node] = []
    skipped: list[Skipped] = []
    for node in nodes:
        taint = blocking_taint(node, tolerations)
        if taint is not None:
            skipped.append(Skipped(node.name, SkipReason.UNTOLERATED_TAINT, taint))
        elif not node.ready:
            skipped.append(Skipped(node.name, SkipReason.NOT_READY))
        else:
            admitted.append(node)
    return admitted, skipped


def parse_names(raw: str | Iterable[str]) -> tuple[str, ...]:
    """`a, b ,a,,c` -> ("a", "b", "c"): trimmed, empty entries dropped, first order kept."""
    items = raw.split(",") if isinstance(raw, str) else raw
    seen: dict[str, None] = {}
    for item in items:
        name = item.strip()
        if name:
            seen.setdefault(name, None)
    return tuple(seen)


@dataclasses.dataclass(frozen=True)
class Selection:
    nodes: list[Node]
    unknown: list[str]  # explicit names that matched no node


class Selector:
    """Lists nodes for one run: explicit names, a label selector, or all nodes."""

    def __init__(
        self,
        api: kube.Api,
        *,
        policy: retry.Policy,
        clock: retry.Clock,
        page_size: int,
        done_rule: Rule | None = None,
        tally: retry.Tally | None = None,
    ) -> None:
        self._api = api
        self._tally = tally
        self._done_rule = done_rule
        self._policy = policy
        self._clock = clock
        self._page_size = page_size

    def _list(self, *, label_selector: str | None, field_selector: str | None) -> list[Node]:
        """Every matching node, page by page, one consistent snapshot (`kube.list_all`)."""

        def fetch(token: str | None) -> kube.Page:
            return self._api.list_nodes(
                label_selector=label_selector,
                field_selector=field_selector,
                limit=self._page_size,
                continue_token=token,
            )

        def send(fn: Callable[[], kube.Page], what: str) -> kube.Page:
            return retry.call(
                fn, policy=self._policy, clock=self._clock, what=what, tally=self._tally
            )

        def reduce(obj: dict[str, Any]) -> Node:
            return Node.from_api(obj, self._done_rule)

        try:
            return kube.list_all(fetch, reduce, send=send, what="list nodes").items
        except errors.Invalid as exc:
            raise errors.UsageError(
                f"the API server rejected node selector {label_selector!r}: {exc.message}"
            ) from exc

    def select(self, *, names: Sequence[str], label_selector: str | None) -> Selection:
        if names:
            return self._by_name(names)
        found = self._list(label_selector=label_selector, field_selector=None)
        found.sort(key=lambda n: n.name)
        return Selection(found, [])

    def _by_name(self, names: Sequence[str]) -> Selection:
        wanted = set(names)
        if len(names) <= NAME_LOOKUP_LIMIT:
            found: dict[str, Node] = {}
            for name in names:
                for node in self._list(label_selector=None, field_selector=f"metadata.name={name}"):
                    found[node.name] = node
        else:
            found = {}
            for node in self._list(label_selector=None, field_selector=None):
                if node.name in wanted:
                    found[node.name] = node
        return Selection(
            [found[n] for n in names if n in found], [n for n in names if n not in found]
        )

    def wait(
        self,
        *,
        names: Sequence[str],
        label_selector: str | None,
        seconds: float,
        poll: float = 5.0,
        on_poll: Callable[[], None] | None = None,
    ) -> Selection:
        """Poll (the dispatcher may only `list` nodes) until the selection is non-empty,
        every named node exists and every selected node is Ready, or `seconds` pass.
        Returns the last selection either way; the caller proceeds with it."""
        deadline = self._clock.monotonic() + seconds
        while True:
            selection = self.select(names=names, label_selector=label_selector)
            not_ready = [n.name for n in selection.nodes if not n.ready]
            if selection.nodes and not selection.unknown and not not_ready:
                return selection
            left = deadline - self._clock.monotonic()
            if left <= 0:
                log.warning(
                    "gave up waiting for nodes after %.0fs: %d selected, missing %s, not Ready %s",
                    seconds,
                    len(selection.nodes),
                    selection.unknown or "none",
                    not_ready or "none",
                )
                return selection
            log.info(
                "waiting for nodes: %d selected, missing %s, not Ready %s",
                len(selection.nodes),
                selection.unknown or "none",
                not_ready or "none",
            )
            self._clock.sleep(min(poll, left))
            if on_poll is not None:
                on_poll()
