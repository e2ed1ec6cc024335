"""Classify from one table, tested code by code: every failure the real channels meet, against
the loopback stand-ins, ends as the `DeliveryError` that `bot/failures.py` says it should.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import SENDER, SLACK_TOKEN, SMTP_PASSWORD, SMTP_USER
from standins.slack import SlackStandin
from standins.smtp import SmtpStandin
from standins.teams import TeamsStandin

from bot.channels import email, slack, teams
from bot.channels.email import EmailChannel
from bot.channels.slack import SlackChannel
from bot.channels.teams import TeamsChannel
from bot.failures import SLACK_ERRORS, DeliveryError, http_status, slack_error, smtp_code
from bot.models import Channel, Message, Target

pytestmark = pytest.mark.timeout(30)

RECIPIENT = "sales@rosecare.example"
WEBHOOK_VAR = "TEAMS_OPS_WEBHOOK"


def slack_message(channel: str = "#general") -> Message:
    target = Target(Channel.SLACK, channel, "group-leads")
    payload = slack.compose(
        {
            "header": "New lead: Call Back Request",
            "text": "New lead",
            "body": "Please call back",
            "details": "",
            "footer": "Autumna lead 4:2000",
        },
        {},
        None,
    )
    return Message(target, f"4:2000/{target.key}", "4:2000 -> group-leads", payload)


def teams_message() -> Message:
    target = Target(Channel.TEAMS, WEBHOOK_VAR, "ops-teams")
    payload = teams.compose(
        {
            "title": "New lead",
            "body": "Please call back",
            "details": "",
            "footer": "Autumna lead 4:2000",
        },
        {},
        None,
    )
    return Message(target, f"4:2000/{target.key}", "4:2000 -> ops-teams", payload)


def email_message(to: str = RECIPIENT, n: int = 1) -> Message:
    target = Target(Channel.EMAIL, to, "sales-inbox")
    payload = email.compose(
        {"subject": f"New lead {n}", "text": "Please call back", "html": "<p>Please call back</p>"},
        {},
        None,
    )
    return Message(target, f"4:{n}/{target.key}", f"4:{n} -> sales-inbox", payload)


def failure_of(channel: Any, message: Message) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        channel.send(message)
    return caught.value


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- Slack ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slack_server() -> Iterator[SlackStandin]:
    with SlackStandin(token=SLACK_TOKEN) as server:
        yield server


@pytest.fixture
def slack_standin(slack_server: SlackStandin) -> SlackStandin:
    slack_server.reset()
    return slack_server


@pytest.fixture
def slack_channel(slack_standin: SlackStandin) -> SlackChannel:
    return SlackChannel(SLACK_TOKEN, base_url=slack_standin.base_url, timeout=5)


@pytest.mark.parametrize("code, transient", sorted(SLACK_ERRORS.items()))
def test_each_slack_error_code_is_classified_by_the_table_end_to_end(
    slack_standin: SlackStandin, slack_channel: SlackChannel, code: str, transient: bool
) -> None:
    assert slack_error(code) is transient
    slack_standin.fail_next(1, code, method="chat.postMessage")
    error = failure_of(slack_channel, slack_message())
    assert error.transient is transient
    assert code in error.reason
    assert SLACK_TOKEN not in error.reason and "xoxb" not in error.reason
    assert slack_standin.messages == []


def test_the_table_knows_the_codes_the_readme_names() -> None:
    for code in ("ratelimited", "internal_error", "fatal_error", "service_unavailable"):
        assert SLACK_ERRORS[code] is True
    for code in ("invalid_auth", "channel_not_found", "not_in_channel"):
        assert SLACK_ERRORS[code] is False


def test_an_unknown_slack_error_code_is_transient(
    slack_standin: SlackStandin, slack_channel: SlackChannel
) -> None:
    assert slack_error("brand_new_outage") is True
    slack_standin.fail_next(1, "brand_new_outage")
    error = failure_of(slack_channel, slack_message())
    assert error.transient and "brand_new_outage" in error.reason


def test_a_wrong_slack_token_is_permanent_and_not_repeated_in_the_reason(
    slack_standin: SlackStandin,
) -> None:
    wrong = "xoxb-1111111111-2222222222-WrongWrongWrongWrongWrong"
    error = failure_of(
        SlackChannel(wrong, base_url=slack_standin.base_url, timeout=5), slack_message()
    )
    assert not error.transient and "invalid_auth" in error.reason
    assert wrong not in error.reason


@pytest.mark.parametrize("retry_after", [1, 7, 30])
def test_a_slack_429_is_transient_with_its_retry_after(
    slack_standin: SlackStandin, slack_channel: SlackChannel, retry_after: int
) -> None:
    slack_standin.fail_next(1, status=429, retry_after=retry_after)
    error = failure_of(slack_channel, slack_message())
    assert error.transient
    assert error.retry_after == retry_after
    assert not error.unknown  # a 429 posted nothing
    assert "429" in error.reason and SLACK_TOKEN not in error.reason


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_slack_5xx_is_transient_and_its_outcome_unknown(
    slack_standin: SlackStandin, slack_channel: SlackChannel, status: int
) -> None:
    slack_standin.fail_next(1, status=status)
    error = failure_of(slack_channel, slack_message())
    assert error.transient and error.unknown
    assert str(status) in error.reason and SLACK_TOKEN not in error.reason


def test_a_dropped_slack_connection_is_transient_and_its_outcome_unknown(
    slack_standin: SlackStandin, slack_channel: SlackChannel
) -> None:
    slack_standin.fail_next(1, drop=True)
    error = failure_of(slack_channel, slack_message())
    assert error.transient and error.unknown
    assert SLACK_TOKEN not in error.reason


def test_a_refused_slack_connection_is_transient_and_certainly_not_sent() -> None:
    channel = SlackChannel(
        SLACK_TOKEN, base_url=f"http://127.0.0.1:{closed_port()}/api/", timeout=5
    )
    error = failure_of(channel, slack_message())
    assert error.transient and not error.unknown
    assert SLACK_TOKEN not in error.reason


def test_a_slack_post_that_works_returns_its_channel_and_timestamp(
    slack_standin: SlackStandin, slack_channel: SlackChannel
) -> None:
    where = slack_channel.send(slack_message("#rose-lodge"))
    (posted,) = slack_standin.messages_for("#rose-lodge")
    assert where == f"{posted.channel}/{posted.ts}"  # what an edit needs: chat.update takes both


def test_slack_messages_go_over_one_kept_alive_connection(
    slack_standin: SlackStandin, slack_channel: SlackChannel
) -> None:
    """slack-sdk's own transport opens a connection per call (against Slack, a TLS handshake
    per message); leadbot's keeps one open, failures and history checks included."""
    for _ in range(3):
        slack_channel.send(slack_message("#rose-lodge"))
    slack_standin.fail_next(1, "internal_error")
    assert failure_of(slack_channel, slack_message()).transient
    slack_standin.fail_next(1, status=429, retry_after=1)
    assert failure_of(slack_channel, slack_message()).retry_after == 1
    assert slack_channel.already_sent(slack_message("#rose-lodge"))  # found in the history
    assert len(slack_standin.messages_for("#rose-lodge")) == 3
    assert slack_standin.connections == 1


