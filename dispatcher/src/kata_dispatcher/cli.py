"""Command line: three commands (install, cleanup, delete-daemonset), their flags (each
with a KATA_DISPATCHER_* twin), Settings, exit codes.

Why: the one place that reads argv, the environment and the ServiceAccount namespace
file, builds the frozen Settings (install, cleanup) or Teardown settings
(delete-daemonset), sets up logging and signals, runs the rollout or the teardown and
prints the result on stdout. Everything below it receives settings and never looks at
the environment. Each command has only the flags that mean something for it; the
single-parser form it replaced (`--stage`, `--delete-daemonset NAME`) is refused with
the command line to use instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import re
import shlex
import signal
import sys
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any

import kata_dispatcher
from kata_dispatcher import (
    errors,
    jobs,
    kube,
    logs,
    nodes,
    retry,
    rollout,
    settings,
    teardown,
    watching,
)

log = logging.getLogger(__name__)

ENV_PREFIX = "KATA_DISPATCHER_"
SA_NAMESPACE_FILE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

COMMANDS = ("install", "cleanup", "delete-daemonset")

DESCRIPTION = """\
The kata-deploy Helm chart's unprivileged helper. It only talks to the API server.

  install           create one node-pinned install Job per selected node from a Job
                    template, at most --parallelism unfinished at a time, and wait for
                    all of them (job mode's post-install,post-upgrade hook and its
                    reconcile CronJob)
  cleanup           the same with the cleanup template (job mode's pre-delete hook, and
                    DaemonSet mode's uninstall sweep)
  delete-daemonset  delete the installer DaemonSet in the foreground and wait until
                    every pod has reverted its node (DaemonSet mode's pre-delete hook)

Run `kata-dispatcher COMMAND --help` for the flags of each command; they come after
the command.
"""

_JOB_DESCRIPTION = """\
Create one node-pinned {stage} Job per selected Kubernetes node from a Job template, at
most --parallelism unfinished at a time, and wait for all of them. The chart runs this
as a hook Job and hands it its per-node {stage} Job template; you can also run it by
hand against any cluster with --kubeconfig.

Nodes: --nodes names them (a name that does not exist is reported as a failed node,
the others proceed); else --selector picks them by label; else every node. Every
selected node should get a Job: one that is not Ready, or has a NoExecute taint the
template's pod does not tolerate (the kubelet's check for a pinned pod), gets none and
is reported as not done.

{skip}

Each Job is named <template metadata.name>-<node> (shortened with a hash when needed),
pinned with spec.template.spec.nodeName, labelled with release, stage ({stage}), node,
owner and the template's hash, and owned (non-controller ownerReference) by the
--owner-job Job and, with --anchor-configmap, by that ConfigMap too. A Job left by an
earlier run of the same owner is adopted; one an earlier dispatcher left running, or
that succeeded from the same template, is taken over (its ownerReferences patched); a
failed one, or a finished one from another template, is replaced.
"""

_SKIP_TEXT = """\
With --skip-done, a node that already has this configuration (its result annotation
and label) needs no Job."""

_CLEANUP_TEXT = """\
A cleanup skips no node, unless --skip-clean: then only the nodes that still carry
--result-annotation get a Job (the chart's DaemonSet-mode sweep after the DaemonSet is
gone). With --delete-cronjob it first deletes the reconcile CronJob; with
--remove-install-jobs it stops an install still running and, once every node is clean,
deletes the install Jobs."""

_TEARDOWN_DESCRIPTION = """\
Delete the DaemonSet NAME in --namespace with foreground propagation, so it keeps a
deletionTimestamp until every one of its pods is gone (each installer pod sees that and
reverts its node while its RBAC still exists), and wait on a watch until the DaemonSet
itself is gone. A DaemonSet that does not exist is success. This is the chart's
DaemonSet-mode pre-delete hook.
"""

_ENV_TEXT = f"""\
Every flag can also be set in the environment: {ENV_PREFIX} plus the flag name in upper
case with '_' for '-' (--owner-job is {ENV_PREFIX}OWNER_JOB). Switches take
true/false/1/0/yes/no; an empty value counts as not set. A flag given on the command
line wins over its environment variable; a variable of a flag this command does not
have is refused.
"""

_JOB_EPILOG = (
    _ENV_TEXT
    + """
Output: logs go to stderr; stdout gets one JSON summary line (nodes_total, succeeded,
failed and skipped with reasons, peak_in_flight, api_requests, retries by cause,
elapsed_seconds), or, with --dry-run, the Jobs as YAML.

Exit codes (docs/contracts.md): 0 every node done, or those not done within
--max-failed-nodes{yield_text}; 1 more nodes failed, got no Job or do not exist than
--max-failed-nodes allows; 2 bad flags, template, kubeconfig, missing owner Job or
missing RBAC rights; 3 the API server stayed unreachable for the whole --retry-budget;
4 --timeout reached; 143 stopped by SIGTERM or SIGINT (summary still printed).

Example (local cluster):
  kata-dispatcher {stage} --kubeconfig ~/.kube/config --namespace kube-system \\
    --owner-job kata-deploy-{stage}-dispatcher --template {stage}-job.yaml \\
    --release kata-deploy --selector '!node-role.kubernetes.io/control-plane' \\
    --parallelism 10
"""
)

_TEARDOWN_EPILOG = (
    _ENV_TEXT
    + """
Output: logs go to stderr; stdout gets one JSON line with result (deleted, absent,
timeout, terminated or dry-run), pods_remaining, the pods left and retries by cause.

Exit codes (docs/contracts.md): 0 the DaemonSet is gone, or was never there; 2 bad flags
or a missing RBAC right; 3 the API server stayed unreachable for the whole
--retry-budget; 4 --timeout reached and the DaemonSet still exists; 143 stopped by
SIGTERM or SIGINT.

Example (local cluster):
  kata-dispatcher delete-daemonset kata-deploy --kubeconfig ~/.kube/config \\
    --namespace kube-system --timeout 600
"""
)

# DNS-1123 subdomain: what Kubernetes accepts as a DaemonSet name.
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

# The flags of the single-parser command line that the commands replaced.
_OLD_FLAGS = ("--stage", "--delete-daemonset")

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


def _env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


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


def _budget(text: str) -> settings.Budget:
    try:
        return settings.Budget.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_job_flags(parser: argparse.ArgumentParser, stage: settings.Stage) -> None:
    """The flags of the two Job-dispatching commands; some only for one of them."""
    req = parser.add_argument_group("what to run")
    req.add_argument(
        "--template",
        metavar="FILE",
        help=f"YAML file with one batch/v1 Job manifest (the chart's {stage}-job.yaml); its "
        "metadata.name is the prefix of every per-node Job name (required)",
    )
    req.add_argument(
        "--owner-job",
        metavar="NAME",
        help="name of the dispatcher's own Job in --namespace; its UID goes into every "
        "per-node Job's ownerReference (required)",
    )
    req.add_argument(
        "--namespace",
        metavar="NS",
        help="namespace of the owner Job and the per-node Jobs (default: $POD_NAMESPACE, "
        "then the pod's ServiceAccount namespace)",
    )
    req.add_argument(
        "--release",
        metavar="NAME",
        help="Helm release name for the release label (default: the template's "
        "app.kubernetes.io/instance label)",
    )
    sel = parser.add_argument_group("which nodes (at most one of these; neither = all nodes)")
    sel.add_argument("--nodes", metavar="A,B,C", help="comma-separated node names")
    sel.add_argument(
        "--selector",
        metavar="SELECTOR",
        help="Kubernetes label selector, e.g. 'kata=yes,!node-role.kubernetes.io/control-plane'",
    )
    sel.add_argument(
        "--wait-for-nodes",
        metavar="SECONDS",
        type=_seconds,
        help="first wait up to SECONDS for the selection to be non-empty, every named "
        "node to exist and every selected node to be Ready (default: 0, do not wait)",
    )
    pace = parser.add_argument_group("pacing and limits")
    pace.add_argument(
        "--parallelism",
        metavar="N",
        type=_positive_int,
        help="at most N per-node Jobs unfinished at any time (default: 1)",
    )
    pace.add_argument(
        "--max-failed-nodes",
        metavar="N|P%",
        type=_budget,
        help="the run still succeeds (exit 0) when at most N selected nodes, or P%% of "
        "them rounded down, failed or got no Job (not Ready, untolerated NoExecute taint, "
        "no such node); the summary names every one (default: 0)",
    )
    pace.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        help="give up (exit 4) if not every node finished within SECONDS (default: 0, none)",
    )
    _add_api_flags(pace)
    beh = parser.add_argument_group("behaviour")
    beh.add_argument(
        "--dry-run",
        action="store_true",
        default=None,
        help="read the cluster, print the Jobs that would be created as YAML, create nothing",
    )
    beh.add_argument(
        "--inspect-pods",
        action="store_true",
        default=None,
        help="for each failed Job, read its pods to report the failing container, exit code "
        "and termination message (needs 'list pods' in --namespace)",
    )
    beh.add_argument(
        "--anchor-configmap",
        metavar="NAME",
        help="a ConfigMap in --namespace that co-owns every per-node Job (the chart's "
        "Job-template ConfigMap): deleting the dispatcher Job then leaves Jobs in flight "
        "running, for the next dispatcher to adopt; it owns the --lease too, which goes "
        "with it (needs 'get' on that ConfigMap)",
    )
    one = parser.add_argument_group("one run at a time per release")
    one.add_argument(
        "--lease",
        metavar="NAME",
        help="hold the coordination.k8s.io Lease NAME in --namespace for the whole run "
        "(created if missing, renewed every progress tick, released at the end); a run "
        "killed outright loses it after 60 seconds",
    )
    if stage is settings.Stage.INSTALL:
        one.add_argument(
            "--lease-mode",
            choices=[m.value for m in settings.LeaseMode],
            help="when another run holds the Lease: wait for it (default), or yield: exit 0 "
            "at once with result 'yielded' (the reconcile CronJob)",
        )
        done = parser.add_argument_group("skipping nodes already done (all three values together)")
        done.add_argument(
            "--skip-done",
            action="store_true",
            default=None,
            help="create no Job for a node whose --result-annotation says outcome "
            "'installed' with --config-hash and which carries --done-label=true",
        )
        _add_result_annotation(done)
        done.add_argument(
            "--config-hash", metavar="HASH", help="the hash of what this run installs"
        )
        done.add_argument(
            "--done-label",
            metavar="KEY",
            help="the label an installed node carries (default: katacontainers.io/kata-runtime)",
        )
    else:
        clean = parser.add_argument_group("skipping nodes with nothing to clean (both together)")
        clean.add_argument(
            "--skip-clean",
            action="store_true",
            default=None,
            help="create no Job for a node without --result-annotation: the DaemonSet-mode "
            "installer keeps it from before its first host change until its last revert",
        )
        _add_result_annotation(clean)
        first = parser.add_argument_group("before the cleanup")
        first.add_argument(
            "--delete-cronjob",
            metavar="NAME",
            help="first delete the reconcile CronJob NAME (and its Jobs), so nothing "
            "installs again behind the cleanup",
        )
        first.add_argument(
            "--remove-install-jobs",
            metavar="NAME",
            help="first stop the install dispatcher Job NAME if it still runs and wait for "
            "the install Jobs in flight; once every node succeeded, delete NAME and every "
            "install Job of this release",
        )
    _add_output_flags(parser)


def _add_result_annotation(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--result-annotation",
        metavar="KEY",
        help="the Node annotation the installer writes its result into",
    )


def _add_api_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--retry-budget",
        metavar="SECONDS",
        type=_positive_seconds,
        help="how long one API call may keep failing transiently (connection errors, 429, "
        "5xx, a 401/403 from an API server still starting) before the run ends with exit 3 "
        "(default: 120)",
    )
    group.add_argument(
        "--request-timeout",
        metavar="SECONDS",
        type=_positive_seconds,
        help="timeout of each API request (default: 30)",
    )


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    conn = parser.add_argument_group("connection and output")
    conn.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig to use (default: $KUBECONFIG, else the in-cluster ServiceAccount)",
    )
    conn.add_argument(
        "--log-format",
        choices=[f.value for f in settings.LogFormat],
        help="stderr log format (default: text)",
    )
    conn.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="log level (default: INFO)",
    )
    conn.add_argument(
        "--progress-interval",
        metavar="SECONDS",
        type=_positive_seconds,
        help="log a progress line every SECONDS (default: 10)",
    )


def _add_teardown_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "daemonset",
        metavar="NAME",
        help="the installer DaemonSet to delete (a DNS-1123 subdomain)",
    )
    what = parser.add_argument_group("where and how long")
    what.add_argument(
        "--namespace",
        metavar="NS",
        help="namespace of the DaemonSet (default: $POD_NAMESPACE, then the pod's "
        "ServiceAccount namespace)",
    )
    what.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        help="give up (exit 4) if the DaemonSet is not gone within SECONDS (default: 0, none)",
    )
    _add_api_flags(what)
    what.add_argument(
        "--dry-run",
        action="store_true",
        default=None,
        help="read the DaemonSet and count its pods, delete nothing",
    )
    _add_output_flags(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kata-dispatcher",
        description=DESCRIPTION,
        epilog="Exit codes and log format: docs/contracts.md; details: dispatcher/README.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=kata_dispatcher.__version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for stage in settings.Stage:
        one = sub.add_parser(
            stage.value,
            help=f"create one {stage.value} Job per selected node and wait for them",
            description=_JOB_DESCRIPTION.format(
                stage=stage.value,
                skip=_SKIP_TEXT if stage is settings.Stage.INSTALL else _CLEANUP_TEXT,
            ),
            epilog=_JOB_EPILOG.format(
                stage=stage.value,
                yield_text=", or another run holds the --lease and --lease-mode is yield"
                if stage is settings.Stage.INSTALL
                else "",
            ),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_job_flags(one, stage)
    tear = sub.add_parser(
        "delete-daemonset",
        help="delete the installer DaemonSet in the foreground and wait until it is gone",
        description=_TEARDOWN_DESCRIPTION,
        epilog=_TEARDOWN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_teardown_flags(tear)
    return parser


def command_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each command's own parser, by command name."""
    for action in parser._actions:  # argparse has no public list
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise LookupError("no commands")


def _flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The long flags of one command's parser, each with its action."""
    return {
        action.option_strings[-1]: action
        for action in parser._actions
        if action.option_strings and action.dest not in ("help", "version")
    }


def _from_env(
    parser: argparse.ArgumentParser, args: argparse.Namespace, environ: Mapping[str, str]
) -> None:
    """Fill every flag not given on the command line from its environment twin.
    An empty value counts as not set. Errors name the variable: `VAR='value': problem`."""
    for flag, action in _flags(parser).items():
        if getattr(args, action.dest) is not None:
            continue
        name = _env_name(flag)
        raw = environ.get(name)
        if raw is None or not raw.strip():
            continue
        if isinstance(action, argparse._StoreTrueAction):
            lowered = raw.strip().lower()
            if lowered not in TRUE | FALSE:
                parser.error(f"{name}={raw!r}: expected true or false (1/0, yes/no)")
            setattr(args, action.dest, lowered in TRUE)
            continue
        value: Any = raw
        if action.type is not None:
            try:
                value = action.type(raw)  # type: ignore[operator]
            except argparse.ArgumentTypeError as exc:
                parser.error(f"{name}={raw!r}: {exc}")
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(str, action.choices))
            parser.error(f"{name}={raw!r}: choose from {choices}")
        setattr(args, action.dest, value)


