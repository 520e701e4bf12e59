"""The API wrapper (kube.py) against a small local HTTP server speaking the Kubernetes
JSON API, so the real client, URLs, query strings, bodies and streams are exercised.

Cases: HTTP failures become the right exceptions (409 AlreadyExists vs Conflict, 404,
410, 401/403, 400/422, 429 and 5xx with Retry-After seconds or date); a 401/403 is a
missing right only from a ready server (/readyz) on a kind of request (method, path,
namespace, watch or not) not allowed before in the run, else Transient; ApiException
status 0; list pagination parameters and the bearer token; create/delete bodies (UID
precondition, Background propagation); a watch stream with events, a bookmark, and an
ERROR 410 event; the DaemonSet calls (foreground DELETE body, a Status answer, 404,
LIST and watch by name field selector, paginated pod list); a refused connection is
Transient; every request is counted; bad kubeconfig paths are usage errors.
"""

from __future__ import annotations

import email.utils
import http.server
import json
import pathlib
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from kata_dispatcher import errors, kube
from kubernetes import client as k8s_client
from kubernetes.client import exceptions as k8s_exceptions


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (409, {"reason": "AlreadyExists"}, errors.AlreadyExists),
        (409, {"reason": "Conflict"}, errors.Conflict),
        (404, {}, errors.NotFound),
        (410, {"reason": "Expired"}, errors.Gone),
        (403, {}, errors.Forbidden),
        (401, {}, errors.Forbidden),
        (422, {}, errors.Invalid),
        (400, {}, errors.Invalid),
        (429, {}, errors.Transient),
        (500, {}, errors.Transient),
        (503, {}, errors.Transient),
        (418, {}, errors.ApiError),
    ],
)
def test_error_for(status: int, body: dict[str, Any], kind: type[errors.ApiError]) -> None:
    exc = kube.error_for("create Job ns/j", status, body=json.dumps({**body, "message": "m"}))
    assert type(exc) is kind
    assert str(exc) == f"create Job ns/j: HTTP {status}: m"


def test_retry_after_seconds_and_date() -> None:
    exc = kube.error_for("x", 429, headers={"Retry-After": "3"})
    assert isinstance(exc, errors.Transient) and exc.retry_after == 3.0
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    exc = kube.error_for("x", 503, headers={"Retry-After": when})
    assert isinstance(exc, errors.Transient) and 25 <= (exc.retry_after or 0) <= 31
    exc = kube.error_for("x", 503, headers={"Retry-After": "soon"})
    assert isinstance(exc, errors.Transient) and exc.retry_after is None


def test_translate_api_exception_without_status_is_transient() -> None:
    exc = kube.translate("x", k8s_exceptions.ApiException(status=0, reason="SSLError"))
    assert isinstance(exc, errors.Transient)
    exc = kube.translate("x", k8s_exceptions.ApiException(status=404, reason="nf"))
    assert isinstance(exc, errors.NotFound)


def test_non_json_error_body_is_kept_as_message() -> None:
    exc = kube.error_for("x", 502, body=b"<html>bad gateway</html>")
    assert exc.message == "<html>bad gateway</html>"


