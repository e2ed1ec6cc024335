"""Channels: one small module each. A channel composes a payload from rendered text and makes one
attempt to send it; it returns on success and raises `DeliveryError` on failure. Retrying is the
dispatcher's business, never the channel's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..models import Channel
from . import email, slack, teams

COMPOSERS: dict[Channel, Callable[..., Any]] = {
    Channel.SLACK: slack.compose,
    Channel.EMAIL: email.compose,
    Channel.TEAMS: teams.compose,
}
# A digest: (parts, each home's parts, view, config) -> payload. Email's body is one template.
DIGEST_COMPOSERS: dict[Channel, Callable[..., Any]] = {
    Channel.SLACK: slack.compose_digest,
    Channel.EMAIL: lambda parts, homes, view, config: email.compose(parts, view, config),
    Channel.TEAMS: teams.compose_digest,
}
