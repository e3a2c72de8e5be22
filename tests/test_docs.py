"""The documentation stays true to the code: every `photocheck` command and option shown in the docs
exists in the CLI, every option shown for a bench/ script is one it defines, every repository path
named exists, every relative link (and its #anchor) resolves, every bench tool is listed in
CONTRIBUTING.md, and the two READMEs stay short.
Fast: reads Markdown and asks the CLI for --help; no scans."""
from __future__ import annotations

import re
import shlex
from functools import cache
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from photocheck.cli import app
from tests.helpers import REPO

DOCS = sorted([REPO / "README.md", REPO / "CONTRIBUTING.md", REPO / "models" / "README.md",
               *(REPO / "docs").glob("*.md")])
LIMITS = {"README.md": 350, "models/README.md": 300}
# Folders and files of the repository that the docs name in code (paths elsewhere, e.g. ../shared
# or /tmp, are not checked).
PATH_RE = re.compile(r"(?<![\w./~$-])((?:bench|tests|photocheck|models|roster|sample_images|docs|\.ci)/[\w./*{},-]*"
                     r"(?:::[\w*]+)?|(?:pyproject\.toml|CONTRIBUTING\.md|README\.md)\b)")
LINK_RE = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE_RE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
SPAN_RE = re.compile(r"`([^`\n]+)`")


def rel(doc: Path) -> str:
    return doc.relative_to(REPO).as_posix()


def code_of(text: str) -> tuple[list[str], list[str]]:
    """(lines of fenced code blocks, inline code spans outside them)."""
    blocks = [line for m in FENCE_RE.finditer(text) for line in m.group(1).splitlines()]
    prose = FENCE_RE.sub("", text)
    return blocks, SPAN_RE.findall(prose)


def invocations(doc: Path) -> list[list[str]]:
    """Each `photocheck ...` command line shown in the doc, as its argument tokens."""
    blocks, spans = code_of(doc.read_text())
    found = []
    lines = [re.split(r"\s#", line)[0] for line in blocks] + spans
    for line in lines:
        for segment in re.split(r"&&|\|\||;|\s\|\s|\$\(", line):
            segment = segment.strip()
            segment = re.sub(r"^(?:[A-Z_]+=\S+\s+)+", "", segment)  # env assignments
            segment = re.sub(r"^uv run (?:--frozen )?", "", segment)
            segment = re.sub(r"^(?:\.venv/bin/|\S*/bin/)", "", segment)
            first = segment.split(" ", 1)[0]
            if first in root().commands and re.match(r"\S+\s+(--|[a-z])", segment):
                segment = "photocheck " + segment  # `review sign --scan ID`, `user disable NAME` in prose
            if not re.match(r"photocheck\s+\S", segment):
                continue
            try:
                tokens = shlex.split(segment)
            except ValueError:
                tokens = segment.split()
            found.append(tokens[1:])
    return found


@cache
def root():
    return typer.main.get_command(app)


@cache
def help_text(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
    assert result.exit_code == 0, f"photocheck {' '.join(path)} --help failed:\n{result.output}"
    return result.output


def check_invocation(tokens: list[str]) -> list[str]:
    """Problems with one shown command: an unknown (sub)command or an option its --help lacks."""
    cmd = root()  # typer's own click: groups are the commands with .commands
    path: list[str] = []
    options: list[str] = []
    for raw in tokens:
        token = raw.strip("[]()")
        if not token or token in {"...", "-"}:
            continue
        if token.startswith("--"):
            options.append(token.split("=")[0].split("|")[0].rstrip(".,"))
        elif hasattr(cmd, "commands") and not options:
            if token not in cmd.commands:
                return [f"photocheck {' '.join(path)} has no command {token!r}"]
            cmd = cmd.commands[token]
            path.append(token)
    text = help_text(tuple(path))
    return [f"photocheck {' '.join(path)} --help does not show {opt}" for opt in options
            if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text)]


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_every_photocheck_command_and_option_shown_exists(doc: Path):
    shown = invocations(doc)
    problems = [f"{rel(doc)}: `photocheck {' '.join(t)}`: {p}" for t in shown for p in check_invocation(t)]
    assert not problems, "\n".join(problems)


