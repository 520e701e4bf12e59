"""Stage `label`: katacontainers.io/kata-runtime=true on this node, and `unlabel`.

The label says "Kata is served here", so it is applied only once that is true: the node
is Ready and, where the kubelet reports `status.runtimeHandlers` (containerd 2.x, recent
CRI-O), the running runtime lists every handler of this install. Where the field is
empty (containerd 1.x) the log says so and Ready is enough. The wait is bounded by
`installer.waitRuntimeSeconds`; a timeout fails the stage with what was seen. The label
is shared by every install on the node (RuntimeClasses schedule on it), so unlabel keeps
it while another install (another suffix) is still present on the host. Both need the
node name and API access; without them they fail, never silently pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kata_installer import errors, kube, layout, report, state
from kata_installer.stages import Context

log = logging.getLogger(__name__)
VALUE = "true"
POLL_SECONDS = 2.0


def expected_handlers(ctx: Context) -> list[str]:
    """The runtime handlers this install registers on this node."""
    return sorted(h.name for h in layout.handlers(ctx.cfg, ctx.arch))


def _missing(view: kube.NodeView, handlers: list[str]) -> list[str]:
    return sorted(set(handlers) - set(view.runtime_handlers)) if view.runtime_handlers else []


def served(view: kube.NodeView, handlers: list[str]) -> bool:
    """Ready and, where reported, every handler listed by the running runtime."""
    return view.ready and not _missing(view, handlers)


def wait_for_node(
    ctx: Context,
    node: str,
    what: str,
    done: Callable[[kube.NodeView], bool],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> kube.NodeView:
    """Poll the Node until ``done``; HostError naming what was seen after the budget."""
    budget = ctx.cfg.wait_runtime_seconds
    deadline = clock() + budget
    view = ctx.kube().get_node(node)
    while not done(view):
        ctx.check_stop(f"{what} on node {node}")
        if clock() > deadline:
            raise errors.HostError(
                f"node {node}: waited {budget}s for {what}; last seen: Ready={view.ready}, "
                f"status.runtimeHandlers={list(view.runtime_handlers)}"
            )
        sleep(POLL_SECONDS)
        view = ctx.kube().get_node(node)
    return view


def _node(ctx: Context) -> str:
    return str(ctx.identity().name)


def label_ops(view: kube.NodeView, key: str, value: str | None) -> list[dict[str, object]]:
    """JSON-patch ops that set (or, with None, remove) one label."""
    path = f"/metadata/labels/{kube.pointer(key)}"
    if value is None:
        return [{"op": "remove", "path": path}] if key in view.labels else []
    if not view.labels:
        return [{"op": "add", "path": "/metadata/labels", "value": {key: value}}]
    return [{"op": "add", "path": path, "value": value}]


class Label:
    name = "label"
    revert_name = "unlabel"
    read_only = False

    def check(self, ctx: Context) -> bool:
        node = _node(ctx)  # the node name (a usage error) before any API access
        view = ctx.kube().get_node(node)  # fresh: the identity read may be old
        done = view.labels.get(ctx.cfg.node_label) == VALUE and served(view, expected_handlers(ctx))
        recorded = report.is_installed(ctx, view)
        return done and recorded

    def apply(self, ctx: Context) -> None:
        node = _node(ctx)
        if ctx.settings.dry_run:
            log.info("dry-run: would label node %s %s=%s", node, ctx.cfg.node_label, VALUE)
            return
        handlers = expected_handlers(ctx)
        view = wait_for_node(
            ctx,
            node,
            f"Ready and the runtime serving {', '.join(handlers)}",
            lambda v: served(report.same_node(ctx, v), handlers),
        )
        if view.runtime_handlers:
            log.info("node %s is Ready and its runtime serves %s", node, ", ".join(handlers))
        else:
            log.info(
                "node %s is Ready; its kubelet reports no runtime handlers (containerd 1.x?), "
                "so Ready is all that can be checked",
                node,
            )
        ops = label_ops(view, ctx.cfg.node_label, VALUE) + report.installed_ops(ctx, view)
        ctx.kube().patch_node(view, ops)
        log.info("labelled node %s %s=%s", node, ctx.cfg.node_label, VALUE)
        report.event(ctx, report.INSTALLED, f"{ctx.cfg.prefix} serves {', '.join(handlers)}")

    def revert(self, ctx: Context) -> bool:
        node = _node(ctx)
        others = state.other_installs(ctx.host, ctx.cfg)
        view = report.fresh(ctx)
        keep = ctx.keep_result  # DaemonSet mode: the annotation stays until the very end
        ops = report.removing_ops(ctx, view) if keep else report.removal_ops(ctx, view)
        if ctx.cfg.node_label in view.labels:
            if others:
                log.info(
                    "keeping %s on node %s: other installs remain (%s)",
                    ctx.cfg.node_label,
                    node,
                    ", ".join(others),
                )
            else:
                ops = label_ops(view, ctx.cfg.node_label, None) + ops
        if not ops:
            return False
        if ctx.settings.dry_run:
            log.info(
                "dry-run: would remove %s's label and result from node %s", ctx.cfg.prefix, node
            )
            return True
        ctx.kube().patch_node(view, ops)
        log.info("removed %s's label and result from node %s", ctx.cfg.prefix, node)
        return True
