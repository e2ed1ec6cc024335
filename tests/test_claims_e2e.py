"""Claims, escalation and working hours through the real `leadbot run` process.

The Slack stand-in hands out the URLs of a Socket Mode stand-in, so the real slack-sdk Socket Mode
client inside leadbot connects to it; clicks are `block_actions` envelopes built from the messages
leadbot really posted. Everything that goes out to Slack (posts, edits and notes to one person)
is checked with slack_sdk's own Block Kit models.

Polls come every second; escalation steps are seconds apart; the one test of working hours waits
for the next whole minute, the finest a schedule can say.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import (
    ROSE_MANAGER_SLACK,
    SALES,
    WILLOW_MANAGER_SLACK,
    World,
    published_by_key,
    wait_for,
    write_rules,
)
from standins.slack import BOT_ID, BOT_USER_ID, SlackMessage
from standins.socketmode import SocketModeStandin, block_actions
from standins.validators import assert_multipart_alternative, validate_slack_message

from bot.demo.standin import redate

pytestmark = pytest.mark.timeout(90)

LONDON = ZoneInfo("Europe/London")
APP_TOKEN = "xapp-1-A0000001-4242424242-5f3c9e1d7b2a4c6e8f0a1b3c5d7e9f1a"
BUTTON = "leadbot_claim"  # the action_id Slack sends back when the button is clicked
TOM = "U07TOMREID"  # somebody else at Rose Lodge
VISIT = "2:1811"  # an in-person visit: #rose-lodge and the manager's DM (and Teams)
CLAIMED = re.compile(r"Claimed by <@(U[A-Z0-9]+)> at (\d\d:\d\d) — (\d+) min after it arrived")


# --- the world -----------------------------------------------------------------------------------


def fresh(key: str) -> str:
    """A published lead that the family sent six minutes ago."""
    return redate([published_by_key()[key]], datetime.now(UTC))[0]


def configure(world: World, extra: str = "") -> None:
    """Polls every second (and `extra` appended to the test rules.toml)."""
    rules = write_rules(world.folder, world.smtp.ca_file, extra=extra)
    rules.write_text(
        rules.read_text(encoding="utf-8").replace('interval = "1m"', 'interval = "1s"'),
        encoding="utf-8",
    )
    world.config = rules


@pytest.fixture
def socket_mode() -> Iterator[SocketModeStandin]:
    with SocketModeStandin() as standin:
        yield standin


@pytest.fixture
def buttons(world: World, socket_mode: SocketModeStandin) -> World:
    """A world where leadbot has an app token: Socket Mode, and a button on every lead."""
    configure(world)
    world.slack.app_token = APP_TOKEN
    world.slack.socket_mode = socket_mode
    world.extra_env["SLACK_APP_TOKEN"] = APP_TOKEN
    return world


@contextmanager
def running(world: World) -> Iterator[subprocess.Popen[str]]:
    """`leadbot run` in the background; if the test fails meanwhile, its log says why."""
    with world.running("run") as process:
        try:
            yield process
        except BaseException as failure:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            with suppress(ValueError, subprocess.TimeoutExpired):  # ValueError: already read
                failure.add_note("leadbot's log:\n" + process.communicate(timeout=30)[1][-6000:])
            raise


def stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM, as systemd stops it: exits 0 with no traceback. Returns its log."""
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and APP_TOKEN not in stderr
    return stderr


# --- what went out -------------------------------------------------------------------------------


def messages_of(world: World, key: str) -> list[SlackMessage]:
    """The lead's own Slack messages (not its escalations), as posted."""
    return [
        m
        for m in world.slack.messages
        if (m.metadata or {}).get("event_payload", {}).get("ref", "").startswith(f"{key}/")
    ]


def delivered(world: World, key: str, count: int) -> list[SlackMessage]:
    """Wait for the lead's `count` Slack messages; returns them."""
    found: list[SlackMessage] = wait_for(
        lambda: len(messages_of(world, key)) == count and messages_of(world, key),
        what=f"{count} Slack messages of {key}",
    )
    return found


