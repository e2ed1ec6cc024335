"""Figures: how fast each lead was answered and claimed, per lead and per home, for
`leadbot report` and the digests. The store answers with rows; everything here is arithmetic
and formatting, so it is tested with a store filled with known claims.

A lead's time is counted from its arrival (Autumna's date, else when leadbot first saw it), as
claims count `seconds_to_claim`. Only announced leads count: those recorded silently on the first
start were never sent to anybody.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .config import Config, normalise
from .escape import plain
from .store.claims import _arrival as arrival

if TYPE_CHECKING:
    from .store import Store

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may read as a formula
LISTED = 10  # unclaimed leads and dead deliveries named per home in a digest; the rest counted


@dataclass(frozen=True, slots=True)
class LeadFigures:
    key: str
    service_id: int | None
    home: str
    category: str
    received: float  # when the family asked
    first_message: float | None  # when its first message went out
    claimed_at: float | None
    by: str
    via: str
    seconds_to_claim: float | None

    @property
    def seconds_to_first_message(self) -> float | None:
        return None if self.first_message is None else max(0.0, self.first_message - self.received)


@dataclass(frozen=True, slots=True)
class HomeSummary:
    home: str
    service_id: int | None  # None for the line that adds up every home
    leads: int
    claimed: int
    median_claim: float | None  # seconds
    p90_claim: float | None
    median_first_message: float | None


def home_name(config: Config | None, service_id: int | None) -> str:
    home = config.homes.get(service_id) if config and service_id is not None else None
    return home.name if home else f"service {service_id}" if service_id else "no service"


def lead_figures(
    store: Store, config: Config | None, since: float, until: float, services: Collection[int] = ()
) -> list[LeadFigures]:
    """Every announced lead first seen in [since, until), oldest first."""
    return [
        LeadFigures(
            key=row["key"],
            service_id=row["service_id"],
            home=home_name(config, row["service_id"]),
            category=row["category"] or f"category {row['category_id']}",
            received=arrival(row["seen_at"], row["lead_date"]),
            first_message=row["first_sent"],
            claimed_at=row["claimed_at"],
            by=row["by_name"] or "",
            via=row["via"] or "",
            seconds_to_claim=row["seconds_to_claim"],
        )
        for row in store.report_rows(since, until, services)
    ]


def since_moment(text: str, tz: Any, now: float) -> float | None:
    """`--since`: a duration back from now ("30d", "12h", "90m", "2w") or a date or time in the
    group's zone ("2026-11-01", "2026-11-01T09:00"). None if it is neither."""
    match = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text)
    if match:
        return now - int(match[1]) * {"m": 60, "h": 3600, "d": 86400, "w": 604800}[match[2]]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=tz)).timestamp()


def home_by_name(config: Config | None, text: str) -> int | None:
    """`--home`: a service id, or a home's name in rules.toml (any case)."""
    if text.strip().isdigit():
        return int(text)
    for home in config.homes.values() if config else ():
        if normalise(home.name) == normalise(text):
            return home.service_id
    return None


def median(values: Iterable[float]) -> float | None:
    found = list(values)
    return statistics.median(found) if found else None


def percentile(values: Iterable[float], share: float) -> float | None:
    """Nearest rank: the smallest value with at least `share` of the values at or below it."""
    found = sorted(values)
    return found[max(0, math.ceil(share * len(found)) - 1)] if found else None


def summarise(leads: list[LeadFigures], home: str, service_id: int | None) -> HomeSummary:
    claims = [x.seconds_to_claim for x in leads if x.seconds_to_claim is not None]
    firsts = [s for x in leads if (s := x.seconds_to_first_message) is not None]
    return HomeSummary(
        home=home,
        service_id=service_id,
        leads=len(leads),
        claimed=len(claims),
        median_claim=median(claims),
        p90_claim=percentile(claims, 0.9),
        median_first_message=median(firsts),
    )


def per_home(leads: list[LeadFigures]) -> list[HomeSummary]:
    """One line per home (by name), then one for them all."""
    homes: dict[tuple[str, int | None], list[LeadFigures]] = {}
    for lead in leads:
        homes.setdefault((lead.home, lead.service_id), []).append(lead)
    lines = [summarise(homes[key], *key) for key in sorted(homes, key=lambda k: k[0].casefold())]
    return [*lines, summarise(leads, "All homes", None)]


# -- output: CSV (for Excel), JSON, a table for the terminal

LEAD_COLUMNS = (
    "Lead",
    "Home",
    "Category",
    "Received",
    "First message",
    "Minutes to first message",
    "Claimed at",
    "Claimed by",
    "Via",
    "Minutes to claim",
)
HOME_COLUMNS = (
    "Home",
    "Leads",
    "Claimed",
    "Median minutes to claim",
    "90th percentile minutes to claim",
    "Median minutes to first message",
)


def iso(stamp: float | None, tz: Any) -> str:
    """ISO 8601 in the group's zone, with its offset: 2026-12-01T14:05:09+00:00."""
    if stamp is None:
        return ""
    return datetime.fromtimestamp(stamp, tz).isoformat(timespec="seconds")


def in_minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 1)


