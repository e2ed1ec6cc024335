"""The Socket Mode stand-in and the Web API methods behind claims, through the real clients:
slack_sdk's built-in ``SocketModeClient`` and its ``WebClient``."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from .slack import APP_ID, BOT_ID, BOT_USER_ID, SlackStandin
from .socketmode import SocketModeStandin, block_actions

pytestmark = pytest.mark.timeout(20)

APP_TOKEN = "xapp-test"
BOT_TOKEN = "xoxb-test"
MANAGER = "U024BE7LH"
BLOCKS: list[dict[str, Any]] = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "*New lead*: Ada Lovelace"}},
    {
        "type": "actions",
        "block_id": "claim",
        "elements": [
            {
                "type": "button",
                "action_id": "claim_lead",
                "text": {"type": "plain_text", "text": "I'll call them"},
                "value": "4:2000",
            }
        ],
    },
]


class Inbox:
    """A request listener that keeps every request and acknowledges it unless told not to."""

    def __init__(self) -> None:
        self.ack = True
        self.requests: queue.Queue[SocketModeRequest] = queue.Queue()
        self.messages: list[dict[str, Any]] = []  # every message, hello included

    def __call__(self, client: BaseSocketModeClient, request: SocketModeRequest) -> None:
        if self.ack:
            client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
        self.requests.put(request)

    def on_message(self, client: BaseSocketModeClient, message: dict[str, Any], raw: Any) -> None:
        self.messages.append(message)

    def next(self, timeout: float = 3.0) -> SocketModeRequest:
        return self.requests.get(timeout=timeout)


def close(client: SocketModeClient) -> None:
    """``client.close()``, without waiting out the 1 s poll of the client's message queue
    (``close()`` sets ``closed`` too, but only wakes the poller by timeout)."""
    client.closed = True
    client.message_queue.put(None)  # the poller skips None, then sees ``closed``
    client.close()


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
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def client(slack: SlackStandin, inbox: Inbox) -> Iterator[SocketModeClient]:
    client = SocketModeClient(
        app_token=APP_TOKEN,
        web_client=WebClient(token=APP_TOKEN, base_url=slack.base_url, timeout=5),
        ping_interval=0.2,  # how soon a dead connection is noticed and replaced
        auto_reconnect_enabled=True,
    )
    client.socket_mode_request_listeners.append(inbox)
    client.message_listeners.append(inbox.on_message)
    try:
        yield client
    finally:
        close(client)


@pytest.fixture
def connected(client: SocketModeClient, socket_mode: SocketModeStandin) -> SocketModeClient:
    client.connect()
    socket_mode.wait_connected()
    return client


@pytest.fixture
def web(slack: SlackStandin) -> WebClient:
    return WebClient(token=BOT_TOKEN, base_url=slack.base_url, timeout=5, retry_handlers=[])


def slack_error(call: Callable[[], object]) -> str:
    """The error code of the ``ok: false`` answer (HTTP 200) that ``call`` gets."""
    with pytest.raises(SlackApiError) as raised:
        call()
    assert raised.value.response.status_code == 200
    return str(raised.value.response["error"])


def click(socket_mode: SocketModeStandin, ts: str = "1700000000.000100") -> str:
    return socket_mode.send_interactive(
        block_actions(MANAGER, "C0000001", ts, "claim_lead", "4:2000")
    )


# --- Socket Mode --------------------------------------------------------------------


def test_client_opens_a_url_connects_and_is_greeted(
    connected: SocketModeClient, socket_mode: SocketModeStandin, slack: SlackStandin, inbox: Inbox
) -> None:
    assert connected.is_connected()
    assert slack.requests == ["apps.connections.open"]
    assert connected.wss_uri == f"ws://127.0.0.1:{socket_mode.port}/link/?ticket=1"
    assert socket_mode.connections == socket_mode.open_connections == 1
    deadline = time.monotonic() + 3
    while not inbox.messages and time.monotonic() < deadline:
        time.sleep(0.01)
    (hello,) = inbox.messages
    assert hello["type"] == "hello" and hello["num_connections"] == 1
    assert hello["connection_info"] == {"app_id": APP_ID}


def test_a_click_reaches_the_listener_and_its_ack_the_standin(
    connected: SocketModeClient, socket_mode: SocketModeStandin, inbox: Inbox
) -> None:
    envelope_id = click(socket_mode)
    request = inbox.next()
    assert (request.type, request.envelope_id) == ("interactive", envelope_id)
    assert request.accepts_response_payload is False and request.retry_attempt == 0
    payload = request.payload
    assert payload["type"] == "block_actions" and payload["user"]["id"] == MANAGER
    assert payload["container"]["channel_id"] == payload["channel"]["id"] == "C0000001"
    assert payload["container"]["message_ts"] == payload["message"]["ts"] == "1700000000.000100"
    (action,) = payload["actions"]
    assert (action["action_id"], action["value"], action["block_id"], action["type"]) == (
        "claim_lead",
        "4:2000",
        "claim",
        "button",
    )
    ack = socket_mode.wait_for_ack(envelope_id)
    assert ack.payload is None and ack.delay is not None and ack.delay < 3
    assert socket_mode.unacknowledged() == []


def test_an_event_envelope_and_an_ack_with_a_payload(
    connected: SocketModeClient, socket_mode: SocketModeStandin, inbox: Inbox
) -> None:
    inbox.ack = False
    event = {"type": "reaction_added", "user": MANAGER, "reaction": "white_check_mark"}
    envelope_id = socket_mode.send_event(event)
    request = inbox.next()
    assert request.type == "events_api" and request.retry_reason == ""
    assert request.payload["type"] == "event_callback" and request.payload["event"] == event
    assert socket_mode.unacknowledged() == [envelope_id]
    connected.send_socket_mode_response(SocketModeResponse(envelope_id, payload={"ok": 1}))
    assert socket_mode.wait_for_ack(envelope_id).payload == {"ok": 1}
    assert socket_mode.unacknowledged() == []


def test_a_resent_envelope_arrives_twice_with_the_same_id(
    connected: SocketModeClient, socket_mode: SocketModeStandin, inbox: Inbox
) -> None:
    envelope_id = click(socket_mode)
    first = inbox.next()
    socket_mode.resend(envelope_id)
    again = inbox.next()
    assert first.envelope_id == again.envelope_id == envelope_id
    assert (first.retry_attempt, again.retry_attempt, again.retry_reason) == (0, 1, "timeout")
    assert again.payload == first.payload
    socket_mode.wait_for_ack(envelope_id, count=2)
    assert [e.retry_attempt for e in socket_mode.sent] == [0, 1]
    with pytest.raises(KeyError):
        socket_mode.resend("never-sent")


@pytest.mark.parametrize("reset", [True, False], ids=["reset", "quiet-close"])
def test_the_client_reconnects_by_itself_after_a_drop(
    connected: SocketModeClient,
    socket_mode: SocketModeStandin,
    slack: SlackStandin,
    inbox: Inbox,
    reset: bool,
) -> None:
    socket_mode.drop(reset=reset)
    # A reset is noticed at the next read; a quiet close only when the client's pings go
    # unanswered for 4 ping intervals (at least 1 s): see the client fixture.
    socket_mode.wait_connected(timeout=5, count=2)
    assert slack.requests == ["apps.connections.open"] * 2  # a new URL, not the old one
    assert socket_mode.refused == 0
    envelope_id = click(socket_mode)
    assert inbox.next().envelope_id == envelope_id
    socket_mode.wait_for_ack(envelope_id)


def test_the_client_reconnects_when_asked(
    connected: SocketModeClient, socket_mode: SocketModeStandin, slack: SlackStandin, inbox: Inbox
) -> None:
    socket_mode.ask_to_reconnect()
    socket_mode.wait_connected(count=2)
    assert slack.requests == ["apps.connections.open"] * 2
    envelope_id = click(socket_mode)
    assert inbox.next().envelope_id == envelope_id
    ack = socket_mode.wait_for_ack(envelope_id)
    assert ack.delay is not None and ack.delay < 3
    assert socket_mode.open_connections == 1


def test_an_unknown_or_used_url_is_refused(socket_mode: SocketModeStandin) -> None:
    url = socket_mode.new_url()
    with ws_connect(url, open_timeout=3) as ws:
        assert '"type": "hello"' in str(ws.recv(timeout=3))
    for stale in (url, url.replace("ticket=1", "ticket=99")):
        with pytest.raises(InvalidStatus, match="401"):
            ws_connect(stale, open_timeout=3)
    assert socket_mode.refused == 2 and socket_mode.connections == 1


def test_sending_with_no_client_connected_fails(socket_mode: SocketModeStandin) -> None:
    with pytest.raises(RuntimeError, match="no Socket Mode client"):
        click(socket_mode)


def test_apps_connections_open_wants_the_app_token_in_the_header(
    slack: SlackStandin, client: SocketModeClient
) -> None:
    web = WebClient(base_url=slack.base_url, retry_handlers=[])  # tokens given per call
    assert web.apps_connections_open(app_token=APP_TOKEN)["ok"]
    assert slack_error(lambda: web.apps_connections_open(app_token=BOT_TOKEN)) == (
        "not_allowed_token_type"
    )
    assert slack_error(lambda: web.apps_connections_open(app_token="xapp-x")) == "invalid_auth"
    as_form = {"token": APP_TOKEN}  # not in the Authorization header
    assert slack_error(lambda: web.api_call("apps.connections.open", data=as_form)) == (
        "invalid_auth"
    )
    assert slack_error(lambda: web.auth_test(token=APP_TOKEN)) == "not_allowed_token_type"
    wrong = SocketModeClient(app_token="xapp-wrong", web_client=WebClient(base_url=slack.base_url))
    try:
        with pytest.raises(SlackApiError, match="invalid_auth"):
            wrong.connect()
    finally:
        close(wrong)
    slack.socket_mode = None
    with pytest.raises(SlackApiError, match="internal_error"):
        client.connect()


# --- Web API: chat.update, chat.postEphemeral -----------------------------------------


def test_chat_update_replaces_the_message_and_keeps_its_history(
    slack: SlackStandin, web: WebClient
) -> None:
    metadata = {"event_type": "lead_delivered", "event_payload": {"lead": "4:2000"}}
    posted = web.chat_postMessage(
        channel="#leads", text="New lead", blocks=BLOCKS, metadata=metadata
    )
    channel, ts = posted["channel"], posted["ts"]
    claimed = [BLOCKS[0], {"type": "context", "elements": [{"type": "mrkdwn", "text": "Amira"}]}]

    answer = web.chat_update(channel=channel, ts=ts, text="Claimed", blocks=claimed)
    assert (answer["channel"], answer["ts"], answer["text"]) == (channel, ts, "Claimed")
    assert answer["message"]["blocks"] == claimed
    web.chat_update(channel=channel, ts=ts, text="Claimed by Amira")  # blocks kept

    now = slack.message(channel, ts)
    assert (now.text, now.blocks, now.metadata) == ("Claimed by Amira", claimed, metadata)
    assert slack.messages[0].text == "New lead"  # what was posted stays as posted
    assert [u.message.text for u in slack.updates_for("#leads", ts)] == [
        "Claimed",
        "Claimed by Amira",
    ]
    (shown,) = web.conversations_history(channel=channel, include_all_metadata=True)["messages"]
    assert shown["text"] == "Claimed by Amira" and shown["blocks"] == claimed
    assert shown["edited"]["user"] == BOT_USER_ID and shown["metadata"] == metadata

    web.chat_update(channel=channel, ts=ts, text="No buttons", blocks=[])
    assert slack.message(channel, ts).blocks is None


def test_chat_update_errors(slack: SlackStandin, web: WebClient) -> None:
    posted = web.chat_postMessage(channel="#leads", text="New lead")
    channel, ts = posted["channel"], posted["ts"]
    reply = slack.add_reply(channel, ts, MANAGER, "on it")
    cases = [
        ({"channel": channel, "ts": "1.000001", "text": "x"}, "message_not_found"),
        ({"channel": "C9999999", "ts": ts, "text": "x"}, "channel_not_found"),
        ({"channel": "#leads", "ts": ts, "text": "x"}, "channel_not_found"),  # ids only
        ({"channel": channel, "ts": reply, "text": "x"}, "cant_update_message"),
        ({"channel": channel, "ts": ts}, "no_text"),
        ({"channel": channel, "ts": ts, "blocks": [{"text": "typeless"}]}, "invalid_blocks"),
    ]
    for args, error in cases:
        with pytest.raises(SlackApiError) as raised:
            web.api_call("chat.update", json=args)
        assert raised.value.response["error"] == error, args
    slack.fail_next(1, "edit_window_closed", method="chat.update")
    with pytest.raises(SlackApiError, match="edit_window_closed"):
        web.chat_update(channel=channel, ts=ts, text="x")
    assert slack.updates == [] and slack.message(channel, ts).text == "New lead"


def test_chat_post_ephemeral(slack: SlackStandin, web: WebClient) -> None:
    answer = web.chat_postEphemeral(channel="#leads", user=MANAGER, text="Claimed by Tom")
    (ephemeral,) = slack.ephemerals
    assert answer["message_ts"] == ephemeral.message_ts
    assert (ephemeral.channel, ephemeral.user) == (slack.channel_id("leads"), MANAGER)
    assert web.conversations_history(channel=ephemeral.channel)["messages"] == []
    cases = [
        ({"channel": "#leads", "text": "x"}, "user_not_found"),
        ({"channel": "#leads", "user": MANAGER}, "no_text"),
        ({"user": MANAGER, "text": "x"}, "channel_not_found"),
    ]
    for args, error in cases:
        with pytest.raises(SlackApiError) as raised:
            web.api_call("chat.postEphemeral", json=args)
        assert raised.value.response["error"] == error, args
    slack.fail_next(1, "user_not_in_channel", method="chat.postEphemeral")
    with pytest.raises(SlackApiError, match="user_not_in_channel"):
        web.chat_postEphemeral(channel="#leads", user=MANAGER, text="x")
    assert len(slack.ephemerals) == 1


# --- Web API: reactions.get, conversations.replies ------------------------------------


def test_reactions_get(slack: SlackStandin, web: WebClient) -> None:
    posted = web.chat_postMessage(channel="#leads", text="New lead", blocks=BLOCKS)
    channel, ts = posted["channel"], posted["ts"]
    assert "reactions" not in web.reactions_get(channel=channel, timestamp=ts)["message"]

    slack.add_reaction(channel, ts, "eyes", BOT_USER_ID)
    slack.add_reaction("#leads", ts, ":white_check_mark:", MANAGER)
    slack.add_reaction(channel, ts, "white_check_mark", "U024BE7LJ")
    slack.add_reaction(channel, ts, "white_check_mark", MANAGER)  # once per person
    answer = web.reactions_get(channel=channel, timestamp=ts)
    assert (answer["type"], answer["channel"]) == ("message", channel)
    assert answer["message"]["ts"] == ts and answer["message"]["blocks"] == BLOCKS
    assert answer["message"]["reactions"] == [
        {"name": "eyes", "users": [BOT_USER_ID], "count": 1},
        {"name": "white_check_mark", "users": [MANAGER, "U024BE7LJ"], "count": 2},
    ]
    slack.remove_reaction(channel, ts, "eyes", BOT_USER_ID)
    assert slack.reactions(channel, ts) == {"white_check_mark": [MANAGER, "U024BE7LJ"]}
    history = web.conversations_history(channel=channel)["messages"]
    assert history[0]["reactions"][0]["count"] == 2

    cases = [
        ({"channel": channel}, "no_item_specified"),
        ({"channel": channel, "timestamp": "1.000001"}, "message_not_found"),
        ({"channel": "C9999999", "timestamp": ts}, "channel_not_found"),
    ]
    for args, error in cases:
        with pytest.raises(SlackApiError) as raised:
            web.api_call("reactions.get", http_verb="GET", params=args)
        assert raised.value.response["error"] == error, args
    slack.fail_next(1, status=429, retry_after=2, method="reactions.get")
    with pytest.raises(SlackApiError) as limited:
        web.reactions_get(channel=channel, timestamp=ts)
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "2"
    with pytest.raises(KeyError):
        slack.add_reaction(channel, "1.000001", "eyes", MANAGER)


def test_conversations_replies(slack: SlackStandin, web: WebClient) -> None:
    posted = web.chat_postMessage(channel="#leads", text="New lead")
    channel, ts = posted["channel"], posted["ts"]
    assert [m["ts"] for m in web.conversations_replies(channel=channel, ts=ts)["messages"]] == [ts]

    first = slack.add_reply(channel, ts, MANAGER, "I'll call them")
    mine = web.chat_postMessage(channel=channel, thread_ts=ts, text="Claimed by Amira")["ts"]
    other_bot = slack.add_reply(channel, ts, "U0OTHERBOT", "beep", bot_id="B0OTHER")
    answer = web.conversations_replies(channel=channel, ts=ts)
    parent, *replies = answer["messages"]
    assert parent["ts"] == ts and parent["reply_count"] == 3 and parent["thread_ts"] == ts
    assert parent["reply_users"] == [MANAGER, BOT_USER_ID, "U0OTHERBOT"]
    assert parent["latest_reply"] == other_bot and not answer["has_more"]
    assert [(r["ts"], r["user"], r.get("bot_id")) for r in replies] == [
        (first, MANAGER, None),
        (mine, BOT_USER_ID, BOT_ID),
        (other_bot, "U0OTHERBOT", "B0OTHER"),
    ]
    assert all(r["thread_ts"] == ts and r["parent_user_id"] == BOT_USER_ID for r in replies)

    page = web.conversations_replies(channel=channel, ts=ts, limit=2)
    assert [m["ts"] for m in page["messages"]] == [ts, first] and page["has_more"]
    rest = web.conversations_replies(
        channel=channel, ts=ts, cursor=page["response_metadata"]["next_cursor"]
    )
    assert [m["ts"] for m in rest["messages"]] == [mine, other_bot]
    newer = web.conversations_replies(channel=channel, ts=ts, oldest=first)
    assert [m["ts"] for m in newer["messages"]] == [ts, mine, other_bot]  # parent always
    from_a_reply = web.conversations_replies(channel=channel, ts=first)
    assert len(from_a_reply["messages"]) == 4
    (top,) = web.conversations_history(channel=channel)["messages"]  # replies stay in threads
    assert top["reply_count"] == 3

    for args, error in [
        ({"channel": channel, "ts": "1.000001"}, "thread_not_found"),
        ({"channel": channel}, "thread_not_found"),
        ({"channel": "C9999999", "ts": ts}, "channel_not_found"),
    ]:
        with pytest.raises(SlackApiError) as raised:
            web.api_call("conversations.replies", http_verb="GET", params=args)
        assert raised.value.response["error"] == error, args
    with pytest.raises(ValueError, match="not a thread"):
        slack.add_reply(channel, mine, MANAGER, "a reply to a reply")


def test_reset_forgets_replies_reactions_updates_and_ephemerals(
    slack: SlackStandin, web: WebClient
) -> None:
    ts = web.chat_postMessage(channel="#leads", text="New lead")["ts"]
    channel = slack.channel_id("leads")
    assert channel is not None
    slack.add_reply(channel, ts, MANAGER, "mine")
    slack.add_reaction(channel, ts, "eyes", MANAGER)
    web.chat_update(channel=channel, ts=ts, text="Claimed")
    web.chat_postEphemeral(channel=channel, user=MANAGER, text="psst")
    slack.reset()
    assert (slack.messages, slack.updates, slack.ephemerals) == ([], [], [])
    assert slack.reactions(channel, ts) == {}
