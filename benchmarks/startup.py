"""6. Start-up: wall time of `leadbot --help` and `leadbot check` as subprocesses (median of
several), against `python -c pass` from the same interpreter as the floor.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .harness import Row, Table, ms

ROOT = Path(__file__).resolve().parents[1]


def wall(command: list[str], env: dict[str, str], repeat: int) -> float:
    times = []
    for _ in range(repeat + 1):  # the first run warms the page cache and is not counted
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.decode()[-500:]}")
    return statistics.median(times[1:])


def run(table: Table, folder: Path, quick: bool) -> None:
    repeat = 5 if quick else 11
    # No keys: `check --demo` validates rules.toml and renders every template, as for the demo.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AUTUMNA_", "SLACK_", "SMTP_", "TEAMS_", "LEADBOT_"))
    }
    leadbot = str(Path(sys.executable).with_name("leadbot"))
    floor = wall([sys.executable, "-c", "pass"], env, repeat)
    for number, args, what in (
        ("6a", ["--help"], "`leadbot --help`"),
        (
            "6b",
            ["check", "--demo", "--config", str(ROOT / "rules.toml")],
            "`leadbot check --demo` (the example rules.toml; every template rendered)",
        ),
    ):
        seconds = wall([leadbot, *args], env, repeat)
        table.add(
            Row(
                number,
                f"Start-up: {what}",
                ms(seconds),
                f"{seconds / floor:.1f}× `python -c pass` ({ms(floor)})",
                "—",
                None,
                f"median of {repeat} subprocess runs after one warm-up",
            )
        )
