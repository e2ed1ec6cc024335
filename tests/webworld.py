"""The console's test world, shared by tests/test_web.py and tests/test_web_browser.py: a
database with three leads in known states (one unclaimed with a dead email and an escalation,
one unclaimed with nothing sent yet, one claimed in Slack), the family's details made
distinctive so a test can look for them, and the console over that database with a clock and a
stand-in for the run loop.
"""

from __future__ import annotations

import re
import sqlite3
import time
import warnings
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():  # Starlette would rather have httpx's fork, httpx2: httpx works
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from bot import escalation, jsontext
from bot.config import Config
from bot.loader import load_config
from bot.models import Channel
from bot.parse import parse_lead
from bot.poller import Poller
from bot.schedule import Calendar
from bot.settings import Settings
from bot.store import Store
from bot.web import create_app

LONDON = ZoneInfo("Europe/London")
PUBLISHED = Path(__file__).resolve().parent.parent / "bot" / "demo" / "published"
PASSWORD = "correct horse battery staple"
SECRET = "9f2c4e1a7b3d5f60a8c2e4b6d8f0a1c3"
PUBLIC = "https://leads.rosecare.example"

RULES = """
[group]
name = "Rose Care Homes"
timezone = "Europe/London"

[polling]
alert_after = "10m"

[routing]
fallback = "group-leads"

[homes.100000]
name = "Rose Lodge"
slack = "#rose-lodge"
manager_email = "amira.khan@rosecare.example"

[homes.200000]
name = "Willow House"
slack = "#willow-house"

[destinations]
group-leads = { slack = "#group-leads" }
group-teams = { teams = "${TEAMS_GROUP_WEBHOOK}" }

[web]
public_url = "https://leads.rosecare.example"

[[rules]]
name = "Call-backs are urgent"
when = { category = "Call Back Request" }
notify = ["home.slack", "home.manager_email", "group-teams"]
urgent = true
escalate = [{ after = "15m", notify = ["group-leads"] }]

[[rules]]
name = "Everything else to the home"
notify = ["home.slack"]
"""

# The family's details: none of them may appear on a page at privacy.web = "minimal".
PERSONAL = {
    "enquirerFirstName": "Philippa",
    "enquirerSurname": "Quartermaine",
    "residentFirstName": "Ottoline",
    "residentSurname": "Fairweather",
    "telephone": "07700 900123",
    "from": "philippa.q@example.net",
    "content": "Mum needs nursing care after a fall in Penzance",
}
PERSONAL_WORDS = ("Philippa", "Quartermaine", "Ottoline", "Fairweather", "900123", "example.net",
                  "Penzance")  # fmt: skip


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON).timestamp()


T0 = float(int(time.time()) // 60 * 60)  # now: claim links in messages expire from now


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Loop:
    """What the console reads of the run loop."""

    heartbeat: float = 0.0
    poll_seconds: list[float] = field(default_factory=list)


def record(category: int, name: str, lead_id: int, service: int, arrived: float) -> Any:
    published = next(PUBLISHED.glob(f"{category}-*.json"))
    data = jsontext.loads(published.read_text(encoding="utf-8"))
    data["id"], data["service"]["id"] = lead_id, service
    data["date"] = datetime.fromtimestamp(arrived, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    data.update(PERSONAL)
    return data


@dataclass
class Console:
    """A database with a few leads in known states, and the console over it."""

    folder: Path
    config: Config
    store: Store
    clock: Clock
    loop: Loop
    keys: dict[str, str]  # name -> lead key
    settings: Settings = field(
        default_factory=lambda: Settings(
            demo=False, autumna_url="", api_keys={}, web_password=PASSWORD, web_secret=SECRET
        )
    )

    def app(self, **settings: Any) -> Any:
        return create_app(
            self.config,
            replace(self.settings, **settings),
            self.folder / "leadbot.db",
            runner=self.loop,
            clock=self.clock,
        )

    def client(self, **settings: Any) -> TestClient:
        return TestClient(self.app(**settings), follow_redirects=False)

    def logged_in(self, **settings: Any) -> TestClient:
        client = self.client(**settings)
        page = client.get("/login")
        answer = client.post(
            "/login", data={"csrf": csrf(page.text), "password": PASSWORD, "next": "/"}
        )
        assert answer.status_code == 303, answer.text
        return client

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.folder / "leadbot.db")
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    def delivery(self, key: str, channel: str) -> tuple[Any, ...]:
        (row,) = self.query(
            "SELECT id, status, attempts FROM deliveries WHERE subject = ? AND channel = ?",
            key,
            channel,
        )
        return row


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:2000]
    return found[1]


def build(folder: Path, rules: str = RULES) -> Console:
    """Three leads: a call-back two hours old (Slack and Teams sent, its email dead, escalated),
    a visit request an hour old (nothing sent yet), and a call-back claimed in Slack."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rules.toml").write_text(rules, encoding="utf-8")
    config = load_config(folder / "rules.toml")
    store = Store(folder / "leadbot.db")
    poller = Poller(None, {}, store, config)  # type: ignore[arg-type]  # nothing is polled here
    keys = {}
    for name, (category, lead_id, service, age) in {
        "callback": (4, 2001, 100000, 7200.0),
        "visit": (2, 1811, 200000, 3600.0),
        "claimed": (4, 2002, 100000, 10800.0),
    }.items():
        seen = T0 - age
        lead = parse_lead(record(category, "", lead_id, service, seen - 30), "default")
        store.add_leads([poller.routed(lead, seen)], [], seen)
        keys[name] = lead.key
    for d in store.deliveries_of([keys["callback"], keys["claimed"]]):
        store.claim(d.id, d.created_at + 2)
        if d.target.channel is Channel.EMAIL and d.subject == keys["callback"]:
            store.mark_failed(d.id, "SMTP 550 from the mail server: no such mailbox", None)
        else:
            store.mark_sent(d.id, d.created_at + 5)
    store.claim_lead(keys["claimed"], "Amira Khan", "U024BE7LH", "slack-button", T0 - 10200)
    escalation.fire_due(store, config, Calendar(config), T0 - 7200 + 1000)
    store.poll_succeeded("default", T0 - 60, T0 - 30)
    clock = Clock(T0)
    return Console(folder, config, store, clock, Loop(T0 - 1, [0.4, 0.6]), keys)
