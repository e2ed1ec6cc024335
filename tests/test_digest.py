"""Digests ([[digests]]): rules.toml's checks, the period arithmetic with a controllable clock
(a weekend, bank holidays in England and Scotland, both clock changes), once per day across a
restart and after downtime, each channel's version checked by tools nobody here wrote (the
email's HTML parsed by html5lib in strict mode and rendered in Debian's headless Chromium,
Slack blocks by slack_sdk's models, the Teams card by Microsoft's schema and library), the
preview command, and one digest through the real `leadbot run` process.

The HTML parser is html5lib (`HTMLParser(strict=True)`: the WHATWG parsing algorithm, raising on
every parse error); Chromium is driven by its own command line (`--screenshot`, `--dump-dom`)
and by Playwright pointed at /usr/bin/chromium. Screenshots are kept in .cache/artefacts/ (or
$LEADBOT_ARTEFACTS).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import html5lib
import pytest
from conftest import World, bare_env, wait_for, write_rules
from hostile import email_bytes
from standins.validators import (
    assert_multipart_alternative,
    parse_email,
    validate_slack_message,
    validate_teams_message,
)
from test_reporting import Known, fill

from bot import digest
from bot.config import ConfigError, Digest
from bot.digest_view import SAMPLE, digest_view
from bot.loader import load_config
from bot.models import Message
from bot.outbox import Outbox, lead_of
from bot.poller import Poller
from bot.render import Renderer
from bot.schedule import Calendar
from bot.store import Store

LONDON = ZoneInfo("Europe/London")
ROOT = Path(__file__).resolve().parents[1]
ARTEFACTS = Path(os.environ.get("LEADBOT_ARTEFACTS") or ROOT / ".cache" / "artefacts") / "digest"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WEEKDAYS = (0, 1, 2, 3, 4)
EVERY_DAY = (0, 1, 2, 3, 4, 5, 6)

BASE = """
[group]
name = "Rose Care Homes"
timezone = "Europe/London"

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
sales-inbox = { email = ["sales@rosecare.example"] }
ops-teams = { teams = "${TEAMS_OPS_WEBHOOK}" }

[[rules]]
name = "Every lead to its home"
notify = ["home.slack"]
"""

MORNING = """
[[digests]]
name = "morning"
at = "08:00"
days = "mon-fri"
notify = ["sales-inbox", "group-leads", "ops-teams", "home.manager_email"]
"""


def at(text: str) -> float:
    """A wall-clock time in London: "2027-01-15 17:55"."""
    return datetime.fromisoformat(text).replace(tzinfo=LONDON).timestamp()


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def loaded(folder: Path, extra: str) -> Any:
    (folder / "rules.toml").write_text(BASE + extra, encoding="utf-8")
    return load_config(folder / "rules.toml")


def problems(folder: Path, extra: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        loaded(folder, extra)
    return caught.value.problems


def a_digest(**changes: Any) -> Digest:
    fields: dict[str, Any] = {"name": "morning", "at": 8 * 3600, "days": WEEKDAYS}
    return Digest(**({"notify": ("sales-inbox",)} | fields | changes))


# --- rules.toml ------------------------------------------------------------------------------


def test_a_digest_loads_with_homes_by_name_or_service_id(tmp_path: Path) -> None:
    config = loaded(
        tmp_path,
        MORNING
        + """
