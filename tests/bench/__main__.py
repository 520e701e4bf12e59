"""Run every benchmark in tests/bench and print its table.

Benchmarks measure; they never assert a time. Each module `bench_<name>.py` exposes
`main()`, prints its own table and keeps its figures in tests/bench/results/<name>.json.
Usage: python3 -m tests.bench [name ...]
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
from pathlib import Path

LOG = logging.getLogger("tests.bench")


def _available() -> list[str]:
    here = Path(__file__).parent
    return sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules([str(here)])
        if m.name.startswith("bench_")
    )


def run(names: list[str]) -> int:
    known = _available()
    unknown = [n for n in names if n not in known]
    if unknown:
        LOG.error("unknown benchmark(s) %s; known: %s", ", ".join(unknown), ", ".join(known))
        return 2
    for name in names or known:
        LOG.info("benchmark %s", name)
        importlib.import_module(f"tests.bench.bench_{name}").main()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="[bench] %(message)s")
    sys.exit(run(sys.argv[1:]))
