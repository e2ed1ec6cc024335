"""5. Scale: a database that has seen a million leads against an empty one, doing the same work —
a poll that brings 50 new leads, `run --once`, the run loop's idle wake-up — in a subprocess per
database so that peak memory is each one's own: the kernel's high-water mark of resident memory,
VmHWM in /proc/self/status (`resource.getrusage().ru_maxrss` is no good here: on Linux it carries
the parent's peak across fork and exec, so every child would report the benchmark runner's size).
Also: bytes per lead on disk.

The big database is filled with direct SQL matching store.py's schema: each lead's raw record is
one of Autumna's (600–900 bytes as leadbot stores it) and its deliveries are the ones the
benchmark rules give it, all sent. Every lead is dated within the retention period, so none has
been purged: the worst case for size.
"""

from __future__ import annotations

import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot import alerts
from bot.config import Config
from bot.limits import Lanes
from bot.loader import load_config
from bot.models import Channel
from bot.parse import parse_lead
from bot.rules import route
from bot.runner import Runner, purge
from bot.store import Store

from .harness import UNLIMITED, NullSender, Row, Table, assemble, fresh_db, ms
from .polls import cycle
from .servers import Servers
from .workload import ACCOUNT, homes, lead_record, write_rules

TARGET = 1.2
NEW_PER_CYCLE = 50
RUN_ONCE_CAP = 30.0  # seconds: a `run --once` still going then is stopped and reported as such


# --- filling a big database -------------------------------------------------------------------


def fill(path: Path, count: int, config: Config, seed: int = 1) -> None:
    """`count` seen leads with their (sent) deliveries, written straight into the schema."""
    Store(path).close()  # the schema, exactly as leadbot creates it
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    now = time.time()
    templates = _templates(config, seed)
    with db:
        db.executemany(
            "INSERT INTO leads (key, account, category_id, category, lead_id, service_id, "
            "lead_date, seen_at, announced, urgent, unrouted, notes, raw) "
            "VALUES (?,?,?,?,?,?,?,?,1,?,0,'[]',?)",
            _lead_rows(templates, count, now),
        )
        db.executemany(
            "INSERT INTO deliveries (subject, channel, address, label, privacy, status, "
            "attempts, urgent, created_at, first_attempt_at, next_attempt_at, sent_at, "
            "remote_id, reasons) VALUES (?,?,?,?,?,'sent',1,?,?,?,?,?,?,?)",
            _delivery_rows(templates, count, now),
        )
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    # Written with synchronous=OFF: flush it now, or leadbot's first checkpoint would pay for
    # writing out the fill's 2 GB of dirty pages and the comparison would measure the fill.
    with open(path, "rb") as written:
        os.fsync(written.fileno())


def _templates(config: Config, seed: int, variety: int = 2000) -> list[dict[str, Any]]:
    """Realistic leads, each with its routed deliveries, to be repeated under new ids."""
    rng = random.Random(seed)
    home_list = homes()
    found = []
    for i in range(variety):
        record = lead_record(rng, i, datetime(2026, 1, 1, tzinfo=UTC), home_list)
        lead = parse_lead(record, ACCOUNT)
        routing = route(lead, config)
        found.append(
            {
                "record": record,
                "category": lead.category,
                "service": lead.service.id,
                "urgent": int(routing.urgent),
                "targets": [
                    (
                        str(t.channel),
                        t.address,
                        t.label,
                        t.privacy,
                        json.dumps(routing.reached_by[t.key]),
                    )
                    for t in routing.targets
                ],
            }
        )
    return found


def _moment(i: int, count: int, now: float) -> float:
    return now - 80 * 86400 * (1 - i / count)  # evenly over 80 days, inside the retention


