"""Rendered release size of the kata-deploy chart versus the number of nodes (C8).

Renders the chart with the real `helm template` (Helm 4) in job mode with nodes chosen by
a label selector, in job mode with `job.nodes` listing 10 to 5000 names, and in DaemonSet
mode. For each it reports the rendered manifest size and the gzip size of manifest plus
user values (what Helm's release Secret stores, before base64; its limit is 1 MiB).
With a selector nothing per node is rendered, so that row does not depend on the
cluster's size. Results go to tests/bench/results/release_size.json.
Usage: python3 -m tests.bench release_size
"""

from __future__ import annotations

import gzip
import logging
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from tests import bench

LOG = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm-chart" / "kata-deploy"
RESULTS = Path(__file__).resolve().parent / "results" / "release_size.json"
NODE_COUNTS = (10, 100, 1000, 5000)
HELM_SECRET_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class Row:
    """One rendered scenario."""

    scenario: str
    nodes: int | None
    manifest_bytes: int
    stored_gzip_bytes: int


def _helm() -> str:
    found = shutil.which("helm") or str(ROOT / ".tools" / "bin" / "helm")
    if not Path(found).exists():
        msg = "helm not found: run `bash hack/setup.sh helm4` (or `make setup`)"
        raise SystemExit(msg)
    return found


def _render(values: dict[str, Any], *, helm: str, workdir: Path) -> tuple[int, int]:
    values_file = workdir / "values.yaml"
    values_text = yaml.safe_dump(values)
    values_file.write_text(values_text, encoding="utf-8")
    out = subprocess.run(
        [helm, "template", "kata-deploy", str(CHART), "-n", "kube-system", "-f", str(values_file)],
        check=True,
        capture_output=True,
    ).stdout
    stored = gzip.compress(out + values_text.encode(), mtime=0)
    return len(out), len(stored)


def measure() -> list[Row]:
    """Render every scenario and return its sizes."""
    helm = _helm()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-release-size-") as tmp:
        workdir = Path(tmp)
        size, stored = _render({"deploymentMode": "daemonset"}, helm=helm, workdir=workdir)
        rows.append(Row("daemonset", None, size, stored))
        selector: dict[str, Any] = {
            "deploymentMode": "job",
            "job": {"nodeSelector": {"pool": "kata"}},
        }
        size, stored = _render(selector, helm=helm, workdir=workdir)
        rows.append(Row("job, selector (any cluster size)", None, size, stored))
        for count in NODE_COUNTS:
            names = [f"worker-{i:05d}.example.internal" for i in range(count)]
            values: dict[str, Any] = {"deploymentMode": "job", "job": {"nodes": names}}
            size, stored = _render(values, helm=helm, workdir=workdir)
            rows.append(Row("job, job.nodes list", count, size, stored))
            LOG.info("rendered job.nodes with %d names", count)
    return rows


def _table(rows: list[Row]) -> str:
    lines = [
        f"{'scenario':<34} {'nodes':>6} {'manifest bytes':>15} {'stored gzip bytes':>18} "
        f"{'% of 1 MiB':>10}",
    ]
    for row in rows:
        nodes = "-" if row.nodes is None else str(row.nodes)
        share = 100.0 * row.stored_gzip_bytes / HELM_SECRET_LIMIT
        lines.append(
            f"{row.scenario:<34} {nodes:>6} {row.manifest_bytes:>15,} "
            f"{row.stored_gzip_bytes:>18,} {share:>9.1f}%"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Measure, print the table, keep the results."""
    rows = measure()
    sys.stdout.write(_table(rows))
    bench.write_json(RESULTS, {"rows": [asdict(r) for r in rows]})
    LOG.info("results written to %s", RESULTS.relative_to(ROOT))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="[bench] %(message)s")
    main()
