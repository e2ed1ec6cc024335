"""The benchmarks' data: a care group of 50 homes with 20 realistic rules, and leads shaped like
Autumna's (its quirks included), generated from a seed so every run measures the same work.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

TOKEN = "xoxb-4242424242-1717171717-BenchBenchBenchBench"
SENDER = "leads@rosecare.example"
ACCOUNT = "default"

FIRST = ("Rose", "Willow", "Oak", "Beech", "Cedar", "Maple", "Elm", "Ash", "Birch", "Holly")
SECOND = ("Lodge", "House", "Manor", "Court", "Grange")
REGIONS: dict[str, tuple[str, ...]] = {
    "London": ("SW1A 1AA", "N1 9GU", "SE10 8XJ", "E14 5AB", "W2 3QX", "NW3 2QG"),
    "South East": ("BN1 1AA", "GU1 3AA", "RH10 1AA", "CT1 2AA"),
    "Midlands": ("B15 2TT", "NG7 2RD", "LE1 5WW", "CV1 2AA"),
    "North West": ("M20 2LS", "L1 8JQ", "PR1 2HE", "WA1 1AA"),
    "Yorkshire": ("LS6 2AA", "S10 2TN", "YO1 7HH", "HG1 1AA"),
    "South West": ("BS8 1TH", "EX4 4QJ", "BA1 1AA", "TR1 2AA"),
}
TEAMS_VARS = (
    "TEAMS_LONDON_WEBHOOK",
    "TEAMS_NORTH_WEBHOOK",
    "TEAMS_MIDLANDS_WEBHOOK",
    "TEAMS_OPS_WEBHOOK",
)


def homes() -> list[dict[str, Any]]:
    """50 homes: name, region, postcode, a Slack channel, a manager on Slack and by email."""
    found = []
    regions = list(REGIONS)
    for i, (a, b) in enumerate((a, b) for b in SECOND for a in FIRST):
        region = regions[i % len(regions)]
        codes = REGIONS[region]
        slug = f"{a}-{b}".lower()
        found.append(
            {
                "id": 400100 + i,
                "name": f"{a} {b}",
                "region": region,
                "postcode": codes[i % len(codes)],
                "slack": f"#{slug}",
                "manager_slack": f"U0HOME{i:03d}",
                "manager_email": f"manager.{slug}@rosecare.example",
                "beds": 30 + (i * 7) % 60,
            }
        )
    return found


RULES = """
[[rules]]
name = "Test leads from Autumna's staff stop here"
when = { content_regex = "^\\\\s*test lead\\\\b" }
notify = ["ops-teams"]
stop = true

[[rules]]
name = "Visit requests ping the home and its manager"
when = { category = ["In Person Visit Request", "Virtual Visit Request"] }
notify = ["home.slack", "home.manager_slack"]

[[rules]]
name = "Call-back requests are urgent"
when = { category = "Call Back Request" }
notify = ["home.slack", "home.manager_email", "sales-inbox"]
urgent = true

[[rules]]
name = "Emergencies are urgent too"
when = { timescales = ["Emergency", "ASAP"] }
notify = ["home.manager_email"]
urgent = true

[[rules]]
name = "Referrals and placements go to the home and sales"
when = { category = [6, 7, 8] }
notify = ["home.slack", "sales-inbox"]

[[rules]]
name = "Contact form messages go to the home"
when = { category = "Contact Form Message" }
notify = ["home.slack"]

[[rules]]
name = "Email details requests go to the manager"
when = { category = 5 }
notify = ["home.manager_email"]

[[rules]]
name = "Dementia enquiries in the north reach the regional team"
when = { home.region = ["North West", "Yorkshire"], content = ["dementia", "alzheimer's"] }
notify = ["north-teams"]

[[rules]]
name = "London homes report to the London team"
when = { postcode = ["SW", "N", "SE", "E", "W", "NW"], category = [2, 3, 4, 6, 8] }
notify = ["london-teams"]

[[rules]]
name = "Midlands homes report to the Midlands team"
when = { home.region = "Midlands", category = [2, 3, 4, 8] }
notify = ["midlands-teams"]

[[rules]]
name = "Self-funders who want to buy go to the sales channel"
when = { funding = "Buy", category = [1, 4, 5] }
notify = ["sales-slack"]

[[rules]]
name = "Council and NHS funding goes to the funding team"
notify = ["funding-inbox"]
[rules.when]
funding = ["Local Authority with Top-up", "NHS Continuing Healthcare"]
category = [6, 7, 8]

[[rules]]
name = "Nursing needs reach the clinical lead"
when = { content_regex = "\\\\bnurs(e|es|ing)\\\\b|\\\\bpeg\\\\b|catheter|pressure sore" }
notify = ["clinical-slack"]

[[rules]]
name = "End of life care is urgent for the clinical lead"
when = { content = ["end of life", "palliative", "hospice"] }
notify = ["clinical-inbox"]
urgent = true

