"""A loopback stand-in for Microsoft Teams "Workflows" (Power Automate) incoming webhooks.

A real Workflows webhook URL carries its credential in the query string (``sig=…``), so
the URL itself is a secret. This stand-in makes one URL per webhook name, checks the sig,
answers **202 Accepted** with an empty body when the message envelope is right, 400 when
it is not, 413 above 28 KB, and 429 with ``Retry-After`` when throttled.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import ssl
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote, unquote

import trustme

from . import FaultQueue, HttpRequest, HttpResponse, LoopbackHTTPServer, RateWindow

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
MAX_BODY_BYTES = 28 * 1024  # Teams refuses messages above about 28 KB

_PATH_PREFIX = "/workflows/"
_PATH_SUFFIX = "/triggers/manual/paths/invoke"


@dataclass(frozen=True)
class TeamsRequest:
    """One POST to a webhook and the status it was answered with (0 if dropped)."""

    webhook: str
    status: int
    body: bytes
    payload: Any  # the decoded JSON, or None if it was not JSON

    @property
    def cards(self) -> list[dict[str, Any]]:
        attachments = self.payload.get("attachments", []) if isinstance(self.payload, dict) else []
        return [a["content"] for a in attachments if isinstance(a, dict) and "content" in a]


@dataclass(frozen=True)
class _Fault:
    status: int
    retry_after: int
    drop: bool
    delay: float
    webhook: str | None


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> HttpResponse:
    """Azure-style JSON error body, as Logic Apps / Power Automate triggers answer."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return HttpResponse(
        status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
    )


def _throttled(retry_after: int) -> HttpResponse:
    return _error(
        429,
        "WorkflowTriggerIsThrottled",
        "The workflow trigger is throttled; retry after the Retry-After interval.",
        {"Retry-After": str(retry_after)},
    )


