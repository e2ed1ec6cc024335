"""Claims, escalation and working hours through the real `leadbot run` process.

The Slack stand-in hands out the URLs of a Socket Mode stand-in, so the real slack-sdk Socket Mode
client inside leadbot connects to it; clicks are `block_actions` envelopes built from the messages
leadbot really posted. Everything that goes out to Slack (posts and edits) is checked with
slack_sdk's own Block Kit models.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import ROSE_MANAGER_SLACK, World, published_by_key, wait_for, write_rules
from standins.slack import SlackMessage
from standins.socketmode import SocketModeStandin, block_actions
from standins.validators import validate_slack_message

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
    return wait_for(
        lambda: len(messages_of(world, key)) == count and messages_of(world, key),
        what=f"{count} Slack messages of {key}",
    )


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
    """Every chat.postMessage and chat.update body is valid Block Kit; returns how many."""
    payloads = [{"text": m.text, "blocks": m.blocks} for m in world.slack.messages]
    payloads += [
        {"text": u.args.get("text"), "blocks": as_sent(u.args.get("blocks"))}
        for u in world.slack.updates
    ]
    for payload in payloads:
        validate_slack_message(payload)
    return len(payloads)


def click(
    socket_mode: SocketModeStandin, message: SlackMessage, user: str, name: str
) -> str:
    """`user` clicks "I'll call them" on one of leadbot's messages, as Slack shows it."""
    value = button_value(message)
    assert value is not None, "the message has no claim button"
    shown = {"type": "message", "text": message.text, "ts": message.ts, "blocks": message.blocks}
    return socket_mode.send_interactive(
        block_actions(
            user, message.channel, message.ts, BUTTON, value, username=name, message=shown
        )
    )


def claim_row(world: World, key: str) -> Any:
    rows = world.query("SELECT * FROM claims WHERE lead = ?", key)
    return rows[0] if rows else None


def edited(world: World, messages: list[SlackMessage], count: int = 1) -> None:
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
    at = datetime.fromtimestamp(claim["claimed_at"], LONDON).strftime("%H:%M")
    assert found.groups() == (user, at, str(round(claim["seconds_to_claim"] / 60)))


# --- 1-3. the button, over Socket Mode -----------------------------------------------------------


def test_a_click_is_acknowledged_claims_the_lead_and_edits_every_message_of_it(
    buttons: World, socket_mode: SocketModeStandin
) -> None:
    world = buttons
    world.autumna.add(fresh(VISIT))
    with world.running("run") as process:
        socket_mode.wait_connected(timeout=15)
        posted = delivered(world, VISIT, 2)
        assert {m.channel for m in posted} == {
            world.slack.channel_id("#rose-lodge"),
            world.slack.channel_id(ROSE_MANAGER_SLACK),
        }
        assert all(button_value(m) == VISIT for m in posted)
        dm = next(m for m in posted if m.channel.startswith("D"))

        envelope = click(socket_mode, dm, ROSE_MANAGER_SLACK, "amira")
        ack = socket_mode.wait_for_ack(envelope, timeout=3)
        assert ack.delay is not None and ack.delay < 3
        edited(world, posted)
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
