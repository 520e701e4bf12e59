"""Node selection and admission (nodes.py).

Cases: Kubernetes toleration matching rule by rule; which taints block a pinned pod
(NoExecute only, as the kubelet checks); admit() naming node and taint, and not-Ready
nodes; DoneRule (result annotation, hash, label); --nodes parsing; paginated live
listing with a selector; explicit names (found, unknown, one-by-one vs. full list);
an expired continue token; a selector the server rejects; waiting for nodes.
"""

from __future__ import annotations

import json
from typing import Any

import fakes
import pytest
from kata_dispatcher import errors, nodes, retry

T = nodes.Toleration
Taint = nodes.Taint


@pytest.mark.parametrize(
    ("toleration", "taint", "expected"),
    [
        (T("k", "Equal", "v", "NoSchedule"), Taint("k", "v", "NoSchedule"), True),
        (T("k", "", "v", "NoSchedule"), Taint("k", "v", "NoSchedule"), True),
        (T("k", "Equal", "v", "NoSchedule"), Taint("k", "w", "NoSchedule"), False),
        (T("k", "Equal", "", ""), Taint("k", "", "NoExecute"), True),
        (T("k", "Exists", "", ""), Taint("k", "anything", "NoExecute"), True),
        (T("k", "Exists", "", "NoSchedule"), Taint("k", "x", "NoExecute"), False),
        (T("", "Exists", "", ""), Taint("any", "x", "NoExecute"), True),
        (T("", "Exists", "", "NoSchedule"), Taint("any", "x", "NoExecute"), False),
        (T("other", "Exists", "", ""), Taint("k", "", "NoSchedule"), False),
        (T("k", "Lt", "5", ""), Taint("k", "3", "NoSchedule"), False),
    ],
)
def test_toleration_matching(
    toleration: nodes.Toleration, taint: nodes.Taint, expected: bool
) -> None:
    assert toleration.tolerates(taint) is expected


@pytest.mark.parametrize("effect", ["PreferNoSchedule", "NoSchedule"])
def test_only_no_execute_blocks_a_pinned_pod(effect: str) -> None:
    # The scheduler never sees a nodeName-pinned pod; the kubelet checks NoExecute only.
    node = nodes.Node("n", taints=(Taint("node-role.kubernetes.io/control-plane", "", effect),))
    assert nodes.blocking_taint(node, ()) is None


def test_no_toleration_is_added_for_the_pod() -> None:
    assert nodes.tolerations_from_pod_spec({}) == ()
    assert nodes.tolerations_from_pod_spec({"hostNetwork": True}) == ()
    gpu = nodes.Node("n", taints=(Taint("nvidia.com/gpu", "", "NoExecute"),))
    assert nodes.blocking_taint(gpu, nodes.tolerations_from_pod_spec({})) == gpu.taints[0]


def test_the_charts_default_toleration_lets_every_node_in() -> None:
    everything = nodes.tolerations_from_pod_spec({"tolerations": [{"operator": "Exists"}]})
    node = nodes.Node(
        "n",
        taints=(
            Taint("node-role.kubernetes.io/control-plane", "", "NoSchedule"),
            Taint("nvidia.com/gpu", "present", "NoExecute"),
            Taint("node.kubernetes.io/unreachable", "", "NoExecute"),
        ),
    )
    assert nodes.blocking_taint(node, everything) is None


