"""/metrics: Prometheus' text format through the official prometheus_client, from a collector
that reads the database at scrape time, so every figure survives a restart.

Leads, deliveries and claims are only ever added (retention erases a lead's details, never its
row), so what was counted once stays counted: each scrape reads only the rows added since the
last one, and the first scrape after a start reads them all (on a database of a million leads
that takes seconds: warm.py does it in the background, and until it is done a scrape has only
the figures that need no reading). A lead's first message counts once it is LAG seconds old, so
an outcome the loop writes a little late still counts.

No label carries personal data or an unbounded value: accounts are the ones in rules.toml,
categories Autumna's eight (others are "other"), channels and statuses leadbot's own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ..claims import VIA
from ..config import Config
from ..models import CATEGORY_NAMES, Channel, Status
from ..store import Store
from ..store.console import OPEN

if TYPE_CHECKING:
    from .site import Site

BUCKETS = (60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0)  # 1 min, 5 min, 15 min, 1 h, 4 h, 1 day
LAG = 300.0
SCRAPE_WAIT = 5.0  # seconds: Prometheus gives a scrape 10 by default
QUEUE = ("pending", "deferred", "retrying", "sending")


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: int = 0
    sum: float = 0.0

    def add(self, values: Iterable[float]) -> None:
        for value in values:
            for i, bound in enumerate(BUCKETS):
                if value <= bound:
                    self.counts[i] += 1
            self.total += 1
            self.sum += value

    def copy(self) -> Histogram:
        return Histogram(list(self.counts), self.total, self.sum)

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        buckets = [(str(b), float(n)) for b, n in zip(BUCKETS, self.counts, strict=True)]
        return HistogramMetricFamily(
            name, documentation, buckets=[*buckets, ("+Inf", float(self.total))], sum_value=self.sum
        )


@dataclass
class Figures:
    """The sums over rows that are only ever added, with where each one has read up to. Only
    one thread updates them at a time (warm.Warm)."""

    leads: Counter[tuple[str, str]] = field(default_factory=Counter)  # (account, category)
    leads_read: int = 0  # rowid
    deliveries: Counter[str] = field(default_factory=Counter)  # channel -> rows ever made
    deliveries_read: int = 0  # id
    claims: Counter[str] = field(default_factory=Counter)  # via
    claim_times: Histogram = field(default_factory=Histogram)
    claims_read: int = 0  # rowid
    first_times: Histogram = field(default_factory=Histogram)
    first_read: float | None = None  # sent_at

    def update(self, store: Store, config: Config, now: float) -> Snapshot:
        accounts = {a.name for a in config.accounts}
        added, self.leads_read = store.leads_added(self.leads_read)
        for account, category_id, unreadable, count in added:
            shown = account if account in accounts else "other"
            self.leads[(shown, category_label(category_id, bool(unreadable)))] += count
        made, self.deliveries_read = store.deliveries_added(self.deliveries_read)
        self.deliveries.update(made)
        claimed, self.claims_read = store.claims_added(self.claims_read)
        self.claims.update(via for via, _ in claimed)
        self.claim_times.add(seconds for _, seconds in claimed)
        until = now - LAG
        if self.first_read is None or until > self.first_read:
            self.first_times.add(store.first_messages(self.first_read, until))
            self.first_read = until
        return Snapshot(
            Counter(self.leads),
            Counter(self.deliveries),
            Counter(self.claims),
            self.claim_times.copy(),
            self.first_times.copy(),
            store.queue_counts(now),
            store.unfinished_deliveries(),
            store.poll_states(),
            store.escalations_fired(),
        )


@dataclass(frozen=True)
class Snapshot:
    """Everything /metrics reads from the database, as of one update."""

    leads: Counter[tuple[str, str]]
    deliveries: Counter[str]
    claims: Counter[str]
    claim_times: Histogram
    first_times: Histogram
    queue: dict[str, int]
    unfinished: dict[tuple[str, str], int]
    polls: dict[str, dict[str, Any]]
    fired: int


def category_label(category_id: int | None, unreadable: bool) -> str:
    if unreadable:
        return "unreadable"
    names = CATEGORY_NAMES.get(category_id or 0)
    return names[0] if names else "other"


class Figuring(Collector):
    """Reads the database at each scrape, with a connection of its own."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def describe(self) -> Iterable[Metric]:
        return []  # nothing is read when the collector is registered

    def collect(self) -> Iterable[Metric]:
        site = self.site
        snapshot, _ = site.metrics.get(SCRAPE_WAIT, SCRAPE_WAIT)
        if snapshot is not None:
            yield from families(site.config, snapshot)
        runner = site.runner
        if runner is not None and runner.poll_seconds:
            yield GaugeMetricFamily(
                "leadbot_poll_duration_seconds",
                "How long the last poll of Autumna took, every account together.",
                value=runner.poll_seconds[-1],
            )
        if runner is not None and runner.heartbeat:
            yield GaugeMetricFamily(
                "leadbot_loop_heartbeat_timestamp_seconds",
                "When the run loop last turned (Unix time).",
                value=runner.heartbeat,
            )


def families(config: Config, figures: Snapshot) -> Iterator[Metric]:
    leads = CounterMetricFamily(
        "leadbot_leads",
        "Leads seen, by Autumna account and category.",
        labels=["account", "category"],
    )
    for (account, category), count in sorted(figures.leads.items()):
        leads.add_metric([account, category], count)
    yield leads
    deliveries = GaugeMetricFamily(
        "leadbot_deliveries",
        "Deliveries (one message to one destination) by channel and where they are now: "
        "sent, pending, sending, retrying, dead (failed for good) or cancelled (claimed first).",
        labels=["channel", "status"],
    )
    for channel in Channel:
        made = figures.deliveries[str(channel)]
        others = {s: figures.unfinished.get((str(channel), str(s)), 0) for s in OPEN}
        deliveries.add_metric([str(channel), str(Status.SENT)], made - sum(others.values()))
        for other, count in others.items():
            deliveries.add_metric([str(channel), str(other)], count)
    yield deliveries
    waiting = GaugeMetricFamily(
        "leadbot_queue",
        "Deliveries waiting: pending (due now), deferred (until their destination's hours), "
        "retrying (after a failure that may pass), sending (in flight).",
        labels=["status"],
    )
    for status in QUEUE:
        waiting.add_metric([status], figures.queue[status])
    yield waiting
    yield GaugeMetricFamily(
        "leadbot_dead_letters",
        "Deliveries that failed for good and wait for a resend (the console or `leadbot resend`).",
        value=figures.queue["dead"],
    )
    polled = GaugeMetricFamily(
        "leadbot_last_successful_poll_timestamp_seconds",
        "When each Autumna account was last polled successfully (Unix time).",
        labels=["account"],
    )
    for each in config.accounts:
        success = (figures.polls.get(each.name) or {}).get("last_success")
        if success is not None:
            polled.add_metric([each.name], success)
    yield polled
    yield figures.first_times.family(
        "leadbot_time_to_first_message_seconds",
        "From a lead's arrival at Autumna to leadbot's first message about it.",
    )
    yield figures.claim_times.family(
        "leadbot_time_to_claim_seconds",
        "From a lead's arrival at Autumna to somebody claiming it.",
    )
    claims = CounterMetricFamily("leadbot_claims", "Claims, by how they were made.", labels=["via"])
    for via in VIA:
        claims.add_metric([via], figures.claims[via])
    yield claims
    yield CounterMetricFamily(
        "leadbot_escalations_sent",
        "Escalation steps that went out because nobody had claimed the lead.",
        value=figures.fired,
    )
