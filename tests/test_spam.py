"""Every email leadbot can send reaches the inbox: SpamAssassin's local rules (Debian's
`spamassassin`, as `spamassassin -L -t`) score each below 2.0 of the 5.0 spam threshold, which
leaves room for the network tests and a relay's own rules.

One run scores them all: every category, urgent or not, anonymised or not, each contact
permission, both privacy levels, with and without a lead link; Autumna's published examples, the
demo's leads, the hostile corpus, the template check's sample, the notices to ops and the
digests. SpamAssassin takes seconds to start, so the emails go in one mbox file per CPU, scored
side by side.

Never silently skipped in CI: without `spamassassin` the test fails when CI is set (.ci/run
installs the package) and is skipped, saying why, only on a machine that is not CI.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hostile import CORPUS, POISON_RECORDS, email_bytes, poisoned_body, routed_facts

from bot import sendtest
from bot.config import PRIVACY_LEVELS, Config
from bot.digest_view import SAMPLE as DIGEST
from bot.digest_view import digest_view
from bot.models import CATEGORY_NAMES, Category, Channel, Claim, Context, Facts, Lead, Target
from bot.parse import parse_body
from bot.render import SAMPLE, Renderer
from bot.rules import route

pytestmark = pytest.mark.timeout(300)

LIMIT = 2.0
ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = sorted((ROOT / "bot" / "demo" / "published").glob("*.json"))
DEMO_LEADS = ROOT / "bot" / "demo" / "leads.json"
LEAD_URL = "https://crm.rosecare.example/leads/{category_id}/{lead_id}"
CONSOLE_URL = "https://leads.rosecare.example"  # [web] public_url: claim links
LINK_SECRET = "5d2b8e0f4a6c1e3b7d9f2a4c6e8b0d1f"  # LEADBOT_WEB_SECRET
MBOX_FROM = b"From leadbot@rosecare.example Thu Jan  1 00:00:00 1970\n"
RULE_LINE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z][A-Z0-9_]+)\s+(.*)$")


def sales(privacy: str = "full") -> Target:
    return Target(Channel.EMAIL, "sales@rosecare.example", "sales-inbox", privacy)


def published(path: Path) -> Lead:
    (lead,) = parse_body(path.read_text(encoding="utf-8"), "default").leads
    return lead


def flags(urgent: bool, *more: str) -> str:
    return "".join(f" {word}" for word in (("urgent",) if urgent else ()) + more if word)


Case = tuple[str, Lead, Target, Facts]  # a name that says what the email is, and what makes it


def published_cases() -> Iterator[Case]:
    """Each published example, urgent or not, at each privacy level, anonymised or not; the
    referrals with each pair of contact permissions; and a category leadbot does not know."""
    for path in PUBLISHED:
        lead = published(path)
        for urgent in (False, True):
            for privacy in PRIVACY_LEVELS:
                for anonymised in (False, True):
                    yield (
                        f"published {path.stem}{flags(urgent, privacy)}"
                        + (" anonymised" if anonymised else ""),
                        replace(lead, anonymised=anonymised),
                        sales(privacy),
                        Facts(urgent),
                    )
            if lead.category.id in (6, 7):
                for mail, phone in itertools.product((False, True), repeat=2):
                    yield (
                        f"published {path.stem}{flags(urgent)} emailPermission={mail} "
                        f"phonePermission={phone}",
                        replace(lead, email_permission=mail, phone_permission=phone),
                        sales(),
                        Facts(urgent),
                    )
    unknown = replace(published(PUBLISHED[0]), category=Category(99, "Brochure Request"))
    for urgent in (False, True):
        facts = Facts(urgent, True, ("Autumna service 987654 is not in rules.toml",))
        yield f"unknown category{flags(urgent)}", unknown, sales(), facts


def sample_cases() -> Iterator[Case]:
    """The template check's sample in every category, with and without every flag."""
    for cid in [*CATEGORY_NAMES, 99]:
        lead = replace(SAMPLE, category=Category(cid, CATEGORY_NAMES.get(cid, ("Other",))[0]))
        for facts in (Facts(), Facts(True, True, ("a note",))):
            for privacy in PRIVACY_LEVELS:
                yield f"sample {cid}{flags(facts.urgent, privacy)}", lead, sales(privacy), facts


