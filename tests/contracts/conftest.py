"""Session bookkeeping of the contract suites: the fuzzed-values tally.

test_fuzz_values.py records every helm outcome through the `record` fixture; at the end
of the session the rendered cases are kept under tests/contracts/results/fuzz-values/
(valuecases.keep: values files, manifests, summary.json) for reading, and
the terminal summary prints how many cases ran and how each ended.
"""

from __future__ import annotations

import pytest

from tests import evidence
from tests.contracts import valuecases

_RECORD = pytest.StashKey[valuecases.Record]()
_SUMMARY = pytest.StashKey[dict[str, object]]()


@pytest.fixture(scope="session")
def record(request: pytest.FixtureRequest) -> valuecases.Record:
    """Where each fuzzed-values test records what helm made of its case."""
    return request.config.stash.setdefault(_RECORD, valuecases.Record())


def pytest_sessionfinish(session: pytest.Session) -> None:
    record = session.config.stash.get(_RECORD, None)
    if record is not None and record.outcomes:
        summary = valuecases.keep(record.outcomes, valuecases.RESULTS)
        session.config.stash[_SUMMARY] = summary
        counts = summary["counts"]
        if session.testsfailed == 0 and counts.get(valuecases.Verdict.BROKEN.value) == 0:
            evidence.record(
                "fuzz-values-render",
                area="fuzz",
                what=f"{summary['total']} values files through `helm template`: every "
                "hand-picked hostile case (empty strings, unicode, 253-character node names, "
                "huge lists, YAML anchors, numbers for strings) and generated ones "
                "(Hypothesis over values.schema.json, fixed seed)",
                happened=", ".join(f"{n} {verdict}" for verdict, n in counts.items())
                + "; each refusal names a key the case set, each render passes the local "
                "API checks and both programs' parsers",
                test="tests/contracts/test_fuzz_values.py",
                stable={"cases": summary["total"], "broken": 0},
                measured={"counts": counts},
            )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    summary = terminalreporter.config.stash.get(_SUMMARY, None)
    if summary is None:
        return
    counts = summary["counts"]
    assert isinstance(counts, dict)
    terminalreporter.section("fuzzed values")
    terminalreporter.write_line(
        f"{summary['total']} cases ran through helm template: "
        + ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
    )
    where = valuecases.RESULTS.relative_to(valuecases.ROOT)
    terminalreporter.write_line(f"rendered cases and summary.json kept in {where}/")