[[digests]]
name = "weekly-north"
at = "07:30:15"
days = "mon"
period = "week"
notify = "ops-teams"
homes = ["willow HOUSE", 100000]
bank_holidays = "send"
""",
    )
    morning, weekly = config.digests
    assert morning == Digest(
        "morning",
        8 * 3600,
        WEEKDAYS,
        ("sales-inbox", "group-leads", "ops-teams", "home.manager_email"),
    )
    assert weekly == Digest(
        "weekly-north",
        7 * 3600 + 30 * 60 + 15,
        (0,),
        ("ops-teams",),
        "week",
        (200000, 100000),
        "send",
    )


def digest_table(**fields: str | None) -> str:
    """One [[digests]] table: a valid one, with `fields` changed (None: left out)."""
    merged = {"name": '"morning"', "at": '"08:00"', "notify": '["sales-inbox"]'} | fields
    return "\n[[digests]]\n" + "".join(f"{k} = {v}\n" for k, v in merged.items() if v)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"nme": '"x"'}, 'digests[0].nme: unknown key (did you mean "name"?)'),
        ({"name": None}, "digests[0].name: required"),
        ({"name": '"two words"'}, "digests[0].name: 'two words' is not a usable name"),
        ({"at": '"8am"'}, 'digests[0].at: expected a time of day, 24-hour, like "08:00"'),
        ({"at": '"24:00"'}, "digests[0].at: expected a time of day"),
        ({"at": "8"}, "digests[0].at: expected a time of day"),
        ({"at": None}, "digests[0].at: required"),
        ({"days": '"mon-fry"'}, 'digests[0].days: unknown day "fry"'),
        ({"days": '"fri-mon"'}, 'digests[0].days: "fri-mon" wraps past Sunday; write it as'),
        ({"days": '"weekdays"'}, 'digests[0].days: expected days like "mon-fri"'),
        ({"days": "5"}, "digests[0].days: expected days in quotes"),
        ({"period": '"month"'}, 'digests[0].period: expected "day" or "week", got \'month\''),
        ({"period": '"week"', "days": '"mon-fri"'}, "digests[0].days: a weekly digest"),
        ({"notify": '["sales-inbx"]'}, "digests[0].notify[0]: unknown destination 'sales-inbx'"),
        ({"notify": '["home.fax_email"]'}, "digests[0].notify[0]: no home has 'fax_email'"),
        ({"notify": "[]"}, "digests[0].notify: list who gets it"),
        ({"homes": '["Rose Lodg"]'}, "digests[0].homes[0]: no home named 'Rose Lodg' (did you"),
        ({"homes": "[100000, 999]"}, "digests[0].homes[1]: service 999 is not in rules.toml"),
        ({"bank_holidays": '"maybe"'}, 'digests[0].bank_holidays: expected "skip" or "send"'),
    ],
)
def test_each_mistake_is_named_by_its_key_path(
    tmp_path: Path, fields: dict[str, str | None], problem: str
) -> None:
    found = problems(tmp_path, digest_table(**fields))
    assert [p for p in found if problem in p], found
    assert all(p.startswith("rules.toml: digests[0].") for p in found), found


def test_every_mistake_is_listed_at_once_with_the_rest_of_the_file(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
[[digests]]
name = "morning"
at = "8am"
days = "mon-fry"
notify = ["sales-inbx"]

[[digests]]
name = "morning"
at = "09:00"
notify = ["ops-teams"]

[privacy]
slack = "some"
""",
    )
    assert [p.split(": ")[1] for p in found] == [
        "privacy.slack",
        "digests[0].at",
        "digests[0].days",
        "digests[0].notify[0]",
        "digests[1].name",
    ]
    assert "digests[0] is named 'morning' too" in found[-1]
    (tmp_path / "rules.toml").write_text('digests = "every morning"\n' + BASE, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "rules.toml")
    (found,) = caught.value.problems
    assert found.startswith('rules.toml: digests: expected [[digests]] with name = "morning"')


# --- when: the period arithmetic ---------------------------------------------------------------


def test_mondays_digest_covers_friday_to_sunday_and_tuesdays_covers_monday() -> None:
    calendar, morning = Calendar(LONDON), a_digest()
    assert digest.latest_day(morning, calendar, at("2027-01-18 07:59:59")) == date(2027, 1, 15)
    assert digest.latest_day(morning, calendar, at("2027-01-18 08:00")) == date(2027, 1, 18)
    assert digest.latest_day(morning, calendar, at("2027-01-17 12:00")) == date(2027, 1, 15)
    assert digest.period(morning, calendar, date(2027, 1, 18)) == (
        at("2027-01-15 00:00"),
        at("2027-01-18 00:00"),
    )
    assert digest.period(morning, calendar, date(2027, 1, 19)) == (
        at("2027-01-18 00:00"),
        at("2027-01-19 00:00"),
    )
    assert digest.next_due(morning, calendar, at("2027-01-15 09:00")) == at("2027-01-18 08:00")


