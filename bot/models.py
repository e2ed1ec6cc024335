"""The data types that flow through the pipeline: one home for all of them.

Everything here is built at the edges (the Autumna client, the config loader) and trusted inside.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date as Date
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

# Autumna's own category ids and the names its pages use for them. The first name is the one we
# show; the others are spellings seen in the docs, accepted in rules.toml.
CATEGORY_NAMES: dict[int, tuple[str, ...]] = {
    1: ("Contact Form Message",),
    2: ("In Person Visit Request",),
    3: ("Virtual Visit Request",),
    4: ("Call Back Request",),
    5: ("Email Details Request",),
    6: ("Referral with contact", "Referral with contact permission"),
    7: ("Referral without contact", "Referral without contact permission"),
    8: ("Placement", "Known Placement", "Known Placements"),
}


@lru_cache(maxsize=256)  # a handful of names, asked for by every render
def category_slug(name: str) -> str:
    """`In Person Visit Request` -> `in-person-visit-request` (used for template file names)."""
    out = "".join(ch.lower() if ch.isalnum() else "-" for ch in name)
    return "-".join(part for part in out.split("-") if part) or "unknown"


@dataclass(frozen=True, slots=True)
class Category:
    id: int
    name: str

    @property
    def slug(self) -> str:
        known = CATEGORY_NAMES.get(self.id)
        return category_slug(known[0] if known else self.name)


@dataclass(frozen=True, slots=True)
class Service:
    """The care home a lead is for, as Autumna names it."""

    id: int | None
    name: str
    postcode: str


@dataclass(frozen=True, slots=True)
class Lead:
    """One enquiry, cleaned of Autumna's quirks. Text fields are untrusted (typed by the public)."""

    id: int
    category: Category
    service: Service
    account: str
    date: datetime | None  # aware, UTC; None when Autumna's value could not be read
    to: str = ""
    sender: str = ""  # Autumna's `from`: the enquirer's email address
    content: str = ""
    enquirer_first_name: str | None = None
    enquirer_surname: str | None = None
    resident_first_name: str | None = None
    resident_surname: str | None = None
    on_behalf_of: tuple[str, ...] = ()
    telephone: str = ""
    anonymised: bool = False
    funding: tuple[str, ...] = ()
    timescales: tuple[str, ...] = ()
    visit_date: Date | None = None
    visit_time: str = ""
    instruction: str = ""
    email_permission: bool | None = None
    phone_permission: bool | None = None
    budget_type: str = ""
    budget_min: float | None = None
    budget_max: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields we do not know, kept as sent
    problems: tuple[str, ...] = ()  # odd values we tolerated, for the record
    raw: str = field(default="", repr=False, compare=False)  # the record as Autumna sent it

    @property
    def key(self) -> str:
        """Autumna reuses ids across categories: a lead is (category id, lead id)."""
        return lead_key(self.category.id, self.id)


def lead_key(category_id: int, lead_id: int) -> str:
    return f"{category_id}:{lead_id}"


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A record Autumna sent that could not be understood as a lead. Kept raw, never dropped."""

    key: str  # "raw:<digest>", stable across polls so overlapping windows do not repeat it
    account: str
    raw: str
    problem: str


class Channel(StrEnum):
    SLACK = "slack"
    EMAIL = "email"
    TEAMS = "teams"


@dataclass(frozen=True, slots=True)
class Target:
    """Where one message goes. `key` identifies it in the database and never holds a secret."""

    channel: Channel
    address: str  # Slack channel or user id; an email address; a Teams webhook's env var name
    label: str  # how the admin named it: "group-leads", "home.manager_email"
    privacy: str = "full"  # or "minimal": no personal details at all
    hours: str = field(default="", compare=False)  # a named [hours] schedule; "" is any time

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.address}"


class Status(StrEnum):
    PENDING = "pending"  # waiting for its first attempt
    SENDING = "sending"  # handed to a channel; if we crash here the outcome is unknown
    RETRYING = "retrying"  # failed for a reason that may pass; next_attempt_at says when
    SENT = "sent"
    DEAD = "dead"  # failed for good (permanent error, or gave up); kept with its reason
    CANCELLED = "cancelled"  # not sent, and never will be: the lead was claimed first


@dataclass(frozen=True, slots=True)
class Delivery:
    """One (lead, target) pair and how sending it has gone. Times are Unix seconds, UTC."""

    id: int
    subject: str  # the lead key, or "notice:<id>" for the bot's own announcements
    target: Target
    status: Status
    attempts: int
    urgent: bool
    created_at: float
    next_attempt_at: float
    first_attempt_at: float | None = None
    sent_at: float | None = None
    last_error: str = ""
    reasons: tuple[str, ...] = ()
    in_doubt: bool = False  # the last attempt's outcome is unknown (a crash, a timeout)


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered message, ready for one channel: JSON for Slack and Teams, MIME for email."""

    target: Target
    ref: str  # "<lead key>/<target key>": the same for every attempt, so a resend can be spotted
    summary: str  # one line for logs and the terminal; contains no personal data
    payload: Any  # dict for Slack/Teams, email.message.EmailMessage for email


