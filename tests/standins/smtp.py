"""A loopback SMTP server (aiosmtpd in a thread) for testing with the real ``smtplib``.

Three modes, like the submission servers leadbot meets: ``tls="starttls"`` (port 587
style, STARTTLS required before anything else), ``tls="implicit"`` (port 465 style, TLS
from the first byte) and ``tls="none"`` (plain, STARTTLS not offered). The certificate
comes from a throwaway ``trustme`` CA; clients trust it through ``.ca_file``.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import shutil
import ssl
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from . import FaultQueue

Stage = Literal["MAIL", "RCPT", "DATA"]
TlsMode = Literal["starttls", "implicit", "none"]

REPLY_TEXTS = {
    421: "4.3.2 Service not available, closing transmission channel",
    450: "4.2.1 Mailbox temporarily unavailable, try again later",
    451: "4.3.0 Local error in processing, try again later",
    452: "4.3.1 Insufficient system storage",
    550: "5.1.1 Mailbox unavailable",
    552: "5.3.4 Message size exceeds fixed limit",
    553: "5.1.3 Mailbox name not allowed",
    554: "5.7.1 Transaction failed",
}


@dataclass(frozen=True)
class SmtpMessage:
    """A message the server accepted (answered 250 after DATA)."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes  # as received, CRLF line endings
    login: str | None  # the AUTH user, if any
    secure: bool  # whether it travelled over TLS
    accepted_at: float = field(default_factory=time.time)  # as DATA was accepted, before the 250

    @property
    def message(self) -> EmailMessage:
        """The message parsed with the modern policy (a fresh object on each access)."""
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass(frozen=True)
class _Fault:
    stage: Stage
    reply: str | None  # None: drop the connection instead of replying
    rcpt: str | None

    def matches(self, stage: Stage, recipients: list[str]) -> bool:
        if self.stage != stage:
            return False
        return self.rcpt is None or self.rcpt.lower() in (r.lower() for r in recipients)


class _Handler:
    """aiosmtpd hooks: inject faults, otherwise accept like aiosmtpd's defaults."""

    def __init__(self, standin: SmtpStandin) -> None:
        self.standin = standin

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if reply := await self.standin._inject(server, "MAIL", []):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if reply := await self.standin._inject(server, "RCPT", [address]):
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if reply := await self.standin._inject(server, "DATA", list(envelope.rcpt_tos)):
            return reply
        raw = envelope.original_content or b""
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        secure = session.ssl is not None or self.standin.tls == "implicit"
        self.standin._record(
            SmtpMessage(str(envelope.mail_from), list(envelope.rcpt_tos), raw, login, secure)
        )
        return "250 2.0.0 OK: queued"


