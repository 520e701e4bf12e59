"""Build both images with buildah and push them to a registry, for tests and the cluster.

There is one recipe for the images: hack/build-images.sh (what `make images` runs), which
builds images/*/Dockerfile with `buildah bud` on the local stand-in bases of
hack/base-images.sh, with the installer's synthetic payload (no outside registry and no
GitHub here). This module runs it and reads back what it built; it must not build or
assemble an image any other way. buildah's storage is the project's own, under
~/.cache/kata-deploy/buildah (hack/buildah-lib.sh), and every buildah call made from here
goes through that library's `bh` wrapper.

Usage:
    from tests.images import build
    refs = build.build_and_push("127.0.0.1:5000")      # cold ~2 min, cached ~15 s
    refs["kata-dispatcher"].reference                  # "127.0.0.1:5000/kata-dispatcher:dev"
    refs["kata-installer"].pinned                      # "...kata-installer:dev@sha256:..."
    images = build.build(tag="test")                   # no push: local references only
    config = build.inspect(images["kata-dispatcher"].local)
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "hack" / "build-images.sh"
LIB = REPO / "hack" / "buildah-lib.sh"
# The two program images; the registry also gets the bases, under kata-deploy-base/.
PROGRAM_IMAGES = ("kata-dispatcher", "kata-installer")
BASE_IMAGES = ("kata-deploy-base/debian", "kata-deploy-base/python3-nonroot")
# What this machine can build: the only bases and payload reachable without a registry
# or GitHub.
BASES = "local"
PAYLOAD = "synthetic"
# Every image built in this process, for the test session's summary.
BUILT: list[BuiltImage] = []


class BuildError(RuntimeError):
    """hack/build-images.sh failed; the message ends with the tail of its output."""


@dataclasses.dataclass(frozen=True)
class BuiltImage:
    """One image as built (and, with a registry, pushed) by hack/build-images.sh."""

    name: str  # repository path: kata-dispatcher, kata-installer, kata-deploy-base/debian
    local: str  # reference in the project's buildah storage: localhost/<name>:<tag>
    reference: str  # pushed reference <registry>/<name>:<tag>; "" when not pushed
    digest: str  # manifest digest pushed, sha256:...; "" when not pushed
    size: int  # bytes, uncompressed, of all its layers
    build_seconds: float  # 0 for the bases when they came from cache
    push_seconds: float  # 0 when not pushed

    @property
    def pinned(self) -> str:
        """The pushed reference with its digest, or the local reference."""
        if not self.reference:
            return self.local
        return f"{self.reference}@{self.digest}" if self.digest else self.reference


def build(
    *, tag: str = "dev", registry: str | None = None, pause: bool = False, timeout: float = 3600
) -> dict[str, BuiltImage]:
    """Run hack/build-images.sh; return every image it reported, keyed by name.

    Progress lines go to stderr as they come. Without a registry only the two program
    images are reported; with one, the bases too.
    """
    with tempfile.TemporaryDirectory(prefix="kata-build-images-") as tmp:
        report = pathlib.Path(tmp) / "report.tsv"
        argv = [
            "bash",
            str(SCRIPT),
            "--bases",
            BASES,
            "--payload",
            PAYLOAD,
            "--tag",
            tag,
            "--report",
            str(report),
        ]
        if registry:
            argv += ["--push", registry]
        if pause:
            argv += ["--pause"]
        _run_streaming(argv, timeout=timeout)
        images = {image.name: image for image in _read_report(report)}
    missing = [n for n in PROGRAM_IMAGES if n not in images]
    if missing:
        raise BuildError(f"{SCRIPT.name} reported no {', '.join(missing)}")
    BUILT.extend(images.values())
    return images


def build_and_push(
    registry: str, *, tag: str = "dev", pause: bool = False
) -> dict[str, BuiltImage]:
    """Build both images and push them, and the bases, to registry (plain HTTP is fine).

    registry is host:port, e.g. "127.0.0.1:5000"; the images land at
    <registry>/kata-dispatcher:<tag> and <registry>/kata-installer:<tag>. With ``pause``
    the local cluster's sandbox image too, as <registry>/pause:kata-deploy-test (key
    "pause"), which real nodes need before they can start any pod.
    """
    return build(tag=tag, registry=registry, pause=pause)


def push_pause(registry: str) -> BuiltImage:
    """Build the local cluster's pause image alone and push it (real nodes' sandboxes)."""
    with tempfile.TemporaryDirectory(prefix="kata-build-pause-") as tmp:
        report = pathlib.Path(tmp) / "report.tsv"
        _run_streaming(
            ["bash", str(SCRIPT), "--bases", BASES, "--pause-only", "--push", registry,
             "--report", str(report)],
            timeout=600,
        )  # fmt: skip
        images = {image.name: image for image in _read_report(report)}
    if "pause" not in images:
        raise BuildError(f"{SCRIPT.name} --pause-only reported no pause image")
    return images["pause"]


def buildah(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run buildah with the project's storage (hack/buildah-lib.sh's `bh`); never raises."""
    return subprocess.run(
        ["bash", "-c", '. "$0" && bh "$@"', str(LIB), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=_env(),
    )


def inspect(local: str) -> dict[str, Any]:
    """`buildah inspect --type image` of a local reference, as JSON."""
    result = buildah("inspect", "--type", "image", local)
    if result.returncode != 0:
        raise BuildError(f"buildah inspect {local} failed:\n{result.stderr}")
    value: dict[str, Any] = json.loads(result.stdout)
    return value


def run_in(
    local: str, *argv: str, user: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run argv in a throwaway working container of the image; never raises on its exit.

    buildah runs argv directly, not through the ENTRYPOINT, with chroot isolation, the
    image's Env (so PATH finds a program by name) and the image's USER unless user is
    given. It adds /run/.containerenv and the resolver files, which are not in the image.
    """
    created = buildah("from", "--pull=never", local)
    if created.returncode != 0:
        raise BuildError(f"buildah from {local} failed:\n{created.stderr}")
    container = created.stdout.strip().splitlines()[-1]
    options = ["--user", user] if user else []
    try:
        return buildah(
            "run", "--isolation", "chroot", *options, container, "--", *argv, timeout=timeout
        )
    finally:
        buildah("rm", container)


def _env() -> dict[str, str]:
    # The Makefile puts .tools/bin first on PATH; keep the machine's tools after it.
    env = dict(os.environ)
    env["PATH"] = f"{REPO / '.tools' / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def _run_streaming(argv: list[str], *, timeout: float) -> None:
    tail: collections.deque[str] = collections.deque(maxlen=40)
    deadline = time.monotonic() + timeout
    with subprocess.Popen(
        argv,
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stderr.write(line)
            tail.append(line)
            if time.monotonic() > deadline:
                proc.kill()
                raise BuildError(f"{SCRIPT.name} took over {timeout:.0f}s:\n{''.join(tail)}")
        code = proc.wait()
    if code != 0:
        raise BuildError(f"{SCRIPT.name} failed (exit {code}):\n{''.join(tail)}")


def _read_report(path: pathlib.Path) -> list[BuiltImage]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        name, local, reference, digest, size, built, pushed = line.split("\t")
        out.append(
            BuiltImage(
                name=name,
                local=local,
                reference=reference,
                digest=digest,
                size=int(size),
                build_seconds=float(built),
                push_seconds=float(pushed),
            )
        )
    return out
