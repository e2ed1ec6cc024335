"""A loopback stand-in for the Slack Web API, for ``slack_sdk.WebClient(base_url=...)``.

Like Slack it answers HTTP 200 with ``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``,
and HTTP 429 with an integer ``Retry-After`` header for rate limits. It takes arguments
from the query string, a form-encoded body or a JSON body (slack_sdk sends
``chat.postMessage`` as JSON and ``conversations.history`` as a GET query), and the token
from ``Authorization: Bearer`` (or a ``token`` form/query argument, never from JSON, as
Slack documents).

Besides what leadbot posts, it keeps what people do to those messages: a test makes
someone react (``add_reaction``) or reply in the thread (``add_reply``), and leadbot reads
it back with ``reactions.get`` and ``conversations.replies``. ``apps.connections.open``
hands out the URLs of a Socket Mode stand-in (``slack.socket_mode = socket``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import parse_qsl

from . import FaultQueue, HttpRequest, HttpResponse, LoopbackHTTPServer, RateWindow

TEAM_ID = "T0000001"
BOT_USER_ID = "U0000BOT"
BOT_ID = "B0000001"
APP_ID = "A0000001"

MAX_BLOCKS = 50
MAX_TEXT_CHARS = 40_000

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


@dataclass(frozen=True)
class SlackMessage:
    """A message that chat.postMessage accepted."""

    channel: str  # the conversation id it landed in
    channel_arg: str  # the channel argument as the client sent it
    text: str | None
    blocks: list[dict[str, Any]] | None
    attachments: list[dict[str, Any]] | None
    metadata: dict[str, Any] | None
    ts: str
    thread_ts: str | None
    unfurl_links: bool | None
    unfurl_media: bool | None
    body: bytes  # the raw request body
    args: dict[str, Any]  # every argument after decoding
    edited: str | None = None  # when chat.update last changed it (a ts)

    def as_api(self, *, with_metadata: bool) -> dict[str, Any]:
        """The message as Slack returns it in chat.postMessage and conversations.history."""
        message: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "text": self.text or "",
            "ts": self.ts,
        }
        if self.blocks is not None:
            message["blocks"] = self.blocks
        if self.attachments is not None:
            message["attachments"] = self.attachments
        if self.thread_ts is not None:
            message["thread_ts"] = self.thread_ts
        if with_metadata and self.metadata is not None:
            message["metadata"] = self.metadata
        if self.edited is not None:
            message["edited"] = {"user": BOT_USER_ID, "ts": self.edited}
        return message


@dataclass(frozen=True)
class SlackReply:
    """A thread reply a test added in someone else's name: a person, or a bot (``bot_id``)."""

    channel: str
    thread_ts: str
    ts: str
    user: str
    text: str
    bot_id: str | None = None

    def as_api(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "message",
            "user": self.user,
            "team": TEAM_ID,
            "text": self.text,
            "ts": self.ts,
            "thread_ts": self.thread_ts,
            "parent_user_id": BOT_USER_ID,  # replies only hang under leadbot's messages here
        }
        if self.bot_id is not None:
            message["bot_id"] = self.bot_id
        return message


@dataclass(frozen=True)
class SlackUpdate:
    """One chat.update the stand-in accepted, and the message as it left it."""

    channel: str
    ts: str
    message: SlackMessage
    body: bytes
    args: dict[str, Any]


@dataclass(frozen=True)
class SlackEphemeral:
    """A message chat.postEphemeral accepted: shown to ``user`` only, never in history."""

    channel: str
    user: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    attachments: list[dict[str, Any]] | None
    thread_ts: str | None
    message_ts: str
    args: dict[str, Any]


class SocketModeUrls(Protocol):
    """Where apps.connections.open gets its WebSocket URLs (a Socket Mode stand-in)."""

    def new_url(self) -> str: ...


@dataclass(frozen=True)
class _Fault:
    error: str | None
    status: int
    retry_after: int
    drop: bool
    delay: float
    method: str | None
    channel: str | None


