"""The docs cannot drift: every command README.md and docs/*.md show is run, or checked.

- A `leadbot` command in a ```sh block runs for real, through the installed `leadbot`, in a test
  installation: the example rules.toml (plus the admin guide's `[[digests]]`), the stand-ins of
  conftest.py for Autumna, Slack, Teams and SMTP, a database that has polled one of Autumna's
  published leads (4:2000), and `bot/` of this checkout (for `bot/demo/published/…`). Each
  command runs in a fresh copy of that installation, so none depends on another, and must exit
  0. `run` without `--once` runs until it has polled, then gets SIGTERM; `init` starts where
  there is no rules.toml yet, as the admin guide says.
- A block whose first line is `# on the server…` is an example for another machine. Its `leadbot`
  commands (also behind runuser, systemd-run, podman exec) are parsed by leadbot's own argparse
  parser, so a renamed command or option fails here; any other program must be one this test
  knows (systemctl, podman, …). Any other block may hold only what runs here.
- `python3 tasks.py X`: X must be one of tasks.py's commands. `export NAME=…` and `NAME=… leadbot`:
  NAME must be a variable leadbot reads (or one rules.toml names).
- `leadbot …` in running text: the command and each of its options must exist.
- Every ```toml example loads on top of the example rules.toml with no problem and no warning.
- And the other way round: the README names every command leadbot has, every variable it reads
  and every module in its layout; every link between the docs reaches a file and a heading.

Nothing is skipped: a missing `leadbot` or a guide without commands is a failure.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import PUBLISHED, ROOT, ROOT_RULES, open_world, query
from markdown_it import MarkdownIt

from bot.cli import parser
from bot.config import ConfigError
from bot.demo.standin import redate
from bot.loader import Loader

pytestmark = pytest.mark.timeout(120)

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GUIDES = ("admin-guide.md", "manager-guide.md", "operator-guide.md")
LEADBOT = Path(sys.executable).with_name("leadbot")  # the console script pip installed
REMOTE = re.compile(r"#\s*on the server\b", re.IGNORECASE)
SHELL = ("sh", "bash", "shell")
# Programs the server examples may run, which cannot run here.
FOREIGN = {
    "curl",
    "docker",
    "find",
    "install",
    "journalctl",
    "openssl",
    "pip",
    "podman",
    "python3",
    "rm",
    "systemctl",
    "useradd",
}
OPERATORS = {"&&", "||", ";", "|", "&"}
ENV_NAME = re.compile(r"\b((?:AUTUMNA|SLACK|SMTP|LEADBOT)_[A-Z0-9_]*[A-Z0-9])\b")
ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)
# What Autumna serves the installation: lead 4:2000. One lead keeps `run --once` quick: it asks
# Slack about each unclaimed message's reactions, one call every 1.2 s.
SERVED = ["4-call-back-request"]

MARKDOWN = MarkdownIt("commonmark").enable("table")


# --- what the docs show ------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    where: str  # "docs/admin-guide.md:42", the fence's first line
    info: str  # the fence's language: sh, toml, text, …
    text: str


@dataclass(frozen=True)
class Command:
    """One simple command of a shell block, split as the shell splits it."""

    where: str
    words: tuple[str, ...]
    remote: bool  # in a block for the server: parsed, not run
    redirect: str = ""  # `> FILE`: where its output goes

    @property
    def text(self) -> str:
        return shlex.join(self.words) + (f" > {self.redirect}" if self.redirect else "")


def place(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


@functools.cache
def tokens(path: Path) -> list[Any]:
    return MARKDOWN.parse(path.read_text(encoding="utf-8"))


def blocks(path: Path) -> list[Block]:
    """Every code block, fenced or indented (an indented one has the info "indented")."""
    found = []
    for token in tokens(path):
        if token.type in ("fence", "code_block") and token.map:
            info = token.info.strip().split(" ")[0] if token.type == "fence" else "indented"
            found.append(Block(place(path, token.map[0] + 1), info, token.content))
    return found


def spans(path: Path) -> list[tuple[str, str]]:
    """(where, text) of every inline code span."""
    found = []
    for token in tokens(path):
        if token.type == "inline" and token.map:
            found += [
                (place(path, token.map[0] + 1), child.content)
                for child in token.children or []
                if child.type == "code_inline"
            ]
    return found


def split(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def commands(block: Block) -> list[Command]:
    doc, _, fence = block.where.rpartition(":")
    lines: list[tuple[int, str]] = []  # (line number, the line with its continuations)
    for number, line in enumerate(block.text.splitlines(), start=int(fence) + 1):
        if lines and lines[-1][1].endswith("\\"):
            lines[-1] = (lines[-1][0], lines[-1][1][:-1] + " " + line)
        else:
            lines.append((number, line))
    remote = bool(lines) and bool(REMOTE.match(lines[0][1]))
    found = []
    for number, line in lines:
        where = f"{doc}:{number}"
        words: list[str] = []
        for word in [*split(line), ";"]:
            if word not in OPERATORS:
                words.append(word)
            elif words:
                found.append(command(where, words, remote))
                words = []
    return found


def command(where: str, words: list[str], remote: bool) -> Command:
    redirect = ""
    if ">" in words:
        at = words.index(">")
        redirect = words[at + 1] if at + 1 < len(words) else ""
        words = words[:at] + words[at + 2 :]
    if "<" in words:  # input from a file: only on the server
        at = words.index("<")
        words = words[:at] + words[at + 2 :]
    return Command(where, tuple(words), remote, redirect)


def shown_blocks() -> list[Block]:
    return [b for path in DOCS for b in blocks(path)]


def shown_commands() -> list[Command]:
    return [c for b in shown_blocks() if b.info in SHELL for c in commands(b)]


def shown_spans() -> list[tuple[str, list[str]]]:
    """Inline `leadbot …` and `python3 tasks.py …` as words, brackets and bars taken out."""
    found = []
    for path in DOCS:
        for where, text in spans(path):
            if not re.match(r"(\.venv/bin/|/opt/leadbot/bin/)?leadbot \S|python3 tasks\.py ", text):
                continue
            words = []
            for word in text.replace("\\|", "|").split():
                words += [w.strip("[]") for w in word.split("|") if w.strip("[]")]
            found.append((where, words))
    return found


# --- what a command is -------------------------------------------------------------------------


@dataclass(frozen=True)
class Program:
    kind: str  # "leadbot", "tasks", "export" or "foreign"
    args: tuple[str, ...]  # leadbot's or tasks.py's arguments; the program's name for foreign
    env: tuple[tuple[str, str], ...] = ()  # NAME=value given before it


def program(words: tuple[str, ...]) -> Program:
    """What runs: leadbot (behind any wrapper the server examples use), tasks.py, an `export`, or
    another program."""
    words, env = list(words), []
    while words and (assignment := ASSIGNMENT.fullmatch(words[0])):
        env.append((assignment[1], assignment[2]))
        words.pop(0)
    if words[:1] == ["export"]:
        pairs = [ASSIGNMENT.fullmatch(w) for w in words[1:]]
        assert all(pairs), f"`export` of something that is not NAME=value: {words}"
        return Program("export", (), tuple(p.groups() for p in pairs if p))
    name = Path(words[0]).name
    if name == "runuser" or name == "sudo":
        words = words[1:]
        while words and words[0].startswith("-"):
            words = words[2:] if words[0] in ("-u", "--user") else words[1:]
        return program(tuple(words))
    if name == "systemd-run":
        words = words[1:]
        while words and words[0].startswith("-"):
            takes_value = words[0] in ("-p", "--property", "-E", "--setenv", "--unit", "--uid")
            words = words[2:] if takes_value else words[1:]
        return program(tuple(words))
    if name in ("podman", "docker") and words[1:2] == ["exec"]:
        words = words[2:]
        while words and words[0].startswith("-"):
            words = words[2:] if words[0] in ("-e", "--env", "-u", "--user") else words[1:]
        return program(tuple(words[1:]))  # after the container's name
    if name == "leadbot":
        return Program("leadbot", tuple(words[1:]), tuple(env))
    if name == "python3" and words[1:2] == ["tasks.py"]:
        return Program("tasks", tuple(words[2:]), tuple(env))
    return Program("foreign", (name,), tuple(env))


@functools.cache
def read_variables() -> tuple[frozenset[str], frozenset[str]]:
    """(every variable leadbot's source reads, the prefixes it reads: AUTUMNA_KEY_)."""
    read: set[str] = set()
    for path in (ROOT / "bot").rglob("*.py"):
        read |= set(re.findall(r'"((?:AUTUMNA|SLACK|SMTP|LEADBOT)_[A-Z0-9_]*)"', path.read_text()))
    return (
        frozenset(n for n in read if not n.endswith("_")),
        frozenset(n for n in read if n.endswith("_")),
    )


@functools.cache
def fault_suite_variables() -> frozenset[str]:
    """The variables the fault suite reads (LEADBOT_FAULT_SEED, ...)."""
    read: set[str] = set()
    for path in (ROOT / "tests" / "faults").rglob("*.py"):
        read |= set(re.findall(r'"(LEADBOT_[A-Z0-9_]*[A-Z0-9])"', path.read_text()))
    return frozenset(read)


def known_variable(name: str) -> bool:
    """Read by leadbot (or its fault suite), or named as `${NAME}` by the example rules.toml."""
    names, prefixes = read_variables()
    named = re.findall(r"\$\{([A-Z0-9_]+)\}", ROOT_RULES.read_text(encoding="utf-8"))
    return (
        name in names
        or name in named
        or name in fault_suite_variables()
        or any(f"{name}_".startswith(p) or name.startswith(p) for p in prefixes)
    )


def parse_leadbot(args: tuple[str, ...]) -> str:
    """What leadbot's own parser says about these arguments: "" when it accepts them."""
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
            parser().parse_args(list(args))
    except SystemExit:
        return said.getvalue().strip() or "rejected"
    return ""


def subcommands() -> dict[str, Any]:
    top = parser()
    (action,) = [a for a in top._actions if a.__class__.__name__ == "_SubParsersAction"]
    return dict(action.choices)


def tasks_commands() -> set[str]:
    """The commands tasks.py takes: the keys of its `commands` dict."""
    for node in ast.walk(ast.parse((ROOT / "tasks.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "commands":
            assert isinstance(node.value, ast.Dict)
            return {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    raise AssertionError("tasks.py has no `commands` dict")


def check_tasks(args: tuple[str, ...]) -> str:
    if not args or args[0] not in tasks_commands():
        return f"tasks.py has no command {args[:1]} (it has {sorted(tasks_commands())})"
    if args[0] == "bench":
        source = (ROOT / "benchmarks" / "run.py").read_text(encoding="utf-8")
        unknown = [a for a in args[1:] if a.startswith("--") and f'"{a}"' not in source]
        if unknown:
            return f"the benchmarks take no {unknown}"
    return ""


# --- checked without running -------------------------------------------------------------------


def test_the_readme_and_the_three_guides_show_commands_and_only_in_sh_blocks() -> None:
    assert [p.name for p in DOCS[1:]] == sorted(GUIDES), "docs/ should hold the three guides"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("# leadbot\n\n```sh\npython3 tasks.py demo    # "), (
        "the README begins with its two commands"
    )
    assert readme.split("```sh\n", 1)[1].split("```", 1)[0].count("python3 tasks.py") == 2
    for guide in GUIDES:
        assert f"(docs/{guide})" in readme, f"the README links {guide}"
    problems = []
    for block in shown_blocks():
        if block.info == "indented":
            problems.append(f"{block.where}: an indented code block: fence it (```sh, ```text)")
        elif block.info not in (*SHELL, "toml", "text", "json", ""):
            problems.append(f"{block.where}: a ```{block.info} block: use sh, toml or text")
        elif block.info not in SHELL and re.search(
            r"^\s*(\$ |leadbot |\.venv/bin/leadbot|python3 tasks\.py)", block.text, re.MULTILINE
        ):
            problems.append(f"{block.where}: a command outside a ```sh block escapes the test")
    assert not problems, "\n".join(problems)
    for doc in ("README.md", *(f"docs/{g}" for g in GUIDES)):
        shown = [c for c in shown_commands() if c.where.startswith(f"{doc}:")]
        assert any(program(c.words).kind == "leadbot" for c in shown), f"{doc} shows no command"


@pytest.mark.parametrize("shown", shown_commands(), ids=lambda c: f"{c.where} {c.text}"[:90])
def test_each_command_shown_is_one_that_exists(shown: Command) -> None:
    found = program(shown.words)
    for name, _ in found.env:
        assert known_variable(name), f"{shown.where}: leadbot reads no variable {name}"
    if found.kind == "leadbot":
        said = parse_leadbot(found.args)
        assert not said, f"{shown.where}: `{shown.text}`: leadbot says: {said}"
    elif found.kind == "tasks":
        said = check_tasks(found.args)
        assert not said, f"{shown.where}: `{shown.text}`: {said}"
    elif found.kind == "foreign":
        assert shown.remote, (
            f"{shown.where}: `{shown.text}` cannot run here: begin its block with "
            "`# on the server` if it is an example for the server, or leave it out"
        )
        assert found.args[0] in FOREIGN, f"{shown.where}: an unknown program {found.args[0]!r}"


@pytest.mark.parametrize("shown", shown_spans(), ids=lambda s: f"{s[0]} {' '.join(s[1])}"[:90])
def test_each_command_named_in_the_text_exists_with_its_options(
    shown: tuple[str, list[str]],
) -> None:
    where, words = shown
    if words[0] == "python3":
        said = check_tasks(tuple(words[2:3]))
        assert not said, f"{where}: {said}"
        return
    found = subcommands()
    args = words[1:]
    while args and args[0] in ("--config", "--db", "--log-level"):
        args = args[2:]
    if not args or args[0].startswith("-"):  # `leadbot --help`: the options before a command
        options = parser()._option_string_actions
        name = "leadbot"
    else:
        assert args[0] in found, f"{where}: leadbot has no command {args[0]!r}"
        options = found[args[0]]._option_string_actions
        name, args = f"leadbot {args[0]}", args[1:]
    unknown = [a for a in args if a.startswith("-") and a.split("=")[0] not in options]
    assert not unknown, f"{where}: `{name}` has no option {unknown}"


def anchor(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(path: Path) -> set[str]:
    found, inline = set(), False
    for token in tokens(path):
        if token.type == "heading_open":
            inline = True
        elif inline and token.type == "inline":
            found.add(anchor("".join(c.content for c in token.children or [])))
            inline = False
    return found


def test_every_link_between_the_docs_reaches_a_file_and_a_heading() -> None:
    problems = []
    for path in DOCS:
        for token in tokens(path):
            for child in token.children or []:
                href = str(child.attrs.get("href", "")) if child.type == "link_open" else ""
                if not href or re.match(r"[a-z]+:", href):
                    continue  # none, or another site
                target, _, fragment = href.partition("#")
                linked = (path.parent / target).resolve() if target else path
                where = place(path, (token.map or [0])[0] + 1)
                if not linked.exists():
                    problems.append(f"{where}: {href}: no such file")
                elif fragment and linked.suffix == ".md" and fragment not in headings(linked):
                    problems.append(f"{where}: {href}: no such heading")
    assert not problems, "\n".join(problems)


def test_the_readmes_layout_names_every_module_on_a_line_of_its_own() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("```", 2)[1]
    listed, folder = set(), ""
    for line in layout.splitlines():
        name = line.strip().split(" ", 1)[0]
        if line.startswith("  ") and not line.startswith("    "):
            folder = name if name.endswith("/") else ""
            listed.add(f"bot/{name}")
        elif line.startswith("    ") and folder:
            listed.add(f"bot/{folder}{name}")
    modules = {
        str(path.relative_to(ROOT))
        for pattern in ("bot/*.py", "bot/store/*.py", "bot/web/*.py", "bot/channels/*.py")
        for path in ROOT.glob(pattern)
        if path.name != "__init__.py" or path.parent.name != "bot"
    }
    assert modules <= listed, f"the README's layout lacks {sorted(modules - listed)}"
    assert "bot/demo/" in listed


def test_every_command_of_leadbot_is_in_the_readme() -> None:
    readme = {words[1] for where, words in shown_spans() if where.startswith("README.md:")}
    assert set(subcommands()) <= readme, set(subcommands()) - readme


def test_the_docs_name_only_variables_leadbot_reads_and_the_readme_names_all() -> None:
    named = {
        (where, name)
        for path in DOCS
        for where, text in spans(path)
        for name in ENV_NAME.findall(text)
    }
    unknown = sorted(f"{where}: {name}" for where, name in named if not known_variable(name))
    assert not unknown, "no such variable:\n" + "\n".join(unknown)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Environment", 1)[1].split("\n## ", 1)[0]
    names, prefixes = read_variables()
    missing = sorted(n for n in names | {f"{p}<NAME>" for p in prefixes} if f"`{n}" not in table)
    assert not missing, f"the README's environment table lacks {missing}"


def toml_examples() -> list[Block]:
    return [b for b in shown_blocks() if b.info == "toml"]


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` written into `base` as an admin adds it to rules.toml: tables gain keys, arrays of
    tables ([[rules]], [[digests]], [[autumna.accounts]]) gain entries."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        elif isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = out[key] + value
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("example", toml_examples(), ids=lambda b: b.where)
def test_each_toml_example_loads_on_top_of_the_example_rules(example: Block) -> None:
    base = tomllib.loads(ROOT_RULES.read_text(encoding="utf-8"))
    try:
        extra = tomllib.loads(example.text)
    except tomllib.TOMLDecodeError as exc:
        raise AssertionError(f"{example.where}: not valid TOML: {exc}") from None
    try:
        config = Loader(ROOT_RULES, merged(base, extra)).load()
    except ConfigError as exc:
        raise AssertionError(f"{example.where}:\n" + "\n".join(exc.problems)) from None
    assert config.warnings == (), f"{example.where}: {config.warnings}"


# --- run for real ------------------------------------------------------------------------------


@dataclass
class Installation:
    folder: Path  # rules.toml, leadbot.db and a link to this checkout's bot/
    env: dict[str, str]


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    """The example rules.toml with the admin guide's digests, against the stand-ins, after one
    poll that brought Autumna's published call-back request (4:2000)."""
    assert LEADBOT.exists(), f"{LEADBOT} is missing: `pip install -e .` puts it there"
    base = tmp_path_factory.mktemp("docs")
    documents = [(ROOT / "bot/demo/published" / f"{n}.json").read_text("utf-8") for n in SERVED]
    assert {p.stem for p in PUBLISHED} >= set(SERVED)
    leads = redate([d.strip() for d in documents], datetime.now(UTC))
    with open_world(base / "world", leads) as world:
        folder = base / "installation"
        folder.mkdir()
        rules = ROOT_RULES.read_text(encoding="utf-8")
        if "\n[[digests]]" not in rules:  # the example's digests are comments: the guide's
            rules += "\n" + next(
                b.text
                for b in toml_examples()
                if b.where.startswith("docs/admin-guide.md:") and "[[digests]]" in b.text
            )
        (folder / "rules.toml").write_text(rules, encoding="utf-8")
        (folder / "bot").symlink_to(ROOT / "bot")
        trusted = folder.parent / "ca.pem"  # the Teams and the SMTP stand-ins' CAs
        trusted.write_text(
            Path(world.teams.ca_file).read_text() + Path(world.smtp.ca_file).read_text()
        )
        env = world.env(SSL_CERT_FILE=str(trusted), TEAMS_NORTH_WEBHOOK=world.teams.url("north"))
        done = subprocess.run(
            [str(LEADBOT), "run", "--once"],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert len(query(folder / "leadbot.db", "SELECT key FROM leads")) == len(SERVED)
        yield Installation(folder, env)


@dataclass(frozen=True)
class Outcome:
    shown: Command
    returncode: int
    output: str


def subcommand(args: tuple[str, ...]) -> str:
    """The command among leadbot's arguments (after any --config, --db, --log-level)."""
    words = list(args)
    while words and words[0] in ("--config", "--db", "--log-level"):
        words = words[2:]
    return words[0] if words else ""


def run(shown: Command, installation: Installation, folder: Path) -> Outcome:
    """The command in `folder`, a fresh copy of the installation."""
    shutil.copytree(installation.folder, folder, symlinks=True)
    leadbot = program(shown.words)
    args = leadbot.args
    env = {**installation.env, **dict(leadbot.env)}
    if subcommand(args) == "init" and "--force" not in args:
        (folder / "rules.toml").unlink()  # init writes a new rules.toml where there is none
    argv = [str(LEADBOT), *args]
    if subcommand(args) == "run" and "--once" not in args:
        return run_loop(shown, argv, env, folder)
    done = subprocess.run(
        argv, cwd=folder, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if shown.redirect:
        (folder / shown.redirect).write_text(done.stdout, encoding="utf-8")
    return Outcome(shown, done.returncode, done.stdout + done.stderr)


def run_loop(shown: Command, argv: list[str], env: dict[str, str], folder: Path) -> Outcome:
    """`leadbot run`: until it has polled, then SIGTERM, which ends it with 0."""
    log = folder / "run.log"
    with log.open("w") as err:
        process = subprocess.Popen(argv, cwd=folder, env=env, stdout=err, stderr=err)
        try:
            deadline = time.monotonic() + 30
            while "polled " not in log.read_text() and time.monotonic() < deadline:
                if process.poll() is not None:
                    break
                time.sleep(0.05)
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    output = log.read_text()
    if "polled " not in output:
        code = code or 1
        output += "\n(it never polled)"
    return Outcome(shown, code, output)


def test_each_command_shown_runs_against_a_test_installation(
    installation: Installation, tmp_path: Path
) -> None:
    chosen: dict[Any, Command] = {}  # each distinct command once, wherever it is shown
    for shown in shown_commands():
        leadbot = program(shown.words)
        if not shown.remote and leadbot.kind == "leadbot":
            chosen.setdefault((leadbot.args, leadbot.env, shown.redirect), shown)
    assert len(chosen) >= 15, f"only {len(chosen)} commands to run: the docs lost their examples"
    workers = min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(
            pool.map(
                lambda each: run(each[1], installation, tmp_path / str(each[0])),
                enumerate(chosen.values()),
            )
        )
    failed = [
        f"{o.shown.where}: `{o.shown.text}` exited {o.returncode}:\n{o.output[-1500:]}"
        for o in outcomes
        if o.returncode != 0
    ]
    assert not failed, "\n\n".join(failed)
