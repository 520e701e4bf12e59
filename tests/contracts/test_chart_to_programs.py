"""What the chart renders, read by the programs that will consume it.

The chart and the two programs are tested separately; this suite checks the seam between
them (docs/contracts.md) with real `helm template` output and the programs' own parsers,
so a renamed flag, a schema field the installer rejects or a mount outside /host fails
here rather than on a node. Cases, for the defaults, every ci/*-values.yaml and both
try-kata-*.values.yaml:
- the installer-config ConfigMap's installer.yaml loads with kata_installer.config;
- every installer.yaml key is the values.yaml key it comes from, at the same path (by
  values.schema.json), except installer.yaml's own `version` and `nodeLabel`; also with
  the seed's custom runtime and TEE options set;
- every kata-installer container's args and literal env values parse with the
  installer's CLI and name a command;
- every installer hostPath volume is mounted at /host + its path;
- every kata-dispatcher container's args and env parse with the dispatcher's CLI: the
  command first (install and cleanup, whose stage is the command, given the job template
  ConfigMap it mounts, the template passing the dispatcher's checks; delete-daemonset);
- the result annotation NOTES.txt tells operators to read is the one the installer
  writes (report.annotation_key), for short and for over-long release names;
- the values tests/bench/bench_rollout.py renders the chart with still render, with the
  parallelism it asks for (a benchmark runs now and then; its values must not rot).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
from typing import Any

import pytest
import yaml
from kata_dispatcher import cli as dispatcher_cli
from kata_installer import cli as installer_cli
from kata_installer import config as installer_config
from kata_installer import report as installer_report

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm-chart" / "kata-deploy"
SCENARIOS = [
    None,
    *sorted(CHART.glob("ci/*-values.yaml")),
    *sorted(CHART.glob("try-kata-*.values.yaml")),
]
JOB_MODE = ["--set", "deploymentMode=job"]
# installer.yaml keys with no values.yaml counterpart (node-installer/README.md)
INSTALLER_ONLY = {"version", "nodeLabel"}

Obj = dict[str, Any]


def _render(values: pathlib.Path | None, extra: list[str]) -> list[Obj]:
    cmd = ["helm", "template", "kata-deploy", str(CHART), "--namespace", "kata-deploy"]
    if values is not None:
        cmd += ["-f", str(values)]
    out = subprocess.run(cmd + extra, check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _scenario_id(values: pathlib.Path | None) -> str:
    return values.name if values else "defaults"


def _pod_specs(docs: list[Obj]) -> list[tuple[str, Obj]]:
    """Every pod spec the chart renders, including those inside the job templates."""
    specs: list[tuple[str, Obj]] = []
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind in ("Job", "DaemonSet"):
            specs.append((f"{kind}/{name}", doc["spec"]["template"]["spec"]))
        if kind == "ConfigMap":
            for key, text in (doc.get("data") or {}).items():
                if key.endswith("-job.yaml"):
                    job = yaml.safe_load(text)
                    specs.append((f"{name}:{key}", job["spec"]["template"]["spec"]))
    return specs


def _containers(spec: Obj) -> list[Obj]:
    return [*(spec.get("initContainers") or []), *spec["containers"]]


def _configmap(docs: list[Obj], name: str) -> Obj:
    matches = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name]
    assert matches, f"no ConfigMap {name} rendered"
    return matches[0]


@pytest.fixture(scope="module", params=SCENARIOS, ids=_scenario_id)
def rendered(request: pytest.FixtureRequest) -> list[list[Obj]]:
    """Each scenario as given, and again forced into job mode."""
    values = request.param
    return [_render(values, []), _render(values, JOB_MODE)]


def _installer_yaml(docs: list[Obj]) -> Obj:
    maps = [
        d
        for d in docs
        if d["kind"] == "ConfigMap"
        and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "installer-config"
    ]
    assert len(maps) == 1, "exactly one installer-config ConfigMap"
    data: Obj = yaml.safe_load(maps[0]["data"]["installer.yaml"])
    return data


def test_installer_config_loads_with_the_installer(rendered: list[list[Obj]]) -> None:
    for docs in rendered:
        cfg = installer_config.parse(_installer_yaml(docs), source="installer.yaml")
        assert cfg.shims or cfg.custom_runtimes, "the rendered config enables nothing"


def _values_paths_missing(data: Obj, schema: Obj, path: str) -> list[str]:
    """installer.yaml keys under `path` that values.schema.json does not have there."""
    missing = []
    for key, value in data.items():
        here = f"{path}.{key}" if path else str(key)
        if not path and key in INSTALLER_ONLY:
            continue
        sub = schema.get("properties", {}).get(key)
        if sub is None and isinstance(schema.get("additionalProperties"), dict):
            sub = schema["additionalProperties"]
        if sub is None:
            missing.append(here)
        elif isinstance(value, dict):
            missing += _values_paths_missing(value, sub, here)
    return missing


def test_installer_config_keys_are_values_keys(rendered: list[list[Obj]]) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    seed = CHART / "tests" / "values" / "seed-custom-runtimes.yaml"
    everything = _render(
        seed,
        ["--set", "customRuntimes.enabled=true",
         "--set", "shims.qemu-snp.crio.guestPull=true",
         "--set", "shims.qemu-snp.agent.httpsProxy=http://proxy:3128"],
    )  # fmt: skip
    for docs in [*rendered, everything]:
        data = _installer_yaml(docs)
        assert _values_paths_missing(data, schema, "") == []
    data = _installer_yaml(everything)
    assert data["customRuntimes"]["runtimes"]["my-gpu-runtime"]["crio"]["pullType"] == "guest-pull"
    assert data["shims"]["qemu-snp"]["agent"]["httpsProxy"] == "http://proxy:3128"


def test_installer_containers_parse_with_the_installer_cli(rendered: list[list[Obj]]) -> None:
    seen = 0
    for docs in rendered:
        for where, spec in _pod_specs(docs):
            for c in _containers(spec):
                if c.get("command") != ["kata-installer"]:
                    continue
                seen += 1
                # the literal env values too, read by the installer's own twin rules
                args = installer_cli.parse_args(c.get("args", []), _env_of(c))
                assert args.command in installer_cli.COMMANDS, f"{where}/{c['name']}"
                assert args.host_root == "/host", where
                env = {e["name"]: e for e in c.get("env", [])}
                assert "KATA_INSTALLER_NODE_NAME" in env, where
    assert seen, "no kata-installer container rendered"


def test_installer_host_mounts_sit_under_host_root(rendered: list[list[Obj]]) -> None:
    for docs in rendered:
        for where, spec in _pod_specs(docs):
            host_paths = {
                v["name"]: v["hostPath"]["path"] for v in spec.get("volumes", []) if "hostPath" in v
            }
            for c in _containers(spec):
                for m in c.get("volumeMounts", []):
                    if m["name"] in host_paths:
                        expected = "/host" + host_paths[m["name"]]
                        assert m["mountPath"] == expected, f"{where}/{c['name']}: {m}"


def _env_of(container: Obj) -> dict[str, str]:
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[e["name"]] = "kata-deploy"
    return env


def test_dispatcher_containers_parse_with_the_dispatcher_cli(
    rendered: list[list[Obj]], tmp_path: pathlib.Path
) -> None:
    seen = 0
    for docs in rendered:
        for where, spec in _pod_specs(docs):
            mounts_cm = {
                v["name"]: v["configMap"]["name"]
                for v in spec.get("volumes", [])
                if "configMap" in v
            }
            for c in _containers(spec):
                if c.get("command") != ["kata-dispatcher"]:
                    continue
                seen += 1
                args = list(c.get("args", []))
                # Materialise the mounted ConfigMaps the way the kubelet would, and point
                # the args at the copies.
                for m in c.get("volumeMounts", []):
                    if m["name"] not in mounts_cm:
                        continue
                    local = tmp_path / m["name"]
                    local.mkdir(exist_ok=True)
                    for key, text in _configmap(docs, mounts_cm[m["name"]])["data"].items():
                        (local / key).write_text(text)
                    args = [a.replace(m["mountPath"], str(local), 1) for a in args]
                if args[0] == "delete-daemonset":
                    teardown = dispatcher_cli.parse_teardown(args, _env_of(c))
                    assert teardown.namespace == "kata-deploy", where
                    continue
                settings, template = dispatcher_cli.parse(args, _env_of(c))
                assert settings.namespace == "kata-deploy", where
                assert settings.stage.value == args[0], where
                assert template["kind"] == "Job", where
    if any(d["kind"] == "Job" for docs in rendered for d in docs):
        assert seen, "job mode renders no kata-dispatcher container"


def test_helm_is_the_real_binary() -> None:
    out = subprocess.run(["helm", "version", "--short"], check=True, capture_output=True, text=True)
    assert out.stdout.startswith("v4."), out.stdout
    assert os.environ.get("HELM_PLUGINS"), "run through make: HELM_* must point into .tools"


@pytest.mark.parametrize(
    ("release", "suffix"), [("kata-deploy", ""), ("kata", "ci"), ("r" * 53, "s" * 20)]
)
def test_notes_name_the_annotation_the_installer_writes(release: str, suffix: str) -> None:
    out = subprocess.run(
        ["helm", "install", release, str(CHART), "--dry-run=client", "--namespace", "kd",
         "--set", f"env.multiInstallSuffix={suffix}"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    key = installer_report.annotation_key(release, suffix)
    assert f"RESULT:.metadata.annotations.{key.replace('.', chr(92) + '.')}'" in out, out


@pytest.mark.parametrize("parallelism", [10, 500])
def test_the_rollout_benchmark_values_render(parallelism: int) -> None:
    from tests.bench import bench_rollout

    docs = _render(None, bench_rollout.chart_args(parallelism))
    dispatchers = [
        list(c.get("args", []))
        for d in docs
        if d["kind"] == "Job"
        for c in d["spec"]["template"]["spec"]["containers"]
        if c.get("command") == ["kata-dispatcher"]
    ]
    assert {a[0] for a in dispatchers} == {"install", "cleanup"}, dispatchers
    for args in dispatchers:
        assert args[args.index("--parallelism") + 1] == str(parallelism), args
