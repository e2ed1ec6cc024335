"""Remember: every SQL statement lives in this package (SQLite through sqlite-utils), one file
per concern: schema.py (tables and migrations), leads.py, queue.py (the delivery queue),
claims.py (claims, escalation steps, Slack messages), polls.py (poll health and notices),
retention.py.

A lead and all its deliveries are written in one transaction before anything is sent; a delivery
is marked `sending` before its attempt and `sent` after, so a restart knows exactly which
outcomes are unknown. Times are Unix seconds (UTC). No secret is ever stored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlite_utils

from .claims import Claims
from .console import Console
from .leads import Leads
from .polls import Polls
from .reports import Reports
from .retention import Retention
from .schema import migrations

__all__ = ["Store"]


class Store(Leads, Claims, Polls, Retention, Reports, Console):
    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        memory = str(path) == ":memory:"
        if not memory and not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Owner-only from the first byte: the database holds personal data.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.db = sqlite_utils.Database(None if memory else path, memory=memory)
        if not memory:
            self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA secure_delete=ON")  # erased personal data is overwritten too
        self.db.execute("PRAGMA busy_timeout=10000")  # `leadbot resend` may write while a run does
        migrations.apply(self.db)

    def close(self) -> None:
        self.db.close()

    def batch(self) -> Any:
        """Several small writes, one commit (a context manager)."""
        return self.db.atomic()
