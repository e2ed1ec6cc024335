"""A loopback stand-in for Slack's Socket Mode WebSocket, for slack_sdk's ``SocketModeClient``.

Hand it to the Web API stand-in (``slack.socket_mode = socket``): each ``apps.connections.open``
then answers a new single-use URL, ``ws://127.0.0.1:PORT/link/?ticket=N``, as Slack rotates
its URLs. On each connection it says ``hello`` as Slack does; the test then sends envelopes
(``send_interactive``, ``send_event``), redelivers them (``resend``), cuts the connection
(``drop``) or asks the client to reconnect (``ask_to_reconnect``), and reads back the
acknowledgements (``{"envelope_id": ...}``) with the time each arrived.

A ticket serves one connection: a client that reconnects to an old URL instead of calling
``apps.connections.open`` again is refused (HTTP 401) and counted in ``refused``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .slack import APP_ID, BOT_ID, BOT_USER_ID, TEAM_ID

__all__ = ["Ack", "Envelope", "SocketModeStandin", "block_actions"]

_PATH = "/link/"
T = TypeVar("T")


@dataclass(frozen=True)
class Envelope:
    """One delivery of an envelope (a redelivery is another ``Envelope`` with the same id)."""

    envelope_id: str
    type: str  # "interactive" | "events_api"
    payload: dict[str, Any]
    accepts_response_payload: bool
    retry_attempt: int
    retry_reason: str

    def as_json(self) -> dict[str, Any]:
        return {
            "envelope_id": self.envelope_id,
            "type": self.type,
            "payload": self.payload,
            "accepts_response_payload": self.accepts_response_payload,
            "retry_attempt": self.retry_attempt,
            "retry_reason": self.retry_reason,
        }


@dataclass(frozen=True)
class Ack:
    """An acknowledgement from the client: ``{"envelope_id": ..., "payload"?: ...}``."""

    envelope_id: str
    payload: dict[str, Any] | None
    received_at: float  # time.monotonic()
    delay: float | None  # seconds since the envelope was last sent; None if it never was


class SocketModeStandin:
    """Slack's Socket Mode end on 127.0.0.1, on its own thread: ``with SocketModeStandin() as s``.

    Envelopes go to the newest open connection, as Slack sends each to one of an app's
    connections; sending with no client connected raises ``RuntimeError``. Waits raise
    ``TimeoutError``.

    The server pings every ``ping_interval`` seconds (Slack pings too). Keep it short:
    slack_sdk's built-in client takes a lock around each blocking read (up to 3 s), and its
    ``close()`` and its reconnects wait for that read to end; a ping ends it.
    """

    def __init__(self, *, app_id: str = APP_ID, ping_interval: float | None = 0.1) -> None:
        self.app_id = app_id
        self.ping_interval = ping_interval
        self._lock = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._tickets: dict[str, bool] = {}  # issued ticket -> used
        self._open: list[ServerConnection] = []
        self._connections = 0
        self._refused = 0
        self._sent: list[Envelope] = []
        self._last_sent: dict[str, float] = {}
        self._acks: list[Ack] = []

    # --- what tests read -------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the stand-in is not running; use it as a context manager")
        return int(self._server.sockets[0].getsockname()[1])

    def new_url(self) -> str:
        """A fresh single-use WebSocket URL, as ``apps.connections.open`` answers."""
        with self._lock:
            ticket = str(len(self._tickets) + 1)
            self._tickets[ticket] = False
        return f"ws://127.0.0.1:{self.port}{_PATH}?ticket={ticket}"

    @property
    def urls_issued(self) -> int:
        with self._lock:
            return len(self._tickets)

    @property
    def connections(self) -> int:
        """Connections accepted (and greeted with ``hello``) since the start."""
        with self._lock:
            return self._connections

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    @property
    def refused(self) -> int:
        """Handshakes refused for an unknown or already used URL."""
        with self._lock:
            return self._refused

    @property
    def sent(self) -> list[Envelope]:
        """Every envelope delivered, redeliveries included, in order."""
        with self._lock:
            return list(self._sent)

    @property
    def acks(self) -> list[Ack]:
        with self._lock:
            return list(self._acks)

    def unacknowledged(self) -> list[str]:
        """Ids of envelopes sent and never acknowledged, in the order first sent."""
        with self._lock:
            acked = {a.envelope_id for a in self._acks}
            return list(
                dict.fromkeys(e.envelope_id for e in self._sent if e.envelope_id not in acked)
            )

    def wait_connected(self, timeout: float = 3.0, *, count: int = 1) -> None:
        """Wait until a client is connected and ``count`` connections were made in all."""
        self._wait(
            lambda: self._connections >= count and bool(self._open),
            timeout,
            f"connection number {count}",
        )

    def wait_for_ack(self, envelope_id: str, timeout: float = 3.0, *, count: int = 1) -> Ack:
        """The ``count``-th acknowledgement of ``envelope_id``, once it has arrived."""

        def arrived() -> Ack | None:
            matching = [a for a in self._acks if a.envelope_id == envelope_id]
            return matching[count - 1] if len(matching) >= count else None

        ack = self._wait(arrived, timeout, f"ack number {count} of {envelope_id}")
        assert ack is not None  # _wait raises rather than return a falsy value
        return ack

    # --- what tests do ---------------------------------------------------------------

    def send_interactive(
        self,
        payload: dict[str, Any],
        retry_attempt: int = 0,
        retry_reason: str = "",
        *,
        accepts_response_payload: bool = False,
    ) -> str:
        """Send an ``interactive`` envelope (a button click: :func:`block_actions`)."""
        envelope = Envelope(
            str(uuid.uuid4()),
            "interactive",
            payload,
            accepts_response_payload,
            retry_attempt,
            retry_reason,
        )
        self._deliver(envelope)
        return envelope.envelope_id

    def send_event(
        self, event: dict[str, Any], retry_attempt: int = 0, retry_reason: str = ""
    ) -> str:
        """Send an ``events_api`` envelope whose payload is an ``event_callback`` of ``event``."""
        envelope = Envelope(
            str(uuid.uuid4()),
            "events_api",
            _event_callback(event, self.app_id),
            False,
            retry_attempt,
            retry_reason,
        )
        self._deliver(envelope)
        return envelope.envelope_id

    def resend(
        self, envelope_id: str, retry_attempt: int = 1, retry_reason: str = "timeout"
    ) -> None:
        """Deliver an envelope again with the same id, as Slack does when no ack came."""
        with self._lock:
            first = next((e for e in self._sent if e.envelope_id == envelope_id), None)
        if first is None:
            raise KeyError(f"no envelope {envelope_id} was sent")
        self._deliver(
            Envelope(
                envelope_id,
                first.type,
                first.payload,
                first.accepts_response_payload,
                retry_attempt,
                retry_reason,
            )
        )

    def ask_to_reconnect(self, reason: str = "refresh_requested", *, timeout: float = 3.0) -> None:
        """Send ``{"type": "disconnect", "reason": ...}`` on every open connection, then close
        those connections (a close frame) as soon as the client has opened a new one, or
        after ``timeout`` seconds if it does not.
        """
        old = self._snapshot()
        with self._lock:
            before = self._connections
        message = json.dumps(
            {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-standin"}}
        )
        for connection in old:
            with contextlib.suppress(ConnectionClosed):
                self._call(connection.send(message))
        with self._lock:
            self._lock.wait_for(lambda: self._connections > before, timeout)
        for connection in old:
            self._call(connection.close(1001, reason))

    def drop(self, *, reset: bool = True) -> None:
        """Cut every open connection without a WebSocket close frame.

        ``reset=True`` ends the TCP connection with a reset, as a broken link does (the
        client's next read fails); ``reset=False`` with a plain FIN, as a server that goes
        away quietly (the client's reads just return nothing).
        """
        for connection in self._snapshot():
            self._call(_abort(connection, reset))

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        if self._loop is not None:
            raise RuntimeError("already running")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        self._server = self._call(self._open_server())
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._server is not None:
            self.drop()
            with contextlib.suppress(TimeoutError):
                self._call(_close(self._server))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
        self._loop = self._thread = self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- serving (on the stand-in's thread) ------------------------------------------

    async def _open_server(self) -> Server:
        return await serve(
            self._serve_connection,
            "127.0.0.1",
            0,
            process_request=self._check_ticket,
            compression=None,  # slack_sdk's built-in client does not negotiate it
            ping_interval=self.ping_interval,
            ping_timeout=None,  # a client that stops answering is the client's own business
            close_timeout=1,
        )

    def _check_ticket(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path != _PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        ticket = parse_qs(url.query).get("ticket", [""])[0]
        with self._lock:
            if self._tickets.get(ticket) is not False:
                self._refused += 1
                return connection.respond(HTTPStatus.UNAUTHORIZED, "unknown or used ticket\n")
            self._tickets[ticket] = True
        return None

    async def _serve_connection(self, connection: ServerConnection) -> None:
        with self._lock:
            open_now = len(self._open) + 1
        hello = {
            "type": "hello",
            "num_connections": open_now,
            "debug_info": {
                "host": "applink-standin",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.app_id},
        }
        try:
            await connection.send(json.dumps(hello))
            with self._lock:
                self._open.append(connection)
                self._connections += 1
                self._lock.notify_all()
            async for message in connection:
                self._receive(message)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                if connection in self._open:
                    self._open.remove(connection)
                self._lock.notify_all()

    def _receive(self, message: str | bytes) -> None:
        try:
            data = json.loads(message)
        except ValueError:
            return
        if not isinstance(data, dict) or not isinstance(data.get("envelope_id"), str):
            return
        now = time.monotonic()
        with self._lock:
            sent_at = self._last_sent.get(data["envelope_id"])
            self._acks.append(
                Ack(
                    data["envelope_id"],
                    data.get("payload"),
                    now,
                    None if sent_at is None else now - sent_at,
                )
            )
            self._lock.notify_all()

    # --- plumbing --------------------------------------------------------------------

    def _deliver(self, envelope: Envelope) -> None:
        with self._lock:
            if not self._open:
                raise RuntimeError("no Socket Mode client is connected")
            connection = self._open[-1]
            self._sent.append(envelope)
            self._last_sent[envelope.envelope_id] = time.monotonic()
        self._call(connection.send(json.dumps(envelope.as_json())))

    def _snapshot(self) -> list[ServerConnection]:
        with self._lock:
            return list(self._open)

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 5.0) -> T:
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the stand-in is not running; use it as a context manager")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def _wait(self, condition: Callable[[], T], timeout: float, what: str) -> T:
        with self._lock:
            value = self._lock.wait_for(condition, timeout)
        if not value:
            raise TimeoutError(f"no {what} within {timeout} s")
        return value


async def _close(server: Server) -> None:
    server.close()  # creates tasks: on the loop's thread only
    await server.wait_closed()


async def _abort(connection: ServerConnection, reset: bool) -> None:
    sock = connection.transport.get_extra_info("socket")
    if reset and sock is not None:  # SO_LINGER on, 0 s: close() sends RST, not FIN
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.transport.abort()


def _event_callback(event: dict[str, Any], app_id: str) -> dict[str, Any]:
    """The Events API wrapper Slack puts around an event."""
    return {
        "token": "verification-token-unused-in-socket-mode",
        "team_id": TEAM_ID,
        "context_team_id": TEAM_ID,
        "api_app_id": app_id,
        "event": event,
        "type": "event_callback",
        "event_id": "Ev" + uuid.uuid4().hex[:10].upper(),
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-" + uuid.uuid4().hex,
    }


def block_actions(
    user_id: str,
    channel_id: str,
    message_ts: str,
    action_id: str,
    value: str,
    block_id: str = "claim",
    *,
    username: str | None = None,
    channel_name: str = "leads",
    message: dict[str, Any] | None = None,
    button_text: str = "I'll call them",
) -> dict[str, Any]:
    """The ``block_actions`` payload Slack sends when ``user_id`` clicks a button.

    ``message`` is the message the button is on as Slack shows it (e.g. from
    ``conversations.history``); by default a bare message of the bot's at ``message_ts``.
    """
    name = username or f"user.{user_id.lower()}"
    now = time.time()
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": name, "name": name, "team_id": TEAM_ID},
        "api_app_id": APP_ID,
        "token": "verification-token-unused-in-socket-mode",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": f"{int(now)}.{TEAM_ID[1:]}.{uuid.uuid4().hex}",
        "team": {"id": TEAM_ID, "domain": "leadbot-test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": channel_name},
        "message": message
        or {
            "type": "message",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "text": "",
            "ts": message_ts,
        },
        "state": {"values": {}},
        "response_url": f"https://hooks.slack.com/actions/{TEAM_ID}/{int(now)}/{uuid.uuid4().hex}",
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": button_text, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": f"{now:.6f}",
            }
        ],
    }
