"""Routing: each condition kind, how rules fire, the fallback, and the example rules.toml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import bot
from bot.config import Config
from bot.loader import load_config
from bot.models import Lead, Routing
from bot.parse import parse_body, parse_lead
from bot.rules import postcode_matches, route

ROOT = Path(bot.__file__).resolve().parent.parent
PUBLISHED = ROOT / "bot" / "demo" / "published"

BASE_TOML = """
[routing]
fallback = "group-leads"

[destinations]
group-leads = { slack = "#group-leads" }
hit = { slack = "#hit" }
sales = { email = "sales@rosecare.example" }
late = { slack = "#late" }

[homes.100000]
name = "Rose Lodge"
region = "London"
slack = "#rose-lodge"
manager_slack = "U024BE7LH"
manager_email = "amira.khan@rosecare.example"

[homes.200000]
name = "Willow House"
region = "North West"
slack = "#willow-house"
"""

RECORD: dict[str, Any] = json.loads((PUBLISHED / "1-contact-form-message.json").read_text())


def config_with(tmp_path: Path, rules: str) -> Config:
    path = tmp_path / "rules.toml"
    path.write_text(BASE_TOML + rules, encoding="utf-8")
    return load_config(path)


def lead(account: str = "acct", **changes: Any) -> Lead:
    """A lead like Autumna's first example; `service_id`, `postcode`, `category_id` and
    `specific` are shortcuts for the nested fields."""
    data = json.loads(json.dumps(RECORD))
    if "service_id" in changes:
        data["service"]["id"] = changes.pop("service_id")
    if "postcode" in changes:
        data["service"]["postcode"] = changes.pop("postcode")
    if "category_id" in changes:
        data["category"] = {"id": changes.pop("category_id")}
    data.update(changes)
    return parse_lead(data, account)


def keys(routing: Routing) -> list[str]:
    return [t.key for t in routing.targets]


# --- each condition ----------------------------------------------------------------------------


CONDITIONS: list[tuple[str, dict[str, Any], bool]] = [
    # category: by id, by any accepted name, ignoring case and spacing
    ("category = 4", {"category_id": 4}, True),
    ("category = 4", {"category_id": 1}, False),
    ('category = "Call Back Request"', {"category_id": 4}, True),
    ('category = "call  back REQUEST"', {"category_id": 4}, True),
    ('category = "Referral with contact permission"', {"category_id": 6}, True),
    ('category = "Referral with contact"', {"category_id": 6}, True),
    ('category = "Referral with contact permission"', {"category_id": 7}, False),
    ('category = "Known Placements"', {"category_id": 8}, True),
    ('category = ["In Person Visit Request", 3]', {"category_id": 3}, True),
    ('category = ["In Person Visit Request", 3]', {"category_id": 2}, True),
    ('category = ["In Person Visit Request", 3]', {"category_id": 4}, False),
    ("category = 9", {"category": {"id": 9, "name": "Brochure Request"}}, True),
    # service: by id or by the name of a home in the file
    ("service = 100000", {"service_id": 100000}, True),
    ("service = 100000", {"service_id": 200000}, False),
    ('service = "Rose Lodge"', {"service_id": 100000}, True),
    ('service = "rose lodge"', {"service_id": 100000}, True),
    ('service = "Rose Lodge"', {"service_id": 200000}, False),
    ('service = ["Willow House", 999]', {"service_id": 999}, True),
    # postcode: area, outward code, prefix
    ('postcode = "SW"', {"postcode": "SW1A 1AA"}, True),
    ('postcode = "S"', {"postcode": "SW1A 1AA"}, False),
    ('postcode = "S"', {"postcode": "S1 2AB"}, True),
    ('postcode = "SW1A"', {"postcode": "SW1A 1AA"}, True),
    ('postcode = "SW1"', {"postcode": "SW1A 1AA"}, False),
    ('postcode = "SW1A 1"', {"postcode": "SW1A 1AA"}, True),
    ('postcode = "SW1A 2"', {"postcode": "SW1A 1AA"}, False),
    ('postcode = "SW1A 1"', {"postcode": "SW1A1AA"}, True),
    ('postcode = "SW1A"', {"postcode": "SW1A1AA"}, True),
    ('postcode = "sw1a"', {"postcode": " sw1a 1aa "}, True),
    ('postcode = "M"', {"postcode": "M20 2LS"}, True),
    ('postcode = "M2"', {"postcode": "M20 2LS"}, False),
    ('postcode = ["LS", "M"]', {"postcode": "LS6 2AA"}, True),
    ('postcode = "SW"', {"postcode": ""}, False),
    # home.<attribute>
    ('home.region = "London"', {"service_id": 100000}, True),
    ('home.region = "London"', {"service_id": 200000}, False),
    ('home.region = "  london "', {"service_id": 100000}, True),
    ('home.region = ["North West", "Yorkshire"]', {"service_id": 200000}, True),
    ('home.region = "London"', {"service_id": 999}, False),
    # funding, timescales, on_behalf_of: any of the lead's values
    ('funding = "Part Buy, Part Rent"', {"funding": "['Part Buy, Part Rent']"}, True),
    ('funding = "Part Buy, Part Rent"', {"funding": "['Part Buy']"}, False),
    ('funding = "Part Buy"', {"funding": "['Part Buy, Part Rent']"}, False),
    ('funding = "Self Funding"', {"funding": "['Self Funding']"}, True),
    ('funding = ["Buy", "Rent"]', {"funding": "['Either Buy or Rent', 'Rent']"}, True),
    ('funding = "Top-up"', {"funding": None}, False),
    ('timescales = "ASAP"', {"timescales": "['ASAP']"}, True),
    ('timescales = ["Emergency", "asap"]', {"timescales": "['ASAP']"}, True),
    ('timescales = "ASAP"', {"timescales": "['2-4 weeks']"}, False),
    ('timescales = "ASAP"', {"timescales": None}, False),
    ('on_behalf_of = "Myself"', {"onBehalfOf": "['Myself']"}, True),
    ('on_behalf_of = "Myself"', {"onBehalfOf": "['Family member']"}, False),
    ('on_behalf_of = "family member"', {"onBehalfOf": "['Family  Member']"}, True),
    # anonymised
    ("anonymised = true", {"isAnonymised": True}, True),
    ("anonymised = true", {"isAnonymised": False}, False),
    ("anonymised = false", {"isAnonymised": False}, True),
    ("anonymised = false", {"isAnonymised": "true"}, False),
    # content: whole words and phrases, ignoring case
    ('content = "dementia"', {"content": "my mother has vascular dementia."}, True),
    ('content = "dementia"', {"content": "DEMENTIA care"}, True),
    ('content = "fall"', {"content": "she has fallen twice"}, False),
    ('content = "fall"', {"content": "after a fall last week"}, True),
    ('content = "fall"', {"content": "Fall."}, True),
    ('content = "fall"', {"content": "a pitfall"}, False),
    ('content = "end of life"', {"content": "End of life care, please"}, True),
    ('content = "end of life"', {"content": "the end of my life savings"}, False),
    ('content = "end of life"', {"content": "near the end of\nlife"}, True),
    ('content = "end of life"', {"content": "near the end  of life"}, True),
    ('content = ["dementia", "alzheimer\'s"]', {"content": "Mum has Alzheimer's."}, True),
    ('content = ["dementia", "alzheimer\'s"]', {"content": "Mum has arthritis."}, False),
    ('content = "c++"', {"content": "he codes in C++ still"}, True),
    ('content = "dementia"', {"content": None}, False),
    # content_regex: case-insensitive regular expressions
    ('content_regex = "call (me|us) back"', {"content": "Please CALL US BACK today"}, True),
    ('content_regex = "call (me|us) back"', {"content": "no calls please"}, False),
    ('content_regex = "\\\\b0?7\\\\d{3} ?\\\\d{6}\\\\b"', {"content": "ring 07700 900123"}, True),
    ('content_regex = ["^urgent", "asap$"]', {"content": "we need a room asap"}, True),
    # account
    ('account = "north"', {"account": "north"}, True),
    ('account = "North"', {"account": "north"}, True),
    ('account = "north"', {"account": "south"}, False),
    ('account = ["south", "north"]', {"account": "north"}, True),
    # several keys: all of them
    ('category = 4, home.region = "London"', {"category_id": 4, "service_id": 100000}, True),
    ('category = 4, home.region = "London"', {"category_id": 4, "service_id": 200000}, False),
    ('category = 4, home.region = "London"', {"category_id": 1, "service_id": 100000}, False),
    (
        'category = [2, 3], content = "dementia", postcode = "SW"',
        {"category_id": 3, "content": "vascular dementia", "postcode": "SW1A 1AA"},
        True,
    ),
    (
        'category = [2, 3], content = "dementia", postcode = "SW"',
        {"category_id": 3, "content": "vascular dementia", "postcode": "M20 2LS"},
        False,
    ),
]


@pytest.mark.parametrize(
    ("when", "changes", "matches"), CONDITIONS, ids=[f"{w} | {c} -> {m}" for w, c, m in CONDITIONS]
)
def test_each_condition_matches_as_documented(
    tmp_path: Path, when: str, changes: dict[str, Any], matches: bool
) -> None:
    config = config_with(
        tmp_path,
        f"""
