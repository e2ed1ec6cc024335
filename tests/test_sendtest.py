"""`leadbot send-test`, through the real process against the loopback stand-ins: a clearly marked
message through each real channel, nothing recorded, and for every failure the far side's answer
and exactly what to do about it.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from conftest import ROSE_MANAGER_EMAIL, ROSE_MANAGER_SLACK, SALES, World, write_rules
from standins import HttpRequest, HttpResponse
from standins.validators import (
    assert_multipart_alternative,
    parse_email,
    validate_slack_message,
    validate_teams_message,
)

from bot import sendtest
from bot.loader import load_config
from bot.models import Channel
from bot.render import Renderer

pytestmark = pytest.mark.timeout(60)

SLACK_TOKEN_ADVICE = (
    "Slack does not accept SLACK_BOT_TOKEN: set it to the app's Bot User OAuth Token (xoxb-…, "
    "api.slack.com/apps → the app → OAuth & Permissions)"
)
LOGIN_ADVICE = (
    "check SMTP_USERNAME and SMTP_PASSWORD: the mail server did not accept them (Microsoft 365: "
    "the mailbox must allow authenticated SMTP; Google: an app password)"
)


# --- what goes out ---------------------------------------------------------------------------


def test_a_test_message_reaches_each_channel_clearly_marked(world: World) -> None:
    for args in (
        ["fallback-slack"],
        ["sales-inbox"],
        ["group-teams"],
        ["home.manager_slack", "--home", "100000"],
        ["home.manager_email", "--home", "Rose Lodge"],
    ):
        done = world.run("send-test", *args)
        assert done.returncode == 0, done.output
        assert "the test message was accepted" in done.stdout

    (channel, dm) = world.slack.messages
    assert channel.channel_arg == "#leads-fallback" and dm.channel_arg == ROSE_MANAGER_SLACK
    payload = {k: channel.args[k] for k in ("text", "blocks", "unfurl_links", "unfurl_media")}
    validate_slack_message(payload)
    assert channel.blocks is not None
    assert channel.blocks[0]["text"]["text"] == "🧪 leadbot test message: not a lead"
    assert "This is a test, not a lead: nothing needs doing." in json.dumps(channel.blocks)
    assert "home.manager_slack of Rose Lodge (U024BE7LH)" in json.dumps(dm.blocks)

    (card,) = world.teams.payloads("group")
    validate_teams_message(card)
    assert "leadbot test message: not a lead" in json.dumps(card)

    mails = {m.rcpt_tos[0]: m for m in world.smtp.messages}
    assert set(mails) == {SALES, ROSE_MANAGER_EMAIL}
    mail = parse_email(mails[ROSE_MANAGER_EMAIL].raw)
    text, html = assert_multipart_alternative(mail)
    assert mail["Subject"] == "leadbot test message for home.manager_email (not a lead)"
    assert mail["Auto-Submitted"] == "auto-generated"  # like every email leadbot sends
    assert mail["X-Auto-Response-Suppress"] == "All"
    assert "This is a test, not a lead" in text and "This is a test, not a lead" in html
    assert "of Rose Lodge (amira.khan@rosecare.example)" in text

    assert not world.db.exists()  # nothing recorded: the database was never opened


def test_send_test_all_tries_every_address_once_and_writes_nothing(world: World) -> None:
    assert world.once().returncode == 0  # an installation with its database
    before = hashlib.sha256(world.db.read_bytes()).hexdigest()
    done = world.run("send-test", "--all")
    assert done.returncode == 0, done.output
    lines = done.stdout.splitlines()[1:11]
    assert [line.split()[0] for line in lines] == [
        "fallback-slack",
        "sales-inbox",
        "group-teams",
        "ops-teams",
        *["home.slack", "home.manager_slack", "home.manager_email"] * 2,
    ]
    assert all("  ok: " in line for line in lines), done.stdout
    assert "10 of 10 destinations accepted the test message." in done.stdout
    assert len(world.slack.messages) == 5 and len(world.smtp.messages) == 3
    assert len(world.teams.payloads()) == 2
    assert hashlib.sha256(world.db.read_bytes()).hexdigest() == before
    assert not world.db.with_name("leadbot.db-wal").exists()
    assert world.query("SELECT count(*) AS n FROM deliveries")[0]["n"] == 0


def test_send_test_all_lists_each_failure_with_what_to_do(world: World) -> None:
    world.slack.fail_channel("#rose-lodge", "not_in_channel")
    world.teams.fail_next(1, 404, webhook="ops")
    done = world.run("send-test", "--all", env=world.env(SMTP_PASSWORD="not-the-password"))
    assert done.returncode == 1
    out = done.stdout
    assert "home.slack (100000 Rose Lodge)" in out
    assert "FAILED: Slack answered not_in_channel" in out
    assert "FAILED: Teams answered HTTP 404 (WorkflowNotFound" in out
    assert "FAILED: the mail server answered 535" in out
    assert "5 of 10 destinations accepted the test message. What to do:" in out
    todo = out.split("What to do:\n", 1)[1].splitlines()
    assert todo == [
        f"  sales@rosecare.example: {LOGIN_ADVICE}",
        "  $TEAMS_OPS_WEBHOOK: no workflow answers at the URL in TEAMS_OPS_WEBHOOK: it was "
        "deleted or turned off, or the URL was cut short; copy it again from the workflow's "
        "trigger in Teams (Workflows)",
        "  #rose-lodge: invite the app to #rose-lodge: open the channel in Slack and type "
        "/invite @leadbot",
        f"  {ROSE_MANAGER_EMAIL}: {LOGIN_ADVICE}",
        f"  tom.reid@rosecare.example: {LOGIN_ADVICE}",
    ]


# --- every failure, with what the far side said and what to do ---------------------------------


@dataclass(frozen=True)
class Failure:
    """One way a test send fails. `said` and `todo` may name {port} (the mail server's, or the
    SMTP_PORT the case sets) and {ca_file} (the Teams stand-in's authority, given to email as the
    wrong one)."""

    name: str
    destination: tuple[str, ...]
    setup: Callable[[World], dict[str, str | None]]  # -> environment overrides
    said: str  # how the far side's answer is reported (the start of it)
    todo: str  # exactly what to do


def _slack_channel(error: str) -> Callable[[World], dict[str, str | None]]:
    def setup(world: World) -> dict[str, str | None]:
        world.slack.fail_channel("#leads-fallback", error)
        return {}

    return setup


def _missing_scope(world: World) -> dict[str, str | None]:
    """Slack's own answer names the scope: {"error": "missing_scope", "needed": ...}."""
    answer = world.slack.handle
    body = {
        "ok": False,
        "error": "missing_scope",
        "needed": "chat:write",
        "provided": "channels:history,reactions:read",
    }

    def handle(request: HttpRequest) -> HttpResponse:
        if request.path == "/api/chat.postMessage":
            json_type = {"Content-Type": "application/json"}
            return HttpResponse(200, json.dumps(body).encode(), json_type)
        return answer(request)

    world.slack.handle = handle  # type: ignore[method-assign]
    return {}


