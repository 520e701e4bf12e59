"""Fixtures of the image checks: the filtered build context and each image's virtualenv.

Also registers the `image_build` marker (tests that build the real images with buildah,
test_built_images.py) and prints the size and build and push times of every image built
in the session at its end.

Each image's virtualenv is built the one way its Dockerfile builds it: the builder
stage's `RUN images/build-venv.sh ...` line is read from the Dockerfile and run with the
same arguments, from a copy of the build context as `.dockerignore` filters it, only the
virtualenv path (/opt/venv in the image) replaced by a cache directory. Built venvs are
cached under ~/.cache/kata-deploy/image-venvs keyed by a hash of everything the builder
stage COPYs, so a re-run with unchanged inputs costs nothing.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.images import build, dockerfiles

CACHE = (
    pathlib.Path(
        os.environ.get("KATA_DEPLOY_CACHE")
        or pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
        / "kata-deploy"
    )
    / "image-venvs"
)
BUILD_SCRIPT = "images/build-venv.sh"
IMAGE_VENV = "/opt/venv"
# The interpreter both final stages provide; a host without it builds on its own Python.
DEBIAN_PYTHON = pathlib.Path("/usr/bin/python3")


@dataclasses.dataclass(frozen=True)
class ImageVenv:
    """An image's virtualenv built on the host, and how to run its entry point."""

    name: str
    dockerfile: dockerfiles.Dockerfile
    venv: pathlib.Path
    build_log: str

    def host_path(self, image_path: str) -> str:
        """Map a path inside the image's virtualenv onto the host's copy."""
        if image_path == IMAGE_VENV or image_path.startswith(IMAGE_VENV + "/"):
            return str(self.venv) + image_path[len(IMAGE_VENV) :]
        return image_path

    def entrypoint(self) -> list[str]:
        entry = self.dockerfile.final.all("ENTRYPOINT")[-1].json_args()
        assert entry, f"{self.dockerfile.path}: ENTRYPOINT must use the exec (JSON) form"
        return [self.host_path(entry[0]), *entry[1:]]

    def env(self, home: pathlib.Path, **overrides: str) -> dict[str, str]:
        """The final stage's ENV, venv paths mapped, nothing inherited from the host."""
        env = {"HOME": str(home), "LANG": "C.UTF-8"}
        for key, value in self.dockerfile.final.env().items():
            env[key] = ":".join(self.host_path(p) for p in value.split(":"))
        env.update(overrides)
        return env


def build_run(dockerfile: dockerfiles.Dockerfile) -> tuple[dockerfiles.Stage, list[str]]:
    """The builder stage and the argv of its `RUN images/build-venv.sh ...`."""
    for stage in dockerfile.stages:
        for inst in stage.all("RUN"):
            _, words = inst.flags_and_words()
            if words and words[0] == BUILD_SCRIPT:
                return stage, words
    raise AssertionError(f"{dockerfile.path}: no RUN {BUILD_SCRIPT} in any stage")


def copied_sources(stage: dockerfiles.Stage) -> list[str]:
    """Context paths the stage COPYs from the build context (not --from another stage)."""
    out: list[str] = []
    for inst in stage.all("COPY") + stage.all("ADD"):
        flags, words = inst.flags_and_words()
        if "from" in flags:
            continue
        out.extend(words[:-1])
    return out


def _inputs_hash(context: pathlib.Path, sources: list[str], argv: list[str]) -> str:
    digest = hashlib.sha256()
    digest.update(repr((argv, sys.version, DEBIAN_PYTHON.exists())).encode())
    for source in sorted(sources):
        root = context / source
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            digest.update(path.relative_to(context).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def context(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The build context exactly as .dockerignore lets it through."""
    dest = tmp_path_factory.mktemp("context")
    dockerfiles.build_context(dockerfiles.REPO, dest)
    return dest


def _build(name: str, context: pathlib.Path) -> ImageVenv:
    dockerfile = dockerfiles.parse(dockerfiles.IMAGES[name])
    stage, argv = build_run(dockerfile)
    assert argv[-1] == IMAGE_VENV, f"{dockerfile.path}: build-venv.sh must build {IMAGE_VENV}"
    key = _inputs_hash(context, copied_sources(stage), argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    venv = CACHE / f"{name}-{key}"
    done = CACHE / f"{name}-{key}.log"
    with (CACHE / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            for old in CACHE.glob(f"{name}-*"):
                if old.is_dir():
                    shutil.rmtree(old)
                else:
                    old.unlink()
            env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
            if not DEBIAN_PYTHON.exists():
                env["PYTHON"] = sys.executable
            # The builder's WORKDIR is the context root: run from there, same arguments.
            result = subprocess.run(
                ["bash", *argv[:-1], str(venv)],
                cwd=context,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
            )
            if result.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                pytest.fail(
                    f"{BUILD_SCRIPT} failed for {name} (exit {result.returncode}):\n"
                    f"{result.stdout}\n{result.stderr}"
                )
            done.write_text(result.stdout + result.stderr, encoding="utf-8")
    return ImageVenv(name, dockerfile, venv, done.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def dispatcher_venv(context: pathlib.Path) -> ImageVenv:
    return _build("dispatcher", context)


@pytest.fixture(scope="session")
def installer_venv(context: pathlib.Path) -> ImageVenv:
    return _build("node-installer", context)


def tree_snapshot(root: pathlib.Path) -> dict[str, tuple[int, int]]:
    """Every path under root with its size and mtime, to prove nothing was written."""
    out: dict[str, tuple[int, int]] = {}
    for path in root.rglob("*"):
        stat = path.lstat()
        out[path.relative_to(root).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return out


@pytest.fixture
def home(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    path = tmp_path / "home"
    path.mkdir()
    yield path


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "image_build: builds both images with buildah (root; minutes cold, cached after)",
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not build.BUILT:
        return
    terminalreporter.section("images built with buildah (hack/build-images.sh)")
    for image in build.BUILT:
        built = f"{image.build_seconds:5.1f}s" if image.build_seconds else "    -"
        pushed = f"  push {image.push_seconds:5.1f}s  {image.pinned}" if image.reference else ""
        terminalreporter.write_line(
            f"{image.local:<52} {image.size / 1e6:7.1f} MB  build {built}{pushed}"
        )
