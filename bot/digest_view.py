"""What a digest's templates see (templates/<channel>/digest.j2): built from the figures kept
with the digest, for every home or for one (a `home.<attribute>` edition). Durations are words
("14 min"); bars are lengths the templates draw: `width` in characters (0 to BAR) for text and
`percent` for the HTML tables. Values are raw text; the template environment escapes them.
"""

from __future__ import annotations

import json
import statistics
from datetime import date, datetime
from typing import Any

from .claims import minutes
from .config import Config
from .view import format_day

BAR = 20  # characters in the longest text bar


def digest_view(row: dict[str, Any], service: int | None, config: Config) -> dict[str, Any]:
    """`row`: a digests row (name, day, period_start, period_end, figures as JSON)."""
    figures = json.loads(row["figures"])
    homes = [h for h in figures["homes"] if service is None or h["service_id"] == service]
    tz = config.timezone
    first = datetime.fromtimestamp(row["period_start"], tz).date()
    last = datetime.fromtimestamp(row["period_end"] - 1, tz).date()
    peak = max((count for h in homes for _, count in h["categories"]), default=0)
    busiest = max((h["leads"] for h in homes), default=0)
    claims = [s for h in homes for s in h["claims"]]
    return {
        "digest": {
            "name": row["name"],
            "kind": figures["period"],  # "day" or "week"
            "day": format_day(date.fromisoformat(row["day"])),
            "first": format_day(first),
            "last": format_day(last),
            "days": (last - first).days + 1,
            "home": homes[0]["name"] if service is not None and homes else "",
        },
        "totals": {
            "homes": len(homes),
            "leads": sum(h["leads"] for h in homes),
            "claimed": len(claims),
            "unclaimed": sum(h["unclaimed"] for h in homes),
            "dead": sum(h["dead"] for h in homes),
            "median": minutes(statistics.median(claims)) if claims else "",
            "worst": minutes(max(claims)) if claims else "",
        },
        "homes": [_home(h, peak, figures["as_of"]) for h in homes],
        "chart": [
            {"name": h["name"], "count": h["leads"], **_bar(h["leads"], busiest)} for h in homes
        ],
    }


def _home(home: dict[str, Any], peak: int, as_of: float) -> dict[str, Any]:
    claims = home["claims"]
    return {
        "name": home["name"],
        "service_id": home["service_id"],
        "leads": home["leads"],
        "claimed": len(claims),
        "unclaimed": home["unclaimed"],
        "dead": home["dead"],
        "median": minutes(statistics.median(claims)) if claims else "",
        "worst": minutes(max(claims)) if claims else "",
        "categories": [
            {"name": name, "count": count, **_bar(count, peak)}
            for name, count in home["categories"]
        ],
        "waiting": [
            {"key": w["key"], "category": w["category"], "waited": minutes(as_of - w["since"])}
            for w in home["waiting"]
        ],
        "more_waiting": home["unclaimed"] - len(home["waiting"]),
        "failed": home["failed"],
        "more_failed": home["dead"] - len(home["failed"]),
    }


def _bar(count: int, peak: int) -> dict[str, int]:
    """A bar as long as `count` is next to the largest shown; any count shows at least a sliver."""
    if not count or not peak:
        return {"width": 0, "percent": 0}
    return {
        "width": max(1, round(BAR * count / peak)),
        "percent": max(2, round(100 * count / peak)),
    }


# For `leadbot check` and the tests: a digest with something in every part.
SAMPLE: dict[str, Any] = {
    "name": "morning",
    "day": "2025-12-02",
    "period_start": 1764547200.0,  # Mon 1 Dec 2025 00:00 UTC
    "period_end": 1764633600.0,
    "figures": json.dumps(
        {
            "period": "day",
            "as_of": 1764662400.0,  # Tue 2 Dec 08:00
            "homes": [
                {
                    "service_id": 100000,
                    "name": "Sample Home",
                    "leads": 4,
                    "categories": [
                        ["Call Back Request", 2],
                        ["In Person Visit Request", 1],
                        ["Referral without contact", 1],
                    ],
                    "claims": [300.0, 840.0, 3900.0],
                    "unclaimed": 1,
                    "waiting": [
                        {"key": "4:2001", "category": "Call Back Request", "since": 1764630000.0}
                    ],
                    "dead": 1,
                    "failed": [
                        {"key": "4:2001", "to": "sales-inbox", "channel": "email", "error": "550"}
                    ],
                },
                {
                    "service_id": 200000,
                    "name": "Quiet Home",
                    "leads": 0,
                    "categories": [],
                    "claims": [],
                    "unclaimed": 0,
                    "waiting": [],
                    "dead": 0,
                    "failed": [],
                },
            ],
        }
    ),
}
