"""Claims and escalation in the store and the planner, with a controllable clock: first claim
wins, a claim stops escalation and queues Slack edits, deferral to the next opening, escalation
clocks that count open time only, and steps that fire once across a restart."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot import escalation, jsontext
from bot.claims import ClaimEvent, record
from bot.loader import load_config
from bot.parse import parse_lead
from bot.poller import Poller
from bot.schedule import Calendar
from bot.store import Store

LONDON = ZoneInfo("Europe/London")
PUBLISHED = Path(__file__).resolve().parent.parent / "bot" / "demo" / "published"

RULES = """
[group]
name = "Rose Care Homes"
timezone = "Europe/London"

[hours.office]
mon-fri = "08:00-18:00"

[routing]
fallback = "group-leads"

[homes.100000]
name = "Rose Lodge"
slack = "#rose-lodge"
manager_slack = "U024BE7LH"
manager_email = "amira.khan@rosecare.example"
manager_email_hours = "office"

[homes.300000]
name = "Thistle House"
nation = "scotland"
manager_email = "iain@rosecare.example"
manager_email_hours = "office"

[destinations]
group-leads = { slack = "#group-leads" }
sales-inbox = { email = ["sales@rosecare.example"], hours = "office" }
on-call = { email = ["on-call@rosecare.example"] }

[[rules]]
name = "Call-backs"
when = { category = "Call Back Request" }
notify = ["home.slack", "home.manager_email", "sales-inbox"]
urgent = true
escalate = [
  { after = "15m", notify = ["sales-inbox"] },
  { after = "1h", notify = ["on-call"] },
]

