"""What each `leadbot` command does. Parsing and logging live in cli.py; printing in report.py."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import UTC

from . import digest as digests
from . import health, pipeline, report, reporting, sendtest
from .claims import minutes
from .config import Config, ConfigError
from .lock import Locked
from .parse import PollError, parse_body
from .render import Renderer
from .rules import route
from .runner import purge as purge_old
from .runner import signals
from .settings import Settings
from .store import Store
from .store import backup as store_backup

log = logging.getLogger("leadbot")


def run(args: argparse.Namespace) -> int:
    config = pipeline.load(args.config)
    if args.demo:
        return run_demo(args, config)
    settings = pipeline.environment(config)  # ConfigError names every variable to set
    for warning in config.warnings:
        log.warning("%s", warning)
    try:
        with pipeline.opened(pipeline.db_path(args.db)) as store:
            runner = pipeline.build(
                config, settings, store, backfill=args.backfill, console=not args.once
            )
            with signals(runner):
                ok = runner.run(once=args.once)
    except Locked as exc:
        print(f"leadbot: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


def run_demo(args: argparse.Namespace, config: Config) -> int:
    """The demo, only when asked: its own folder and database, whatever --db says."""
    if args.db:
        log.info("demo: --db is not used; the demo keeps its own %s", pipeline.demo_db())
    started = time.time()
    try:
        with (
            pipeline.opened(pipeline.demo_db()) as store,
            pipeline.demo(config) as settings,
        ):
            runner = pipeline.build(
                config, settings, store, backfill=args.backfill, sink=pipeline.DEMO_FOLDER
            )
            with signals(runner):
                ok = runner.run(once=args.once)
            print(report.demo_summary(store, config, started, pipeline.DEMO_FOLDER, time.time()))
    except Locked as exc:
        print(f"leadbot: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


def check(args: argparse.Namespace) -> int:
    if args.online and args.demo:
        print("leadbot check: --online asks the real Autumna; leave out --demo", file=sys.stderr)
        return 2
    config = pipeline.load(args.config)  # raises ConfigError with every problem in rules.toml
    problems = Renderer(config).check()
    if not args.demo:
        problems += Settings.from_env(os.environ, config).problems(config)
    for warning in config.warnings:
        print(f"warning: {warning}")
    if problems:
        raise ConfigError(problems)
    print(
        f"{config.path.name} is valid: {len(config.homes)} homes, {len(config.destinations)} "
        f"destinations, {len(config.rules)} rules; every template renders."
    )
    if args.demo:
        print("Checked for the demo (`leadbot run --demo`): the environment was not checked.")
    else:
        print("Environment: every secret and endpoint is set.")
    if args.online:
        from . import onboard  # only --online asks Autumna

        return onboard.check_online(config, os.environ)
    return 0


def init(args: argparse.Namespace) -> int:
    """A starting rules.toml: the homes Autumna lists for the keys, or the documented example."""
    from datetime import date

    from . import onboard

    return onboard.init(pipeline.config_path(args.config), os.environ, args.force, date.today())


def explain(args: argparse.Namespace) -> int:
    config = pipeline.load(args.config)
    try:
        text = args.lead_file.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        print(f"leadbot: cannot read {args.lead_file}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        batch = parse_body(text, "explain")
    except PollError as exc:
        print(f"leadbot: {args.lead_file}: {exc}", file=sys.stderr)
        return 2
    renderer = Renderer(config)
    for lead in batch.leads:
        print(report.explain_lead(lead, route(lead, config), renderer, config, time.time()))
    for record in batch.unreadable:
        print(report.explain_unreadable(record, config))
    if not batch.leads and not batch.unreadable:
        print(f"{args.lead_file} holds no leads.")
    return 0


def status(args: argparse.Namespace) -> int:
    if args.check:
        return status_check(args)
    store = existing_store(args)
    if store is None:
        return 1
    try:
        config: Config | None = pipeline.load(args.config)
    except ConfigError:
        config = None  # status still works; homes are then shown by service id
    print(report.status(store, config, args.limit, time.time()))
    store.close()
    return 0


def resend(args: argparse.Namespace) -> int:
    if not (args.all or args.lead or args.destination):
        print(
            "leadbot resend: say which: --all, --lead KEY and/or --destination NAME",
            file=sys.stderr,
        )
        return 2
    store = existing_store(args)
    if store is None:
        return 1
    chosen = store.failed(args.lead, args.destination, args.dead)
    count = store.requeue([d.id for d in chosen], time.time())
    for delivery in chosen:
        print(
            f"queued again: {delivery.subject} -> {delivery.target.label} "
            f"({delivery.target.key}), was {delivery.status}: {delivery.last_error}"
        )
    print(
        f"{count} deliver{'y' if count == 1 else 'ies'} queued; a running leadbot sends them "
        f"now, or the next `leadbot run` will."
    )
    store.close()
    return 0


def claim(args: argparse.Namespace) -> int:
    """A claim made anywhere but Slack: recorded like any other, first wins."""
    name = " ".join(args.by.split())
    if not name:
        print('leadbot claim: say who will call them: --by "Name"', file=sys.stderr)
        return 2
    store = existing_store(args)
    if store is None:
        return 1
    try:
        found, won = store.claim_lead(args.lead, name, "", "cli", time.time())
    finally:
        store.close()
    if found is None:
        print(f"leadbot: no lead {args.lead} (see `leadbot status`)", file=sys.stderr)
        return 1
    if not won:
        print(
            f"leadbot: {args.lead} is already claimed by {found['by_name']} ({found['via']}); "
            "the first claim stands",
            file=sys.stderr,
        )
        return 1
    print(
        f"{args.lead} is claimed by {name}, {minutes(found['seconds_to_claim'])} after it "
        "arrived. Escalation has stopped; its Slack messages will show the claim (a running "
        "leadbot edits them now, or the next `leadbot run` will)."
    )
    return 0


def purge(args: argparse.Namespace) -> int:
    config = pipeline.load(args.config)
    store = existing_store(args)
    if store is None:
        return 1
    erased = purge_old(store, config, time.time())
    print(
        f"Erased the personal details of {erased} lead{'s' * (erased != 1)} first seen more "
        f"than {config.privacy.retention.days} days ago; ids, times and delivery outcomes "
        f"are kept."
    )
    store.close()
    return 0


def leads_report(args: argparse.Namespace) -> int:
    """`leadbot report`: every lead of a period with its first message and its claim, and
    each home's figures."""
    try:
        config: Config | None = pipeline.load(args.config)
    except ConfigError as exc:
        config = None  # the report still works; homes are then shown by service id
        print(
            f"leadbot: rules.toml has {len(exc.problems)} problem(s) (see `leadbot check`); "
            "homes are shown by service id",
            file=sys.stderr,
        )
    now = time.time()
    tz = config.timezone if config else UTC
    since = reporting.since_moment(args.since, tz, now)
    if since is None:
        print(
            f'leadbot report: --since {args.since!r}: write "30d", "12h" or a date '
            "such as 2026-11-01",
            file=sys.stderr,
        )
        return 2
    service = reporting.home_by_name(config, args.home) if args.home else None
    if args.home and service is None:
        names = ", ".join(h.name for h in config.homes.values()) if config else ""
        print(
            f"leadbot report: no home named {args.home!r}"
            + (f" (homes: {names})" if names else "; give its Autumna service id"),
            file=sys.stderr,
        )
        return 2
    store = existing_store(args)
    if store is None:
        return 1
    try:
        services = () if service is None else (service,)
        leads = reporting.lead_figures(store, config, since, now, services)
    finally:
        store.close()
    text = reporting.report_document(args.format, leads, tz, since, now)
    if args.format == "csv":
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.buffer.flush()
    else:
        print(text)
    return 0


