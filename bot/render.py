"""Render: (lead, target) -> Message. Jinja makes the text; each channel module assembles its JSON
or MIME around it (channels/*.compose), where sizes are enforced.

Templates live in templates/<channel>/: `default.j2` defines every block; a category file such as
`call-back-request.j2` redefines only the blocks it changes. A group's own folder wins over ours,
block by block. Every `{{ value }}` is escaped for its output by the environment's `finalize`.
"""

from __future__ import annotations

import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, PrefixLoader, StrictUndefined, Template, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from . import escape
from .channels import COMPOSERS
from .config import PRIVACY_LEVELS, Config, Home
from .models import CATEGORY_NAMES, Category, Channel, Lead, Message, Service, Target

# Which escaping each block gets, in the order blocks are rendered: a later block can use an
# earlier one's output as `parts.<name>`.
BLOCKS: dict[Channel, dict[str, str]] = {
    Channel.SLACK: {
        "header": "plain",
        "text": "slack",
        "body": "slack",
        "details": "slack",
        "footer": "slack",
    },
    Channel.EMAIL: {
        "details_text": "plain",
        "details_html": "html",
        "subject": "line",
        "text": "plain",
        "html": "html",
    },
    Channel.TEAMS: {
        "title": "markdown",
        "body": "markdown",
        "details": "markdown",
        "footer": "markdown",
    },
}
ESCAPERS: dict[str, Callable[[str], str]] = {
    "plain": escape.plain,
    "line": escape.one_line,
    "slack": escape.slack,
    "markdown": escape.markdown,
    "html": escape.plain,  # html: autoescape does the rest
}
CHAT_CONTENT_LIMIT = 1500  # characters of the enquirer's message shown in chat; email has it all
RECENT = 64  # renders kept for a lead's other destinations
FIELD_LIMIT = 200  # characters of a name, address or phone number: nobody's is longer
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def builtin_templates() -> Path:
    return Path(str(resources.files("bot.templates")))


@dataclass(frozen=True, slots=True)
class Facts:
    """What routing decided about a lead, kept with it in the database."""

    urgent: bool = False
    unrouted: bool = False
    notes: tuple[str, ...] = ()


