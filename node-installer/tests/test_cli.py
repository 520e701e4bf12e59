"""The command line (cli.py).

Cases: every long flag has its KATA_INSTALLER_* twin and each twin sets it; the command
line wins over the environment, the environment over the default, flags before or after
the command; switches take true/false/1/0/yes/no (an empty value is not set); a bad
value is exit 2 naming the variable, in the dispatcher's shape; --help names the twins
and the exit codes; a run ends with one line giving its exit code and API retries
(JSON: `exit_code`, `api_retries`); a lock held past --lock-timeout is exit 4; SIGTERM
while waiting for the lock is exit 143 with nothing done; a stop requested before a
stage, or during label's wait for the runtime, ends the run with Terminated (exit 143)
and records no failure on the Node.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import fakes
import pytest
from conftest import FIXTURES, NODE, MakeCtx, seed_host, snapshot
from kata_installer import cli, errors, lock, stages
from kata_installer.stages import label

CASE = "containerd2-noimports"


def _flags() -> dict[str, argparse.Action]:
    p = cli.parser()
    return {
        a.option_strings[-1]: a
        for a in p._actions
        if a.option_strings and a.dest not in ("help", "version")
    }


ENV = {
    "KATA_INSTALLER_CONFIG": "/c.yaml",
    "KATA_INSTALLER_HOST_ROOT": "/h",
    "KATA_INSTALLER_PAYLOAD": "/p",
    "KATA_INSTALLER_NODE_NAME": "n1",
    "KATA_INSTALLER_RESTART": "none",
    "KATA_INSTALLER_LOCK_TIMEOUT": "7",
    "KATA_INSTALLER_RETRY_BUDGET": "45",
    "KATA_INSTALLER_REQUEST_TIMEOUT": "12",
    "KATA_INSTALLER_KUBECONFIG": "/k",
    "KATA_INSTALLER_LOG_FORMAT": "json",
    "KATA_INSTALLER_LOG_LEVEL": "debug",
    "KATA_INSTALLER_DRY_RUN": "yes",
    "KATA_INSTALLER_ARCH": "arm64",
    "KATA_INSTALLER_DAEMONSET_NAME": "ds",
    "KATA_INSTALLER_NAMESPACE": "ns",
    "KATA_INSTALLER_RELEASE": "rel",
    "KATA_INSTALLER_CONFIG_HASH": "0123456789abcdef",
}


def test_every_flag_has_an_environment_twin() -> None:
    assert {cli._env_name(f) for f in _flags()} == set(ENV)
    args = cli.parse_args(["cri"], ENV)
    assert vars(args) == {
        "command": "cri",
        "config": "/c.yaml",
        "host_root": "/h",
        "payload": "/p",
        "node_name": "n1",
        "restart": "none",
        "lock_timeout": 7.0,
        "retry_budget": 45.0,
        "request_timeout": 12.0,
        "kubeconfig": "/k",
        "log_format": "json",
        "log_level": "DEBUG",
        "dry_run": True,
        "arch": "arm64",
        "daemonset_name": "ds",
        "namespace": "ns",
        "release": "rel",
        "config_hash": "0123456789abcdef",
    }


def test_defaults_without_flags_or_environment() -> None:
    args = cli.parse_args(["install"], {"KUBECONFIG": "/a/one:/b/two", "POD_NAMESPACE": "kd"})
    assert (args.config, args.host_root, args.restart) == ("/etc/kata-deploy/installer.yaml",
                                                          "/host", "auto")  # fmt: skip
    assert (args.lock_timeout, args.retry_budget, args.request_timeout) == (300, 120, 30)
    assert (args.kubeconfig, args.namespace, args.dry_run) == ("/a/one", "kd", False)
    assert (args.log_format, args.log_level) == ("text", "INFO")


def test_command_line_wins_over_environment_before_or_after_the_command() -> None:
    env = {"KATA_INSTALLER_LOCK_TIMEOUT": "9", "KATA_INSTALLER_HOST_ROOT": "/env"}
    assert cli.parse_args(["--lock-timeout", "2", "cri"], env).lock_timeout == 2
    args = cli.parse_args(["cri", "--host-root", "/flag"], env)
    assert (args.host_root, args.lock_timeout) == ("/flag", 9)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("on", True),
        ("false", False), ("0", False), ("no", False), ("off", False), ("", False),
    ],
)  # fmt: skip
def test_switches_from_the_environment(value: str, expected: bool) -> None:
    assert cli.parse_args(["cri"], {"KATA_INSTALLER_DRY_RUN": value}).dry_run is expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KATA_INSTALLER_DRY_RUN": "maybe"}, "KATA_INSTALLER_DRY_RUN='maybe': expected true"),
        (
            {"KATA_INSTALLER_LOCK_TIMEOUT": "soon"},
            "KATA_INSTALLER_LOCK_TIMEOUT='soon': 'soon' is not a number of seconds",
        ),
        ({"KATA_INSTALLER_RETRY_BUDGET": "0"}, "KATA_INSTALLER_RETRY_BUDGET='0': '0' must be more"),
        ({"KATA_INSTALLER_RESTART": "reboot"}, "KATA_INSTALLER_RESTART='reboot': choose from"),
        ({"KATA_INSTALLER_LOG_FORMAT": "xml"}, "KATA_INSTALLER_LOG_FORMAT='xml': choose from"),
    ],
)
def test_bad_environment_values_are_exit_2_naming_the_variable(
    env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse_args(["cri"], env)
    assert info.value.code == errors.ExitCode.USAGE
    assert f"kata-installer: error: {message}" in capsys.readouterr().err


def test_help_names_the_twins_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.parse_args(["--help"], {})
    out = capsys.readouterr().out
    for needle in ["KATA_INSTALLER_HOST_ROOT", "true/false/1/0/yes/no", "Exit codes", "143"]:
        assert needle in out, needle


@pytest.fixture
def host(tmp_path: pathlib.Path) -> pathlib.Path:
    return seed_host(CASE, tmp_path / "host")


def _argv(root: pathlib.Path, payload: pathlib.Path) -> list[str]:
    cfg = str(FIXTURES / CASE / "installer.yaml")
    return ["--config", cfg, "--host-root", str(root), "--payload", str(payload),
            "--arch", "amd64", "--node-name", NODE, "--log-format", "json"]  # fmt: skip


def _last_line(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    line: dict[str, object] = json.loads(capsys.readouterr().err.splitlines()[-1])
    return line


def test_a_run_ends_with_its_exit_code_and_api_retries(
    host: pathlib.Path, payload: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.run([*_argv(host, payload), "host-check"], {}) == errors.ExitCode.OK
    last = _last_line(capsys)
    assert last["message"] == "finished: host-check exit 0, 0 API retries"
    assert (last["exit_code"], last["api_retries"], last["node"]) == (0, 0, NODE)


HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(30)
"""