[[rules]]
name = "Respite stays go to the home"
when = { content = ["respite", "short stay", "short-term"] }
notify = ["home.slack"]

[[rules]]
name = "People enquiring for themselves get the manager's attention"
when = { on_behalf_of = "Myself", category = [1, 2, 3, 4] }
notify = ["home.manager_slack"]

[[rules]]
name = "Long timescales go to the nurture inbox"
when = { timescales = ["6-12 months", "Over 12 months"] }
notify = ["nurture-inbox"]

[[rules]]
name = "Flagship homes copy the operations director"
when = { service = ["Rose Lodge", "Oak Manor", "Cedar Court"] }
notify = ["director-email"]

[[rules]]
name = "Anonymised leads go to the group channel only"
when = { anonymised = true }
notify = ["group-leads"]
stop = true

[[rules]]
name = "Everything goes to the group channel"
notify = ["group-leads"]
"""


def rules_toml(email_host: str = "127.0.0.1", email_port: int = 2525) -> str:
    """rules.toml for the 50 homes: 10 shared destinations and 20 rules."""
    lines = [
        "[group]",
        'name = "Rose Care Homes"',
        'timezone = "Europe/London"',
        'lead_url = "https://crm.rosecare.example/leads/{category_id}/{lead_id}"',
        "",
        "[polling]",
        'interval = "1m"',
        'overlap = "15m"',
        'lookback = "24h"',
        'history = "30d"',
        "",
        "[email]",
        f'host = "{email_host}"',
        f"port = {email_port}",
        f'sender = "Rose Care leads <{SENDER}>"',
        'tls = "none"',
        "",
        "[routing]",
        'fallback = "group-leads"',
        'ops = "ops-teams"',
        "",
    ]
    for home in homes():
        lines.append(f"[homes.{home['id']}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in home.items() if k != "id"]
        lines.append("")
    lines += [
        "[destinations]",
        'group-leads = { slack = "#group-leads" }',
        'sales-slack = { slack = "#sales" }',
        'clinical-slack = { slack = "#clinical" }',
        'sales-inbox = { email = ["sales@rosecare.example"] }',
        'funding-inbox = { email = ["funding@rosecare.example"] }',
        'clinical-inbox = { email = ["clinical.lead@rosecare.example"] }',
        'nurture-inbox = { email = ["nurture@rosecare.example"] }',
        'director-email = { email = ["ops.director@rosecare.example"] }',
        'london-teams = { teams = "${TEAMS_LONDON_WEBHOOK}", privacy = "minimal" }',
        'north-teams = { teams = "${TEAMS_NORTH_WEBHOOK}", privacy = "minimal" }',
        'midlands-teams = { teams = "${TEAMS_MIDLANDS_WEBHOOK}", privacy = "minimal" }',
        'ops-teams = { teams = "${TEAMS_OPS_WEBHOOK}", privacy = "minimal" }',
        "",
    ]
    return "\n".join(lines) + RULES


def write_rules(folder: Path, **kwargs: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rules.toml"
    path.write_text(rules_toml(**kwargs), encoding="utf-8")
    return path


# --- leads -------------------------------------------------------------------------------

CATEGORIES = {
    1: "Contact Form Message",
    2: "In Person Visit Request",
    3: "Virtual Visit Request",
    4: "Call Back Request",
    5: "Email Details Request",
    6: "Referral with contact",
    7: "Referral without contact",
    8: "Placement",
}
CATEGORY_WEIGHTS = (22, 20, 8, 18, 10, 10, 6, 6)
FIRST_NAMES = (
    "Sarah",
    "Gareth",
    "Priya",
    "Maureen",
    "Tom",
    "Aisha",
    "David",
    "Eleanor",
    "Mohammed",
    "Grace",
    "Oliver",
    "Siobhan",
    "Chen",
    "Fatima",
    "James",
    "Olu",
)
SURNAMES = (
    "Okafor",
    "Hughes",
    "Nair",
    "Brennan",
    "Reid",
    "Khan",
    "Smith",
    "Jones",
    "Williams",
    "Taylor",
    "Davies",
    "Evans",
    "Wilson",
    "Patel",
    "Murphy",
    "Clarke",
)
SENTENCES = (
    "My father has Parkinson's and is finding the stairs at home very hard.",
    "Mum is being discharged from hospital next week and cannot go home alone.",
    "Do you offer two weeks of respite care in August while we are away?",
    "We are looking for nursing care close to family for my husband.",
    "My mother has dementia and has started wandering at night; we are worried.",
    "Could you tell me your weekly fees for a single room with an en-suite?",
    "She needs help with a catheter and has a pressure sore that is healing slowly.",
    "He was diagnosed with Alzheimer's two years ago and his needs have grown.",
    "We would like a short stay first to see whether she settles.",
    "Is there a garden she can use? She loved gardening all her life.",
    "The hospice team suggested we look for end of life care nearer home.",
    "My aunt is 91 and fairly independent but lonely since my uncle died.",
    "Please call me after 5pm, I work shifts at the hospital.",
    "Do you accept council funding with a top-up from the family?",
    "He is fed through a PEG and needs nurses who are trained for that.",
    "We visited last year and liked the staff very much.",
    "Can residents bring their cat? It would mean the world to her.",
    "I am looking for a retirement flat for myself, ideally ground floor.",
    "Please send me your brochure and the current availability.",
    "She is registered blind and needs a calm, familiar routine.",
)
FUNDING = (
    "Self Funding",
    "Local Authority with Top-up",
    "NHS Continuing Healthcare",
    "Not Sure",
    "Buy",
    "Rent",
    "Part Buy, Part Rent",
)
TIMESCALES = (
    "Emergency",
    "ASAP",
    "2-4 weeks",
    "1-3 months",
    "3-6 months",
    "6-12 months",
    "Over 12 months",
    "Not Sure",
)
ON_BEHALF = ("Family member", "Myself", "Friend", "Professional")


def lead_record(
    rng: random.Random, lead_id: int, when: datetime, home_list: list[dict[str, Any]]
) -> dict[str, Any]:
    """One lead as Autumna sends it: Python-list strings, padded values, odd types now and then."""
    cid = rng.choices(list(CATEGORIES), CATEGORY_WEIGHTS)[0]
    home: dict[str, Any] = (
        rng.choice(home_list)
        if rng.random() > 0.02
        else {"id": 990000 + rng.randrange(100), "name": "Unlisted Home", "postcode": "ZE1 0AA"}
    )
    first, surname = rng.choice(FIRST_NAMES), rng.choice(SURNAMES)
    anonymised = rng.random() < 0.05
    words = " ".join(rng.sample(SENTENCES, rng.choice((1, 2, 2, 3, 3, 4))))
    if rng.random() < 0.01:
        words = "Test lead, please ignore. " + words
    if rng.random() < 0.01:
        words = (words + " ") * 12  # a long message, now and then
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{rng.randrange(1000):03d}Z" if rng.random() < 0.7 else "Z"
    )
    specific: dict[str, Any] = {"instruction": "Please confirm directly with requester"}
    if cid in (2, 3):
        specific.update(
            visitDate=(when + timedelta(days=rng.randrange(1, 9))).strftime("%Y-%m-%d"),
            visitTime=rng.choice(("Morning", "Afternoon, after 2pm", "11:00")),
        )
    if cid in (6, 7):
        specific.update(
            instruction="Permission to contact the enquirer has been granted.  Please check "
            "methods granted."
            if cid == 6
            else "No permission to contact.",
            emailPermission=cid == 6 and rng.random() < 0.7,
            phonePermission=cid == 6 and rng.random() < 0.8,
            budgetType=rng.choice(("Weekly Budget", "Purchase")),
            budgetMin=rng.choice((900, "1,100", 1200)),
            budgetMax=rng.choice((1500, "£1,800")),
        )
    record: dict[str, Any] = {
        "id": lead_id if rng.random() > 0.05 else str(lead_id),
        "category": {"id": cid, "name": CATEGORIES[cid]},
        "service": {
            "id": home["id"],
            "name": " " * rng.randrange(2) + home["name"],
            "postcode": home["postcode"],
        },
        "to": f"{home['name'].lower().replace(' ', '.')}@rosecare.example",
        "from": f" {first.lower()}.{surname.lower()}@example.com" + " " * rng.randrange(2),
        "date": stamp,
        "content": words,
        "enquirerFirstName": first,
        "enquirerSurname": surname,
        "onBehalfOf": f"['{rng.choice(ON_BEHALF)}']",
        "residentFirstName": rng.choice(FIRST_NAMES) if rng.random() > 0.2 else None,
        "residentSurname": surname if rng.random() > 0.2 else None,
        "telephone": f"07700 9{rng.randrange(100000):05d}",
        "isAnonymised": anonymised if rng.random() > 0.1 else str(anonymised).lower(),
        "funding": str(rng.sample(FUNDING, rng.choice((1, 1, 2)))),
        "timescales": f"['{rng.choice(TIMESCALES)}']",
        "categorySpecificData": specific,
    }
    if rng.random() < 0.03:
        record["sourcePage"] = "https://www.autumna.co.uk/care-homes/example"  # unknown field
    return record


def lead_documents(
    count: int,
    now: datetime,
    seed: int = 7,
    first_id: int = 500000,
    span: timedelta = timedelta(hours=20),
) -> list[str]:
    """`count` leads as JSON texts, dated evenly over `span` before `now`, oldest first."""
    rng = random.Random(seed)
    home_list = homes()
    step = span / max(1, count)
    return [
        json.dumps(
            lead_record(rng, first_id + i, now - span + step * i, home_list), ensure_ascii=False
        )
        for i in range(count)
    ]


def body(documents: list[str]) -> str:
    """The documents as one Autumna response: a bare array."""
    return "[" + ",\n".join(documents) + "]"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
