"""Per-node Jobs: their names, how one is built from the template, what its status means.

Why: everything about a single Job that needs no API call lives here, so it can be
tested exhaustively: the DNS-1123 name (unique per node, at most 63 characters), the
labels and owner reference that tie it to its release, stage and dispatcher, and the
reading of a Job's conditions (and of its pods' statuses) into a result.
Nothing here talks to the API.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import hashlib
import json
import pathlib
import re
from typing import Any

import yaml

from kata_dispatcher import errors

Obj = dict[str, Any]

LABEL_PREFIX = "kata-deploy.katacontainers.io"
RELEASE_LABEL = f"{LABEL_PREFIX}/release"
STAGE_LABEL = f"{LABEL_PREFIX}/stage"
NODE_LABEL = f"{LABEL_PREFIX}/node"
OWNER_LABEL = f"{LABEL_PREFIX}/owner"
NODE_NAME_ANNOTATION = f"{LABEL_PREFIX}/node-name"
TEMPLATE_HASH_LABEL = f"{LABEL_PREFIX}/template-hash"

# A Job's name becomes the value of its pods' `job-name` label, so it must be a valid
# label value as well as a DNS-1123 subdomain: we keep it a DNS-1123 label (<= 63).
MAX_NAME = 63
MIN_HASH = 10  # hex digits of SHA-256 at least: 40 bits
MAX_PREFIX = MAX_NAME - 1 - MIN_HASH  # 52: room for "-" and a bare hash

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_INVALID_DNS = re.compile(r"[^a-z0-9-]+")
_INVALID_LABEL = re.compile(r"[^A-Za-z0-9_.-]+")


def is_dns_label(value: str) -> bool:
    return len(value) <= MAX_NAME and bool(_DNS_LABEL.match(value))


def is_label_value(value: str) -> bool:
    return len(value) <= MAX_NAME and bool(_LABEL_VALUE.match(value))


def _digest(node: str) -> str:
    return hashlib.sha256(node.encode("utf-8")).hexdigest()


def _fit(readable: str, node: str, budget: int, *, trim: str) -> str:
    """`readable` cut short, then "-" and as much of the node's hash as fills `budget`
    exactly (at least MIN_HASH digits). Always exactly `budget` characters long."""
    head = readable[: max(0, budget - 1 - MIN_HASH)].rstrip(trim)
    if not head:
        return _digest(node)[:budget]
    return f"{head}-{_digest(node)[: budget - len(head) - 1]}"


def name_suffix(node: str, budget: int) -> str:
    """The node part of a Job name, at most `budget` characters.

    The 63-character budget: prefix + "-" + suffix <= 63, so suffix <= 62 - len(prefix).
    - A node name that is already a DNS-1123 label SHORTER than the budget is used as is.
    - Anything else (too long, dots, upper case, other characters) becomes a readable
      DNS-1123 head plus the SHA-256 of the exact node name, together EXACTLY `budget`
      characters long.
    The two forms never meet (different lengths), the first is the identity, so two
    distinct node names can only share a suffix if both take the second form and share
    a SHA-256 prefix of >= 40 bits; rollout.plan checks the run's names for that anyway.
    """
    if budget < MIN_HASH:
        raise ValueError(f"name budget {budget} is below {MIN_HASH}")
    if len(node) < budget and _DNS_LABEL.match(node):
        return node
    readable = _INVALID_DNS.sub("-", node.lower()).strip("-")
    return _fit(readable, node, budget, trim="-")


def job_name(prefix: str, node: str) -> str:
    """Per-node Job name: `<prefix>-<node part>`, a DNS-1123 label of <= 63 characters."""
    return f"{prefix}-{name_suffix(node, MAX_NAME - len(prefix) - 1)}"


def node_label_value(node: str) -> str:
    """A valid label value for the node label: the name itself when it is one and
    shorter than 63 characters, else a readable head plus hash, exactly 63 long."""
    if len(node) < MAX_NAME and _LABEL_VALUE.match(node):
        return node
    readable = _INVALID_LABEL.sub("-", node)
    readable = readable.lstrip("-_.")
    return _fit(readable, node, MAX_NAME, trim="-_.")


class TemplateError(errors.UsageError):
    """The per-node Job template is unusable."""


@dataclasses.dataclass(frozen=True)
class Owner:
    """An object a per-node Job names in its ownerReferences: the dispatcher Job, and
    optionally an anchor (the release's Job-template ConfigMap)."""

    name: str
    uid: str
    kind: str = "Job"
    api_version: str = "batch/v1"

    def reference(self) -> Obj:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": False,
            "blockOwnerDeletion": False,
        }


def owner_references(owner: Owner, anchor: Owner | None) -> list[Obj]:
    """The owner references of a per-node Job: its dispatcher Job, then the anchor."""
    return [owner.reference()] + ([anchor.reference()] if anchor is not None else [])


