"""Shared fixtures for the end-to-end and CLI tests: the loopback stand-ins, a test rules.toml
and a helper that runs the real `leadbot` as a subprocess with a controlled environment.

Nothing here fakes leadbot itself: it talks to real servers on 127.0.0.1 (Autumna, Slack, Teams
over verified TLS, SMTP with STARTTLS and AUTH) through its real clients.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from standins.autumna import AutumnaStandin
from standins.slack import SlackStandin
from standins.smtp import SmtpStandin
from standins.teams import TlsTeamsStandin

from bot.config import Config
from bot.demo.standin import redate
from bot.loader import load_config
from bot.render import Renderer

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = sorted((ROOT / "bot" / "demo" / "published").glob("*.json"))
ROOT_RULES = ROOT / "rules.toml"

# Secrets shaped like the real ones. Tests assert that none of them ever leaks.
API_KEY = "Zk3v9QpL2mX7rT4wY8bN1cD6fG5hJ0aS9eU3iO7q"  # 40 letters and digits, like Autumna's
SLACK_TOKEN = "xoxb-4242424242-1717171717-Qw3rTy8uIo9pAs2dFg5hJk7l"
SMTP_USER = "leadbot-mailer"
SMTP_PASSWORD = "Smtp-Pa55word-4c1d-9e7b"
SENDER = "leads@rosecare.example"

ROSE, WILLOW = 100000, 200000
ROSE_MANAGER_SLACK, WILLOW_MANAGER_SLACK = "U024BE7LH", "U024BE7LJ"
ROSE_MANAGER_EMAIL = "amira.khan@rosecare.example"
SALES = "sales@rosecare.example"
TEAMS_VARS = {"TEAMS_GROUP_WEBHOOK": "group", "TEAMS_OPS_WEBHOOK": "ops"}  # env var -> webhook

RULES = """\
[group]
name = "Rose Care Homes"
timezone = "Europe/London"

[polling]
interval = "1m"
overlap = "15m"
lookback = "{lookback}"
history = "30d"

[email]
host = "smtp.rosecare.example"        # SMTP_HOST / SMTP_PORT point it at the stand-in
port = 587
sender = "Rose Care leads <{sender}>"
tls = "starttls"
ca_file = "{ca_file}"

[routing]
fallback = "fallback-slack"
ops = "ops-teams"

[homes.100000]
name = "Rose Lodge"
region = "London"
slack = "#rose-lodge"
manager_slack = "{rose_manager}"
manager_email = "{rose_email}"

[homes.200000]
name = "Willow House"
region = "North West"
slack = "#willow-house"
manager_slack = "{willow_manager}"
manager_email = "tom.reid@rosecare.example"

[destinations]
fallback-slack = {{ slack = "#leads-fallback" }}
sales-inbox = {{ email = ["{sales}"] }}
group-teams = {{ teams = "${{TEAMS_GROUP_WEBHOOK}}" }}
ops-teams = {{ teams = "${{TEAMS_OPS_WEBHOOK}}", privacy = "minimal" }}

[[rules]]
name = "Visit requests ping the home and its manager"
when = {{ category = ["In Person Visit Request", "Virtual Visit Request"] }}
notify = ["home.slack", "home.manager_slack"]

[[rules]]
name = "Call-back requests are urgent"
when = {{ category = "Call Back Request" }}
notify = ["home.slack", "home.manager_email", "sales-inbox"]
urgent = true

[[rules]]
name = "Referrals and placements go to the home and sales"
when = {{ category = [6, 7, 8] }}
notify = ["home.slack", "sales-inbox"]

