"""What a failed delivery means: the one table that says whether to try again.

Transient failures are retried with backoff (dispatch.py); permanent ones stop at once and are
dead-lettered, because trying again cannot help until the admin fixes something.
"""

from __future__ import annotations

# Slack answers errors as HTTP 200 {"ok": false, "error": code}: api.slack.com/methods/
# chat.postMessage#errors. Codes not listed are treated as transient: they give up after the
# retry window, so an unfamiliar outage is not mistaken for a broken config.
SLACK_ERRORS: dict[str, bool] = {
    # transient: Slack's side, or ours only for a while
    "ratelimited": True,
    "rate_limited": True,
    "internal_error": True,
    "fatal_error": True,
    "service_unavailable": True,
    "request_timeout": True,
    "team_added_to_org": True,
    # permanent: the token, the channel or the message needs fixing
    "invalid_auth": False,
    "not_authed": False,
    "account_inactive": False,
    "token_revoked": False,
    "token_expired": False,
    "no_permission": False,
    "missing_scope": False,
    "not_allowed_token_type": False,
    "ekm_access_denied": False,
    "channel_not_found": False,
    "not_in_channel": False,
    "is_archived": False,
    "user_not_found": False,
    "user_disabled": False,
    "cannot_dm_bot": False,
    "restricted_action": False,
    "restricted_action_read_only_channel": False,
    "msg_too_long": False,
    "no_text": False,
    "invalid_blocks": False,
    "invalid_blocks_format": False,
    "invalid_metadata_format": False,
    "invalid_metadata_schema": False,
    "metadata_too_large": False,
    "too_many_attachments": False,
    "invalid_arguments": False,
}


class DeliveryError(Exception):
    """One failed attempt. `reason` is short and safe to store: it never holds a secret or URL."""

    def __init__(
        self, reason: str, transient: bool, retry_after: float | None = None, unknown: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.retry_after = retry_after
        self.unknown = unknown  # the message may have arrived all the same (e.g. a timeout)


def slack_error(code: str) -> bool:
    """True when a Slack error code is worth retrying."""
    return SLACK_ERRORS.get(code, True)


def http_status(status: int) -> bool:
    """Teams (and any webhook): 408, 429 and 5xx pass; other 4xx need the admin."""
    return status in (408, 425, 429) or status >= 500


def smtp_code(code: int) -> bool:
    """SMTP 4xx replies are temporary by definition (RFC 5321 §4.2.1); 5xx are permanent."""
    return 400 <= code < 500 or code < 200  # < 200: no reply at all (dropped connection)
