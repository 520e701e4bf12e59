"""Faults on the real control plane: a job-mode rollout to 200 nodes that keeps its word.

A cluster of its own: 200 kwok nodes (the selection, `job.nodeSelector: {type: kwok}`)
and two runner-backed nodes. Each scenario installs its own release in its own namespace
with real helm and the real chart, parallelism 20; the runner runs the chart's real
dispatcher pod. The fault proxy of tests/faults sits between that pod and the
kube-apiserver: the chart's `podAnnotations` value carries
`kata-deploy.test/api-server: <proxy>`, which the runner writes into the pod's
kubeconfig (so exactly this release's pods go through it; helm, the controllers, kwok,
the runner and the independent Job watch talk to the apiserver directly). Each fault
starts once the rollout is under way (some Jobs created):

- test_api_unreachable_for_20s: the proxy refuses connections and cuts the open ones
  for 20 s;
- test_429_and_503_on_a_fraction: 30 % of requests get a 429 (Retry-After: 1) or a 503
  for a minute from the 20th Job on, which is longer than the rest of the rollout: it
  runs under the fault to its end;
- test_watch_cuts_and_delays: every watch stream is broken 3 s after it opened, for
  40 s, and every request is held back 2 s for the first 20 s of that;
- test_apiserver_killed_and_restarted: the kube-apiserver is SIGKILLed and started again
  on its intact etcd (no proxy: the dispatcher talks to it directly); helm's own wait
  for the hook may fail on that, in which case `helm upgrade` must converge (and a
  dispatcher run that failed must have named the nodes it left);
- test_refusals_from_an_api_server_still_starting: every request, `/readyz` too, is
  answered 403 for 5 s, as a kube-apiserver just restarted answers before its
  authorizer has synced (a CI run caught one refusing the 67th Job of a dispatcher
  that had created 66): one dispatcher run converges, its `refused` retries counted;
- test_installer_label_and_unlabel_under_faults: on the two runner-backed nodes the
  real installer's `label` and `unlabel` (the node label, its result annotation and
  Event) go through the proxy, half of whose answers are 429 or 503, and which is down
  for 10 s as the uninstall starts: both nodes are labelled, then unlabelled and
  byte-identical to before, one install and one cleanup Job each, and the installer's
  own retries are counted from its output;
- test_exhausted_budget_then_rerun_converges: the chart's dispatcher, run as a local
  process with the chart's arguments plus `--retry-budget 8` through the proxy (the
  chart has no value for the budget; its default is 120 s), meets a 12 s outage: it
  exits 3 with an `api-unreachable` summary naming the nodes still running and not
  dispatched (its Lease released once the proxy is back); run again, it converges by
  adopting what exists.

Each ends with every selected node given exactly one Job, all Complete; never more than
20 unfinished, as an independent watch with the admin kubeconfig sees it; and the
dispatcher's summary (its pod's stdout, from the runner's pod-logs) counting the
retries of the fault's kind. The figures (nodes done, duplicates, peak in flight,
retries, what the proxy injected, wall time) are printed at the end of the session and
kept in each scenario's evidence record (tests/evidence.py, `measured.figures`); the
README's faults table is made from the committed records by tests/faults/report.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import evidence
from tests.cluster.cluster import REPO, Cluster, ClusterSpec
from tests.e2e import helpers
from tests.e2e.conftest import running_cluster
from tests.e2e.helpers import CHART, FAULTS, PREFIX, TIMES, wait_for
from tests.faults.proxy import FaultProxy

NODES = 200
PARALLELISM = 20
SPEC = ClusterSpec(nodes=NODES, runner_nodes=2, control_plane=0, tainted=0, job_seconds=0.5)
API_SERVER_ANNOTATION = "kata-deploy.test/api-server"

Inject = Callable[[helpers.JobWatch], str]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory, "faults-cluster", SPEC) as c:
        yield c


@pytest.fixture
def proxy(cluster: Cluster) -> Iterator[FaultProxy]:
    with FaultProxy.for_cluster(cluster) as p:
        yield p


def _selected(cluster: Cluster) -> set[str]:
    return set(cluster.kwok_node_names())


def _values(tmp: Path, proxy: FaultProxy | None) -> Path:
    values: dict[str, Any] = {
        "deploymentMode": "job",
        "job": {"parallelism": PARALLELISM, "nodeSelector": {"type": "kwok"}},
    }
    if proxy is not None:
        values["podAnnotations"] = {API_SERVER_ANNOTATION: proxy.url}
    path = tmp / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _helm(cluster: Cluster, *args: str) -> subprocess.Popen[str]:
    argv = ["helm", "--kubeconfig", str(cluster.kubeconfig), *args, "--timeout", "6m"]
    return subprocess.Popen(
        argv,
        env=cluster.env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _summaries(
    cluster: Cluster, ns: str, release: str, job: str = "dispatcher"
) -> list[dict[str, Any]]:
    """Every summary line (a pod's last JSON line) of the release's install dispatcher
    pods (``job="cleanup"``: its cleanup dispatcher's), oldest first."""
    logs = sorted(
        cluster.pod_logs.glob(f"{ns}_{release}-kata-deploy-job-{job}-*_dispatcher.log"),
        key=lambda p: p.stat().st_mtime,
    )
    out = []
    for log in logs:
        lines = [ln for ln in log.read_text().splitlines() if ln.startswith('{"result"')]
        if lines:
            out.append(json.loads(lines[-1]))
    return out


def _after(watch: helpers.JobWatch, jobs: int) -> None:
    wait_for(f"{jobs} per-node Jobs", lambda: len(watch.created) >= jobs, timeout=240)


def _converged(cluster: Cluster, ns: str, release: str, watch: helpers.JobWatch) -> dict[str, Any]:
    """Assert the promise: one Job per selected node, all Complete, never more than P
    unfinished (independent watch); return the figures."""
    selected = _selected(cluster)
    created = Counter(watch.nodes_created())
    duplicates = {n: c for n, c in created.items() if c > 1}
    assert not duplicates, f"nodes given more than one Job: {duplicates}"
    assert set(created) == selected, sorted(selected ^ set(created))[:10]
    assert watch.peak <= PARALLELISM, watch.peak
    jobs = helpers.jobs(cluster, ns, f"{PREFIX}/release={release},{PREFIX}/stage=install")
    outcome = Counter(helpers.finished(j) for j in jobs)
    assert outcome == {"Complete": len(selected)}, outcome
    return {
        "nodes_selected": len(selected),
        "nodes_done": outcome["Complete"],
        "duplicates": sum(c - 1 for c in created.values()),
        "peak_in_flight": watch.peak,
        "parallelism": PARALLELISM,
    }


def _record(name: str, figures: dict[str, Any]) -> None:
    """Keep the figures for the session's table and in the scenario's evidence record."""
    FAULTS[name] = figures
    runs = figures.get("dispatcher_runs") or []
    retries = figures.get("retries") or {}
    evidence.record(
        f"fault-{name.replace('_', '-')}",
        area="faults",
        what=str(figures["fault"]),
        happened=f"{figures['nodes_done']}/{figures['nodes_selected']} nodes done, "
        f"{figures['duplicates']} duplicate Jobs, peak {figures['peak_in_flight']} in flight "
        f"of {figures['parallelism']}; {retries.get('total', 0)} retried requests "
        f"({retries.get('rate_limited', 0)} after 429, {retries.get('server_error', 0)} after "
        f"5xx, {retries.get('connection', 0)} without an answer"
        + (f", {retries['refused']} after 401/403" if retries.get("refused") else "")
        + "); dispatcher: "
        + ", then ".join(str(r["result"]) for r in runs)
        + (
            f"; the installer retried {sum(figures['installer_retries'].values())} of its "
            "own writes and every host was byte-identical after uninstall"
            if "installer_retries" in figures
            else ""
        ),
        test=f"tests/e2e/test_faults.py (scenario {name})",
        stable={
            "nodes_selected": figures["nodes_selected"],
            "nodes_done": figures["nodes_done"],
            "duplicates": figures["duplicates"],
            "within_parallelism": figures["peak_in_flight"] <= figures["parallelism"],
            "final_result": runs[-1]["result"] if runs else None,
        },
        measured={"figures": figures},
    )


def _uninstall(cluster: Cluster, ns: str, release: str) -> None:
    """Free the release's cluster-scoped names for the next scenario (no cleanup run:
    kwok nodes keep nothing of an install)."""
    helpers.helm(cluster, "uninstall", release, "-n", ns, "--no-hooks", check=False)


def _scenario(
    cluster: Cluster,
    tmp_path: Path,
    name: str,
    *,
    proxy: FaultProxy | None,
    inject: Inject,
    upgrade_if_failed: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Install with the fault injected mid-rollout; return (figures, last summary)."""
    t0 = time.monotonic()
    ns, release = f"faults-{name.replace('_', '-')}", f"f-{name.replace('_', '-')}"
    args = [str(CHART), "-n", ns, "-f", str(_values(tmp_path, proxy))]
    runs: list[dict[str, Any]] = []
    try:
        with helpers.JobWatch(cluster, ns, f"{PREFIX}/release={release}") as watch:
            install = _helm(cluster, "install", release, *args, "--create-namespace")
            fault = inject(watch)
            _, err = install.communicate(timeout=600)
            runs.append({"helm": "install", "exit": install.returncode, "stderr": err[-500:]})
            if install.returncode != 0 and upgrade_if_failed:
                upgrade = _helm(cluster, "upgrade", release, *args)
                _, err = upgrade.communicate(timeout=600)
                runs.append({"helm": "upgrade", "exit": upgrade.returncode, "stderr": err[-500:]})
        assert runs[-1]["exit"] == 0, f"{runs}\nrunner pod logs: {cluster.pod_logs}"
        figures = _converged(cluster, ns, release, watch)
        summaries = _summaries(cluster, ns, release)
        assert summaries, f"no dispatcher summary in {cluster.pod_logs}"
        summary = summaries[-1]
        assert summary["result"] == "succeeded", summary
        assert summary["peak_in_flight"] <= PARALLELISM
        figures |= {
            "scenario": name,
            "fault": fault,
            "helm": [{k: r[k] for k in ("helm", "exit")} for r in runs],
            # a run stopped by an error mid-rollout names the nodes it left; one stopped
            # before the rollout began prints {"result": "error", ...} without counts
            "dispatcher_runs": [
                {k: s.get(k) for k in ("result", "exit_code", "succeeded", "adopted", "retries")}
                | ({"error": s["error"]} if "error" in s else {})
                | (
                    {"left": len(s["unfinished"]) + len(s["not_dispatched"])}
                    if "not_dispatched" in s and s["result"] != "succeeded"
                    else {}
                )
                for s in summaries
            ],
            "retries": _sum_retries(summaries),
            "injected": proxy.counters().as_dict() if proxy is not None else {},
            "seconds": round(time.monotonic() - t0, 1),
        }
    finally:
        _uninstall(cluster, ns, release)
    _record(name, figures)
    TIMES[f"faults: {name}"] = time.monotonic() - t0
    return figures, summary


def _sum_retries(summaries: list[dict[str, Any]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for s in summaries:
        total.update(s.get("retries") or {})
    return dict(total)


def test_api_unreachable_for_20s(cluster: Cluster, proxy: FaultProxy, tmp_path: Path) -> None:
    def inject(watch: helpers.JobWatch) -> str:
        _after(watch, 60)
        proxy.down(20)
        return "API unreachable for 20 s (connections refused, open ones cut), after 60 Jobs"

    figures, summary = _scenario(cluster, tmp_path, "api_unreachable_20s", proxy=proxy,
                                 inject=inject)  # fmt: skip
    assert figures["retries"]["connection"] > 0, summary
    assert figures["retries"]["watch_restarts"] > 0, summary


def test_429_and_503_on_a_fraction(cluster: Cluster, proxy: FaultProxy, tmp_path: Path) -> None:
    def inject(watch: helpers.JobWatch) -> str:
        _after(watch, 20)
        proxy.http_errors(0.3, statuses=(429, 503), retry_after=1, duration=60)
        return "30% of requests answered 429 (Retry-After: 1) or 503 for 60 s, after 20 Jobs"

    figures, summary = _scenario(cluster, tmp_path, "http_429_503_60s", proxy=proxy,
                                 inject=inject)  # fmt: skip
    injected = figures["injected"]["errors"]
    assert injected.get("429") and injected.get("503"), injected
    assert figures["retries"]["rate_limited"] > 0, summary
    assert figures["retries"]["server_error"] > 0, summary
    # every injected answer was retried (the proxy's requests include nothing else)
    assert figures["retries"]["rate_limited"] == injected["429"], (summary, injected)
    assert figures["retries"]["server_error"] == injected["503"], (summary, injected)


def test_watch_cuts_and_delays(cluster: Cluster, proxy: FaultProxy, tmp_path: Path) -> None:
    def inject(watch: helpers.JobWatch) -> str:
        _after(watch, 20)
        proxy.cut_watches(every=3, duration=40)
        proxy.delay(2, duration=20)
        return "watch streams cut 3 s after opening for 40 s; every request held 2 s for 20 s"

    figures, summary = _scenario(cluster, tmp_path, "watch_cuts_and_delays", proxy=proxy,
                                 inject=inject)  # fmt: skip
    cut = figures["injected"]["watches_cut"]
    assert cut > 3 and figures["injected"]["delayed"] > 0, figures["injected"]
    # each cut stream was resumed (one cut may land as the run ends and go unnoticed)
    assert cut - 1 <= figures["retries"]["watch_restarts"] <= cut, (summary, cut)


def test_apiserver_killed_and_restarted(cluster: Cluster, tmp_path: Path) -> None:
    down: list[float] = []

    def inject(watch: helpers.JobWatch) -> str:
        _after(watch, 60)
        down.append(cluster.restart_apiserver())
        return (
            f"kube-apiserver SIGKILLed after 60 Jobs and restarted on its etcd "
            f"(unavailable {down[0]:.1f} s)"
        )

    figures, summary = _scenario(cluster, tmp_path, "apiserver_restart", proxy=None,
                                 inject=inject, upgrade_if_failed=True)  # fmt: skip
    assert figures["retries"]["connection"] > 0, summary
    # a run that did fail on it (helm's own wait may, too) said what it left undone
    for run in figures["dispatcher_runs"]:
        assert run["result"] == "succeeded" or run.get("left"), figures["dispatcher_runs"]


def test_refusals_from_an_api_server_still_starting(
    cluster: Cluster, proxy: FaultProxy, tmp_path: Path
) -> None:
    def inject(watch: helpers.JobWatch) -> str:
        _after(watch, 60)
        proxy.http_errors(1.0, statuses=(403,), retry_after=None, duration=5)
        return (
            "every request answered 403 for 5 s after 60 Jobs, /readyz too (a kube-apiserver "
            "just restarted, before its authorizer has synced)"
        )

    figures, summary = _scenario(cluster, tmp_path, "refused_while_starting", proxy=proxy,
                                 inject=inject)  # fmt: skip
    # one run, no helm upgrade: each 403 was retried, not taken for a missing right
    assert [r["result"] for r in figures["dispatcher_runs"]] == ["succeeded"], figures
    refused = figures["retries"].get("refused", 0)
    assert 0 < refused <= figures["injected"]["errors"]["403"], (summary, figures["injected"])


# ---------------------------------------------------------------- the budget runs out


def test_exhausted_budget_then_rerun_converges(
    cluster: Cluster, proxy: FaultProxy, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    name, ns, release = "budget_exhausted_rerun", "faults-budget", "f-budget"
    chart = helpers.chart_dispatcher(
        cluster, tmp_path, ns, release, "-f", str(_values(tmp_path, None))
    )
    try:
        with helpers.JobWatch(cluster, ns, f"{PREFIX}/release={release}") as watch:
            first = chart.run(cluster, proxy.url, tmp_path / "first.log", "--retry-budget", "8")
            _after(watch, 60)
            proxy.down(12)
            out, _ = first.communicate(timeout=120)
            failed = json.loads(out.strip().splitlines()[-1])
            log = (tmp_path / "first.log").read_text()
            assert first.returncode == 3, log[-3000:]
            assert failed["result"] == "api-unreachable", failed
            assert failed["error"], failed
            left = {u["node"] for u in failed["unfinished"]} | set(failed["not_dispatched"])
            assert left, failed
            assert all(u["reason"] == "ApiUnreachable" for u in failed["unfinished"]), failed
            assert failed["succeeded"] + len(left) == NODES, failed
            assert "giving up: the API server stayed unavailable" in log

            proxy.clear()  # (it listens again after 12 s anyway)
            second = chart.run(cluster, proxy.url, tmp_path / "second.log")
            out, _ = second.communicate(timeout=300)
            assert second.returncode == 0, (tmp_path / "second.log").read_text()[-3000:]
            converged = json.loads(out.strip().splitlines()[-1])
        figures = _converged(cluster, ns, release, watch)
        assert converged["result"] == "succeeded"
        assert converged["succeeded"] == NODES
        figures |= {
            "scenario": name,
            "fault": "dispatcher with --retry-budget 8 s meets a 12 s outage after 60 Jobs "
            "(exit 3); then run again",
            "dispatcher_runs": [
                {k: s[k] for k in ("result", "exit_code", "succeeded", "adopted", "retries")}
                | {"unfinished": len(s["unfinished"]), "not_dispatched": len(s["not_dispatched"])}
                for s in (failed, converged)
            ],
            "retries": _sum_retries([failed, converged]),
            "injected": proxy.counters().as_dict(),
            "seconds": round(time.monotonic() - t0, 1),
        }
        assert figures["retries"]["connection"] > 0
    finally:
        helpers.kubectl(cluster, "delete", "-f", str(chart.objects), "--wait=false",
                        check=False)  # fmt: skip
    _record(name, figures)
    TIMES[f"faults: {name}"] = time.monotonic() - t0


# ---------------------------------------------------------------- the installer's writes


def _installer_retries(cluster: Cluster, ns: str) -> dict[str, int]:
    """The retries the installer's label/unlabel containers report on their last line
    (`finished: <command> exit N, M API retries`, docs/contracts.md)."""
    counts: Counter[str] = Counter()
    for stage in ("label", "unlabel"):
        for log in cluster.pod_logs.glob(f"{ns}_*_{stage}.log"):
            for found in _FINISHED.finditer(log.read_text()):
                counts[stage] += int(found["retries"])
    return dict(counts)


_FINISHED = re.compile(r"finished: \S+ exit \d+, (?P<retries>\d+) API retries")


def test_installer_label_and_unlabel_under_faults(
    cluster: Cluster, proxy: FaultProxy, tmp_path: Path
) -> None:
    """The two runner-backed nodes run the real installer: its `label` (node label,
    result annotation, Event) and, at `helm uninstall`, its `unlabel` go through the
    proxy, which answers half of all requests 429 or 503 for the whole run and is down
    for 10 s at the start of the uninstall."""
    t0 = time.monotonic()
    name, ns, release = "installer_label_unlabel", "faults-installer", "f-installer"
    runners = cluster.runner_node_names()
    values = yaml.safe_load(_values(tmp_path, proxy).read_text())
    values["job"]["nodeSelector"] = {"kata-deploy.test/runner": "true"}
    path = tmp_path / "installer.yaml"
    path.write_text(yaml.safe_dump(values))
    proxy.http_errors(0.5, statuses=(429, 503), retry_after=1, duration=600)
    with helpers.JobWatch(cluster, ns, f"{PREFIX}/release={release}") as watch:
        helpers.helm(cluster, "install", release, str(CHART), "-n", ns, "--create-namespace",
                     "-f", str(path), "--timeout", "5m")  # fmt: skip
        assert set(runners) <= helpers.labelled(cluster)
        installed = _summaries(cluster, ns, release)[-1]
        proxy.down(10)
        helpers.helm(cluster, "uninstall", release, "-n", ns, "--timeout", "5m")
    assert not set(runners) & helpers.labelled(cluster)
    helpers.assert_hosts_pristine(cluster, runners)
    created = Counter(watch.nodes_created())
    cleaned = Counter(watch.nodes_created("cleanup"))
    assert created == cleaned == dict.fromkeys(runners, 1), (created, cleaned)
    installer = _installer_retries(cluster, ns)
    injected = proxy.counters().as_dict()
    runs = [installed, *_summaries(cluster, ns, release, "cleanup")]
    assert [(r["stage"], r["result"]) for r in runs] == [
        ("install", "succeeded"),
        ("cleanup", "succeeded"),
    ], runs
    assert installer.get("label") and installer.get("unlabel"), installer
    figures = {
        "scenario": name,
        "fault": "installer label/unlabel on 2 runner nodes: 50% of requests 429 or 503 "
        "throughout, down 10 s as the uninstall starts",
        "nodes_selected": len(runners),
        "nodes_done": len(runners),
        "duplicates": sum(c - 1 for c in created.values()) + sum(c - 1 for c in cleaned.values()),
        "peak_in_flight": watch.peak,
        "parallelism": PARALLELISM,
        "dispatcher_runs": [
            {k: r[k] for k in ("stage", "result", "exit_code", "succeeded", "adopted", "retries")}
            for r in runs
        ],
        "retries": _sum_retries(runs),
        "installer_retries": installer,
        "injected": injected,
        "seconds": round(time.monotonic() - t0, 1),
    }
    _record(name, figures)
    TIMES[f"faults: {name}"] = time.monotonic() - t0
