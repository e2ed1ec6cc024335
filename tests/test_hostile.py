"""The hostile corpus (tests/hostile.py) through every stage and every output.

Each lead is parsed, routed by the root rules.toml and rendered for Slack, email and Teams at
both privacy levels; every output is checked for anything the lead could smuggle out of its field:
a live Slack mention or link, a Markdown link or image in Teams, an HTML tag or attribute in
email, an email header line, a control character on a terminal. Then the same corpus goes
through the real `leadbot` process against the loopback stand-ins.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hostile import (
    ANSI,
    BAD_BODIES,
    BIDI,
    CORPUS,
    CORPUS_BY_NAME,
    GOOD_AROUND_POISON,
    KNOWN_HOMES,
    MARKDOWN,
    MARKDOWN_IT,
    PII,
    POISON_RECORDS,
    PUBLISHED,
    ROOT_RULES,
    SENDER,
    Hostile,
    Installation,
    Output,
    base_record,
    baselines,
    every_output,
    html_tags,
    installation,
    output_problems,
    poisoned_body,
    render_output,
    routed_facts,
    teams_text_blocks,
    terminal_problems,
    visible_text,
)
from standins.autumna import AutumnaStandin
from standins.smtp import SmtpStandin
from standins.validators import parse_email, validate_teams_messages

from bot import pipeline
from bot.autumna import AutumnaClient
from bot.channels.email import EmailChannel
from bot.config import Config
from bot.loader import load_config
from bot.models import Channel, Facts, Lead, Target
from bot.parse import Batch, PollError, parse_body
from bot.render import Renderer
from bot.rules import route
from bot.settings import Settings
from bot.store import Store

pytestmark = pytest.mark.timeout(90)

NO_CONTACT = "no permission to contact the enquirer"


def parse_one(body: str) -> Lead:
    batch = parse_body(body, "hostile")
    assert not batch.unreadable, [u.problem for u in batch.unreadable]
    assert len(batch.leads) == 1
    return batch.leads[0]


def outputs_of(record: dict[str, Any], renderer: Renderer, config: Config) -> list[Output]:
    lead = parse_one(json.dumps([record]))
    return list(every_output(renderer, lead, config))


# --- every corpus lead, every output --------------------------------------------------------


@pytest.mark.parametrize("hostile", CORPUS, ids=lambda h: h.name)
def test_a_hostile_lead_stays_text_in_every_output(
    hostile: Hostile, renderer: Renderer, config: Config
) -> None:
    lead = parse_one(hostile.body)
    problems: list[str] = []
    outputs = 0
    for output in every_output(renderer, lead, config):
        outputs += 1
        where = f"{output.channel} {output.target.address} ({output.target.privacy})"
        problems += [f"{where}: {p}" for p in output_problems(output, lead, baselines())]
    assert outputs >= 6
    assert not problems, "\n".join(problems[:20])


def test_the_corpus_teams_cards_pass_microsofts_own_validators(
    renderer: Renderer, config: Config
) -> None:
    payloads = []
    for hostile in CORPUS:
        lead = parse_one(hostile.body)
        for privacy in ("full", "minimal"):
            target = Target(Channel.TEAMS, "TEAMS_HOSTILE_WEBHOOK", "hostile", privacy)
            payloads.append(
                render_output(renderer, lead, target, routed_facts(lead, config), config).payload
            )
    validate_teams_messages(payloads)  # the schema, and adaptivecards in Node when installed


@pytest.mark.parametrize("name", list(MARKDOWN), ids=str)
def test_markdown_typed_by_the_enquirer_shows_as_typed_in_teams(
    name: str, renderer: Renderer, config: Config
) -> None:
    """Escaped, not dropped: the card shows the enquirer's characters, asterisks and all."""
    typed = MARKDOWN[name]
    record = base_record(7000 + list(MARKDOWN).index(name), category=1)
    record["content"] = typed
    lead = parse_one(json.dumps([record]))
    target = Target(Channel.TEAMS, "TEAMS_HOSTILE_WEBHOOK", "hostile", "full")
    payload = render_output(renderer, lead, target, Facts(), config).payload
    shown = "\n".join(html_tags(MARKDOWN_IT.render(text))[1] for text in teams_text_blocks(payload))
    for line in typed.replace("\u2060", "").split("\n"):
        if "http" in line or not line.strip():
            continue  # URLs are defanged on purpose; blank lines are paragraph breaks
        assert line.strip().rstrip("\\") in shown.replace("\u2060", ""), (line, shown[-400:])


