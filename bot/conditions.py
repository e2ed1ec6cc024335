"""Checking the `when` conditions of rules.toml's rules: each key, each value, with "did you
mean" for near misses. A part of loader.py's checks, kept apart because there are many.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from .config import Condition, Home, channel_of_attribute, normalise
from .models import CATEGORY_NAMES

CONDITION_KEYS = (
    "category",
    "service",
    "postcode",
    "funding",
    "timescales",
    "on_behalf_of",
    "anonymised",
    "content",
    "content_regex",
    "account",
)


class Checker:
    """Collects every problem instead of stopping at the first."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def error(self, where: str, message: str) -> None:
        self.problems.append(f"{self.path.name}: {where}: {message}")

    def warn(self, where: str, message: str) -> None:
        self.warnings.append(f"{self.path.name}: {where}: {message}")

    def duration(self, section: str, table: dict[str, Any], key: str) -> timedelta:
        value = table[key]
        match = (
            re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", str(value))
            if not isinstance(value, bool)
            else None
        )
        if not match:
            self.error(
                f"{section}.{key}",
                f'expected a duration like "90s", "15m", "24h" or "30d", got {value!r}',
            )
            return timedelta(0)
        unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
        if int(match[1]) == 0 and key in ("interval", "first", "cap", "give_up"):
            self.error(f"{section}.{key}", "must be longer than zero")
        return timedelta(seconds=int(match[1]) * unit)

    def notify_ref(self, where: str, ref: Any, refs: list[str], home_attrs: list[str]) -> None:
        if not isinstance(ref, str):
            self.error(where, "expected a destination name in quotes")
        elif ref.startswith("home."):
            attr = ref[5:]
            if attr not in home_attrs:
                self.error(where, f"no home has {attr!r}" + did_you_mean(ref, refs))
            elif channel_of_attribute(attr) is None:
                self.error(
                    where,
                    f"{ref} is not a destination: notify takes home attributes "
                    f"named slack, email or teams, or ending in _slack, _email "
                    f"or _teams",
                )
        elif ref not in refs:
            self.error(where, f"unknown destination {ref!r}" + did_you_mean(ref, refs))


class ConditionChecks(Checker):
    """`when = { ... }` -> Conditions whose values are ready to match (see rules.py)."""

    def conditions(
        self, where: str, when: dict[str, Any], homes: dict[int, Home], home_attrs: list[str]
    ) -> Iterable[Condition]:
        for key, value in when.items():
            path = f"{where}.{key}"
            if key == "home" and isinstance(value, dict):
                for attr, wanted in value.items():
                    if attr not in home_attrs:
                        self.error(
                            f"{path}.{attr}",
                            f"no home has {attr!r}" + did_you_mean(attr, home_attrs),
                        )
                    if any(isinstance(v, dict | list) for v in listed(wanted)):
                        self.error(f"{path}.{attr}", "expected a value or a list of values")
                    yield Condition(
                        f"home.{attr}",
                        tuple(normalise(v) for v in listed(wanted)),
                        tuple(listed(wanted)),
                    )
                continue
            if key not in CONDITION_KEYS:
                self.error(
                    path,
                    "unknown key"
                    + did_you_mean(key, [*CONDITION_KEYS, *(f"home.{a}" for a in home_attrs)]),
                )
                continue
            values = listed(value)
            if not values:
                self.error(path, "give at least one value")
                continue
            check: Callable[[str, list[Any], dict[int, Home]], tuple[Any, ...]] = getattr(
                self, f"when_{key}", self.when_text
            )
            yield Condition(key, check(path, values, homes), tuple(values))

    def when_text(self, path: str, values: list[Any], homes: dict[int, Home]) -> tuple[Any, ...]:
        for v in values:
            if not isinstance(v, str):
                self.error(path, f"expected text, got {v!r}")
        return tuple(normalise(v) for v in values)

    def when_category(
        self, path: str, values: list[Any], homes: dict[int, Home]
    ) -> tuple[Any, ...]:
        by_name = {normalise(n): cid for cid, names in CATEGORY_NAMES.items() for n in names}
        ids: list[int] = []
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                ids.append(v)
                if v not in CATEGORY_NAMES:
                    self.warn(
                        path,
                        f"category {v} is not one Autumna documents (1-8); it will "
                        f"match only if Autumna starts sending it",
                    )
            elif isinstance(v, str) and normalise(v) in by_name:
                ids.append(by_name[normalise(v)])
            else:
                names = [n for names in CATEGORY_NAMES.values() for n in names]
                self.error(path, f"unknown category {v!r}" + did_you_mean(str(v), names))
        return tuple(ids)

    def when_service(self, path: str, values: list[Any], homes: dict[int, Home]) -> tuple[Any, ...]:
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
                self.error(
                    path,
                    f"no home is named {v!r}"
                    + did_you_mean(str(v), [h.name for h in homes.values()]),
                )
        return tuple(out)

    def when_postcode(
        self, path: str, values: list[Any], homes: dict[int, Home]
    ) -> tuple[Any, ...]:
        out = []
        for v in values:
            text = " ".join(str(v).upper().split())
            if not re.fullmatch(r"[A-Z]{1,2}(\d[A-Z\d]?( \d[A-Z]{0,2})?)?", text):
                self.error(
                    path,
                    f'{v!r} is not a postcode area ("SW"), outward code '
                    f'("SW1A") or postcode prefix ("SW1A 1")',
                )
            out.append(text)
        return tuple(out)

    def when_anonymised(
        self, path: str, values: list[Any], homes: dict[int, Home]
    ) -> tuple[Any, ...]:
        if any(not isinstance(v, bool) for v in values):
            self.error(path, "expected true or false")
        return tuple(values)

    def when_content_regex(
        self, path: str, values: list[Any], homes: dict[int, Home]
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

    def when_content(self, path: str, values: list[Any], homes: dict[int, Home]) -> tuple[Any, ...]:
        words = [w for w in self.when_text(path, values, homes) if isinstance(w, str)]
        # Whole words or phrases; any run of spaces or line breaks between a phrase's words.
        return tuple(
            re.compile(
                r"(?<!\w)" + r"\s+".join(map(re.escape, w.split())) + r"(?!\w)", re.IGNORECASE
            )
            for w in words
        )

    def when_funding(self, path: str, values: list[Any], homes: dict[int, Home]) -> tuple[Any, ...]:
        return self.documented(path, values, homes, FUNDING)

    def when_timescales(
        self, path: str, values: list[Any], homes: dict[int, Home]
    ) -> tuple[Any, ...]:
        return self.documented(path, values, homes, TIMESCALES)

    def documented(
        self, path: str, values: list[Any], homes: dict[int, Home], known: tuple[str, ...]
    ) -> tuple[Any, ...]:
        out = self.when_text(path, values, homes)
        for v in values:
            if isinstance(v, str) and normalise(v) not in {normalise(k) for k in known}:
                self.warn(
                    path,
                    f"{v!r} is not one of Autumna's documented values"
                    + did_you_mean(v, list(known))
                    + "; it will still match "
                    "leads that carry it",
                )
        return out


FUNDING = (
    "Buy",
    "Rent",
    "Either Buy or Rent",
    "Part Buy, Part Rent",
    "Self Funding",
    "Local Authority with Top-up",
    "NHS Continuing Healthcare",
    "Not Sure",
    "Top-up",
)
TIMESCALES = (
    "Emergency",
    "ASAP",
    "2-4 weeks",
    "1-3 months",
    "3-6 months",
    "6-12 months",
    "Over 12 months",
    "Not Sure",
)


def listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""
