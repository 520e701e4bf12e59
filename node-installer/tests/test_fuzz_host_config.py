"""Fuzzed host configurations: whatever containerd or CRI-O file a node has, install
either refuses with an error naming that file and leaves the host root byte-identical,
or installs, and uninstall then leaves the host root byte-identical. Never another
exception, never a write outside the host root, never a half-written or stray file.

Inputs (hypothesis): valid TOML built from a document model and rendered with many
spellings (header tables, implicit super-tables, dotted keys, inline tables, arrays of
tables, quoted keys with dots and unicode, every string and number form, comments and
blank lines everywhere, tables out of order), around the tables the installer edits
(the CRI plugin's runtimes with runc, stale and same-named handlers, odd types where a
table is expected, `imports` with globs, `version`); then byte-level mutations: CRLF
(all or some lines), a UTF-8 BOM, trailing whitespace, non-UTF-8 bytes, control
characters in comments, truncation, a duplicated table or key.

Cases:
  containerd 2.x host (containerd2-noimports): config version 3 (imports entry), 2 or none
  containerd 1.6 host (containerd16-fresh): config version 2 or 1 (handler tables edited
    in place), or comment-only
  CRI-O host (crio): crio.conf or a drop-in in crio.conf.d (CRI-O's files are never
    edited; a drop-in already at our file name is refused)
  containerd 1.6 host again, no mutations, values containerd's own parser reads: when the
    real binary (.tools/bin/containerd1, `config dump`) reads the original, it reads the
    edit too, with the same settings, our handlers added and the other runtimes unchanged
  A valid file whose CRI tables are spelled as ordinary [tables], in order, is always
  installed; a successful install leaves the file meaning (tomllib) the original plus our
  handlers, and a second install changes nothing.

Every write the installer makes passes a fault hook that asserts it is inside the host
root; a sentinel directory next to the host root must not change. The number of cases
per host and outcome is printed at the end of the run (conftest's terminal summary).
KATA_FUZZ_EXAMPLES scales the example count of each test for a longer hunt.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import random
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from conftest import FIXTURES, FUZZ_COUNTS, MakeCtx, diff, seed_host, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kata_installer import errors, layout, stages
from kata_installer.runtimes import containerd

EXAMPLES = int(os.environ.get("KATA_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    deadline=None,
    derandomize=True,  # the same cases on every run, so the counts below are comparable
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CRIO_DROP_IN = "/etc/crio/crio.conf.d/50-kata.toml"
CONTAINERD1 = pathlib.Path(__file__).resolve().parents[2] / ".tools" / "bin" / "containerd1"
STALE_SHIM = "/opt/kata/bin/containerd-shim-kata-v2"


def _examples(default: int) -> int:
    return EXAMPLES or default


# --------------------------------------------------------------------------- model
# A document is a dict: str -> scalar | list | dict (a table) | list of dicts (an array of
# tables). tomllib.loads of the rendered text must give the same dict back.

_BARE_KEYS = st.from_regex(r"[A-Za-z0-9_-]{1,10}", fullmatch=True)
_ODD_KEYS = st.sampled_from(
    [
        "a.b",
        "io.containerd.x.v1",
        "ünïcødé",
        "日本語",
        "with space",
        "",
        "tab\tkey",
        'quote"key',
        "back\\slash",
        "it's",
        "1234",
        "true",
        "=",
        "#not-a-comment",
        "[x]",
    ]
)
_KEYS = st.one_of(_BARE_KEYS, _BARE_KEYS, _ODD_KEYS, st.text(max_size=6))
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=16)
_SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    _TEXT,
    st.sampled_from(
        ["/usr/bin/runc", "io.containerd.runc.v2", "overlayfs", "registry.k8s.io/pause:3.9"]
    ),
    st.datetimes(datetime.datetime(1, 1, 1), datetime.datetime(9999, 12, 31)),
    st.dates(),
    st.times(),
)
# What containerd 1.6's TOML parser (go-toml v1) reads back after a tomlkit edit: no
# dates or times. (tomlkit re-renders `[2000-01-01 ]` and `{ a = 2000-01-01 }` without
# the blank before the bracket, and go-toml v1 rejects a date right before `]` or `}`:
# harmless for containerd, which has no date settings; see the closing note.)
_GO_SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(2**31), 2**31),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="ascii", categories=("L", "N", "P", "Zs")), max_size=12),
)
_RESERVED = {"version", "plugins", "imports"}


def _tables(
    depth: int,
    reserved: frozenset[str] = frozenset(),
    scalars: st.SearchStrategy[Any] = _SCALARS,
) -> st.SearchStrategy[dict[str, Any]]:
    leaf = st.one_of(
        scalars, st.lists(st.one_of(scalars, st.lists(scalars, max_size=2)), max_size=4)
    )
    if depth == 0:
        value: st.SearchStrategy[Any] = leaf
    else:
        child = _tables(depth - 1, scalars=scalars)
        aot = st.lists(st.dictionaries(_KEYS, leaf, max_size=3), min_size=1, max_size=3)
        value = st.one_of(leaf, leaf, child, aot)
    keys = _KEYS.filter(lambda k: k not in reserved)
    return st.dictionaries(keys, value, max_size=4)


# ------------------------------------------------------------------------ renderer


def _is_aot(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _escape(text: str, *, newlines: bool = False) -> str:
    out = []
    short = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\r": "\\r", "\n": "\\n"}
    for ch in text:
        if ch == "\n" and newlines:
            out.append(ch)
        elif ch in short:
            out.append(short[ch])
        elif (ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def _literal_ok(text: str, *, newlines: bool = False) -> bool:
    allowed = "\t\n" if newlines else "\t"
    return "'" not in text and not any(
        (ord(c) < 0x20 and c not in allowed) or ord(c) == 0x7F for c in text
    )


_COMMENTS = [
    "",
    " a comment",
    "# doubled",
    " [not.a.table]",
    " key = 'value'",
    " ünïcødé ✓",
    " \t tab",
]


class _Renderer:
    """Turns a model into TOML text. The spelling choices come from one seeded Random:
    hypothesis shrinks the document, the seed replays its spelling."""

    def __init__(
        self, rnd: random.Random, pinned: set[tuple[str, ...]], *, go_toml: bool = False
    ) -> None:
        self.rnd = rnd
        self.pinned = pinned  # table paths that must be spelled [as.a.header]
        self.go_toml = go_toml  # containerd 1.6's parser: no blanks around dots in keys
        self.sections: list[list[str]] = []
        self.in_order = True  # parents before children, as a config generator writes them

    def maybe(self, p: float) -> bool:
        return self.rnd.random() < p

    def ws(self) -> str:
        return self.rnd.choice(["", "", " ", "  ", "\t", " \t "])

    def comment(self) -> str:
        if not self.maybe(0.3):
            return ""
        text = self.rnd.choice(_COMMENTS)
        if self.maybe(0.3):  # any printable character TOML allows in a comment
            chars = (chr(self.rnd.randrange(0x20, 0x30000)) for _ in range(8))
            text += "".join(c for c in chars if c.isprintable())
        return f"{self.ws()} #{text}"

    def filler(self) -> list[str]:
        """Blank lines and comment lines, each maybe indented."""
        return [
            self.ws() + self.comment().lstrip() + "\n"
            for _ in range(self.rnd.choice([0, 0, 0, 1, 2]))
        ]

    def key(self, k: str) -> str:
        if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k) and not self.maybe(0.2):
            return k
        if _literal_ok(k) and self.maybe(0.3):
            return f"'{k}'"
        return f'"{_escape(k)}"'

    def dotted(self, path: tuple[str, ...]) -> str:
        sep = "." if self.go_toml else self.rnd.choice([".", ".", " . ", ".\t"])
        return sep.join(self.key(k) for k in path)

    def header(self, path: tuple[str, ...], opening: str) -> str:
        inside = "" if self.go_toml else self.ws()
        closing = opening.replace("[", "]")
        return f"{self.ws()}{opening}{inside}{self.dotted(path)}{inside}{closing}"

    def string(self, text: str) -> str:
        form = self.rnd.choice(["basic", "basic", "literal", "ml-basic", "ml-literal"])
        if form == "literal" and _literal_ok(text):
            return f"'{text}'"
        if form == "ml-literal" and _literal_ok(text, newlines=True) and not text.endswith("'"):
            return f"'''\n{text}'''"
        if form == "ml-basic":
            return f'"""\n{_escape(text, newlines=True)}"""'
        return f'"{_escape(text)}"'

    def integer(self, n: int) -> str:
        form = self.rnd.choice(["dec", "dec", "under", "hex", "oct", "bin", "plus"])
        if n >= 0 and form in ("hex", "oct", "bin"):
            return {"hex": f"0x{n:x}", "oct": f"0o{n:o}", "bin": f"0b{n:b}"}[form]
        if form == "under":
            return f"{n:_}"
        if form == "plus" and n >= 0:
            return f"+{n}"
        return str(n)

    def value(self, v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return self.integer(v)
        if isinstance(v, float):
            if v in (float("inf"), float("-inf")):
                return "inf" if v > 0 else "-inf"
            return repr(v)
        if isinstance(v, str):
            return self.string(v)
        if isinstance(v, datetime.datetime):
            return v.isoformat(sep=self.rnd.choice(["T", " "]))
        if isinstance(v, datetime.date | datetime.time):
            return v.isoformat()
        if isinstance(v, dict):
            return self.inline(v)
        return self.array(v)

    def array(self, items: list[Any]) -> str:
        if not items:
            return "[" + self.ws() + "]"
        if self.maybe(0.3):  # one item a line, comments after them, maybe a trailing comma
            last = len(items) - 1
            trailing = self.maybe(0.5)
            body = "".join(
                f"\n  {self.value(v)}{',' if i < last or trailing else ''}{self.comment()}"
                for i, v in enumerate(items)
            )
            return "[" + body + "\n]"
        return "[" + ", ".join(self.ws() + self.value(v) for v in items) + self.ws() + "]"

    def inline(self, table: dict[str, Any]) -> str:
        parts = [f"{self.key(k)}{self.ws()}={self.ws()}{self.value(v)}" for k, v in table.items()]
        return "{" + self.ws() + ", ".join(parts) + self.ws() + "}"

    def kv(self, lines: list[str], key: str, v: Any) -> None:
        lines.extend(self.filler())
        lines.append(f"{self.ws()}{key}{self.ws()}={self.ws()}{self.value(v)}{self.comment()}\n")

    def style(self, path: tuple[str, ...], table: dict[str, Any], *, headers: bool) -> str:
        """header | implicit (no header of its own) | dotted | inline."""
        if headers and path in self.pinned:
            return "header"
        choices = ["inline"]
        if table:
            choices.append("dotted")
        if headers:
            choices += ["header", "header", "header"]
            if table and all((isinstance(v, dict) and v) or _is_aot(v) for v in table.values()):
                choices.append("implicit")
        return self.rnd.choice(choices)

    def flatten(self, lines: list[str], prefix: tuple[str, ...], table: dict[str, Any]) -> None:
        """A table spelled with dotted keys (and inline tables below it)."""
        for k, v in table.items():
            path = (*prefix, k)
            if isinstance(v, dict) and v and self.style(path, v, headers=False) == "dotted":
                self.flatten(lines, path, v)
            else:
                self.kv(lines, self.dotted(path), v)

    def section(self, path: tuple[str, ...], table: dict[str, Any], lines: list[str]) -> None:
        later: list[tuple[tuple[str, ...], Any, str]] = []
        for k, v in table.items():
            sub = (*path, k)
            if isinstance(v, dict):
                how = self.style(sub, v, headers=True)
                if how == "dotted":
                    self.flatten(lines, (k,), v)
                elif how == "inline":
                    self.kv(lines, self.key(k), v)
                else:
                    later.append((sub, v, how))
            elif _is_aot(v) and self.maybe(0.7):
                later.append((sub, v, "aot"))
            else:
                self.kv(lines, self.key(k), v)
        for sub, v, how in later:
            self.table(sub, v, how)

    def table(self, path: tuple[str, ...], v: Any, how: str) -> None:
        if how == "aot":
            for element in v:
                lines = [*self.filler(), self.header(path, "[[")]
                lines[-1] += self.comment() + "\n"
                for k, item in element.items():
                    self.kv(lines, self.key(k), item)
                self.sections.append(lines)
            return
        if how == "header":
            lines = [*self.filler(), self.header(path, "[")]
            lines[-1] += self.comment() + "\n"
            self.sections.append(lines)
            self.section(path, v, lines)
            return
        for k, child in v.items():  # implicit: only the children get headers
            self.table((*path, k), child, "aot" if _is_aot(child) else "header")

    def document(self, doc: dict[str, Any]) -> str:
        root: list[str] = []
        self.section((), doc, root)
        sections = self.sections
        tail = "".join(self.filler())
        ordered = "".join(root + [line for s in sections for line in s]) + tail
        if len(sections) > 1 and self.maybe(0.3):
            shuffled = self.rnd.sample(sections, len(sections))
            text = "".join(root + [line for s in shuffled for line in s]) + tail
            try:
                if tomllib.loads(text) == doc:  # tables out of order, where TOML allows it
                    self.in_order = False
                    return text
            except tomllib.TOMLDecodeError:
                pass
        return ordered


def render(
    draw: st.DrawFn, doc: dict[str, Any], pinned: set[tuple[str, ...]], *, go_toml: bool = False
) -> tuple[str, bool]:
    """The text, and whether its tables are in order."""
    r = _Renderer(draw(st.randoms(use_true_random=True)), pinned, go_toml=go_toml)
    text = r.document(doc)
    assert tomllib.loads(text) == doc, (
        f"the generator wrote TOML that means something else:\n{text}"
    )
    return text, r.in_order


# ------------------------------------------------------------------------ mutations


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def _crlf(draw: st.DrawFn, data: bytes) -> bytes:
    if draw(st.booleans()):
        return data.replace(b"\n", b"\r\n")
    return b"".join(
        line[:-1] + b"\r\n" if line.endswith(b"\n") and draw(st.booleans()) else line
        for line in _lines(data)
    )


def _trailing_ws(draw: st.DrawFn, data: bytes) -> bytes:
    pad = draw(st.sampled_from([b" ", b"\t", b"  \t"]))
    return re.sub(rb"(\r?\n)", lambda m: pad + m.group(1), data)


def _bom(_draw: st.DrawFn, data: bytes) -> bytes:
    return b"\xef\xbb\xbf" + data


def _non_utf8(draw: st.DrawFn, data: bytes) -> bytes:
    junk = draw(st.sampled_from([b"\xff", b"\xc3(", b"\xe9", b"\x80\x80", b"\xed\xa0\x80"]))
    where = draw(st.sampled_from(["comment", "anywhere"]))
    if where == "comment":
        return data + b"# caf" + junk + b"\n"
    at = draw(st.integers(0, len(data)))
    return data[:at] + junk + data[at:]


def _control(draw: st.DrawFn, data: bytes) -> bytes:
    return data + b"# bell" + draw(st.sampled_from([b"\x00", b"\x07", b"\x7f", b"\x1b"])) + b"\n"


def _truncate(draw: st.DrawFn, data: bytes) -> bytes:
    return data[: draw(st.integers(0, max(len(data) - 1, 0)))]


def _duplicate(draw: st.DrawFn, data: bytes) -> bytes:
    """Repeat a [table] header with its body, or a key line (invalid TOML, but for an
    [[array]] element)."""
    lines = _lines(data)
    heads = [i for i, line in enumerate(lines) if line.lstrip().startswith(b"[")]
    if heads:
        i = draw(st.sampled_from(heads))
        end = next((j for j in heads if j > i), len(lines))
        block = lines[i:end]
        if not block[-1].endswith(b"\n"):
            block[-1] += b"\n"
        return data + (b"" if data.endswith(b"\n") else b"\n") + b"".join(block)
    keys = [line for line in lines if b"=" in line and not line.lstrip().startswith(b"#")]
    if keys:
        line = draw(st.sampled_from(keys))
        return data + (b"" if data.endswith(b"\n") else b"\n") + line
    return data


MUTATIONS: dict[str, Callable[[st.DrawFn, bytes], bytes]] = {
    "crlf": _crlf,
    "trailing-ws": _trailing_ws,
    "bom": _bom,
    "non-utf8": _non_utf8,
    "control-char": _control,
    "truncate": _truncate,
    "duplicate": _duplicate,
}


def _mutate(draw: st.DrawFn, data: bytes) -> tuple[bytes, tuple[str, ...]]:
    """Half the cases as rendered, half with one or two mutations."""
    if draw(st.booleans()):
        return data, ()
    names = draw(st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=2, unique=True))
    for name in names:
        data = MUTATIONS[name](draw, data)
    return data, tuple(names)


# ------------------------------------------------------------------- host documents

PLUGIN = {3: "io.containerd.cri.v1.runtime", 2: "io.containerd.grpc.v1.cri", 1: "cri"}


class Case:
    """One generated file: where it goes, its bytes, and what the generator knows."""

    def __init__(self, path: str, data: bytes, *, plain: bool, mutations: tuple[str, ...]):
        self.path = path
        self.data = data
        self.mutations = mutations
        # plain: the CRI tables are ordinary [tables] of the right types, so a valid file
        # must be installed, never refused
        self.plain = plain

    def __repr__(self) -> str:
        return f"Case({self.path!r}, mutations={self.mutations}, plain={self.plain})\n" + (
            self.data.decode("utf-8", "backslashreplace")
        )


@st.composite
def _runtimes(draw: st.DrawFn, scalars: st.SearchStrategy[Any]) -> dict[str, Any]:
    runtimes: dict[str, Any] = {}
    if draw(st.booleans()):
        runc: dict[str, Any] = {"runtime_type": "io.containerd.runc.v2"}
        if draw(st.booleans()):
            runc["options"] = {"SystemdCgroup": draw(st.booleans()), "BinaryName": "/usr/bin/runc"}
        runtimes["runc"] = runc
    if draw(st.booleans()):
        runtimes["crun"] = {
            "runtime_type": "io.containerd.runc.v2",
            "options": {"BinaryName": "crun"},
        }
    if draw(st.integers(0, 4)) == 0:  # a handler of ours, written by hand
        runtimes[draw(st.sampled_from(["kata", "kata-qemu"]))] = {
            "runtime_type": "io.containerd.kata.v2"
        }
    if draw(st.integers(0, 4)) == 0:  # left by an earlier install of this prefix
        runtimes["kata-old"] = {
            "runtime_type": "io.containerd.kata-old.v2",
            "runtime_path": STALE_SHIM,
        }
    if draw(st.integers(0, 4)) == 0:
        runtimes[draw(_ODD_KEYS)] = draw(_tables(1, scalars=scalars))
    return runtimes


@st.composite
def _cri_plugin(
    draw: st.DrawFn, version: int, scalars: st.SearchStrategy[Any]
) -> tuple[dict[str, Any], bool]:
    """The CRI plugin's table (and its neighbours); plain=False if a type is odd."""
    odd = draw(st.integers(0, 6)) == 0
    ctd: dict[str, Any] = {"default_runtime_name": "runc"} if draw(st.booleans()) else {}
    if draw(st.booleans()):
        ctd["snapshotter"] = "overlayfs"
    runtimes = draw(_runtimes(scalars))
    if runtimes or draw(st.booleans()):
        ctd["runtimes"] = runtimes
    cri: dict[str, Any] = {}
    if ctd or draw(st.booleans()):
        cri["containerd"] = ctd
    if draw(st.booleans()):
        cri["sandbox_image"] = "registry.k8s.io/pause:3.9"
    if draw(st.booleans()):
        cri["registry"] = {"config_path": "/etc/containerd/certs.d"}
    plugins: dict[str, Any] = {PLUGIN[version]: cri}
    if version == 3 and draw(st.booleans()):
        plugins["io.containerd.cri.v1.images"] = {"snapshotter": "overlayfs"}
    if draw(st.booleans()):
        plugins["io.containerd.internal.v1.opt"] = {"path": "/opt/containerd"}
    if odd:
        where = draw(st.sampled_from(["runtimes", "containerd", "cri", "plugins"]))
        junk = draw(
            st.one_of(
                _SCALARS,
                st.lists(_SCALARS, min_size=1, max_size=2),
                st.lists(st.dictionaries(_BARE_KEYS, _SCALARS, max_size=2), min_size=1, max_size=2),
            )
        )
        if where == "runtimes":
            ctd["runtimes"] = junk
            cri["containerd"] = ctd
        elif where == "containerd":
            cri["containerd"] = junk
        elif where == "cri":
            plugins[PLUGIN[version]] = junk
        else:
            plugins = junk
    return plugins, odd