def button_value(message: SlackMessage | dict[str, Any]) -> str | None:
    """The value of the "I'll call them" button, or None when the message has none."""
    blocks = message.blocks if isinstance(message, SlackMessage) else message.get("blocks")
    for block in blocks or []:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == BUTTON:
                return str(element["value"])
    return None


def texts(blocks: Any) -> str:
    """Every text in the blocks, one per line."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "text" and isinstance(item, str):
                    found.append(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(blocks)
    return "\n".join(found)


def as_sent(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def validate_everything_sent(world: World) -> int:
    """Every chat.postMessage, chat.update and chat.postEphemeral body is valid Block Kit (and
    has its text fallback); returns how many there were."""
    payloads = [{"text": m.text, "blocks": m.blocks} for m in world.slack.messages]
    payloads += [
        {"text": u.args.get("text"), "blocks": as_sent(u.args.get("blocks"))}
        for u in world.slack.updates
    ]
    payloads += [{"text": e.text, "blocks": e.blocks or []} for e in world.slack.ephemerals]
    for payload in payloads:
        validate_slack_message(payload)
    return len(payloads)


def click(socket_mode: SocketModeStandin, message: SlackMessage, user: str, name: str) -> str:
    """`user` clicks "I'll call them" on one of leadbot's messages, as Slack shows it."""
    value = button_value(message)
    assert value is not None, "the message has no claim button"
    shown = {"type": "message", "text": message.text, "ts": message.ts, "blocks": message.blocks}
    return socket_mode.send_interactive(
        block_actions(
            user, message.channel, message.ts, BUTTON, value, username=name, message=shown
        )
    )


def acknowledged(socket_mode: SocketModeStandin, envelope: str, count: int = 1) -> None:
    """Slack wants an envelope acknowledged within 3 s, or it delivers it again."""
    ack = socket_mode.wait_for_ack(envelope, timeout=3, count=count)
    assert ack.delay is not None and ack.delay < 3


def claim_row(world: World, key: str) -> Any:
    rows = world.query("SELECT * FROM claims WHERE lead = ?", key)
    return rows[0] if rows else None


def edited(world: World, messages: list[SlackMessage], count: int = 1) -> None:
    """Wait until chat.update has changed each of these messages `count` times."""
    wait_for(
        lambda: all(len(world.slack.updates_for(m.channel, m.ts)) >= count for m in messages),
        what="every Slack message of the lead edited",
    )


def assert_shows_claim(world: World, message: SlackMessage, user: str, key: str) -> None:
    """The message as it stands now: no button, and who claimed it, when, how soon."""
    now = world.slack.message(message.channel, message.ts)
    assert button_value(now) is None
    claim = claim_row(world, key)
    found = CLAIMED.search(texts(now.blocks))
    assert found, texts(now.blocks)
    assert found.groups() == (
        user,
        clock(claim["claimed_at"]),
        str(round(claim["seconds_to_claim"] / 60)),
    )


def clock(stamp: float) -> str:
    """HH:MM in the group's time zone."""
    return datetime.fromtimestamp(stamp, LONDON).strftime("%H:%M")


EVERY_DELIVERY = (
    "SELECT id, subject, channel, address, status, attempts FROM deliveries ORDER BY id"
)
OPEN_DELIVERIES = "SELECT 1 FROM deliveries WHERE status NOT IN ('sent', 'cancelled')"


# --- 1-3. the button, over Socket Mode -----------------------------------------------------------


