"""The only module that talks to the Kubernetes API.

Why: one place owns the client, its configuration, request timeouts, the request count
and the translation of HTTP failures into `errors` exceptions, so the rest of the
program (and its in-memory fake in tests/fakes.py) deals in plain JSON dicts and in
meanings (`AlreadyExists`, `Gone`, `Transient`). It must not retry: `retry.call`
wraps every method from the outside, so one policy covers all calls. The client's own
urllib3 retries are switched off for the same reason.

A 401/403 is a missing right (`Forbidden`), except from an API server that is not
ready (`GET /readyz`) or that allowed the same kind of request earlier in the run: a
kube-apiserver just restarted refuses everything until its authorizer has synced, so
those become `Transient`, retried within the budget like a 503.

Requests go through the generated client's low-level `param_serialize`/`call_api` and
return raw JSON: no model deserialisation (a 5000-node list stays cheap), and a Job
template round-trips unchanged whatever fields it carries.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import json
import logging
import pathlib
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client import exceptions as k8s_exceptions
from kubernetes.config import config_exception
from kubernetes.watch import watch as k8s_watch

from kata_dispatcher import errors

log = logging.getLogger(__name__)

Obj = dict[str, Any]

_JOBS = "/apis/batch/v1/namespaces/{namespace}/jobs"
_JOB = "/apis/batch/v1/namespaces/{namespace}/jobs/{name}"
_NODES = "/api/v1/nodes"
_CONFIGMAP = "/api/v1/namespaces/{namespace}/configmaps/{name}"
_CRONJOB = "/apis/batch/v1/namespaces/{namespace}/cronjobs/{name}"
_LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
_LEASE = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
_PODS = "/api/v1/namespaces/{namespace}/pods"
_DAEMONSETS = "/apis/apps/v1/namespaces/{namespace}/daemonsets"
_DAEMONSET = "/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}"
_READYZ = "/readyz"


class _Right(NamedTuple):
    """A kind of request as RBAC sees it (names aside: ours are allowed alike)."""

    method: str
    path: str  # the template, e.g. _JOBS
    namespace: str
    watch: bool


class Page(NamedTuple):
    """One page of a LIST: its items, the continue token (None on the last page) and the
    list's resourceVersion (a watch started from it misses nothing)."""

    items: list[Obj]
    continue_token: str | None
    resource_version: str


T = TypeVar("T")

# One page request, given the continue token of the page before (None: the first page).
FetchPage = Callable[[str | None], Page]
# How a caller sends one request: with its retry policy, under a name for the logs.
Send = Callable[[Callable[[], Page], str], Page]


class Listing(NamedTuple, Generic[T]):
    """Everything a paged LIST returned, each item reduced by the caller as its page
    arrived, with the resourceVersion of the first page (a watch from it misses nothing)."""

    items: list[T]
    resource_version: str


def list_all(
    fetch: FetchPage, reduce: Callable[[Obj], T | None], *, send: Send, what: str
) -> Listing[T]:
    """Read every page of one LIST (`limit` + `continue`), keeping `reduce(item)` of each
    item that reduces to something other than None, so no page outlives its loop turn.
    A continue token that expires mid-way (410 Gone) starts the listing again, so the
    result is one consistent snapshot. The only paged-LIST loop in the program."""
    items: list[T] = []
    resource_version = ""
    token: str | None = None
    while True:
        try:
            page = send(functools.partial(fetch, token), what)
        except errors.Gone:
            log.warning("%s: the continue token expired; listing again from the start", what)
            items, resource_version, token = [], "", None
            continue
        resource_version = resource_version or page.resource_version
        for obj in page.items:
            reduced = reduce(obj)
            if reduced is not None:
                items.append(reduced)
        token = page.continue_token
        del page  # before the next page arrives, not after
        if not token:
            return Listing(items, resource_version)


class WatchEvent(NamedTuple):
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: Obj


