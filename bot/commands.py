"""What each `leadbot` command does. Parsing and logging live in cli.py; printing in report.py."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime

from . import pipeline, report
from .autumna import PollError, parse_body
from .cli import DEMO_FOLDER, db_path, load, settings_for, stop_on_signals
from .config import ConfigError
from .demo.standin import AutumnaStandin, bundled_documents, redate
from .render import Renderer
from .rules import route
from .store import Locked, Store, lock

log = logging.getLogger("leadbot")


def run(args: argparse.Namespace) -> int:
    config = load(args)
    settings = settings_for(config, args.demo)
    if not settings.demo:
        problems = settings.problems(config)
        if problems:
            raise ConfigError(problems)
    path = db_path(args, settings.demo)
    try:
        held = lock(path)
    except Locked as exc:
        print(f"leadbot: {exc}", file=sys.stderr)
        return 1
    store = Store(path)
    started = time.time()
    with held, ExitStack() as stack:
        sink = None
        if settings.demo:
            standin = stack.enter_context(
                AutumnaStandin(redate(bundled_documents(), datetime.now(UTC)))
            )
            settings = replace(settings, autumna_url=standin.url)
            sink = DEMO_FOLDER
            log.info(
                "demo: no Autumna API key is set, so leadbot polls a local Autumna "
                "stand-in (%s) with bundled leads and writes every message to %s/",
                standin.url,
                sink,
            )
        runner = pipeline.build(config, settings, store, backfill=args.backfill, sink=sink)
        with stop_on_signals() as stop:
            runner.stop = stop
            ok = runner.run(once=args.once)
    if settings.demo:
        print(report.demo_summary(store, config, started, DEMO_FOLDER, time.time()))
    store.close()
    return 0 if ok else 1


def check(args: argparse.Namespace) -> int:
    config = load(args)  # raises ConfigError with every problem in rules.toml
    problems = Renderer(config).check()
    settings = settings_for(config, args.demo)
    if not settings.demo:
        problems += settings.problems(config)
    for warning in config.warnings:
        print(f"warning: {warning}")
    if problems:
        raise ConfigError(problems)
    print(
        f"{config.path.name} is valid: {len(config.homes)} homes, {len(config.destinations)} "
        f"destinations, {len(config.rules)} rules; every template renders."
    )
    if settings.demo:
        print(
            "No Autumna API key is set: `leadbot run` will run the demo (local Autumna "
            "stand-in, messages written to leadbot-demo/). Environment not checked."
        )
    else:
        print("Environment: every secret and endpoint is set.")
    return 0


def explain(args: argparse.Namespace) -> int:
    config = load(args)
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
        print(report.explain_lead(lead, route(lead, config), renderer, config))
    for record in batch.unreadable:
        print(report.explain_unreadable(record, config))
    if not batch.leads and not batch.unreadable:
        print(f"{args.lead_file} holds no leads.")
    return 0


def status(args: argparse.Namespace) -> int:
    store = existing_store(args)
    if store is None:
        return 1
    try:
        config = load(args)
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


def purge(args: argparse.Namespace) -> int:
    config = load(args)
    store = existing_store(args)
    if store is None:
        return 1
    erased = pipeline.purge(store, config, time.time())
    print(
        f"Erased the personal details of {erased} lead{'s' * (erased != 1)} first seen more "
        f"than {config.privacy.retention.days} days ago; ids, times and delivery outcomes "
        f"are kept."
    )
    store.close()
    return 0


def existing_store(args: argparse.Namespace) -> Store | None:
    """The database that `run` uses; the demo's if that is the only one there is."""
    path = db_path(args, demo=False)
    if not path.exists() and (DEMO_FOLDER / "leadbot.db").exists() and not args.db:
        path = DEMO_FOLDER / "leadbot.db"
    if not path.exists():
        print(f"leadbot: no database at {path} yet: run `leadbot run` first", file=sys.stderr)
        return None
    return Store(path)
