"""Microsoft Teams: an Adaptive Card (version 1.5, the newest Teams renders) in a Workflows
message envelope, POSTed with httpx to the webhook URL. A Workflows webhook answers 202 Accepted.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from .. import escape
from ..failures import DeliveryError, http_status
from ..models import Message

CARD_VERSION = "1.5"
MAX_BYTES = 27_000  # Teams refuses messages over about 28 KB; keep a margin for the envelope


def compose(parts: dict[str, str], view: dict[str, Any], config: Any) -> dict[str, Any]:
    # Teams shows a single "\n" in a TextBlock as nothing; a paragraph break shows as a new line.
    parts = {name: text.replace("\n", "\n\n") for name, text in parts.items()}
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": parts["title"] or "New lead",
            "wrap": True,
            "weight": "Bolder",
            "size": "Medium",
            **({"color": "Attention"} if view.get("urgent") else {}),
        }
    ]
    if parts.get("escalation"):
        body.append(
            {"type": "TextBlock", "text": parts["escalation"], "wrap": True, "color": "Attention"}
        )
    for name in ("body", "details"):
        if parts[name]:
            body.append({"type": "TextBlock", "text": parts[name], "wrap": True})
    if parts.get("claim"):
        body.append({"type": "TextBlock", "text": parts["claim"], "wrap": True, "isSubtle": True})
    if parts["footer"]:
        body.append(
            {
                "type": "TextBlock",
                "text": parts["footer"],
                "wrap": True,
                "isSubtle": True,
                "size": "Small",
                "spacing": "Medium",
            }
        )
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "body": body,
    }
    actions = []
    if (view.get("claiming") or {}).get("link"):
        actions.append(
            {"type": "Action.OpenUrl", "title": "I'll call them", "url": view["claiming"]["link"]}
        )
    if view.get("link"):
        actions.append({"type": "Action.OpenUrl", "title": "Open the lead", "url": view["link"]})
    if actions:
        card["actions"] = actions
    _fit(card)
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }


def compose_digest(
    parts: dict[str, str], homes: list[dict[str, str]], view: dict[str, Any], config: Any
) -> dict[str, Any]:
    """A digest: the title and summary, a container per home (its figures, then its bars in a
    monospaced block), and the footer; homes that do not fit in Teams' size are counted."""
    parts = {name: text.replace("\n", "\n\n") for name, text in parts.items()}
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": parts["title"] or "Leads digest",
            "wrap": True,
            "weight": "Bolder",
            "size": "Medium",
        }
    ]
    if parts.get("summary"):
        body.append({"type": "TextBlock", "text": parts["summary"], "wrap": True})
    containers = []
    for home in homes:
        items = [{"type": "TextBlock", "text": home["home"].replace("\n", "\n\n"), "wrap": True}]
        if home.get("chart"):
            chart = home["chart"].replace("\n", "\n\n")
            items.append(
                {"type": "TextBlock", "text": chart, "wrap": True, "fontType": "Monospace"}
            )
        containers.append({"type": "Container", "separator": True, "items": items})
    footer = (
        [{"type": "TextBlock", "text": parts["footer"], "wrap": True, "isSubtle": True}]
        if parts.get("footer")
        else []
    )
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "body": body + containers + footer,
    }
    shown = len(containers)
    while _size(card) > MAX_BYTES - 200 and shown:
        shown -= 1
        left = len(containers) - shown
        note = {
            "type": "TextBlock",
            "text": f"…and {left} more home{'s' * (left != 1)}: the email digest has every home.",
            "wrap": True,
            "isSubtle": True,
        }
        card["body"] = [*body, *containers[:shown], note, *footer]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }


def _fit(card: dict[str, Any]) -> None:
    """Shorten the longest text block until the card fits, never rejecting it."""
    while (size := _size(card)) > MAX_BYTES:
        block = max(card["body"], key=lambda b: len(b["text"]))
        text = block["text"]
        per_char = _size(text) / max(1, len(text))  # JSON may spend several bytes a character
        keep = int(len(text) - (size - MAX_BYTES) / per_char) - 100
        block["text"] = escape.truncate(text, max(100, keep))


def _size(value: Any) -> int:
    """Bytes as httpx sends it (compact separators, UTF-8)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


class TeamsChannel:
    def __init__(self, webhooks: dict[str, str], http: httpx.Client) -> None:
        self.webhooks = webhooks  # env var name -> URL; the URL is a secret and never logged
        self.http = http

    def send(self, message: Message) -> str:
        url = self.webhooks.get(message.target.address)
        if not url:
            raise DeliveryError(f"no webhook URL in ${message.target.address}", False)
        try:
            response = self.http.post(url, json=message.payload)
        except httpx.TimeoutException:
            raise DeliveryError("Teams did not answer in time", True) from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"could not reach Teams ({type(exc).__name__})", True) from None
        if response.status_code in (200, 201, 202):
            return ""
        retry_after = response.headers.get("Retry-After")
        raise DeliveryError(
            f"HTTP {response.status_code} from Teams",
            http_status(response.status_code),
            float(retry_after) if (retry_after or "").isdigit() else None,
        )
