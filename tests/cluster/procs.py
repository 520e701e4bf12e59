"""Background processes owned by a cluster directory, tracked by pid files.

Every component is started in its own session (process group), its pid written to
``<dir>/pids/<name>.pid`` and its output to ``<dir>/logs/<name>.log``. Stopping signals
exactly that process group: nothing is found by name, so another cluster or a user's
processes are never touched.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

LOG = logging.getLogger(__name__)


# Children started by this process, kept so they are reaped (not left as zombies) and
# not reported as "still running" when the Popen object would be garbage-collected.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class StartError(RuntimeError):
    """A component did not start or did not become healthy in time."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pid_file(state_dir: Path, name: str) -> Path:
    return state_dir / "pids" / f"{name}.pid"


def log_file(state_dir: Path, name: str) -> Path:
    return state_dir / "logs" / f"{name}.log"


def start(
    state_dir: Path,
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``argv`` detached, in its own process group; return its pid."""
    pid_file(state_dir, name).parent.mkdir(parents=True, exist_ok=True)
    log_path = log_file(state_dir, name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
    _CHILDREN[proc.pid] = proc
    pid_file(state_dir, name).write_text(f"{proc.pid}\n")
    LOG.debug("started %s (pid %d): %s", name, proc.pid, " ".join(argv))
    return proc.pid


def read_pid(state_dir: Path, name: str) -> int | None:
    try:
        return int(pid_file(state_dir, name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _state(pid) not in {"Z", "X"}


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "X"
    return stat.rsplit(")", 1)[1].split()[0]


def running(state_dir: Path, name: str) -> bool:
    pid = read_pid(state_dir, name)
    return pid is not None and alive(pid)


def stop(
    state_dir: Path, name: str, *, grace: float = 10.0, first: signal.Signals = signal.SIGTERM
) -> None:
    """Send ``first`` (SIGTERM) to the process group of ``name``, SIGKILL it after
    ``grace``; forget it. ``first=SIGKILL`` kills it outright."""
    pid = read_pid(state_dir, name)
    if pid is None:
        return
    if alive(pid):
        LOG.debug("stopping %s (pid %d) with %s", name, pid, first.name)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, first)
        deadline = time.monotonic() + grace
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    _CHILDREN.pop(pid, None)
    pid_file(state_dir, name).unlink(missing_ok=True)


def wait_until(
    what: str,
    check: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.2,
    alive_check: Callable[[], bool] | None = None,
    log_path: Path | None = None,
) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` (and the log) otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if alive_check is not None and not alive_check():
            raise StartError(f"{what}: the process exited; see {log_path}\n{tail(log_path)}")
        if time.monotonic() > deadline:
            raise StartError(
                f"{what}: not ready after {timeout:.0f}s; see {log_path}\n{tail(log_path)}"
            )
        time.sleep(interval)


def tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join("    " + line for line in text)