def test_admit_names_node_and_reason() -> None:
    tolerations = nodes.tolerations_from_pod_spec(
        {"tolerations": [{"key": "kata", "operator": "Exists"}]}
    )
    control = nodes.Node(
        "cp", taints=(Taint("node-role.kubernetes.io/control-plane", "", "NoSchedule"),)
    )
    gpu = nodes.Node("gpu", taints=(Taint("kata", "yes", "NoExecute"),))
    evicting = nodes.Node("ev", taints=(Taint("maintenance", "", "NoExecute"),))
    down = nodes.Node("down", ready=False)
    plain = nodes.Node("w1")
    admitted, skipped = nodes.admit([control, gpu, evicting, down, plain], tolerations)
    assert [n.name for n in admitted] == ["cp", "gpu", "w1"]
    assert skipped == [
        nodes.Skipped("ev", nodes.SkipReason.UNTOLERATED_TAINT, evicting.taints[0]),
        nodes.Skipped("down", nodes.SkipReason.NOT_READY),
    ]
    assert skipped[0].as_dict() == {
        "node": "ev",
        "reason": "UntoleratedTaint",
        "taint": "maintenance:NoExecute",
        "message": "the per-node Job's pod does not tolerate taint maintenance:NoExecute",
    }
    assert skipped[1].as_dict() == {
        "node": "down",
        "reason": "NodeNotReady",
        "message": "the node is not Ready, so its pinned pod would not run",
    }


RULE = nodes.DoneRule("katacontainers.io/kata-deploy.rel", "0123456789abcdef", "kata/runtime")


def _annotated(result: Any, *, label: str | None = "true") -> dict[str, Any]:
    obj = fakes.node("a", labels={"kata/runtime": label} if label is not None else {})
    if result is not None:
        raw = result if isinstance(result, str) else json.dumps(result)
        obj["metadata"]["annotations"] = {RULE.annotation: raw}
    return obj


@pytest.mark.parametrize(
    ("result", "label", "done"),
    [
        ({"outcome": "installed", "configHash": "0123456789abcdef"}, "true", True),
        ({"outcome": "installed", "configHash": "0123456789abcdef"}, None, False),
        ({"outcome": "installed", "configHash": "0123456789abcdef"}, "false", False),
        ({"outcome": "installed", "configHash": "ffffffffffffffff"}, "true", False),
        ({"outcome": "failed", "configHash": "0123456789abcdef"}, "true", False),
        ("not json", "true", False),
        (["installed"], "true", False),
        (None, "true", False),
    ],
)
def test_done_rule(result: Any, label: str | None, done: bool) -> None:
    assert RULE.done(_annotated(result, label=label)) is done
    assert nodes.Node.from_api(_annotated(result, label=label), RULE).done is done
    assert nodes.Node.from_api(_annotated(result, label=label)).done is False


def test_node_from_api_reads_taints_and_readiness() -> None:
    node = nodes.Node.from_api(
        fakes.node("a", labels={"x": "1"}, taints=[("k", "v", "NoSchedule")], ready=False)
    )
    assert node == nodes.Node("a", (Taint("k", "v", "NoSchedule"),), False)


def test_parse_names() -> None:
    assert nodes.parse_names(" a, b ,a,,c ") == ("a", "b", "c")
    assert nodes.parse_names("") == ()
    assert nodes.parse_names(["x", " y"]) == ("x", "y")


def selector(api: Any, clock: fakes.FakeClock, page_size: int = 2) -> nodes.Selector:
    return nodes.Selector(api, policy=retry.Policy(budget=30), clock=clock, page_size=page_size)


def cluster(clock: fakes.FakeClock) -> fakes.FakeApi:
    return fakes.FakeApi(
        clock,
        nodes=[
            fakes.node("cp-0", labels={"node-role.kubernetes.io/control-plane": ""}),
            fakes.node("w-0", labels={"kata": "yes"}),
            fakes.node("w-1", labels={"kata": "yes"}),
            fakes.node("w-2", labels={"kata": "no"}),
            fakes.node("w-3"),
        ],
    )


def test_all_nodes_are_listed_page_by_page(clock: fakes.FakeClock) -> None:
    api = cluster(clock)
    got = selector(api, clock).select(names=(), label_selector=None)
    assert [n.name for n in got.nodes] == ["cp-0", "w-0", "w-1", "w-2", "w-3"]
    calls = api.calls_of("list_nodes")
    assert [c.args["continue_token"] for c in calls] == [None, "2", "4"]
    assert all(c.args["limit"] == 2 for c in calls)