def test_a_bank_holiday_is_skipped_and_the_next_digest_covers_it() -> None:
    calendar, morning = Calendar(LONDON), a_digest()
    # Easter 2027: Good Friday 26 March and Easter Monday 29 March are bank holidays.
    assert digest.latest_day(morning, calendar, at("2027-03-29 12:00")) == date(2027, 3, 25)
    assert digest.next_due(morning, calendar, at("2027-03-25 09:00")) == at("2027-03-30 08:00")
    assert digest.period(morning, calendar, date(2027, 3, 30)) == (
        at("2027-03-25 00:00"),  # Thursday's went: Thursday to Monday
        at("2027-03-30 00:00"),
    )
    sending = a_digest(bank_holidays="send")
    assert digest.latest_day(sending, calendar, at("2027-03-29 12:00")) == date(2027, 3, 29)
    assert digest.period(sending, calendar, date(2027, 3, 29)) == (
        at("2027-03-26 00:00"),
        at("2027-03-29 00:00"),
    )


def test_the_groups_nation_decides_the_bank_holidays() -> None:
    # 4 January 2027 is a bank holiday in Scotland only (2 January falls on a Saturday).
    morning = a_digest()
    england, scotland = Calendar(LONDON, "england"), Calendar(LONDON, "scotland")
    assert digest.latest_day(morning, england, at("2027-01-04 09:00")) == date(2027, 1, 4)
    # In Scotland 1 January is a holiday too: the last one before is Thursday 31 December.
    assert digest.latest_day(morning, scotland, at("2027-01-04 09:00")) == date(2026, 12, 31)
    assert digest.period(morning, scotland, date(2027, 1, 5)) == (
        at("2026-12-31 00:00"),
        at("2027-01-05 00:00"),
    )


def test_a_weekly_digest_covers_the_seven_days_before_it() -> None:
    calendar = Calendar(LONDON)
    weekly = a_digest(days=(0,), period="week", at=7 * 3600)
    assert digest.latest_day(weekly, calendar, at("2027-01-20 12:00")) == date(2027, 1, 18)
    assert digest.period(weekly, calendar, date(2027, 1, 18)) == (
        at("2027-01-11 00:00"),
        at("2027-01-18 00:00"),
    )


def test_eight_oclock_is_eight_in_winter_and_in_summer_and_clock_change_days_count_true() -> None:
    calendar, daily = Calendar(LONDON), a_digest(days=EVERY_DAY)
    # Spring: the clocks go forward at 01:00 UTC on Sunday 29 March 2026.
    assert digest.moment(date(2026, 3, 28), daily.at, LONDON) == utc("2026-03-28 08:00")
    assert digest.moment(date(2026, 3, 29), daily.at, LONDON) == utc("2026-03-29 07:00")
    start, end = digest.period(daily, calendar, date(2026, 3, 30))
    assert (start, end) == (utc("2026-03-29 00:00"), utc("2026-03-29 23:00"))
    assert end - start == 23 * 3600
    # Autumn: back at 01:00 UTC on Sunday 25 October 2026; that Sunday has 25 hours.
    assert digest.moment(date(2026, 10, 26), daily.at, LONDON) == utc("2026-10-26 08:00")
    start, end = digest.period(daily, calendar, date(2026, 10, 26))
    assert end - start == 25 * 3600
    assert digest.latest_day(daily, calendar, utc("2026-10-26 07:59")) == date(2026, 10, 25)


def test_a_time_the_clocks_skip_goes_an_hour_later_and_a_repeated_one_goes_once(
    tmp_path: Path,
) -> None:
    early = a_digest(days=EVERY_DAY, at=90 * 60)  # 01:30
    assert digest.moment(date(2026, 3, 29), early.at, LONDON) == utc("2026-03-29 01:30")
    assert digest.moment(date(2026, 10, 25), early.at, LONDON) == utc("2026-10-25 00:30")
    config = loaded(tmp_path, MORNING.replace('"08:00"', '"01:30"').replace("mon-fri", "mon-sun"))
    store, calendar = Store(tmp_path / "leadbot.db"), Calendar(LONDON)
    assert digest.fire_due(store, config, calendar, utc("2026-10-24 12:00")) == 0  # first seen
    assert digest.fire_due(store, config, calendar, utc("2026-10-25 00:29")) == 0
    assert digest.fire_due(store, config, calendar, utc("2026-10-25 00:30")) == 1  # the first 01:30
    assert digest.fire_due(store, config, calendar, utc("2026-10-25 01:30")) == 0  # the second
    assert digest.fire_due(store, config, calendar, utc("2026-10-26 01:30")) == 1


