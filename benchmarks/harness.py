"""What every benchmark shares: result rows printed as they are known, leadbot's stages assembled
the way `pipeline.build` does (with the lanes and certificates a benchmark needs), and timing.
"""

from __future__ import annotations

import logging
import os
import ssl
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bot.autumna import AutumnaClient
from bot.channels.email import EmailChannel
from bot.channels.slack import SlackChannel
from bot.channels.teams import TeamsChannel
from bot.config import Config
from bot.dispatch import Dispatcher, Sender
from bot.limits import Lanes, RetryPolicy
from bot.models import Channel
from bot.poller import Poller
from bot.render import Renderer
from bot.runner import Runner
from bot.settings import RedactingFilter
from bot.store import Store

from .workload import ACCOUNT, SENDER, TOKEN

HEADER = (
    "| # | benchmark | measured | ratio (side by side) | target | met | notes |\n"
    "| --- | --- | --- | --- | --- | --- | --- |"
)


@dataclass
class Row:
    number: str
    name: str
    measured: str
    ratio: str
    target: str = "—"
    met: bool | None = None
    notes: str = ""

    def markdown(self) -> str:
        met = {True: "yes", False: "**no**", None: "—"}[self.met]
        cells = (self.number, self.name, self.measured, self.ratio, self.target, met, self.notes)
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


class Table:
    """Rows in order; each printed the moment it is added."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.notes: list[str] = []
        print(HEADER, flush=True)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(row.markdown(), flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    def markdown(self) -> str:
        lines = [HEADER, *(r.markdown() for r in self.rows)]
        if self.notes:
            lines += ["", *(f"- {n}" for n in self.notes)]
        return "\n".join(lines) + "\n"


def quiet_logging() -> None:
    """leadbot logs every send at INFO through its redacting filter, as in a real run; here the
    lines go to /dev/null so the terminal shows only results, but the cost of logging is kept."""
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 (lives as long as we do)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in ("httpx", "httpcore", "slack_sdk", "apprise", "urllib3", "mail.log"):
        logging.getLogger(name).setLevel(logging.WARNING)


def http_client(ca_file: str | None = None) -> httpx.Client:
    """The httpx client `pipeline.build` makes, trusting the Teams stand-in's throwaway CA."""
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
    return httpx.Client(
        timeout=httpx.Timeout(30.0, connect=10.0),
        transport=httpx.HTTPTransport(retries=1, verify=verify),
    )


UNLIMITED = {c: (1e6, 1e6) for c in Channel}  # what pipeline.build gives the demo's folder sink


def assemble(
    config: Config,
    store: Store,
    info: dict[str, Any],
    *,
    lanes: Lanes | None,
    senders: dict[Channel, Sender] | None = None,
    backfill: bool = True,
    http: httpx.Client | None = None,
) -> Runner:
    """leadbot's Runner wired like `pipeline.build`, to the servers in `info` (see servers.py).
    `lanes=None` means leadbot's real default rate limits."""
    http = http or http_client(info.get("teams_ca"))
    if senders is None:
        senders = {
            Channel.SLACK: SlackChannel(TOKEN, info["slack"], http=http),
            Channel.EMAIL: EmailChannel("127.0.0.1", info["smtp_port"], SENDER, "none"),
            Channel.TEAMS: TeamsChannel(dict(info["teams"]), http),
        }
    retries = config.retries
    policy = RetryPolicy(
        retries.first.total_seconds(), retries.cap.total_seconds(), retries.give_up.total_seconds()
    )
    dispatcher = Dispatcher(store, Renderer(config), senders, config, policy, lanes)
    poller = Poller(
        AutumnaClient(info["autumna"], http), {ACCOUNT: "bench-key"}, store, config, backfill
    )
    runner = Runner(poller, dispatcher, config)
    runner.closers.append(http.close)
    return runner


class NullSender:
    """A channel that accepts everything at once: for measuring leadbot without any network."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, message: Any) -> str:
        self.sent += 1
        return ""


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    return statistics.median(timed(fn)[0] for _ in range(repeat))


def fresh_db(folder: Path, name: str) -> Path:
    path = folder / name
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"
