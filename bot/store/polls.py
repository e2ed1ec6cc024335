"""Poll health per Autumna account, and the bot's own notices to the ops destination."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..models import Target
from .queue import Queue


class Polls(Queue):
    def poll_state(self, account: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM polls WHERE account = ?", [account]))
        return rows[0] if rows else None

    def poll_succeeded(self, account: str, watermark: float, now: float) -> None:
        self.db.execute(
            "INSERT INTO polls (account, watermark, last_success, last_attempt, last_error, "
            "failing_since) VALUES (?,?,?,?, '', NULL) ON CONFLICT(account) DO UPDATE SET "
            "watermark = excluded.watermark, last_success = excluded.last_success, "
            "last_attempt = excluded.last_attempt, last_error = '', failing_since = NULL",
            (account, watermark, now, now),
        )

    def set_alerted(self, account: str, alerted: bool) -> None:
        self.db.execute("UPDATE polls SET alerted = ? WHERE account = ?", (int(alerted), account))

    def poll_failed(self, account: str, error: str, now: float) -> None:
        self.db.execute(
            "INSERT INTO polls (account, last_attempt, last_error, failing_since) "
            "VALUES (?,?,?,?) ON CONFLICT(account) DO UPDATE SET last_attempt = excluded."
            "last_attempt, last_error = excluded.last_error, "
            "failing_since = COALESCE(polls.failing_since, excluded.failing_since)",
            (account, now, error[:300], now),
        )

    def add_notice(
        self, kind: str, title: str, text: str, targets: Iterable[Target], now: float
    ) -> int:
        with self.db.atomic():
            cursor = self.db.execute(
                "INSERT INTO notices (kind, title, text, created_at) VALUES (?,?,?,?)",
                (kind, title, text, now),
            )
            notice_id = int(cursor.lastrowid or 0)
            self._add_deliveries(f"notice:{notice_id}", ((t, (kind,)) for t in targets), False, now)
        return notice_id

    def notice(self, notice_id: int) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM notices WHERE id = ?", [notice_id]))
        return rows[0] if rows else None

    def announce_dead(
        self,
        delivery_ids: list[int],
        notice: tuple[str, str, str],
        targets: Iterable[Target],
        now: float,
    ) -> None:
        """One notice to ops for these dead deliveries, and never again for them."""
        with self.db.atomic():
            self.add_notice(*notice, targets, now)
            for delivery_id in delivery_ids:
                self.db.execute(
                    "UPDATE deliveries SET dead_announced = 1 WHERE id = ?", (delivery_id,)
                )