class _SMTP(SMTP):
    def __init__(self, handler: Any, *, auth_without_starttls: bool, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        # aiosmtpd only offers AUTH after its own STARTTLS. Under implicit TLS the
        # connection is already encrypted; in plain mode the test asked for it.
        # Setting the flag here avoids the warning aiosmtpd raises at construction.
        if auth_without_starttls:
            self._auth_require_tls = False


class _Controller(Controller):
    def __init__(self, standin: SmtpStandin, **kwargs: Any) -> None:
        super().__init__(_Handler(standin), **kwargs)
        self.standin = standin
        self.sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def factory(self) -> SMTP:
        self.standin._count_connection()
        session = _SMTP(
            self.handler,
            auth_without_starttls=self.standin.tls != "starttls"
            and self.standin.username is not None,
            **self.SMTP_kwargs,
        )
        self.sessions.add(session)
        return session

    def stop(self, no_assert: bool = False) -> None:
        # aiosmtpd cancels the session tasks but leaves their sockets open; close them
        # first so a test that stops mid-conversation leaks nothing.
        if self._thread is not None:
            closing = asyncio.run_coroutine_threadsafe(self._close_sessions(), self.loop)
            closing.result(timeout=5)
        super().stop(no_assert)

    async def _close_sessions(self) -> None:
        open_sessions = [s for s in self.sessions if s.transport is not None]
        for session in open_sessions:
            assert isinstance(session.transport, asyncio.Transport)
            session.transport.abort()
        for _ in range(100):
            if all(s.transport is None for s in open_sessions):
                break
            await asyncio.sleep(0.01)

    def _trigger_server(self) -> None:
        # aiosmtpd 1.4.6 cannot bind port 0 by itself: it needs the real port to
        # make its start-up test connection.
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class SmtpStandin:
    """An SMTP server on 127.0.0.1 with a free port: ``with SmtpStandin() as smtp: ...``.

    With ``username`` and ``password``, AUTH (PLAIN and LOGIN) is required before MAIL,
    and offered in every TLS mode; wrong credentials answer 535 at once. Without them,
    AUTH is not required, and offered (always failing) only after STARTTLS, as aiosmtpd
    does. Records ``messages``, ``connections`` and ``logins``; ``fail_next`` and
    ``drop_next`` inject faults.
    """

    host = "127.0.0.1"
    hostname = "localhost"

    def __init__(
        self,
        *,
        tls: TlsMode = "starttls",
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if tls not in ("starttls", "implicit", "none"):
            raise ValueError(f"unknown tls mode {tls!r}")
        self.tls = tls
        self.username = username
        self.password = password
        self.ca = trustme.CA()
        self._tmp = Path(tempfile.mkdtemp(prefix="smtp-standin-"))
        self.ca_file = str(self._tmp / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        self._lock = threading.Lock()
        self._faults: FaultQueue[_Fault] = FaultQueue()
        self._controller: _Controller | None = None
        self.reset()

    # --- what tests read -------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._controller is None:
            raise RuntimeError("the stand-in is not running; use it as a context manager")
        return int(self._controller.port)

    @property
    def messages(self) -> list[SmtpMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def connections(self) -> int:
        """Client connections accepted since start or reset."""
        with self._lock:
            return self._connections

    @property
    def logins(self) -> int:
        """Successful AUTH exchanges."""
        with self._lock:
            return self._logins

    @property
    def failed_logins(self) -> int:
        with self._lock:
            return self._failed_logins

    def client_context(self) -> ssl.SSLContext:
        """An SSL context for clients that trusts this server's certificate."""
        return ssl.create_default_context(cafile=self.ca_file)

    # --- what tests change -----------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        code: int = 451,
        stage: Stage = "DATA",
        *,
        rcpt: str | None = None,
        text: str | None = None,
    ) -> None:
        """Answer ``code`` at ``stage`` for the next ``n`` matching transactions.

        A 421 also closes the connection, as servers that say 421 do. ``rcpt`` limits the
        fault to transactions for that recipient (not for stage "MAIL", which comes first).
        """
        reply = f"{code} {text or REPLY_TEXTS.get(code, 'Injected failure')}"
        self._faults.add(_Fault(stage, reply, self._check_rcpt(stage, rcpt)), n)

    def drop_next(self, n: int = 1, stage: Stage = "DATA", *, rcpt: str | None = None) -> None:
        """Close the connection abruptly, without a reply, at ``stage``.

        At "DATA" that is after the whole message arrived: the client cannot know
        whether it was delivered.
        """
        self._faults.add(_Fault(stage, None, self._check_rcpt(stage, rcpt)), n)

    def reset(self) -> None:
        """Forget messages, counters and pending faults."""
        self._faults.clear()
        with self._lock:
            self._messages: list[SmtpMessage] = []
            self._connections = 0
            self._logins = 0
            self._failed_logins = 0

    # --- running ---------------------------------------------------------------------

    def start(self) -> Self:
        if self._controller is not None:
            raise RuntimeError("already running")
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(self.hostname, self.host).configure_cert(server_context)
        kwargs: dict[str, Any] = {
            "hostname": self.host,
            "port": 0,
            "server_hostname": self.hostname,
        }
        if self.tls == "starttls":
            kwargs.update(tls_context=server_context, require_starttls=True)
        elif self.tls == "implicit":
            kwargs.update(ssl_context=server_context)
        if self.username is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True)
        self._controller = _Controller(self, **kwargs)
        self._controller.start()
        with self._lock:
            self._connections = 0  # aiosmtpd's own start-up connection is no client
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def close(self) -> None:
        """Stop and remove the CA file."""
        self.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- called from the server thread -----------------------------------------------

    @staticmethod
    def _check_rcpt(stage: Stage, rcpt: str | None) -> str | None:
        if rcpt is not None and stage == "MAIL":
            raise ValueError("MAIL comes before any recipient; a rcpt filter cannot apply")
        return rcpt

    async def _inject(self, server: SMTP, stage: Stage, recipients: list[str]) -> str | None:
        """The reply of an injected fault, if one is due; drops end the session here."""
        fault = self._faults.take(lambda f: f.matches(stage, recipients))
        if fault is None:
            return None
        transport = server.transport
        assert isinstance(transport, asyncio.Transport)
        if fault.reply is None:
            transport.abort()
            raise asyncio.CancelledError  # aiosmtpd ends the session quietly on this
        if fault.reply.startswith("421"):
            await server.push(fault.reply)
            transport.close()
            raise asyncio.CancelledError
        return fault.reply

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.username
            and data.password.decode() == self.password
        )
        with self._lock:
            if ok:
                self._logins += 1
            else:
                self._failed_logins += 1
        # handled=False lets aiosmtpd answer 535 itself; handled=True would leave the
        # client waiting for a reply that never comes.
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def _count_connection(self) -> None:
        with self._lock:
            self._connections += 1

    def _record(self, message: SmtpMessage) -> None:
        with self._lock:
            self._messages.append(message)