class Renderer:
    def __init__(self, config: Config) -> None:
        self.config = config
        folders = {"builtin": FileSystemLoader(builtin_templates())}
        if config.templates:
            folders["group"] = FileSystemLoader(config.templates)
        loader = PrefixLoader(folders)
        self.prefixes = ["group", "builtin"] if config.templates else ["builtin"]
        self.envs = {fmt: _environment(loader, fmt, fn) for fmt, fn in ESCAPERS.items()}
        self._chains: dict[tuple[str, Channel, str], list[Template]] = {}
        self._recent: OrderedDict[tuple[Any, ...], tuple[Lead, dict[str, Any], dict[str, str]]] = (
            OrderedDict()
        )

    def render(self, lead: Lead, target: Target, facts: Facts, ref: str = "") -> Message:
        # A lead goes to several destinations of one channel with the same text: render it once.
        key = (lead.key, target.channel, target.privacy, facts)
        recent = self._recent.get(key)
        if recent is not None and recent[0] == lead:
            view, parts = recent[1], recent[2]
        else:
            view = lead_view(lead, target, facts, self.config)
            parts = self.parts(target.channel, lead.category.slug, view)
            self._recent[key] = (lead, view, parts)
            if len(self._recent) > RECENT:
                self._recent.popitem(last=False)
        summary = f"{lead.category.name} {lead.key} for {view['home']['name']} -> {target.label}"
        payload = COMPOSERS[target.channel](parts, view, self.config)
        return Message(target, ref or f"{lead.key}/{target.key}", escape.one_line(summary), payload)

    def render_notice(self, title: str, text: str, target: Target, ref: str = "") -> Message:
        """The bot's own announcements to the ops destination (dead letters, poll health)."""
        view = base_view(self.config, target) | {"notice": {"title": title, "text": text}}
        parts = self.parts(target.channel, "notice", view, fallback=False)
        return Message(
            target,
            ref or f"notice/{target.key}",
            escape.one_line(f"notice: {title} -> {target.label}"),
            COMPOSERS[target.channel](parts, view, self.config),
        )

    def check(self) -> list[str]:
        """Render every category for every channel and privacy level with a full sample lead;
        each failure becomes a problem naming the template and what went wrong."""
        problems: list[str] = []
        ids = [*CATEGORY_NAMES, 99]
        for cid in ids:
            lead = replace(SAMPLE, category=Category(cid, CATEGORY_NAMES.get(cid, ("Other",))[0]))
            for channel in Channel:
                for privacy in PRIVACY_LEVELS:
                    target = Target(channel, "check", "check", privacy)
                    try:
                        self.render(lead, target, Facts(True, True, ("a note",)))
                        self.render(lead, target, Facts())
                        self.render_notice("Check", "A notice.", target)
                    except Exception as exc:
                        problems.append(_template_problem(exc, channel, lead.category.slug))
        return list(dict.fromkeys(problems))

    def parts(
        self, channel: Channel, slug: str, view: dict[str, Any], fallback: bool = True
    ) -> dict[str, str]:
        parts: dict[str, str] = {}
        contexts: dict[int, Any] = {}  # one per template; `parts` fills in as blocks render
        for block, fmt in BLOCKS[channel].items():
            template = self._find(fmt, channel, slug, block, fallback)
            if template is None:
                parts[block] = ""
                continue
            if id(template) not in contexts:
                contexts[id(template)] = template.new_context(view | {"parts": parts})
            text = "".join(template.blocks[block](contexts[id(template)]))
            parts[block] = Markup(text) if fmt == "html" else escape.Trusted(_tidy(text))
        return parts

    def _find(
        self, fmt: str, channel: Channel, slug: str, block: str, fallback: bool
    ) -> Template | None:
        key = (fmt, channel, slug)
        if key not in self._chains:
            names = [
                f"{p}/{channel}/{s}.j2"
                for s in ([slug, "default"] if fallback else [slug])
                for p in self.prefixes
            ]
            chain = []
            for name in names:
                try:
                    chain.append(self.envs[fmt].get_template(name))
                except TemplateNotFound:
                    continue
            self._chains[key] = chain
        return next((t for t in self._chains[key] if block in t.blocks), None)


def _environment(loader: PrefixLoader, fmt: str, fn: Callable[[str], str]) -> SandboxedEnvironment:
    def finalize(value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, escape.Trusted | Markup):
            return value
        return fn(str(value))

    return SandboxedEnvironment(
        loader=loader,
        undefined=StrictUndefined,
        finalize=finalize,
        autoescape=fmt == "html",
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out)


# --- the view: what templates see ---------------------------------------------------------------


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


def _template_problem(exc: Exception, channel: Channel, slug: str) -> str:
    """Name the template file and line the error came from (Jinja keeps them in the
    traceback), so the admin knows which file to fix."""
    where, line = getattr(exc, "filename", None), getattr(exc, "lineno", None)
    if where is None:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
        where, line = (
            (frames[-1].filename, frames[-1].lineno)
            if frames
            else (f"a {channel} template for {slug}", None)
        )
    return (
        f"{where}{f' line {line}' if line else ''}: {type(exc).__name__}: "
        f"{str(exc)[:200]} (while rendering {slug} for {channel})"
    )


SAMPLE = Lead(
    id=1,
    category=Category(1, "Contact Form Message"),
    service=Service(100000, "Sample Home", "SW1A 1AA"),
    account="check",
    date=datetime(2021, 6, 27, 14, 17, 29, tzinfo=UTC),
    to="home@example.com",
    sender="enquirer@example.com",
    content="I am looking for a care home for my wife.",
    enquirer_first_name="John",
    enquirer_surname="Smith",
    resident_first_name="Jane",
    resident_surname="Smith",
    on_behalf_of=("Family member",),
    telephone="01900 000000",
    funding=("Self Funding",),
    timescales=("2-4 weeks",),
    visit_date=date(2021, 4, 29),
    visit_time="Afternoon",
    instruction="Please confirm directly with requester",
    email_permission=True,
    phone_permission=False,
    budget_type="Weekly Budget",
    budget_min=1000.0,
    budget_max=1500.0,
)
