"""7. Lead-to-ping latency: how long after Autumna answers a poll a home hears of a new lead.

Leads are made visible one at a time at the Autumna stand-in, and leadbot's real run loop
(`Runner.run` on a thread, wired as `pipeline.build` wires it) polls, parses, remembers in SQLite,
routes, renders, claims the delivery row and sends, as in production. Measured for each lead: from
the moment the poll's HTTP response had been read (a response hook on leadbot's own httpx client)
to the moment the Slack stand-in accepted the lead's first message (its `ts`) and, for an urgent
call-back, the SMTP stand-in accepted its first email. Both ends are `time.time()`, in two
processes on one machine.

Side by side, timed to the same end: a bare loop posting the same pre-serialised Slack payloads
over a kept-alive httpx client, and the same email bytes with smtplib on an open connection, from
the start of each post to the stand-in's acceptance. leadbot's figure minus the bare one is what
leadbot adds.

Fair because: warm-up leads, not counted, first bring every (category, channel) the measured
leads use, as a leadbot that has run a while has met them (Jinja compiles a template on its first
use, about 8 ms; connections open); the poll interval is 0.1 s so that a hundred leads take seconds,
which moves when a poll starts but nothing after its response; rate limits are off (`Lanes` at
1e6/s) because here a lead comes every few tenths of a second and each also goes to #group-leads,
whereas at real lead rates one lead at a time never meets Slack's 1 msg/s per channel; the
stand-in's window holds the last few leads, as the 15-minute overlap of a busy group's poll does.
"""

from __future__ import annotations

import json
import smtplib
import statistics
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.channels import email as email_channel
from bot.channels import slack as slack_channel
from bot.config import Config, Polling
from bot.loader import load_config
from bot.models import Channel, Lead, Message, Target
from bot.parse import parse_body
from bot.rules import route

from .drain import rendered
from .harness import Row, Table, fresh_db, http_client, ms
from .servers import Servers
from .stamped import Leadbot, Stamps
from .workload import ACCOUNT, SENDER, TOKEN, lead_documents, utcnow, write_rules

TARGET = 0.020  # seconds leadbot may add to the bare post, at p99
INTERVAL = 0.1  # seconds between the benchmark's polls
WINDOW = 5  # leads in the stand-in's window at a time
CALL_BACK = 4  # Autumna's category id for "Call Back Request"
INTERVALS = (60, 30, 15, 10)  # seconds: what a manager waits, what Autumna serves


@dataclass(frozen=True)
class Case:
    """A lead to show, and where leadbot's rules send it."""

    record: dict[str, Any]
    lead: Lead
    targets: tuple[Target, ...]

    @property
    def call_back(self) -> bool:
        return self.lead.category.id == CALL_BACK


def cases(config: Config) -> list[Case]:
    """Workload leads that reach Slack; the call-backs among them reach email too."""
    found = []
    for text in lead_documents(3000, utcnow(), seed=23):
        record = json.loads(text)
        leads = parse_body(f"[{json.dumps(record)}]", ACCOUNT).leads
        if not leads:
            continue
        targets = tuple(route(leads[0], config).targets)
        channels = {t.channel for t in targets}
        if Channel.SLACK in channels and (
            leads[0].category.id != CALL_BACK or Channel.EMAIL in channels
        ):
            found.append(Case(record, leads[0], targets))
    return found


def pick(found: list[Case], count: int) -> tuple[list[Case], list[Case]]:
    """`count` leads, every other a call-back; and, shown before them, warm-up leads that bring
    every (category, channel) the measured ones use, so each template is compiled beforehand."""
    calls = [c for c in found if c.call_back]
    others = [c for c in found if not c.call_back]
    measured = [c for pair in zip(calls, others, strict=False) for c in pair][:count]
    if len(measured) < count:
        raise AssertionError(f"the workload has only {len(measured)} suitable leads")
    needed = {(c.lead.category.id, t.channel) for c in measured for t in c.targets}
    taken = {id(c) for c in measured}
    covered: set[tuple[int, Channel]] = set()
    warm = []
    for case in found:
        brings = {(case.lead.category.id, t.channel) for t in case.targets} & needed
        if id(case) not in taken and not brings <= covered:
            warm.append(case)
            covered |= brings
    return warm, measured


def shown(case: Case) -> str:
    """The lead as Autumna shows it now: dated a second ago, in whole seconds, since a poll's
    window ends at the whole second it started in."""
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    return json.dumps({**case.record, "date": moment.strftime("%Y-%m-%dT%H:%M:%SZ")})


