"""Change without a restart: SIGHUP (`systemctl reload leadbot`) re-reads rules.toml and the
group's templates. A new config with any problem is refused: every problem is logged, ops is
told once, and the old config keeps running. A good one applies to leads seen from then on;
deliveries already queued are never lost: one whose destination no longer exists is
dead-lettered with that reason, and its lead goes to the fallback destination.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from .alerts import ops_targets
from .config import Config, ConfigError, home_targets
from .loader import load_config
from .models import Status
from .render import Renderer
from .settings import Settings, redact
from .store import Store

log = logging.getLogger(__name__)
REMOVED = "its destination is no longer in rules.toml (reloaded)"
MOVED = "fallback: its destination was removed by a reload"


def load_checked(path: Path, settings: Settings) -> tuple[Config | None, list[str]]:
    """The new config if rules.toml, every template and the environment are good; else the
    problems, each with what to fix."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        return None, exc.problems
    env = Settings.from_env(os.environ, config)
    problems = Renderer(config).check() + (env.problems(config) if not settings.demo else [])
    # The running process keeps its secrets: a new Slack token or key needs a restart.
    return (None, problems) if problems else (config, [])


def retire_orphans(store: Store, config: Config, now: float) -> int:
    """Queued deliveries whose destination the new config no longer has: dead, with the reason,
    and their leads to the fallback destination. Returns how many."""
    known = {t.key for d in config.destinations.values() for t in d.targets}
    for home in config.homes.values():
        known |= {t.key for t in home_targets(home, None, config.privacy)}
    queued = store.deliveries("status IN (?, ?)", [Status.PENDING, Status.RETRYING], limit=100_000)
    orphans = [
        d
        for d in queued
        if d.target.key not in known
        and not d.subject.startswith(("notice:", "edit:", "ephemeral:"))
    ]
    fallback = config.destinations[config.fallback].targets
    with store.batch():
        for delivery in orphans:
            store.mark_failed(delivery.id, REMOVED, None)
            lead = delivery.subject
            if lead.startswith("esc:"):
                lead = lead[4:].rpartition(":")[0]
            store.add_targets(lead, ((t, (MOVED,)) for t in fallback), delivery.urgent, now)
    return len(orphans)


def reload(
    path: Path,
    settings: Settings,
    store: Store,
    apply: Callable[[Config], None],
    old: Config,
    now: float,
) -> bool:
    """Try the new config; apply it if good. Returns whether it was applied."""
    config, problems = load_checked(path, settings)
    if config is None:
        for problem in problems:
            log.error("reload refused: %s", redact(problem))
        text = "\n".join(f"• {p}" for p in problems[:20]) + (
            "\nThe old configuration keeps running. Fix these, then reload again "
            "(`systemctl reload leadbot`, or send leadbot SIGHUP)."
        )
        title = f"rules.toml was not reloaded: {len(problems)} problem{'s' * (len(problems) > 1)}"
        store.add_notice("reload", title, redact(text), ops_targets(old), now)
        return False
    apply(config)
    moved = retire_orphans(store, config, now)
    log.info(
        "reloaded %s: %d homes, %d destinations, %d rules%s",
        path.name,
        len(config.homes),
        len(config.destinations),
        len(config.rules),
        f"; {moved} queued deliveries to removed destinations went to the fallback"
        if moved
        else "",
    )
    return True
