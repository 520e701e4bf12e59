"""Per-node Jobs (jobs.py).

Cases: names of short, dotted, upper-case, long and odd node names; the 63-character
budget at its edges; uniqueness and validity (hypothesis); node label values; template
checks and loading; building a Job (deep copy, labels, annotation, owner reference,
nodeName, template fields kept); reading Job conditions; finding a pod's failing
container.
"""

from __future__ import annotations

import copy
import pathlib
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kata_dispatcher import errors, jobs

PREFIX = "kata-deploy-install"
OWNER = jobs.Owner("dispatcher", "owner-uid")

# Node names as the API allows them (DNS-1123 subdomains) plus what the brief asks us to
# survive anyway (upper case, underscores).
node_names = st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9._]{0,250}[A-Za-z0-9])?", fullmatch=True)


def test_short_dns_label_node_name_is_used_verbatim() -> None:
    assert jobs.job_name(PREFIX, "worker-1") == "kata-deploy-install-worker-1"


@pytest.mark.parametrize(
    "node",
    ["ip-10-0-0-1.ec2.internal", "Worker-1", "node_1", "a" * 253, "x." * 100 + "y"],
)
def test_other_names_get_a_readable_head_and_a_hash_filling_63(node: str) -> None:
    name = jobs.job_name(PREFIX, node)
    assert len(name) == 63
    assert jobs.is_dns_label(name)
    assert name.startswith(PREFIX + "-")
    digest = jobs._digest(node)
    assert digest[: jobs.MIN_HASH] in name


def test_dotted_and_dashed_names_do_not_clash() -> None:
    assert jobs.job_name(PREFIX, "a.b") != jobs.job_name(PREFIX, "a-b")
    assert jobs.job_name(PREFIX, "a-b") == f"{PREFIX}-a-b"


def test_upper_case_does_not_clash_with_lower_case() -> None:
    assert jobs.job_name(PREFIX, "Worker") != jobs.job_name(PREFIX, "worker")


def test_budget_edge_exact_length_name_is_hashed_one_shorter_is_not() -> None:
    budget = 63 - len(PREFIX) - 1
    shorter = "n" * (budget - 1)
    exact = "n" * budget
    assert jobs.job_name(PREFIX, shorter) == f"{PREFIX}-{shorter}"
    hashed = jobs.job_name(PREFIX, exact)
    assert len(hashed) == 63
    assert hashed != f"{PREFIX}-{exact}"


def test_name_of_only_invalid_characters_is_a_bare_hash() -> None:
    name = jobs.job_name(PREFIX, "___")
    assert re.fullmatch(rf"{PREFIX}-[0-9a-f]+", name)
    assert len(name) == 63


def test_longest_allowed_prefix_still_leaves_a_hash() -> None:
    prefix = "p" * jobs.MAX_PREFIX
    name = jobs.job_name(prefix, "some.node.example.com")
    assert len(name) == 63 and jobs.is_dns_label(name)


def test_suffix_budget_below_the_hash_length_is_refused() -> None:
    with pytest.raises(ValueError, match="budget"):
        jobs.name_suffix("node", jobs.MIN_HASH - 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(node_names, min_size=1, max_size=30, unique=True), st.integers(1, jobs.MAX_PREFIX))
def test_job_names_are_valid_and_unique(names: list[str], prefix_len: int) -> None:
    prefix = ("k" * prefix_len)[:prefix_len]
    made = [jobs.job_name(prefix, n) for n in names]
    for n, name in zip(names, made, strict=True):
        assert jobs.is_dns_label(name), (n, name)
        assert len(name) <= 63
        assert jobs.job_name(prefix, n) == name  # deterministic
    assert len(set(made)) == len(made)


@settings(max_examples=300, deadline=None)
@given(st.lists(node_names, min_size=1, max_size=30, unique=True))
def test_node_label_values_are_valid_and_unique(names: list[str]) -> None:
    values = [jobs.node_label_value(n) for n in names]
    assert all(jobs.is_label_value(v) for v in values)
    assert len(set(values)) == len(values)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=300))
def test_any_string_gives_a_valid_name_and_label(node: str) -> None:
    assert jobs.is_dns_label(jobs.job_name(PREFIX, node))
    assert jobs.is_label_value(jobs.node_label_value(node))


def test_node_label_value_keeps_valid_names_and_hashes_others() -> None:
    assert jobs.node_label_value("ip-10-0-0-1.ec2.internal") == "ip-10-0-0-1.ec2.internal"
    long_value = jobs.node_label_value("n" * 100)
    assert len(long_value) == 63 and jobs.is_label_value(long_value)
    assert jobs.node_label_value("-odd-") != jobs.node_label_value("odd")


