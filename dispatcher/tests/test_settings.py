"""Settings (settings.py).

Cases: frozen; describe() gives plain JSON-able values for the startup line.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import pytest
from kata_dispatcher import settings


def test_frozen_and_describable() -> None:
    config = settings.Settings(
        template=pathlib.Path("/t.yaml"), owner_job="d", namespace="n", release="r", nodes=("a",)
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.parallelism = 3  # type: ignore[misc]
    described = config.describe()
    assert described["template"] == "/t.yaml"
    assert described["stage"] == "install" and described["nodes"] == ["a"]
    json.dumps(described)
