"""Checking what rules.toml says about time: named [hours] schedules and who keeps them, the
group's and each home's nation (for bank holidays), rules' `escalate` steps and `anytime`, and
[claims]. A part of loader.py's checks, like conditions.py.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from .conditions import Checker, did_you_mean
from .config import Claims, Home, Step, Web
from .schedule import NATIONS, Hours, parse_hours

STEP_KEYS = ("after", "notify")
LISTEN = re.compile(r"\[?[A-Za-z0-9.:-]*\]?:\d{1,5}")
DEFAULT = Claims()
WEB = Web()


class TimingChecks(Checker):
    def hours(self, raw: Any) -> dict[str, Hours]:
        if not isinstance(raw, dict):
            self.error("hours", 'expected named tables like [hours.office] mon-fri = "08:00-18:00"')
            return {}
        found: dict[str, Hours] = {}
        for name, table in raw.items():
            if not isinstance(table, dict):
                self.error(f"hours.{name}", 'expected a table such as { mon-fri = "08:00-18:00" }')
                continue
            hours, problems = parse_hours(name, table)
            for problem in problems:
                self.problems.append(f"{self.path.name}: {problem}")
            if hours is not None:
                found[name] = hours
        return found

    def nation(self, where: str, value: Any) -> str:
        if not isinstance(value, str) or value.strip().lower() not in NATIONS:
            self.error(
                where,
                f"expected one of {', '.join(NATIONS)} (for bank holidays)"
                + (did_you_mean(value, list(NATIONS)) if isinstance(value, str) else ""),
            )
            return "england"
        return value.strip().lower()

    def hours_ref(self, where: str, value: Any, hours: dict[str, Hours]) -> str:
        if not isinstance(value, str) or value not in hours:
            named = ", ".join(f'"{n}"' for n in hours) or "none yet: add [hours.office]"
            self.error(
                where,
                f"unknown hours {value!r}: name an [hours.<name>] table ({named})"
                + (did_you_mean(value, list(hours)) if isinstance(value, str) else ""),
            )
            return ""
        return value

    def home_hours(self, homes: dict[int, Home], hours: dict[str, Hours]) -> None:
        """`<attribute>_hours` on a home names the hours its `<attribute>` keeps."""
        for home in homes.values():
            where = f"homes.{home.service_id}"
            if "nation" in home.attributes:
                self.nation(f"{where}.nation", home.attributes["nation"])
            for name, value in home.attributes.items():
                if not name.endswith("_hours"):
                    continue
                self.hours_ref(f"{where}.{name}", value, hours)
                keeper = name[: -len("_hours")]
                if keeper not in home.attributes:
                    self.error(
                        f"{where}.{name}",
                        f"{home.name} has no {keeper!r} for these hours to apply to",
                    )

    def steps(
        self, where: str, raw: Any, refs: list[str], home_attrs: list[str]
    ) -> tuple[Step, ...]:
        example = '[{ after = "15m", notify = ["home.manager_slack"] }]'
        if not isinstance(raw, list):
            self.error(where, f"expected a list of steps like {example}")
            return ()
        steps: list[Step] = []
        for i, item in enumerate(raw):
            at = f"{where}[{i}]"
            if not isinstance(item, dict):
                self.error(at, f"expected a step like {example[1:-1]}")
                continue
            for key in item:
                if key not in ("after", "notify"):
                    self.error(
                        f"{at}.{key}", "unknown key" + did_you_mean(key, ["after", "notify"])
                    )
            if "after" not in item:
                self.error(f"{at}.after", 'required: how long unclaimed first, e.g. "15m"')
                continue
            after = self.duration(at, item, "after")
            if after <= timedelta(0):
                self.error(f"{at}.after", 'expected a positive duration such as "15m"')
            notify = item.get("notify", [])
            notify = [notify] if isinstance(notify, str) else notify
            if not isinstance(notify, list) or not notify:
                self.error(f"{at}.notify", 'list at least one destination, e.g. ["sales-inbox"]')
                notify = []
            for j, ref in enumerate(notify):
                self.notify_ref(f"{at}.notify[{j}]", ref, refs, home_attrs)
            if steps and after <= steps[-1].after:
                self.error(
                    f"{at}.after",
                    f"steps go in increasing order: this one ({_show(after)}) must come later "
                    f"than the one before ({_show(steps[-1].after)})",
                )
            steps.append(Step(after, tuple(map(str, notify))))
        return tuple(steps)

    def claims(self, raw: dict[str, Any]) -> Claims:
        reaction = raw.get("reaction", DEFAULT.reaction)
        if not isinstance(reaction, str) or not reaction.strip(":").strip():
            self.error("claims.reaction", 'expected an emoji name such as "white_check_mark"')
            reaction = DEFAULT.reaction
        every = (
            self.duration("claims", raw, "check_every")
            if "check_every" in raw
            else DEFAULT.check_every
        )
        lookback = (
            self.duration("claims", raw, "lookback") if "lookback" in raw else DEFAULT.lookback
        )
        return Claims(reaction.strip().strip(":"), max(every, timedelta(seconds=1)), lookback)

    def web(self, raw: dict[str, Any]) -> Web:
        listen = raw.get("listen", WEB.listen)
        if not isinstance(listen, str) or (listen and not LISTEN.fullmatch(listen)):
            self.error("web.listen", 'expected "host:port" such as "127.0.0.1:8787", or ""')
            listen = WEB.listen
        public = raw.get("public_url", "")
        if not isinstance(public, str) or (
            public and not public.startswith(("https://", "http://"))
        ):
            self.error("web.public_url", 'expected the console\'s address, "https://leads.example"')
            public = ""
        days = raw.get("link_days", WEB.link_days)
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 90:
            self.error("web.link_days", "expected a number of days from 1 to 90")
            days = WEB.link_days
        return Web(listen, public.rstrip("/"), days)


def _show(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