def test_a_click_is_acknowledged_claims_the_lead_and_edits_every_message_of_it(
    buttons: World, socket_mode: SocketModeStandin
) -> None:
    world = buttons
    world.autumna.add(fresh(VISIT))
    with running(world) as process:
        socket_mode.wait_connected(timeout=15)
        posted = delivered(world, VISIT, 2)
        assert {m.channel for m in posted} == {
            world.slack.channel_id("#rose-lodge"),
            world.slack.channel_id(ROSE_MANAGER_SLACK),
        }
        assert all(button_value(m) == VISIT for m in posted)
        dm = next(m for m in posted if m.channel.startswith("D"))

        acknowledged(socket_mode, click(socket_mode, dm, ROSE_MANAGER_SLACK, "amira"))
        edited(world, posted)
        wait_for(lambda: not world.query(OPEN_DELIVERIES), what="the edits recorded as sent")
        stop(process)

    claim = claim_row(world, VISIT)
    assert (claim["by_name"], claim["by_id"], claim["via"]) == (
        "amira",
        ROSE_MANAGER_SLACK,
        "slack-button",
    )
    assert 6 * 60 <= claim["seconds_to_claim"] < 7 * 60  # the family asked six minutes ago
    for message in posted:
        assert len(world.slack.updates_for(message.channel, message.ts)) == 1
        assert_shows_claim(world, message, ROSE_MANAGER_SLACK, VISIT)
    assert world.slack.ephemerals == []
    assert validate_everything_sent(world) == 4  # two posts, two edits
    status = world.run("status")
    assert status.returncode == 0, status.stderr
    assert (
        f"claimed by amira (slack-button) today {clock(claim['claimed_at'])}, 6 min after it "
        "arrived" in status.stdout
    )


def test_a_second_click_by_someone_else_changes_nothing_and_tells_only_them(
    buttons: World, socket_mode: SocketModeStandin
) -> None:
    world = buttons
    world.autumna.add(fresh(VISIT))
    with running(world) as process:
        socket_mode.wait_connected(timeout=15)
        posted = delivered(world, VISIT, 2)
        channel = next(m for m in posted if m.channel.startswith("C"))
        acknowledged(socket_mode, click(socket_mode, channel, ROSE_MANAGER_SLACK, "amira"))
        edited(world, posted)
        wait_for(lambda: not world.query(OPEN_DELIVERIES), what="the edits recorded as sent")
        claim, before = claim_row(world, VISIT), world.query(EVERY_DELIVERY)

        # Tom's Slack still showed the button: he clicks it a moment later.
        acknowledged(socket_mode, click(socket_mode, channel, TOM, "tom"))
        (note,) = wait_for(lambda: world.slack.ephemerals, what="a note to Tom")
        wait_for(lambda: not world.query(OPEN_DELIVERIES), what="the note recorded as sent")
        stop(process)

    assert (note.user, note.channel) == (TOM, channel.channel)  # only Tom sees it, where he clicked
    assert note.text is not None
    assert note.text == (
        f"<@{ROSE_MANAGER_SLACK}> has already claimed this lead (at {clock(claim['claimed_at'])}, "
        "6 min after it arrived): nothing was changed."
    )
    assert claim_row(world, VISIT) == claim  # the first claim stands, as it was
    after = world.query(EVERY_DELIVERY)
    assert after[: len(before)] == before  # nothing else changed ...
    assert [(r["subject"], r["status"]) for r in after[len(before) :]] == [
        (f"ephemeral:{VISIT}:{TOM}", "sent")  # ... and only the note was added
    ]
    for message in posted:
        assert len(world.slack.updates_for(message.channel, message.ts)) == 1
        assert_shows_claim(world, message, ROSE_MANAGER_SLACK, VISIT)
    validate_everything_sent(world)


def test_an_envelope_delivered_twice_has_one_effect(
    buttons: World, socket_mode: SocketModeStandin
) -> None:
    world = buttons
    world.autumna.add(fresh(VISIT))
    with running(world) as process:
        socket_mode.wait_connected(timeout=15)
        posted = delivered(world, VISIT, 2)
        dm = next(m for m in posted if m.channel.startswith("D"))
        channel = next(m for m in posted if m.channel.startswith("C"))
        envelope = click(socket_mode, dm, ROSE_MANAGER_SLACK, "amira")
        socket_mode.resend(envelope)  # at once, as if the first ack had been lost
        acknowledged(socket_mode, envelope, count=2)
        edited(world, posted)
        socket_mode.resend(envelope, retry_attempt=2)  # and again once the claim is made
        acknowledged(socket_mode, envelope, count=3)
        # A click by Tom after the redeliveries: once his note is out, they were all handled.
        click(socket_mode, channel, TOM, "tom")
        wait_for(lambda: world.slack.ephemerals, what="the note to Tom")
        wait_for(lambda: not world.query(OPEN_DELIVERIES), what="everything recorded as sent")
        stop(process)

    assert [e.retry_attempt for e in socket_mode.sent if e.envelope_id == envelope] == [0, 1, 2]
    assert len(world.query("SELECT * FROM claims")) == 1
    assert claim_row(world, VISIT)["by_id"] == ROSE_MANAGER_SLACK
    edits = world.query("SELECT subject FROM deliveries WHERE subject LIKE 'edit:%'")
    assert len(edits) == len(posted) == 2  # one edit per message, queued once
    for message in posted:
        assert len(world.slack.updates_for(message.channel, message.ts)) == 1
    assert [e.user for e in world.slack.ephemerals] == [TOM]  # Amira is never told she has it
    validate_everything_sent(world)