[[rules]]
name = "Everything goes to the group channel"
notify = ["group-teams"]
"""

# Where each published example must arrive under RULES: (channel, address) pairs; Teams by
# webhook name. Keyed by file name; the lead key is category id + lead id.
PUBLISHED_ROUTES: dict[str, tuple[str, set[tuple[str, str]]]] = {
    "1-contact-form-message.json": ("1:2000", {("teams", "group")}),
    "2-in-person-visit-request.json": (
        "2:1811",
        {("slack", "#rose-lodge"), ("slack", ROSE_MANAGER_SLACK), ("teams", "group")},
    ),
    "3-virtual-visit-request.json": (
        "3:1812",
        {("slack", "#rose-lodge"), ("slack", ROSE_MANAGER_SLACK), ("teams", "group")},
    ),
    "4-call-back-request.json": (
        "4:2000",
        {
            ("slack", "#rose-lodge"),
            ("email", ROSE_MANAGER_EMAIL),
            ("email", SALES),
            ("teams", "group"),
        },
    ),
    "5-email-details-request.json": ("5:2000", {("teams", "group")}),
    "6-referral-with-contact.json": (
        "6:2000",
        {("slack", "#willow-house"), ("email", SALES), ("teams", "group")},
    ),
    "7-referral-without-contact.json": (
        "7:2000",
        {("slack", "#willow-house"), ("email", SALES), ("teams", "group")},
    ),
    "8-placement.json": (
        "8:2000",
        {("slack", "#willow-house"), ("email", SALES), ("teams", "group")},
    ),
}


def write_rules(
    folder: Path, ca_file: str, *, lookback: str = "24h", extra: str = "", name: str = "rules.toml"
) -> Path:
    """The test rules.toml: homes 100000 and 200000 like the root one, a destination on each
    channel, rules for visits, urgent call-backs, referrals and a group channel; the fallback
    is a Slack channel and ops a Teams webhook. `extra` is appended (more TOML tables)."""
    path = folder / name
    path.write_text(
        RULES.format(
            lookback=lookback,
            sender=SENDER,
            ca_file=ca_file,
            rose_manager=ROSE_MANAGER_SLACK,
            rose_email=ROSE_MANAGER_EMAIL,
            willow_manager=WILLOW_MANAGER_SLACK,
            sales=SALES,
        )
        + extra,
        encoding="utf-8",
    )
    return path


def published_documents(now: datetime | None = None) -> list[str]:
    """The eight published leads, as published (two are not valid JSON), dated recently."""
    docs = [p.read_text(encoding="utf-8").strip() for p in PUBLISHED]
    return redate(docs, now or datetime.now(UTC))


def published_by_key(now: datetime | None = None) -> dict[str, str]:
    """The same, by lead key ("4:2000")."""
    return {
        PUBLISHED_ROUTES[path.name][0]: doc
        for path, doc in zip(PUBLISHED, published_documents(now), strict=True)
    }


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class World:
    """One leadbot installation: its folder, rules.toml, database and the servers it talks to."""

    folder: Path
    autumna: AutumnaStandin
    slack: SlackStandin
    teams: TlsTeamsStandin
    smtp: SmtpStandin
    config: Path
    db: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, **overrides: str | None) -> dict[str, str]:
        """leadbot's whole environment: nothing is inherited from the test run but PATH."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.folder),
            "LANG": "C.UTF-8",
            "TZ": "Asia/Kolkata",  # far from UTC: a local time sent as UTC would show
            "LEADBOT_WEB_LISTEN": "",  # no console (tests of the console turn it on)
            "PYTHONDONTWRITEBYTECODE": "1",
            "AUTUMNA_API_URL": self.autumna.url,
            "AUTUMNA_API_KEY": API_KEY,
            "SLACK_BOT_TOKEN": SLACK_TOKEN,
            "SLACK_API_URL": self.slack.base_url,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.smtp.port),
            "SMTP_USERNAME": SMTP_USER,
            "SMTP_PASSWORD": SMTP_PASSWORD,
            "SSL_CERT_FILE": self.teams.ca_file,
            **{var: self.teams.url(name) for var, name in TEAMS_VARS.items()},
            **self.extra_env,
        }
        for name, value in overrides.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def command(self, *args: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bot",
            "--config",
            str(self.config),
            "--db",
            str(self.db),
            *args,
        ]

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
        return run_leadbot(self.command(*args), env or self.env(), self.folder, timeout)

    def once(self, *args: str, **env: str | None) -> Result:
        return self.run("run", "--once", *args, env=self.env(**env))

    @contextmanager
    def running(self, *args: str) -> Iterator[subprocess.Popen[str]]:
        """`leadbot run ...` in the background; killed if the test leaves it running."""
        with start_leadbot(self.command(*args), self.env(), self.folder) as process:
            yield process

    def secrets(self) -> list[str]:
        sigs = [url.rsplit("sig=", 1)[1] for url in self.teams_urls()]
        return [API_KEY, SLACK_TOKEN, SMTP_PASSWORD, *self.teams_urls(), *sigs]

    def teams_urls(self) -> list[str]:
        return [self.teams.url(name) for name in TEAMS_VARS.values()]

    def query(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        return query(self.db, sql, *params)

    def deliveries(self) -> dict[tuple[str, str, str], sqlite3.Row]:
        """(lead key, channel, address) -> its delivery row."""
        return {
            (r["subject"], r["channel"], r["address"]): r
            for r in self.query("SELECT * FROM deliveries")
        }

    def change(self, sql: str, *params: Any) -> int:
        """Change leadbot's database behind its back (as a crash or an admin would)."""
        db = sqlite3.connect(self.db, timeout=10)
        try:
            with db:
                return db.execute(sql, params).rowcount
        finally:
            db.close()

    def make_retries_due(self) -> int:
        """Retry scheduling is tested elsewhere: here a retrying delivery is simply made due."""
        return self.change("UPDATE deliveries SET next_attempt_at = 0 WHERE status = 'retrying'")


def query(db_path: Path, sql: str, *params: Any) -> list[sqlite3.Row]:
    """Read leadbot's database from outside, as an admin would (read-only)."""
    if not db_path.exists():
        return []
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        db.row_factory = sqlite3.Row
        return list(db.execute(sql, params))
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []  # leadbot has created the file but not yet its tables
        raise
    finally:
        db.close()


def bare_env(folder: Path, **variables: str) -> dict[str, str]:
    """A clean environment: no Autumna key, no tokens, unless given."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(folder),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LEADBOT_WEB_LISTEN": "",  # no console (tests of the console turn it on)
        **variables,
    }


def run_leadbot(command: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> Result:
    done = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    return Result(done.returncode, done.stdout, done.stderr)


@contextmanager
def start_leadbot(
    command: list[str], env: dict[str, str], cwd: Path
) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)


def wait_for(condition: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextmanager
def open_world(folder: Path, documents: list[str] | None = None) -> Iterator[World]:
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        autumna = AutumnaStandin(documents or [])
        # serve_forever's default half-second poll makes every shutdown take 0.5 s
        autumna.thread = threading.Thread(
            target=autumna.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        stack.enter_context(autumna)
        slack = stack.enter_context(SlackStandin(token=SLACK_TOKEN))
        teams = stack.enter_context(TlsTeamsStandin(folder))
        smtp = stack.enter_context(
            SmtpStandin(tls="starttls", username=SMTP_USER, password=SMTP_PASSWORD)
        )
        config = write_rules(folder, smtp.ca_file)
        yield World(folder, autumna, slack, teams, smtp, config, folder / "leadbot.db")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """Fresh stand-ins and an empty leadbot folder for one test."""
    with open_world(tmp_path / "leadbot") as opened:
        yield opened


# The example rules.toml and its renderer, shared by the rendering tests.
@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(ROOT_RULES)


@pytest.fixture(scope="module")
def renderer(config: Config) -> Renderer:
    return Renderer(config)
