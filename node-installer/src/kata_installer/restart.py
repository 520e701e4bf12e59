"""The only module that talks to systemd: restarting the container runtime.

A restart is requested only by a stage that really changed a runtime's configuration.
Modes: `systemd` runs `systemctl restart <unit>` in the host's namespaces through
nsenter (the pod has hostPID, so PID 1 is the host's init); `none` only logs;
`auto` picks systemd when the host runs it (<host-root>/run/systemd/system exists)
and none otherwise, with a warning, because an unrestarted runtime does not see Kata.
Every request is recorded in `requests`, whatever the mode, so tests can assert that
an idempotent re-run asked for no restart.
"""

from __future__ import annotations

import logging
import subprocess

from kata_installer import errors, hostpaths

log = logging.getLogger(__name__)

MODES = ("auto", "systemd", "none")
_NSENTER = ["nsenter", "--target", "1", "--mount", "--uts", "--ipc", "--net", "--pid", "--"]
_TIMEOUT = 300.0


class Restarter:
    def __init__(self, mode: str, host: hostpaths.HostRoot, *, dry_run: bool = False) -> None:
        if mode not in MODES:
            raise errors.ConfigError(f"--restart must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.host = host
        self.dry_run = dry_run
        self.requests: list[str] = []

    def effective_mode(self) -> str:
        if self.mode != "auto":
            return self.mode
        return "systemd" if self.host.path("/run/systemd/system").is_dir() else "none"

    def restart(self, unit: str) -> None:
        """Restart `unit` on the host (or say why not)."""
        self.requests.append(unit)
        mode = self.effective_mode()
        if mode == "none":
            level = logging.WARNING if self.mode == "auto" else logging.INFO
            log.log(
                level,
                "not restarting %s (restart mode %s%s): restart it yourself so it loads "
                "the new configuration",
                unit,
                self.mode,
                ", no systemd on the host" if self.mode == "auto" else "",
            )
            return
        if self.dry_run:
            log.info("dry-run: would restart %s via systemd", unit)
            return
        log.info("restarting %s via the host's systemd", unit)
        try:
            done = subprocess.run(
                [*_NSENTER, "systemctl", "restart", unit],
                capture_output=True,
                text=True,
                timeout=_TIMEOUT,
                check=False,
            )
        except FileNotFoundError as exc:
            raise errors.HostError(
                "cannot restart the container runtime: nsenter is not installed in the image"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise errors.HostError(
                f"systemctl restart {unit} did not finish in {_TIMEOUT:g}s"
            ) from exc
        if done.returncode != 0:
            raise errors.HostError(
                f"systemctl restart {unit} failed (exit {done.returncode}): "
                f"{(done.stderr or done.stdout).strip()}"
            )
