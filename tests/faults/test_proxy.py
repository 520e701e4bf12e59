"""The fault proxy (proxy.py) against a tiny local HTTPS server standing in for the apiserver.

The PKI is made as the local cluster makes it (tests/cluster/certs.py): the stand-in
serves the "apiserver" certificate, the proxy its own one signed by the same CA, and the
client trusts only that CA.

Cases:
- without faults, requests and answers pass unchanged both ways (method, path, body,
  the client's Authorization header), several on one keep-alive connection;
- http_errors: the injected 429 carries Retry-After and a Kubernetes Status body, a 503
  none; injected answers never reach the server; a fraction hits about that share;
  after the duration everything passes again;
- down: an open connection is cut, new ones are refused, and it listens again after the
  given seconds; clear() brings it back at once;
- cut_watches: a watch stream breaks mid-stream after `every` seconds (the client sees
  an incomplete chunked body), a plain request is never cut;
- delay: each request is held back the given seconds;
- an unreachable apiserver closes the client's connection and is counted.
"""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import urllib3

from tests.cluster import certs, procs
from tests.faults import proxy


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, str]]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, data: dict[str, object]) -> None:
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.seen.append({"method": "GET", "path": self.path})
        if "watch=true" in self.path:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(15):  # 3 s of events
                line = json.dumps({"type": "ADDED", "object": {"n": i}}).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
                time.sleep(0.2)
            self.wfile.write(b"0\r\n\r\n")
            return
        self._answer({"path": self.path, "authorization": self.headers.get("Authorization", "")})

    def do_POST(self) -> None:
        self.seen.append({"method": "POST", "path": self.path})
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._answer({"path": self.path, "body": body.decode()})


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> certs.Certs:
    return certs.ensure(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server(pki: certs.Certs) -> Iterator[SimpleNamespace]:
    seen: list[dict[str, str]] = []
    handler = type("Handler", (_Handler,), {"seen": seen})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.serving_cert), str(pki.serving_key))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    port = httpd.server_address[1]
    yield SimpleNamespace(seen=seen, server=f"https://127.0.0.1:{port}", certs=pki)
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def fault_proxy(server: SimpleNamespace) -> Iterator[proxy.FaultProxy]:
    with proxy.FaultProxy.for_cluster(server) as p:
        yield p


def _pool(p: proxy.FaultProxy, pki: certs.Certs, **kwargs: object) -> urllib3.HTTPSConnectionPool:
    return urllib3.HTTPSConnectionPool(
        "127.0.0.1",
        p.port,
        ca_certs=str(pki.ca_cert),
        retries=False,
        maxsize=1,
        **kwargs,  # type: ignore[arg-type]
    )


def test_requests_pass_unchanged(
    fault_proxy: proxy.FaultProxy, server: SimpleNamespace, pki: certs.Certs
) -> None:
    pool = _pool(fault_proxy, pki)
    auth = {"Authorization": "Bearer token-of-a-pod"}
    for i in range(3):
        resp = pool.request("GET", f"/api/v1/nodes?limit={i}", headers=auth)
        assert resp.status == 200
        assert resp.json() == {
            "path": f"/api/v1/nodes?limit={i}",
            "authorization": auth["Authorization"],
        }
    resp = pool.request("POST", "/apis/batch/v1/jobs", body=b'{"kind":"Job"}', headers=auth)
    assert resp.json()["body"] == '{"kind":"Job"}'
    c = fault_proxy.counters()
    assert (c.connections, c.requests, c.forwarded, c.injected()) == (1, 4, 4, 0)
    assert len(server.seen) == 4


def test_injected_errors_never_reach_the_server(
    fault_proxy: proxy.FaultProxy, server: SimpleNamespace, pki: certs.Certs
) -> None:
    pool = _pool(fault_proxy, pki)
    fault_proxy.http_errors(1.0, statuses=(429,), retry_after=2, duration=0.6)
    resp = pool.request("GET", "/api/v1/nodes")
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "2"
    status = resp.json()
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 429, "TooManyRequests")
    assert status["details"] == {"retryAfterSeconds": 2}
    fault_proxy.http_errors(1.0, statuses=(503,), duration=0.6)
    resp = pool.request("POST", "/apis/batch/v1/jobs", body=b"{}")
    assert resp.status == 503 and "Retry-After" not in resp.headers
    assert server.seen == []
    time.sleep(0.7)
    assert pool.request("GET", "/api/v1/nodes").status == 200
    c = fault_proxy.counters()
    assert dict(c.errors) == {429: 1, 503: 1}
    assert (c.requests, c.forwarded, c.connections) == (3, 1, 1)


