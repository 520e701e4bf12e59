"""Shared fixtures: a simulated clock, a fake cluster, a per-node Job template, Settings."""

from __future__ import annotations

import copy
import pathlib
from collections.abc import Callable
from typing import Any

import fakes
import pytest
import yaml
from kata_dispatcher import settings

TEMPLATE: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {
        "name": "kata-deploy-install",
        "namespace": "kata",
        "labels": {"app.kubernetes.io/instance": "kata-deploy"},
    },
    "spec": {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": 3600,
        "template": {
            "metadata": {"labels": {"app.kubernetes.io/component": "installer"}},
            "spec": {
                "restartPolicy": "Never",
                "serviceAccountName": "kata-deploy",
                "tolerations": [{"key": "kata", "operator": "Exists", "effect": "NoSchedule"}],
                "initContainers": [{"name": "host-check", "image": "kata-installer:dev"}],
                "containers": [{"name": "label", "image": "kata-installer:dev"}],
            },
        },
    },
}


@pytest.fixture
def template() -> dict[str, Any]:
    return copy.deepcopy(TEMPLATE)


@pytest.fixture
def template_file(tmp_path: pathlib.Path, template: dict[str, Any]) -> pathlib.Path:
    path = tmp_path / "install-job.yaml"
    path.write_text(yaml.safe_dump(template), encoding="utf-8")
    return path


@pytest.fixture
def clock() -> fakes.FakeClock:
    return fakes.FakeClock()


def node_names(count: int) -> list[str]:
    return [f"worker-{i:03d}" for i in range(count)]


@pytest.fixture
def make_api(clock: fakes.FakeClock) -> Callable[..., fakes.FakeApi]:
    def make(count: int = 5, **kwargs: Any) -> fakes.FakeApi:
        return fakes.FakeApi(clock, nodes=[fakes.node(n) for n in node_names(count)], **kwargs)

    return make


@pytest.fixture
def make_settings(tmp_path: pathlib.Path) -> Callable[..., settings.Settings]:
    def make(**overrides: Any) -> settings.Settings:
        values: dict[str, Any] = {
            "template": tmp_path / "install-job.yaml",
            "owner_job": "dispatcher",
            "namespace": "kata",
            "release": "kata-deploy",
            "parallelism": 3,
            "progress_interval": 10.0,
            "retry_budget": 60.0,
        }
        values.update(overrides)
        return settings.Settings(**values)

    return make
