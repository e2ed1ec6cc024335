"""The loopback servers every benchmark talks to, in a process of their own so that serving never
competes with the client being measured for the GIL: the Autumna stand-in (bot/demo) and the Slack,
Teams and SMTP stand-ins of tests/standins. Teams runs behind TLS, as Workflows webhooks do (and
as Apprise insists on); Slack is plain HTTP and SMTP has no TLS, for every client alike.

The parent drives it with one JSON object per line on stdin and reads one answer per line on
stdout: see `Servers` for the calls.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parents[1]
TEAMS_NAMES = {
    "TEAMS_LONDON_WEBHOOK": "london",
    "TEAMS_NORTH_WEBHOOK": "north",
    "TEAMS_MIDLANDS_WEBHOOK": "midlands",
    "TEAMS_OPS_WEBHOOK": "ops",
}


class Servers:
    """`with Servers() as servers:` starts the process; `servers.info` holds URLs and ports."""

    def __init__(self, slack_rate: float | None = None) -> None:
        self.slack_rate = slack_rate
        self.process: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}

    def __enter__(self) -> Self:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.servers"],
            cwd=ROOT,
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.info = self.call("start", slack_rate=self.slack_rate)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            try:
                self.call("stop")
            finally:
                self.process.wait(timeout=30)
                self.process = None

    def call(self, op: str, **args: Any) -> Any:
        assert self.process is not None and self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the server process died during {op!r}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"server process: {answer['error']}")
        return answer["result"]

    def documents(self, documents: list[str]) -> None:
        """What the Autumna stand-in holds from now on (it answers each poll's window of it)."""
        self.call("documents", documents=documents)

    def stats(self, slack_channels: list[str] | None = None) -> dict[str, Any]:
        return dict(self.call("stats", slack_channels=slack_channels or []))

    def reset(self) -> None:
        self.call("reset")

    def arrivals(self) -> dict[str, list[tuple[str, float]]]:
        """When the stand-ins accepted each message, by their clock (time.time()): Slack's as
        (the message's ref from its metadata, its ts), SMTP's as (Message-ID, time)."""
        found = self.call("arrivals")
        return {kind: [(str(a), float(b)) for a, b in pairs] for kind, pairs in found.items()}


# --- the server process ---------------------------------------------------------------------


class _Host:
    def __init__(self) -> None:
        import standins
        from standins.slack import SlackStandin
        from standins.smtp import SmtpStandin

        from bot.demo.standin import AutumnaStandin

        self.folder = Path(tempfile.mkdtemp(prefix="leadbot-bench-servers-"))
        self.autumna = AutumnaStandin()
        self.slack_class = SlackStandin
        self.smtp = SmtpStandin(tls="none")
        self.teams = _tls_teams(self.folder)
        self.slack: Any = None
        # http.server writes a response's headers and body separately; with Nagle's algorithm
        # on, a keep-alive client then waits for a delayed ACK (~40 ms) on every request. Real
        # Slack and Teams do not, so the stand-ins answer with TCP_NODELAY here.
        standins._Handler.disable_nagle_algorithm = True

    def start(self, slack_rate: float | None) -> dict[str, Any]:
        handler: Any = self.autumna.server.RequestHandlerClass
        handler.disable_nagle_algorithm = True  # as above
        self.autumna.__enter__()
        self.slack = self.slack_class(token=_token(), rate_limit_per_channel=slack_rate).start()
        self.teams.start()
        self.smtp.start()
        return {
            "autumna": self.autumna.url,
            "slack": self.slack.base_url,
            "teams": {var: self.teams.url(name) for var, name in TEAMS_NAMES.items()},
            "teams_ca": self.teams.ca_file,
            "smtp_port": self.smtp.port,
        }

    def documents(self, documents: list[str]) -> None:
        with self.autumna.lock:
            self.autumna.documents = list(documents)

    def stats(self, slack_channels: list[str]) -> dict[str, Any]:
        messages = self.slack.messages
        per_channel = {}
        for name in slack_channels:
            stamps = [float(m.ts) for m in self.slack.messages_for(name)]
            per_channel[name] = {
                "accepted": len(stamps),
                "stamps": stamps,
                "ratelimited": self.slack.ratelimited_count(name),
            }
        return {
            "slack": len(messages),
            "slack_requests": len(self.slack.requests),
            "slack_connections": self.slack.connections,
            "slack_channels": per_channel,
            "teams": len(self.teams.payloads()),
            "teams_requests": len(self.teams.requests),
            "teams_connections": self.teams.connections,
            "smtp": len(self.smtp.messages),
            "smtp_connections": self.smtp.connections,
            "autumna_requests": len(self.autumna.requests),
            "autumna_bytes": self.autumna.bytes_served,
        }

    def arrivals(self) -> dict[str, list[tuple[str, float]]]:
        slack = [
            (str(((m.metadata or {}).get("event_payload") or {}).get("ref", "")), float(m.ts))
            for m in self.slack.messages
        ]
        smtp = [(str(m.message["Message-ID"]), m.accepted_at) for m in self.smtp.messages]
        return {"slack": slack, "smtp": smtp}

    def reset(self) -> None:
        self.slack.reset()
        self.teams.reset()
        self.smtp.reset()
        with self.autumna.lock:
            self.autumna.requests.clear()
            self.autumna.bytes_served = 0

    def stop(self) -> None:
        self.autumna.__exit__(None, None, None)
        self.slack.stop()
        self.teams.stop()
        self.smtp.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _token() -> str:
    from benchmarks.workload import TOKEN

    return TOKEN


def _tls_teams(folder: Path) -> Any:
    from standins.teams import TlsTeamsStandin

    return TlsTeamsStandin(folder)


def serve() -> None:
    logging.basicConfig(level=logging.WARNING)
    host = _Host()
    calls: dict[str, Callable[..., Any]] = {
        "start": host.start,
        "documents": host.documents,
        "stats": host.stats,
        "reset": host.reset,
        "arrivals": host.arrivals,
        "stop": host.stop,
    }
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        try:
            answer: dict[str, Any] = {"result": calls[op](**request)}
        except Exception as exc:  # report it to the parent rather than die silently
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
        if op == "stop":
            return


if __name__ == "__main__":
    serve()
