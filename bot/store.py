"""Remember: every SQL statement lives here (SQLite through sqlite-utils).

A lead and all its deliveries are written in one transaction before anything is sent; a delivery
is marked `sending` before its attempt and `sent` after, so a restart knows exactly which
outcomes are unknown. Times are Unix seconds (UTC). No secret is ever stored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from .models import Channel, Delivery, Lead, Status, Target, Unreadable

SCHEMA = """
CREATE TABLE IF NOT EXISTS leads (
    key TEXT PRIMARY KEY,          -- "<category id>:<lead id>", or "raw:<digest>" if unreadable
    account TEXT NOT NULL,
    category_id INTEGER,
    category TEXT,                 -- its name as Autumna sent it
    lead_id INTEGER,
    service_id INTEGER,
    lead_date TEXT,                -- Autumna's date, ISO 8601 UTC
    seen_at REAL NOT NULL,
    announced INTEGER NOT NULL,    -- 0: recorded silently on first start
    unreadable INTEGER NOT NULL DEFAULT 0,
    problem TEXT NOT NULL DEFAULT '',
    urgent INTEGER NOT NULL DEFAULT 0,
    unrouted INTEGER NOT NULL DEFAULT 0,
    notes TEXT NOT NULL DEFAULT '[]',
    raw TEXT,                      -- the record as Autumna sent it; erased by retention
    purged_at REAL
);
CREATE INDEX IF NOT EXISTS leads_to_purge ON leads (seen_at) WHERE raw IS NOT NULL;
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    subject TEXT NOT NULL,         -- a lead key, or "notice:<id>"
    channel TEXT NOT NULL,
    address TEXT NOT NULL,         -- never a secret: Teams webhooks are named by env variable
    label TEXT NOT NULL,
    privacy TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    urgent INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    first_attempt_at REAL,
    next_attempt_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    sent_at REAL,
    remote_id TEXT NOT NULL DEFAULT '',
    reasons TEXT NOT NULL DEFAULT '[]',
    dead_announced INTEGER NOT NULL DEFAULT 0,  -- ops has been told this one failed for good
    in_doubt INTEGER NOT NULL DEFAULT 0,  -- the last attempt may have arrived: look first
    UNIQUE (subject, channel, address)
);
DROP INDEX IF EXISTS deliveries_due;  -- a partial index SQLite never chose (leadbot 0.1)
CREATE INDEX IF NOT EXISTS deliveries_by_status ON deliveries (status, next_attempt_at);
CREATE TABLE IF NOT EXISTS polls (
    account TEXT PRIMARY KEY,
    watermark REAL,                -- dateTimeTo of the last successful poll
    last_success REAL,
    last_attempt REAL,
    last_error TEXT NOT NULL DEFAULT '',
    failing_since REAL,
    alerted INTEGER NOT NULL DEFAULT 0  -- ops has been told polling is failing
);
CREATE TABLE IF NOT EXISTS notices (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""
OPEN = (Status.PENDING, Status.RETRYING)


Routed = tuple[tuple[Target, tuple[str, ...]], ...]  # each target with the rules that chose it


@dataclass(frozen=True, slots=True)
class NewLead:
    lead: Lead
    announce: bool
    urgent: bool = False
    unrouted: bool = False
    notes: tuple[str, ...] = ()
    targets: Routed = ()


class Store:
    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        if str(path) != ":memory:" and not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Owner-only from the first byte: the database holds personal data.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.db = sqlite_utils.Database(
            path if str(path) != ":memory:" else None, memory=str(path) == ":memory:"
        )
        if str(path) != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA secure_delete=ON")  # erased personal data is overwritten too
        self.db.execute("PRAGMA busy_timeout=10000")  # `leadbot resend` may write while a run does
        self.db.executescript(SCHEMA)
        self._add_new_columns()

    def close(self) -> None:
        self.db.close()

    def batch(self) -> Any:
        """Several small writes, one commit (a context manager)."""
        return self.db.atomic()

    def _add_new_columns(self) -> None:
        """A database made by an older leadbot gets the columns added since, with defaults."""
        wanted = sqlite_utils.Database(memory=True)
        wanted.executescript(SCHEMA)
        for table in wanted.table_names():
            have = {c.name for c in self.db[table].columns}
            for column in wanted[table].columns:
                if column.name not in have:
                    sql = next(
                        line
                        for line in SCHEMA.splitlines()
                        if line.strip().startswith(column.name + " ")
                    )
                    self.db.execute(
                        f"ALTER TABLE {table} ADD COLUMN {sql.split('--')[0].strip().rstrip(',')}"
                    )

    # -- leads

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
                self._add_deliveries(lead.key, item.targets, item.urgent, now)
            for record, targets in unreadable:
                self.db.execute(
                    "INSERT OR IGNORE INTO leads (key, account, seen_at, announced, unreadable, "
                    "problem, raw) VALUES (?,?,?,1,1,?,?)",
                    (record.key, record.account, now, record.problem, record.raw),
                )
                self._add_deliveries(record.key, targets, False, now)

    def _add_deliveries(
        self,
        subject: str,
        targets: Iterable[tuple[Target, tuple[str, ...]]],
        urgent: bool,
        now: float,
    ) -> None:
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
                    now,
                    json.dumps(list(reasons)),
                ),
            )

    def lead_row(self, key: str) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM leads WHERE key = ?", [key]))
        return rows[0] if rows else None

    # -- notices (the bot's own messages to the ops destination)

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

    # -- deliveries

    def due(self, now: float) -> list[Delivery]:
        """Every delivery due now, most pressing first."""
        cursor = self.db.conn.execute(
            "SELECT * FROM deliveries WHERE status IN ('pending', 'retrying') "
            "AND next_attempt_at <= ? ORDER BY urgent DESC, next_attempt_at, id",
            (now,),
        )
        names = [c[0] for c in cursor.description]
        return [_delivery(dict(zip(names, row, strict=True))) for row in cursor]

    def claim(self, delivery_id: int, now: float) -> bool:
        """Mark a due delivery `sending` (committed before the attempt, so a crash leaves it in
        doubt, never forgotten). False if it is no longer due (resent, sent, erased)."""
        cursor = self.db.execute(
            "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, "
            "first_attempt_at = COALESCE(first_attempt_at, ?) "
            "WHERE id = ? AND status IN ('pending', 'retrying')",
            (now, delivery_id),
        )
        return cursor.rowcount == 1

    def next_due_at(self) -> float | None:
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

    def add_targets(
        self,
        subject: str,
        targets: Iterable[tuple[Target, tuple[str, ...]]],
        urgent: bool,
        now: float,
    ) -> None:
        with self.db.atomic():
            self._add_deliveries(subject, targets, urgent, now)

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

    def recent_leads(self, limit: int) -> list[dict[str, Any]]:
        return list(
            self.db.query(
                "SELECT key, account, category_id, category, service_id, lead_date, seen_at, "
                "announced, unreadable, problem, urgent, unrouted, notes FROM leads "
                "ORDER BY seen_at DESC, key LIMIT ?",
                [limit],
            )
        )

    def deliveries_of(self, subjects: list[str]) -> Iterator[Delivery]:
        for i in range(0, len(subjects), 500):
            chunk = subjects[i : i + 500]
            rows = self.db.query(
                f"SELECT * FROM deliveries WHERE subject IN "
                f"({','.join('?' * len(chunk))}) ORDER BY id",
                chunk,
            )
            yield from (_delivery(r) for r in rows)

    # -- retention

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

    # -- polls

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


class Locked(Exception):
    """Another leadbot is running on this database."""


def lock(db_path: Path | str) -> Any:
    """Hold an exclusive lock beside the database for as long as the returned file is open, so
    two `leadbot run`s can never deliver the same queue twice."""
    import fcntl

    path = Path(f"{db_path}.lock")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle = os.fdopen(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600), "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise Locked(
            f"another leadbot is already running on {db_path} (lock file {path}); "
            "stop it first, or give this one its own --db"
        ) from None
    return handle
