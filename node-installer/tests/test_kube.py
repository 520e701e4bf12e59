"""kube.py's translation of API failures into the installer's errors, and its retries.

Cases (no API server: the client call is a function that raises what the client would):
- 404 -> NotFound, 409 -> Conflict, 422 -> Unprocessable, 401/403 -> KubeUnavailable
  naming the RBAC the ServiceAccount needs, another 4xx -> KubeUnavailable with the code;
- 503 and 429 are retried and the call then succeeds; a connection error that lasts
  past the budget becomes KubeUnavailable;
- a guarded Node patch refused by its uid test (422) is a Conflict saying the node was
  re-created; the patch body starts with that test.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
from kata_installer import errors, kube
from kubernetes.client import exceptions as kexc
from urllib3 import exceptions as urlexc

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


@pytest.fixture
def api(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> kube.ApiKube:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    monkeypatch.setattr(kube, "_BUDGET_SECONDS", 2.0)
    return kube.ApiKube(kubeconfig=str(path))


def _raise(status: int) -> Any:
    def call() -> Any:
        raise kexc.ApiException(status=status, reason="reason")

    return call


@pytest.mark.parametrize(
    ("status", "error", "text"),
    [
        (404, errors.NotFound, "get x: not found"),
        (409, errors.Conflict, "get x: conflict"),
        (422, errors.Unprocessable, "get x: refused"),
        (403, errors.KubeUnavailable, "nodes: get, patch; events: create"),
        (401, errors.KubeUnavailable, "refused us (401"),
        (400, errors.KubeUnavailable, "API error 400"),
    ],
)
def test_status_mapping(api: kube.ApiKube, status: int, error: type, text: str) -> None:
    with pytest.raises(error, match=text.replace("(", r"\(")):
        api._call("get x", _raise(status))


@pytest.mark.parametrize("status", [429, 503])
def test_transient_errors_are_retried(api: kube.ApiKube, status: int) -> None:
    attempts = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 2:
            raise kexc.ApiException(status=status, reason="busy")
        return "ok"

    assert api._call("get x", flaky) == "ok"
    assert len(attempts) == 2


def test_unreachable_past_the_budget(api: kube.ApiKube) -> None:
    def down() -> Any:
        raise urlexc.MaxRetryError(None, "https://127.0.0.1:1", "connection refused")  # type: ignore[arg-type]

    with pytest.raises(errors.KubeUnavailable, match="cannot reach the API server"):
        api._call("get x", down)


def test_guarded_patch_refused_is_a_conflict(
    api: kube.ApiKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[Any] = []

    def patch_node(name: str, body: Any, **kw: Any) -> Any:
        sent.append(body)
        raise kexc.ApiException(status=422, reason="Unprocessable Entity")

    monkeypatch.setattr(api._core, "patch_node", patch_node)
    view = kube.NodeView("n1", "uid-1", {}, True, ())
    with pytest.raises(errors.Conflict, match="deleted and re-created"):
        api.patch_node(view, [{"op": "add", "path": "/metadata/labels/x", "value": "y"}])
    assert sent[0][0] == {"op": "test", "path": "/metadata/uid", "value": "uid-1"}


def test_a_refusal_carries_what_the_api_said(api: kube.ApiKube) -> None:
    def denied() -> Any:
        exc = kexc.ApiException(status=403, reason="Forbidden")
        exc.body = json.dumps(
            {"kind": "Status", "message": "kata-deploy: the installer may change only node a"}
        )
        raise exc

    with pytest.raises(errors.KubeUnavailable, match="may change only node a"):
        api._call("patch node b", denied)
