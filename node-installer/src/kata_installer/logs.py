"""Logging setup: every line carries the node and the stage it belongs to.

The stage is a context variable set by the stage runner, so modules just log through
`logging.getLogger(__name__)` and never pass the stage around.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator

_stage: contextvars.ContextVar[str] = contextvars.ContextVar("stage", default="-")
_node = "-"


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Tag every log line inside the block with `stage=<name>`."""
    token = _stage.set(name)
    try:
        yield
    finally:
        _stage.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.node = _node
        record.stage = _stage.get()
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "node": getattr(record, "node", _node),
            "stage": getattr(record, "stage", "-"),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, sort_keys=True)


def setup(*, log_format: str, node: str, level: int = logging.INFO) -> None:
    """Configure the root logger once: text or JSON lines on stderr."""
    global _node  # noqa: PLW0603 - one process, one node
    _node = node or "-"
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)-7s node=%(node)s stage=%(stage)s %(message)s"
            )
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
