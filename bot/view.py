"""What a message may show: the view templates see, built from a lead and filtered by the
enquirer's anonymisation and contact permissions and by the destination's privacy level.

Values are raw text here; the template environment (render.py) escapes them for each output.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from . import escape
from .config import Config, Home
from .models import Channel, Facts, Lead, Target

CHAT_CONTENT_LIMIT = 1500  # characters of the enquirer's message shown in chat; email has it all
FIELD_LIMIT = 200  # characters of a name, address or phone number: nobody's is longer
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def base_view(config: Config, target: Target) -> dict[str, Any]:
    return {"group": config.group, "privacy": target.privacy, "channel": str(target.channel)}


def lead_view(lead: Lead, target: Target, facts: Facts, config: Config) -> dict[str, Any]:
    """Everything a template may show, already filtered by anonymisation, contact permission and
    the destination's privacy level. Values are raw text: the environment escapes them."""
    home = config.homes.get(lead.service.id) if lead.service.id is not None else None
    tz = config.timezone
    chat = target.channel is not Channel.EMAIL
    personal = not lead.anonymised and target.privacy != "minimal"
    content = lead.content
    if chat and len(content) > CHAT_CONTENT_LIMIT:
        content = escape.truncate(
            content, CHAT_CONTENT_LIMIT, "… (message truncated; the full text is in Autumna)"
        )
    view = base_view(config, target) | {
        "key": lead.key,
        "home": _home_view(home, lead),
        "category": {
            "id": lead.category.id,
            "name": lead.category.name,
            "slug": lead.category.slug,
        },
        "urgent": facts.urgent,
        "unrouted": facts.unrouted,
        "notes": list(facts.notes),
        "mention": _mention(home) if facts.urgent and target.channel is Channel.SLACK else "",
        "link": _link(config.lead_url, lead),
        "lead": {
            "id": lead.id,
            "received": format_moment(lead.date, tz) if lead.date else "time unknown",
            "anonymised": lead.anonymised,
            "timescales": _short(", ".join(lead.timescales)),
            "visit_date": format_day(lead.visit_date) if lead.visit_date else "",
            "visit_time": _short(lead.visit_time),
            "postcode": _short(lead.service.postcode),
            "account": lead.account,
            "enquirer": _join(lead.enquirer_first_name, lead.enquirer_surname) if personal else "",
            "resident": _join(lead.resident_first_name, lead.resident_surname) if personal else "",
            "on_behalf_of": _short(", ".join(lead.on_behalf_of)) if personal else "",
            "funding": _short(", ".join(lead.funding)) if personal else "",
            "budget": _budget(lead) if personal else "",
            "content": content if personal else "",
            "instruction": lead.instruction
            if personal and lead.category.id in (1, 2, 3, 4, 5)
            else "",
        },
        "contact": contact_view(lead, personal),
    }
    return view


def contact_view(lead: Lead, personal: bool) -> dict[str, Any]:
    """Contact permission policy (README "Personal data"): category 7 is never contacted; a
    referral's flags decide per method; direct enquiries (1-5) asked to be contacted."""
    no_contact = lead.category.id == 7
    phone_ok = not no_contact and lead.phone_permission is not False
    email_ok = not no_contact and lead.email_permission is not False
    note = ""
    if not phone_ok and not email_ok:
        note = "No permission to contact the enquirer"
    elif not phone_ok:
        note = "Permission to contact by email only"
    elif not email_ok:
        note = "Permission to contact by phone only"
    return {
        "phone": _short(lead.telephone) if personal and phone_ok else "",
        "email": _short(lead.sender) if personal and email_ok else "",
        "note": note,
        "permitted": phone_ok or email_ok,
    }


def _home_view(home: Home | None, lead: Lead) -> dict[str, Any]:
    if home is None:
        return {
            "name": _short(lead.service.name) or f"service {lead.service.id}",
            "known": False,
            "service_id": lead.service.id,
        }
    shown = {k: v for k, v in home.attributes.items() if isinstance(v, str | int | float)}
    return shown | {"name": home.name, "known": True, "service_id": home.service_id}


def _mention(home: Home | None) -> str:
    manager = home.attributes.get("manager_slack") if home else None
    if isinstance(manager, str) and manager[:1] in ("U", "W"):
        return escape.Trusted(f"<@{manager}>")
    return ""


def _link(pattern: str, lead: Lead) -> str:
    if not pattern:
        return ""
    return escape.Trusted(
        pattern.format(
            category_id=lead.category.id, lead_id=lead.id, service_id=lead.service.id or ""
        )
    )


def _join(*names: str | None) -> str:
    return _short(" ".join(n for n in names if n))


def _short(text: str) -> str:
    return escape.truncate(text, FIELD_LIMIT, "…")


def _budget(lead: Lead) -> str:
    low, high = lead.budget_min, lead.budget_max
    amounts = " – ".join(f"£{v:,.0f}" for v in (low, high) if v is not None)
    if low is not None and high is not None and low == high:
        amounts = f"£{low:,.0f}"
    return f"{amounts} ({lead.budget_type})" if amounts and lead.budget_type else amounts


def format_moment(moment: datetime, tz: Any) -> str:
    """ "Sun 27 Jun, 15:17" in the group's time zone (BST in summer for Europe/London)."""
    local = moment.astimezone(tz)
    return f"{DAYS[local.weekday()]} {local.day} {MONTHS[local.month - 1]}, {local:%H:%M}"


def format_day(day: date) -> str:
    return f"{DAYS[day.weekday()]} {day.day} {MONTHS[day.month - 1]}"