[[rules]]
name = "the rule"
when = {{ {when} }}
notify = ["hit"]
""",
    )
    routing = route(lead(**changes), config)
    assert ("slack:#hit" in keys(routing)) is matches, routing.results[0].reasons
    assert routing.results[0].matched is matches
    assert routing.unrouted is not matches


def test_a_rule_without_when_matches_every_lead(tmp_path: Path) -> None:
    config = config_with(tmp_path, '[[rules]]\nname = "all"\nnotify = ["hit"]\n')
    for changes in ({}, {"category_id": 9}, {"service_id": 999}, {"isAnonymised": True}):
        routing = route(lead(**changes), config)
        assert "slack:#hit" in keys(routing)
        assert routing.results[0].reasons == ["no conditions: matches every lead"]


@pytest.mark.parametrize(
    ("postcode", "wanted", "matches"),
    [
        ("SW1A 1AA", "SW", True),
        ("SW1A 1AA", "S", False),
        ("S1 2AB", "S", True),
        ("S12AB", "S1", True),
        ("SW1A 1AA", "SW1A", True),
        ("SW1A1AA", "SW1A 1", True),
        ("W1A 0AX", "W", True),
        ("W1A0AX", "W1A", True),
        ("EC1A 1BB", "E", False),
        ("", "SW", False),
    ],
)
def test_postcode_matches_areas_outward_codes_and_prefixes(
    postcode: str, wanted: str, matches: bool
) -> None:
    assert postcode_matches(postcode, wanted) is matches


def test_reasons_explain_why_a_rule_failed(tmp_path: Path) -> None:
    config = config_with(
        tmp_path,
        """