# --- Teams ---------------------------------------------------------------------------------

TEAMS_STATUSES = [  # status, transient (None: success)
    (200, None),
    (202, None),
    (400, False),
    (401, False),
    (403, False),
    (404, False),
    (413, False),
    (408, True),
    (429, True),
    (500, True),
    (502, True),
    (503, True),
    (504, True),
]


@pytest.fixture(scope="module")
def teams_server() -> Iterator[TeamsStandin]:
    with TeamsStandin() as server:
        yield server


@pytest.fixture
def teams_standin(teams_server: TeamsStandin) -> TeamsStandin:
    teams_server.reset()
    return teams_server


@pytest.fixture
def teams_channel(teams_standin: TeamsStandin) -> Iterator[TeamsChannel]:
    with httpx.Client(timeout=httpx.Timeout(5.0)) as http:
        yield TeamsChannel({WEBHOOK_VAR: teams_standin.url("ops")}, http)


def assert_no_webhook_secret(reason: str, standin: TeamsStandin) -> None:
    url = standin.url("ops")
    assert url not in reason
    assert url.rsplit("sig=", 1)[1] not in reason
    assert "127.0.0.1" not in reason and "workflows" not in reason


@pytest.mark.parametrize("status, transient", TEAMS_STATUSES)
def test_each_teams_status_is_classified_alike_by_the_table_and_the_channel(
    teams_standin: TeamsStandin, teams_channel: TeamsChannel, status: int, transient: bool | None
) -> None:
    if status != 202:
        teams_standin.fail_next(1, status, retry_after=5)
    if transient is None:
        assert teams_channel.send(teams_message()) == ""
        assert [r.status for r in teams_standin.requests] == [status]
        return
    assert http_status(status) is transient
    error = failure_of(teams_channel, teams_message())
    assert error.transient is transient
    assert str(status) in error.reason
    assert error.retry_after == (5.0 if status == 429 else None)
    assert_no_webhook_secret(error.reason, teams_standin)
    assert [r.status for r in teams_standin.requests] == [status]