# --- once per day: a restart, downtime, a new digest --------------------------------------------


@pytest.fixture
def house(tmp_path: Path) -> tuple[Any, Store, Poller]:
    config = loaded(tmp_path, MORNING)
    store = Store(tmp_path / "leadbot.db")
    return config, store, Poller(None, {}, store, config)  # type: ignore[arg-type]


def digests_table(store: Store) -> list[tuple[str, str, str]]:
    return [
        (r["name"], r["day"], r["status"])
        for r in store.db.query("SELECT * FROM digests ORDER BY id")
    ]


def test_a_digest_first_seen_after_its_time_waits_for_its_next_time(house) -> None:
    config, store, _ = house
    calendar = Calendar(LONDON)
    assert digest.fire_due(store, config, calendar, at("2027-01-18 09:30")) == 0
    assert digests_table(store) == [("morning", "2027-01-18", "skipped")]
    assert store.deliveries() == []
    assert digest.fire_due(store, config, calendar, at("2027-01-19 07:59")) == 0
    assert digest.fire_due(store, config, calendar, at("2027-01-19 08:00")) == 1
    assert [r[2] for r in digests_table(store)] == ["skipped", "queued"]


def test_once_a_day_across_a_restart(house, tmp_path: Path) -> None:
    config, store, _ = house
    calendar = Calendar(LONDON)
    digest.fire_due(store, config, calendar, at("2027-01-15 12:00"))  # first seen on Friday
    assert digest.fire_due(store, config, calendar, at("2027-01-18 08:00:01")) == 1
    assert digest.fire_due(store, config, calendar, at("2027-01-18 08:00:02")) == 0
    store.close()
    again = Store(tmp_path / "leadbot.db")  # a restart
    assert digest.fire_due(again, config, calendar, at("2027-01-18 09:00")) == 0
    assert digest.fire_due(again, config, calendar, at("2027-01-18 23:59")) == 0
    assert digests_table(again)[-1] == ("morning", "2027-01-18", "queued")
    subjects = sorted({(d.subject, d.target.address) for d in again.deliveries()})
    (row,) = again.db.query("SELECT id FROM digests WHERE status = 'queued'")
    whole, rose = f"digest:{row['id']}", f"digest:{row['id']}:100000"
    assert subjects == [
        (whole, "#group-leads"),
        (whole, "TEAMS_OPS_WEBHOOK"),
        (whole, "sales@rosecare.example"),
        (rose, "amira.khan@rosecare.example"),  # home.manager_email: its own home's digest
    ]


def test_a_digest_missed_while_down_goes_once_on_start_counting_since_the_last(house) -> None:
    config, store, poller = house
    calendar = Calendar(LONDON)
    digest.fire_due(store, config, calendar, at("2027-01-15 12:00"))  # first seen on Friday
    assert digest.fire_due(store, config, calendar, at("2027-01-18 08:00")) == 1  # Monday's
    fill(store, poller, at("2027-01-18 10:00"), [Known(100000, 1, claimed=12)])  # Monday
    fill(store, poller, at("2027-01-19 10:00"), [Known(200000, 2)])  # Tuesday
    # Down from Monday noon to Thursday 10:00: Tuesday's and Wednesday's were missed.
    assert digest.fire_due(store, config, calendar, at("2027-01-21 10:00")) == 1
    assert digest.fire_due(store, config, calendar, at("2027-01-21 10:01")) == 0
    rows = list(store.db.query("SELECT * FROM digests ORDER BY id"))
    assert [(r["day"], r["status"]) for r in rows] == [
        ("2027-01-15", "skipped"),
        ("2027-01-18", "queued"),
        ("2027-01-21", "queued"),
    ]
    late = rows[-1]
    assert (late["period_start"], late["period_end"]) == (
        at("2027-01-18 00:00"),
        at("2027-01-21 00:00"),
    )
    assert late["due_at"] == at("2027-01-21 08:00") and late["created_at"] == at("2027-01-21 10:00")
    homes = {h["name"]: h for h in json.loads(late["figures"])["homes"]}
    assert (homes["Rose Lodge"]["leads"], homes["Willow House"]["leads"]) == (1, 1)
    # Back in time after a clock fix, or a digest for a day already done: nothing again.
    assert digest.fire_due(store, config, calendar, at("2027-01-20 09:00")) == 0


