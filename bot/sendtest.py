"""`leadbot send-test`: one clearly marked test message through a destination's real channel, to
prove a token, an address or a webhook works before a family's enquiry depends on it.

The message comes from the channel's `test` template and goes out through the same channel
classes as every lead; a failure is the same `DeliveryError`. What the far side said is turned
into what to do (advice.py). Nothing is stored: no lead, no delivery, no database at all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from . import advice
from .channels import COMPOSERS
from .channels.email import EmailChannel
from .channels.slack import SlackChannel
from .channels.teams import TeamsChannel
from .conditions import did_you_mean
from .config import Config, ConfigError, Home
from .dispatch import Sender
from .failures import DeliveryError
from .models import Channel, Message, Target
from .render import Renderer
from .settings import Settings
from .settings import _secure_url as secure_url
from .view import base_view, format_moment


class NoSuchDestination(Exception):
    """The destination (or home) asked for is not in rules.toml; the message says what is."""


@dataclass(frozen=True, slots=True)
class Trial:
    """One address to try: a destination as rules.toml names it, for one home if `home.*`."""

    name: str  # "sales-inbox", "home.slack"
    target: Target
    home: Home | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.home.service_id} {self.home.name})" if self.home else self.name

    @property
    def where(self) -> str:
        """Its key path in rules.toml."""
        if self.home:
            return f"homes.{self.home.service_id}.{self.name.removeprefix('home.')}"
        return f"destinations.{self.name}.{self.target.channel}"

    @property
    def to(self) -> str:
        """The address as the admin wrote it (a Teams webhook by its variable: never the URL)."""
        address = self.target.address
        return f"${address}" if self.target.channel is Channel.TEAMS else address


@dataclass(frozen=True, slots=True)
class Outcome:
    trial: Trial
    accepted: bool
    said: str  # where the message is (accepted), or what the far side answered
    todo: str = ""  # what to do about it


def chosen(config: Config, destination: str, home: str | None) -> list[Trial]:
    """The trials for `send-test DESTINATION [--home SERVICE_ID]`."""
    if destination.startswith("home."):
        if home is None:
            homes = ", ".join(
                f"{h.service_id} ({h.name})"
                for h in config.homes.values()
                if config.home_destinations.get((h.service_id, destination))
            )
            raise NoSuchDestination(
                f"{destination} is each home's own: say which with --home SERVICE_ID"
                + (f" (homes with one: {homes})" if homes else f" (no home has {destination[5:]})")
            )
        found = _home(config, home)
        targets = config.home_destinations.get((found.service_id, destination), ())
        if not targets:
            raise NoSuchDestination(
                f"{found.name} ([homes.{found.service_id}] in {config.path.name}) has no "
                f"{destination[5:]}"
            )
        return [Trial(destination, t, found) for t in targets]
    if home is not None:
        raise NoSuchDestination(f"--home is for home.* destinations; {destination} is not one")
    if destination not in config.destinations:
        names = list(config.destinations)
        raise NoSuchDestination(
            f"no destination {destination!r} in {config.path.name}"
            + (did_you_mean(destination, names) or f" (destinations: {', '.join(names)})")
        )
    return [Trial(destination, t) for t in config.destinations[destination].targets]


def everything(config: Config) -> list[Trial]:
    """Every destination of rules.toml, and every home's own, in the order they are written."""
    trials = [Trial(name, t) for name, d in config.destinations.items() for t in d.targets]
    for home in config.homes.values():
        for (service_id, name), targets in config.home_destinations.items():
            if service_id == home.service_id:
                trials += [Trial(name, t, home) for t in targets]
    return trials


def _home(config: Config, wanted: str) -> Home:
    for home in config.homes.values():
        if wanted.strip() == str(home.service_id) or wanted.casefold() == home.name.casefold():
            return home
    listed = ", ".join(f"{h.service_id} ({h.name})" for h in config.homes.values())
    raise NoSuchDestination(
        f"no home {wanted!r} in {config.path.name}" + (f": homes are {listed}" if listed else "")
    )


def missing(trials: list[Trial], settings: Settings, config: Config) -> list[str]:
    """What the environment lacks for these channels (ConfigError: exit 2, like `run`)."""
    used = {t.target.channel for t in trials}
    found = list(settings.unreadable)
    if Channel.SLACK in used and not settings.slack_token:
        found.append("environment: SLACK_BOT_TOKEN is not set: set it to the bot's xoxb- token")
    if Channel.EMAIL in used and not (settings.smtp_host and settings.smtp_sender):
        found.append(
            "environment: no mail server or sender: set email.host and email.sender in "
            f"{config.path.name}, or SMTP_HOST and SMTP_SENDER"
        )
    for var in sorted({t.target.address for t in trials if t.target.channel is Channel.TEAMS}):
        url = settings.teams_webhooks.get(var)
        if url is None:
            found.append(f"environment: {var} is not set (a Teams webhook URL)")
        elif not secure_url(url):
            found.append(f"environment: {var} must be an https:// Workflows webhook URL")
    return found


