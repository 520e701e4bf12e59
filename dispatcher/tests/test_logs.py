"""Logging setup (logs.py).

Cases: JSON lines carry time, level, logger, message and `extra` fields; text lines
append extras as key=value; setup() replaces earlier handlers.
"""

from __future__ import annotations

import io
import json
import logging

from kata_dispatcher import logs, settings


def test_json_lines_carry_extras() -> None:
    stream = io.StringIO()
    logs.setup(settings.LogFormat.JSON, "INFO", stream=stream)
    logging.getLogger("kata_dispatcher.test").info("node %s done", "n1", extra={"node": "n1"})
    record = json.loads(stream.getvalue())
    assert record["message"] == "node n1 done"
    assert record["node"] == "n1"
    assert record["level"] == "INFO" and record["logger"] == "kata_dispatcher.test"
    assert record["time"].endswith("+00:00")


def test_text_lines_append_extras_and_setup_replaces_handlers() -> None:
    first = io.StringIO()
    logs.setup(settings.LogFormat.JSON, "INFO", stream=first)
    stream = io.StringIO()
    logs.setup(settings.LogFormat.TEXT, "INFO", stream=stream)
    logging.getLogger("x").warning("hello", extra={"job": "j1"})
    logging.getLogger("x").debug("hidden")
    assert stream.getvalue().rstrip().endswith("WARNING hello job=j1")
    assert "hidden" not in stream.getvalue() and first.getvalue() == ""
