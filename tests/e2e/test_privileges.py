"""Privileges proven with real requests: each ServiceAccount of the chart, in both modes.

The chart's ServiceAccounts, Roles, ClusterRoles and bindings are rendered by `helm
template` (as `helm install` would for this server) and applied to the session fleet, one
mode after the other. A TokenRequest gives each ServiceAccount a real token, and every
request of tests/e2e/privileges.py is sent with it to the real kube-apiserver: writes
with `dryRun=All`, mostly on objects that do not exist, since the API authorizes a
request before it looks the object up. A 403 is a refusal; anything else (200, 201, 404,
422) is a request the authorizer let through. Each cell must be what the matrix says;
the README shows the same matrix (tests/docs/test_readme.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import urllib3
import yaml

from tests import evidence
from tests.cluster import kubeapi
from tests.cluster.cluster import Cluster
from tests.e2e import helpers, privileges
from tests.e2e.helpers import CHART, TIMES
from tests.e2e.privileges import FULL, NS, RELEASE, Who

VAP = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"
RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
MODES = {
    "daemonset": {Who.INSTALLER_DS: FULL, Who.DISPATCHER_DS: f"{FULL}-dispatcher"},
    "job": {Who.INSTALLER_JOB: FULL, Who.DISPATCHER_JOB: f"{FULL}-dispatcher"},
}


def _apply(fleet: Cluster, tmp: Path, mode: str) -> Path:
    version = str(kubeapi.get_json(fleet.api("VersionApi").get_code)["gitVersion"])
    out = helpers.helm(fleet, "template", RELEASE, str(CHART), "-n", NS,
                       "--set", f"deploymentMode={mode}", "--kube-version", version,
                       "--api-versions", VAP).stdout  # fmt: skip
    docs = [d for d in yaml.safe_load_all(out) if isinstance(d, dict) and d["kind"] in RBAC_KINDS]
    path = tmp / f"rbac-{mode}.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    helpers.kubectl(fleet, "apply", "-f", str(path))  # every object names its namespace
    return path


def _token(fleet: Cluster, sa: str) -> str:
    answer = kubeapi.get_json(
        fleet.core().create_namespaced_service_account_token,
        sa,
        NS,
        {"spec": {"audiences": [], "expirationSeconds": 600}},
    )
    return str(answer["status"]["token"])


def _status(http: urllib3.PoolManager, server: str, token: str, a: privileges.Action) -> int:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if a.body:
        kind = "application/merge-patch+json" if a.method == "PATCH" else "application/json"
        headers["Content-Type"] = kind
    response = http.request(
        a.method, server + a.path, body=a.body.encode() or None, headers=headers, timeout=10
    )
    return int(response.status)


def test_each_service_account_can_do_what_it_needs_and_nothing_else(
    fleet: Cluster, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    helpers.kubectl(fleet, "create", "namespace", NS)
    http = urllib3.PoolManager(ca_certs=str(fleet.certs.ca_cert))
    wrong: list[str] = []
    table: list[str] = []
    try:
        for mode, accounts in MODES.items():
            applied = _apply(fleet, tmp_path, mode)
            for who, sa in accounts.items():
                token = _token(fleet, sa)
                for action in privileges.MATRIX:
                    status = _status(http, fleet.server, token, action)
                    allowed = status not in (401, 403)
                    table.append(f"{who.value:34} {action.what:50} {status}")
                    if allowed != (who in action.allowed):
                        want = "allowed" if who in action.allowed else "refused"
                        wrong.append(f"{who.value}: {action.what}: want {want}, got HTTP {status}")
            helpers.kubectl(fleet, "delete", "-f", str(applied), "--ignore-not-found")
    finally:
        helpers.kubectl(fleet, "delete", "namespace", NS, "--wait=false", "--ignore-not-found")
        for kind in ("clusterrolebinding", "clusterrole"):
            helpers.kubectl(fleet, "delete", kind, "-l", f"app.kubernetes.io/instance={RELEASE}",
                            "--ignore-not-found")  # fmt: skip
        print("\n".join(["", "privileges matrix (real tokens, HTTP status):", *table]))  # noqa: T201
    assert not wrong, "\n".join(wrong)
    counts = {
        w.value: {
            "allowed": sum(w in a.allowed for a in privileges.MATRIX),
            "refused": sum(w not in a.allowed for a in privileges.MATRIX),
        }
        for w in Who
    }
    evidence.record(
        "privileges-matrix",
        area="privileges",
        what=f"{len(privileges.MATRIX)} requests sent with each ServiceAccount's real token, "
        "in both modes (the matrix above)",
        happened="; ".join(
            f"{who}: {c['allowed']} allowed, {c['refused']} refused with 403"
            for who, c in counts.items()
        ),
        test="tests/e2e/test_privileges.py::"
        "test_each_service_account_can_do_what_it_needs_and_nothing_else",
        stable={"requests": len(table), "per_account": counts},
    )
    TIMES[f"privileges matrix: {len(table)} requests"] = time.monotonic() - t0


@pytest.mark.parametrize("who", list(Who), ids=lambda w: w.name)
def test_the_matrix_names_a_need_for_every_account(who: Who) -> None:
    assert any(who in a.allowed for a in privileges.MATRIX)
