"""Hearing claims from Slack as they happen, over Socket Mode (no public endpoint needed).

slack-sdk's built-in `SocketModeClient` carries the connection; this module acknowledges every
envelope at once, turns button clicks, reactions and thread replies into `ClaimEvent`s in the
`Inbox`, and keeps the connection up: a background thread reconnects with backoff whenever the
connection is gone (a drop, a stale link, a failed start), while Slack's own `disconnect`
(URL rotation) is followed by the client itself. Nothing here touches the database.

Slack app: Socket Mode on, an app-level token (`xapp-`, scope connections:write), Interactivity
on for the button, and for reactions and replies the bot events reaction_added, message.channels,
message.groups and message.im (scopes reactions:read, channels:history, groups:history,
im:history).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from .claims import BUTTON_ACTION, ClaimEvent, Inbox
from .settings import register_secrets

log = logging.getLogger(__name__)

MAX_RETRY = 60.0  # seconds between reconnect attempts at most; apps.connections.open is Tier 1
_REMEMBERED = 1000  # envelope and event ids kept to recognise Slack's redeliveries
_BAD_TOKEN = ("invalid_auth", "not_authed", "not_allowed_token_type", "token_revoked")
_FIX = {
    "auth.test": ": check SLACK_BOT_TOKEN, the bot's xoxb- token",
    "apps.connections.open": ": SLACK_APP_TOKEN must be the app-level xapp- token "
    "(connections:write)",
}


def reaction_name(name: str) -> str:
    """An emoji name as compared: no colons, no skin tone ("white_check_mark::skin-tone-2")."""
    return name.strip(":").split("::")[0]


def is_person_reply(message: dict[str, Any], bot_user: str) -> bool:
    """A reply in a thread, written by a person: not the parent, not this bot, not any bot."""
    thread_ts, ts = message.get("thread_ts"), message.get("ts")
    return (
        bool(thread_ts and ts and thread_ts != ts)
        and not message.get("bot_id")
        and message.get("subtype") in (None, "thread_broadcast")
        and bool(message.get("user"))
        and message.get("user") != bot_user
    )


def slack_failure(exc: Exception) -> tuple[str, float | None]:
    """What went wrong, short and safe to log ("ratelimited", "missing_scope", "HTTP 502",
    "URLError"), and the Retry-After seconds when Slack gave them."""
    if not isinstance(exc, SlackApiError):
        return type(exc).__name__, None
    response = exc.response
    if response.status_code == 429:
        value = response.headers.get("Retry-After") or response.headers.get("retry-after")
        try:
            return "ratelimited", max(1.0, float(value))
        except (TypeError, ValueError):
            return "ratelimited", None
    if response.status_code != 200 or not isinstance(response.data, dict):
        return f"HTTP {response.status_code}", None
    return str(response.get("error") or "unknown_error"), None


class _Client(SocketModeClient):
    """slack-sdk's client, except that asking for a URL fails at once instead of sleeping out a
    rate limit inside the call (the listener's own backoff waits, and can be interrupted)."""

    def issue_new_wss_url(self) -> str:
        return str(self.web_client.apps_connections_open(app_token=self.app_token)["url"])


class SlackListener:
    """Claims from Slack over Socket Mode: `start()`, then events arrive in `inbox`; `close()`."""

    def __init__(
        self,
        app_token: str,
        bot_token: str,
        inbox: Inbox,
        reaction: str = "white_check_mark",
        base_url: str | None = None,
        clock: Callable[[], float] = time.time,
        *,
        ping_interval: float = 5.0,
        retry: float = 1.0,
        timeout: int = 10,
    ) -> None:
        register_secrets([app_token, bot_token])
        self.inbox = inbox
        self.reaction = reaction_name(reaction)
        self.bot_user = ""  # learnt from auth.test before connecting
        self._app_token = app_token
        self._clock = clock
        self._ping_interval = ping_interval
        self._retry = retry
        self._web = WebClient(
            token=bot_token,
            base_url=base_url or WebClient.BASE_URL,
            timeout=timeout,
            retry_handlers=[],
        )
        self._client: _Client | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # the connection ended: look again now
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seen_lock = threading.Lock()
        self._trouble = ""  # the last failure reported, so an outage is logged once
        self._greeted = False
        self._hello: str | None = None  # the session Slack last said hello on

    @property
    def connected(self) -> bool:
        """True once Slack has said hello on the current connection."""
        client = self._client
        return (
            client is not None
            and bool(client.is_connected())
            and self._hello == client.session_id()
        )

    def start(self) -> None:
        """Connect in the background and stay connected; failures are logged and retried."""
        if self._thread is not None:
            return
        self._client = _Client(
            app_token=self._app_token,
            web_client=self._web,
            auto_reconnect_enabled=False,  # our thread reconnects, with backoff
            ping_interval=self._ping_interval,
            concurrency=4,
        )
        self._client.socket_mode_request_listeners.append(self._on_request)
        self._client.message_listeners.append(self._on_message)
        self._client.on_error_listeners.append(self._on_error)
        self._client.on_close_listeners.append(lambda code, reason: self._wake.set())
        self._thread = threading.Thread(target=self._stay_connected, name="slack-listener")
        self._thread.daemon = True
        self._thread.start()

    def close(self) -> None:
        """Disconnect and stop every thread this listener started (a second call does nothing)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        client, self._client = self._client, None
        if client is not None:
            # Wake the client's queue poller now rather than at its 1 s timeout.
            client.closed = True
            client.message_queue.put(None)
            client.close()

    # --- the connection (on the listener's thread) -----------------------------------------

    def _stay_connected(self) -> None:
        wait = self._retry
        while not self._stop.is_set():
            client = self._client
            if client is None:
                return
            if client.is_connected():
                wait = self._retry
                self._wake.wait(self._ping_interval)
                self._wake.clear()
                continue
            retry_after = self._connect(client)
            if retry_after is None:
                continue
            self._stop.wait(max(wait, retry_after))
            wait = min(wait * 2, MAX_RETRY)

    def _connect(self, client: _Client) -> float | None:
        """One attempt; None when connected, else the seconds Slack asked us to wait (or 0)."""
        step = "auth.test"
        try:
            if not self.bot_user:
                self.bot_user = str(self._web.auth_test()["user_id"])
            step = "apps.connections.open"
            # Not forced: if a `disconnect` from Slack is being followed right now, that
            # new connection is kept rather than replaced.
            client.connect_to_new_endpoint()
        except Exception as exc:
            reason, retry_after = slack_failure(exc)
            fix = _FIX[step] if reason in _BAD_TOKEN else ""
            self._report(f"cannot connect to Slack Socket Mode ({step}: {reason}){fix}")
            return retry_after or 0.0
        if client.is_connected():
            return None
        self._report("cannot connect to Slack Socket Mode (the WebSocket handshake failed)")
        return 0.0

    def _report(self, problem: str) -> None:
        if problem != self._trouble:
            log.warning("%s; trying again", problem)
        else:
            log.debug("%s; trying again", problem)
        self._trouble = problem

    # --- what Slack sends (on the client's threads) ----------------------------------------

    def _on_message(self, client: BaseSocketModeClient, message: dict[str, Any], raw: Any) -> None:
        if message.get("type") != "hello":
            return
        current = self._client
        self._hello = current.session_id() if current is not None else None
        if not self._greeted or self._trouble:
            log.info("listening for claims on Slack (Socket Mode)")
        else:
            log.debug("Socket Mode connection renewed")
        self._greeted, self._trouble = True, ""

    def _on_error(self, error: Exception) -> None:
        if self._greeted and not self._trouble and not self._stop.is_set():
            self._trouble = f"lost the Slack Socket Mode connection ({type(error).__name__})"
            log.warning("%s; reconnecting", self._trouble)
        self._wake.set()

    def _on_request(self, client: BaseSocketModeClient, request: SocketModeRequest) -> None:
        try:
            client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
        except Exception as exc:  # the connection went away: Slack delivers it again
            log.debug("could not acknowledge a Socket Mode envelope (%s)", type(exc).__name__)
        payload = request.payload if isinstance(request.payload, dict) else {}
        if not self._first_time(request.envelope_id, payload.get("event_id")):
            return
        event = self._claim(request.type, payload)
        if event is not None:
            self.inbox.put(event)

    def _first_time(self, *ids: Any) -> bool:
        """False if any of these ids came before (Slack redelivers what it thinks was lost)."""
        keys = [str(i) for i in ids if i]
        with self._seen_lock:
            if any(k in self._seen for k in keys):
                return False
            for key in keys:
                self._seen[key] = None
            while len(self._seen) > _REMEMBERED:
                self._seen.popitem(last=False)
        return True

    def _claim(self, kind: str, payload: dict[str, Any]) -> ClaimEvent | None:
        if kind == "interactive" and payload.get("type") == "block_actions":
            return self._button(payload)
        event = payload.get("event")
        if kind != "events_api" or not isinstance(event, dict):
            return None
        if event.get("type") == "reaction_added":
            return self._reaction(event)
        if event.get("type") == "message":
            return self._reply(event)
        return None

    def _button(self, payload: dict[str, Any]) -> ClaimEvent | None:
        actions = payload.get("actions") or []
        action = next((a for a in actions if a.get("action_id") == BUTTON_ACTION), None)
        user, container = payload.get("user") or {}, payload.get("container") or {}
        if action is None or not user.get("id"):
            return None
        return ClaimEvent(
            via="slack-button",
            by_name=str(user.get("name") or user.get("username") or user["id"]),
            by_id=str(user["id"]),
            lead=str(action.get("value") or ""),
            channel=str(container.get("channel_id") or ""),
            ts=str(container.get("message_ts") or ""),
            at=self._clock(),
        )

    def _reaction(self, event: dict[str, Any]) -> ClaimEvent | None:
        item, user = event.get("item") or {}, event.get("user")
        if (
            reaction_name(str(event.get("reaction", ""))) != self.reaction
            or item.get("type") != "message"
            or not user
            or user == self.bot_user
            or event.get("item_user") not in (None, self.bot_user)  # only leadbot's messages
        ):
            return None
        return ClaimEvent(
            via="slack-reaction",
            by_name=str(user),
            by_id=str(user),
            channel=str(item.get("channel") or ""),
            ts=str(item.get("ts") or ""),
            at=self._clock(),
        )

    def _reply(self, event: dict[str, Any]) -> ClaimEvent | None:
        parent = event.get("parent_user_id")  # only threads under leadbot's messages
        if not is_person_reply(event, self.bot_user) or parent not in (None, self.bot_user):
            return None
        user = str(event["user"])
        return ClaimEvent(
            via="slack-reply",
            by_name=user,
            by_id=user,
            channel=str(event.get("channel") or ""),
            ts=str(event["thread_ts"]),
            at=self._clock(),
        )
