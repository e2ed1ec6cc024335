"""leadbot's benchmarks: `.venv/bin/python -m benchmarks.run [--quick] [--only 1,3]`.

Every figure is a ratio measured side by side in the same run, never an absolute timing. Each
result is printed as soon as it is known; the whole table is printed again at the end and
written to benchmarks/results/latest.md. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .harness import Table, quiet_logging

RESULTS = Path(__file__).resolve().parent / "results"
BENCHMARKS = {  # number -> (name, module in this folder)
    "1": ("pipeline CPU", "cpu"),
    "2": ("backlog drain", "drain"),
    "3": ("rate-limited drain", "ratelimit"),
    "4": ("poll cost", "polls"),
    "5": ("scale", "scale"),
    "6": ("start-up", "startup"),
}


def load(module: str) -> Callable[[Table, Path, bool], None]:
    run: Callable[[Table, Path, bool], None] = importlib.import_module(f"benchmarks.{module}").run
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="smaller workloads (about 1 minute instead of 6)"
    )
    parser.add_argument(
        "--only", default="", metavar="N,N", help="run only these benchmarks, e.g. --only 1,3"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the scratch folder (databases, rules.toml) for inspection",
    )
    args = parser.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        parser.error(f"no benchmark {', '.join(unknown)}: choose from {', '.join(BENCHMARKS)}")
    quiet_logging()
    table = Table()
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="leadbot-bench-"))
    try:
        for number in chosen:
            name, module = BENCHMARKS[number]
            print(f"-- {number}. {name}", file=sys.stderr, flush=True)
            load(module)(table, scratch, args.quick)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"scratch folder kept: {scratch}", file=sys.stderr)
    elapsed = time.perf_counter() - started
    machine = (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores, {platform.machine()}; "
        f"{'--quick, ' if args.quick else ''}whole run {elapsed:.0f} s"
    )
    text = f"{table.markdown()}\n{machine}\n"
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("latest.md" if chosen == list(BENCHMARKS) else "partial.md")
    out.write_text(text, encoding="utf-8")
    print(f"\n{text}\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
