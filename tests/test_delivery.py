"""How delivery works, end to end: the real `leadbot` against the loopback stand-ins, asserting
on what the servers received and what leadbot recorded (README, "How delivery works").
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    ROSE_MANAGER_EMAIL,
    ROSE_MANAGER_SLACK,
    SALES,
    WILLOW_MANAGER_SLACK,
    Result,
    World,
    open_world,
    published_by_key,
    query,
    run_leadbot,
    write_rules,
)
from standins.slack import SlackMessage

pytestmark = pytest.mark.timeout(60)

GROUP = "TEAMS_GROUP_WEBHOOK"
SLOW_RETRIES = '\n[retries]\nfirst = "60s"\n'  # no retry falls due within one `run --once`
Key = tuple[str, str, str]  # (lead key, channel, address) of a delivery


def visit(lead_id: int, service: int = 100000) -> str:
    """An in-person visit request like the published one, with its own id and home."""
    doc = json.loads(published_by_key()["2:1811"])
    doc["id"] = lead_id
    doc["service"]["id"] = service
    return json.dumps(doc)


def slack_key(message: SlackMessage) -> str:
    ref = ((message.metadata or {}).get("event_payload") or {}).get("ref", "")
    return str(ref).split("/", 1)[0]


def arrived_at(message: SlackMessage) -> float:
    return float(message.ts)  # the stand-in stamps each message with its arrival time


def assert_ran(result: Result, code: int = 0) -> None:
    assert result.returncode == code, f"exit {result.returncode}\n{result.stderr[-3000:]}"


def statuses(world_or_db: World | Path) -> dict[Key, str]:
    db = world_or_db.db if isinstance(world_or_db, World) else world_or_db
    return {
        (r["subject"], r["channel"], r["address"]): r["status"]
        for r in query(db, "SELECT * FROM deliveries")
    }


def ops_notices(world: World) -> list[str]:
    """The text of each card the ops webhook accepted, with Teams' Markdown escapes undone."""
    return [
        "\n".join(
            block["text"].replace("\\", "") for card in request.cards for block in card["body"]
        )
        for request in world.teams.requests
        if request.webhook == "ops" and request.status == 202
    ]