def _teams(status: int) -> Callable[[World], dict[str, str | None]]:
    def setup(world: World) -> dict[str, str | None]:
        world.teams.fail_next(1, status, webhook="group")
        return {}

    return setup


def _untrusted_mail_server(world: World) -> dict[str, str | None]:
    write_rules(world.folder, world.teams.ca_file)  # email.ca_file: another authority's
    return {}


def _implicit_tls_against_starttls(world: World) -> dict[str, str | None]:
    text = world.config.read_text(encoding="utf-8")
    world.config.write_text(text.replace('tls = "starttls"', 'tls = "implicit"'), "utf-8")
    return {}


def _refuse_recipient(world: World) -> dict[str, str | None]:
    world.smtp.fail_next(1, 550, "RCPT")
    return {}


def _busy_mail_server(world: World) -> dict[str, str | None]:
    world.smtp.fail_next(1, 451, "DATA")
    return {}


def _closed_port(world: World) -> dict[str, str | None]:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return {"SMTP_PORT": str(port)}


def _slack_rate_limit(world: World) -> dict[str, str | None]:
    world.slack.fail_next(1, status=429, retry_after=30)
    return {}


FAILURES = [
    Failure(
        "slack not_in_channel",
        ("fallback-slack",),
        _slack_channel("not_in_channel"),
        "Slack answered not_in_channel",
        "invite the app to #leads-fallback: open the channel in Slack and type /invite @leadbot",
    ),
    Failure(
        "slack channel_not_found",
        ("fallback-slack",),
        _slack_channel("channel_not_found"),
        "Slack answered channel_not_found",
        "Slack has no channel #leads-fallback that the app can see: check "
        "destinations.fallback-slack.slack in rules.toml (the channel's name, or the id from "
        "its details); a private channel must invite the app first (/invite @leadbot)",
    ),
    Failure(
        "slack invalid_auth",
        ("home.slack", "--home", "200000"),
        lambda w: {"SLACK_BOT_TOKEN": "xoxb-1111-2222-notTheRightToken"},
        "Slack answered invalid_auth",
        SLACK_TOKEN_ADVICE,
    ),
    Failure(
        "slack missing_scope",
        ("fallback-slack",),
        _missing_scope,
        "Slack answered missing_scope (needed: chat:write; the token has: "
        "channels:history,reactions:read)",
        "add the chat:write scope to the app (api.slack.com/apps → the app → OAuth & "
        "Permissions → Bot Token Scopes), reinstall it to the workspace, and try again",
    ),
    Failure(
        "slack rate limit",
        ("fallback-slack",),
        _slack_rate_limit,
        "Slack rate limit (HTTP 429)",
        "Slack is limiting the app's rate: try again in 30 s",
    ),
    Failure(
        "smtp 535",
        ("sales-inbox",),
        lambda w: {"SMTP_PASSWORD": "not-the-password"},
        "the mail server answered 535 5.7.8 Authentication credentials invalid",
        LOGIN_ADVICE,
    ),
    Failure(
        "smtp certificate not trusted",
        ("sales-inbox",),
        _untrusted_mail_server,
        "the mail server's certificate for 127.0.0.1 is not trusted (unable to get local "
        "issuer certificate)",
        "check the mail server's certificate: 127.0.0.1 (email.host or SMTP_HOST) must be a "
        "name on it, and if a private certificate authority issued it, set email.ca_file in "
        "rules.toml to that authority's certificate (PEM); email.ca_file is now {ca_file}",
    ),
    Failure(
        "smtp implicit TLS on a STARTTLS port",
        ("sales-inbox",),
        _implicit_tls_against_starttls,
        "TLS with 127.0.0.1:{port} failed (WRONG_VERSION_NUMBER)",
        'port 465 wants email.tls = "implicit", ports 587 and 25 "starttls": check email.port '
        "(now {port}) and email.tls (now implicit)",
    ),
    Failure(
        "smtp recipient refused",
        ("sales-inbox",),
        _refuse_recipient,
        f"the mail server answered 550 5.1.1 Mailbox unavailable for {SALES}",
        f"the mail server takes no mail for {SALES}: check destinations.sales-inbox.email",
    ),
    Failure(
        "smtp 451",
        ("sales-inbox",),
        _busy_mail_server,
        "the mail server answered 451 4.3.0 Local error in processing, try again later",
        "a passing problem (the mail server answered 451 4.3.0 Local error in processing, try "
        "again later); a run retries it by itself: try the test again in a few minutes",
    ),
    Failure(
        "smtp unreachable",
        ("sales-inbox",),
        _closed_port,
        "could not reach the mail server (ConnectionRefusedError)",
        "could not reach 127.0.0.1:{port}: check email.host or SMTP_HOST and email.port or "
        "SMTP_PORT, and that this machine may connect there",
    ),
    Failure(
        "teams 400",
        ("group-teams",),
        _teams(400),
        "Teams answered HTTP 400 (InvalidRequestContent",
        "Teams did not take the message: TEAMS_GROUP_WEBHOOK must hold the whole URL of a "
        'Workflows webhook (a workflow started by "When a Teams webhook request is received"); '
        "copy it again from the workflow's trigger in Teams (Workflows)",
    ),
    Failure(
        "teams 404",
        ("group-teams",),
        _teams(404),
        "Teams answered HTTP 404 (WorkflowNotFound: The workflow could not be found.)",
        "no workflow answers at the URL in TEAMS_GROUP_WEBHOOK: it was deleted or turned off, "
        "or the URL was cut short; copy it again from the workflow's trigger in Teams "
        "(Workflows)",
    ),
    Failure(
        "teams certificate not trusted",
        ("group-teams",),
        lambda w: {"SSL_CERT_FILE": None},
        "could not reach Teams (ConnectError)",
        "the certificate Teams presented is not trusted here (unable to get local issuer "
        "certificate): check TEAMS_GROUP_WEBHOOK and this machine's CA certificates (the "
        "ca-certificates package, SSL_CERT_FILE)",
    ),
]