def test_build_pins_labels_annotates_and_owns(template: dict[str, Any]) -> None:
    job = jobs.build(
        template, "node.example.com", owner=OWNER, release="rel", stage="install", namespace="ns"
    )
    meta = job["metadata"]
    assert meta["name"] == jobs.job_name("kata-deploy-install", "node.example.com")
    assert meta["namespace"] == "ns"
    expected = {
        jobs.RELEASE_LABEL: "rel",
        jobs.STAGE_LABEL: "install",
        jobs.OWNER_LABEL: "dispatcher",
        jobs.NODE_LABEL: "node.example.com",
    }
    assert expected.items() <= meta["labels"].items()
    assert meta["labels"]["app.kubernetes.io/instance"] == "kata-deploy"
    assert meta["annotations"][jobs.NODE_NAME_ANNOTATION] == "node.example.com"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": "dispatcher",
            "uid": "owner-uid",
            "controller": False,
            "blockOwnerDeletion": False,
        }
    ]
    pod = job["spec"]["template"]
    assert expected.items() <= pod["metadata"]["labels"].items()
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "installer"
    assert pod["spec"]["nodeName"] == "node.example.com"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600
    assert pod["spec"]["containers"] == template["spec"]["template"]["spec"]["containers"]


def test_build_leaves_the_template_untouched(template: dict[str, Any]) -> None:
    before = repr(template)
    job = jobs.build(template, "n1", owner=OWNER, release="r", stage="cleanup", namespace="ns")
    job["spec"]["template"]["spec"]["containers"][0]["name"] = "changed"
    assert repr(template) == before


def test_build_drops_server_fields(template: dict[str, Any]) -> None:
    template["metadata"].update(uid="x", resourceVersion="5", creationTimestamp="t")
    template["status"] = {"active": 1}
    job = jobs.build(template, "n1", owner=OWNER, release="r", stage="install", namespace="ns")
    assert "uid" not in job["metadata"] and "status" not in job
    assert "resourceVersion" not in job["metadata"]


@pytest.mark.parametrize(
    ("status", "state", "reason"),
    [
        ({}, jobs.State.RUNNING, ""),
        ({"conditions": [{"type": "Complete", "status": "True"}]}, jobs.State.SUCCEEDED, ""),
        ({"conditions": [{"type": "Complete", "status": "False"}]}, jobs.State.RUNNING, ""),
        (
            # decided, but its pod is still terminating: running, failing, with the reason
            {"conditions": [{"type": "FailureTarget", "status": "True", "reason": "X"}]},
            jobs.State.RUNNING,
            "X",
        ),
        (
            {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]},
            jobs.State.FAILED,
            "DeadlineExceeded",
        ),
        ({"conditions": [{"type": "Suspended", "status": "True"}]}, jobs.State.RUNNING, ""),
    ],
)
def test_interpret(status: dict[str, Any], state: jobs.State, reason: str) -> None:
    result = jobs.interpret({"status": status})
    assert result.state is state
    assert result.reason == reason
    assert result.finished is (state is not jobs.State.RUNNING)
    assert result.failing is (reason == "X")


def test_pod_failure_names_the_first_failing_container() -> None:
    pod = {
        "metadata": {"name": "p"},
        "status": {
            "phase": "Failed",
            "initContainerStatuses": [
                {"name": "host-check", "state": {"terminated": {"exitCode": 0}}},
                {
                    "name": "cri",
                    "state": {
                        "terminated": {"exitCode": 3, "reason": "Error", "message": " bad\n"}
                    },
                },
            ],
            "containerStatuses": [{"name": "label", "state": {"waiting": {}}}],
        },
    }
    failure = jobs.pod_failure(pod)
    assert failure == jobs.PodFailure("p", "cri", 3, "Error", "bad")
    assert failure.as_dict() == {
        "pod": "p",
        "container": "cri",
        "exit_code": 3,
        "container_reason": "Error",
        "termination_message": "bad",
    }


