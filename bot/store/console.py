"""What the web console, /healthz and /metrics read (and the one thing they write through
Queue.requeue: a resend). Every list is paged by a keyset (when it was seen, its rowid), so a
page costs the same on a database of a million leads as on an empty one; the figures /metrics
keeps are read incrementally (rows added since the last scrape) where rows are only ever added.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..models import Delivery, Status
from .queue import Queue, _delivery

# When the family asked, as store/claims.py's _arrival says: Autumna's date when it has one
# (and it is not later than leadbot first saw the lead), else when leadbot first saw it.
ARRIVAL = "MIN(l.seen_at, COALESCE((julianday(l.lead_date) - 2440587.5) * 86400.0, l.seen_at))"
OPEN = (Status.PENDING, Status.SENDING, Status.RETRYING, Status.DEAD, Status.CANCELLED)
Cursor = tuple[float, int]  # (seen_at, rowid) of the last lead on a page


class Console(Queue):
    def db_file(self) -> Path | None:
        """The database file, for threads that open their own connection (None: in memory)."""
        row = self.db.execute("PRAGMA database_list").fetchone()
        return Path(row[2]) if row and row[2] else None

    # -- the overview

    def poll_states(self) -> dict[str, dict[str, Any]]:
        return {r["account"]: r for r in self.db.query("SELECT * FROM polls")}

    def queue_counts(self, now: float) -> dict[str, int]:
        """pending (due now), deferred (pending, waiting for its hours), retrying, sending, dead:
        each counted from the status index, never by scanning the sent."""
        row = self.db.execute(
            "SELECT (SELECT COUNT(*) FROM deliveries WHERE status = 'pending' "
            "AND next_attempt_at <= :now), (SELECT COUNT(*) FROM deliveries WHERE status = "
            "'pending' AND next_attempt_at > :now), (SELECT COUNT(*) FROM deliveries WHERE "
            "status = 'retrying'), (SELECT COUNT(*) FROM deliveries WHERE status = 'sending'), "
            "(SELECT COUNT(*) FROM deliveries WHERE status = 'dead')",
            {"now": now},
        ).fetchone()
        return dict(zip(("pending", "deferred", "retrying", "sending", "dead"), row, strict=True))

    def unclaimed(
        self, since: float, after: Cursor | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Leads announced since `since` that nobody has claimed, oldest first."""
        seen, rowid = after or (float("-inf"), 0)
        return list(
            self.db.query(
                f"SELECT l.rowid AS rowid, l.key, l.account, l.category_id, l.category, "
                f"l.service_id, l.seen_at, l.urgent, {ARRIVAL} AS arrived FROM leads l "
                "WHERE l.seen_at >= ? AND (l.seen_at, l.rowid) > (?, ?) AND l.unreadable = 0 "
                "AND l.announced = 1 AND NOT EXISTS (SELECT 1 FROM claims c WHERE c.lead = l.key) "
                "ORDER BY l.seen_at, l.rowid LIMIT ?",
                [since, seen, rowid, limit],
            )
        )

    def unclaimed_count(self, since: float) -> int:
        row = self.db.execute(
            "SELECT COUNT(*) FROM leads l WHERE l.seen_at >= ? AND l.unreadable = 0 AND "
            "l.announced = 1 AND NOT EXISTS (SELECT 1 FROM claims c WHERE c.lead = l.key)",
            (since,),
        ).fetchone()
        return int(row[0])

    def dead_letters(self, before: int | None = None, limit: int = 50) -> list[Delivery]:
        """Deliveries that failed for good, newest first."""
        rows = self.db.query(
            "SELECT * FROM deliveries WHERE status = 'dead' AND id < ? ORDER BY id DESC LIMIT ?",
            [before if before is not None else 2**63 - 1, limit],
        )
        return [_delivery(r) for r in rows]

    def dead_letter(self, delivery_id: int) -> Delivery | None:
        found = self.dead_letters(delivery_id + 1, 1)
        return found[0] if found and found[0].id == delivery_id else None

    def response_times(self, since: float) -> list[tuple[int | None, float | None, float | None]]:
        """Each lead announced since `since`: (service id, seconds from its arrival to its
        first message, seconds to its claim); None where there is none yet."""
        rows = self.db.execute(
            f"SELECT l.service_id, (SELECT MIN(d.sent_at) FROM deliveries d WHERE d.subject = "
            f"l.key) - {ARRIVAL}, c.seconds_to_claim FROM leads l LEFT JOIN claims c ON "
            "c.lead = l.key WHERE l.seen_at >= ? AND l.unreadable = 0 AND l.announced = 1",
            (since,),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    # -- leads

    def leads_page(self, before: Cursor | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Leads as they were seen, newest first, with their claims."""
        seen, rowid = before or (float("inf"), 2**63 - 1)
        return list(
            self.db.query(
                "SELECT l.rowid AS rowid, l.key, l.account, l.category_id, l.category, "
                "l.service_id, l.seen_at, l.urgent, l.unreadable, l.announced, c.by_name, "
                "c.via, c.claimed_at FROM leads l LEFT JOIN claims c ON c.lead = l.key "
                "WHERE (l.seen_at, l.rowid) < (?, ?) ORDER BY l.seen_at DESC, l.rowid DESC "
                "LIMIT ?",
                [seen, rowid, limit],
            )
        )

    def lead_deliveries(self, key: str) -> list[Delivery]:
        """A lead's own deliveries, its escalation messages, and the edits and notes that
        followed its claim (subjects as outbox.py lists them)."""
        rows = list(
            self.db.query(
                "SELECT * FROM deliveries WHERE subject = ? OR (subject >= ? AND subject < ?) "
                "OR (subject >= ? AND subject < ?) ORDER BY id",
                [key, f"esc:{key}:", f"esc:{key};", f"ephemeral:{key}:", f"ephemeral:{key};"],
            )
        )
        edits = [f"edit:{r['id']}" for r in rows if r["channel"] == "slack"]
        found = [_delivery(r) for r in rows]
        found += self.deliveries_of(edits)
        return sorted(found, key=lambda d: d.id)

    # -- /metrics: rows added since the last scrape (rows are never deleted)

    def leads_added(self, after: int) -> tuple[list[tuple[str, int | None, int, int]], int]:
        """(account, category id, unreadable, count) of leads with rowid > after; the last
        rowid."""
        rows = self.db.execute(
            "SELECT account, category_id, unreadable, COUNT(*), MAX(rowid) FROM leads "
            "WHERE rowid > ? GROUP BY account, category_id, unreadable",
            (after,),
        ).fetchall()
        last = max([after, *(r[4] for r in rows)])
        return [(r[0], r[1], r[2], r[3]) for r in rows], last

    def deliveries_added(self, after: int) -> tuple[dict[str, int], int]:
        """Deliveries with id > after, by channel; the last id."""
        rows = self.db.execute(
            "SELECT channel, COUNT(*), MAX(id) FROM deliveries WHERE id > ? GROUP BY channel",
            (after,),
        ).fetchall()
        return {r[0]: r[1] for r in rows}, max([after, *(r[2] for r in rows)])

    def unfinished_deliveries(self) -> dict[tuple[str, str], int]:
        """(channel, status) -> count for every status but sent: few, and indexed."""
        marks = ",".join("?" * len(OPEN))
        rows = self.db.execute(
            f"SELECT channel, status, COUNT(*) FROM deliveries WHERE status IN ({marks}) "
            "GROUP BY channel, status",
            [str(s) for s in OPEN],
        ).fetchall()
        return {(r[0], r[1]): r[2] for r in rows}

    def claims_added(self, after: int) -> tuple[list[tuple[str, float]], int]:
        """(via, seconds to claim) of claims with rowid > after; the last rowid."""
        rows = self.db.execute(
            "SELECT rowid, via, seconds_to_claim FROM claims WHERE rowid > ? ORDER BY rowid",
            (after,),
        ).fetchall()
        return [(r[1], r[2]) for r in rows], (rows[-1][0] if rows else after)

    def first_messages(self, since: float | None, until: float) -> list[float]:
        """Seconds from arrival to first message of each lead whose first message went in
        (since, until]; of every lead, up to `until`, when since is None."""
        sent = (
            "sent_at IS NOT NULL"
            if since is None
            else "subject IN (SELECT subject FROM deliveries WHERE sent_at > :since "
            "AND sent_at <= :until)"
        )
        rows = self.db.execute(
            f"SELECT MAX(0, f.first - {ARRIVAL}) FROM (SELECT subject, MIN(sent_at) AS first "
            f"FROM deliveries WHERE {sent} GROUP BY subject) f JOIN leads l ON l.key = f.subject "
            "AND l.unreadable = 0 WHERE f.first > :since AND f.first <= :until",
            {"since": float("-inf") if since is None else since, "until": until},
        )
        return [r[0] for r in rows]

    def escalations_fired(self) -> int:
        row = self.db.execute("SELECT COUNT(*) FROM escalations WHERE status = 'fired'").fetchone()
        return int(row[0])