def digest(args: argparse.Namespace) -> int:
    """`leadbot digest NAME --preview`: the digest in every channel, written, never sent."""
    config = pipeline.load(args.config)
    found = next((d for d in config.digests if d.name == args.name), None)
    if found is None:
        names = ", ".join(d.name for d in config.digests) or "none yet: add [[digests]]"
        print(f"leadbot digest: no digest named {args.name!r} (digests: {names})", file=sys.stderr)
        return 2
    store = existing_store(args)
    if store is None:
        return 1
    try:
        messages = digests.preview(store, config, Renderer(config), found, time.time())
    finally:
        store.close()
    if args.to is None:
        for channel, message in messages.items():
            print(f"── {channel} ──\n{report.show(message.payload)}\n")
        return 0
    sender = config.email.sender or "leadbot@preview.invalid"
    for path in digests.write_preview(args.to / f"digest-{found.name}", messages, sender):
        print(path)
    return 0


def status_check(args: argparse.Namespace) -> int:
    """`status --check`, a health check: one line; 0 healthy, 1 not (never 2, which Docker's
    HEALTHCHECK reserves)."""
    try:
        config = pipeline.load(args.config)
    except ConfigError as exc:
        print(
            f"unhealthy: {pipeline.config_path(args.config)} has {len(exc.problems)} "
            "problem(s): `leadbot check` lists them"
        )
        return 1
    store = existing_store(args)
    if store is None:
        return 1
    try:
        healthy, line = health.polling(store, config, time.time())
    finally:
        store.close()
    print(line)
    return 0 if healthy else 1


def send_test(args: argparse.Namespace) -> int:
    """A clearly marked test message to each address, through the real channels; nothing is
    stored (the database is not opened)."""
    if bool(args.all) == bool(args.destination) or (args.all and args.home):
        print(
            "leadbot send-test: name one DESTINATION (home.* with --home SERVICE_ID), or --all",
            file=sys.stderr,
        )
        return 2
    config = pipeline.load(args.config)
    try:
        trials = (
            sendtest.everything(config)
            if args.all
            else sendtest.chosen(config, args.destination, args.home)
        )
    except sendtest.NoSuchDestination as exc:
        print(f"leadbot send-test: {exc}", file=sys.stderr)
        return 2
    outcomes = sendtest.send(trials, config, Settings.from_env(os.environ, config))
    print(sendtest.table(outcomes) if args.all else sendtest.lines(outcomes))
    return 0 if all(o.accepted for o in outcomes) else 1


def backup(args: argparse.Namespace) -> int:
    """A consistent copy of the live database, taken while `run` runs (not under its lock)."""
    source = pipeline.db_path(args.db)
    try:
        copy = store_backup.backup(source, args.path)
    except store_backup.BackupError as exc:
        print(f"leadbot backup: {exc}", file=sys.stderr)
        return 1
    print(
        f"Backed up {source} to {copy.path}: {copy.leads} leads, {copy.deliveries} deliveries, "
        f"{copy.size / 1024:.0f} KiB, readable by its owner only.\n"
        f"To restore: stop leadbot, delete {source}-wal and {source}-shm if they are there, "
        f"copy the backup over {source}, and start leadbot."
    )
    return 0


def existing_store(args: argparse.Namespace) -> Store | None:
    """The database that `run` uses (the demo's only with --demo: never as a fall-back)."""
    path = pipeline.demo_db() if getattr(args, "demo", False) else pipeline.db_path(args.db)
    if not path.exists():
        hint = "leadbot run --demo" if getattr(args, "demo", False) else "leadbot run"
        print(f"leadbot: no database at {path} yet: run `{hint}` first", file=sys.stderr)
        return None
    return Store(path)
