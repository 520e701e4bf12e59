"""Golden bytes of every config.d file the artifacts stage generates for a handler.

One handler with every option set (a suffixed install, debug, a TEE shim's agent proxy,
allowed hypervisor annotations and a user dropIn) produces all five files:
10-install-prefix, 20-debug, 30-agent-proxy, 40-hypervisor-annotations and
50-user-overrides. Each is compared byte for byte with fixtures/config.d/; regenerate
with KATA_UPDATE_GOLDEN=1 and review the diff. A plain install produces none of them.
"""

from __future__ import annotations

import os
import pathlib

from conftest import MakeCtx, seed_host
from kata_installer import stages

GOLDEN = pathlib.Path(__file__).parent / "fixtures" / "config.d"
UPDATE = os.environ.get("KATA_UPDATE_GOLDEN") == "1"
FILES = [
    "10-install-prefix.toml",
    "20-debug.toml",
    "30-agent-proxy.toml",
    "40-hypervisor-annotations.toml",
    "50-user-overrides.toml",
]
EVERYTHING = """version: 2
env: {multiInstallSuffix: gold, debug: true}
shims:
  qemu-coco-dev:
    supportedArches: [amd64]
    agent: {httpsProxy: "http://proxy.example:3128", noProxy: "10.0.0.0/8"}
    allowedHypervisorAnnotations: [default_memory, default_vcpus]
    dropIn: |
      [hypervisor.qemu]
      default_vcpus = 2
"""


def _config_d(root: pathlib.Path, prefix: str, shim: str) -> pathlib.Path:
    return root / f"opt/{prefix}/share/defaults/kata-containers/runtimes/{shim}/config.d"


def test_every_generated_file_matches_its_golden_bytes(
    tmp_path: pathlib.Path, make_ctx: MakeCtx
) -> None:
    root = seed_host("containerd2-fresh", tmp_path / "host")
    cfg = tmp_path / "installer.yaml"
    cfg.write_text(EVERYTHING)
    stages.run_apply(make_ctx(root, cfg), stages.by_name("artifacts")[1])
    got = {p.name: p.read_bytes() for p in _config_d(root, "kata-gold", "qemu-coco-dev").iterdir()}
    assert sorted(got) == FILES
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, data in got.items():
            (GOLDEN / name).write_bytes(data)
    for name in FILES:
        assert got[name] == (GOLDEN / name).read_bytes(), f"{name} differs from its golden file"


def test_a_plain_install_generates_none(tmp_path: pathlib.Path, make_ctx: MakeCtx) -> None:
    root = seed_host("containerd2-fresh", tmp_path / "host")
    cfg = tmp_path / "installer.yaml"
    cfg.write_text("version: 2\nshims:\n  qemu-coco-dev: {supportedArches: [amd64]}\n")
    stages.run_apply(make_ctx(root, cfg), stages.by_name("artifacts")[1])
    config_d = _config_d(root, "kata", "qemu-coco-dev")
    assert not config_d.exists() or not any(config_d.iterdir())