@st.composite
def containerd_configs(
    draw: st.DrawFn, versions: list[int | None], *, for_containerd: bool = False
) -> Case:
    """for_containerd: no mutations, no values containerd's own parser cannot read."""
    path = "/etc/containerd/config.toml"
    if not for_containerd and draw(st.integers(0, 9)) == 0:  # a comment-only placeholder
        r = _Renderer(draw(st.randoms(use_true_random=True)), set())
        text = "".join(r.filler()) + "# See containerd-config.toml(5)\n" + "".join(r.filler())
        data, mutations = _mutate(draw, text.encode())
        return Case(path, data, plain=True, mutations=mutations)
    scalars = _GO_SCALARS if for_containerd else _SCALARS
    doc: dict[str, Any] = draw(_tables(2, frozenset(_RESERVED), scalars))
    plain = True
    version = draw(st.sampled_from(versions))
    if version is not None:
        doc["version"] = version
    elif draw(st.integers(0, 9)) == 0:
        doc["version"] = draw(st.sampled_from([4, 0, "2", 2.5]))
        plain = False
    plugin_version = version if version in PLUGIN else 1
    if draw(st.integers(0, 5)) > 0:
        doc["plugins"], odd = draw(_cri_plugin(plugin_version, scalars))
        plain = plain and not odd
    if version == 3 and draw(st.booleans()):
        imports = draw(
            st.lists(
                st.sampled_from(
                    [
                        "/etc/containerd/conf.d/*.toml",
                        "conf.d/*.toml",
                        "/etc/containerd/*.toml",
                        "/etc/containerd/conf.d/50-kata.toml",
                        "/etc/containerd/other.toml",
                        "../containerd.d/*.toml",
                        "/../../outside/*.toml",
                        "/etc/containerd/conf.d/[5]*.toml",
                        "/etc/containerd/*/*.toml",
                    ]
                ),
                max_size=3,
                unique=True,
            )
        )
        if draw(st.integers(0, 9)) == 0:
            doc["imports"] = draw(st.one_of(_TEXT, st.lists(st.integers(), min_size=1)))
            plain = False
        else:
            doc["imports"] = imports
    items = list(doc.items())
    doc = dict(draw(st.permutations(items)))  # `version` need not come first
    pinned = {("plugins",), ("plugins", PLUGIN[plugin_version])}
    pinned |= {(*p, "containerd") for p in pinned} | {
        ("plugins", PLUGIN[plugin_version], "containerd", "runtimes")
    }
    conventional = draw(st.integers(0, 3)) > 0
    text, in_order = render(draw, doc, pinned if conventional else set(), go_toml=for_containerd)
    data, mutations = (text.encode(), ()) if for_containerd else _mutate(draw, text.encode())
    # only the CRI path spelled with [headers] in order promises an install (dotted keys,
    # inline tables or tables out of order there may be refused, naming the file)
    return Case(path, data, plain=plain and conventional and in_order, mutations=mutations)


