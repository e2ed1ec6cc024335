"""The run loop (`leadbot run`, `leadbot run --once`): polls each account on its interval and
keeps deliveries flowing in between. I/O runs on worker threads; every database write happens on
the loop's thread.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from types import FrameType

from . import alerts, digest, escalation
from .claims import ClaimEvent, Inbox, record
from .config import Config
from .dispatch import Dispatcher
from .poller import Poller, PollResult
from .render import Renderer
from .schedule import Calendar
from .settings import redact
from .store import Store

Watch = Callable[[list[tuple[str, str, str]], threading.Event], list[ClaimEvent]]

log = logging.getLogger(__name__)
ONCE_HORIZON = 10.0  # under --once, a Retry-After this short still belongs to this cycle
DEAD_LETTER_BATCH = 60.0  # seconds: failures are gathered this long into one notice to ops
PURGE_EVERY = 24 * 3600.0  # the run loop applies the retention period daily
PROGRESS_EVERY = 10.0  # seconds between progress lines while a backlog drains
WATCH_BATCH = 40  # Slack messages asked about per round (two calls each, within Slack's limits)
BACKLOG = 50  # deliveries waiting: from here on, progress is shown
# Seconds between looks for due escalations and digests: each look is a query, and a backlog
# turns the loop thousands of times a second.
CHORES = 0.2


class Runner:
    """The run loop: `leadbot run` and `leadbot run --once`."""

    def __init__(
        self,
        poller: Poller,
        dispatcher: Dispatcher,
        config: Config,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.time,
        inbox: Inbox | None = None,
        watch: Watch | None = None,
    ) -> None:
        self.poller, self.dispatcher, self.config = poller, dispatcher, config
        self.stop = stop or threading.Event()
        self.clock = clock
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="poll")
        self.closers: list[Callable[[], None]] = []
        self.inbox = inbox or Inbox()  # claims heard by the Socket Mode listener
        self.inbox.ring = dispatcher.ring
        self.watch = watch  # asks Slack for reactions and replies, when there is no listener
        self.watching: Future[list[ClaimEvent]] | None = None
        self.watch_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="watch")
        self.next_watch = 0.0
        self.heartbeat = 0.0  # when the loop last turned
        self.hangup = threading.Event()  # SIGHUP: re-read rules.toml and the templates
        self.reload: Callable[[], bool] | None = None
        self.poll_seconds: list[float] = []  # how long each poll took, for /metrics

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
        """Returns False when something needs attention: under --once, a failed poll or a
        delivery that failed for good during the run."""
        self.once = once
        self.dispatcher.once_horizon = ONCE_HORIZON if once else None
        now = self.clock()
        self.next_poll, self.next_purge = now, now
        self.next_chores, self.next_escalation = now, float("inf")
        self.next_dead_check = now + DEAD_LETTER_BATCH
        self.next_progress = now + PROGRESS_EVERY
        self.polling: Future[list[PollResult]] | None = None
        self.polled_ok: bool | None = None
        self.poll_started = now
        recovered, busy_since = False, None
        try:
            while not self.stop.is_set():
                try:
                    if not recovered:
                        self.dispatcher.recover()
                        recovered = True
                    if self.turn():
                        break
                    busy_since = None
                except sqlite3.OperationalError as exc:
                    if not transient(exc):
                        raise
                    if busy_since is None or self.clock() - busy_since > 60:
                        log.warning(
                            "the database is busy (%s): another program is writing to it; "
                            "leadbot keeps trying, and nothing is lost meanwhile",
                            exc,
                        )
                        busy_since = self.clock()
                    self.stop.wait(1.0)
        finally:
            self.dispatcher.close()
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.stop.set()  # a Slack watcher round in progress ends now, not at its last call
            self.watch_pool.shutdown(wait=False, cancel_futures=True)
            for close in self.closers:
                close()
        if not once:
            return True  # a loop stopped by a signal has done its job
        return self.polled_ok is not False and self.dispatcher.tally.dead == 0

    def adopt(self, config: Config, renderer: Renderer) -> None:
        """A reloaded config, for leads seen from now on (queued deliveries keep theirs)."""
        self.config = self.poller.config = self.dispatcher.config = config
        self.poller.calendar = Calendar(config.timezone, config.nation)
        self.dispatcher.renderer = self.dispatcher.outbox.renderer = renderer

    @property
    def store(self) -> Store:
        return self.poller.store

    def claims(self) -> None:
        """Record the claims heard since the last turn; ask Slack for more when it is time."""
        if self.watching is not None and self.watching.done():
            try:
                for event in self.watching.result():
                    self.inbox.put(event)
            except Exception as exc:  # the watcher's own trouble never stops the loop
                log.warning("could not ask Slack for claims: %s", redact(str(exc))[:200])
            self.watching = None
        now = self.clock()
        if self.watch is not None and self.watching is None and now >= self.next_watch:
            since = now - self.config.claims.lookback.total_seconds()
            messages = self.store.unclaimed_slack_messages(since, WATCH_BATCH)
            if messages:
                self.watching = self.watch_pool.submit(self.watch, messages, self.stop)
                self.watching.add_done_callback(self.dispatcher.ring)
            self.next_watch = now + self.config.claims.check_every.total_seconds()
        events = self.inbox.drain()
        for event in events:
            record(self.store, event, self.clock())
        if events:
            self.dispatcher.changed()

    def turn(self) -> bool:
        """One pass of the loop; True when a --once run has done its work."""
        now = self.heartbeat = self.clock()  # /healthz: the loop is alive
        if (
            self.polling is None
            and now >= self.next_poll
            and (not self.once or self.polled_ok is None)
        ):
            windows = self.poller.windows(datetime.fromtimestamp(now, UTC))
            self.polling = self.pool.submit(self.poller.fetch, windows)
            self.polling.add_done_callback(self.dispatcher.ring)
        if self.polling is not None and self.polling.done():
            results = self.polling.result()
            self.polling = None
            self.poll_seconds = [*self.poll_seconds, self.clock() - self.poll_started][-100:]
            stamp = datetime.fromtimestamp(self.clock(), UTC)
            self.next_poll = self.clock()  # polled again at once if recording fails
            for result in results:
                self.poller.record(result, stamp)
            self.next_poll = self.clock() + self.config.polling.interval.total_seconds()
            self.polled_ok = all(r.batch is not None for r in results)
            alerts.poll_health(self.poller.store, self.config, self.clock())
            self.dispatcher.changed()
        if self.hangup.is_set():
            self.hangup.clear()
            if self.reload is not None and self.reload():
                self.dispatcher.changed()
        self.claims()
        if self.clock() >= self.next_chores:
            if escalation.fire_due(self.store, self.config, self.poller.calendar, self.clock()):
                self.dispatcher.changed()
            if digest.fire_due(self.store, self.config, self.poller.calendar, self.clock()):
                self.dispatcher.changed()
            self.next_escalation = self.store.next_escalation_at() or float("inf")
            self.next_chores = self.clock() + CHORES
        if self.clock() >= self.next_purge:
            purge(self.poller.store, self.config, self.clock())
            self.next_purge = self.clock() + PURGE_EVERY
        self.dispatcher.start_due()  # writes what finished, then starts what is due
        if self.dispatcher.dead:  # just written dead: their leads go to the fallback
            dead = self.dispatcher.dead
            if alerts.rescue(self.poller.store, self.config, dead, self.clock()):
                self.dispatcher.changed()
            self.dispatcher.dead = []
        if self.dispatcher.idle() or self.clock() >= self.next_dead_check:
            # Batched: one notice for a burst of failures, not one per delivery.
            if alerts.dead_letters(self.poller.store, self.config, self.clock()):
                self.dispatcher.changed()
            self.next_dead_check = self.clock() + DEAD_LETTER_BATCH
        if self.once and self.polled_ok is not None and self.dispatcher.idle(ONCE_HORIZON):
            return True
        wake = min(
            self.dispatcher.next_wake(),
            self.next_poll if self.polling is None else float("inf"),  # it rings when back
            max(self.next_escalation, self.next_chores),
        )
        self.dispatcher.wait(min(max(0.0, wake - self.clock()), 1.0))
        if self.clock() >= self.next_progress:
            self.progress()
            self.next_progress = self.clock() + PROGRESS_EVERY
        return False


def transient(exc: sqlite3.OperationalError) -> bool:
    """`database is locked` / `busy`: another writer held on past the busy timeout."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text


@contextmanager
def signals(runner: Runner) -> Iterator[None]:
    """SIGTERM / SIGINT: stop starting new sends, finish and record the one in flight, exit 0.
    SIGHUP: reload rules.toml and the templates at the loop's next turn."""

    # Each handler sets its event before it logs: a signal that lands while this thread is
    # writing a log line makes the handler's own write fail (RuntimeError: reentrant call
    # inside stderr), and the stop or the reload must not be lost with the line.
    def stop(signum: int, frame: FrameType | None) -> None:
        runner.stop.set()
        with suppress(RuntimeError):
            log.info("stopping: finishing the sends in flight (signal %d)", signum)

    def hangup(signum: int, frame: FrameType | None) -> None:
        runner.hangup.set()
        with suppress(RuntimeError):
            log.info("reloading: SIGHUP received")

    handlers = {signal.SIGTERM: stop, signal.SIGINT: stop, signal.SIGHUP: hangup}
    previous = {s: signal.signal(s, h) for s, h in handlers.items()}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


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