def _lead_rows(
    templates: list[dict[str, Any]], count: int, now: float
) -> Iterator[tuple[Any, ...]]:
    for i in range(count):
        t = templates[i % len(templates)]
        lead_id = 10_000_000 + i
        seen = _moment(i, count, now)
        stamp = datetime.fromtimestamp(seen - 60, UTC)
        record = dict(t["record"], id=lead_id, date=stamp.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
        yield (
            f"{t['category'].id}:{lead_id}",
            ACCOUNT,
            t["category"].id,
            t["category"].name,
            lead_id,
            t["service"],
            stamp.isoformat(),
            seen,
            t["urgent"],
            json.dumps(record, ensure_ascii=True),
        )


def _delivery_rows(
    templates: list[dict[str, Any]], count: int, now: float
) -> Iterator[tuple[Any, ...]]:
    for i in range(count):
        t = templates[i % len(templates)]
        key = f"{t['category'].id}:{10_000_000 + i}"
        seen = _moment(i, count, now)
        for channel, address, label, privacy, reasons in t["targets"]:
            yield (
                key,
                channel,
                address,
                label,
                privacy,
                t["urgent"],
                seen,
                seen + 1,
                seen,
                seen + 2,
                f"{int(seen)}.{i % 1_000_000:06d}",
                reasons,
            )


# --- one database, measured in its own process --------------------------------------------------


def measure(db_path: Path, rules: Path, cycles: int, first_id: int) -> dict[str, Any]:
    """Runs in the child: the same work on whichever database it is given."""
    from .harness import quiet_logging

    quiet_logging()
    config = load_config(rules)
    store = Store(db_path)
    baseline = peak_rss_kib()
    found: dict[str, Any] = {"poll": [], "idle_wake": []}
    rng = random.Random(first_id)
    null = NullSender()

    def runner() -> Runner:
        return assemble(
            config,
            store,
            servers.info,
            senders={c: null for c in Channel},
            lanes=Lanes(dict(UNLIMITED)),
        )

    batches = iter(range(first_id, first_id + 10**6, NEW_PER_CYCLE))

    def new_leads() -> None:
        now, first = datetime.now(UTC), next(batches)
        servers.documents(
            [
                json.dumps(lead_record(rng, first + j, now - timedelta(seconds=30 + j), homes()))
                for j in range(NEW_PER_CYCLE)
            ]
        )

    with Servers() as servers:
        for k in range(cycles + 1):  # the first is a warm-up, not counted
            new_leads()
            start = time.perf_counter()
            if cycle(runner().poller) != NEW_PER_CYCLE:
                raise AssertionError("the poll did not bring the new leads")
            if k:
                found["poll"].append(time.perf_counter() - start)
            # Scaffolding, not timed: these deliveries are not what the next cycle measures.
            store.db.execute("UPDATE deliveries SET status = 'sent' WHERE status = 'pending'")

        new_leads()  # `leadbot run --once`: poll, then deliver what the poll brought
        once = runner()
        timer = threading.Timer(RUN_ONCE_CAP, once.stop.set)
        timer.start()
        start = time.perf_counter()
        once.run(once=True)
        found["run_once"] = time.perf_counter() - start
        timer.cancel()
        found["capped"] = found["run_once"] >= RUN_ONCE_CAP  # (run() sets `stop` as it ends)
        found["sent"] = null.sent

        dispatcher = runner().dispatcher
        for _ in range(3):
            start = time.perf_counter()
            dispatcher.start_due()
            dispatcher.next_wake()
            dispatcher.idle()
            alerts.dead_letters(store, config, time.time())
            found["idle_wake"].append(time.perf_counter() - start)
        dispatcher.close()
        start = time.perf_counter()
        purge(store, config, time.time())
        found["purge"] = time.perf_counter() - start
    store.close()
    found["maxrss_kib"] = peak_rss_kib()
    found["baseline_kib"] = baseline
    return found


def peak_rss_kib() -> int:
    """This process's peak resident memory so far, in KiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: the best there is


def in_child(db_path: Path, rules: Path, cycles: int, first_id: int) -> dict[str, Any]:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "tests")])}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.scale",
            str(db_path),
            str(rules),
            str(cycles),
            str(first_id),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"scale child failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(table: Table, folder: Path, quick: bool) -> None:
    count, cycles = (100_000, 3) if quick else (1_000_000, 5)
    rules = write_rules(folder / "scale")
    config = load_config(rules)
    big = fresh_db(folder, "big.db")
    start = time.perf_counter()
    fill(big, count, config)
    fill_s = time.perf_counter() - start
    print(f"   filled {count:,} leads in {fill_s:.0f} s", flush=True)
    size = sum(Path(f"{big}{s}").stat().st_size for s in ("", "-wal") if Path(f"{big}{s}").exists())
    raw, deliveries = (
        sqlite3.connect(big)
        .execute("SELECT (SELECT AVG(LENGTH(raw)) FROM leads), (SELECT COUNT(*) FROM deliveries)")
        .fetchone()
    )
    layout = table_layout(big, count)

    empty = in_child(fresh_db(folder, "empty.db"), rules, cycles, 90_000_000)
    full = in_child(big, rules, cycles, 91_000_000)

    def mid(result: dict[str, Any], name: str) -> float:
        return float(statistics.median(result[name]))

    poll = mid(full, "poll") / mid(empty, "poll")
    memory = full["maxrss_kib"] / empty["maxrss_kib"]
    table.add(
        Row(
            "5a",
            f"Scale: poll cycle bringing {NEW_PER_CYCLE} new leads, {count:,} seen leads vs "
            f"an empty database",
            f"{ms(mid(full, 'poll'))} vs {ms(mid(empty, 'poll'))}",
            f"{poll:.2f}×",
            f"≤ {TARGET}×",
            poll <= TARGET,
            f"median of {cycles} after a warm-up; fetch, parse, `known()`, route, one "
            f"transaction for the leads and their deliveries",
        )
    )
    table.add(
        Row(
            "5b",
            "Scale: peak memory of that process (VmHWM)",
            f"{full['maxrss_kib'] / 1024:.0f} MiB vs {empty['maxrss_kib'] / 1024:.0f} MiB",
            f"{memory:.2f}×",
            f"≤ {TARGET}×",
            memory <= TARGET,
            f"after start-up and opening the database: {full['baseline_kib'] / 1024:.0f} vs "
            f"{empty['baseline_kib'] / 1024:.0f} MiB",
        )
    )
    once = full["run_once"] / empty["run_once"]
    capped = " (stopped at the cap)" if full.get("capped") else ""
    table.add(
        Row(
            "5c",
            f"Scale: `run --once` delivering those {NEW_PER_CYCLE} leads "
            f"({full['sent']} messages) to a null channel",
            f"{ms(full['run_once'])}{capped} vs {ms(empty['run_once'])}",
            f"{'≥ ' if capped else ''}{once:.1f}×",
            f"≤ {TARGET}× (as 5a)",
            once <= TARGET,
            f"recover, retention purge, poll ({NEW_PER_CYCLE} new leads), deliver, dead-letter "
            f"check; "
            f"the purge alone {ms(full['purge'])} vs {ms(empty['purge'])}",
        )
    )
    wake = mid(full, "idle_wake") / mid(empty, "idle_wake")
    table.add(
        Row(
            "5d",
            "Scale: one idle wake-up of the run loop (nothing due)",
            f"{ms(mid(full, 'idle_wake'))} vs {ms(mid(empty, 'idle_wake'))}",
            f"{wake:.0f}×",
            f"≤ {TARGET}× (as 5a)",
            wake <= TARGET,
            "start_due + next_wake + idle + dead-letter check: the loop does this at least "
            "once a second",
        )
    )
    table.add(
        Row(
            "5e",
            "Scale: bytes per lead on disk",
            f"{size / count:,.0f} B/lead ({size / 2**30:.2f} GiB for {count:,} leads and "
            f"{deliveries:,} deliveries)",
            f"{size / count / raw:.2f}× the raw record ({raw:,.0f} B)",
            "—",
            None,
            f"filled by direct SQL in {fill_s:.0f} s; no lead purged yet (worst case). {layout}",
        )
    )


def table_layout(path: Path, count: int) -> str:
    """Where the bytes are, from SQLite's dbstat table (when this SQLite has it)."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "SELECT name, pagetype, SUM(pgsize), SUM(payload) FROM dbstat GROUP BY name, pagetype"
        ).fetchall()
    except sqlite3.Error:
        return ""
    finally:
        db.close()
    size: dict[str, int] = {}
    for name, _, pages, _ in rows:
        size[name] = size.get(name, 0) + pages
    overflow = [
        (pages, payload)
        for name, kind, pages, payload in rows
        if name == "leads" and kind == "overflow"
    ]
    spill = ""
    if overflow:
        pages, payload = overflow[0]
        spill = (
            f"; {pages / count:,.0f} B of it in overflow pages that are "
            f"{payload / pages:.0%} full (only records too long for a page spill over)"
        )
    parts = ", ".join(
        f"{name} {pages / count:,.0f}"
        for name, pages in sorted(size.items(), key=lambda kv: -kv[1])
        if pages / count >= 1
    )
    return f"B/lead by table and index: {parts}{spill}"


if __name__ == "__main__":
    print(
        json.dumps(
            measure(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        )
    )