_FAULT_ANSWERS = {
    400: ("InvalidRequestContent", "The request content is not valid."),
    401: ("DirectApiInvalidAuthorizationSignature", "The provided signature is not valid."),
    404: ("WorkflowNotFound", "The workflow could not be found."),
    500: ("InternalServerError", "Encountered an internal server error."),
    502: ("BadGateway", "The upstream service did not answer."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
}


def envelope_problem(payload: Any) -> str | None:
    """Why ``payload`` is not a Workflows message carrying Adaptive Cards, or None."""
    if not isinstance(payload, dict):
        return "the body must be a JSON object"
    if payload.get("type") != "message":
        return 'the body must have "type": "message"'
    attachments = payload.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return '"attachments" must be a non-empty list'
    for i, attachment in enumerate(attachments):
        if not isinstance(attachment, dict):
            return f"attachments[{i}] must be an object"
        if attachment.get("contentType") != CARD_CONTENT_TYPE:
            return f'attachments[{i}].contentType must be "{CARD_CONTENT_TYPE}"'
        if not isinstance(attachment.get("content"), dict):
            return f"attachments[{i}].content must be an Adaptive Card object"
    return None


class TeamsStandin(LoopbackHTTPServer):
    """Teams Workflows webhooks on 127.0.0.1: ``with TeamsStandin() as teams: teams.url("ops")``.

    Any name works; each gets its own URL and signature. ``rate_limit_per_webhook``
    turns on throttling by the rule in :class:`standins.RateWindow`, counting requests
    that were accepted (202) per webhook.
    """

    def __init__(self, *, rate_limit_per_webhook: float | None = None) -> None:
        super().__init__()
        self._key = secrets.token_bytes(16)
        self._limit = rate_limit_per_webhook
        self._lock = threading.Lock()
        self._faults: FaultQueue[_Fault] = FaultQueue()
        self.reset()

    def url(self, name: str = "default") -> str:
        """The webhook URL for ``name``, shaped like a real one and just as secret."""
        path = f"{_PATH_PREFIX}{quote(name, safe='')}{_PATH_SUFFIX}"
        query = f"api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={self._sig(name)}"
        return f"{self.root_url}{path}?{query}"

    @property
    def requests(self) -> list[TeamsRequest]:
        """Every correctly signed POST, in order, with the status it was answered."""
        with self._lock:
            return list(self._requests)

    def payloads(self, name: str | None = None) -> list[Any]:
        """Accepted (202) payloads, for one webhook or all."""
        return [r.payload for r in self.requests if r.status == 202 and name in (None, r.webhook)]

    def cards(self, name: str | None = None) -> list[dict[str, Any]]:
        """The Adaptive Cards of the accepted payloads, in order."""
        return [
            card
            for r in self.requests
            if r.status == 202 and name in (None, r.webhook)
            for card in r.cards
        ]

    def ratelimited_count(self, name: str) -> int:
        with self._lock:
            return self._ratelimited[name]

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        *,
        retry_after: int = 1,
        drop: bool = False,
        delay: float = 0.0,
        webhook: str | None = None,
    ) -> None:
        """Answer the next ``n`` matching POSTs with ``status`` (429 with ``Retry-After``).

        ``drop`` closes the connection without an answer. ``delay`` sleeps first; with
        ``status=202`` it then answers normally. ``webhook`` limits it to one name.
        """
        self._faults.add(_Fault(status, max(1, int(retry_after)), drop, delay, webhook), n)

    def reset(self) -> None:
        """Forget requests, faults and counters."""
        self._faults.clear()
        with self._lock:
            self._requests: list[TeamsRequest] = []
            self._ratelimited: Counter[str] = Counter()
            self._window = RateWindow(self._limit) if self._limit else None
            self.connections = 0

    def _sig(self, name: str) -> str:
        return hmac.new(self._key, name.encode(), hashlib.sha256).hexdigest()[:43]

    def handle(self, request: HttpRequest) -> HttpResponse:
        if not (request.path.startswith(_PATH_PREFIX) and request.path.endswith(_PATH_SUFFIX)):
            return _error(404, "WorkflowNotFound", "The workflow could not be found.")
        name = unquote(request.path[len(_PATH_PREFIX) : -len(_PATH_SUFFIX)])
        if request.method != "POST":
            return _error(405, "MethodNotAllowed", "The trigger accepts POST only.")
        if not hmac.compare_digest(request.query.get("sig", ""), self._sig(name)):
            return _error(401, *_FAULT_ANSWERS[401])
        response, payload = self._answer(name, request)
        with self._lock:
            status = 0 if response.drop else response.status
            self._requests.append(TeamsRequest(name, status, request.body, payload))
            if status == 429:
                self._ratelimited[name] += 1
        return response

    def _answer(self, name: str, request: HttpRequest) -> tuple[HttpResponse, Any]:
        try:
            payload = json.loads(request.body)
        except ValueError:
            payload = None

        fault = self._faults.take(lambda f: f.webhook in (None, name))
        if fault is not None:
            self.sleep(fault.delay)
            if fault.drop:
                return HttpResponse(drop=True), payload
            if fault.status == 429:
                return _throttled(fault.retry_after), payload
            if fault.status != 202:
                code, message = _FAULT_ANSWERS.get(fault.status, ("Error", "Injected failure."))
                return _error(fault.status, code, message), payload

        if len(request.body) > MAX_BODY_BYTES:
            return _error(413, "RequestEntityTooLarge", "The message is too large."), payload
        if request.headers.get_content_type() != "application/json" or payload is None:
            return _error(400, "InvalidRequestContent", "The body must be JSON."), payload
        problem = envelope_problem(payload)
        if problem:
            return _error(400, "InvalidRequestContent", problem), payload
        with self._lock:
            if self._window is not None:
                wait = self._window.retry_after(name)
                if wait is not None:
                    return _throttled(wait), payload
                self._window.accept(name)
        return HttpResponse(202), payload


class TlsTeamsStandin(TeamsStandin):
    """The Teams stand-in behind real TLS, as Workflows webhooks are: leadbot only accepts
    https:// webhook URLs. The certificate comes from a throwaway trustme CA written to
    `ca_file`, for clients to trust (leadbot through SSL_CERT_FILE)."""

    def __init__(self, folder: Path, **options: Any) -> None:
        super().__init__(**options)
        self.ca = trustme.CA()
        self.ca_file = str(folder / "teams-ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)

    @property
    def root_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> Self:
        super().start()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        assert self._server is not None
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        return self