def template_hash(template: Obj) -> str:
    """16 hex digits naming the template's content (key order does not matter): a Job
    built from another template (other values, another image) carries another hash."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def template_hash_of(job: Obj) -> str:
    return str(((job.get("metadata") or {}).get("labels") or {}).get(TEMPLATE_HASH_LABEL) or "")


def adoption_patch(uid: str, owner: Owner, anchor: Owner | None) -> list[Obj]:
    """A JSON patch that moves the Job `uid` to `owner`: it applies only to that exact
    object (a `test` on its UID) and replaces its owner references and owner label in
    one step."""
    label = "/metadata/labels/" + OWNER_LABEL.replace("~", "~0").replace("/", "~1")
    return [
        {"op": "test", "path": "/metadata/uid", "value": uid},
        {"op": "add", "path": label, "value": owner.name},
        {
            "op": "replace",
            "path": "/metadata/ownerReferences",
            "value": owner_references(owner, anchor),
        },
    ]


def check_template(template: Any, *, source: str) -> Obj:
    """Validate the template's shape; return it. Errors name the file and the field."""
    if not isinstance(template, dict):
        raise TemplateError(f"{source}: expected one Job manifest (a YAML mapping)")
    if template.get("apiVersion") != "batch/v1" or template.get("kind") != "Job":
        raise TemplateError(
            f"{source}: expected apiVersion batch/v1 and kind Job, got "
            f"{template.get('apiVersion')!r} {template.get('kind')!r}"
        )
    prefix = (template.get("metadata") or {}).get("name")
    if not isinstance(prefix, str) or not is_dns_label(prefix) or len(prefix) > MAX_PREFIX:
        raise TemplateError(
            f"{source}: metadata.name {prefix!r} must be a DNS-1123 label of at most "
            f"{MAX_PREFIX} characters (it is the prefix of every per-node Job name)"
        )
    pod_spec = ((template.get("spec") or {}).get("template") or {}).get("spec")
    if not isinstance(pod_spec, dict) or not pod_spec.get("containers"):
        raise TemplateError(f"{source}: spec.template.spec.containers is missing")
    if pod_spec.get("nodeName"):
        raise TemplateError(
            f"{source}: spec.template.spec.nodeName is set; the dispatcher sets it per node"
        )
    return template


def load_template(path: pathlib.Path) -> Obj:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"cannot read template {path}: {exc.strerror or exc}") from exc
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise TemplateError(f"template {path} is not valid YAML: {exc}") from exc
    if len(docs) != 1:
        raise TemplateError(f"template {path}: expected exactly one document, found {len(docs)}")
    return check_template(docs[0], source=str(path))


def prefix_of(template: Obj) -> str:
    return str(template["metadata"]["name"])


def pod_spec_of(template: Obj) -> Obj:
    spec: Obj = template["spec"]["template"]["spec"]
    return spec


def selector_labels(*, release: str, stage: str, owner: str | None = None) -> dict[str, str]:
    labels = {RELEASE_LABEL: release, STAGE_LABEL: stage}
    if owner is not None:
        labels[OWNER_LABEL] = owner
    return labels


