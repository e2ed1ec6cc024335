"""`leadbot report`: the figures from a store filled with known leads, messages and claims; the
CSV read back with Python's csv module (byte-order mark, ISO 8601 times, no formula can run in
Excel), the JSON, and the table — through the real `leadbot` command."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import bare_env

from bot import jsontext, reporting
from bot.loader import load_config
from bot.parse import parse_lead
from bot.poller import Poller
from bot.store import Store

LONDON = ZoneInfo("Europe/London")
PUBLISHED = Path(__file__).resolve().parent.parent / "bot" / "demo" / "published"
MIN = 60.0

RULES = """
[group]
name = "Rose Care Homes"
timezone = "Europe/London"

[routing]
fallback = "group-leads"

[homes.100000]
name = "Rose Lodge"
slack = "#rose-lodge"

[homes.200000]
name = "Willow House"
slack = "#willow-house"

[destinations]
group-leads = { slack = "#group-leads" }

[[rules]]
name = "Every lead to its home"
notify = ["home.slack"]
"""


@dataclass(frozen=True)
class Known:
    """A lead as the test writes it: minutes after it arrived (Autumna's date) until leadbot
    saw it, its first message went, and someone claimed it (None: never)."""

    service: int
    lead_id: int
    seen: float = 1.0
    first: float | None = 2.0
    claimed: float | None = None
    by: str = "Amira Khan"
    via: str = "slack-button"
    category: tuple[int, str] = (4, "Call Back Request")


# Rose Lodge: claims after 5, 10 and 30 minutes and one unclaimed; first messages after 2, 3, 4
# and 5 minutes. Willow House: claims after 60 and 120 minutes, one first message never went.
KNOWN = [
    Known(100000, 1, first=2, claimed=5),
    Known(100000, 2, first=3, claimed=10, by="=cmd|' /C calc'!A0", via="web"),
    Known(100000, 3, first=4, claimed=30, by="Zoë Ç. O'Brien", via="cli"),
    Known(100000, 4, first=5, claimed=None, category=(99, '=HYPERLINK("http://x.example")')),
    Known(200000, 5, first=1, claimed=60, by="+44 1900 000000", via="slack-reaction"),
    Known(200000, 6, first=None, claimed=120, by="@SUM(1+1)", via="slack-reply"),
]


def record(lead_id: int, service: int, arrived: float, category: tuple[int, str]) -> object:
    data = jsontext.loads((PUBLISHED / "4-call-back-request.json").read_text(encoding="utf-8"))
    data["id"], data["service"]["id"] = lead_id, service
    data["category"] = {"id": category[0], "name": category[1]}
    data["date"] = datetime.fromtimestamp(arrived, UTC).isoformat().replace("+00:00", "Z")
    return data


def fill(store: Store, poller: Poller, start: float, known: list[Known] = KNOWN) -> list[str]:
    """Each known lead arrives an hour after the one before, from `start`."""
    keys = []
    for i, lead in enumerate(known):
        arrived = start + i * 3600
        parsed = parse_lead(record(lead.lead_id, lead.service, arrived, lead.category), "default")
        store.add_leads([poller.routed(parsed, arrived + lead.seen * MIN)], [], arrived)
        if lead.first is not None:
            (delivery,) = store.deliveries("subject = ?", [parsed.key])
            assert store.claim(delivery.id, arrived + lead.first * MIN)
            store.mark_sent(delivery.id, arrived + lead.first * MIN)
        if lead.claimed is not None:
            store.claim_lead(parsed.key, lead.by, "", lead.via, arrived + lead.claimed * MIN)
        keys.append(parsed.key)
    return keys


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "rules.toml").write_text(RULES, encoding="utf-8")
    return tmp_path


@pytest.fixture
def filled(folder: Path) -> tuple[Store, float]:
    """The known leads, the first three days ago (in real time: `leadbot report` reads it)."""
    config = load_config(folder / "rules.toml")
    store = Store(folder / "leadbot.db")
    poller = Poller(None, {}, store, config)  # type: ignore[arg-type]  # no polling here
    start = time.time() - 3 * 86400
    fill(store, poller, start)
    # Not counted: a lead from before --since, and one recorded silently on the first start.
    old = start - 40 * 86400
    lead = parse_lead(record(7, 100000, old, (4, "Call Back Request")), "default")
    store.add_leads([poller.routed(lead, old)], [], old)
    lead = parse_lead(record(8, 100000, start, (4, "Call Back Request")), "default")
    store.add_leads([replace(poller.routed(lead, start), announce=False)], [], start)
    return store, start


def leadbot_report(folder: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "bot", "--config", str(folder / "rules.toml")]
    command += ["--db", str(folder / "leadbot.db"), "report", *args]
    return subprocess.run(
        command, env=bare_env(folder), cwd=folder, capture_output=True, timeout=60, check=False
    )


# --- the figures ------------------------------------------------------------------------------


def test_each_lead_has_its_first_message_and_claim_counted_from_its_arrival(filled, folder) -> None:
    store, start = filled
    config = load_config(folder / "rules.toml")
    leads = reporting.lead_figures(store, config, start - 3600, time.time())
    assert [x.key for x in leads] == ["4:1", "4:2", "4:3", "99:4", "4:5", "4:6"]
    first = leads[0]
    assert (first.home, first.category, first.by, first.via) == (
        "Rose Lodge",
        "Call Back Request",
        "Amira Khan",
        "slack-button",
    )
    assert first.received == pytest.approx(start)
    assert first.seconds_to_first_message == pytest.approx(2 * MIN)
    assert first.seconds_to_claim == pytest.approx(5 * MIN)
    assert leads[3].claimed_at is None and leads[3].seconds_to_claim is None
    assert leads[5].first_message is None and leads[5].seconds_to_first_message is None


def test_each_home_sums_up_with_median_and_90th_percentile(filled) -> None:
    store, start = filled
    leads = reporting.lead_figures(store, None, start - 3600, time.time())
    rose, willow, everyone = reporting.per_home(leads)
    assert (rose.home, rose.leads, rose.claimed) == ("service 100000", 4, 3)
    assert rose.median_claim == pytest.approx(10 * MIN)
    assert rose.p90_claim == pytest.approx(30 * MIN)
    assert rose.median_first_message == pytest.approx(3.5 * MIN)  # 2, 3, 4, 5
    assert (willow.leads, willow.claimed) == (2, 2)
    assert willow.median_claim == pytest.approx(90 * MIN)
    assert willow.p90_claim == pytest.approx(120 * MIN)
    assert willow.median_first_message == pytest.approx(1 * MIN)  # one never went
    assert (everyone.home, everyone.leads, everyone.claimed) == ("All homes", 6, 5)
    assert everyone.median_claim == pytest.approx(30 * MIN)  # 5, 10, 30, 60, 120
    assert everyone.p90_claim == pytest.approx(120 * MIN)


@pytest.mark.parametrize(
    ("values", "share", "expected"),
    [
        ([], 0.9, None),
        ([7.0], 0.9, 7.0),
        ([1.0, 2.0], 0.9, 2.0),
        ([1.0, 2.0], 0.5, 1.0),
        ([float(n) for n in range(1, 11)], 0.9, 9.0),
        ([float(n) for n in range(1, 12)], 0.9, 10.0),
        ([5.0, 1.0, 3.0], 0.9, 5.0),
    ],
)
def test_the_90th_percentile_is_the_nearest_rank(
    values: list[float], share: float, expected: float | None
) -> None:
    assert reporting.percentile(values, share) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", 1_000_000 - 30 * 86400),
        ("12h", 1_000_000 - 12 * 3600),
        ("90m", 1_000_000 - 90 * 60),
        ("2w", 1_000_000 - 14 * 86400),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=LONDON).timestamp()),
        ("2026-07-01T09:00", datetime(2026, 7, 1, 8, tzinfo=UTC).timestamp()),  # BST
        ("soon", None),
        ("30 days", None),
    ],
)
def test_since_takes_a_duration_or_a_date_in_the_groups_zone(
    text: str, expected: float | None
) -> None:
    assert reporting.since_moment(text, LONDON, 1_000_000) == expected


# --- CSV, for Excel ---------------------------------------------------------------------------


def test_csv_has_a_bom_iso_times_and_reads_back_with_the_csv_module(filled, folder) -> None:
    store, start = filled
    store.close()
    done = leadbot_report(folder, "--format", "csv")
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.startswith(b"\xef\xbb\xbf")  # UTF-8 byte-order mark: Excel reads UTF-8
    text = done.stdout.decode("utf-8-sig")
    assert "\ufeff" not in text
    rows = list(csv.reader(io.StringIO(text, newline="")))
    blank = rows.index([])
    leads, homes = rows[:blank], rows[blank + 1 :]
    assert leads[0] == list(reporting.LEAD_COLUMNS)
    by_key = {row[0]: dict(zip(leads[0], row, strict=True)) for row in leads[1:]}
    assert list(by_key) == ["4:1", "4:2", "4:3", "99:4", "4:5", "4:6"]
    first = by_key["4:1"]
    received = datetime.fromisoformat(first["Received"])
    assert received.utcoffset() is not None  # ISO 8601 with the zone's offset
    assert received.timestamp() == pytest.approx(start, abs=1)
    assert received.utcoffset() == datetime.fromtimestamp(start, LONDON).utcoffset()
    assert datetime.fromisoformat(first["Claimed at"]).timestamp() == pytest.approx(
        start + 5 * MIN, abs=1
    )
    assert (first["Home"], first["Minutes to first message"], first["Minutes to claim"]) == (
        "Rose Lodge",
        "2.0",
        "5.0",
    )
    assert by_key["4:3"]["Claimed by"] == "Zoë Ç. O'Brien"  # UTF-8 round trip
    assert by_key["99:4"]["Claimed at"] == by_key["99:4"]["Minutes to claim"] == ""
    assert homes[0] == list(reporting.HOME_COLUMNS)
    assert homes[1:] == [
        ["Rose Lodge", "4", "3", "10.0", "30.0", "3.5"],
        ["Willow House", "2", "2", "90.0", "120.0", "1.0"],
        ["All homes", "6", "5", "30.0", "120.0", "3.0"],
    ]


def test_csv_neutralises_every_cell_that_a_spreadsheet_would_run_as_a_formula(
    filled, folder
) -> None:
    filled[0].close()
    text = leadbot_report(folder, "--format", "csv").stdout.decode("utf-8-sig")
    cells = [cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row]
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert "'=cmd|' /C calc'!A0" in cells
    assert "'+44 1900 000000" in cells
    assert "'@SUM(1+1)" in cells
    assert '\'=HYPERLINK("http://x.example")' in cells  # a category, as Autumna sent it


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+2", "'=1+2"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@A1", "'@A1"),
        ("\t=1", "'\t=1"),
        ("Amira", "Amira"),
        ("a=b", "a=b"),
        (None, ""),
        (12.5, "12.5"),
    ],
)
def test_a_cell_that_could_start_a_formula_gets_an_apostrophe(value: object, cell: str) -> None:
    assert reporting.neutralised(value) == cell


# --- JSON and the table -----------------------------------------------------------------------


def test_json_has_every_lead_and_each_homes_figures(filled, folder) -> None:
    filled[0].close()
    done = leadbot_report(folder, "--format", "json", "--since", "10d")
    assert done.returncode == 0, done.stderr.decode()
    document = json.loads(done.stdout)
    assert [lead["lead"] for lead in document["leads"]] == [
        "4:1",
        "4:2",
        "4:3",
        "99:4",
        "4:5",
        "4:6",
    ]
    assert document["leads"][1]["claimed_by"] == "=cmd|' /C calc'!A0"  # JSON is data: as it is
    assert document["leads"][0]["minutes_to_claim"] == 5.0
    assert document["leads"][3]["minutes_to_claim"] is None
    assert datetime.fromisoformat(document["since"]).utcoffset() is not None
    rose = document["homes"][0]
    assert rose == {
        "home": "Rose Lodge",
        "leads": 4,
        "claimed": 3,
        "median_minutes_to_claim": 10.0,
        "90th_percentile_minutes_to_claim": 30.0,
        "median_minutes_to_first_message": 3.5,
        "service_id": 100000,
    }
    assert document["homes"][-1]["home"] == "All homes"


def test_the_table_lines_up_and_one_home_can_be_asked_for(filled, folder) -> None:
    filled[0].close()
    done = leadbot_report(folder, "--home", "willow house")
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode()
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["Lead", "Home", "Category"]
    assert [line.split()[0] for line in lines[2:4]] == ["4:5", "4:6"]
    assert "Rose Lodge" not in out
    summary = next(line for line in lines if line.startswith("Willow House  "))
    assert summary.split()[2:] == ["2", "2", "90", "120", "1"]
    header = lines[0]
    assert lines[2].index("Willow House") == header.index("Home")  # aligned columns


def test_an_unknown_home_or_since_is_a_usage_error_that_names_the_choices(folder) -> None:
    done = leadbot_report(folder, "--home", "Rose Lodg")
    assert done.returncode == 2
    assert "no home named 'Rose Lodg' (homes: Rose Lodge, Willow House)" in done.stderr.decode()
    done = leadbot_report(folder, "--since", "a while")
    assert done.returncode == 2 and "--since 'a while': write \"30d\"" in done.stderr.decode()
    done = leadbot_report(folder)
    assert done.returncode == 1 and "no database" in done.stderr.decode()


def test_the_table_shows_no_control_character_someone_typed(folder) -> None:
    config = load_config(folder / "rules.toml")
    store = Store(folder / "leadbot.db")
    fill(
        store,
        Poller(None, {}, store, config),  # type: ignore[arg-type]
        time.time() - 86400,
        [Known(100000, 1, claimed=3, by="Eve\x1b[31m red\x1b]0;title\x07")],
    )
    store.close()
    out = leadbot_report(folder).stdout.decode()
    assert "\x1b" not in out and "\x07" not in out
    assert "Eve[31m red]0;title" in out
