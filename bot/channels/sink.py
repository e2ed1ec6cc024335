"""The demo's local sink: every channel's payload written to a folder instead of sent, exactly
as it would go out (Slack and Teams JSON, email as .eml), with a line on the terminal.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

from ..models import Channel, Message
from . import email, slack

SUFFIX = {Channel.SLACK: ".json", Channel.TEAMS: ".json", Channel.EMAIL: ".eml"}


class FolderSink:
    def __init__(self, folder: Path, sender: str = "leadbot@demo.invalid") -> None:
        self.folder = folder
        self.sender = sender
        self.lock = threading.Lock()
        self.count = len(list(folder.glob("*/*"))) if folder.exists() else 0

    def send(self, message: Message) -> str:
        channel = message.target.channel
        if channel is Channel.EMAIL:
            data = bytes(email.stamp(message, self.sender))
        else:
            payload = dict(message.payload)
            if channel is Channel.SLACK:
                payload = {
                    "channel": message.target.address,
                    **payload,
                    "metadata": {
                        "event_type": slack.EVENT_TYPE,
                        "event_payload": {"ref": message.ref},
                    },
                }
            data = json.dumps(payload, indent=2, ensure_ascii=False).encode() + b"\n"
        with self.lock:
            self.count += 1
            name = f"{self.count:04d}-{re.sub(r'[^A-Za-z0-9.@-]+', '_', message.ref)}"
            path = self.folder / channel / (name[:150] + SUFFIX[channel])
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        return str(path)