class Api(Protocol):
    """What the dispatcher needs from the API server; tests/fakes.py implements it too."""

    @property
    def api_requests(self) -> int: ...

    def list_nodes(
        self,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int,
        continue_token: str | None = None,
    ) -> Page: ...

    def create_job(self, namespace: str, body: Obj) -> Obj: ...

    def delete_job(self, namespace: str, name: str, *, uid: str | None = None) -> None: ...

    def patch_job(self, namespace: str, name: str, patch: list[Obj]) -> Obj: ...

    def read_configmap(self, namespace: str, name: str) -> Obj: ...

    def read_lease(self, namespace: str, name: str) -> Obj: ...

    def delete_cronjob(self, namespace: str, name: str) -> None: ...

    def create_lease(self, namespace: str, body: Obj) -> Obj: ...

    def replace_lease(self, namespace: str, name: str, body: Obj) -> Obj: ...

    def list_jobs(
        self,
        namespace: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int,
        continue_token: str | None = None,
    ) -> Page: ...

    def watch_jobs(
        self,
        namespace: str,
        *,
        label_selector: str,
        resource_version: str,
        timeout_seconds: int,
    ) -> Iterator[WatchEvent]: ...

    def list_pods(
        self,
        namespace: str,
        *,
        label_selector: str,
        limit: int,
        continue_token: str | None = None,
    ) -> Page: ...

    def delete_daemonset(self, namespace: str, name: str) -> Obj: ...

    def list_daemonsets(
        self,
        namespace: str,
        *,
        field_selector: str,
        limit: int,
        continue_token: str | None = None,
    ) -> Page: ...

    def watch_daemonsets(
        self,
        namespace: str,
        *,
        field_selector: str,
        resource_version: str,
        timeout_seconds: int,
    ) -> Iterator[WatchEvent]: ...


def _retry_after(headers: Any) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if any."""
    if not headers:
        return None
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _status_body(body: str | bytes | None) -> tuple[str, str]:
    """(reason, message) of a Kubernetes Status body, or ("", text) if not one."""
    if not body:
        return "", ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        status = json.loads(text)
    except ValueError:
        return "", text.strip()[:500]
    if not isinstance(status, dict):
        return "", text.strip()[:500]
    return str(status.get("reason") or ""), str(status.get("message") or "")


def error_for(
    what: str, status: int, *, headers: Any = None, body: str | bytes | None = None
) -> errors.ApiError:
    """Translate an HTTP failure into the exception that says what it means."""
    reason, message = _status_body(body)
    kwargs: dict[str, Any] = {"status": status, "reason": reason, "message": message}
    if status == 409:
        if reason == "AlreadyExists":
            return errors.AlreadyExists(what, **kwargs)
        return errors.Conflict(what, **kwargs)
    if status == 404:
        return errors.NotFound(what, **kwargs)
    if status == 410:
        return errors.Gone(what, **kwargs)
    if status in (401, 403):
        return errors.Forbidden(what, **kwargs)
    if status in (400, 422):
        return errors.Invalid(what, **kwargs)
    if status == 429 or status >= 500 or status == 0:
        return errors.Transient(what, retry_after=_retry_after(headers), **kwargs)
    return errors.ApiError(what, **kwargs)


def translate(what: str, exc: k8s_exceptions.ApiException) -> errors.ApiError:
    """Translate the client's ApiException (status 0 means no HTTP answer at all)."""
    status = int(exc.status or 0)
    if status == 0:
        return errors.Transient(what, message=str(exc.reason or exc))
    return error_for(what, status, headers=exc.headers, body=exc.body)


def load_configuration(kubeconfig: pathlib.Path | None) -> k8s_client.Configuration:
    """Kubeconfig file if given, else in-cluster (the pod's ServiceAccount)."""
    cfg = k8s_client.Configuration()
    try:
        if kubeconfig is not None:
            if not kubeconfig.is_file():
                raise errors.UsageError(f"kubeconfig {kubeconfig} does not exist")
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig), client_configuration=cfg, persist_config=False
            )
        else:
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except config_exception.ConfigException as exc:
        where = f"kubeconfig {kubeconfig}" if kubeconfig else "in-cluster configuration"
        hint = "" if kubeconfig else " (outside a pod, pass --kubeconfig or set KUBECONFIG)"
        raise errors.UsageError(f"cannot load {where}: {exc}{hint}") from exc
    # One retry policy (retry.py) for everything: no hidden retries underneath it.
    cfg.retries = False
    cfg.client_go_retries = False
    return cfg