[[rules]]
name = "Emergencies go to on-call at once"
when = { timescales = "Emergency" }
notify = ["sales-inbox"]
anytime = true
"""


def at(text: str) -> float:
    """A wall-clock time in London: "2027-01-15 17:55"."""
    return datetime.fromisoformat(text).replace(tzinfo=LONDON).timestamp()


def call_back(service: int = 100000, lead_id: int = 2000, **changes: object) -> object:
    data = jsontext.loads((PUBLISHED / "4-call-back-request.json").read_text(encoding="utf-8"))
    data["service"]["id"], data["id"] = service, lead_id
    data.update(changes)
    return data


@pytest.fixture
def world(tmp_path: Path) -> tuple[Poller, Store]:
    (tmp_path / "rules.toml").write_text(RULES, encoding="utf-8")
    config = load_config(tmp_path / "rules.toml")
    store = Store(tmp_path / "leadbot.db")
    poller = Poller(None, {}, store, config)  # type: ignore[arg-type]  # no polling here
    return poller, store


def arrive(poller: Poller, record_: object, now: float) -> str:
    lead = parse_lead(record_, "default")
    poller.store.add_leads([poller.routed(lead, now)], [], now)
    return lead.key


def due(store: Store, key: str) -> dict[str, float]:
    return {d.target.address: d.next_attempt_at for d in store.deliveries("subject = ?", [key])}


def steps(store: Store, key: str) -> list[tuple[int, float, str]]:
    return [(s["step"], s["due_at"], s["status"]) for s in store.escalations_of([key])[key]]


# --- deferral: never dropped, sent at the next opening ------------------------------------------


def test_a_lead_at_3am_waits_for_8am_where_the_destination_keeps_office_hours(world) -> None:
    poller, store = world
    key = arrive(poller, call_back(), at("2027-01-13 03:00"))  # a Wednesday
    when = due(store, key)
    assert when["#rose-lodge"] == at("2027-01-13 03:00")  # no hours: at once
    assert when["amira.khan@rosecare.example"] == at("2027-01-13 08:00")
    assert when["sales@rosecare.example"] == at("2027-01-13 08:00")


def test_a_saturday_lead_waits_for_monday_and_a_bank_holiday_for_the_day_after(world) -> None:
    poller, store = world
    key = arrive(poller, call_back(), at("2027-01-16 11:00"))  # a Saturday
    assert due(store, key)["sales@rosecare.example"] == at("2027-01-18 08:00")
    key = arrive(poller, call_back(lead_id=2001), at("2027-03-27 12:00"))  # Easter Saturday
    assert due(store, key)["sales@rosecare.example"] == at("2027-03-30 08:00")  # Easter Monday


def test_a_home_in_scotland_keeps_scottish_bank_holidays(world) -> None:
    poller, store = world
    # 4 January 2027 is a bank holiday in Scotland only (2 January falls on a Saturday).
    key = arrive(poller, call_back(service=300000), at("2027-01-04 09:00"))
    assert due(store, key)["iain@rosecare.example"] == at("2027-01-05 08:00")
    key = arrive(poller, call_back(lead_id=2002), at("2027-01-04 09:00"))  # an English home
    assert due(store, key)["amira.khan@rosecare.example"] == at("2027-01-04 09:00")


def test_an_anytime_rule_sends_at_once_whatever_the_hours(world) -> None:
    poller, store = world
    key = arrive(poller, call_back(timescales="['Emergency']"), at("2027-01-16 03:00"))
    assert due(store, key)["sales@rosecare.example"] == at("2027-01-16 03:00")


# --- escalation: open time only, once, never after a claim -------------------------------------


def test_friday_1755_with_a_15_minute_step_escalates_on_monday_at_0810(world) -> None:
    poller, store = world
    key = arrive(poller, call_back(), at("2027-01-15 17:55"))
    assert steps(store, key) == [
        (1, at("2027-01-18 08:10"), "waiting"),  # sales-inbox keeps office hours
        (2, at("2027-01-15 18:55"), "waiting"),  # on-call keeps none: real time
    ]


def test_a_step_fires_once_when_due_and_survives_a_restart(world, tmp_path: Path) -> None:
    poller, store = world
    key = arrive(poller, call_back(), at("2027-01-13 10:00"))
    calendar = Calendar(LONDON)
    assert escalation.fire_due(store, poller.config, calendar, at("2027-01-13 10:14")) == 0
    assert escalation.fire_due(store, poller.config, calendar, at("2027-01-13 10:15")) == 1
    store.close()
    again = Store(tmp_path / "leadbot.db")  # a restart: the step is not fired twice
    assert escalation.fire_due(again, poller.config, calendar, at("2027-01-13 10:20")) == 0
    (sent,) = again.deliveries("subject = ?", [f"esc:{key}:1"])
    assert sent.target.address == "sales@rosecare.example"
    assert escalation.fire_due(again, poller.config, calendar, at("2027-01-13 11:00")) == 1
    assert [s[2] for s in steps(again, key)] == ["fired", "fired"]


def test_a_step_that_comes_due_while_leadbot_was_down_fires_once_on_start(world) -> None:
    poller, store = world
    arrive(poller, call_back(), at("2027-01-13 10:00"))
    calendar = Calendar(LONDON)
    assert escalation.fire_due(store, poller.config, calendar, at("2027-01-14 09:00")) == 2
    assert escalation.fire_due(store, poller.config, calendar, at("2027-01-14 09:01")) == 0


def test_a_claim_stops_what_is_left_and_cancels_queued_escalations(world) -> None:
    poller, store = world
    key = arrive(poller, call_back(), at("2027-01-13 10:00"))
    calendar = Calendar(LONDON)
    escalation.fire_due(store, poller.config, calendar, at("2027-01-13 10:15"))
    claim, won = store.claim_lead(
        key, "Amira Khan", "U024BE7LH", "slack-button", at("2027-01-13 10:16")
    )
    assert won and claim is not None and claim["by_name"] == "Amira Khan"
    assert [s[2] for s in steps(store, key)] == ["fired", "stopped"]
    (queued,) = store.deliveries("subject = ?", [f"esc:{key}:1"])
    assert queued.status == "cancelled"  # it had not gone yet: it never will
    assert escalation.fire_due(store, poller.config, calendar, at("2027-01-13 12:00")) == 0


# --- claims: first wins, Slack edits queued ------------------------------------------------------


def test_the_first_claim_wins_and_the_second_changes_nothing(world) -> None:
    poller, store = world
    key = arrive(poller, call_back(), at("2027-01-13 10:00"))
    first, won = store.claim_lead(key, "Amira", "U1", "slack-button", at("2027-01-13 10:12"))
    second, won_again = store.claim_lead(key, "Tom", "U2", "cli", at("2027-01-13 10:13"))
    assert won and not won_again
    assert second == first and second is not None and second["by_name"] == "Amira"
    assert store.claim_lead("9:9999", "Tom", "", "cli", at("2027-01-13 10:13")) == (None, False)


def test_time_to_claim_counts_from_when_the_family_asked(world) -> None:
    poller, store = world
    asked = datetime(2027, 1, 13, 9, 50, tzinfo=UTC)  # Autumna's date; leadbot saw it later
    key = arrive(
        poller, call_back(date=asked.strftime("%Y-%m-%dT%H:%M:%S.000Z")), at("2027-01-13 10:00")
    )
    claim, _ = store.claim_lead(key, "Amira", "", "cli", at("2027-01-13 10:02"))
    assert claim is not None and claim["seconds_to_claim"] == 12 * 60


def test_a_claim_queues_an_edit_of_every_slack_message_already_posted(world) -> None:
    poller, store = world
    key = arrive(poller, call_back(), at("2027-01-13 10:00"))
    posted = [d for d in store.deliveries("subject = ?", [key]) if d.target.channel == "slack"]
    (slack,) = posted
    store.mark_sent(slack.id, at("2027-01-13 10:00"), "C0ROSE/1700000000.000100")
    store.remember_slack_message("C0ROSE", "1700000000.000100", slack.id, key)
    store.claim_lead(key, "Amira", "U1", "slack-reaction", at("2027-01-13 10:05"))
    (edit,) = store.deliveries("subject = ?", [f"edit:{slack.id}"])
    assert edit.status == "pending" and edit.target.address == "#rose-lodge"
    assert store.lead_of_message("C0ROSE", "1700000000.000100") == key


def test_a_second_click_by_someone_else_queues_a_note_to_them_only(world) -> None:
    poller, store = world
    key = arrive(poller, call_back(), at("2027-01-13 10:00"))
    now = at("2027-01-13 10:05")
    click = ClaimEvent("slack-button", "amira", "U1", key, "C0ROSE", "1.1", now)
    assert record(store, click, now)
    other = ClaimEvent("slack-button", "tom", "U2", key, "C0ROSE", "1.1", now)
    assert not record(store, other, now)
    (note,) = store.deliveries("subject LIKE 'ephemeral:%'")
    assert note.subject == f"ephemeral:{key}:U2" and note.target.address == "C0ROSE"
    assert not record(store, click, now)  # the claimer again: nothing more
    assert len(store.deliveries("subject LIKE 'ephemeral:%'")) == 1


def test_a_reaction_on_a_message_that_is_not_a_lead_is_ignored(world) -> None:
    _, store = world
    event = ClaimEvent("slack-reaction", "U1", "U1", "", "C0OTHER", "1.2", 0.0)
    assert not record(store, event, 0.0)
