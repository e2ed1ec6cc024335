"""Wires a run, in one place: where the config and the database are, the environment's secrets,
the lock that keeps one leadbot per database, the demo (only when asked), and the stages

    poll -> remember -> route -> render -> deliver
    (poller.py, store/, rules.py, render.py, dispatch.py + channels/)

joined into the run loop (runner.py), with real channels or the demo's folder.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
from slack_sdk import WebClient

from .autumna import AutumnaClient
from .channels.email import EmailChannel
from .channels.sink import FolderSink
from .channels.slack import KeptAliveClient, SlackChannel
from .channels.teams import TeamsChannel
from .claims import ClaimEvent
from .config import Config, ConfigError
from .dispatch import Dispatcher, Sender
from .limits import Lanes, RetryPolicy
from .listener import SlackListener
from .loader import load_config
from .lock import lock
from .models import Channel
from .poller import Poller
from .reload import reload
from .render import Renderer
from .runner import Runner, Watch
from .settings import Settings
from .store import Store
from .watcher import Watcher

log = logging.getLogger(__name__)
DEMO_FOLDER = Path("leadbot-demo")  # the demo's messages and its own database, never another


def config_path(option: Path | None, env: Mapping[str, str] = os.environ) -> Path:
    return Path(option or env.get("LEADBOT_CONFIG") or "rules.toml")


def db_path(option: Path | None, env: Mapping[str, str] = os.environ) -> Path:
    return Path(option or env.get("LEADBOT_DB") or "leadbot.db")


def demo_db() -> Path:
    return DEMO_FOLDER / "leadbot.db"


def load(option: Path | None) -> Config:
    return load_config(config_path(option))


def environment(config: Config, env: Mapping[str, str] = os.environ) -> Settings:
    """Secrets and endpoints for a real run. A missing key, token or server is a configuration
    error like any other: ConfigError names each variable to set."""
    settings = Settings.from_env(env, config)
    problems = settings.problems(config)
    if problems:
        raise ConfigError(problems)
    return settings


@contextmanager
def opened(path: Path) -> Iterator[Store]:
    """The database, held for this process alone (lock.Locked if another leadbot has it)."""
    with lock(path):
        store = Store(path)
        try:
            yield store
        finally:
            store.close()


@contextmanager
def demo(config: Config, env: Mapping[str, str] = os.environ) -> Iterator[Settings]:
    """The demo's world: a local Autumna stand-in serving the bundled leads, freshly dated."""
    from .demo.standin import AutumnaStandin, bundled_documents, redate

    if any(env.get(account.key_var, "").strip() for account in config.accounts):
        log.info("demo: asked for with --demo, so the Autumna key in the environment is not used")
    if env.get("LEADBOT_DB"):
        log.info("demo: LEADBOT_DB is not used; the demo keeps its own %s", demo_db())
    with AutumnaStandin(redate(bundled_documents(), datetime.now(UTC))) as standin:
        log.info(
            "demo: polling a local Autumna stand-in (%s) with bundled leads; every message is "
            "written to %s/",
            standin.url,
            DEMO_FOLDER,
        )
        yield Settings.for_demo(config, standin.url)


def build(
    config: Config,
    settings: Settings,
    store: Store,
    backfill: bool = False,
    sink: Path | None = None,
    stop: threading.Event | None = None,
    console: bool = True,
) -> Runner:
    """Assemble the stages for a run: real channels, or the demo's folder sink. `console`: serve
    the web console too (`run`, not `run --once`)."""
    http = httpx.Client(
        timeout=httpx.Timeout(30.0, connect=10.0), transport=httpx.HTTPTransport(retries=1)
    )
    senders: dict[Channel, Sender]
    if sink is not None:
        folder = FolderSink(sink)
        senders = {channel: folder for channel in Channel}
    else:
        senders = {
            Channel.SLACK: SlackChannel(
                settings.slack_token, settings.slack_url or None, http=http
            ),
            Channel.EMAIL: EmailChannel(
                settings.smtp_host,
                settings.smtp_port,
                settings.smtp_sender,
                config.email.tls,
                settings.smtp_username,
                settings.smtp_password,
                config.email.ca_file,
            ),
            Channel.TEAMS: TeamsChannel(settings.teams_webhooks, http),
        }
    # The demo's folder has no rate limit to respect.
    lanes = Lanes({c: (1e6, 1e6) for c in Channel}) if sink is not None else None
    retries = config.retries
    policy = RetryPolicy(
        retries.first.total_seconds(), retries.cap.total_seconds(), retries.give_up.total_seconds()
    )
    claiming = claims_in_slack(config, settings, demo=sink is not None)
    renderer = Renderer(config, claiming, settings.web_secret)
    dispatcher = Dispatcher(store, renderer, senders, config, policy, lanes)
    poller = Poller(
        AutumnaClient(settings.autumna_url, http), settings.api_keys, store, config, backfill
    )
    runner = Runner(poller, dispatcher, config, stop)
    runner.closers.append(http.close)
    runner.reload = lambda: reload(
        config.path,
        settings,
        store,
        lambda new: runner.adopt(new, Renderer(new, claiming, settings.web_secret)),
        runner.config,
        time.time(),
    )
    if sink is None and claiming == "button":
        listener = SlackListener(
            settings.slack_app_token,
            settings.slack_token,
            runner.inbox,
            config.claims.reaction,
            settings.slack_url or None,
            ping_interval=2.0,
        )
        listener.start()
        runner.closers.append(listener.close)
    elif sink is None and claiming == "reaction":
        runner.watch = slack_watch(config, settings, http)
    path = store.db_file()  # the console opens its own connections to the same file
    if console and sink is None and settings.web_listen and path is not None:
        from .web import create_app, serve  # the console's libraries load only when it is on

        app = create_app(config, settings, path, runner=runner, claiming=claiming)
        runner.closers.append(serve(app, settings.web_listen))
    return runner


def claims_in_slack(config: Config, settings: Settings, demo: bool) -> str:
    """How people claim in Slack: "button" (Socket Mode, with SLACK_APP_TOKEN), "reaction" (a
    reaction or a thread reply, found by asking Slack), or "" (no Slack: `leadbot claim`)."""
    if Channel.SLACK not in config.targets_used():
        return ""
    if settings.slack_app_token and not demo:
        return "button"
    return "reaction" if settings.slack_token or demo else ""


def slack_watch(config: Config, settings: Settings, http: httpx.Client) -> Watch:
    """Ask Slack about the unclaimed leads' messages (bot token only, no Socket Mode)."""
    client = KeptAliveClient(
        http,
        token=settings.slack_token,
        base_url=settings.slack_url or WebClient.BASE_URL,
        timeout=15,
        retry_handlers=[],
    )
    found: list[Watcher] = []

    def watch(messages: list[tuple[str, str, str]], stop: threading.Event) -> list[ClaimEvent]:
        if not found:  # the bot's own reactions and replies never count: learn who it is
            found.append(Watcher(client, config.claims.reaction, client.auth_test()["user_id"]))
        return found[0].check(messages, stop)

    return watch