[[rules]]
name = "call-backs in London"
when = { category = "Call Back Request", home.region = "London" }
notify = ["hit"]
""",
    )
    routing = route(lead(category_id=4, service_id=200000), config)
    (result,) = routing.results
    assert not result.matched
    assert len(result.reasons) == 1 and "home.region" in result.reasons[0]
    assert "North West" in result.reasons[0]


# --- how rules fire -----------------------------------------------------------------------------


def test_every_matching_rule_fires(tmp_path: Path) -> None:
    config = config_with(
        tmp_path,
        """
[[rules]]
name = "call-backs to sales"
when = { category = 4 }
notify = ["sales"]

[[rules]]
name = "visits to the hit channel"
when = { category = 2 }
notify = ["hit"]

[[rules]]
name = "everything to the group"
notify = ["group-leads"]
""",
    )
    routing = route(lead(category_id=4), config)
    assert keys(routing) == ["email:sales@rosecare.example", "slack:#group-leads"]
    assert routing.reached_by == {
        "email:sales@rosecare.example": ["call-backs to sales"],
        "slack:#group-leads": ["everything to the group"],
    }
    assert [r.matched for r in routing.results] == [True, False, True]
    assert routing.unrouted is False and routing.urgent is False and routing.notes == []


def test_stop_ends_evaluation(tmp_path: Path) -> None:
    config = config_with(
        tmp_path,
        """
[[rules]]
name = "visits stop here"
when = { category = 2 }
notify = ["hit"]
stop = true

[[rules]]
name = "after the stop"
notify = ["late"]
urgent = true
""",
    )
    stopped = route(lead(category_id=2), config)
    assert keys(stopped) == ["slack:#hit"]
    assert len(stopped.results) == 1 and stopped.urgent is False

    passed = route(lead(category_id=1), config)  # stop only counts on a rule that matched
    assert keys(passed) == ["slack:#late"]
    assert [r.matched for r in passed.results] == [False, True] and passed.urgent is True


def test_a_target_reached_by_two_rules_gets_one_message(tmp_path: Path) -> None:
    config = config_with(
        tmp_path,
        """
[[rules]]
name = "call-backs"
when = { category = 4 }
notify = ["group-leads", "home.manager_email"]

[[rules]]
name = "everything"
notify = ["group-leads", "home.manager_email", "group-leads"]
""",
    )
    routing = route(lead(category_id=4), config)
    assert keys(routing) == ["slack:#group-leads", "email:amira.khan@rosecare.example"]
    assert routing.reached_by["slack:#group-leads"] == ["call-backs", "everything", "everything"]
    assert set(routing.reached_by["email:amira.khan@rosecare.example"]) == {
        "call-backs",
        "everything",
    }


def test_a_home_attribute_and_a_destination_naming_one_channel_are_one_target(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        BASE_TOML.replace('slack = "#rose-lodge"', 'slack = "#group-leads"')
        + """
