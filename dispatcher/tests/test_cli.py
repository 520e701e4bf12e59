"""The command line (cli.py).

Cases: --help for a stranger (the three commands; each command's flags, env twins, exit
codes), each command offering only its own flags; the single-parser form (no command,
--stage, --delete-daemonset, their env twins) refused with the command line to use;
required flags; every flag from its KATA_DISPATCHER_* twin, the command line winning;
booleans from the environment; a twin of another command's flag refused; namespace
from flag, then POD_NAMESPACE, then the ServiceAccount file; --nodes and --selector
exclusive, empty values ignored; release from the template label; the stage from the
command; bad template / bad numbers are exit 2; a full run against the fake cluster
prints one JSON line on stdout and logs a startup line with version and settings; JSON
logs; dry-run YAML; a missing owner gives exit 2 and a JSON error line; API unreachable
gives exit 3. delete-daemonset: its settings from flags and environment twins, the Job
flags refused with it, a bad name, and whole runs printing one JSON line (gone: 0,
absent: 0, timeout: 4, API unreachable: 3, no RBAC right: 2).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import NamedTuple

import fakes
import kata_dispatcher
import pytest
import yaml
from kata_dispatcher import cli, errors, settings

MakeApi = Callable[..., fakes.FakeApi]


class Output(NamedTuple):
    out: str
    err: str


RunJobMode = Callable[..., tuple[int, Output]]


def base(template_file: pathlib.Path, command: str = "install") -> list[str]:
    return [
        command,
        "--template",
        str(template_file),
        "--owner-job",
        "dispatcher",
        "--namespace",
        "kata",
    ]


@pytest.fixture
def run_job_mode(
    template_file: pathlib.Path, clock: fakes.FakeClock, capsys: pytest.CaptureFixture[str]
) -> RunJobMode:
    """`run(api, *extra)`: `cli.run` with the base Job-mode flags plus `extra` against the
    fake cluster `api`; the exit code and what it wrote to stdout and stderr."""

    def run(api: fakes.FakeApi, *extra: str) -> tuple[int, Output]:
        code = cli.run([*base(template_file), *extra], {}, api=api, clock=clock)
        out, err = capsys.readouterr()
        return code, Output(out, err)

    return run


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        cli.parse(argv, {})
    assert info.value.code == 0
    return capsys.readouterr().out


def test_help_names_the_three_commands(capsys: pytest.CaptureFixture[str]) -> None:
    out = _help(["--help"], capsys)
    for needle in ["install", "cleanup", "delete-daemonset", "COMMAND --help", "foreground"]:
        assert needle in out, needle


def test_help_explains_flags_env_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    out = _help(["install", "--help"], capsys)
    for needle in [
        "usage: kata-dispatcher install",
        "--template FILE",
        "--owner-job NAME",
        "--parallelism N",
        "--selector SELECTOR",
        "--nodes A,B,C",
        "--dry-run",
        "--inspect-pods",
        "--skip-done",
        "--lease-mode",
        "--wait-for-nodes SECONDS",
        "--timeout SECONDS",
        "KATA_DISPATCHER_OWNER_JOB",
        "true/false/1/0/yes/no",
        "Exit codes (docs/contracts.md): 0",
        "143",
    ]:
        assert needle in out, needle
    out = _help(["delete-daemonset", "--help"], capsys)
    for needle in ["usage: kata-dispatcher delete-daemonset", "NAME", "foreground", "Exit codes"]:
        assert needle in out, needle


@pytest.mark.parametrize(
    ("command", "has", "has_not"),
    [
        (
            "install",
            {"--skip-done", "--lease-mode", "--config-hash"},
            {"--delete-cronjob", "--skip-clean"},
        ),
        (
            "cleanup",
            {"--delete-cronjob", "--remove-install-jobs", "--lease", "--skip-clean"},
            {"--skip-done", "--lease-mode", "--config-hash", "--done-label"},
        ),
        (
            "delete-daemonset",
            {"--timeout", "--dry-run", "--namespace", "--retry-budget"},
            {"--template", "--owner-job", "--parallelism", "--lease", "--inspect-pods"},
        ),
    ],
)
def test_each_command_offers_only_its_flags(command: str, has: set[str], has_not: set[str]) -> None:
    flags = set(cli._flags(cli.command_parsers(cli.build_parser())[command]))
    assert has <= flags and not has_not & flags


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (
            ["--template", "t.yaml", "--owner-job", "d"],
            "kata-dispatcher install --template t.yaml --owner-job d",
        ),
        (
            ["--template", "t.yaml", "--stage", "cleanup", "--lease", "l"],
            "kata-dispatcher cleanup --template t.yaml --lease l",
        ),
        (["--stage=cleanup", "--nodes", "a b"], "kata-dispatcher cleanup --nodes 'a b'"),
        (
            ["--delete-daemonset", "kata-deploy", "--timeout", "270"],
            "kata-dispatcher delete-daemonset kata-deploy --timeout 270",
        ),
        (["install", "--stage", "cleanup"], "kata-dispatcher cleanup"),
    ],
)
def test_the_old_form_is_refused_with_the_command_line_to_use(
    argv: list[str], suggestion: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse(argv, {})
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "the command comes first" in err
    assert err.rstrip().endswith(f"this run would be: {suggestion}"), err


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse([], {})
    assert info.value.code == 2
    assert "a command is required: install, cleanup or delete-daemonset" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("variable", "instead"),
    [
        ("KATA_DISPATCHER_STAGE", "kata-dispatcher install|cleanup"),
        ("KATA_DISPATCHER_DELETE_DAEMONSET", "kata-dispatcher delete-daemonset NAME"),
    ],
)
def test_the_old_environment_variables_are_refused(
    template_file: pathlib.Path,
    variable: str,
    instead: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse(base(template_file), {variable: "cleanup"})
    assert info.value.code == 2
    assert f"{variable} is no longer read: use {instead}" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["--template", "--owner-job"])
def test_required_flags(
    template_file: pathlib.Path, missing: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = base(template_file)
    i = argv.index(missing)
    del argv[i : i + 2]
    with pytest.raises(SystemExit) as info:
        cli.parse(argv, {})
    assert info.value.code == 2
    assert missing in capsys.readouterr().err


def test_every_flag_has_an_environment_twin(
    template_file: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    env = {
        "KATA_DISPATCHER_TEMPLATE": str(template_file),
        "KATA_DISPATCHER_OWNER_JOB": "dispatcher",
        "KATA_DISPATCHER_NAMESPACE": "ns-env",
        "KATA_DISPATCHER_RELEASE": "rel",
        "KATA_DISPATCHER_PARALLELISM": "7",
        "KATA_DISPATCHER_NODES": "a, b",
        "KATA_DISPATCHER_KUBECONFIG": str(tmp_path / "kc"),
        "KATA_DISPATCHER_LOG_FORMAT": "json",
        "KATA_DISPATCHER_LOG_LEVEL": "debug",
        "KATA_DISPATCHER_PROGRESS_INTERVAL": "2.5",
        "KATA_DISPATCHER_DRY_RUN": "true",
        "KATA_DISPATCHER_INSPECT_PODS": "yes",
        "KATA_DISPATCHER_REMOVE_INSTALL_JOBS": "old-dispatcher",
        "KATA_DISPATCHER_WAIT_FOR_NODES": "30",
        "KATA_DISPATCHER_TIMEOUT": "600",
        "KATA_DISPATCHER_RETRY_BUDGET": "45",
        "KATA_DISPATCHER_REQUEST_TIMEOUT": "12",
        "KATA_DISPATCHER_ANCHOR_CONFIGMAP": "templates",
        "KATA_DISPATCHER_MAX_FAILED_NODES": "2%",
        "KATA_DISPATCHER_LEASE": "kata-deploy-dispatcher",
        "KATA_DISPATCHER_DELETE_CRONJOB": "kata-deploy-reconcile",
        "KATA_DISPATCHER_SKIP_CLEAN": "true",
        "KATA_DISPATCHER_RESULT_ANNOTATION": "katacontainers.io/kata-deploy.rel",
    }
    commands = cli.command_parsers(cli.build_parser())
    flags = {f for p in commands.values() for f in cli._flags(p)}
    # --selector is exclusive with --nodes, and the install-only flags are checked
    # below: this run is a cleanup.
    assert {cli._env_name(f) for f in flags} == set(env) | {
        "KATA_DISPATCHER_SELECTOR",
        "KATA_DISPATCHER_SKIP_DONE",
        "KATA_DISPATCHER_CONFIG_HASH",
        "KATA_DISPATCHER_DONE_LABEL",
        "KATA_DISPATCHER_LEASE_MODE",
    }
    config, _ = cli.parse(["cleanup"], env)
    assert config == settings.Settings(
        template=template_file,
        owner_job="dispatcher",
        namespace="ns-env",
        release="rel",
        stage=settings.Stage.CLEANUP,
        parallelism=7,
        nodes=("a", "b"),
        kubeconfig=tmp_path / "kc",
        log_format=settings.LogFormat.JSON,
        log_level="DEBUG",
        progress_interval=2.5,
        dry_run=True,
        inspect_pods=True,
        remove_install_jobs="old-dispatcher",
        skip_clean=True,
        result_annotation="katacontainers.io/kata-deploy.rel",
        wait_for_nodes=30,
        timeout=600,
        retry_budget=45,
        request_timeout=12,
        anchor_configmap="templates",
        max_failed_nodes=settings.Budget(2, percent=True),
        lease="kata-deploy-dispatcher",
        delete_cronjob="kata-deploy-reconcile",
    )


def test_install_only_flags_from_environment(template_file: pathlib.Path) -> None:
    env = {
        "KATA_DISPATCHER_DONE_LABEL": "example.com/kata",
        "KATA_DISPATCHER_LEASE": "kata-deploy-dispatcher",
        "KATA_DISPATCHER_LEASE_MODE": "yield",
    }
    config, _ = cli.parse(base(template_file), env)
    assert config.stage is settings.Stage.INSTALL
    assert config.done_label == "example.com/kata"
    assert config.lease_mode is settings.LeaseMode.YIELD


@pytest.mark.parametrize(
    ("command", "env", "owner"),
    [
        ("cleanup", ("KATA_DISPATCHER_SKIP_DONE", "true"), "install"),
        ("cleanup", ("KATA_DISPATCHER_LEASE_MODE", "yield"), "install"),
        ("install", ("KATA_DISPATCHER_DELETE_CRONJOB", "r"), "cleanup"),
        ("install", ("KATA_DISPATCHER_REMOVE_INSTALL_JOBS", "d"), "cleanup"),
    ],
)
def test_a_twin_of_another_commands_flag_is_refused(
    template_file: pathlib.Path,
    command: str,
    env: tuple[str, str],
    owner: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    variable, value = env
    with pytest.raises(SystemExit) as info:
        cli.parse(base(template_file, command), {variable: value})
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"{variable} is set, but `kata-dispatcher {command}` has no" in err
    assert f"(it belongs to `kata-dispatcher {owner}`)" in err


def test_an_empty_or_false_twin_of_another_commands_flag_is_not_set(
    template_file: pathlib.Path,
) -> None:
    env = {"KATA_DISPATCHER_SKIP_DONE": "false", "KATA_DISPATCHER_LEASE_MODE": ""}
    config, _ = cli.parse(base(template_file, "cleanup"), env)
    assert config.stage is settings.Stage.CLEANUP and not config.skip_done


def test_skip_done_from_environment(template_file: pathlib.Path) -> None:
    env = {
        "KATA_DISPATCHER_SKIP_DONE": "true",
        "KATA_DISPATCHER_RESULT_ANNOTATION": "katacontainers.io/kata-deploy.rel",
        "KATA_DISPATCHER_CONFIG_HASH": "0123456789abcdef",
    }
    config, _ = cli.parse(base(template_file), env)
    assert config.skip_done
    assert config.result_annotation == "katacontainers.io/kata-deploy.rel"
    assert config.config_hash == "0123456789abcdef"
    assert config.done_label == "katacontainers.io/kata-runtime"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--skip-done"], "--skip-done needs --result-annotation and --config-hash"),
        (["--skip-done", "--config-hash", "ab"], "--skip-done needs --result-annotation"),
        (["--max-failed-nodes", "ten"], "is not a count (3) or a percentage (1%)"),
        (["--max-failed-nodes", "101%"], "more than 100%"),
        (["--anchor-configmap", "Not_A_Name"], "is not a valid ConfigMap name"),
        (["--lease-mode", "yield"], "--lease-mode needs --lease"),
        (["--lease", "UPPER"], "--lease 'UPPER' is not a valid object name"),
        (
            ["--delete-cronjob", "r"],
            "--delete-cronjob is not a flag of `kata-dispatcher install` (only of "
            "`kata-dispatcher cleanup`)",
        ),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_skip_done_and_budget_flags_are_usage_errors(
    template_file: pathlib.Path,
    extra: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse([*base(template_file), *extra], {})
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_skip_clean_needs_the_annotation(
    template_file: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse([*base(template_file, "cleanup"), "--skip-clean"], {})
    assert info.value.code == 2
    assert "--skip-clean needs --result-annotation" in capsys.readouterr().err
    key = "katacontainers.io/kata-deploy.rel"
    config, _ = cli.parse(
        [*base(template_file, "cleanup"), "--skip-clean", "--result-annotation", key], {}
    )
    assert config.skip_clean and config.result_annotation == key


def test_selector_from_environment(template_file: pathlib.Path) -> None:
    config, _ = cli.parse(base(template_file), {"KATA_DISPATCHER_SELECTOR": "kata=yes"})
    assert config.selector == "kata=yes"


def test_command_line_wins_over_environment(template_file: pathlib.Path) -> None:
    config, _ = cli.parse(
        [*base(template_file), "--parallelism", "2"], {"KATA_DISPATCHER_PARALLELISM": "9"}
    )
    assert config.parallelism == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KATA_DISPATCHER_PARALLELISM": "0"}, "KATA_DISPATCHER_PARALLELISM='0': "),
        ({"KATA_DISPATCHER_PARALLELISM": "many"}, "='many': 'many' is not a whole number"),
        ({"KATA_DISPATCHER_DRY_RUN": "maybe"}, "DRY_RUN='maybe': expected true or false"),
        ({"KATA_DISPATCHER_LEASE_MODE": "never"}, "LEASE_MODE='never': choose from wait"),
        ({"KATA_DISPATCHER_TIMEOUT": "-1"}, "zero or more"),
    ],
)
def test_bad_environment_values_are_usage_errors(
    template_file: pathlib.Path,
    env: dict[str, str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse(base(template_file), env)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_namespace_precedence(template_file: pathlib.Path, tmp_path: pathlib.Path) -> None:
    sa = tmp_path / "namespace"
    sa.write_text("from-file\n", encoding="utf-8")
    argv = ["install", "--template", str(template_file), "--owner-job", "d"]
    assert (
        cli.parse([*argv, "--namespace", "flag"], {"POD_NAMESPACE": "pod"}, sa_namespace_file=sa)[
            0
        ].namespace
        == "flag"
    )
    assert cli.parse(argv, {"POD_NAMESPACE": "pod"}, sa_namespace_file=sa)[0].namespace == "pod"
    assert cli.parse(argv, {}, sa_namespace_file=sa)[0].namespace == "from-file"
    with pytest.raises(SystemExit):
        cli.parse(argv, {}, sa_namespace_file=tmp_path / "absent")


def test_nodes_and_selector_are_exclusive_and_empty_means_unset(
    template_file: pathlib.Path,
) -> None:
    with pytest.raises(SystemExit):
        cli.parse([*base(template_file), "--nodes", "a", "--selector", "k=v"], {})
    config, _ = cli.parse([*base(template_file), "--nodes", "", "--selector", " "], {})
    assert config.nodes == () and config.selector is None


def test_release_defaults_to_the_template_instance_label(template_file: pathlib.Path) -> None:
    config, template = cli.parse(base(template_file), {})
    assert config.release == "kata-deploy"
    assert template["metadata"]["name"] == "kata-deploy-install"


def test_remove_install_jobs_is_a_cleanup_flag(template_file: pathlib.Path) -> None:
    with pytest.raises(SystemExit):
        cli.parse([*base(template_file), "--remove-install-jobs", "x"], {})
    config, _ = cli.parse([*base(template_file, "cleanup"), "--remove-install-jobs", "x"], {})
    assert config.stage is settings.Stage.CLEANUP and config.remove_install_jobs == "x"


def test_kubeconfig_falls_back_to_kubeconfig_env(template_file: pathlib.Path) -> None:
    config, _ = cli.parse(base(template_file), {"KUBECONFIG": "/a/one:/b/two"})
    assert config.kubeconfig == pathlib.Path("/a/one")


def test_bad_template_is_exit_2(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text("kind: Pod\n", encoding="utf-8")
    code = cli.run(["install", "--template", str(bad), "--owner-job", "d", "--namespace", "n"], {})
    assert code == 2
    assert "t.yaml" in capsys.readouterr().err


def test_full_run_prints_one_json_line(make_api: MakeApi, run_job_mode: RunJobMode) -> None:
    api = make_api(4)
    api.scripts["worker-002"] = fakes.Script(succeed=False)
    code, captured = run_job_mode(api, "--parallelism", "2")
    assert code == errors.ExitCode.NODES_FAILED
    [line] = captured.out.splitlines()
    summary = json.loads(line)
    assert summary["succeeded"] == 3 and summary["failed"][0]["node"] == "worker-002"
    assert summary["peak_in_flight"] == 2
    assert summary["api_requests"] == api.api_requests
    startup = captured.err.splitlines()[0]
    assert f"kata-dispatcher {kata_dispatcher.__version__} starting with" in startup
    assert '"parallelism": 2' in startup


def test_json_logs(make_api: MakeApi, run_job_mode: RunJobMode) -> None:
    _, captured = run_job_mode(make_api(2), "--log-format", "json")
    lines = [json.loads(x) for x in captured.err.splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    created = [x for x in lines if "created Job" in x["message"]]
    assert created and created[0]["node"] == "worker-000"


def test_dry_run_prints_yaml(make_api: MakeApi, run_job_mode: RunJobMode) -> None:
    api = make_api(2)
    code, captured = run_job_mode(api, "--dry-run")
    assert code == 0
    docs = list(yaml.safe_load_all(captured.out))
    assert [d["spec"]["template"]["spec"]["nodeName"] for d in docs] == ["worker-000", "worker-001"]
    assert api.calls_of("create_job") == []


def test_missing_owner_is_exit_2_with_a_json_error(
    make_api: MakeApi, run_job_mode: RunJobMode
) -> None:
    code, captured = run_job_mode(make_api(2, owner=None))
    assert code == 2
    out = json.loads(captured.out)
    assert out["result"] == "error" and "owner Job kata/dispatcher not found" in out["error"]


def test_unreachable_api_is_exit_3(make_api: MakeApi, run_job_mode: RunJobMode) -> None:
    api = make_api(2)
    api.fail("list_jobs", *[errors.Transient("read", message="connection refused")] * 1000)
    code, captured = run_job_mode(api, "--retry-budget", "10")
    assert code == 3
    assert json.loads(captured.out)["exit_code"] == 3


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.parse(["--version"], {})
    assert capsys.readouterr().out.strip() == kata_dispatcher.__version__


def test_real_api_path_without_cluster_is_exit_2(
    template_file: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.run([*base(template_file), "--kubeconfig", str(tmp_path / "missing")], {})
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_module_entry_point_runs(template_file: pathlib.Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "kata_dispatcher", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip() == kata_dispatcher.__version__


def test_teardown_settings_from_flags_and_environment(tmp_path: pathlib.Path) -> None:
    config = cli.parse_teardown(
        ["delete-daemonset", "kata-deploy", "--timeout", "300"],
        {
            "POD_NAMESPACE": "kube-system",
            "KATA_DISPATCHER_TIMEOUT": "9",
            "KATA_DISPATCHER_DRY_RUN": "true",
            "KATA_DISPATCHER_KUBECONFIG": str(tmp_path / "kc"),
            "KATA_DISPATCHER_PROGRESS_INTERVAL": "5",
        },
    )
    assert config == settings.Teardown(
        daemonset="kata-deploy",
        namespace="kube-system",
        timeout=300,
        dry_run=True,
        kubeconfig=tmp_path / "kc",
        progress_interval=5,
    )
    env = {"KATA_DISPATCHER_NAMESPACE": "ns"}
    assert cli.parse_teardown(["delete-daemonset", "ds.v2"], env).namespace == "ns"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--template", "t.yaml"], {}, "--template is not a flag of"),
        (["--parallelism", "3", "--nodes", "a"], {}, "--parallelism is not a flag of"),
        ([], {"KATA_DISPATCHER_OWNER_JOB": "d"}, "KATA_DISPATCHER_OWNER_JOB is set, but"),
        ([], {"KATA_DISPATCHER_INSPECT_PODS": "true"}, "KATA_DISPATCHER_INSPECT_PODS is set"),
    ],
)
def test_job_flags_are_refused_with_delete_daemonset(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse_teardown(["delete-daemonset", "k", "--namespace", "n", *argv], env)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "`kata-dispatcher delete-daemonset`" in err


def test_empty_selection_variables_do_not_count_as_job_flags() -> None:
    env = {"KATA_DISPATCHER_NODES": "", "KATA_DISPATCHER_SELECTOR": " "}
    config = cli.parse_teardown(["delete-daemonset", "k", "--namespace", "n"], env)
    assert config.daemonset == "k"


@pytest.mark.parametrize("name", ["", "Kata", "kata_deploy", "-k", "k" * 254])
def test_a_bad_daemonset_name_is_exit_2(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse_teardown(["delete-daemonset", name, "--namespace", "n"], {})
    assert info.value.code == 2
    assert "delete-daemonset" in capsys.readouterr().err


def test_teardown_needs_a_namespace(tmp_path: pathlib.Path) -> None:
    with pytest.raises(SystemExit):
        cli.parse_teardown(["delete-daemonset", "k"], {}, sa_namespace_file=tmp_path / "absent")


TEARDOWN = ["delete-daemonset", "kata-deploy", "--namespace", "kata"]


def test_teardown_run_prints_one_json_line(
    clock: fakes.FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    api = fakes.FakeApi(clock, owner=None)
    api.add_daemonset("kata-deploy", nodes=["a", "b"])
    assert cli.run(TEARDOWN, {}, api=api, clock=clock) == 0
    captured = capsys.readouterr()
    [line] = captured.out.splitlines()
    summary = json.loads(line)
    assert summary["result"] == "deleted" and summary["exit_code"] == 0
    assert summary["daemonset"] == "kata-deploy" and summary["namespace"] == "kata"
    assert summary["pods_remaining"] == 0
    assert summary["api_requests"] == api.api_requests
    assert '"daemonset": "kata-deploy"' in captured.err.splitlines()[0]
    assert "finished: DaemonSet kata/kata-deploy deleted, exit 0" in captured.err


def test_teardown_of_an_absent_daemonset_is_exit_0(
    clock: fakes.FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.run(TEARDOWN, {}, api=fakes.FakeApi(clock, owner=None), clock=clock) == 0
    assert json.loads(capsys.readouterr().out)["result"] == "absent"


def test_teardown_timeout_is_exit_4(
    clock: fakes.FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    api = fakes.FakeApi(clock, owner=None)
    api.add_daemonset("kata-deploy", nodes=["a", "b"], stuck=["b"])
    code = cli.run([*TEARDOWN, "--timeout", "20"], {}, api=api, clock=clock)
    assert code == errors.ExitCode.TIMEOUT == 4
    summary = json.loads(capsys.readouterr().out)
    assert summary["result"] == "timeout" and summary["pods_remaining"] == 1
    assert summary["remaining"] == [{"pod": "kata-deploy-b", "node": "b", "terminating": True}]


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (errors.Transient("delete", status=503), 3),
        (errors.Forbidden("delete DaemonSet kata/kata-deploy", status=403), 2),
    ],
)
def test_teardown_errors_print_a_json_error(
    clock: fakes.FakeClock,
    capsys: pytest.CaptureFixture[str],
    fault: errors.ApiError,
    code: int,
) -> None:
    api = fakes.FakeApi(clock, owner=None)
    api.add_daemonset("kata-deploy")
    api.fail("delete_daemonset", *[fault] * 1000)
    assert cli.run([*TEARDOWN, "--retry-budget", "5"], {}, api=api, clock=clock) == code
    out = json.loads(capsys.readouterr().out)
    assert out["result"] == "error" and out["exit_code"] == code
    # the retries made before giving up (none for a 403, which is not retried)
    assert (out["retries"]["server_error"] > 0) == (code == 3)
