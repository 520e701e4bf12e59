"""Command line of kata-installer: parse flags (each with a KATA_INSTALLER_* twin),
build the frozen Settings and the stage Context once, take the host lock, run.

Exit codes: 0 done, 1 a stage failed on this host, 2 bad usage or configuration,
3 the Kubernetes API could not be reached.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import platform
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from kata_installer import (
    __version__,
    config,
    errors,
    fsutil,
    hostpaths,
    kube,
    lock,
    logs,
    markers,
    report,
    restart,
    shims,
    stages,
)
from kata_installer.settings import Settings

log = logging.getLogger(__name__)
ENV_PREFIX = "KATA_INSTALLER_"

COMMANDS = {
    "host-check": "read-only: find the runtime and its config, check arch, /dev/kvm, drop-in "
    "support (with a suffix), payload and free space",
    "artifacts": "copy what the enabled shims need into /opt/kata[-suffix], with per-shim "
    "config.d drop-ins and custom runtimes; record a manifest",
    "cri": "register one runtime handler per shim with containerd or CRI-O; restart the "
    "runtime only if a file changed",
    "label": "label this node katacontainers.io/kata-runtime=true (needs API access)",
    "unlabel": "remove that label unless another install remains on the node",
    "revert-cri": "undo `cri` exactly (original bytes restored)",
    "remove-artifacts": "undo `artifacts` exactly, from the manifest",
    "install": "host-check, artifacts, cri, label, in order",
    "uninstall": "unlabel, revert-cri, remove-artifacts, in order",
    "daemonset": "DaemonSet lifecycle: install, mark ready, wait; on SIGTERM uninstall only "
    "when the DaemonSet is being deleted (a rolling update keeps Kata on the node)",
}


def _default_arch() -> str:
    return shims.MACHINE_TO_ARCH.get(platform.machine(), platform.machine())


def _env(name: str, default: str) -> str:
    return os.environ.get(ENV_PREFIX + name, default)


def _add_options(p: argparse.ArgumentParser, *, suppress: bool) -> None:
    def d(env: str, default: Any) -> Any:
        return argparse.SUPPRESS if suppress else _env(env, default)

    p.add_argument(
        "--config",
        default=d("CONFIG", "/etc/kata-deploy/installer.yaml"),
        help="installer.yaml rendered by the chart (default %(default)s)",
    )
    p.add_argument(
        "--host-root",
        default=d("HOST_ROOT", "/host"),
        help="where the host's / is mounted; every host path resolves under it",
    )
    p.add_argument(
        "--payload",
        default=d("PAYLOAD", "/opt/kata-artifacts"),
        help="the Kata payload, laid out like the static release's opt/kata",
    )
    p.add_argument(
        "--node-name",
        default=d("NODE_NAME", ""),
        help="this node's name (label/unlabel; the chart passes spec.nodeName)",
    )
    p.add_argument(
        "--restart",
        choices=restart.MODES,
        default=d("RESTART", "auto"),
        help="how to restart the runtime after a change: auto (systemd if the "
        "host runs it, else an error), systemd, none (you restart it yourself)",
    )
    p.add_argument(
        "--lock-timeout",
        type=float,
        default=d("LOCK_TIMEOUT", "300"),
        help="seconds to wait for another installer on this node (default 300)",
    )
    p.add_argument(
        "--kubeconfig",
        default=d("KUBECONFIG", os.environ.get("KUBECONFIG", "")),
        help="kubeconfig file (default $KUBECONFIG, else the in-cluster account)",
    )
    p.add_argument("--log-format", choices=("text", "json"), default=d("LOG_FORMAT", "text"))
    p.add_argument(
        "--dry-run",
        action="store_const",
        const="true",
        default=d("DRY_RUN", "false"),
        help="change nothing; log what would change",
    )
    p.add_argument(
        "--arch",
        default=d("ARCH", ""),
        help="override the node architecture (amd64, arm64, s390x, ppc64le)",
    )
    p.add_argument(
        "--daemonset-name",
        default=d("DAEMONSET_NAME", ""),
        help="daemonset: the DaemonSet this pod belongs to",
    )
    p.add_argument(
        "--namespace",
        default=d("NAMESPACE", os.environ.get("POD_NAMESPACE", "")),
        help="the release namespace: the DaemonSet's, and where Events about this node "
        "go (default $POD_NAMESPACE)",
    )
    p.add_argument(
        "--release",
        default=d("RELEASE", ""),
        help="the Helm release: names this node's result annotation "
        "katacontainers.io/kata-deploy.<release>[-<suffix>] (the chart sets it)",
    )
    p.add_argument(
        "--config-hash",
        default=d("CONFIG_HASH", ""),
        help="the chart's hash of what it installs, recorded in the result annotation "
        "(default: a hash of --config)",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kata-installer",
        description="Put Kata Containers on this node, or take it off again exactly. "
        "Runs in the kata-deploy per-node Jobs or DaemonSet with the host's directories "
        "under --host-root. Every flag has an environment twin: KATA_INSTALLER_ + the flag "
        "in upper case with _ for - (e.g. KATA_INSTALLER_HOST_ROOT).",
        epilog="exit codes: 0 done, 1 a stage failed on this host, 2 bad usage or "
        "configuration, 3 the Kubernetes API could not be reached",
    )
    p.add_argument("--version", action="version", version=f"kata-installer {__version__}")
    _add_options(p, suppress=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in COMMANDS.items():
        sp = sub.add_parser(name, help=text, description=text)
        _add_options(sp, suppress=True)
    return p


def _truthy(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("", "0", "false", "no", "off"):
        return False
    raise errors.ConfigError(f"KATA_INSTALLER_DRY_RUN: {value!r} is not a boolean")


def settings_from(args: argparse.Namespace) -> Settings:
    arch = args.arch or _default_arch()
    if arch not in shims.ARCHES:
        raise errors.ConfigError(
            f"architecture {arch!r} is not one Kata ships for ({', '.join(shims.ARCHES)})"
        )
    try:
        timeout = float(args.lock_timeout)
    except ValueError:
        raise errors.ConfigError(f"--lock-timeout: {args.lock_timeout!r} is not a number") from None
    return Settings(
        config=pathlib.Path(args.config),
        host_root=pathlib.Path(args.host_root),
        payload=pathlib.Path(args.payload),
        node_name=args.node_name,
        restart=args.restart,
        lock_timeout=timeout,
        kubeconfig=args.kubeconfig,
        log_format=args.log_format,
        dry_run=_truthy(str(args.dry_run)),
        arch=arch,
        daemonset_name=args.daemonset_name,
        namespace=args.namespace,
        release=args.release,
        config_hash=args.config_hash,
    )


def build_context(
    settings: Settings,
    *,
    kube_factory: Callable[[], kube.Kube] | None = None,
    writer: fsutil.HostWriter | None = None,
) -> stages.Context:
    if not settings.host_root.is_dir():
        raise errors.ConfigError(f"--host-root {settings.host_root} is not a directory")
    host = hostpaths.HostRoot(settings.host_root)
    return stages.Context(
        settings=settings,
        cfg=config.load(settings.config),
        host=host,
        writer=writer or fsutil.HostWriter(dry_run=settings.dry_run),
        restarter=restart.Restarter(settings.restart, host, dry_run=settings.dry_run),
        kube_factory=kube_factory or (lambda: kube.ApiKube(kubeconfig=settings.kubeconfig)),
    )


def _wait_for_signal() -> int:
    got = threading.Event()
    received: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        got.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not got.wait(3600):
        pass
    return received[0]


def daemonset(ctx: stages.Context, *, wait: Callable[[], int] = _wait_for_signal) -> None:
    s = ctx.settings
    if not s.daemonset_name or not s.namespace:
        raise errors.ConfigError(
            "daemonset needs KATA_INSTALLER_DAEMONSET_NAME and POD_NAMESPACE to tell an "
            "uninstall from a rolling update"
        )
    with lock.host_lock(ctx.host, ctx.writer, timeout=s.lock_timeout):
        stages.install(ctx)
    markers.set_ready(ctx.host, ctx.writer, ctx.cfg.install_name)
    log.info(
        "installed; ready marker %s set, waiting for SIGTERM",
        markers.ready_path(ctx.cfg.install_name),
    )
    signum = wait()
    log.info("received signal %d", signum)
    markers.clear_ready(ctx.host, ctx.writer, ctx.cfg.install_name)
    ds = ctx.kube().get_daemonset(s.namespace, s.daemonset_name)
    if ds is not None and not ds.deleting:
        log.info(
            "DaemonSet %s/%s still exists: a restart or rolling update, keeping Kata installed",
            s.namespace,
            s.daemonset_name,
        )
        return
    log.info("DaemonSet %s/%s is being deleted: uninstalling", s.namespace, s.daemonset_name)
    with lock.host_lock(ctx.host, ctx.writer, timeout=s.lock_timeout):
        stages.uninstall(ctx)
    report.event(ctx, report.REMOVED, f"{ctx.cfg.prefix} removed from this node")


_REMOVING = frozenset({"uninstall", "unlabel", "revert-cri", "remove-artifacts"})


def run_command(ctx: stages.Context, command: str) -> None:
    """Run one command; a failed stage is recorded on the Node and as an Event."""
    try:
        _run_command(ctx, command)
    except errors.InstallerError as exc:
        if exc.failed_stage:
            report.failed(ctx, exc.failed_stage, exc, removing=exc.failed_stage in _REMOVING)
        raise
    if command in ("uninstall", "remove-artifacts"):
        report.event(ctx, report.REMOVED, f"{ctx.cfg.prefix} removed from this node")


def _run_command(ctx: stages.Context, command: str) -> None:
    if command == "daemonset":
        daemonset(ctx)
        return
    if command == "host-check":
        stages.run_apply(ctx, stages.by_name("host-check")[1])
        return
    guard = (
        lock.host_lock(ctx.host, ctx.writer, timeout=ctx.settings.lock_timeout)
        if not ctx.settings.dry_run
        else _nothing()
    )
    with guard:
        if command == "install":
            stages.install(ctx)
        elif command == "uninstall":
            stages.uninstall(ctx)
        else:
            _, stage = stages.by_name(command)
            if command == stage.name:
                stages.run_apply(ctx, stage)
            else:
                stages.run_revert(ctx, stage)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


def run(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.setup(log_format=args.log_format, node=args.node_name)
    try:
        settings = settings_from(args)
        log.info(
            "kata-installer %s %s: host_root=%s payload=%s config=%s arch=%s restart=%s dry_run=%s",
            __version__,
            args.command,
            settings.host_root,
            settings.payload,
            settings.config,
            settings.arch,
            settings.restart,
            settings.dry_run,
        )
        ctx = build_context(settings)
        run_command(ctx, args.command)
    except errors.InstallerError as exc:
        log.error("%s", exc)
        return exc.exit_code
    log.info("%s: done", args.command)
    return errors.EXIT_OK


def main() -> None:
    sys.exit(run())