@st.composite
def crio_configs(draw: st.DrawFn) -> Case:
    doc: dict[str, Any] = draw(_tables(2, frozenset({"crio"})))
    crio: dict[str, Any] = {"log_dir": "/var/log/crio/pods"} if draw(st.booleans()) else {}
    runtime: dict[str, Any] = {"default_runtime": "crun"} if draw(st.booleans()) else {}
    if draw(st.booleans()):
        runtime["runtimes"] = {
            "crun": {"runtime_path": "/usr/bin/crun", "runtime_type": "oci"},
            **draw(st.dictionaries(_KEYS, _tables(1), max_size=2)),
        }
    if runtime or draw(st.booleans()):
        crio["runtime"] = runtime
    if draw(st.booleans()):
        crio["image"] = {"pause_image": "registry.k8s.io/pause:3.10"}
    if crio or draw(st.booleans()):
        doc["crio"] = crio
    text, _ = render(draw, doc, set())
    data, mutations = _mutate(draw, text.encode())
    name = draw(
        st.sampled_from(
            ["crio.conf", "10-crun.conf", "99-local.conf", "01-ünï.conf", "50-kata.toml"]
        )
    )
    path = "/etc/crio/crio.conf" if name == "crio.conf" else f"/etc/crio/crio.conf.d/{name}"
    # a drop-in already at our file name is someone else's: refused
    return Case(path, data, plain=path != CRIO_DROP_IN, mutations=mutations)