def _refuse_foreign_env(
    parser: argparse.ArgumentParser,
    command: str,
    environ: Mapping[str, str],
) -> None:
    """A twin of a flag only other commands have is a mistake, not something to ignore
    (KATA_DISPATCHER_SKIP_DONE=true on a cleanup, a Job flag on delete-daemonset)."""
    parsers = command_parsers(parser)
    own = {_env_name(f) for f in _flags(parsers[command])}
    for other, other_parser in parsers.items():
        for flag, action in _flags(other_parser).items():
            name = _env_name(flag)
            raw = environ.get(name, "").strip().lower()
            if name in own or not raw:
                continue
            if isinstance(action, argparse._StoreTrueAction) and raw in FALSE:
                continue
            parsers[command].error(
                f"{name} is set, but `kata-dispatcher {command}` has no {flag} "
                f"(it belongs to `kata-dispatcher {other}`)"
            )


def _old_form(argv: Sequence[str], command: str) -> str:
    """The command line of the single-parser dispatcher rewritten with a command."""
    rest = list(argv)
    name: list[str] = []
    out: list[str] = []
    i = 0
    while i < len(rest):
        arg = rest[i]
        flag, eq, value = arg.partition("=")
        if flag in _OLD_FLAGS:
            if not eq:
                value = rest[i + 1] if i + 1 < len(rest) else "..."
                i += 1
            if flag == "--stage":
                command = value
            else:
                command, name = "delete-daemonset", [value]
        else:
            out.append(arg)
        i += 1
    return shlex.join(["kata-dispatcher", command, *name, *out])


