"""The demo's Autumna stand-in (bot/demo/standin.py), plus faults on command for the tests:
HTTP errors, odd bodies, slow answers, dropped connections and mislabelled encodings; and the
organisations endpoint in every shape we can imagine it having (`serve_organisations`)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from bot.demo import standin


@dataclass
class Fault:
    status: int = 500
    body: str | None = None  # None: Autumna's usual error body
    content_type: str = "application/json"
    delay: float = 0.0
    drop: bool = False  # close the connection without an answer
    encoding: str = ""  # a Content-Encoding header, whether or not the body is encoded so


# /api/organisations/ as Autumna might answer it: its shape is not published (API.md says only
# "the caller's organisations and their service ids"), so each of these must be read.
ORGANISATIONS: dict[str, str] = {
    # organisations with their services nested, in a bare array, as the leads are
    "nested": json.dumps(
        [
            {
                "id": 7,
                "name": "Rose Care Group Ltd",
                "services": [
                    {"id": 100000, "name": "Rose Lodge", "postcode": "SW1A 1AA"},
                    {"id": 200000, "name": "Willow House", "postcode": "M1 1AE"},
                    {"id": 300000, "name": "Oak Manor", "postcode": "LS1 4DY"},
                ],
            }
        ]
    ),
    # carehome.co.uk's wrapper, camelCase names, ids as strings, padding, fields nobody documents
    "wrapped": json.dumps(
        {
            "data": [
                {
                    "organisationId": "7",
                    "organisationName": " Rose Care Group Ltd ",
                    "services": [
                        {
                            "serviceId": "100000",
                            "serviceName": " Rose Lodge",
                            "postcode": " SW1A 1AA",
                            "beds": "42",
                            "careType": "Nursing",
                            "url": "https://www.autumna.co.uk/care-homes/london/rose-lodge",
                        },
                        {
                            "serviceId": "400000",
                            "serviceName": "Birch Court ",
                            "postcode": "B1 1AA",
                            "isActive": True,
                        },
                    ],
                }
            ],
            "error": [],
        }
    ),
    # one organisation as a single object, with a byte-order mark and typographic quotes (as two
    # published leads have), an address object and the home's own email address
    "single": "\ufeff"
    + json.dumps(
        {
            "id": 8,
            "name": "WILLOW_CARE",
            "services": [
                {
                    "id": 200000,
                    "name": "Willow House",
                    "address": {
                        "line1": "1 Mill Lane",
                        "town": "Manchester",
                        "postcode": "M1 1AE",
                        "country": "England",
                    },
                    "email": "willow.house@willowcare.example",
                }
            ],
        }
    ).replace('"WILLOW_CARE"', "“Willow Care”"),
    # a flat list of services, each naming its organisation (the lead's `service` object)
    "flat": json.dumps(
        [
            {
                "service": {"id": 100000, "name": "Rose Lodge", "postcode": "SW1A 1AA"},
                "organisation": {"id": 7, "name": "Rose Care Group Ltd"},
            },
            {
                "service": {"id": 500000, "name": "Elm Grange", "postcode": "EH1 1AA"},
                "organisation": {"id": 9, "name": "Elm Homes Scotland"},
                "country": "Scotland",
            },
        ]
    ),
    # "the caller's organisations and their service ids": ids only, as numbers and strings
    "ids": json.dumps(
        {
            "organisations": [
                {"id": 7, "name": "Rose Care Group Ltd", "serviceIds": [100000, "200000"]}
            ]
        }
    ),
    # services keyed by id
    "keyed": json.dumps(
        {"data": {"100000": "Rose Lodge", "200000": {"name": "Willow House", "postcode": "M1 1AE"}}}
    ),
    # odd: a name that tries to break out of its TOML string, a service with no id, a duplicate,
    # an organisation with no services, and fields nobody documents at every level
    "odd": json.dumps(
        {
            "data": [
                {
                    "id": 7,
                    "name": "Rose Care Group Ltd",
                    "ratingSummary": "Good",
                    "services": [
                        {
                            "id": 100000,
                            "name": 'Rose Lodge "East"\n[homes.1]\nslack = "#x"',
                            "postcode": "SW1A 1AA",
                            "rating": {"cqc": "Good"},
                        },
                        {"name": "Nameless Id"},
                        {"id": 100000, "name": "Rose Lodge (listed twice)"},
                    ],
                },
                {"id": 8, "name": "Dormant Ltd", "services": []},
            ],
            "error": [],
            "meta": {"total": 2},
        }
    ),
    "empty": json.dumps({"data": [], "error": []}),
    "refused": json.dumps({"data": [], "error": ["Invalid API key"]}),  # with HTTP 200
}


class AutumnaStandin(standin.AutumnaStandin):
    """`fail_next(n, **fault)`: the next n requests get that fault instead of leads.
    `serve_organisations(shape)`: what /api/organisations/ answers (for one key, with `key=`)."""

    def __init__(self, documents: Iterable[str] = (), api_key: str | None = None) -> None:
        self.faults: list[Fault] = []
        self.fault_lock = threading.Lock()
        self.organisations_by_key: dict[str, str] = {}
        super().__init__(documents, api_key)

    def serve_organisations(self, shape: str, key: str | None = None) -> None:
        """One of ORGANISATIONS by name, or a body of its own. With `key`, only that key gets
        it (and any key not given one gets HTTP 500, as a wrong key does)."""
        body = ORGANISATIONS.get(shape, shape)
        if key is None:
            self.organisations = body
        else:
            self.organisations_by_key[key] = body

    def organisations_body(self, api_key: str) -> str | None:
        if self.organisations_by_key:
            return self.organisations_by_key.get(api_key)
        return self.organisations

    def fail_next(self, n: int = 1, **fault: Any) -> None:
        with self.fault_lock:
            self.faults += [Fault(**fault) for _ in range(n)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        served: Any = super()._handler()
        faults = self

        class Faulty(served):  # type: ignore[misc, valid-type]
            def do_GET(self) -> None:
                with faults.fault_lock:
                    fault = faults.faults.pop(0) if faults.faults else None
                if fault is None:
                    return super().do_GET()  # type: ignore[no-any-return]
                faults.record(self.path)
                time.sleep(fault.delay)
                if fault.drop:
                    self.close_connection = True
                    self.connection.close()
                    return None
                body = fault.body
                if body is None:
                    body = json.dumps({"message": "Internal Server Error"})
                data = body.encode("utf-8")
                self.send_response(fault.status)
                self.send_header("Content-Type", fault.content_type)
                if fault.encoding:
                    self.send_header("Content-Encoding", fault.encoding)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return None

        return Faulty