# -------------------------------------------------------------------------- oracles


def _flat(doc: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Leaf path -> value; an empty table is a leaf too."""
    if isinstance(doc, dict) and doc:
        out: dict[tuple[str, ...], Any] = {}
        for k, v in doc.items():
            out.update(_flat(v, (*path, k)))
        return out
    return {path: doc}


def _changes(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, ...]]:
    a, b = _flat(before), _flat(after)
    return sorted(p for p in set(a) | set(b) if a.get(p, _flat) != b.get(p, _flat))


def _get(doc: Any, path: tuple[str, ...]) -> Any:
    for k in path:
        doc = doc.get(k) if isinstance(doc, dict) else None
    return doc


def _check_containerd_edit(ctx: stages.Context, root: pathlib.Path, case: Case) -> None:
    """The edited config is valid TOML meaning the original plus our part, and no more."""
    rt = ctx.runtime()
    before = tomllib.loads(case.data.decode())
    after = tomllib.loads((root / rt.config_path.lstrip("/")).read_bytes().decode())
    handlers = layout.handlers(ctx.cfg, ctx.arch)
    ours: list[tuple[str, ...]] = [] if "version" in before else [("version",)]
    if rt.mode == "imports":
        targets = containerd.targets(rt, ctx.cfg, handlers)
        drop_in = targets[0].path
        ours_in = tomllib.loads((root / drop_in.lstrip("/")).read_bytes().decode())
        runtimes = _get(ours_in, containerd.plugin_path(rt.config_version))
        assert sorted(runtimes) == sorted(h.name for h in handlers), f"{drop_in}: {runtimes}"
        if len(targets) > 1:  # not already covered by a glob: one entry of ours
            ours.append(("imports",))
            assert drop_in in after["imports"], f"{drop_in} is not imported"
            others = [i for i in before.get("imports", []) if i != drop_in]
            assert [i for i in after["imports"] if i != drop_in] == others
    else:
        base = containerd.plugin_path(rt.config_version)
        for h in handlers:
            got = _get(after, (*base, h.name))
            assert got["runtime_type"] == f"io.containerd.{h.name}.v2", h.name
            assert got["options"]["ConfigPath"] == h.config_path(ctx.cfg.prefix), h.name
            ours.append((*base, h.name))
        known = _get(before, base)
        known = known if isinstance(known, dict) else {}
        if "runc" not in known:
            ours.append((*base, "runc"))
        ours += [
            (*base, k)
            for k, v in known.items()
            if isinstance(v, dict) and str(v.get("runtime_path", "")).startswith("/opt/kata/")
        ]

    def explained(change: tuple[str, ...]) -> bool:
        # ours, or a table on the way to ours that only grew (or was created)
        return any(change[: len(p)] == p for p in ours) or (
            any(p[: len(change)] == change for p in ours)
            and _get(before, change) in ({}, None)
            and isinstance(_get(after, change), dict)
        )

    stray = [c for c in _changes(before, after) if not explained(c)]
    assert stray == [], f"install changed more than its part of {rt.config_path}: {stray}"


# ---------------------------------------------------------------------------- runner


def _inside(root: pathlib.Path) -> Callable[[str, pathlib.Path], None]:
    real_root = root.resolve()

    def hook(operation: str, path: pathlib.Path) -> None:
        where = path.parent.resolve() / path.name
        assert where.is_relative_to(real_root), f"{operation} {path}: outside the host root"

    return hook


def _run(
    host: str,
    case: Case,
    *,
    tmp_path: pathlib.Path,
    make_ctx: MakeCtx,
    counts: Counter[tuple[str, str, str]],
    check: Callable[[stages.Context, pathlib.Path, Case], None],
    label: str = "",
) -> str:
    work = pathlib.Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        root = seed_host(host, work / "host")
        sentinel = work / "outside"
        sentinel.mkdir()
        (sentinel / "keep").write_bytes(b"not the host's\n")
        outside = (sorted(p.name for p in work.iterdir()), snapshot(sentinel))
        target = root / case.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(case.data)
        try:
            tomllib.loads(case.data.decode("utf-8"))
            valid = True
        except (UnicodeDecodeError, tomllib.TOMLDecodeError):
            valid = False
        before = snapshot(root)
        cfg = FIXTURES / host / "installer.yaml"
        try:
            stages.install(make_ctx(root, cfg, fault=_inside(root)))
        except errors.InstallerError as exc:
            assert isinstance(exc, errors.HostError), f"{type(exc).__name__}: {exc}"
            assert case.path in str(exc), f"the error does not name {case.path}: {exc}"
            assert diff(before, snapshot(root)) == [], f"refused, but changed the host: {exc}"
            assert not (valid and case.plain and "truncate" not in case.mutations), (
                f"a valid config with ordinary CRI tables was refused: {exc}"
            )
            outcome = "refused"
        else:
            ctx = make_ctx(root, cfg, fault=_inside(root))
            check(ctx, root, case)
            again = make_ctx(root, cfg, fault=_inside(root))
            stages.install(again)
            assert again.writer.changes == 0, "a second install changed the host"
            stages.uninstall(make_ctx(root, cfg, fault=_inside(root)))
            assert diff(before, snapshot(root)) == [], "uninstall did not restore the host"
            outcome = "reverted"
        assert (sorted(p.name for p in work.iterdir()), snapshot(sentinel)) == outside
        counts[(label or host, "valid" if valid else "invalid", outcome)] += 1
        return outcome
    finally:
        shutil.rmtree(work)


@pytest.fixture
def counts(request: pytest.FixtureRequest) -> Counter[tuple[str, str, str]]:
    return request.config.stash.setdefault(FUZZ_COUNTS, Counter())


@settings(FUZZ, max_examples=_examples(100))
@given(case=containerd_configs([3, 3, 3, 2, None]))
def test_containerd2_host(
    case: Case, tmp_path: pathlib.Path, make_ctx: MakeCtx, counts: Counter[tuple[str, str, str]]
) -> None:
    _run(
        "containerd2-noimports",
        case,
        tmp_path=tmp_path,
        make_ctx=make_ctx,
        counts=counts,
        check=_check_containerd_edit,
    )


@settings(FUZZ, max_examples=_examples(100))
@given(case=containerd_configs([2, 2, 2, 1, None]))
def test_containerd16_host(
    case: Case, tmp_path: pathlib.Path, make_ctx: MakeCtx, counts: Counter[tuple[str, str, str]]
) -> None:
    _run(
        "containerd16-fresh",
        case,
        tmp_path=tmp_path,
        make_ctx=make_ctx,
        counts=counts,
        check=_check_containerd_edit,
    )


def _check_crio_untouched(_ctx: stages.Context, root: pathlib.Path, case: Case) -> None:
    assert (root / case.path.lstrip("/")).read_bytes() == case.data, "CRI-O's own file changed"
    assert (root / CRIO_DROP_IN.lstrip("/")).read_bytes().startswith(containerd.HEADER.encode())


@settings(FUZZ, max_examples=_examples(50))
@given(case=crio_configs())
def test_crio_host(
    case: Case, tmp_path: pathlib.Path, make_ctx: MakeCtx, counts: Counter[tuple[str, str, str]]
) -> None:
    outcome = _run(
        "crio",
        case,
        tmp_path=tmp_path,
        make_ctx=make_ctx,
        counts=counts,
        check=_check_crio_untouched,
    )
    assert (outcome == "refused") == (case.path == CRIO_DROP_IN)


def _dump(config: pathlib.Path) -> dict[str, Any] | None:
    """containerd 1.6's own reading of a config file, or None if it refuses the file (or
    cannot write its reading back as TOML: it dumps an empty key as `[a.]`)."""
    assert CONTAINERD1.exists(), f"{CONTAINERD1} is missing: run `bash hack/setup.sh containerd1`"
    done = subprocess.run(
        [str(CONTAINERD1), "--config", str(config), "config", "dump"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        return None
    try:
        return tomllib.loads(done.stdout)
    except tomllib.TOMLDecodeError:
        return None


def _check_containerd_loads(
    ctx: stages.Context, root: pathlib.Path, case: Case, seen: Counter[tuple[str, str, str]]
) -> None:
    """If containerd 1.6 loads the original, it loads the edit: same settings, our
    handlers added, the other runtimes as they were."""
    _check_containerd_edit(ctx, root, case)
    with tempfile.TemporaryDirectory() as elsewhere:
        original_file = pathlib.Path(elsewhere) / "config.toml"
        original_file.write_bytes(case.data)
        original = _dump(original_file)
    if original is None:  # go-toml v1 is stricter than TOML 1.0 in places
        seen[("containerd 1.6 binary", "original", "unreadable by containerd too")] += 1
        return
    edited = _dump(root / ctx.runtime().config_path.lstrip("/"))
    assert edited is not None, "containerd 1.6 reads the original config but not the edited one"
    path = containerd.plugin_path(2)
    before, after = _get(original, path), _get(edited, path)
    handlers = layout.handlers(ctx.cfg, ctx.arch)
    for h in handlers:
        got = after[h.name]
        assert got["runtime_type"] == f"io.containerd.{h.name}.v2"
        assert got["runtime_path"] == h.binary_path(ctx.cfg.prefix)
        assert got["options"]["ConfigPath"] == h.config_path(ctx.cfg.prefix)
    # (an empty runtimes table already drops containerd's default runc: not ours to add)
    assert "runc" in after or "runc" not in before, "the runc handler was lost"
    ours = {h.name for h in handlers} | {"runc"}
    for name, value in before.items():
        if name not in ours and not str(value.get("runtime_path", "")).startswith("/opt/kata/"):
            assert after.get(name) == value, f"runtime {name} changed"
    for dump in (original, edited):
        _get(dump, path[:-1]).pop("runtimes")
        dump.pop("imports")  # the file it read
    assert original == edited, "containerd reads other settings from the edited config"
    seen[("containerd 1.6 binary", "original", "loaded, and the edit too")] += 1


@settings(FUZZ, max_examples=_examples(30))
@given(case=containerd_configs([2, 2, 1], for_containerd=True))
def test_containerd16_host_real_binary(
    case: Case, tmp_path: pathlib.Path, make_ctx: MakeCtx, counts: Counter[tuple[str, str, str]]
) -> None:
    _run(
        "containerd16-fresh",
        case,
        tmp_path=tmp_path,
        make_ctx=make_ctx,
        counts=counts,
        check=lambda ctx, root, c: _check_containerd_loads(ctx, root, c, counts),
        label="containerd16-fresh+bin",
    )