def _rewrite(argv: Sequence[str]) -> str:
    if argv[0] in COMMANDS:
        return _old_form(argv[1:], argv[0])
    return _old_form(argv, "install")


def _check_command_line(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """Name what to do when the command is missing, or the old flags are used."""
    if not argv:
        parser.error("a command is required: install, cleanup or delete-daemonset (see --help)")
    first = argv[0]
    if first in ("-h", "--help", "--version") or first in COMMANDS:
        if not any(a.partition("=")[0] in _OLD_FLAGS for a in argv):
            return
    elif not first.startswith("-"):
        return  # argparse names the unknown command
    parser.error(
        "the command comes first and --stage and --delete-daemonset are gone: "
        "install, cleanup or delete-daemonset NAME replaces them; "
        f"this run would be: {_rewrite(argv)}"
    )


def _refuse_unknown(parser: argparse.ArgumentParser, command: str, unknown: list[str]) -> None:
    """Say which command a flag belongs to, when it belongs to another one."""
    parsers = command_parsers(parser)
    for arg in unknown:
        flag = arg.partition("=")[0]
        owners = [name for name, p in parsers.items() if name != command and flag in _flags(p)]
        if owners:
            parsers[command].error(
                f"{flag} is not a flag of `kata-dispatcher {command}` "
                f"(only of `kata-dispatcher {' / '.join(owners)}`)"
            )
    parsers[command].error(f"unrecognized arguments: {' '.join(unknown)}")


def _check_environment(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    for name, instead in (
        (_env_name("--stage"), "kata-dispatcher install|cleanup (the command is the stage)"),
        (_env_name("--delete-daemonset"), "kata-dispatcher delete-daemonset NAME"),
    ):
        if environ.get(name, "").strip():
            parser.error(f"{name} is no longer read: use {instead}")


def _namespace(flag: str | None, environ: Mapping[str, str], sa_file: pathlib.Path) -> str | None:
    if flag:
        return flag
    if environ.get("POD_NAMESPACE"):
        return environ["POD_NAMESPACE"]
    try:
        return sa_file.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _kubeconfig(flag: str | None, environ: Mapping[str, str]) -> pathlib.Path | None:
    if flag:
        return pathlib.Path(flag).expanduser()
    paths = [p for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return pathlib.Path(paths[0]).expanduser() if paths else None


def _parse_args(
    argv: Sequence[str], environ: Mapping[str, str]
) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """argv, then the environment twins. Usage errors exit 2 through argparse; the
    returned parser is the command's own, so later errors show its usage."""
    parser = build_parser()
    _check_command_line(parser, argv)
    args, unknown = parser.parse_known_args(list(argv))
    if unknown:
        _refuse_unknown(parser, args.command, unknown)
    _check_environment(parser, environ)
    _refuse_foreign_env(parser, args.command, environ)
    command = command_parsers(parser)[args.command]
    _from_env(command, args, environ)
    return command, args


def parse(
    argv: Sequence[str],
    environ: Mapping[str, str],
    *,
    sa_namespace_file: pathlib.Path = SA_NAMESPACE_FILE,
) -> tuple[settings.Settings, dict[str, Any]]:
    """argv + environment -> (Settings, the loaded template) of an install or cleanup run.
    Usage errors exit 2 through argparse; template errors raise jobs.TemplateError."""
    parser, args = _parse_args(argv, environ)
    if args.command not in {s.value for s in settings.Stage}:
        parser.error(f"`{args.command}` does not dispatch Jobs")
    return _dispatch_settings(parser, args, environ, sa_namespace_file=sa_namespace_file)


def parse_teardown(
    argv: Sequence[str],
    environ: Mapping[str, str],
    *,
    sa_namespace_file: pathlib.Path = SA_NAMESPACE_FILE,
) -> settings.Teardown:
    """argv + environment -> the settings of a delete-daemonset run (exit 2 on misuse)."""
    parser, args = _parse_args(argv, environ)
    if args.command != "delete-daemonset":
        parser.error(f"`{args.command}` is not delete-daemonset")
    return _teardown_settings(parser, args, environ, sa_namespace_file=sa_namespace_file)


def _common(args: argparse.Namespace) -> dict[str, Any]:
    """The settings every command shares, when given."""
    kwargs: dict[str, Any] = {
        "log_format": settings.LogFormat(args.log_format) if args.log_format else None,
        "log_level": args.log_level,
        "progress_interval": args.progress_interval,
        "dry_run": args.dry_run,
        "timeout": args.timeout,
        "retry_budget": args.retry_budget,
        "request_timeout": args.request_timeout,
    }
    return {k: v for k, v in kwargs.items() if v is not None}


def _require_namespace(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    environ: Mapping[str, str],
    sa_namespace_file: pathlib.Path,
) -> str:
    namespace = _namespace(args.namespace, environ, sa_namespace_file)
    if not namespace:
        parser.error(
            "no namespace: pass --namespace, or set POD_NAMESPACE, or run in a pod "
            f"(reads {sa_namespace_file})"
        )
    return namespace


def _teardown_settings(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    environ: Mapping[str, str],
    *,
    sa_namespace_file: pathlib.Path,
) -> settings.Teardown:
    name = str(args.daemonset).strip()
    if not name:
        parser.error("delete-daemonset needs a DaemonSet name")
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        parser.error(f"delete-daemonset: {name!r} is not a valid DaemonSet name")
    return settings.Teardown(
        daemonset=name,
        namespace=_require_namespace(parser, args, environ, sa_namespace_file),
        kubeconfig=_kubeconfig(args.kubeconfig, environ),
        **_common(args),
    )


def _dispatch_settings(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    environ: Mapping[str, str],
    *,
    sa_namespace_file: pathlib.Path,
) -> tuple[settings.Settings, dict[str, Any]]:
    if not args.template:
        parser.error(f"--template is required (or {ENV_PREFIX}TEMPLATE)")
    if not args.owner_job:
        parser.error(f"--owner-job is required (or {ENV_PREFIX}OWNER_JOB)")
    stage = settings.Stage(args.command)
    install = stage is settings.Stage.INSTALL
    names = nodes.parse_names(args.nodes or "")
    selector = (args.selector or "").strip() or None
    if names and selector:
        parser.error("--nodes and --selector are mutually exclusive: give one or neither")
    namespace = _require_namespace(parser, args, environ, sa_namespace_file)
    template = jobs.load_template(pathlib.Path(args.template))
    release = args.release or (template.get("metadata", {}).get("labels") or {}).get(
        "app.kubernetes.io/instance"
    )
    if not release:
        parser.error(
            "--release is required when the template has no app.kubernetes.io/instance label"
        )
    for value, what in ((release, "--release"), (args.owner_job, "--owner-job")):
        if not jobs.is_label_value(value):
            parser.error(f"{what} {value!r} is not a valid Kubernetes label value")
    skip_done = install and bool(args.skip_done)
    if skip_done:
        missing = [
            flag
            for flag, value in (
                ("--result-annotation", args.result_annotation),
                ("--config-hash", args.config_hash),
            )
            if not value
        ]
        if missing:
            parser.error(f"--skip-done needs {' and '.join(missing)}")
    skip_clean = not install and bool(args.skip_clean)
    if skip_clean and not args.result_annotation:
        parser.error("--skip-clean needs --result-annotation")
    delete_cronjob = None if install else args.delete_cronjob
    for flag, value in (("--lease", args.lease), ("--delete-cronjob", delete_cronjob)):
        if value and (len(value) > 253 or not _DNS_SUBDOMAIN.match(value)):
            parser.error(f"{flag} {value!r} is not a valid object name")
    lease_mode = args.lease_mode if install else None
    if lease_mode and not args.lease:
        parser.error("--lease-mode needs --lease")
    if args.anchor_configmap and not _DNS_SUBDOMAIN.match(args.anchor_configmap):
        parser.error(f"--anchor-configmap {args.anchor_configmap!r} is not a valid ConfigMap name")
    kwargs: dict[str, Any] = {
        "parallelism": args.parallelism,
        "inspect_pods": args.inspect_pods,
        "wait_for_nodes": args.wait_for_nodes,
        "anchor_configmap": args.anchor_configmap or None,
        "max_failed_nodes": args.max_failed_nodes,
        "lease": args.lease or None,
        "lease_mode": settings.LeaseMode(lease_mode) if lease_mode else None,
    }
    if install:
        kwargs |= {
            "skip_done": skip_done,
            "result_annotation": args.result_annotation,
            "config_hash": args.config_hash,
            "done_label": args.done_label,
        }
    else:
        kwargs |= {
            "skip_clean": skip_clean,
            "result_annotation": args.result_annotation or "",
            "delete_cronjob": delete_cronjob or None,
            "remove_install_jobs": args.remove_install_jobs or None,
        }
    config = settings.Settings(
        template=pathlib.Path(args.template),
        owner_job=args.owner_job,
        namespace=namespace,
        release=release,
        stage=stage,
        nodes=names,
        selector=selector,
        kubeconfig=_kubeconfig(args.kubeconfig, environ),
        **{k: v for k, v in kwargs.items() if v is not None},
        **_common(args),
    )
    return config, template


def run(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    api: kube.Api | None = None,
    clock: retry.Clock | None = None,
) -> int:
    """The whole program; returns the exit code. `api`/`clock` are for tests."""
    env = os.environ if environ is None else environ
    parser, args = _parse_args(sys.argv[1:] if argv is None else argv, env)
    config: settings.Settings | settings.Teardown
    template: dict[str, Any] = {}
    try:
        if args.command == "delete-daemonset":
            config = _teardown_settings(parser, args, env, sa_namespace_file=SA_NAMESPACE_FILE)
        else:
            config, template = _dispatch_settings(
                parser, args, env, sa_namespace_file=SA_NAMESPACE_FILE
            )
    except errors.UsageError as exc:
        logs.setup(settings.LogFormat.TEXT, "INFO")
        log.error("%s", exc)
        return int(exc.exit_code)
    logs.setup(config.log_format, config.log_level)
    log.info(
        "kata-dispatcher %s starting with %s",
        kata_dispatcher.__version__,
        json.dumps(config.describe(), sort_keys=True),
    )
    stop = watching.StopFlag()
    tally = retry.Tally()  # every retry of the run, also for the error line below

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        what = "no new Jobs" if isinstance(config, settings.Settings) else "not waiting any longer"
        stop.request(f"received {signal.Signals(signum).name}: {what}, reporting")

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    real: kube.KubeApi | None = None
    try:
        if api is None:
            real = kube.KubeApi(
                kube.load_configuration(config.kubeconfig),
                request_timeout=config.request_timeout,
            )
            api = real
        if isinstance(config, settings.Teardown):
            return _teardown(
                api, config, clock=clock or retry.SystemClock(), stop=stop, tally=tally
            )
        return _dispatch(
            api, config, template, clock=clock or retry.SystemClock(), stop=stop, tally=tally
        )
    except errors.DispatcherError as exc:
        code = exc.exit_code
        if isinstance(exc, errors.Transient):
            log.error("giving up: the API server stayed unavailable: %s", exc)
        else:
            log.error("%s", exc)
        print(  # noqa: T201 - the program's output
            json.dumps(
                {
                    "result": "error",
                    "exit_code": int(code),
                    "error": str(exc),
                    "api_requests": api.api_requests if api is not None else 0,
                    "retries": tally.as_dict(),
                },
                separators=(",", ":"),
            ),
            flush=True,
        )
        return int(code)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if real is not None:
            real.close()


def _dispatch(
    api: kube.Api,
    config: settings.Settings,
    template: dict[str, Any],
    *,
    clock: retry.Clock,
    stop: watching.StopFlag,
    tally: retry.Tally,
) -> int:
    summary = rollout.Rollout(api, config, template, clock=clock, stop=stop, tally=tally).run()
    if config.dry_run:
        sys.stdout.write(jobs.render_yaml(summary.jobs))
        sys.stdout.flush()
        log.info("dry run summary: %s", summary.to_json())
    else:
        print(summary.to_json(), flush=True)  # noqa: T201 - the program's output
    log.info(
        "finished: %s, %d/%d nodes succeeded, %d failed, %d skipped, exit %d",
        summary.outcome.value,
        summary.succeeded,
        summary.nodes_total,
        len(summary.failed),
        len(summary.skipped),
        summary.exit_code,
    )
    return int(summary.exit_code)


def _teardown(
    api: kube.Api,
    config: settings.Teardown,
    *,
    clock: retry.Clock,
    stop: watching.StopFlag,
    tally: retry.Tally,
) -> int:
    summary = teardown.Teardown(api, config, clock=clock, stop=stop, tally=tally).run()
    print(summary.to_json(), flush=True)  # noqa: T201 - the program's output
    log.info(
        "finished: DaemonSet %s/%s %s, exit %d",
        summary.namespace,
        summary.daemonset,
        summary.outcome.value,
        summary.exit_code,
    )
    return int(summary.exit_code)


def main() -> None:
    sys.exit(run())
