"""leadbot's benchmarks: `.venv/bin/python -m benchmarks.run [--quick] [--only 1,3]`.

Every figure is a ratio measured side by side in the same run, never an absolute timing. Each
result is printed as soon as it is known; the whole table is printed again at the end and
written to benchmarks/results/latest.md. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
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
# The figures of the round before (leadbot as of its commit, measured on the machine it names):
# printed beside this run's. Rows are stored as `Row` fields; a run writes its own beside the
# Markdown (results/latest.json), which is how this file is made.
BEFORE = Path(__file__).resolve().parent / "before.json"
BENCHMARKS = {  # number -> (name, module in this folder)
    "1": ("pipeline CPU", "cpu"),
    "2": ("backlog drain", "drain"),
    "3": ("rate-limited drain", "ratelimit"),
    "4": ("poll cost", "polls"),
    "5": ("scale", "scale"),
    "6": ("start-up", "startup"),
    "7": ("lead-to-ping latency", "latency"),
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
    text = f"{table.markdown()}\n{machine}\n\n{side_by_side(table)}"
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("latest.md" if chosen == list(BENCHMARKS) else "partial.md")
    out.write_text(text, encoding="utf-8")
    rows = {"machine": machine, "rows": [dataclasses.asdict(row) for row in table.rows]}
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1, ensure_ascii=False))
    print(f"\n{text}\nwritten to {out}")
    return 0


def side_by_side(table: Table) -> str:
    """This run's figures beside the round before's, row by row (a row new in this round has
    no figure before it)."""
    if not BEFORE.exists():
        return ""
    before = json.loads(BEFORE.read_text(encoding="utf-8"))
    old = {row["number"]: row for row in before["rows"]}
    lines = [
        f"Before and now. Before: {before['leadbot']}, measured {before['machine']}.",
        "",
        "| # | before | now | met before | met now |",
        "| --- | --- | --- | --- | --- |",
    ]
    verdict = {True: "yes", False: "**no**", None: "—"}
    for row in table.rows:
        was = old.get(row.number)
        then = f"{was['measured']}; {was['ratio']}" if was else "(new in this round)"
        cells = [
            row.number,
            then,
            f"{row.measured}; {row.ratio}",
            verdict[was["met"]] if was else "—",
            verdict[row.met],
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
