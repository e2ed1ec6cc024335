"""Slack: Block Kit through slack-sdk's WebClient and a bot token, over kept-alive connections.

Limits (api.slack.com/reference/block-kit/blocks): header text 150 characters, section text 3000,
button text 75. Long text is cut with a marker, never rejected.
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Any
from urllib.parse import urlencode

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from .. import escape
from ..claims import BUTTON_ACTION
from ..failures import DeliveryError, slack_error
from ..models import Message

log = logging.getLogger(__name__)
EVENT_TYPE = "autumna_lead"  # message metadata that lets a restart find what it already posted
HEADER_LIMIT, SECTION_LIMIT = 150, 3000
MAX_BLOCKS, DIGEST_TEXT = 50, 11_000  # a message's blocks, and the text a digest spends


def compose(parts: dict[str, str], view: dict[str, Any], config: Any) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": escape.truncate(parts["header"] or "New lead", HEADER_LIMIT),
                "emoji": True,
            },
        }
    ]
    for name in ("escalation", "body", "details"):
        if parts.get(name):
            blocks.append(_section(parts[name]))
    buttons = []
    claim, claiming = view.get("claim") or {}, view.get("claiming") or {}
    if claiming.get("button") and not claim.get("claimed") and parts.get("button"):
        buttons.append(
            {
                "type": "button",
                "action_id": BUTTON_ACTION,
                "text": {"type": "plain_text", "text": escape.truncate(parts["button"], 75)},
                "value": view["key"],
                "style": "primary",
            }
        )
    if view.get("link"):
        link = {"type": "button", "text": {"type": "plain_text", "text": "Open the lead"}}
        link |= {"url": view["link"]} | ({} if buttons else {"style": "primary"})
        buttons.append(link)
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    for name in ("claim", "footer"):
        if parts.get(name):
            blocks.append({"type": "context", "elements": [_mrkdwn(parts[name])]})
    return {
        "text": escape.truncate(parts["text"] or parts["header"], SECTION_LIMIT),
        "blocks": blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }


def compose_digest(
    parts: dict[str, str], homes: list[dict[str, str]], view: dict[str, Any], config: Any
) -> dict[str, Any]:
    """A digest: a header, the summary, a section per home while Slack's limits allow (50
    blocks, about 12,000 characters of text), and the footer."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": escape.truncate(parts["header"] or "Leads digest", HEADER_LIMIT),
                "emoji": True,
            },
        }
    ]
    if parts.get("summary"):
        blocks.append(_section(parts["summary"]))
    budget = DIGEST_TEXT - len(parts["summary"]) - len(parts["footer"])
    sections = [escape.truncate(home["home"], SECTION_LIMIT) for home in homes if home["home"]]
    for i, text in enumerate(sections):
        if len(blocks) >= MAX_BLOCKS - 3 or len(text) > budget:
            left = len(sections) - i
            note = f"…and {left} more home{'s' * (left != 1)}: the email digest has every home."
            blocks.append({"type": "context", "elements": [_mrkdwn(note)]})
            break
        blocks.append(_section(text))
        budget -= len(text)
    if parts.get("footer"):
        blocks.append({"type": "context", "elements": [_mrkdwn(parts["footer"])]})
    return {
        "text": escape.truncate(parts["text"] or parts["header"], SECTION_LIMIT),
        "blocks": blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def _mrkdwn(text: str) -> dict[str, Any]:
    # verbatim: Slack must not auto-link URLs or channel names that the enquirer typed.
    return {"type": "mrkdwn", "text": escape.truncate(text, SECTION_LIMIT), "verbatim": True}


class KeptAliveClient(WebClient):
    """slack-sdk's WebClient, its requests sent through an httpx connection pool.

    slack-sdk's own transport (urllib) opens a new connection, and against Slack a new TLS
    handshake, for every call. Everything else stays slack-sdk's: the methods, SlackResponse,
    SlackApiError and its checks. Only the HTTP exchange is replaced; it returns what slack-sdk's
    urllib exchange returns (status, headers, body as text), 4xx and 5xx included."""

    def __init__(self, http: httpx.Client, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.http = http

    def _perform_urllib_http_request(
        self, *, url: str, args: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        if args["data"]:  # a file upload (leadbot sends none): slack-sdk's own multipart
            return super()._perform_urllib_http_request(url=url, args=args)
        headers = dict(args["headers"])
        content: bytes | None = None
        if args["json"]:
            content = json.dumps(args["json"]).encode()
            headers["Content-Type"] = "application/json;charset=utf-8"
        elif args["params"]:
            content = urlencode(args["params"]).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        response = self.http.post(url, content=content, headers=headers, timeout=self.timeout)
        answered = dict(response.headers)  # httpx names them in lower case
        if "retry-after" in answered:  # and slack-sdk's urllib path in both
            answered["Retry-After"] = answered["retry-after"]
        gzip = response.headers.get("content-type", "").startswith("application/gzip")
        body = response.content if gzip else response.text
        return {"status": response.status_code, "headers": answered, "body": body}


class SlackChannel:
    def __init__(
        self,
        token: str,
        base_url: str | None = None,
        timeout: int = 15,
        http: httpx.Client | None = None,
    ) -> None:
        """`http`: the run's shared client, whose pool keeps connections to Slack open; without
        one the channel keeps a pool of its own."""
        self.client = KeptAliveClient(
            http or httpx.Client(),
            token=token,
            base_url=base_url or WebClient.BASE_URL,
            timeout=timeout,
            retry_handlers=[],
        )

    def send(self, message: Message) -> str:
        """Post (or, for an edit, update; for a note to one person, post ephemerally); returns
        where the message is: "<channel id>/<ts>"."""
        payload = dict(message.payload)
        channel = message.target.address
        try:
            if "ts" in payload:  # an edit: the lead was claimed
                response = self.client.chat_update(channel=channel, **payload)
                return f"edited {response.get('channel', channel)}/{response.get('ts', '')}"
            if "user" in payload:  # only this person sees it
                response = self.client.chat_postEphemeral(channel=channel, **payload)
                return f"ephemeral {response.get('message_ts', '')}"
            response = self.client.chat_postMessage(
                channel=channel,
                metadata={"event_type": EVENT_TYPE, "event_payload": {"ref": message.ref}},
                **payload,
            )
        except SlackApiError as exc:
            raise _failure(exc) from None
        except Exception as exc:  # httpx (and, for uploads, urllib) raise many kinds
            raise DeliveryError(
                f"could not reach Slack ({type(exc).__name__})", True, unknown=not _never_sent(exc)
            ) from None
        return f"{response.get('channel', '')}/{response.get('ts', '')}"

    def already_sent(self, message: Message, limit: int = 200) -> str:
        """After a crash mid-send: is this message in the channel's recent history already?
        Returns where it is ("<channel id>/<ts>"), or "" if it is not there."""
        try:
            channel = self._channel_id(message.target.address)
            if channel is None:
                return ""
            history = self.client.conversations_history(
                channel=channel, limit=limit, include_all_metadata=True
            )
        except SlackApiError as exc:
            failure = _failure(exc)
            if failure.transient:
                raise failure from None
            # Without the history scopes we cannot look; sending again risks one duplicate,
            # which is better than losing the lead.
            log.warning(
                "cannot read %s's history to check for a message sent before a crash "
                "(%s; the bot needs channels:history, groups:history, im:history, "
                "channels:read, groups:read, im:write); sending it again",
                message.target.address,
                failure.reason,
            )
            return ""
        except Exception as exc:
            raise DeliveryError(f"could not reach Slack ({type(exc).__name__})", True) from None
        messages: list[dict[str, Any]] = history.get("messages", [])
        for item in messages:
            meta = item.get("metadata") or {}
            if (
                meta.get("event_type") == EVENT_TYPE
                and (meta.get("event_payload") or {}).get("ref") == message.ref
            ):
                return f"{channel}/{item.get('ts', '')}"
        return ""

    def _channel_id(self, address: str) -> str | None:
        if address[:1] in ("U", "W"):
            return str(self.client.conversations_open(users=address)["channel"]["id"])
        if not address.startswith("#"):
            return address
        cursor = None
        while True:
            page = self.client.conversations_list(
                types="public_channel,private_channel", limit=200, cursor=cursor
            )
            channels: list[dict[str, Any]] = page.get("channels", [])
            for channel in channels:
                if channel.get("name") == address[1:]:
                    return str(channel["id"])
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None


def _never_sent(exc: BaseException) -> bool:
    """True only when the request cannot have reached Slack (refused, no such host, no free
    connection); after a timeout or a dropped connection the message may have been posted."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return True
    reason = getattr(exc, "reason", exc)
    return isinstance(reason, ConnectionRefusedError | socket.gaierror)


def _failure(exc: SlackApiError) -> DeliveryError:
    status = exc.response.status_code
    if status == 429:
        retry_after = exc.response.headers.get("Retry-After") or exc.response.headers.get(
            "retry-after"
        )
        return DeliveryError("Slack rate limit (HTTP 429)", True, _seconds(retry_after))
    if status >= 500 or not isinstance(exc.response.data, dict):
        return DeliveryError(
            f"HTTP {status} from Slack", status >= 500 or status == 408, unknown=True
        )
    code = str(exc.response.get("error", "unknown_error"))
    return DeliveryError(f"Slack error {code}", slack_error(code))


def _seconds(value: Any) -> float | None:
    try:
        return max(1.0, float(value))
    except (TypeError, ValueError):
        return None
