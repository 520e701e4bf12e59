"""Logging setup (logs.py).

Cases: JSON lines carry time (UTC, milliseconds, Z), level, logger, message and `extra`
fields, context fields (node, stage, job) first; text lines start with the same time and
append extras as key=value; setup() replaces earlier handlers. That both programs
format alike is tests/contracts/test_conventions.py.
"""

from __future__ import annotations

import io
import json
import logging
import re

from kata_dispatcher import logs, settings


def test_json_lines_carry_extras() -> None:
    stream = io.StringIO()
    logs.setup(settings.LogFormat.JSON, "INFO", stream=stream)
    logging.getLogger("kata_dispatcher.test").info("node %s done", "n1", extra={"node": "n1"})
    record = json.loads(stream.getvalue())
    assert record["message"] == "node n1 done"
    assert record["node"] == "n1"
    assert record["level"] == "INFO" and record["logger"] == "kata_dispatcher.test"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])


def test_context_fields_come_first() -> None:
    stream = io.StringIO()
    logs.setup(settings.LogFormat.JSON, "INFO", stream=stream)
    logging.getLogger("x").info("m", extra={"reason": "r", "job": "j", "node": "n"})
    assert list(json.loads(stream.getvalue()))[4:] == ["node", "job", "reason"]


def test_text_lines_append_extras_and_setup_replaces_handlers() -> None:
    first = io.StringIO()
    logs.setup(settings.LogFormat.JSON, "INFO", stream=first)
    stream = io.StringIO()
    logs.setup(settings.LogFormat.TEXT, "INFO", stream=stream)
    logging.getLogger("x").warning("hello", extra={"job": "j1"})
    logging.getLogger("x").debug("hidden")
    assert re.fullmatch(r"\S+Z WARNING hello job=j1\n", stream.getvalue())
    assert "hidden" not in stream.getvalue() and first.getvalue() == ""
