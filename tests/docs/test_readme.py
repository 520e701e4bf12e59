"""The top-level README's "Where to change what" table points at things that exist.

The table is how a reader finds the template, module and test behind a values key, so a
renamed or split file must not leave it pointing nowhere. Its rule, stated above it:
every path is relative to the repository root. Cases, one per table row:
- each item of the template, code and test columns is a backticked path that exists (a
  trailing "/" names a directory, a "*" globs and must match) or a `make <target>` the
  Makefile defines, optionally followed by a note in parentheses;
- each backticked item of the values column is a key of the chart's values.yaml (`a.*`:
  `a` has keys under it; `<name>`: any key at that level); unquoted prose is allowed;
- the table has its five columns, and at least one row.
Also: the privileges matrix is tests/e2e/privileges.py's, and the faults table is the
one tests/faults/report.py makes from the fault scenarios' committed evidence records.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
VALUES = ROOT / "helm-chart" / "kata-deploy" / "values.yaml"
MAKEFILE = ROOT / "Makefile"
HEADING = "## Where to change what"
COLUMNS = ["to change", "values key", "template", "code", "test"]
PATH_COLUMNS = ["template", "code", "test"]

Row = dict[str, str]


def _table() -> list[Row]:
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(HEADING)
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            table.append(line)
    header, _rule, *body = table
    assert _cells(header) == COLUMNS, f"README: the table's columns changed: {header}"
    return [dict(zip(COLUMNS, _cells(line), strict=True)) for line in body]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _items(cell: str) -> list[str]:
    """A cell's comma-separated items; commas inside a parenthesised note do not split."""
    items, depth, current = [], 0, ""
    for char in cell:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        items.append(current.strip())
    return items


def _make_targets() -> set[str]:
    text = MAKEFILE.read_text(encoding="utf-8")
    return set(re.findall(r"^([a-zA-Z0-9_-]+):", text, flags=re.MULTILINE))


def _key_exists(values: Any, parts: list[str]) -> bool:
    if not parts:
        return True
    if not isinstance(values, dict):
        return False
    head, rest = parts[0], parts[1:]
    if head == "*":
        return bool(values) and not rest
    if head == "<name>":
        return any(_key_exists(v, rest) for v in values.values())
    return head in values and _key_exists(values[head], rest)


ROWS = _table()


def test_the_table_has_rows() -> None:
    assert ROWS, f"README: no rows under {HEADING!r}"


@pytest.mark.parametrize("row", ROWS, ids=[r["to change"] for r in ROWS])
def test_every_path_exists(row: Row) -> None:
    targets = _make_targets()
    for column in PATH_COLUMNS:
        for item in _items(row[column]):
            found = re.match(r"`([^`]+)`(?:\s+\(.*\))?$", item)
            assert found, f"{column} {item!r}: not a `path` (with an optional note)"
            ref = found[1]
            if ref.startswith("make "):
                target = ref.removeprefix("make ")
                assert target in targets, f"{column} {ref!r}: no such Makefile target"
            elif "*" in ref:
                assert list(ROOT.glob(ref)), f"{column} {ref!r}: matches nothing"
            elif ref.endswith("/"):
                assert (ROOT / ref).is_dir(), f"{column} {ref!r}: no such directory"
            else:
                assert (ROOT / ref).is_file(), f"{column} {ref!r}: no such file"


@pytest.mark.parametrize("row", ROWS, ids=[r["to change"] for r in ROWS])
def test_every_values_key_exists(row: Row) -> None:
    values = yaml.safe_load(VALUES.read_text(encoding="utf-8"))
    for item in _items(row["values key"]):
        if not item.startswith("`"):
            continue
        found = re.fullmatch(r"`([^`]+)`", item)
        assert found, f"values key {item!r}: one key per item"
        assert _key_exists(values, found[1].split(".")), f"{found[1]!r}: not in values.yaml"


def test_the_privileges_matrix_is_the_one_the_e2e_checks() -> None:
    from tests.e2e import privileges

    text = README.read_text(encoding="utf-8")
    begin = text.index("<!-- privileges:begin")
    start = text.index("\n", begin) + 1
    end = text.index("<!-- privileges:end -->")
    assert text[start:end].strip() == privileges.markdown(), (
        "README's privileges table differs from tests/e2e/privileges.py; paste:\n"
        + privileges.markdown()
    )


def test_the_evidence_table_is_the_one_the_kept_records_make() -> None:
    from tests import evidence

    text = README.read_text(encoding="utf-8")
    start, end = evidence.readme_block(text)
    assert text[start:end].strip() == evidence.markdown(), (
        "README's evidence table differs from docs/evidence/; run "
        "`python3 -m tests.evidence update` after a full `make test`"
    )


def test_the_faults_table_is_what_the_e2e_measured() -> None:
    from tests import evidence
    from tests.faults import report

    text = README.read_text(encoding="utf-8")
    start, end = evidence.readme_block(text, report.BEGIN, report.END)
    figures = report.load()
    assert len(figures) == len(report.ORDER), sorted(figures)
    expected = report.markdown(figures)
    assert text[start:end].strip() == expected, (
        "README's faults table differs from the records in docs/evidence/; run "
        "`python3 -m tests.evidence update` after a full `make test`"
    )