def one_at_a_time(bot: Leadbot, servers: Servers, leads: list[Case]) -> None:
    """Show each lead and wait until all its messages have gone before showing the next."""
    visible: list[str] = []
    expected = 0
    for case in leads:
        visible = [*visible[-(WINDOW - 1) :], shown(case)]
        servers.documents(visible)
        expected += len(case.targets)
        bot.await_sent(expected)


# --- the bare loop --------------------------------------------------------------------------


def bare_slack(messages: list[Message], warm: list[Message], info: dict[str, Any]) -> list[float]:
    """Each payload posted on a kept-alive connection: seconds from the post's start to the
    stand-in's `ts`."""
    url = info["slack"] + "chat.postMessage"
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": "application/json; charset=utf-8",
    }
    bodies = [
        json.dumps(
            {
                "channel": m.target.address,
                **m.payload,
                "metadata": {
                    "event_type": slack_channel.EVENT_TYPE,
                    "event_payload": {"ref": m.ref},
                },
            }
        ).encode()
        for m in [*warm, *messages]
    ]
    took = []
    with http_client(info["teams_ca"]) as http:
        for body in bodies:
            start = time.time()
            answer = http.post(url, content=body, headers=headers).json()
            assert answer["ok"], answer
            took.append(float(answer["ts"]) - start)
    return took[len(warm) :]


def bare_email(
    messages: list[Message], warm: list[Message], servers: Servers
) -> tuple[list[float], list[float]]:
    """The same bytes sent with smtplib, from the send's start to the stand-in's acceptance: on
    one open connection, then (to show what a connection costs) on a new connection each."""
    sends = []
    for message in [*warm, *messages]:
        msg = email_channel.stamp(message, SENDER)
        data = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
        sends.append((str(msg["Message-ID"]), message.target.address, data))
    port = servers.info["smtp_port"]
    started = []
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        for message_id, address, data in sends:
            started.append((message_id, time.time()))
            smtp.sendmail(SENDER, [address], data)
    for message_id, address, data in sends[len(warm) :]:
        started.append((message_id, time.time()))
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.sendmail(SENDER, [address], data)
    accepted = servers.arrivals()["smtp"]
    assert [m for m, _ in accepted] == [m for m, _ in started], "emails arrived out of order"
    took = [at - start for (_, start), (_, at) in zip(started, accepted, strict=True)]
    return took[len(warm) : len(sends)], took[len(sends) :]


# --- the benchmark ----------------------------------------------------------------------------


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def spread(values: list[float]) -> str:
    return f"p50 {ms(statistics.median(values))}, p99 {ms(p99(values))}"


def first_arrivals(pairs: list[tuple[str, float]]) -> dict[str, tuple[str, float]]:
    """By lead key: the ref of its first message to arrive, and when it was accepted."""
    first: dict[str, tuple[str, float]] = {}
    for ref, at in pairs:
        key = ref.partition("/")[0]
        if key not in first or at < first[key][1]:
            first[key] = (ref, at)
    return first


def breakdown(stamps: Stamps, first: dict[str, tuple[str, float]], leads: list[Case]) -> str:
    """The median and p99 of each hand-over on the way to a lead's first message."""
    stages: dict[str, list[float]] = {}
    for case in leads:
        key = case.lead.key
        ref, accepted = first[key]
        (began, ended), sending = stamps.recorded[key], stamps.sending[ref]
        marks = {
            "parse": stamps.parsed[key] - stamps.answered[key],
            "waiting for the loop to look": began - stamps.parsed[key],
            "route + store": ended - began,
            "claim + render + hand to a send thread": sending - ended,
            "send": accepted - sending,
        }
        for name, seconds in marks.items():
            stages.setdefault(name, []).append(seconds)
    return "; ".join(
        f"{name} {statistics.median(values) * 1000:.1f} / {p99(values) * 1000:.1f} ms"
        for name, values in stages.items()
    )


def row(number: str, what: str, ours: list[float], bare: list[float], notes: str) -> Row:
    added = p99(ours) - p99(bare)
    return Row(
        number,
        f"Lead-to-ping latency, {what}",
        f"leadbot {spread(ours)}",
        f"bare loop {spread(bare)}: leadbot adds {ms(added)} at p99",
        f"≤ {TARGET * 1000:.0f} ms added at p99",
        added <= TARGET,
        notes,
    )


