"""Escalation: what nobody claims goes further. Steps are planned with the lead (poller.py) and
kept in the database; this fires the ones that are due, once each, in one transaction with
their messages, so a restart (or `kill -9`) neither skips nor repeats one.
"""

from __future__ import annotations

import logging

from .config import Config
from .poller import Planner
from .schedule import Calendar
from .store import Store
from .store.claims import step_targets

log = logging.getLogger(__name__)


def fire_due(store: Store, config: Config, calendar: Calendar, now: float) -> int:
    """Fire every step that is due and whose lead is still unclaimed; returns how many."""
    fired = 0
    for step in store.due_escalations(now):
        row = store.lead_row(step["lead"])
        plan = Planner(config, calendar, row["service_id"] if row else None)
        due = {}
        for target, _ in step_targets(step):
            at = plan.when(target, bool(step["anytime"]), now)
            if at > now:
                due[target.key] = at
        if store.fire(step, due, now):
            fired += 1
            log.info(
                "escalated %s (step %d): nobody has claimed it; telling %s",
                step["lead"],
                step["step"],
                ", ".join(sorted({t.label for t, _ in step_targets(step)})),
            )
    return fired
