"""Routing, pure: (lead, config) -> the targets to notify, with the reasons. Every matching rule
fires, like mail filter rules, until one says `stop`; a target reached twice gets one message.
"""

from __future__ import annotations

from typing import Any

from .claims import delay
from .config import Condition, Config, Home, Rule, normalise
from .models import Escalation, Lead, Routing, RuleResult, Target


def route(lead: Lead, config: Config) -> Routing:
    home = config.homes.get(lead.service.id) if lead.service.id is not None else None
    routing = Routing()
    if home is None and lead.service.id is None:
        routing.notes.append(
            "the lead names no care home (no service id), so only rules "
            "without home destinations can reach anybody"
        )
    elif home is None:
        routing.notes.append(
            f"home {lead.service.id} ({lead.service.name or 'no name'}) is not in "
            f"{config.path.name}: add [homes.{lead.service.id}] so its leads reach the home"
        )
    for rule in config.rules:
        matched, reasons = evaluate(rule, lead, home)
        routing.results.append(
            RuleResult(rule.index, rule.name, rule.urgent, rule.stop, matched, reasons)
        )
        if not matched:
            continue
        routing.urgent |= rule.urgent
        for ref in rule.notify:
            for target in resolve(ref, home, config):
                routing.add(target, rule.name)
                if rule.anytime:
                    routing.anytime.add(target.key)
            if ref.startswith("home.") and home is not None and not resolve(ref, home, config):
                routing.notes.append(f"{home.name} has no {ref[5:]} (needed by {rule.name!r})")
        for step in rule.escalate:
            after = step.after.total_seconds()
            escalation = routing.escalations.setdefault(after, Escalation(after))
            escalation.anytime |= rule.anytime
            for ref in step.notify:
                for target in resolve(ref, home, config):
                    escalation.add(target, f"{rule.name} (unclaimed after {delay(after)})")
        if rule.stop:
            break
    routing.unrouted = not routing.targets
    if routing.unrouted or home is None:
        why = "fallback: no rule reached anybody" if routing.unrouted else "fallback: unknown home"
        for target in config.destinations[config.fallback].targets:
            routing.add(target, why)
    return routing


def resolve(ref: str, home: Home | None, config: Config) -> tuple[Target, ...]:
    if not ref.startswith("home."):
        return config.destinations[ref].targets
    if home is None:
        return ()
    return config.home_destinations.get((home.service_id, ref), ())


def evaluate(rule: Rule, lead: Lead, home: Home | None) -> tuple[bool, list[str]]:
    """All conditions must hold; a rule without conditions matches every lead."""
    reasons = []
    for condition in rule.conditions:
        ok, why = check(condition, lead, home)
        if not ok:
            return False, [why]
        reasons.append(why)
    return True, reasons or ["no conditions: matches every lead"]


def check(condition: Condition, lead: Lead, home: Home | None) -> tuple[bool, str]:
    key, wanted, written = condition.key, condition.values, condition.written
    if key == "category":
        found: Any = lead.category.id
        ok = found in wanted
        return ok, f"category {lead.category.name!r} ({found}) {_is(ok)} {_list(written)}"
    if key == "service":
        ok = lead.service.id in wanted
        return ok, f"service {lead.service.id} {_is(ok)} {_list(written)}"
    if key == "postcode":
        ok = any(postcode_matches(lead.service.postcode, w) for w in wanted)
        return ok, f"postcode {lead.service.postcode!r} {_is(ok)} {_list(written)}"
    if key.startswith("home."):
        found = home.attributes.get(key[5:]) if home else None
        ok = found is not None and normalise(found) in wanted
        return ok, f"{key} {found!r} {_is(ok)} {_list(written)}"
    if key in ("funding", "timescales", "on_behalf_of"):
        values = getattr(lead, key)
        ok = any(normalise(v) in wanted for v in values)
        return ok, f"{key} {list(values)} {'includes' if ok else 'has none of'} {_list(written)}"
    if key == "anonymised":
        ok = lead.anonymised in wanted
        return ok, f"anonymised is {str(lead.anonymised).lower()}"
    if key in ("content", "content_regex"):
        hit = next((i for i, p in enumerate(wanted) if p.search(lead.content)), None)
        if hit is None:
            return False, f"content matches none of {_list(written)}"
        return True, f"content matches {written[hit]!r}"
    if key == "account":
        ok = normalise(lead.account) in wanted
        return ok, f"account {lead.account!r} {_is(ok)} {_list(written)}"
    raise AssertionError(f"unknown condition {key}")  # config.py admits no other keys


def postcode_matches(postcode: str, wanted: str) -> bool:
    """ "SW" is an area (letters only), "SW1A" an outward code, "SW1A 1" a prefix of the whole."""
    code = " ".join(postcode.upper().split())
    if " " not in code and len(code) > 4:  # "SW1A1AA": the inward code is always 3 characters
        code = f"{code[:-3]} {code[-3:]}"
    if wanted.isalpha():
        return code[: len(code) - len(code.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))] == wanted
    if " " not in wanted:
        return code.split(" ")[0] == wanted
    return code.startswith(wanted)


def _is(ok: bool) -> str:
    return "is in" if ok else "is not in"


def _list(values: tuple[Any, ...]) -> str:
    return "[" + ", ".join(repr(v) for v in values) + "]"