[[rules]]
name = "to the home"
notify = ["home.slack"]
[[rules]]
name = "to the group"
notify = ["group-leads"]
""",
        encoding="utf-8",
    )
    routing = route(lead(service_id=100000), load_config(path))
    assert keys(routing) == ["slack:#group-leads"]
    assert routing.reached_by["slack:#group-leads"] == ["to the home", "to the group"]


@pytest.mark.parametrize(("category", "urgent"), [(4, True), (1, False)])
def test_urgent_comes_from_any_matching_rule(tmp_path: Path, category: int, urgent: bool) -> None:
    config = config_with(
        tmp_path,
        """
[[rules]]
name = "everything"
notify = ["group-leads"]

[[rules]]
name = "call-backs are urgent"
when = { category = 4 }
notify = ["group-leads"]
urgent = true

[[rules]]
name = "never matches but urgent"
when = { category = 8 }
notify = ["sales"]
urgent = true
""",
    )
    routing = route(lead(category_id=category), config)
    assert routing.urgent is urgent
    assert keys(routing) == ["slack:#group-leads"]


def test_a_lead_no_rule_routes_goes_to_the_fallback_flagged_unrouted(tmp_path: Path) -> None:
    config = config_with(
        tmp_path,
        """
[[rules]]
name = "call-backs only"
when = { category = 4 }
notify = ["sales"]
urgent = true
""",
    )
    routing = route(lead(category_id=1), config)
    assert keys(routing) == ["slack:#group-leads"]
    assert routing.unrouted is True and routing.urgent is False
    assert routing.reached_by["slack:#group-leads"][0].startswith("fallback")
    assert routing.notes == []


def test_a_lead_for_a_home_not_in_the_file_reaches_the_fallback_and_other_destinations(
    tmp_path: Path,
) -> None:
    config = config_with(
        tmp_path,
        """
[[rules]]
name = "call-backs"
when = { category = 4 }
notify = ["home.slack", "home.manager_email", "sales"]
""",
    )
    routing = route(lead(category_id=4, service_id=424242), config)
    assert keys(routing) == ["email:sales@rosecare.example", "slack:#group-leads"]
    assert routing.reached_by["slack:#group-leads"] == ["fallback: unknown home"]
    assert routing.unrouted is False
    (note,) = routing.notes
    assert "[homes.424242]" in note and "Example Service Name" in note


def test_a_lead_for_an_unknown_home_that_only_home_rules_match_is_unrouted(tmp_path: Path) -> None:
    config = config_with(tmp_path, '[[rules]]\nname = "home"\nnotify = ["home.slack"]\n')
    routing = route(lead(service_id=424242), config)
    assert keys(routing) == ["slack:#group-leads"]
    assert routing.unrouted is True
    assert any("[homes.424242]" in note for note in routing.notes)


def test_a_lead_without_a_service_id_gets_a_note_that_makes_sense(tmp_path: Path) -> None:
    config = config_with(tmp_path, '[[rules]]\nname = "home"\nnotify = ["home.slack"]\n')
    routing = route(lead(service={"name": "Mystery Home"}), config)
    assert keys(routing) == ["slack:#group-leads"]
    assert routing.notes, "the admin should hear that the lead names no home"
    assert "[homes.None]" not in " ".join(routing.notes)


def test_a_home_without_the_attribute_a_rule_names_is_noted_not_a_crash(tmp_path: Path) -> None:
    config = config_with(
        tmp_path,
        """
