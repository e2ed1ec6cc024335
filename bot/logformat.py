"""Log lines as JSON, for log shippers (`LEADBOT_LOG_FORMAT=json`): one object per line with the
time (ISO 8601 with the offset), the level, the logger and the message; a line about a delivery
adds its lead, destination, channel and outcome (`extra=` fields set where dispatch.py logs).

The redacting filter runs before any formatter: the message is already clean, and an exception
already reduced to its type and redacted message. Extra fields are redacted here too, so JSON
carries no more than the text format.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from .settings import redact

FIELDS = ("event", "lead", "destination", "channel", "address", "outcome", "error", "retry_in")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created)
            .astimezone()
            .isoformat("T", "milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = redact(value) if isinstance(value, str) else value
        return json.dumps(line, ensure_ascii=False, default=str)
