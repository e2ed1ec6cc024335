"""Claims, escalation steps, and where each lead's Slack messages are.

A claim is one transaction: the claim itself (first wins), the lead's waiting escalation steps
stopped, its queued escalation messages cancelled, and an edit queued for every Slack message
of the lead that may already be in a channel. Edits go through the outbox like any delivery.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from ..models import Channel, Status, Target
from .queue import Queue, target_of

SLACK_SHOWN = ("sent", "sending")  # Slack messages that are (or may be) in a channel


class Claims(Queue):
    def claim_lead(
        self, lead: str, by_name: str, by_id: str, via: str, now: float
    ) -> tuple[dict[str, Any] | None, bool]:
        """Record a claim; the first wins. Returns (the lead's claim, whether this one won);
        (None, False) for a lead leadbot does not know."""
        with self._writing():
            row = self.db.execute(
                "SELECT seen_at, lead_date FROM leads WHERE key = ? AND unreadable = 0", (lead,)
            ).fetchone()
            if row is None:
                return None, False
            arrived = _arrival(row[0], row[1])
            won = self.db.execute(
                "INSERT OR IGNORE INTO claims (lead, by_name, by_id, via, claimed_at, "
                "seconds_to_claim) VALUES (?,?,?,?,?,?)",
                (lead, by_name[:200], by_id[:40], via, now, max(0.0, now - arrived)),
            ).rowcount
            if won:
                self.db.execute(
                    "UPDATE escalations SET status = 'stopped' WHERE lead = ? "
                    "AND status = 'waiting'",
                    (lead,),
                )
                # A Slack message in doubt may be in the channel already: it is looked for (and
                # then edited like the others), not written off.
                self.db.execute(
                    "UPDATE deliveries SET status = ?, last_error = 'the lead was claimed first' "
                    "WHERE subject LIKE ? AND status IN ('pending', 'retrying') "
                    "AND NOT (channel = 'slack' AND in_doubt = 1)",
                    (Status.CANCELLED, f"esc:{lead}:%"),
                )
                self._queue_edits(lead, now)
        return self.claim_of(lead), bool(won)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A transaction that takes the write lock before it reads (BEGIN IMMEDIATE).
        `leadbot claim` runs while `leadbot run` writes: a transaction that read first would
        fail ("database is locked") if run wrote in between, where this one waits its turn."""
        if self.db.conn.in_transaction:
            with self.db.atomic():
                yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            self.db.rollback()
            raise

    def _queue_edits(self, lead: str, now: float) -> None:
        """An edit for each Slack message of the lead that may be in a channel already (one
        still pending will show the claim when it goes)."""
        rows = self.db.execute(
            "SELECT id, address, label, privacy FROM deliveries WHERE channel = 'slack' "
            "AND (subject = ? OR subject LIKE ?) AND (status IN ('sent', 'sending') "
            "OR (status = 'retrying' AND in_doubt = 1))",
            (lead, f"esc:{lead}:%"),
        ).fetchall()
        for delivery_id, address, label, privacy in rows:
            self._add_deliveries(
                f"edit:{delivery_id}",
                [(Target(Channel.SLACK, address, label, privacy), ("claimed",))],
                True,
                now,
            )

    def tell(self, lead: str, user: str, channel: str, now: float) -> None:
        """Queue an ephemeral note to one person: the lead is already claimed by someone."""
        with self.db.atomic():
            self._add_deliveries(
                f"ephemeral:{lead}:{user}",
                [(Target(Channel.SLACK, channel, "the person who clicked", "minimal"), ())],
                True,
                now,
            )

    def claim_of(self, lead: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM claims WHERE lead = ?", [lead]))
        return rows[0] if rows else None

    def claims_of(self, leads: Iterable[str]) -> dict[str, dict[str, Any]]:
        keys = list(leads)
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            for row in self.db.query(
                f"SELECT * FROM claims WHERE lead IN ({','.join('?' * len(chunk))})", chunk
            ):
                found[row["lead"]] = row
        return found

    # -- Slack messages: where each lead's messages landed

    def remember_slack_message(self, channel: str, ts: str, delivery_id: int, lead: str) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO slack_messages (channel, ts, delivery, lead) VALUES (?,?,?,?)",
            (channel, ts, delivery_id, lead),
        )

    def lead_of_message(self, channel: str, ts: str) -> str | None:
        row = self.db.execute(
            "SELECT lead FROM slack_messages WHERE channel = ? AND ts = ?", (channel, ts)
        ).fetchone()
        return str(row[0]) if row else None

    def slack_message(self, delivery_id: int) -> tuple[str, str] | None:
        row = self.db.execute(
            "SELECT channel, ts FROM slack_messages WHERE delivery = ?", (delivery_id,)
        ).fetchone()
        return (str(row[0]), str(row[1])) if row else None

    def unclaimed_slack_messages(self, since: float, limit: int) -> list[tuple[str, str, str]]:
        """(lead, channel, ts) of messages of unclaimed leads first seen after `since`."""
        rows = self.db.execute(
            "SELECT m.lead, m.channel, m.ts FROM slack_messages m JOIN leads l ON l.key = m.lead "
            "WHERE l.seen_at >= ? AND NOT EXISTS (SELECT 1 FROM claims c WHERE c.lead = m.lead) "
            "ORDER BY l.seen_at DESC LIMIT ?",
            (since, limit),
        ).fetchall()
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    # -- escalation

    def due_escalations(self, now: float) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "SELECT * FROM escalations WHERE status = 'waiting' AND due_at <= ? "
                "ORDER BY due_at, id",
                [now],
            )
        )

    def next_escalation_at(self) -> float | None:
        row = self.db.execute(
            "SELECT MIN(due_at) FROM escalations WHERE status = 'waiting'"
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def fire(self, step: dict[str, Any], due: dict[str, float], now: float) -> bool:
        """Send a step's messages, once: False if the lead was claimed (the step stops)."""
        with self.db.atomic():
            if self.claim_of(step["lead"]) is not None:
                self.db.execute(
                    "UPDATE escalations SET status = 'stopped' WHERE id = ?", (step["id"],)
                )
                return False
            changed = self.db.execute(
                "UPDATE escalations SET status = 'fired', fired_at = ? WHERE id = ? "
                "AND status = 'waiting'",
                (now, step["id"]),
            ).rowcount
            if changed:
                self._add_deliveries(
                    f"esc:{step['lead']}:{step['step']}", step_targets(step), True, now, due
                )
            return bool(changed)

    def escalations_of(self, leads: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        keys = list(leads)
        found: dict[str, list[dict[str, Any]]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            for row in self.db.query(
                f"SELECT * FROM escalations WHERE lead IN ({','.join('?' * len(chunk))}) "
                "ORDER BY lead, step",
                chunk,
            ):
                found.setdefault(row["lead"], []).append(row)
        return found


def step_targets(step: dict[str, Any]) -> list[tuple[Target, tuple[str, ...]]]:
    return [target_of(item) for item in json.loads(step["targets"])]


def _arrival(seen_at: float, lead_date: str | None) -> float:
    """When the family asked: Autumna's date when it has one, else when leadbot first saw it."""
    if lead_date:
        try:
            return min(seen_at, datetime.fromisoformat(lead_date).timestamp())
        except ValueError:
            pass
    return seen_at