def demo_cases(config: Config) -> Iterator[Case]:
    """The demo's leads, routed by its rules.toml: to each email destination, and to sales."""
    documents = [p.read_text(encoding="utf-8") for p in PUBLISHED]
    documents += [json.dumps(d) for d in json.loads(DEMO_LEADS.read_text(encoding="utf-8"))]
    for document in documents:
        for lead in parse_body(document, "default").leads:
            facts = routed_facts(lead, config)
            targets = [t for t in route(lead, config).targets if t.channel is Channel.EMAIL]
            for target in dict.fromkeys([sales(), *targets]):
                yield f"demo {lead.key} to {target.label}", lead, target, facts


def hostile_cases(config: Config) -> Iterator[Case]:
    """What the public can type, in every field. (Minimal emails show a part of what these do,
    and would double the run time.)"""
    for hostile in CORPUS:
        for lead in parse_body(hostile.body, "hostile").leads:
            yield f"hostile {hostile.name}", lead, sales(), routed_facts(lead, config)


def notices() -> Iterator[tuple[str, str]]:
    """leadbot's own emails to ops, worded as bot/alerts.py and the dispatcher word them."""
    for name, record in POISON_RECORDS.items():
        for unreadable in parse_body(poisoned_body(record), "default").unreadable:
            yield (
                f"Autumna sent a lead leadbot could not read ({name})",
                (
                    f"Account 'default': {unreadable.problem}. It is kept in the database as "
                    f"{unreadable.key}; please look for it in Autumna."
                ),
            )
    yield (
        "3 deliveries failed for good",
        (
            "• 4:2000 → sales-inbox (email sales@rosecare.example): the mail server refused the "
            "recipient (550)\n"
            "• 6:2000 → group-leads (slack #group-leads): Slack error channel_not_found\n"
            "• 7:2000 → ops-teams (teams TEAMS_OPS_WEBHOOK): HTTP 404 from Teams\n"
            "Every destination of 4:2000 failed, so it goes to the fallback destination "
            "(group-leads).\n"
            "Fix the cause (the reason is given for each), then run `leadbot resend --all "
            "--dead` to send them again."
        ),
    )
    yield (
        "Autumna polling is failing (default)",
        (
            "No poll of Autumna account 'default' has succeeded since Sun 27 Jun, 15:17 (42 "
            "minutes). Last error: HTTP 500 from Autumna.\n"
            "Autumna answers a wrong API key and an outage alike (HTTP 500), so check both: that "
            "AUTUMNA_API_KEY holds the account's current API key, and that Autumna "
            "(www.autumna.co.uk) is up and reachable from this machine.\n"
            "No lead is lost: when polling recovers, leadbot asks for everything since the last "
            "good poll."
        ),
    )
    yield (
        "Autumna polling has recovered (default)",
        (
            "Polling Autumna account 'default' works again; leads from the gap are being "
            "delivered now."
        ),
    )


def every_email(config: Config) -> dict[str, bytes]:
    """Every email to score, by name, as it goes over SMTP. Each has its own ref, so its own
    Message-ID, by which SpamAssassin's verdict is matched to it."""
    renderer = Renderer(config)
    linked = Renderer(replace(config, lead_url=LEAD_URL))  # adds the "Open the lead" link
    emails: dict[str, bytes] = {}
    cases = itertools.chain(
        published_cases(), sample_cases(), demo_cases(config), hostile_cases(config)
    )
    for name, lead, target, facts in cases:
        emails[name] = email_bytes(renderer.render(lead, target, facts, name))
    for path, urgent in itertools.product(PUBLISHED, (False, True)):
        name = f"published {path.stem}{flags(urgent)} with a lead link"
        emails[name] = email_bytes(linked.render(published(path), sales(), Facts(urgent), name))
    # With the console's address ([web] public_url), a signed "I'll call them" claim link in
    # each lead's email and escalation (urgent ones with the "Open the lead" link as well).
    step = Context(escalation_step=1, waited=1800, told=("#rose-lodge",))
    for path, urgent in itertools.product(PUBLISHED, (False, True)):
        web = replace(config, web=replace(config.web, public_url=CONSOLE_URL))
        web = replace(web, lead_url=LEAD_URL) if urgent else web
        by = Renderer(web, "reaction", LINK_SECRET)
        for what, context in (("published", Context()), ("escalation of", step)):
            name = f"{what} {path.stem}{flags(urgent)} with a claim link"
            emails[name] = email_bytes(
                by.render(published(path), sales(), Facts(urgent), name, context)
            )
    # Escalations and claimed leads, in each way of claiming (Slack button, reaction, none).
    step = Context(escalation_step=2, waited=3900, told=("#rose-lodge", "amira@rosecare.example"))
    claimed = Context(claim=Claim("Amira Khan", "U024BE7LH", "slack-button", 1.8e9, 720))
    for claiming, path, urgent in itertools.product(
        ("button", "reaction", ""), PUBLISHED, (False, True)
    ):
        lead, by = published(path), Renderer(config, claiming)
        for what, context in (("escalation", step), ("claimed", claimed)):
            name = f"{what} of {path.stem}{flags(urgent)} (claims: {claiming or 'command'})"
            emails[name] = email_bytes(by.render(lead, sales(), Facts(urgent), name, context))
    ops = Target(Channel.EMAIL, "ops@rosecare.example", "ops", "full")
    for title, text in notices():
        name = f"notice: {title}"
        emails[name] = email_bytes(renderer.render_notice(title, text, ops, name))
    for name, row, service in digest_cases():
        view = digest_view(row, service, config)
        emails[name] = email_bytes(renderer.render_digest(view, sales(), name))
    # `leadbot send-test`: to a destination, and to a home's own address.
    home = next(h for h in config.homes.values() if "manager_email" in h.attributes)
    manager = config.home_destinations[(home.service_id, "home.manager_email")][0]
    for trial in (
        sendtest.Trial("sales-inbox", sales()),
        sendtest.Trial("home.manager_email", manager, home),
    ):
        message = sendtest.compose(renderer, trial, config, 1.8e9)
        emails[f"send-test to {trial.label}"] = email_bytes(message)
    return emails