@pytest.fixture
def held_lock(host: pathlib.Path) -> Iterator[None]:
    path = host / lock.LOCK_PATH.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    proc.stdout.close()
    yield
    proc.kill()
    proc.wait(5)


def test_a_lock_held_past_the_timeout_is_exit_4(
    host: pathlib.Path,
    payload: pathlib.Path,
    held_lock: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [*_argv(host, payload), "--lock-timeout", "0.2", "--restart", "none"]
    assert cli.run([*argv, "artifacts"], {}) == errors.ExitCode.TIMEOUT == 4
    assert _last_line(capsys)["exit_code"] == 4


def test_sigterm_while_waiting_for_the_lock_is_exit_143(
    host: pathlib.Path,
    payload: pathlib.Path,
    held_lock: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [*_argv(host, payload), "--lock-timeout", "20", "--restart", "none"]
    before = snapshot(host)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        code = cli.run([*argv, "install"], {})
    finally:
        timer.cancel()
    assert code == errors.ExitCode.TERMINATED == 143
    assert snapshot(host) == before
    err = capsys.readouterr().err
    assert "received SIGTERM" in err and "while waiting for the host lock" in err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def test_a_stop_before_a_stage_records_no_failure(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, kube: fakes.FakeKube
) -> None:
    root = seed_host(CASE, tmp_path / "host")
    ctx = make_ctx(root, FIXTURES / CASE / "installer.yaml")
    before = snapshot(root)
    ctx.stop.set()
    with pytest.raises(errors.Terminated, match=r"before stage 1/4 host-check") as info:
        cli.run_command(ctx, "install")
    assert info.value.exit_code == errors.ExitCode.TERMINATED
    assert snapshot(root) == before
    assert not kube.get_node(NODE).annotations


def test_a_stop_during_the_wait_for_the_runtime_ends_it(
    tmp_path: pathlib.Path, make_ctx: MakeCtx
) -> None:
    root = seed_host(CASE, tmp_path / "host")
    ctx = make_ctx(root, FIXTURES / CASE / "installer.yaml")
    with pytest.raises(errors.Terminated, match="stopped by a signal before never"):
        label.wait_for_node(
            ctx, NODE, "never", lambda _view: False, clock=lambda: 0.0,
            sleep=lambda _s: ctx.stop.set(),
        )  # fmt: skip


def test_the_stage_runner_checks_the_stop_for_reverts_too(
    tmp_path: pathlib.Path, make_ctx: MakeCtx
) -> None:
    root = seed_host(CASE, tmp_path / "host")
    ctx = make_ctx(root, FIXTURES / CASE / "installer.yaml")
    ctx.stop.set()
    with pytest.raises(errors.Terminated, match="remove-artifacts"):
        stages.run_revert(ctx, stages.by_name("remove-artifacts")[1])