class Server:
    """Answers each request from a queue of scripted (status, headers, body) replies and
    records (method, path, query, body, auth header)."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, dict[str, str], Any]] = []
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urllib.parse.urlsplit(self.path)
                outer.requests.append(
                    {
                        "method": self.command,
                        "path": url.path,
                        "query": urllib.parse.parse_qs(url.query),
                        "body": json.loads(raw) if raw else None,
                        "auth": self.headers.get("Authorization"),
                    }
                )
                status, headers, body = outer.replies.pop(0)
                if isinstance(body, list):  # a watch stream: one JSON event per line
                    data = b"".join(json.dumps(e).encode() + b"\n" for e in body)
                else:
                    data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _handle

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


def make_api(port: int) -> kube.KubeApi:
    cfg = k8s_client.Configuration()
    cfg.host = f"http://127.0.0.1:{port}"
    cfg.api_key = {"BearerToken": "secret-token"}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    cfg.retries = False
    return kube.KubeApi(cfg, request_timeout=5)


def test_list_nodes_sends_pagination_and_selector(server: Server) -> None:
    server.replies.append(
        (
            200,
            {},
            {
                "metadata": {"continue": "tok2", "resourceVersion": "77"},
                "items": [{"metadata": {"name": "a"}}],
            },
        )
    )
    api = make_api(server.port)
    page = api.list_nodes(label_selector="kata=yes,!cp", limit=2, continue_token="tok1")
    assert page == kube.Page([{"metadata": {"name": "a"}}], "tok2", "77")
    [req] = server.requests
    assert req["path"] == "/api/v1/nodes"
    assert req["query"] == {"limit": ["2"], "labelSelector": ["kata=yes,!cp"], "continue": ["tok1"]}
    assert req["auth"] == "Bearer secret-token"
    assert api.api_requests == 1
    api.close()


def test_create_conflict_and_delete_bodies(server: Server) -> None:
    server.replies += [
        (201, {}, {"metadata": {"name": "j", "uid": "u1"}}),
        (
            409,
            {},
            {"kind": "Status", "reason": "AlreadyExists", "message": 'jobs "j" already exists'},
        ),
        (200, {}, {"kind": "Status"}),
        (409, {}, {"kind": "Status", "reason": "Conflict", "message": "Precondition failed: UID"}),
    ]
    api = make_api(server.port)
    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j"},
        "spec": {"x-unknown": 1},
    }
    assert api.create_job("ns", body)["metadata"]["uid"] == "u1"
    with pytest.raises(errors.AlreadyExists, match="already exists"):
        api.create_job("ns", body)
    api.delete_job("ns", "j", uid="u0")
    with pytest.raises(errors.Conflict) as info:
        api.delete_job("ns", "j", uid="u0")
    assert not isinstance(info.value, errors.AlreadyExists)
    assert server.requests[0]["path"] == "/apis/batch/v1/namespaces/ns/jobs"
    assert server.requests[0]["body"] == body  # sent as given, unknown fields included
    assert server.requests[2]["method"] == "DELETE"
    assert server.requests[2]["path"] == "/apis/batch/v1/namespaces/ns/jobs/j"
    assert server.requests[2]["body"] == {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Background",
        "preconditions": {"uid": "u0"},
    }
    assert api.api_requests == 4


def test_429_carries_retry_after(server: Server) -> None:
    server.replies.append(
        (429, {"Retry-After": "2"}, {"kind": "Status", "reason": "TooManyRequests"})
    )
    with pytest.raises(errors.Transient) as info:
        make_api(server.port).read_lease("ns", "j")
    assert info.value.status == 429 and info.value.retry_after == 2.0


REFUSED = {
    "kind": "Status",
    "reason": "Forbidden",
    "message": 'jobs is forbidden: User "system:serviceaccount:ns:d" cannot create resource "jobs"',
}


def test_a_refusal_from_a_ready_server_is_a_missing_right(server: Server) -> None:
    server.replies += [(403, {}, REFUSED), (200, {}, "ok")]
    api = make_api(server.port)
    with pytest.raises(errors.Forbidden, match="cannot create resource") as info:
        api.create_job("ns", {"metadata": {"name": "j"}})
    assert not isinstance(info.value, errors.Transient)
    assert [r["path"] for r in server.requests] == ["/apis/batch/v1/namespaces/ns/jobs", "/readyz"]
    assert server.requests[1]["auth"] == "Bearer secret-token"
    assert api.api_requests == 2


@pytest.mark.parametrize(
    ("readyz", "said"),
    [
        ((500, {}, "[-]informer-sync failed"), "/readyz answered HTTP 500"),
        ((403, {}, REFUSED), "/readyz answered HTTP 403"),
    ],
)
def test_a_refusal_from_a_server_not_ready_is_transient(
    server: Server, readyz: tuple[int, dict[str, str], Any], said: str
) -> None:
    server.replies += [(401, {}, {"kind": "Status", "reason": "Unauthorized"}), readyz]
    with pytest.raises(errors.Transient) as info:
        make_api(server.port).list_nodes(limit=1)
    assert info.value.status == 401
    assert f"taken as passing: {said}" in str(info.value)


def test_a_refusal_of_a_kind_of_request_allowed_before_is_transient(server: Server) -> None:
    created = {"metadata": {"name": "j", "uid": "u"}}
    server.replies += [
        (201, {}, created),
        (403, {}, REFUSED),  # the same kind (another name): no /readyz asked
        (403, {}, REFUSED),  # another namespace: a kind not allowed before
        (200, {}, "ok"),
        (403, {}, REFUSED),  # DELETE: another verb
        (200, {}, "ok"),
    ]
    api = make_api(server.port)
    api.create_job("ns", {"metadata": {"name": "j1"}})
    with pytest.raises(errors.Transient) as info:
        api.create_job("ns", {"metadata": {"name": "j2"}})
    assert info.value.status == 403
    assert str(info.value) == (
        "create Job ns/j2: HTTP 403: " + REFUSED["message"] + " (taken as passing: the same "
        "kind of request was allowed earlier in this run)"
    )
    with pytest.raises(errors.Forbidden):
        api.create_job("other", {"metadata": {"name": "j3"}})
    with pytest.raises(errors.Forbidden):
        api.delete_job("ns", "j1")
    assert [r["path"] for r in server.requests].count("/readyz") == 2


def test_a_watch_is_a_kind_of_request_of_its_own(server: Server) -> None:
    server.replies += [(200, {}, {"metadata": {"resourceVersion": "1"}, "items": []})]
    server.replies += [(403, {}, REFUSED), (200, {}, "ok")]
    api = make_api(server.port)
    api.list_jobs("ns", label_selector="a=b", limit=10)
    with pytest.raises(errors.Forbidden):
        api.watch_jobs("ns", label_selector="a=b", resource_version="1", timeout_seconds=5)


def test_watch_streams_events_and_turns_error_410_into_gone(server: Server) -> None:
    job = {"metadata": {"name": "j", "resourceVersion": "5"}}
    server.replies.append(
        (
            200,
            {},
            [
                {"type": "ADDED", "object": job},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "6"}}},
                {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}},
            ],
        )
    )
    api = make_api(server.port)
    stream = api.watch_jobs("ns", label_selector="a=b", resource_version="4", timeout_seconds=9)
    assert next(stream) == kube.WatchEvent("ADDED", job)
    assert next(stream).type == "BOOKMARK"
    with pytest.raises(errors.Gone):
        next(stream)
    [req] = server.requests
    assert req["query"] == {
        "watch": ["true"],
        "allowWatchBookmarks": ["true"],
        "labelSelector": ["a=b"],
        "timeoutSeconds": ["9"],
        "resourceVersion": ["4"],
    }


def test_watch_that_ends_normally_just_stops(server: Server) -> None:
    server.replies.append((200, {}, [{"type": "MODIFIED", "object": {"metadata": {"name": "j"}}}]))
    events = list(
        make_api(server.port).watch_jobs(
            "ns", label_selector="a=b", resource_version="", timeout_seconds=1
        )
    )
    assert [e.type for e in events] == ["MODIFIED"]
    assert "resourceVersion" not in server.requests[0]["query"]


def test_list_jobs_and_pods_paths(server: Server) -> None:
    server.replies += [
        (200, {}, {"items": [], "metadata": {}}),
        (200, {}, {"items": [], "metadata": {}}),
    ]
    api = make_api(server.port)
    assert api.list_jobs("ns", field_selector="metadata.name=j", limit=5).items == []
    assert api.list_pods("ns", label_selector="c=d", limit=5).continue_token is None
    assert [r["path"] for r in server.requests] == [
        "/apis/batch/v1/namespaces/ns/jobs",
        "/api/v1/namespaces/ns/pods",
    ]


def test_delete_daemonset_is_foreground_and_returns_the_answer(server: Server) -> None:
    ds = {"kind": "DaemonSet", "metadata": {"name": "k", "uid": "u", "deletionTimestamp": "t"}}
    server.replies += [
        (200, {}, ds),
        (200, {}, {"kind": "Status", "status": "Success"}),
        (404, {}, {"kind": "Status", "reason": "NotFound", "message": 'daemonsets.apps "k"'}),
    ]
    api = make_api(server.port)
    assert api.delete_daemonset("ns", "k") == ds
    assert api.delete_daemonset("ns", "k")["kind"] == "Status"
    with pytest.raises(errors.NotFound, match="delete DaemonSet ns/k"):
        api.delete_daemonset("ns", "k")
    req = server.requests[0]
    assert req["method"] == "DELETE"
    assert req["path"] == "/apis/apps/v1/namespaces/ns/daemonsets/k"
    assert req["body"] == {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Foreground",
    }


def test_list_and_watch_daemonsets_by_field_selector(server: Server) -> None:
    ds = {"metadata": {"name": "k", "resourceVersion": "8"}}
    server.replies += [
        (200, {}, {"items": [ds], "metadata": {"resourceVersion": "7"}}),
        (
            200,
            {},
            [
                {"type": "DELETED", "object": ds},
                {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}},
            ],
        ),
    ]
    api = make_api(server.port)
    page = api.list_daemonsets("ns", field_selector="metadata.name=k", limit=1)
    assert page == kube.Page([ds], None, "7")
    stream = api.watch_daemonsets(
        "ns", field_selector="metadata.name=k", resource_version="7", timeout_seconds=4
    )
    assert next(stream) == kube.WatchEvent("DELETED", ds)
    with pytest.raises(errors.Gone):
        next(stream)
    listed, watched = server.requests
    assert listed["path"] == watched["path"] == "/apis/apps/v1/namespaces/ns/daemonsets"
    assert listed["query"] == {"limit": ["1"], "fieldSelector": ["metadata.name=k"]}
    assert watched["query"] == {
        "watch": ["true"],
        "allowWatchBookmarks": ["true"],
        "fieldSelector": ["metadata.name=k"],
        "timeoutSeconds": ["4"],
        "resourceVersion": ["7"],
    }


def test_list_pods_sends_the_continue_token(server: Server) -> None:
    server.replies.append((200, {}, {"items": [], "metadata": {"continue": "c2"}}))
    page = make_api(server.port).list_pods("ns", label_selector="a=b", limit=3, continue_token="c1")
    assert page.continue_token == "c2"
    assert server.requests[0]["query"] == {
        "limit": ["3"],
        "labelSelector": ["a=b"],
        "continue": ["c1"],
    }


def test_connection_refused_is_transient_and_counted() -> None:
    srv = Server()
    port = srv.port
    srv.close()
    api = make_api(port)
    with pytest.raises(errors.Transient):
        api.list_nodes(limit=1)
    assert api.api_requests == 1


def test_missing_kubeconfig_is_a_usage_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(errors.UsageError, match="does not exist"):
        kube.load_configuration(tmp_path / "nope")
    bad = tmp_path / "config"
    bad.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n", encoding="utf-8")
    with pytest.raises(errors.UsageError, match="cannot load kubeconfig"):
        kube.load_configuration(bad)


def test_in_cluster_without_a_pod_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(errors.UsageError, match="--kubeconfig"):
        kube.load_configuration(None)


def test_kubeconfig_loads_and_disables_client_retries(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "config"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        ),
        encoding="utf-8",
    )
    cfg = kube.load_configuration(path)
    assert cfg.host == "https://127.0.0.1:6443"
    assert cfg.retries is False


# -- list_all: the one paged-LIST loop ---------------------------------------------------


def _pages(*pages: kube.Page | Exception) -> tuple[list[str | None], kube.FetchPage]:
    """A fetch that answers with `pages` in order and records each continue token."""
    asked: list[str | None] = []
    queue = list(pages)

    def fetch(token: str | None) -> kube.Page:
        asked.append(token)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return asked, fetch


def _send(fn: Any, what: str) -> kube.Page:
    result: kube.Page = fn()
    return result


def test_list_all_follows_continue_tokens_and_keeps_the_first_resource_version() -> None:
    asked, fetch = _pages(
        kube.Page([{"n": 1}, {"n": 2}], "c1", "100"),
        kube.Page([{"n": 3}], None, "101"),
    )
    listing = kube.list_all(fetch, lambda o: o["n"], send=_send, what="list things")
    assert listing.items == [1, 2, 3]
    assert listing.resource_version == "100"
    assert asked == [None, "c1"]


def test_list_all_drops_items_reduced_to_none() -> None:
    _, fetch = _pages(kube.Page([{"n": 1}, {"n": 2}, {"n": 3}], None, "7"))
    listing = kube.list_all(
        fetch, lambda o: o["n"] if o["n"] != 2 else None, send=_send, what="list"
    )
    assert listing.items == [1, 3]


def test_list_all_starts_again_when_the_continue_token_expires() -> None:
    asked, fetch = _pages(
        kube.Page([{"n": 1}], "c1", "100"),
        errors.Gone("list things", status=410),
        kube.Page([{"n": 1}], "c2", "200"),
        kube.Page([{"n": 2}], None, "201"),
    )
    listing = kube.list_all(fetch, lambda o: o["n"], send=_send, what="list things")
    assert listing.items == [1, 2]  # one snapshot: nothing from the abandoned pass twice
    assert listing.resource_version == "200"
    assert asked == [None, "c1", None, "c2"]


def test_list_all_passes_other_errors_through() -> None:
    _, fetch = _pages(errors.Forbidden("list things", status=403))
    with pytest.raises(errors.Forbidden):
        kube.list_all(fetch, lambda o: o, send=_send, what="list things")
