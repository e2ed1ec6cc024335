"""Retention: personal details are erased after `privacy.retention`; the facts stay."""

from __future__ import annotations

from ..models import Status
from .queue import Queue


class Retention(Queue):
    def purge(self, before: float, now: float) -> int:
        """Erase the personal details of leads first seen before `before` whose deliveries are
        all finished, keeping ids, timestamps and delivery outcomes."""
        with self.db.atomic():
            cursor = self.db.execute(
                "UPDATE leads SET raw = NULL, purged_at = ? WHERE raw IS NOT NULL "
                "AND seen_at < ? AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE "
                "d.subject = leads.key AND d.status IN (?, ?, ?))",
                (now, before, Status.PENDING, Status.SENDING, Status.RETRYING),
            )
        count = int(cursor.rowcount)
        if count:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return count
