"""The fault harness: the real `leadbot run` process against loopback stand-ins that misbehave
on command, killed with SIGKILL at chosen or random moments, then left to drain, and the
delivery invariant checked by comparing the database with what the stand-ins accepted.

A run is a list of `Life`s: each starts leadbot, plays timed `Step`s (leads arriving, faults
injected, leads claimed with `leadbot claim` as its own process) and ends in a `Kill` (SIGKILL on
a timer, or from inside a stand-in right after it accepted the n-th message of a channel and
before it answered: the widest crash window) and steps played while leadbot is down, or, for
the last one, in a drain and a clean SIGTERM. `chaos_plan(rng)` draws such a run from a seed.
With `escalate=True` the rules give some leads escalation steps a few seconds long (ESCALATE),
so steps fall due while leadbot runs, is killed, and is down.

The invariant (`World.check`):
  1. every lead Autumna served is in the database, with the deliveries routing chose (the
     deliveries table is written before anything is sent, so it is the list of promises);
  2. every delivery is `sent` and the stand-in accepted it at the right place, or `dead` with a
     reason after a permanent error that a stand-in really answered for it, with ops told, and
     with the lead at the fallback destination when every one of its destinations died;
  3. nothing is stuck: no pending, sending or retrying delivery is left, and no escalation step
     is left waiting; only a claimed lead's escalation messages are `cancelled`, and none of
     those reached a stand-in unless its last attempt was in doubt;
  4. duplicates: none on Slack (a restart looks for the message's metadata ref in the channel
     history before re-posting); on email and Teams at most one extra copy per crash that hit
     the delivery in flight after the stand-in had accepted it (`sending` in the database,
     already received) - the one window leadbot documents and cannot close there. Edits of
     Slack messages (chat.update) have the same bound as email and Teams: nothing looks before
     editing again, and an edit twice is the same edit;
  5. claims and escalation (`World.check_claims`): the `leadbot claim` that said it won is the
     claim recorded, and a second one is refused; every step the rules plan is in the database
     with its due time; a step of an unclaimed lead fires exactly once, when due, in one
     transaction with one set of deliveries (each delivered or dead as in 2); no step fires
     after its lead was claimed (so none that fell due after the claim), and a stopped one has
     no deliveries; an escalation message first tried after the claim is a failure (the claim
     cancels what is queued); every Slack message of a claimed lead shows the claim in the
     end, and one the stand-in accepted before the claim began was edited (a chat.update
     reached it).

The window that duplicates, exactly: from the moment the server has taken the message (SMTP's
250 after DATA, the webhook's 202) to the moment `mark_sent` commits. A SIGKILL there leaves the
delivery `sending`; the next start cannot ask an SMTP server or a Teams webhook whether it
arrived, so it sends again (email with the same Message-ID): one extra copy per such kill. The
"accept" kills aim at it from inside the stand-in; the figures count how often a kill landed in
it ("already accepted by the stand-in") and how many extra copies followed. Slack has the same
window, closed by the history lookup; that lookup reads the channel's latest 200 messages, so
it would miss a message buried under more than 200 newer ones (not exercised here).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from standins import HttpRequest, HttpResponse
from standins.autumna import AutumnaStandin
from standins.slack import SlackMessage, SlackStandin
from standins.smtp import SmtpMessage, SmtpStandin
from standins.teams import TeamsStandin

from bot.channels.email import message_id
from bot.loader import load_config
from bot.models import CATEGORY_NAMES
from bot.parse import make_unreadable, parse_lead
from bot.rules import route

ROOT = Path(__file__).resolve().parents[2]

API_KEY = "Fk3v9QpL2mX7rT4wY8bN1cD6fG5hJ0aS9eU3iO7q"
SLACK_TOKEN = "xoxb-5151515151-6262626262-Fa9ltQw3rTy8uIo9pAs2dFg5"
SMTP_USER, SMTP_PASSWORD = "leadbot-faults", "Smtp-Fau1ts-4c1d-9e7b"
SENDER = "Fault Care leads <leads@care.example>"
HOMES = 12  # service ids 1001..1012: spreads Slack's one-message-a-second-per-channel pacing
UNKNOWN_HOME = 1999  # not in rules.toml: its leads go to the fallback
FALLBACK_SLACK, OPS_SLACK = "#leads-fallback", "#leadbot-ops"
SALES = "sales@care.example"
TEAMS_VARS = {"TEAMS_A_WEBHOOK": "a", "TEAMS_B_WEBHOOK": "b"}  # env var -> webhook name
VAR_OF = {name: var for var, name in TEAMS_VARS.items()}
RESCUE_REASON = "fallback: every destination failed"  # alerts.dead_letters writes it
FOUND_AFTER_RESTART = "found in the channel"  # how dispatch._attempt's remote id begins
OPEN = ("pending", "sending", "retrying")

PERMANENT_SLACK = ("channel_not_found", "is_archived", "not_in_channel")
TRANSIENT_SLACK = (
    "internal_error",
    "service_unavailable",
    "fatal_error",
    "request_timeout",
    "ratelimited",
)
PERMANENT_TEAMS = (400, 401, 403, 404, 413)
LIFE_LIMIT = 60.0  # seconds: no life of a plan should come near this
SETTLE = 0.4  # after a kill: bytes already on the wire reach the stand-ins before we look
TRACE = os.environ.get("LEADBOT_FAULT_TRACE") == "1"


def home_channel(n: int) -> str:
    return f"#home-{n:02d}"


def manager_slack(n: int) -> str:
    return f"U0MGR{n:02d}"


def manager_email(n: int) -> str:
    return f"manager-{n:02d}@care.example"


# Escalation steps (`World(escalate=True)`): a few seconds, so they fall due during a run, while
# leadbot is killed and restarted. A lead gets at most one card per Teams webhook (its own, or one
# step's), so the lead key in a card's footer and the webhook tell which delivery it is. The steps'
# cards are shared between the two webhooks: a Teams lane is paced at under 4 a second.
ESCALATE = {
    "visits": '\nescalate = [{ after = "3s", notify = ["sales"] }]',
    "call-backs": (
        "\nescalate = [\n"
        '  { after = "2s", notify = ["home.manager_slack"] },\n'
        '  { after = "3s", notify = ["teams-b", "sales"] },\n'
        "]"
    ),
    "referrals": '\nescalate = [{ after = "2s", notify = ["home.manager_slack", "teams-a"] }]',
}
CLAIMED_FIRST = "the lead was claimed first"  # Store.claim_lead's reason for a cancelled one


def rules_toml(ca_file: str, alert_after: str = "1h", escalate: bool = False) -> str:
    steps = ESCALATE if escalate else {}
    homes = "".join(
        f"""
[homes.{1000 + n}]
name = "Home {n:02d}"
region = "{"North" if n % 2 else "South"}"
slack = "{home_channel(n)}"
manager_slack = "{manager_slack(n)}"
manager_email = "{manager_email(n)}"
"""
        for n in range(1, HOMES + 1)
    )
    return f"""\
[group]
name = "Fault Care Homes"
timezone = "Europe/London"

[polling]
interval = "1s"
overlap = "15m"
lookback = "24h"
history = "30d"
alert_after = "{alert_after}"

[retries]
first = "1s"
cap = "2s"
give_up = "10m"

[email]
host = "127.0.0.1"
port = 587
sender = "{SENDER}"
tls = "starttls"
ca_file = "{ca_file}"

[routing]
fallback = "fallback"
ops = "ops"
{homes}
[destinations]
fallback = {{ slack = "{FALLBACK_SLACK}" }}
ops = {{ slack = "{OPS_SLACK}" }}
sales = {{ email = ["{SALES}"] }}
teams-a = {{ teams = "${{TEAMS_A_WEBHOOK}}" }}
teams-b = {{ teams = "${{TEAMS_B_WEBHOOK}}" }}

[[rules]]
name = "Visits: the home's channel, its manager and Teams A"
when = {{ category = [2, 3] }}
notify = ["home.slack", "home.manager_slack", "teams-a"]{steps.get("visits", "")}

[[rules]]
name = "Call-backs are urgent: the home, its manager by email and sales"
when = {{ category = 4 }}
notify = ["home.slack", "home.manager_email", "sales"]
urgent = true{steps.get("call-backs", "")}

[[rules]]
name = "Referrals: the home, sales and Teams B"
when = {{ category = [6, 7] }}
notify = ["home.slack", "sales", "teams-b"]{steps.get("referrals", "")}

[[rules]]
name = "Contact forms: the home's channel only"
when = {{ category = 1 }}
notify = ["home.slack"]

