"""Claims heard from Slack: the Socket Mode listener and the watcher that asks Slack instead.

Real clients (slack_sdk's SocketModeClient and WebClient) against the loopback stand-ins: a
Socket Mode WebSocket that says hello, sends envelopes, drops and rotates connections, and the
Web API stand-in where people react and reply to leadbot's messages.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from standins.slack import BOT_ID, BOT_USER_ID, SlackStandin
from standins.socketmode import SocketModeStandin, block_actions

from bot.claims import BUTTON_ACTION, ClaimEvent, Inbox
from bot.listener import SlackListener, reaction_name
from bot.watcher import Watcher

pytestmark = pytest.mark.timeout(20)

# Shaped like real tokens, so that a leak would be noticed.
APP_TOKEN = "xapp-1-A0000001-4242424242-5f3c9e1d7b2a4c6e8f0a1b3c5d7e9f1a"
BOT_TOKEN = "xoxb-4242424242-1717171717-Qw3rTy8uIo9pAs2dFg5hJk7l"
MANAGER, SALES = "U024BE7LH", "U024BE7LJ"
NOW = 1_800_000_000.0
LEAD = "4:2000"


@pytest.fixture(autouse=True)
def no_threads_left() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2
    while (left := set(threading.enumerate()) - before) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not left, f"threads left running: {sorted(t.name for t in left)}"


@pytest.fixture
def socket_mode() -> Iterator[SocketModeStandin]:
    with SocketModeStandin() as standin:
        yield standin


@pytest.fixture
def slack(socket_mode: SocketModeStandin) -> Iterator[SlackStandin]:
    with SlackStandin(BOT_TOKEN, app_token=APP_TOKEN, socket_mode=socket_mode) as standin:
        yield standin


@pytest.fixture
def web(slack: SlackStandin) -> WebClient:
    return WebClient(token=BOT_TOKEN, base_url=slack.base_url, timeout=5, retry_handlers=[])


@pytest.fixture
def posted(web: WebClient) -> tuple[str, str]:
    """One of leadbot's lead messages: (channel id, ts)."""
    answer = web.chat_postMessage(channel="#leads", text="New lead: Ada Lovelace")
    return str(answer["channel"]), str(answer["ts"])


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def new_listener(slack: SlackStandin, inbox: Inbox) -> Iterator[Callable[..., SlackListener]]:
    """Makes started listeners (short pings and retries) and closes them all at the end."""
    made: list[SlackListener] = []

    def make(app_token: str = APP_TOKEN, base_url: str | None = None) -> SlackListener:
        listener = SlackListener(
            app_token,
            BOT_TOKEN,
            inbox,
            base_url=base_url or slack.base_url,
            clock=lambda: NOW,
            ping_interval=0.2,  # how soon a dead connection is noticed
            retry=0.05,
        )
        made.append(listener)
        listener.start()
        return listener

    yield make
    for listener in made:
        listener.close()


@pytest.fixture
def listener(
    new_listener: Callable[..., SlackListener], socket_mode: SocketModeStandin
) -> SlackListener:
    listener = new_listener()
    socket_mode.wait_connected()
    until(lambda: listener.connected)
    return listener


def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not so within {timeout} s"
        time.sleep(0.005)


def events(inbox: Inbox, count: int = 1, timeout: float = 3.0) -> list[ClaimEvent]:
    """The next `count` events, waiting for them (bounded)."""
    found: list[ClaimEvent] = []
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        found += inbox.drain()
        time.sleep(0.005)
    assert len(found) >= count, f"{len(found)} events of {count} within {timeout} s"
    return found


def click(
    socket_mode: SocketModeStandin, ts: str, user: str = MANAGER, action_id: str = BUTTON_ACTION
) -> str:
    return socket_mode.send_interactive(block_actions(user, "C0000001", ts, action_id, LEAD))


def only_the_sentinel(socket_mode: SocketModeStandin, inbox: Inbox, *sent: str) -> None:
    """Every envelope sent is acknowledged, and none of them made an event: a click sent
    after them is the only thing in the inbox."""
    for envelope_id in sent:
        socket_mode.wait_for_ack(envelope_id)
    click(socket_mode, "1.000099", user="USENTINEL")
    assert [e.by_id for e in events(inbox)] == ["USENTINEL"]
    assert inbox.drain() == []


