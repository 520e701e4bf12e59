"""A fault-injecting HTTPS proxy in front of the local kube-apiserver.

Why our own and not toxiproxy: toxiproxy moves TCP bytes, so inside TLS it can only
delay, slow or cut connections. The faults an operator meets are HTTP answers as well:
a 429 with Retry-After from API priority and fairness, a 503 from an apiserver going
away, a watch stream broken in the middle of a chunk, an answer held back for seconds.
To give those, this proxy terminates TLS itself, with a serving certificate signed by
the cluster's CA (so a kubeconfig that trusts the cluster trusts it unchanged), reads
each HTTP/1.1 request, and either answers it itself (an injected fault, counted) or
re-originates it over TLS to the real kube-apiserver. The client's Authorization header
(its ServiceAccount token) passes through untouched, so RBAC is still the chart's; a
client certificate cannot (the proxy is not the client), so only token users go through.

What it must not do: listen anywhere but 127.0.0.1; change a request it forwards or an
answer it relays; answer for the apiserver except when injecting a fault.

Driving it (one proxy per scenario; every call returns at once, the fault lasts its
duration):

    with FaultProxy.for_cluster(cluster) as proxy:     # proxy.url: https://127.0.0.1:PORT
        proxy.down(20)                                  # refuse and cut connections for 20 s
        proxy.http_errors(0.3, statuses=(429, 503), retry_after=1, duration=30)
        proxy.http_errors(1.0, statuses=(403,), duration=5)  # refuse everything for 5 s
        proxy.cut_watches(every=3, duration=60)         # break each watch stream every 3 s
        proxy.delay(2, duration=60)                     # hold each request back 2 s
        proxy.counters()                                # what it injected so far

One connection from a client gets one connection to the apiserver; requests on it are
handled one after the other, as HTTP/1.1 keep-alive does. HTTP/2 is not offered (ALPN
says http/1.1), so Go clients fall back to HTTP/1.1 too. Upgrades (exec, port-forward)
are not supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import ssl
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

LOG = logging.getLogger(__name__)

HOST = "127.0.0.1"
MAX_HEAD = 256 * 1024
_REASONS = {
    403: ("Forbidden", "Forbidden"),  # as a kube-apiserver answers before its authorizer syncs
    429: ("Too Many Requests", "TooManyRequests"),
    500: ("Internal Server Error", "InternalError"),
    502: ("Bad Gateway", "InternalError"),
    503: ("Service Unavailable", "ServiceUnavailable"),
    504: ("Gateway Timeout", "Timeout"),
}


@dataclasses.dataclass
class Counters:
    """What the proxy saw and did. `injected()` sums the faults."""

    connections: int = 0  # client connections accepted
    requests: int = 0  # HTTP requests read from clients
    forwarded: int = 0  # requests sent on to the apiserver
    refused: int = 0  # open connections cut as the proxy went down (refused ones never reach it)
    errors: Counter[int] = dataclasses.field(default_factory=Counter)  # injected status -> n
    watches_cut: int = 0  # watch streams broken mid-stream
    delayed: int = 0  # requests held back
    upstream_failed: int = 0  # the apiserver could not be reached or broke off

    def injected(self) -> int:
        return self.refused + sum(self.errors.values()) + self.watches_cut + self.delayed

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["errors"] = {str(k): v for k, v in sorted(self.errors.items())}
        return data


@dataclasses.dataclass
class _Faults:
    """The faults in force; each ends at its own monotonic time."""

    down_until: float = 0.0
    errors_until: float = 0.0
    error_fraction: float = 0.0
    statuses: tuple[int, ...] = ()
    retry_after: float | None = None
    cut_from: float = 0.0
    cut_until: float = 0.0
    cut_every: float = 0.0
    delay_until: float = 0.0
    delay_seconds: float = 0.0


@dataclasses.dataclass
class _Request:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names
    raw: bytes  # request line, headers and body, exactly as read

    @property
    def watch(self) -> bool:
        url = urllib.parse.urlsplit(self.target)
        query = urllib.parse.parse_qs(url.query)
        return query.get("watch", [""])[0] in {"true", "1"} or "/watch/" in url.path


class _Closed(Exception):
    """The client went away between requests."""


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    """The message body as raw bytes (chunked framing kept), for a request."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        out = bytearray()
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            out += line + await reader.readexactly(size + 2)
            if size == 0:
                return bytes(out)
    length = int(headers.get("content-length", "0") or 0)
    return await reader.readexactly(length) if length else b""