def test_the_figures_count_the_periods_leads_claims_waits_and_dead_deliveries(house) -> None:
    config, store, poller = house
    calendar = Calendar(LONDON)
    fill(store, poller, at("2027-01-14 22:00"), [Known(100000, 1, claimed=5)])  # Thursday: not
    digest.fire_due(store, config, calendar, at("2027-01-15 12:00"))  # first seen on Friday
    fill(
        store,
        poller,
        at("2027-01-15 09:00"),  # Friday, Saturday ..., each an hour after the one before
        [
            Known(100000, 2, claimed=5),
            Known(100000, 3, claimed=45),
            Known(100000, 4, first=None, category=(2, "In Person Visit Request")),
            Known(200000, 5, claimed=90, category=(8, "Placement")),
        ],
    )
    (dead,) = store.deliveries("subject = ?", ["2:4"])
    store.mark_failed(dead.id, "Slack error channel_not_found", None)
    fill(store, poller, at("2027-01-18 07:00"), [Known(200000, 6)])  # Monday: the next one's
    assert digest.fire_due(store, config, calendar, at("2027-01-18 08:00")) == 1
    (row,) = store.db.query("SELECT * FROM digests WHERE day = '2027-01-18'")
    figures = json.loads(row["figures"])
    assert figures["period"] == "day" and figures["as_of"] == at("2027-01-18 08:00")
    rose, willow = figures["homes"]
    assert rose == {
        "service_id": 100000,
        "name": "Rose Lodge",
        "leads": 3,
        "categories": [["Call Back Request", 2], ["In Person Visit Request", 1]],
        "claims": [300.0, 2700.0],
        "unclaimed": 1,
        "waiting": [
            {"key": "2:4", "category": "In Person Visit Request", "since": at("2027-01-15 11:00")}
        ],
        "dead": 1,
        "failed": [
            {
                "key": "2:4",
                "to": "home.slack",
                "channel": "slack",
                "error": "Slack error channel_not_found",
            }
        ],
    }
    assert (willow["leads"], willow["claims"], willow["unclaimed"]) == (1, [5400.0], 0)
    view = digest_view(row, None, config)
    assert view["totals"] == {
        "homes": 2,
        "leads": 4,
        "claimed": 3,
        "unclaimed": 1,
        "dead": 1,
        "median": "45 min",
        "worst": "1 h 30 min",
    }
    assert view["digest"] == {
        "name": "morning",
        "kind": "day",
        "day": "Mon 18 Jan",
        "first": "Fri 15 Jan",
        "last": "Sun 17 Jan",
        "days": 3,
        "home": "",
    }
    assert [(c["name"], c["width"], c["percent"]) for c in view["homes"][0]["categories"]] == [
        ("Call Back Request", 20, 100),
        ("In Person Visit Request", 10, 50),
    ]
    assert view["homes"][0]["waiting"] == [
        {"key": "2:4", "category": "In Person Visit Request", "waited": "2 days 21 h"}
    ]


# --- what goes out: each channel, checked by tools nobody here wrote ---------------------------


@pytest.fixture
def sent(house) -> dict[str, Message]:
    """Monday's digest, rendered by the outbox for each of its deliveries, by address."""
    config, store, poller = house
    calendar = Calendar(LONDON)
    digest.fire_due(store, config, calendar, at("2027-01-15 12:00"))  # first seen on Friday
    fill(
        store,
        poller,
        at("2027-01-15 09:00"),
        [
            Known(100000, 1, claimed=5),
            Known(100000, 2, claimed=50, category=(2, "In Person Visit Request")),
            Known(100000, 3, category=(2, "In Person Visit Request")),
            Known(200000, 4, claimed=3, category=(99, "<b>Brochure</b> & *more* = 1")),
        ],
    )
    digest.fire_due(store, config, calendar, at("2027-01-18 08:00"))
    outbox = Outbox(store, Renderer(config), lambda: at("2027-01-18 08:00"))
    return {d.target.address: outbox.render(d) for d in store.deliveries("subject LIKE 'digest:%'")}


