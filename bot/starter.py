"""A starting rules.toml, written by `leadbot init`: the documented example when there is no key,
or the group's own homes as Autumna lists them, with placeholders (CHANGE-ME, see placeholders.py)
where only the admin knows the answer. Plain code, not a template: every value from Autumna is
written through `quoted()` and every comment through `comment()`, so no name can break the file.
"""

from __future__ import annotations

import json
from datetime import date
from importlib import resources
from pathlib import Path

from .organisations import ListedService, Listing, brief
from .placeholders import ADDRESS, CHANNEL, MARKER, MEMBER
from .text import clean_line

ROOT_EXAMPLE = Path(__file__).resolve().parents[1] / "rules.toml"


def example() -> str:
    """The documented example (the repository's rules.toml), shipped as package data."""
    try:
        text = resources.files("bot.demo").joinpath("rules.toml").read_text(encoding="utf-8")
        if "[routing]" in text:  # not a symbolic link checked out as a one-line file
            return text
    except OSError:
        pass
    return ROOT_EXAMPLE.read_text(encoding="utf-8")  # a source checkout


def quoted(value: str | int | float) -> str:
    """A TOML value. JSON's string escapes are TOML's; clean_line has removed what TOML forbids
    in a string (control characters, DEL, lone surrogates)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(clean_line(value), ensure_ascii=False)


def comment(text: str, width: int = 240) -> str:
    """One comment line: Autumna's text folded to one line, so it cannot end the comment."""
    return "# " + brief(text, width)


def aligned(line: str, note: str) -> str:
    return f"{line:<36}# {note}" if len(line) < 36 else f"{line}  # {note}"


def starter(listing: Listing, accounts: dict[str, str], today: date) -> str:
    """rules.toml for the homes Autumna listed; `accounts` is account name -> key variable."""
    groups = sorted({o.name for o in listing.organisations if o.name})
    group = groups[0] if len(groups) == 1 else ""
    variables = " and ".join(accounts.values())
    parts = [
        HEADER.format(
            today=today.isoformat(),
            variables=variables,
            found=f"{_count(len(groups), 'organisation')}, "
            f"{_count(len(listing.services), 'service')}",
        ),
        "[group]",
        aligned(f"name = {quoted(group)}", "shown in messages")
        if group
        else aligned(f'name = "{MARKER}"', "your care group's name, shown in messages"),
        *([comment("Autumna lists: " + "; ".join(groups))] if len(groups) > 1 else []),
        GROUP,
        _accounts(accounts),
        SETTINGS,
        _homes(listing, multiple_accounts=len(accounts) > 1),
        DESTINATIONS_AND_RULES,
    ]
    return "\n".join(parts)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' * (n != 1)}"


def _accounts(accounts: dict[str, str]) -> str:
    if list(accounts.values()) == ["AUTUMNA_API_KEY"]:
        return ACCOUNTS_EXAMPLE
    lines = ["# One [[autumna.accounts]] per Autumna API key; each key lives in the environment."]
    for name, variable in accounts.items():
        lines += ["[[autumna.accounts]]", f"name = {quoted(name)}", f'api_key = "${{{variable}}}"']
    return "\n".join(lines) + "\n"


def _homes(listing: Listing, multiple_accounts: bool) -> str:
    lines = [HOMES]
    for key, value in listing.notes.items():
        lines.append(comment(f"Autumna also sent (not understood): {key} = {brief(value)}"))
    for org in listing.organisations:
        about = org.name or "an organisation with no name"
        lines += [
            comment(f"Autumna also sent for {about} (not understood): {k} = {brief(v)}")
            for k, v in org.extra.items()
        ]
    for organisation, services in listing.by_organisation():
        heading = ""
        for service in services:
            origin = ", ".join(
                [f"organisation {organisation}"] * bool(organisation)
                + [f'account "{service.account}"'] * multiple_accounts
            )
            if origin and origin != heading:
                lines += ["", comment(f"--- From Autumna: {origin}")]
                heading = origin
            lines += ["", *_home(service)]
    if listing.skipped:
        lines += [
            "",
            "# Skipped (leadbot could not tell which home it is; add it by hand if need be):",
        ]
        lines += [comment(f"  {line}") for line in listing.skipped]
    return "\n".join(lines) + "\n"


def _home(service: ListedService) -> list[str]:
    name = clean_line(service.name)
    lines = [
        f"[homes.{service.id}]",
        aligned(f"name = {quoted(name)}", "as Autumna lists it")
        if name
        else aligned(f'name = "{MARKER} (service {service.id})"', "Autumna gave no name"),
    ]
    lines += [f"{key} = {quoted(value)}" for key, value in service.details.items()]
    if "region" not in service.details:
        lines.append(aligned('# region = "London"', "your own attributes, for conditions"))
    lines += [
        aligned(f'slack = "{CHANNEL}"', 'the home\'s Slack channel, e.g. "#rose-lodge"'),
        aligned(f'manager_slack = "{MEMBER}"', 'the manager\'s Slack member id, e.g. "U024BE7LH"'),
        aligned(f'manager_email = "{ADDRESS}"', "the manager's email address"),
    ]
    if service.email:
        lines.append(
            aligned(f"# email = {quoted(service.email)}", "Autumna's address for the home")
        )
    for key, value in service.extra.items():
        lines.append(comment(f"from Autumna, not understood: {key} = {brief(value)}"))
    return lines


HEADER = """\
# leadbot configuration: homes, people, destinations and rules for one care group.
# Written by `leadbot init` on {today} from what Autumna lists for {variables}:
# {found}.
#
# To do: fill in every value that says CHANGE-ME (Slack channels, managers, email addresses).
# `leadbot check` lists each one still to fill in; `leadbot check --online` compares the homes
# below with the services Autumna lists for your keys.
#
# Secrets (API keys, tokens, passwords, webhook URLs) never go in this file: name an
# environment variable instead, as "${{NAME}}". `leadbot check` validates everything here and
# lists every mistake with its key path; `leadbot explain LEAD.json` shows how a lead is routed.
"""

