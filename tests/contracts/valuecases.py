"""Values files for the chart, hand-picked and generated, and what `helm template` makes of them.

Why: an operator's values file is untrusted input. Whatever it holds, `helm template` must
either refuse it with a message naming the offending key (values.schema.json, or
templates/validate.yaml in the chart's own wording) or render objects a real API server
accepts; never fail with a Go template error such as a nil pointer. This module makes the
cases and runs helm; it does not judge the rendered objects (apichecks.py does, and the
e2e suite can dry-run them on a real server).

- `hostile()`: the hand-picked cases: empty strings, unicode (RTL, emoji, control
  characters), characters Helm's toYaml cannot write, 253- and 254-character node names,
  huge lists, YAML anchors, aliases and merge keys, numbers where strings go and back,
  `null` for maps, deep junk under closed objects, and values breaking one rule of the
  API server or of the programs each. Each says whether it must render, must be
  refused, or may do either.
- `case_strategy()`: a Hypothesis strategy walking values.schema.json: one to three keys
  set to values that satisfy their schema (types, enums, patterns, bounds, closed
  objects), or deliberately break it (wrong type, out of range, unknown key, no match,
  `null`), plus switches that bring more templates in (job mode, reconcile, ...); a case
  with a broken key must be refused naming it.
- `generated(count, seed_value=...)`: the same strategy drawn outside a test,
  reproducibly; `cases(count)`: the hand-picked ones, then that many generated.
- `render(case, workdir=...)`: runs `helm template` (as for a 1.36 server, so every
  template renders) and returns an `Outcome`: rendered; refused by the schema, by
  validate.yaml or by Helm's reading of the subchart condition, each naming the key; or
  broken (anything else: a chart bug).
- `keep(outcomes, dest)`: writes every rendered case (values file and manifest) and a
  summary.json under `dest`, for reading after a run.

It must not start a cluster or reach the network: helm renders locally.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import pathlib
import re
import subprocess
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm-chart" / "kata-deploy"
SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
DEFAULTS: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
RELEASE = "kata-deploy"
NAMESPACE = "kata-deploy"
VAP = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"
HELM_ARGS = ("--namespace", NAMESPACE, "--kube-version", "v1.36.0", "--api-versions", VAP)
# Where make test-contracts keeps the rendered cases (git-ignored).
RESULTS = ROOT / "tests" / "contracts" / "results" / "fuzz-values"

# Go template failures (as opposed to `fail` in validate.yaml and schema refusals), and
# rendered text that is not YAML: a chart bug whatever the values.
TEMPLATE_ERRORS = (
    "nil pointer",
    "error calling",
    "can't evaluate field",
    "wrong type for value",
    'executing "',
    "YAML parse error",
    "error converting YAML",
)
_SCHEMA_REFUSAL = "values don't meet the specifications of the schema"
_VALIDATE_REFUSAL = re.compile(
    r"execution error at \(kata-deploy/templates/validate\.yaml:\d+:\d+\): "
)
_DEPENDENCY_REFUSAL = re.compile(
    r"chart dependencies processing failed: type mismatch on (?P<key>\S+):"
)
# Helm quotes locations and property names in '...', escaping ' and \ with a backslash.
_SCHEMA_AT = re.compile(r"at '(?P<ptr>(?:[^'\\]|\\.)*)': (?P<msg>.*)")
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")
_ESCAPED = re.compile(r"\\(.)")

Values = dict[str, Any]


class Expect(enum.Enum):
    """What a case must come to."""

    RENDER = "render"
    REFUSE = "refuse"  # refused, naming one of the case's keys
    EITHER = "either"  # rendered, or refused naming one of the case's keys


class Verdict(enum.Enum):
    """What `helm template` made of a case."""

    RENDERED = "rendered"
    REFUSED_SCHEMA = "refused by values.schema.json"
    REFUSED_VALIDATE = "refused by validate.yaml"
    # Helm reads a subchart's condition (node-feature-discovery.enabled) before the schema
    # and refuses a value of the wrong shape, naming it.
    REFUSED_DEPENDENCY = "refused by Helm's subchart condition"
    BROKEN = "broken"  # any other failure: a chart bug


@dataclasses.dataclass(frozen=True, repr=False)
class Case:
    """One values file. `keys` are the dotted value paths it sets; a refusal names one."""

    name: str
    text: str
    keys: tuple[str, ...]
    expect: Expect

    def __repr__(self) -> str:
        text = (
            self.text
            if len(self.text) <= 2000
            else f"{self.text[:2000]}...({len(self.text)} bytes)"
        )
        return f"Case({self.name!r}, {self.expect.value}, keys={self.keys!r}, text={text!r})"


@dataclasses.dataclass(frozen=True, repr=False)
class Outcome:
    """A case, what helm made of it, its manifest (rendered) or stderr (refused, broken)."""

    case: Case
    verdict: Verdict
    manifest: str
    error: str

    def __repr__(self) -> str:
        return f"Outcome({self.case.name!r}, {self.verdict.value})"

    @property
    def refused(self) -> bool:
        return self.verdict in (
            Verdict.REFUSED_SCHEMA,
            Verdict.REFUSED_VALIDATE,
            Verdict.REFUSED_DEPENDENCY,
        )

    def named(self) -> tuple[str, ...]:
        """The dotted value paths the refusal names."""
        return named_keys(self.error)

    def names_a_key(self) -> bool:
        """Whether the refusal names a key the case set, one under it or one over it."""
        return any(related(n, k) for n in self.named() for k in self.case.keys)


class Record:
    """Every outcome of a session, in order (short repr: Hypothesis prints its arguments)."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    def add(self, outcome: Outcome) -> Outcome:
        self.outcomes.append(outcome)
        return outcome

    def __repr__(self) -> str:
        return f"Record({len(self.outcomes)} outcomes)"


# --- values files ------------------------------------------------------------------


class _Dumper(yaml.CSafeDumper):
    """Double-quotes every string, so Helm's YAML 1.1 reader sees the same scalars."""


