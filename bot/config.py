"""rules.toml -> a typed, validated `Config`. Every problem is reported at once, with the file,
the key path and what to do; nothing half-valid gets through.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .models import CATEGORY_NAMES, Channel, Target

ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
SLACK_ID = re.compile(r"^[CGDUW][A-Z0-9]{2,}$")
SLACK_NAME = re.compile(r"^#[a-z0-9][a-z0-9_\-.]{0,79}$")
EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
LOOKS_SECRET = re.compile(r"xox[a-z]-|xapp-|hooks\.slack\.com|logic\.azure\.com|"
                          r"webhook\.office\.com|[?&](sig|api_key|token|key)=|^[A-Za-z0-9_\-]{32,}$",
                          re.IGNORECASE)
PRIVACY_LEVELS = ("full", "minimal")
TLS_MODES = ("starttls", "implicit", "none")


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    key_var: str  # the environment variable holding the API key; the key itself never lives here


@dataclass(frozen=True, slots=True)
class Polling:
    interval: timedelta = timedelta(minutes=1)
    overlap: timedelta = timedelta(minutes=15)
    lookback: timedelta = timedelta(hours=24)  # on first start, older leads are recorded silently
    history: timedelta = timedelta(days=30)  # how far back the first poll looks
    alert_after: timedelta = timedelta(minutes=15)  # no successful poll for this long: tell ops


@dataclass(frozen=True, slots=True)
class Retries:
    first: timedelta = timedelta(seconds=30)  # the first retry comes about this long after
    cap: timedelta = timedelta(hours=1)  # retries are never further apart than this
    give_up: timedelta = timedelta(hours=24)  # after this long, dead-letter and tell ops


@dataclass(frozen=True, slots=True)
class Privacy:
    """What each channel may show by default (a destination's own `privacy` wins), and how long
    personal details are kept."""

    slack: str = "full"
    teams: str = "full"
    email: str = "full"
    retention: timedelta = timedelta(days=90)

    def level(self, channel: Channel) -> str:
        return str(getattr(self, channel.value))


@dataclass(frozen=True, slots=True)
class EmailSettings:
    host: str = ""
    port: int = 0  # 0: 465 for implicit TLS, else 587
    sender: str = ""
    tls: str = "starttls"
    ca_file: str = ""


@dataclass(frozen=True, slots=True)
class Home:
    service_id: int
    name: str
    attributes: dict[str, Any]  # everything written under [homes.<id>], name included


@dataclass(frozen=True, slots=True)
class Condition:
    """One `when` key. `values` are normalised for matching (see rules.py)."""

    key: str  # category, service, postcode, home.<attr>, funding, timescales, on_behalf_of, ...
    values: tuple[Any, ...]
    written: tuple[Any, ...] = ()  # as the admin wrote them, for `leadbot explain`


@dataclass(frozen=True, slots=True)
class Rule:
    index: int
    name: str
    conditions: tuple[Condition, ...]
    notify: tuple[str, ...]
    urgent: bool = False
    stop: bool = False


@dataclass(frozen=True, slots=True)
class Destination:
    name: str
    targets: tuple[Target, ...]


@dataclass(frozen=True)
class Config:
    path: Path
    group: str
    timezone: ZoneInfo
    templates: Path | None
    lead_url: str
    accounts: tuple[Account, ...]
    polling: Polling
    retries: Retries
    privacy: Privacy
    email: EmailSettings
    homes: dict[int, Home]
    destinations: dict[str, Destination]
    rules: tuple[Rule, ...]
    fallback: str
    ops: str
    warnings: tuple[str, ...] = ()
    secret_vars: frozenset[str] = field(default_factory=frozenset)  # env vars holding secrets
    resolved: dict[tuple[int, str], list[Target]] = field(default_factory=dict, compare=False,
                                                         repr=False)  # home.<attr> -> targets

    def targets_used(self) -> set[Channel]:
        found = {t.channel for d in self.destinations.values() for t in d.targets}
        for home in self.homes.values():
            found |= {t.channel for t in home_targets(home, None, self.privacy)}
        return found


class ConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def channel_of_attribute(name: str) -> Channel | None:
    """Home attributes named slack/email/teams, or ending _slack/_email/_teams, are destinations."""
    for channel in Channel:
        if name == channel.value or name.endswith("_" + channel.value):
            return channel
    return None


def home_targets(home: Home, attribute: str | None, privacy: Privacy = Privacy()
                 ) -> list[Target]:
    """The targets behind `home.<attribute>` (all of the home's when attribute is None)."""
    found: list[Target] = []
    for name, value in home.attributes.items():
        channel = channel_of_attribute(name)
        if channel is None or attribute not in (None, name):
            continue
        label = f"home.{name}"
        for address in value if isinstance(value, list) else [value]:
            found.append(Target(channel, _address(channel, address), label,
                                privacy.level(channel)))
    return found


def _address(channel: Channel, value: str) -> str:
    if channel is Channel.TEAMS:
        match = ENV_REF.match(value)
        return match[1] if match else value
    return value.lower() if channel is Channel.EMAIL else value


# --- loading -------------------------------------------------------------------------------------


def load_config(path: Path) -> Config:
    """Read and validate rules.toml. Raises ConfigError listing every problem."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file (give --config PATH or set LEADBOT_CONFIG)"]
                          ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path.name}: not valid TOML: {exc}"]) from None
    return _Loader(path, raw).load()


TOP_KEYS = ("group", "autumna", "polling", "retries", "privacy", "email", "routing", "homes",
            "destinations", "rules")
CONDITION_KEYS = ("category", "service", "postcode", "funding", "timescales", "on_behalf_of",
                  "anonymised", "content", "content_regex", "account")


class _Loader:
    def __init__(self, path: Path, raw: dict[str, Any]) -> None:
        self.path, self.raw = path, raw
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.secret_vars: set[str] = set()

    def error(self, where: str, message: str) -> None:
        self.problems.append(f"{self.path.name}: {where}: {message}")

    def warn(self, where: str, message: str) -> None:
        self.warnings.append(f"{self.path.name}: {where}: {message}")

    def load(self) -> Config:
        raw = self.raw
        self.keys(raw, "", TOP_KEYS)
        group = self.table(raw, "group", ("name", "timezone", "templates", "lead_url"))
        autumna = self.table(raw, "autumna", ("accounts",))
        polling = self.table(raw, "polling", ("interval", "overlap", "lookback", "history",
                                              "alert_after"))
        retries = self.table(raw, "retries", ("first", "cap", "give_up"))
        privacy = self.privacy(self.table(raw, "privacy", ("slack", "teams", "email",
                                                            "retention")))
        email = self.table(raw, "email", ("host", "port", "sender", "tls", "ca_file"))
        routing = self.table(raw, "routing", ("fallback", "ops"))
        homes = self.homes(raw.get("homes", {}))
        destinations = self.destinations(raw.get("destinations", {}), privacy)
        rules = self.rules(raw.get("rules", []), homes, destinations)
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
            warnings=tuple(self.warnings),
            secret_vars=frozenset(self.secret_vars),
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
                self.error(path, "unknown key" + _did_you_mean(key, allowed))

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
            self.error("group.lead_url", f"cannot fill in {pattern!r} ({type(exc).__name__}: "
                                         f"{exc}): use only {{category_id}}, {{lead_id}} and "
                                         f"{{service_id}}")
            return ""
        if not url.startswith(("https://", "http://")):
            self.error("group.lead_url", "expected a link starting https://")
        return pattern

    def zone(self, name: Any) -> ZoneInfo:
        try:
            return ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError):
            self.error("group.timezone", f"unknown time zone {name!r} (e.g. \"Europe/London\")")
            return ZoneInfo("Europe/London")

    def folder(self, value: Any) -> Path | None:
        if value is None:
            return None
        folder = (self.path.parent / str(value)).resolve()
        if not folder.is_dir():
            self.error("group.templates", f"folder {folder} does not exist")
        return folder

    def duration(self, section: str, table: dict[str, Any], key: str) -> timedelta:
        value = table[key]
        match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", str(value)) if not isinstance(
            value, bool) else None
        if not match:
            self.error(f"{section}.{key}", f"expected a duration like \"90s\", \"15m\", \"24h\" "
                                         f"or \"30d\", got {value!r}")
            return timedelta(0)
        unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
        if int(match[1]) == 0 and key in ("interval", "first", "cap", "give_up"):
            self.error(f"{section}.{key}", "must be longer than zero")
        return timedelta(seconds=int(match[1]) * unit)

    def secret_ref(self, value: Any, where: str, example: str) -> str:
        """A secret is named by environment variable: `"${NAME}"`. Returns NAME."""
        match = ENV_REF.match(value) if isinstance(value, str) else None
        if match:
            self.secret_vars.add(match[1])
            return match[1]
        if isinstance(value, str) and value:
            self.error(where, f"secrets never go in rules.toml: put the value in an environment "
                              f"variable and write \"${{{example}}}\" here")
        else:
            self.error(where, f"expected an environment variable reference like \"${{{example}}}\"")
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
        tls = str(raw.get("tls", "starttls"))
        if tls not in TLS_MODES:
            self.error("email.tls", f"expected one of {', '.join(TLS_MODES)}")
        port = raw.get("port", 0)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port < 65536:
            self.error("email.port", "expected a port number such as 587 or 465")
            port = 0
        sender = self.text(raw, "email.sender")
        if sender and not EMAIL.search(sender.rsplit("<", 1)[-1].rstrip(">")):
            self.error("email.sender", f"{sender!r} is not an email address")
        return EmailSettings(self.text(raw, "email.host"), port, sender, tls,
                             self.text(raw, "email.ca_file"))

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
                if not isinstance(v, str) or not EMAIL.match(v.strip()):
                    self.error(where, f"{v!r} is not an email address")
            return [str(v).strip() for v in values] if isinstance(value, list) else str(
                value).strip()
        if not isinstance(value, str):
            self.error(where, "expected text in quotes")
            return ""
        if channel is Channel.TEAMS:
            self.secret_ref(value, where, "TEAMS_WEBHOOK_URL")
        elif LOOKS_SECRET.search(value):
            self.error(where, "this looks like a secret URL or token: Slack destinations take a "
                              "channel (\"#rose-lodge\") or a user id (\"U024BE7LH\")")
        elif not (SLACK_ID.match(value) or SLACK_NAME.match(value)):
            hint = f" (did you mean \"#{value.lstrip('#').lower()}\"?)" if value else ""
            self.error(where, f"{value!r} is not a Slack channel (\"#name\") or id (\"C…\", "
                              f"\"U…\"){hint}")
        return value

    def privacy(self, raw: dict[str, Any]) -> Privacy:
        levels = {}
        for channel in Channel:
            level = raw.get(channel.value, "full")
            if level not in PRIVACY_LEVELS:
                self.error(f"privacy.{channel.value}", f"expected one of "
                                                       f"{', '.join(PRIVACY_LEVELS)}")
            levels[channel.value] = str(level)
        retention = self.duration("privacy", raw, "retention") if "retention" in raw else \
            timedelta(days=90)
        if retention < timedelta(days=2):
            self.error("privacy.retention", "keep personal details at least \"2d\": deliveries "
                                            "are retried for up to a day")
        return Privacy(**levels, retention=retention)

    def destinations(self, raw: Any, privacy: Privacy) -> dict[str, Destination]:
        if not isinstance(raw, dict):
            self.error("destinations", "expected a [destinations] table")
            return {}
        found: dict[str, Destination] = {}
        for name, spec in raw.items():
            where = f"destinations.{name}"
            if name.startswith("home"):
                self.error(where, "names starting with \"home\" are kept for home.<attribute>")
            if not isinstance(spec, dict):
                self.error(where, "expected a table such as { slack = \"#group-leads\" }")
                continue
            self.keys(spec, where, ("slack", "email", "teams", "privacy"))
            level = spec.get("privacy")
            if level is not None and level not in PRIVACY_LEVELS:
                self.error(f"{where}.privacy", f"expected one of {', '.join(PRIVACY_LEVELS)}")
            targets: list[Target] = []
            for channel in Channel:
                if channel.value not in spec:
                    continue
                value = self.address(f"{where}.{channel.value}", channel, spec[channel.value])
                for address in value if isinstance(value, list) else [value]:
                    targets.append(Target(channel, _address(channel, address), name,
                                          str(level or privacy.level(channel))))
            if not targets and isinstance(spec, dict):
                self.error(where, "give at least one of slack, email or teams")
            found[name] = Destination(name, tuple(targets))
        return found

    def reference(self, table: dict[str, Any], where: str, destinations: dict[str, Destination],
                  required: bool) -> str:
        value = table.get(where.split(".")[-1])
        if value is None:
            if required:
                self.error(where, "required: name the destination that gets leads no rule "
                                  "routes, e.g. fallback = \"group-leads\"")
            return ""
        if not isinstance(value, str):
            self.error(where, "expected one destination name in quotes")
            return ""
        if value not in destinations:
            self.error(where, f"unknown destination {value!r}" + _did_you_mean(
                value, list(destinations)))
        return value

    def rules(self, raw: Any, homes: dict[int, Home], dests: dict[str, Destination]
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
            self.keys(item, where, ("name", "when", "notify", "urgent", "stop"))
            when = item.get("when", {})
            if not isinstance(when, dict):
                self.error(f"{where}.when", "expected a table such as { category = 4 }")
                when = {}
            conditions = tuple(self.conditions(f"{where}.when", when, homes, home_attrs))
            notify = item.get("notify", [])
            notify = [notify] if isinstance(notify, str) else notify
            if not isinstance(notify, list) or not notify:
                self.error(f"{where}.notify", "list at least one destination, e.g. "
                                              "[\"home.slack\", \"group-leads\"]")
                notify = []
            for j, ref in enumerate(notify):
                self.notify_ref(f"{where}.notify[{j}]", ref, refs, home_attrs)
            for flag in ("urgent", "stop"):
                if not isinstance(item.get(flag, False), bool):
                    self.error(f"{where}.{flag}", "expected true or false")
            name = str(item.get("name") or f"rule {i + 1}")
            rules.append(Rule(i, name, conditions, tuple(map(str, notify)),
                              item.get("urgent") is True, item.get("stop") is True))
        return tuple(rules)

    def notify_ref(self, where: str, ref: Any, refs: list[str], home_attrs: list[str]) -> None:
        if not isinstance(ref, str):
            self.error(where, "expected a destination name in quotes")
        elif ref.startswith("home."):
            attr = ref[5:]
            if attr not in home_attrs:
                self.error(where, f"no home has {attr!r}" + _did_you_mean(ref, refs))
            elif channel_of_attribute(attr) is None:
                self.error(where, f"{ref} is not a destination: notify takes home attributes "
                                  f"named slack, email or teams, or ending in _slack, _email "
                                  f"or _teams")
        elif ref not in refs:
            self.error(where, f"unknown destination {ref!r}" + _did_you_mean(ref, refs))

    def conditions(self, where: str, when: dict[str, Any], homes: dict[int, Home],
                   home_attrs: list[str]) -> Iterable[Condition]:
        for key, value in when.items():
            path = f"{where}.{key}"
            if key == "home" and isinstance(value, dict):
                for attr, wanted in value.items():
                    if attr not in home_attrs:
                        self.error(f"{path}.{attr}", f"no home has {attr!r}" + _did_you_mean(
                            attr, home_attrs))
                    if any(isinstance(v, dict | list) for v in _listed(wanted)):
                        self.error(f"{path}.{attr}", "expected a value or a list of values")
                    yield Condition(f"home.{attr}", tuple(normalise(v) for v in _listed(wanted)),
                                    tuple(_listed(wanted)))
                continue
            if key not in CONDITION_KEYS:
                self.error(path, "unknown key" + _did_you_mean(
                    key, [*CONDITION_KEYS, *(f"home.{a}" for a in home_attrs)]))
                continue
            values = _listed(value)
            if not values:
                self.error(path, "give at least one value")
                continue
            check: Callable[[str, list[Any], dict[int, Home]], tuple[Any, ...]] = getattr(
                self, f"when_{key}", self.when_text)
            yield Condition(key, check(path, values, homes), tuple(values))

    def when_text(self, path: str, values: list[Any], homes: dict[int, Home]) -> tuple[Any, ...]:
        for v in values:
            if not isinstance(v, str):
                self.error(path, f"expected text, got {v!r}")
        return tuple(normalise(v) for v in values)

    def when_category(self, path: str, values: list[Any], homes: dict[int, Home]
                      ) -> tuple[Any, ...]:
        by_name = {normalise(n): cid for cid, names in CATEGORY_NAMES.items() for n in names}
        ids: list[int] = []
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                ids.append(v)
                if v not in CATEGORY_NAMES:
                    self.warn(path, f"category {v} is not one Autumna documents (1-8); it will "
                                    f"match only if Autumna starts sending it")
            elif isinstance(v, str) and normalise(v) in by_name:
                ids.append(by_name[normalise(v)])
            else:
                names = [n for names in CATEGORY_NAMES.values() for n in names]
                self.error(path, f"unknown category {v!r}" + _did_you_mean(str(v), names))
        return tuple(ids)

    def when_service(self, path: str, values: list[Any], homes: dict[int, Home]
                     ) -> tuple[Any, ...]:
        names = {normalise(h.name): sid for sid, h in homes.items()}
        out: list[Any] = []
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool):
                out.append(v)
            elif isinstance(v, str) and v.strip().isdigit():
                out.append(int(v))
            elif isinstance(v, str) and normalise(v) in names:
                out.append(names[normalise(v)])
            else:
                self.error(path, f"no home is named {v!r}" + _did_you_mean(
                    str(v), [h.name for h in homes.values()]))
        return tuple(out)

    def when_postcode(self, path: str, values: list[Any], homes: dict[int, Home]
                      ) -> tuple[Any, ...]:
        out = []
        for v in values:
            text = " ".join(str(v).upper().split())
            if not re.fullmatch(r"[A-Z]{1,2}(\d[A-Z\d]?( \d[A-Z]{0,2})?)?", text):
                self.error(path, f"{v!r} is not a postcode area (\"SW\"), outward code "
                                 f"(\"SW1A\") or postcode prefix (\"SW1A 1\")")
            out.append(text)
        return tuple(out)

    def when_anonymised(self, path: str, values: list[Any], homes: dict[int, Home]
                        ) -> tuple[Any, ...]:
        if any(not isinstance(v, bool) for v in values):
            self.error(path, "expected true or false")
        return tuple(values)

    def when_content_regex(self, path: str, values: list[Any], homes: dict[int, Home]
                           ) -> tuple[Any, ...]:
        compiled = []
        for v in values:
            if not isinstance(v, str):
                self.error(path, f"expected a regular expression in quotes, got {v!r}")
                continue
            try:
                compiled.append(re.compile(str(v), re.IGNORECASE))
            except re.error as exc:
                self.error(path, f"bad regular expression {v!r}: {exc}")
        return tuple(compiled)

    def when_content(self, path: str, values: list[Any], homes: dict[int, Home]
                     ) -> tuple[Any, ...]:
        words = [w for w in self.when_text(path, values, homes) if isinstance(w, str)]
        # Whole words or phrases; any run of spaces or line breaks between a phrase's words.
        return tuple(re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, w.split())) + r"(?!\w)",
                                re.IGNORECASE) for w in words)

    def when_funding(self, path: str, values: list[Any], homes: dict[int, Home]
                     ) -> tuple[Any, ...]:
        return self.documented(path, values, homes, FUNDING)

    def when_timescales(self, path: str, values: list[Any], homes: dict[int, Home]
                        ) -> tuple[Any, ...]:
        return self.documented(path, values, homes, TIMESCALES)

    def documented(self, path: str, values: list[Any], homes: dict[int, Home],
                   known: tuple[str, ...]) -> tuple[Any, ...]:
        out = self.when_text(path, values, homes)
        for v in values:
            if isinstance(v, str) and normalise(v) not in {normalise(k) for k in known}:
                self.warn(path, f"{v!r} is not one of Autumna's documented values"
                                + _did_you_mean(v, list(known)) + "; it will still match "
                                "leads that carry it")
        return out


FUNDING = ("Buy", "Rent", "Either Buy or Rent", "Part Buy, Part Rent", "Self Funding",
           "Local Authority with Top-up", "NHS Continuing Healthcare", "Not Sure", "Top-up")
TIMESCALES = ("Emergency", "ASAP", "2-4 weeks", "1-3 months", "3-6 months", "6-12 months",
              "Over 12 months", "Not Sure")


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def normalise(value: Any) -> Any:
    """How rules compare text: case and runs of spaces do not matter."""
    return " ".join(value.casefold().split()) if isinstance(value, str) else value


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean \"{close[0]}\"?)" if close else ""
