"""The installer image's payload stage: images/node-installer/fetch-kata.sh.

The script runs with the payload stage's ARGs as its environment, exactly as BuildKit
gives them to a RUN (KATA_PAYLOAD=release), against synthetic Kata static releases served
from a file:// URL.

Cases:
- a release whose SHA-256 matches lands with its opt/kata tree at DEST (zstd and xz)
- the Dockerfile's pinned SHA-256 is what gets checked: a different archive is refused
- a wrong SHA-256 fails before unpacking and leaves nothing at DEST
- an architecture without a SHA-256 (s390x by default) names the build arg to pass
- an unknown or missing TARGETARCH is refused
- an archive without opt/kata/bin is refused
"""

from __future__ import annotations

import hashlib
import pathlib
import subprocess
import tarfile

import pytest

from tests.images import dockerfiles

SCRIPT = dockerfiles.REPO / "images" / "node-installer" / "fetch-kata.sh"


def _stage_env() -> dict[str, str]:
    payload = dockerfiles.parse(dockerfiles.IMAGES["node-installer"]).stage("payload")
    copied = [i for i in payload.all("COPY") if "fetch-kata.sh" in i.args]
    runs = " ".join(i.args for i in payload.all("RUN"))
    assert copied and "fetch-kata /kata-artifacts" in runs
    return {k: v or "" for k, v in payload.args().items()}


def _release(tmp: pathlib.Path, version: str, arch: str, *, suffix: str, layout: bool) -> str:
    """Write kata-static-<version>-<arch>.<suffix> under tmp/<version>/; return its sha256."""
    tree = tmp / "tree"
    root = tree / "opt" / "kata" / ("bin" if layout else "other")
    root.mkdir(parents=True)
    (root / "containerd-shim-kata-v2").write_text("#!/bin/sh\n")
    (tree / "opt" / "kata" / "VERSION").write_text(version + "\n")
    out = tmp / version / f"kata-static-{version}-{arch}.{suffix}"
    out.parent.mkdir(parents=True)
    if suffix == "tar.xz":
        with tarfile.open(out, "w:xz") as tar:
            tar.add(tree, arcname=".")
    else:
        subprocess.run(["tar", "--zstd", "-cf", str(out), "-C", str(tree), "."], check=True)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def _fetch(dest: pathlib.Path, **env: str) -> subprocess.CompletedProcess[str]:
    scratch = dest.parent / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    full = {"PATH": "/usr/local/bin:/usr/bin:/bin", "TMPDIR": str(scratch), **_stage_env(), **env}
    return subprocess.run(
        ["bash", str(SCRIPT), str(dest)],
        env=full,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("suffix", ["tar.zst", "tar.xz"])
def test_verified_release_lands_at_dest(tmp_path: pathlib.Path, suffix: str) -> None:
    sha = _release(tmp_path / "srv", "9.9.9", "arm64", suffix=suffix, layout=True)
    dest = tmp_path / "out" / "kata-artifacts"
    result = _fetch(
        dest,
        TARGETARCH="arm64",
        KATA_VERSION="9.9.9",
        KATA_SHA256_ARM64=sha,
        KATA_ARCHIVE_SUFFIX=suffix,
        KATA_RELEASE_URL=f"file://{tmp_path / 'srv'}",
    )
    assert result.returncode == 0, result.stderr
    assert (dest / "bin" / "containerd-shim-kata-v2").is_file()
    assert (dest / "VERSION").read_text() == "9.9.9\n"
    assert not (dest / "opt").exists()


def test_the_dockerfiles_pinned_checksum_is_enforced(tmp_path: pathlib.Path) -> None:
    version = _stage_env()["KATA_VERSION"]
    _release(tmp_path / "srv", version, "amd64", suffix="tar.zst", layout=True)
    dest = tmp_path / "kata-artifacts"
    result = _fetch(dest, TARGETARCH="amd64", KATA_RELEASE_URL=f"file://{tmp_path / 'srv'}")
    assert result.returncode == 1
    assert f"kata-static-{version}-amd64.tar.zst does not match KATA_SHA256_AMD64" in result.stderr
    assert not dest.exists()


def test_wrong_checksum_unpacks_nothing(tmp_path: pathlib.Path) -> None:
    _release(tmp_path / "srv", "9.9.9", "arm64", suffix="tar.zst", layout=True)
    dest = tmp_path / "kata-artifacts"
    result = _fetch(
        dest,
        TARGETARCH="arm64",
        KATA_VERSION="9.9.9",
        KATA_SHA256_ARM64="0" * 64,
        KATA_RELEASE_URL=f"file://{tmp_path / 'srv'}",
    )
    assert result.returncode == 1
    assert "does not match KATA_SHA256_ARM64" in result.stderr
    assert not dest.exists()
    assert not list((tmp_path / "scratch").iterdir()), "the download must not stay behind"


def test_architecture_without_checksum_names_the_build_arg(tmp_path: pathlib.Path) -> None:
    result = _fetch(tmp_path / "k", TARGETARCH="s390x")
    assert result.returncode == 2
    assert "pass --build-arg KATA_SHA256_S390X=" in result.stderr
    assert "kata-static-" in result.stderr


@pytest.mark.parametrize(("arch", "message"), [("riscv64", "'riscv64'"), ("", "BuildKit")])
def test_unknown_or_missing_architecture_is_refused(
    tmp_path: pathlib.Path, arch: str, message: str
) -> None:
    result = _fetch(tmp_path / "k", TARGETARCH=arch)
    assert result.returncode == 2
    assert message in result.stderr


def test_archive_that_is_not_a_kata_release_is_refused(tmp_path: pathlib.Path) -> None:
    sha = _release(tmp_path / "srv", "9.9.9", "amd64", suffix="tar.zst", layout=False)
    dest = tmp_path / "kata-artifacts"
    result = _fetch(
        dest,
        TARGETARCH="amd64",
        KATA_VERSION="9.9.9",
        KATA_SHA256_AMD64=sha,
        KATA_RELEASE_URL=f"file://{tmp_path / 'srv'}",
    )
    assert result.returncode == 1
    assert "has no opt/kata/bin" in result.stderr
    assert not dest.exists()
