"""Shared fixtures: a synthetic payload, host roots seeded from fixtures/hosts/<case>/,
tree snapshots, a Context builder that talks to a FakeKube, and the terminal summary of
the fuzzed host configurations (test_fuzz_host_config).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import stat
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from kata_installer import cli, fsutil, stages
from kata_installer.settings import Settings

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import fakes
import payload as payload_gen

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "hosts"
CASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "case.yaml").is_file())
NODE = "node-1"

Snapshot = dict[str, tuple[Any, ...]]
# test_fuzz_host_config's case counts: (host, valid|invalid TOML, reverted|refused) -> n,
# plus what the real containerd made of the originals; printed by pytest_terminal_summary
FUZZ_COUNTS = pytest.StashKey[Counter[tuple[str, str, str]]]()


@pytest.fixture(scope="session")
def payload(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return payload_gen.generate(tmp_path_factory.mktemp("payload") / "opt-kata")


def case_meta(case: str) -> dict[str, Any]:
    meta: dict[str, Any] = yaml.safe_load((FIXTURES / case / "case.yaml").read_text())
    meta.setdefault("uninstall", list(reversed(meta["installs"])))
    return meta


def seed_host(case: str, dest: pathlib.Path) -> pathlib.Path:
    """Copy the fixture host tree; add what the pod always sees (/opt, /dev/kvm)."""
    shutil.copytree(FIXTURES / case / "host", dest, symlinks=True)
    (dest / "opt").mkdir(exist_ok=True)
    (dest / "dev").mkdir(exist_ok=True)
    (dest / "dev" / "kvm").touch()
    return dest


def snapshot(root: pathlib.Path, *, mtimes: bool = False) -> Snapshot:
    """Every path under root except run/ (transient): type, bytes, mode (and mtime)."""
    out: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == "run" or rel_dir.startswith("run/"):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = pathlib.Path(dirpath) / name
            rel = os.path.relpath(p, root)
            if rel == "run":
                continue
            st = p.lstat()
            extra = (st.st_mtime_ns,) if mtimes else ()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", str(p.readlink()), *extra)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), *extra)
            else:
                out[rel] = ("file", p.read_bytes(), stat.S_IMODE(st.st_mode), *extra)
    return out


def diff(a: Snapshot, b: Snapshot) -> list[str]:
    lines = [f"only before: {k}" for k in sorted(set(a) - set(b))]
    lines += [f"only after: {k}" for k in sorted(set(b) - set(a))]
    lines += [f"changed: {k}" for k in sorted(set(a) & set(b)) if a[k] != b[k]]
    return lines


def settings(
    root: pathlib.Path, config: pathlib.Path, payload: pathlib.Path, **kw: Any
) -> Settings:
    base: dict[str, Any] = {
        "config": config,
        "host_root": root,
        "payload": payload,
        "node_name": NODE,
        "restart": "none",
        "lock_timeout": 5.0,
        "kubeconfig": "",
        "log_format": "text",
        "dry_run": False,
        "arch": "amd64",
    }
    base.update(kw)
    return Settings(**base)


MakeCtx = Callable[..., stages.Context]


@pytest.fixture
def kube() -> fakes.FakeKube:
    return fakes.FakeKube([NODE])


@pytest.fixture
def make_ctx(payload: pathlib.Path, kube: fakes.FakeKube) -> MakeCtx:
    def make(
        root: pathlib.Path,
        config: pathlib.Path,
        *,
        fault: fsutil.FaultHook | None = None,
        **kw: Any,
    ) -> stages.Context:
        s = settings(root, config, kw.pop("payload", payload), **kw)
        return cli.build_context(
            s,
            kube_factory=lambda: kube,
            writer=fsutil.HostWriter(dry_run=s.dry_run, fault=fault, durable=False),
        )

    return make


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    """How many fuzzed host configurations ran, per host and outcome."""
    counts = config.stash.get(FUZZ_COUNTS, None)
    if not counts:
        return
    tr = terminalreporter
    tr.write_sep("-", "fuzzed host configurations (test_fuzz_host_config)")
    for (host, validity, outcome), n in sorted(counts.items()):
        tr.write_line(f"{n:5d}  {host:<22} {validity:<8} {outcome}")
    reverted = sum(n for (_, _, o), n in counts.items() if o == "reverted")
    refused = sum(n for (_, _, o), n in counts.items() if o == "refused")
    tr.write_line(
        f"{reverted + refused} cases ran: {reverted} installed and reverted byte-identical, "
        f"{refused} refused with an error naming the file, the host root unchanged"
    )
    if exitstatus == 0:
        _evidence(
            "fuzz-host-configs",
            area="fuzz",
            what=f"{reverted + refused} generated containerd (1.x, 2.x) and CRI-O configurations "
            "(odd tables, comments, dotted keys, arrays of tables, CRLF, BOM, non-UTF-8 bytes, "
            "invalid TOML; fixed seed) through install, a second install and uninstall",
            happened=f"{reverted} installed and reverted byte-identical; {refused} refused in "
            "host-check naming the file, the host unchanged; no write outside the host root",
            test="node-installer/tests/test_fuzz_host_config.py",
            stable={"cases": reverted + refused},
            measured={"reverted": reverted, "refused": refused},
        )


def _evidence(id_: str, **fields: Any) -> None:
    """One record of the README's evidence table, in tests/evidence.py's format (this
    suite cannot import the project's tests package: its own is also `tests`)."""
    where = pathlib.Path(__file__).resolve().parents[2] / "tests" / "results" / "evidence"
    where.mkdir(parents=True, exist_ok=True)
    doc = {"id": id_, **fields}
    (where / f"{id_}.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