[[rules]]
name = "Email details requests: the manager's inbox only"
when = {{ category = 5 }}
notify = ["home.manager_email"]

[[rules]]
name = "Placements: Teams B only"
when = {{ category = 8 }}
notify = ["teams-b"]
"""


# --- leads ----------------------------------------------------------------------------------

FIRST = ("Sarah", "Amira", "Tom", "Grace", "Daniel", "Priya", "Owen", "Maureen", "Ifeoma", "Lena")
LAST = ("Okafor", "Khan", "Reid", "Brennan", "Walsh", "Patel", "Evans", "Novak", "O'Neill")
WORDS = (
    "My mother needs nursing care soon.",
    "Could we visit one afternoon next week?",
    "Dad has dementia & we need help <urgently>.",
    "Is there a room with a garden view?",
    "We are looking at respite care for two weeks.",
    "Please call after 5pm.",
)


def stamp(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def lead_document(
    rng: random.Random, lead_id: int, category: int, service: int, when: datetime
) -> dict[str, Any]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    home = f"Home {service - 1000:02d}" if service != UNKNOWN_HOME else "Elm Court"
    specific: dict[str, Any] = {}
    if category in (2, 3):
        specific = {
            "visitDate": (when + timedelta(days=3)).strftime("%Y-%m-%d"),
            "visitTime": rng.choice(("Morning", "Afternoon, after 2pm")),
        }
    elif category in (6, 7, 8):
        specific = {
            "instruction": "Please check the methods granted.",
            "emailPermission": category == 6,
            "phonePermission": category == 6,
            "budgetType": "Weekly Budget",
            "budgetMin": 900,
            "budgetMax": 1400,
        }
    return {
        "id": lead_id,
        "category": {"id": category, "name": CATEGORY_NAMES[category][0]},
        "service": {"id": service, "name": home, "postcode": "SW1A 1AA"},
        "to": "home@care.example",
        "from": f"{first.lower()}.{lead_id}@example.com",
        "date": stamp(when),
        "content": " ".join(rng.sample(WORDS, 2)),
        "enquirerFirstName": first,
        "enquirerSurname": last,
        "onBehalfOf": "['Family member']",
        "residentFirstName": rng.choice(FIRST),
        "residentSurname": last,
        "telephone": f"07700 9{lead_id % 100000:05d}",
        "isAnonymised": False,
        "funding": "['Self Funding']",
        "timescales": "['ASAP']",
        "categorySpecificData": specific,
    }


# --- what the stand-ins saw -----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One answer a stand-in gave. `ref` is the delivery ref (Slack metadata, Teams footer) or,
    for email, the Message-ID; `target` the channel argument, recipients or webhook name."""

    at: float  # time.monotonic()
    channel: str  # slack | email | teams
    method: str  # Slack method, SMTP stage, or POST
    ref: str
    target: str
    status: int  # HTTP status or SMTP code; 0 dropped, -1 dropped or 421 (SMTP)
    error: str
    accepted: bool
    retry_after: float | None = None


class WireLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: list[Answer] = []

    def add(self, answer: Answer) -> None:
        with self._lock:
            self._answers.append(answer)

    @property
    def answers(self) -> list[Answer]:
        with self._lock:
            return list(self._answers)


class Trap:
    """Kills leadbot from inside a stand-in: after it accepted the n-th message of a channel and
    before the answer leaves, so leadbot never learns that the send worked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._channel = ""
        self._prefix = ""  # only messages whose ref begins so count (e.g. "esc:")
        self._left = 0
        self.fired = threading.Event()
        self.fired_on = ""

    def arm(self, pid: int, channel: str, count: int, prefix: str = "") -> None:
        with self._lock:
            self._pid, self._channel, self._left = pid, channel, count
            self._prefix = prefix
            self.fired.clear()
            self.fired_on = ""

    def disarm(self) -> None:
        with self._lock:
            self._pid = None

    def accepted(self, channel: str, ref: str) -> None:
        with self._lock:
            if self._pid is None or channel != self._channel or not ref.startswith(self._prefix):
                return
            self._left -= 1
            if self._left > 0:
                return
            pid, self._pid = self._pid, None
            self.fired_on = f"{channel} {ref}"
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.fired.set()


class FaultySlack(SlackStandin):
    def __init__(self, wire: WireLog, trap: Trap, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wire, self.trap = wire, trap

    def handle(self, request: HttpRequest) -> HttpResponse:
        method = request.path.removeprefix("/api/")
        args, _ = self._arguments(request)
        args = args if isinstance(args, dict) else {}
        meta = args.get("metadata")
        if isinstance(meta, str):
            try:
                meta = json.loads(meta)
            except ValueError:
                meta = None
        ref = (
            str((meta.get("event_payload") or {}).get("ref", "")) if isinstance(meta, dict) else ""
        )
        response = super().handle(request)
        data: dict[str, Any] = {}
        if not response.drop and response.body:
            try:
                data = json.loads(response.body)
            except ValueError:
                data = {}
        accepted = method in ("chat.postMessage", "chat.update") and bool(data.get("ok"))
        if method == "chat.update":  # an edit: the lead was claimed
            ref = f"edit of {args.get('channel', '')}/{args.get('ts', '')}"
        retry = response.headers.get("Retry-After")
        self.wire.add(
            Answer(
                time.monotonic(),
                "slack",
                method,
                ref,
                str(args.get("channel", "")),
                0 if response.drop else response.status,
                str(data.get("error", "")),
                accepted,
                float(retry) if retry else None,
            )
        )
        if accepted:
            self.trap.accepted("slack", ref)
        return response


FOOTER_KEY = re.compile(r"Autumna lead (\d+:\d+)")


def teams_ref(webhook: str, payload: Any, steps: dict[tuple[str, str], str] | None = None) -> str:
    """The delivery ref of a Teams message: the lead key from the card's footer line, or the
    escalation step that sends the lead to this webhook (`steps`: (lead key, webhook variable)
    -> `esc:<key>:<step>`, from the rules)."""
    try:
        footer = payload["attachments"][0]["content"]["body"][-1]["text"]
    except (KeyError, IndexError, TypeError):
        return ""
    match = FOOTER_KEY.search(str(footer))
    var = VAR_OF.get(webhook)
    if not match or not var:
        return ""
    return f"{(steps or {}).get((match[1], var), match[1])}/teams:{var}"


class FaultyTeams(TeamsStandin):
    def __init__(self, wire: WireLog, trap: Trap, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wire, self.trap = wire, trap
        self.steps: dict[tuple[str, str], str] = {}  # filled by World.add_leads

    def handle(self, request: HttpRequest) -> HttpResponse:
        response = super().handle(request)
        name = unquote(request.path.removeprefix("/workflows/").split("/", 1)[0])
        try:
            payload = json.loads(request.body)
        except ValueError:
            payload = None
        ref = teams_ref(name, payload, self.steps)
        status = 0 if response.drop else response.status
        retry = response.headers.get("Retry-After")
        self.wire.add(
            Answer(
                time.monotonic(),
                "teams",
                "POST",
                ref,
                name,
                status,
                response.body.decode(errors="replace")[:80] if status != 202 else "",
                status == 202,
                float(retry) if retry else None,
            )
        )
        if status == 202:
            self.trap.accepted("teams", ref)
        return response


def slack_ref(message: SlackMessage) -> str:
    """The delivery ref leadbot puts in a Slack message's metadata (an edit keeps it)."""
    meta = message.metadata or {}
    return str((meta.get("event_payload") or {}).get("ref", ""))


MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


def message_id_of(raw: bytes) -> str:
    match = MESSAGE_ID.search(raw.split(b"\r\n\r\n", 1)[0])
    return match[1].decode() if match else ""