def reaction_added(
    channel: str, ts: str, user: str = MANAGER, name: str = "white_check_mark", **extra: Any
) -> dict[str, Any]:
    item = {"type": "message", "channel": channel, "ts": ts}
    return {
        "type": "reaction_added",
        "user": user,
        "reaction": name,
        "item": item,
        "item_user": BOT_USER_ID,
        "event_ts": "1800000000.000200",
        **extra,
    }


def reply(channel: str, thread_ts: str, user: str = MANAGER, **extra: Any) -> dict[str, Any]:
    return {
        "type": "message",
        "channel": channel,
        "user": user,
        "text": "I'll call them",
        "ts": "1800000000.000300",
        "thread_ts": thread_ts,
        "parent_user_id": BOT_USER_ID,
        "channel_type": "channel",
        "event_ts": "1800000000.000300",
        **extra,
    }


# --- Socket Mode: button clicks ---------------------------------------------------------------


def test_a_click_reaches_the_inbox_and_is_acknowledged_at_once(
    listener: SlackListener,
    socket_mode: SocketModeStandin,
    slack: SlackStandin,
    inbox: Inbox,
    posted: tuple[str, str],
) -> None:
    channel, ts = posted
    envelope_id = socket_mode.send_interactive(
        block_actions(MANAGER, channel, ts, BUTTON_ACTION, LEAD, username="amira")
    )
    assert events(inbox) == [
        ClaimEvent("slack-button", "amira", MANAGER, LEAD, channel, ts, at=NOW)
    ]
    ack = socket_mode.wait_for_ack(envelope_id)
    assert ack.payload is None and ack.delay is not None and ack.delay < 1.0
    assert slack.requests[:2] == ["auth.test", "apps.connections.open"]
    assert listener.connected and listener.bot_user == BOT_USER_ID


def test_whatever_is_not_a_claim_is_acknowledged_and_ignored(
    listener: SlackListener, socket_mode: SocketModeStandin, inbox: Inbox
) -> None:
    sent = [
        click(socket_mode, "1.000001", action_id="open_lead"),
        socket_mode.send_interactive({"type": "view_submission", "user": {"id": MANAGER}}),
        socket_mode.send_event({"type": "app_mention", "user": MANAGER, "text": "hi"}),
        socket_mode.send_event({"type": "member_joined_channel", "user": MANAGER}),
    ]
    only_the_sentinel(socket_mode, inbox, *sent)


def test_a_redelivered_envelope_has_one_effect(
    listener: SlackListener, socket_mode: SocketModeStandin, inbox: Inbox
) -> None:
    envelope_id = click(socket_mode, "1.000001")
    assert len(events(inbox)) == 1
    socket_mode.resend(envelope_id)
    socket_mode.wait_for_ack(envelope_id, count=2)  # acknowledged again, all the same
    event_id = socket_mode.send_event(reaction_added("C0000001", "1.000001"))
    assert len(events(inbox)) == 1
    socket_mode.resend(event_id, retry_attempt=2, retry_reason="http_timeout")
    socket_mode.wait_for_ack(event_id, count=2)
    only_the_sentinel(socket_mode, inbox)


# --- Socket Mode: reactions and replies -------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "name", "counts"),
    [
        (MANAGER, "white_check_mark", True),
        (MANAGER, "white_check_mark::skin-tone-2", True),
        (BOT_USER_ID, "white_check_mark", False),
        (MANAGER, "eyes", False),
        (MANAGER, "heavy_check_mark", False),
    ],
)
def test_a_reaction_counts_when_a_person_uses_the_claim_emoji(
    listener: SlackListener,
    socket_mode: SocketModeStandin,
    inbox: Inbox,
    posted: tuple[str, str],
    user: str,
    name: str,
    counts: bool,
) -> None:
    channel, ts = posted
    envelope_id = socket_mode.send_event(reaction_added(channel, ts, user, name))
    if counts:
        assert events(inbox) == [ClaimEvent("slack-reaction", user, user, "", channel, ts, NOW)]
        socket_mode.wait_for_ack(envelope_id)
    else:
        only_the_sentinel(socket_mode, inbox, envelope_id)


def test_a_reaction_elsewhere_is_ignored(
    listener: SlackListener, socket_mode: SocketModeStandin, inbox: Inbox
) -> None:
    on_a_file = reaction_added("C0000001", "1.000001", item={"type": "file", "file": "F1"})
    on_someone_elses = reaction_added("C0000001", "1.000001", item_user=SALES)
    sent = [socket_mode.send_event(e) for e in (on_a_file, on_someone_elses)]
    only_the_sentinel(socket_mode, inbox, *sent)


