"""The Autumna leads API client: one request per account per cycle, for a UTC window. What comes
back is read by parse.py; whatever goes wrong is one `PollError`, safe to log.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from .parse import Batch, PollError, parse_body


class AutumnaClient:
    """Fetches one account's leads for a time window. The httpx client is built once and shared."""

    def __init__(self, base_url: str, http: httpx.Client) -> None:
        self.base_url = base_url
        self.http = http

    def fetch(self, account: str, api_key: str, since: datetime, until: datetime) -> Batch:
        params = {
            "api_key": api_key,
            "dateTimeFrom": _utc_param(since),
            "dateTimeTo": _utc_param(until),
        }
        try:
            response = self.http.get(
                self.base_url, params=params, headers={"Accept": "application/json"}
            )
        except httpx.TimeoutException:
            raise PollError("Autumna did not answer in time") from None
        except httpx.TransportError as exc:
            raise PollError(f"could not reach Autumna ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:  # e.g. a body labelled gzip that is not (DecodingError)
            raise PollError(f"Autumna's answer could not be read ({type(exc).__name__})") from None
        if response.status_code != 200:
            hint = " (Autumna answers a wrong API key the same way as an outage)" * (
                response.status_code == 500
            )
            raise PollError(f"Autumna answered HTTP {response.status_code}{hint}")
        try:
            return parse_body(response.text, account)
        except PollError as exc:  # Autumna's own error text might quote the key back
            raise PollError(_without(str(exc), params["api_key"])) from None
        except Exception as exc:  # a body no parser rule foresaw: a failed poll, not a crash
            raise PollError(
                f"Autumna's answer could not be read ({type(exc).__name__}: "
                f"{_without(str(exc), params['api_key'])[:200]})"
            ) from None


def _without(text: str, secret: str) -> str:
    return text.replace(secret, "[secret]") if secret else text


def _utc_param(moment: datetime) -> str:
    # Autumna reads these as UTC and wants no zone suffix, also during British Summer Time.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