def test_the_command_check_catches_a_wrong_command_and_option():
    assert check_invocation(["scan", "PATH", "--json", "FILE"]) == []
    assert check_invocation(["review", "sign", "--scan", "1", "--group", "N"]) == []
    assert check_invocation(["scna", "PATH"]) != []
    assert check_invocation(["scan", "PATH", "--jsn", "FILE"]) != []
    assert check_invocation(["review", "sing"]) != []


def bench_option_problems(doc: Path) -> list[str]:
    """Options shown after `bench/NAME.py` that the script's source never mentions."""
    blocks, spans = code_of(doc.read_text())
    problems = []
    for line in [re.split(r"\s#", b)[0] for b in blocks] + spans:
        for segment in re.split(r"&&|;|\s\|\s|\$\(", line):
            m = re.search(r"(?<![\w/])bench/(\w+\.py)\b(.*)", segment)
            if not m or not (REPO / "bench" / m.group(1)).exists():
                continue
            source = (REPO / "bench" / m.group(1)).read_text()
            for opt in re.findall(r"(?<![\w-])--[a-z][\w-]*", m.group(2)):
                if not re.search(rf"[\"']{re.escape(opt)}[\"']", source):
                    problems.append(f"{rel(doc)}: bench/{m.group(1)} has no option {opt}")
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_every_bench_option_shown_exists(doc: Path):
    problems = bench_option_problems(doc)
    assert not problems, "\n".join(problems)


def expand(path: str) -> list[str]:
    """`a/{b,c}.x` -> [`a/b.x`, `a/c.x`]."""
    m = re.search(r"\{([^}]*)\}", path)
    if not m:
        return [path]
    return [e for alt in m.group(1).split(",") for e in expand(path[:m.start()] + alt + path[m.end():])]


def missing_paths(doc: Path) -> list[str]:
    blocks, spans = code_of(doc.read_text())
    problems = []
    for text in blocks + spans:
        for found in PATH_RE.findall(text):
            name, _, test = found.rstrip(".,:").partition("::")
            for path in expand(name):
                matches = list(REPO.glob(path.rstrip("/"))) if "*" in path else [REPO / path.rstrip("/")]
                if not matches or not all(p.exists() for p in matches):
                    problems.append(f"{rel(doc)}: {found} does not exist")
                elif test:
                    source = matches[0].read_text()
                    if not re.search(rf"def {re.escape(test.rstrip('*'))}", source):
                        problems.append(f"{rel(doc)}: {found}: no such test in {path}")
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_every_repository_path_named_exists(doc: Path):
    problems = missing_paths(doc)
    assert not problems, "\n".join(problems)


def test_every_markdown_file_named_exists():
    """Also in prose: a doc that names `DESIGN.md` or `docs/x.md` must not send readers nowhere."""
    problems = []
    for doc in DOCS:
        for name in set(re.findall(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.md)\b", doc.read_text())):
            if not ((REPO / name).exists() or (doc.parent / name).exists()):
                problems.append(f"{rel(doc)}: names {name}, which does not exist")
    assert not problems, "\n".join(problems)


def slug(heading: str) -> str:
    """The #anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    text = FENCE_RE.sub("", doc.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", text, re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=rel)
def test_every_relative_link_resolves(doc: Path):
    problems = []
    for target in LINK_RE.findall(FENCE_RE.sub("", doc.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (doc.parent / file).resolve() if file else doc
        if not dest.exists():
            problems.append(f"{rel(doc)}: link to {target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{rel(doc)}: link to {target}: no such heading in {dest.name}")
    assert not problems, "\n".join(problems)


def test_every_bench_tool_is_listed_in_contributing():
    listed = (REPO / "CONTRIBUTING.md").read_text()
    missing = [p.name for p in sorted((REPO / "bench").glob("*.py")) if f"`bench/{p.name}`" not in listed]
    assert not missing, f"bench tools not in CONTRIBUTING.md: {missing}"


@pytest.mark.parametrize("name,limit", LIMITS.items())
def test_readmes_stay_short(name: str, limit: int):
    lines = len((REPO / name).read_text().splitlines())
    assert lines <= limit, f"{name} has {lines} lines (at most {limit}): move details to docs/"


def test_the_demo_block_is_where_ci_finds_it():
    text = (REPO / "README.md").read_text()
    block = re.search(r"^<!-- demo -->\n```sh\n(.+?)\n```\n<!-- /demo -->$", text, re.S | re.M)
    assert block and "photocheck scan sample_images" in block.group(1)
