"""The chart's RBAC, read from what it renders: no wildcard, nothing beyond the list.

For the defaults, every ci/*-values.yaml and both try-kata files, each in DaemonSet and
job mode (job mode with the reconcile CronJob too), rendered as `helm install` would for
a 1.36 server (so the node policy is in): every Role and ClusterRole rule names its API
groups, resources and verbs without `*`, has no nonResourceURLs, and grants only verbs
from the list below for its resource (by name only, where the list says so). The real
requests those rules must allow and refuse are e2e's (tests/e2e/test_node_policy.py, and
each scenario's own real tokens).
"""

from __future__ import annotations

import pathlib
import subprocess
from typing import Any

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm-chart" / "kata-deploy"
SCENARIOS = [
    None,
    *sorted(CHART.glob("ci/*-values.yaml")),
    *sorted(CHART.glob("try-kata-*.values.yaml")),
]
MODES = {
    "daemonset": ["--set", "deploymentMode=daemonset"],
    "job": ["--set", "deploymentMode=job"],
    "job+reconcile": ["--set", "deploymentMode=job", "--set", "job.reconcile.enabled=true"],
}
VAP = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"
SERVER = ["--kube-version", "v1.36.0", "--api-versions", VAP]

# (API group, resource) -> the verbs any rule of the chart may grant on it.
ALLOWED: dict[tuple[str, str], set[str]] = {
    ("", "nodes"): {"get", "list", "patch"},
    ("", "events"): {"create"},
    ("", "pods"): {"list"},
    ("", "configmaps"): {"get"},
    ("apps", "daemonsets"): {"get", "list", "watch", "delete"},
    ("batch", "jobs"): {"create", "list", "watch", "delete", "patch"},
    ("batch", "cronjobs"): {"delete"},
    ("coordination.k8s.io", "leases"): {"create", "get", "update", "delete"},
}
# Verbs on these may be granted only for named objects (resourceNames).
BY_NAME_ONLY = {
    ("apps", "daemonsets"),
    ("batch", "cronjobs"),
    ("", "configmaps"),
}
# ...and on these, every verb but these (RBAC cannot limit `create` by name).
BY_NAME_BUT = {("coordination.k8s.io", "leases"): {"create"}}

Obj = dict[str, Any]


def _rules(values: pathlib.Path | None, mode: list[str]) -> list[tuple[str, Obj]]:
    cmd = ["helm", "template", "kata-deploy", str(CHART), "--namespace", "kata-deploy",
           *SERVER, *mode]  # fmt: skip
    if values is not None:
        cmd += ["-f", str(values)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    found = []
    for doc in yaml.safe_load_all(out):
        if doc and doc["kind"] in ("Role", "ClusterRole"):
            for rule in doc.get("rules") or []:
                found.append((f"{doc['kind']}/{doc['metadata']['name']}", rule))
    return found


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("values", SCENARIOS, ids=lambda v: v.name if v else "defaults")
def test_no_wildcard_and_nothing_beyond_the_list(values: pathlib.Path | None, mode: str) -> None:
    rules = _rules(values, MODES[mode])
    assert rules, "no RBAC rendered"
    for where, rule in rules:
        assert "nonResourceURLs" not in rule, where
        for key in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in (rule.get(key) or []), f"{where}: wildcard in {key}: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                allowed = ALLOWED.get((group, resource))
                assert allowed is not None, f"{where}: grants {group}/{resource}: {rule}"
                extra = set(rule["verbs"]) - allowed
                assert not extra, f"{where}: {sorted(extra)} on {group or 'core'}/{resource}"
                if (group, resource) in BY_NAME_ONLY:
                    assert rule.get("resourceNames"), f"{where}: {resource} not limited by name"
                if set(rule["verbs"]) - BY_NAME_BUT.get((group, resource), set(rule["verbs"])):
                    assert rule.get("resourceNames"), f"{where}: {resource} not limited by name"


def test_the_policy_is_rendered_for_a_server_that_offers_it() -> None:
    cmd = ["helm", "template", "kata-deploy", str(CHART), *SERVER]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    kinds = [d["kind"] for d in yaml.safe_load_all(out) if d]
    assert kinds.count("ValidatingAdmissionPolicy") == 1
    assert kinds.count("ValidatingAdmissionPolicyBinding") == 1