def test_the_slack_digest_passes_slack_sdks_block_kit_models(sent) -> None:
    payload = sent["#group-leads"].payload
    validate_slack_message(payload)
    assert payload["text"] == "Leads from Fri 15 Jan to Sun 17 Jan: 4 leads, 1 unclaimed"
    texts = [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]
    assert texts[1].startswith("*Rose Lodge*: 3 leads, 2 claimed (median 28 min, slowest 50 min)")
    assert "████████████████████ 2  In Person Visit Request" in texts[1]
    assert "&lt;b&gt;Brochure&lt;/b&gt; &amp; *more* = 1" in texts[2]  # as text, not markup


def test_the_teams_digest_passes_the_schema_and_microsofts_library(sent) -> None:
    payload = sent["TEAMS_OPS_WEBHOOK"].payload
    validate_teams_message(payload)
    card = payload["attachments"][0]["content"]
    assert card["body"][0]["text"] == "Leads from Fri 15 Jan to Sun 17 Jan"
    rose = card["body"][2]["items"]
    assert rose[0]["text"].startswith("**Rose Lodge**: 3 leads")
    assert rose[1]["fontType"] == "Monospace" and "2  In Person Visit Request" in rose[1]["text"]
    assert "\\<b\\>Brochure\\</b\\> & \\*more\\* = 1" in card["body"][3]["items"][1]["text"]


def test_a_homes_own_edition_shows_that_home_only(sent) -> None:
    message = parse_email(email_bytes(sent["amira.khan@rosecare.example"]))
    _, html = assert_multipart_alternative(message)
    subject = "Rose Lodge: Leads from Fri 15 Jan to Sun 17 Jan: 3 leads, 1 unclaimed"
    assert message["Subject"] == subject
    assert "Rose Lodge" in html and "Willow House" not in html


def bars(document: Any) -> list[tuple[int, float]]:
    """(data-count, width %) of each bar table in a parsed document."""
    return [
        (int(t.get("data-count")), float(t.get("width").rstrip("%")))
        for t in document.iter("table")
        if t.get("class") == "bar"
    ]


def test_the_email_is_multipart_and_its_html_parses_without_one_error(sent) -> None:
    message = parse_email(email_bytes(sent["sales@rosecare.example"]))
    assert message["Auto-Submitted"] == "auto-generated" and message["Reply-To"] is None
    text, html = assert_multipart_alternative(message)
    assert "Rose Lodge: 3 leads, 2 claimed (median 28 min, slowest 50 min)" in text
    assert "  ████████████████████ 2  In Person Visit Request" in text
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    document = parser.parse(html)  # raises on any parse error
    assert parser.errors == []
    assert document.find("head/title").text == message["Subject"]
    # Leads per home (3, 1), then Rose Lodge's categories (2, 1) and Willow House's (1).
    assert bars(document) == [(3, 100.0), (1, 33.0), (2, 100.0), (1, 50.0), (1, 50.0)]
    assert "<b>Brochure</b>" not in html and "&lt;b&gt;Brochure&lt;/b&gt;" in html
    for cell in document.iter("td"):
        if cell.get("bgcolor"):  # a bar: coloured by attribute and style, for Outlook and Gmail
            assert cell.get("bgcolor").lower() in cell.get("style").lower()


def html_of(message: Message) -> str:
    return assert_multipart_alternative(parse_email(email_bytes(message)))[1]


def chromium() -> str:
    if CHROMIUM:
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(
            "chromium is not installed, and CI must render the digest: apt-get install chromium"
        )
    pytest.skip("chromium is not installed (Debian: apt-get install chromium)")