@pytest.mark.parametrize("failure", FAILURES, ids=[f.name for f in FAILURES])
def test_a_failed_test_send_says_what_the_far_side_said_and_what_to_do(
    world: World, failure: Failure
) -> None:
    env = failure.setup(world)
    done = world.run("send-test", *failure.destination, env=world.env(**env))
    assert done.returncode == 1, done.output
    first, todo = done.stdout.splitlines()
    values = {"port": env.get("SMTP_PORT") or world.smtp.port, "ca_file": world.teams.ca_file}
    assert first.split(": FAILED: ", 1)[1].startswith(failure.said.format(**values)), first
    assert todo == f"  what to do: {failure.todo.format(**values)}"
    assert not world.db.exists()


# --- asking for something that is not there ----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "code", "says"),
    [
        (["sales-inbx"], {}, 2, "no destination 'sales-inbx' in rules.toml (did you mean "),
        (["home.slack"], {}, 2, "say which with --home SERVICE_ID (homes with one: 100000 (Rose"),
        (["home.slack", "--home", "999"], {}, 2, "no home '999' in rules.toml: homes are 100000"),
        (["home.teams", "--home", "100000"], {}, 2, "Rose Lodge ([homes.100000] in rules.toml)"),
        (["sales-inbox", "--all"], {}, 2, "name one DESTINATION"),
        ([], {}, 2, "name one DESTINATION"),
        (["fallback-slack"], {"SLACK_BOT_TOKEN": None}, 2, "SLACK_BOT_TOKEN is not set"),
        (["ops-teams"], {"TEAMS_OPS_WEBHOOK": None}, 2, "TEAMS_OPS_WEBHOOK is not set"),
    ],
)
def test_what_is_not_in_rules_toml_or_the_environment_is_named(
    world: World, args: list[str], env: dict[str, str | None], code: int, says: str
) -> None:
    done = world.run("send-test", *args, env=world.env(**env))
    assert done.returncode == code and says in done.stderr, done.output
    assert not world.slack.messages and not world.smtp.messages and not world.teams.requests


def test_a_test_message_needs_no_autumna_key(world: World) -> None:
    done = world.run("send-test", "fallback-slack", env=world.env(AUTUMNA_API_KEY=None))
    assert done.returncode == 0, done.output


# --- the templates ------------------------------------------------------------------------------


def test_a_groups_own_test_template_wins(world: World) -> None:
    own = world.folder / "own" / "slack"
    own.mkdir(parents=True)
    (own / "test.j2").write_text(
        "{% block header %}Rose Care test{% endblock %}{% block text %}Rose test{% endblock %}",
        encoding="utf-8",
    )
    text = world.config.read_text(encoding="utf-8")
    world.config.write_text(text.replace("[group]\n", '[group]\ntemplates = "own"\n'), "utf-8")
    config = load_config(world.config)
    (trial,) = sendtest.chosen(config, "fallback-slack", None)
    message = sendtest.compose(Renderer(config), trial, config, 1.8e9)
    assert message.payload["blocks"][0]["text"]["text"] == "Rose Care test"
    assert trial.target.channel is Channel.SLACK