class FaultySmtp(SmtpStandin):
    def __init__(self, wire: WireLog, trap: Trap, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wire, self.trap = wire, trap

    async def _inject(self, server: Any, stage: Any, recipients: list[str]) -> str | None:
        envelope = getattr(server, "envelope", None)
        mid = message_id_of(getattr(envelope, "content", None) or b"") if stage == "DATA" else ""
        try:
            reply = await super()._inject(server, stage, recipients)
        except asyncio.CancelledError:
            self.wire.add(
                Answer(
                    time.monotonic(),
                    "email",
                    str(stage),
                    mid,
                    ",".join(recipients),
                    -1,
                    "dropped or 421",
                    False,
                )
            )
            raise
        if reply:
            self.wire.add(
                Answer(
                    time.monotonic(),
                    "email",
                    str(stage),
                    mid,
                    ",".join(recipients),
                    int(reply[:3]),
                    reply,
                    False,
                )
            )
        return reply

    def _record(self, message: SmtpMessage) -> None:
        super()._record(message)
        mid = message_id_of(message.raw)
        self.wire.add(
            Answer(
                time.monotonic(), "email", "DATA", mid, ",".join(message.rcpt_tos), 250, "", True
            )
        )
        self.trap.accepted("email", mid)


# --- figures ---------------------------------------------------------------------------------


@dataclass
class Figures:
    runs: int = 0
    seeds: list[int] = field(default_factory=list)
    leads: int = 0
    faults: Counter[str] = field(default_factory=Counter)  # faulty answers actually given
    crashes: Counter[str] = field(default_factory=Counter)  # SIGKILLs, by how they were timed
    in_doubt: Counter[str] = field(default_factory=Counter)  # `sending` at a crash, by channel
    in_doubt_accepted: Counter[str] = field(default_factory=Counter)  # ... already received
    checked: Counter[str] = field(default_factory=Counter)  # deliveries checked, by channel
    dead: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)  # extra copies, by channel
    allowed: Counter[str] = field(default_factory=Counter)  # extra copies the bound allows
    rescued: int = 0  # leads that reached the fallback because every destination died
    found_after_restart: int = 0  # Slack in-doubt deliveries found in history, not re-posted
    unexpected: int = 0  # "unexpected error" lines in leadbot's log (a channel raised a bug)
    claims: Counter[str] = field(default_factory=Counter)  # `leadbot claim` runs, by outcome
    steps: Counter[str] = field(default_factory=Counter)  # escalation steps, by how they ended
    escalations: Counter[str] = field(default_factory=Counter)  # esc: deliveries, by status
    edits: Counter[str] = field(default_factory=Counter)  # edits of Slack messages, by outcome
    seconds: float = 0.0
    failed_seeds: list[int] = field(default_factory=list)

    def merge(self, other: Figures) -> None:
        for name, value in vars(other).items():
            mine = getattr(self, name)
            if isinstance(value, Counter):
                mine.update(value)
            elif isinstance(value, list):
                mine.extend(value)
            else:
                setattr(self, name, mine + value)

    def lines(self) -> list[str]:
        def counts(counter: Counter[str]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"

        channels = ("slack", "email", "teams")
        seeds = self.seeds if len(self.seeds) <= 12 else [*self.seeds[:6], "...", *self.seeds[-3:]]
        return [
            f"leadbot fault runs: {self.runs} ({self.seconds:.0f}s of run time); seeds "
            f"{' '.join(str(s) for s in seeds)}",
            f"  leads served {self.leads}; deliveries checked {sum(self.checked.values())} "
            f"({counts(self.checked)}); dead on purpose {sum(self.dead.values())} "
            f"({counts(self.dead)}); leads rescued by the fallback {self.rescued}",
            f"  faulty answers given {sum(self.faults.values())}: {counts(self.faults)}",
            f"  SIGKILLs {sum(self.crashes.values())}: {counts(self.crashes)}",
            f"  in flight at a kill {sum(self.in_doubt.values())} ({counts(self.in_doubt)}), "
            f"already accepted by the stand-in {sum(self.in_doubt_accepted.values())} "
            f"({counts(self.in_doubt_accepted)}); Slack ones found in history after restart "
            f"{self.found_after_restart}",
            f"  claims {sum(self.claims.values())} ({counts(self.claims)}); escalation steps "
            f"{sum(self.steps.values())} ({counts(self.steps)}); their deliveries "
            f"{sum(self.escalations.values())} ({counts(self.escalations)}); Slack edits "
            f"{sum(self.edits.values())} ({counts(self.edits)})",
            "  duplicates (extra copies): "
            + ", ".join(
                f"{c} {self.duplicates[c]} (bound {self.allowed[c]})"
                for c in (*channels, "slack edits")
            ),
            f"  'unexpected error' log lines {self.unexpected}; failed seeds "
            f"{' '.join(map(str, self.failed_seeds)) or 'none'}",
        ]


TOTALS = Figures()  # every run in this pytest session; printed at the end
TOTALS_LOCK = threading.Lock()


# --- plans -----------------------------------------------------------------------------------


@dataclass
class Step:
    at: float  # seconds after this life's leadbot started
    label: str
    do: Callable[[World], object]


@dataclass
class Kill:
    mode: str  # "timer": at `at`; "accept": the `count`-th message `channel` accepts (`at` is
    # then a backstop, for a life whose traffic never gets that far); "poll": `at` seconds after
    # Autumna has served `count` bytes more in this life (a kill while a big batch is read)
    at: float
    channel: str = ""
    count: int = 1
    prefix: str = ""  # "accept": count only messages whose delivery ref begins so ("esc:")

    @property
    def label(self) -> str:
        what = "an escalation" if self.prefix == "esc:" else f"a {self.channel}"
        return {"timer": "on a timer", "poll": "while reading a poll"}.get(
            self.mode, f"after {what} accept"
        )


@dataclass
class Life:
    steps: list[Step] = field(default_factory=list)
    kill: Kill | None = None  # None: the last life, which drains and stops cleanly
    down: list[Step] = field(default_factory=list)  # after the kill, `at` seconds into the
    # time leadbot stays down (it starts again after the last of them)


@dataclass
class ClaimRun:
    """One `leadbot claim KEY --by NAME`, run as its own process (while `leadbot run` runs, or
    while it is down). Times are wall-clock (leadbot's own clock) and monotonic (the wire's)."""

    key: str
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    while_down: bool
    began: float  # time.time() before the process started
    began_mono: float
    done: float | None = None  # time.time() once its exit was seen: the claim is committed
    code: int | None = None


class RunFailed(AssertionError):
    pass


# --- one leadbot installation and its servers -------------------------------------------------


class World:
    """Stand-ins, a rules.toml and a database; `play(lives)`, then `check()`."""

    def __init__(
        self,
        folder: Path,
        seed: int,
        *,
        slack_rate: float | None = None,
        alert_after: str = "1h",
        drain_timeout: float = 60.0,
        escalate: bool = False,
    ) -> None:
        self.folder, self.seed = folder, seed
        self.rng = random.Random(seed)
        self.slack_rate, self.alert_after, self.drain_timeout = (
            slack_rate,
            alert_after,
            drain_timeout,
        )
        self.escalate = escalate  # the rules give some leads escalation steps (ESCALATE)
        self.claim_runs: list[ClaimRun] = []
        self.claimed: dict[str, ClaimRun] = {}  # lead key -> the claim that won
        self.wire, self.trap = WireLog(), Trap()
        self.db = folder / "leadbot.db"
        self.rules = folder / "rules.toml"
        self.proc: subprocess.Popen[bytes] | None = None
        self.lives = 0
        self.served: dict[str, tuple[dict[str, Any], bool]] = {}  # key -> (doc, announced)
        self.next_id = 50_000
        self.allowance: Counter[str] = Counter()  # ref -> extra copies the bound allows
        self.copies_seen: Counter[str] = Counter()  # ref -> copies at the last kill
        self.doubt_seen: dict[str, int] = {}  # ref -> attempts, for those in doubt at a kill
        self.leads_at_kill: list[int] = []  # leads in the database at each kill
        self.caught: dict[str, list[str]] = defaultdict(list)  # ref -> kills that caught it
        self.autumna_faults: list[str] = []  # labels, in the stand-in's FIFO order
        self.replay = f"rerun the test: its seed ({seed}) is fixed"
        self.events: list[str] = []  # what happened, for a failure report
        self.problems: list[str] = []
        self.figures = Figures(runs=1, seeds=[seed])
        self.started = time.monotonic()
        self._stack = ExitStack()

    def __enter__(self) -> World:
        self.folder.mkdir(parents=True, exist_ok=True)
        stack = self._stack
        self.autumna = stack.enter_context(AutumnaStandin(api_key=API_KEY))
        self.slack = stack.enter_context(
            FaultySlack(
                self.wire, self.trap, token=SLACK_TOKEN, rate_limit_per_channel=self.slack_rate
            )
        )
        self.teams = stack.enter_context(FaultyTeams(self.wire, self.trap))
        self.smtp = stack.enter_context(
            FaultySmtp(
                self.wire, self.trap, tls="starttls", username=SMTP_USER, password=SMTP_PASSWORD
            )
        )
        self.rules.write_text(
            rules_toml(self.smtp.ca_file, self.alert_after, self.escalate), encoding="utf-8"
        )
        self.config = load_config(self.rules)
        return self

    def __exit__(self, *exc: object) -> None:
        self.trap.disarm()
        for proc in [self.proc, *(c.proc for c in self.claim_runs)]:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        self._stack.close()

    # -- leads

    def add_leads(
        self,
        n: int,
        *,
        categories: tuple[int, ...] = tuple(range(1, 9)),
        homes: tuple[int, ...] = (),
        unknown_home: float = 0.05,
    ) -> list[str]:
        """n new leads, dated a few seconds to two minutes ago (all to be announced)."""
        now = datetime.now(UTC)
        docs, keys = [], []
        for _ in range(n):
            self.next_id += 1
            if homes:
                service = 1000 + self.rng.choice(homes)
            else:
                service = (
                    UNKNOWN_HOME
                    if self.rng.random() < unknown_home
                    else 1000 + self.rng.randint(1, HOMES)
                )
            category = self.rng.choice(categories)
            doc = lead_document(
                self.rng,
                self.next_id,
                category,
                service,
                now - timedelta(seconds=self.rng.uniform(2, 120)),
            )
            key = f"{category}:{self.next_id}"
            self.served[key] = (doc, True)
            own = {t.key for t in route(parse_lead(doc, "default"), self.config).targets}
            for number, (_, targets) in self.planned_steps(doc).items():
                for channel, address in targets:
                    if channel == "teams":
                        assert f"teams:{address}" not in own, "two cards for one webhook"
                        self.teams.steps[(key, address)] = f"esc:{key}:{number}"
            docs.append(doc)
            keys.append(key)
        self.autumna.add(*docs)
        self.figures.leads += n
        return keys

    def add_unreadable(self, n: int = 1) -> None:
        """Records with no id: kept raw and reported to the fallback destination."""
        docs = []
        for _ in range(n):
            self.next_id += 1
            doc = {
                "category": {"id": 2, "name": "In Person Visit Request"},
                "note": f"record {self.next_id} has no id",
                "date": stamp(datetime.now(UTC) - timedelta(seconds=5)),
            }
            self.served[make_unreadable(doc, "default", "").key] = (doc, True)
            docs.append(doc)
        self.autumna.add(*docs)
        self.figures.leads += n

    def add_old_leads(self, n: int, *, days: tuple[float, float] = (2, 20)) -> None:
        """n leads older than the first-start lookback: recorded silently, never announced."""
        now = datetime.now(UTC)
        docs = []
        for _ in range(n):
            self.next_id += 1
            category = self.rng.randint(1, 8)
            doc = lead_document(
                self.rng,
                self.next_id,
                category,
                1000 + self.rng.randint(1, HOMES),
                now - timedelta(days=self.rng.uniform(*days)),
            )
            self.served[f"{category}:{self.next_id}"] = (doc, False)
            docs.append(json.dumps(doc))
        self.autumna.add(*docs)
        self.figures.leads += n

    def autumna_fault(self, label: str, n: int = 1, **fault: Any) -> None:
        self.autumna.fail_next(n, **fault)
        self.autumna_faults += [label] * n

    def planned_steps(self, doc: dict[str, Any]) -> dict[int, tuple[float, set[tuple[str, str]]]]:
        """The escalation steps the rules give a lead: number -> (after, {(channel, address)}),
        numbered in order of `after`; a step that reaches nobody (a home without that
        destination) keeps its number and is not planned."""
        escalations = route(parse_lead(doc, "default"), self.config).escalations
        steps = {}
        for number, after in enumerate(sorted(escalations), start=1):
            targets = {(str(t.channel), t.address) for t in escalations[after].targets}
            if targets:
                steps[number] = (after, targets)
        return steps

    # -- claims: `leadbot claim`, as its own process

    def claim(self, key: str, name: str) -> ClaimRun:
        down = self.proc is None or self.proc.poll() is not None
        log = self.folder / f"claim-{len(self.claim_runs) + 1}.log"
        began, began_mono = time.time(), time.monotonic()
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bot",
                    "--config",
                    str(self.rules),
                    "--db",
                    str(self.db),
                    "claim",
                    key,
                    "--by",
                    name,
                ],
                env=self.env(),
                cwd=self.folder,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        run = ClaimRun(key, name, proc, log, down, began, began_mono)
        self.claim_runs.append(run)
        self.note(f"  `leadbot claim {key} --by {name!r}` started{' (leadbot is down)' * down}")
        return run

    def claim_some(self, mode: str, pick: float) -> None:
        """Claim one lead that leadbot has recorded: "early" one whose first escalation step is
        not due yet, "late" one with a step already due (fired, or about to), "again" one that
        is claimed already (this claim must be refused), "any" any lead. `pick` in [0, 1)
        chooses among them (drawn by the plan, so a seed replays the same choices)."""
        self.reap_claims()
        try:
            known = [
                r["key"]
                for r in self.query(
                    "SELECT key FROM leads WHERE announced = 1 AND unreadable = 0 ORDER BY key"
                )
            ]
            first_due = {
                r["lead"]: r["due"]
                for r in self.query(
                    "SELECT lead, MIN(due_at) AS due FROM escalations GROUP BY lead"
                )
            }
        except sqlite3.OperationalError:  # killed before the database was created
            known, first_due = [], {}
        tried = {c.key for c in self.claim_runs}
        fresh = [k for k in known if k not in tried]
        now = time.time()
        candidates = {
            "early": [k for k in fresh if first_due.get(k, 0.0) > now + 0.3],
            "late": [k for k in fresh if first_due.get(k, now + 1) <= now],
            "again": sorted(self.claimed),
        }.get(mode, fresh) or fresh
        if not candidates:
            self.note(f"  no lead to claim ({mode})")
            return
        key = candidates[int(pick * len(candidates))]
        self.claim(key, f"Carer {len(self.claim_runs) + 1:02d}")

    def wait_for(self, sql: str, *params: Any, timeout: float = 20.0) -> bool:
        """Wait until `sql` finds a row in leadbot's database (a plan step that must come after
        something has happened); False, and a problem, if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with suppress(sqlite3.OperationalError):
                if self.query(sql, *params):
                    return True
            time.sleep(0.05)
        self.problem(f"HARNESS: waited {timeout:.0f}s for {sql} {params}")
        return False

    def reap_claims(self, wait: bool = False) -> int:
        """Record the claims that have finished (all of them, with `wait`); returns how many
        are still running."""
        running = 0
        for run in self.claim_runs:
            if run.code is not None:
                continue
            if wait:
                try:
                    run.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    run.proc.kill()
                    run.proc.wait(timeout=10)
            if run.proc.poll() is None:
                running += 1
                continue
            run.done, run.code = time.time(), run.proc.returncode
            said = run.log.read_text(errors="replace").strip()
            where = "while leadbot was down" if run.while_down else "while leadbot ran"
            if run.code == 0 and run.key not in self.claimed:
                self.claimed[run.key] = run
                outcome = "won"
            elif run.code == 1 and "is already claimed by" in said:
                outcome = "refused: claimed already"
            elif run.code == 0:
                outcome = "won a second time"
                self.problem(
                    f"SECOND CLAIM WON: {run.key} was claimed by {self.claimed[run.key].name!r} "
                    f"and `leadbot claim --by {run.name!r}` {where} says it claimed it too"
                )
            else:
                outcome = "failed"
                self.problem(
                    f"CLAIM FAILED: `leadbot claim {run.key} --by {run.name!r}` {where} exited "
                    f"{run.code}: {said[-300:]!r}"
                )
            self.figures.claims[f"{outcome} {where}"] += 1
            self.note(f"  claim of {run.key} by {run.name!r}: {outcome} (exit {run.code})")
        return running

    # -- the process

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.folder),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(ROOT),
            "AUTUMNA_API_URL": self.autumna.url,
            "AUTUMNA_API_KEY": API_KEY,
            "SLACK_BOT_TOKEN": SLACK_TOKEN,
            "SLACK_API_URL": self.slack.base_url,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.smtp.port),
            "SMTP_USERNAME": SMTP_USER,
            "SMTP_PASSWORD": SMTP_PASSWORD,
            **{var: self.teams.url(name) for var, name in TEAMS_VARS.items()},
        }

    def start(self) -> subprocess.Popen[bytes]:
        self.lives += 1
        with open(self.log_path(self.lives), "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bot",
                    "--config",
                    str(self.rules),
                    "--db",
                    str(self.db),
                    "--log-level",
                    "DEBUG" if TRACE else "INFO",
                    "run",
                ],
                env=self.env(),
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.note(f"life {self.lives}: leadbot started (pid {self.proc.pid})")
        return self.proc

    def log_path(self, life: int) -> Path:
        return self.folder / f"leadbot-{life}.log"

    def note(self, text: str) -> None:
        self.events.append(f"{time.monotonic() - self.started:7.2f}s {text}")

    def crash(self, how: str) -> None:
        """SIGKILL (unless a trap already did), then record what was in flight."""
        proc = self.proc
        assert proc is not None
        self.trap.disarm()
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=15)
        if code != -signal.SIGKILL:
            self.problem(
                f"CRASHED: leadbot exited by itself (code {code}) in life "
                f"{self.lives}, before the planned kill",
                self.lives,
            )
        self.figures.crashes[how] += 1
        time.sleep(SETTLE)
        try:
            self.leads_at_kill.append(self.query("SELECT COUNT(*) FROM leads")[0][0])
            in_doubt, rows = self.rows("status = 'sending'"), self.rows()
        except sqlite3.OperationalError:  # killed before the database was created
            self.leads_at_kill.append(0)
            in_doubt, rows = [], []
        copies, _ = self.received(rows)
        accepted = []
        for row in in_doubt:
            ref, channel = row_ref(row), row["channel"]
            if self.doubt_seen.get(ref) == row["attempts"]:
                continue  # killed again before this life even looked at it
            self.figures.in_doubt[channel] += 1
            # Accepted in this life: this attempt got through and leadbot never heard.
            got_through = len(copies.get(ref, [])) > self.copies_seen[ref]
            self.caught[ref].append(
                f"kill {len(self.leads_at_kill)} in life {self.lives} ("
                f"{'accepted' if got_through else 'not accepted'})"
            )
            if got_through:
                accepted.append(ref)
                self.figures.in_doubt_accepted[channel] += 1
                if channel != "slack" or is_edit(row):  # Slack looks before re-posting, not
                    self.allowance[ref] += 1  # before re-editing: an edit may go twice
        self.copies_seen = Counter({ref: len(got) for ref, got in copies.items()})
        self.doubt_seen = {row_ref(r): r["attempts"] for r in in_doubt}
        fired = f": {self.trap.fired_on}" if self.trap.fired.is_set() else ""
        self.note(
            f"SIGKILL {how}{fired}; {self.leads_at_kill[-1]} leads recorded; in flight: "
            f"{[row_ref(r) for r in in_doubt]}, already accepted: {accepted}"
        )

    def stop(self) -> None:
        proc = self.proc
        assert proc is not None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(timeout=10)
            self.problem("STOP: leadbot did not stop within 30s of SIGTERM", self.lives)
        if code != 0:
            self.problem(f"STOP: leadbot exited with code {code} after SIGTERM", self.lives)
        self.note(f"leadbot stopped with code {code}")

    # -- playing a plan

    def play(self, lives: list[Life]) -> None:
        for life in lives:
            self.trap.fired.clear()
            proc = self.start()
            began = time.monotonic()
            kill = life.kill
            if kill is not None and kill.mode == "accept":
                self.trap.arm(proc.pid, kill.channel, kill.count, kill.prefix)
            steps = sorted(life.steps, key=lambda s: s.at)
            served, polled = self.autumna.bytes_served, None
            while True:
                elapsed = time.monotonic() - began
                if elapsed > LIFE_LIMIT:
                    self.problem(f"HARNESS: life {self.lives} went on for {LIFE_LIMIT}s")
                    break
                if kill is not None and kill.mode == "poll":
                    if polled is None and self.autumna.bytes_served - served >= kill.count:
                        polled = elapsed
                    elapsed = elapsed - polled if polled is not None else -1.0
                while steps and steps[0].at <= elapsed:
                    step = steps.pop(0)
                    self.note(f"  {step.label}")
                    step.do(self)
                if kill is None and not steps:
                    break
                due = (
                    elapsed >= kill.at and (kill.mode != "accept" or not steps)
                    if kill is not None
                    else False
                )
                if kill is not None and (self.trap.fired.is_set() or due):
                    break
                if proc.poll() is not None and not self.trap.fired.is_set():
                    break  # died by itself: crash() reports it
                self.reap_claims()
                time.sleep(0.01)
            if kill is None:
                self.drain()
                self.stop()
                continue
            self.crash(
                kill.label
                if self.trap.fired.is_set() or kill.mode != "accept"
                else "on a timer (the trap was not reached)"
            )
            for step in steps:  # what was still to come happens while leadbot is down
                self.note(f"  {step.label} (while leadbot is down)")
                step.do(self)
            down = time.monotonic()
            for step in sorted(life.down, key=lambda s: s.at):
                time.sleep(max(0.0, down + step.at - time.monotonic()))
                self.note(f"  {step.label} (while leadbot is down)")
                step.do(self)
            self.reap_claims(wait=True)  # a claim made while leadbot is down ends before it starts

    def drain(self) -> None:
        """Wait for every lead to be recorded and every delivery to finish."""
        deadline = time.monotonic() + self.drain_timeout
        settled_since: float | None = None
        waiting = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                self.problem(
                    f"CRASHED: leadbot exited by itself (code {self.proc.returncode}) "
                    "while draining",
                    self.lives,
                )
                return
            waiting = self.unsettled()
            if waiting:
                settled_since = None
            elif settled_since is None:
                settled_since = time.monotonic()
            elif time.monotonic() - settled_since >= 0.5:
                self.note("drained")
                return
            time.sleep(0.1)
        self.problem(f"STUCK: not drained after {self.drain_timeout:.0f}s: {waiting}", self.lives)

    def unsettled(self) -> str:
        try:
            known = {r["key"] for r in self.query("SELECT key FROM leads")}
            open_rows = self.rows(f"status IN {OPEN}")
            unannounced = self.rows(
                "status = 'dead' AND dead_announced = 0 AND subject NOT LIKE 'notice:%'"
            )
            failing = self.query("SELECT account FROM polls WHERE last_error != ''")
            waiting = self.query(
                "SELECT COUNT(*) AS n, MIN(due_at) AS due FROM escalations WHERE status = 'waiting'"
            )[0]
        except sqlite3.OperationalError as exc:  # not created yet, or busy
            return f"database: {exc}"
        claiming = self.reap_claims()
        missing = [k for k in self.served if k not in known]
        if self.autumna.faults or failing:  # the stop's exit code follows the last poll
            return (
                f"{len(self.autumna.faults)} Autumna faults still to be answered, or the "
                "last poll failed"
            )
        if missing:
            return f"{len(missing)} leads not recorded yet (e.g. {missing[0]})"
        if open_rows:
            row = open_rows[0]
            return (
                f"{len(open_rows)} deliveries open (e.g. {row_ref(row)}: {row['status']}, "
                f"{row['attempts']} attempts, {row['last_error']!r})"
            )
        if unannounced:
            return f"{len(unannounced)} dead deliveries not yet reported to ops"
        if claiming:
            return f"{claiming} `leadbot claim` still running"
        if waiting["n"]:
            return (
                f"{waiting['n']} escalation steps waiting (the next due in "
                f"{waiting['due'] - time.time():.1f}s)"
            )
        return ""

    # -- reading the results

    def query(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            db.row_factory = sqlite3.Row
            return list(db.execute(sql, params))
        finally:
            db.close()

    def rows(self, where: str = "1") -> list[sqlite3.Row]:
        return self.query(f"SELECT * FROM deliveries WHERE {where} ORDER BY id")

    def received(self, rows: list[sqlite3.Row]) -> tuple[dict[str, list[str]], list[str]]:
        """ref -> where each accepted copy landed; and copies no delivery row explains."""
        refs = {row_ref(r) for r in rows}
        mids = {message_id(row_ref(r), SENDER): row_ref(r) for r in rows if r["channel"] == "email"}
        copies: dict[str, list[str]] = defaultdict(list)
        for m in self.slack.messages:
            copies[slack_ref(m)].append(m.channel)
        # An edit is a chat.update of the message its original delivery posted.
        by_ref = {row_ref(r): r for r in rows}
        edit_of = {int(r["subject"][5:]): row_ref(r) for r in rows if is_edit(r)}
        for u in self.slack.updates:
            original = by_ref.get(slack_ref(u.message))
            ref = edit_of.get(original["id"]) if original is not None else None
            copies[ref or f"chat.update of {u.channel}/{u.ts}"].append(u.channel)
        for e in self.smtp.messages:
            mid = message_id_of(e.raw)
            copies[mids.get(mid, f"Message-ID {mid}")].append(",".join(e.rcpt_tos))
        for r in self.teams.requests:
            if r.status == 202:
                copies[teams_ref(r.webhook, r.payload, self.teams.steps)].append(r.webhook)
        strays = [
            f"{ref or '(no ref)'} x{len(got)}" for ref, got in copies.items() if ref not in refs
        ]
        return copies, strays

    def landed_at(self, row: sqlite3.Row) -> str:
        if row["channel"] == "slack":
            return self.slack.channel_id(row["address"]) or f"(no channel {row['address']})"
        if row["channel"] == "email":
            return str(row["address"])
        return TEAMS_VARS.get(row["address"], str(row["address"]))

    # -- the invariant

    def check(self) -> Figures:
        """Check the invariant after the last drain; raises RunFailed with the details."""
        rows = self.rows()
        figures = self.figures
        leads = {r["key"]: r for r in self.query("SELECT key, announced FROM leads")}
        by_subject: dict[str, list[sqlite3.Row]] = defaultdict(list)
        for row in rows:
            by_subject[row["subject"]].append(row)
        fallback = {
            (str(t.channel), t.address)
            for t in self.config.destinations[self.config.fallback].targets
        }

        # 1. every lead remembered, with the deliveries routing chose
        for key, (doc, announce) in self.served.items():
            lead_row = leads.get(key)
            if lead_row is None:
                self.problem(f"LOST LEAD {key}: Autumna served it; it is not in the database")
                continue
            if bool(lead_row["announced"]) != announce:
                self.problem(
                    f"LEAD {key}: announced={lead_row['announced']}, expected {int(announce)}"
                )
            if key.startswith("raw:"):
                expected = fallback
            elif announce:
                expected = {
                    (str(t.channel), t.address)
                    for t in route(parse_lead(doc, "default"), self.config).targets
                }
            else:
                expected = set()
            chosen = {
                (r["channel"], r["address"])
                for r in by_subject.get(key, [])
                if RESCUE_REASON not in json.loads(r["reasons"])
            }
            if chosen != expected:
                self.problem(
                    f"LOST DELIVERY {key}: routing chooses {sorted(expected)}, the "
                    f"database holds {sorted(chosen)}"
                )
        for key in set(leads) - set(self.served):
            self.problem(f"LEAD {key} is in the database but Autumna never served it")

        # 2-4. every delivery sent and received once (or dead for a reason), none stuck
        copies, strays = self.received(rows)
        permanent_refs, permanent_mail = self.permanent_answers()
        dead_mail: Counter[str] = Counter()
        notices = " ".join(
            r["text"] for r in self.query("SELECT text FROM notices WHERE kind = 'dead'")
        )
        claims = {r["lead"]: r for r in self.query("SELECT * FROM claims")}
        for row in rows:
            ref, channel, status = row_ref(row), row["channel"], row["status"]
            got = copies.get(ref, [])
            figures.checked[channel] += 1
            if channel == "slack" and row["remote_id"].startswith(FOUND_AFTER_RESTART):
                figures.found_after_restart += 1
            wrong = [where for where in got if where != self.landed_at(row)]
            if wrong:
                self.problem(f"MISDELIVERED {ref}: arrived at {wrong}")
            if status == "sent":
                # An edit of a message that never went out has nothing to do (it is checked
                # with the claims, below).
                nothing = is_edit(row) and not row["remote_id"].startswith("edited ")
                if not got and not nothing:
                    self.problem(
                        f"LOST {ref}: the database says sent, but the {channel} "
                        "stand-in never accepted it"
                    )
            elif status == "cancelled":
                if lead_of(row["subject"]) not in claims or not row["subject"].startswith("esc:"):
                    self.problem(
                        f"WRONGLY CANCELLED {ref}: only the escalations of a claimed lead are "
                        "cancelled"
                    )
                elif row["last_error"] != CLAIMED_FIRST:
                    self.problem(f"CANCELLED {ref} for another reason: {row['last_error']!r}")
                if got and not row["in_doubt"]:
                    self.problem(
                        f"CANCELLED BUT DELIVERED {ref}: {len(got)} copies reached the "
                        f"{channel} stand-in, and its last attempt was not in doubt"
                    )
            elif status == "dead":
                figures.dead[channel] += 1
                if channel == "email":
                    dead_mail[row["address"]] += 1
                    permanent = permanent_mail[row["address"]] > 0
                else:
                    permanent = ref in permanent_refs
                if not row["last_error"]:
                    self.problem(f"DEAD {ref} without a reason")
                if not permanent:
                    self.problem(
                        f"WRONGLY DEAD {ref} ({row['last_error']!r}): no permanent "
                        f"error was answered for it"
                    )
                if not row["subject"].startswith("notice:"):
                    if not row["dead_announced"]:
                        self.problem(f"DEAD {ref}: ops was never told")
                    elif row["subject"] not in notices and " more (see" not in notices:
                        self.problem(f"DEAD {ref}: no notice to ops names it")
            else:
                self.problem(
                    f"STUCK {ref}: {status} after {row['attempts']} attempts, last "
                    f"error {row['last_error']!r}"
                )
            extra = max(0, len(got) - 1)
            allowed = 0 if channel == "slack" and not is_edit(row) else self.allowance[ref]
            kind = "slack edits" if is_edit(row) else channel
            figures.duplicates[kind] += extra
            figures.allowed[kind] += allowed
            if extra > allowed:
                self.problem(
                    f"DUPLICATE {ref}: {len(got)} copies; the bound allows "
                    f"{1 + allowed} ({self.allowance[ref]} kills caught it in flight "
                    f"after the stand-in had accepted it; Slack posts allow none). In "
                    f"flight at: {', '.join(self.caught[ref]) or 'no kill'}; "
                    f"{self.lookup_errors()} Slack lookups failed in this run"
                )
        for address, count in dead_mail.items():
            if count > permanent_mail[address]:
                self.problem(
                    f"WRONGLY DEAD: {count} emails to {address} are dead, but only "
                    f"{permanent_mail[address]} permanent refusals were answered"
                )
        for stray in strays:
            self.problem(f"STRAY: a stand-in accepted {stray}, which no delivery row explains")

        # the fallback gets every lead whose destinations all died
        for subject, its in by_subject.items():
            own = [r for r in its if RESCUE_REASON not in json.loads(r["reasons"])]
            if subject.startswith(("notice:", "edit:")) or not own:  # an edit is not a lead
                continue
            if any(r["status"] != "dead" for r in own):
                continue
            rescue = [r for r in its if RESCUE_REASON in json.loads(r["reasons"])]
            if any(r["status"] == "sent" for r in rescue):
                figures.rescued += 1
            elif rescue and all(r["status"] == "cancelled" for r in rescue):
                pass  # an escalation whose lead was claimed before the fallback got it
            else:
                self.problem(
                    f"NOT RESCUED {subject}: every destination died and the fallback "
                    f"destination never got it"
                )

        self.check_claims(rows, copies, claims)
        self.count_faults()
        for life in range(1, self.lives + 1):
            text = self.log_path(life).read_text(errors="replace")
            figures.unexpected += text.count("unexpected error")
            if "Traceback" in text:
                self.problem("TRACEBACK in leadbot's log", life)
        figures.seconds = time.monotonic() - self.started
        if self.problems:
            raise RunFailed(self.report())
        return figures

    def check_claims(
        self,
        rows: list[sqlite3.Row],
        copies: dict[str, list[str]],
        claims: dict[str, sqlite3.Row],
    ) -> None:
        """5. Claims and escalation: the claim that won is the one recorded; every step the rules
        plan is in the database and fires exactly once (one set of deliveries) unless its lead
        was claimed first, and never after the claim; a claim cancels the escalation messages
        it finds queued; every Slack message of a claimed lead shows the claim in the end, and
        one posted before the claim was edited (a chat.update reached it)."""
        by_subject: dict[str, list[sqlite3.Row]] = defaultdict(list)
        for row in rows:
            by_subject[row["subject"]].append(row)
        steps: dict[str, dict[int, sqlite3.Row]] = defaultdict(dict)
        for step in self.query("SELECT * FROM escalations"):
            steps[step["lead"]][step["step"]] = step
        seen = {r["key"]: r["seen_at"] for r in self.query("SELECT key, seen_at FROM leads")}

        for key, won in self.claimed.items():
            claim = claims.get(key)
            if claim is None or (claim["by_name"], claim["via"]) != (won.name, "cli"):
                self.problem(
                    f"CLAIM LOST {key}: `leadbot claim --by {won.name!r}` said it won; the "
                    f"database holds {dict(claim) if claim else 'no claim'}"
                )
        for key in set(claims) - set(self.claimed):
            self.problem(f"CLAIM {key} that nobody made: {dict(claims[key])}")

        for key, (doc, announce) in self.served.items():
            planned = self.planned_steps(doc) if announce and not key.startswith("raw:") else {}
            if set(steps.get(key, {})) != set(planned):
                self.problem(
                    f"LOST STEP {key}: the rules plan steps {sorted(planned)}, the database "
                    f"holds {sorted(steps.get(key, {}))}"
                )
            for number, (after, targets) in planned.items():
                if number in steps.get(key, {}):
                    self.check_step(steps[key][number], after, targets, seen[key], by_subject)

        for subject, its in by_subject.items():
            if not subject.startswith("esc:"):
                continue
            key, _, step_no = subject[4:].rpartition(":")
            fired = steps.get(key, {}).get(int(step_no))
            if fired is None or fired["status"] != "fired":
                self.problem(
                    f"ESCALATION WITHOUT ITS STEP {subject}: the step is "
                    f"{fired['status'] if fired else 'not in the database'}"
                )
            winner = self.claimed.get(key)
            for row in its:
                self.figures.escalations[row["status"]] += 1
                tried = row["first_attempt_at"]
                if winner is None or winner.done is None or row["status"] == "cancelled":
                    continue
                if tried is None or tried > winner.done:
                    self.problem(
                        f"ESCALATION SENT AFTER THE CLAIM {row_ref(row)}: {row['status']}, "
                        f"first tried {tried - winner.done if tried else 0:.2f}s after "
                        f"{winner.name} had claimed the lead; a claim cancels what is queued"
                    )
        self.check_edits(rows, copies, claims)

    def check_step(
        self,
        step: sqlite3.Row,
        after: float,
        targets: set[tuple[str, str]],
        seen_at: float,
        by_subject: dict[str, list[sqlite3.Row]],
    ) -> None:
        """One planned escalation step, as it ended."""
        key, subject = step["lead"], f"esc:{step['lead']}:{step['step']}"
        kept = {(t["channel"], t["address"]) for t in json.loads(step["targets"])}
        if kept != targets or abs(step["due_at"] - seen_at - after) > 0.01:
            self.problem(
                f"STEP {subject} planned wrong: due {step['due_at'] - seen_at:.2f}s after the "
                f"lead was seen, to {sorted(kept)}; the rules say {after:.0f}s, to "
                f"{sorted(targets)}"
            )
        own = [
            r for r in by_subject.get(subject, []) if RESCUE_REASON not in json.loads(r["reasons"])
        ]
        winner = self.claimed.get(key)
        claimed = winner is not None and winner.done is not None
        if step["status"] == "fired":
            self.figures.steps["fired, lead claimed later" if claimed else "fired"] += 1
            told = {(r["channel"], r["address"]) for r in own}
            if told != targets:
                self.problem(
                    f"SKIPPED STEP {subject}: fired, with deliveries to {sorted(told)}; the "
                    f"step notifies {sorted(targets)}"
                )
            if step["fired_at"] < step["due_at"]:
                self.problem(
                    f"EARLY STEP {subject}: fired {step['due_at'] - step['fired_at']:.2f}s "
                    "before it was due"
                )
            if winner is not None and winner.done is not None and step["fired_at"] > winner.done:
                self.problem(
                    f"FIRED AFTER THE CLAIM {subject}: fired {step['fired_at'] - winner.done:.2f}s "
                    f"after {winner.name} had claimed the lead (due "
                    f"{step['due_at'] - winner.done:+.2f}s from the claim)"
                )
        elif step["status"] == "stopped" and winner is not None:
            due = "after" if step["due_at"] <= winner.began else "before"
            self.figures.steps[f"stopped, claimed {due} it was due"] += 1
            if own:
                self.problem(f"STOPPED STEP {subject} has deliveries: {[row_ref(r) for r in own]}")
        else:
            self.problem(
                f"SKIPPED STEP {subject}: {step['status']} {time.time() - step['due_at']:.1f}s "
                f"after it was due{'' if winner else ', and nobody claimed the lead'}"
            )

    def check_edits(
        self,
        rows: list[sqlite3.Row],
        copies: dict[str, list[str]],
        claims: dict[str, sqlite3.Row],
    ) -> None:
        """Slack: every message of a claimed lead says so in the end; one that was in its
        channel before the claim began was edited (a chat.update reached it)."""
        edits = {int(r["subject"][5:]): r for r in rows if is_edit(r)}
        by_ref = {row_ref(r): r for r in rows}
        by_id = {r["id"]: r for r in rows}
        posted_at = {
            a.ref: a.at
            for a in self.wire.answers
            if a.channel == "slack" and a.method == "chat.postMessage" and a.accepted
        }
        for message in self.slack.messages:
            ref = slack_ref(message)
            key, row = lead_of(ref.partition("/")[0]), by_ref.get(ref)
            claim = claims.get(key) if key is not None else None
            if row is None or claim is None:
                continue
            edit = edits.get(row["id"])
            how = (
                f"its edit is {edit['status']} ({edit['remote_id'] or edit['last_error']!r})"
                if edit is not None
                else "no edit was queued"
            )
            current = self.slack.message(message.channel, message.ts)
            if f"Claimed by {claim['by_name']}" not in json.dumps([current.text, current.blocks]):
                self.problem(
                    f"NOT SHOWN CLAIMED {ref}: {claim['by_name']} claimed the lead; its "
                    f"message in {message.channel} does not say so; {how}"
                )
            winner = self.claimed.get(str(key))
            before = winner is not None and posted_at.get(ref, float("inf")) < winner.began_mono
            if winner is not None and before and (edit is None or not copies.get(row_ref(edit))):
                self.problem(
                    f"NOT EDITED {ref}: posted {winner.began_mono - posted_at[ref]:.2f}s "
                    f"before {winner.name} claimed the lead, and no chat.update reached it; {how}"
                )
        for edit in edits.values():
            done = edit["status"] == "sent" and edit["remote_id"].startswith("edited ")
            self.figures.edits["chat.update" if done else f"{edit['status']}, nothing to edit"] += 1
            original = by_id.get(int(edit["subject"][5:]))
            if original is None or lead_of(original["subject"]) not in claims:
                self.problem(f"EDIT {row_ref(edit)} of a message whose lead is unclaimed")

    def lookup_errors(self) -> int:
        return sum(
            a.channel == "slack"
            and a.method.startswith("conversations.")
            and (a.status != 200 or bool(a.error))
            for a in self.wire.answers
        )

    def permanent_answers(self) -> tuple[set[str], Counter[str]]:
        """Refs that got a permanent refusal (Slack, Teams); email refusals by recipient."""
        refs: set[str] = set()
        mail: Counter[str] = Counter()
        for a in self.wire.answers:
            refused = (
                a.error in PERMANENT_SLACK
                if a.channel == "slack"
                else a.status in PERMANENT_TEAMS
                if a.channel == "teams"
                else False
            )
            if refused and a.method in ("chat.postMessage", "POST"):
                refs.add(a.ref)
            elif a.channel == "email" and 500 <= a.status < 600:
                for rcpt in a.target.split(","):
                    mail[rcpt.lower()] += 1
        return refs, mail

    def count_faults(self) -> None:
        faults = self.figures.faults
        for a in self.wire.answers:
            if (
                a.accepted
                or (a.channel == "slack" and a.status == 200 and not a.error)
                or (a.channel == "email" and a.status == 250)
            ):
                continue
            if a.channel == "slack":
                what = {0: "dropped", 429: "429", 200: a.error}.get(a.status, f"HTTP {a.status}")
                faults[f"slack {what}"] += 1
            elif a.channel == "email":
                what = "421/dropped" if a.status == -1 else str(a.status)
                faults[f"smtp {what} at {a.method}"] += 1
            else:
                faults[f"teams {'dropped' if a.status == 0 else a.status}"] += 1
        used = len(self.autumna_faults) - len(self.autumna.faults)
        for label in self.autumna_faults[:used]:
            faults[f"autumna {label}"] += 1

    def problem(self, text: str, life: int | None = None) -> None:
        self.problems.append(text)
        if life is not None:
            tail = self.log_path(life).read_text(errors="replace").splitlines()[-15:]
            lines = "\n      ".join(tail)
            self.problems.append(f"    leadbot log (life {life}), last lines:\n      {lines}")

    def report(self) -> str:
        shown = self.problems[:40]
        more = len(self.problems) - len(shown)
        return "\n".join(
            [
                f"seed {self.seed}: {len(self.problems)} problem(s); to replay: {self.replay}",
                *self.figures.lines()[1:],
                *(f"  {p}" for p in shown),
                *([f"  ... and {more} more"] if more else []),
                "  what happened:",
                *(f"    {e}" for e in self.events[-60:]),
                f"  logs and database: {self.folder}",
            ]
        )


def row_ref(row: sqlite3.Row) -> str:
    """The ref leadbot gives a delivery (dispatch.render): `<subject>/<channel>:<address>`."""
    return f"{row['subject']}/{row['channel']}:{row['address']}"


def is_edit(row: sqlite3.Row) -> bool:
    """An edit of a posted Slack message (`edit:<delivery id>`): the lead was claimed."""
    return str(row["subject"]).startswith("edit:")


def lead_of(subject: str) -> str | None:
    """The lead a lead's own message (`4:2000`) or escalation (`esc:4:2000:1`) is about."""
    if subject.startswith("esc:"):
        return subject[4:].rpartition(":")[0]
    return None if ":" not in subject or subject.split(":", 1)[0].isalpha() else subject