def test_a_huge_name_keeps_the_email_header_within_what_mail_servers_take(
    renderer: Renderer, config: Config
) -> None:
    """Postfix keeps only the first 102,400 bytes of a message header (header_size_limit) and
    Exchange Online refuses headers over 256 KB. leadbot writes Subject first and From, To,
    Date and Message-ID last, so a Subject that fills the header loses the addresses."""
    record = base_record(7100, category=4, service=100000)
    record["enquirerFirstName"] = "Eve" * 350_000  # about 1 MB, as typed
    lead = parse_one(json.dumps([record]))
    target = Target(Channel.EMAIL, "sales@rosecare.example", "sales-inbox", "full")
    raw = render_output(renderer, lead, target, routed_facts(lead, config), config).payload
    head = raw.partition(b"\r\n\r\n")[0]
    assert len(head) < 100_000, f"the email header is {len(head):,} bytes"


def test_an_encoded_word_cannot_add_headers_to_the_email_on_the_wire(
    renderer: Renderer, config: Config
) -> None:
    """Through leadbot's own SMTP client to a real SMTP server: what the server receives."""
    lead = parse_one(CORPUS_BY_NAME["encoded word in the surname"].body)
    target = Target(Channel.EMAIL, "sales@rosecare.example", "sales-inbox", "full")
    message = renderer.render(lead, target, routed_facts(lead, config))
    with SmtpStandin(tls="starttls", username="leadbot", password="pw") as smtp:
        channel = EmailChannel(
            "127.0.0.1", smtp.port, SENDER, "starttls", "leadbot", "pw", smtp.ca_file
        )
        channel.send(message)
        channel.close()
        (received,) = smtp.messages
    assert received.rcpt_tos == ["sales@rosecare.example"]
    parsed = parse_email(received.raw)
    assert [a.addr_spec for h in parsed.get_all("To") or [] for a in h.addresses] == [
        "sales@rosecare.example"
    ], "the To header was pushed out of the header"
    assert "attacker@evil.example" not in str(parsed.get("Reply-To", "")), "Reply-To injected"
    assert parsed.get_content_type() == "multipart/alternative", parsed.get_content_type()


# --- privacy -------------------------------------------------------------------------------------


def published(name: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((PUBLISHED / name).read_text(encoding="utf-8"))
    return record


def all_outputs(record: dict[str, Any], renderer: Renderer, config: Config) -> list[Output]:
    outputs = outputs_of(record, renderer, config)
    assert {o.channel for o in outputs} == set(Channel)
    return outputs


def test_category_7_shows_no_contact_details_and_says_so(
    renderer: Renderer, config: Config
) -> None:
    for output in all_outputs(published("7-referral-without-contact.json"), renderer, config):
        text = visible_text(output)
        assert "01900 000000" not in text, output.target
        assert "johnsmith@gmail.com" not in text.lower(), output.target
        assert NO_CONTACT in text.lower(), output.target


def test_category_6_shows_the_email_it_may_and_not_the_phone(
    renderer: Renderer, config: Config
) -> None:
    for output in all_outputs(published("6-referral-with-contact.json"), renderer, config):
        text = visible_text(output)
        assert "01900 000000" not in text, output.target
        if output.target.privacy == "full":
            assert "johnsmith@gmail.com" in text, output.target


def assert_no_pii(output: Output, what: str) -> None:
    text = visible_text(output)
    for name, value in PII.items():
        assert value.lower() not in text.lower(), f"{what}: {name} {value!r} in {output.target}"
    assert "900123" not in text.replace(" ", ""), f"{what}: the phone, reformatted"


@pytest.mark.parametrize("flag", [True, "true", "yes", 1, "1", " TRUE "], ids=repr)
def test_anonymised_leads_show_no_personal_details(
    flag: Any, renderer: Renderer, config: Config
) -> None:
    for category in (1, 2, 4, 6, 8):
        record = base_record(7200 + category, category=category, service=100000)
        record["isAnonymised"] = flag
        for output in all_outputs(record, renderer, config):
            assert_no_pii(output, f"anonymised {flag!r}, category {category}")
            assert "anonymised" in visible_text(output).lower()


def config_with(tmp_path: Path, old: str, new: str) -> Config:
    text = ROOT_RULES.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "rules.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return load_config(path)


@pytest.mark.parametrize("channel", list(Channel), ids=str)
def test_a_minimal_channel_shows_no_personal_details(channel: Channel, tmp_path: Path) -> None:
    config = config_with(tmp_path, f'{channel} = "full"', f'{channel} = "minimal"')
    renderer = Renderer(config)
    seen = 0
    for category in range(1, 9):
        for service in KNOWN_HOMES:
            record = base_record(7300 + category, category=category, service=service)
            record["content"] = PII["content"] + " She has dementia."  # reaches north-teams
            lead = parse_one(json.dumps([record]))
            facts = routed_facts(lead, config)
            for target in route(lead, config).targets:
                if target.channel is channel:
                    assert target.privacy == "minimal", target
                    assert_no_pii(
                        render_output(renderer, lead, target, facts, config),
                        f"[privacy] {channel} = minimal",
                    )
                    seen += 1
    assert seen, f"no lead was routed to {channel}"


def test_a_minimal_destination_shows_no_personal_details(
    renderer: Renderer, config: Config
) -> None:
    """north-teams has privacy = "minimal" in the root rules.toml."""
    record = base_record(7400, category=1, service=200000)
    record["content"] = "My father has dementia."
    lead = parse_one(json.dumps([record]))
    targets = [t for t in route(lead, config).targets if t.label == "north-teams"]
    assert targets and targets[0].privacy == "minimal"
    output = render_output(renderer, lead, targets[0], routed_facts(lead, config), config)
    assert_no_pii(output, "north-teams")
    assert "dementia" not in visible_text(output)


# --- the parser never crashes; one bad record never blocks the others -----------------------


def fetch(body: bytes, content_type: str = "application/json") -> Batch:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, content=body, headers={"Content-Type": content_type})
    )
    with httpx.Client(transport=transport) as http:
        client = AutumnaClient("https://autumna.invalid/api/leads/", http)
        now = datetime.now(UTC)
        return client.fetch("default", "K" * 40, now - timedelta(hours=1), now)


