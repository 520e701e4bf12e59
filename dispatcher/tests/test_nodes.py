"""Node selection and admission (nodes.py).

Cases: Kubernetes toleration matching rule by rule; which taints block (NoSchedule,
NoExecute, not PreferNoSchedule); the DaemonSet controller's automatic tolerations and
the host-network one; admit() naming node and taint; --nodes parsing; paginated live
listing with a selector; explicit names (found, unknown, one-by-one vs. full list);
an expired continue token; a selector the server rejects; waiting for nodes.
"""

from __future__ import annotations

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


def test_prefer_no_schedule_never_blocks() -> None:
    node = nodes.Node("n", taints=(Taint("k", "v", "PreferNoSchedule"),))
    assert nodes.blocking_taint(node, ()) is None


def test_daemonset_tolerations_let_cordoned_and_not_ready_nodes_in() -> None:
    tolerations = nodes.tolerations_from_pod_spec({})
    for key, effect in [
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ]:
        assert (
            nodes.blocking_taint(nodes.Node("n", taints=(Taint(key, "", effect),)), tolerations)
            is None
        )
    unavailable = nodes.Node(
        "n", taints=(Taint("node.kubernetes.io/network-unavailable", "", "NoSchedule"),)
    )
    assert nodes.blocking_taint(unavailable, tolerations) is not None
    host_net = nodes.tolerations_from_pod_spec({"hostNetwork": True})
    assert nodes.blocking_taint(unavailable, host_net) is None


def test_admit_names_node_and_taint() -> None:
    tolerations = nodes.tolerations_from_pod_spec(
        {"tolerations": [{"key": "kata", "operator": "Exists"}]}
    )
    control = nodes.Node(
        "cp", taints=(Taint("node-role.kubernetes.io/control-plane", "", "NoSchedule"),)
    )
    gpu = nodes.Node("gpu", taints=(Taint("kata", "yes", "NoExecute"),))
    plain = nodes.Node("w1")
    admitted, skipped = nodes.admit([control, gpu, plain], tolerations)
    assert [n.name for n in admitted] == ["gpu", "w1"]
    assert skipped == [nodes.Skipped("cp", control.taints[0])]
    assert skipped[0].as_dict() == {
        "node": "cp",
        "reason": "UntoleratedTaint",
        "taint": "node-role.kubernetes.io/control-plane:NoSchedule",
        "message": "the per-node Job's pod does not tolerate taint "
        "node-role.kubernetes.io/control-plane:NoSchedule",
    }


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