# --- 4. without an app token: reactions and thread replies ---------------------------------------

CALL_BACK, REFERRAL = "4:2000", "6:2000"  # one Slack message each: #rose-lodge, #willow-house


def asked(world: World, method: str) -> int:
    return world.slack.requests.count(method)


def test_without_an_app_token_a_persons_reaction_or_reply_claims_and_the_bots_do_not(
    world: World,
) -> None:
    configure(world, extra='\n[claims]\ncheck_every = "1s"\n')
    assert "SLACK_APP_TOKEN" not in world.env()
    world.autumna.add(fresh(CALL_BACK))
    with running(world) as process:
        (message,) = delivered(world, CALL_BACK, 1)
        assert button_value(message) is None  # no Socket Mode, no button: how to claim instead
        assert "React with :white_check_mark: or reply in this thread" in texts(message.blocks)

        # leadbot's own reaction and reply are not claims
        world.slack.add_reaction(message.channel, message.ts, "white_check_mark", BOT_USER_ID)
        world.slack.add_reply(message.channel, message.ts, BOT_USER_ID, "noted", bot_id=BOT_ID)
        seen = asked(world, "reactions.get")
        # The round after next began once the next round's findings were recorded.
        wait_for(lambda: asked(world, "reactions.get") >= seen + 3, what="three more rounds")
        assert claim_row(world, CALL_BACK) is None
        assert asked(world, "conversations.replies") >= 2  # the thread was looked at too

        world.slack.add_reaction(message.channel, message.ts, "white_check_mark", TOM)
        wait_for(lambda: claim_row(world, CALL_BACK), what="the reaction's claim")
        edited(world, [message])

        world.autumna.add(fresh(REFERRAL))
        (other,) = delivered(world, REFERRAL, 1)
        world.slack.add_reply(other.channel, other.ts, WILLOW_MANAGER_SLACK, "I'll ring her")
        wait_for(lambda: claim_row(world, REFERRAL), what="the reply's claim")
        edited(world, [other])
        stop(process)

    by_reaction, by_reply = claim_row(world, CALL_BACK), claim_row(world, REFERRAL)
    assert (by_reaction["by_id"], by_reaction["via"]) == (TOM, "slack-reaction")
    assert (by_reply["by_id"], by_reply["via"]) == (WILLOW_MANAGER_SLACK, "slack-reply")
    assert_shows_claim(world, message, TOM, CALL_BACK)
    assert_shows_claim(world, other, WILLOW_MANAGER_SLACK, REFERRAL)
    for claimed in (message, other):
        now = world.slack.message(claimed.channel, claimed.ts)
        assert "React with" not in texts(now.blocks)  # how to claim gives way to who did
    validate_everything_sent(world)


# --- 5. `leadbot claim`, beside a running leadbot ------------------------------------------------


