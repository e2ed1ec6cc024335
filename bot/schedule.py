"""Working hours, UK bank holidays and the group's time zone, answered as instants.

A schedule (`[hours.<name>]` in rules.toml) is wall-clock time in the group's zone: 08:00 is
08:00 in Europe/London in winter and in summer. Everything here is pure: each question names the
moment it is about (a Unix timestamp, UTC), so tests move a clock instead of sleeping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import holidays

NATIONS = {"england": "ENG", "wales": "WLS", "scotland": "SCT", "northern-ireland": "NIR"}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
LOOKAHEAD_DAYS = 400  # a weekly schedule opens within weeks, even with bank holidays closed
ALL_DAY = 24 * 60

Span = tuple[int, int]
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
CLOCK = re.compile(r"\s*(\d\d):(\d\d)\s*")
HOURS_HINT = 'write HH:MM-HH:MM, 24-hour, like "08:00-18:00" ("00:00-24:00" for all day)'


@dataclass(frozen=True, slots=True)
class Hours:
    """A named weekly schedule in the group's wall-clock time. `week` has 7 entries, Monday
    first, each the open intervals as minutes since midnight, [start, end)."""

    name: str
    week: tuple[tuple[Span, ...], ...]
    bank_holidays_open: bool = False


def parse_hours(name: str, table: dict[str, Any]) -> tuple[Hours | None, list[str]]:
    """Read one [hours.<name>] table. Returns (Hours, []) or (None, problems); each problem is
    "hours.<name>.<key>: what is wrong; what to write instead"."""
    problems: list[str] = []
    week: list[tuple[Span, ...]] = [()] * 7
    named_by: dict[int, str] = {}
    bank_holidays_open = False
    for key, value in table.items():
        where = f"hours.{name}." + (key if BARE_KEY.fullmatch(key) else f'"{key}"')
        if key == "bank_holidays":
            if value not in ("closed", "open"):
                problems.append(f'{where}: expected "closed" or "open", got {value!r}')
            bank_holidays_open = value == "open"
            continue
        days, problem = _days(key)
        if not problem:
            twice = [day for day in days if day in named_by]
            if twice:
                names = ", ".join(DAYS[day] for day in twice)
                problem = f'{names} already given by "{named_by[twice[0]]}"; name each day once'
            named_by.update(dict.fromkeys(days, key))
        spans, value_problem = _spans(value)
        if problem or value_problem:
            problems.append(f"{where}: {problem or value_problem}")
            continue
        for day in days:
            week[day] = spans
    if not problems and not any(week):
        problems.append(
            f"hours.{name}: no day is open; "
            'give at least one day hours, e.g. mon-fri = "08:00-18:00"'
        )
    if problems:
        return None, problems
    return Hours(name, tuple(week), bank_holidays_open), []


def _days(key: str) -> tuple[list[int], str]:
    """A key like "mon", "mon-fri" or "tue,thu" -> day numbers (Monday 0), or a problem."""
    if not any(word.strip()[:3] in DAYS for word in re.split("[,-]", key)):
        return [], (
            'unknown key; expected a day (mon, tue, ... sun), a range like "mon-fri", '
            'a list like "tue,thu", or bank_holidays'
        )
    days: list[int] = []
    for part in key.split(","):
        ends = [word.strip() for word in part.split("-")]
        unknown = [word for word in ends if word not in DAYS]
        if unknown:
            return [], f'unknown day "{unknown[0]}"; write mon, tue, wed, thu, fri, sat or sun'
        if len(ends) > 2:
            return [], f'"{part.strip()}" is not a range; write one like "mon-fri"'
        first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
        if first > last:
            fix = f"{_range(first, 6)},{_range(0, last)}"
            return [], f'"{part.strip()}" wraps past Sunday; write it as a list, "{fix}"'
        for day in range(first, last + 1):
            if day in days:
                return [], f"{DAYS[day]} is named twice; name each day once"
            days.append(day)
    return days, ""


def _range(first: int, last: int) -> str:
    return DAYS[first] if first == last else f"{DAYS[first]}-{DAYS[last]}"


def _spans(value: Any) -> tuple[tuple[Span, ...], str]:
    """ "08:00-18:00", a list of those, or "closed" -> sorted, merged minute spans, or a problem."""
    if value == "closed":
        return (), ""
    texts = value if isinstance(value, list) else [value]
    if not texts or not all(isinstance(text, str) for text in texts):
        return (), f'expected hours in quotes, a list of them, or "closed"; {HOURS_HINT}'
    written: list[tuple[Span, str]] = []
    for text in texts:
        start, _, end = text.partition("-")
        first, last = _minute(start), _minute(end)
        if first is None or last is None:
            return (), f'bad hours "{text}"; {HOURS_HINT}'
        if last <= first:
            return (), f'"{text}" does not end after it starts; hours cannot run past midnight'
        written.append(((first, last), text))
    written.sort()
    for (earlier, text), (later, next_text) in pairwise(written):
        if later[0] < earlier[1]:
            return (), f'"{text}" and "{next_text}" overlap; join them'
    merged: list[Span] = []
    for first, last in (span for span, _ in written):
        if merged and merged[-1][1] == first:
            merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return tuple(merged), ""


def _minute(text: str) -> int | None:
    match = CLOCK.fullmatch(text)
    if not match:
        return None
    hour, minute = int(match[1]), int(match[2])
    if minute > 59 or hour > 24 or (hour == 24 and minute):
        return None
    return hour * 60 + minute


class Calendar:
    """The group's time zone and bank holidays. Build once; cheap to query."""

    def __init__(self, tz: ZoneInfo, default_nation: str = "england") -> None:
        self.tz = tz
        self.default_nation = default_nation
        self._subdiv(default_nation)
        self._holidays: dict[tuple[str, int], frozenset[date]] = {}

    def is_bank_holiday(self, day: date, nation: str | None = None) -> bool:
        """Whether `day` is a bank holiday (substitute days included) in `nation`."""
        return self._holiday(day, self._subdiv(nation))

    def is_open(self, hours: Hours | None, at: float, nation: str | None = None) -> bool:
        """Whether `hours` are open at `at`. None means always open."""
        subdiv = self._subdiv(nation)
        if hours is None:
            return True
        return any(start <= at < end for start, end in self._open(hours, self._date(at), subdiv))

    def next_open(self, hours: Hours | None, at: float, nation: str | None = None) -> float:
        """`at` itself when open then; else the next instant `hours` open (closed days, weekends
        and the nation's bank holidays skipped). None means always open."""
        subdiv = self._subdiv(nation)
        if hours is None:
            return at
        day = self._date(at)
        for _ in range(LOOKAHEAD_DAYS):
            for start, end in self._open(hours, day, subdiv):
                if end > at:
                    return max(start, at)
            day += timedelta(days=1)
        raise ValueError(f"hours.{hours.name} do not open within {LOOKAHEAD_DAYS} days")

    def add_open_time(
        self, hours: Hours | None, start: float, seconds: float, nation: str | None = None
    ) -> float:
        """The first instant by which `seconds` of open time have passed since `start`; closed
        time does not count. Friday 17:55 plus 15 minutes of 08:00-18:00 is Monday 08:10."""
        subdiv = self._subdiv(nation)
        if seconds < 0:
            raise ValueError(f"cannot add negative open time ({seconds}s)")
        if hours is None or seconds == 0:
            return start + seconds
        remaining, day = seconds, self._date(start)
        for _ in range(LOOKAHEAD_DAYS):
            for opens, closes in self._open(hours, day, subdiv):
                counted_from = max(opens, start)
                if closes - counted_from >= remaining:
                    return counted_from + remaining
                remaining -= max(closes - counted_from, 0)
            day += timedelta(days=1)
        raise ValueError(
            f"hours.{hours.name} do not add up to {seconds}s within {LOOKAHEAD_DAYS} days"
        )

    def describe(self, at: float, now: float) -> str:
        """`at` for people, in the group's zone: "today 14:05", "tomorrow 08:00", "Mon 08:00"
        within six days, else "Tue 25 Dec 08:00" (with the year when it is not this year)."""
        when, today = datetime.fromtimestamp(at, self.tz), self._date(now)
        days, clock, weekday = (when.date() - today).days, f"{when:%H:%M}", DAYS[when.weekday()]
        if days == 0:
            return f"today {clock}"
        if days == 1:
            return f"tomorrow {clock}"
        if 2 <= days <= 6:
            return f"{weekday.title()} {clock}"
        year = f" {when.year}" if when.year != today.year else ""
        return f"{weekday.title()} {when.day} {MONTHS[when.month - 1]}{year} {clock}"

    def _subdiv(self, nation: str | None) -> str:
        name = self.default_nation if nation is None else nation
        if name not in NATIONS:
            raise ValueError(f"unknown nation {name!r}; expected one of {', '.join(NATIONS)}")
        return NATIONS[name]

    def _holiday(self, day: date, subdiv: str) -> bool:
        if (subdiv, day.year) not in self._holidays:
            found = holidays.country_holidays("GB", subdiv=subdiv, years=day.year)
            self._holidays[subdiv, day.year] = frozenset(found)
        return day in self._holidays[subdiv, day.year]

    def _date(self, at: float) -> date:
        return datetime.fromtimestamp(at, self.tz).date()

    def _open(self, hours: Hours, day: date, subdiv: str) -> list[tuple[float, float]]:
        """The instants `hours` are open on the local `day`, in order."""
        spans = hours.week[day.weekday()]
        if not spans or (not hours.bank_holidays_open and self._holiday(day, subdiv)):
            return []
        instants = [(self._instant(day, first), self._instant(day, last)) for first, last in spans]
        return [(start, end) for start, end in instants if end > start]

    def _instant(self, day: date, minute: int) -> float:
        """A wall time on `day` as an instant. A repeated wall time is its first occurrence
        (fold=0); a skipped one is the moment the clocks jump, just after the gap."""
        if minute == ALL_DAY:
            day, minute = day + timedelta(days=1), 0
        wall = datetime(day.year, day.month, day.day, minute // 60, minute % 60)
        after = int(wall.replace(tzinfo=self.tz).timestamp())
        if self._wall(after) == wall:
            return float(after)
        # In a gap fold=0 lands after the jump and fold=1 before it: find the jump between.
        before = int(wall.replace(tzinfo=self.tz, fold=1).timestamp())
        while after - before > 1:
            middle = (before + after) // 2
            if self._wall(middle) >= wall:
                after = middle
            else:
                before = middle
        return float(after)

    def _wall(self, at: int) -> datetime:
        return datetime.fromtimestamp(at, self.tz).replace(tzinfo=None)