@dataclass(frozen=True)
class _Channel:
    id: str
    name: str
    is_private: bool = False
    user: str | None = None  # set for direct-message channels

    def as_api(self) -> dict[str, Any]:
        if self.user is not None:
            return {"id": self.id, "is_im": True, "user": self.user, "created": 0}
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": not self.is_private,
            "is_group": False,
            "is_im": False,
            "is_private": self.is_private,
            "is_archived": False,
            "is_member": True,
            "created": 0,
        }


def _json(status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> HttpResponse:
    body = json.dumps(data).encode()
    return HttpResponse(
        status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
    )


def _ok(**data: Any) -> HttpResponse:
    return _json(200, {"ok": True, **data})


def _error(error: str, status: int = 200, **extra: Any) -> HttpResponse:
    return _json(status, {"ok": False, "error": error, **extra})


def _ratelimited(retry_after: int) -> HttpResponse:
    return _json(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in {"1", "true"}


def _json_arg(value: Any) -> Any:
    """Form-encoded bodies carry blocks and metadata as JSON strings; JSON bodies as values."""
    return json.loads(value) if isinstance(value, str) else value


Posted = SlackMessage | SlackReply


class SlackStandin(LoopbackHTTPServer):
    """A Slack Web API on 127.0.0.1: ``with SlackStandin() as slack: WebClient(base_url=...)``.

    Methods: chat.postMessage, chat.update, chat.postEphemeral, conversations.history,
    conversations.replies, conversations.open, conversations.list, reactions.get,
    auth.test and apps.connections.open; anything else answers ``unknown_method``.

    Tokens: ``token`` (a bot token) for every method but apps.connections.open, which takes
    ``app_token`` (``xapp-``) and only in the Authorization header; each of the two answers
    ``not_allowed_token_type`` where the other is expected, any other token
    ``invalid_auth``. apps.connections.open answers ``socket_mode.new_url()`` (or
    ``socket_mode()`` for a plain callable).

    Channels: an id (C…, G…, D…), a user id (U…/W…, posting into that user's DM channel
    "D" + suffix) or a name ("#name" or "name"). Unknown names and ids are created on
    first post unless ``strict_channels=True``, which answers ``channel_not_found``
    instead (DMs to user ids always work). ``channels`` names those that exist from the start.

    ``rate_limit_per_channel`` turns on Slack's "about one message per second per channel"
    for chat.postMessage, by the rule in :class:`standins.RateWindow`: a post to a channel
    that accepted ``>= rate`` messages in the last second (``(t - 1 s, t]``) is answered
    429 with ``Retry-After`` = whole seconds until the oldest of them leaves the window
    (at least 1); refused posts are not counted in the window.
    """

    def __init__(
        self,
        token: str = "xoxb-test",
        *,
        strict_channels: bool = False,
        channels: tuple[str, ...] = ("general",),
        rate_limit_per_channel: float | None = None,
        app_token: str = "xapp-test",
        socket_mode: SocketModeUrls | Callable[[], str] | None = None,
    ) -> None:
        super().__init__()
        if not app_token.startswith("xapp-"):
            raise ValueError("an app-level token starts with xapp-")
        self.token = token
        self.app_token = app_token
        self.socket_mode = socket_mode
        self.strict_channels = strict_channels
        self._initial_channels = channels
        self._limit = rate_limit_per_channel
        self._lock = threading.RLock()
        self._faults: FaultQueue[_Fault] = FaultQueue()
        self._methods: dict[str, Callable[[dict[str, Any], bytes], HttpResponse]] = {
            "chat.postMessage": self._post_message,
            "conversations.history": self._history,
            "conversations.open": self._open,
            "conversations.list": self._list,
            "auth.test": self._auth_test,
            "apps.connections.open": self._connections_open,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "reactions.get": self._reactions_get,
            "conversations.replies": self._replies_of,
        }
        self.reset()

    # --- what tests read -------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/api/"

    @property
    def messages(self) -> list[SlackMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def requests(self) -> list[str]:
        """Method names of every request received, in order."""
        with self._lock:
            return list(self._requests)

    def messages_for(self, channel: str) -> list[SlackMessage]:
        """Accepted messages for a channel given by id, user id, "#name" or "name"."""
        with self._lock:
            found = self._lookup(channel)
            return [m for m in self._messages if found is not None and m.channel == found.id]

    def ratelimited_count(self, channel: str) -> int:
        """How many 429s were answered to requests naming this channel."""
        with self._lock:
            found = self._lookup(channel)
            return self._ratelimited[found.id if found else channel]

    def channel_id(self, channel: str) -> str | None:
        with self._lock:
            found = self._lookup(channel)
            return found.id if found else None

    def message(self, channel: str, ts: str) -> SlackMessage:
        """One of leadbot's messages as it stands now, after any chat.update."""
        with self._lock:
            found = self._find(channel, ts)
        if not isinstance(found, SlackMessage):
            raise KeyError(f"leadbot posted no message {ts} in {channel}")
        return found

    @property
    def updates(self) -> list[SlackUpdate]:
        """Every chat.update accepted, in order."""
        with self._lock:
            return list(self._updates)

    def updates_for(self, channel: str, ts: str) -> list[SlackUpdate]:
        """The history of one message's updates, oldest first."""
        with self._lock:
            found = self._lookup(channel)
            return [u for u in self._updates if found and (u.channel, u.ts) == (found.id, ts)]

    @property
    def ephemerals(self) -> list[SlackEphemeral]:
        with self._lock:
            return list(self._ephemerals)

    def reactions(self, channel: str, ts: str) -> dict[str, list[str]]:
        """Reaction name -> the users who reacted, in the order they did."""
        with self._lock:
            found = self._lookup(channel)
            key = (found.id if found else channel, ts)
            return {name: list(users) for name, users in self._reactions.get(key, {}).items()}

    # --- what tests change -----------------------------------------------------------

    def add_channel(self, name: str, *, private: bool = False) -> str:
        """Create a channel (idempotent) and return its id."""
        with self._lock:
            return self._create(name.removeprefix("#"), private=private).id

    def add_reaction(self, channel: str, ts: str, name: str, user: str) -> None:
        """Make ``user`` (a person, or ``BOT_USER_ID``) react with ``name`` to a message."""
        with self._lock:
            found = self._existing(channel, ts)
            users = self._reactions.setdefault((found.channel, ts), {}).setdefault(
                name.strip(":"), []
            )
            if user not in users:  # one reaction per person and emoji, as in Slack
                users.append(user)

    def remove_reaction(self, channel: str, ts: str, name: str, user: str) -> None:
        with self._lock:
            found = self._existing(channel, ts)
            reactions = self._reactions.get((found.channel, ts), {})
            users = reactions.get(name.strip(":"), [])
            if user in users:
                users.remove(user)
            if not users:
                reactions.pop(name.strip(":"), None)

    def add_reply(
        self, channel: str, thread_ts: str, user: str, text: str, bot_id: str | None = None
    ) -> str:
        """Reply in the thread of one of leadbot's messages as ``user``; return the reply's ts.

        ``bot_id`` makes it another bot's reply (leadbot's own is ``BOT_ID``).
        """
        with self._lock:
            parent = self._existing(channel, thread_ts)
            if not isinstance(parent, SlackMessage) or parent.thread_ts not in (None, parent.ts):
                raise ValueError(f"{thread_ts} is not a thread leadbot started in {channel}")
            reply = SlackReply(parent.channel, thread_ts, self._next_ts(), user, text, bot_id)
            self._replies.append(reply)
            self._threads.add((reply.channel, thread_ts))
            return reply.ts

    def fail_next(
        self,
        n: int = 1,
        error: str | None = None,
        *,
        status: int = 200,
        retry_after: int = 1,
        drop: bool = False,
        delay: float = 0.0,
        method: str | None = None,
        channel: str | None = None,
    ) -> None:
        """Answer the next ``n`` matching requests badly.

        ``status=200`` answers ``{"ok": false, "error": error}`` (``error`` defaults to
        "ratelimited" when nothing else is asked for); ``status=429`` answers a rate limit
        with ``Retry-After: retry_after``; another status answers that status with a JSON
        error body; ``drop`` closes the connection without an answer; ``delay`` sleeps
        first and, alone, then answers normally. ``method`` and ``channel`` (id or name)
        limit which requests match.
        """
        if error is None and status == 200 and not drop and not delay:
            error = "ratelimited"
        fault = _Fault(error, status, max(1, int(retry_after)), drop, delay, method, channel)
        self._faults.add(fault, n)

    def fail_channel(self, channel: str, error: str | None = "channel_not_found") -> None:
        """Fail every post to ``channel`` with ``error`` until called with ``error=None``."""
        with self._lock:
            if error is None:
                self._channel_failures.pop(channel, None)
            else:
                self._channel_failures[channel] = error

    def reset(self) -> None:
        """Forget messages, replies, reactions, updates, requests, faults and counters;
        channels go back to the start."""
        self._faults.clear()
        with self._lock:
            self._messages: list[SlackMessage] = []
            self._current: dict[tuple[str, str], SlackMessage] = {}  # after chat.update
            self._replies: list[SlackReply] = []
            self._threads: set[tuple[str, str]] = set()  # (channel, ts) of parents with replies
            self._updates: list[SlackUpdate] = []
            self._ephemerals: list[SlackEphemeral] = []
            self._reactions: dict[tuple[str, str], dict[str, list[str]]] = {}
            self._requests: list[str] = []
            self._ratelimited: Counter[str] = Counter()
            self._channel_failures: dict[str, str] = {}
            self._channels: dict[str, _Channel] = {}
            self._names: dict[str, str] = {}
            self._next_id = 1
            self._last_ts = 0
            self._window = RateWindow(self._limit) if self._limit else None
            self.connections = 0
            for name in self._initial_channels:
                self._create(name.removeprefix("#"))

    # --- serving ---------------------------------------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith("/api/"):
            return HttpResponse(404, b"Not Found")
        method = request.path.removeprefix("/api/")
        with self._lock:
            self._requests.append(method)
        args, token = self._arguments(request)
        if isinstance(args, str):
            return _error(args)
        channel = str(args["channel"]) if "channel" in args else None

        fault = self._faults.take(lambda f: self._fault_matches(f, method, channel))
        if fault is not None:
            answer = self._apply(fault, channel)
            if answer is not None:
                return answer

        handler = self._methods.get(method)
        if handler is None:
            return _error("unknown_method", req_method=method)
        bearer = request.headers.get("Authorization", "").startswith("Bearer ")
        problem = self._token_problem(method, token, bearer=bearer)
        if problem is not None:
            return _error(problem)
        return handler(args, request.body)

    def _token_problem(self, method: str, token: str | None, *, bearer: bool) -> str | None:
        if token is None:
            return "not_authed"
        wants_app_token = method == "apps.connections.open"
        expected, other = (
            (self.app_token, self.token) if wants_app_token else (self.token, self.app_token)
        )
        if token == other:
            return "not_allowed_token_type"
        if token != expected or (wants_app_token and not bearer):
            return "invalid_auth"  # Slack takes app tokens from the Authorization header only
        return None

    def _arguments(self, request: HttpRequest) -> tuple[dict[str, Any] | str, str | None]:
        """Decoded arguments (or an error code) and the token presented."""
        args: dict[str, Any] = dict(request.query)
        form_token = args.pop("token", None)
        if request.body:
            ctype = request.headers.get_content_type()
            if ctype == "application/json":
                try:
                    body = json.loads(request.body)
                except ValueError:
                    return "invalid_json", None
                if not isinstance(body, dict):
                    return "json_not_object", None
                args.update(body)
            elif ctype == "application/x-www-form-urlencoded":
                form = dict(parse_qsl(request.body.decode(), keep_blank_values=True))
                form_token = form.pop("token", form_token)
                args.update(form)
            else:
                return "invalid_post_type", None
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        return args, token or form_token

    def _fault_matches(self, fault: _Fault, method: str, channel: str | None) -> bool:
        if fault.method is not None and fault.method != method:
            return False
        if fault.channel is None:
            return True
        if channel is None:
            return False
        with self._lock:
            return self._same_channel(fault.channel, channel)

    def _apply(self, fault: _Fault, channel: str | None) -> HttpResponse | None:
        self.sleep(fault.delay)
        if fault.drop:
            return HttpResponse(drop=True)
        if fault.status == 429:
            self._count_ratelimited(channel)
            return _ratelimited(fault.retry_after)
        if fault.status != 200:
            return _error(fault.error or "internal_error", fault.status)
        if fault.error is not None:
            return _error(fault.error)
        return None

    def _count_ratelimited(self, channel: str | None) -> None:
        if channel is None:
            return
        with self._lock:
            found = self._lookup(channel)
            self._ratelimited[found.id if found else channel] += 1

    # --- channels (call with the lock held) ------------------------------------------

    def _create(self, name: str, *, private: bool = False) -> _Channel:
        if name in self._names:
            return self._channels[self._names[name]]
        channel = _Channel(f"C{self._next_id:07d}", name, is_private=private)
        self._next_id += 1
        self._channels[channel.id] = channel
        self._names[name] = channel.id
        return channel

    def _lookup(self, ref: str) -> _Channel | None:
        if _USER_ID.match(ref):
            return self._channels.get("D" + ref[1:])
        if _CHANNEL_ID.match(ref):
            return self._channels.get(ref)
        channel_id = self._names.get(ref.removeprefix("#"))
        return self._channels[channel_id] if channel_id else None

    def _resolve_for_post(self, ref: str) -> _Channel | None:
        found = self._lookup(ref)
        if found is not None:
            return found
        if _USER_ID.match(ref):
            return self._open_dm(ref)
        if self.strict_channels or not ref.removeprefix("#"):
            return None
        if _CHANNEL_ID.match(ref):
            channel = _Channel(ref, ref.lower(), is_private=ref.startswith("G"))
            self._channels[channel.id] = channel
            self._names.setdefault(channel.name, channel.id)
            return channel
        return self._create(ref.removeprefix("#"))

    def _open_dm(self, user: str) -> _Channel:
        dm = _Channel("D" + user[1:], "", is_private=True, user=user)
        return self._channels.setdefault(dm.id, dm)

    def _same_channel(self, a: str, b: str) -> bool:
        found_a, found_b = self._lookup(a), self._lookup(b)
        if found_a is not None and found_b is not None:
            return found_a.id == found_b.id
        return a.removeprefix("#") == b.removeprefix("#")

    def _channel_failure(self, channel: _Channel) -> str | None:
        for ref, error in self._channel_failures.items():
            if self._same_channel(ref, channel.id):
                return error
        return None

    # --- messages (call with the lock held) ------------------------------------------

    def _find(self, channel: str, ts: str) -> Posted | None:
        """A message (leadbot's, as it stands now, or a reply) by channel reference and ts."""
        found = self._lookup(channel)
        if found is None:
            return None
        if (found.id, ts) in self._current:
            return self._current[(found.id, ts)]
        return next((r for r in self._replies if (r.channel, r.ts) == (found.id, ts)), None)

    def _existing(self, channel: str, ts: str) -> Posted:
        found = self._find(channel, ts)
        if found is None:
            raise KeyError(f"no message {ts} in {channel}")
        return found

    def _message_arg(self, args: dict[str, Any], ts_arg: str, missing: str) -> Posted | str:
        """The message that ``channel`` (an id, as Slack wants here) and ``ts_arg`` name,
        or the error code: channel_not_found, or ``missing`` for the ts."""
        channel = self._channels.get(str(args.get("channel") or ""))
        if channel is None:
            return "channel_not_found"
        return self._find(channel.id, str(args.get(ts_arg) or "")) or missing

    def _thread_of(self, channel_id: str, thread_ts: str) -> list[Posted]:
        """A thread's parent, then its replies (leadbot's and others') oldest first."""
        replies: list[Posted] = [
            m
            for m in self._current.values()
            if m.channel == channel_id and m.thread_ts == thread_ts
        ]
        replies += [r for r in self._replies if (r.channel, r.thread_ts) == (channel_id, thread_ts)]
        parent = self._current[(channel_id, thread_ts)]
        return [
            parent,
            *sorted((r for r in replies if r.ts != thread_ts), key=lambda r: float(r.ts)),
        ]

    def _render(self, message: Posted, *, with_metadata: bool) -> dict[str, Any]:
        """A message as Slack shows it now: with its reactions, and a thread's summary on
        its parent."""
        if isinstance(message, SlackReply):
            data = message.as_api()
        else:
            data = message.as_api(with_metadata=with_metadata)
            is_reply = message.thread_ts not in (None, message.ts)
            if is_reply:
                data["parent_user_id"] = BOT_USER_ID
            has_thread = not is_reply and (message.channel, message.ts) in self._threads
            replies = self._thread_of(message.channel, message.ts)[1:] if has_thread else []
            if replies:
                users = list(dict.fromkeys(_author(r) for r in replies))
                data.update(
                    thread_ts=message.ts,
                    reply_count=len(replies),
                    reply_users=users,
                    reply_users_count=len(users),
                    latest_reply=replies[-1].ts,
                )
        reactions = self._reactions.get((message.channel, message.ts))
        if reactions:
            data["reactions"] = [
                {"name": name, "users": list(users), "count": len(users)}
                for name, users in reactions.items()
            ]
        return data

    def _next_ts(self) -> str:
        """Slack-style "seconds.micros" timestamps, strictly increasing."""
        micros = max(int(time.time() * 1_000_000), self._last_ts + 1)
        self._last_ts = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    # --- methods ---------------------------------------------------------------------

    def _post_message(self, args: dict[str, Any], body: bytes) -> HttpResponse:
        channel_arg = str(args.get("channel") or "")
        with self._lock:
            channel = self._resolve_for_post(channel_arg) if channel_arg else None
            if channel is None:
                return _error("channel_not_found")
            failure = self._channel_failure(channel)
            if failure is not None:
                return _error(failure)
            try:
                blocks = _json_arg(args.get("blocks"))
                attachments = _json_arg(args.get("attachments"))
                metadata = _json_arg(args.get("metadata"))
            except ValueError:
                return _error("invalid_arguments")
            problem = _content_problem(args.get("text"), blocks, attachments, metadata)
            if problem:
                return _error(problem)
            if self._window is not None:
                wait = self._window.retry_after(channel.id)
                if wait is not None:
                    self._ratelimited[channel.id] += 1
                    return _ratelimited(wait)
                self._window.accept(channel.id)
            message = SlackMessage(
                channel=channel.id,
                channel_arg=channel_arg,
                text=args.get("text"),
                blocks=blocks,
                attachments=attachments,
                metadata=metadata,
                ts=self._next_ts(),
                thread_ts=str(args["thread_ts"]) if args.get("thread_ts") else None,
                unfurl_links=_truthy(args["unfurl_links"]) if "unfurl_links" in args else None,
                unfurl_media=_truthy(args["unfurl_media"]) if "unfurl_media" in args else None,
                body=body,
                args=dict(args),
            )
            self._messages.append(message)
            self._current[(message.channel, message.ts)] = message
            if message.thread_ts is not None:
                self._threads.add((message.channel, message.thread_ts))
        return _ok(channel=channel.id, ts=message.ts, message=message.as_api(with_metadata=True))

    def _history(self, args: dict[str, Any], body: bytes) -> HttpResponse:
        """Newest first; thread replies left out; metadata only with include_all_metadata."""
        with self._lock:
            channel = self._channels.get(str(args.get("channel", "")))
            if channel is None:
                return _error("channel_not_found")
            messages = [
                self._current[(m.channel, m.ts)]
                for m in self._messages
                if m.channel == channel.id and m.thread_ts in (None, m.ts)
            ]
        try:
            limit = min(max(int(args.get("limit", 100)), 1), 999)
            inclusive = _truthy(args.get("inclusive", False))
            oldest = float(args.get("oldest") or 0)
            latest = float(args["latest"]) if args.get("latest") else float("inf")
            before = float(_decode_cursor(args.get("cursor"), "next_ts") or "inf")
        except binascii.Error:  # before ValueError, its base class
            return _error("invalid_cursor")
        except ValueError:
            return _error("invalid_arguments")

        def in_range(ts: float) -> bool:
            if inclusive:
                return oldest <= ts <= latest
            return oldest < ts < latest

        selected = [m for m in reversed(messages) if in_range(float(m.ts)) and float(m.ts) < before]
        page, rest = selected[:limit], selected[limit:]
        with_metadata = _truthy(args.get("include_all_metadata", False))
        with self._lock:
            rendered = [self._render(m, with_metadata=with_metadata) for m in page]
        data: dict[str, Any] = {
            "messages": rendered,
            "has_more": bool(rest),
            "pin_count": 0,
        }
        if rest:
            data["response_metadata"] = {"next_cursor": _encode_cursor("next_ts", page[-1].ts)}
        return _ok(**data)

    def _open(self, args: dict[str, Any], body: bytes) -> HttpResponse:
        users = [u for u in str(args.get("users", "")).split(",") if u]
        if not users:
            return _error("users_list_not_supplied")
        if len(users) > 1 or not _USER_ID.match(users[0]):
            return _error("user_not_found")  # group DMs are beyond this stand-in
        with self._lock:
            already = "D" + users[0][1:] in self._channels
            dm = self._open_dm(users[0])
        return _ok(channel={"id": dm.id}, no_op=already, already_open=already)

    def _list(self, args: dict[str, Any], body: bytes) -> HttpResponse:
        types = set(str(args.get("types") or "public_channel").split(","))
        try:
            limit = min(max(int(args.get("limit", 100)), 1), 1000)
            start = int(_decode_cursor(args.get("cursor"), "offset") or 0)
        except (ValueError, binascii.Error):
            return _error("invalid_cursor")
        with self._lock:
            matching = [c for c in self._channels.values() if _kind(c) in types]
        page = matching[start : start + limit]
        more = start + limit < len(matching)
        next_cursor = _encode_cursor("offset", str(start + limit)) if more else ""
        return _ok(
            channels=[c.as_api() for c in page],
            response_metadata={"next_cursor": next_cursor},
        )

    def _update(self, args: dict[str, Any], body: bytes) -> HttpResponse:
        """Text replaced when given; blocks and attachments kept unless given (``[]`` clears)."""
        with self._lock:
            found = self._message_arg(args, "ts", missing="message_not_found")
            if isinstance(found, str):
                return _error(found)
            if isinstance(found, SlackReply):
                return _error("cant_update_message")  # someone else's message
            if not any(k in args for k in ("text", "blocks", "attachments")):
                return _error("no_text")
            try:
                changes: dict[str, Any] = {
                    key: _json_arg(args[key])
                    for key in ("blocks", "attachments", "metadata")
                    if key in args
                }
            except ValueError:
                return _error("invalid_arguments")
            if "text" in args:
                changes["text"] = args["text"]
            updated = replace(found, **changes, edited=self._next_ts())
            problem = _content_problem(
                updated.text, updated.blocks, updated.attachments, updated.metadata
            )
            if problem:
                return _error(problem)
            updated = replace(
                updated, blocks=updated.blocks or None, attachments=updated.attachments or None
            )
            self._current[(updated.channel, updated.ts)] = updated
            self._updates.append(SlackUpdate(updated.channel, updated.ts, updated, body, args))
            message = self._render(updated, with_metadata=True)
        return _ok(channel=updated.channel, ts=updated.ts, text=updated.text or "", message=message)

    def _post_ephemeral(self, args: dict[str, Any], body: bytes) -> HttpResponse:
        channel_arg = str(args.get("channel") or "")
        user = str(args.get("user") or "")
        with self._lock:
            channel = self._resolve_for_post(channel_arg) if channel_arg else None
            if channel is None:
                return _error("channel_not_found")
            if not _USER_ID.match(user):
                return _error("user_not_found")
            failure = self._channel_failure(channel)
            if failure is not None:
                return _error(failure)
            try:
                blocks = _json_arg(args.get("blocks"))
                attachments = _json_arg(args.get("attachments"))
            except ValueError:
                return _error("invalid_arguments")
            problem = _content_problem(args.get("text"), blocks, attachments, None)
            if problem:
                return _error(problem)
            ephemeral = SlackEphemeral(
                channel=channel.id,
                user=user,
                text=args.get("text"),
                blocks=blocks,
                attachments=attachments,
                thread_ts=str(args["thread_ts"]) if args.get("thread_ts") else None,
                message_ts=self._next_ts(),
                args=dict(args),
            )
            self._ephemerals.append(ephemeral)
        return _ok(message_ts=ephemeral.message_ts)

    def _reactions_get(self, args: dict[str, Any], body: bytes) -> HttpResponse:
        if not args.get("channel") or not args.get("timestamp"):
            return _error("no_item_specified")
        with self._lock:
            found = self._message_arg(args, "timestamp", missing="message_not_found")
            if isinstance(found, str):
                return _error(found)
            message = self._render(found, with_metadata=False)
        message["permalink"] = (
            f"https://leadbot-test.slack.com/archives/{found.channel}/p{found.ts.replace('.', '')}"
        )
        return _ok(type="message", channel=found.channel, message=message)

    def _replies_of(self, args: dict[str, Any], body: bytes) -> HttpResponse:
        """The parent first, then the replies in ``(oldest, latest)``, in pages of ``limit``."""
        try:
            limit = min(max(int(args.get("limit", 1000)), 1), 1000)
            start = int(_decode_cursor(args.get("cursor"), "offset") or 0)
            inclusive = _truthy(args.get("inclusive", False))
            oldest = float(args.get("oldest") or 0)
            latest = float(args["latest"]) if args.get("latest") else float("inf")
        except binascii.Error:
            return _error("invalid_cursor")
        except ValueError:
            return _error("invalid_arguments")
        with_metadata = _truthy(args.get("include_all_metadata", False))
        with self._lock:
            found = self._message_arg(args, "ts", missing="thread_not_found")
            if isinstance(found, str):
                return _error(found)
            thread_ts = found.thread_ts or found.ts
            if (found.channel, thread_ts) not in self._current:
                return _error("thread_not_found")  # a reply to a message leadbot never posted
            parent, *replies = self._thread_of(found.channel, thread_ts)
            replies = [
                r
                for r in replies
                if (oldest <= float(r.ts) <= latest if inclusive else oldest < float(r.ts) < latest)
            ]
            items = [parent, *replies]
            page = [
                self._render(m, with_metadata=with_metadata) for m in items[start : start + limit]
            ]
        more = start + limit < len(items)
        data: dict[str, Any] = {"messages": page, "has_more": more}
        if more:
            data["response_metadata"] = {
                "next_cursor": _encode_cursor("offset", str(start + limit))
            }
        return _ok(**data)

    def _connections_open(self, args: dict[str, Any], body: bytes) -> HttpResponse:
        source = self.socket_mode
        if source is None:
            return _error("internal_error", detail="no Socket Mode stand-in: set socket_mode")
        return _ok(url=source() if callable(source) else source.new_url())

    def _auth_test(self, args: dict[str, Any], body: bytes) -> HttpResponse:
        return _ok(
            url="https://leadbot-test.slack.com/",
            team="Leadbot Test",
            user="leadbot",
            team_id=TEAM_ID,
            user_id=BOT_USER_ID,
            bot_id=BOT_ID,
            is_enterprise_install=False,
        )


def _author(message: Posted) -> str:
    return message.user if isinstance(message, SlackReply) else BOT_USER_ID


def _kind(channel: _Channel) -> str:
    if channel.user is not None:
        return "im"
    return "private_channel" if channel.is_private else "public_channel"


def _encode_cursor(kind: str, value: str) -> str:
    return base64.b64encode(f"{kind}:{value}".encode()).decode()


def _decode_cursor(cursor: Any, kind: str) -> str | None:
    if not cursor:
        return None
    decoded = base64.b64decode(str(cursor), validate=True).decode()
    prefix, _, value = decoded.partition(":")
    if prefix != kind or not value:
        raise binascii.Error("cursor of another kind")
    return value


def _content_problem(text: Any, blocks: Any, attachments: Any, metadata: Any) -> str | None:
    """The error Slack gives for a message body it refuses, or None."""
    if blocks is not None:
        if not isinstance(blocks, list):
            return "invalid_blocks_format"
        if len(blocks) > MAX_BLOCKS or not all(
            isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks
        ):
            return "invalid_blocks"
    if attachments is not None and not isinstance(attachments, list):
        return "invalid_attachments"
    if not text and not blocks and not attachments:
        return "no_text"
    if text is not None and not isinstance(text, str):
        return "invalid_arguments"
    if text and len(text) > MAX_TEXT_CHARS:
        return "msg_too_long"
    if metadata is not None and not (
        isinstance(metadata, dict)
        and isinstance(metadata.get("event_type"), str)
        and isinstance(metadata.get("event_payload"), dict)
    ):
        return "invalid_metadata_format"
    return None
