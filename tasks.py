#!/usr/bin/env python3
"""The README's two commands, on a fresh machine with only Python 3.11+:

    python3 tasks.py demo   # set up ./.venv, then run leadbot once on the bundled demo
    python3 tasks.py test   # set up ./.venv with the test tools, then lint, type-check, test
    python3 tasks.py bench  # the benchmarks (not part of the tests), see benchmarks/README.md

Each step installs only what changed since the last run (a hash of pyproject.toml is kept).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def sh(*command: str | Path, check: bool = True) -> int:
    print("$", " ".join(str(c) for c in command), flush=True)
    return subprocess.run([str(c) for c in command], cwd=ROOT, check=check).returncode


def environment(extra: str) -> None:
    """Create .venv and install leadbot (editable) with `extra` dependencies, once."""
    if sys.version_info < (3, 11):  # noqa: UP036 (this file may be run by an older Python)
        sys.exit(f"leadbot needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print(f"creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extra.encode()).hexdigest()
    stamp = VENV / f".installed-{extra or 'run'}"
    if not stamp.exists() or stamp.read_text() != wanted:
        target = f".[{extra}]" if extra else "."
        sh(
            BIN / "python",
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-e",
            target,
        )
        stamp.write_text(wanted)


def node_validator() -> None:
    """Microsoft's own Adaptive Card library checks our Teams cards when Node is available."""
    missing = not (ROOT / "tests/node/node_modules/adaptivecards").exists()
    if (
        missing
        and shutil.which("npm")
        and sh(
            "npm",
            "ci",
            "--silent",
            "--no-audit",
            "--no-fund",
            "--prefix",
            "tests/node",
            check=False,
        )
    ):
        print("note: npm could not install adaptivecards; that one validator is skipped")


def demo() -> int:
    environment("")
    return sh(BIN / "leadbot", "run", "--demo", "--once", check=False)


def bench() -> int:
    environment("bench")
    return sh(BIN / "python", "-m", "benchmarks.run", *sys.argv[2:], check=False)


def test() -> int:
    environment("test")
    node_validator()
    sources = ["bot", "tests", "benchmarks", "tasks.py"]
    for step in (
        [BIN / "ruff", "check", *sources],
        [BIN / "ruff", "format", "--check", *sources],
        [BIN / "mypy"],
    ):
        if sh(*step, check=False):
            return 1
    return sh(BIN / "python", "-m", "pytest", *sys.argv[2:], check=False)


if __name__ == "__main__":
    commands = {"demo": demo, "test": test, "bench": bench}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(
            f"usage: python3 {Path(__file__).name} demo | test [pytest options] | "
            "bench [--quick] [--only 1,3]"
        )
    sys.exit(commands[sys.argv[1]]())