def send(trials: list[Trial], config: Config, settings: Settings) -> list[Outcome]:
    """Try each address once (one message per address, however many names lead to it)."""
    problems = missing(trials, settings, config)
    if problems:
        raise ConfigError(problems)
    renderer = Renderer(config)
    outcomes: list[Outcome] = []
    tried: dict[str, Outcome] = {}
    with channels(config, settings) as (senders, heard):
        for trial in trials:
            first = tried.get(trial.target.key)
            if first is not None:
                said = f"the same address as {first.trial.label}: not sent twice"
                outcomes.append(Outcome(trial, first.accepted, said, first.todo))
                continue
            message = compose(renderer, trial, config, time.time())
            heard.clear()
            try:
                where = senders[trial.target.channel].send(message)
            except DeliveryError as error:
                said, todo = advice.explain(
                    error, trial.target, trial.where, heard, config, senders
                )
                outcome = Outcome(trial, False, said, todo)
            else:
                outcome = Outcome(trial, True, where or "accepted")
            tried[trial.target.key] = outcome
            outcomes.append(outcome)
    return outcomes


def compose(renderer: Renderer, trial: Trial, config: Config, now: float) -> Message:
    """The test message, from the channel's `test` template (a group's own wins)."""
    target = trial.target
    view = base_view(config, target) | {
        "test": {
            "destination": trial.name,
            "home": trial.home.name if trial.home else "",
            "to": trial.to,
            "sent": format_moment(datetime.fromtimestamp(now, UTC), config.timezone),
        }
    }
    parts = renderer.parts(target.channel, "test", view, fallback=False)
    payload = COMPOSERS[target.channel](parts, view, config)
    # Its own ref each time: an email's Message-ID is made from it.
    ref = f"test/{target.key}/{now:.6f}"
    return Message(target, ref, f"test message -> {trial.label}", payload)


@contextmanager
def channels(
    config: Config, settings: Settings
) -> Iterator[tuple[dict[Channel, Sender], advice.Heard]]:
    """The channels a run uses (as pipeline.build makes them), with what Teams answered."""
    heard = advice.Heard()
    http = httpx.Client(
        timeout=httpx.Timeout(20.0, connect=10.0),
        transport=httpx.HTTPTransport(retries=1),
        event_hooks={"response": [heard.response]},
    )
    email = EmailChannel(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_sender,
        config.email.tls,
        settings.smtp_username,
        settings.smtp_password,
        config.email.ca_file,
        timeout=20,
    )
    senders: dict[Channel, Sender] = {
        Channel.SLACK: SlackChannel(settings.slack_token, settings.slack_url or None),
        Channel.EMAIL: email,
        Channel.TEAMS: TeamsChannel(settings.teams_webhooks, http),
    }
    try:
        yield senders, heard
    finally:
        email.close()
        http.close()


def table(outcomes: list[Outcome]) -> str:
    """`send-test --all`: one row per destination, then what to do about each failure."""
    rows = [("destination", "channel", "to", "result")]
    for o in outcomes:
        result = f"ok: {o.said}" if o.accepted else f"FAILED: {o.said}"
        rows.append((o.trial.label, str(o.trial.target.channel), o.trial.to, result))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    out = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    ]
    out += ["", summary(outcomes)]
    out += dict.fromkeys(f"  {o.trial.to}: {o.todo}" for o in outcomes if not o.accepted)
    return "\n".join(out)


def lines(outcomes: list[Outcome]) -> str:
    """`send-test DESTINATION`: a line for each address, and what to do if it failed."""
    out = []
    for o in outcomes:
        where = f"{o.trial.label} -> {o.trial.target.channel} {o.trial.to}"
        if o.accepted:
            out.append(f"{where}: the test message was accepted ({o.said})")
        else:
            out += [f"{where}: FAILED: {o.said}", f"  what to do: {o.todo}"]
    return "\n".join(out)


def summary(outcomes: list[Outcome]) -> str:
    ok = sum(o.accepted for o in outcomes)
    text = f"{ok} of {len(outcomes)} destinations accepted the test message."
    return text + (" What to do:" if ok < len(outcomes) else " Nothing was recorded as a lead.")