def _status_response(status: int, *, retry_after: float | None) -> bytes:
    phrase, reason = _REASONS.get(status, ("Error", "InternalError"))
    status_body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"injected by the kata-deploy fault proxy ({status})",
        "reason": reason,
        "code": status,
    }
    head = [f"HTTP/1.1 {status} {phrase}", "Content-Type: application/json"]
    if retry_after is not None:
        seconds = max(0, round(retry_after))
        head.append(f"Retry-After: {seconds}")
        status_body["details"] = {"retryAfterSeconds": seconds}
    body = json.dumps(status_body).encode()
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class FaultProxy:
    """The proxy, run on an event loop of its own thread; every method is thread-safe."""

    def __init__(
        self,
        *,
        upstream: str,
        ca_cert: Path,
        cert: Path,
        key: Path,
        port: int = 0,
        seed: int = 13,
    ) -> None:
        target = urllib.parse.urlsplit(upstream)
        if target.scheme != "https" or not target.hostname or not target.port:
            raise ValueError(f"upstream must be https://HOST:PORT, not {upstream!r}")
        self._up_host, self._up_port = target.hostname, target.port
        self._server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_ctx.load_cert_chain(str(cert), str(key))
        self._server_ctx.set_alpn_protocols(["http/1.1"])
        self._client_ctx = ssl.create_default_context(cafile=str(ca_cert))
        self._client_ctx.set_alpn_protocols(["http/1.1"])
        self.port = port
        self._rng = random.Random(seed)  # noqa: S311 - which request fails, not a secret
        self._lock = threading.Lock()
        self._faults = _Faults()
        self._counters = Counters()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy")
        self._server: asyncio.Server | None = None
        self._reopen: asyncio.TimerHandle | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @classmethod
    def for_cluster(cls, cluster: Any, *, seed: int = 13) -> FaultProxy:
        """A proxy in front of a :class:`tests.cluster.cluster.Cluster`'s apiserver, with a
        serving certificate of its own signed by that cluster's CA."""
        from tests.cluster import certs

        cert, key = certs.server_cert(cluster.certs, "fault-proxy", ips=(HOST,))
        return cls(
            upstream=cluster.server, ca_cert=cluster.certs.ca_cert, cert=cert, key=key, seed=seed
        )

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        self._run(self._listen())
        LOG.info("fault proxy on %s in front of https://%s:%d", self.url, *self._upstream)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- faults

    def down(self, seconds: float) -> None:
        """Close the listener and cut every open connection now; listen again after
        ``seconds``. Meanwhile connections are refused (ECONNREFUSED)."""
        with self._lock:
            self._faults.down_until = time.monotonic() + seconds
        self._run(self._go_down(seconds))

    def http_errors(
        self,
        fraction: float,
        *,
        statuses: tuple[int, ...] = (429, 503),
        retry_after: float | None = 1.0,
        duration: float,
    ) -> None:
        """Answer ``fraction`` of requests (picked at random) with one of ``statuses``
        (picked at random), for ``duration`` seconds; a 429 carries ``Retry-After``."""
        if not 0 <= fraction <= 1 or not statuses:
            raise ValueError("fraction must be within 0..1 and statuses non-empty")
        with self._lock:
            f = self._faults
            f.errors_until = time.monotonic() + duration
            f.error_fraction, f.statuses, f.retry_after = fraction, tuple(statuses), retry_after

    def cut_watches(self, every: float, *, duration: float) -> None:
        """Break each watch stream ``every`` seconds after it opened (or after now, for
        one already open), for ``duration`` seconds: both connections are aborted, so the
        client sees a stream that ends mid-chunk."""
        now = time.monotonic()
        with self._lock:
            self._faults.cut_from, self._faults.cut_until = now, now + duration
            self._faults.cut_every = every

    def delay(self, seconds: float, *, duration: float) -> None:
        """Hold each request back ``seconds`` before handling it, for ``duration``."""
        with self._lock:
            self._faults.delay_until = time.monotonic() + duration
            self._faults.delay_seconds = seconds

    def clear(self) -> None:
        """End every fault now (a proxy that is down listens again at once)."""
        with self._lock:
            self._faults = _Faults()
        self._run(self._come_up())

    def counters(self) -> Counters:
        """A copy of the counters."""
        with self._lock:
            c = self._counters
            return dataclasses.replace(c, errors=Counter(c.errors))

    # ---------------------------------------------------------------- the loop

    @property
    def _upstream(self) -> tuple[str, int]:
        return self._up_host, self._up_port

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def _count(self, **changes: int) -> None:
        with self._lock:
            for name, n in changes.items():
                setattr(self._counters, name, getattr(self._counters, name) + n)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._serve,
            HOST,
            self.port,
            ssl=self._server_ctx,
            reuse_address=True,
            limit=MAX_HEAD,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _go_down(self, seconds: float) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
        if self._server is not None:
            self._server.close()
            self._server = None
        cut = list(self._open)
        for writer in cut:
            writer.transport.abort()
        self._count(refused=len(cut))
        self._reopen = self._loop.call_later(
            seconds, lambda: self._loop.create_task(self._come_up())
        )

    async def _come_up(self) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
            self._reopen = None
        if self._server is None:
            with self._lock:
                self._faults.down_until = 0.0
            await self._listen()

    async def _shutdown(self) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
        if self._server is not None:
            self._server.close()
        for writer in list(self._open):
            writer.transport.abort()
        # End every connection's task here, while the loop still runs: a task left for
        # the garbage collector after the loop is closed dies noisily in a later test.
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)  # let the aborted transports run their close callbacks

    def _pick_error(self) -> tuple[int, float | None] | None:
        with self._lock:
            f = self._faults
            if time.monotonic() >= f.errors_until or self._rng.random() >= f.error_fraction:
                return None
            status = self._rng.choice(f.statuses)
            self._counters.errors[status] += 1
            return status, (f.retry_after if status == 429 else None)

    def _delay_now(self) -> float:
        with self._lock:
            f = self._faults
            return f.delay_seconds if time.monotonic() < f.delay_until else 0.0

    def _cut_at(self, opened: float) -> float | None:
        """When a watch stream opened at ``opened`` is to be cut, if cuts are on."""
        with self._lock:
            f = self._faults
            now = time.monotonic()
            if not f.cut_every or now >= f.cut_until:
                return None
            return max(opened, f.cut_from) + f.cut_every

    # ---------------------------------------------------------------- one connection

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._count(connections=1)
        self._open.add(writer)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                try:
                    request = await self._read_request(reader)
                except _Closed:
                    return
                self._count(requests=1)
                pause = self._delay_now()
                if pause:
                    self._count(delayed=1)
                    await asyncio.sleep(pause)
                injected = self._pick_error()
                if injected is not None:
                    writer.write(_status_response(injected[0], retry_after=injected[1]))
                    await writer.drain()
                    continue
                if upstream is None:
                    try:
                        upstream = await asyncio.open_connection(
                            self._up_host,
                            self._up_port,
                            ssl=self._client_ctx,
                            limit=MAX_HEAD,
                        )
                    except OSError as exc:
                        LOG.debug("apiserver unreachable: %s", exc)
                        self._count(upstream_failed=1)
                        writer.transport.abort()
                        return
                self._count(forwarded=1)
                keep = await self._exchange(request, upstream, writer)
                if not keep:
                    return
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            # A connection aborted on purpose (down, a cut watch) or by a peer.
            writer.transport.abort()
        finally:
            self._open.discard(writer)
            if upstream is not None:
                upstream[1].transport.abort()
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> _Request:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise _Closed from exc
        except (ConnectionError, ssl.SSLError) as exc:
            raise _Closed from exc
        line, headers = _parse_head(head)
        method, target, _version = line.split(" ", 2)
        body = await _read_body(reader, headers)
        return _Request(method, target, headers, head + body)

    async def _exchange(
        self,
        request: _Request,
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Forward one request and relay its answer; False when the connection ends."""
        up_reader, up_writer = upstream
        try:
            up_writer.write(request.raw)
            await up_writer.drain()
            head = await up_reader.readuntil(b"\r\n\r\n")
        except (OSError, asyncio.IncompleteReadError) as exc:
            LOG.debug("apiserver broke off %s %s: %s", request.method, request.target, exc)
            self._count(upstream_failed=1)
            writer.transport.abort()
            return False
        line, headers = _parse_head(head)
        status = int(line.split(" ", 2)[1])
        writer.write(head)
        keep = (
            headers.get("connection", "").lower() != "close"
            and request.headers.get("connection", "").lower() != "close"
        )
        if request.method == "HEAD" or status in {204, 304} or 100 <= status < 200:
            await writer.drain()
            return keep
        cutter = None
        if request.watch:
            cutter = asyncio.ensure_future(self._cutter(time.monotonic(), writer, up_writer))
        try:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                await self._relay_chunks(up_reader, writer)
            elif "content-length" in headers:
                length = int(headers["content-length"])
                writer.write(await up_reader.readexactly(length))
                await writer.drain()
            else:
                while data := await up_reader.read(65536):
                    writer.write(data)
                    await writer.drain()
                keep = False
        finally:
            if cutter is not None:
                cutter.cancel()
        return keep

    @staticmethod
    async def _relay_chunks(up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line = await up_reader.readuntil(b"\r\n")
            size = int(line.split(b";")[0].strip(), 16)
            writer.write(line + await up_reader.readexactly(size + 2))
            await writer.drain()
            if size == 0:
                return

    async def _cutter(
        self, opened: float, writer: asyncio.StreamWriter, up_writer: asyncio.StreamWriter
    ) -> None:
        """Abort a watch stream's two connections when its cut is due."""
        while True:
            at = self._cut_at(opened)
            now = time.monotonic()
            if at is not None and now >= at:
                self._count(watches_cut=1)
                writer.transport.abort()
                up_writer.transport.abort()
                return
            await asyncio.sleep(0.1 if at is None else min(0.1, at - now))