def label_selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def build(
    template: Obj,
    node: str,
    *,
    owner: Owner,
    release: str,
    stage: str,
    namespace: str,
    anchor: Owner | None = None,
    digest: str = "",
) -> Obj:
    """The per-node Job: a deep copy of the template, pinned to `node`, labelled, owned.

    Everything else in the template (TTL, backoffLimit, containers, ...) stays as given.
    The owner reference is deliberately not a controller reference: the Job controller
    and the CronJob controller act only on controller references, so nothing tries to
    adopt, orphan or sync these Jobs because of it; the garbage collector still deletes
    them once the dispatcher Job is gone. blockOwnerDeletion is false: with true the API
    server demands `update` on jobs/finalizers from us (OwnerReferencesPermissionEnforcement),
    a right the dispatcher does not have, and foreground deletion of the dispatcher
    Job would wait for every per-node Job; it does not need to.

    With an `anchor` (the release's Job-template ConfigMap, which keeps its UID across
    upgrades), the Job has a second owner: when Helm deletes the dispatcher Job before
    the next run, the garbage collector keeps the per-node Jobs (they still have a live
    owner) and the next dispatcher adopts the ones in flight. `digest` is the template's
    hash, kept in a label to tell which template a Job was built from.
    """
    job = copy.deepcopy(template)
    meta: Obj = job.setdefault("metadata", {})
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        meta.pop(key, None)
    job.pop("status", None)
    meta["name"] = job_name(prefix_of(template), node)
    meta["namespace"] = namespace
    labels = {
        **selector_labels(release=release, stage=stage, owner=owner.name),
        NODE_LABEL: node_label_value(node),
    }
    meta["labels"] = {
        **(meta.get("labels") or {}),
        **labels,
        **({TEMPLATE_HASH_LABEL: digest} if digest else {}),
    }
    meta["annotations"] = {**(meta.get("annotations") or {}), NODE_NAME_ANNOTATION: node}
    ours = {owner.uid} | ({anchor.uid} if anchor is not None else set())
    refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") not in ours]
    meta["ownerReferences"] = refs + owner_references(owner, anchor)
    pod_template: Obj = job["spec"]["template"]
    pod_meta: Obj = pod_template.setdefault("metadata", {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **labels}
    pod_meta["annotations"] = {**(pod_meta.get("annotations") or {}), NODE_NAME_ANNOTATION: node}
    pod_template["spec"]["nodeName"] = node
    return job


def owner_uids(job: Obj) -> set[str]:
    refs = (job.get("metadata") or {}).get("ownerReferences") or []
    return {str(r.get("uid")) for r in refs if r.get("kind") == "Job"}


def is_owned_by(job: Obj, uid: str) -> bool:
    return uid in owner_uids(job)


def uid_of(job: Obj) -> str:
    return str((job.get("metadata") or {}).get("uid") or "")


def name_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def is_terminating(job: Obj) -> bool:
    return bool((job.get("metadata") or {}).get("deletionTimestamp"))


class State(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class Result:
    state: State
    reason: str = ""
    message: str = ""
    # RUNNING, but the Job controller has decided it fails (FailureTarget): its pods are
    # being terminated, and Failed follows once they are gone
    failing: bool = False

    @property
    def finished(self) -> bool:
        return self.state is not State.RUNNING


def interpret(job: Obj) -> Result:
    """A Job is finished when it has condition Complete or Failed with status True. With
    FailureTarget only, the Job controller has decided it fails but waits for its pods to
    terminate before it sets Failed: still running (its pods may still be on the node),
    but `failing`, with the reason; a pod on a node whose kubelet is gone never
    terminates, which the caller bounds (rollout.FAILING_GRACE)."""
    true = {
        str(c.get("type")): c
        for c in (job.get("status") or {}).get("conditions") or []
        if c.get("status") == "True"
    }
    if "Complete" in true:
        return Result(State.SUCCEEDED, str(true["Complete"].get("reason") or ""), "")
    if "Failed" in true:
        cond = true["Failed"]
        return Result(
            State.FAILED, str(cond.get("reason") or "Failed"), str(cond.get("message") or "")
        )
    if "FailureTarget" in true:
        cond = true["FailureTarget"]
        return Result(
            State.RUNNING,
            str(cond.get("reason") or "Failed"),
            str(cond.get("message") or ""),
            failing=True,
        )
    return Result(State.RUNNING)


@dataclasses.dataclass(frozen=True)
class PodFailure:
    pod: str
    container: str = ""
    exit_code: int | None = None
    reason: str = ""
    termination_message: str = ""

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"pod": self.pod}
        if self.container:
            out["container"] = self.container
        if self.exit_code is not None:
            out["exit_code"] = self.exit_code
        if self.reason:
            out["container_reason"] = self.reason
        if self.termination_message:
            out["termination_message"] = self.termination_message
        return out


def pod_failure(pod: Obj) -> PodFailure | None:
    """The first container (init containers first, in order) that terminated non-zero;
    else the pod-level reason of a Failed pod (e.g. rejected by the kubelet)."""
    name = name_of(pod)
    status = pod.get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(key) or []:
            state = cs.get("state") or {}
            term = state.get("terminated") or (cs.get("lastState") or {}).get("terminated")
            if term and int(term.get("exitCode") or 0) != 0:
                return PodFailure(
                    name,
                    str(cs.get("name") or ""),
                    int(term.get("exitCode") or 0),
                    str(term.get("reason") or ""),
                    str(term.get("message") or "").strip(),
                )
    if status.get("phase") == "Failed":
        return PodFailure(
            name,
            reason=str(status.get("reason") or ""),
            termination_message=str(status.get("message") or ""),
        )
    return None


def pod_stuck(pod: Obj) -> PodFailure | None:
    """Why a pod that has not finished is not making progress, if it says: a container
    (init containers first) waiting for a reason other than its turn (ImagePullBackOff,
    CreateContainerConfigError...), else not scheduled, else no container started at all
    (a node whose kubelet never picked the pod up)."""
    name = name_of(pod)
    status = pod.get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(key) or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = str(waiting.get("reason") or "")
            if reason and reason not in ("PodInitializing", "ContainerCreating"):
                return PodFailure(
                    name,
                    str(cs.get("name") or ""),
                    reason=reason,
                    termination_message=str(waiting.get("message") or "").strip(),
                )
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return PodFailure(
                name,
                reason=str(cond.get("reason") or "Unschedulable"),
                termination_message=str(cond.get("message") or ""),
            )
    started = status.get("initContainerStatuses") or status.get("containerStatuses")
    if status.get("phase", "Pending") == "Pending" and not started:
        return PodFailure(
            name, reason="Pending", termination_message="no container of the pod ever started"
        )
    return None


def render_yaml(bodies: list[Obj]) -> str:
    """Jobs as one YAML stream (what a dry run prints)."""
    return yaml.safe_dump_all(bodies, sort_keys=False, default_flow_style=False)
