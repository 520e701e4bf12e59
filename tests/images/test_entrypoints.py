"""Each image's exact entry point, run from a clean virtualenv built the Dockerfile's way.

The venv comes from conftest (the builder stage's `RUN images/build-venv.sh ...`, same
arguments, same filtered context); the command is the final stage's ENTRYPOINT and the
environment is the final stage's ENV with nothing inherited from this machine.

Cases:
- the venv holds the program and its locked dependencies only: no pip, setuptools or
  test tools, the program installed as a wheel (not a link to the checkout)
- every module has hash-checked bytecode compiled at build time, so nothing needs writing
- the venv's interpreter is the base image's /usr/bin/python3 (when this host has it)
- dispatcher: `--help` speaks to a stranger; bad input exits 2 naming the problem
- installer: `--help`; on three fixture hosts (FIXTURE_CASES) with a synthetic payload,
  the host-side install stages (host-check, artifacts, cri) then the cleanup stages
  (revert-cri, remove-artifacts) leave the host tree byte for byte as it was (tmpfs /run
  aside)
- no run writes a single file into the venv (read-only root filesystem)
"""

from __future__ import annotations

import ast
import filecmp
import functools
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.images import conftest, dockerfiles

REPO = dockerfiles.REPO
BUILD_TOOLS = ("pip", "setuptools", "wheel", "_distutils_hack", "pkg_resources")
DEV_TOOLS = ("pytest", "_pytest", "hypothesis", "ruff", "mypy", "yamllint")
PROGRAM_DIRS = {"dispatcher": "dispatcher", "node-installer": "node-installer"}


def _site_packages(venv: pathlib.Path) -> pathlib.Path:
    (site,) = venv.glob("lib/python3*/site-packages")
    return site


def _run(
    image: conftest.ImageVenv, home: pathlib.Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*image.entrypoint(), *args],
        env=image.env(home, **env),
        cwd=home,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture(params=["dispatcher", "node-installer"])
def image(
    request: pytest.FixtureRequest,
) -> conftest.ImageVenv:
    fixture = "dispatcher_venv" if request.param == "dispatcher" else "installer_venv"
    venv: conftest.ImageVenv = request.getfixturevalue(fixture)
    return venv


def test_venv_holds_only_the_program_and_its_locked_dependencies(
    image: conftest.ImageVenv,
) -> None:
    site = _site_packages(image.venv)
    names = {p.name for p in site.iterdir()}
    for tool in BUILD_TOOLS + DEV_TOOLS:
        assert tool not in names, f"{tool} must not be in the {image.name} image"
    assert not list(image.venv.glob("bin/pip*")), "no package manager in the image"
    package = "kata_dispatcher" if image.name == "dispatcher" else "kata_installer"
    assert (site / package / "__init__.py").is_file()
    assert not list(site.glob("*.pth")), "the program must be installed, not linked"
    locked = (REPO / "images" / image.name / "requirements.txt").read_text().lower()
    dists = list(site.glob("*.dist-info"))
    assert len(dists) == locked.count("==") + 1, "one distribution per locked pin, plus ours"
    for dist in dists:
        project, version = dist.name.removesuffix(".dist-info").rsplit("-", 1)
        project = project.lower().replace("_", "-")
        if project.replace("-", "_") == package:
            continue
        assert f"\n{project}=={version}" in locked, (
            f"{dist.name} is installed but not pinned at that version in the lock file"
        )


def _imported_modules(src: pathlib.Path) -> set[str]:
    """Every module a program's source imports, `from a import b` counted as a and a.b."""
    found: set[str] = set()
    for module in src.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_pruned_paths_are_gone_and_never_imported(image: conftest.ImageVenv) -> None:
    prune = REPO / "images" / image.name / "prune.txt"
    entries = [
        line.split("#", 1)[0].strip()
        for line in prune.read_text(encoding="utf-8").splitlines()
        if line.split("#", 1)[0].strip()
    ]
    assert entries
    site = _site_packages(image.venv)
    imported = _imported_modules(REPO / PROGRAM_DIRS[image.name] / "src")
    for entry in entries:
        assert not (site / entry).exists(), f"{entry} is still in the venv"
        module = entry.replace("/", ".")
        users = sorted(m for m in imported if m == module or m.startswith(module + "."))
        assert not users, f"{image.name} imports {users}, which prune.txt removes"
        parent = module.rsplit(".", 1)[0]
        assert (site / parent.replace(".", "/")).exists(), f"{parent} itself must stay"


def test_every_module_has_hash_checked_bytecode(image: conftest.ImageVenv) -> None:
    tag = sys.implementation.cache_tag
    site = _site_packages(image.venv)
    sources = list(site.rglob("*.py"))
    assert len(sources) > 100
    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        assert pyc.is_file(), f"{source} has no bytecode: compile at build time"
        flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
        assert flags == 0b01, f"{pyc} must be an unchecked-hash pyc (flags {flags:#b})"


def test_venv_runs_on_the_base_images_python(image: conftest.ImageVenv) -> None:
    cfg = (image.venv / "pyvenv.cfg").read_text()
    if conftest.DEBIAN_PYTHON.exists():
        assert "home = /usr/bin\n" in cfg
        assert (image.venv / "bin" / "python3").readlink() == conftest.DEBIAN_PYTHON
    script = pathlib.Path(image.entrypoint()[0])
    assert script.read_text().startswith(f"#!{image.venv}/bin/python")