def section(output: str, title: str) -> list[str]:
    """The indented lines under a heading of `leadbot status`."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    found = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        found.append(line.strip())
    return found


# --- rate limits: lanes never wait for each other -----------------------------------------------


def test_a_throttled_slack_channel_delays_no_other_channel(world: World) -> None:
    """#rose-lodge answers three 429s (Retry-After: 1) in a row; the manager's DMs, the other
    home's channel, Teams and email all finish while it waits, and it then goes at the steady
    rate of one a second."""
    world.autumna.add(
        visit(1811), visit(1813), visit(1815, service=200000), published_by_key()["4:2000"]
    )
    world.slack.add_channel("#rose-lodge")  # so the stand-in counts its 429s by channel id
    world.slack.fail_next(
        3, status=429, retry_after=1, method="chat.postMessage", channel="#rose-lodge"
    )
    assert_ran(world.once())

    throttled = sorted(world.slack.messages_for("#rose-lodge"), key=arrived_at)
    others = [m for m in world.slack.messages if m not in throttled]
    assert sorted(slack_key(m) for m in throttled) == ["2:1811", "2:1813", "4:2000"]
    assert Counter(m.channel_arg for m in others) == Counter(
        {ROSE_MANAGER_SLACK: 2, "#willow-house": 1, WILLOW_MANAGER_SLACK: 1}
    )
    assert world.slack.ratelimited_count("#rose-lodge") == 3

    began = min(arrived_at(m) for m in others)
    first_through = arrived_at(throttled[0])
    # three Retry-After: 1 in a row: no earlier than 3 s after the first attempt
    assert 2.9 <= first_through - began <= 4.5
    # everyone else was done while #rose-lodge was still blocked
    assert max(arrived_at(m) for m in others) < began + 1.0
    elsewhere = world.query("SELECT * FROM deliveries WHERE channel IN ('teams', 'email')")
    assert len(elsewhere) == 6  # four to the group webhook, two emails
    assert all(row["sent_at"] is not None and row["sent_at"] < first_through for row in elsewhere)
    # after a 429, the channel goes at the steady rate, with no burst
    gaps = [arrived_at(b) - arrived_at(a) for a, b in itertools.pairwise(throttled)]
    assert all(gap >= 0.95 for gap in gaps), gaps
    assert set(statuses(world).values()) == {"sent"}


# --- dead letters --------------------------------------------------------------------------


def test_deliveries_that_fail_for_good_are_dead_told_to_ops_once_and_rescued(world: World) -> None:
    """Every destination of two visit requests fails for good at once: six dead deliveries
    with their reasons, one notice to ops naming all six, and each lead on the fallback."""
    world.autumna.add(visit(1811), visit(1813))
    world.slack.fail_channel("#rose-lodge", "channel_not_found")
    world.slack.fail_channel(ROSE_MANAGER_SLACK, "user_not_found")
    world.teams.fail_next(2, 404, webhook="group")
    assert_ran(world.once(), 1)  # a delivery was dead-lettered during the run: exit 1

    rows = {
        (r["subject"], r["channel"], r["address"]): r
        for r in world.query("SELECT * FROM deliveries WHERE subject LIKE '2:%'")
    }
    reasons = {
        "#rose-lodge": "Slack error channel_not_found",
        ROSE_MANAGER_SLACK: "Slack error user_not_found",
        GROUP: "HTTP 404 from Teams",
    }
    assert {k: r["status"] for k, r in rows.items()} == {
        **{
            (lead, channel, address): "dead"
            for lead in ("2:1811", "2:1813")
            for channel, address in (
                ("slack", "#rose-lodge"),
                ("slack", ROSE_MANAGER_SLACK),
                ("teams", GROUP),
            )
        },
        ("2:1811", "slack", "#leads-fallback"): "sent",
        ("2:1813", "slack", "#leads-fallback"): "sent",
    }
    for (_, _, address), row in rows.items():
        assert row["last_error"] == reasons.get(address, "")

    # the fallback destination received each lead, once
    rescued = world.slack.messages_for("#leads-fallback")
    assert sorted(slack_key(m) for m in rescued) == ["2:1811", "2:1813"]

    # ops: one notice for the six, naming each with its reason
    (notice,) = ops_notices(world)
    assert "6 deliveries failed for good" in notice
    listed = {line for line in notice.splitlines() if line.startswith("• ")}
    assert listed == {
        f"• {lead} → {label} ({channel} {address}): {reasons[address]}"
        for lead in ("2:1811", "2:1813")
        for label, channel, address in (
            ("home.slack", "slack", "#rose-lodge"),
            ("home.manager_slack", "slack", ROSE_MANAGER_SLACK),
            ("group-teams", "teams", GROUP),
        )
    }
    assert "Every destination of 2:1811, 2:1813 failed, so they go to the fallback" in notice
    assert "leadbot resend --all --dead" in notice

    status = world.run("status")
    assert_ran(status)
    stuck = section(status.stdout, "Retrying and dead deliveries")
    assert len(stuck) == 6 and all(re.match(r"2:18\d\d\s+dead\s", line) for line in stuck)
    assert sum("channel_not_found" in line for line in stuck) == 2
    assert sum("HTTP 404 from Teams" in line for line in stuck) == 2

    # said once: another run tells ops nothing new
    assert_ran(world.once())
    assert len(ops_notices(world)) == 1
    assert len(world.slack.messages_for("#leads-fallback")) == 2


def test_one_dead_delivery_among_live_ones_is_announced_but_not_rescued(world: World) -> None:
    world.autumna.add(visit(1811))
    world.slack.fail_channel("#rose-lodge", "is_archived")
    assert_ran(world.once(), 1)  # a delivery was dead-lettered during the run: exit 1
    assert statuses(world)[("2:1811", "slack", "#rose-lodge")] == "dead"
    assert world.slack.messages_for("#leads-fallback") == []  # the lead reached others
    (notice,) = ops_notices(world)
    assert "1 delivery failed for good" in notice and "2:1811" in notice


# --- transient failures: retried with growing delays, delivered once -----------------------------


def test_transient_failures_are_retried_later_and_later_then_delivered_once(world: World) -> None:
    world.config = write_rules(world.folder, world.smtp.ca_file, extra=SLOW_RETRIES)
    world.autumna.add(published_by_key()["1:2000"])  # to the group Teams webhook only
    world.teams.fail_next(2, 503, webhook="group")
    key = ("1:2000", "teams", GROUP)

    def attempt() -> tuple[sqlite3.Row, float, float]:
        before = time.time()
        assert_ran(world.once())
        (row,) = world.query("SELECT * FROM deliveries WHERE subject = '1:2000'")
        return row, before, time.time()

    first, before, after = attempt()
    assert (first["status"], first["attempts"]) == ("retrying", 1)
    assert "HTTP 503 from Teams" in first["last_error"]
    # the first retry waits half to all of `first` (60 s), counted from the failure
    assert first["next_attempt_at"] - before >= 30
    assert first["next_attempt_at"] - after <= 60
    status = world.run("status").stdout
    assert re.search(
        r"retrying teams TEAMS_GROUP_WEBHOOK \(group-teams\), 1 attempt, "
        r"next .*: HTTP 503 from Teams",
        status,
    )

    world.make_retries_due()
    second, before, after = attempt()
    assert (second["status"], second["attempts"]) == ("retrying", 2)
    assert second["next_attempt_at"] - before >= 60  # the second: half to all of 2 × first
    assert second["next_attempt_at"] - after <= 120
    assert second["next_attempt_at"] > first["next_attempt_at"]
    assert second["first_attempt_at"] == first["first_attempt_at"]
    assert re.search(
        r"retrying teams TEAMS_GROUP_WEBHOOK .*2 attempts, next ", world.run("status").stdout
    )

    world.make_retries_due()  # the outage is over
    third, _, _ = attempt()
    assert (third["status"], third["attempts"]) == ("sent", 3)
    assert [r.status for r in world.teams.requests if r.webhook == "group"] == [503, 503, 202]
    assert len(world.teams.payloads("group")) == 1
    assert statuses(world) == {key: "sent"}
    assert ops_notices(world) == []  # nothing died


def test_a_retry_after_clears_is_sent_once_even_when_run_again(world: World) -> None:
    world.config = write_rules(world.folder, world.smtp.ca_file, extra=SLOW_RETRIES)
    world.autumna.add(published_by_key()["4:2000"])
    world.smtp.fail_next(1, 451, "RCPT", rcpt=SALES)
    assert_ran(world.once())
    assert statuses(world)[("4:2000", "email", SALES)] == "retrying"
    world.make_retries_due()
    assert_ran(world.once())
    assert_ran(world.once())
    to_sales = [m for m in world.smtp.messages if m.rcpt_tos == [SALES]]
    assert len(to_sales) == 1
    assert set(statuses(world).values()) == {"sent"}


def test_a_delivery_with_a_long_history_of_attempts_is_still_retried(world: World) -> None:
    """A webhook that answered 429 with Retry-After: 1 for twenty minutes has run up some
    1,200 attempts; the next ordinary failure must still be scheduled, not stop leadbot."""
    world.config = write_rules(world.folder, world.smtp.ca_file, extra=SLOW_RETRIES)
    world.autumna.add(published_by_key()["1:2000"])
    world.teams.fail_next(1, 503, webhook="group")
    assert_ran(world.once())
    # as if the webhook had then answered 429 (Retry-After: 1) for twenty minutes
    assert (
        world.change(
            "UPDATE deliveries SET attempts = 1200, next_attempt_at = 0 WHERE status = 'retrying'"
        )
        == 1
    )
    world.teams.fail_next(1, 500, webhook="group")
    result = world.once()
    assert_ran(result)
    assert "Traceback" not in result.stderr
    (row,) = world.query("SELECT * FROM deliveries WHERE subject = '1:2000'")
    assert (row["status"], row["attempts"]) == ("retrying", 1201)
    assert row["next_attempt_at"] - time.time() <= 3600  # at most `cap` away


# --- leadbot resend ------------------------------------------------------------------------

DEAD: set[Key] = {("2:1811", "slack", "#rose-lodge"), ("4:2000", "slack", "#rose-lodge")}
RETRYING: set[Key] = {
    ("4:2000", "email", SALES),
    ("6:2000", "email", SALES),
    ("2:1811", "teams", GROUP),
    ("4:2000", "teams", GROUP),
    ("6:2000", "teams", GROUP),
}
SENT: set[Key] = {
    ("2:1811", "slack", ROSE_MANAGER_SLACK),
    ("4:2000", "email", ROSE_MANAGER_EMAIL),
    ("6:2000", "slack", "#willow-house"),
    ("notice:1", "teams", "TEAMS_OPS_WEBHOOK"),
}


@dataclass
class Failed:
    """A leadbot folder whose database holds dead, retrying and sent deliveries."""

    world: World
    snapshot: Path

    def copy(self, folder: Path) -> Path:
        db = folder / "leadbot.db"
        shutil.copy(self.snapshot, db)
        return db

    def leadbot(self, db: Path, *args: str) -> Result:
        command = [
            sys.executable,
            "-m",
            "bot",
            "--config",
            str(self.world.config),
            "--db",
            str(db),
            *args,
        ]
        return run_leadbot(command, self.world.env(), self.world.folder)


@pytest.fixture(scope="module")
def failed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Failed]:
    """2:1811, 4:2000 and 6:2000 after one run in which #rose-lodge was missing (dead), the
    sales inbox answered 451 and the group Teams webhook 500 (both retrying)."""
    with open_world(tmp_path_factory.mktemp("failed")) as world:
        world.config = write_rules(world.folder, world.smtp.ca_file, extra=SLOW_RETRIES)
        leads = published_by_key()
        world.autumna.add(leads["2:1811"], leads["4:2000"], leads["6:2000"])
        world.slack.fail_channel("#rose-lodge", "channel_not_found")
        world.smtp.fail_next(2, 451, "RCPT", rcpt=SALES)
        world.teams.fail_next(3, 500, webhook="group")
        assert_ran(world.once(), 1)  # a delivery was dead-lettered during the run: exit 1
        snapshot = world.folder / "snapshot.db"
        source, copy = sqlite3.connect(world.db), sqlite3.connect(snapshot)
        try:
            source.backup(copy)  # consistent, write-ahead log and all
        finally:
            source.close()
            copy.close()
        yield Failed(world, snapshot)


def test_the_resend_fixture_holds_dead_retrying_and_sent_deliveries(failed: Failed) -> None:
    assert statuses(failed.snapshot) == {
        **{k: "dead" for k in DEAD},
        **{k: "retrying" for k in RETRYING},
        **{k: "sent" for k in SENT},
    }


@pytest.mark.parametrize(
    "args, chosen",
    [
        (["--all"], DEAD | RETRYING),
        (["--all", "--dead"], DEAD),
        (["--lead", "4:2000"], {k for k in DEAD | RETRYING if k[0] == "4:2000"}),
        (["--lead", "4:2000", "--dead"], {("4:2000", "slack", "#rose-lodge")}),
        (["--lead", "6:2000"], {("6:2000", "email", SALES), ("6:2000", "teams", GROUP)}),
        (["--lead", "9:9999"], set()),
        (["--destination", "sales-inbox"], {k for k in RETRYING if k[2] == SALES}),
        (["--destination", SALES], {k for k in RETRYING if k[2] == SALES}),
        (["--destination", f"email:{SALES}"], {k for k in RETRYING if k[2] == SALES}),
        (["--destination", "sales-inbox", "--dead"], set()),
        (["--destination", "home.slack"], DEAD),  # #willow-house, also home.slack, was sent
        (["--destination", "#rose-lodge", "--dead"], DEAD),
        (["--destination", "slack:#rose-lodge"], DEAD),
        (["--destination", "group-teams"], {k for k in RETRYING if k[1] == "teams"}),
        (["--destination", GROUP], {k for k in RETRYING if k[1] == "teams"}),
        (["--destination", f"teams:{GROUP}", "--lead", "2:1811"], {("2:1811", "teams", GROUP)}),
        (["--destination", "nowhere"], set()),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_resend_requeues_exactly_the_chosen_deliveries_and_says_which(
    failed: Failed, tmp_path: Path, args: list[str], chosen: set[Key]
) -> None:
    db = failed.copy(tmp_path)
    before = {
        (r["subject"], r["channel"], r["address"]): dict(r)
        for r in query(db, "SELECT * FROM deliveries")
    }
    started = time.time()
    result = failed.leadbot(db, "resend", *args)
    assert_ran(result)

    after = {
        (r["subject"], r["channel"], r["address"]): dict(r)
        for r in query(db, "SELECT * FROM deliveries")
    }
    for key, row in after.items():
        if key in chosen:
            assert row["status"] == "pending" and row["attempts"] == 0, key
            assert row["first_attempt_at"] is None
            assert started - 1 <= row["next_attempt_at"] <= time.time()
        else:
            assert row == before[key], key  # untouched

    queued = [line for line in result.stdout.splitlines() if line.startswith("queued again:")]
    assert len(queued) == len(chosen)
    for subject, channel, address in chosen:
        old = before[(subject, channel, address)]
        assert any(
            line.startswith(
                f"queued again: {subject} -> {old['label']} "
                f"({channel}:{address}), was {old['status']}: "
            )
            and old["last_error"] in line
            for line in queued
        )
    n = len(chosen)
    assert f"{n} deliver{'y' if n == 1 else 'ies'} queued" in result.stdout


@pytest.mark.parametrize("args", [[], ["--dead"]], ids=["nothing", "only --dead"])
def test_resend_without_a_selector_exits_2_and_changes_nothing(
    failed: Failed, tmp_path: Path, args: list[str]
) -> None:
    db = failed.copy(tmp_path)
    before = query(db, "SELECT * FROM deliveries")
    result = failed.leadbot(db, "resend", *args)
    assert_ran(result, 2)
    assert "--all" in result.stderr and "--lead" in result.stderr
    assert "--destination" in result.stderr
    assert [dict(r) for r in query(db, "SELECT * FROM deliveries")] == [dict(r) for r in before]


def test_status_shows_pending_retrying_and_dead_deliveries_distinctly(
    failed: Failed, tmp_path: Path
) -> None:
    db = failed.copy(tmp_path)
    assert_ran(failed.leadbot(db, "resend", "--lead", "2:1811", "--destination", GROUP))
    result = failed.leadbot(db, "status")
    assert_ran(result)
    out = result.stdout
    assert "Deliveries: 1 pending, 0 sending, 4 retrying, 4 sent, 2 dead" in out

    lines = [line.strip() for line in out.splitlines()]
    (pending,) = [line for line in lines if line.startswith("pending ")]
    assert pending.startswith("pending  teams TEAMS_GROUP_WEBHOOK (group-teams)")
    assert "next" not in pending and "attempt" not in pending  # queued afresh
    dead = [line for line in lines if line.startswith("dead ")]
    assert (
        dead
        == ["dead     slack #rose-lodge (home.slack), 1 attempt: Slack error channel_not_found"] * 2
    )
    retrying = [line for line in lines if line.startswith("retrying ")]
    assert len(retrying) == 4 and all(", 1 attempt, next " in line for line in retrying)
    assert sum("HTTP 500 from Teams" in line for line in retrying) == 2
    assert sum("(451)" in line for line in retrying) == 2

    stuck = section(out, "Retrying and dead deliveries")
    assert len(stuck) == 6
    assert Counter(line.split()[1] for line in stuck) == Counter({"retrying": 4, "dead": 2})
    assert not any("pending" in line for line in stuck)


def test_a_resent_delivery_is_delivered_by_the_next_run(world: World) -> None:
    world.autumna.add(visit(1811))
    world.slack.fail_channel("#rose-lodge", "not_in_channel")
    assert_ran(world.once(), 1)  # a delivery was dead-lettered during the run: exit 1
    assert statuses(world)[("2:1811", "slack", "#rose-lodge")] == "dead"

    world.slack.fail_channel("#rose-lodge", None)  # the admin invites the bot
    resend = world.run("resend", "--destination", "slack:#rose-lodge", "--dead")
    assert_ran(resend)
    assert "queued again: 2:1811 -> home.slack (slack:#rose-lodge), was dead" in resend.stdout
    assert statuses(world)[("2:1811", "slack", "#rose-lodge")] == "pending"

    assert_ran(world.once())
    (row,) = world.query("SELECT * FROM deliveries WHERE address = '#rose-lodge'")
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 1, "")
    assert [slack_key(m) for m in world.slack.messages_for("#rose-lodge")] == ["2:1811"]
    # nothing else went twice
    assert len(world.slack.messages_for(ROSE_MANAGER_SLACK)) == 1
    assert len(world.teams.payloads("group")) == 1
    assert len(ops_notices(world)) == 1


# --- one message per destination -------------------------------------------------------------

TWO_RULES = f"""
[destinations.manager-inbox]
email = ["{ROSE_MANAGER_EMAIL}"]

[[rules]]
name = "Rose Lodge call-backs also reach its manager, sales and channel"
when = {{ service = "Rose Lodge", category = "Call Back Request" }}
notify = ["manager-inbox", "sales-inbox", "home.slack"]
"""


def test_a_destination_reached_by_two_rules_gets_one_message(world: World) -> None:
    world.config = write_rules(world.folder, world.smtp.ca_file, extra=TWO_RULES)
    world.autumna.add(published_by_key()["4:2000"])
    assert_ran(world.once())

    recipients = Counter(r for m in world.smtp.messages for r in m.rcpt_tos)
    assert recipients == Counter({ROSE_MANAGER_EMAIL: 1, SALES: 1})
    assert [slack_key(m) for m in world.slack.messages] == ["4:2000"]
    assert len(world.teams.payloads("group")) == 1

    rows = world.query("SELECT * FROM deliveries WHERE subject = '4:2000'")
    assert len(rows) == 4
    by_address = {r["address"]: json.loads(r["reasons"]) for r in rows}
    for address in (ROSE_MANAGER_EMAIL, SALES, "#rose-lodge"):
        assert by_address[address] == [
            "Call-back requests are urgent",
            "Rose Lodge call-backs also reach its manager, sales and channel",
        ], address