def test_leadbot_claim_while_running_records_it_and_the_slack_messages_show_it(
    buttons: World, socket_mode: SocketModeStandin
) -> None:
    world = buttons
    world.autumna.add(fresh(VISIT))
    with running(world) as process:
        posted = delivered(world, VISIT, 2)
        done = world.run("claim", VISIT, "--by", "Amira Khan")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"{VISIT} is claimed by Amira Khan, 6 min after it arrived")
        edited(world, posted)

        again = world.run("claim", VISIT, "--by", "Tom Reid")
        assert again.returncode == 1
        assert f"{VISIT} is already claimed by Amira Khan (cli)" in again.stderr
        unknown = world.run("claim", "9:9999", "--by", "Tom Reid")
        assert unknown.returncode == 1 and "no lead 9:9999" in unknown.stderr
        wait_for(lambda: not world.query(OPEN_DELIVERIES), what="the edits recorded as sent")
        stop(process)

    claim = claim_row(world, VISIT)
    assert (claim["by_name"], claim["by_id"], claim["via"]) == ("Amira Khan", "", "cli")
    claimed = f"Claimed by Amira Khan at {clock(claim['claimed_at'])} — 6 min after it arrived"
    for message in posted:
        assert len(world.slack.updates_for(message.channel, message.ts)) == 1
        now = world.slack.message(message.channel, message.ts)
        assert button_value(now) is None and claimed in texts(now.blocks)
    assert len(world.query("SELECT 1 FROM deliveries WHERE subject LIKE 'edit:%'")) == 2
    validate_everything_sent(world)


# --- 6. escalation -------------------------------------------------------------------------------

ESCALATE = """
[[rules]]
name = "Nobody leaves a call-back waiting"
when = { category = "Call Back Request" }
notify = ["home.slack"]
escalate = [
  { after = "2s", notify = ["home.manager_slack"] },
  { after = "6s", notify = ["fallback-slack", "sales-inbox"] },
]

[[rules]]
name = "Nor a virtual visit"
when = { category = "Virtual Visit Request" }
notify = ["home.slack"]
escalate = [{ after = "4s", notify = ["home.manager_slack"] }]
"""
VIRTUAL = "3:1812"


def escalations_of(world: World, key: str, step: int) -> list[SlackMessage]:
    ref = f"esc:{key}:{step}/"
    return [
        m
        for m in world.slack.messages
        if (m.metadata or {}).get("event_payload", {}).get("ref", "").startswith(ref)
    ]


def steps(world: World, key: str) -> list[tuple[int, str]]:
    rows = world.query("SELECT step, status FROM escalations WHERE lead = ? ORDER BY step", key)
    return [(r["step"], r["status"]) for r in rows]


def planned(world: World, key: str) -> bool:
    """Whether leadbot has stored the lead with its escalation steps (the database may not
    have its tables yet)."""
    try:
        return bool(steps(world, key))
    except sqlite3.OperationalError:
        return False


