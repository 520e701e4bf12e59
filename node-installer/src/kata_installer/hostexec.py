"""The only module that runs programs of the host: every subprocess the installer starts.

Two kinds, both read-only for the installer's own state:
- a command in the host's namespaces through nsenter into PID 1 (the pod has hostPID,
  so PID 1 is the host's init): `systemctl restart <unit>` (restart.py decides when);
- a host binary run from the host root to ask its version (`containerd --version`,
  runtimes/detect.py): static Go binaries run from there.

Callers pass `run` in tests; nothing else here has a side effect of its own.
"""

from __future__ import annotations

import pathlib
import subprocess
from collections.abc import Callable
from typing import Any

Runner = Callable[..., subprocess.CompletedProcess[Any]]
NSENTER = ["nsenter", "--target", "1", "--mount", "--uts", "--ipc", "--net", "--pid", "--"]


def in_host(
    argv: list[str], *, timeout: float, run: Runner | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in the host's namespaces; FileNotFoundError without nsenter,
    subprocess.TimeoutExpired past ``timeout``. ``run`` replaces subprocess.run in tests."""
    if run is not None:
        done: subprocess.CompletedProcess[str] = run(
            [*NSENTER, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )
        return done
    return subprocess.run(
        [*NSENTER, *argv], capture_output=True, text=True, timeout=timeout, check=False
    )


def version_output(binary: pathlib.Path, *, timeout: float = 10) -> str | None:
    """What ``<binary> --version`` prints, or None when it cannot run."""
    try:
        return subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=timeout,
            check=False,
        ).stdout  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
