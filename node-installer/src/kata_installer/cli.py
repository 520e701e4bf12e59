"""Command line of kata-installer: parse flags (each with a KATA_INSTALLER_* twin),
build the frozen Settings and the stage Context once, take the host lock, run.

Flags and their twins are read the way kata-dispatcher reads its own (docs/contracts.md,
"Environment twins"): the command line wins over the environment, which wins over the
default; switches take true/false/1/0/yes/no; an empty variable counts as not set; a bad
value is exit 2 naming the variable. Exit codes are the table in docs/contracts.md
(0 done, 1 a stage failed on this host, 2 usage or configuration, 3 the API unreachable,
4 the host lock timed out, 143 stopped by SIGTERM before the next stage). The last line
of every run says the exit code and how many API calls were retried.
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
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
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
    retry,
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

EPILOG = f"""\
Every flag has an environment twin: {ENV_PREFIX} plus the flag in upper case with '_'
for '-' (--host-root is {ENV_PREFIX}HOST_ROOT). Switches take true/false/1/0/yes/no; an
empty value counts as not set. A flag given on the command line wins over its twin.

Exit codes (docs/contracts.md): 0 done; 1 a stage failed on this host (recorded on the
Node); 2 bad usage or configuration, no credentials, or a ready API server refused us
(401/403); 3 the Kubernetes API stayed unreachable (connection errors, 429, 5xx, 401/403
while it was not ready) for the whole --retry-budget; 4 another installer kept the host
lock past --lock-timeout; 143 stopped by SIGTERM or SIGINT before the next stage
(daemonset: SIGTERM is its normal end).
"""

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


def _default_arch() -> str:
    return shims.MACHINE_TO_ARCH.get(platform.machine(), platform.machine())


def _env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"{text!r} must be zero or more seconds")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than zero seconds")
    return value


def _defaults(environ: Mapping[str, str]) -> dict[str, Any]:
    """What a flag is when neither the command line nor its twin sets it."""
    kubeconfigs = [p for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return {
        "config": "/etc/kata-deploy/installer.yaml",
        "host_root": "/host",
        "payload": "/opt/kata-artifacts",
        "node_name": "",
        "restart": "auto",
        "lock_timeout": 300.0,
        "retry_budget": retry.Policy().budget,
        "request_timeout": 30.0,
        "kubeconfig": kubeconfigs[0] if kubeconfigs else "",
        "log_format": "text",
        "log_level": "INFO",
        "dry_run": False,
        "arch": "",
        "daemonset_name": "",
        "namespace": environ.get("POD_NAMESPACE", ""),
        "release": "",
        "config_hash": "",
    }


def _add_options(p: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Every flag, with no default: the command line first, then _from_env, then
    _defaults. Command parsers suppress theirs, so a flag before the command stays."""
    none: Any = argparse.SUPPRESS if suppress else None
    p.add_argument(
        "--config",
        default=none,
        help="installer.yaml rendered by the chart (default /etc/kata-deploy/installer.yaml)",
    )
    p.add_argument(
        "--host-root",
        default=none,
        help="where the host's / is mounted; every host path resolves under it (default /host)",
    )
    p.add_argument(
        "--payload",
        default=none,
        help="the Kata payload, laid out like the static release's opt/kata "
        "(default /opt/kata-artifacts)",
    )
    p.add_argument(
        "--node-name",
        default=none,
        help="this node's name (label/unlabel; the chart passes spec.nodeName)",
    )
    p.add_argument(
        "--restart",
        choices=restart.MODES,
        default=none,
        help="how to restart the runtime after a change: auto (default: systemd if the "
        "host runs it, else an error), systemd, none (you restart it yourself)",
    )
    p.add_argument(
        "--lock-timeout",
        type=_seconds,
        metavar="SECONDS",
        default=none,
        help="wait this long for another installer on this node, then exit 4 (default 300)",
    )
    p.add_argument(
        "--retry-budget",
        type=_positive_seconds,
        metavar="SECONDS",
        default=none,
        help="how long one API call may keep failing transiently (connection errors, 429, "
        "5xx, a 401/403 while the API server is not ready) before the run ends with exit 3 "
        "(default 120)",
    )
    p.add_argument(
        "--request-timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        default=none,
        help="timeout of each API request (default 30)",
    )
    p.add_argument(
        "--kubeconfig",
        default=none,
        help="kubeconfig file (default $KUBECONFIG, else the in-cluster account)",
    )
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=none,
        help="stderr log format (default text)",
    )
    p.add_argument(
        "--log-level",
        choices=logs.LEVELS,
        type=str.upper,
        default=none,
        help="log level (default INFO)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        default=none,
        help="change nothing; log what would change",
    )
    p.add_argument(
        "--arch",
        default=none,
        help="override the node architecture (amd64, arm64, s390x, ppc64le)",
    )
    p.add_argument(
        "--daemonset-name",
        default=none,
        help="daemonset: the DaemonSet this pod belongs to",
    )
    p.add_argument(
        "--namespace",
        default=none,
        help="the release namespace: the DaemonSet's, and where Events about this node "
        "go (default $POD_NAMESPACE)",
    )
    p.add_argument(
        "--release",
        default=none,
        help="the Helm release: names this node's result annotation "
        "katacontainers.io/kata-deploy.<release>[-<suffix>] (the chart sets it)",
    )
    p.add_argument(
        "--config-hash",
        default=none,
        help="the chart's hash of what it installs, recorded in the result annotation "
        "(default: a hash of --config)",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kata-installer",
        description="Put Kata Containers on this node, or take it off again exactly. "
        "Runs in the kata-deploy per-node Jobs or DaemonSet with the host's directories "
        "under --host-root. Flags may come before or after the command.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"kata-installer {__version__}")
    _add_options(p, suppress=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in COMMANDS.items():
        sp = sub.add_parser(name, help=text, description=text)
        _add_options(sp, suppress=True)
    return p


def _from_env(
    p: argparse.ArgumentParser, args: argparse.Namespace, environ: Mapping[str, str]
) -> None:
    """Fill every flag not given on the command line from its environment twin, then
    from its default. An empty value counts as not set. Errors name the variable:
    `VAR='value': problem` (exit 2), as in kata-dispatcher."""
    defaults = _defaults(environ)
    for action in p._actions:  # argparse has no public list
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        if getattr(args, action.dest, None) is not None:
            continue
        name = _env_name(action.option_strings[-1])
        raw = environ.get(name)
        if raw is None or not raw.strip():
            setattr(args, action.dest, defaults[action.dest])
            continue
        if isinstance(action, argparse._StoreTrueAction):
            lowered = raw.strip().lower()
            if lowered not in TRUE | FALSE:
                p.error(f"{name}={raw!r}: expected true or false (1/0, yes/no)")
            setattr(args, action.dest, lowered in TRUE)
            continue
        value: Any = raw
        if action.type is not None:
            try:
                value = action.type(raw)  # type: ignore[operator]
            except argparse.ArgumentTypeError as exc:
                p.error(f"{name}={raw!r}: {exc}")
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(str, action.choices))
            p.error(f"{name}={raw!r}: choose from {choices}")
        setattr(args, action.dest, value)


def parse_args(
    argv: Sequence[str] | None, environ: Mapping[str, str] | None = None
) -> argparse.Namespace:
    """argv, then the environment twins, then the defaults. Usage errors exit 2."""
    p = parser()
    args = p.parse_args(argv)
    _from_env(p, args, os.environ if environ is None else environ)
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    arch = args.arch or _default_arch()
    if arch not in shims.ARCHES:
        raise errors.ConfigError(
            f"architecture {arch!r} is not one Kata ships for ({', '.join(shims.ARCHES)})"
        )
    return Settings(
        config=pathlib.Path(args.config),
        host_root=pathlib.Path(args.host_root),
        payload=pathlib.Path(args.payload),
        node_name=args.node_name,
        restart=args.restart,
        lock_timeout=args.lock_timeout,
        kubeconfig=args.kubeconfig,
        log_format=args.log_format,
        dry_run=args.dry_run,
        arch=arch,
        daemonset_name=args.daemonset_name,
        namespace=args.namespace,
        release=args.release,
        config_hash=args.config_hash,
        log_level=args.log_level,
        retry_budget=args.retry_budget,
        request_timeout=args.request_timeout,
    )


def build_context(
    settings: Settings,
    *,
    kube_factory: Callable[[], kube.Kube] | None = None,
    writer: fsutil.HostWriter | None = None,
    stop: threading.Event | None = None,
) -> stages.Context:
    if not settings.host_root.is_dir():
        raise errors.ConfigError(f"--host-root {settings.host_root} is not a directory")
    host = hostpaths.HostRoot(settings.host_root)

    def real_kube() -> kube.Kube:
        return kube.ApiKube(
            kubeconfig=settings.kubeconfig,
            policy=retry.Policy(budget=settings.retry_budget),
            request_timeout=settings.request_timeout,
        )

    return stages.Context(
        settings=settings,
        cfg=config.load(settings.config),
        host=host,
        writer=writer or fsutil.HostWriter(dry_run=settings.dry_run),
        restarter=restart.Restarter(settings.restart, host, dry_run=settings.dry_run),
        kube_factory=kube_factory or real_kube,
        stop=stop or threading.Event(),
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
    with lock.host_lock(ctx.host, ctx.writer, timeout=s.lock_timeout, stop=ctx.stop):
        report.mark_installing(ctx)
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
    ctx.keep_result = True
    with lock.host_lock(ctx.host, ctx.writer, timeout=s.lock_timeout):
        stages.uninstall(ctx)
        report.removed(ctx)


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
        lock.host_lock(ctx.host, ctx.writer, timeout=ctx.settings.lock_timeout, stop=ctx.stop)
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


def run(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """The whole program; returns the exit code."""
    args = parse_args(argv, environ)
    logs.setup(log_format=args.log_format, node=args.node_name, level=args.log_level)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.warning(
            "received %s: finishing this step, starting no other", signal.Signals(signum).name
        )
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    ctx: stages.Context | None = None
    code = errors.ExitCode.OK
    try:
        settings = settings_from(args)
        log.info(
            "kata-installer %s %s: host_root=%s payload=%s config=%s arch=%s restart=%s "
            "dry_run=%s retry_budget=%g",
            __version__,
            args.command,
            settings.host_root,
            settings.payload,
            settings.config,
            settings.arch,
            settings.restart,
            settings.dry_run,
            settings.retry_budget,
        )
        ctx = build_context(settings, stop=stop)
        run_command(ctx, args.command)
    except errors.InstallerError as exc:
        log.error("%s", exc)
        code = exc.exit_code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    retries = ctx.api_retries() if ctx is not None else 0
    log.log(
        logging.INFO if code == errors.ExitCode.OK else logging.ERROR,
        "finished: %s exit %d, %d API retries",
        args.command,
        code,
        retries,
        extra={"exit_code": int(code), "api_retries": retries},
    )
    return int(code)


def main() -> None:
    sys.exit(run())