def test_a_throttled_teams_webhook_answers_429_with_retry_after_and_is_transient(
    teams_standin: TeamsStandin, teams_channel: TeamsChannel
) -> None:
    teams_standin.fail_next(1, 429, retry_after=12)
    error = failure_of(teams_channel, teams_message())
    assert error.transient and error.retry_after == 12.0


def test_a_dropped_teams_connection_is_transient(
    teams_standin: TeamsStandin, teams_channel: TeamsChannel
) -> None:
    teams_standin.fail_next(1, drop=True)
    error = failure_of(teams_channel, teams_message())
    assert error.transient
    assert_no_webhook_secret(error.reason, teams_standin)


def test_a_refused_teams_connection_is_transient() -> None:
    url = f"http://127.0.0.1:{closed_port()}/workflows/x/triggers/manual/paths/invoke?sig=s3cr3t"
    with httpx.Client(timeout=5.0) as http:
        error = failure_of(TeamsChannel({WEBHOOK_VAR: url}, http), teams_message())
    assert error.transient and "s3cr3t" not in error.reason and url not in error.reason


def test_a_teams_webhook_with_a_wrong_signature_is_permanent(teams_standin: TeamsStandin) -> None:
    url = teams_standin.url("ops").rsplit("sig=", 1)[0] + "sig=forged"
    with httpx.Client(timeout=5.0) as http:
        error = failure_of(TeamsChannel({WEBHOOK_VAR: url}, http), teams_message())
    assert not error.transient and "401" in error.reason and "forged" not in error.reason


def test_a_teams_destination_without_its_webhook_url_is_permanent() -> None:
    with httpx.Client(timeout=5.0) as http:
        error = failure_of(TeamsChannel({}, http), teams_message())
    assert not error.transient and WEBHOOK_VAR in error.reason


# --- SMTP ----------------------------------------------------------------------------------

SMTP_CODES = [  # code, transient
    (421, True),
    (450, True),
    (451, True),
    (452, True),
    (550, False),
    (551, False),
    (552, False),
    (553, False),
    (554, False),
]


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[SmtpStandin]:
    with SmtpStandin(tls="starttls", username=SMTP_USER, password=SMTP_PASSWORD) as server:
        yield server


@pytest.fixture
def smtp(smtp_server: SmtpStandin) -> SmtpStandin:
    smtp_server.reset()
    return smtp_server


@pytest.fixture
def mailer(smtp: SmtpStandin) -> Iterator[EmailChannel]:
    channel = EmailChannel(
        "127.0.0.1",
        smtp.port,
        SENDER,
        "starttls",
        SMTP_USER,
        SMTP_PASSWORD,
        smtp.ca_file,
        timeout=5,
    )
    yield channel
    channel.close()


@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "DATA"])
@pytest.mark.parametrize("code, transient", SMTP_CODES)
def test_each_smtp_reply_is_classified_by_the_table_end_to_end(
    smtp: SmtpStandin, mailer: EmailChannel, code: int, transient: bool, stage: str
) -> None:
    assert smtp_code(code) is transient
    smtp.fail_next(1, code, stage)  # type: ignore[arg-type]
    error = failure_of(mailer, email_message())
    assert error.transient is transient
    assert str(code) in error.reason
    assert SMTP_PASSWORD not in error.reason
    assert smtp.messages == []


@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "DATA"])
def test_a_dropped_smtp_connection_is_transient(
    smtp: SmtpStandin, mailer: EmailChannel, stage: str
) -> None:
    smtp.drop_next(1, stage)  # type: ignore[arg-type]
    error = failure_of(mailer, email_message())
    assert error.transient
    assert smtp.messages == []


