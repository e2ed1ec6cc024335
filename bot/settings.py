"""Secrets and endpoints from the environment, and the one place that keeps secrets out of logs.

rules.toml names secrets by environment variable; their values are read here, at start, and
every value read is registered with the log filter so no log line can carry it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .config import Config, home_targets
from .models import Channel

DEFAULT_URL = "https://www.autumna.co.uk/api/leads/"

# Shapes of secrets we may not have been told about: an api_key in a URL, Slack tokens, the
# signature of a Teams Workflows URL.
_PATTERNS = re.compile(
    r"(?i)((?:api_key|sig|token|password|code|ticket)=)[^&\s\"']+|"
    r"xox[abpre]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+"
)


@dataclass(frozen=True)
class Settings:
    demo: bool
    autumna_url: str
    api_keys: dict[str, str] = field(repr=False)  # account name -> key
    slack_token: str = field(default="", repr=False)
    slack_url: str = ""
    slack_app_token: str = field(default="", repr=False)  # xapp-: Socket Mode, for the button
    smtp_host: str = ""
    smtp_port: int = 0
    smtp_sender: str = ""
    smtp_username: str = field(default="", repr=False)
    smtp_password: str = field(default="", repr=False)
    teams_webhooks: dict[str, str] = field(default_factory=dict, repr=False)  # var -> URL
    web_listen: str = ""  # LEADBOT_WEB_LISTEN, winning over [web] listen
    web_password: str = field(default="", repr=False)  # LEADBOT_WEB_PASSWORD: the console login
    web_secret: str = field(default="", repr=False)  # LEADBOT_WEB_SECRET: signs claim links
    unreadable: tuple[str, ...] = ()  # variables set to something that cannot be used

    @classmethod
    def from_env(cls, env: Mapping[str, str], config: Config) -> Settings:
        """Secrets and endpoints for a real run; `problems()` says what is missing."""
        keys = {
            a.name: env[a.key_var].strip()
            for a in config.accounts
            if env.get(a.key_var, "").strip()
        }
        port = env.get("SMTP_PORT", "").strip()
        unreadable = []
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            unreadable.append(
                f"environment: SMTP_PORT is {port[:20]!r}, not a port number: set it to the "
                "mail server's port (587 for STARTTLS, 465 for implicit TLS) or unset it"
            )
        settings = cls(
            demo=False,
            autumna_url=env.get("AUTUMNA_API_URL", "").strip() or DEFAULT_URL,
            api_keys=keys,
            slack_token=env.get("SLACK_BOT_TOKEN", "").strip(),
            slack_url=env.get("SLACK_API_URL", "").strip(),
            slack_app_token=env.get("SLACK_APP_TOKEN", "").strip(),
            smtp_host=env.get("SMTP_HOST", "").strip() or config.email.host,
            smtp_port=int(port) if port.isdigit() and not unreadable else config.email.port,
            smtp_sender=env.get("SMTP_SENDER", "").strip() or config.email.sender,
            smtp_username=env.get("SMTP_USERNAME", "").strip(),
            smtp_password=env.get("SMTP_PASSWORD", ""),
            teams_webhooks={v: env[v].strip() for v in config.secret_vars if env.get(v, "")},
            web_listen=env.get("LEADBOT_WEB_LISTEN", config.web.listen).strip(),
            web_password=env.get("LEADBOT_WEB_PASSWORD", ""),
            web_secret=env.get("LEADBOT_WEB_SECRET", ""),
            unreadable=tuple(unreadable),
        )
        register_secrets(settings.secrets())
        return settings

    @classmethod
    def for_demo(cls, config: Config, autumna_url: str) -> Settings:
        """The demo: a local Autumna stand-in and local sinks; no secret is read at all."""
        return cls(
            demo=True, autumna_url=autumna_url, api_keys={a.name: "demo" for a in config.accounts}
        )

    def secrets(self) -> list[str]:
        values = [
            *self.api_keys.values(),
            self.slack_token,
            self.slack_app_token,
            self.smtp_password,
            self.web_password,
            self.web_secret,
            *self.teams_webhooks.values(),
        ]
        return [v for v in values if len(v) >= 4]

    def problems(self, config: Config) -> list[str]:
        """What a real (non-demo) run is missing from the environment, each with what to do."""
        found = list(self.unreadable)
        for account in config.accounts:
            if account.name not in self.api_keys:
                found.append(
                    f"environment: {account.key_var} is not set (the Autumna API key "
                    f"of account {account.name!r}): set it, or try leadbot without keys "
                    f"with `leadbot run --demo`"
                )
        used = config.targets_used()
        if Channel.SLACK in used and not self.slack_token:
            found.append(
                "environment: SLACK_BOT_TOKEN is not set (rules.toml has Slack "
                "destinations): set it to the bot's xoxb- token"
            )
        if self.slack_app_token and not self.slack_app_token.startswith("xapp-"):
            found.append(
                "environment: SLACK_APP_TOKEN must be the Slack app's app-level token "
                "(xapp-…, with the connections:write scope), for the claim button"
            )
        if self.slack_app_token and not self.slack_token:
            found.append(
                "environment: SLACK_APP_TOKEN is set but SLACK_BOT_TOKEN is not: the claim "
                "button needs the bot token too"
            )
        host = self.web_listen.rpartition(":")[0].strip("[]")
        if self.web_listen and host not in LOOPBACK and not self.web_password:
            found.append(
                f"environment: the web console would listen on {self.web_listen}, beyond this "
                "machine, with no login: set LEADBOT_WEB_PASSWORD, or listen on 127.0.0.1"
            )
        if config.web.public_url and len(self.web_secret) < 16:
            found.append(
                "environment: [web] public_url adds claim links, which are signed: set "
                "LEADBOT_WEB_SECRET to a long random value (e.g. `openssl rand -hex 32`)"
            )
        if Channel.EMAIL in used:
            if not self.smtp_host:
                found.append(
                    "environment: no mail server: set email.host in rules.toml or SMTP_HOST"
                )
            if not self.smtp_sender:
                found.append(
                    "environment: no sender address: set email.sender in rules.toml or SMTP_SENDER"
                )
            if bool(self.smtp_username) != bool(self.smtp_password):
                found.append("environment: set both SMTP_USERNAME and SMTP_PASSWORD, or neither")
        teams_vars = {
            t.address
            for d in config.destinations.values()
            for t in d.targets
            if t.channel is Channel.TEAMS
        }
        for home in config.homes.values():
            teams_vars |= {
                t.address
                for t in home_targets(home, None, config.privacy)
                if t.channel is Channel.TEAMS
            }
        for var in sorted(teams_vars - set(self.teams_webhooks)):
            found.append(
                f"environment: {var} is not set (a Teams webhook URL named in {config.path.name})"
            )
        for var, url in sorted(self.teams_webhooks.items()):
            if var in teams_vars and not _secure_url(url):
                found.append(f"environment: {var} must be an https:// Workflows webhook URL")
        return found


def _secure_url(url: str) -> bool:
    """https, or plain http to this machine only (a local relay or a test stand-in)."""
    host = urlsplit(url).hostname or ""
    return url.startswith("https://") or (url.startswith("http://") and host in LOOPBACK)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


# --- keeping secrets out of logs ------------------------------------------------------------

_SECRETS: set[str] = set()


def register_secrets(values: list[str]) -> None:
    _SECRETS.update(v for v in values if v)


def redact(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "[secret]")
    return _PATTERNS.sub(lambda m: (m[1] or "") + "[secret]", text)


class RedactingFilter(logging.Filter):
    """Applied to every handler: formats the record, then removes anything secret from it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info:
            # Tracebacks can quote URLs; keep the type and a redacted message only.
            exc = record.exc_info[1]
            record.msg = f"{record.msg} ({type(exc).__name__}: {redact(str(exc))[:300]})"
            record.exc_info, record.exc_text = None, None
        return True
