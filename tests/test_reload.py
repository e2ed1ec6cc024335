"""SIGHUP re-reads rules.toml and the templates, through the real `leadbot run` process: a bad
config is refused (every problem logged, ops told once, the old config goes on); a good one
applies to new leads, and queued deliveries to a destination it removed go to the fallback."""

from __future__ import annotations

import signal
import sqlite3
import time
from datetime import UTC, datetime

from conftest import SALES, World, published_by_key, wait_for, write_rules

from bot.demo.standin import redate

SLOW_RETRIES = '\n[retries]\nfirst = "1h"\n'  # a failed email stays queued during the test


def fresh(key: str) -> str:
    return redate([published_by_key()[key]], datetime.now(UTC))[0]


def status(world: World, key: tuple[str, str, str]) -> str:
    try:
        row = world.deliveries().get(key)
    except sqlite3.OperationalError:  # leadbot is still creating its tables
        return ""
    return str(row["status"]) if row else ""


def fast(world: World, rules: str) -> str:
    return rules.replace('interval = "1m"', 'interval = "1s"')


def test_a_bad_reload_is_refused_and_a_good_one_moves_orphans_to_the_fallback(
    world: World,
) -> None:
    rules = write_rules(world.folder, world.smtp.ca_file, extra=SLOW_RETRIES)
    good_text = fast(world, rules.read_text(encoding="utf-8"))
    rules.write_text(good_text, encoding="utf-8")
    world.config = rules
    world.smtp.fail_next(1, 451, "RCPT", rcpt=SALES)  # the sales email waits in the queue
    world.autumna.add(fresh("4:2000"))
    with world.running("run") as process:
        wait_for(
            lambda: (
                world.deliveries().get(("4:2000", "email", SALES), {"status": ""})["status"]
                == "retrying"
            ),
            what="the sales email to be queued for a retry",
        )
        # 1. A bad config: refused, the old one goes on.
        rules.write_text(good_text.replace("[[rules]]", "[[rulez]]", 1), encoding="utf-8")
        process.send_signal(signal.SIGHUP)
        wait_for(
            lambda: any("not reloaded" in str(p) for p in world.teams.payloads("ops")),
            what="ops to hear of the refused reload",
        )
        assert process.poll() is None
        world.autumna.add(fresh("2:1811"))
        wait_for(lambda: world.slack.messages_for("#rose-lodge"), what="the old rules to go on")

        # 2. A good config without the sales inbox: its queued email goes to the fallback.
        without_sales = (
            good_text.replace('sales-inbox = { email = ["sales@rosecare.example"] }\n', "")
            .replace('"home.manager_email", "sales-inbox"]', '"home.manager_email"]')
            .replace('notify = ["home.slack", "sales-inbox"]', 'notify = ["home.slack"]')
        )
        assert "sales-inbox" not in without_sales
        rules.write_text(without_sales, encoding="utf-8")
        process.send_signal(signal.SIGHUP)
        wait_for(
            lambda: status(world, ("4:2000", "email", SALES)) == "dead",
            what="the orphaned sales email to be dead-lettered",
        )
        wait_for(
            lambda: ("4:2000", "slack", "#leads-fallback") in world.deliveries(),
            what="the lead to go to the fallback",
        )
        world.autumna.add(fresh("6:2000"))  # a referral: no longer to sales
        wait_for(lambda: world.slack.messages_for("#willow-house"), what="the new rules")
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "reload refused: rules.toml: rulez: unknown key" in stderr
    refused = [p for p in world.teams.payloads("ops") if "not reloaded" in str(p)]
    assert len(refused) == 1  # ops is told once
    dead = world.deliveries()[("4:2000", "email", SALES)]
    assert "no longer in rules.toml" in dead["last_error"]
    assert ("6:2000", "email", SALES) not in world.deliveries()
    assert "1 queued deliveries to removed destinations went to the fallback" in stderr
