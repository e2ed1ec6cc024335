"""Loopback stand-ins for Slack, Teams and SMTP, and validators for what leadbot sends.

Each stand-in is a real server on 127.0.0.1 that the real client libraries talk to
(slack_sdk, httpx, smtplib). Import them from their modules::

    from standins.slack import SlackStandin   # or tests.standins.slack
    from standins.teams import TeamsStandin
    from standins.smtp import SmtpStandin

This module holds the small pieces the HTTP stand-ins share: a threaded loopback HTTP
server, a fault queue and a rolling one-second rate window.
"""

from __future__ import annotations

import collections
import contextlib
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Generic, Self, TypeVar
from urllib.parse import parse_qsl, urlsplit

__all__ = ["FaultQueue", "HttpRequest", "HttpResponse", "LoopbackHTTPServer", "RateWindow"]


@dataclass(frozen=True)
class HttpRequest:
    """One request as the stand-in saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes


@dataclass(frozen=True)
class HttpResponse:
    """What to answer; ``drop=True`` closes the connection without any response."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects from real servers
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms stall
    server: _Server
    timeout = 30  # a forgotten keep-alive connection must not pin a thread forever

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        request = HttpRequest(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers=self.headers,
            body=body,
        )
        response = self.server.owner.handle(request)
        if response.drop:
            self.close_connection = True
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.body:
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: object) -> None:
        pass  # real webhook URLs are secrets; keep them out of test output


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: LoopbackHTTPServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._open_lock:
            if add:
                self._open.add(conn)
                self.owner.connections += 1
            else:
                self._open.discard(conn)

    def close_open_connections(self) -> None:
        with self._open_lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class LoopbackHTTPServer:
    """Base of the HTTP stand-ins: a ThreadingHTTPServer on 127.0.0.1, port 0, in a thread.

    Subclasses implement :meth:`handle`. Use as a context manager; ``__exit__`` stops the
    serving thread, shuts down open keep-alive connections and closes the listening socket.
    """

    def __init__(self) -> None:
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.connections = 0  # TCP connections accepted: keep-alive shows as fewer than requests

    def handle(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the stand-in is not running; use it as a context manager")
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("already running")
        self._stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in an injected delay
        self._server.shutdown()
        self._server.close_open_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def sleep(self, seconds: float) -> None:
        """Sleep in a handler thread, cut short when the stand-in stops."""
        if seconds > 0:
            self._stopping.wait(seconds)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


F = TypeVar("F")


@dataclass
class _Pending(Generic[F]):
    fault: F
    left: int


class FaultQueue(Generic[F]):
    """Faults to inject, each for a number of matching requests, first added first used."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[_Pending[F]] = []

    def add(self, fault: F, times: int) -> None:
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._pending.append(_Pending(fault, times))

    def take(self, matches: Callable[[F], bool]) -> F | None:
        """Return the first pending fault that ``matches`` and use up one of its times."""
        with self._lock:
            for item in self._pending:
                if matches(item.fault):
                    item.left -= 1
                    if item.left == 0:
                        self._pending.remove(item)
                    return item.fault
        return None

    def pending(self) -> int:
        """How many faulty answers are still to come."""
        with self._lock:
            return sum(item.left for item in self._pending)

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()


class RateWindow:
    """Rolling one-second windows of accepted requests, one window per key.

    The rule: a request for ``key`` at time ``t`` is refused when the number of requests
    *accepted* for that key in the half-open interval ``(t - 1 s, t]`` is already
    ``>= limit``. So at most ``ceil(limit)`` requests are accepted in any one-second span.
    Refused requests do not enter the window, so a client that waits ``Retry-After``
    seconds then gets through. Callers serialise ``retry_after`` + ``accept`` under
    their own lock.
    """

    WINDOW = 1.0

    def __init__(self, limit: float) -> None:
        if limit < 1:
            raise ValueError("a per-second limit below 1 cannot be expressed in a 1 s window")
        self.limit = limit
        self._accepted: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )

    def retry_after(self, key: str, now: float | None = None) -> int | None:
        """Whole seconds to wait (at least 1) if a request now would be refused, else None."""
        now = time.monotonic() if now is None else now
        times = self._accepted[key]
        while times and times[0] <= now - self.WINDOW:
            times.popleft()
        if len(times) < self.limit:
            return None
        return max(1, math.ceil(times[0] + self.WINDOW - now))

    def accept(self, key: str, now: float | None = None) -> None:
        self._accepted[key].append(time.monotonic() if now is None else now)

    def clear(self) -> None:
        self._accepted.clear()
