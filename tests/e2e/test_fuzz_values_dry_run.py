"""Fuzzed values the chart renders, sent to the real kube-apiserver as a server-side
dry run (issue 13, "Fuzzed values"): every object is accepted, or the test names the
case, the object and the server's answer.

The contract suite (tests/contracts/test_fuzz_values.py) runs the same cases through
`helm template` and a cheap local model of the server's checks; this is the real
answer for the cases that render. Cases: every hand-picked hostile case and
GENERATED Hypothesis cases (fixed seed, so a failure reproduces), rendered as release
RELEASE into this test's own namespace. Each rendered manifest goes to
`kubectl create --dry-run=server` (one request per object, each in the namespace the
chart gives it: the installer's Events Role lives in `default`); in job mode the per-node
Jobs the dispatcher would build from the job-templates ConfigMap (its own
`jobs.build`, for a 253-character node name) go too. Nothing is stored: the namespace
is the only thing created, and it is deleted at the end.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import pathlib
import time
from typing import Any

from kata_dispatcher import jobs as dispatcher_jobs

from tests import evidence
from tests.cluster.cluster import Cluster
from tests.contracts import apichecks, valuecases
from tests.contracts.valuecases import Verdict
from tests.e2e.helpers import TIMES, kubectl

GENERATED = int(os.environ.get("KATA_FUZZ_VALUES_DRY_RUN_EXAMPLES", "40"))
NAMESPACE = "fuzz-dry-run"
RELEASE = "fuzzdry"
NODE = valuecases.node_name(253)

Obj = dict[str, Any]


def _per_node_jobs(docs: apichecks.Documents) -> list[Obj]:
    """What the dispatcher would create from each job template the release ships."""
    owner = dispatcher_jobs.Owner(
        name=f"{RELEASE}-dispatcher", uid="00000000-0000-4000-8000-000000000001"
    )
    built = []
    for _, doc in docs:
        if doc.get("kind") != "ConfigMap":
            continue
        for key, text in (doc.get("data") or {}).items():
            if not key.endswith("-job.yaml"):
                continue
            template = dispatcher_jobs.check_template(apichecks.load(text), source=key)
            stage = key.removesuffix("-job.yaml")
            built.append(
                dispatcher_jobs.build(
                    template,
                    NODE,
                    owner=owner,
                    release=RELEASE,
                    stage=stage,
                    namespace=NAMESPACE,
                    digest=dispatcher_jobs.template_hash(template),
                )
            )
    return built


def _dry_run(
    cluster: Cluster, index: int, out: valuecases.Outcome, workdir: pathlib.Path
) -> tuple[int, list[str]]:
    """(objects sent, problems the server found with them: empty when all accepted)."""
    case = out.case
    docs = apichecks.documents(out.manifest)
    built = _per_node_jobs(docs)
    # The chart's objects as helm wrote them (the server's YAML reading, not PyYAML's);
    # the per-node Jobs as the dispatcher sends them: JSON of what it built.
    manifest = workdir / f"{index:04d}.manifest.yaml"
    manifest.write_text(out.manifest, encoding="utf-8")
    files = ["-f", str(manifest)]
    if built:
        extra = workdir / f"{index:04d}.per-node-jobs.json"
        extra.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": built}))
        files += ["-f", str(extra)]
    objects = len(docs) + len(built)
    done = kubectl(cluster, "create", "--dry-run=server", "-o", "name", *files, check=False)
    if done.returncode == 0:
        accepted = len(done.stdout.split())
        if accepted == objects:
            return objects, []
        return objects, [f"{case.name}: the server answered for {accepted} of {objects} objects"]
    return objects, [f"{case.name}: {line}" for line in done.stderr.splitlines() if line.strip()]


def test_rendered_fuzzed_values_pass_a_server_dry_run(
    fleet: Cluster, tmp_path: pathlib.Path
) -> None:
    start = time.monotonic()
    kubectl(fleet, "create", "namespace", NAMESPACE)
    try:
        cases = list(valuecases.cases(GENERATED))
        rendered = []
        for c in cases:
            out = valuecases.render(c, workdir=tmp_path, release=RELEASE, namespace=NAMESPACE)
            assert out.verdict is not Verdict.BROKEN, f"helm failed on {c!r}:\n{out.error}"
            if out.verdict is Verdict.RENDERED:
                rendered.append(out)
        # kubectl spends most of its time waiting on the server: a few at a time.
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(
                pool.map(lambda io: _dry_run(fleet, io[0], io[1], tmp_path), enumerate(rendered))
            )
        found = [p for _, problems in answers for p in problems]
        assert not found, "the server refused what the chart rendered:\n" + "\n".join(found[:40])
        objects = sum(n for n, _ in answers)
        evidence.record(
            "fuzz-values-server-dry-run",
            area="fuzz",
            what=f"{len(cases)} hostile and generated values files (fixed seed) through "
            "`helm template`; what rendered sent to kube-apiserver as a server-side dry run, "
            "with the per-node Jobs the dispatcher builds from it",
            happened=f"{len(rendered)} rendered: all {objects} objects accepted; the rest "
            "refused by the chart naming the key; 0 Go template errors",
            test="tests/e2e/test_fuzz_values_dry_run.py::"
            "test_rendered_fuzzed_values_pass_a_server_dry_run",
            stable={"cases": len(cases), "refused_by_the_server": 0},
            measured={"rendered": len(rendered), "objects": objects},
        )
        TIMES[f"fuzzed values server dry run ({len(cases)} cases, {len(rendered)} rendered)"] = (
            time.monotonic() - start
        )
    finally:
        kubectl(fleet, "delete", "namespace", NAMESPACE, "--wait=false", check=False)
