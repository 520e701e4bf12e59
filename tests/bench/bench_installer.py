"""Benchmark (not a test): time of each installer stage on a fixture host.

Runs a full install, an idempotent re-run and an uninstall of the node installer against
a copy of node-installer/tests/fixtures/hosts/<case>/ with a synthetic payload whose
binaries and images are --binary-size bytes each, repeats each run, prints a table of
the median time per stage and writes tests/bench/results/installer.json.

Usage: python -m tests.bench.bench_installer [--case containerd2-noimports]
                                             [--binary-size 4194304] [--repeat 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import pathlib
import platform
import shutil
import statistics
import sys
import tempfile
import time
from types import ModuleType
from typing import Any

from kata_installer import cli, fsutil, kube, stages
from kata_installer.settings import Settings

from tests import bench

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = REPO / "node-installer" / "tests" / "fixtures" / "hosts"
RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "installer.json"


class _NoKube:
    """The label stage is timed without an API server: a local stand-in."""

    retries = 0

    def __init__(self) -> None:
        self.labels: dict[str, str] = {}

    def get_node_labels(self, name: str) -> dict[str, str]:
        return dict(self.labels)

    def get_node(self, name: str) -> kube.NodeView:
        # Ready, no runtime handlers reported: label waits for nothing (containerd 1.x).
        return kube.NodeView(name, "bench-uid", dict(self.labels), True, ())

    def patch_node(self, node: kube.NodeView, ops: list[dict[str, Any]]) -> None:
        for op in ops:  # the label only; the result annotation is not timed here
            if op["path"].startswith("/metadata/labels/"):
                self.set_node_label(node.name, "label", op.get("value"))

    def post_event(
        self, namespace: str, node: kube.NodeView, *, reason: str, message: str, warning: bool
    ) -> None:
        return None

    def set_node_label(self, name: str, key: str, value: str | None) -> None:
        if value is None:
            self.labels.pop(key, None)
        else:
            self.labels[key] = value

    def get_daemonset(self, namespace: str, name: str) -> None:
        return None


def _payload_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "kata_bench_payload", REPO / "node-installer" / "tests" / "payload.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(ctx_factory, phase: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    ctx = ctx_factory()
    times: dict[str, float] = {}
    order = stages.STAGES if phase != "uninstall" else list(reversed(stages.STAGES))
    for st in order:
        t0 = time.perf_counter()
        if phase == "uninstall":
            stages.run_revert(ctx, st)
            name = st.revert_name
        else:
            stages.run_apply(ctx, st)
            name = st.name
        times[name] = time.perf_counter() - t0
    times["total"] = sum(times.values())
    return times


def main() -> None:
    p = argparse.ArgumentParser(description="Time each node-installer stage on a fixture host.")
    p.add_argument("--case", default="containerd2-noimports")
    p.add_argument("--binary-size", type=int, default=4 << 20)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(sys.argv[1:] if __name__ == "__main__" else [])
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="kata-bench-") as tmp:
        work = pathlib.Path(tmp)
        payload = _payload_module().generate(work / "payload", binary_size=args.binary_size)
        runs: dict[str, list[dict[str, float]]] = {"install": [], "re-run": [], "uninstall": []}
        installed_bytes = 0
        for i in range(args.repeat):
            root = work / f"host{i}"
            shutil.copytree(FIXTURES / args.case / "host", root, symlinks=True)
            (root / "opt").mkdir(exist_ok=True)
            (root / "dev").mkdir(exist_ok=True)
            (root / "dev" / "kvm").touch()
            settings = Settings(
                config=FIXTURES / args.case / "installer.yaml",
                host_root=root,
                payload=payload,
                node_name="bench-node",
                restart="none",
                lock_timeout=5.0,
                kubeconfig="",
                log_format="text",
                dry_run=False,
                arch="amd64",
            )
            no_kube = _NoKube()

            def factory(s: Settings = settings, k: _NoKube = no_kube) -> stages.Context:
                return cli.build_context(s, kube_factory=lambda: k, writer=fsutil.HostWriter())

            runs["install"].append(_run(factory, "install"))
            installed_bytes = sum(
                f.stat().st_size for f in (root / "opt").rglob("*") if f.is_file()
            )
            runs["re-run"].append(_run(factory, "re-run"))
            runs["uninstall"].append(_run(factory, "uninstall"))
    table: dict[str, dict[str, float]] = {}
    for phase, samples in runs.items():
        table[phase] = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    print(  # noqa: T201 - the table is the output
        f"node installer on fixture host {args.case!r}: payload files {args.binary_size >> 10} KiB "
        f"each, {installed_bytes >> 20} MiB installed, median of {args.repeat} runs (ms)"
    )
    print(  # noqa: T201 - the table is the output
        f"{'phase':<10} " + " ".join(f"{k:>17}" for k in table["install"])
    )
    for phase, row in table.items():
        print(  # noqa: T201 - the table is the output
            f"{phase:<10} " + " ".join(f"{v * 1000:>17.1f}" for v in row.values())
        )
    bench.write_json(
        RESULTS,
        {
            "case": args.case,
            "binary_size": args.binary_size,
            "installed_bytes": installed_bytes,
            "repeat": args.repeat,
            "python": platform.python_version(),
            "median_seconds": table,
        },
        indent=1,
    )
    print(  # noqa: T201 - the table is the output
        f"results: {RESULTS.relative_to(REPO)}"
    )


if __name__ == "__main__":
    main()
