"""Digests ([[digests]]): each home's leads summed up on a schedule, for managers who want a
morning summary rather than a database.

A digest goes at `at` on each of its `days`, in the group's wall-clock time (08:00 is 08:00 in
winter and in summer); on a bank holiday of the group's nation it is skipped unless
`bank_holidays = "send"`. Each covers the whole days since the day the one before it went:
yesterday, or Friday to Sunday for Monday's digest of a "mon-fri" one, or the seven days before
a weekly one. Everything here about time is pure and takes instants; the run loop asks
`fire_due` each turn.

Once per day it is due, whatever happens: a digest is written with all its deliveries in one
transaction, one row per name and day (store.add_digest). A digest missed while leadbot was down
goes out when it starts, once: the latest missed one, counting everything since the last one
sent. A digest seen for the first time after its time that day (a new [[digests]] table, a new
database) waits for its next time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from .channels import email
from .config import Config, Digest
from .digest_view import digest_view
from .models import Channel, Message, Target
from .reporting import digest_figures
from .schedule import Calendar
from .store.reports import Edition

if TYPE_CHECKING:
    from .render import Renderer
    from .store import Store

log = logging.getLogger(__name__)
LOOKBACK_DAYS = 400  # a digest goes at least once a week; a year of bank holidays is plenty
CATCH_UP = timedelta(days=31)  # after a long downtime, a digest counts at most this far back


def moment(day: date, seconds: int, tz: ZoneInfo) -> float:
    """A wall-clock time on a local day as an instant. A repeated time is its first occurrence;
    one the clocks skip is read with the offset before the change (an hour later in wall time)."""
    wall = time(seconds // 3600, seconds // 60 % 60, seconds % 60)
    return datetime.combine(day, wall, tz).timestamp()


def goes_on(digest: Digest, calendar: Calendar, day: date) -> bool:
    return day.weekday() in digest.days and (
        digest.bank_holidays == "send" or not calendar.is_bank_holiday(day)
    )


def latest_day(digest: Digest, calendar: Calendar, now: float) -> date | None:
    """The last day on which the digest was due at or before `now`."""
    day = datetime.fromtimestamp(now, calendar.tz).date()
    for _ in range(LOOKBACK_DAYS):
        if goes_on(digest, calendar, day) and moment(day, digest.at, calendar.tz) <= now:
            return day
        day -= timedelta(days=1)
    return None


def next_due(digest: Digest, calendar: Calendar, now: float) -> float | None:
    """When the digest is next due after `now`."""
    day = datetime.fromtimestamp(now, calendar.tz).date()
    for _ in range(LOOKBACK_DAYS):
        at = moment(day, digest.at, calendar.tz)
        if goes_on(digest, calendar, day) and at > now:
            return at
        day += timedelta(days=1)
    return None


def period(digest: Digest, calendar: Calendar, day: date) -> tuple[float, float]:
    """What the digest of `day` covers: from the start of the day the one before went (by the
    schedule) to the start of `day`, as instants (a day of a clock change is 23 or 25 hours)."""
    before = day - timedelta(days=1)
    for _ in range(LOOKBACK_DAYS):
        if goes_on(digest, calendar, before):
            break
        before -= timedelta(days=1)
    return moment(before, 0, calendar.tz), moment(day, 0, calendar.tz)


def catch_up(start: float, end: float, last: dict[str, Any] | None) -> float:
    """A digest starts where the last one recorded ended: after a downtime it also counts the
    days of the digests that were missed (up to CATCH_UP), and after a change of `days` it never
    counts a lead twice."""
    if last is None:
        return start
    return max(min(float(last["period_end"]), end), end - CATCH_UP.total_seconds())


def editions(digest: Digest, config: Config) -> Iterator[Edition]:
    """Named destinations get the digest of every home; `home.<attribute>` gets each home's
    own digest, to that home's address (subject suffix ":<service id>")."""
    whole: dict[str, Target] = {}
    own: dict[int, dict[str, Target]] = {}
    for ref in digest.notify:
        if ref.startswith("home."):
            for service in digest.homes or tuple(config.homes):
                for target in config.home_destinations.get((service, ref), ()):
                    own.setdefault(service, {}).setdefault(target.key, target)
        else:
            for target in config.destinations[ref].targets:
                whole.setdefault(target.key, target)
    if whole:
        yield "", tuple(whole.values())
    for service, targets in own.items():
        yield f":{service}", tuple(targets.values())