# --- chaos: a run drawn from a seed -----------------------------------------------------------


def random_fault(rng: random.Random) -> tuple[str, Callable[[World], None]]:
    """One fault family, with its parameters drawn now (so a seed replays the same plan)."""
    family = rng.choice(
        (
            "slack 429 storm",
            "slack 429 storm",
            "slack ok:false transient",
            "slack 5xx",
            "slack dropped",
            "slack permanent",
            "smtp 421",
            "smtp 451/450",
            "smtp dropped",
            "smtp 550",
            "teams 429",
            "teams 5xx",
            "teams dropped",
            "teams 400/404",
            "autumna 500 burst",
            "autumna truncated JSON",
            "autumna HTML error page",
            "autumna empty body",
            "autumna dropped",
        )
    )
    n = rng.randint(1, 4)
    home = rng.randint(1, HOMES)
    if family == "slack 429 storm":
        n, after = rng.randint(3, 6), rng.randint(1, 2)
        channel = rng.choice((None, home_channel(home)))
        method = rng.choice((None, "chat.postMessage"))
        return (
            f"{family} x{n} Retry-After {after} on {channel or 'any channel'}",
            lambda w: w.slack.fail_next(
                n, status=429, retry_after=after, channel=channel, method=method
            ),
        )
    if family == "slack ok:false transient":
        error = rng.choice(TRANSIENT_SLACK)
        return f"slack ok:false {error} x{n}", lambda w: w.slack.fail_next(n, error)
    if family == "slack 5xx":
        status = rng.choice((500, 503))
        return f"slack HTTP {status} x{n}", lambda w: w.slack.fail_next(n, status=status)
    if family == "slack dropped":
        return f"{family} x{n}", lambda w: w.slack.fail_next(n, drop=True)
    if family == "slack permanent":
        error, channel = rng.choice(PERMANENT_SLACK), home_channel(home)
        return f"slack {error} on {channel} from now on", lambda w: w.slack.fail_channel(
            channel, error
        )
    if family == "smtp 421":
        stage = rng.choice(("MAIL", "RCPT", "DATA"))
        return f"smtp 421 at {stage} x{n}", lambda w: w.smtp.fail_next(n, 421, stage)
    if family == "smtp 451/450":
        code, stage = rng.choice(((451, "DATA"), (450, "RCPT"), (451, "MAIL")))
        return f"smtp {code} at {stage} x{n}", lambda w: w.smtp.fail_next(n, code, stage)
    if family == "smtp dropped":
        stage = rng.choice(("MAIL", "RCPT", "DATA"))
        return f"smtp dropped at {stage} x{n}", lambda w: w.smtp.drop_next(n, stage)
    if family == "smtp 550":
        rcpt = manager_email(home)
        return f"smtp 550 for {rcpt} from now on", lambda w: w.smtp.fail_next(
            10**6, 550, "RCPT", rcpt=rcpt
        )
    if family == "teams 429":
        after, hook = rng.randint(1, 2), rng.choice((None, "a", "b"))
        return (
            f"teams 429 x{n} Retry-After {after} on {hook or 'any webhook'}",
            lambda w: w.teams.fail_next(n, 429, retry_after=after, webhook=hook),
        )
    if family == "teams 5xx":
        status = rng.choice((500, 502, 503))
        return f"teams {status} x{n}", lambda w: w.teams.fail_next(n, status)
    if family == "teams dropped":
        return f"{family} x{n}", lambda w: w.teams.fail_next(n, drop=True)
    if family == "teams 400/404":
        status, hook = rng.choice((400, 404)), rng.choice(("a", "b"))
        return f"teams {status} x1 on {hook}", lambda w: w.teams.fail_next(1, status, webhook=hook)
    if family == "autumna 500 burst":
        n = rng.randint(2, 5)
        return f"{family} x{n}", lambda w: w.autumna_fault("500", n, status=500)
    if family == "autumna truncated JSON":
        cut = rng.uniform(0.05, 0.95)
        return family, lambda w: w.autumna_fault(
            "truncated JSON", status=200, body=truncated(w.autumna.body(None, None), cut)
        )
    if family == "autumna HTML error page":
        status = rng.choice((200, 502, 503))
        return f"{family} (HTTP {status})", lambda w: w.autumna_fault(
            "HTML error page", status=status, body=HTML_ERROR, content_type="text/html"
        )
    if family == "autumna empty body":
        return family, lambda w: w.autumna_fault("empty body", status=200, body="")
    return family, lambda w: w.autumna_fault("dropped", drop=True)