def test_help_speaks_to_a_stranger(image: conftest.ImageVenv, home: pathlib.Path) -> None:
    before = conftest.tree_snapshot(image.venv)
    result = _run(image, home, "--help")
    assert result.returncode == 0, result.stderr
    script = pathlib.Path(image.entrypoint()[0]).name
    assert result.stdout.startswith(f"usage: {script}")
    assert "Exit codes" in result.stdout or "exit codes" in result.stdout.lower()
    assert conftest.tree_snapshot(image.venv) == before, "--help wrote into the venv"


def test_dispatcher_refuses_bad_input_with_exit_2(
    dispatcher_venv: conftest.ImageVenv, home: pathlib.Path
) -> None:
    before = conftest.tree_snapshot(dispatcher_venv.venv)
    missing = home / "no-such-template.yaml"
    result = _run(
        dispatcher_venv,
        home,
        "install",
        "--template",
        str(missing),
        "--owner-job",
        "kata-deploy-dispatcher",
        "--namespace",
        "kube-system",
        "--kubeconfig",
        str(home / "no-such-kubeconfig"),
    )
    assert result.returncode == 2, result.stderr
    assert str(missing) in result.stderr
    bad = _run(dispatcher_venv, home, "install", "--parallelism", "0")
    assert bad.returncode == 2
    assert "--parallelism" in bad.stderr and "'0'" in bad.stderr
    assert conftest.tree_snapshot(dispatcher_venv.venv) == before


# One fixture host per kind of change the stages make, to keep this suite fast; the
# node-installer's own suite runs every case in-process.
FIXTURE_CASES = (
    "containerd17-comments",  # containerd config edited in place, byte-exact revert
    "crio",  # CRI-O drop-in
    "two-suffixes",  # two installs on one node
)


def _fixture_hosts() -> list[pathlib.Path]:
    root = REPO / "node-installer" / "tests" / "fixtures" / "hosts"
    return [root / name for name in FIXTURE_CASES]


def _installer_stage(
    image: conftest.ImageVenv,
    home: pathlib.Path,
    *,
    case: pathlib.Path,
    host: pathlib.Path,
    payload: pathlib.Path,
    config: str,
    stage: str,
) -> None:
    """Run one installer stage the way its container in a per-node Job runs it."""
    result = _run(
        image,
        home,
        *("--config", str(case / config), "--host-root", str(host)),
        *("--node-name", f"node-{case.name}", "--restart", "none", stage),
        KATA_INSTALLER_PAYLOAD=str(payload),
    )
    assert result.returncode == 0, f"{case.name} ({config}) {stage}: {result.stderr}"


def _persistent_paths(root: pathlib.Path) -> list[str]:
    """Every path under a host root except below /run, a tmpfs on real nodes where the
    installer keeps its lock and transient done-markers by design (STYLE.md 6)."""
    paths = (p.relative_to(root).as_posix() for p in root.rglob("*"))
    return sorted(p for p in paths if not p.startswith("run/"))


def _assert_same_tree(left: pathlib.Path, right: pathlib.Path) -> None:
    """Same paths, same bytes, same symlinks (mtimes aside), /run's contents aside."""
    paths_left = _persistent_paths(left)
    paths_right = _persistent_paths(right)
    extra = sorted(set(paths_right) - set(paths_left))
    missing = sorted(set(paths_left) - set(paths_right))
    assert not extra and not missing, f"left behind: {extra}; removed: {missing}"
    for rel in paths_left:
        a, b = left / rel, right / rel
        if a.is_symlink() or b.is_symlink():
            assert a.readlink() == b.readlink(), rel
        elif a.is_file():
            assert filecmp.cmp(a, b, shallow=False), f"{rel} differs after uninstall"


def test_installer_stages_then_revert_leave_the_host_as_it_was(
    installer_venv: conftest.ImageVenv, home: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    hosts = _fixture_hosts()
    for case in hosts:
        assert (case / "case.yaml").is_file(), f"fixture host {case} is gone: update FIXTURE_CASES"
    payload = tmp_path / "kata-artifacts"
    made = subprocess.run(
        [
            sys.executable,
            str(REPO / "node-installer" / "tests" / "payload.py"),
            "--out",
            str(payload),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    before = conftest.tree_snapshot(installer_venv.venv)
    for case in hosts:
        spec = yaml.safe_load((case / "case.yaml").read_text(encoding="utf-8"))
        # What every real node has and git cannot hold: /dev/kvm (host-check requires
        # it; a stand-in file), /opt and /run.
        seeded = tmp_path / "seeded" / case.name
        shutil.copytree(case / "host", seeded, symlinks=True)
        for directory in ("dev", "opt", "run"):
            (seeded / directory).mkdir(exist_ok=True)
        (seeded / "dev" / "kvm").touch()
        host = tmp_path / "hosts" / case.name
        shutil.copytree(seeded, host, symlinks=True)
        run = functools.partial(
            _installer_stage, installer_venv, home, case=case, host=host, payload=payload
        )
        # The host-side stages of each per-node install Job, then of each cleanup Job in
        # reverse order, each as its own container runs it. label/unlabel need the API.
        installs = spec.get("installs") or ["installer.yaml"]
        for config in installs:
            for stage in INSTALL_STAGES:
                run(config=config, stage=stage)
        assert list(host.glob("opt/kata*")), f"{case.name}: nothing was installed"
        for config in reversed(installs):
            for stage in CLEANUP_STAGES:
                run(config=config, stage=stage)
        _assert_same_tree(seeded, host)
    assert conftest.tree_snapshot(installer_venv.venv) == before


INSTALL_STAGES = ("host-check", "artifacts", "cri")
CLEANUP_STAGES = ("revert-cri", "remove-artifacts")
_INSTALLER_YAML = """\
version: 2
env: {multiInstallSuffix: "", debug: false}
k8sDistribution: k8s
shims:
  qemu:
    supportedArches: [amd64, arm64]
"""
