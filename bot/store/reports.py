"""Reports and digests: each lead with its first message and its claim, the dead deliveries of
leads, and the digests sent (one per name and day, written with their deliveries)."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from typing import Any

from ..models import Status, Target
from .queue import Queue

Edition = tuple[str, Iterable[Target]]  # a subject suffix ("" or ":<service id>") and its targets


class Reports(Queue):
    def report_rows(
        self, since: float, until: float, services: Collection[int] = ()
    ) -> list[dict[str, Any]]:
        """Every announced, readable lead first seen in [since, until), oldest first: its claim
        (if any) and when its first message went (its own, not an escalation)."""
        where = "l.seen_at >= ? AND l.seen_at < ? AND l.unreadable = 0 AND l.announced = 1"
        params: list[Any] = [since, until]
        if services:
            where += f" AND l.service_id IN ({','.join('?' * len(services))})"
            params += list(services)
        return list(
            self.db.query(
                "SELECT l.key, l.service_id, l.category_id, l.category, l.lead_date, l.seen_at, "
                "c.claimed_at, c.by_name, c.via, c.seconds_to_claim, "
                # `+d.status`: look the lead's few deliveries up by subject, never every sent one
                "(SELECT MIN(d.sent_at) FROM deliveries d WHERE d.subject = l.key "
                "AND +d.status = 'sent') AS first_sent "
                f"FROM leads l LEFT JOIN claims c ON c.lead = l.key WHERE {where} "
                "ORDER BY l.seen_at, l.key",
                params,
            )
        )

    def dead_by_lead(self, keys: Collection[str]) -> dict[str, list[dict[str, Any]]]:
        """The dead deliveries of these leads: their own messages and their escalations."""
        found: dict[str, list[dict[str, Any]]] = {}
        if not keys:
            return found
        for row in self.db.query(
            "SELECT subject, channel, address, label, last_error FROM deliveries "
            "WHERE status = ? ORDER BY id",
            [Status.DEAD],
        ):
            subject = row["subject"]
            lead = subject[4:].rpartition(":")[0] if subject.startswith("esc:") else subject
            if lead in keys:
                found.setdefault(lead, []).append(row)
        return found

    def last_digest(self, name: str) -> dict[str, Any] | None:
        rows = list(
            self.db.query("SELECT * FROM digests WHERE name = ? ORDER BY day DESC LIMIT 1", [name])
        )
        return rows[0] if rows else None

    def digest_row(self, digest_id: int) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM digests WHERE id = ?", [digest_id]))
        return rows[0] if rows else None

    def add_digest(
        self,
        name: str,
        day: str,
        period: tuple[float, float],
        due_at: float,
        figures: dict[str, Any] | None,
        editions: Iterable[Edition],
        now: float,
    ) -> int | None:
        """A digest and all its deliveries in one transaction; once per name and day. `figures`
        None records the day as skipped (nothing sent). Returns its id, None if already there."""
        with self.db.atomic():
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO digests (name, day, period_start, period_end, due_at, "
                "created_at, status, figures) VALUES (?,?,?,?,?,?,?,?)",
                (
                    name,
                    day,
                    *period,
                    due_at,
                    now,
                    "skipped" if figures is None else "queued",
                    json.dumps(figures or {}, separators=(",", ":")),
                ),
            )
            if not cursor.rowcount:
                return None
            digest_id = int(cursor.lastrowid or 0)
            if figures is not None:
                for suffix, targets in editions:
                    self._add_deliveries(
                        f"digest:{digest_id}{suffix}",
                        ((t, ("digest",)) for t in targets),
                        False,
                        now,
                    )
        return digest_id
