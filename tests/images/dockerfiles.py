"""Reading the images' Dockerfiles and build context without a container engine.

There is no Docker daemon here, so tests/images checks the Dockerfiles by parsing them:
this module turns a Dockerfile into stages of instructions, applies `.dockerignore` the
way the engine does (last matching pattern wins, `!` re-includes, a pattern that matches
a directory covers everything below it) and copies the filtered build context into a
directory, so a test sees exactly the files a `docker build` would send.

It must not know anything about one particular image: the checks live in the tests.
Usage: `dockerfiles.parse(path)`, `dockerfiles.build_context(repo, dest)`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import pathlib
import re
import shlex
import shutil

REPO = pathlib.Path(__file__).resolve().parents[2]
IMAGES = {
    "dispatcher": REPO / "images" / "dispatcher" / "Dockerfile",
    "node-installer": REPO / "images" / "node-installer" / "Dockerfile",
}


@dataclasses.dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest of the logical line, continuations joined
    line: int  # 1-based line of the instruction's first physical line

    def json_args(self) -> list[str] | None:
        """The exec-form (JSON array) arguments, or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"line {self.line}: {self.keyword} is not a JSON array of strings")
        return value

    def flags_and_words(self) -> tuple[dict[str, str], list[str]]:
        """Split `--flag=value` options from the words of a shell-form instruction."""
        words = shlex.split(self.args)
        flags: dict[str, str] = {}
        while words and words[0].startswith("--"):
            name, _, value = words.pop(0)[2:].partition("=")
            flags[name] = value
        return flags, words


@dataclasses.dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = dataclasses.field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def args(self) -> dict[str, str | None]:
        """ARG names declared in this stage and their defaults (None: no default)."""
        out: dict[str, str | None] = {}
        for inst in self.all("ARG"):
            name, eq, default = inst.args.strip().partition("=")
            out[name] = default if eq else None
        return out

    def env(self) -> dict[str, str]:
        """ENV of this stage (the `KEY=value ...` form only)."""
        out: dict[str, str] = {}
        for inst in self.all("ENV"):
            for word in shlex.split(inst.args):
                key, eq, value = word.partition("=")
                if not eq:
                    raise ValueError(f"line {inst.line}: use the ENV KEY=value form")
                out[key] = value
        return out

    def labels(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for inst in self.all("LABEL"):
            for word in shlex.split(inst.args):
                key, _, value = word.partition("=")
                out[key] = value
        return out


@dataclasses.dataclass
class Dockerfile:
    path: pathlib.Path
    global_args: list[Instruction]
    stages: list[Stage]
    ignore_directives: dict[int, set[str]]  # line -> rules named by "# hadolint ignore="

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def global_arg_defaults(self) -> dict[str, str | None]:
        """ARGs declared before the first FROM and their defaults (None: no default)."""
        out: dict[str, str | None] = {}
        for inst in self.global_args:
            name, eq, default = inst.args.strip().partition("=")
            out[name] = default if eq else None
        return out

    def base_arg(self, stage: Stage) -> str | None:
        """The global ARG a stage's FROM is (`FROM ${NAME}`), or None for a literal base."""
        match = re.fullmatch(r"\$\{(\w+)\}|\$(\w+)", stage.base)
        return (match.group(1) or match.group(2)) if match else None

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"{self.path}: no stage named {name!r}")


def _logical_lines(text: str) -> list[tuple[int, str, list[str]]]:
    """(first line number, joined text, comments just above) for each instruction."""
    out: list[tuple[int, str, list[str]]] = []
    comments: list[str] = []
    current: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            if stripped.startswith("#"):
                comments.append(stripped)
            else:
                comments = []
            continue
        if current and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped
        if not current:
            start = number
        if stripped.endswith("\\"):
            current.append(stripped[:-1])
            continue
        current.append(stripped)
        out.append((start, " ".join(current), comments))
        current, comments = [], []
    if current:
        raise ValueError(f"line {start}: instruction ends with a line continuation")
    return out


def parse(path: pathlib.Path) -> Dockerfile:
    """Parse a Dockerfile into its global ARGs and its stages."""
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    ignores: dict[int, set[str]] = {}
    for line, text, comments in _logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, args = text.partition(" ")
        inst = Instruction(keyword.upper(), args.strip(), line)
        for comment in comments:
            match = re.match(r"#\s*hadolint\s+ignore=([\w,]+)", comment)
            if match:
                ignores.setdefault(line, set()).update(match.group(1).split(","))
        if inst.keyword == "FROM":
            words = inst.args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            if len(words) not in (1, 3):
                raise ValueError(f"{path}:{line}: cannot read FROM {inst.args!r}")
            stages.append(Stage(base=words[0], name=name))
        elif not stages:
            if inst.keyword != "ARG":
                raise ValueError(f"{path}:{line}: {inst.keyword} before the first FROM")
            global_args.append(inst)
        else:
            stages[-1].instructions.append(inst)
    if not stages:
        raise ValueError(f"{path}: no FROM")
    return Dockerfile(path, global_args, stages, ignores)


# --- .dockerignore ----------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax (Go filepath.Match plus `**`) as a regular expression."""
    out = ""
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out += "(?:.*/)?"
            else:
                out += ".*"
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = pattern.index("]", i)
            out += fnmatch.translate(pattern[i : end + 1])[4:-3]
            i = end
        else:
            out += re.escape(char)
        i += 1
    return re.compile(out + r"\Z")


@dataclasses.dataclass(frozen=True)
class IgnoreRules:
    rules: tuple[tuple[bool, re.Pattern[str]], ...]  # (is exception, pattern)
    exceptions: tuple[str, ...]  # the `!` patterns as written

    @classmethod
    def load(cls, path: pathlib.Path) -> IgnoreRules:
        rules = []
        exceptions = []
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = line[1:].strip() if negate else line
            pattern = pattern.strip("/")
            rules.append((negate, _pattern_regex(pattern)))
            if negate:
                exceptions.append(pattern)
        return cls(tuple(rules), tuple(exceptions))

    def excluded(self, rel: str) -> bool:
        """Whether a context-relative path is left out of the build context."""
        parts = rel.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        result = False
        for negate, regex in self.rules:
            if any(regex.match(p) for p in prefixes):
                result = not negate
        return result

    def may_include_below(self, rel_dir: str) -> bool:
        """Whether an exception could re-include something under an excluded directory."""
        return any(p.startswith(rel_dir + "/") or "*" in p.split("/")[0] for p in self.exceptions)


def build_context(repo: pathlib.Path, dest: pathlib.Path) -> list[str]:
    """Copy the files `.dockerignore` lets through into dest; return their relative paths."""
    rules = IgnoreRules.load(repo / ".dockerignore")
    kept: list[str] = []
    for root, dirs, files in os.walk(repo):
        base = pathlib.Path(root).relative_to(repo).as_posix()
        prefix = "" if base == "." else base + "/"
        dirs[:] = sorted(
            d for d in dirs if not rules.excluded(prefix + d) or rules.may_include_below(prefix + d)
        )
        for name in sorted(files):
            rel = prefix + name
            if rules.excluded(rel):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(pathlib.Path(root, name), target)
            kept.append(rel)
    return sorted(kept)
