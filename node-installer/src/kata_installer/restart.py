"""The only module that talks to systemd: restarting the container runtime.

A restart is requested by `cri`/`revert-cri` when they changed a runtime's configuration,
or when an earlier run owes one (stages/cri.py records the debt before it writes).
Modes: `systemd` runs `systemctl restart <unit>` in the host's namespaces through
nsenter (the pod has hostPID, so PID 1 is the host's init); `none` means the operator
restarts the runtime: only logged; `auto` is systemd when the host runs it
(<host-root>/run/systemd/system exists) and otherwise an error with the reason: a
runtime that is not restarted does not serve Kata, so it is never a silent success.
Every request is recorded in `requests`, whatever the mode, so tests can assert that
an idempotent re-run asked for no restart.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable
from typing import Any

from kata_installer import errors, hostpaths

log = logging.getLogger(__name__)

MODES = ("auto", "systemd", "none")
_NSENTER = ["nsenter", "--target", "1", "--mount", "--uts", "--ipc", "--net", "--pid", "--"]
_TIMEOUT = 300.0


class Restarter:
    def __init__(
        self,
        mode: str,
        host: hostpaths.HostRoot,
        *,
        dry_run: bool = False,
        run: Callable[..., subprocess.CompletedProcess[Any]] = subprocess.run,
        timeout: float = _TIMEOUT,
    ) -> None:
        if mode not in MODES:
            raise errors.ConfigError(f"--restart must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.host = host
        self.dry_run = dry_run
        self.requests: list[str] = []
        self._run = run
        self._timeout = timeout

    def effective_mode(self) -> str:
        if self.mode != "auto":
            return self.mode
        return "systemd" if self.host.path("/run/systemd/system").is_dir() else "none"

    def restart(self, unit: str) -> None:
        """Restart `unit` on the host; HostError when it cannot be or did not succeed."""
        self.requests.append(unit)
        if self.mode == "none":
            log.info(
                "not restarting %s (--restart none): restart it yourself so it loads the "
                "new configuration",
                unit,
            )
            return
        if self.effective_mode() == "none":
            raise errors.HostError(
                f"cannot restart {unit}: no systemd is visible at "
                f"{self.host.path('/run/systemd/system')} (the host's /run/systemd must be "
                "mounted, and the host must run systemd); with another service manager pass "
                f"--restart none and restart {unit} yourself"
            )
        if self.dry_run:
            log.info("dry-run: would restart %s via systemd", unit)
            return
        log.info("restarting %s via the host's systemd", unit)
        try:
            done = self._run(
                [*_NSENTER, "systemctl", "restart", unit],
                capture_output=True,
                text=True,
                timeout=self._timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise errors.HostError(
                "cannot restart the container runtime: nsenter is not installed in the image"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise errors.HostError(
                f"systemctl restart {unit} did not finish in {self._timeout:g}s"
            ) from exc
        if done.returncode != 0:
            raise errors.HostError(
                f"systemctl restart {unit} failed (exit {done.returncode}): "
                f"{(done.stderr or done.stdout).strip()}"
            )
        log.info("restarted %s", unit)
