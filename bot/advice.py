"""What to do when a channel refuses a message: the far side's answer (the `DeliveryError` a
channel raised, and the exception beneath it: Slack's JSON, the SMTP reply, the TLS error, the
Teams body) turned into one sentence an admin can act on. Used by `leadbot send-test`.
"""

from __future__ import annotations

import json
import smtplib
import ssl
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
from slack_sdk.errors import SlackApiError

from . import escape
from .channels.email import EmailChannel
from .channels.slack import SlackChannel
from .config import Config
from .failures import DeliveryError
from .models import Channel, Target
from .settings import redact

SLACK_TOKEN = (
    "Slack does not accept SLACK_BOT_TOKEN: set it to the app's Bot User OAuth Token (xoxb-…, "
    "api.slack.com/apps → the app → OAuth & Permissions)"
)
SLACK_REINSTALL = (
    "the app's token no longer works: reinstall the app to the workspace and set "
    "SLACK_BOT_TOKEN to its new xoxb- token"
)
# api.slack.com/methods/chat.postMessage#errors
SLACK: dict[str, str] = {
    "not_in_channel": "invite the app to {to}: open the channel in Slack and type /invite @{app}",
    "channel_not_found": (
        "Slack has no channel {to} that the app can see: check {where} in {file} (the channel's "
        "name, or the id from its details); a private channel must invite the app first "
        "(/invite @{app})"
    ),
    "is_archived": "{to} is archived: unarchive it in Slack, or set {where} to another channel",
    "invalid_auth": SLACK_TOKEN,
    "not_authed": SLACK_TOKEN,
    "token_revoked": SLACK_REINSTALL,
    "token_expired": SLACK_REINSTALL,
    "account_inactive": SLACK_REINSTALL,
    "not_allowed_token_type": (
        "SLACK_BOT_TOKEN must be the bot token (xoxb-…), not a user token or the app-level "
        "(xapp-) token"
    ),
    "missing_scope": (
        "add the {needed} scope to the app (api.slack.com/apps → the app → OAuth & Permissions "
        "→ Bot Token Scopes), reinstall it to the workspace, and try again"
    ),
    "user_not_found": (
        "Slack has no member {to}: check {where} in {file} (a member id: the person's profile "
        "→ ⋮ → Copy member ID)"
    ),
    "user_disabled": "{to} is deactivated in Slack: set {where} to someone else",
    "cannot_dm_bot": "{to} is a bot and cannot be sent messages: set {where} to a person",
    "restricted_action": "the workspace does not let the app post in {to}: ask a Slack admin",
    "restricted_action_read_only_channel": (
        "only admins may post in {to}: set {where} to another channel, or ask a Slack admin"
    ),
}
TEAMS: dict[int, str] = {
    400: (
        "Teams did not take the message: {var} must hold the whole URL of a Workflows webhook "
        '(a workflow started by "When a Teams webhook request is received"); copy it again '
        "from the workflow's trigger in Teams (Workflows)"
    ),
    401: "the URL in {var} was refused: copy the whole URL again, sig= included",
    403: "the URL in {var} was refused: copy the whole URL again, sig= included",
    404: (
        "no workflow answers at the URL in {var}: it was deleted or turned off, or the URL was "
        "cut short; copy it again from the workflow's trigger in Teams (Workflows)"
    ),
}
LATER = (
    "a passing problem ({said}); a run retries it by itself: try the test again in a few minutes"
)


class Heard:
    """The last error answer the HTTP client received (an httpx event hook): Teams says why
    in its body."""

    def __init__(self) -> None:
        self.status, self.body = 0, ""

    def response(self, response: httpx.Response) -> None:
        if response.status_code >= 400:
            response.read()
            self.status, self.body = response.status_code, response.text

    def clear(self) -> None:
        self.status, self.body = 0, ""


def explain(
    error: DeliveryError,
    target: Target,
    where: str,
    heard: Heard,
    config: Config,
    senders: Mapping[Channel, Any],
) -> tuple[str, str]:
    """(what the far side said, what to do). `where` is the key path in rules.toml."""
    facts = {"to": target.address, "where": where, "file": config.path.name}
    if target.channel is Channel.SLACK:
        said, todo = _slack(error, facts, senders[Channel.SLACK])
    elif target.channel is Channel.EMAIL:
        said, todo = _email(error, facts, senders[Channel.EMAIL], config)
    else:
        said, todo = _teams(error, target.address, heard)
    return redact(said), redact(todo)


def _slack(error: DeliveryError, facts: dict[str, str], slack: SlackChannel) -> tuple[str, str]:
    api = _first(error, SlackApiError)
    data = api.response.data if api is not None and isinstance(api.response.data, dict) else {}
    code = str(data.get("error", "")) if api is not None else ""
    if error.retry_after is not None:
        return (
            error.reason,
            f"Slack is limiting the app's rate: try again in {error.retry_after:.0f} s",
        )
    if not code:  # no answer at all, or an HTTP error without Slack's JSON
        if api is not None:
            return error.reason, LATER.format(said=error.reason)
        return error.reason, _unreachable(error, "Slack", "SLACK_API_URL")
    said = f"Slack answered {code}"
    if data.get("needed"):
        said += f" (needed: {data['needed']}; the token has: {data.get('provided') or 'none'})"
    if code not in SLACK:
        if error.transient:
            return said, LATER.format(said=said)
        return said, f"see Slack's list of chat.postMessage errors for {code}"
    app = _app_name(slack) if code in ("not_in_channel", "channel_not_found") else ""
    todo = SLACK[code].format(
        **facts, app=app or "<the app's name>", needed=data.get("needed") or "chat:write"
    )
    return said, todo


