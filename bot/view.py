"""What a message may show: the view templates see, built from a lead and filtered by the
enquirer's anonymisation and contact permissions and by the destination's privacy level.

Values are raw text here; the template environment (render.py) escapes them for each output.
"""

from __future__ import annotations

import re
import time
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

from . import escape, links
from .claims import minutes
from .config import Config, Home
from .models import Channel, Context, Facts, Lead, Target

CHAT_CONTENT_LIMIT = 1500  # characters of the enquirer's message shown in chat; email has it all
FIELD_LIMIT = 200  # characters of a name, address or phone number: nobody's is longer
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# What people write in a phone number: digits, spaces, ( ) - . and a leading +. ASCII digits only.
_PHONE = re.compile(r"\+?[0-9 ().-]{6,40}")
# One plain address, as nearly everyone has: no quoted parts, comments, IP literals or non-ASCII.
_ADDRESS = re.compile(
    r"[A-Za-z0-9_%+'-]+(?:\.[A-Za-z0-9_%+'-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,63}"
)


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
    phone = _short(lead.telephone) if personal and phone_ok else ""
    email = _short(lead.sender) if personal and email_ok else ""
    return {
        "phone": phone,
        "email": email,
        # Link targets for the shown values, built from their normalised form; "" when the
        # value is not exactly one phone number or one address (then it stays text).
        "tel": tel_link(phone),
        "mailto": mailto_link(email),
        "note": note,
        "permitted": phone_ok or email_ok,
    }


def tel_link(phone: str) -> str:
    """`tel:+441900000000` for "01900 000000": E.164, as RFC 3966 wants a global number (a
    local one needs a phone-context) and it dials from anywhere, a softphone or a mobile
    abroad. Autumna lists UK care homes, so a national number (0 and 9 or 10 digits) is UK."""
    text = phone.strip()
    if not _PHONE.fullmatch(text):
        return ""
    if text.startswith("+"):
        digits = re.sub(r"[^0-9]", "", text.replace("(0)", "", 1))  # +44 (0)1900 000000
    else:
        digits = re.sub(r"[^0-9]", "", text)
        if digits.startswith("00"):
            digits = digits[2:]
        elif digits.startswith("0") and len(digits) in (10, 11):
            digits = "44" + digits[1:]
        else:
            return ""
    if not re.fullmatch(r"[1-9][0-9]{6,14}", digits):
        return ""
    return escape.Trusted("tel:+" + digits)


def mailto_link(address: str) -> str:
    """`mailto:` and the address, if it is exactly one plain address (RFC 6068: anything
    outside a URI's safe characters percent-encoded)."""
    text = address.strip()
    if len(text) > 254 or not _ADDRESS.fullmatch(text):
        return ""
    return escape.Trusted("mailto:" + quote(text, safe="@+-._'"))


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


def context_view(
    context: Context, key: str, claiming: str, config: Config, link_secret: str = ""
) -> dict[str, Any]:
    """The claim (or how to make one: in Slack, by a signed claim link when the console has a
    public address, or with the command) and the escalation, as templates see them."""
    claim = context.claim
    link = ""
    if claim is None and config.web.public_url and link_secret:
        expires = time.time() + config.web.link_days * 86400
        link = escape.Trusted(links.claim_url(config.web.public_url, link_secret, key, expires))
    claimed: dict[str, Any] = {"claimed": False}
    if claim is not None:
        mention = escape.Trusted(f"<@{claim.by_id}>") if claim.by_id else ""
        claimed = {
            "claimed": True,
            "by": _short(claim.by_name),
            "mention": mention,
            "via": claim.via,
            "at": format_clock(claim.claimed_at, config.timezone),
            "after": minutes(claim.seconds_to_claim),
        }
    escalation: dict[str, Any] = {}
    if context.escalation_step:
        escalation = {
            "step": context.escalation_step,
            "waited": minutes(context.waited),
            "told": ", ".join(context.told),
        }
    return {
        "claim": claimed,
        "claiming": {
            "button": claiming == "button",
            "reaction": config.claims.reaction,
            "in_slack": bool(claiming),
            "command": f'leadbot claim {key} --by "Your name"',
            "link": link,
        },
        "escalation": escalation,
    }


def format_clock(stamp: float, tz: Any) -> str:
    """ "14:05" today in the group's zone, else "Mon 30 Nov, 14:05"."""
    moment = datetime.fromtimestamp(stamp, tz)
    if moment.date() == datetime.now(tz).date():
        return f"{moment:%H:%M}"
    return format_moment(moment, tz)
