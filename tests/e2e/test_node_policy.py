"""A node can only touch itself: the chart's ValidatingAdmissionPolicy, with real tokens.

The chart's installer ServiceAccount, ClusterRole (nodes: get, patch), its binding and the
policy with its binding are rendered by `helm template` and applied to the session
fleet. Two Node objects stand for two nodes; a Pod of the installer's ServiceAccount
pinned to node A stands for A's installer pod, and a TokenRequest bound to that Pod gives
the token a kubelet would project into it (its `authentication.kubernetes.io/node-name`
claim says A). With that token, through the installer's own API client (kube.ApiKube):
- patching node B, even only our label, is denied with the policy's message;
- patching A's unrelated labels, or an annotation not ours, or its taints, is denied;
- A's own label and result annotation may be set and removed;
- a token of the same ServiceAccount bound to no pod (no node claim) changes nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kata_installer import errors, kube

from tests import evidence
from tests.cluster import kubeapi
from tests.cluster.certs import kubeconfig_text
from tests.cluster.cluster import Cluster
from tests.e2e import helpers
from tests.e2e.helpers import CHART, TIMES

RELEASE = "own"
NS = "own-node"
SA = f"{RELEASE}-kata-deploy"
A, B = "own-node-a", "own-node-b"
LABEL = "katacontainers.io/kata-runtime"
ANNOTATION = f"katacontainers.io/kata-deploy.{RELEASE}"


def fleet_version(fleet: Cluster) -> str:
    """The apiserver's version, as `helm install` would learn it."""
    info = kubeapi.get_json(fleet.api("VersionApi").get_code)
    return str(info["gitVersion"])


def _apply_chart(fleet: Cluster, tmp: Path) -> None:
    # What `helm install` learns from the server by itself; `helm template` must be told.
    vap = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"
    out = helpers.helm(fleet, "template", RELEASE, str(CHART), "-n", NS,
                       "--kube-version", fleet_version(fleet), "--api-versions", vap,
                       ).stdout  # fmt: skip
    kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy",
             "ValidatingAdmissionPolicyBinding"}  # fmt: skip
    docs = [
        d
        for d in yaml.safe_load_all(out)
        if isinstance(d, dict)
        and d["kind"] in kinds
        and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "installer"
    ]
    assert {d["kind"] for d in docs} == kinds, "the chart rendered no node policy"
    (tmp / "objects.yaml").write_text(yaml.safe_dump_all(docs))
    helpers.kubectl(fleet, "create", "namespace", NS)
    helpers.kubectl(fleet, "apply", "-n", NS, "-f", str(tmp / "objects.yaml"))


def _token(fleet: Cluster, pod: dict[str, Any] | None) -> str:
    spec: dict[str, Any] = {"audiences": [], "expirationSeconds": 3600}
    if pod is not None:
        meta = pod["metadata"]
        spec["boundObjectRef"] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": meta["name"],
            "uid": meta["uid"],
        }
    answer = kubeapi.get_json(
        fleet.core().create_namespaced_service_account_token, SA, NS, {"spec": spec}
    )
    return str(answer["status"]["token"])


def _as_installer(fleet: Cluster, tmp: Path, token: str, name: str) -> kube.ApiKube:
    path = tmp / f"{name}.kubeconfig"
    path.write_text(
        kubeconfig_text(server=fleet.server, ca_cert=fleet.certs.ca_cert, user={"token": token})
    )
    return kube.ApiKube(kubeconfig=str(path))


def _add(key: str, value: str, *, where: str = "labels") -> dict[str, str]:
    return {"op": "add", "path": f"/metadata/{where}/{key.replace('/', '~1')}", "value": value}


def _denied(api: kube.ApiKube, node: str, ops: list[dict[str, Any]]) -> str:
    with pytest.raises(errors.KubeUnavailable) as info:
        api.patch_node(api.get_node(node), ops)
    return str(info.value)