def _app_name(slack: SlackChannel) -> str:
    """The bot's own name, for `/invite @name` (one call, only when it is needed)."""
    try:
        return str(slack.client.auth_test().get("user") or "")
    except Exception:
        return ""


def _email(
    error: DeliveryError, facts: dict[str, str], mail: EmailChannel, config: Config
) -> tuple[str, str]:
    host, port = mail.host, mail.port
    refused = _first(error, smtplib.SMTPRecipientsRefused)
    reply = _first(error, smtplib.SMTPResponseException)
    certificate = _first(error, ssl.SSLCertVerificationError)
    tls = _first(error, ssl.SSLError)
    if refused is not None:
        code, text = next(iter(refused.recipients.values()))
        said = f"the mail server answered {code} {_text(text)} for {facts['to']}"
    elif reply is not None:
        said = f"the mail server answered {reply.smtp_code} {_text(reply.smtp_error)}"
    else:
        said = error.reason
    if isinstance(reply, smtplib.SMTPAuthenticationError):
        return said, (
            "check SMTP_USERNAME and SMTP_PASSWORD: the mail server did not accept them "
            "(Microsoft 365: the mailbox must allow authenticated SMTP; Google: an app password)"
        )
    if certificate is not None:
        said = f"{error.reason} ({certificate.verify_message})"
        return said, (
            f"check the mail server's certificate: {host} (email.host or SMTP_HOST) must be a "
            f"name on it, and if a private certificate authority issued it, set email.ca_file "
            f"in {facts['file']} to that authority's certificate (PEM)"
            + (f"; email.ca_file is now {config.email.ca_file}" if config.email.ca_file else "")
        )
    if tls is not None:
        return f"TLS with {host}:{port} failed ({tls.reason or tls})", (
            'port 465 wants email.tls = "implicit", ports 587 and 25 "starttls": check '
            f"email.port (now {port}) and email.tls (now {mail.tls})"
        )
    if "STARTTLS" in error.reason:
        return f"{host}:{port} offers no STARTTLS", (
            f"check email.host and email.port (now {port}), or set email.tls = "
            '"implicit" if the server wants TLS from the start (port 465): leadbot never '
            "sends mail in plaintext"
        )
    if "without TLS" in error.reason:
        return error.reason, 'set email.tls to "starttls" or "implicit"'
    if refused is not None and not error.transient:
        return said, f"the mail server takes no mail for {facts['to']}: check {facts['where']}"
    if error.transient and (reply is not None or refused is not None or "closed" in said):
        return said, LATER.format(said=said)
    if reply is not None:
        return said, (
            f"the mail server refused the message: check that email.sender ({mail.sender}) is an "
            "address the login may send as, and the server's log for its reason"
        )
    return said, (
        f"could not reach {host}:{port}: check email.host or SMTP_HOST and email.port or "
        "SMTP_PORT, and that this machine may connect there"
    )


def _teams(error: DeliveryError, var: str, heard: Heard) -> tuple[str, str]:
    if not heard.status:
        return error.reason, _unreachable(error, "Teams", var)
    said = f"Teams answered HTTP {heard.status}" + _teams_body(heard.body)
    if heard.status in TEAMS:
        return said, TEAMS[heard.status].format(var=var)
    if error.transient:
        return said, LATER.format(said=said)
    return said, f"check the webhook URL in {var}"


def _teams_body(body: str) -> str:
    """Workflows answer {"error": {"code": ..., "message": ...}}."""
    try:
        found = json.loads(body).get("error") or {}
        text = f"{found.get('code', '')}: {found.get('message', '')}".strip(": ")
    except (ValueError, AttributeError):
        text = body
    return f" ({_text(text)})" if text.strip() else ""


def _unreachable(error: DeliveryError, far: str, setting: str) -> str:
    certificate = _first(error, ssl.SSLCertVerificationError)
    if certificate is not None:
        return (
            f"the certificate {far} presented is not trusted here "
            f"({certificate.verify_message}): check {setting} and this machine's CA "
            "certificates (the ca-certificates package, SSL_CERT_FILE)"
        )
    if error.transient:
        return f"check this machine's network (DNS, firewall, proxy) and {setting}; then try again"
    return error.reason


def _first(error: BaseException, kind: type[Any]) -> Any:
    return next((e for e in _causes(error) if isinstance(e, kind)), None)


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The exceptions beneath a DeliveryError: channels raise it `from None`, which hides the
    cause from tracebacks but keeps it as __context__; urllib keeps its own as `reason`."""
    seen: set[int] = set()
    todo: list[BaseException] = [error]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for linked in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(linked, BaseException):
                todo.append(linked)


def _text(value: Any) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return escape.truncate(escape.one_line(text).strip(), 200, "…")
