"""Hostile and generated values: refused naming the key, or objects a server accepts.

Every case runs the real `helm template` (as for a 1.36 server, so every template
renders; valuecases.py) and must end one of two ways: refused with a message naming a
key it set (`at '/job/parallelism'` from values.schema.json, validate.yaml's own
`job.nodes[0]: ...`, or Helm's `type mismatch on node-feature-discovery`), or rendered.
Any other failure, a Go template error above all (nil pointer, error calling, can't
evaluate field, wrong type for value, rendered text that is not YAML), is a chart bug.
What renders must pass apichecks.py (what a server checks cheaply), load with the
installer's config parser and parse with the dispatcher's CLI. Cases:
- every hand-picked case (valuecases.hostile(): empty strings, unicode, characters
  toYaml cannot write, 253/254-character node names, huge lists, YAML anchors and merge
  keys, numbers for strings and back, null for maps, deep junk in closed objects, rules
  of the server and the programs), each meeting its own expectation (render, refuse,
  either); what renders also keeps every podLabels and podAnnotations entry;
- GENERATED Hypothesis cases over values.schema.json (valuecases.case_strategy());
- 5000 names in job.nodes render the same objects as one name, but for the list itself
  (nothing is rendered per node);
- a YAML alias and a merge key reach what they point at.
The session prints the counts by verdict and keeps every rendered case under
tests/contracts/results/fuzz-values/ (conftest.py); tests/e2e/test_fuzz_values_dry_run.py
renders the same cases and sends them to a real server as a dry run.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from kata_dispatcher import cli as dispatcher_cli
from kata_dispatcher import jobs as dispatcher_jobs
from kata_installer import config as installer_config
from kata_installer import errors as installer_errors

from tests.contracts import apichecks, valuecases
from tests.contracts.valuecases import Expect, Outcome, Verdict

# Each case is one helm run (0.1-0.3 s); raise it for a longer hunt.
GENERATED = int(os.environ.get("KATA_FUZZ_VALUES_EXAMPLES", "200"))

Obj = dict[str, Any]


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("fuzz-values")


def _run(c: valuecases.Case, workdir: pathlib.Path, record: valuecases.Record) -> Outcome:
    return record.add(valuecases.render(c, workdir=workdir))


def judge(out: Outcome, workdir: pathlib.Path) -> None:
    """Fail, saying why, unless `out` is a refusal naming a key of the case or a render
    that every local check accepts; and unless that is what the case expects."""
    c = out.case
    shown = f"{c.name}\n--- values ({len(c.text)} bytes):\n{c.text[:1500]}"
    assert out.verdict is not Verdict.BROKEN, f"helm failed, not naming a key: {shown}\n{out.error}"
    if out.verdict is Verdict.RENDERED:
        assert c.expect is not Expect.REFUSE, (
            f"rendered, but must be refused naming {c.keys}: {shown}"
        )
        docs = apichecks.documents(out.manifest)
        found = apichecks.problems(docs) + program_problems(docs, workdir)
        found += lost_values(apichecks.load(c.text) or {}, docs)
        assert not found, f"rendered what would be refused: {shown}\n" + "\n".join(found[:20])
        return
    assert c.expect is not Expect.RENDER, f"refused, but must render: {shown}\n{out.error}"
    assert out.names_a_key(), (
        f"refused without naming {c.keys} (named {out.named()}): {shown}\n{out.error}"
    )


# --- what the programs make of a render ----------------------------------------------


def program_problems(documents: apichecks.Documents, workdir: pathlib.Path) -> list[str]:
    """The installer's config parser on installer.yaml; the dispatcher's CLI on every
    dispatcher container, given the job templates it mounts."""
    docs = [doc for _, doc in documents]
    out = []
    for doc in docs:
        component = doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        if doc["kind"] == "ConfigMap" and component == "installer-config":
            try:
                installer_config.parse(
                    apichecks.load(doc["data"]["installer.yaml"]), source="installer.yaml"
                )
            except installer_errors.ConfigError as exc:
                out.append(f"installer.yaml: the installer refuses it: {exc}")
    templates = {
        doc["metadata"]["name"]: doc["data"]
        for doc in docs
        if doc["kind"] == "ConfigMap" and any(k.endswith("-job.yaml") for k in doc["data"])
    }
    for doc in docs:
        spec = _pod_spec(doc)
        if spec is None:
            continue
        for c in spec["containers"]:
            if c.get("command") == ["kata-dispatcher"]:
                where = f"{doc['kind']}/{doc['metadata']['name']}"
                out += _dispatcher_problems(where, c, spec, templates, workdir)
    return out


def lost_values(values: Obj, docs: apichecks.Documents) -> list[str]:
    """podLabels and podAnnotations missing from a pod template of the chart: it passes
    them through toYaml, which turns some strings into nothing, silently."""
    out = []
    for where, template in _pod_templates(docs):
        meta = template.get("metadata") or {}
        for field, key in (("podLabels", "labels"), ("podAnnotations", "annotations")):
            given = values.get(field) or {}
            got = meta.get(key) or {}
            missing = sorted(k for k, v in given.items() if got.get(k) != v)
            if missing:
                out.append(f"{where}: {field} {missing} did not reach the pod's {key}")
    return out


def _pod_templates(docs: apichecks.Documents) -> list[tuple[str, Obj]]:
    found = []
    for source, doc in docs:
        if not source.startswith(apichecks.OWN_TEMPLATES):
            continue  # the NFD subchart's pods
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in ("Job", "DaemonSet"):
            found.append((where, doc["spec"]["template"]))
        elif doc["kind"] == "CronJob":
            found.append((where, doc["spec"]["jobTemplate"]["spec"]["template"]))
        elif doc["kind"] == "ConfigMap":
            for key, text in doc["data"].items():
                if key.endswith("-job.yaml"):
                    found.append((f"{where}:{key}", apichecks.load(text)["spec"]["template"]))
    return found


def _pod_spec(doc: Obj) -> Obj | None:
    spec: Obj | None = None
    if doc["kind"] in ("Job", "DaemonSet"):
        spec = doc["spec"]["template"]["spec"]
    elif doc["kind"] == "CronJob":
        spec = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def _dispatcher_problems(
    where: str, container: Obj, spec: Obj, templates: dict[str, Obj], workdir: pathlib.Path
) -> list[str]:
    args = [str(a) for a in container.get("args", [])]
    env = {}
    for e in container.get("env", []):  # as the kubelet would fill them in
        field = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", "")
        env[e["name"]] = e.get("value") or (
            valuecases.NAMESPACE if field == "metadata.namespace" else "reconcile-1"
        )
    mounted = {
        v["name"]: v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v
    }
    for mount in container.get("volumeMounts", []):
        data = templates.get(mounted.get(mount["name"], ""))
        if data is None:
            continue
        local = workdir / "dispatcher-mount"
        local.mkdir(exist_ok=True)
        for key, text in data.items():
            (local / key).write_text(text, encoding="utf-8")
        args = [a.replace(mount["mountPath"], str(local), 1) for a in args]
    try:
        if args[:1] == ["delete-daemonset"]:
            dispatcher_cli.parse_teardown(args, env)
        else:
            dispatcher_cli.parse(args, env)
    except SystemExit:
        return [f"{where}: the dispatcher's CLI refuses its args {args}"]
    except dispatcher_jobs.TemplateError as exc:
        return [f"{where}: the dispatcher refuses its job template: {exc}"]
    return []


# --- the cases -----------------------------------------------------------------------


@pytest.mark.parametrize("case", valuecases.hostile(), ids=lambda c: c.name)
def test_hostile_values(
    case: valuecases.Case, workdir: pathlib.Path, record: valuecases.Record
) -> None:
    judge(_run(case, workdir, record), workdir)


@hsettings(
    max_examples=GENERATED,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(case=valuecases.case_strategy())
def test_generated_values(
    case: valuecases.Case, workdir: pathlib.Path, record: valuecases.Record
) -> None:
    # Session-scoped fixtures only: Hypothesis runs the body once per example.
    judge(_run(case, workdir, record), workdir)


def test_node_list_is_the_only_thing_that_grows(
    workdir: pathlib.Path, record: valuecases.Record
) -> None:
    one = _run(valuecases.huge_nodes(1), workdir, record)
    many = _run(valuecases.huge_nodes(5000), workdir, record)
    assert one.verdict is many.verdict is Verdict.RENDERED, many.error or one.error
    joined = ",".join(valuecases.workers(5000))
    assert many.manifest.count(joined) == 2, "install and cleanup each pass the list once"
    first = valuecases.workers(1)[0]
    assert many.manifest.replace(joined, "NODES") == one.manifest.replace(first, "NODES")


def test_aliases_and_merge_keys_reach_their_targets(
    workdir: pathlib.Path, record: valuecases.Record
) -> None:
    by_name = {c.name: c for c in valuecases.hostile()}
    alias = _run(by_name["alias: cleanup nodes are the install nodes"], workdir, record)
    nodes = {
        doc["metadata"]["name"]: args[args.index("--nodes") + 1]
        for _, doc in apichecks.documents(alias.manifest)
        if doc["kind"] == "Job"
        for args in [doc["spec"]["template"]["spec"]["containers"][0]["args"]]
    }
    assert nodes == {
        "kata-deploy-job-dispatcher": "worker-1,worker-2",
        "kata-deploy-job-cleanup": "worker-1,worker-2",
    }
    merged = _run(by_name["merge key: one TEE shim's settings reused"], workdir, record)
    config = next(
        yaml.safe_load(d["data"]["installer.yaml"])
        for _, d in apichecks.documents(merged.manifest)
        if d["kind"] == "ConfigMap" and "installer.yaml" in d.get("data", {})
    )
    assert config["shims"]["qemu-tdx"]["agent"]["httpsProxy"] == "http://proxy:3128"
    assert config["shims"]["qemu-tdx"]["crio"]["guestPull"] is True
    assert config["shims"]["qemu-tdx"]["supportedArches"] == ["amd64"]
