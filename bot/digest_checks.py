"""Checking rules.toml's `[[digests]]`: each key and reference, every problem reported at once
with its key path, like the rest of the loader. A part of loader.py's checks.
"""

from __future__ import annotations

import re
from typing import Any

from .conditions import Checker, did_you_mean
from .config import Digest, Home, channel_of_attribute, normalise
from .schedule import DAYS, _days

DIGEST_KEYS = ("name", "at", "days", "period", "notify", "homes", "bank_holidays")
PERIODS = ("day", "week")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
AT = re.compile(r"\s*(\d\d):(\d\d)(?::(\d\d))?\s*")
EXAMPLE = '[[digests]] with name = "morning", at = "08:00", days = "mon-fri", notify = [...]'


class DigestChecks(Checker):
    def digests(
        self, raw: Any, homes: dict[int, Home], destinations: list[str]
    ) -> tuple[Digest, ...]:
        if not isinstance(raw, list):
            self.error("digests", f"expected {EXAMPLE}")
            return ()
        home_attrs = sorted({a for h in homes.values() for a in h.attributes})
        refs = destinations + [f"home.{a}" for a in home_attrs if channel_of_attribute(a)]
        found: list[Digest] = []
        named: dict[str, int] = {}
        for i, item in enumerate(raw):
            where = f"digests[{i}]"
            if not isinstance(item, dict):
                self.error(where, f"expected a table: {EXAMPLE}")
                continue
            for key in item:
                if key not in DIGEST_KEYS:
                    self.error(
                        f"{where}.{key}", "unknown key" + did_you_mean(key, list(DIGEST_KEYS))
                    )
            name = self.digest_name(where, item.get("name"))
            if name in named:
                self.error(
                    f"{where}.name",
                    f"digests[{named[name]}] is named {name!r} too; give each digest its own name",
                )
            named.setdefault(name, i)
            at = self.digest_at(f"{where}.at", item.get("at"))
            period = item.get("period", "day")
            if period not in PERIODS:
                self.error(f"{where}.period", f'expected "day" or "week", got {period!r}')
                period = "day"
            days = self.digest_days(f"{where}.days", item.get("days"), period)
            notify = item.get("notify", [])
            notify = [notify] if isinstance(notify, str) else notify
            if not isinstance(notify, list) or not notify:
                self.error(
                    f"{where}.notify",
                    'list who gets it, e.g. ["sales-inbox", "home.manager_email"]',
                )
                notify = []
            for j, ref in enumerate(notify):
                self.notify_ref(f"{where}.notify[{j}]", ref, refs, home_attrs)
            holidays = item.get("bank_holidays", "skip")
            if holidays not in ("skip", "send"):
                self.error(f"{where}.bank_holidays", f'expected "skip" or "send", got {holidays!r}')
            found.append(
                Digest(
                    name=name,
                    at=at,
                    days=days,
                    notify=tuple(str(ref) for ref in notify),
                    period=str(period),
                    homes=self.digest_homes(f"{where}.homes", item.get("homes", []), homes),
                    bank_holidays=str(holidays),
                )
            )
        return tuple(found)

    def digest_name(self, where: str, value: Any) -> str:
        if value is None:
            self.error(f"{where}.name", 'required: a short name such as "morning"')
            return ""
        if not isinstance(value, str) or not NAME.fullmatch(value):
            self.error(
                f"{where}.name",
                f"{value!r} is not a usable name: letters, digits, - and _ (up to 40), as "
                "`leadbot digest NAME --preview` takes it",
            )
            return str(value)
        return value

    def digest_at(self, where: str, value: Any) -> int:
        """ "08:00" (or "08:00:30") -> seconds after midnight."""
        if value is None:
            self.error(where, 'required: when it goes, in the group\'s time zone, e.g. "08:00"')
            return 0
        match = AT.fullmatch(value) if isinstance(value, str) else None
        if match:
            hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
            if hour < 24 and minute < 60 and second < 60:
                return hour * 3600 + minute * 60 + second
        self.error(where, f'expected a time of day, 24-hour, like "08:00", got {value!r}')
        return 0

    def digest_days(self, where: str, value: Any, period: str) -> tuple[int, ...]:
        if value is None:
            return (0,) if period == "week" else tuple(range(7))
        listed = value if isinstance(value, list) else [value]
        if not listed or not all(isinstance(v, str) for v in listed):
            self.error(where, 'expected days in quotes, like "mon-fri", "mon" or "tue,thu"')
            return ()
        text = ",".join(listed)
        days, problem = _days(text)
        if problem.startswith("unknown key"):
            problem = f'expected days like "mon-fri", "mon" or "tue,thu" ({", ".join(DAYS)})'
        if problem:
            self.error(where, problem)
            return ()
        if period == "week" and len(days) != 1:
            self.error(
                where,
                'a weekly digest (period = "week") goes on one day, covering the seven before '
                'it: name one, such as "mon"',
            )
        return tuple(sorted(days))

    def digest_homes(self, where: str, value: Any, homes: dict[int, Home]) -> tuple[int, ...]:
        """Homes by name (any case) or Autumna service id -> service ids."""
        items = value if isinstance(value, list) else [value]
        by_name = {normalise(h.name): h.service_id for h in homes.values()}
        found: list[int] = []
        for j, item in enumerate(items):
            at = f"{where}[{j}]" if isinstance(value, list) else where
            if (isinstance(item, int) and not isinstance(item, bool)) or str(item).isdigit():
                if int(item) not in homes:
                    self.error(at, f"service {item} is not in rules.toml: add [homes.{item}]")
                    continue
                found.append(int(item))
            elif isinstance(item, str) and normalise(item) in by_name:
                found.append(by_name[normalise(item)])
            else:
                names = [h.name for h in homes.values()]
                self.error(
                    at,
                    f"no home named {item!r}"
                    + (did_you_mean(item, names) if isinstance(item, str) else "")
                    + ": give a home's name or its Autumna service id",
                )
        return tuple(dict.fromkeys(found))