def _quoted(dumper: yaml.CSafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"')


_Dumper.add_representer(str, _quoted)


def dump(values: Values) -> str:
    """A values file holding exactly `values` (every string double-quoted)."""
    return yaml.dump(values, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=1 << 20)


def case(name: str, values: Values, keys: Iterable[str], expect: Expect) -> Case:
    """A case from a values mapping."""
    return Case(name, dump(values), tuple(keys), expect)


def nest(path: str, value: Any) -> Values:
    """{"a": {"b": value}} from "a.b"."""
    out: Any = value
    for part in reversed(path.split(".")):
        out = {part: out}
    return dict(out)


# --- running helm ------------------------------------------------------------------


def render(
    c: Case, *, workdir: pathlib.Path, release: str = RELEASE, namespace: str = NAMESPACE
) -> Outcome:
    """`helm template` the chart with the case's values file; classify what came back.
    The e2e dry run renders into its own `release` and `namespace`."""
    values = workdir / "values.yaml"
    values.write_text(c.text, encoding="utf-8")
    args = ("--namespace", namespace, *HELM_ARGS[2:])
    proc = subprocess.run(
        ["helm", "template", release, str(CHART), *args, "-f", str(values)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 0:
        return Outcome(c, Verdict.RENDERED, proc.stdout, "")
    err = proc.stderr
    if any(marker in err for marker in TEMPLATE_ERRORS):
        verdict = Verdict.BROKEN
    elif _SCHEMA_REFUSAL in err:
        verdict = Verdict.REFUSED_SCHEMA
    elif _VALIDATE_REFUSAL.search(err):
        verdict = Verdict.REFUSED_VALIDATE
    elif _DEPENDENCY_REFUSAL.search(err):
        verdict = Verdict.REFUSED_DEPENDENCY
    else:
        verdict = Verdict.BROKEN
    return Outcome(c, verdict, "", err)


def named_keys(stderr: str) -> tuple[str, ...]:
    """Dotted value paths a refusal names: schema locations (`at '/job/nodes/0'`, with
    the property a `missing` or `additional properties` error is about), the leading
    path of a validate.yaml message (`job.nodes[0]: ...`) and the key of a subchart
    condition Helm cannot read (`type mismatch on node-feature-discovery: ...`)."""
    named: list[str] = []
    for line in stderr.splitlines():
        at = _SCHEMA_AT.search(line)
        if at:
            base = _pointer_to_dotted(_ESCAPED.sub(r"\1", at["ptr"]))
            msg = at["msg"]
            if msg.startswith(("missing propert", "additional propert")):
                props = [
                    _ESCAPED.sub(r"\1", p) for p in _QUOTED.findall(msg.split(" not allowed")[0])
                ]
                named += [f"{base}.{p}" if base else p for p in props]
            elif base:
                named.append(base)
        dependency = _DEPENDENCY_REFUSAL.search(line)
        if dependency:
            named.append(dependency["key"])
        found = _VALIDATE_REFUSAL.search(line)
        if found:
            rest = line[found.end() :]
            named.append(re.split(r":? ", rest, maxsplit=1)[0].rstrip(":"))
    return tuple(named)


def _pointer_to_dotted(pointer: str) -> str:
    out = ""
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


def related(named: str, key: str) -> bool:
    """Whether `named` is `key`, a path under it, or a map over it (`shims` for
    `shims.qemu.enabled`: a rule about the whole map)."""
    if named == key or named.startswith((f"{key}.", f"{key}[")):
        return True
    return key.startswith(f"{named}.")


def keep(outcomes: Iterable[Outcome], dest: pathlib.Path) -> dict[str, Any]:
    """Write every rendered case under `dest` (NNNN-name.values.yaml, .manifest.yaml) and
    `dest`/summary.json (counts, and every case with its verdict); return the summary."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.yaml"):
        old.unlink()
    counts = dict.fromkeys((v.value for v in Verdict), 0)
    listed = []
    for i, out in enumerate(outcomes):
        counts[out.verdict.value] += 1
        entry: dict[str, Any] = {
            "name": out.case.name,
            "expect": out.case.expect.value,
            "keys": list(out.case.keys),
            "verdict": out.verdict.value,
        }
        if out.verdict is Verdict.RENDERED:
            stem = f"{i:04d}-{_slug(out.case.name)}"
            (dest / f"{stem}.values.yaml").write_text(out.case.text, encoding="utf-8")
            (dest / f"{stem}.manifest.yaml").write_text(out.manifest, encoding="utf-8")
            entry["values"] = f"{stem}.values.yaml"
            entry["manifest"] = f"{stem}.manifest.yaml"
        else:
            lines = [ln for ln in out.error.splitlines() if ln.strip() and "--debug" not in ln]
            entry["error"] = "\n".join(lines)[:1000]
        listed.append(entry)
    summary = {
        "helm": ["helm", "template", RELEASE, "<chart>", *HELM_ARGS, "-f", "<values>"],
        "total": sum(counts.values()),
        "counts": counts,
        "cases": listed,
    }
    (dest / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60] or "case"


# --- the schema walk -----------------------------------------------------------------

# Text for strings: printable and control characters, RTL and emoji; no NUL (no YAML
# file can carry one) and no surrogates.
CHARS = st.characters(codec="utf-8", exclude_characters="\x00")
HOSTILE_STRINGS = (
    "",
    " ",
    "a: b",
    "- a",
    "#x",
    "x #y",
    "{{ .Values }}",
    "'",
    '"',
    "\\",
    "\t",
    "a\nb",
    "yes",
    "no",
    "on",
    "null",
    "~",
    "true",
    "0x1F",
    "1e3",
    "010",
    ".inf",
    "*",
    "&a",
    "!!binary",
    "%",
    "@",
    "`",
    "שלום",
    "\u202eevil",
    "🦀",
    "bell\x07",
    "esc\x1b[0m",
    "x" * 64,
    "y" * 300,
)
_LABEL_KEY = (
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    if kind is None:
        return set()
    return set(kind) if isinstance(kind, list) else {kind}


def key_paths(schema: dict[str, Any] = SCHEMA) -> list[tuple[str, dict[str, Any], bool]]:
    """Every property of the schema as (dotted path, its schema, required by its parent),
    nested objects included; not `global` and not what passes to the NFD subchart."""
    found: list[tuple[str, dict[str, Any], bool]] = []

    def walk(node: dict[str, Any], prefix: str) -> None:
        required = set(node.get("required", []))
        for name, sub in node.get("properties", {}).items():
            if not prefix and name == "global":
                continue
            path = f"{prefix}.{name}" if prefix else name
            found.append((path, sub, name in required))
            walk(sub, path)

    walk(schema, "")
    return found


def in_defaults(path: str) -> bool:
    """Whether values.yaml sets `path` (Helm deletes such a key when a file sets it to null)."""
    node: Any = DEFAULTS
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _text(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    lo, hi = schema.get("minLength", 0), schema.get("maxLength")
    pattern = schema.get("pattern")
    if pattern:
        base: st.SearchStrategy[str] = st.from_regex(pattern, fullmatch=True, alphabet=CHARS)
    else:
        base = st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(CHARS, max_size=40))
    return base.filter(lambda s: len(s) >= lo and (hi is None or len(s) <= hi))


def _integers(schema: dict[str, Any]) -> st.SearchStrategy[int]:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    edges = [v for v in (lo, hi, 10**6, 10**7 + 3, 2**31 - 1, 2**31) if v is not None]
    edges = [v for v in edges if (lo is None or v >= lo) and (hi is None or v <= hi)]
    near = st.integers(lo if lo is not None else -5, (lo if lo is not None else 0) + 100)
    if hi is not None:
        near = near.filter(lambda v: v <= hi)
    return st.one_of(st.sampled_from(edges), near, st.integers(lo, hi))


def _numbers(schema: dict[str, Any]) -> st.SearchStrategy[int | float]:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    return st.one_of(
        _integers(schema),
        st.floats(
            lo if lo is not None else -1e3,
            hi if hi is not None else 1e7,
            allow_nan=False,
            allow_infinity=False,
        ),
    )


def _map_key() -> st.SearchStrategy[str]:
    return st.one_of(
        st.from_regex(_LABEL_KEY, fullmatch=True, alphabet=CHARS).filter(lambda k: len(k) < 80),
        st.sampled_from(HOSTILE_STRINGS),
        st.text(CHARS, min_size=1, max_size=20),
    )


def _any_json(depth: int = 2) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**40), 2**40),
        st.floats(allow_nan=False, allow_infinity=False, width=32),
        st.sampled_from(HOSTILE_STRINGS),
    )
    if depth == 0:
        return scalars
    inner = _any_json(depth - 1)
    return st.one_of(
        scalars,
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from((*HOSTILE_STRINGS, "a", "b")), inner, max_size=3),
    )


def valid(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that satisfy `schema` (as far as a pattern can be followed)."""
    if "anyOf" in schema:
        return st.one_of([valid(alt) for alt in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    options: list[st.SearchStrategy[Any]] = []
    for kind in sorted(_types(schema)):
        if kind == "string":
            options.append(_text(schema))
        elif kind == "integer":
            options.append(_integers(schema))
        elif kind == "number":
            options.append(_numbers(schema))
        elif kind == "boolean":
            options.append(st.booleans())
        elif kind == "null":
            options.append(st.none())
        elif kind == "array":
            items = schema.get("items")
            element = valid(items) if items else _any_json(1)
            options.append(st.lists(element, max_size=5))
        elif kind == "object":
            options.append(_object(schema))
    return st.one_of(options) if options else _any_json()


def _object(schema: dict[str, Any]) -> st.SearchStrategy[Values]:
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    fixed = st.fixed_dictionaries({}, optional={k: valid(v) for k, v in props.items()})
    if isinstance(extra, dict):
        return st.builds(
            lambda a, b: {**a, **b}, fixed, st.dictionaries(_map_key(), valid(extra), max_size=4)
        )
    if extra is False or props:
        return fixed
    return st.dictionaries(st.sampled_from((*HOSTILE_STRINGS, "a", "b")), _any_json(1), max_size=3)


_WRONG: dict[str, st.SearchStrategy[Any]] = {
    "string": st.sampled_from((*HOSTILE_STRINGS, "12", "false")),
    "integer": st.integers(-5, 2**40),
    "number": st.floats(-1e6, 1e6, allow_nan=False).filter(lambda f: not f.is_integer()),
    "boolean": st.booleans(),
    "array": st.lists(st.sampled_from(("a", "b", 1)), max_size=3),
    "object": st.fixed_dictionaries({"a": st.sampled_from((1, "b"))}),
}


def invalid(schema: dict[str, Any], *, null_ok: bool) -> st.SearchStrategy[Any] | None:
    """Values `schema` refuses: a wrong type, a value outside the enum, the bounds or the
    pattern, an unknown key, a bad element; `null` unless `null_ok`. None if none exist."""
    options: list[st.SearchStrategy[Any]] = []
    if not null_ok and "null" not in _types(schema):
        options.append(st.none())
    if "anyOf" in schema:
        alts = schema["anyOf"]
        ok_types = set().union(*(_types(a) for a in alts))
        patterns = [a["pattern"] for a in alts if "pattern" in a]
        options.append(
            st.sampled_from(HOSTILE_STRINGS).filter(
                lambda s: not any(re.search(p, s) for p in patterns)
            )
        )
        options += [st.integers(max_value=a["minimum"] - 1) for a in alts if "minimum" in a]
    elif "enum" in schema:
        allowed = schema["enum"]
        options.append(
            st.one_of(st.sampled_from(HOSTILE_STRINGS), st.integers(), st.booleans()).filter(
                lambda v: v not in allowed
            )
        )
        ok_types = {"string"}
    else:
        ok_types = _types(schema)
    if "number" in ok_types:
        ok_types = ok_types | {"integer"}
    options += [strat for kind, strat in _WRONG.items() if kind not in ok_types]
    if "minimum" in schema:
        options.append(st.integers(max_value=schema["minimum"] - 1))
    if "maximum" in schema:
        options.append(st.integers(min_value=schema["maximum"] + 1))
    if "string" in ok_types and "pattern" in schema:
        pattern = schema["pattern"]
        options.append(
            st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(CHARS, max_size=30)).filter(
                lambda s: not re.search(pattern, s)
            )
        )
    if "string" in ok_types and "maxLength" in schema:
        options.append(st.just("a" * (schema["maxLength"] + 1)))
    if "string" in ok_types and schema.get("minLength", 0) > 0:
        options.append(st.text(st.sampled_from("*/ 1"), max_size=schema["minLength"] - 1))
    if "object" in ok_types:
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        if extra is False:
            unknown = st.text(CHARS, min_size=1, max_size=12).filter(lambda k: k not in props)
            options.append(st.dictionaries(unknown, _any_json(2), min_size=1, max_size=2))
        elif isinstance(extra, dict):
            bad = invalid(extra, null_ok=False)
            if bad is not None:
                options.append(st.dictionaries(_map_key(), bad, min_size=1, max_size=2))
    if "array" in ok_types and isinstance(schema.get("items"), dict):
        bad = invalid(schema["items"], null_ok=False)
        if bad is not None:
            options.append(st.lists(bad, min_size=1, max_size=3))
    return st.one_of(options) if options else None


_PATHS = key_paths()
_SWITCHES = (
    ("deploymentMode", "job"),
    ("deploymentMode", "job"),
    ("job.reconcile.enabled", True),
    ("customRuntimes.enabled", True),
    ("runtimeClasses.createDefault", True),
    ("node-feature-discovery.enabled", True),
    ("env.multiInstallSuffix", "second"),
)


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(f"{b}.") or b.startswith(f"{a}.")


@st.composite
def case_strategy(draw: st.DrawFn) -> Case:
    """One to three keys of values.schema.json set over the defaults, each valid or (one
    in four) deliberately invalid, making the case one that must be refused; plus up to
    three switches (job mode, reconcile, custom runtimes, ...) that bring in more templates."""
    picked: list[tuple[str, dict[str, Any], bool]] = []
    for entry in draw(st.lists(st.sampled_from(_PATHS), min_size=1, max_size=3)):
        if not any(_overlaps(entry[0], p[0]) for p in picked):
            picked.append(entry)
    values: Values = {}
    keys: list[str] = []
    # Switches that bring more templates in, each a valid key of its own.
    for path, value in draw(st.lists(st.sampled_from(_SWITCHES), max_size=3, unique=True)):
        if not any(_overlaps(path, p[0]) for p in picked) and path not in keys:
            _merge(values, nest(path, value))
            keys.append(path)
    broken = False
    for path, schema, required in picked:
        # Helm deletes a key a file sets to null when values.yaml has it: fine unless
        # the schema requires the key.
        null_ok = in_defaults(path) and not required
        bad = invalid(schema, null_ok=null_ok)
        if bad is not None and draw(st.integers(0, 3)) == 0:
            value = draw(bad)
            broken = True
        else:
            value = draw(valid(schema))
        _merge(values, nest(path, value))
        keys.append(path)
    expect = Expect.REFUSE if broken else Expect.EITHER
    name = ("invalid " if broken else "") + ", ".join(keys)
    return Case(name, dump(values), tuple(keys), expect)


def _merge(into: Values, more: Values) -> None:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def generated(count: int, *, seed_value: int = 20260101) -> list[Case]:
    """`count` cases from `case_strategy()`, the same ones for the same seed."""
    drawn: list[Case] = []

    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @seed(seed_value)
    @given(case_strategy())
    def collect(c: Case) -> None:
        drawn.append(c)

    collect()
    return drawn


def cases(count: int = 200, *, seed_value: int = 20260101) -> Iterator[Case]:
    """Every hand-picked case, then `count` generated ones (reproducible by seed)."""
    yield from hostile()
    yield from generated(count, seed_value=seed_value)


# --- the hand-picked cases -----------------------------------------------------------

R, X, E = Expect.RENDER, Expect.REFUSE, Expect.EITHER


def node_name(length: int) -> str:
    """A valid DNS-1123 subdomain of `length` characters (labels of at most 63)."""
    labels, left = [], length
    while left > 0:
        size = min(63, left)
        if left - size == 1:  # never leave a lone dot and nothing after it
            size -= 1
        labels.append("n" * size)
        left -= size + 1
    return ".".join(labels)


def workers(count: int) -> list[str]:
    return [f"worker-{i:05d}.example.internal" for i in range(count)]


def _empty_strings() -> list[Case]:
    return [
        case("defaults", {}, (), R),
        case("empty image.reference", nest("image.reference", ""), ["image.reference"], X),
        case("empty image.tag uses appVersion", nest("image.tag", ""), ["image.tag"], R),
        case("empty priorityClassName", {"priorityClassName": ""}, ["priorityClassName"], R),
        case(
            "empty job.nodes entry",
            {"deploymentMode": "job", "job": {"nodes": ["a", ""]}},
            ["job.nodes"],
            X,
        ),
        case("empty podLabels key", {"podLabels": {"": "x"}}, ["podLabels"], X),
        case("empty podLabels value", {"podLabels": {"team": ""}}, ["podLabels"], R),
        case("empty nodeSelector key", {"nodeSelector": {"": ""}}, ["nodeSelector"], X),
        case(
            "empty defaultName",
            nest("runtimeClasses.defaultName", ""),
            ["runtimeClasses.defaultName"],
            X,
        ),
        case("empty defaultShim.amd64", nest("defaultShim.amd64", ""), ["defaultShim.amd64"], X),
        case(
            "empty custom runtime name",
            {"customRuntimes": {"enabled": True, "runtimes": {"": {"baseConfig": "qemu"}}}},
            ["customRuntimes.runtimes"],
            X,
        ),
        case(
            "empty reconcile schedule",
            nest("job.reconcile.schedule", ""),
            ["job.reconcile.schedule"],
            X,
        ),
        case(
            "empty architecture",
            nest("shims.qemu.supportedArches", [""]),
            ["shims.qemu.supportedArches"],
            X,
        ),
        case(
            "empty multiInstallSuffix",
            nest("env.multiInstallSuffix", ""),
            ["env.multiInstallSuffix"],
            R,
        ),
        case(
            "empty imagePullSecrets name",
            {"imagePullSecrets": [{"name": ""}]},
            ["imagePullSecrets"],
            X,
        ),
        case("empty maxFailedNodes", nest("job.maxFailedNodes", ""), ["job.maxFailedNodes"], X),
        case("empty toleration", {"tolerations": [{}]}, ["tolerations"], X),
        case("empty dropIn", nest("shims.qemu.dropIn", ""), ["shims.qemu.dropIn"], R),
        case(
            "empty containerd.configPath",
            nest("containerd.configPath", ""),
            ["containerd.configPath"],
            R,
        ),
    ]


def _unicode() -> list[Case]:
    rtl, emoji, bell = "שלום", "🦀", "\x07"
    return [
        case("RTL label value", {"podLabels": {"team": rtl}}, ["podLabels"], X),
        case(
            "RTL, emoji and control characters in an annotation value",
            {"podAnnotations": {"note": f"{rtl} {emoji} \u202e{bell}\t\x1b[0m"}},
            ["podAnnotations"],
            R,
        ),
        case("emoji annotation key", {"podAnnotations": {emoji: "x"}}, ["podAnnotations"], X),
        case(
            "non-ASCII node name",
            {"deploymentMode": "job", "job": {"nodes": ["nödé-1"]}},
            ["job.nodes"],
            X,
        ),
        case(
            "unicode in a dropIn",
            nest(
                "shims.qemu.dropIn",
                f'# {emoji} {rtl}\n[hypervisor.qemu]\nkernel_params = "a\u202eb"\n',
            ),
            ["shims.qemu.dropIn"],
            R,
        ),
        case(
            "control character in a dropIn",
            nest("shims.qemu.dropIn", f"[x]\ny = 1{bell}\n"),
            ["shims.qemu.dropIn"],
            X,
        ),
        case(
            "unicode proxy",
            nest("shims.qemu-snp.agent.httpsProxy", "http://prøxy:3128"),
            ["shims.qemu-snp.agent.httpsProxy"],
            R,
        ),
        case("bell in image.tag", nest("image.tag", f"v1{bell}"), ["image.tag"], X),
        case("Cyrillic nameOverride", {"nameOverride": "кata"}, ["nameOverride"], X),
        case("emoji fullnameOverride", {"fullnameOverride": emoji}, ["fullnameOverride"], X),
        case(
            "non-ASCII job.nodeSelector value",
            {"job": {"nodeSelector": {"kubernetes.io/hostname": "ñ"}}},
            ["job.nodeSelector"],
            X,
        ),
        case(
            "non-ASCII priorityClassName",
            {"priorityClassName": "prïority"},
            ["priorityClassName"],
            X,
        ),
        case(
            "RTL override in dispatcherPriorityClassName",
            nest("job.dispatcherPriorityClassName", "\u202ehigh"),
            ["job.dispatcherPriorityClassName"],
            X,
        ),
        case(
            "emoji image reference",
            nest("image.reference", f"quay.io/{emoji}/installer"),
            ["image.reference"],
            X,
        ),
        case(
            "unicode in a containerd config path",
            nest("containerd.configPath", f"/etc/containerd/cönfig {emoji}.toml"),
            ["containerd.configPath"],
            E,
        ),
        case(
            "YAML syntax in a containerd config path",
            nest("containerd.configPath", "/srv/a: b #c/config.toml"),
            ["containerd.configPath"],
            E,
        ),
        case(
            "containerd config at the host root",
            nest("containerd.configPath", "/config.toml"),
            ["containerd.configPath"],
            X,
        ),
        case(
            "dot-dot in a containerd config path",
            nest("containerd.configPath", "/etc/../srv/config.toml"),
            ["containerd.configPath"],
            X,
        ),
        case(
            "CRI-O drop-in directory at the host root",
            nest("crio.dropInDir", "/"),
            ["crio.dropInDir"],
            X,
        ),
        case(
            "YAML-looking strings stay strings",
            {
                "podLabels": {"a": "true", "b": "1e3", "c": "010", "d": "null"},
                "podAnnotations": {"e": "yes", "f": "~", "g": "{{ .Values }}"},
                "priorityClassName": "true",
                "job": {"dispatcherPriorityClassName": "1e3"},
            },
            ["podLabels", "podAnnotations", "priorityClassName", "job.dispatcherPriorityClassName"],
            R,
        ),
    ]


def _unwritable() -> list[Case]:
    """Characters Helm's toYaml cannot write (it returns nothing for the whole value)."""
    dele, c1, nonchar = "\x7f", "\x86", "\uffff"
    job = {"deploymentMode": "job"}
    return [
        case(
            "DEL in a cleanup node name",
            {**job, "job": {"cleanup": {"nodes": [dele]}}},
            ["job.cleanup.nodes"],
            X,
        ),
        case(
            "C1 control in a proxy",
            nest("shims.qemu-snp.agent.httpsProxy", f"http://p{c1}:3128"),
            ["shims.qemu-snp.agent.httpsProxy"],
            X,
        ),
        case(
            "U+FFFF in an annotation value",
            {"podAnnotations": {"a": nonchar}},
            ["podAnnotations"],
            X,
        ),
        case(
            "DEL in a custom runtime name",
            {"customRuntimes": {"enabled": True, "runtimes": {f"r{dele}": {"baseConfig": "qemu"}}}},
            ["customRuntimes.runtimes"],
            X,
        ),
        case(
            "DEL in a job.nodeSelector key",
            {**job, "job": {"nodeSelector": {f"a{dele}": "b"}}},
            ["job.nodeSelector"],
            X,
        ),
        case("C1 control in a podLabels key", {"podLabels": {f"a{c1}": "b"}}, ["podLabels"], X),
        case(
            "C1 control in a containerd config path",
            nest("containerd.configPath", f"/srv/{c1}/config.toml"),
            ["containerd.configPath"],
            X,
        ),
        case(
            "U+FFFF in a dropIn",
            nest("shims.qemu.dropIn", f"# {nonchar}\n"),
            ["shims.qemu.dropIn"],
            X,
        ),
    ]


def _node_names() -> list[Case]:
    return [
        case(
            "253-character node name",
            {"deploymentMode": "job", "job": {"nodes": [node_name(253)]}},
            ["job.nodes"],
            R,
        ),
        case(
            "254-character node name",
            {"deploymentMode": "job", "job": {"nodes": [node_name(254)]}},
            ["job.nodes"],
            X,
        ),
        case(
            "254-character cleanup node name",
            {"deploymentMode": "job", "job": {"cleanup": {"nodes": [node_name(254)]}}},
            ["job.cleanup.nodes"],
            X,
        ),
        case(
            "node name with a comma",
            {"deploymentMode": "job", "job": {"nodes": ["a,b"]}},
            ["job.nodes"],
            X,
        ),
        case(
            "upper-case node name",
            {"deploymentMode": "job", "job": {"nodes": ["Worker-1"]}},
            ["job.nodes"],
            X,
        ),
    ]


def huge_nodes(count: int) -> Case:
    """Job mode with `count` names in job.nodes and job.cleanup.nodes."""
    names = workers(count)
    return case(
        f"{count} names in job.nodes",
        {"deploymentMode": "job", "job": {"nodes": names, "cleanup": {"nodes": names}}},
        ["job.nodes", "job.cleanup.nodes"],
        R,
    )


def _huge_lists() -> list[Case]:
    many = [f"a{i}" for i in range(5000)]
    return [
        huge_nodes(5000),
        case(
            "5000 hypervisor annotations",
            nest("shims.qemu.allowedHypervisorAnnotations", many),
            ["shims.qemu.allowedHypervisorAnnotations"],
            R,
        ),
        case(
            "1000 tolerations",
            {"tolerations": [{"key": f"k{i}", "operator": "Exists"} for i in range(1000)]},
            ["tolerations"],
            R,
        ),
        case(
            "500 pod labels",
            {"podLabels": {f"l{i}": f"v{i}" for i in range(500)}},
            ["podLabels"],
            R,
        ),
        case(
            "200 selector expressions",
            {
                "deploymentMode": "job",
                "job": {
                    "nodeSelectorExpressions": [
                        {"key": f"k{i}", "operator": "In", "values": ["a", "b"]} for i in range(200)
                    ]
                },
            },
            ["job.nodeSelectorExpressions"],
            R,
        ),
        case(
            "a 2 MiB dropIn",
            nest("shims.qemu.dropIn", "# " + "x" * (2 << 20) + "\n"),
            ["shims.qemu.dropIn"],
            X,
        ),
    ]


def _anchors() -> list[Case]:
    return [
        Case(
            "alias: cleanup nodes are the install nodes",
            "deploymentMode: job\njob:\n  nodes: &workers [worker-1, worker-2]\n"
            "  cleanup:\n    nodes: *workers\n",
            ("job.nodes", "job.cleanup.nodes"),
            R,
        ),
        Case(
            "merge key: one TEE shim's settings reused",
            "shims:\n  qemu-snp: &tee\n"
            "    agent: {httpsProxy: 'http://proxy:3128', noProxy: '10.0.0.0/8'}\n"
            "    crio: {guestPull: true}\n"
            "  qemu-tdx:\n    <<: *tee\n    supportedArches: [amd64]\n",
            ("shims.qemu-snp", "shims.qemu-tdx"),
            R,
        ),
        Case(
            "merge of two anchors",
            "podLabels: &a {team: kata}\npodAnnotations: &b {note: hi}\n"
            "job:\n  nodeSelector:\n    <<: [*a, *b]\n",
            ("podLabels", "podAnnotations", "job.nodeSelector"),
            R,
        ),
        Case(
            "merge key brings a key the shim does not have",
            "shims:\n  qemu-snp: &tee\n    agent: {httpsProxy: 'http://p:3128'}\n"
            "  qemu:\n    <<: *tee\n",
            ("shims.qemu",),
            X,
        ),
        Case(
            "alias of a scalar where a list goes",
            "deploymentMode: &mode job\njob:\n  nodes: *mode\n",
            ("job.nodes",),
            X,
        ),
        Case(
            "alias of a map reused as a selector",
            "deploymentMode: job\njob:\n  nodeSelector: &sel {pool: kata}\n"
            "  cleanup:\n    nodeSelector: *sel\n",
            ("job.nodeSelector", "job.cleanup.nodeSelector"),
            R,
        ),
        Case(
            "alias of a map where a string goes",
            "podLabels: &l {a: b}\npriorityClassName: *l\n",
            ("priorityClassName",),
            X,
        ),
    ]


def _numbers_and_strings() -> list[Case]:
    return [
        Case("float image tag", "image:\n  tag: 3.22\n", ("image.tag",), X),
        Case("number label value", "podLabels:\n  version: 1\n", ("podLabels",), X),
        Case("number node name", "deploymentMode: job\njob:\n  nodes: [1234]\n", ("job.nodes",), X),
        Case("number defaultShim", "defaultShim:\n  amd64: 1\n", ("defaultShim.amd64",), X),
        Case("number suffix", "env:\n  multiInstallSuffix: 2\n", ("env.multiInstallSuffix",), X),
        Case("number priorityClassName", "priorityClassName: 0\n", ("priorityClassName",), X),
        Case("boolean image tag", "image:\n  tag: true\n", ("image.tag",), X),
        Case("string maxFailedNodes", "job:\n  maxFailedNodes: '5'\n", ("job.maxFailedNodes",), X),
        Case(
            "maxFailedNodes above 100%",
            "job:\n  maxFailedNodes: 200%\n",
            ("job.maxFailedNodes",),
            X,
        ),
        Case(
            "maxFailedNodes of 100%",
            "deploymentMode: job\njob:\n  maxFailedNodes: 100%\n",
            ("job.maxFailedNodes",),
            R,
        ),
        Case("string parallelism", "job:\n  parallelism: '10'\n", ("job.parallelism",), X),
        Case("string backoffLimit", "job:\n  backoffLimit: '2'\n", ("job.backoffLimit",), X),
        Case("string debug", "env:\n  debug: 'true'\n", ("env.debug",), X),
        Case("yes for a boolean", "env:\n  debug: yes\n", ("env.debug",), E),
        Case(
            "exponent for an integer",
            "uninstallTimeoutSeconds: 1e3\n",
            ("uninstallTimeoutSeconds",),
            R,
        ),
        Case(
            "big integers from a file",
            "deploymentMode: job\njob:\n  ttlSecondsAfterFinished: 10000000\n"
            "  dispatcherDeadlineSeconds: 123456789\n  activeDeadlineSeconds: 2000000\n"
            "  parallelism: 1000000\n  waitForNodesSeconds: 1000000\n  maxFailedNodes: 1000000\n"
            "  reconcile: {enabled: true}\nuninstallTimeoutSeconds: 1000000\n"
            "installer:\n  waitRuntimeSeconds: 1000000\n",
            ("job", "uninstallTimeoutSeconds", "installer.waitRuntimeSeconds"),
            R,
        ),
        Case(
            "backoffLimit beyond int32",
            "job:\n  backoffLimit: 2147483648\n",
            ("job.backoffLimit",),
            X,
        ),
        Case(
            "ttlSecondsAfterFinished beyond int32",
            "job:\n  ttlSecondsAfterFinished: 2147483648\n",
            ("job.ttlSecondsAfterFinished",),
            X,
        ),
        Case(
            "number CPU request",
            "installer:\n  resources:\n    requests: {cpu: 0.5, memory: 67108864}\n",
            ("installer.resources",),
            R,
        ),
        Case(
            "negative CPU request",
            "installer:\n  resources:\n    requests: {cpu: -1}\n",
            ("installer.resources",),
            X,
        ),
        Case(
            "negative quantity string",
            "job:\n  dispatcherResources:\n    limits: {memory: '-1Gi'}\n",
            ("job.dispatcherResources",),
            X,
        ),
        Case(
            "request above limit",
            "installer:\n  resources:\n    requests: {cpu: 2}\n    limits: {cpu: 1}\n",
            ("installer.resources",),
            X,
        ),
        Case(
            "unknown resource name",
            "installer:\n  resources:\n    limits: {'bad name': 1}\n",
            ("installer.resources",),
            X,
        ),
        Case(
            "huge number overhead",
            "shims:\n  qemu:\n    runtimeClass:\n      overhead: {memory: 1000000000}\n",
            ("shims.qemu.runtimeClass.overhead",),
            R,
        ),
    ]


def _nulls() -> list[Case]:
    required = [
        "job",
        "image",
        "env",
        "shims",
        "runtimeClasses",
        "installer",
        "customRuntimes",
        "job.cleanup",
        "job.reconcile",
        "node-feature-discovery",
        "podLabels",
        "deploymentMode",
        "job.parallelism",
        "job.nodeSelectorExpressions",
        "job.reconcile.schedule",
        "image.reference",
        "env.multiInstallSuffix",
    ]
    out = [case(f"null {path}", nest(path, None), [path], X) for path in required]
    out += [
        case("null shim removes it", nest("shims.qemu", None), ["shims.qemu"], E),
        case(
            "null supportedArches of an enabled shim",
            nest("shims.qemu.supportedArches", None),
            ["shims.qemu.supportedArches"],
            X,
        ),
        case(
            "the seed's empty runtimeClass",
            nest("shims.qemu-nvidia-gpu.runtimeClass", None),
            ["shims.qemu-nvidia-gpu.runtimeClass"],
            R,
        ),
        case(
            "null installer.resources.requests drops the requests",
            nest("installer.resources.requests", None),
            ["installer.resources.requests"],
            R,
        ),
        case(
            "null requests.cpu drops that request",
            nest("installer.resources.requests.cpu", None),
            ["installer.resources.requests"],
            R,
        ),
        case(
            "null shim enabled follows disableAll",
            nest("shims.qemu.enabled", None),
            ["shims.qemu.enabled"],
            R,
        ),
        case("null defaultShim entry", nest("defaultShim.s390x", None), ["defaultShim.s390x"], R),
        case("null list element", {"tolerations": [None]}, ["tolerations"], X),
        case("null label value", {"podLabels": {"a": None}}, ["podLabels"], X),
    ]
    return out


def _deep_junk() -> list[Case]:
    deep: Any = "bottom"
    for i in range(60):
        deep = {f"level{i}": [deep]} if i % 2 else {f"level{i}": deep}
    return [
        case(
            "junk under job.reconcile",
            nest(
                "job.reconcile", {"enabled": True, "extra": {"a": {"b": {"c": [1, {"d": None}]}}}}
            ),
            ["job.reconcile"],
            X,
        ),
        case(
            "junk under a shim's containerd",
            nest("shims.qemu.containerd", {"snapshotter": "nydus", "junk": {"x": [[[]]]}}),
            ["shims.qemu.containerd"],
            X,
        ),
        case(
            "junk under a custom runtime's crio",
            {
                "customRuntimes": {
                    "enabled": True,
                    "runtimes": {
                        "r1": {"baseConfig": "qemu", "crio": {"pullType": "", "deep": deep}}
                    },
                }
            },
            ["customRuntimes.runtimes"],
            X,
        ),
        case(
            "junk in an imagePullSecrets entry",
            {"imagePullSecrets": [{"name": "regcred", "namespace": {"x": 1}}]},
            ["imagePullSecrets"],
            X,
        ),
        case("unknown top-level key", {"kataDeploy": deep}, ["kataDeploy"], X),
        case(
            "unknown key in a toleration",
            {"tolerations": [{"operator": "Exists", "tolerationSecond": 5}]},
            ["tolerations"],
            X,
        ),
        case(
            "deep junk under installer.resources.limits",
            nest("installer.resources.limits", {"cpu": deep}),
            ["installer.resources"],
            X,
        ),
        case("global may hold anything", {"global": {"x": {"y": deep}}}, ["global"], R),
        case(
            "deep junk as a dispatcher toleration",
            {"job": {"dispatcherTolerations": [{"key": "a", "value": deep}]}},
            ["job.dispatcherTolerations"],
            X,
        ),
    ]


def _rules() -> list[Case]:
    """Values each of which breaks one rule a server, the installer or the dispatcher has."""
    return [
        case(
            "toleration with a value and Exists",
            {"tolerations": [{"key": "a", "operator": "Exists", "value": "b"}]},
            ["tolerations"],
            X,
        ),
        case(
            "toleration without a key and Equal",
            {"tolerations": [{"operator": "Equal"}]},
            ["tolerations"],
            X,
        ),
        case(
            "tolerationSeconds without NoExecute",
            {
                "job": {
                    "tolerations": [
                        {"operator": "Exists", "tolerationSeconds": 5, "effect": "NoSchedule"}
                    ]
                }
            },
            ["job.tolerations"],
            X,
        ),
        case(
            "unknown toleration effect",
            {"tolerations": [{"operator": "Exists", "effect": "x"}]},
            ["tolerations"],
            X,
        ),
        case(
            "invalid daemonset nodeSelector key",
            {"nodeSelector": {"a b": "c"}},
            ["nodeSelector"],
            X,
        ),
        case(
            "invalid dispatcherNodeSelector value",
            {"job": {"dispatcherNodeSelector": {"kubernetes.io/os": "linux os"}}},
            ["job.dispatcherNodeSelector"],
            X,
        ),
        case(
            "invalid RuntimeClass nodeSelector key",
            nest("shims.qemu.runtimeClass.nodeSelector", {"-bad": "x"}),
            ["shims.qemu.runtimeClass.nodeSelector"],
            X,
        ),
        case(
            "unknown architecture",
            nest("shims.qemu.supportedArches", ["amd64", "riscv64"]),
            ["shims.qemu.supportedArches"],
            X,
        ),
        case(
            "invalid TOML dropIn",
            nest("shims.clh.dropIn", "[hypervisor.clh\n"),
            ["shims.clh.dropIn"],
            X,
        ),
        case(
            "invalid TOML custom runtime dropIn",
            {
                "customRuntimes": {
                    "enabled": True,
                    "runtimes": {"r1": {"baseConfig": "qemu", "dropIn": "a = "}},
                }
            },
            ["customRuntimes.runtimes"],
            X,
        ),
        case(
            "invalid snapshotter",
            nest("shims.qemu.containerd.snapshotter", "nydus fs"),
            ["shims.qemu.containerd.snapshotter"],
            X,
        ),
        case(
            "non-string hypervisor annotation",
            nest("shims.qemu.allowedHypervisorAnnotations", [1, {"a": "b"}]),
            ["shims.qemu.allowedHypervisorAnnotations"],
            X,
        ),
        case(
            "cron schedule that is not one",
            nest("job.reconcile.schedule", "every ten minutes"),
            ["job.reconcile.schedule"],
            X,
        ),
        case(
            "cron schedule out of range",
            {
                "deploymentMode": "job",
                "job": {"reconcile": {"enabled": True, "schedule": "61 * * * *"}},
            },
            ["job.reconcile.schedule"],
            X,
        ),
        case(
            "cron schedule with a time zone",
            nest("job.reconcile.schedule", "TZ=UTC */10 * * * *"),
            ["job.reconcile.schedule"],
            X,
        ),
        case(
            "cron descriptor",
            {
                "deploymentMode": "job",
                "job": {"reconcile": {"enabled": True, "schedule": "@hourly"}},
            },
            ["job.reconcile.schedule"],
            R,
        ),
        case(
            "image reference with a space",
            nest("job.dispatcherImage.reference", "quay.io/a b"),
            ["job.dispatcherImage.reference"],
            X,
        ),
        case(
            "image reference with a tag of its own",
            nest("image.reference", "quay.io/kata-containers/kata-installer:3.22.0"),
            ["image.reference"],
            X,
        ),
        case(
            "registry with a port",
            nest("image.reference", "registry.local:5000/kata/installer"),
            ["image.reference"],
            R,
        ),
        case("tag too long", nest("image.tag", "t" * 129), ["image.tag"], X),
        case(
            "defaultName that clashes with a shim's RuntimeClass",
            {"runtimeClasses": {"createDefault": True, "defaultName": "kata-qemu"}},
            ["runtimeClasses"],
            X,
        ),
        case(
            "defaultName too long",
            {"runtimeClasses": {"createDefault": True, "defaultName": "k" * 254}},
            ["runtimeClasses.defaultName"],
            X,
        ),
        case(
            "secret name that is not a name",
            {"imagePullSecrets": [{"name": "Reg Cred"}]},
            ["imagePullSecrets"],
            X,
        ),
    ]


@functools.cache
def hostile() -> list[Case]:
    """The hand-picked cases (made once: the big ones take a moment)."""
    groups: list[Callable[[], list[Case]]] = [
        _empty_strings,
        _unicode,
        _unwritable,
        _node_names,
        _huge_lists,
        _anchors,
        _numbers_and_strings,
        _nulls,
        _deep_junk,
        _rules,
    ]
    return [c for group in groups for c in group()]
