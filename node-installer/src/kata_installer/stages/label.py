"""Stage `label`: katacontainers.io/kata-runtime=true on this node, and `unlabel`.

The label is shared by every install on the node (RuntimeClasses schedule on it), so
unlabel keeps it while another install (another suffix) is still present on the host.
Both need the node name and API access; without them they fail, never silently pass.
"""

from __future__ import annotations

import logging

from kata_installer import errors, state
from kata_installer.stages import Context

log = logging.getLogger(__name__)
VALUE = "true"


def _node(ctx: Context) -> str:
    if not ctx.settings.node_name:
        raise errors.ConfigError(
            "the node name is unknown: pass --node-name or set KATA_INSTALLER_NODE_NAME "
            "(the chart sets it from spec.nodeName)"
        )
    return ctx.settings.node_name


class Label:
    name = "label"
    revert_name = "unlabel"
    read_only = False

    def check(self, ctx: Context) -> bool:
        node = _node(ctx)
        labels = ctx.kube().get_node_labels(node)
        return labels.get(ctx.cfg.node_label) == VALUE

    def apply(self, ctx: Context) -> None:
        node = _node(ctx)
        if ctx.settings.dry_run:
            log.info("dry-run: would label node %s %s=%s", node, ctx.cfg.node_label, VALUE)
            return
        ctx.kube().set_node_label(node, ctx.cfg.node_label, VALUE)
        log.info("labelled node %s %s=%s", node, ctx.cfg.node_label, VALUE)

    def revert(self, ctx: Context) -> bool:
        node = _node(ctx)
        others = state.other_installs(ctx.host, ctx.cfg)
        labels = ctx.kube().get_node_labels(node)
        if ctx.cfg.node_label not in labels:
            return False
        if others:
            log.info(
                "keeping %s on node %s: other installs remain (%s)",
                ctx.cfg.node_label,
                node,
                ", ".join(others),
            )
            return False
        if ctx.settings.dry_run:
            log.info("dry-run: would remove label %s from node %s", ctx.cfg.node_label, node)
            return True
        ctx.kube().set_node_label(node, ctx.cfg.node_label, None)
        log.info("removed label %s from node %s", ctx.cfg.node_label, node)
        return True
