"""leadbot's own messages to the ops destination: deliveries that failed for good, and polling
that has stopped working. Each is written as a notice with its deliveries, so it is sent (and
retried) like any lead, and said once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from .config import Config
from .models import Target
from .store import Store
from .view import format_moment

log = logging.getLogger(__name__)
LISTED = 15  # dead deliveries named in one notice; the rest are counted


def ops_targets(config: Config) -> tuple[Target, ...]:
    return config.destinations[config.ops].targets


RESCUE = "fallback: every destination failed"
NOT_LEADS = ("notice:", "digest:", "edit:", "ephemeral:")  # nothing for the fallback to do


def rescue(store: Store, config: Config, subjects: list[str], now: float) -> list[str]:
    """A lead whose destinations have all failed for good goes to the fallback destination at
    once: a lead is never lost. Returns the leads rescued."""
    rescued = []
    fallback = config.destinations[config.fallback].targets
    for subject in dict.fromkeys(subjects):
        if not subject.startswith(NOT_LEADS) and store.all_dead(subject):
            store.add_targets(subject, ((t, (RESCUE,)) for t in fallback), False, now)
            if not store.all_dead(subject):
                rescued.append(subject)
                log.warning(
                    "every destination of %s failed; it goes to the fallback (%s)",
                    subject,
                    config.fallback,
                )
    return rescued


def dead_letters(store: Store, config: Config, now: float) -> int:
    """Tell ops once about deliveries that failed for good (a batch in one notice)."""
    dead = store.unannounced_dead()
    if not dead:
        return 0
    rescued = [s for s in dict.fromkeys(d.subject for d in dead) if store.reached_by(s, RESCUE)]
    lines = [
        f"• {d.subject} → {d.target.label} ({d.target.channel} {d.target.address}): {d.last_error}"
        for d in dead[:LISTED]
    ]
    if len(dead) > LISTED:
        lines.append(f"• … and {len(dead) - LISTED} more (see `leadbot status`)")
    if rescued:
        lines.append(
            f"Every destination of {', '.join(rescued)} failed, so "
            f"{'it goes' if len(rescued) == 1 else 'they go'} to the fallback "
            f"destination ({config.fallback})."
        )
    lines.append(
        "Fix the cause (the reason is given for each), then run `leadbot resend --all "
        "--dead` to send them again."
    )
    title = f"{len(dead)} deliver{'y' if len(dead) == 1 else 'ies'} failed for good"
    store.announce_dead(
        [d.id for d in dead], ("dead", title, "\n".join(lines)), ops_targets(config), now
    )
    log.error("%s; ops (%s) is told", title, config.ops)
    return len(dead)


def poll_health(store: Store, config: Config, now: float) -> None:
    """After `polling.alert_after` without a successful poll, tell ops once; tell them again
    when polling recovers."""
    limit = config.polling.alert_after.total_seconds()
    for account in config.accounts:
        state = store.poll_state(account.name)
        if state is None:
            continue
        failing = state["failing_since"]
        if failing and not state["alerted"] and now - failing >= limit:
            since = format_moment(datetime.fromtimestamp(failing, UTC), config.timezone)
            minutes = int((now - failing) // 60)
            store.add_notice(
                "poll-failing",
                f"Autumna polling is failing ({account.name})",
                (
                    f"No poll of Autumna account {account.name!r} has succeeded since {since} "
                    f"({minutes} minutes). Last error: {state['last_error']}.\n"
                    f"Autumna answers a wrong API key and an outage alike (HTTP 500), so check "
                    f"both: that {account.key_var} holds the account's current API key, and that "
                    f"Autumna (www.autumna.co.uk) is up and reachable from this machine.\n"
                    f"No lead is lost: when polling recovers, leadbot asks for everything since "
                    f"the last good poll."
                ),
                ops_targets(config),
                now,
            )
            store.set_alerted(account.name, True)
            log.error("polling of %r has failed for %d minutes; ops is told", account.name, minutes)
        elif not failing and state["alerted"]:
            store.add_notice(
                "poll-recovered",
                f"Autumna polling has recovered ({account.name})",
                f"Polling Autumna account {account.name!r} works again; leads "
                f"from the gap are being delivered now.",
                ops_targets(config),
                now,
            )
            store.set_alerted(account.name, False)
