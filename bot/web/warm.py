"""Figures that take a while on a big database (the first pass of /metrics over a million
leads, a month of response times), worked out on a thread of their own: a page or a scrape
waits a moment for them, and otherwise answers with the last ones (or without them, the first
time) instead of keeping its caller waiting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from ..settings import redact

log = logging.getLogger(__name__)
T = TypeVar("T")


class Warm(Generic[T]):
    def __init__(
        self, compute: Callable[[], T], max_age: float, clock: Callable[[], float]
    ) -> None:
        self.compute, self.max_age, self.clock = compute, max_age, clock
        self.value: T | None = None
        self.at = float("-inf")  # when the value was worked out
        self.working: threading.Thread | None = None
        self.lock = threading.Lock()

    def get(self, first_wait: float, wait: float = 0.0) -> tuple[T | None, float]:
        """The value and when it was worked out: a fresh one if it is ready within
        `first_wait` seconds (the first time) or `wait` (later), else the last one."""
        with self.lock:
            stale = self.clock() - self.at >= self.max_age  # max_age 0: every time
            if stale and self.working is None:
                self.working = threading.Thread(target=self._work, name="web-figures", daemon=True)
                self.working.start()
            working, known = self.working, self.value is not None
        if working is not None:
            working.join(wait if known else first_wait)
        with self.lock:
            return self.value, self.at

    def _work(self) -> None:
        started = self.clock()
        try:
            value = self.compute()
        except Exception as exc:  # the page says the figures are not ready; the log says why
            log.error("web console: figures failed: %s", redact(repr(exc))[:300])
            with self.lock:
                self.working = None
            return
        with self.lock:
            self.value, self.at, self.working = value, started, None
