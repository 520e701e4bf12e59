"""The cluster's OCI registry: Debian's distribution registry on 127.0.0.1.

It serves the images built from images/*/Dockerfile (and the node's pause image) to the
real nodes' containerd, and the chart to ``helm push``/``helm install oci://``, as a
published registry serves them to users. Storage lives in the cluster directory, so
``down`` removes it with everything else.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import yaml

from tests.cluster import procs


def config(state_dir: Path, port: int) -> Path:
    path = state_dir / "registry.yaml"
    doc = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(state_dir / "registry")},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def has(port: int, repository: str, tag: str) -> bool:
    """Whether the registry serves ``repository:tag``."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start(state_dir: Path, *, binary: str, port: int) -> None:
    procs.start(state_dir, "registry", [binary, "serve", str(config(state_dir, port))])
    procs.wait_until(
        "registry",
        lambda: healthy(port),
        timeout=30,
        alive_check=lambda: procs.running(state_dir, "registry"),
        log_path=procs.log_file(state_dir, "registry"),
    )
