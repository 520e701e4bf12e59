"""Benchmarks: each bench_<name>.py measures, prints a table and keeps its figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def table(rows: Sequence[Mapping[str, Any]], cols: Sequence[tuple[str, str]], width: int) -> str:
    """Right-aligned columns: `cols` pairs each row key with its heading."""
    head = " | ".join(f"{title:>{width}}" for _, title in cols)
    lines = [head, "-" * len(head)]
    lines += [" | ".join(f"{row[key]!s:>{width}}" for key, _ in cols) for row in rows]
    return "\n".join(lines)