def digest_cases() -> Iterator[tuple[str, dict[str, Any], int | None]]:
    """Digests ([[digests]]): the sample (something in every part) for every home and as one
    home's own edition, a quiet day, last week, several days after downtime, thirty homes."""
    figures = json.loads(DIGEST["figures"])
    busy, quiet = figures["homes"]
    end = DIGEST["period_end"]
    cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("every home", {}, figures),
        ("a quiet day", {}, figures | {"homes": [quiet, quiet | {"name": "Oak Manor"}]}),
        ("last week", {"period_start": end - 7 * 86400}, figures | {"period": "week"}),
        ("after downtime", {"period_start": end - 4 * 86400}, figures),
        ("thirty homes", {}, figures | {"homes": [busy | {"service_id": n} for n in range(30)]}),
    ]
    for name, changes, shown in cases:
        yield f"digest: {name}", DIGEST | changes | {"figures": json.dumps(shown)}, None
    yield "digest: one home's own", DIGEST, 100000


# --- running SpamAssassin -------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    points: float
    rules: tuple[tuple[float, str, str], ...]  # (points, rule, description)

    def explain(self) -> str:
        fired = [f"{points:+.1f} {rule} ({what})" for points, rule, what in self.rules if points]
        return f"{self.points:.1f} points: " + ("; ".join(fired) or "no scoring rule")


def spamassassin() -> str:
    found = shutil.which("spamassassin")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(
            "spamassassin is not installed, and CI must score every email: .ci/run installs "
            "Debian's spamassassin package (apt-get install spamassassin)"
        )
    pytest.skip("spamassassin is not installed (Debian: apt-get install spamassassin)")


def score(emails: dict[str, bytes], folder: Path) -> dict[str, Score]:
    """`spamassassin -L -t` over every email: one mbox per CPU, run side by side."""
    command = spamassassin()
    names = {message_id(raw): name for name, raw in emails.items()}
    assert len(names) == len(emails), "two emails share a Message-ID"
    count = max(1, min(4, os.cpu_count() or 1))
    batches: list[list[bytes]] = [[] for _ in range(count)]
    loads = [0.0] * count
    for raw in sorted(emails.values(), key=len, reverse=True):  # the biggest spread out first
        least = loads.index(min(loads))
        batches[least].append(raw)
        loads[least] += cost(raw)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder), "LANG": "C.UTF-8"}
    running = []
    for i, batch in enumerate(b for b in batches if b):
        (folder / f"in-{i}.mbox").write_bytes(mbox(batch))
        with (folder / f"out-{i}.mbox").open("wb") as out, (folder / f"err-{i}").open("wb") as err:
            running.append(
                subprocess.Popen(
                    [command, "-L", "-t", "--mbox", str(folder / f"in-{i}.mbox")],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=env,
                )
            )
    scores: dict[str, Score] = {}
    for i, process in enumerate(running):
        process.wait(timeout=240)
        errors = (folder / f"err-{i}").read_text(errors="replace")
        assert process.returncode == 0, errors[-2000:]
        output = (folder / f"out-{i}.mbox").read_bytes()
        for scored in re.split(rb"(?m)^" + re.escape(MBOX_FROM), output)[1:]:
            scores[names[message_id(scored)]] = parse_report(scored)
    assert scores.keys() == emails.keys(), "SpamAssassin did not score every email"
    return scores