HTML_ERROR = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>"
    "<h1>Bad Gateway</h1><p>The server returned an invalid response.</p>"
    "<hr><address>nginx</address></body></html>"
)


def truncated(body: str, fraction: float) -> str:
    return body[: max(1, min(len(body) - 1, int(len(body) * fraction)))]


def arrive(n: int) -> Callable[[World], object]:
    return lambda world: world.add_leads(n)


def chaos_plan(rng: random.Random) -> tuple[int, list[Life]]:
    """Initial leads, then 1-3 lives ending in SIGKILL and a last one that drains. Each life
    gets leads arriving and faults injected at random moments."""
    initial = rng.randint(10, 25)
    kills = rng.randint(1, 3)
    lives = []
    for number in range(kills + 1):
        last = number == kills
        span = 1.5 if last else rng.uniform(1.0, 3.5)
        steps = []
        for _ in range(rng.randint(1, 2)):
            n = rng.randint(2, 8)
            steps.append(Step(rng.uniform(0, span), f"{n} leads arrive", arrive(n)))
        if rng.random() < 0.25:
            steps.append(
                Step(
                    rng.uniform(0, span),
                    "an unreadable record arrives",
                    lambda w: w.add_unreadable(1),
                )
            )
        for _ in range(rng.randint(1, 3)):
            label, do = random_fault(rng)
            steps.append(Step(rng.uniform(0, span), label, do))
        for _ in range(rng.choice((0, 1, 1, 2))):
            mode, pick = rng.choice(CLAIM_MODES), rng.random()
            steps.append(Step(rng.uniform(0, span + 1.0), f"a claim ({mode})", claim(mode, pick)))
        kill, down = None, []
        if not last:
            if rng.random() < 0.5:
                kill = Kill("timer", rng.uniform(0.2, span + 1.0))
            else:
                channel = rng.choice(("slack", "email", "teams"))
                prefix = rng.choice(("", "esc:")) if channel != "email" else ""
                count = rng.randint(1, 2 if prefix else 4)
                kill = Kill("accept", span + 1.5, channel, count, prefix)
            if rng.random() < 0.4:  # down long enough for a step to fall due meanwhile
                pause = rng.uniform(0.5, 2.5)
                if rng.random() < 0.6:
                    mode, pick = rng.choice(CLAIM_MODES), rng.random()
                    down.append(Step(pause, f"a claim ({mode})", claim(mode, pick)))
                else:
                    down.append(Step(pause, f"leadbot stays down {pause:.1f}s", lambda w: None))
        lives.append(Life(steps, kill, down))
    return initial, lives


CLAIM_MODES = ("early", "early", "late", "late", "any", "again")


def claim(mode: str, pick: float) -> Callable[[World], object]:
    return lambda world: world.claim_some(mode, pick)


def finish(world: World) -> Figures:
    """Check the invariant and add the run's figures to the session's, failed or not."""
    try:
        return world.check()
    except RunFailed:
        world.figures.failed_seeds.append(world.seed)
        raise
    finally:
        with TOTALS_LOCK:
            TOTALS.merge(world.figures)


def run_chaos(folder: Path, seed: int) -> Figures:
    rng = random.Random(seed)
    initial, lives = chaos_plan(rng)
    with World(folder, seed, escalate=True) as world:
        world.replay = f"LEADBOT_FAULT_SEED={seed} python -m pytest tests/faults -k chaos"
        world.add_leads(initial)
        world.play(lives)
        return finish(world)
