"""What a node says about kata-deploy: its result annotation and Events.

After an install succeeds, fails, or is undone, the installer leaves a trace that
outlives its Job: one annotation on its own Node, and an Event about the Node
(`kubectl describe node`, `kubectl get events -n default`). The API accepts Events about
a cluster-scoped object only in the "default" namespace, where the kubelet's own node
Events are too, so that is where they go (the chart grants `events: create` there). The format is a
contract (docs/contracts.md) that the dispatcher reads, to skip nodes already done on an
install and, in DaemonSet mode, to find the nodes an uninstall did not finish:

  katacontainers.io/kata-deploy.<release>[-<suffix>]:
    {"outcome": "installing" | "installed" | "failed" | "removing",
     "configHash": "<16 hex>", "time": "<UTC>", "installer": "<version>",
     "stage": "<stage>", "reason": "<short>"}

`stage` and `reason` are present only when the outcome is "failed". In job mode `unlabel`
removes the annotation (the dispatcher sees each cleanup Job to its end). In DaemonSet
mode the one installer process also keeps it as a marker: it writes "installing" before
its first host change when the node has none, `unlabel` turns it into "removing", and
`removed()` deletes it only once the whole uninstall is done. So a node that still
carries it after the DaemonSet is gone may hold something of this release, and one
without it holds nothing. Every Node write goes through the identity read once per run
(`Context.identity()`), so a re-created node is never touched. Events are best effort:
a refused Event is logged, never fatal; the annotation is not.

What it must not do: write anything but this release's annotation (the label belongs to
the `label` stage), or talk to the API without the identity.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
from typing import Any

from kata_installer import __version__, errors, kube
from kata_installer.stages import Context

log = logging.getLogger(__name__)

PREFIX = "katacontainers.io/"
EVENT_NAMESPACE = "default"
REASON_CHARS = 300
INSTALLED = "KataInstalled"
INSTALL_FAILED = "KataInstallFailed"
REMOVED = "KataRemoved"
REMOVE_FAILED = "KataRemoveFailed"

INSTALLING = "installing"
FAILED = "failed"
REMOVING = "removing"


def annotation_key(release: str, suffix: str) -> str:
    """This release's annotation; the name part is kept within 63 characters."""
    name = f"kata-deploy.{release}" + (f"-{suffix}" if suffix else "")
    if len(name) > 63:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[:54].rstrip('.-')}-{digest}"
    return PREFIX + name


def config_hash(ctx: Context) -> str:
    """The chart's hash of what was installed, else a hash of installer.yaml."""
    if ctx.settings.config_hash:
        return ctx.settings.config_hash
    try:
        return hashlib.sha256(ctx.settings.config.read_bytes()).hexdigest()[:16]
    except OSError:
        return ""


def _key(ctx: Context) -> str:
    return annotation_key(ctx.settings.release or "kata-deploy", ctx.cfg.suffix)


