"""lock.py: one host-wide flock around every run.

Cases:
- a second holder (another process, as another installer pod would be) makes the
  lock wait, and the wait ends as soon as the first releases it;
- a holder that keeps it past --lock-timeout is a LockTimeout naming the lock and the
  timeout; nothing ran inside;
- a holder that dies (SIGKILL) releases the lock at once: the kernel drops flocks;
"""

from __future__ import annotations

import contextlib
import pathlib
import signal
import subprocess
import sys
import time

import pytest
from kata_installer import errors, fsutil, hostpaths, lock

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _holder(root: pathlib.Path, seconds: float) -> subprocess.Popen[str]:
    path = root / lock.LOCK_PATH.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    proc.stdout.close()
    return proc


def _lock(root: pathlib.Path, timeout: float) -> contextlib.AbstractContextManager[None]:
    writer = fsutil.HostWriter(durable=False)
    return lock.host_lock(hostpaths.HostRoot(root), writer, timeout=timeout)


def test_waits_for_the_other_holder(tmp_path: pathlib.Path) -> None:
    holder = _holder(tmp_path, 0.5)
    t0 = time.monotonic()
    with _lock(tmp_path, timeout=10):
        waited = time.monotonic() - t0
    holder.wait(5)
    assert 0.3 < waited < 5


def test_times_out_naming_the_lock(tmp_path: pathlib.Path) -> None:
    holder = _holder(tmp_path, 30)
    ran = []
    try:
        with (
            pytest.raises(errors.LockTimeout, match=r"/run/kata-deploy/lock for more than 0.3s"),
            _lock(tmp_path, timeout=0.3),
        ):
            ran.append(1)
    finally:
        holder.kill()
        holder.wait(5)
    assert ran == []


def test_a_killed_holder_releases_it(tmp_path: pathlib.Path) -> None:
    holder = _holder(tmp_path, 30)
    holder.send_signal(signal.SIGKILL)
    holder.wait(5)
    t0 = time.monotonic()
    with _lock(tmp_path, timeout=5):
        pass
    assert time.monotonic() - t0 < 1