@pytest.mark.parametrize(
    ("extra", "counts"),
    [
        ({}, True),
        ({"subtype": "thread_broadcast"}, True),
        ({"user": BOT_USER_ID, "bot_id": BOT_ID}, False),  # leadbot's own reply
        ({"user": "U0OTHERBOT", "bot_id": "B0OTHER"}, False),
        ({"subtype": "message_changed"}, False),
        ({"thread_ts": None}, False),  # a new message in the channel, not a reply
        ({"parent_user_id": SALES}, False),  # a thread under someone else's message
    ],
    ids=["person", "broadcast", "leadbot", "another-bot", "edit", "top-level", "other-thread"],
)
def test_a_thread_reply_counts_when_a_person_writes_it(
    listener: SlackListener,
    socket_mode: SocketModeStandin,
    inbox: Inbox,
    posted: tuple[str, str],
    extra: dict[str, Any],
    counts: bool,
) -> None:
    channel, ts = posted
    event = {k: v for k, v in {**reply(channel, ts), **extra}.items() if v is not None}
    envelope_id = socket_mode.send_event(event)
    if counts:
        assert events(inbox) == [ClaimEvent("slack-reply", MANAGER, MANAGER, "", channel, ts, NOW)]
        socket_mode.wait_for_ack(envelope_id)
    else:
        only_the_sentinel(socket_mode, inbox, envelope_id)


def test_the_claim_emoji_is_compared_without_colons_or_skin_tone() -> None:
    assert reaction_name(":white_check_mark:") == "white_check_mark"
    assert reaction_name("white_check_mark::skin-tone-6") == "white_check_mark"
    assert reaction_name("+1") == "+1"


# --- Socket Mode: the connection --------------------------------------------------------------


@pytest.mark.parametrize("reset", [True, False], ids=["reset", "quiet-close"])
def test_the_listener_reconnects_by_itself_after_a_drop(
    listener: SlackListener,
    socket_mode: SocketModeStandin,
    slack: SlackStandin,
    inbox: Inbox,
    reset: bool,
) -> None:
    socket_mode.drop(reset=reset)
    # A reset is noticed at once; a quiet close when pings go unanswered (about 1 s here).
    socket_mode.wait_connected(timeout=5, count=2)
    click(socket_mode, "1.000001")
    assert len(events(inbox)) == 1
    assert slack.requests.count("apps.connections.open") == 2  # a fresh URL each time
    assert socket_mode.refused == 0 and listener.connected