def _value(ctx: Context, outcome: str, **extra: str) -> str:
    doc: dict[str, Any] = {
        "outcome": outcome,
        "configHash": config_hash(ctx),
        "time": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "installer": __version__,
        **extra,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def set_ops(view: kube.NodeView, key: str, value: str) -> list[dict[str, Any]]:
    """JSON-patch ops that set annotation ``key`` on a node that may have none yet."""
    if view.annotations is None:
        return [{"op": "add", "path": "/metadata/annotations", "value": {key: value}}]
    return [{"op": "add", "path": f"/metadata/annotations/{kube.pointer(key)}", "value": value}]


def installed_ops(ctx: Context, view: kube.NodeView) -> list[dict[str, Any]]:
    return set_ops(view, _key(ctx), _value(ctx, "installed"))


def _outcome(view: kube.NodeView, key: str) -> str | None:
    """The outcome the annotation records; "" when it is unreadable, None when absent."""
    raw = (view.annotations or {}).get(key)
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return ""
    return str(doc.get("outcome") or "") if isinstance(doc, dict) else ""


def same_node(ctx: Context, view: kube.NodeView) -> kube.NodeView:
    """``view``, refused (Conflict) if it is not the node this run read first."""
    if view.uid != ctx.identity().uid:
        raise errors.Conflict(
            f"node {view.name} was deleted and re-created while we waited (uid "
            f"{ctx.identity().uid} became {view.uid}); not touching it"
        )
    return view


def fresh(ctx: Context) -> kube.NodeView:
    """The node as it is now (its labels and annotations), refused if it is not the
    identity's."""
    return same_node(ctx, ctx.kube().get_node(ctx.identity().name))


def mark_installing(ctx: Context) -> None:
    """DaemonSet mode, before the first host change: give the node the annotation
    (outcome "installing") if it has none, so an uninstall that cannot finish here is
    found afterwards. A node that already has one keeps it."""
    if ctx.settings.dry_run or not ctx.settings.node_name:
        return
    view = fresh(ctx)
    key = _key(ctx)
    if _outcome(view, key) is not None:
        return
    ctx.kube().patch_node(view, set_ops(view, key, _value(ctx, INSTALLING)))
    log.info("recorded %s=installing on node %s before changing the host", key, view.name)


def removing_ops(ctx: Context, view: kube.NodeView) -> list[dict[str, Any]]:
    """DaemonSet-mode unlabel: the annotation stays, as outcome "removing"."""
    if _outcome(view, _key(ctx)) == REMOVING:
        return []
    return set_ops(view, _key(ctx), _value(ctx, REMOVING))


def is_installed(ctx: Context, view: kube.NodeView) -> bool:
    """Whether the node records this install as done with the current configuration."""
    raw = (view.annotations or {}).get(_key(ctx))
    if not raw:
        return False
    try:
        doc = json.loads(raw)
    except ValueError:
        return False
    return bool(doc.get("outcome") == "installed" and doc.get("configHash") == config_hash(ctx))


def removal_ops(ctx: Context, view: kube.NodeView) -> list[dict[str, Any]]:
    key = _key(ctx)
    if key not in (view.annotations or {}):
        return []
    return [{"op": "remove", "path": f"/metadata/annotations/{kube.pointer(key)}"}]


def removed(ctx: Context) -> None:
    """DaemonSet mode, once unlabel, revert-cri and remove-artifacts are all done: delete
    the annotation (the node holds nothing of this release any more) and record
    KataRemoved."""
    if not ctx.settings.dry_run and ctx.settings.node_name:
        view = fresh(ctx)
        ops = removal_ops(ctx, view)
        if ops:
            ctx.kube().patch_node(view, ops)
            log.info("removed %s from node %s: nothing of it is left", _key(ctx), view.name)
    event(ctx, REMOVED, f"{ctx.cfg.prefix} removed from this node")


def event(ctx: Context, reason: str, message: str, *, warning: bool = False) -> None:
    """An Event about this node; failures are only logged."""
    if ctx.settings.dry_run or not ctx.settings.node_name:
        return
    release = f" (release {ctx.settings.release})" if ctx.settings.release else ""
    try:
        ctx.kube().post_event(
            EVENT_NAMESPACE,
            ctx.identity(),
            reason=reason,
            message=message + release,
            warning=warning,
        )
    except errors.InstallerError as exc:
        log.warning("could not record the %s Event: %s", reason, exc)


def failed(ctx: Context, stage: str, exc: errors.InstallerError, *, removing: bool) -> None:
    """Record a failed stage on the Node and as an Event; never raises."""
    if ctx.settings.dry_run or not ctx.settings.node_name:
        return
    reason = str(exc).replace("\n", " ")[:REASON_CHARS]
    try:
        view = fresh(ctx)  # its annotations as they are now: the patch adds to them
        ctx.kube().patch_node(
            view, set_ops(view, _key(ctx), _value(ctx, FAILED, stage=stage, reason=reason))
        )
    except errors.InstallerError as err:
        log.warning("could not record the failure on the node: %s", err)
    event(
        ctx,
        REMOVE_FAILED if removing else INSTALL_FAILED,
        f"{ctx.cfg.prefix}: stage {stage} failed: {reason}",
        warning=True,
    )
