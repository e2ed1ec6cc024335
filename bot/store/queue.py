"""The delivery queue: one row per (lead or notice, target), claimed before its attempt and
recorded after it, so a restart knows exactly which outcomes are unknown."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

from ..models import Channel, Delivery, Status, Target


class Queue:
    db: Any  # sqlite_utils.Database, opened by Store

    def _add_deliveries(
        self,
        subject: str,
        targets: Iterable[tuple[Target, tuple[str, ...]]],
        urgent: bool,
        now: float,
        due: Mapping[str, float] | None = None,
    ) -> None:
        """`due`: target key -> when it may go (outside its hours: the next opening)."""
        for target, reasons in targets:
            self.db.execute(
                "INSERT OR IGNORE INTO deliveries (subject, channel, address, label, privacy, "
                "status, urgent, created_at, next_attempt_at, reasons) "
                "VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    subject,
                    str(target.channel),
                    target.address,
                    target.label,
                    target.privacy,
                    Status.PENDING,
                    int(urgent),
                    now,
                    due.get(target.key, now) if due else now,
                    json.dumps(list(reasons)),
                ),
            )

    def add_targets(
        self,
        subject: str,
        targets: Iterable[tuple[Target, tuple[str, ...]]],
        urgent: bool,
        now: float,
        due: Mapping[str, float] | None = None,
    ) -> None:
        with self.db.atomic():
            self._add_deliveries(subject, targets, urgent, now, due)

    def due(
        self, now: float, exclude: Collection[int] = (), since: float | None = None
    ) -> list[Delivery]:
        """Every delivery due now, most pressing first (but those in `exclude`); with `since`,
        only those that fell due after it."""
        cursor = self.db.conn.execute(
            "SELECT * FROM deliveries WHERE status IN ('pending', 'retrying') "
            "AND next_attempt_at <= ? AND next_attempt_at > ? "
            "ORDER BY urgent DESC, next_attempt_at, id",
            (now, float("-inf") if since is None else since),
        )
        names = [c[0] for c in cursor.description]
        found = (_delivery(dict(zip(names, row, strict=True))) for row in cursor)
        return [d for d in found if d.id not in exclude]

    def claim(self, delivery_id: int, now: float) -> bool:
        """Mark a due delivery `sending` (committed before the attempt, so a crash leaves it in
        doubt, never forgotten). False if it is no longer due (resent, sent, erased)."""
        cursor = self.db.execute(
            "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, "
            "first_attempt_at = COALESCE(first_attempt_at, ?) "
            "WHERE id = ? AND status IN ('pending', 'retrying')",
            (now, delivery_id),
        )
        return bool(cursor.rowcount == 1)

    def next_due_at(self, exclude: Collection[int] = ()) -> float | None:
        if exclude:  # `run --once` holding retries for the next run: a small queue
            ids = list(exclude)
            row = self.db.conn.execute(
                "SELECT MIN(next_attempt_at) FROM deliveries WHERE status IN "
                f"('pending', 'retrying') AND id NOT IN ({','.join('?' * len(ids))})",
                ids,
            ).fetchone()
            return float(row[0]) if row and row[0] is not None else None
        # One MIN per status: SQLite answers each from the index end, but not an IN list.
        row = self.db.conn.execute(
            "SELECT MIN(at) FROM (SELECT MIN(next_attempt_at) AS at FROM deliveries "
            "WHERE status = 'pending' UNION ALL SELECT MIN(next_attempt_at) FROM deliveries "
            "WHERE status = 'retrying')"
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def in_doubt(self) -> list[Delivery]:
        """Deliveries that were being sent when the last run stopped: outcome unknown."""
        rows = self.db.query("SELECT * FROM deliveries WHERE status = ?", [Status.SENDING])
        return [_delivery(r) for r in rows]

    def mark_sent(self, delivery_id: int, now: float, remote_id: str = "") -> None:
        self.db.execute(
            "UPDATE deliveries SET status = ?, sent_at = ?, remote_id = ?, "
            "last_error = '', in_doubt = 0 WHERE id = ?",
            (Status.SENT, now, remote_id[:100], delivery_id),
        )

    def mark_failed(
        self, delivery_id: int, error: str, retry_at: float | None, in_doubt: bool = False
    ) -> None:
        """retry_at None: dead for good. in_doubt: the attempt may have arrived anyway."""
        status = Status.DEAD if retry_at is None else Status.RETRYING
        self.db.execute(
            "UPDATE deliveries SET status = ?, last_error = ?, next_attempt_at = ?, "
            "in_doubt = ? WHERE id = ?",
            (status, error[:300], retry_at or 0, int(in_doubt), delivery_id),
        )

    def unannounced_dead(self) -> list[Delivery]:
        rows = self.db.query(
            "SELECT * FROM deliveries WHERE status = ? AND dead_announced = 0 "
            "AND subject NOT LIKE 'notice:%' ORDER BY id",
            [Status.DEAD],
        )
        return [_delivery(r) for r in rows]

    def all_dead(self, subject: str) -> bool:
        row = self.db.execute(
            "SELECT COUNT(*), SUM(status = ?) FROM deliveries WHERE subject = ?",
            (Status.DEAD, subject),
        ).fetchone()
        return bool(row[0]) and row[0] == row[1]

    def reached_by(self, subject: str, reason: str) -> bool:
        """Has this lead a delivery that `reason` chose (e.g. the fallback rescue)?"""
        return (
            self.db.execute(
                "SELECT 1 FROM deliveries WHERE subject = ? AND reasons LIKE ?",
                (subject, f"%{reason}%"),
            ).fetchone()
            is not None
        )

    def failed(self, lead: str | None, destination: str | None, dead_only: bool) -> list[Delivery]:
        """Dead (and, unless dead_only, retrying) deliveries, by lead key and/or destination
        (its name in rules.toml, its address, or channel:address)."""
        where = ["status IN (?, ?)"]
        params: list[Any] = [Status.DEAD, Status.DEAD if dead_only else Status.RETRYING]
        if lead:
            where.append("subject = ?")
            params.append(lead)
        if destination:
            where.append("(label = ? OR address = ? OR channel || ':' || address = ?)")
            params += [destination] * 3
        rows = self.db.query(
            f"SELECT * FROM deliveries WHERE {' AND '.join(where)} ORDER BY id", params
        )
        return [_delivery(r) for r in rows]

    def requeue(self, delivery_ids: Iterable[int], now: float) -> int:
        ids = list(delivery_ids)
        if not ids:
            return 0
        cursor = self.db.execute(
            f"UPDATE deliveries SET status = ?, next_attempt_at = ?, attempts = 0, "
            f"first_attempt_at = NULL, dead_announced = 0, last_error = '' "
            f"WHERE id IN ({','.join('?' * len(ids))})",
            (Status.PENDING, now, *ids),
        )
        return int(cursor.rowcount)

    def deliveries(
        self, where: str = "1", params: Iterable[Any] = (), limit: int = 200
    ) -> list[Delivery]:
        rows = self.db.query(
            f"SELECT * FROM deliveries WHERE {where} ORDER BY id DESC LIMIT ?", [*params, limit]
        )
        return [_delivery(r) for r in rows]

    def open_count(self) -> int:
        row = self.db.conn.execute(
            "SELECT (SELECT COUNT(*) FROM deliveries WHERE status = "
            "'pending') + (SELECT COUNT(*) FROM deliveries WHERE status = "
            "'retrying')"
        ).fetchone()
        return int(row[0])

    def counts(self) -> dict[str, int]:
        return {
            r["status"]: r["n"]
            for r in self.db.query("SELECT status, COUNT(*) AS n FROM deliveries GROUP BY status")
        }

    def deliveries_of(self, subjects: list[str]) -> Iterator[Delivery]:
        for i in range(0, len(subjects), 500):
            chunk = subjects[i : i + 500]
            rows = self.db.query(
                f"SELECT * FROM deliveries WHERE subject IN "
                f"({','.join('?' * len(chunk))}) ORDER BY id",
                chunk,
            )
            yield from (_delivery(r) for r in rows)


def _delivery(row: dict[str, Any]) -> Delivery:
    return Delivery(
        id=row["id"],
        subject=row["subject"],
        target=Target(Channel(row["channel"]), row["address"], row["label"], row["privacy"]),
        status=Status(row["status"]),
        attempts=row["attempts"],
        urgent=bool(row["urgent"]),
        created_at=row["created_at"],
        next_attempt_at=row["next_attempt_at"],
        first_attempt_at=row["first_attempt_at"],
        sent_at=row["sent_at"],
        last_error=row["last_error"],
        reasons=tuple(json.loads(row["reasons"])),
        in_doubt=bool(row["in_doubt"]),
    )


def target_json(target: Target, reasons: tuple[str, ...]) -> dict[str, Any]:
    """A target as escalation steps keep it until they fire."""
    return {
        "channel": str(target.channel),
        "address": target.address,
        "label": target.label,
        "privacy": target.privacy,
        "hours": target.hours,
        "reasons": list(reasons),
    }


def target_of(data: dict[str, Any]) -> tuple[Target, tuple[str, ...]]:
    target = Target(
        Channel(data["channel"]), data["address"], data["label"], data["privacy"], data["hours"]
    )
    return target, tuple(data["reasons"])