def test_the_listener_follows_slack_to_a_new_url(
    listener: SlackListener,
    socket_mode: SocketModeStandin,
    slack: SlackStandin,
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for count in (2, 3):
        socket_mode.ask_to_reconnect()
        socket_mode.wait_connected(count=count)
        envelope_id = click(socket_mode, "1.000001")
        assert len(events(inbox)) == 1
        ack = socket_mode.wait_for_ack(envelope_id)
        assert ack.delay is not None and ack.delay < 1.0
    assert slack.requests.count("apps.connections.open") == 3
    assert socket_mode.refused == 0 and socket_mode.open_connections == 1
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []  # routine


def test_a_failed_start_is_logged_and_retried_never_raised(
    new_listener: Callable[..., SlackListener],
    socket_mode: SocketModeStandin,
    slack: SlackStandin,
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bot.listener")
    slack.fail_next(3, "internal_error", method="apps.connections.open")
    started = time.monotonic()
    listener = new_listener()
    assert time.monotonic() - started < 0.5 and not listener.connected
    socket_mode.wait_connected(timeout=3)
    click(socket_mode, "1.000001")
    assert len(events(inbox)) == 1
    assert slack.requests.count("apps.connections.open") == 4
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "bot.listener"] == [
        (
            "WARNING",
            "cannot connect to Slack Socket Mode (apps.connections.open: internal_error); "
            "trying again",
        ),  # once, though it failed three times
        ("INFO", "listening for claims on Slack (Socket Mode)"),
    ]


def test_a_refused_app_token_says_what_to_fix_and_close_is_prompt(
    new_listener: Callable[..., SlackListener],
    socket_mode: SocketModeStandin,
    slack: SlackStandin,
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = new_listener(app_token=BOT_TOKEN)  # the bot token where the app token belongs
    deadline = time.monotonic() + 3
    while slack.requests.count("apps.connections.open") < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    listener.close()
    assert time.monotonic() - started < 1.0
    assert not listener.connected and socket_mode.connections == 0
    (warning,) = [r for r in caplog.records if r.name == "bot.listener"]
    assert warning.levelno == logging.WARNING
    assert "not_allowed_token_type" in warning.getMessage()
    assert "SLACK_APP_TOKEN must be the app-level xapp- token" in warning.getMessage()


def test_an_unreachable_slack_never_blocks_the_caller(
    new_listener: Callable[..., SlackListener],
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    started = time.monotonic()
    listener = new_listener(base_url=f"http://127.0.0.1:{port}/api/")
    time.sleep(0.2)  # a few failed attempts
    listener.close()
    assert time.monotonic() - started < 1.5 and not listener.connected


def test_close_leaves_no_thread_running(
    slack: SlackStandin, socket_mode: SocketModeStandin, inbox: Inbox
) -> None:
    before = set(threading.enumerate())
    listener = SlackListener(
        APP_TOKEN, BOT_TOKEN, inbox, base_url=slack.base_url, ping_interval=0.2
    )
    listener.start()
    try:
        socket_mode.wait_connected()
        assert "slack-listener" in {t.name for t in set(threading.enumerate()) - before}
    finally:
        started = time.monotonic()
        listener.close()
        listener.close()
    assert time.monotonic() - started < 1.0
    assert not listener.connected
    assert set(threading.enumerate()) - before == set()


def test_no_secret_reaches_a_log_line(
    listener: SlackListener,
    socket_mode: SocketModeStandin,
    inbox: Inbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # What `leadbot run --log-level DEBUG` lets through: ours at DEBUG, slack_sdk at INFO.
    slack_sdk = logging.getLogger("slack_sdk")
    level = slack_sdk.level
    slack_sdk.setLevel(logging.INFO)
    caplog.set_level(logging.DEBUG)
    try:
        socket_mode.drop()
        socket_mode.wait_connected(timeout=5, count=2)
        socket_mode.ask_to_reconnect()
        socket_mode.wait_connected(count=3)
        click(socket_mode, "1.000001")
        events(inbox)
    finally:
        slack_sdk.setLevel(level)
    ours = ("bot", "slack_sdk")  # the stand-ins' own server logs are not leadbot's
    lines = [r.getMessage() for r in caplog.records if r.name.split(".")[0] in ours]
    assert any("lost the Slack Socket Mode connection" in line for line in lines)
    for line in lines:
        assert APP_TOKEN not in line and BOT_TOKEN not in line and "ticket=" not in line


# --- the watcher: asking Slack ----------------------------------------------------------------


class FakeTime:
    """A clock that only moves when the watcher sleeps."""

    def __init__(self) -> None:
        self.now = NOW
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class TimedClient(WebClient):
    """A WebClient that notes (method, fake time) for every call it makes."""

    def __init__(self, fake: FakeTime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fake = fake
        self.calls: list[tuple[str, float]] = []

    def api_call(self, api_method: str, **kwargs: Any) -> Any:
        self.calls.append((api_method, self.fake.now))
        return super().api_call(api_method, **kwargs)


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def watcher(slack: SlackStandin, fake: FakeTime) -> Watcher:
    client = TimedClient(
        fake, token=BOT_TOKEN, base_url=slack.base_url, timeout=5, retry_handlers=[]
    )
    return Watcher(client, ":white_check_mark:", BOT_USER_ID, clock=fake.clock, sleep=fake.sleep)


def calls(watcher: Watcher) -> list[tuple[str, float]]:
    assert isinstance(watcher.client, TimedClient)
    return watcher.client.calls


def post(web: WebClient, count: int) -> list[tuple[str, str, str]]:
    """`count` lead messages as the watcher is given them: (lead key, channel id, ts)."""
    found = []
    for n in range(count):
        answer = web.chat_postMessage(channel="#leads", text=f"New lead {n}")
        found.append((f"4:{2000 + n}", str(answer["channel"]), str(answer["ts"])))
    return found


def test_the_watcher_finds_a_reaction_and_a_reply_by_a_person(
    watcher: Watcher, slack: SlackStandin, web: WebClient
) -> None:
    (a, ca, ta), (b, cb, tb), (_, cc, tc) = messages = post(web, 3)
    slack.add_reaction(ca, ta, "white_check_mark", BOT_USER_ID)
    slack.add_reaction(ca, ta, "eyes", MANAGER)
    slack.add_reaction(ca, ta, "white_check_mark::skin-tone-3", SALES)
    web.chat_postMessage(channel=cb, thread_ts=tb, text="Still unclaimed")  # leadbot's own
    slack.add_reply(cb, tb, "U0OTHERBOT", "beep", bot_id="B0OTHER")
    answered = slack.add_reply(cb, tb, MANAGER, "I'll call them")
    slack.add_reply(cb, tb, SALES, "me too")
    slack.add_reaction(cc, tc, "white_check_mark", BOT_USER_ID)
    slack.add_reaction(cc, tc, "eyes", MANAGER)
    web.chat_postMessage(channel=cc, thread_ts=tc, text="Still unclaimed")

    found = watcher.check(messages, threading.Event())

    assert found == [
        ClaimEvent("slack-reaction", SALES, SALES, a, ca, ta, at=NOW),
        ClaimEvent("slack-reply", MANAGER, MANAGER, b, cb, tb, at=float(answered)),
    ]
    # a's claim was in its reactions: its thread was not asked about
    assert [m for m, _ in calls(watcher)] == [
        "reactions.get",
        "reactions.get",
        "conversations.replies",
        "reactions.get",
        "conversations.replies",
    ]


def test_the_watcher_calls_each_method_at_most_once_per_pace(
    watcher: Watcher, fake: FakeTime, web: WebClient
) -> None:
    messages = post(web, 3)
    assert watcher.check(messages, threading.Event()) == []
    assert watcher.check(messages[:1], threading.Event()) == []  # the pace spans rounds
    for method in ("reactions.get", "conversations.replies"):
        times = [t for m, t in calls(watcher) if m == method]
        assert len(times) == 4
        assert all(later - earlier >= 1.2 for earlier, later in itertools.pairwise(times))
    assert fake.now - NOW == pytest.approx(3 * 1.2)  # the two methods take turns, not sums


def test_the_watcher_stops_the_round_on_a_rate_limit(
    watcher: Watcher, slack: SlackStandin, fake: FakeTime, web: WebClient
) -> None:
    messages = post(web, 2)
    b, cb, tb = messages[1]
    slack.add_reaction(cb, tb, "white_check_mark", MANAGER)
    slack.fail_next(1, status=429, retry_after=30, method="conversations.replies")

    assert watcher.check(messages, threading.Event()) == []
    assert [m for m, _ in calls(watcher)] == ["reactions.get", "conversations.replies"]

    found = watcher.check(messages, threading.Event())  # the next round goes on
    assert [e.lead for e in found] == [b]
    replies = [t for m, t in calls(watcher) if m == "conversations.replies"]
    assert replies[1] - replies[0] >= 30  # as Retry-After asked, with the fake clock


def test_the_watcher_stops_when_told(watcher: Watcher, fake: FakeTime, web: WebClient) -> None:
    messages = post(web, 3)
    stop = threading.Event()
    stop.set()
    assert watcher.check(messages, stop) == [] and calls(watcher) == []

    def sleep_then_stop(seconds: float) -> None:  # told to stop while waiting its turn
        fake.sleep(seconds)
        stop.set()

    stop.clear()
    paused = Watcher(
        watcher.client, "white_check_mark", BOT_USER_ID, clock=fake.clock, sleep=sleep_then_stop
    )
    assert paused.check(messages, stop) == []
    assert [m for m, _ in calls(watcher)] == ["reactions.get", "conversations.replies"]
    with pytest.raises(ValueError, match="bot_user"):
        Watcher(watcher.client, "white_check_mark", "")


def test_the_watcher_skips_what_slack_cannot_show_and_says_so_once(
    watcher: Watcher,
    slack: SlackStandin,
    web: WebClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    [(lead, channel, ts)] = post(web, 1)
    slack.add_reply(channel, ts, MANAGER, "mine")
    messages = [
        (lead, channel, ts),
        ("4:1", channel, "1.000001"),  # deleted
        ("4:2", "C9999999", ts),  # in a channel the bot is not in
        ("4:3", channel, "1.000002"),
    ]
    slack.fail_next(1, "missing_scope", method="reactions.get", channel=channel)

    for _ in range(2):
        found = watcher.check(messages, threading.Event())
        assert [(e.via, e.lead) for e in found] == [("slack-reply", lead)]

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "looking for claims in Slack: reactions.get needs the scope reactions:read: "
        "add it to the Slack app and reinstall it",
        "looking for claims in Slack: reactions.get answered message_not_found; "
        "skipping the message",
        "looking for claims in Slack: reactions.get answered channel_not_found; "
        "skipping the message",
    ]
