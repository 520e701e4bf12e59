"""The real containerd binaries load every configuration the installer produces.

For each containerd fixture host: install, then build what containerd would read (the
main config with its imports pointed into the host root; for k3s/rke2 the template
rendered with the base config; for k0s a root config importing the drop-in), run
`containerd --config F config dump`, and check every handler sits at the plugin path
of that containerd with our runtime_path and ConfigPath, and that runc is still there.
Binaries: .tools/bin/containerd1 (Debian 1.6) and .tools/bin/containerd2 (2.x), from
`bash hack/setup.sh containerd1 containerd2`. Missing binaries fail, never skip.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import tomllib
from typing import Any

import pytest
import tomlkit
from conftest import CASES, FIXTURES, MakeCtx, case_meta, seed_host
from kata_installer import layout, stages
from kata_installer.runtimes import containerd

TOOLS = pathlib.Path(__file__).resolve().parents[2] / ".tools" / "bin"
PLUGIN = {"containerd1": "io.containerd.grpc.v1.cri", "containerd2": "io.containerd.cri.v1.runtime"}
PAIRS = [(c, b) for c in CASES for b in case_meta(c)["containerd"]]


def _binary(name: str) -> pathlib.Path:
    path = TOOLS / name
    assert path.exists(), (
        f"{path} is missing: run `bash hack/setup.sh {name}` (these tests must not be skipped)"
    )
    return path


def _rehome_imports(text: str, root: pathlib.Path) -> str:
    doc = tomlkit.parse(text)
    if "imports" in doc:
        doc["imports"] = [f"{root}{p}" if str(p).startswith("/") else p for p in doc["imports"]]
    return tomlkit.dumps(doc)


def _effective_config(ctx: stages.Context, root: pathlib.Path, tmp: pathlib.Path) -> pathlib.Path:
    rt = ctx.runtime()
    out = tmp / "dump-input.toml"
    if rt.mode == "template":
        rendered = (root / rt.config_path.lstrip("/")).read_text()
        text = (root / rt.template_path.lstrip("/")).read_text()
        out.write_text(text.replace(containerd.TEMPLATE_BASE, rendered))
    elif rt.mode == "drop-in":
        drop_in = root / rt.drop_in_dir.lstrip("/") / containerd.drop_in_name(ctx.cfg)
        out.write_text(f"version = {rt.config_version}\nimports = [{json.dumps(str(drop_in))}]\n")
    else:
        out.write_text(_rehome_imports((root / rt.config_path.lstrip("/")).read_text(), root))
    return out


def _dump(binary: pathlib.Path, config: pathlib.Path) -> dict[str, Any]:
    done = subprocess.run(
        [str(binary), "--config", str(config), "config", "dump"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{binary.name} refused {config}:\n{done.stderr}"
    return tomllib.loads(done.stdout)


@pytest.mark.parametrize(("case", "binary"), PAIRS)
def test_real_containerd_loads_config(
    case: str, binary: str, tmp_path: pathlib.Path, make_ctx: MakeCtx
) -> None:
    exe = _binary(binary)
    root = seed_host(case, tmp_path / "host")
    meta = case_meta(case)
    ctxs = []
    for name in meta["installs"]:
        ctx = make_ctx(root, FIXTURES / case / name)
        stages.install(ctx)
        ctxs.append(ctx)
    dumped = _dump(exe, _effective_config(ctxs[-1], root, tmp_path))
    runtimes = dumped["plugins"][PLUGIN[binary]]["containerd"]["runtimes"]
    for ctx in ctxs:
        for h in layout.handlers(ctx.cfg, ctx.arch):
            assert h.name in runtimes, f"{binary}: handler {h.name} missing from config dump"
            got = runtimes[h.name]
            assert got["runtime_type"] == f"io.containerd.{h.name}.v2"
            assert got["runtime_path"] == h.binary_path(ctx.cfg.prefix)
            assert got["options"]["ConfigPath"] == h.config_path(ctx.cfg.prefix)
            assert got["privileged_without_host_devices"] is True
            if h.snapshotter and binary == "containerd2":
                assert got["snapshotter"] == h.snapshotter
    if not (case == "k0s" and binary == "containerd1"):
        # k0s merges its containerd.d snippets itself; a containerd 1.x import would
        # replace the whole CRI section, which is why 1.x never gets a drop-in from us.
        assert "runc" in runtimes, f"{binary}: the host's runc handler was lost in the merge"
