"""What leadbot prints for people: `explain`, `status` and the demo's summary.

Everything shown passes through `escape.plain`, so nothing an enquirer typed can move the cursor,
recolour the terminal or reorder text.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.header import decode_header as decode
from email.header import make_header
from email.message import Message as Mime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .claims import delay, minutes
from .config import Config
from .escape import plain
from .models import Channel, Delivery, Facts, Lead, Routing, Status, Unreadable
from .poller import Planner
from .render import Renderer
from .schedule import Calendar
from .store import Store
from .store.claims import step_targets
from .view import format_moment

RULE = "─" * 72


def explain_lead(
    lead: Lead, routing: Routing, renderer: Renderer, config: Config, now: float
) -> str:
    calendar = Calendar(config.timezone, config.nation)
    home = config.homes.get(lead.service.id) if lead.service.id is not None else None
    out = [
        RULE,
        f"Lead {lead.key}: {lead.category.name} for "
        f"{home.name if home else lead.service.name or 'an unknown service'} "
        f"(service {lead.service.id}){', anonymised' if lead.anonymised else ''}",
        RULE,
        "Rules, in order:",
    ]
    for result in routing.results:
        mark = "✓" if result.matched else "·"
        flags = "".join([" [urgent]" * result.urgent, " [stop]" * result.stop])
        out.append(f"  {mark} rules[{result.index}] {result.name!r}{flags}")
        out.extend(
            f"      {'because' if result.matched else 'no:'} {why}" for why in result.reasons
        )
    if len(routing.results) < len(config.rules):
        out.append("  (evaluation stopped: a matching rule says stop = true)")
    out.append(
        f"Urgent: {'yes' if routing.urgent else 'no'}"
        + (
            "   Unrouted: yes (no rule reached anybody; the fallback has it)"
            if routing.unrouted
            else ""
        )
    )
    out.extend(f"Note: {note}" for note in routing.notes)
    out.extend(f"Autumna sent an odd value: {p}" for p in lead.problems)
    out.append("Deliveries (one message each), and when each would go if the lead came now:")
    plan = Planner(config, calendar, lead.service.id)
    for target in routing.targets:
        at = plan.when(target, target.key in routing.anytime, now)
        out.append(
            f"  → {target.key}  ({target.label}; {target.privacy})  "
            f"{'at once' if at <= now else 'deferred until ' + calendar.describe(at, now)}"
            f"{' (' + target.hours + ' hours)' if target.hours else ''}  from: "
            + ", ".join(dict.fromkeys(routing.reached_by[target.key]))
        )
    if routing.escalations:
        out.append("Escalation, if nobody claims it (a claim stops what is left):")
        start = min(
            (plan.when(t, t.key in routing.anytime, now) for t in routing.targets), default=now
        )
        for after in sorted(routing.escalations):
            step = routing.escalations[after]
            out.append(
                f"  after {delay(after)}: {', '.join(t.label for t in step.targets)} "
                f"— would fire {calendar.describe(plan.escalates_at(step, start), now)}"
            )
    facts = Facts(routing.urgent, routing.unrouted, tuple(routing.notes))
    for target in routing.targets:
        message = renderer.render(lead, target, facts)
        out += ["", f"── {target.channel} message to {target.address} ──", show(message.payload)]
    return plain("\n".join(out))


def explain_unreadable(record: Unreadable, config: Config) -> str:
    return plain(
        "\n".join(
            [
                RULE,
                f"Unreadable record {record.key}: {record.problem}",
                RULE,
                f"leadbot keeps it, raw, and reports it to the fallback destination "
                f"({config.fallback}) instead of dropping it:",
                record.raw[:2000],
            ]
        )
    )


def show(payload: Any) -> str:
    if isinstance(payload, Mime):
        headers = "\n".join(
            f"{k}: {decode_header(v)}"
            for k, v in payload.items()
            if k.lower() not in ("content-type", "mime-version")
        )
        text = {
            part.get_content_subtype(): bytes(part.get_payload(decode=True)).decode()
            for part in payload.walk()
            if part.get_content_maintype() == "text"
        }
        return (
            f"{headers}\n\n{text.get('plain', '').rstrip()}\n\n"
            f"[HTML part: {len(text.get('html', ''))} characters]"
        )
    return json.dumps(payload, indent=2, ensure_ascii=False)


def decode_header(value: Any) -> str:
    return (
        str(make_header(decode(str(value))))
        if not isinstance(value, str) or "=?" in value
        else value
    )


def status(store: Store, config: Config | None, limit: int, now: float) -> str:
    tz = config.timezone if config else ZoneInfo("UTC")
    out = ["Polling:"]
    accounts = [a.name for a in config.accounts] if config else []
    for name in accounts or ["default"]:
        state = store.poll_state(name)
        if state is None:
            out.append(f"  {name}: never polled")
            continue
        line = f"  {name}: last success {_when(state['last_success'], tz, now)}"
        if state["failing_since"]:
            line += (
                f"; FAILING since {_when(state['failing_since'], tz, now)}: {state['last_error']}"
            )
        out.append(line)
    counts = store.counts()
    out.append("Deliveries: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in Status))
    out += ["", f"Recent leads (newest first, up to {limit}):"]
    leads = store.recent_leads(limit)
    by_subject: dict[str, list[Delivery]] = {}
    for delivery in store.deliveries_of([row["key"] for row in leads]):
        by_subject.setdefault(delivery.subject, []).append(delivery)
    keys = [row["key"] for row in leads]
    claims, steps = store.claims_of(keys), store.escalations_of(keys)
    calendar = Calendar(tz, config.nation if config else "england")
    for row in leads:
        out.append("  " + _lead_line(row, config, tz, now))
        out += ["      " + line for line in claim_lines(row, claims, steps, calendar, now)]
        for delivery in by_subject.get(row["key"], []):
            out.append("      " + _delivery_line(delivery, calendar, now))
    stuck = store.deliveries("status IN (?, ?)", [Status.DEAD, Status.RETRYING], limit=50)
    if stuck:
        out += ["", "Retrying and dead deliveries (`leadbot resend` queues them again):"]
        out += [f"  {d.subject:<14} " + _delivery_line(d, calendar, now) for d in stuck]
    return plain("\n".join(out))


def _lead_line(row: dict[str, Any], config: Config | None, tz: Any, now: float) -> str:
    if row["unreadable"]:
        return f"{row['key']:<14} UNREADABLE from account {row['account']!r}: {row['problem']}"
    category = row["category"] or f"category {row['category_id']}"
    home = config.homes.get(row["service_id"]) if config else None
    flags = [
        f
        for f, on in (
            ("URGENT", row["urgent"]),
            ("unrouted", row["unrouted"]),
            ("recorded, not announced", not row["announced"]),
        )
        if on
    ]
    place = home.name if home else f"service {row['service_id']}"
    return f"{row['key']:<14} {category} · {place} · seen {_when(row['seen_at'], tz, now)}" + (
        f"  [{', '.join(flags)}]" * bool(flags)
    )


def claim_lines(
    row: dict[str, Any],
    claims: dict[str, dict[str, Any]],
    steps: dict[str, list[dict[str, Any]]],
    calendar: Calendar,
    now: float,
) -> list[str]:
    """The lead's claim, or that it awaits one and when each escalation step fires."""
    if row["unreadable"] or not row["announced"]:
        return []
    claim = claims.get(row["key"])
    if claim is not None:
        return [
            f"claimed by {claim['by_name']} ({claim['via']}) "
            f"{calendar.describe(claim['claimed_at'], now)}, "
            f"{minutes(claim['seconds_to_claim'])} after it arrived"
        ]
    lines = ["awaiting a claim"]
    for step in steps.get(row["key"], []):
        told = ", ".join(sorted({t.label for t, _ in step_targets(step)}))
        when = {
            "waiting": f"escalates {calendar.describe(step['due_at'], now)}",
            "fired": f"escalated {calendar.describe(step['fired_at'] or 0, now)}",
            "stopped": "stopped",
        }.get(step["status"], step["status"])
        lines.append(f"  step {step['step']} ({delay(step['after'])}): {when} to {told}")
    return lines


