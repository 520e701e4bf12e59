"""The only module that imports `kubernetes`: the node, its result, Events, the DaemonSet.

Writes to the Node are JSON patches whose first operation tests `/metadata/uid` against
the node the installer read at the start, so a node deleted and re-created under the
same name is never touched: the API refuses the patch and that becomes errors.Conflict.

Callers see the small `Kube` protocol, so tests use an in-memory fake. API exceptions
are translated into errors.NotFound / Conflict / KubeUnavailable; connection errors,
429 and 5xx are retried with tenacity under a total time budget.
Credentials: --kubeconfig, else $KUBECONFIG (through Settings), else in-cluster.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import tenacity
from kubernetes import client, config
from kubernetes.client import exceptions as kexc
from urllib3 import exceptions as urlexc

from kata_installer import errors

log = logging.getLogger(__name__)

T = TypeVar("T")
_BUDGET_SECONDS = 60.0
_REQUEST_TIMEOUT = (5.0, 30.0)


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


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, kexc.ApiException):
        return exc.status in (429, 500, 502, 503, 504) or exc.status == 0
    return isinstance(exc, urlexc.HTTPError | ConnectionError | TimeoutError)


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("Kubernetes API call failed (attempt %d), retrying: %s", state.attempt_number, exc)


def _status_message(body: Any) -> str:
    """The `message` of a Kubernetes Status answer (what an admission policy said)."""
    try:
        doc = json.loads(body or b"{}")
    except (TypeError, ValueError):
        return ""
    return str(doc.get("message") or "") if isinstance(doc, dict) else ""


class ApiKube:
    """`Kube` backed by the real API server."""

    def __init__(self, *, kubeconfig: str) -> None:
        try:
            if kubeconfig:
                api_client = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
            else:
                cfg = client.Configuration()
                config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
                api_client = client.ApiClient(cfg)
        except (config.ConfigException, OSError) as exc:
            raise errors.KubeUnavailable(
                "no Kubernetes credentials: pass --kubeconfig (or KUBECONFIG) or run in a pod "
                f"with a ServiceAccount token ({exc})"
            ) from exc
        self._core = client.CoreV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_retryable),
            stop=tenacity.stop_after_delay(_BUDGET_SECONDS),
            wait=tenacity.wait_exponential(multiplier=0.5, max=8),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            return retrying(fn)
        except kexc.ApiException as exc:
            if exc.status == 404:
                raise errors.NotFound(f"{what}: not found") from exc
            if exc.status == 409:
                raise errors.Conflict(f"{what}: conflict") from exc
            if exc.status == 422:
                raise errors.Unprocessable(f"{what}: refused: {exc.body}") from exc
            if exc.status in (401, 403):
                said = _status_message(exc.body)
                raise errors.KubeUnavailable(
                    f"{what}: the API refused us ({exc.status} {exc.reason}"
                    + (f": {said}" if said else "")
                    + "); check the ServiceAccount's RBAC (nodes: get, patch; events: create; "
                    "daemonsets: get) and that this pod changes only its own node"
                ) from exc
            raise errors.KubeUnavailable(f"{what}: API error {exc.status} {exc.reason}") from exc
        except (urlexc.HTTPError, ConnectionError, TimeoutError) as exc:
            raise errors.KubeUnavailable(f"{what}: cannot reach the API server ({exc})") from exc

    def get_node_labels(self, name: str) -> dict[str, str]:
        node: Any = self._call(
            f"get node {name}",
            lambda: self._core.read_node(name, _request_timeout=_REQUEST_TIMEOUT),
        )
        return dict(node.metadata.labels or {})

    def get_node(self, name: str) -> NodeView:
        resp: Any = self._call(
            f"get node {name}",
            lambda: self._core.read_node(
                name, _request_timeout=_REQUEST_TIMEOUT, _preload_content=False
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
                    node.name, body, _request_timeout=_REQUEST_TIMEOUT,
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
                _request_timeout=_REQUEST_TIMEOUT,
            ),
        )

    def set_node_label(self, name: str, key: str, value: str | None) -> None:
        body = {"metadata": {"labels": {key: value}}}
        self._call(
            f"patch node {name}",
            lambda: self._core.patch_node(name, body, _request_timeout=_REQUEST_TIMEOUT),
        )

    def get_daemonset(self, namespace: str, name: str) -> DaemonSetState | None:
        try:
            ds: Any = self._call(
                f"get daemonset {namespace}/{name}",
                lambda: self._apps.read_namespaced_daemon_set(
                    name, namespace, _request_timeout=_REQUEST_TIMEOUT
                ),
            )
        except errors.NotFound:
            return None
        return DaemonSetState(name=name, deleting=ds.metadata.deletion_timestamp is not None)
