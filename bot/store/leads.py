"""Leads as they were seen: the record as Autumna sent it, and what routing decided."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..models import NewLead, Routed, Unreadable
from .queue import Queue, target_json


class Leads(Queue):
    def known(self, keys: Iterable[str]) -> set[str]:
        keys = list(keys)
        found: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            rows = self.db.execute(
                f"SELECT key FROM leads WHERE key IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update(r[0] for r in rows)
        return found

    def add_leads(
        self, leads: list[NewLead], unreadable: list[tuple[Unreadable, Routed]], now: float
    ) -> None:
        """Each lead with all its deliveries, in one transaction, before anything is sent."""
        with self.db.atomic():
            for item in leads:
                lead = item.lead
                self.db.execute(
                    "INSERT OR IGNORE INTO leads (key, account, category_id, category, lead_id, "
                    "service_id, lead_date, seen_at, announced, urgent, unrouted, notes, raw) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        lead.key,
                        lead.account,
                        lead.category.id,
                        lead.category.name,
                        lead.id,
                        lead.service.id,
                        lead.date.isoformat() if lead.date else None,
                        now,
                        int(item.announce),
                        int(item.urgent),
                        int(item.unrouted),
                        json.dumps(list(item.notes)),
                        lead.raw,
                    ),
                )
                self._add_deliveries(lead.key, item.targets, item.urgent, now, item.due)
                for step in item.steps:
                    self.db.execute(
                        "INSERT OR IGNORE INTO escalations (lead, step, after, due_at, targets, "
                        "anytime, status) VALUES (?,?,?,?,?,?, 'waiting')",
                        (
                            lead.key,
                            step.step,
                            step.after,
                            step.due_at,
                            json.dumps([target_json(t, r) for t, r in step.targets]),
                            int(step.anytime),
                        ),
                    )
            for record, targets in unreadable:
                self.db.execute(
                    "INSERT OR IGNORE INTO leads (key, account, seen_at, announced, unreadable, "
                    "problem, raw) VALUES (?,?,?,1,1,?,?)",
                    (record.key, record.account, now, record.problem, record.raw),
                )
                self._add_deliveries(record.key, targets, False, now)

    def lead_row(self, key: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM leads WHERE key = ?", [key]))
        return rows[0] if rows else None

    def recent_leads(self, limit: int) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "SELECT key, account, category_id, category, service_id, lead_date, seen_at, "
                "announced, unreadable, problem, urgent, unrouted, notes FROM leads "
                "ORDER BY seen_at DESC, key LIMIT ?",
                [limit],
            )
        )
