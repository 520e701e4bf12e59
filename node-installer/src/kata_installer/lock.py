"""One host-wide lock around every run, so two installers never edit a node at once.

The lock is an flock on <host-root>/run/kata-deploy/lock: shared by every install on
the node (every suffix), released by the kernel if the process dies, and gone after a
reboot together with /run.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
import time
from collections.abc import Iterator

from kata_installer import errors, fsutil, hostpaths

log = logging.getLogger(__name__)

LOCK_PATH = "/run/kata-deploy/lock"
_POLL = 0.05


@contextlib.contextmanager
def host_lock(
    host: hostpaths.HostRoot,
    writer: fsutil.HostWriter,
    *,
    timeout: float,
    stop: threading.Event | None = None,
) -> Iterator[None]:
    """Hold the host lock for the block; LockTimeout (exit 4) after `timeout` seconds of
    waiting, Terminated as soon as `stop` is set while waiting."""
    path = host.path(LOCK_PATH)
    with writer.open_lock_file(path) as fd:
        deadline = time.monotonic() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    log.info("waiting for the host lock %s (held by another installer)", path)
                    waited = True
                if stop is not None and stop.is_set():
                    raise errors.Terminated(
                        f"stopped by a signal while waiting for the host lock {LOCK_PATH}"
                    ) from None
                if time.monotonic() >= deadline:
                    raise errors.LockTimeout(
                        f"another kata-installer has held the host lock {LOCK_PATH} for more "
                        f"than {timeout:g}s (--lock-timeout); is an install or uninstall "
                        "stuck on this node? The lock is released when that process exits."
                    ) from None
                time.sleep(_POLL)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
