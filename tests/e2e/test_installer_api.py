"""The installer's API calls against the real kube-apiserver (kata_installer.kube.ApiKube).

Cases, on a node object of the session fleet made for the test:
- get_node reads uid, labels and annotations (kwok makes the node Ready);
- a uid-guarded JSON patch applies to the node it read, and is refused as a Conflict
  ("re-created") once the node was deleted and created again under the same name: the
  apiserver answers the failed `test` operation with 422, which kube.py maps;
- post_event records an Event about the node that `kubectl get events` finds by kind,
  name and reason.
"""

from __future__ import annotations

import pytest
from kata_installer import errors, kube

from tests.cluster import kubeapi
from tests.cluster.cluster import Cluster

NAME = "api-probe-node"


def _node(fleet: Cluster) -> None:
    fleet.core().create_node(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NAME, "labels": {"a": "b"}}}
    )


def test_guarded_patch_and_events_on_the_real_api(fleet: Cluster) -> None:
    api = kube.ApiKube(kubeconfig=str(fleet.kubeconfig))
    _node(fleet)
    try:
        view = api.get_node(NAME)
        assert view.uid and view.labels == {"a": "b"}
        assert view.annotations is None or isinstance(view.annotations, dict)
        api.patch_node(view, [{"op": "add", "path": "/metadata/labels/x~1y", "value": "1"}])
        assert api.get_node(NAME).labels["x/y"] == "1"

        api.post_event("default", view, reason="KataInstalled", message="probe", warning=False)
        events = kubeapi.get_json(
            fleet.core().list_namespaced_event,
            "default",
            field_selector=f"involvedObject.kind=Node,involvedObject.name={NAME}",
        )["items"]
        # (the node controller may record its own, e.g. RegisteredNode)
        assert [e["reason"] for e in events if e["reason"].startswith("Kata")] == ["KataInstalled"]

        fleet.core().delete_node(NAME)
        _node(fleet)  # the same name, another node
        with pytest.raises(errors.Conflict, match="re-created"):
            api.patch_node(view, [{"op": "add", "path": "/metadata/labels/x~1y", "value": "2"}])
        assert "x/y" not in api.get_node(NAME).labels
    finally:
        fleet.core().delete_node(NAME)
