"""The only module that decides about restarting the container runtime (systemd).

A restart is requested by `cri`/`revert-cri` when they changed a runtime's configuration,
or when an earlier run owes one (stages/cri.py records the debt before it writes).
Modes: `systemd` runs `systemctl restart <unit>` in the host's namespaces through
nsenter (the pod has hostPID, so PID 1 is the host's init); `none` means the operator
restarts the runtime: only logged; `auto` is systemd when the host runs it
(<host-root>/run/systemd/system exists) and otherwise an error with the reason: a
runtime that is not restarted does not serve Kata, so it is never a silent success.
Every request is recorded in `requests`, whatever the mode, so tests can assert that
an idempotent re-run asked for no restart. The command itself runs through hostexec.py.
"""

from __future__ import annotations

import enum
import logging
import subprocess

from kata_installer import errors, hostexec, hostpaths

log = logging.getLogger(__name__)


class Mode(enum.StrEnum):
    """--restart: how the runtime is restarted after a change."""

    AUTO = "auto"  # systemd when the host runs it, else an error
    SYSTEMD = "systemd"
    NONE = "none"  # the operator restarts it


MODES = tuple(m.value for m in Mode)
_TIMEOUT = 300.0


class Restarter:
    def __init__(
        self,
        mode: str,
        host: hostpaths.HostRoot,
        *,
        dry_run: bool = False,
        run: hostexec.Runner | None = None,
        timeout: float = _TIMEOUT,
    ) -> None:
        if mode not in MODES:
            raise errors.ConfigError(f"--restart must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = Mode(mode)
        self.host = host
        self.dry_run = dry_run
        self.requests: list[str] = []
        self._run = run
        self._timeout = timeout

    def effective_mode(self) -> Mode:
        if self.mode is not Mode.AUTO:
            return self.mode
        return Mode.SYSTEMD if self.host.path("/run/systemd/system").is_dir() else Mode.NONE

    def restart(self, unit: str) -> None:
        """Restart `unit` on the host; HostError when it cannot be or did not succeed."""
        self.requests.append(unit)
        if self.mode is Mode.NONE:
            log.info(
                "not restarting %s (--restart none): restart it yourself so it loads the "
                "new configuration",
                unit,
            )
            return
        if self.effective_mode() is Mode.NONE:
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
            done = hostexec.in_host(
                ["systemctl", "restart", unit], timeout=self._timeout, run=self._run
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
