"""A database of a million leads for the console's page timings (tests/test_web.py, with
LEADBOT_WEB_SCALE=1), filled with direct SQL as benchmarks/scale.py fills one: leads spread
evenly over `days` (80 by default, as there: the worst case, 375,000 of them in the last 30
days), each with its Slack, email and Teams deliveries sent a few seconds to minutes after it
arrived, one in ten thousand dead, seven in ten claimed, and the record as Autumna sent it for
the leads inside the retention period.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from webworld import record

from bot import links
from bot.store import Store

FIRST_ID = 10_000_000
HOMES = (100000, 200000, *range(400100, 400148))  # two named in rules.toml, 48 not
RETENTION = 90 * 86400.0


def fill(path: Path, count: int, now: float, days: float = 80.0) -> None:
    Store(path).close()  # the schema and every migration, exactly as leadbot makes them
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    rng = random.Random(7)
    with db:
        db.executemany(
            "INSERT INTO leads (key, account, category_id, category, lead_id, service_id, "
            "lead_date, seen_at, announced, urgent, unrouted, notes, raw) "
            "VALUES (?,?,?,?,?,?,?,?,1,?,0,'[]',?)",
            _leads(count, now, days),
        )
        db.executemany(
            "INSERT INTO deliveries (subject, channel, address, label, privacy, status, "
            "attempts, urgent, created_at, first_attempt_at, next_attempt_at, sent_at, "
            "last_error, reasons) VALUES (?,?,?,?,'full',?,1,0,?,?,?,?,?,'[]')",
            _deliveries(count, now, days, rng),
        )
        db.executemany(
            "INSERT INTO claims (lead, by_name, by_id, via, claimed_at, seconds_to_claim) "
            "VALUES (?, 'Amira Khan', '', 'slack-button', ?, ?)",
            _claims(count, now, days, rng),
        )
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with open(path, "rb") as written:
        os.fsync(written.fileno())


def _seen(i: int, count: int, now: float, days: float) -> float:
    return now - 60 - days * 86400 * (1 - i / count)


def _key(i: int) -> str:
    return f"{1 + i % 8}:{FIRST_ID + i}"


def _leads(count: int, now: float, days: float) -> Iterator[tuple[Any, ...]]:
    raw = json.dumps(record(4, "", 2000, 100000, now))  # one real record, as Autumna sent it
    for i in range(count):
        seen = _seen(i, count, now, days)
        yield (
            _key(i),
            "default",
            1 + i % 8,
            "Call Back Request",
            FIRST_ID + i,
            HOMES[i % len(HOMES)],
            time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(seen - 30)),
            seen,
            int(i % 8 == 3),
            raw if seen > now - RETENTION else None,
        )


def _deliveries(
    count: int, now: float, days: float, rng: random.Random
) -> Iterator[tuple[Any, ...]]:
    targets = (("slack", "#home", "home.slack"), ("email", "sales@x", "sales-inbox"))
    targets += (("teams", "TEAMS_GROUP_WEBHOOK", "group-teams"),)
    for i in range(count):
        seen = _seen(i, count, now, days)
        for j, (channel, address, label) in enumerate(targets):
            dead = i % 10_007 == j
            sent = None if dead else seen + 2 + rng.expovariate(1 / 40)
            yield (
                _key(i),
                channel,
                address,
                label,
                "dead" if dead else "sent",
                seen,
                seen + 1,
                0 if dead else seen,
                sent,
                "HTTP 404 from Slack" if dead else "",
            )


def _claims(count: int, now: float, days: float, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    for i in range(count):
        if i % 10 < 7:
            waited = rng.expovariate(1 / 1800)
            seen = _seen(i, count, now, days)
            yield _key(i), seen + waited, waited + 30


def timings(console: Any, repeat: int = 3) -> dict[str, float]:
    """Seconds per page: the first answer where it computes figures, else the median."""
    client = console.logged_in()
    found: dict[str, float] = {}

    def timed(name: str, path: str, times: int = repeat) -> Any:
        spent, answer = [], None
        for _ in range(times):
            start = time.perf_counter()
            answer = client.get(path)
            spent.append(time.perf_counter() - start)
            assert answer.status_code == 200, (path, answer.status_code, answer.text[-500:])
        found[name] = round(statistics.median(spent), 4)
        return answer

    start = time.perf_counter()
    timed("/metrics (the first scrape after a start)", "/metrics", 1)
    while "leadbot_leads_total" not in client.get("/metrics").text:
        time.sleep(0.2)
    found["/metrics: the first pass over every row, in the background"] = round(
        time.perf_counter() - start, 2
    )
    timed("/metrics", "/metrics")
    start = time.perf_counter()
    first = timed("/ (the first after a start)", "/", 1)
    while 'id="figuring"' in client.get("/").text:
        time.sleep(0.2)
    found["/: 30 days of response times, in the background"] = round(time.perf_counter() - start, 2)
    timed("/", "/")
    after = first.text.split("/?after=", 1)[1].split('"', 1)[0]
    timed("/?after= (the next unclaimed)", f"/?after={after}")
    page = timed("/leads", "/leads")
    key = page.text.split('<a href="/leads/', 2)[2].split('"', 1)[0]
    timed("/leads/<key> (timeline and rendered messages)", f"/leads/{key}")
    back = f"/leads?before={console.clock.now - 60 * 86400!r}:1"
    assert "/leads/" in timed("/leads?before= (two months back)", back).text
    claim = urlsplit(links.claim_url("https://x", console.settings.web_secret, key, 4e9)).path
    timed("/claim/<token>", claim)
    timed("/healthz", "/healthz")
    return found
