"""The typed config everyone uses, and the small helpers that read it. Loading and validating
rules.toml (`load_config`) live in loader.py and conditions.py; nothing half-valid gets through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .models import Channel, Target
from .schedule import Hours

ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
PRIVACY_LEVELS = ("full", "minimal")


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    key_var: str  # the environment variable holding the API key; the key itself never lives here


@dataclass(frozen=True, slots=True)
class Polling:
    interval: timedelta = timedelta(minutes=1)
    overlap: timedelta = timedelta(minutes=15)
    lookback: timedelta = timedelta(hours=24)  # on first start, older leads are recorded silently
    history: timedelta = timedelta(days=30)  # how far back the first poll looks
    alert_after: timedelta = timedelta(minutes=15)  # no successful poll for this long: tell ops


@dataclass(frozen=True, slots=True)
class Retries:
    first: timedelta = timedelta(seconds=30)  # the first retry comes about this long after
    cap: timedelta = timedelta(hours=1)  # retries are never further apart than this
    give_up: timedelta = timedelta(hours=24)  # after this long, dead-letter and tell ops


@dataclass(frozen=True, slots=True)
class Privacy:
    """What each channel may show by default (a destination's own `privacy` wins), and how long
    personal details are kept."""

    slack: str = "full"
    teams: str = "full"
    email: str = "full"
    web: str = "minimal"  # what the web console shows of a lead
    retention: timedelta = timedelta(days=90)

    def level(self, channel: Channel) -> str:
        return str(getattr(self, channel.value))


@dataclass(frozen=True, slots=True)
class Web:
    """The web console inside `leadbot run`, and the claim links in messages."""

    listen: str = "127.0.0.1:8787"  # "" turns the console off; env LEADBOT_WEB_LISTEN wins
    public_url: str = ""  # where people reach the console; "" adds no claim links
    link_days: int = 7  # a claim link expires after this many days


@dataclass(frozen=True, slots=True)
class EmailSettings:
    host: str = ""
    port: int = 0  # 0: 465 for implicit TLS, else 587
    sender: str = ""
    tls: str = ""  # "starttls", "implicit" or "none"; "" means implicit on 465, else starttls
    ca_file: str = ""


@dataclass(frozen=True, slots=True)
class Home:
    service_id: int
    name: str
    attributes: dict[str, Any]  # everything written under [homes.<id>], name included


@dataclass(frozen=True, slots=True)
class Condition:
    """One `when` key. `values` are normalised for matching (see rules.py)."""

    key: str  # category, service, postcode, home.<attr>, funding, timescales, on_behalf_of, ...
    values: tuple[Any, ...]
    written: tuple[Any, ...] = ()  # as the admin wrote them, for `leadbot explain`


@dataclass(frozen=True, slots=True)
class Step:
    """One escalation step: if the lead is still unclaimed `after` its arrival, notify these."""

    after: timedelta
    notify: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rule:
    index: int
    name: str
    conditions: tuple[Condition, ...]
    notify: tuple[str, ...]
    urgent: bool = False
    stop: bool = False
    escalate: tuple[Step, ...] = ()
    anytime: bool = False  # its messages go at once, whatever the destinations' hours


@dataclass(frozen=True, slots=True)
class Claims:
    """How a claim is found in Slack without Socket Mode: a reaction or a thread reply."""

    reaction: str = "white_check_mark"
    check_every: timedelta = timedelta(minutes=1)  # how often Slack is asked, within its limits
    lookback: timedelta = timedelta(days=3)  # leads older than this are no longer watched


@dataclass(frozen=True, slots=True)
class Destination:
    name: str
    targets: tuple[Target, ...]


@dataclass(frozen=True, slots=True)
class Digest:
    """A summary of leads sent on a schedule ([[digests]]): at `at` on each of `days`, in the
    group's zone, covering the whole days since the one before (yesterday, or last week)."""

    name: str
    at: int  # seconds after local midnight
    days: tuple[int, ...]  # Monday 0
    notify: tuple[str, ...]  # destination names and home.<attribute>s
    period: str = "day"  # or "week": sent on one day, covering the seven before it
    homes: tuple[int, ...] = ()  # service ids; () is every home
    bank_holidays: str = "skip"  # or "send"; the group's nation decides what a holiday is


@dataclass(frozen=True)
class Config:
    path: Path
    group: str
    timezone: ZoneInfo
    templates: Path | None
    lead_url: str
    accounts: tuple[Account, ...]
    polling: Polling
    retries: Retries
    privacy: Privacy
    email: EmailSettings
    homes: dict[int, Home]
    destinations: dict[str, Destination]
    rules: tuple[Rule, ...]
    fallback: str
    ops: str
    hours: dict[str, Hours] = field(default_factory=dict)  # [hours.<name>]
    nation: str = "england"  # for bank holidays; a home's own `nation` attribute wins
    claims: Claims = Claims()
    web: Web = Web()
    digests: tuple[Digest, ...] = ()  # [[digests]]
    warnings: tuple[str, ...] = ()
    secret_vars: frozenset[str] = field(default_factory=frozenset)  # env vars holding secrets
    # (service id, "home.<attribute>") -> its targets, resolved once when the config is loaded
    home_destinations: dict[tuple[int, str], tuple[Target, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def targets_used(self) -> set[Channel]:
        found = {t.channel for d in self.destinations.values() for t in d.targets}
        for home in self.homes.values():
            found |= {t.channel for t in home_targets(home, None, self.privacy)}
        return found


class ConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def channel_of_attribute(name: str) -> Channel | None:
    """Home attributes named slack/email/teams, or ending _slack/_email/_teams, are destinations."""
    for channel in Channel:
        if name == channel.value or name.endswith("_" + channel.value):
            return channel
    return None


def home_targets(home: Home, attribute: str | None, privacy: Privacy = Privacy()) -> list[Target]:
    """The targets behind `home.<attribute>` (all of the home's when attribute is None)."""
    found: list[Target] = []
    for name, value in home.attributes.items():
        channel = channel_of_attribute(name)
        if channel is None or attribute not in (None, name):
            continue
        label = f"home.{name}"
        hours = str(home.attributes.get(f"{name}_hours", ""))  # e.g. manager_slack_hours
        for address in value if isinstance(value, list) else [value]:
            found.append(
                Target(channel, address_of(channel, address), label, privacy.level(channel), hours)
            )
    return found


def address_of(channel: Channel, value: str) -> str:
    if channel is Channel.TEAMS:
        match = ENV_REF.match(value)
        return match[1] if match else value
    return value.lower() if channel is Channel.EMAIL else value


def normalise(value: Any) -> Any:
    """How rules compare text: case and runs of spaces do not matter."""
    return " ".join(value.casefold().split()) if isinstance(value, str) else value
