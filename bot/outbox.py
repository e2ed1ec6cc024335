"""What each queued delivery says. A delivery's subject names what it carries:

    4:2000               a lead's message (raw:<digest>: a record that could not be read)
    notice:12            one of leadbot's own notices to ops
    esc:4:2000:1         escalation step 1 of a lead nobody has claimed
    edit:345             an edit of Slack message (delivery 345): the lead is claimed
    ephemeral:4:2000:U1  a note to one person in Slack: somebody else has claimed it
    digest:7             digest 7 ([[digests]]) of every home it covers
    digest:7:100000      the same digest's edition for one home (a home.<attribute> notify)

Every message is rendered when it goes, so it shows the lead's claim as it is then.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .digest_view import digest_view
from .failures import DeliveryError
from .models import Channel, Claim, Context, Delivery, Facts, Lead, Message, Status, Target
from .parse import parse_lead
from .render import Renderer
from .store import Store

LEADS_KEPT = 8192  # parsed leads kept for their other deliveries while a backlog lasts


class NothingToSend(Exception):
    """The delivery has nothing left to do (an edit of a message that never went out)."""


class Outbox:
    def __init__(self, store: Store, renderer: Renderer, clock: Callable[[], float]) -> None:
        self.store, self.renderer, self.clock = store, renderer, clock
        self._leads: OrderedDict[str, tuple[Lead, Facts] | str] = OrderedDict()

    def forget(self) -> None:
        """The queue is empty: let go of the leads and renders kept for other deliveries."""
        self._leads.clear()
        self.renderer.forget()

    def render(self, delivery: Delivery) -> Message:
        subject, target = delivery.subject, delivery.target
        ref = f"{subject}/{target.key}"
        kind, _, rest = subject.partition(":")
        if kind == "notice":
            notice = self.store.notice(int(rest))
            if notice is None:
                raise LookupError(f"notice {subject} is missing")
            return self.renderer.render_notice(notice["title"], notice["text"], target, ref)
        if kind == "esc":
            key, _, step = rest.rpartition(":")
            lead, facts = self.lead(key)
            return self.renderer.render(
                lead, target, facts, ref, self.escalation(key, int(step), facts)
            )
        if kind == "edit":
            return self.edit(int(rest), ref)
        if kind == "digest":
            return self.digest(rest, target, ref)
        if kind == "ephemeral":
            key, _, user = rest.rpartition(":")
            return self.ephemeral(key, user, target, ref)
        found = self.lead_or_notice(subject)
        if isinstance(found, str):
            return self.renderer.render_notice(
                "Autumna sent a lead leadbot could not read", found, target, ref
            )
        lead, facts = found
        return self.renderer.render(lead, target, facts, ref, Context(claim=self.claim(subject)))

    def digest(self, rest: str, target: Target, ref: str) -> Message:
        digest_id, _, service = rest.partition(":")
        row = self.store.digest_row(int(digest_id))
        if row is None:
            raise LookupError(f"digest {digest_id} is missing")
        view = digest_view(row, int(service) if service else None, self.renderer.config)
        return self.renderer.render_digest(view, target, ref)

    def escalation(self, key: str, step: int, facts: Facts) -> Context:
        claim = self.claim(key)
        if claim is not None:  # an escalation edited once claimed: who has it, not "nobody"
            return Context(claim=claim)
        row = self.store.lead_row(key)
        arrived = row["seen_at"] if row else self.clock()
        if row and row["lead_date"]:
            arrived = min(arrived, datetime.fromisoformat(row["lead_date"]).timestamp())
        told = sorted(
            {
                d.target.label if d.target.channel is Channel.TEAMS else d.target.address
                for d in self.store.deliveries_of([key])
            }
        )
        return Context(
            escalation_step=step,
            waited=self.clock() - arrived,
            told=tuple(told),
        )

    def edit(self, delivery_id: int, ref: str) -> Message:
        """The Slack message as it is now: claimed (chat.update)."""
        found = self.store.deliveries("id = ?", [delivery_id], limit=1)
        if not found:
            raise NothingToSend("the message to edit is gone")
        original = found[0]
        if original.status is Status.SENDING or (
            original.status is Status.RETRYING and original.in_doubt
        ):
            raise DeliveryError("the message is still being sent; the edit waits", True)
        posted = self.store.slack_message(delivery_id)
        if original.status is not Status.SENT or posted is None:
            raise NothingToSend("the message never went out: it shows the claim when it does")
        channel, ts = posted
        message = self.render(original)
        target = Target(Channel.SLACK, channel, original.target.label, original.target.privacy)
        payload = {**message.payload, "ts": ts}
        return Message(target, ref, f"edit: {message.summary}", payload)

    def ephemeral(self, key: str, user: str, target: Target, ref: str) -> Message:
        lead, facts = self.lead(key)
        _, parts = self.renderer.view(lead, target, facts, Context(claim=self.claim(key)))
        payload: dict[str, Any] = {"user": user, "text": parts["ephemeral"]}
        return Message(target, ref, f"note to {user}: {key} is claimed already", payload)

    def claim(self, key: str) -> Claim | None:
        row = self.store.claim_of(key)
        if row is None:
            return None
        return Claim(
            row["by_name"], row["by_id"], row["via"], row["claimed_at"], row["seconds_to_claim"]
        )

    def lead(self, key: str) -> tuple[Lead, Facts]:
        found = self.lead_or_notice(key)
        if isinstance(found, str):
            raise LookupError(f"{key} is not a lead that could be read")
        return found

    def lead_or_notice(self, subject: str) -> tuple[Lead, Facts] | str:
        """A stored lead and what routing decided, read and parsed once for all its
        deliveries; for a record that could not be read, the text of the notice about it."""
        if subject in self._leads:
            return self._leads[subject]
        row = self.store.lead_row(subject)
        if row is None or row["raw"] is None:
            raise LookupError(f"lead {subject} is missing or its details were erased")
        found: tuple[Lead, Facts] | str
        if row["unreadable"]:
            found = (
                f"Account {row['account']!r}: {row['problem']}. It is kept in the "
                f"database as {subject}; please look for it in Autumna."
            )
        else:
            found = (
                parse_lead(json.loads(row["raw"]), row["account"]),
                Facts(bool(row["urgent"]), bool(row["unrouted"]), tuple(json.loads(row["notes"]))),
            )
        self._leads[subject] = found
        if len(self._leads) > LEADS_KEPT:
            self._leads.popitem(last=False)
        return found


def lead_of(subject: str) -> str | None:
    """The lead a delivery's message is about, for the lead's own and escalation messages."""
    kind, _, rest = subject.partition(":")
    if kind == "esc":
        return rest.rpartition(":")[0]
    if kind in ("notice", "edit", "ephemeral", "raw", "digest"):
        return None
    return subject
