"""A throwaway image registry on 127.0.0.1, for pushing the built images in tests.

Debian's docker-registry (distribution 2.8, unpacked into the cache by
`hack/setup.sh registry`, linked as .tools/bin/docker-registry) serving plain HTTP on a
free loopback port, with its storage in a directory the caller owns. It must not outlive
the `with` block: the process is stopped (SIGTERM, then SIGKILL) on the way out, even
when the block raises.

Usage:
    with registry.serve(tmp_path) as address:          # "127.0.0.1:41234"
        build.build_and_push(address)
        registry.get_json(address, "/v2/kata-dispatcher/tags/list")
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from tests.cluster import procs
from tests.cluster import registry as cluster_registry

REPO = pathlib.Path(__file__).resolve().parents[2]
CACHE = pathlib.Path(
    os.environ.get("KATA_DEPLOY_CACHE")
    or pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    / "kata-deploy"
)
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)


def binary() -> pathlib.Path:
    """The docker-registry binary: .tools/bin, then PATH, then the setup cache."""
    found = shutil.which("docker-registry", path=f"{REPO / '.tools' / 'bin'}:{os.environ['PATH']}")
    if found:
        return pathlib.Path(found)
    cached = sorted(CACHE.glob("registry-*/bin/docker-registry"))
    if cached:
        return cached[-1]
    raise FileNotFoundError("docker-registry not found: run `bash hack/setup.sh registry`")


@contextlib.contextmanager
def serve(workdir: pathlib.Path) -> Iterator[str]:
    """Run a registry storing under workdir; yield its address host:port.

    The same registry, configuration and health check as the local cluster's
    (tests/cluster/registry.py), with its pid file and log under workdir.
    """
    port = procs.free_port()
    cluster_registry.start(workdir, binary=str(binary()), port=port)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        procs.stop(workdir, "registry")


def get(address: str, path: str, *, accept: tuple[str, ...] = ()) -> tuple[bytes, dict[str, str]]:
    """GET http://address/path; return the body and the response headers."""
    request = urllib.request.Request(f"http://{address}{path}")
    if accept:
        request.add_header("Accept", ", ".join(accept))
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (plain HTTP)
        return response.read(), dict(response.headers.items())


def get_json(address: str, path: str) -> Any:
    body, _ = get(address, path)
    return json.loads(body)


def manifest(address: str, name: str, tag: str) -> tuple[dict[str, Any], str]:
    """The image manifest of name:tag and the digest the registry serves it under."""
    try:
        body, headers = get(address, f"/v2/{name}/manifests/{tag}", accept=MANIFEST_TYPES)
    except urllib.error.HTTPError as err:
        raise LookupError(f"{address}/{name}:{tag}: HTTP {err.code}") from err
    value: dict[str, Any] = json.loads(body)
    return value, headers.get("Docker-Content-Digest", "")