def test_pod_failure_falls_back_to_the_pod_reason() -> None:
    pod = {"metadata": {"name": "p"}, "status": {"phase": "Failed", "reason": "Taint"}}
    assert jobs.pod_failure(pod) == jobs.PodFailure("p", reason="Taint")
    assert jobs.pod_failure({"metadata": {"name": "p"}, "status": {"phase": "Running"}}) is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.update(kind="Pod"), "kind Job"),
        (lambda t: t["metadata"].update(name="Bad_Name"), "metadata.name"),
        (lambda t: t["metadata"].update(name="p" * 53), "at most 52"),
        (lambda t: t["spec"]["template"]["spec"].pop("containers"), "containers"),
        (lambda t: t["spec"]["template"]["spec"].update(nodeName="n"), "nodeName"),
    ],
)
def test_check_template_rejects(template: dict[str, Any], mutate: Any, message: str) -> None:
    mutate(template)
    with pytest.raises(jobs.TemplateError, match=message) as info:
        jobs.check_template(template, source="f.yaml")
    assert "f.yaml" in str(info.value)
    assert info.value.exit_code is errors.ExitCode.USAGE


def test_load_template_errors_name_the_file(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(jobs.TemplateError, match=r"nope\.yaml"):
        jobs.load_template(missing)
    two = tmp_path / "two.yaml"
    two.write_text("a: 1\n---\nb: 2\n", encoding="utf-8")
    with pytest.raises(jobs.TemplateError, match="exactly one document"):
        jobs.load_template(two)
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [\n", encoding="utf-8")
    with pytest.raises(jobs.TemplateError, match="not valid YAML"):
        jobs.load_template(bad)


def test_load_template_reads_a_good_file(template_file: pathlib.Path) -> None:
    assert jobs.prefix_of(jobs.load_template(template_file)) == "kata-deploy-install"


def test_render_yaml_round_trips(template: dict[str, Any]) -> None:
    import yaml

    text = jobs.render_yaml([template, template])
    assert list(yaml.safe_load_all(text)) == [template, template]


# -- template hash, anchor, adoption, stuck pods -----------------------------------------


def test_template_hash_ignores_key_order_and_sees_any_change(template: dict[str, Any]) -> None:
    reordered = dict(reversed(list(template.items())))
    assert jobs.template_hash(template) == jobs.template_hash(reordered)
    changed = copy.deepcopy(template)
    changed["spec"]["backoffLimit"] = 99
    assert jobs.template_hash(changed) != jobs.template_hash(template)
    assert len(jobs.template_hash(template)) == 16


def test_build_with_an_anchor_has_two_owners_and_the_hash_label(template: dict[str, Any]) -> None:
    anchor = jobs.Owner("templates", "cm-uid", "ConfigMap", "v1")
    job = jobs.build(
        template,
        "w1",
        owner=jobs.Owner("dispatcher", "job-uid"),
        release="r",
        stage="install",
        namespace="ns",
        anchor=anchor,
        digest="0123456789abcdef",
    )
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": "dispatcher",
            "uid": "job-uid",
            "controller": False,
            "blockOwnerDeletion": False,
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": "templates",
            "uid": "cm-uid",
            "controller": False,
            "blockOwnerDeletion": False,
        },
    ]
    assert jobs.template_hash_of(job) == "0123456789abcdef"


def test_adoption_patch_is_guarded_by_the_uid() -> None:
    patch = jobs.adoption_patch("old-job-uid", jobs.Owner("d", "new-uid"), None)
    assert patch[0] == {"op": "test", "path": "/metadata/uid", "value": "old-job-uid"}
    assert patch[1] == {
        "op": "add",
        "path": "/metadata/labels/kata-deploy.katacontainers.io~1owner",
        "value": "d",
    }
    assert patch[2]["op"] == "replace" and patch[2]["path"] == "/metadata/ownerReferences"
    assert [r["uid"] for r in patch[2]["value"]] == ["new-uid"]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (
            {
                "phase": "Pending",
                "initContainerStatuses": [
                    {
                        "name": "host-check",
                        "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}},
                    }
                ],
            },
            ("host-check", "ErrImagePull", "not found"),
        ),
        (
            {
                "phase": "Pending",
                "initContainerStatuses": [
                    {"name": "host-check", "state": {"terminated": {"exitCode": 0}}},
                    {"name": "artifacts", "state": {"running": {}}},
                    {"name": "cri", "state": {"waiting": {"reason": "PodInitializing"}}},
                ],
            },
            None,
        ),
        (
            {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "no",
                    }
                ],
            },
            ("", "Unschedulable", "no"),
        ),
        ({"phase": "Pending"}, ("", "Pending", "no container of the pod ever started")),
        (
            {
                "phase": "Running",
                "containerStatuses": [{"name": "label", "state": {"running": {}}}],
            },
            None,
        ),
    ],
)
def test_pod_stuck_says_why_a_pod_makes_no_progress(
    status: dict[str, Any], expected: tuple[str, str, str] | None
) -> None:
    found = jobs.pod_stuck({"metadata": {"name": "p"}, "status": status})
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert (found.container, found.reason, found.termination_message) == expected