GROUP = """\
timezone = "Europe/London"          # times in messages, and working hours, are in this zone
nation = "england"                  # whose bank holidays close [hours] (a home may say its own)
# templates = "my-templates"        # a folder of our own templates that win over the built-in ones
# lead_url = "https://crm.example/leads/{category_id}/{lead_id}"   # adds an "Open" button

[polling]
interval = "1m"                     # how often to ask Autumna for new leads
overlap = "15m"                     # each poll reaches back this far, for leads that appear late
lookback = "24h"                    # first start: older leads are recorded as seen, not announced
history = "30d"                     # first start: how far back to look at all
"""

ACCOUNTS_EXAMPLE = """\
# One [[autumna.accounts]] per Autumna API key. Without this section leadbot reads one key
# from AUTUMNA_API_KEY.
# [[autumna.accounts]]
# name = "north"
# api_key = "${AUTUMNA_KEY_NORTH}"
"""

SETTINGS = """\
[retries]
first = "30s"                       # a failed delivery is retried with backoff and jitter,
cap = "1h"                          # never more than this apart,
give_up = "24h"                     # and dead-lettered (ops is told) after this long

[privacy]
# What each channel may show unless a destination says otherwise: "full" shows what the
# enquirer allowed (contact details only with their permission); "minimal" shows no personal
# details at all: home, category, timescale and a link.
slack = "full"
teams = "full"
email = "full"
retention = "90d"                   # personal details are erased from leadbot.db after this

[email]
host = "CHANGE-ME"                  # the mail server, e.g. "smtp.office365.com" (or SMTP_HOST)
port = 587                          # 587 with STARTTLS; 465 means implicit TLS
sender = "Leads <CHANGE-ME@example.invalid>"   # e.g. "Rose Care leads <leads@rosecare.example>"
# tls = "starttls"                  # default: STARTTLS, or implicit TLS on 465; never plaintext

[routing]
fallback = "group-leads"            # required: every lead no rule routes, and unknown homes
ops = "ops-alerts"                  # gets leadbot's own alerts (failed deliveries, Autumna down)

# --- working hours ------------------------------------------------------------------------------
# A destination (or a home attribute, as manager_email_hours = "office") that keeps hours gets
# its messages at the next opening when a lead arrives while it is closed: deferred, never
# dropped. Days not listed are closed. A rule with anytime = true sends at once, whatever the hours.

[hours.office]
mon-fri = "08:00-18:00"
sat = "09:00-13:00"
bank_holidays = "closed"

# --- claims ------------------------------------------------------------------------------------
# A lead is claimed when someone says they will call the family: the "I'll call them" button in
# Slack (with SLACK_APP_TOKEN), a reaction or a thread reply on its Slack message, or
# `leadbot claim KEY --by "Name"`. The first claim wins; escalation stops.
# [claims]
# reaction = "white_check_mark"     # the reaction that claims a lead (default)
"""

HOMES = """\
# --- homes: one table per care home, keyed by its Autumna service id -------------------------
# Each home's name (and postcode, when Autumna gives one) comes from Autumna. Fill in its Slack
# channel, its manager's Slack member id and email address: the rules below send to them.
# Attributes named slack / email / teams, or ending in _slack / _email / _teams, are places to
# send to (rules say "home.manager_slack"). Any other attribute (region, ...) can be used in
# conditions: when = { home.region = "North West" }."""

DESTINATIONS_AND_RULES = """\
# --- destinations shared by all homes ---------------------------------------------------------
# privacy = "minimal" keeps personal details out (home, category, timescale and a link only);
# the default, "full", shows what the enquirer allowed.

[destinations]
group-leads = { slack = "#CHANGE-ME" }         # the group channel: e.g. "#group-leads"
# leadbot's own alerts: the address of whoever looks after leadbot
ops-alerts = { email = ["CHANGE-ME@example.invalid"], privacy = "minimal" }
# sales-inbox = { email = ["sales@rosecare.example"], hours = "office" }
# ops-teams = { teams = "${TEAMS_OPS_WEBHOOK}", privacy = "minimal" }     # alerts in Teams instead

# --- rules: written once for all homes ---------------------------------------------------------
# Every matching rule fires (like mail filters) unless one says stop = true; a destination
# reached by several rules gets one message. A list means "any of"; several conditions mean
# "all of". Conditions: category, service, postcode, home.<attribute>, funding, timescales,
# on_behalf_of, anonymised, content (words), content_regex, account.

[[rules]]
name = "Visit requests ping the home manager"
when = { category = ["In Person Visit Request", "Virtual Visit Request"] }
notify = ["home.slack", "home.manager_slack"]

[[rules]]
name = "Call-back requests are urgent"
when = { category = "Call Back Request" }
notify = ["home.slack", "home.manager_email"]
urgent = true
anytime = true                      # at once, even out of hours
escalate = [                        # if nobody has claimed it by then (a claim stops the rest)
  { after = "15m", notify = ["home.manager_slack"] },
  { after = "1h", notify = ["group-leads"] },
]

[[rules]]
name = "Emergencies are urgent too"
when = { timescales = ["Emergency", "ASAP"] }
notify = ["home.manager_email"]
urgent = true

[[rules]]
name = "Referrals and placements go to the home and its manager"
when = { category = [6, 7, 8] }
notify = ["home.slack", "home.manager_email"]

[[rules]]
name = "Everything goes to the group channel"
notify = ["group-leads"]
"""