def run(table: Table, folder: Path, quick: bool) -> None:
    count = 30 if quick else 100
    with Servers() as servers:
        info = servers.info
        config = load_config(write_rules(folder / "latency", email_port=info["smtp_port"]))
        every = timedelta(seconds=INTERVAL)
        config = replace(config, polling=replace(config.polling, interval=every))
        warm, measured = pick(cases(config), count)
        servers.documents([])
        servers.reset()
        started = time.perf_counter()
        with Leadbot(config, info, fresh_db(folder, "latency.db")) as bot:
            one_at_a_time(bot, servers, [*warm, *measured])
        seconds = time.perf_counter() - started
        print(f"   leadbot: {len(warm)} + {count} leads in {seconds:.1f} s", file=sys.stderr)
        requests = servers.stats()["autumna_requests"]
        arrivals = servers.arrivals()

        refs = [f"{c.lead.key}/{t.key}" for c in [*warm, *measured] for t in c.targets]
        email_refs = {email_channel.message_id(ref, SENDER): ref for ref in refs}
        slack = first_arrivals(arrivals["slack"])
        email = first_arrivals([(email_refs[m], at) for m, at in arrivals["smtp"]])
        stamps, calls = bot.stamps, [c for c in measured if c.call_back]
        slack_ms = [slack[c.lead.key][1] - stamps.answered[c.lead.key] for c in measured]
        email_ms = [email[c.lead.key][1] - stamps.answered[c.lead.key] for c in calls]

        docs = [json.dumps(c.record) for c in [*warm, *measured]]
        messages = {m.ref: m for m in rendered(docs, config)}
        servers.reset()
        bare_s = bare_slack(
            [messages[slack[c.lead.key][0]] for c in measured],
            [messages[slack[c.lead.key][0]] for c in warm],
            info,
        )
        bare_e, bare_new = bare_email(
            [messages[email[c.lead.key][0]] for c in calls],
            [messages[email[c.lead.key][0]] for c in warm if c.call_back],
            servers,
        )

    cold = slack[warm[0].lead.key][1] - stamps.answered[warm[0].lead.key]
    what = f"{count} leads shown one at a time, from the poll's response to the first"
    table.add(
        row(
            "7a",
            f"Slack: {what} message accepted",
            slack_ms,
            bare_s,
            f"where it goes, p50 / p99: {breakdown(stamps, slack, measured)}. The real run loop "
            f"on a thread, rate limits off (`Lanes` at 1e6/s: here a lead comes every few "
            f"tenths of a second, each also to #group-leads), the database on disk in WAL mode; "
            f"the bare loop posts the same payloads on a kept-alive connection, timed from the "
            f"start of each post to the stand-in's `ts`, as leadbot's send is. {len(warm)} "
            f"warm-up leads not counted, one for each (category, channel) first met (the very "
            f"first: {ms(cold)}, templates compiled and connections opened)",
        )
    )
    table.add(
        row(
            "7b",
            f"urgent call-back by email: the {len(calls)} call-backs of those {what} email "
            f"accepted",
            email_ms,
            bare_e,
            f"where it goes, p50 / p99: {breakdown(stamps, email, calls)}. The bare loop sends "
            f"the same bytes on one open SMTP connection; leadbot lets the mail server go "
            f"whenever nothing is in flight, so one lead at a time opens a connection each (the "
            f"bare send on a new connection: {spread(bare_new)}; plain SMTP on loopback, "
            f"STARTTLS and AUTH would cost more)",
        )
    )
    per_account = requests / stamps.cycles / len(config.accounts)
    interval = Polling().interval.total_seconds()
    poll, ping = statistics.median(stamps.polls), statistics.median(slack_ms)
    mean = interval / 2 + poll + ping
    waits = ", ".join(
        f"{s} s: {s / 2 + poll + ping:.1f} s and {86400 / s * per_account:,.0f} requests/day"
        for s in INTERVALS
    )
    table.add(
        Row(
            "7c",
            f"What a manager sees: a new lead to its Slack ping, at the default `interval` "
            f"({interval:g} s)",
            f"{mean:.1f} s on average",
            f"{interval / 2:g} s waiting for the next poll + {ms(poll)} the poll + {ms(ping)} "
            f"leadbot (p50 of 7a): the poll and leadbot are {(poll + ping) / mean:.2%} of it",
            notes=f"per `interval`, the mean wait and what it costs Autumna per account: {waits}. "
            f"Counted: {requests:,} requests to the stand-in in {stamps.cycles:,} poll cycles of "
            f"{len(config.accounts)} account(s), {per_account:g} per account per cycle (one "
            f"window, no pagination)",
        )
    )