def test_a_fraction_of_requests_fails(
    fault_proxy: proxy.FaultProxy, server: SimpleNamespace, pki: certs.Certs
) -> None:
    pool = _pool(fault_proxy, pki)
    fault_proxy.http_errors(0.3, duration=60)
    statuses = [pool.request("GET", "/api/v1/pods").status for _ in range(100)]
    failed = [s for s in statuses if s != 200]
    assert set(failed) == {429, 503}
    assert 15 <= len(failed) <= 45, len(failed)
    c = fault_proxy.counters()
    assert sum(c.errors.values()) == len(failed)
    assert len(server.seen) == c.forwarded == 100 - len(failed)


def test_down_cuts_and_refuses_then_listens_again(
    fault_proxy: proxy.FaultProxy, pki: certs.Certs
) -> None:
    pool = _pool(fault_proxy, pki)
    assert pool.request("GET", "/version").status == 200  # an open keep-alive connection
    fault_proxy.down(1.0)
    with pytest.raises((urllib3.exceptions.ProtocolError, urllib3.exceptions.NewConnectionError)):
        pool.request("GET", "/version")
    with pytest.raises(urllib3.exceptions.NewConnectionError):
        _pool(fault_proxy, pki).request("GET", "/version")
    time.sleep(1.2)
    assert _pool(fault_proxy, pki).request("GET", "/version").status == 200
    assert fault_proxy.counters().refused == 1

    fault_proxy.down(60)
    fault_proxy.clear()
    assert _pool(fault_proxy, pki).request("GET", "/version").status == 200


def test_watch_streams_are_cut_mid_stream(
    fault_proxy: proxy.FaultProxy, server: SimpleNamespace, pki: certs.Certs
) -> None:
    pool = _pool(fault_proxy, pki)
    fault_proxy.cut_watches(every=0.5, duration=60)
    assert pool.request("GET", "/api/v1/nodes").status == 200  # not a watch: never cut
    t0 = time.monotonic()
    resp = pool.request("GET", "/api/v1/pods?watch=true", preload_content=False)
    events = []
    with pytest.raises(urllib3.exceptions.ProtocolError):
        for line in resp.stream(decode_content=True):
            events.append(line)
    assert 0.4 < time.monotonic() - t0 < 1.5
    assert events, "the stream was cut before it began"
    assert fault_proxy.counters().watches_cut == 1

    fault_proxy.clear()
    resp = _pool(fault_proxy, pki).request("GET", "/api/v1/pods?watch=true")
    assert resp.data.count(b"ADDED") == 15  # whole again


def test_delay_holds_each_request_back(fault_proxy: proxy.FaultProxy, pki: certs.Certs) -> None:
    pool = _pool(fault_proxy, pki)
    fault_proxy.delay(0.5, duration=60)
    t0 = time.monotonic()
    for _ in range(2):
        assert pool.request("GET", "/version").status == 200
    assert time.monotonic() - t0 >= 1.0
    assert fault_proxy.counters().delayed == 2


def test_an_unreachable_apiserver_closes_the_connection(pki: certs.Certs, tmp_path: Path) -> None:
    gone = SimpleNamespace(server=f"https://127.0.0.1:{procs.free_port()}", certs=pki)
    with proxy.FaultProxy.for_cluster(gone) as p:
        with pytest.raises(urllib3.exceptions.ProtocolError):
            _pool(p, pki).request("GET", "/version")
        assert p.counters().upstream_failed == 1


def test_only_https_upstreams(pki: certs.Certs) -> None:
    with pytest.raises(ValueError, match="https://HOST:PORT"):
        proxy.FaultProxy(
            upstream="http://127.0.0.1:1", ca_cert=pki.ca_cert, cert=pki.ca_cert, key=pki.ca_key
        )