def test_label_selector_goes_to_the_server(clock: fakes.FakeClock) -> None:
    api = cluster(clock)
    got = selector(api, clock).select(
        names=(), label_selector="!node-role.kubernetes.io/control-plane,kata=yes"
    )
    assert [n.name for n in got.nodes] == ["w-0", "w-1"]
    assert api.calls_of("list_nodes")[0].args["label_selector"] == (
        "!node-role.kubernetes.io/control-plane,kata=yes"
    )


def test_explicit_names_are_checked_and_unknown_reported(clock: fakes.FakeClock) -> None:
    api = cluster(clock)
    got = selector(api, clock).select(names=("w-2", "ghost", "cp-0"), label_selector=None)
    assert [n.name for n in got.nodes] == ["w-2", "cp-0"]
    assert got.unknown == ["ghost"]
    assert [c.args["field_selector"] for c in api.calls_of("list_nodes")] == [
        "metadata.name=w-2",
        "metadata.name=ghost",
        "metadata.name=cp-0",
    ]


def test_many_explicit_names_use_one_full_listing(clock: fakes.FakeClock) -> None:
    api = fakes.FakeApi(clock, nodes=[fakes.node(f"n{i:02d}") for i in range(30)])
    names = (*tuple(f"n{i:02d}" for i in range(0, 30, 1)), "zz")
    got = selector(api, clock, page_size=10).select(names=names, label_selector=None)
    assert len(got.nodes) == 30 and got.unknown == ["zz"]
    assert len(api.calls_of("list_nodes")) == 3
    assert all(c.args["field_selector"] is None for c in api.calls_of("list_nodes"))


def test_expired_continue_token_restarts_the_listing(clock: fakes.FakeClock) -> None:
    api = cluster(clock)
    original = api.list_nodes
    expired = {"done": False}

    def flaky(**kwargs: Any) -> Any:
        if kwargs.get("continue_token") == "2" and not expired["done"]:
            expired["done"] = True
            api.calls.append(fakes.Call("list_nodes", kwargs))
            raise errors.Gone("list nodes", status=410)
        return original(**kwargs)

    api.list_nodes = flaky  # type: ignore[method-assign]
    got = selector(api, clock).select(names=(), label_selector=None)
    assert len(got.nodes) == 5


def test_rejected_selector_is_a_usage_error(clock: fakes.FakeClock) -> None:
    api = cluster(clock)
    api.fail("list_nodes", errors.Invalid("list nodes", status=400, message="unable to parse"))
    with pytest.raises(errors.UsageError, match=r"'a b'.*unable to parse"):
        selector(api, clock).select(names=(), label_selector="a b")


def test_transient_errors_while_listing_are_retried(clock: fakes.FakeClock) -> None:
    api = cluster(clock)
    api.fail("list_nodes", errors.Transient("list nodes", status=503))
    got = selector(api, clock).select(names=(), label_selector=None)
    assert len(got.nodes) == 5
    assert len(clock.sleeps) == 1


def test_wait_until_nodes_appear_and_are_ready(clock: fakes.FakeClock) -> None:
    api = fakes.FakeApi(clock, nodes=[fakes.node("a", ready=False)])
    polls = {"n": 0}
    original = api.list_nodes

    def evolving(**kwargs: Any) -> Any:
        polls["n"] += 1
        if polls["n"] == 5:  # third poll: two per-name lookups per poll
            api.nodes["a"] = fakes.node("a")
            api.nodes["b"] = fakes.node("b")
        return original(**kwargs)

    api.list_nodes = evolving  # type: ignore[method-assign]
    got = selector(api, clock, page_size=10).wait(names=("a", "b"), label_selector=None, seconds=60)
    assert [n.name for n in got.nodes] == ["a", "b"] and not got.unknown
    assert clock.sleeps == [5.0, 5.0]


def test_wait_gives_up_after_its_time_and_returns_what_it_has(clock: fakes.FakeClock) -> None:
    api = fakes.FakeApi(clock, nodes=[])
    got = selector(api, clock).wait(names=(), label_selector="kata=yes", seconds=12)
    assert got.nodes == []
    assert sum(clock.sleeps) == pytest.approx(12)
