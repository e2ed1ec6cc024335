"""Checking rules.toml: every key, value and reference, every problem reported at once with
the file, the key path and what to do. Produces the typed `Config` of config.py.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .conditions import ConditionChecks, did_you_mean
from .config import (
    ENV_REF,
    PRIVACY_LEVELS,
    Account,
    Config,
    ConfigError,
    Destination,
    EmailSettings,
    Home,
    Polling,
    Privacy,
    Retries,
    Rule,
    address_of,
    channel_of_attribute,
    home_targets,
)
from .digest_checks import DigestChecks
from .models import Channel, Target
from .placeholders import is_placeholder, placeholder_warnings
from .schedule import Hours
from .timing import TimingChecks

SLACK_ID = re.compile(r"^[CGDUW][A-Z0-9]{2,}$")
SLACK_NAME = re.compile(r"^#[a-z0-9][a-z0-9_\-.]{0,79}$")
EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
LOOKS_SECRET = re.compile(
    r"xox[a-z]-|xapp-|hooks\.slack\.com|logic\.azure\.com|"
    r"webhook\.office\.com|[?&](sig|api_key|token|key)=|^[A-Za-z0-9_\-]{32,}$",
    re.IGNORECASE,
)
TLS_MODES = ("starttls", "implicit", "none")

TOP_KEYS = (
    "group",
    "autumna",
    "polling",
    "retries",
    "privacy",
    "email",
    "routing",
    "homes",
    "destinations",
    "rules",
    "hours",
    "claims",
    "web",
    "digests",
)


class Loader(ConditionChecks, TimingChecks, DigestChecks):
    def __init__(self, path: Path, raw: dict[str, Any]) -> None:
        super().__init__(path)
        self.raw = raw
        self.secret_vars: set[str] = set()

    def load(self) -> Config:
        raw = self.raw
        self.keys(raw, "", TOP_KEYS)
        for where, message in placeholder_warnings(raw):  # CHANGE-ME: see placeholders.py
            self.warn(where, message)
        group = self.table(raw, "group", ("name", "timezone", "templates", "lead_url", "nation"))
        autumna = self.table(raw, "autumna", ("accounts",))
        polling = self.table(
            raw, "polling", ("interval", "overlap", "lookback", "history", "alert_after")
        )
        retries = self.table(raw, "retries", ("first", "cap", "give_up"))
        privacy = self.privacy(
            self.table(raw, "privacy", ("slack", "teams", "email", "web", "retention"))
        )
        email = self.table(raw, "email", ("host", "port", "sender", "tls", "ca_file"))
        routing = self.table(raw, "routing", ("fallback", "ops"))
        hours = self.hours(raw.get("hours", {}))
        homes = self.homes(raw.get("homes", {}))
        self.home_hours(homes, hours)
        destinations = self.destinations(raw.get("destinations", {}), privacy, hours)
        rules = self.rules(raw.get("rules", []), homes, destinations)
        claims = self.claims(self.table(raw, "claims", ("reaction", "check_every", "lookback")))
        web = self.web(self.table(raw, "web", ("listen", "public_url", "link_days")))
        digests = self.digests(raw.get("digests", []), homes, list(destinations))
        fallback = self.reference(routing, "routing.fallback", destinations, required=True)
        ops = self.reference(routing, "routing.ops", destinations, required=False)
        config = Config(
            path=self.path,
            group=self.text(group, "group.name") or "Care group",
            timezone=self.zone(group.get("timezone", "Europe/London")),
            templates=self.folder(group.get("templates")),
            lead_url=self.lead_url(self.text(group, "group.lead_url")),
            accounts=self.accounts(autumna.get("accounts")),
            polling=Polling(**{k: self.duration("polling", polling, k) for k in polling}),
            retries=Retries(**{k: self.duration("retries", retries, k) for k in retries}),
            privacy=privacy,
            email=self.email(email),
            homes=homes,
            destinations=destinations,
            rules=rules,
            fallback=fallback,
            ops=ops or fallback,
            hours=hours,
            nation=self.nation("group.nation", group.get("nation", "england")),
            claims=claims,
            web=web,
            digests=digests,
            warnings=tuple(self.warnings),
            secret_vars=frozenset(self.secret_vars),
            home_destinations={
                (home.service_id, f"home.{name}"): tuple(home_targets(home, name, privacy))
                for home in homes.values()
                for name in home.attributes
                if channel_of_attribute(name) is not None
            },
        )
        if self.problems:
            raise ConfigError(self.problems)
        return config

    # -- shapes

    def keys(self, table: dict[str, Any], where: str, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for key in table:
            if key not in allowed:
                path = f"{where}.{key}" if where else key
                self.error(path, "unknown key" + did_you_mean(key, allowed))

    def table(self, raw: dict[str, Any], name: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            self.error(name, "expected a table like [" + name + "]")
            return {}
        self.keys(value, name, allowed)
        return {k: v for k, v in value.items() if k in allowed}

    def text(self, table: dict[str, Any], where: str) -> str:
        value = table.get(where.rsplit(".", 1)[-1], "")
        if not isinstance(value, str):
            self.error(where, "expected text in quotes")
            return ""
        return value.strip()

    def lead_url(self, pattern: str) -> str:
        if not pattern:
            return ""
        fields = {"category_id": 1, "lead_id": 1, "service_id": 1}
        try:
            url = pattern.format(**fields)
        except (KeyError, IndexError, ValueError) as exc:
            self.error(
                "group.lead_url",
                f"cannot fill in {pattern!r} ({type(exc).__name__}: "
                f"{exc}): use only {{category_id}}, {{lead_id}} and "
                f"{{service_id}}",
            )
            return ""
        if not url.startswith(("https://", "http://")):
            self.error("group.lead_url", "expected a link starting https://")
        return pattern

    def zone(self, name: Any) -> ZoneInfo:
        try:
            return ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError):
            self.error("group.timezone", f'unknown time zone {name!r} (e.g. "Europe/London")')
            return ZoneInfo("Europe/London")

    def folder(self, value: Any) -> Path | None:
        if value is None:
            return None
        folder = (self.path.parent / str(value)).resolve()
        if not folder.is_dir():
            self.error("group.templates", f"folder {folder} does not exist")
        return folder

    def secret_ref(self, value: Any, where: str, example: str) -> str:
        """A secret is named by environment variable: `"${NAME}"`. Returns NAME."""
        match = ENV_REF.match(value) if isinstance(value, str) else None
        if match:
            self.secret_vars.add(match[1])
            return match[1]
        if isinstance(value, str) and value:
            self.error(
                where,
                f"secrets never go in rules.toml: put the value in an environment "
                f'variable and write "${{{example}}}" here',
            )
        else:
            self.error(where, f'expected an environment variable reference like "${{{example}}}"')
        return ""

    # -- sections

    def accounts(self, raw: Any) -> tuple[Account, ...]:
        if raw is None:
            self.secret_vars.add("AUTUMNA_API_KEY")
            return (Account("default", "AUTUMNA_API_KEY"),)
        if not isinstance(raw, list) or not raw:
            self.error("autumna.accounts", "expected [[autumna.accounts]] tables")
            return ()
        accounts = []
        for i, item in enumerate(raw):
            where = f"autumna.accounts[{i}]"
            if not isinstance(item, dict):
                self.error(where, "expected a table with name and api_key")
                continue
            self.keys(item, where, ("name", "api_key"))
            name = str(item.get("name") or f"account-{i + 1}")
            var = self.secret_ref(item.get("api_key"), f"{where}.api_key", "AUTUMNA_API_KEY")
            accounts.append(Account(name, var))
        names = [a.name for a in accounts]
        for name in {n for n in names if names.count(n) > 1}:
            self.error("autumna.accounts", f"two accounts are named {name!r}: names must differ")
        return tuple(accounts)

    def email(self, raw: dict[str, Any]) -> EmailSettings:
        tls = str(raw.get("tls", ""))  # "": implicit TLS on port 465, STARTTLS elsewhere
        if tls and tls not in TLS_MODES:
            self.error("email.tls", f"expected one of {', '.join(TLS_MODES)}")
        port = raw.get("port", 0)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port < 65536:
            self.error("email.port", "expected a port number such as 587 or 465")
            port = 0
        sender = self.text(raw, "email.sender")
        if sender and not EMAIL.search(sender.rsplit("<", 1)[-1].rstrip(">")):
            self.error("email.sender", f"{sender!r} is not an email address")
        return EmailSettings(
            self.text(raw, "email.host"), port, sender, tls, self.text(raw, "email.ca_file")
        )

    def homes(self, raw: Any) -> dict[int, Home]:
        if not isinstance(raw, dict):
            self.error("homes", "expected tables like [homes.100000]")
            return {}
        homes: dict[int, Home] = {}
        for key, attrs in raw.items():
            where = f"homes.{key}"
            if not str(key).isdigit():
                self.error(where, "a home is keyed by its Autumna service id, e.g. [homes.100000]")
                continue
            if int(key) in homes:
                self.error(where, f"service {int(key)} is described twice")
                continue
            if not isinstance(attrs, dict):
                self.error(where, "expected a table of the home's attributes")
                continue
            clean: dict[str, Any] = {}
            for name, value in attrs.items():
                clean[name] = self.attribute(f"{where}.{name}", name, value)
            if not isinstance(attrs.get("name"), str) or not attrs["name"].strip():
                self.error(f"{where}.name", "every home needs a name")
            homes[int(key)] = Home(int(key), str(attrs.get("name", "")).strip(), clean)
        return homes

    def attribute(self, where: str, name: str, value: Any) -> Any:
        channel = channel_of_attribute(name)
        if channel is None:
            if isinstance(value, str | int | float | bool):
                return value if not isinstance(value, str) else value.strip()
            self.error(where, "expected a single value (text, number or true/false)")
            return ""
        return self.address(where, channel, value)

    def address(self, where: str, channel: Channel, value: Any) -> Any:
        if channel is Channel.EMAIL:
            values = value if isinstance(value, list) else [value]
            for v in values:
                if is_placeholder(v):
                    continue  # warned about in load()
                if not isinstance(v, str) or not EMAIL.match(v.strip()):
                    self.error(where, f"{v!r} is not an email address")
            return (
                [str(v).strip() for v in values] if isinstance(value, list) else str(value).strip()
            )
        if not isinstance(value, str):
            self.error(where, "expected text in quotes")
            return ""
        if channel is Channel.TEAMS:
            self.secret_ref(value, where, "TEAMS_WEBHOOK_URL")
        elif is_placeholder(value):
            pass  # warned about in load()
        elif LOOKS_SECRET.search(value):
            self.error(
                where,
                "this looks like a secret URL or token: Slack destinations take a "
                'channel ("#rose-lodge") or a user id ("U024BE7LH")',
            )
        elif not (SLACK_ID.match(value) or SLACK_NAME.match(value)):
            hint = f' (did you mean "#{value.lstrip("#").lower()}"?)' if value else ""
            self.error(
                where, f'{value!r} is not a Slack channel ("#name") or id ("C…", "U…"){hint}'
            )
        return value

    def privacy(self, raw: dict[str, Any]) -> Privacy:
        levels = {}
        for name in [c.value for c in Channel] + ["web"]:
            level = raw.get(name, "minimal" if name == "web" else "full")
            if level not in PRIVACY_LEVELS:
                self.error(f"privacy.{name}", f"expected one of {', '.join(PRIVACY_LEVELS)}")
            levels[name] = str(level)
        retention = (
            self.duration("privacy", raw, "retention") if "retention" in raw else timedelta(days=90)
        )
        if retention < timedelta(days=2):
            self.error(
                "privacy.retention",
                'keep personal details at least "2d": deliveries are retried for up to a day',
            )
        return Privacy(**levels, retention=retention)

    def destinations(
        self, raw: Any, privacy: Privacy, hours: dict[str, Hours]
    ) -> dict[str, Destination]:
        if not isinstance(raw, dict):
            self.error("destinations", "expected a [destinations] table")
            return {}
        found: dict[str, Destination] = {}
        for name, spec in raw.items():
            where = f"destinations.{name}"
            if name.startswith("home"):
                self.error(where, 'names starting with "home" are kept for home.<attribute>')
            if not isinstance(spec, dict):
                self.error(where, 'expected a table such as { slack = "#group-leads" }')
                continue
            self.keys(spec, where, ("slack", "email", "teams", "privacy", "hours"))
            keeps = (
                self.hours_ref(f"{where}.hours", spec["hours"], hours) if "hours" in spec else ""
            )
            level = spec.get("privacy")
            if level is not None and level not in PRIVACY_LEVELS:
                self.error(f"{where}.privacy", f"expected one of {', '.join(PRIVACY_LEVELS)}")
            targets: list[Target] = []
            for channel in Channel:
                if channel.value not in spec:
                    continue
                value = self.address(f"{where}.{channel.value}", channel, spec[channel.value])
                for address in value if isinstance(value, list) else [value]:
                    targets.append(
                        Target(
                            channel,
                            address_of(channel, address),
                            name,
                            str(level or privacy.level(channel)),
                            keeps,
                        )
                    )
            if not targets and isinstance(spec, dict):
                self.error(where, "give at least one of slack, email or teams")
            found[name] = Destination(name, tuple(targets))
        return found

    def reference(
        self,
        table: dict[str, Any],
        where: str,
        destinations: dict[str, Destination],
        required: bool,
    ) -> str:
        value = table.get(where.split(".")[-1])
        if value is None:
            if required:
                self.error(
                    where,
                    "required: name the destination that gets leads no rule "
                    'routes, e.g. fallback = "group-leads"',
                )
            return ""
        if not isinstance(value, str):
            self.error(where, "expected one destination name in quotes")
            return ""
        if value not in destinations:
            self.error(
                where, f"unknown destination {value!r}" + did_you_mean(value, list(destinations))
            )
        return value

    def rules(
        self, raw: Any, homes: dict[int, Home], dests: dict[str, Destination]
    ) -> tuple[Rule, ...]:
        if not isinstance(raw, list):
            self.error("rules", "expected [[rules]] tables")
            return ()
        home_attrs = sorted({a for h in homes.values() for a in h.attributes})
        refs = list(dests) + [f"home.{a}" for a in home_attrs if channel_of_attribute(a)]
        rules = []
        for i, item in enumerate(raw):
            where = f"rules[{i}]"
            if not isinstance(item, dict):
                self.error(where, "expected a table")
                continue
            self.keys(
                item, where, ("name", "when", "notify", "urgent", "stop", "escalate", "anytime")
            )
            when = item.get("when", {})
            if not isinstance(when, dict):
                self.error(f"{where}.when", "expected a table such as { category = 4 }")
                when = {}
            conditions = tuple(self.conditions(f"{where}.when", when, homes, home_attrs))
            notify = item.get("notify", [])
            notify = [notify] if isinstance(notify, str) else notify
            if not isinstance(notify, list) or not notify:
                self.error(
                    f"{where}.notify",
                    'list at least one destination, e.g. ["home.slack", "group-leads"]',
                )
                notify = []
            for j, ref in enumerate(notify):
                self.notify_ref(f"{where}.notify[{j}]", ref, refs, home_attrs)
            steps = (
                self.steps(f"{where}.escalate", item["escalate"], refs, home_attrs)
                if "escalate" in item
                else ()
            )
            for flag in ("urgent", "stop", "anytime"):
                if not isinstance(item.get(flag, False), bool):
                    self.error(f"{where}.{flag}", "expected true or false")
            name = str(item.get("name") or f"rule {i + 1}")
            rules.append(
                Rule(
                    i,
                    name,
                    conditions,
                    tuple(map(str, notify)),
                    item.get("urgent") is True,
                    item.get("stop") is True,
                    steps,
                    item.get("anytime") is True,
                )
            )
        return tuple(rules)


def load_config(path: Path) -> Config:
    """Read and validate rules.toml. Raises ConfigError listing every problem."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            [f"{path}: no such file (give --config PATH or set LEADBOT_CONFIG)"]
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path.name}: not valid TOML: {exc}"]) from None
    return Loader(path, raw).load()