@pytest.mark.parametrize("name", list(BAD_BODIES), ids=str)
def test_a_bad_body_gives_leads_unreadable_records_or_a_poll_error(name: str) -> None:
    try:
        batch = fetch(BAD_BODIES[name])
    except PollError as error:
        assert "K" * 40 not in str(error)
        return
    for lead in batch.leads:
        for text in (lead.content, lead.enquirer_first_name or "", lead.telephone):
            assert not any(0xD800 <= ord(c) <= 0xDFFF for c in text), "a lone surrogate got in"


@pytest.mark.parametrize("name", list(POISON_RECORDS), ids=str)
def test_one_bad_record_never_stops_the_parser_reading_the_others(name: str) -> None:
    try:
        batch = parse_body(poisoned_body(POISON_RECORDS[name]), "hostile")
    except PollError as error:
        pytest.fail(f"the whole body was refused: {error}")
    keys = {lead.key for lead in batch.leads}
    assert {f"1:{i}" for i in GOOD_AROUND_POISON} <= keys
    assert len(batch.leads) + len(batch.unreadable) == 3, "the bad record was dropped"


PIPELINE_POISONS = [
    "a string",
    "id superscript two",
    "id above 2**63",
    "service id above 2**63",
    "budget NaN and Infinity",
    "date in year 1",
    "a field nested 70 deep",
]


@pytest.mark.parametrize("name", PIPELINE_POISONS, ids=str)
def test_one_bad_record_never_stops_the_others_being_delivered(
    name: str, tmp_path: Path, config: Config
) -> None:
    """The whole pipeline in this process: poll the Autumna stand-in (which answers the body
    as it is), store, route, render and write every message to the demo's folder sink."""
    body = poisoned_body(POISON_RECORDS[name]).replace(
        '"date": "2021-06-27T14:17:29.517Z"',
        f'"date": "{datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")}"',
    )
    store = Store(tmp_path / "leadbot.db")
    with AutumnaStandin() as autumna:
        autumna.fail_next(1, status=200, body=body)
        settings = Settings(demo=False, autumna_url=autumna.url, api_keys={"default": "K" * 40})
        runner = pipeline.build(config, settings, store, sink=tmp_path / "out")
        runner.run(once=True)
    rows = store.db.execute("SELECT subject, status FROM deliveries").fetchall()
    store.close()
    for lead_id in GOOD_AROUND_POISON:
        statuses = {status for subject, status in rows if subject == f"1:{lead_id}"}
        assert statuses == {"sent"}, f"lead 1:{lead_id}: {statuses or 'never stored'}"


# --- group templates are sandboxed ----------------------------------------------------------

