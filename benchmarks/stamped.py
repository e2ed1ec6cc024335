"""leadbot's real run loop on a thread of its own, noting the time at each hand-over on a lead's
way from Autumna's answer to a channel: for benchmark 7 (latency.py).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Self

import httpx

from bot.config import Config
from bot.dispatch import Sender
from bot.limits import Lanes
from bot.models import Message
from bot.poller import Poller, PollResult, Window
from bot.runner import Runner
from bot.store import Store

from .harness import UNLIMITED, assemble, http_client


@dataclass
class Stamps:
    """time.time() at each hand-over, by lead key (or, for a send, by message ref)."""

    responses: list[float] = field(default_factory=list)  # each Autumna response read
    polls: list[float] = field(default_factory=list)  # each poll's request to response
    answered: dict[str, float] = field(default_factory=dict)
    parsed: dict[str, float] = field(default_factory=dict)
    recorded: dict[str, tuple[float, float]] = field(default_factory=dict)
    sending: dict[str, float] = field(default_factory=dict)
    cycles: int = 0

    def response(self, response: httpx.Response) -> None:
        """An httpx response hook: it runs before the body is read, so it reads it first."""
        if response.request.url.path.startswith("/api/leads"):
            response.read()
            self.responses.append(time.time())


class StampedPoller(Poller):
    """leadbot's Poller, noting when each lead's poll came back, was parsed and was recorded."""

    def __init__(self, poller: Poller, stamps: Stamps) -> None:
        super().__init__(
            poller.client,
            poller.api_keys,
            poller.store,
            poller.config,
            poller.backfill,
            poller.calendar,
        )
        self.stamps = stamps

    def fetch(self, windows: list[Window]) -> list[PollResult]:
        stamps, first, start = self.stamps, len(self.stamps.responses), time.time()
        results = super().fetch(windows)
        parsed = time.time()
        stamps.cycles += 1
        answers = stamps.responses[first:]  # one request per window, in order
        if answers:
            stamps.polls.append(answers[0] - start)
        for result, answered in zip(results, answers, strict=False):
            for lead in result.batch.leads if result.batch else ():
                stamps.answered.setdefault(lead.key, answered)
                stamps.parsed.setdefault(lead.key, parsed)
        return results

    def record(self, result: PollResult, now: datetime) -> int:
        start = time.time()
        announced = super().record(result, now)
        end = time.time()
        for lead in result.batch.leads if result.batch else ():
            self.stamps.recorded.setdefault(lead.key, (start, end))
        return announced


class StampedSender:
    """One of leadbot's channels, noting when each message's send began."""

    def __init__(self, channel: Sender, sending: dict[str, float]) -> None:
        self.channel, self.sending = channel, sending

    def send(self, message: Message) -> str:
        self.sending[message.ref] = time.time()
        return self.channel.send(message)

    def __getattr__(self, name: str) -> Any:  # `close`, `already_sent`: the channel's own
        return getattr(self.channel, name)


class Leadbot:
    """leadbot's run loop on a thread of its own, which also opens the database (an SQLite
    connection belongs to the thread that made it)."""

    def __init__(self, config: Config, info: dict[str, Any], path: Path) -> None:
        self.config, self.info, self.path = config, info, path
        self.stamps = Stamps()
        self.ready = threading.Event()
        self.runner: Runner | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="leadbot", daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        self.ready.wait(30)
        if self.runner is None:
            raise RuntimeError("leadbot did not start") from self.error
        return self

    def __exit__(self, *exc: object) -> None:
        if self.runner is not None:
            self.runner.stop.set()
        self.thread.join(30)
        if self.error is not None:
            raise RuntimeError("leadbot's run loop failed") from self.error

    def _run(self) -> None:
        try:
            store = Store(self.path)
            try:
                http = http_client(self.info["teams_ca"])
                http.event_hooks = {"request": [], "response": [self.stamps.response]}
                runner = assemble(
                    self.config, store, self.info, lanes=Lanes(dict(UNLIMITED)), http=http
                )
                runner.poller = StampedPoller(runner.poller, self.stamps)
                senders = runner.dispatcher.senders
                for channel, sender in senders.items():
                    senders[channel] = StampedSender(sender, self.stamps.sending)
                self.runner = runner
                self.ready.set()
                runner.run()
            finally:
                store.close()
        except BaseException as exc:  # handed to the benchmark's thread
            self.error = exc
            self.ready.set()

    def await_sent(self, count: int, timeout: float = 15.0) -> None:
        """Until leadbot has recorded `count` messages as sent."""
        assert self.runner is not None
        tally, deadline = self.runner.dispatcher.tally, time.monotonic() + timeout
        while tally.sent < count:
            if tally.failed or not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError(
                    f"leadbot sent {tally.sent} of {count} messages ({tally.failed} failed "
                    f"attempts: {tally.dead_refs})"
                ) from self.error
            time.sleep(0.002)