@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "DATA"])
@pytest.mark.parametrize("code", [421, 450, 550])  # 421 also closes the connection
def test_after_a_failed_smtp_transaction_the_next_send_works(
    smtp: SmtpStandin, mailer: EmailChannel, code: int, stage: str
) -> None:
    smtp.fail_next(1, code, stage)  # type: ignore[arg-type]
    failure_of(mailer, email_message(n=1))
    mailer.send(email_message(n=2))
    assert [m.message["Subject"] for m in smtp.messages] == ["New lead 2"]


def test_a_wrong_smtp_password_is_permanent_and_says_what_to_check(smtp: SmtpStandin) -> None:
    wrong = "Not-The-Password-9z"
    channel = EmailChannel(
        "127.0.0.1", smtp.port, SENDER, "starttls", SMTP_USER, wrong, smtp.ca_file, timeout=5
    )
    error = failure_of(channel, email_message())
    assert smtp_code(535) is False
    assert not error.transient
    assert "535" in error.reason
    assert "SMTP_USERNAME" in error.reason and "SMTP_PASSWORD" in error.reason
    assert wrong not in error.reason
    assert smtp.failed_logins >= 1 and smtp.logins == 0  # smtplib tries each mechanism
    assert smtp.messages == []


def test_a_server_without_starttls_gets_nothing_in_plaintext() -> None:
    with SmtpStandin(tls="none", username=SMTP_USER, password=SMTP_PASSWORD) as plain:
        channel = EmailChannel(
            "127.0.0.1",
            plain.port,
            SENDER,
            "starttls",
            SMTP_USER,
            SMTP_PASSWORD,
            plain.ca_file,
            timeout=5,
        )
        error = failure_of(channel, email_message())
        assert not error.transient
        assert "STARTTLS" in error.reason
        assert plain.messages == []
        assert plain.logins == 0 and plain.failed_logins == 0  # the password never went


def test_an_untrusted_certificate_is_permanent(smtp: SmtpStandin) -> None:
    other = SmtpStandin()  # its CA signed nothing the server presents
    try:
        channel = EmailChannel(
            "127.0.0.1",
            smtp.port,
            SENDER,
            "starttls",
            SMTP_USER,
            SMTP_PASSWORD,
            other.ca_file,
            timeout=5,
        )
        error = failure_of(channel, email_message())
    finally:
        other.close()
    assert not error.transient and "not trusted" in error.reason
    assert smtp.messages == [] and smtp.logins == 0


def test_implicit_tls_as_on_port_465_works() -> None:
    assert EmailChannel("smtp.example", 0, SENDER, "implicit").port == 465
    assert EmailChannel("smtp.example", 0, SENDER, "starttls").port == 587
    with SmtpStandin(tls="implicit", username=SMTP_USER, password=SMTP_PASSWORD) as server:
        channel = EmailChannel(
            "127.0.0.1",
            server.port,
            SENDER,
            "implicit",
            SMTP_USER,
            SMTP_PASSWORD,
            server.ca_file,
            timeout=5,
        )
        message_id = channel.send(email_message())
        channel.close()
        (mail,) = server.messages
    assert mail.secure and mail.login == SMTP_USER and mail.rcpt_tos == [RECIPIENT]
    assert mail.message["Message-ID"] == message_id


def test_one_connection_carries_several_messages_in_a_row_and_close_ends_it(
    smtp: SmtpStandin, mailer: EmailChannel
) -> None:
    for n in (1, 2, 3):
        mailer.send(email_message(n=n))
    assert smtp.connections == 1 and smtp.logins == 1
    assert [m.message["Subject"] for m in smtp.messages] == [
        "New lead 1",
        "New lead 2",
        "New lead 3",
    ]
    assert all(m.secure and m.login == SMTP_USER for m in smtp.messages)

    mailer.close()
    assert mailer.smtp is None
    mailer.close()  # closing twice is harmless
    mailer.send(email_message(n=4))
    assert smtp.connections == 2  # a new burst, a new connection


def test_a_kept_connection_that_went_stale_gets_one_fresh_try(
    smtp: SmtpStandin, mailer: EmailChannel
) -> None:
    mailer.send(email_message(n=1))
    smtp.drop_next(1, "MAIL")  # the server let the idle connection go
    mailer.send(email_message(n=2))
    assert smtp.connections == 2
    assert [m.message["Subject"] for m in smtp.messages] == ["New lead 1", "New lead 2"]
