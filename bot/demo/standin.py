"""A local Autumna: a real HTTP server on loopback that answers `GET /api/leads/` the way Autumna
does (see ../shared/autumna/API.md), quirks included: bare arrays, typographic quotes, padded
strings, Python-list strings, HTTP 500 for a wrong key or a bad request; and, tiny,
`GET /api/organisations/` with the example homes. The demo polls it; the tests' own stand-in
(tests/standins/autumna.py) adds faults and organisations of every shape on command.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

DATE = re.compile(r'("date"\s*:\s*")([^"]*)(")')
VISIT = re.compile(r'("visitDate"\s*:\s*")([^"]*)(")')
# The example rules.toml's homes as one organisation (the endpoint's real shape is not published)
ORGANISATIONS = json.dumps(
    [
        {
            "id": 1,
            "name": "Rose Care Homes",
            "services": [
                {"id": 100000, "name": "Rose Lodge", "postcode": "SW1A 1AA"},
                {"id": 200000, "name": "Willow House", "postcode": "M1 1AE"},
                {"id": 300000, "name": "Oak Manor", "postcode": "LS1 4DY"},
            ],
        }
    ]
)


def bundled_documents() -> list[str]:
    """The eight leads Autumna published (two of them not valid JSON, as published) and more
    realistic leads for the example homes, as raw JSON texts."""
    folder = resources.files("bot.demo")
    published = sorted(
        (p for p in folder.joinpath("published").iterdir() if p.name.endswith(".json")),
        key=lambda p: p.name,
    )
    docs = [p.read_text(encoding="utf-8").strip() for p in published]
    extra = json.loads(folder.joinpath("leads.json").read_text(encoding="utf-8"))
    return docs + [json.dumps(item, ensure_ascii=False) for item in extra]


def redate(
    docs: Iterable[str], now: datetime, spacing: timedelta = timedelta(minutes=6)
) -> list[str]:
    """Give each document a recent `date`, newest last, and a visit date a few days ahead, so
    the demo has fresh leads."""
    docs = list(docs)
    out = []
    for i, doc in enumerate(docs):
        moment = now - spacing * (len(docs) - i) + timedelta(seconds=17 * i % 60)
        stamp = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{i * 37 % 1000:03d}Z"
        visit = (moment + timedelta(days=2 + i % 4)).strftime("%Y-%m-%d")
        doc = DATE.sub(rf"\g<1>{stamp}\g<3>", doc, count=1)
        out.append(VISIT.sub(rf"\g<1>{visit}\g<3>", doc, count=1))
    return out


class AutumnaStandin:
    """`with AutumnaStandin(docs) as autumna:` then poll `autumna.url`."""

    def __init__(self, documents: Iterable[str] = (), api_key: str | None = None) -> None:
        self.documents = list(documents)
        self.api_key = api_key  # None accepts any non-empty key
        self.requests: list[dict[str, str]] = []  # query parameters, api_key masked
        self.organisations = ORGANISATIONS  # the body of /api/organisations/
        self.bytes_served = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/leads/"

    def __enter__(self) -> AutumnaStandin:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, *documents: str | dict[str, Any]) -> None:
        with self.lock:
            self.documents += [d if isinstance(d, str) else json.dumps(d) for d in documents]

    def record(self, path: str) -> dict[str, str]:
        """Note a request's query parameters (the key masked); returns them."""
        query = {k: v[-1] for k, v in parse_qs(urlsplit(path).query).items()}
        with self.lock:
            self.requests.append({**query, "api_key": "***" * bool(query.get("api_key"))})
        return query

    def body(self, since: datetime | None, until: datetime | None) -> str:
        with self.lock:
            docs = [d for d in self.documents if _in_window(d, since, until)]
        return "[" + ",\n".join(docs) + "]"

    def organisations_body(self, api_key: str) -> str | None:
        """What /api/organisations/ answers for this key; None: a wrong key (HTTP 500)."""
        return self.organisations

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms stall

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = standin.record(self.path)
                if parts.path.rstrip("/") not in ("/api/leads", "/api/organisations"):
                    return self._answer(404, json.dumps({"message": "Not found"}))
                key = query.get("api_key", "")
                if not key or (standin.api_key is not None and key != standin.api_key):
                    return self._answer(500, json.dumps({"message": "Server Error"}))
                if parts.path.rstrip("/") == "/api/organisations":
                    body = standin.organisations_body(key)
                    if body is None:
                        return self._answer(500, json.dumps({"message": "Server Error"}))
                    return self._answer(200, body)
                try:
                    since, until = _param(query, "dateTimeFrom"), _param(query, "dateTimeTo")
                except ValueError:
                    return self._answer(500, json.dumps({"message": "Server Error"}))
                self._answer(200, standin.body(since, until))

            def _answer(self, status: int, body: str, kind: str = "application/json") -> None:
                data = body.encode("utf-8")
                with standin.lock:
                    standin.bytes_served += len(data)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the request line holds the API key

        return Handler


def _param(query: dict[str, str], name: str) -> datetime | None:
    value = query.get(name)
    return datetime.fromisoformat(value).replace(tzinfo=UTC) if value else None


def _in_window(doc: str, since: datetime | None, until: datetime | None) -> bool:
    match = DATE.search(doc)
    if match is None or (since is None and until is None):
        return True
    try:
        moment = datetime.fromisoformat(match[2].replace("Z", "+00:00"))
    except ValueError:
        return True
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (since is None or moment >= since) and (until is None or moment <= until)
