"""Benchmarks: each bench_<name>.py measures, prints a table and keeps its figures."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def table(rows: Sequence[Mapping[str, Any]], cols: Sequence[tuple[str, str]], width: int) -> str:
    """Right-aligned columns: `cols` pairs each row key with its heading."""
    head = " | ".join(f"{title:>{width}}" for _, title in cols)
    lines = [head, "-" * len(head)]
    lines += [" | ".join(f"{row[key]!s:>{width}}" for key, _ in cols) for row in rows]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {"cpus": os.cpu_count(), "python": platform.python_version()}


def write_json(path: Path, doc: Mapping[str, Any], *, indent: int = 2) -> None:
    """Keep a benchmark's figures: `path` under tests/bench/results, one JSON document."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=indent) + "\n", encoding="utf-8")
