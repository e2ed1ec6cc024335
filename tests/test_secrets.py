"""No secret ever leaves the environment.

The real `leadbot` process runs at DEBUG against the loopback stand-ins with recognisable
secrets, through successes, retries (Slack 429 with Retry-After and internal_error, SMTP 451,
Teams 500) and failures (Autumna 500 and a wrong key, Slack invalid_auth and channel_not_found,
SMTP 535, Teams 404), and `send-test` with right and wrong secrets; all of it twice, with log
lines as text and as JSON (LEADBOT_LOG_FORMAT=json). Then every log line, the output of
`status`, `check`, `resend` and `send-test`, every file leadbot wrote (the database with its
-wal and -shm, taken while it runs too) and every message the stand-ins received are searched
for each secret, plain, URL-encoded and base64-encoded.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import secrets
import signal
import string
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, quote_plus

import pytest
from hostile import PUBLISHED, Installation, installation

from bot.demo.standin import redate
from bot.settings import RedactingFilter, redact, register_secrets

pytestmark = pytest.mark.timeout(120)


def alphanumerics(n: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


AUTUMNA_KEY = "AUTUMNAKEY" + alphanumerics(30)
WRONG_AUTUMNA_KEY = "AUTUMNAKEYWRONG" + alphanumerics(25)
SLACK_TOKEN = "xoxb-SECRETSLACKTOKEN-" + alphanumerics(24)
WRONG_SLACK_TOKEN = "xoxb-SECRETSLACKTOKEN-WRONG-" + alphanumerics(18)
SMTP_USER = "leadbot-mailer"
SMTP_PASSWORD = "SMTP-PASSWORD-SECRET-" + alphanumerics(16)
WRONG_SMTP_PASSWORD = "SMTP-PASSWORD-SECRET-WRONG-" + alphanumerics(10)
TEAMS_VARS = ("TEAMS_GROUP_WEBHOOK", "TEAMS_OPS_WEBHOOK")

EVERYWHERE = """
[[rules]]
name = "Everything reaches the home's Slack and the group's Teams"
notify = ["home.slack", "group-teams"]
"""


@dataclass
class Evidence:
    """Everything that could carry a secret, by where it came from."""

    logs: dict[str, str] = field(default_factory=dict)  # command -> its stderr (the log)
    outputs: dict[str, str] = field(default_factory=dict)  # command -> its stdout
    files: dict[str, bytes] = field(default_factory=dict)  # what leadbot wrote, when
    received: dict[str, bytes] = field(default_factory=dict)  # what the stand-ins received
    secrets: list[str] = field(default_factory=list)
    log_format: str = "text"


def forms(secret: str) -> dict[str, bytes]:
    """A secret as it could appear: plain, URL-encoded, base64 (as in SMTP AUTH)."""
    found = {
        "plain": secret.encode(),
        "url-encoded": quote(secret, safe="").encode(),
        "form-encoded": quote_plus(secret).encode(),
        "base64": base64.b64encode(secret.encode()).decode().rstrip("=").encode(),
        "json": json.dumps(secret)[1:-1].encode(),
    }
    if secret.startswith("SMTP-PASSWORD"):
        plain = base64.b64encode(f"\0{SMTP_USER}\0{secret}".encode()).decode().rstrip("=")
        found["AUTH PLAIN"] = plain.encode()
    return found


def leaks(evidence: Evidence, sources: dict[str, bytes]) -> list[str]:
    found = []
    for where, data in sources.items():
        for secret in evidence.secrets:
            for form, value in forms(secret).items():
                if value in data:
                    at = data.index(value)
                    found.append(
                        f"{where}: {form} {secret[:24]}… in {data[max(0, at - 80) : at + 40]!r}"
                    )
                    break  # one form is enough to say where it leaked
    return found


def documents(first_id: int, now: datetime) -> list[str]:
    """The eight published leads, as published, with fresh ids and recent dates."""
    docs = [p.read_text(encoding="utf-8") for p in sorted(PUBLISHED.glob("*.json"))]
    docs = [re.sub(r'^\{"id": \d+', f'{{"id": {first_id + i}', doc) for i, doc in enumerate(docs)]
    return redate(docs, now, spacing=timedelta(minutes=2))


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run(
    inst: Installation, evidence: Evidence, label: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    done = inst.run(*args, "--log-level", "DEBUG", **env)
    evidence.logs[label] = done.stderr  # log lines and error messages
    evidence.outputs[label] = done.stdout  # what the command prints for people
    return done


@pytest.fixture(scope="module", params=["text", "json"])
def evidence(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Evidence]:
    """Everything, with log lines as text and then as JSON (LEADBOT_LOG_FORMAT=json)."""
    folder = tmp_path_factory.mktemp(f"secrets-{request.param}") / "leadbot"
    logs = folder.parent / "logs"
    logs.mkdir()
    now = datetime.now(UTC)
    found = Evidence(log_format=request.param)
    with installation(
        folder,
        documents(3000, now),
        api_key=AUTUMNA_KEY,
        slack_token=SLACK_TOKEN,
        smtp_user=SMTP_USER,
        smtp_password=SMTP_PASSWORD,
        alert_after="0s",
        rules=EVERYWHERE,
    ) as inst:
        inst.env["LEADBOT_LOG_FORMAT"] = request.param
        webhooks = [inst.env[var] for var in TEAMS_VARS]
        found.secrets = [
            AUTUMNA_KEY,
            WRONG_AUTUMNA_KEY,
            SLACK_TOKEN,
            WRONG_SLACK_TOKEN,
            SMTP_PASSWORD,
            WRONG_SMTP_PASSWORD,
            *webhooks,
            *(url.rsplit("sig=", 1)[1] for url in webhooks),
        ]

        # 1. The loop, with one of each transient failure; its files are read while it runs.
        inst.slack.fail_next(1, status=429, retry_after=1)
        inst.slack.fail_next(1, error="internal_error")
        inst.smtp.fail_next(1, 451)
        inst.teams.fail_next(1, 500, webhook="group")
        with (logs / "out").open("w+") as out, (logs / "err").open("w+") as err:
            process = subprocess.Popen(
                inst.command("run", "--log-level", "DEBUG"),
                env=inst.env,
                cwd=folder,
                stdout=out,
                stderr=err,
            )
            try:
                wait_for(
                    lambda: (
                        len(inst.slack.messages) >= 8
                        and len(inst.smtp.messages) >= 8
                        and len(inst.teams.payloads("group")) >= 8
                    ),
                    60,
                    "every delivery",
                )
                found.files.update(
                    {f"{p.name} (while running)": data for p, data in inst.files().items()}
                )
                assert {p.name for p in inst.files()} >= {"leadbot.db", "leadbot.db-wal"}
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
            out.seek(0)
            err.seek(0)
            found.logs["run (loop)"] = out.read() + err.read()
        assert process.returncode == 0, found.logs["run (loop)"][-2000:]
        for retried in (
            "Slack rate limit (HTTP 429)",
            "Slack error internal_error",
            "the mail server answered 451",
            "HTTP 500 from Teams",
        ):
            assert retried in found.logs["run (loop)"], retried

        # 2. Autumna fails: an error that echoes the key (as many APIs do); an outage; a wrong
        # key (Autumna answers both with HTTP 500). Ops is told at once (alert_after = "0s").
        inst.autumna.fail_next(
            1,
            status=200,
            body=json.dumps({"message": f"Unknown api_key {AUTUMNA_KEY} (expected 40 characters)"}),
        )
        assert run(inst, found, "run: Autumna echoes the key", "run", "--once").returncode == 1
        assert "Autumna answered with an error" in found.logs["run: Autumna echoes the key"]
        run(inst, found, "status after the echo", "status")

        inst.autumna.fail_next(1, status=500)
        assert run(inst, found, "run: Autumna 500", "run", "--once").returncode == 1
        done = run(
            inst,
            found,
            "run: wrong Autumna key",
            "run",
            "--once",
            AUTUMNA_API_KEY=WRONG_AUTUMNA_KEY,
        )
        assert done.returncode == 1, done.stderr[-2000:]
        run(inst, found, "status while Autumna fails", "status")
        found.files.update(
            {f"{p.name} (while Autumna fails)": data for p, data in inst.files().items()}
        )

        # 3. Delivery fails for good: channel_not_found, SMTP 535, Teams 404.
        inst.autumna.add(*documents(3100, datetime.now(UTC)))
        inst.slack.fail_channel("#willow-house", "channel_not_found")
        inst.teams.fail_next(8, 404, webhook="group")
        done = run(
            inst,
            found,
            "run: permanent failures",
            "run",
            "--once",
            SMTP_PASSWORD=WRONG_SMTP_PASSWORD,
        )
        assert done.returncode == 1, done.stderr[-2000:]  # dead-lettered during the run
        assert inst.smtp.failed_logins >= 1
        inst.slack.fail_channel("#willow-house", None)

        # 4. A wrong Slack token: invalid_auth.
        inst.autumna.add(*documents(3200, datetime.now(UTC)))
        done = run(
            inst, found, "run: invalid_auth", "run", "--once", SLACK_BOT_TOKEN=WRONG_SLACK_TOKEN
        )
        assert done.returncode == 1, done.stderr[-2000:]  # dead-lettered during the run

        statuses = query_statuses(inst)
        assert {"sent", "dead"} <= statuses, statuses

        # 5. What people read.
        for label, args, env in [
            ("status", ("status", "--limit", "100"), {}),
            ("check", ("check",), {}),
            (
                "check with a wrong Teams URL",
                ("check",),
                {
                    "TEAMS_GROUP_WEBHOOK": webhooks[0].replace(
                        "http://127.0.0.1", "http://teams.example"
                    )
                },
            ),
            ("resend", ("resend", "--all"), {}),
            ("send-test", ("send-test", "--all"), {}),
            (
                "send-test with wrong secrets",
                ("send-test", "--all"),
                {"SLACK_BOT_TOKEN": WRONG_SLACK_TOKEN, "SMTP_PASSWORD": WRONG_SMTP_PASSWORD},
            ),
        ]:
            run(inst, found, label, *args, **env)
        shown = found.outputs["status"] + found.outputs["resend"]
        tested = found.outputs["send-test with wrong secrets"]
        assert "Slack answered invalid_auth" in tested and "answered 535" in tested, tested
        for error in (
            "Slack error invalid_auth",
            "channel_not_found",
            "refused the login (535)",
            "HTTP 404 from Teams",
        ):
            assert error in shown, error
        assert "problem" in found.logs["check with a wrong Teams URL"]
        for label in ("run: Autumna 500", "run: wrong Autumna key"):
            assert "Autumna answered HTTP 500" in found.logs[label], found.logs[label][-1000:]

        found.files.update({p.name: data for p, data in inst.files().items()})
        for i, message in enumerate(inst.slack.messages):
            found.received[f"slack message {i}"] = message.body + json.dumps(message.args).encode()
        for i, mail in enumerate(inst.smtp.messages):
            found.received[f"email {i}"] = mail.raw
        for i, request in enumerate(inst.teams.requests):
            found.received[f"teams request {i} ({request.status})"] = request.body
        assert len(found.received) > 30
        yield found


def query_statuses(inst: Installation) -> set[str]:
    import sqlite3

    db = sqlite3.connect(f"file:{inst.db}?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT status FROM deliveries")}
    finally:
        db.close()


def test_the_search_finds_a_planted_secret(evidence: Evidence) -> None:
    planted = {
        "a": b"x" + quote(SLACK_TOKEN, safe="").encode() + b"y",
        "b": base64.b64encode(f"\0{SMTP_USER}\0{SMTP_PASSWORD}".encode()),
        "c": evidence.secrets[-1].encode(),
    }
    assert {found.split(":")[0] for found in leaks(evidence, planted)} == set(planted)


def test_the_secrets_were_really_used(evidence: Evidence) -> None:
    """The search below means something only if the runs carried the secrets: the debug logs
    show the requests that held them."""
    loop = evidence.logs["run (loop)"]
    assert "HTTP Request: GET" in loop and "api_key=" in loop, loop[:2000]
    # slack-sdk's request bodies stay out of DEBUG logs (they carry personal details); the
    # bot's own lines show the Slack sends that carried the token.
    assert re.search(r"sent .* -> .*\(slack\)|sent .*home\.slack", loop) or "-> group" in loop


def test_the_logs_were_written_in_the_format_asked_for(evidence: Evidence) -> None:
    lines = [line for line in evidence.logs["run (loop)"].splitlines() if line]
    assert len(lines) > 20
    if evidence.log_format == "json":
        parsed = [json.loads(line) for line in lines]  # every line is one JSON object
        assert {"time", "level", "logger", "message"} <= set(parsed[0])
        assert any(line.get("outcome") == "sent" for line in parsed)
    else:
        assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]", line) for line in lines)


def test_no_log_line_holds_a_secret(evidence: Evidence) -> None:
    found = leaks(
        evidence, {k: v.encode("utf-8", "surrogateescape") for k, v in evidence.logs.items()}
    )
    assert not found, "\n".join(found[:10])


def test_no_command_output_holds_a_secret(evidence: Evidence) -> None:
    found = leaks(
        evidence, {k: v.encode("utf-8", "surrogateescape") for k, v in evidence.outputs.items()}
    )
    assert not found, "\n".join(found[:10])


def test_no_file_leadbot_wrote_holds_a_secret(evidence: Evidence) -> None:
    assert any(name.endswith("-shm (while running)") for name in evidence.files)
    found = leaks(evidence, evidence.files)
    assert not found, "\n".join(found[:10])


def test_no_message_sent_holds_a_secret(evidence: Evidence) -> None:
    found = leaks(evidence, evidence.received)
    assert not found, "\n".join(found[:10])


# --- the filter itself ---------------------------------------------------------------------------


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("leadbot.test_secrets")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


FILTER_SECRET = "FILTERSECRET" + alphanumerics(28)


def test_the_filter_redacts_a_secret_in_a_records_args(
    log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = log
    register_secrets([FILTER_SECRET])
    url = f"https://www.autumna.co.uk/api/leads/?api_key={FILTER_SECRET}&dateTimeFrom=x"
    logger.info("HTTP Request: %s %s", "GET", url)
    logger.debug("args %r and %s", {"key": FILTER_SECRET}, [quote(FILTER_SECRET)])
    text = stream.getvalue()
    assert FILTER_SECRET not in text
    assert "HTTP Request: GET https://www.autumna.co.uk/api/leads/" in text


def test_the_filter_redacts_a_secret_in_an_exception(
    log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = log
    register_secrets([FILTER_SECRET])
    try:
        try:
            raise ValueError(f"inner {FILTER_SECRET}")
        except ValueError as inner:
            raise RuntimeError(f"could not fetch ?api_key={FILTER_SECRET}") from inner
    except RuntimeError:
        logger.exception("poll failed")
    text = stream.getvalue()
    assert FILTER_SECRET not in text, text
    assert "poll failed" in text and "RuntimeError" in text


@pytest.mark.parametrize(
    "shape",
    [
        "https://x.logic.azure.com/workflows/1/triggers/manual/paths/invoke?sp=%2F&sig=SIGabc123xyz",
        "token=xoxb-1234-5678-abcdefABCDEF",
        "xoxp-1234-5678-abcdefABCDEF",
        "password=hunter2-but-longer",
        "https://www.autumna.co.uk/api/leads/?api_key=UNREGISTERED1",
    ],
)
def test_the_filter_redacts_secret_shapes_it_was_not_told_about(
    shape: str, log: tuple[logging.Logger, io.StringIO]
) -> None:
    logger, stream = log
    logger.warning("value: %s", shape)
    secret = shape.rsplit("=", 1)[1] if "=" in shape else shape
    assert secret not in stream.getvalue()
    assert secret not in redact(shape)
