"""Placeholders in rules.toml: values that say CHANGE-ME, written by `leadbot init` where only the
admin knows the answer (a home's Slack channel, its manager's address). They load like any value,
so a fresh file passes `leadbot check`, and each one is reported as a warning naming what to
write instead. A placeholder can never reach anybody: an email address at `example.invalid` has
no mail server (RFC 2606), and Slack channel names have no capital letters.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

MARKER = "CHANGE-ME"
CHANNEL = "#CHANGE-ME"  # a Slack channel
MEMBER = "CHANGE-ME"  # a Slack member id
ADDRESS = "CHANGE-ME@example.invalid"  # an email address


def is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and MARKER in value.upper()


def placeholder_warnings(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """(key path, what to write instead) for every placeholder in a rules.toml as read."""
    homes = raw.get("homes")
    homes = homes if isinstance(homes, dict) else {}
    found = []
    for where, value in _walk(raw, ""):
        parts = where.replace("[", ".[").split(".")
        home = homes.get(parts[1]) if parts[0] == "homes" and len(parts) > 2 else None
        name = home.get("name") if isinstance(home, dict) else None
        whose = f"{name}'s" if isinstance(name, str) and not is_placeholder(name) else "the home's"
        found.append((where, f'placeholder "{value[:80]}": {_what(parts, whose)}'))
    return found


def _walk(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{where}[{i}]")
    elif is_placeholder(value):
        yield where, value


def _what(parts: list[str], whose: str) -> str:
    """What belongs there, from the key path (`homes.100000.manager_slack`, `email.host`...)."""
    names = [p for p in parts if not p.startswith("[")]
    section, key = names[0], names[-1]
    if section == "homes" and key == "name":
        return "write the home's name"
    if section == "homes" and key == "slack":
        return f'write {whose} Slack channel, e.g. "#rose-lodge"'
    if section == "homes" and key.endswith("slack"):
        person = key.removesuffix("_slack").replace("_", " ")
        return (
            f'write the Slack member id of {whose} {person}, e.g. "U024BE7LH" (in Slack: their '
            'profile, ⋮, "Copy member ID"), or a channel'
        )
    if section == "homes" and key.endswith("email"):
        person = key.removesuffix("_email").replace("_", " ") or "inbox"
        return f"write the email address of {whose} {person}"
    if section == "destinations" and key == "slack":
        return f'write the Slack channel of {names[1]}, e.g. "#group-leads"'
    if section == "destinations" and key == "email":
        return f"write the email address(es) of {names[1]}"
    if section == "email" and key == "host":
        return (
            'write the mail server, e.g. "smtp.office365.com" (README: "Send through the '
            "group's own mail service\"), or delete the line and set SMTP_HOST"
        )
    if section == "email" and key == "sender":
        return 'write the address leads come from, e.g. "Rose Care leads <leads@rosecare.example>"'
    if section == "group" and key == "name":
        return "write your care group's name, as messages should show it"
    return "write the real value"
