"""Claims: someone says they will call the family. One claim per lead, first wins.

Claims come in through three front doors — Slack (a button click or event over Socket Mode,
or a reaction or thread reply found by asking Slack), the `leadbot claim` command, and later the
web console — and each becomes one store call (`Store.claim`), made on the run loop's thread.
What follows (the Slack messages edited, escalation stopped) is queued work in the outbox.

Threads that hear about claims (the Socket Mode listener, the Slack watcher) never touch the
database: they put `ClaimEvent`s in the `Inbox`, which the run loop drains.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the store is only passed in; listener threads never import it
    from .store import Store

log = logging.getLogger(__name__)

BUTTON_ACTION = "leadbot_claim"  # the action_id of the "I'll call them" button; value: lead key
VIA = ("slack-button", "slack-reaction", "slack-reply", "cli", "web")


@dataclass(frozen=True, slots=True)
class ClaimEvent:
    """Somebody claimed a lead, or tried to."""

    via: str  # one of VIA
    by_name: str  # the person as they are known: a Slack name, or as typed
    by_id: str = ""  # their Slack user id, when the claim came from Slack
    lead: str = ""  # the lead key, when known (a button's value)
    channel: str = ""  # where in Slack: a channel id and a message ts, to find the lead
    ts: str = ""
    at: float = 0.0  # when (Unix seconds)


class Inbox:
    """A thread-safe queue of ClaimEvents: listener and watcher threads put, the loop drains."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[ClaimEvent] = queue.SimpleQueue()
        self.ring: Callable[[], None] = lambda: None  # wakes the loop (the runner sets it)

    def put(self, event: ClaimEvent) -> None:
        self._queue.put(event)
        self.ring()

    def drain(self) -> list[ClaimEvent]:
        found = []
        while True:
            try:
                found.append(self._queue.get_nowait())
            except queue.Empty:
                return found


def minutes(seconds: float) -> str:
    """How long, as people say it: "12 min", "1 h 5 min", "2 days 3 h"."""
    total = max(0, round(seconds / 60))
    days, rest = divmod(total, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} day{'s' * (days != 1)}" + (f" {hours} h" if hours else "")
    if hours:
        return f"{hours} h" + (f" {mins} min" if mins else "")
    return f"{mins} min"


def delay(seconds: float) -> str:
    """A configured delay, exactly (`after = "2s"` is "2 s", not "0 min"): "15 min", "1 h",
    "1 min 30 s"."""
    whole = int(seconds)
    if whole % 60 == 0:
        return minutes(whole)
    return (minutes(whole - whole % 60) + " " if whole >= 60 else "") + f"{whole % 60} s"


def record(store: Store, event: ClaimEvent, now: float) -> bool:
    """One claim, on the run loop's thread. True when it claimed the lead (the first)."""
    lead = event.lead or store.lead_of_message(event.channel, event.ts)
    if not lead:
        return False  # a reaction or reply on a message that is not a lead's
    claim, won = store.claim_lead(lead, event.by_name, event.by_id, event.via, event.at or now)
    if claim is None:
        log.warning("a claim for %s (%s) names no lead leadbot knows; ignored", lead, event.via)
        return False
    if won:
        log.info(
            "claimed  %s by %s (%s), %s after it arrived",
            lead,
            event.by_name,
            event.via,
            minutes(claim["seconds_to_claim"]),
        )
    elif event.via == "slack-button" and event.by_id and claim["by_id"] != event.by_id:
        store.tell(lead, event.by_id, event.channel, now)  # only the clicker hears who has it
    return won