ESCAPES = {
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "lead class": "{{ lead.__class__ }}",
    "cycler globals": "{{ cycler.__init__.__globals__.os.system('touch {sentinel}') }}",
    "lipsum globals": "{{ lipsum.__globals__['os'].popen('touch {sentinel}').read() }}",
    "format string": "{{ '{0.__class__.__mro__}'.format(lead) }}",
    "attr filter": "{{ (lead|attr('__class__')).__init__.__globals__ }}",
    "namespace": "{% set ns = namespace() %}{{ ns.__init__.__globals__ }}",
}


def group_templates(tmp_path: Path, template: str) -> Config:
    """The root rules.toml with `group.templates` set to a folder holding one Slack default.j2
    whose body block is `template`."""
    folder = tmp_path / "my-templates" / "slack"
    folder.mkdir(parents=True)
    (folder / "default.j2").write_text(
        "{% block body %}" + template + "{% endblock %}\n", encoding="utf-8"
    )
    return config_with(tmp_path, '# templates = "my-templates"', 'templates = "my-templates"')


def leadbot_check(config: Config, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config.path), "check", "--demo"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(cwd)},
        check=False,
    )


@pytest.mark.parametrize("name", list(ESCAPES), ids=str)
def test_group_templates_cannot_escape_the_sandbox(name: str, tmp_path: Path) -> None:
    sentinel = tmp_path / "escaped"
    config = group_templates(tmp_path, ESCAPES[name].replace("{sentinel}", str(sentinel)))
    problems = Renderer(config).check()
    assert problems, "the template rendered"
    assert all("Error" in p for p in problems), problems
    assert not sentinel.exists(), "the template ran a command"
    if name not in ("subclasses", "cycler globals", "lead class"):
        return  # the command is run for the three the brief names; the rest are the same path
    done = leadbot_check(config, tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "SecurityError" in done.stderr or "UndefinedError" in done.stderr, done.stderr
    assert not sentinel.exists(), "leadbot check ran a command"


def test_check_names_the_group_template_that_failed(tmp_path: Path) -> None:
    """The admin must be sent to my-templates/slack/default.j2, the file to fix."""
    config = group_templates(tmp_path, ESCAPES["lead class"])
    problems = Renderer(config).check()
    assert problems
    assert all("slack/default.j2" in p for p in problems), problems
    done = leadbot_check(config, tmp_path)
    assert done.returncode == 2
    assert "slack/default.j2" in done.stderr, done.stderr


# --- the real process: terminal output, retention, file modes -------------------------------

API_KEY = "HOSTILEKEY" + "q7" * 15


def documents(records: list[dict[str, Any]], now: datetime) -> list[str]:
    out = []
    for i, record in enumerate(records):
        record = dict(
            record, date=(now - timedelta(minutes=1, seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        )
        out.append(json.dumps(record))
    return out


TERMINAL_CORPUS = [h for h in CORPUS if not h.name.startswith("types: year")]


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    """The corpus delivered by `leadbot run --once` through the Slack, SMTP and Teams
    stand-ins, with bad records and an Autumna error among them."""
    folder = tmp_path_factory.mktemp("hostile") / "leadbot"
    now = datetime.now(UTC)
    docs = [
        *documents([h.record for h in TERMINAL_CORPUS], now),
        POISON_RECORDS["a string"],
        POISON_RECORDS["no category"],
    ]
    with installation(folder, docs, api_key=API_KEY) as inst:
        inst.slack.fail_channel("#willow-house", "channel_not_found")
        done = inst.run("run", "--once", timeout=120)
        assert done.returncode == 1, done.stderr[-3000:]  # dead-lettered during the run
        inst.autumna.fail_next(
            1,
            status=200,
            body=json.dumps(  # an error Autumna words itself
                {"message": "\x1b[2J\x1b]8;;https://evil.example\x07down\x1b]8;;\x07 \u202e"}
            ),
        )
        inst.run("run", "--once")
        yield inst


def test_the_run_itself_prints_no_terminal_controls(delivered: Installation) -> None:
    problems = [p for text in delivered.outputs[:4] for p in terminal_problems(text)]
    assert not problems, problems[:10]
    assert delivered.smtp.messages, "nothing was delivered"


def test_status_prints_no_terminal_controls(delivered: Installation) -> None:
    done = delivered.run("status", "--limit", "1000")
    assert done.returncode == 0, done.stderr
    assert "UNREADABLE" in done.stdout and "FAILING" in done.stdout
    assert "Autumna answered with an error" in done.stdout
    problems = terminal_problems(done.stdout + done.stderr)
    assert not problems, problems[:10]


def test_explain_prints_no_terminal_controls(delivered: Installation) -> None:
    lead_file = delivered.folder / "corpus.json"
    lead_file.write_text(json.dumps([h.record for h in TERMINAL_CORPUS]), encoding="utf-8")
    done = delivered.run("explain", str(lead_file), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("── email message") >= len(TERMINAL_CORPUS)  # all reach sales
    problems = terminal_problems(done.stdout + done.stderr)
    assert not problems, problems[:10]


@pytest.mark.parametrize("name", ["id superscript two", "id above 2**63"], ids=str)
def test_the_real_leadbot_delivers_the_good_leads_around_a_bad_one(
    name: str, tmp_path: Path
) -> None:
    """`leadbot run --once` against Autumna serving one bad record between two good ones."""
    now = datetime.now(UTC)
    good = [base_record(i, category=1, service=100000) for i in GOOD_AROUND_POISON]
    first, second = documents(good, now)
    with installation(
        tmp_path / "leadbot", [first, POISON_RECORDS[name], second], api_key=API_KEY
    ) as inst:
        done = inst.run("run", "--once")
        assert "Traceback" not in done.stderr, done.stderr[-1500:]
        delivered_keys = {m.message["Subject"] for m in inst.smtp.messages}
        assert len(inst.smtp.messages) >= 2, (done.returncode, delivered_keys, done.stderr[-1500:])


@pytest.mark.parametrize(
    "name",
    [
        "invalid utf-8 in a string",
        "json lone surrogates",
        "raw control characters",
        "nested 100000 arrays",
        "error with escapes",
        "html error page",
    ],
    ids=str,
)
def test_explain_of_a_bad_file_says_so_without_crashing(name: str, delivered: Installation) -> None:
    lead_file = delivered.folder / "bad.json"
    lead_file.write_bytes(BAD_BODIES[name])
    done = delivered.run("explain", str(lead_file))
    assert done.returncode in (0, 2), done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    problems = terminal_problems(done.stdout + done.stderr)
    assert not problems, problems[:10]


def test_explain_of_every_terminal_attack_is_clean(delivered: Installation) -> None:
    """Each escape family alone, in a name, the message and the category's name."""
    record = base_record(7500, category=1, service=100000)
    leads = [
        dict(
            record,
            id=7500 + i,
            enquirerFirstName=text,
            content=text,
            category={"id": 1, "name": text},
        )
        for i, text in enumerate([*ANSI.values(), *BIDI.values()])
    ]
    lead_file = delivered.folder / "escapes.json"
    lead_file.write_text(json.dumps(leads), encoding="utf-8")
    done = delivered.run("explain", str(lead_file))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("Lead 1:75") == len(leads)
    problems = terminal_problems(done.stdout + done.stderr)
    assert not problems, problems[:5]


RETAINED = {  # one lead per delivery outcome, each with its own personal details
    "sent": (
        "Ambrosine",
        "Fairweather-Quist",
        "07700 900401",
        "ambrosine@example.net",
        "Ambrosine's father needs nursing care after a fall.",
    ),
    "dead": (
        "Barnabus",
        "Oakenshaw-Pryce",
        "07700 900402",
        "barnabus@example.net",
        "Barnabus is asking about respite care in August.",
    ),
    "retrying": (
        "Celandine",
        "Hollowmere-Vane",
        "07700 900403",
        "celandine@example.net",
        "Celandine needs a room for her aunt, unfinished business.",
    ),
}


def retained_record(outcome: str, lead_id: int) -> dict[str, Any]:
    first, surname, phone, address, content = RETAINED[outcome]
    record = base_record(lead_id, category=1, service=100000)
    record.update(
        enquirerFirstName=first,
        enquirerSurname=surname,
        telephone=phone,
        content=content,
        residentFirstName=first + "-Resident",
        residentSurname=surname,
        **{"from": address},
    )
    return record


def test_purge_erases_personal_details_and_keeps_the_record(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    records = [retained_record(o, 7600 + i) for i, o in enumerate(RETAINED)]
    slow = (
        'slow-teams = { teams = "${TEAMS_SLOW_WEBHOOK}" }\n'
        'dead-slack = { slack = "#closed-channel" }\n'
    )
    rules = (
        '\n[[rules]]\nname = "Unfinished"\nwhen = { content = ["unfinished business"] }\n'
        'notify = ["slow-teams"]\n\n[[rules]]\nname = "Respite"\n'
        'when = { content = ["respite"] }\nnotify = ["dead-slack"]\n'
    )
    with installation(
        tmp_path / "leadbot",
        documents(records, now),
        api_key=API_KEY,
        retention="2d",
        destinations=slow,
        rules=rules,
        teams_vars=("TEAMS_SLOW_WEBHOOK",),
    ) as inst:
        inst.teams.fail_next(1, status=429, retry_after=3600, webhook="slow")
        inst.slack.fail_channel("#closed-channel", "channel_not_found")
        done = inst.run("run", "--once")
        assert done.returncode == 1, done.stderr[-2000:]  # dead-lettered during the run
        before = statuses(inst.db)
        assert before["1:7600"] == {"sent"}
        assert "dead" in before["1:7601"]
        assert "retrying" in before["1:7602"]
        with sqlite3.connect(inst.db) as db:
            db.execute("PRAGMA secure_delete=ON")
            db.execute("UPDATE leads SET seen_at = seen_at - 3 * 86400")
        db.close()
        seen = {k: v for k, v in query(inst.db, "SELECT key, seen_at FROM leads")}
        # An idle reader keeps the -wal and -shm files in place, as a running leadbot would.
        reader = sqlite3.connect(inst.db)
        try:
            reader.execute("SELECT COUNT(*) FROM leads").fetchone()
            done = inst.run("purge")
            assert done.returncode == 0, done.stderr
            files = {p.name: p.read_bytes() for p in inst.folder.glob("leadbot.db*")}
        finally:
            reader.close()
        assert {"leadbot.db", "leadbot.db-wal"} <= set(files), sorted(files)
        for outcome in ("sent", "dead"):
            for value in RETAINED[outcome]:
                for name, data in files.items():
                    for encoded in {
                        value.encode(),
                        value.encode("utf-16-le"),
                        json.dumps(value).encode(),
                    }:
                        assert encoded not in data, f"{outcome} lead's {value!r} is in {name}"
        assert any(RETAINED["retrying"][0].encode() in d for d in files.values()), (
            "the lead still being delivered lost its details"
        )
        assert statuses(inst.db) == before, "delivery outcomes changed"
        after = {k: v for k, v in query(inst.db, "SELECT key, seen_at FROM leads")}
        assert after == seen, "lead keys or times changed"
        rows = {
            r[0]: r[1:]
            for r in query(
                inst.db, "SELECT key, raw IS NULL, purged_at IS NOT NULL, lead_date FROM leads"
            )
        }
        assert rows["1:7600"][:2] == (1, 1) and rows["1:7601"][:2] == (1, 1)
        assert rows["1:7602"][:2] == (0, 0), "a lead with an unfinished delivery was purged"
        assert all(r[2] for r in rows.values()), "lead dates were erased"


def statuses(db: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for subject, status in query(db, "SELECT subject, status FROM deliveries"):
        found.setdefault(subject, set()).add(status)
    return found


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return list(connection.execute(sql))
    finally:
        connection.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_and_the_demo_folder_are_owner_only(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(ROOT_RULES), "run", "--once", "--demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=lambda: os.umask(0),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    demo = tmp_path / "leadbot-demo"
    assert mode(demo) == 0o700
    entries = list(demo.rglob("*"))
    assert len(entries) > 10
    for path in entries:
        expected = 0o700 if path.is_dir() else 0o600
        assert mode(path) == expected, f"{path.relative_to(tmp_path)} is {oct(mode(path))}"
    # a real run's database, created where it is told
    db = tmp_path / "data" / "leadbot.db"
    with installation(tmp_path / "inst", [], api_key=API_KEY) as inst:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bot",
                "--config",
                str(inst.config),
                "--db",
                str(db),
                "run",
                "--once",
            ],
            env=inst.env,
            cwd=inst.folder,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            preexec_fn=lambda: os.umask(0),
        )
        assert done.returncode == 0, done.stderr[-2000:]
    for path in db.parent.iterdir():
        assert mode(path) == 0o600, f"{path.name} is {oct(mode(path))}"
    assert mode(db.parent) == 0o700


def test_an_email_parses_back_to_exactly_one_recipient(renderer: Renderer, config: Config) -> None:
    record = CORPUS[[h.name for h in CORPUS].index("header injection in names and from")].record
    for output in outputs_of(record, renderer, config):
        if output.channel is Channel.EMAIL:
            message = parse_email(output.payload)
            assert message.get_all("Bcc") is None and message.get_all("Cc") is None
            assert len(message.get_all("To") or []) == 1
