"""The demo's Autumna stand-in (bot/demo/standin.py), plus faults on command for the tests:
HTTP errors, odd bodies, slow answers, dropped connections and mislabelled encodings."""

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


class AutumnaStandin(standin.AutumnaStandin):
    """`fail_next(n, **fault)`: the next n requests get that fault instead of leads."""

    def __init__(self, documents: Iterable[str] = (), api_key: str | None = None) -> None:
        self.faults: list[Fault] = []
        self.fault_lock = threading.Lock()
        super().__init__(documents, api_key)

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
