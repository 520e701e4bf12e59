"""The one frozen Settings object, built in cli.py and passed down.

Nothing below the CLI reads the environment; every knob arrives through here.
"""

from __future__ import annotations

import dataclasses
import pathlib


@dataclasses.dataclass(frozen=True)
class Settings:
    config: pathlib.Path
    host_root: pathlib.Path
    payload: pathlib.Path
    node_name: str
    restart: str  # auto | systemd | none
    lock_timeout: float
    kubeconfig: str
    log_format: str  # text | json
    dry_run: bool
    arch: str  # amd64 | arm64 | s390x | ppc64le
    daemonset_name: str = ""
    namespace: str = ""
    release: str = ""  # the Helm release: names the node's result annotation
    config_hash: str = ""  # the chart's hash of what it installs (report.py)
    log_level: str = "INFO"
    retry_budget: float = 120.0  # retry.Policy: seconds of transient API failure allowed
    request_timeout: float = 30.0
