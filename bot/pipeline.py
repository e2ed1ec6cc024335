"""Wires the stages: poll -> remember -> route -> (render -> deliver, in dispatch.py).

The run loop lives here. It polls each account on its interval and keeps deliveries flowing in
between; I/O runs on worker threads and every database write happens on this thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from . import alerts
from .autumna import AutumnaClient, Batch, PollError
from .channels.email import EmailChannel
from .channels.sink import FolderSink
from .channels.slack import SlackChannel
from .channels.teams import TeamsChannel
from .config import Config
from .dispatch import Dispatcher, Sender
from .limits import Lanes, RetryPolicy
from .models import Channel, Lead
from .render import Renderer
from .rules import route
from .settings import Settings, redact
from .store import NewLead, Routed, Store

log = logging.getLogger(__name__)
ONCE_HORIZON = 10.0  # under --once, a Retry-After this short still belongs to this cycle (a
# backoff retry, 15 s or more with the default [retries], is left for the next run)
DEAD_LETTER_BATCH = 60.0  # seconds: failures are gathered this long into one notice to ops
PURGE_EVERY = 24 * 3600.0  # the run loop applies the retention period daily
PROGRESS_EVERY = 10.0  # seconds between progress lines while a backlog drains
BACKLOG = 50  # deliveries waiting: from here on, progress is shown


@dataclass(frozen=True)
class Window:
    account: str
    key: str
    since: datetime
    until: datetime
    first: bool  # no successful poll of this account yet


@dataclass
class PollResult:
    window: Window
    batch: Batch | None = None
    error: str = ""


class Poller:
    """Decides each account's window, fetches it, and records what came back."""

    def __init__(
        self,
        client: AutumnaClient,
        api_keys: dict[str, str],
        store: Store,
        config: Config,
        backfill: bool = False,
    ) -> None:
        self.client, self.api_keys, self.store, self.config = client, api_keys, store, config
        self.backfill = backfill

    def windows(self, now: datetime) -> list[Window]:
        found = []
        for account in self.config.accounts:
            state = self.store.poll_state(account.name)
            mark = state["watermark"] if state else None
            first = mark is None
            since = (
                now - self.config.polling.history
                if mark is None
                else datetime.fromtimestamp(mark, UTC) - self.config.polling.overlap
            )
            found.append(
                Window(account.name, self.api_keys.get(account.name, ""), since, now, first)
            )
        return found

    def fetch(self, windows: list[Window]) -> list[PollResult]:
        """Runs on a worker thread: network only, no database."""
        results = []
        for window in windows:
            try:
                batch = self.client.fetch(window.account, window.key, window.since, window.until)
                results.append(PollResult(window, batch))
            except PollError as exc:
                results.append(PollResult(window, error=str(exc)))
        return results

    def record(self, result: PollResult, now: datetime) -> int:
        """Store new leads with their deliveries; returns how many will be announced."""
        window = result.window
        if result.batch is None:
            self.store.poll_failed(window.account, redact(result.error), now.timestamp())
            log.error(
                "poll of account %r failed: %s; will retry next cycle (the watermark "
                "stays put, so nothing is missed)",
                window.account,
                result.error,
            )
            return 0
        batch = result.batch
        known = self.store.known(
            [lead.key for lead in batch.leads] + [u.key for u in batch.unreadable]
        )
        cutoff = now - self.config.polling.lookback
        new: dict[str, NewLead] = {}
        for lead in batch.leads:
            if lead.key in known or lead.key in new:
                continue
            quiet = (
                window.first and not self.backfill and lead.date is not None and lead.date < cutoff
            )
            new[lead.key] = NewLead(lead, announce=False) if quiet else self.routed(lead)
        fallback: Routed = tuple(
            (t, ("unreadable lead",))
            for t in self.config.destinations[self.config.fallback].targets
        )
        unreadable = [(u, fallback) for u in batch.unreadable if u.key not in known]
        for record, _ in unreadable:
            log.error(
                "account %r sent a lead that could not be read (%s); kept as %s and reported to %s",
                record.account,
                record.problem,
                record.key,
                self.config.fallback,
            )
        self.store.add_leads(list(new.values()), unreadable, now.timestamp())
        self.store.poll_succeeded(window.account, window.until.timestamp(), now.timestamp())
        announced = sum(item.announce for item in new.values())
        silent = len(new) - announced
        log.info(
            "polled %r: %d leads in the window, %d new%s (%d bytes)",
            window.account,
            len(batch.leads),
            announced,
            f", {silent} older than the lookback recorded without notifying" if silent else "",
            batch.nbytes,
        )
        return announced + len(unreadable)

    def routed(self, lead: Lead) -> NewLead:
        routing = route(lead, self.config)
        notes = tuple(routing.notes) + tuple(
            f"Autumna sent an odd value: {p}" for p in lead.problems
        )
        for note in notes:
            log.warning("lead %s: %s", lead.key, note)
        targets = tuple((t, tuple(routing.reached_by[t.key])) for t in routing.targets)
        return NewLead(lead, True, routing.urgent, routing.unrouted, notes, targets)


