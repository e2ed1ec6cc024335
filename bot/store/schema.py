"""The database's tables, and how an older database is brought up to date (sqlite-utils'
`Migrations`: each step runs once, in its own transaction, and is recorded in the database)."""

from __future__ import annotations

from typing import Any

from sqlite_utils import Migrations

# leadbot 1.0's schema, as it was first written: every later change is a migration below.
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

migrations = Migrations("leadbot")


@migrations()
def v1_schema(db: Any) -> None:
    """The tables of leadbot 1.0. A database that already has them (made before migrations were
    recorded) keeps its rows; columns added during 1.0's development are added if missing."""
    db.executescript(SCHEMA)
    db.execute("DROP INDEX IF EXISTS deliveries_due")  # a partial index SQLite never chose
    for column, kind, default in (
        ("dead_announced", int, 0),
        ("in_doubt", int, 0),
        ("remote_id", str, ""),
    ):
        if column not in db["deliveries"].columns_dict:
            db["deliveries"].add_column(column, kind, not_null_default=default)


@migrations()
def v2_claims(db: Any) -> None:
    """Claims, escalation steps, and where each lead's Slack messages are (for edits and for
    finding a reaction or a reply)."""
    db.executescript(
        """
        CREATE TABLE claims (
            lead TEXT PRIMARY KEY,         -- the lead key
            by_name TEXT NOT NULL,         -- the person: a Slack name or id, or as typed
            by_id TEXT NOT NULL DEFAULT '',-- their Slack user id, for claims made in Slack
            via TEXT NOT NULL,             -- slack-button, slack-reaction, slack-reply, cli, web
            claimed_at REAL NOT NULL,
            seconds_to_claim REAL NOT NULL -- from the lead's arrival at Autumna (else first seen)
        );
        CREATE TABLE escalations (
            id INTEGER PRIMARY KEY,
            lead TEXT NOT NULL,
            step INTEGER NOT NULL,         -- 1, 2, ... in the order of `after`
            after REAL NOT NULL,           -- seconds, as rules.toml says
            due_at REAL NOT NULL,          -- when it fires if still unclaimed (open time counted)
            targets TEXT NOT NULL,         -- JSON: each target with the rules that chose it
            anytime INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL,          -- waiting, fired, stopped (claimed first)
            fired_at REAL,
            UNIQUE (lead, step)
        );
        CREATE INDEX escalations_due ON escalations (status, due_at);
        CREATE TABLE slack_messages (
            channel TEXT NOT NULL,         -- the conversation id Slack answered with
            ts TEXT NOT NULL,
            delivery INTEGER NOT NULL,     -- the delivery that posted it
            lead TEXT NOT NULL,
            PRIMARY KEY (channel, ts)
        );
        CREATE INDEX slack_messages_by_lead ON slack_messages (lead);
        """
    )


@migrations()
def v3_web_indexes(db: Any) -> None:
    """What the web console and /metrics ask of a big database: leads by when they were seen
    (the unclaimed, the recent, the last 30 days), deliveries by when they were sent (new first
    messages since the last scrape), and the dead letters newest first. Partial indexes stay
    small: most deliveries are sent and never dead."""
    db.executescript(
        """
        CREATE INDEX IF NOT EXISTS leads_by_seen ON leads (seen_at);
        CREATE INDEX IF NOT EXISTS deliveries_by_sent ON deliveries (sent_at)
            WHERE sent_at IS NOT NULL;
        CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries (id) WHERE status = 'dead';
        """
    )


@migrations()
def v4_digests(db: Any) -> None:
    """Digests ([[digests]]): one row per digest and day it is for, written in one transaction
    with its deliveries (subject "digest:<id>"), so a restart never sends one twice."""
    db.executescript(
        """
        CREATE TABLE digests (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,            -- its name in rules.toml
            day TEXT NOT NULL,             -- the local date it goes on (ISO): one per name and day
            period_start REAL NOT NULL,    -- the leads it counts were first seen in [start, end)
            period_end REAL NOT NULL,
            due_at REAL NOT NULL,          -- when it was due; created_at is later after downtime
            created_at REAL NOT NULL,
            status TEXT NOT NULL,          -- queued (its deliveries written), or skipped (first
                                           -- seen after its time: nothing sent for that day)
            figures TEXT NOT NULL DEFAULT '{}',  -- JSON: what it shows; no personal data
            UNIQUE (name, day)
        );
        """
    )