def _delete_options(propagation: str) -> Obj:
    return {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}


class KubeApi:
    """`Api` over the real Kubernetes client."""

    def __init__(self, configuration: k8s_client.Configuration, *, request_timeout: float) -> None:
        self._client = k8s_client.ApiClient(configuration)
        self._timeout = request_timeout
        self._requests = 0
        self._allowed: set[_Right] = set()  # the kinds of request answered 2xx so far

    @property
    def api_requests(self) -> int:
        return self._requests

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    # -- plumbing ---------------------------------------------------------------------

    def _send(
        self,
        what: str,
        method: str,
        path: str,
        *,
        path_params: dict[str, str] | None = None,
        query: list[tuple[str, Any]] | None = None,
        body: Obj | list[Obj] | None = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] | None = None,
    ) -> Any:
        """Send one request; return the raw urllib3 response of a 2xx answer."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self._client.param_serialize(
            method=method,
            resource_path=path,
            path_params=path_params,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        right = _Right(
            method,
            path,
            (path_params or {}).get("namespace", ""),
            any(key == "watch" for key, _ in query or []),
        )
        self._requests += 1
        try:
            response = self._client.call_api(*request, _request_timeout=timeout or self._timeout)
        except k8s_exceptions.ApiException as exc:
            raise self._judged(translate(what, exc), right) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise errors.Transient(what, message=f"{type(exc).__name__}: {exc}") from exc
        if not 200 <= response.status <= 299:
            try:
                data = response.read()  # type: ignore[no-untyped-call]
            except (urllib3.exceptions.HTTPError, OSError):
                data = b""
            error = error_for(what, response.status, headers=response.headers, body=data)
            raise self._judged(error, right)
        self._allowed.add(right)
        return response

    def _judged(self, error: errors.ApiError, right: _Right) -> errors.ApiError:
        """A refusal (401/403) says we lack a right only when the API server is ready and
        has not allowed this kind of request earlier in this run. A kube-apiserver that
        was just restarted serves requests before its authorizer has synced, and refuses
        them all until it has: that passes, so it is retried as a 503 would be."""
        if not isinstance(error, errors.Forbidden):
            return error
        if right in self._allowed:
            why = "the same kind of request was allowed earlier in this run"
        else:
            why = self._not_ready()
            if not why:
                return error
        return errors.Transient(
            error.what,
            status=error.status,
            reason=error.reason,
            message=f"{error.message or error.reason or 'refused'} (taken as passing: {why})",
        )

    def _not_ready(self) -> str:
        """Empty when the API server says it is ready (GET /readyz answers 200), else
        what it said instead."""
        request = self._client.param_serialize(
            method="GET",
            resource_path=_READYZ,
            header_params={"Accept": "text/plain"},
            auth_settings=["BearerToken"],
        )
        self._requests += 1
        try:
            response = self._client.call_api(*request, _request_timeout=min(self._timeout, 5.0))
        except k8s_exceptions.ApiException as exc:
            return f"{_READYZ} answered HTTP {exc.status}"
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return f"{_READYZ} did not answer: {type(exc).__name__}"
        with contextlib.suppress(urllib3.exceptions.HTTPError, OSError):
            response.read()  # type: ignore[no-untyped-call]
        return "" if response.status == 200 else f"{_READYZ} answered HTTP {response.status}"

    def _json(self, what: str, method: str, path: str, **kwargs: Any) -> Obj:
        response = self._send(what, method, path, **kwargs)
        try:
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise errors.Transient(what, message=f"{type(exc).__name__}: {exc}") from exc
        result = json.loads(data) if data else {}
        if not isinstance(result, dict):
            raise errors.ApiError(what, message="answer is not a JSON object")
        return result

    # -- Api --------------------------------------------------------------------------

    def list_nodes(
        self,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int,
        continue_token: str | None = None,
    ) -> Page:
        return self._list(
            "list nodes",
            _NODES,
            path_params=None,
            selectors=(("labelSelector", label_selector), ("fieldSelector", field_selector)),
            limit=limit,
            continue_token=continue_token,
        )

    def create_job(self, namespace: str, body: Obj) -> Obj:
        name = body.get("metadata", {}).get("name", "?")
        return self._json(
            f"create Job {namespace}/{name}",
            "POST",
            _JOBS,
            path_params={"namespace": namespace},
            body=body,
        )

    def delete_job(self, namespace: str, name: str, *, uid: str | None = None) -> None:
        options = _delete_options("Background")
        if uid:
            options["preconditions"] = {"uid": uid}
        self._json(
            f"delete Job {namespace}/{name}",
            "DELETE",
            _JOB,
            path_params={"namespace": namespace, "name": name},
            body=options,
        )

    def patch_job(self, namespace: str, name: str, patch: list[Obj]) -> Obj:
        """A JSON patch (RFC 6902): its `test` operations make it all-or-nothing."""
        return self._json(
            f"patch Job {namespace}/{name}",
            "PATCH",
            _JOB,
            path_params={"namespace": namespace, "name": name},
            body=patch,
            content_type="application/json-patch+json",
        )

    def read_configmap(self, namespace: str, name: str) -> Obj:
        return self._json(
            f"read ConfigMap {namespace}/{name}",
            "GET",
            _CONFIGMAP,
            path_params={"namespace": namespace, "name": name},
        )

    def delete_cronjob(self, namespace: str, name: str) -> None:
        """Background propagation: its Jobs, and their pods, go with it."""
        self._json(
            f"delete CronJob {namespace}/{name}",
            "DELETE",
            _CRONJOB,
            path_params={"namespace": namespace, "name": name},
            body=_delete_options("Background"),
        )

    def read_lease(self, namespace: str, name: str) -> Obj:
        return self._json(
            f"read Lease {namespace}/{name}",
            "GET",
            _LEASE,
            path_params={"namespace": namespace, "name": name},
        )

    def create_lease(self, namespace: str, body: Obj) -> Obj:
        return self._json(
            f"create Lease {namespace}/{body['metadata']['name']}",
            "POST",
            _LEASES,
            path_params={"namespace": namespace},
            body=body,
        )

    def replace_lease(self, namespace: str, name: str, body: Obj) -> Obj:
        """PUT: with metadata.resourceVersion set, a 409 Conflict if it changed since."""
        return self._json(
            f"update Lease {namespace}/{name}",
            "PUT",
            _LEASE,
            path_params={"namespace": namespace, "name": name},
            body=body,
        )

    def list_jobs(
        self,
        namespace: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int,
        continue_token: str | None = None,
    ) -> Page:
        return self._list(
            f"list Jobs in {namespace}",
            _JOBS,
            path_params={"namespace": namespace},
            selectors=(("labelSelector", label_selector), ("fieldSelector", field_selector)),
            limit=limit,
            continue_token=continue_token,
        )

    def watch_jobs(
        self,
        namespace: str,
        *,
        label_selector: str,
        resource_version: str,
        timeout_seconds: int,
    ) -> Iterator[WatchEvent]:
        """Open a watch on Jobs now (errors raise here); see `_watch`."""
        return self._watch(
            f"watch Jobs in {namespace}",
            _JOBS,
            namespace=namespace,
            selector=("labelSelector", label_selector),
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
        )

    def list_pods(
        self,
        namespace: str,
        *,
        label_selector: str,
        limit: int,
        continue_token: str | None = None,
    ) -> Page:
        return self._list(
            f"list Pods in {namespace}",
            _PODS,
            path_params={"namespace": namespace},
            selectors=(("labelSelector", label_selector),),
            limit=limit,
            continue_token=continue_token,
        )

    def delete_daemonset(self, namespace: str, name: str) -> Obj:
        """DELETE with propagationPolicy=Foreground: the DaemonSet keeps existing, with a
        deletionTimestamp, until the garbage collector has deleted every pod it owns.
        Returns the answer: the DaemonSet as it now is, or a Status if it went at once."""
        return self._json(
            f"delete DaemonSet {namespace}/{name}",
            "DELETE",
            _DAEMONSET,
            path_params={"namespace": namespace, "name": name},
            body=_delete_options("Foreground"),
        )

    def list_daemonsets(
        self,
        namespace: str,
        *,
        field_selector: str,
        limit: int,
        continue_token: str | None = None,
    ) -> Page:
        return self._list(
            f"list DaemonSets in {namespace}",
            _DAEMONSETS,
            path_params={"namespace": namespace},
            selectors=(("fieldSelector", field_selector),),
            limit=limit,
            continue_token=continue_token,
        )

    def watch_daemonsets(
        self,
        namespace: str,
        *,
        field_selector: str,
        resource_version: str,
        timeout_seconds: int,
    ) -> Iterator[WatchEvent]:
        """Open a watch on DaemonSets now (errors raise here); see `_watch`. With a
        `metadata.name=NAME` field selector, RBAC authorizes it against resourceNames."""
        return self._watch(
            f"watch DaemonSets in {namespace}",
            _DAEMONSETS,
            namespace=namespace,
            selector=("fieldSelector", field_selector),
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
        )

    # -- the generic LIST and WATCH behind them -------------------------------------------

    def _list(
        self,
        what: str,
        path: str,
        *,
        path_params: dict[str, str] | None,
        selectors: tuple[tuple[str, str | None], ...],
        limit: int,
        continue_token: str | None,
    ) -> Page:
        """One page of a LIST; empty selectors and a missing continue token are left out."""
        query: list[tuple[str, Any]] = [("limit", limit)]
        query += [(key, value) for key, value in selectors if value]
        if continue_token:
            query.append(("continue", continue_token))
        result = self._json(what, "GET", path, path_params=path_params, query=query)
        meta = result.get("metadata") or {}
        return Page(
            items=list(result.get("items") or []),
            continue_token=meta.get("continue") or None,
            resource_version=str(meta.get("resourceVersion") or ""),
        )

    def _watch(
        self,
        what: str,
        path: str,
        *,
        namespace: str,
        selector: tuple[str, str],
        resource_version: str,
        timeout_seconds: int,
    ) -> Iterator[WatchEvent]:
        """Open a watch now (errors raise here) and return an iterator over its events.

        The server ends the stream after `timeout_seconds`; the client gives up reading
        15 s later. An ERROR event becomes `errors.Gone` (410) or another `ApiError`;
        a broken stream becomes `errors.Transient`."""
        query: list[tuple[str, Any]] = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            selector,
            ("timeoutSeconds", timeout_seconds),
        ]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        response = self._send(
            what,
            "GET",
            path,
            path_params={"namespace": namespace},
            query=query,
            timeout=(min(self._timeout, 10.0), timeout_seconds + 15.0),
        )
        return self._events(what, response.response)

    @staticmethod
    def _events(what: str, raw: Any) -> Iterator[WatchEvent]:
        try:
            for line in k8s_watch.iter_resp_lines(raw):  # type: ignore[no-untyped-call]
                if not line:
                    continue
                event = json.loads(line)
                kind = str(event.get("type", ""))
                obj = event.get("object") or {}
                if kind == "ERROR":
                    raise error_for(what, int(obj.get("code") or 500), body=json.dumps(obj))
                yield WatchEvent(kind, obj)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise errors.Transient(what, message=f"stream broke: {exc}") from exc
        finally:
            # The stream may be abandoned half-read: close the socket rather than hand a
            # connection with unread data back to the pool.
            raw.close()
            raw.release_conn()