def cost(raw: bytes) -> float:
    """Measured: about 0.1 s an email, up to 1 s more for a big one (body rules read 50 KB)."""
    return 1 + min(len(raw), 500_000) / 50_000


def mbox(messages: list[bytes]) -> bytes:
    """An mboxrd file: a From_ line before each message, and ">" before body lines "From "."""
    return b"".join(
        MBOX_FROM + re.sub(rb"(?m)^(>*From )", rb">\1", raw.replace(b"\r\n", b"\n")) + b"\n"
        for raw in messages
    )


def message_id(raw: bytes) -> str:
    head = raw.partition(b"\n\n")[0].replace(b"\r\n", b"\n")
    found = re.search(rb"(?mi)^Message-ID:\s*(\S+)", head)
    assert found, head[:500]
    return found[1].decode()


def parse_report(scored: bytes) -> Score:
    """The X-Spam-Status score, and the rules listed in the report `-t` appends."""
    head = scored.partition(b"\n\n")[0]
    message = email.message_from_bytes(head + b"\n\n", policy=email.policy.compat32)
    status = str(message.get("X-Spam-Status", ""))
    found = re.search(r"score=(-?\d+(?:\.\d+)?)", status)
    assert found, f"no X-Spam-Status score in:\n{head.decode(errors='replace')[:2000]}"
    report = scored.decode("utf-8", "replace").rpartition("Content analysis details:")[2]
    rules = [
        (float(m[1]), m[2], m[3].strip())
        for m in map(RULE_LINE.match, report.splitlines()[3:])
        if m is not None
    ]
    return Score(float(found[1]), tuple(rules))


# --- the tests --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emails(config: Config) -> dict[str, bytes]:
    return every_email(config)


@pytest.fixture(scope="module")
def scores(emails: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Score]:
    # The canary is the urgent call-back as it was written before: it must score 2.0 or more,
    # or this harness is not reading SpamAssassin's verdicts.
    return score({**emails, CANARY: old_style(emails)}, tmp_path_factory.mktemp("spamassassin"))


CANARY = "canary: the urgent call-back with the family's Reply-To and the old subject"


def old_style(emails: dict[str, bytes]) -> bytes:
    message = email.message_from_bytes(
        emails["published 4-call-back-request urgent full"], policy=email.policy.compat32
    )
    del message["Subject"], message["Message-ID"]
    message["Subject"] = "URGENT: Call-back request for Rose Lodge from John Smith"
    message["Reply-To"] = "johnsmith@gmail.com"
    message["Message-ID"] = "<canary@rosecare.example>"
    return message.as_bytes()


def test_every_email_scores_below_2_with_spamassassins_local_rules(
    scores: dict[str, Score],
) -> None:
    too_high = {n: s for n, s in scores.items() if n != CANARY and s.points >= LIMIT}
    assert not too_high, f"{len(too_high)} of {len(scores) - 1} emails score {LIMIT} or more:\n" + (
        "\n".join(f"{name}: {s.explain()}" for name, s in sorted(too_high.items()))
    )


def test_the_old_subject_and_reply_to_would_score_too_high(scores: dict[str, Score]) -> None:
    canary = scores[CANARY]
    assert canary.points >= LIMIT, canary.explain()
    assert {"URG_BIZ", "FREEMAIL_FORGED_REPLYTO"} <= {rule for _, rule, _ in canary.rules}


def test_every_email_says_it_is_automatic_and_names_no_reply_to(emails: dict[str, bytes]) -> None:
    """RFC 3834 and Exchange's own header: no out-of-office reply to leadbot, or to a family."""
    wrong = []
    for name, raw in emails.items():
        message = email.message_from_bytes(raw, policy=email.policy.default)
        headers = (
            message.get_all("Auto-Submitted"),
            message.get_all("X-Auto-Response-Suppress"),
            message.get_all("Reply-To"),
        )
        if headers != (["auto-generated"], ["All"], None):
            wrong.append(f"{name}: {headers}")
    assert not wrong, "\n".join(wrong[:20])
