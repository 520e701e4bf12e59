"""What we tested, and what happened: the README's evidence table, made by the tests.

A test that proves something to operators (a fault survived, a privilege refused, a
fuzz campaign) ends with `record(...)`: what it did, what happened, the test's node id,
and its figures, split into
- `stable`: what the test asserts and every run must reproduce (nodes done, duplicates,
  cases that ran, requests refused), and
- `measured`: what varies from run to run (retries, seconds, peaks below a bound).
Each record is written to tests/results/evidence/<id>.json (git-ignored, this run's).

docs/evidence/<id>.json holds the records the README's table is made from (committed).
`python3 -m tests.evidence update` copies this run's records there and rewrites the
table between `<!-- evidence:begin` and `<!-- evidence:end -->` (and the faults table,
made from the fault records' figures by tests/faults/report.py); `make test` ends with
`python3 -m tests.evidence check`: every committed record was made again by this run
with the same stable figures, so no claim in the table outlives the test behind it.
tests/docs/test_readme.py checks that the table is the one the records make.

The node installer's suite writes the same JSON from node-installer/tests/conftest.py
(it cannot import this package); the format is `Record` below.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
FRESH = ROOT / "tests" / "results" / "evidence"
COMMITTED = ROOT / "docs" / "evidence"
README = ROOT / "README.md"
BEGIN = "<!-- evidence:begin"
END = "<!-- evidence:end -->"
# Table order: the areas of issue 13, then anything else alphabetically.
AREAS = ("faults", "kills", "privileges", "fuzz")


@dataclasses.dataclass(frozen=True)
class Record:
    id: str
    area: str
    what: str
    happened: str
    test: str
    stable: dict[str, Any]
    measured: dict[str, Any]

    @classmethod
    def load(cls, path: pathlib.Path) -> Record:
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def dump(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"


def record(
    id: str,
    *,
    area: str,
    what: str,
    happened: str,
    test: str,
    stable: dict[str, Any],
    measured: dict[str, Any] | None = None,
) -> Record:
    """Write this run's record `id` (tests/results/evidence/<id>.json) and return it."""
    rec = Record(id, area, what, happened, test, stable, measured or {})
    FRESH.mkdir(parents=True, exist_ok=True)
    (FRESH / f"{id}.json").write_text(rec.dump(), encoding="utf-8")
    return rec


def _records(where: pathlib.Path) -> dict[str, Record]:
    return {p.stem: Record.load(p) for p in sorted(where.glob("*.json"))}


def committed() -> dict[str, Record]:
    """The records the README is made from (docs/evidence/)."""
    return _records(COMMITTED)


def _order(rec: Record) -> tuple[int, str, str]:
    area = AREAS.index(rec.area) if rec.area in AREAS else len(AREAS)
    return area, rec.area, rec.id


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(records: dict[str, Record] | None = None) -> str:
    """The README table made from the committed records."""
    recs = sorted((records if records is not None else committed()).values(), key=_order)
    lines = ["| area | what we did | what happened | test |", "|---|---|---|---|"]
    lines += [f"| {r.area} | {_cell(r.what)} | {_cell(r.happened)} | `{r.test}` |" for r in recs]
    return "\n".join(lines)


def readme_block(text: str, begin: str = BEGIN, end: str = END) -> tuple[int, int]:
    """Start and end offsets of the table between two markers in `text` (by default the
    evidence table's)."""
    return text.index("\n", text.index(begin)) + 1, text.index(end)


def _replace_block(text: str, begin: str, end: str, body: str) -> str:
    start, stop = readme_block(text, begin, end)
    return text[:start] + body + "\n" + text[stop:]


def check() -> list[str]:
    """Problems: committed records this run did not make again, or made with other
    stable figures."""
    fresh = _records(FRESH)
    problems = []
    for id_, kept in committed().items():
        got = fresh.get(id_)
        if got is None:
            problems.append(f"{id_}: no record from this run ({kept.test} did not run?)")
        elif got.stable != kept.stable:
            problems.append(
                f"{id_}: stable figures changed: committed {kept.stable}, "
                f"this run {got.stable} ({kept.test})"
            )
    return problems


def update() -> None:
    """Copy this run's records to docs/evidence/ and rewrite the README's tables made
    from them: the evidence table and the faults table (tests/faults/report.py)."""
    from tests.faults import report

    fresh = _records(FRESH)
    if not fresh:
        raise SystemExit(f"no records in {FRESH}: run `make test` (or the tests) first")
    COMMITTED.mkdir(parents=True, exist_ok=True)
    for old in COMMITTED.glob("*.json"):
        if old.stem not in fresh:
            old.unlink()
    for id_, rec in fresh.items():
        (COMMITTED / f"{id_}.json").write_text(rec.dump(), encoding="utf-8")
    text = README.read_text(encoding="utf-8")
    text = _replace_block(text, BEGIN, END, markdown())
    text = _replace_block(text, report.BEGIN, report.END, report.markdown(report.load()))
    README.write_text(text, encoding="utf-8")


def main(argv: list[str]) -> int:
    usage = "usage: python3 -m tests.evidence check|update|show"
    if len(argv) != 1 or argv[0] not in ("check", "update", "show"):
        sys.stderr.write(usage + "\n")
        return 2
    if argv[0] == "update":
        update()
        sys.stdout.write(f"wrote {COMMITTED.relative_to(ROOT)}/ and README.md's evidence table\n")
        return 0
    if argv[0] == "show":
        sys.stdout.write(markdown(_records(FRESH)) + "\n")
        return 0
    problems = check()
    for p in problems:
        sys.stderr.write(f"evidence: {p}\n")
    if problems:
        sys.stderr.write(
            "the README's evidence table claims what this run did not show; fix the test "
            "or, if the change is intended, run `python3 -m tests.evidence update` and commit\n"
        )
        return 1
    sys.stdout.write(f"evidence: {len(committed())} committed records reproduced by this run\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