def fire_due(store: Store, config: Config, calendar: Calendar, now: float) -> int:
    """Write every digest that is due and not yet written for its day; returns how many."""
    fired = 0
    for digest in config.digests:
        day = latest_day(digest, calendar, now)
        if day is None:
            continue
        last = store.last_digest(digest.name)
        if last is not None and last["day"] >= day.isoformat():
            continue
        start, end = period(digest, calendar, day)
        due = moment(day, digest.at, calendar.tz)
        if last is None:
            store.add_digest(digest.name, day.isoformat(), (start, end), due, None, (), now)
            coming = next_due(digest, calendar, now)
            log.info(
                "digest %r: the first goes %s",
                digest.name,
                calendar.describe(coming, now) if coming else "never: it has no day to go on",
            )
            continue
        start = catch_up(start, end, last)
        figures = snapshot(store, config, digest, (start, end), now)
        if store.add_digest(
            digest.name, day.isoformat(), (start, end), due, figures, editions(digest, config), now
        ):
            fired += 1
            leads = sum(home["leads"] for home in figures["homes"])
            late = f", {round((now - due) / 60)} min late" if now - due >= 60 else ""
            log.info("digest %r of %s: %d leads%s", digest.name, day.isoformat(), leads, late)
    return fired


def snapshot(
    store: Store, config: Config, digest: Digest, span: tuple[float, float], now: float
) -> dict[str, Any]:
    """What the digest shows, kept with it: every channel and every resend shows the same."""
    homes = digest_figures(store, config, digest.homes, *span, now)
    return {"period": digest.period, "as_of": now, "homes": homes}


def preview(
    store: Store, config: Config, renderer: Renderer, digest: Digest, now: float
) -> dict[Channel, Message]:
    """The digest as its latest one went (or would go now), in every channel; nothing is
    written or sent."""
    calendar = Calendar(config.timezone, config.nation)
    day = latest_day(digest, calendar, now) or datetime.fromtimestamp(now, config.timezone).date()
    start, end = period(digest, calendar, day)
    last = store.last_digest(digest.name)
    if last is not None and last["day"] == day.isoformat():
        start = float(last["period_start"])
    elif last is not None and last["day"] < day.isoformat():
        start = catch_up(start, end, last)
    row = {
        "name": digest.name,
        "day": day.isoformat(),
        "period_start": start,
        "period_end": end,
        "figures": json.dumps(snapshot(store, config, digest, (start, end), now)),
    }
    view = digest_view(row, None, config)
    return {
        channel: renderer.render_digest(view, Target(channel, "preview", "preview"), "preview")
        for channel in Channel
    }


def write_preview(base: Path, messages: dict[Channel, Message], sender: str) -> list[Path]:
    """Each channel's payload as it would go: `<base>.slack.json`, `<base>.teams.json`, the
    email as `<base>.eml` and its HTML part alone as `<base>.html` (to open in a browser)."""
    base.parent.mkdir(parents=True, exist_ok=True)
    written: dict[str, bytes] = {}
    for channel, message in messages.items():
        if channel is Channel.EMAIL:
            mime = email.stamp(message, sender)
            written[".eml"] = bytes(mime)
            html = next(p for p in mime.walk() if p.get_content_type() == "text/html")
            written[".html"] = bytes(html.get_payload(decode=True))
        else:
            text = json.dumps(message.payload, indent=2, ensure_ascii=False) + "\n"
            written[f".{channel}.json"] = text.encode()
    paths = []
    for suffix, data in written.items():
        path = base.with_name(base.name + suffix)
        path.write_bytes(data)
        paths.append(path)
    return paths
