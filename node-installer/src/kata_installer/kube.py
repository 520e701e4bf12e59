"""The only module that imports `kubernetes`: the node, its result, Events, the DaemonSet.

Writes to the Node are JSON patches whose first operation tests `/metadata/uid` against
the node the installer read at the start, so a node deleted and re-created under the
same name is never touched: the API refuses the patch and that becomes errors.Conflict.

Callers see the small `Kube` protocol, so tests use an in-memory fake. API exceptions
are translated into errors.NotFound / Conflict / Unprocessable / KubeRefused (401/403,
exit 2); connection errors, 429, 5xx, and a 401/403 from an API server whose `/readyz`
does not answer 200 (a kube-apiserver just restarted refuses everything until its
authorizer has synced) become errors.Transient and are retried by
`retry.call`, the policy kata-dispatcher uses too (budget from the first failure,
full-jitter backoff, Retry-After honoured), each retry counted in `retries`.
Credentials: --kubeconfig, else $KUBECONFIG (through Settings), else in-cluster.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from kubernetes import client, config
from kubernetes.client import exceptions as kexc
from urllib3 import exceptions as urlexc

from kata_installer import errors, retry

log = logging.getLogger(__name__)

T = TypeVar("T")
_CONNECT_TIMEOUT = 5.0


@dataclasses.dataclass(frozen=True)
class DaemonSetState:
    name: str
    deleting: bool


@dataclasses.dataclass(frozen=True)
class NodeView:
    """What the installer needs to know of its Node: identity, labels, runtime state."""

    name: str
    uid: str
    labels: dict[str, str]
    ready: bool
    # status.runtimeHandlers' names; empty where the kubelet does not report them
    # (containerd 1.x, older CRI-O)
    runtime_handlers: tuple[str, ...]
    # None when the Node has no annotations map at all (a JSON patch must create it)
    annotations: dict[str, str] | None = None


def pointer(key: str) -> str:
    """A label or annotation key as a JSON-pointer segment (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


class Kube(Protocol):
    @property
    def retries(self) -> int:
        """How many times an API call of this run was retried (connection errors, 429, 5xx)."""

    def get_node_labels(self, name: str) -> dict[str, str]: ...

    def get_node(self, name: str) -> NodeView: ...

    def patch_node(self, node: NodeView, ops: list[dict[str, Any]]) -> None:
        """Apply JSON-patch ``ops`` to ``node``, only if its uid is still ``node.uid``."""

    def post_event(
        self, namespace: str, node: NodeView, *, reason: str, message: str, warning: bool
    ) -> None:
        """Record an Event about ``node`` in ``namespace``."""

    def set_node_label(self, name: str, key: str, value: str | None) -> None:
        """Set the label (value) or remove it (None)."""

    def get_daemonset(self, namespace: str, name: str) -> DaemonSetState | None:
        """The DaemonSet, or None when it does not exist."""


def _retry_after(headers: Any) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if any."""
    value = headers.get("Retry-After") if headers else None
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
    if when.tzinfo is None:
        return None
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


def _transient(what: str, fn: Callable[[], T], not_ready: Callable[[], str]) -> Callable[[], T]:
    """`fn` with what is worth retrying raised as errors.Transient: connection errors,
    429 and 5xx, and a 401/403 while `not_ready()` says why the API server is not ready
    (the dispatcher's classification; its other rule, a kind of request allowed before,
    is not ours: the own-node policy refuses a Node patch for what it changes)."""

    def attempt() -> T:
        try:
            return fn()
        except kexc.ApiException as exc:
            status = int(exc.status or 0)
            if status == 429 or status >= 500 or status == 0:
                raise errors.Transient(
                    f"{what}: API error {status} {exc.reason}",
                    retry_after=_retry_after(exc.headers),
                ) from exc
            why = not_ready() if status in (401, 403) else ""
            if why:
                raise errors.Transient(
                    f"{what}: API error {status} {exc.reason} (taken as passing: {why})"
                ) from exc
            raise
        except (urlexc.HTTPError, ConnectionError, TimeoutError) as exc:
            raise errors.Transient(f"{what}: cannot reach the API server ({exc})") from exc

    return attempt


def _status_message(body: Any) -> str:
    """The `message` of a Kubernetes Status answer (what an admission policy said)."""
    try:
        doc = json.loads(body or b"{}")
    except (TypeError, ValueError):
        return ""
    return str(doc.get("message") or "") if isinstance(doc, dict) else ""


class ApiKube:
    """`Kube` backed by the real API server."""

    def __init__(
        self,
        *,
        kubeconfig: str,
        policy: retry.Policy | None = None,
        request_timeout: float = 30.0,
        clock: retry.Clock | None = None,
    ) -> None:
        self._policy = policy or retry.Policy()
        self._timeout = (min(_CONNECT_TIMEOUT, request_timeout), request_timeout)
        self._clock = clock or retry.SystemClock()
        self._counter = retry.Counter()
        cfg = client.Configuration()
        try:
            if kubeconfig:
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig, client_configuration=cfg, persist_config=False
                )
            else:
                config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError) as exc:
            raise errors.KubeRefused(
                "no Kubernetes credentials: pass --kubeconfig (or KUBECONFIG) or run in a pod "
                f"with a ServiceAccount token ({exc})"
            ) from exc
        # One retry policy (retry.py) for everything: no hidden retries underneath it.
        cfg.retries = False
        cfg.client_go_retries = False
        api_client = client.ApiClient(cfg)
        self._core = client.CoreV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)

    @property
    def retries(self) -> int:
        return self._counter.retries

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return retry.call(
                _transient(what, fn, self._not_ready),
                policy=self._policy,
                clock=self._clock,
                what=what,
                counter=self._counter,
            )
        except kexc.ApiException as exc:
            if exc.status == 404:
                raise errors.NotFound(f"{what}: not found") from exc
            if exc.status == 409:
                raise errors.Conflict(f"{what}: conflict") from exc
            if exc.status == 422:
                raise errors.Unprocessable(f"{what}: refused: {exc.body}") from exc
            if exc.status in (401, 403):
                said = _status_message(exc.body)
                raise errors.KubeRefused(
                    f"{what}: the API refused us ({exc.status} {exc.reason}"
                    + (f": {said}" if said else "")
                    + "); check the ServiceAccount's RBAC (nodes: get, patch; events: create; "
                    "daemonsets: get) and that this pod changes only its own node"
                ) from exc
            raise errors.KubeUnavailable(f"{what}: API error {exc.status} {exc.reason}") from exc

    def _not_ready(self) -> str:
        """Empty when the API server says it is ready (GET /readyz answers 200), else
        what it said instead."""
        api = self._core.api_client
        request = api.param_serialize(
            method="GET",
            resource_path="/readyz",
            header_params={"Accept": "text/plain"},
            auth_settings=["BearerToken"],
        )
        try:
            response = api.call_api(*request, _request_timeout=self._timeout)
            response.read()
        except kexc.ApiException as exc:
            return f"/readyz answered HTTP {exc.status}"
        except (urlexc.HTTPError, OSError) as exc:
            return f"/readyz did not answer: {type(exc).__name__}"
        return "" if response.status == 200 else f"/readyz answered HTTP {response.status}"

    def get_node_labels(self, name: str) -> dict[str, str]:
        node: Any = self._call(
            f"get node {name}",
            lambda: self._core.read_node(name, _request_timeout=self._timeout),
        )
        return dict(node.metadata.labels or {})

    def get_node(self, name: str) -> NodeView:
        resp: Any = self._call(
            f"get node {name}",
            lambda: self._core.read_node(
                name, _request_timeout=self._timeout, _preload_content=False
            ),
        )
        doc = json.loads(resp.data)
        status = doc.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        return NodeView(
            name=name,
            uid=str(doc["metadata"].get("uid", "")),
            labels=dict(doc["metadata"].get("labels") or {}),
            ready=ready,
            runtime_handlers=tuple(
                str(h.get("name", "")) for h in status.get("runtimeHandlers") or []
            ),
            annotations=doc["metadata"].get("annotations"),
        )

    def patch_node(self, node: NodeView, ops: list[dict[str, Any]]) -> None:
        body = [{"op": "test", "path": "/metadata/uid", "value": node.uid}, *ops]
        try:
            self._call(
                f"patch node {node.name}",
                lambda: self._core.patch_node(
                    node.name, body, _request_timeout=self._timeout,
                    _content_type="application/json-patch+json",
                ),
            )  # fmt: skip
        except errors.Unprocessable as exc:
            raise errors.Conflict(
                f"node {node.name} is not the node this installer started on (uid "
                f"{node.uid}): it was deleted and re-created; not touching it"
            ) from exc
        except errors.NotFound as exc:
            raise errors.Conflict(f"node {node.name} (uid {node.uid}) is gone") from exc

    def post_event(
        self, namespace: str, node: NodeView, *, reason: str, message: str, warning: bool
    ) -> None:
        now = datetime.datetime.now(datetime.UTC)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{node.name}.", "namespace": namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": node.name,
                               "uid": node.uid},
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "kata-deploy", "host": node.name},
            "firstTimestamp": now.isoformat(),
            "lastTimestamp": now.isoformat(),
            "count": 1,
        }  # fmt: skip
        self._call(
            f"create event in {namespace}",
            lambda: self._core.create_namespaced_event(
                namespace,
                body,  # type: ignore[arg-type]  # the client accepts the manifest form
                _request_timeout=self._timeout,
            ),
        )

    def set_node_label(self, name: str, key: str, value: str | None) -> None:
        body = {"metadata": {"labels": {key: value}}}
        self._call(
            f"patch node {name}",
            lambda: self._core.patch_node(name, body, _request_timeout=self._timeout),
        )

    def get_daemonset(self, namespace: str, name: str) -> DaemonSetState | None:
        try:
            ds: Any = self._call(
                f"get daemonset {namespace}/{name}",
                lambda: self._apps.read_namespaced_daemon_set(
                    name, namespace, _request_timeout=self._timeout
                ),
            )
        except errors.NotFound:
            return None
        return DaemonSetState(name=name, deleting=ds.metadata.deletion_timestamp is not None)
