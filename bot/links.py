"""Claim links: "I'll call them" in email and Teams (and Slack), for people who are not on Slack.

A token names one lead, expires, carries no personal data (only the lead key and the expiry),
and is signed with HMAC-SHA256 under LEADBOT_WEB_SECRET, so it cannot be forged or altered.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac


class BadLink(Exception):
    """A token that was forged, altered, expired or mangled: the page says so, nothing changes."""


def sign(secret: str, lead: str, expires: float) -> str:
    body = _encode(f"{lead}|{int(expires)}".encode())
    return f"{body}.{_mac(secret, body)}"


def verify(secret: str, token: str, now: float) -> str:
    """The lead a token names, if it is genuine and has not expired."""
    body, _, mac = token.partition(".")
    if not secret or not body or not hmac.compare_digest(mac, _mac(secret, body)):
        raise BadLink("this link is not one leadbot made (or it was changed)")
    try:
        lead, _, expires = (
            base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode().rpartition("|")
        )
        deadline = int(expires)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadLink("this link is damaged") from None
    if now > deadline:
        raise BadLink("this link has expired: claim the lead in Slack or ask for a new message")
    return lead


def claim_url(public_url: str, secret: str, lead: str, expires: float) -> str:
    return f"{public_url}/claim/{sign(secret, lead, expires)}"


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _mac(secret: str, body: str) -> str:
    digest = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return _encode(digest)[:32]
