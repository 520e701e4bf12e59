"""Logging setup (logs.py).

Cases: every line carries node and stage (the stage from the runner's context, `-`
outside one); JSON lines have time (UTC, milliseconds, Z), level, logger, message, node,
stage, then `extra` fields; text lines are `<time> <LEVEL> <message> node=... stage=...`
plus extras; a traceback is kept; --log-level filters; setup() replaces earlier
handlers. That both programs format alike is tests/contracts/test_conventions.py.
"""

from __future__ import annotations

import io
import json
import logging
import re

from kata_installer import logs

TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def test_json_lines_carry_node_stage_and_extras() -> None:
    stream = io.StringIO()
    logs.setup(log_format="json", node="n1", stream=stream)
    with logs.stage("cri"):
        logging.getLogger("kata_installer.t").info("wrote %s", "f", extra={"file": "/etc/x"})
    logging.getLogger("kata_installer.t").info("outside")
    inside, outside = (json.loads(x) for x in stream.getvalue().splitlines())
    assert list(inside) == ["time", "level", "logger", "message", "node", "stage", "file"]
    assert re.fullmatch(TIME, inside["time"])
    assert (inside["node"], inside["stage"], inside["message"]) == ("n1", "cri", "wrote f")
    assert (outside["node"], outside["stage"]) == ("n1", "-")


def test_text_lines_put_context_after_the_message() -> None:
    stream = io.StringIO()
    logs.setup(log_format="text", node="n1", stream=stream)
    with logs.stage("label"):
        logging.getLogger("x").warning("hello", extra={"api_retries": 2})
    assert re.fullmatch(rf"{TIME} WARNING hello node=n1 stage=label api_retries=2\n",
                        stream.getvalue())  # fmt: skip


def test_tracebacks_are_kept_and_the_level_filters() -> None:
    stream = io.StringIO()
    logs.setup(log_format="json", node="", level="WARNING", stream=stream)
    logging.getLogger("x").info("hidden")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("x").exception("failed")
    [line] = stream.getvalue().splitlines()
    doc = json.loads(line)
    assert doc["node"] == "-" and "ValueError: boom" in doc["exception"]


def test_setup_replaces_earlier_handlers() -> None:
    first, second = io.StringIO(), io.StringIO()
    logs.setup(log_format="json", node="a", stream=first)
    logs.setup(log_format="text", node="b", stream=second)
    logging.getLogger("x").info("once")
    assert first.getvalue() == "" and second.getvalue().count("once") == 1
