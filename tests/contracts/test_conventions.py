"""One set of conventions across kata-dispatcher and kata-installer (docs/contracts.md,
"One set of conventions for both programs"), checked by running both programs' own code.

Cases:
- the exit-code table in docs/contracts.md is both programs' ExitCode enums: every row's
  number and name is a member of each program the row says uses it, and every member
  of each enum is in the table; both READMEs point at the table;
- both JSON formatters turn the same records (context fields, extras, a traceback) into
  the same bytes, with the documented key order and UTC millisecond time, and so do
  both text formatters;
- environment twins: the same switch spellings give the same booleans, a flag both have
  (--retry-budget) resolves flag > twin > default in both, and the same bad values give
  the same error after the program's name;
- retries: the same default policy, the same backoff for the same random draws, and the
  same sleeps and give-up point for the same scripted failures.
"""

from __future__ import annotations

import json
import logging
import pathlib
import random
import re
import sys
from collections.abc import Callable
from typing import Any

import pytest
from kata_dispatcher import cli as d_cli
from kata_dispatcher import errors as d_errors
from kata_dispatcher import logs as d_logs
from kata_dispatcher import retry as d_retry
from kata_installer import cli as i_cli
from kata_installer import errors as i_errors
from kata_installer import logs as i_logs
from kata_installer import retry as i_retry

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "docs" / "contracts.md"
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
NOT_USED = {"", "-", "—"}


