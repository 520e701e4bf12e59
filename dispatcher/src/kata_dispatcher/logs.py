"""Logging setup: human text or one JSON object per line, always on stderr.

Why: stdout is reserved for the program's output (the final JSON summary, or the YAML
of a dry run), so logs never mix with it. Structured fields passed with
`extra={"node": ..., "job": ...}` show up as keys in JSON and as `key=value` in text.

The line format is shared with kata-installer (docs/contracts.md, "Logs"): the two
programs are separate distributions, so node-installer's logs.py carries the same
formatters instead of importing these, and tests/contracts/test_conventions.py checks
that both render the same record to the same bytes. Change both or neither.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import TextIO

from kata_dispatcher import settings

# Attributes every LogRecord has; anything else came in through `extra=` (or, in the
# installer, its node/stage filter).
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
# Context fields come first, in this order, then any other extra in the order given.
CONTEXT = ("node", "stage", "job")


def format_time(created: float) -> str:
    """A record's time as UTC with milliseconds: 2026-01-31T12:00:00.123Z."""
    stamp = datetime.datetime.fromtimestamp(created, datetime.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def fields(record: logging.LogRecord) -> dict[str, object]:
    """The record's context fields and extras, context first."""
    extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
    ordered = {k: extras.pop(k) for k in CONTEXT if k in extras}
    return ordered | extras


class JsonFormatter(logging.Formatter):
    """One compact JSON object per line: time, level, logger, message, the context
    fields and extras, then exception (a formatted traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "time": format_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(fields(record))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """`<time> <LEVEL> <message> key=value...`, the traceback on the lines below."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{format_time(record.created)} {record.levelname:<7} {record.getMessage()}"
        extras = fields(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup(fmt: settings.LogFormat, level: str, *, stream: TextIO | None = None) -> None:
    """Route every logger to one stderr handler with the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt is settings.LogFormat.JSON else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The HTTP layer logs every retry of its own at WARNING; ours already do.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