def test_an_unclaimed_lead_escalates_step_by_step_across_a_kill_and_a_claimed_one_does_not(
    world: World,
) -> None:
    configure(world, extra=ESCALATE)
    # The family asked 65 minutes ago; the virtual visit six minutes ago.
    long_ago = datetime.now(UTC) - timedelta(minutes=59)
    world.autumna.add(redate([published_by_key()[CALL_BACK]], long_ago)[0], fresh(VIRTUAL))
    explained = world.folder / "call-back.json"
    explained.write_text(world.autumna.documents[0], encoding="utf-8")
    explain = world.run("explain", str(explained))
    assert explain.returncode == 0, explain.stderr
    assert "Escalation, if nobody claims it (a claim stops what is left):" in explain.stdout
    assert "  after 2 s: home.manager_slack — would fire today " in explain.stdout
    assert "  after 6 s: fallback-slack, sales-inbox — would fire today " in explain.stdout

    with running(world) as first:
        wait_for(lambda: planned(world, VIRTUAL), what="the virtual visit stored")
        by_tom = world.run("claim", VIRTUAL, "--by", "Tom Reid")  # well before its 4 s
        assert by_tom.returncode == 0, by_tom.stderr
        (step_1,) = wait_for(lambda: escalations_of(world, CALL_BACK, 1), what="step 1")
        first.send_signal(signal.SIGKILL)  # between the steps
        first.communicate(timeout=30)

    assert steps(world, CALL_BACK) == [(1, "fired"), (2, "waiting")]
    assert steps(world, VIRTUAL) == [(1, "stopped")]
    status = world.run("status")
    assert status.returncode == 0, status.stderr
    assert "claimed by Tom Reid (cli) today " in status.stdout
    assert "awaiting a claim" in status.stdout
    assert re.search(
        r"step 1 \(2 s\): escalated today \d\d:\d\d to home\.manager_slack", status.stdout
    )
    assert re.search(
        r"step 2 \(6 s\): escalates today \d\d:\d\d to fallback-slack, sales-inbox", status.stdout
    )

    with running(world) as second:
        wait_for(lambda: escalations_of(world, CALL_BACK, 2), what="step 2 in Slack")
        wait_for(
            lambda: [m for m in world.smtp.messages if "Still unclaimed" in m.message["Subject"]],
            what="step 2 by email",
        )
        wait_for(lambda: not world.query(OPEN_DELIVERIES), what="everything recorded as sent")
        # Amira calls at last: every Slack message of the lead shows it, escalations included.
        assert world.run("claim", CALL_BACK, "--by", "Amira Khan").returncode == 0
        every = [*messages_of(world, CALL_BACK), *escalations_of(world, CALL_BACK, 1)]
        every += escalations_of(world, CALL_BACK, 2)
        edited(world, every)
        wait_for(lambda: not world.query(OPEN_DELIVERIES), what="the edits recorded as sent")
        log = stop(second)

    # Each step once: nothing repeated after the kill, nothing skipped.
    assert [m.channel for m in escalations_of(world, CALL_BACK, 1)] == [step_1.channel]
    assert step_1.channel == world.slack.channel_id(ROSE_MANAGER_SLACK)
    (step_2,) = escalations_of(world, CALL_BACK, 2)
    assert step_2.channel == world.slack.channel_id("#leads-fallback")
    assert steps(world, CALL_BACK) == [(1, "fired"), (2, "fired")]
    assert "escalated 4:2000 (step 2)" in log and "(step 1)" not in log
    # The message says the lead is still unclaimed, how long the family has waited, who had it.
    for message in (step_1, step_2):
        assert message.text is not None and message.text.startswith("Still unclaimed: ")
        shown = texts(message.blocks)
        assert "*Nobody has claimed this lead yet.* The family has waited 1 h 5 min; " in shown
        assert "#rose-lodge" in shown.split("The family has waited", 1)[1]
    (mail,) = [m for m in world.smtp.messages if "Still unclaimed" in m.message["Subject"]]
    assert mail.rcpt_tos == [SALES]
    assert mail.message["Subject"].startswith("Still unclaimed after 1 h 5 min: ")
    plain, _ = assert_multipart_alternative(mail.message)
    assert "Nobody has claimed this lead yet. The family has waited 1 h 5 min;" in plain
    # Once claimed, no message of the lead says that nobody has claimed it.
    claimed = f"Claimed by Amira Khan at {clock(claim_row(world, CALL_BACK)['claimed_at'])} — "
    for message in every:
        now = world.slack.message(message.channel, message.ts)
        assert f"{claimed}1 h 5 min after it arrived" in texts(now.blocks)
        assert "Still unclaimed" not in f"{now.text}\n{texts(now.blocks)}"
        assert "Nobody has claimed" not in texts(now.blocks)
    # The claimed lead never escalated, though its step came due before step 2 did.
    assert escalations_of(world, VIRTUAL, 1) == []
    assert not world.query("SELECT 1 FROM deliveries WHERE subject LIKE ?", f"esc:{VIRTUAL}:%")
    validate_everything_sent(world)


# --- 7. working hours (the one slow test: it waits for the next whole minute) --------------------

REFERRAL_WITHOUT_CONTACT, PLACEMENT = "7:2000", "8:2000"


def next_opening(now: datetime) -> datetime:
    """The next whole minute in London (schedules say HH:MM), at least 10 s away: the test needs
    about 4 s before it (two polls, a claim, a status), and keeps as much again to spare."""
    here = now.astimezone(LONDON)
    opening = here.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if (opening - here).total_seconds() < 10:
        opening += timedelta(minutes=1)
    return opening


