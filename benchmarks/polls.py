"""4. Poll cost: what one steady-state cycle asks of Autumna (requests, bytes), and how long an idle
cycle takes — a poll whose overlap window brings back only leads already in the database —
against the floor of fetching the same window with a bare httpx GET and `json.loads`.
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bot import alerts
from bot.loader import load_config
from bot.poller import Poller, Window
from bot.store import Store

from .harness import Row, Table, assemble, fresh_db, http_client, timed
from .servers import Servers
from .workload import lead_documents, utcnow, write_rules

SPAN = timedelta(days=7)  # the stored leads arrived over the last week: a busy group


def run(table: Table, folder: Path, quick: bool) -> None:
    count, cycles = (2000, 15) if quick else (10_000, 40)
    config = load_config(write_rules(folder / "polls"))
    with Servers() as servers:
        info = servers.info
        servers.documents(lead_documents(count, utcnow(), seed=5, span=SPAN))
        store = Store(fresh_db(folder, "polls.db"))
        http = http_client()
        runner = assemble(config, store, info, lanes=None, backfill=False, http=http)
        poller = runner.poller
        first_s, _ = timed(lambda: cycle(poller))
        stored = store.db.execute("SELECT COUNT(*) FROM leads").fetchone()[0]
        servers.reset()

        idle = []
        for _ in range(cycles):
            seconds, new = timed(lambda: cycle(poller))
            if new:
                raise AssertionError(f"an idle cycle found {new} new leads")
            idle.append(seconds)
        stats = servers.stats()
        window = poller.windows(datetime.now(UTC))[0]
        floor = statistics.median(
            timed(lambda: bare_fetch(http, info["autumna"], window))[0] for _ in range(cycles)
        )
        in_window = len(bare_fetch(http, info["autumna"], window))
        http.close()
        store.close()

    requests = stats["autumna_requests"] / cycles
    repeats = config.polling.overlap / config.polling.interval
    body = stats["autumna_bytes"] / cycles
    median = statistics.median(idle)
    table.add(
        Row(
            "4a",
            "Poll cost per steady-state cycle (one account, overlap 15 min)",
            f"{requests:.0f} request, {body / 1024:.1f} KiB of body ({in_window} leads in the "
            f"overlap window)",
            f"each lead is downloaded ≈ {repeats:.0f}× (overlap ÷ interval)",
            "—",
            None,
            f"the first poll (30 days of history, {stored:,} leads, {first_s:.1f} s) is the only "
            f"big one; a steady cycle asks for the window since the watermark minus the overlap",
        )
    )
    table.add(
        Row(
            "4b",
            f"Idle cycle: poll that brings nothing new, {stored:,} leads in the database",
            f"{median * 1000:.1f} ms (median of {cycles})",
            f"{median / floor:.2f}× a bare httpx GET + `json.loads` of the same window "
            f"({floor * 1000:.1f} ms)",
            "—",
            None,
            "windows + fetch + parse + `known()` lookup + watermark update + poll-health check",
        )
    )


def cycle(poller: Poller) -> int:
    """One poll of every account, as the run loop does it; returns how many leads were new."""
    now = datetime.now(UTC)
    new = sum(poller.record(result, now) for result in poller.fetch(poller.windows(now)))
    alerts.poll_health(poller.store, poller.config, time.time())
    return new


def bare_fetch(http: httpx.Client, url: str, window: Window) -> list[object]:
    response = http.get(
        url,
        params={
            "api_key": "bench-key",
            "dateTimeFrom": _param(window.since),
            "dateTimeTo": _param(window.until),
        },
    )
    data: list[object] = json.loads(response.text)
    return data


def _param(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