def _table() -> list[dict[str, str]]:
    text = CONTRACTS.read_text(encoding="utf-8")
    match = re.search(r"<!-- exit-codes:begin[^>]*-->\n(.*?)<!-- exit-codes:end -->", text, re.S)
    assert match, "docs/contracts.md has no exit-codes table"
    lines = [line for line in match.group(1).splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


@pytest.mark.parametrize(
    ("column", "enum"),
    [("kata-dispatcher", d_errors.ExitCode), ("kata-installer", i_errors.ExitCode)],
)
def test_the_exit_code_table_is_each_programs_enum(column: str, enum: Any) -> None:
    documented = {
        int(row["code"]): row["name"].strip("`") for row in _table() if row[column] not in NOT_USED
    }
    assert documented == {member.value: member.name for member in enum}


def test_both_readmes_point_at_the_exit_code_table() -> None:
    for readme in ("dispatcher/README.md", "node-installer/README.md"):
        text = (ROOT / readme).read_text(encoding="utf-8")
        assert "docs/contracts.md#exit-codes" in text, readme


def _records() -> list[logging.LogRecord]:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        exc_info = sys.exc_info()
    made = []
    for extra, info in (
        ({}, None),
        ({"node": "w-1", "stage": "cri"}, None),
        ({"reason": "r", "job": "j-1", "node": "w-1", "count": 3, "path": ROOT}, None),
        ({"node": "w-1", "stage": "label"}, exc_info),
    ):
        record = logging.LogRecord("kata.t", logging.WARNING, __file__, 1, "m %s", ("x",), info)
        record.__dict__.update(extra)
        record.created = 1767225600.0456  # 2026-01-01T00:00:00.045Z
        made.append(record)
    return made


@pytest.mark.parametrize(
    ("dispatcher", "installer"),
    [
        (d_logs.JsonFormatter, i_logs.JsonFormatter),
        (d_logs.TextFormatter, i_logs.TextFormatter),
    ],
)
def test_both_formatters_render_the_same_record_the_same(
    dispatcher: type[logging.Formatter], installer: type[logging.Formatter]
) -> None:
    for record in _records():
        line = dispatcher().format(record)
        assert line == installer().format(record)
        assert line.removeprefix('{"time":"').startswith("2026-01-01T00:00:00.045Z")


def test_the_json_keys_are_in_the_documented_order() -> None:
    keys = [list(json.loads(d_logs.JsonFormatter().format(r))) for r in _records()]
    assert keys[2] == ["time", "level", "logger", "message", "node", "job", "reason", "count",
                       "path"]  # fmt: skip
    assert keys[3][-1] == "exception"
    assert all(re.fullmatch(TIME, json.loads(d_logs.JsonFormatter().format(r))["time"])
               for r in _records())  # fmt: skip


def _dispatcher(env: dict[str, str], *flags: str) -> Any:
    return d_cli.parse_teardown(["delete-daemonset", "ds", "--namespace", "n", *flags], env)


def _installer(env: dict[str, str], *flags: str) -> Any:
    return i_cli.parse_args(["cri", *flags], env)


PROGRAMS: list[tuple[str, Callable[..., Any]]] = [
    ("KATA_DISPATCHER_", _dispatcher),
    ("KATA_INSTALLER_", _installer),
]


def test_switches_are_spelled_the_same() -> None:
    assert (d_cli.TRUE, d_cli.FALSE) == (i_cli.TRUE, i_cli.FALSE)
    for value in ["true", "False", "1", "0", "yes", "NO", "on", "off", "", " "]:
        seen = {parse({prefix + "DRY_RUN": value}).dry_run for prefix, parse in PROGRAMS}
        assert len(seen) == 1, value


def test_precedence_is_flag_then_twin_then_default() -> None:
    for prefix, parse in PROGRAMS:
        env = {prefix + "RETRY_BUDGET": "45"}
        assert parse(env, "--retry-budget", "7").retry_budget == 7, prefix
        assert parse(env).retry_budget == 45, prefix
        assert parse({}).retry_budget == 120, prefix


@pytest.mark.parametrize(
    ("name", "value"),
    [("DRY_RUN", "maybe"), ("RETRY_BUDGET", "0"), ("RETRY_BUDGET", "soon"), ("LOG_FORMAT", "xml")],
)
def test_a_bad_twin_is_the_same_error(
    name: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    said = set()
    for prefix, parse in PROGRAMS:
        with pytest.raises(SystemExit) as info:
            parse({prefix + name: value})
        assert info.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        said.add(last.split(": error: ", 1)[1].replace(prefix, "KATA_<PROG>_"))
    assert len(said) == 1, said
    assert said.pop().startswith(f"KATA_<PROG>_{name}={value!r}: ")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_the_same_default_policy_and_backoff() -> None:
    assert d_retry.Policy() == d_retry.Policy(120.0, 0.5, 10.0)
    assert i_retry.Policy() == i_retry.Policy(120.0, 0.5, 10.0)
    for attempt in range(1, 10):
        assert d_retry.backoff(d_retry.Policy(), attempt, rng=random.Random(attempt)) == (  # noqa: S311
            i_retry.backoff(i_retry.Policy(), attempt, rng=random.Random(attempt))  # noqa: S311
        )


@pytest.mark.parametrize("hints", [[1.0, 2.0], [5.0, 5.0, 5.0, 5.0, 5.0], [3.0, 40.0]])
def test_the_same_failures_give_the_same_sleeps(hints: list[float]) -> None:
    def script(make: Callable[[float], Exception]) -> tuple[list[int], Callable[[], str]]:
        calls: list[int] = []
        pending = [make(h) for h in hints]

        def fn() -> str:
            calls.append(1)
            if pending:
                raise pending.pop(0)
            return "ok"

        return calls, fn

    outcomes = []
    d_clock, i_clock = _Clock(), _Clock()
    calls, fn = script(lambda h: d_errors.Transient("x", status=503, retry_after=h))
    try:
        d_retry.call(fn, policy=d_retry.Policy(budget=20), clock=d_clock, what="x")
        outcomes.append(("ok", len(calls), d_clock.sleeps))
    except d_errors.Transient:
        outcomes.append(("gave up", len(calls), d_clock.sleeps))
    calls, fn = script(lambda h: i_errors.Transient("x: 503", retry_after=h))
    counter = i_retry.Counter()
    try:
        i_retry.call(fn, policy=i_retry.Policy(budget=20), clock=i_clock, what="x",
                     counter=counter)  # fmt: skip
        outcomes.append(("ok", len(calls), i_clock.sleeps))
    except i_errors.Transient:
        outcomes.append(("gave up", len(calls), i_clock.sleeps))
    assert outcomes[0] == outcomes[1]
    assert counter.retries == len(i_clock.sleeps)