@pytest.mark.timeout(150)
def test_a_message_outside_its_destinations_hours_is_deferred_and_sent_at_the_opening(
    world: World,
) -> None:
    opening = next_opening(datetime.now(UTC))
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[opening.weekday()]
    configure(
        world,
        extra=f"""
[hours.soon]
{day} = "{opening:%H:%M}-24:00"
bank_holidays = "open"

[destinations.office-slack]
slack = "#office"
hours = "soon"

[[rules]]
name = "Referrals and placements wait for the office"
when = {{ category = [7, 8] }}
notify = ["office-slack"]
""",
    )
    today = datetime.now(LONDON).date()
    when = ("today " if opening.date() == today else "tomorrow ") + f"{opening:%H:%M}"
    world.autumna.add(fresh(REFERRAL_WITHOUT_CONTACT))
    with running(world) as process:
        delivered(world, REFERRAL_WITHOUT_CONTACT, 1)  # #willow-house: no hours, at once
        world.autumna.add(fresh(PLACEMENT))  # arrives later, goes later
        (willow,) = delivered(world, PLACEMENT, 1)
        # Claimed while its #office message waits: that message will show the claim when it goes.
        assert world.run("claim", PLACEMENT, "--by", "Tom Reid").returncode == 0
        status = world.run("status")
        assert status.returncode == 0, status.stderr
        deferred = [line.strip() for line in status.stdout.splitlines() if "#office" in line]
        assert deferred == [f"pending  slack #office (office-slack), deferred until {when}"] * 2
        assert world.slack.messages_for("#office") == []
        edited(world, [willow])  # what is in a channel already is edited

        wait = opening.timestamp() - datetime.now(UTC).timestamp() + 15
        office = wait_for(
            lambda: (
                len(world.slack.messages_for("#office")) == 2
                and world.slack.messages_for("#office")
            ),
            timeout=wait,
            what="the deferred messages at the opening",
        )
        stop(process)

    refs = [m.metadata["event_payload"]["ref"] for m in office if m.metadata]
    assert refs == [f"{REFERRAL_WITHOUT_CONTACT}/slack:#office", f"{PLACEMENT}/slack:#office"]
    for message in office:  # at the opening, not before and not long after
        assert opening.timestamp() <= float(message.ts) < opening.timestamp() + 5
    unclaimed, claimed = office
    assert "React with :white_check_mark:" in texts(unclaimed.blocks)
    assert "Claimed by Tom Reid at " in texts(claimed.blocks)  # as it was when it went
    assert "React with" not in texts(claimed.blocks)
    assert world.slack.updates_for(claimed.channel, claimed.ts) == []  # posted so, not edited
    validate_everything_sent(world)


# --- 8. a lost Socket Mode connection blocks nothing ---------------------------------------------


def test_a_lost_socket_mode_connection_never_holds_up_polling_or_delivery(
    buttons: World, socket_mode: SocketModeStandin
) -> None:
    world = buttons
    with running(world) as process:
        socket_mode.wait_connected(timeout=15)
        # An event that is no claim, acknowledged: the connection is up and in use.
        acknowledged(socket_mode, socket_mode.send_event({"type": "app_home_opened", "user": TOM}))
        world.slack.socket_mode = None  # apps.connections.open fails: the outage lasts
        socket_mode.drop()
        wait_for(lambda: socket_mode.open_connections == 0, what="the connection gone")
        world.autumna.add(fresh(VISIT))
        posted = delivered(world, VISIT, 2)  # polled and delivered during the outage
        wait_for(
            lambda: world.slack.requests.count("apps.connections.open") >= 2,
            what="an attempt to reconnect, refused",
        )
        assert socket_mode.open_connections == 0 and socket_mode.connections == 1  # still out

        world.slack.socket_mode = socket_mode  # Slack is back
        socket_mode.wait_connected(timeout=20, count=2)
        dm = next(m for m in posted if m.channel.startswith("D"))
        acknowledged(socket_mode, click(socket_mode, dm, ROSE_MANAGER_SLACK, "amira"))
        edited(world, posted)
        log = stop(process)

    assert claim_row(world, VISIT)["via"] == "slack-button"
    for message in posted:
        assert_shows_claim(world, message, ROSE_MANAGER_SLACK, VISIT)
    outage = "cannot connect to Slack Socket Mode (apps.connections.open: internal_error)"
    assert outage in log
    assert log.index(outage) < log.rindex("listening for claims on Slack (Socket Mode)")
    validate_everything_sent(world)
