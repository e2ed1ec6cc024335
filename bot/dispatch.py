"""Deliver: drains due deliveries. Each is marked `sending`, rendered, sent once on a worker
thread, and its outcome recorded here, on the calling thread (the only one that writes SQLite).

Every destination is a lane (limits.py): one message at a time at that destination's pace, so a
throttled or slow channel never holds up the others, and nothing sleeps in a shared loop.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from .config import Config
from .failures import DeliveryError
from .limits import Lanes, RetryPolicy, lane_of
from .models import Channel, Delivery, Message, Status
from .outbox import NothingToSend, Outbox, lead_of
from .render import Renderer
from .store import Store

log = logging.getLogger(__name__)
OPEN = (Status.PENDING, Status.RETRYING)
SLACK_POST = re.compile(r"([CDG][A-Z0-9]+)/(\d+\.\d+)$")  # a posted message's channel/ts
RELOAD = 1.0  # seconds between looks for what fell due (retries, deferrals) while work remains
REREAD = 30.0  # seconds between whole reads of the due queue while a backlog lasts
ONCE_RETRIES = 3  # under --once, a delivery is retried at most this often (short Retry-Afters)


class Sender(Protocol):
    def send(self, message: Message) -> str: ...


@dataclass
class Tally:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    dead_refs: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended, decided once; written to the database until a write succeeds."""

    delivery: Delivery
    summary: str
    remote_id: str = ""
    error: DeliveryError | None = None
    retry_at: float | None = None  # with an error: when to try again; None: dead for good
    at: float = 0.0


