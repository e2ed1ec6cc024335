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
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, PrefixLoader, StrictUndefined, Template, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from . import escape
from .channels import COMPOSERS, DIGEST_COMPOSERS
from .config import PRIVACY_LEVELS, Config
from .digest_view import SAMPLE as SAMPLE_DIGEST
from .digest_view import digest_view
from .models import (
    CATEGORY_NAMES,
    Category,
    Channel,
    Context,
    Facts,
    Lead,
    Message,
    Service,
    Target,
)
from .view import base_view, context_view, lead_view

# Which escaping each block gets, in the order blocks are rendered: a later block can use an
# earlier one's output as `parts.<name>`.
BLOCKS: dict[Channel, dict[str, str]] = {
    Channel.SLACK: {
        "mark": "plain",
        "header": "plain",
        "text": "slack",
        "escalation": "slack",
        "body": "slack",
        "details": "slack",
        "button": "plain",
        "claim": "slack",
        "ephemeral": "slack",
        "footer": "slack",
    },
    Channel.EMAIL: {
        "mark": "line",
        "details_text": "plain",
        "details_html": "html",
        "escalation_text": "plain",
        "escalation_html": "html",
        "claim_text": "plain",
        "claim_html": "html",
        "subject": "line",
        "text": "plain",
        "html": "html",
    },
    Channel.TEAMS: {
        "mark": "markdown",
        "title": "markdown",
        "escalation": "markdown",
        "body": "markdown",
        "details": "markdown",
        "claim": "markdown",
        "footer": "markdown",
    },
}
# A digest's blocks (templates/<channel>/digest.j2): those rendered once, and those rendered
# once per home (with `home` in the view) for the channels that give each home a block.
DIGEST_BLOCKS: dict[Channel, tuple[dict[str, str], dict[str, str]]] = {
    Channel.SLACK: (
        {"header": "plain", "text": "slack", "summary": "slack", "footer": "slack"},
        {"home": "slack"},
    ),
    Channel.EMAIL: ({"title": "line", "subject": "line", "text": "plain", "html": "html"}, {}),
    Channel.TEAMS: (
        {"title": "markdown", "summary": "markdown", "footer": "markdown"},
        {"home": "markdown", "chart": "markdown"},
    ),
}
ESCAPERS: dict[str, Callable[[str], str]] = {
    "plain": escape.plain,
    "line": escape.one_line,
    "slack": escape.slack,
    "markdown": escape.markdown,
    "html": escape.plain,  # html: autoescape does the rest
}
NO_CONTEXT = Context()  # a lead's own message, unclaimed
RECENT = 4096  # renders kept for a lead's other destinations


def builtin_templates() -> Path:
    return Path(str(resources.files("bot.templates")))


@dataclass
class Kept:
    """A render kept for the lead's other destinations on the same channel and privacy."""

    lead: Lead
    view: dict[str, Any]
    parts: dict[str, str]
    email: Any = None  # the composed email, for every address it goes to


