"""The figures of the fault scenarios (tests/e2e/test_faults.py) as one Markdown table.

Why: the README's "faults on the real control plane" table must be what the tests
measured, not what someone typed. Each scenario keeps its figures in its evidence record
(tests/evidence.py: ``fault-<scenario>``, under ``measured.figures``), the same record
the README's evidence table is made from, so one run's figures feed both tables.
``markdown`` renders them: the e2e session prints the table of its own run,
``python3 -m tests.evidence update`` writes the committed records' table into the README,
and tests/docs/test_readme.py checks the README carries exactly that one.
"""

from __future__ import annotations

from typing import Any

from tests import evidence

BEGIN = "<!-- faults:begin"
END = "<!-- faults:end -->"
# The order of the rows: the order the scenarios run in.
ORDER = (
    "api_unreachable_20s",
    "http_429_503_60s",
    "watch_cuts_and_delays",
    "apiserver_restart",
    "refused_while_starting",
    "budget_exhausted_rerun",
    "installer_label_unlabel",
)


def load() -> dict[str, dict[str, Any]]:
    """Every fault scenario's figures in the committed evidence records, in ``ORDER``."""
    found = {
        r.measured["figures"]["scenario"]: r.measured["figures"]
        for r in evidence.committed().values()
        if r.area == "faults" and "figures" in r.measured
    }
    return {name: found[name] for name in sorted(found, key=_rank)}


def _rank(name: str) -> tuple[int, str]:
    return (ORDER.index(name) if name in ORDER else len(ORDER), name)


def _injected(inj: dict[str, Any]) -> str:
    if not inj:
        return "-"
    parts = [
        ("connections cut", inj.get("refused", 0)),
        ("errors", sum((inj.get("errors") or {}).values())),
        ("watches cut", inj.get("watches_cut", 0)),
        ("delayed", inj.get("delayed", 0)),
    ]
    return ", ".join(f"{n} {what}" for what, n in parts if n) or "none"


def markdown(figures: dict[str, dict[str, Any]]) -> str:
    """One row per scenario: what was done to it and what it did."""
    rows = [
        "| fault | nodes done | duplicates | peak in flight "
        "| retries: 429 / 5xx / connection / 401-403 "
        "| watch restarts / relists | proxy injected | dispatcher runs | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in figures.values():
        r = f.get("retries") or {}
        runs = ", ".join(
            f"{d['stage'] + ' ' if 'stage' in d else ''}{d['result']} (exit {d['exit_code']})"
            for d in f.get("dispatcher_runs") or []
        )
        installer = sum((f.get("installer_retries") or {}).values())
        by_installer = f" (installer: {installer} more)" if installer else ""
        rows.append(
            f"| {f['fault']} | {f['nodes_done']}/{f['nodes_selected']} | {f['duplicates']} "
            f"| {f['peak_in_flight']} of {f['parallelism']} "
            f"| {r.get('rate_limited', 0)} / {r.get('server_error', 0)} / {r.get('connection', 0)}"
            f" / {r.get('refused', 0)}"
            f"{by_installer} "
            f"| {r.get('watch_restarts', 0)} / {r.get('relists', 0)} "
            f"| {_injected(f.get('injected') or {})} "
            f"| {runs} | {f['seconds']} |"
        )
    return "\n".join(rows)
