"""3. Rate-limited drain: Slack's "about one message per second per channel", enforced by the
Slack stand-in with 429 + Retry-After, against leadbot's real default lanes. The floor is the
busiest channel's message count × 1 s.
"""

from __future__ import annotations

import json
from pathlib import Path

from bot.limits import RATES
from bot.loader import load_config
from bot.models import Channel
from bot.store import Store

from .harness import Row, Table, assemble, fresh_db, timed
from .servers import Servers
from .workload import homes, lead_documents, utcnow

TARGET = 1.1


def rules(channels: int) -> str:
    """One Slack channel per home and one rule: each lead goes to its home's channel."""
    lines = [
        "[group]",
        'name = "Rose Care Homes"',
        "",
        "[routing]",
        'fallback = "group-leads"',
        "",
        "[destinations]",
        'group-leads = { slack = "#group-leads" }',
        "",
    ]
    for home in homes()[:channels]:
        lines += [
            f"[homes.{home['id']}]",
            f"name = {json.dumps(home['name'])}",
            f"slack = {json.dumps(home['slack'])}",
            "",
        ]
    lines += [
        "[[rules]]",
        'name = "Every lead goes to its home\'s channel"',
        'notify = ["home.slack"]',
        "",
    ]
    return "\n".join(lines)


def documents(count: int, channels: int) -> list[str]:
    """`count` leads spread evenly over the first `channels` homes."""
    ids = [h["id"] for h in homes()[:channels]]
    found = []
    for i, text in enumerate(lead_documents(count, utcnow(), seed=3)):
        record = json.loads(text)
        record["service"] = {"id": ids[i % channels], "name": "", "postcode": "SW1A 1AA"}
        found.append(json.dumps(record))
    return found


def run(table: Table, folder: Path, quick: bool) -> None:
    count, channels = (30, 6) if quick else (60, 6)
    (folder / "ratelimit").mkdir(parents=True, exist_ok=True)
    path = folder / "ratelimit" / "rules.toml"
    path.write_text(rules(channels), encoding="utf-8")
    config = load_config(path)
    names = [h["slack"] for h in homes()[:channels]]
    with Servers(slack_rate=1.0) as servers:
        servers.documents(documents(count, channels))
        store = Store(fresh_db(folder, "ratelimit.db"))
        runner = assemble(config, store, servers.info, lanes=None)  # leadbot's real lanes
        seconds, _ = timed(lambda: runner.run(once=True))
        store.close()
        stats = servers.stats(names)
    per = stats["slack_channels"]
    busiest = max(c["accepted"] for c in per.values())
    if sum(c["accepted"] for c in per.values()) != count:
        raise AssertionError(f"only {stats['slack']} of {count} messages arrived")
    floor = busiest * 1.0
    limited = [c["ratelimited"] for c in per.values()]
    gaps = [b - a for c in per.values() for a, b in zip(c["stamps"], c["stamps"][1:], strict=False)]
    ratio = seconds / floor
    rate, burst = RATES[Channel.SLACK]
    table.add(
        Row(
            "3",
            f"Rate-limited drain: {count} messages over {channels} Slack channels, 1 msg/s per "
            f"channel enforced with 429 + Retry-After",
            f"{seconds:.1f} s; 429s per channel: {', '.join(map(str, limited))}",
            f"{ratio:.2f}× the floor ({busiest} messages in the busiest channel × 1 s)",
            f"≤ {TARGET}×, ≤ 1 429 per channel",
            ratio <= TARGET and max(limited) <= 1,
            f"leadbot's default lanes (Slack {rate:g}/s, burst {burst:g}); accepted messages were "
            f"{min(gaps):.2f}–{max(gaps):.2f} s apart in a channel; time from the poll to the "
            f"last message recorded",
        )
    )
