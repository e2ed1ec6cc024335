"""Response times per home over the last 30 days, for the overview: the median and the 90th
percentile of the time from a lead's arrival to its first message and to its claim, and a chart
of them on a log scale (seconds to days fit on one line).

They change slowly and cost a pass over a month of leads, so they are worked out in the
background (warm.py) at most every CACHE_SECONDS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..store import Store

WINDOW = 30 * 86400.0
CACHE_SECONDS = 300.0
CHART_WIDTH = 300  # the chart's units; it scales to the screen
LOW, HIGH = 10.0, 3 * 86400.0  # the log scale's ends: 10 s to 3 days
TICKS = ((60, "1m"), (300, "5m"), (900, "15m"), (3600, "1h"), (14400, "4h"), (86400, "1d"))


@dataclass(frozen=True)
class Spread:
    count: int
    median: float | None
    p90: float | None


@dataclass(frozen=True)
class HomeTimes:
    name: str
    leads: int
    first: Spread
    claim: Spread


def response_times(store: Store, config: Config, now: float) -> list[HomeTimes]:
    firsts: dict[int | None, list[float]] = {}
    claims: dict[int | None, list[float]] = {}
    counts: dict[int | None, int] = {}
    for home, first, claim in store.response_times(now - WINDOW):
        counts[home] = counts.get(home, 0) + 1
        if first is not None:
            firsts.setdefault(home, []).append(max(0.0, first))
        if claim is not None:
            claims.setdefault(home, []).append(claim)
    found = [
        HomeTimes(
            home_name(config, home),
            count,
            spread(firsts.get(home, [])),
            spread(claims.get(home, [])),
        )
        for home, count in counts.items()
    ]
    return sorted(found, key=lambda h: h.name.lower())


def home_name(config: Config, service_id: int | None) -> str:
    home = config.homes.get(service_id) if service_id is not None else None
    if home is not None:
        return home.name
    return f"service {service_id}" if service_id is not None else "no home"


def spread(values: list[float]) -> Spread:
    values = sorted(values)
    return Spread(len(values), percentile(values, 0.5), percentile(values, 0.9))


def percentile(ordered: list[float], p: float) -> float | None:
    """Linear between the closest ranks (as numpy's default and a spreadsheet's PERCENTILE)."""
    if not ordered:
        return None
    rank = p * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def x(seconds: float | None) -> float:
    """Where a duration sits on the chart's log scale."""
    if seconds is None:
        return 0.0
    span = math.log(HIGH) - math.log(LOW)
    return round(CHART_WIDTH * (math.log(min(max(seconds, LOW), HIGH)) - math.log(LOW)) / span, 1)


def chart(homes: list[HomeTimes]) -> dict[str, Any]:
    """What the template draws: a row per home, with bars for each median and 90th percentile."""
    return {
        "width": CHART_WIDTH,
        "ticks": [{"x": x(s), "label": label} for s, label in TICKS],
        "rows": [
            {
                "name": h.name,
                "first": (x(h.first.median), x(h.first.p90)),
                "claim": (x(h.claim.median), x(h.claim.p90)),
            }
            for h in homes
        ],
    }