[[rules]]
name = "call the manager"
notify = ["home.manager_email", "home.manager_slack", "sales"]
""",
    )
    routing = route(lead(service_id=200000), config)  # Willow House has no manager attributes
    assert keys(routing) == ["email:sales@rosecare.example"]
    assert routing.unrouted is False
    assert len(routing.notes) == 2
    assert "Willow House has no manager_email" in routing.notes[0]
    assert "call the manager" in routing.notes[0]
    assert "manager_slack" in routing.notes[1]


def test_a_rule_that_reaches_nobody_leaves_the_lead_unrouted(tmp_path: Path) -> None:
    config = config_with(tmp_path, '[[rules]]\nname = "m"\nnotify = ["home.manager_email"]\n')
    routing = route(lead(service_id=200000), config)
    assert keys(routing) == ["slack:#group-leads"]
    assert routing.unrouted is True
    assert routing.reached_by["slack:#group-leads"][0].startswith("fallback")


# --- the example rules.toml ---------------------------------------------------------------------


ROSE_SLACK, ROSE_MANAGER = "slack:#rose-lodge", "slack:U024BE7LH"
ROSE_EMAIL, SALES = "email:amira.khan@rosecare.example", "email:sales@rosecare.example"
WILLOW_SLACK, GROUP = "slack:#willow-house", "slack:#group-leads"

EXAMPLE_ROUTES = [
    ("1-contact-form-message.json", [GROUP], False),
    ("2-in-person-visit-request.json", [ROSE_SLACK, ROSE_MANAGER, GROUP], False),
    ("3-virtual-visit-request.json", [ROSE_SLACK, ROSE_MANAGER, GROUP], False),
    ("4-call-back-request.json", [ROSE_SLACK, ROSE_EMAIL, SALES, GROUP], True),
    ("5-email-details-request.json", [GROUP], False),
    ("6-referral-with-contact.json", [WILLOW_SLACK, SALES, GROUP], False),
    ("7-referral-without-contact.json", [WILLOW_SLACK, SALES, GROUP], False),
    ("8-placement.json", [WILLOW_SLACK, SALES, GROUP], False),
]


@pytest.fixture(scope="module")
def example() -> Config:
    return load_config(ROOT / "rules.toml")


def published(name: str) -> Lead:
    (only,) = parse_body((PUBLISHED / name).read_text(encoding="utf-8"), "default").leads
    return only


@pytest.mark.parametrize(
    ("name", "targets", "urgent"), EXAMPLE_ROUTES, ids=[row[0] for row in EXAMPLE_ROUTES]
)
def test_the_example_rules_route_each_published_lead(
    example: Config, name: str, targets: list[str], urgent: bool
) -> None:
    routing = route(published(name), example)
    assert keys(routing) == targets
    assert routing.urgent is urgent
    assert routing.unrouted is False
    assert routing.notes == []
    assert routing.reached_by[GROUP] == ["Everything goes to the group channel"]


def test_the_example_sends_visit_requests_to_the_home_and_its_manager(example: Config) -> None:
    routing = route(published("2-in-person-visit-request.json"), example)
    for key in (ROSE_SLACK, ROSE_MANAGER):
        assert routing.reached_by[key] == ["Visit requests ping the home manager"]


def test_the_example_makes_call_backs_urgent_for_the_manager_and_sales(example: Config) -> None:
    routing = route(published("4-call-back-request.json"), example)
    for key in (ROSE_SLACK, ROSE_EMAIL, SALES):
        assert routing.reached_by[key] == ["Call-back requests are urgent"]


def test_the_example_sends_dementia_in_the_north_west_to_the_regional_team(example: Config) -> None:
    data = json.loads((PUBLISHED / "2-in-person-visit-request.json").read_text())
    data["service"]["id"] = 200000  # "vascular dementia", now at Willow House (North West)
    routing = route(parse_lead(data, "default"), example)
    assert keys(routing) == [WILLOW_SLACK, "slack:U024BE7LJ", "teams:TEAMS_NORTH_WEBHOOK", GROUP]
    north = next(t for t in routing.targets if t.key == "teams:TEAMS_NORTH_WEBHOOK")
    assert north.privacy == "minimal"


def test_the_example_makes_asap_leads_urgent_for_the_manager(example: Config) -> None:
    data = json.loads((PUBLISHED / "5-email-details-request.json").read_text())
    data["service"]["id"] = 300000
    data["timescales"] = "['ASAP']"
    routing = route(parse_lead(data, "default"), example)
    assert routing.urgent is True
    assert keys(routing) == ["email:priya.patel@rosecare.example", GROUP]
    assert routing.reached_by["email:priya.patel@rosecare.example"] == [
        "Emergencies are urgent too"
    ]


def test_the_example_sends_a_lead_for_an_unlisted_home_to_the_group_with_a_note(
    example: Config,
) -> None:
    data = json.loads(
        (PUBLISHED / "4-call-back-request.json")
        .read_text()
        .replace("“['Family member']”", "\"['Family member']\"")
    )
    data["service"]["id"] = 999999
    routing = route(parse_lead(data, "default"), example)
    assert keys(routing) == [SALES, GROUP]
    assert routing.urgent is True
    assert routing.reached_by[GROUP] == [
        "Everything goes to the group channel",
        "fallback: unknown home",
    ]
    assert any("[homes.999999]" in note for note in routing.notes)