def test_the_email_renders_in_headless_chromium(sent, tmp_path: Path) -> None:
    browser = chromium()
    page = tmp_path / "digest.html"
    page.write_text(html_of(sent["sales@rosecare.example"]), encoding="utf-8")
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTEFACTS / "digest-email.png"
    shot.unlink(missing_ok=True)
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    common += ["--window-size=700,1000", f"--user-data-dir={tmp_path / 'profile'}"]
    done = subprocess.run(
        [*common, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=90
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (700, 1000)
    dom = subprocess.run(
        [*common, "--dump-dom", page.as_uri()], capture_output=True, timeout=90, check=True
    ).stdout.decode()
    rendered = html5lib.parse(dom, namespaceHTMLElements=False)  # the DOM Chromium built
    assert bars(rendered) == [(3, 100.0), (1, 33.0), (2, 100.0), (1, 50.0), (1, 50.0)]
    assert [h.text for h in rendered.iter("h3")] == ["Leads per home", "Rose Lodge", "Willow House"]


def test_the_bars_are_drawn_to_scale_in_chromium(sent) -> None:
    browser = chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("Playwright for Python is not installed")
    html = html_of(sent["sales@rosecare.example"])
    with sync_playwright() as driver:
        chrome = driver.chromium.launch(executable_path=browser, args=["--no-sandbox"])
        try:
            for width in (700, 380):  # a desktop mail client and a phone
                page = chrome.new_page(viewport={"width": width, "height": 900})
                page.set_content(html)
                drawn = page.eval_on_selector_all(
                    "table.bar",
                    "tables => tables.map(t => [Number(t.dataset.count), "
                    "t.getBoundingClientRect().width, "
                    "t.parentElement.getBoundingClientRect().width])",
                )
                ARTEFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTEFACTS / f"digest-email-{width}px.png"), full_page=True)
                page.close()
                assert len(drawn) == 5
                assert all(0 < bar <= room for _, bar, room in drawn)  # inside its cell
                chart, rose = drawn[:2], drawn[2:4]
                # Three leads draw three times as long as one; two as twice as long as one.
                assert chart[0][1] / chart[1][1] == pytest.approx(3, rel=0.1)
                assert rose[0][1] / rose[1][1] == pytest.approx(2, rel=0.05)
        finally:
            chrome.close()


def test_a_group_with_many_homes_stays_within_slack_and_teams_limits(tmp_path: Path) -> None:
    config = loaded(tmp_path, MORNING)
    figures = json.loads(SAMPLE["figures"])
    sample = figures["homes"][0]
    figures["homes"] = [
        sample | {"service_id": n, "name": f"Home number {n} with a long name"} for n in range(60)
    ]
    view = digest_view(SAMPLE | {"figures": json.dumps(figures)}, None, config)
    renderer = Renderer(config)
    slack = renderer.render_digest(view, config.destinations["group-leads"].targets[0]).payload
    validate_slack_message(slack)
    assert slack["blocks"][-2]["elements"][0]["text"].startswith("…and ")
    assert slack["blocks"][-2]["elements"][0]["text"].endswith(
        "more homes: the email digest has every home."
    )
    teams = renderer.render_digest(view, config.destinations["ops-teams"].targets[0]).payload
    validate_teams_message(teams)
    card = teams["attachments"][0]["content"]
    assert len(json.dumps(teams, ensure_ascii=False, separators=(",", ":")).encode()) < 28_000
    assert card["body"][-2]["text"].startswith("…and ")
    email = renderer.render_digest(view, config.destinations["sales-inbox"].targets[0])
    assert html_of(email).count("Home number") == 120  # every home, in the chart and below


def test_slack_replies_to_a_digest_are_never_taken_for_a_claim() -> None:
    assert lead_of("digest:7") is None and lead_of("digest:7:100000") is None


def test_leadbot_check_names_a_broken_group_digest_template(tmp_path: Path) -> None:
    (tmp_path / "mine" / "slack").mkdir(parents=True)
    (tmp_path / "mine" / "slack" / "digest.j2").write_text(
        "{% block home %}{{ home.nmae }}{% endblock %}", encoding="utf-8"
    )
    mine = BASE.replace(
        'timezone = "Europe/London"', 'timezone = "Europe/London"\ntemplates = "mine"'
    )
    (tmp_path / "rules.toml").write_text(mine + MORNING, encoding="utf-8")
    found = Renderer(load_config(tmp_path / "rules.toml")).check()
    assert [p for p in found if "mine/slack/digest.j2" in p and "nmae" in p], found


# --- the preview, and the real process ----------------------------------------------------------


