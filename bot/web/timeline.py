"""A lead's page: what it is (as far as `privacy.web` lets the console show), its timeline —
received by Autumna, seen, each delivery and how it went, escalation, the claim — and its
messages as the renderer renders them for each channel.
"""

from __future__ import annotations

import email
import email.policy
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from ..claims import minutes
from ..config import Config
from ..models import Channel, Delivery, Facts, Status, Target
from ..outbox import Outbox
from ..parse import parse_lead
from ..store import Store
from ..view import format_moment, lead_view
from .stats import home_name

if TYPE_CHECKING:
    from .site import Site


@dataclass(frozen=True)
class Event:
    at: float | None  # None: no time was kept (a delivery that failed for good)
    what: str
    tone: str = ""  # good, bad, wait: how the page marks it


def lead_page(store: Store, site: Site, key: str) -> dict[str, Any] | None:
    row = store.lead_row(key)
    if row is None:
        return None
    deliveries = store.lead_deliveries(key)
    steps = store.escalations_of([key]).get(key, [])
    claim = store.claim_of(key)
    arrived = arrival(row)
    return {
        "row": row,
        "home": home_name(site.config, row["service_id"]),
        "details": lead_details(row, site.config),
        "claim": claim,
        "arrived": arrived,
        "events": timeline(row, deliveries, steps, claim),
        "messages": previews(store, site, deliveries),
        "dead": [d for d in deliveries if d.status is Status.DEAD],
    }


def arrival(row: dict[str, Any]) -> float:
    seen: float = row["seen_at"]
    if row["lead_date"]:
        try:
            return min(seen, datetime.fromisoformat(row["lead_date"]).timestamp())
        except ValueError:
            pass
    return seen


def lead_details(row: dict[str, Any], config: Config) -> dict[str, Any] | None:
    """The lead as a message at `privacy.web` would show it (lead_view), or None when its
    details were erased by retention or it could not be read."""
    if row["raw"] is None or row["unreadable"]:
        return None
    lead = parse_lead(json.loads(row["raw"]), row["account"])
    facts = Facts(bool(row["urgent"]), bool(row["unrouted"]), tuple(json.loads(row["notes"])))
    target = Target(Channel.EMAIL, "web", "the web console", config.privacy.web)
    return lead_view(lead, target, facts, config)


def timeline(
    row: dict[str, Any],
    deliveries: list[Delivery],
    steps: list[dict[str, Any]],
    claim: dict[str, Any] | None,
) -> list[Event]:
    events = []
    if row["lead_date"]:
        events.append(Event(arrival(row), "Received by Autumna"))
    seen = f"Seen by leadbot (account {row['account']})"
    if not row["announced"]:
        seen += ": recorded without messages (older than the lookback at the first start)"
    if row["unreadable"]:
        seen += f": could not be read ({row['problem']})"
    events.append(Event(row["seen_at"], seen, "bad" if row["unreadable"] else ""))
    if claim is not None:  # before the edits it queued at the same moment
        after = minutes(claim["seconds_to_claim"])
        what = f"Claimed by {claim['by_name']} ({claim['via']}), {after} after it arrived"
        events.append(Event(claim["claimed_at"], what, "good"))
    for d in deliveries:
        events += delivery_events(d)
    for step in steps:
        n = step["step"]
        if step["status"] == "fired":
            events.append(Event(step["fired_at"], f"Escalation step {n} went out", "bad"))
        elif step["status"] == "stopped":
            events.append(Event(step["due_at"], f"Escalation step {n} not needed: claimed"))
        else:
            events.append(Event(step["due_at"], f"Escalation step {n} due if unclaimed", "wait"))
    return sorted(events, key=lambda e: (e.at is None, e.at or 0.0))