def test_an_installer_token_can_change_only_its_own_node(fleet: Cluster, tmp_path: Path) -> None:
    t0 = time.monotonic()
    core = fleet.core()
    for name in (A, B):
        core.create_node({"metadata": {"name": name, "labels": {"team": "x"},
                                       "annotations": {"owner": "ops"}}})  # fmt: skip
    try:
        _apply_chart(fleet, tmp_path)
        pod = kubeapi.get_json(core.create_namespaced_pod, NS, {
            "metadata": {"name": "installer-on-a"},
            "spec": {"nodeName": A, "serviceAccountName": SA, "automountServiceAccountToken": False,
                     "containers": [{"name": "c", "image": "unused"}]},
        })  # fmt: skip
        on_a = _as_installer(fleet, tmp_path, _token(fleet, pod), "on-a")

        # The policy takes effect once the apiserver has compiled it: wait for the first
        # denial, bounded.
        def b_refused() -> bool:
            try:
                on_a.patch_node(on_a.get_node(B), [_add(LABEL, "true")])
            except errors.KubeUnavailable:
                return True
            core.patch_node(B, {"metadata": {"labels": {LABEL: None}}})
            return False

        helpers.wait_for("the node policy to take effect", b_refused, timeout=60)
        message = _denied(on_a, B, [_add(LABEL, "true")])
        assert f"may change only the node its pod runs on ({A}), not {B}" in message, message
        assert LABEL not in on_a.get_node(B).labels

        assert "may change only the label" in _denied(on_a, A, [_add("team", "y")])
        assert "may change only the label" in _denied(on_a, A, [_add("kata", "1")])
        assert "may change only the annotation" in _denied(
            on_a, A, [_add("owner", "me", where="annotations")]
        )
        taint = {
            "op": "add",
            "path": "/spec/taints",
            "value": [{"key": "k", "effect": "NoSchedule"}],
        }
        assert "may not change the spec" in _denied(on_a, A, [taint])

        own = on_a.get_node(A)
        on_a.patch_node(own, [_add(LABEL, "true"), _add(ANNOTATION, "{}", where="annotations")])
        after = on_a.get_node(A)
        assert after.labels[LABEL] == "true" and (after.annotations or {})[ANNOTATION] == "{}"
        assert after.labels["team"] == "x"
        on_a.patch_node(after, [
            {"op": "remove", "path": f"/metadata/labels/{LABEL.replace('/', '~1')}"},
            {"op": "remove", "path": f"/metadata/annotations/{ANNOTATION.replace('/', '~1')}"},
        ])  # fmt: skip
        assert LABEL not in on_a.get_node(A).labels

        unbound = _as_installer(fleet, tmp_path, _token(fleet, None), "unbound")
        assert "its token names no node" in _denied(unbound, A, [_add(LABEL, "true")])
        evidence.record(
            "own-node-policy",
            area="privileges",
            what="an installer pod's real token on node A patches node B, A's other labels, "
            "annotations and taints, then its own label; a token bound to no pod patches A",
            happened=f'node B refused ("{message[message.index("may change only") :][:90]}"); '
            "A's other labels, annotations and spec refused; its own label and result "
            "annotation allowed; "
            "the unbound token refused",
            test="tests/e2e/test_node_policy.py::test_an_installer_token_can_change_only_its_own_node",
            stable={"refused": 6, "allowed": 2},
        )
    finally:
        for name in (A, B):
            core.delete_node(name)
        helpers.kubectl(fleet, "delete", "namespace", NS, "--wait=false", "--ignore-not-found")
        for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy",
                     "clusterrolebinding", "clusterrole"):  # fmt: skip
            helpers.kubectl(fleet, "delete", kind, "-l", f"app.kubernetes.io/instance={RELEASE}",
                            "--ignore-not-found")  # fmt: skip
    TIMES["a node can only touch itself (policy, real tokens)"] = time.monotonic() - t0
