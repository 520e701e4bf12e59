"""kube.py's translation of API failures into the installer's errors, and its retries.

Cases (no API server: the client call is a function that raises what the client would;
a simulated clock):
- 404 -> NotFound, 409 -> Conflict, 422 -> Unprocessable, 401/403 -> KubeRefused (exit 2)
  naming the RBAC the ServiceAccount needs, another 4xx -> KubeUnavailable with the code;
  none of them retried; but a 401/403 while the API server is not ready (its /readyz,
  asked of a local HTTP server here) is retried;
- 503, 500 and 429 are retried (the dispatcher's policy) and the call then succeeds,
  each retry counted in `retries`; a Retry-After is slept exactly, one beyond the
  budget gives up at once; a connection error that lasts past the budget becomes
  Transient (exit 3) after sleeping no more than the budget; Retry-After in seconds or
  as an HTTP date; the client's own urllib3 retries are off;
- a guarded Node patch refused by its uid test (422) is a Conflict saying the node was
  re-created; the patch body starts with that test.
"""

from __future__ import annotations

import http.server
import json
import pathlib
import threading
from typing import Any

import fakes
import pytest
from kata_installer import errors, kube, retry
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
def clock() -> fakes.FakeClock:
    return fakes.FakeClock()


@pytest.fixture
def api(
    tmp_path: pathlib.Path, clock: fakes.FakeClock, monkeypatch: pytest.MonkeyPatch
) -> kube.ApiKube:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    made = kube.ApiKube(kubeconfig=str(path), policy=retry.Policy(budget=20), clock=clock)
    monkeypatch.setattr(made, "_not_ready", lambda: "")  # a ready API server
    return made


def _raise(status: int, headers: dict[str, str] | None = None) -> Any:
    def call() -> Any:
        exc = kexc.ApiException(status=status, reason="reason")
        exc.headers = headers
        raise exc

    return call


@pytest.mark.parametrize(
    ("status", "error", "text"),
    [
        (404, errors.NotFound, "get x: not found"),
        (409, errors.Conflict, "get x: conflict"),
        (422, errors.Unprocessable, "get x: refused"),
        (403, errors.KubeRefused, "nodes: get, patch; events: create"),
        (401, errors.KubeRefused, "refused us (401"),
        (400, errors.KubeUnavailable, "API error 400"),
    ],
)
def test_status_mapping(
    api: kube.ApiKube, clock: fakes.FakeClock, status: int, error: type, text: str
) -> None:
    with pytest.raises(error, match=text.replace("(", r"\(")) as info:
        api._call("get x", _raise(status))
    assert clock.sleeps == [] and api.retries == 0
    refused = status in (401, 403)
    assert (info.value.exit_code == errors.ExitCode.USAGE) is refused


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_errors_are_retried_and_counted(
    api: kube.ApiKube, clock: fakes.FakeClock, status: int
) -> None:
    attempts = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise kexc.ApiException(status=status, reason="busy")
        return "ok"

    assert api._call("get x", flaky) == "ok"
    assert len(attempts) == 3 and api.retries == 2 and len(clock.sleeps) == 2
    assert all(0.25 <= s <= 1.0 for s in clock.sleeps)  # full jitter, attempts 1 and 2


def test_retry_after_is_slept_exactly(api: kube.ApiKube, clock: fakes.FakeClock) -> None:
    attempts = []

    def busy() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            _raise(429, {"Retry-After": "7"})()
        return "ok"

    assert api._call("get x", busy) == "ok"
    assert clock.sleeps == [7.0] and api.retries == 1


def test_retry_after_beyond_the_budget_gives_up_at_once(
    api: kube.ApiKube, clock: fakes.FakeClock
) -> None:
    with pytest.raises(errors.Transient, match="API error 503"):
        api._call("get x", _raise(503, {"Retry-After": "60"}))
    assert clock.sleeps == [] and api.retries == 0


def test_unreachable_past_the_budget(api: kube.ApiKube, clock: fakes.FakeClock) -> None:
    def down() -> Any:
        raise urlexc.MaxRetryError(None, "https://127.0.0.1:1", "connection refused")  # type: ignore[arg-type]

    with pytest.raises(errors.KubeUnavailable, match="cannot reach the API server") as info:
        api._call("get x", down)
    assert info.value.exit_code == errors.ExitCode.API_UNREACHABLE
    assert 20 - 1e-9 <= sum(clock.sleeps) <= 20 + 1e-9
    assert api.retries == len(clock.sleeps) > 3


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

    with pytest.raises(errors.KubeRefused, match="may change only node a"):
        api._call("patch node b", denied)


def test_a_refusal_from_an_api_server_not_ready_is_retried(
    api: kube.ApiKube, clock: fakes.FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    said = iter(["/readyz answered HTTP 500", "/readyz answered HTTP 403", ""])
    monkeypatch.setattr(api, "_not_ready", lambda: next(said))
    attempts = []

    def restarting() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise kexc.ApiException(status=403, reason="Forbidden")
        return "ok"

    assert api._call("patch node a", restarting) == "ok"
    assert len(attempts) == 3 and api.retries == 2
    # once ready, the same refusal is an answer, not retried
    monkeypatch.setattr(api, "_not_ready", lambda: "")
    with pytest.raises(errors.KubeRefused):
        api._call("patch node a", _raise(403))
    assert api.retries == 2


class _Readyz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.server.paths.append((self.path, self.headers.get("Authorization")))  # type: ignore[attr-defined]
        self.send_response(type(self).status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("status", "said"), [(200, ""), (500, "/readyz answered HTTP 500")])
def test_readiness_is_asked_of_the_api_server(
    tmp_path: pathlib.Path, status: int, said: str
) -> None:
    handler = type("Handler", (_Readyz,), {"status": status})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.paths = []  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        path = tmp_path / "kubeconfig"
        port = httpd.server_address[1]
        path.write_text(KUBECONFIG.replace("https://127.0.0.1:1", f"http://127.0.0.1:{port}"))
        assert kube.ApiKube(kubeconfig=str(path))._not_ready() == said
        assert httpd.paths == [("/readyz", "Bearer t")]  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_an_api_server_that_does_not_answer_is_not_ready(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    assert kube.ApiKube(kubeconfig=str(path))._not_ready().startswith("/readyz did not answer")


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert kube._retry_after({"Retry-After": "3"}) == 3.0
    assert kube._retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    future = kube._retry_after({"Retry-After": "Fri, 01 Jan 2100 00:00:00 GMT"})
    assert future is not None and future > 1e9
    assert kube._retry_after({"Retry-After": "soon"}) is None
    assert kube._retry_after(None) is None


def test_no_hidden_retries_underneath_the_policy(api: kube.ApiKube) -> None:
    assert api._core.api_client.configuration.retries is False