def delivery_events(d: Delivery) -> list[Event]:
    name = f"{kind(d.subject)} to {d.target.label} ({d.target.channel})"
    tries = f" after {d.attempts} attempts" if d.attempts > 1 else ""
    events = [Event(d.created_at, f"Queued: {name}")]
    if d.status is Status.PENDING and d.next_attempt_at > d.created_at + 1:
        events.append(Event(d.next_attempt_at, f"Deferred to its hours: {name}", "wait"))
    if d.first_attempt_at is not None:
        events.append(Event(d.first_attempt_at, f"First attempt: {name}"))
    if d.status is Status.SENT:
        events.append(Event(d.sent_at, f"Delivered: {name}{tries}", "good"))
    elif d.status is Status.DEAD:
        events.append(Event(None, f"Failed for good{tries}: {name}: {d.last_error}", "bad"))
    elif d.status is Status.RETRYING:
        what = f"Attempt {d.attempts + 1} due: {name} (last: {d.last_error})"
        events.append(Event(d.next_attempt_at, what, "wait"))
    elif d.status is Status.SENDING:
        events.append(Event(None, f"Being sent now: {name}", "wait"))
    elif d.status is Status.CANCELLED:
        events.append(Event(None, f"Not sent: {name}: {d.last_error}"))
    return events


def kind(subject: str) -> str:
    head, _, rest = subject.partition(":")
    if head == "esc":
        return f"escalation step {rest.rpartition(':')[2]}"
    if head == "edit":
        return "edit showing the claim"
    if head == "ephemeral":
        return "note that it is claimed"
    return "message"


def previews(store: Store, site: Site, deliveries: list[Delivery]) -> list[dict[str, Any]]:
    """One rendered message per subject and channel (destinations of one channel get the same
    text), personal details as `privacy.web` allows."""
    groups: dict[tuple[str, Channel], list[Delivery]] = {}
    for d in deliveries:
        if d.subject.partition(":")[0] not in ("edit", "ephemeral"):
            groups.setdefault((d.subject, d.target.channel), []).append(d)
    outbox = Outbox(store, site.renderer, site.clock)
    shown = []
    for (subject, channel), group in groups.items():
        first = group[0]
        level = "minimal" if site.config.privacy.web == "minimal" else first.target.privacy
        entry: dict[str, Any] = {
            "kind": kind(subject),
            "channel": str(channel),
            "to": sorted({d.target.label for d in group}),
        }
        try:
            with site.render_lock:
                message = outbox.render(replace(first, target=replace(first.target, privacy=level)))
        except LookupError:
            entry |= {"title": "", "text": "", "links": [], "gone": True}
        else:
            entry |= preview(message.target.channel, message.payload) | {"gone": False}
        shown.append(entry)
    return shown


def preview(channel: Channel, payload: Any) -> dict[str, Any]:
    """A message's title, text and links, as the person who got it would read them."""
    title, lines, found = "", [], []
    if channel is Channel.EMAIL:
        # Read back as a mail client would (the payload is built with the classic classes).
        mail = email.message_from_bytes(payload.as_bytes(), policy=email.policy.default)
        assert isinstance(mail, EmailMessage)
        title = str(mail["Subject"])
        body = mail.get_body(("plain",))
        lines.append(body.get_content() if isinstance(body, EmailMessage) else "")
    elif channel is Channel.SLACK:
        for block in payload.get("blocks", []):
            if block["type"] == "header":
                title = block["text"]["text"]
            elif block["type"] == "section":
                lines.append(block["text"]["text"])
            elif block["type"] == "context":
                lines += [e["text"] for e in block["elements"]]
            elif block["type"] == "actions":
                found += [(e["text"]["text"], e.get("url", "")) for e in block["elements"]]
    else:
        card = payload["attachments"][0]["content"]
        texts = [b["text"] for b in card["body"]]
        title, lines = texts[0], texts[1:]
        found += [(a["title"], a["url"]) for a in card.get("actions", [])]
    return {"title": title, "text": "\n\n".join(line.strip() for line in lines), "links": found}


def moment(at: float | None, config: Config) -> str:
    if at is None:
        return "—"
    return format_moment(datetime.fromtimestamp(at, UTC), config.timezone)