@dataclass(frozen=True, slots=True)
class Claim:
    """Who said they would call the family, how, and when."""

    by_name: str
    by_id: str  # a Slack user id, or ""
    via: str
    claimed_at: float
    seconds_to_claim: float


@dataclass(frozen=True, slots=True)
class Context:
    """What a lead's message says beyond the lead: its claim, or the escalation it is part of."""

    claim: Claim | None = None
    escalation_step: int = 0  # 0: the lead's own message, not an escalation
    waited: float = 0.0  # seconds since the lead arrived, for an escalation
    told: tuple[str, ...] = ()  # who had the lead before this escalation


@dataclass(frozen=True, slots=True)
class Facts:
    """What routing decided about a lead, kept with it in the database."""

    urgent: bool = False
    unrouted: bool = False
    notes: tuple[str, ...] = ()


Routed = tuple[tuple[Target, tuple[str, ...]], ...]  # each target with the rules that chose it


@dataclass(frozen=True, slots=True)
class NewLead:
    """A lead seen for the first time, with what routing decided: stored with its deliveries."""

    lead: Lead
    announce: bool
    urgent: bool = False
    unrouted: bool = False
    notes: tuple[str, ...] = ()
    targets: Routed = ()
    due: dict[str, float] = field(default_factory=dict)  # target key -> when, if not at once
    steps: tuple[PlannedStep, ...] = ()  # escalation, should nobody claim it


@dataclass(frozen=True, slots=True)
class PlannedStep:
    """An escalation step for one lead, with the moment it fires if the lead is unclaimed."""

    step: int  # 1, 2, ...
    after: float  # seconds, as rules.toml says
    due_at: float
    targets: Routed
    anytime: bool = False


@dataclass
class RuleResult:
    """How one rule fared for one lead, for `leadbot explain`."""

    index: int
    name: str
    urgent: bool
    stop: bool
    matched: bool
    reasons: list[str]  # why it matched, or the first condition that failed


@dataclass
class Escalation:
    """The targets of the matching rules' escalation steps with the same `after`."""

    after: float  # seconds
    targets: list[Target] = field(default_factory=list)
    reached_by: dict[str, list[str]] = field(default_factory=dict)  # target key -> rule names
    anytime: bool = False

    def add(self, target: Target, why: str) -> None:
        if target.key not in self.reached_by:
            self.targets.append(target)
            self.reached_by[target.key] = []
        self.reached_by[target.key].append(why)


@dataclass
class Routing:
    """What routing decided for one lead: the targets, and why each was chosen."""

    targets: list[Target] = field(default_factory=list)
    reached_by: dict[str, list[str]] = field(default_factory=dict)  # target key -> rule names
    results: list[RuleResult] = field(default_factory=list)
    urgent: bool = False
    unrouted: bool = False  # no rule matched, or none reached anybody: the fallback has it
    notes: list[str] = field(default_factory=list)  # things the admin should fix
    anytime: set[str] = field(default_factory=set)  # target keys an `anytime = true` rule chose
    escalations: dict[float, Escalation] = field(default_factory=dict)  # by `after`, seconds

    def add(self, target: Target, why: str) -> None:
        if target.key not in self.reached_by:
            self.targets.append(target)
            self.reached_by[target.key] = []
        elif target.privacy == "minimal":
            # Reached twice with different privacy: the stricter level wins.
            self.targets = [target if t.key == target.key else t for t in self.targets]
        self.reached_by[target.key].append(why)
