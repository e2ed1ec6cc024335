"""Poll -> remember -> route: each account's window is fetched, and what is new is routed and
stored with all its deliveries in one transaction, before anything is sent. The watermark moves
only after a successful poll; any failure is a failed poll, retried next cycle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from .autumna import AutumnaClient
from .config import Config
from .models import Escalation, Lead, NewLead, PlannedStep, Routed, Target
from .parse import Batch, PollError
from .rules import route
from .schedule import Calendar
from .settings import redact
from .store import Store

log = logging.getLogger(__name__)


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
        calendar: Calendar | None = None,
    ) -> None:
        self.client, self.api_keys, self.store, self.config = client, api_keys, store, config
        self.backfill = backfill
        self.calendar = calendar or Calendar(config.timezone, config.nation)

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
            except Exception as exc:  # whatever it was, the loop lives: a failed poll
                error = f"unexpected {type(exc).__name__} while polling: {str(exc)[:200]}"
                results.append(PollResult(window, error=redact(error)))
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
            new[lead.key] = (
                NewLead(lead, announce=False) if quiet else self.routed(lead, now.timestamp())
            )
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

    def routed(self, lead: Lead, now: float) -> NewLead:
        routing = route(lead, self.config)
        notes = tuple(routing.notes) + tuple(
            f"Autumna sent an odd value: {p}" for p in lead.problems
        )
        for note in notes:
            log.warning("lead %s: %s", lead.key, note)
        targets = tuple((t, tuple(routing.reached_by[t.key])) for t in routing.targets)
        plan = Planner(self.config, self.calendar, lead.service.id)
        due = {t.key: plan.when(t, t.key in routing.anytime, now) for t in routing.targets}
        start = min(due.values(), default=now)  # escalation counts from the first message
        steps = tuple(
            PlannedStep(
                number,
                escalation.after,
                plan.escalates_at(escalation, start),
                tuple((t, tuple(escalation.reached_by[t.key])) for t in escalation.targets),
                escalation.anytime,
            )
            for number, escalation in enumerate(
                (routing.escalations[a] for a in sorted(routing.escalations)), start=1
            )
            if escalation.targets
        )
        return NewLead(
            lead,
            True,
            routing.urgent,
            routing.unrouted,
            notes,
            targets,
            {key: at for key, at in due.items() if at > now},
            steps,
        )


class Planner:
    """When a lead's messages may go: at once, or at their destination's next opening (a
    deferral, never a drop); and when each escalation step fires, counting open time only."""

    def __init__(self, config: Config, calendar: Calendar, service_id: int | None) -> None:
        self.config, self.calendar = config, calendar
        home = config.homes.get(service_id) if service_id is not None else None
        self.home_nation = str(home.attributes.get("nation", config.nation)) if home else None

    def nation(self, target: Target) -> str:
        home_target = target.label.startswith("home.") and self.home_nation
        return str(self.home_nation if home_target else self.config.nation).lower()

    def when(self, target: Target, anytime: bool, now: float) -> float:
        hours = self.config.hours.get(target.hours)
        if anytime or hours is None:
            return now
        return self.calendar.next_open(hours, now, self.nation(target))

    def escalates_at(self, escalation: Escalation, start: float) -> float:
        if escalation.anytime:
            return start + escalation.after
        return min(
            self.calendar.add_open_time(
                self.config.hours.get(t.hours), start, escalation.after, self.nation(t)
            )
            for t in escalation.targets
        )