def lead_cells(lead: LeadFigures, tz: Any) -> list[Any]:
    return [
        lead.key,
        lead.home,
        lead.category,
        iso(lead.received, tz),
        iso(lead.first_message, tz),
        in_minutes(lead.seconds_to_first_message),
        iso(lead.claimed_at, tz),
        lead.by,
        lead.via,
        in_minutes(lead.seconds_to_claim),
    ]


def home_cells(line: HomeSummary) -> list[Any]:
    return [
        line.home,
        line.leads,
        line.claimed,
        in_minutes(line.median_claim),
        in_minutes(line.p90_claim),
        in_minutes(line.median_first_message),
    ]


def neutralised(value: Any) -> str:
    """A cell as text a spreadsheet shows as text: one that could start a formula (CSV
    injection, OWASP) gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def to_csv(leads: list[LeadFigures], homes: list[HomeSummary], tz: Any) -> str:
    """UTF-8 with a byte-order mark (so Excel reads it as UTF-8), the leads, a blank line, then
    the per-home summary."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(LEAD_COLUMNS)
    writer.writerows([neutralised(v) for v in lead_cells(x, tz)] for x in leads)
    writer.writerow([])
    writer.writerow(HOME_COLUMNS)
    writer.writerows([neutralised(v) for v in home_cells(line)] for line in homes)
    return "\ufeff" + out.getvalue()


def to_json(
    leads: list[LeadFigures], homes: list[HomeSummary], tz: Any, since: float, until: float
) -> str:
    def keyed(columns: tuple[str, ...], cells: list[Any]) -> dict[str, Any]:
        return {c.lower().replace(" ", "_"): v for c, v in zip(columns, cells, strict=True)}

    document = {
        "since": iso(since, tz),
        "until": iso(until, tz),
        "leads": [keyed(LEAD_COLUMNS, lead_cells(x, tz)) | {"via": x.via} for x in leads],
        "homes": [
            keyed(HOME_COLUMNS, home_cells(line)) | {"service_id": line.service_id}
            for line in homes
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False)


def to_table(leads: list[LeadFigures], homes: list[HomeSummary], tz: Any) -> str:
    """Two aligned tables for the terminal (times in the group's zone, to the minute)."""

    def short(stamp: float | None) -> str:
        return datetime.fromtimestamp(stamp, tz).strftime("%Y-%m-%d %H:%M") if stamp else ""

    def number(value: float | None) -> str:
        return "" if value is None else f"{value:g}"

    rows = [
        [
            x.key,
            x.home,
            x.category,
            short(x.received),
            short(x.first_message),
            short(x.claimed_at),
            x.by,
            x.via,
            number(in_minutes(x.seconds_to_claim)),
        ]
        for x in leads
    ]
    head = ["Lead", "Home", "Category", "Received", "First message", "Claimed at", "By", "Via"]
    out = _aligned([*head, "Min to claim"], rows) if rows else ["No leads in this period."]
    summary = [[line.home, *(number(v) for v in home_cells(line)[1:])] for line in homes]
    out += [
        "",
        *_aligned(["Home", "Leads", "Claimed", "Median", "90th pct", "Median 1st msg"], summary),
    ]
    out.append("(median and 90th percentile minutes to claim; median minutes to the first message)")
    return plain("\n".join(out))


def _aligned(head: list[str], rows: list[list[str]]) -> list[str]:
    cells = [[c[:40] for c in row] for row in [head, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return [lines[0], "  ".join("─" * w for w in widths), *lines[1:]]


def report_document(
    kind: str, leads: list[LeadFigures], tz: Any, since: float, until: float
) -> str:
    homes = per_home(leads)
    if kind == "csv":
        return to_csv(leads, homes, tz)
    if kind == "json":
        return to_json(leads, homes, tz, since, until)
    return to_table(leads, homes, tz)


# -- a digest's figures: per home, for the leads of one period (kept with the digest)


def digest_figures(
    store: Store, config: Config, services: tuple[int, ...], since: float, until: float, now: float
) -> list[dict[str, Any]]:
    """Per home (`services`, or every home in rules.toml and any other that had leads): its
    leads by category, each claim's seconds, what is still unclaimed and the dead deliveries.
    Numbers, lead keys, categories and destination names only: no personal data."""
    leads = lead_figures(store, config, since, until, services)
    dead = store.dead_by_lead({x.key for x in leads})
    shown = list(services) or sorted(config.homes, key=lambda s: config.homes[s].name.casefold())
    shown += sorted({x.service_id or 0 for x in leads} - set(shown))
    figures = []
    for service in shown:
        mine = [x for x in leads if (x.service_id or 0) == service]
        waiting = [x for x in mine if x.claimed_at is None]
        failed = [(x.key, d) for x in mine for d in dead.get(x.key, [])]
        figures.append(
            {
                "service_id": service,
                "name": home_name(config, service or None),
                "leads": len(mine),
                "categories": Counter(x.category for x in mine).most_common(),
                "claims": sorted(
                    x.seconds_to_claim for x in mine if x.seconds_to_claim is not None
                ),
                "unclaimed": len(waiting),
                "waiting": [
                    {"key": x.key, "category": x.category, "since": x.received}
                    for x in waiting[:LISTED]
                ],
                "dead": len(failed),
                "failed": [
                    {
                        "key": key,
                        "to": d["label"],
                        "channel": d["channel"],
                        "error": d["last_error"],
                    }
                    for key, d in failed[:LISTED]
                ],
            }
        )
    return figures
