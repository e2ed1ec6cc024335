"""`leadbot backup`: a consistent copy of the live database through SQLite's online backup API,
taken while `run` keeps running (it reads; it never takes the run's lock or writes the source).

The copy is the database as of one moment: every page is copied in one step, inside one read
transaction, so a lead is there with all its deliveries or not at all. It is written owner-only
beside its final name, checked, made a single file (no -wal to forget), synced, then renamed
into place: a crash half-way leaves the previous backup as it was.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


class BackupError(Exception):
    """The copy could not be made; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Copy:
    path: Path
    size: int  # bytes
    leads: int
    deliveries: int


def backup(source: Path, target: Path) -> Copy:
    """Copy the database at `source` to `target` (a file, or a folder to put a dated file in)."""
    if not source.exists():
        raise BackupError(f"no database at {source}: nothing to back up")
    if target.is_dir():
        target = target / f"leadbot-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.db"
    if target.exists() and target.resolve() == source.resolve():
        raise BackupError(f"{target} is the live database: name another file")
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise BackupError(f"cannot write {target}: {exc.strerror}") from None
    try:
        copy = _copy(source, partial)
        _sync(partial)
        os.replace(partial, target)
        _sync(target.parent)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Copy(target, target.stat().st_size, copy[0], copy[1])


def _copy(source: Path, partial: Path) -> tuple[int, int]:
    live = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    out = sqlite3.connect(partial)
    try:
        live.execute("PRAGMA busy_timeout=30000")
        live.backup(out)  # pages=-1: all of it in one step, one consistent snapshot
        out.execute("PRAGMA journal_mode=DELETE")  # a single file: nothing beside it to copy
        check = out.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"the copy failed SQLite's check ({check}): try again")
        leads = out.execute("SELECT count(*) FROM leads").fetchone()[0]
        deliveries = out.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    except sqlite3.Error as exc:
        raise BackupError(f"could not copy {source}: {exc}") from None
    finally:
        out.close()
        live.close()
    return int(leads), int(deliveries)


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