class Renderer:
    def __init__(self, config: Config, claiming: str = "", link_secret: str = "") -> None:
        """`claiming`: how people claim in Slack here: "button" (Socket Mode), "reaction"
        (a reaction or thread reply) or "" (no Slack token: `leadbot claim` only).
        `link_secret` (LEADBOT_WEB_SECRET) signs claim links, added with `[web] public_url`."""
        self.config = config
        self.claiming = claiming
        self.link_secret = link_secret
        folders = {"builtin": FileSystemLoader(builtin_templates())}
        if config.templates:
            folders["group"] = FileSystemLoader(config.templates)
        loader = PrefixLoader(folders)
        self.prefixes = ["group", "builtin"] if config.templates else ["builtin"]
        self.envs = {fmt: _environment(loader, fmt, fn) for fmt, fn in ESCAPERS.items()}
        self._chains: dict[tuple[str, Channel, str], list[Template]] = {}
        self._found: dict[tuple[str, Channel, str, str, bool], Template | None] = {}
        self._recent: OrderedDict[tuple[Any, ...], Kept] = OrderedDict()

    def render(
        self,
        lead: Lead,
        target: Target,
        facts: Facts,
        ref: str = "",
        context: Context = NO_CONTEXT,
    ) -> Message:
        kept = self._kept(lead, target, facts, context)
        summary = f"{lead.category.name} {lead.key} for {kept.view['home']['name']}"
        summary = f"{summary} -> {target.label}"
        if context.escalation_step:
            summary = f"escalation {context.escalation_step} of {summary}"
        if target.channel is Channel.EMAIL:
            # Composed once for all the lead's addresses: each email gets its own envelope
            # around it when it is sent (channels/email.stamp), and never changes it.
            if kept.email is None:
                kept.email = COMPOSERS[Channel.EMAIL](kept.parts, kept.view, self.config)
            payload = kept.email
        else:
            payload = COMPOSERS[target.channel](kept.parts, kept.view, self.config)
        return Message(target, ref or f"{lead.key}/{target.key}", escape.one_line(summary), payload)

    def view(
        self, lead: Lead, target: Target, facts: Facts, context: Context = NO_CONTEXT
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """What templates see for this message, and every block rendered from it."""
        kept = self._kept(lead, target, facts, context)
        return kept.view, kept.parts

    def _kept(self, lead: Lead, target: Target, facts: Facts, context: Context) -> Kept:
        # A lead goes to several destinations of one channel with the same text: render it once.
        key = (lead.key, target.channel, target.privacy, facts, context)
        kept = self._recent.get(key)
        if kept is not None and kept.lead == lead:
            return kept
        view = lead_view(lead, target, facts, self.config)
        view |= context_view(context, lead.key, self.claiming, self.config, self.link_secret)
        kept = self._recent[key] = Kept(
            lead, view, self.parts(target.channel, lead.category.slug, view)
        )
        if len(self._recent) > RECENT:
            self._recent.popitem(last=False)
        return kept

    def forget(self) -> None:
        """Let go of kept renders (the queue is empty: no other destination is waiting)."""
        self._recent.clear()

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

    def render_digest(self, view: dict[str, Any], target: Target, ref: str = "") -> Message:
        """A digest ([[digests]]; view from digest_view.py) for one target: the template makes
        the text, the channel's digest composer the payload. Digests hold no personal data."""
        whole, each = DIGEST_BLOCKS[target.channel]
        view = base_view(self.config, target) | view
        parts = self.parts(target.channel, "digest", view, fallback=False, blocks=whole)
        homes = [
            self.parts(target.channel, "digest", view | {"home": h}, fallback=False, blocks=each)
            for h in (view["homes"] if each else ())
        ]
        summary = f"digest {view['digest']['name']} of {view['digest']['day']} -> {target.label}"
        return Message(
            target,
            ref or f"digest/{target.key}",
            escape.one_line(summary),
            DIGEST_COMPOSERS[target.channel](parts, homes, view, self.config),
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
        for channel in Channel:
            try:
                target = Target(channel, "check", "check")
                self.render_digest(digest_view(SAMPLE_DIGEST, None, self.config), target)
                self.render_digest(digest_view(SAMPLE_DIGEST, 100000, self.config), target)
            except Exception as exc:
                problems.append(_template_problem(exc, channel, "digest"))
        return list(dict.fromkeys(problems))

    def parts(
        self,
        channel: Channel,
        slug: str,
        view: dict[str, Any],
        fallback: bool = True,
        blocks: dict[str, str] | None = None,
    ) -> dict[str, str]:
        parts: dict[str, str] = {}
        contexts: dict[int, Any] = {}  # one per template; `parts` fills in as blocks render
        for block, fmt in (BLOCKS[channel] if blocks is None else blocks).items():
            template = self._find(fmt, channel, slug, block, fallback)
            if template is None:
                parts[block] = ""
                continue
            if id(template) not in contexts:
                contexts[id(template)] = template.new_context(view | {"parts": parts})
            text = "".join(template.blocks[block](contexts[id(template)]))
            if fmt == "html":
                parts[block] = Markup(text)
            else:
                parts[block] = escape.Trusted(_tidy(text) if text else "")
        return parts

    def _find(
        self, fmt: str, channel: Channel, slug: str, block: str, fallback: bool
    ) -> Template | None:
        known = (fmt, channel, slug, block, fallback)
        if known in self._found:
            return self._found[known]
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
        found = self._found[known] = next((t for t in self._chains[key] if block in t.blocks), None)
        return found


DICT_ATTRIBUTES = frozenset(dir(dict))


class Sandbox(SandboxedEnvironment):
    """Jinja's sandbox, quicker to the views' own values. For `home.name` on a dict, the sandbox
    tries the attribute first and looks the key up only after AttributeError; for a name no dict
    has as an attribute, that exception is certain, so the key is looked up first: the same
    answer without raising (a third of a block's time went on it)."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


def _environment(loader: PrefixLoader, fmt: str, fn: Callable[[str], str]) -> SandboxedEnvironment:
    # The same values (a home's name, a category) are escaped for several blocks and messages.
    fn = lru_cache(maxsize=4096)(fn)

    def finalize(value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, escape.Trusted | Markup):
            return value
        return fn(str(value))

    return Sandbox(
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