def test_preview_writes_every_channel_and_sends_nothing(house, tmp_path: Path) -> None:
    _, store, poller = house
    fill(store, poller, time.time() - 86400 * 3, [Known(100000, 1, claimed=5)])
    store.close()
    command = [sys.executable, "-m", "bot", "--config", str(tmp_path / "rules.toml")]
    command += ["--db", str(tmp_path / "leadbot.db"), "digest", "morning", "--preview"]
    env = bare_env(tmp_path)
    done = subprocess.run(
        [*command, "--to", "out"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        "digest-morning.eml",
        "digest-morning.html",
        "digest-morning.slack.json",
        "digest-morning.teams.json",
    ]
    validate_slack_message(json.loads((tmp_path / "out" / "digest-morning.slack.json").read_text()))
    validate_teams_message(json.loads((tmp_path / "out" / "digest-morning.teams.json").read_text()))
    html5lib.HTMLParser(strict=True).parse((tmp_path / "out" / "digest-morning.html").read_bytes())
    printed = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert printed.returncode == 0, printed.stderr
    assert "── slack ──" in printed.stdout and "── email ──" in printed.stdout
    assert "Subject: Leads " in printed.stdout
    check = Store(tmp_path / "leadbot.db")
    assert digests_table(check) == [] and check.deliveries("subject LIKE 'digest:%'") == []
    wrong = subprocess.run(
        [*command[:-2], "evening", "--preview"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 2 and "no digest named 'evening' (digests: morning)" in wrong.stderr


def test_a_digest_due_seconds_after_start_goes_out_once_and_not_again_after_a_restart(
    world: World,
) -> None:
    # A whole second (the time is written to the second), far enough ahead for a slow start:
    # a digest first seen after its time waits for the next day.
    due = (datetime.now(LONDON) + timedelta(seconds=12)).replace(microsecond=0)
    world.config = write_rules(
        world.folder,
        world.smtp.ca_file,
        extra=f"""
[[digests]]
name = "morning"
at = "{due:%H:%M:%S}"
bank_holidays = "send"
notify = ["sales-inbox", "fallback-slack", "group-teams"]
""",
    )

    def digests_sent() -> tuple[int, int, int]:
        mail = [m for m in world.smtp.messages if m.message["Subject"].startswith("Leads ")]
        slack = [
            m for m in world.slack.messages_for("#leads-fallback") if "Leads " in (m.text or "")
        ]
        teams = world.teams.payloads("group")
        return len(mail), len(slack), len(teams)

    with world.running("run") as process:
        wait_for(lambda: digest_rows(world), what="the digest first seen")
        assert digests_sent() == (0, 0, 0)  # yesterday's is not sent on a first start
        wait_for(lambda: digests_sent() == (1, 1, 1), timeout=40, what="the digest, everywhere")
        assert time.time() >= due.timestamp()
        time.sleep(2)  # the loop turns at least once a second: no second one
        assert digests_sent() == (1, 1, 1)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "digest 'morning' of " in stderr
    (email,) = [m for m in world.smtp.messages if m.message["Subject"].startswith("Leads ")]
    assert email.rcpt_tos == ["sales@rosecare.example"]
    yesterday = due.date() - timedelta(days=1)
    subject = f"Leads yesterday, {yesterday:%a} {yesterday.day} {yesterday:%b}: 0 leads"
    assert email.message["Subject"] == subject
    (posted,) = world.slack.messages_for("#leads-fallback")
    validate_slack_message({"text": posted.text, "blocks": posted.blocks})
    validate_teams_message(world.teams.payloads("group")[0])
    polls = len(world.autumna.requests)
    with world.running("run") as process:
        wait_for(lambda: len(world.autumna.requests) > polls, what="a poll after the restart")
        time.sleep(2)
        assert digests_sent() == (1, 1, 1)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert digest_rows(world) == [
        (yesterday.isoformat(), "skipped"),  # first seen after yesterday's time: not sent
        (due.date().isoformat(), "queued"),
    ]


def digest_rows(world: World) -> list[tuple[str, str]]:
    try:
        rows = world.query("SELECT day, status FROM digests ORDER BY id")
    except sqlite3.OperationalError:  # the database is being made
        return []
    return [(r["day"], r["status"]) for r in rows]


def test_the_example_in_rules_toml_loads_when_uncommented(tmp_path: Path) -> None:
    text = (ROOT / "rules.toml").read_text(encoding="utf-8")
    example = text[text.index("# [[digests]]") :].splitlines()
    uncommented = "\n".join(line.removeprefix("#").removeprefix(" ") for line in example)
    (tmp_path / "rules.toml").write_text(text + "\n" + uncommented + "\n", encoding="utf-8")
    morning, weekly = load_config(tmp_path / "rules.toml").digests
    assert (morning.name, morning.days, morning.notify) == (
        "morning",
        WEEKDAYS,
        ("sales-inbox", "home.manager_email"),
    )
    assert (weekly.period, weekly.days, weekly.homes) == ("week", (0,), (200000, 300000))