def _delivery_line(d: Delivery, calendar: Calendar, now: float) -> str:
    tz = calendar.tz
    line = f"{d.status:<8} {d.target.channel:<5} {d.target.address} ({d.target.label})"
    if d.status is Status.SENT and d.sent_at:
        line += f" at {_when(d.sent_at, tz, now)}"
    if d.status is Status.PENDING and d.next_attempt_at > now + 1:
        line += f", deferred until {calendar.describe(d.next_attempt_at, now)}"
    if d.attempts > 1 or d.status in (Status.RETRYING, Status.DEAD):
        line += f", {d.attempts} attempt{'s' * (d.attempts != 1)}"
    if d.status is Status.RETRYING:
        line += f", next {_when(d.next_attempt_at, tz, now)}"
    if d.last_error and d.status is not Status.SENT:
        line += f": {d.last_error}"
    return line


def _when(stamp: float | None, tz: Any, now: float) -> str:
    if not stamp:
        return "never"
    ago = now - stamp
    moment = format_moment(datetime.fromtimestamp(stamp, UTC), tz)
    if abs(ago) < 90:
        return f"{moment} ({'in ' if ago < 0 else ''}{abs(int(ago))}s{' ago' if ago >= 0 else ''})"
    return moment


def demo_summary(store: Store, config: Config, since: float, folder: Path, now: float) -> str:
    leads = [r for r in store.recent_leads(10_000) if r["seen_at"] >= since]
    out = ["", RULE, "Demo summary", RULE]
    if not leads:
        out.append(
            "Nothing new: every bundled lead was delivered by an earlier run and is "
            f"remembered in {folder}/leadbot.db. Delete {folder}/ to see the demo again."
        )
        return "\n".join(out)
    deliveries: dict[str, list[Delivery]] = {}
    for d in store.deliveries_of([r["key"] for r in leads]):
        deliveries.setdefault(d.subject, []).append(d)
    keys = [r["key"] for r in leads]
    claims, steps = store.claims_of(keys), store.escalations_of(keys)
    calendar = Calendar(config.timezone, config.nation)
    for row in sorted(leads, key=lambda r: r["key"]):
        out.append(_lead_line(row, config, config.timezone, now))
        out += ["    " + line for line in claim_lines(row, claims, steps, calendar, now)]
        for d in deliveries.get(row["key"], []):
            mark = {Status.SENT: "✓"}.get(d.status, "…")
            later = (
                f"  deferred until {calendar.describe(d.next_attempt_at, now)}"
                if d.status is Status.PENDING and d.next_attempt_at > now + 1
                else ""
            )
            out.append(
                f"    {mark} {d.target.channel:<5} {d.target.address}  ({d.target.label}){later}"
            )
    files = {c: len(list((folder / c).glob("*"))) for c in Channel if (folder / c).exists()}
    out += [
        "",
        f"{len(leads)} leads; messages written to {folder}/: "
        + ", ".join(f"{n} {c} in {folder}/{c}/" for c, n in files.items()),
        "Open an .eml file with any mail program; Slack and Teams payloads are the exact JSON "
        "that would be posted.",
        f"{sum(1 for r in leads if r['key'] not in claims and not r['unreadable'])} leads await "
        'a claim: try `leadbot claim 4:2000 --by "Your name" --demo`, then '
        "`leadbot status --demo`.",
    ]
    return plain("\n".join(out))
