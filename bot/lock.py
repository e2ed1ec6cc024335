"""One leadbot per database: an exclusive lock on a file beside it, held while the run lasts."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any


class Locked(Exception):
    """Another leadbot is running on this database."""


def lock(db_path: Path | str) -> Any:
    """Hold an exclusive lock beside the database for as long as the returned file is open, so
    two `leadbot run`s can never deliver the same queue twice."""
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