class Runner:
    """The run loop: `leadbot run` and `leadbot run --once`."""

    def __init__(
        self,
        poller: Poller,
        dispatcher: Dispatcher,
        config: Config,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.poller, self.dispatcher, self.config = poller, dispatcher, config
        self.stop = stop or threading.Event()
        self.clock = clock
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="poll")
        self.closers: list[Callable[[], None]] = []

    def progress(self) -> None:
        """A backfill or a backlog of many leads shows how it is getting on."""
        waiting = self.poller.store.open_count()
        if waiting >= BACKLOG:
            tally = self.dispatcher.tally
            log.info(
                "delivering: %d sent so far, %d waiting%s",
                tally.sent,
                waiting,
                f", {tally.failed} failed attempts to retry" if tally.failed else "",
            )

    def run(self, once: bool = False) -> bool:
        """Returns False when something needs attention (a poll failed under --once)."""
        self.dispatcher.recover()
        next_poll = self.clock()
        polling: Future[list[PollResult]] | None = None
        polled_ok: bool | None = None
        next_dead_check = self.clock() + DEAD_LETTER_BATCH
        next_purge = self.clock()
        next_progress = self.clock() + PROGRESS_EVERY
        interval = self.config.polling.interval.total_seconds()
        try:
            while not self.stop.is_set():
                now = self.clock()
                if polling is None and now >= next_poll and (not once or polled_ok is None):
                    polling = self.pool.submit(
                        self.poller.fetch, self.poller.windows(datetime.fromtimestamp(now, UTC))
                    )
                if polling is not None and polling.done():
                    results = polling.result()
                    polling = None
                    next_poll = self.clock() + interval
                    stamp = datetime.fromtimestamp(self.clock(), UTC)
                    for result in results:
                        self.poller.record(result, stamp)
                    polled_ok = all(r.batch is not None for r in results)
                    alerts.poll_health(self.poller.store, self.config, self.clock())
                    self.dispatcher.changed()
                if self.clock() >= next_purge:
                    purge(self.poller.store, self.config, self.clock())
                    next_purge = self.clock() + PURGE_EVERY
                self.dispatcher.start_due()
                if once and polled_ok is not None and self.dispatcher.idle(ONCE_HORIZON):
                    break
                wake = min(
                    self.dispatcher.next_wake(), next_poll if polling is None else now + 0.05
                )
                self.dispatcher.wait(min(max(0.0, wake - self.clock()), 1.0))
                if self.dispatcher.dead:
                    dead, self.dispatcher.dead = self.dispatcher.dead, []
                    if alerts.rescue(self.poller.store, self.config, dead, self.clock()):
                        self.dispatcher.changed()
                if self.clock() >= next_progress:
                    self.progress()
                    next_progress = self.clock() + PROGRESS_EVERY
                if self.dispatcher.idle() or self.clock() >= next_dead_check:
                    # Batched: one notice for a burst of failures, not one per delivery.
                    if alerts.dead_letters(self.poller.store, self.config, self.clock()):
                        self.dispatcher.changed()
                    next_dead_check = self.clock() + DEAD_LETTER_BATCH
        finally:
            self.dispatcher.close()
            self.pool.shutdown(wait=True, cancel_futures=True)
            for close in self.closers:
                close()
        # --once reports a failed poll; a loop stopped by a signal has done its job.
        return polled_ok is not False or not once


def purge(store: Store, config: Config, now: float) -> int:
    """Retention: erase personal details older than `privacy.retention`."""
    erased = store.purge(now - config.privacy.retention.total_seconds(), now)
    if erased:
        log.info(
            "retention: erased the personal details of %d leads older than %s",
            erased,
            config.privacy.retention,
        )
    return erased


def build(
    config: Config,
    settings: Settings,
    store: Store,
    backfill: bool = False,
    sink: Path | None = None,
    stop: threading.Event | None = None,
) -> Runner:
    """Assemble the stages for a run: real channels, or the demo's folder sink."""
    http = httpx.Client(
        timeout=httpx.Timeout(30.0, connect=10.0), transport=httpx.HTTPTransport(retries=1)
    )
    senders: dict[Channel, Sender]
    if sink is not None:
        folder = FolderSink(sink)
        senders = {channel: folder for channel in Channel}
    else:
        senders = {
            Channel.SLACK: SlackChannel(settings.slack_token, settings.slack_url or None),
            Channel.EMAIL: EmailChannel(
                settings.smtp_host,
                settings.smtp_port,
                settings.smtp_sender,
                config.email.tls,
                settings.smtp_username,
                settings.smtp_password,
                config.email.ca_file,
            ),
            Channel.TEAMS: TeamsChannel(settings.teams_webhooks, http),
        }
    # The demo's folder has no rate limit to respect.
    lanes = Lanes({c: (1e6, 1e6) for c in Channel}) if sink is not None else None
    retries = config.retries
    policy = RetryPolicy(
        retries.first.total_seconds(), retries.cap.total_seconds(), retries.give_up.total_seconds()
    )
    dispatcher = Dispatcher(store, Renderer(config), senders, config, policy, lanes)
    poller = Poller(
        AutumnaClient(settings.autumna_url, http), settings.api_keys, store, config, backfill
    )
    runner = Runner(poller, dispatcher, config, stop)
    runner.closers.append(http.close)
    return runner