class Dispatcher:
    def __init__(
        self,
        store: Store,
        renderer: Renderer,
        senders: dict[Channel, Sender],
        config: Config,
        policy: RetryPolicy | None = None,
        lanes: Lanes | None = None,
        workers: int = 8,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.renderer, self.senders, self.config = store, renderer, senders, config
        self.policy = policy or RetryPolicy()
        self.lanes = lanes or Lanes()
        self.clock = clock
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="send")
        self.in_flight: dict[Future[str], tuple[Delivery, Message]] = {}
        # Rung when a send finishes and when the loop has news (a poll came back, a claim was
        # heard): the loop waits on it instead of sleeping, so nothing waits for a tick.
        self.bell = threading.Event()
        self.queues: dict[str, deque[Delivery]] = {}
        self.dead: list[str] = []  # subjects with a delivery that just failed for good
        self.outbox = Outbox(store, renderer, clock)
        self.loaded_at = self.read_at = float("-inf")
        self.tally = Tally()
        self.unwritten: list[Outcome] = []  # outcomes whose write met a busy database
        # `run --once`: a failure is retried within the run only for a short Retry-After
        # (at most ONCE_RETRIES times); every other retry is held for the next run.
        self.once_horizon: float | None = None
        self.held: set[int] = set()
        self._retried: Counter[int] = Counter()

    def recover(self) -> int:
        """Deliveries left `sending` by a crash are due again; Slack ones are looked up first."""
        doubtful = self.store.in_doubt()
        for delivery in doubtful:
            self.store.mark_failed(
                delivery.id, "interrupted: outcome unknown", self.clock(), in_doubt=True
            )
        if doubtful:
            log.warning(
                "%d deliveries were interrupted by a stop; checking and resending them",
                len(doubtful),
            )
        return len(doubtful)

    # -- the loop's two halves: start what is due, then record what finished

    def changed(self) -> None:
        """New deliveries were written (a poll, a notice, a resend): read the queue again."""
        self.loaded_at = self.read_at = float("-inf")

    def start_due(self) -> None:
        """Start the next delivery of every lane that is free and within its rate."""
        now = self.clock()
        self._load(now)
        ready = [
            queue
            for queue in self.queues.values()
            if queue and not self._waiting(self.lanes.get(queue[0].target), now)
        ]
        if not ready:
            self.flush()
            return
        starting: list[tuple[Delivery, Message]] = []
        try:
            # One commit for the finished attempts' outcomes and every claim, before any
            # attempt begins.
            with self.store.batch():
                for outcome in self.unwritten:
                    self._write(outcome)
                for queue in ready:
                    while queue:
                        delivery = queue.popleft()
                        # Claimed in the database first: a row changed since it was read is
                        # skipped.
                        if self.store.claim(delivery.id, now):
                            message = self._render(delivery)
                            if message is not None:
                                starting.append((delivery, message))
                            break
        except Exception:
            self.changed()  # the claims were rolled back: read the queue afresh next time
            raise  # and the outcomes stay unwritten: the next try writes them
        self._committed()
        for delivery, message in starting:
            lane = self.lanes.get(delivery.target)
            lane.busy = True
            lane.take(now)
            future = self.pool.submit(self._attempt, message, delivery.in_doubt)
            self.in_flight[future] = (delivery, message)
            future.add_done_callback(self.ring)

    @staticmethod
    def _waiting(lane: Any, now: float) -> bool:
        return bool(lane.busy or lane.ready_at(now) > now)

    def _load(self, now: float) -> None:
        """Read what is due into one queue per lane. The whole queue is read when something
        changed (a poll, a claim, a reload) and every REREAD seconds; in between, once a second,
        only what fell due since the last look (retries, deferred messages), so a backlog of
        thousands costs one small query a second, not a read of every row."""
        backlog = any(self.queues.values())
        if backlog and now - self.read_at < REREAD:
            if now - self.loaded_at >= RELOAD:
                self._add_due(now)
            return
        self.queues = {}
        for delivery in self.store.due(now, exclude=self.held):
            self.queues.setdefault(lane_of(delivery.target), deque()).append(delivery)
        self.loaded_at = self.read_at = now

    def _add_due(self, now: float) -> None:
        queued = {d.id for queue in self.queues.values() for d in queue}
        for delivery in self.store.due(now, exclude=self.held, since=self.loaded_at):
            if delivery.id in queued:
                continue
            queue = self.queues.setdefault(lane_of(delivery.target), deque())
            if delivery.urgent:  # ahead of the lane's non-urgent messages, as a whole read puts it
                at = next((i for i, d in enumerate(queue) if not d.urgent), len(queue))
                queue.insert(at, delivery)
            else:
                queue.append(delivery)
        self.loaded_at = now

    def wait(self, timeout: float) -> None:
        """Wait up to `timeout` for a send to finish or for the bell; what finished is written
        by the next `start_due` (with its claims, in one commit) or `flush`."""
        if not self.in_flight:
            self._rest()
            if not any(self.queues.values()):
                self.outbox.forget()
        if timeout > 0:
            self.bell.wait(timeout)
        self.bell.clear()  # a ring after this is kept for the next wait: none is lost
        for future in [f for f in self.in_flight if f.done()]:
            delivery, message = self.in_flight.pop(future)
            self.unwritten.append(self._outcome(delivery, message, future))

    def ring(self, *_: object) -> None:
        self.bell.set()

    def flush(self) -> None:
        """Write the finished attempts' outcomes in one commit. If the database is busy they
        stay here, and the next call writes them: an outcome is never lost or written twice."""
        if not self.unwritten:
            return
        with self.store.batch():
            for outcome in self.unwritten:
                self._write(outcome)
        self._committed()

    def _committed(self) -> None:
        """The unwritten outcomes are committed now: count, log and note each."""
        written, self.unwritten = self.unwritten, []
        for outcome in written:
            self._announce(outcome)

    def next_wake(self) -> float:
        """When something may next be sent: a free lane's next slot, or the next retry."""
        now = self.clock()
        soonest = now + 3600
        for queue in self.queues.values():
            if queue:
                lane = self.lanes.get(queue[0].target)
                if not lane.busy:
                    soonest = min(soonest, lane.ready_at(now))
        if soonest <= now + RELOAD:
            return soonest  # work is queued: the next reload will see any retry falling due
        due_at = self.store.next_due_at(exclude=self.held)
        if due_at is not None and due_at > now:
            soonest = min(soonest, due_at)
        elif due_at is not None and not any(self.queues.values()):
            soonest = now  # due but not loaded yet
        return soonest

    def idle(self, horizon: float = 0.0) -> bool:
        """Nothing in flight and nothing due within `horizon` seconds."""
        if self.in_flight or self.unwritten or any(self.queues.values()):
            return False
        due_at = self.store.next_due_at(exclude=self.held)
        return due_at is None or due_at > self.clock() + horizon

    def close(self) -> None:
        """Finish the sends in flight and record them; a busy database is waited for a while
        (what stays unrecorded is `sending`, checked and resent on the next start)."""
        deadline = self.clock() + 30.0
        while self.in_flight or self.unwritten:
            try:
                self.wait(5.0)
                self.flush()
            except sqlite3.OperationalError as exc:
                if self.clock() > deadline:
                    log.error("could not record %d outcomes: %s", len(self.unwritten), exc)
                    break
                time.sleep(0.5)
        self.pool.shutdown(wait=True)
        self._rest()

    def _rest(self) -> None:
        """Nothing in flight: let the mail server go until the next email is due (one SMTP
        connection serves each burst of messages)."""
        closer = getattr(self.senders.get(Channel.EMAIL), "close", None)
        if closer:
            closer()

    # -- one delivery

    def _attempt(self, message: Message, in_doubt: bool) -> str:
        """One attempt. If the last one may have arrived (a crash, a timeout), look first where
        the channel lets us (Slack history), so it is not posted twice."""
        sender = self.senders[message.target.channel]
        check = getattr(sender, "already_sent", None)
        if in_doubt and check is not None:
            try:
                found = check(message)
                if found:
                    return f"found in the channel: the earlier attempt had arrived {found}"
            except DeliveryError as exc:
                raise DeliveryError(
                    exc.reason, exc.transient, exc.retry_after, unknown=True
                ) from None
        return sender.send(message)

    def _render(self, delivery: Delivery) -> Message | None:
        try:
            return self.render(delivery)
        except NothingToSend as done:
            outcome = Outcome(delivery, delivery.subject, remote_id=str(done), at=self.clock())
            self._write(outcome)
            self._announce(outcome)
            return None
        except DeliveryError as exc:  # not yet: e.g. an edit of a message still being sent
            self._fail(delivery, exc)
            return None
        except Exception as exc:  # a broken group template must not stop the queue
            self._fail(
                delivery,
                DeliveryError(f"could not render: {type(exc).__name__}: {str(exc)[:150]}", False),
            )
            return None

    def render(self, delivery: Delivery) -> Message:
        return self.outbox.render(delivery)

    def _outcome(self, delivery: Delivery, message: Message, future: Future[str]) -> Outcome:
        now = self.clock()
        lane = self.lanes.get(delivery.target)
        lane.finished(now)
        try:
            remote_id = future.result()
        except DeliveryError as exc:
            if exc.retry_after is not None:
                lane.throttled(now, exc.retry_after)
            return self._failure(delivery, message.summary, exc, now)
        except Exception as exc:  # a bug in a channel is a failure to retry, not a crash
            log.exception("unexpected error sending %s", message.summary)
            error = DeliveryError(f"unexpected {type(exc).__name__}", True)
            return self._failure(delivery, message.summary, error, now)
        return Outcome(delivery, message.summary, remote_id=remote_id, at=now)

    def _failure(
        self, delivery: Delivery, summary: str, error: DeliveryError, now: float
    ) -> Outcome:
        first = delivery.first_attempt_at or now
        retry_at = (
            self.policy.next_attempt(delivery.attempts + 1, first, now, error.retry_after)
            if error.transient
            else None
        )
        return Outcome(delivery, summary, error=error, retry_at=retry_at, at=now)

    def _write(self, outcome: Outcome) -> None:
        delivery, error = outcome.delivery, outcome.error
        if error is None:
            self.store.mark_sent(delivery.id, outcome.at, outcome.remote_id)
            posted = SLACK_POST.search(outcome.remote_id)
            lead = lead_of(delivery.subject)
            if posted and lead and delivery.target.channel is Channel.SLACK:
                self.store.remember_slack_message(posted[1], posted[2], delivery.id, lead)
        else:
            self.store.mark_failed(delivery.id, error.reason, outcome.retry_at, error.unknown)

    def _announce(self, outcome: Outcome) -> None:
        """After the outcome is committed: count it, log it, and note what needs ops."""
        delivery, error = outcome.delivery, outcome.error
        if error is None:
            self.tally.sent += 1
            log.info("sent     %s", outcome.summary, extra=_fields(delivery, Status.SENT))
            return
        where = f"{delivery.subject} -> {delivery.target.label} ({delivery.target.channel})"
        if outcome.retry_at is None:
            self.dead.append(delivery.subject)
            self.tally.dead += 1
            self.tally.dead_refs.append(f"{where}: {error.reason}")
            log.error(
                "gave up  %s: %s", where, error.reason, extra=_fields(delivery, Status.DEAD, error)
            )
            return
        self.tally.failed += 1
        wait = outcome.retry_at - outcome.at
        fields = _fields(delivery, Status.RETRYING, error)
        if self.once_horizon is not None and not self._retry_in_this_run(delivery, error):
            self.held.add(delivery.id)
            log.warning("failed   %s: %s; left for the next run", where, error.reason, extra=fields)
        else:
            log.warning(
                "failed   %s: %s; next try in %.0fs",
                where,
                error.reason,
                wait,
                extra=fields | {"retry_in": round(wait)},
            )

    def _retry_in_this_run(self, delivery: Delivery, error: DeliveryError) -> bool:
        short = error.retry_after is not None and error.retry_after <= (self.once_horizon or 0)
        if not short or self._retried[delivery.id] >= ONCE_RETRIES:
            return False
        self._retried[delivery.id] += 1
        return True

    def _fail(self, delivery: Delivery, error: DeliveryError) -> None:
        outcome = self._failure(delivery, f"{delivery.subject}", error, self.clock())
        self._write(outcome)
        self._announce(outcome)


def _fields(
    delivery: Delivery, outcome: Status, error: DeliveryError | None = None
) -> dict[str, Any]:
    """A delivery's line in JSON logs (logformat.py): which lead, where, and how it went."""
    target = delivery.target
    fields: dict[str, Any] = {
        "event": "delivery",
        "lead": delivery.subject,
        "destination": target.label,
        "channel": str(target.channel),
        "address": target.address,
        "outcome": str(outcome),
    }
    if error is not None:
        fields["error"] = error.reason
    return fields
