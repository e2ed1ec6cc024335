"""The stand-ins and validators, exercised through the real client libraries."""

from __future__ import annotations

import json
import smtplib
import socket
import ssl
import threading
import time
import urllib.error
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from . import RateWindow
from .slack import SlackStandin
from .smtp import SmtpStandin
from .teams import MAX_BODY_BYTES, TeamsStandin
from .validators import (
    assert_multipart_alternative,
    node_validator_available,
    parse_email,
    validate_adaptive_card,
    validate_cards_with_node,
    validate_slack_message,
    validate_teams_message,
)

pytestmark = pytest.mark.timeout(20)

BLOCKS: list[dict[str, Any]] = [
    {"type": "header", "text": {"type": "plain_text", "text": "New lead: Rose Court"}},
    {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": "*Name*\nAda Lovelace"},
            {"type": "mrkdwn", "text": "*Phone*\n01234 567890"},
        ],
    },
    {"type": "divider"},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": "lead 42"}]},
]
METADATA = {"event_type": "lead_delivered", "event_payload": {"lead_id": "42"}}

CARD: dict[str, Any] = {
    "type": "AdaptiveCard",
    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
    "version": "1.5",
    "msteams": {"width": "Full"},
    "body": [
        {"type": "TextBlock", "text": "New lead", "weight": "Bolder", "size": "Medium"},
        {"type": "FactSet", "facts": [{"title": "Name", "value": "Ada Lovelace"}]},
    ],
    "actions": [{"type": "Action.OpenUrl", "title": "Open", "url": "https://example.com/42"}],
}


def teams_message(card: dict[str, Any]) -> dict[str, Any]:
    attachment = {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
    return {"type": "message", "attachments": [attachment]}


# --- Slack --------------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[SlackStandin]:
    with SlackStandin() as standin:
        yield standin


@pytest.fixture
def client(slack: SlackStandin) -> WebClient:
    return WebClient(token="xoxb-test", base_url=slack.base_url, timeout=5, retry_handlers=[])


def test_slack_post_with_metadata_and_read_history(slack: SlackStandin, client: WebClient) -> None:
    first = client.chat_postMessage(
        channel="#leads", text="New lead", blocks=BLOCKS, metadata=METADATA
    )
    second = client.chat_postMessage(channel=first["channel"], text="Another", unfurl_links=False)

    assert first["ok"] and first["channel"] == slack.channel_id("leads")
    assert first["message"]["blocks"] == BLOCKS
    assert float(second["ts"]) > float(first["ts"])
    stored = slack.messages_for("#leads")
    assert [m.text for m in stored] == ["New lead", "Another"]
    assert stored[0].channel_arg == "#leads" and stored[0].metadata == METADATA
    assert stored[1].unfurl_links is False
    assert json.loads(stored[0].body)["metadata"] == METADATA  # slack_sdk posts JSON

    history = client.conversations_history(channel=first["channel"], include_all_metadata=True)
    assert [m["text"] for m in history["messages"]] == ["Another", "New lead"]
    assert history["messages"][1]["metadata"] == METADATA
    plain = client.conversations_history(channel=first["channel"])
    assert all("metadata" not in m for m in plain["messages"])
    assert slack.requests == ["chat.postMessage"] * 2 + ["conversations.history"] * 2


def test_slack_history_pages_newest_first(slack: SlackStandin, client: WebClient) -> None:
    for n in range(5):
        client.chat_postMessage(channel="#leads", text=f"m{n}")
    channel = slack.add_channel("leads")  # the id of the existing channel
    page = client.conversations_history(channel=channel, limit=2)
    assert [m["text"] for m in page["messages"]] == ["m4", "m3"] and page["has_more"]
    cursor = page["response_metadata"]["next_cursor"]
    rest = client.conversations_history(channel=channel, limit=10, cursor=cursor)
    assert [m["text"] for m in rest["messages"]] == ["m2", "m1", "m0"] and not rest["has_more"]
    newer = client.conversations_history(channel=channel, oldest=page["messages"][1]["ts"])
    assert [m["text"] for m in newer["messages"]] == ["m4"]


def test_slack_accepts_form_encoded_posts(slack: SlackStandin, client: WebClient) -> None:
    form = {"channel": "C0000001", "text": "hi", "blocks": json.dumps(BLOCKS)}
    response = client.api_call("chat.postMessage", data=form)
    assert response["ok"]
    assert slack.messages[0].blocks == BLOCKS
    assert slack.messages[0].body.startswith(b"channel=C0000001")


def test_slack_channels_users_and_listing(slack: SlackStandin, client: WebClient) -> None:
    assert client.conversations_open(users="U123ABC")["channel"]["id"] == "D123ABC"
    assert client.chat_postMessage(channel="U123ABC", text="psst")["channel"] == "D123ABC"
    assert client.chat_postMessage(channel="ops", text="x")["channel"] == slack.channel_id("#ops")
    for name in ("a", "b", "c"):
        slack.add_channel(name)
    names, cursor = [], None
    while True:
        page = client.conversations_list(types="public_channel", limit=2, cursor=cursor)
        names += [c["name"] for c in page["channels"]]
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert names == ["general", "ops", "a", "b", "c"]
    assert client.auth_test()["user_id"].startswith("U")


def test_slack_strict_channels() -> None:
    with SlackStandin(strict_channels=True, channels=("leads",)) as slack:
        client = WebClient(token="xoxb-test", base_url=slack.base_url, retry_handlers=[])
        assert client.chat_postMessage(channel="#leads", text="ok")["ok"]
        with pytest.raises(SlackApiError) as raised:
            client.chat_postMessage(channel="#nowhere", text="lost")
        assert raised.value.response["error"] == "channel_not_found"


def test_slack_errors_are_ok_false(slack: SlackStandin, client: WebClient) -> None:
    with pytest.raises(SlackApiError) as raised:
        WebClient(token="xoxb-wrong", base_url=slack.base_url).auth_test()
    assert raised.value.response.status_code == 200
    assert raised.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError, match="unknown_method"):
        client.api_call("chat.teleport")
    with pytest.raises(SlackApiError, match="no_text"):
        client.api_call("chat.postMessage", json={"channel": "#leads"})

    slack.fail_next(1, "channel_is_archived", method="chat.postMessage", channel="#leads")
    client.chat_postMessage(channel="#other", text="not this one")
    with pytest.raises(SlackApiError, match="channel_is_archived"):
        client.chat_postMessage(channel="#leads", text="x")
    assert client.chat_postMessage(channel="#leads", text="x")["ok"]

    slack.fail_channel("#leads", "not_in_channel")
    for _ in range(2):
        with pytest.raises(SlackApiError, match="not_in_channel"):
            client.chat_postMessage(channel="#leads", text="x")
    slack.fail_channel("#leads", None)
    assert client.chat_postMessage(channel="#leads", text="x")["ok"]


def test_slack_429_surfaces_with_retry_after(slack: SlackStandin, client: WebClient) -> None:
    slack.fail_next(1, status=429, retry_after=2)
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="#leads", text="x")
    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "2"
    assert raised.value.response["error"] == "ratelimited"
    assert slack.ratelimited_count("#leads") == 1
    assert client.chat_postMessage(channel="#leads", text="x")["ok"]


def test_slack_sdk_retry_handler_honours_retry_after(slack: SlackStandin) -> None:
    retrying = WebClient(
        token="xoxb-test",
        base_url=slack.base_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    slack.fail_next(1, status=429, retry_after=1)
    started = time.monotonic()
    assert retrying.chat_postMessage(channel="#leads", text="x")["ok"]
    assert time.monotonic() - started >= 1.0
    assert slack.requests == ["chat.postMessage", "chat.postMessage"]


def test_slack_transport_faults(slack: SlackStandin, client: WebClient) -> None:
    slack.fail_next(1, drop=True)
    with pytest.raises((ConnectionError, urllib.error.URLError)):
        client.auth_test()
    slack.fail_next(1, status=500)
    with pytest.raises(SlackApiError) as raised:
        client.auth_test()
    assert raised.value.response.status_code == 500
    slack.fail_next(1, delay=0.3)
    started = time.monotonic()
    assert client.auth_test()["ok"]
    assert time.monotonic() - started >= 0.3


def test_slack_rate_limit_enforcement() -> None:
    with SlackStandin(rate_limit_per_channel=1.0) as slack:
        client = WebClient(token="xoxb-test", base_url=slack.base_url, retry_handlers=[])
        assert client.chat_postMessage(channel="#a", text="1")["ok"]
        with pytest.raises(SlackApiError) as raised:
            client.chat_postMessage(channel="#a", text="2")
        assert raised.value.response.status_code == 429
        assert int(raised.value.response.headers["Retry-After"]) >= 1
        assert client.chat_postMessage(channel="#b", text="other channel")["ok"]
        assert slack.ratelimited_count("#a") == 1 and slack.ratelimited_count("#b") == 0
        assert [m.text for m in slack.messages] == ["1", "other channel"]


def test_rate_window_rule() -> None:
    window = RateWindow(2)
    for t in (0.0, 0.5):
        assert window.retry_after("k", t) is None
        window.accept("k", t)
    assert window.retry_after("k", 0.9) == 1  # two accepted in (−0.1, 0.9]
    assert window.retry_after("other", 0.9) is None
    assert window.retry_after("k", 1.0) is None  # the one at 0.0 left the window


def test_slack_concurrent_posts_get_unique_increasing_ts(slack: SlackStandin) -> None:
    def post(worker: int) -> None:
        client = WebClient(token="xoxb-test", base_url=slack.base_url, retry_handlers=[])
        for n in range(5):
            client.chat_postMessage(channel="#leads", text=f"{worker}-{n}")

    threads = [threading.Thread(target=post, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stamps = [m.ts for m in slack.messages]
    assert len(stamps) == 30 and stamps == sorted(stamps, key=float)
    assert len(set(stamps)) == 30


def test_http_standins_close_their_port() -> None:
    with SlackStandin() as slack, TeamsStandin() as teams:
        ports = [slack.port, teams.port]
        with httpx.Client(timeout=2) as http:  # leave a keep-alive connection open
            http.post(teams.url("x"), json=teams_message(CARD))
    for port in ports:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1)


# --- Teams --------------------------------------------------------------------------


@pytest.fixture
def teams() -> Iterator[TeamsStandin]:
    with TeamsStandin() as standin:
        yield standin


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(5.0)) as client:
        yield client


def test_teams_accepts_cards_with_202(teams: TeamsStandin, http: httpx.Client) -> None:
    response = http.post(teams.url("ops"), json=teams_message(CARD))
    assert response.status_code == 202 and response.content == b""
    assert "sig=" in teams.url("ops") and teams.url("ops") != teams.url("sales")
    assert http.post(teams.url("sales"), json=teams_message(CARD)).status_code == 202
    assert teams.cards("ops") == [CARD]
    assert len(teams.payloads()) == 2 and len(teams.payloads("sales")) == 1


def test_teams_refuses_bad_requests(teams: TeamsStandin, http: httpx.Client) -> None:
    url = teams.url("ops")
    assert http.post(url, json={"type": "message", "attachments": []}).status_code == 400
    assert http.post(url, json={"text": "MessageCard style"}).status_code == 400
    assert (
        http.post(url, content=b"not json", headers={"Content-Type": "text/plain"}).status_code
        == 400
    )
    big = dict(CARD, body=[{"type": "TextBlock", "text": "x" * MAX_BODY_BYTES}])
    too_large = http.post(url, json=teams_message(big))
    assert too_large.status_code == 413
    assert http.post(url.replace("sig=", "sig=bad"), json=teams_message(CARD)).status_code == 401
    assert http.post(f"{teams.root_url}/elsewhere", json=teams_message(CARD)).status_code == 404
    assert teams.payloads() == []
    assert [r.status for r in teams.requests] == [400, 400, 400, 413]  # not the forged ones


def test_teams_faults(teams: TeamsStandin, http: httpx.Client) -> None:
    teams.fail_next(1, status=429, retry_after=3, webhook="ops")
    assert http.post(teams.url("sales"), json=teams_message(CARD)).status_code == 202
    throttled = http.post(teams.url("ops"), json=teams_message(CARD))
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"
    assert teams.ratelimited_count("ops") == 1

    teams.fail_next(1, status=500)
    assert http.post(teams.url("ops"), json=teams_message(CARD)).status_code == 500
    teams.fail_next(1, drop=True)
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(teams.url("ops"), json=teams_message(CARD))
    teams.fail_next(1, status=202, delay=0.3)
    started = time.monotonic()
    assert http.post(teams.url("ops"), json=teams_message(CARD)).status_code == 202
    assert time.monotonic() - started >= 0.3


def test_teams_rate_limit_enforcement(http: httpx.Client) -> None:
    with TeamsStandin(rate_limit_per_webhook=4.0) as teams:
        codes = [
            http.post(teams.url("ops"), json=teams_message(CARD)).status_code for _ in range(5)
        ]
        assert codes == [202] * 4 + [429]
        assert http.post(teams.url("sales"), json=teams_message(CARD)).status_code == 202
        assert teams.ratelimited_count("ops") == 1


# --- SMTP ---------------------------------------------------------------------------


def lead_email(to: str = "home@example.org") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "leadbot@example.com"
    message["To"] = to
    message["Subject"] = "New lead: Rose Court"
    message.set_content("A new lead.\n")
    message.add_alternative("<p>A new lead.</p>\n", subtype="html")
    return message


@pytest.fixture
def smtp() -> Iterator[SmtpStandin]:
    with SmtpStandin(username="bot", password="s3cret") as standin:
        yield standin


def send(standin: SmtpStandin, message: EmailMessage, password: str = "s3cret") -> dict[str, Any]:
    with smtplib.SMTP(standin.host, standin.port, timeout=5) as client:
        client.starttls(context=ssl.create_default_context(cafile=standin.ca_file))
        client.login("bot", password)
        return dict(client.send_message(message))


def test_smtp_starttls_auth_and_message(smtp: SmtpStandin) -> None:
    assert send(smtp, lead_email()) == {}
    [received] = smtp.messages
    assert received.mail_from == "leadbot@example.com" and received.rcpt_tos == ["home@example.org"]
    assert received.login == "bot" and received.secure
    assert b"\r\n" in received.raw
    assert received.message["Subject"] == "New lead: Rose Court"
    plain, html = assert_multipart_alternative(parse_email(received.raw))
    assert plain.strip() == "A new lead." and "<p>" in html
    assert smtp.connections == 1 and smtp.logins == 1


def test_smtp_requires_starttls_and_auth(smtp: SmtpStandin) -> None:
    with smtplib.SMTP(smtp.host, smtp.port, timeout=5) as client:
        client.ehlo()
        assert client.has_extn("starttls") and not client.has_extn("auth")
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.send_message(lead_email())
        assert refused.value.smtp_code == 530
    with smtplib.SMTP(smtp.host, smtp.port, timeout=5) as client:
        client.starttls(context=smtp.client_context())
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.send_message(lead_email())
        assert refused.value.smtp_code == 530  # authentication required
    assert smtp.messages == []


def test_smtp_certificate_is_really_checked(smtp: SmtpStandin) -> None:
    with smtplib.SMTP(smtp.host, smtp.port, timeout=5) as client, pytest.raises(ssl.SSLError):
        client.starttls(context=ssl.create_default_context())  # system CAs only


def test_smtp_wrong_password_fails_fast(smtp: SmtpStandin) -> None:
    started = time.monotonic()
    with pytest.raises(smtplib.SMTPAuthenticationError) as raised:
        send(smtp, lead_email(), password="wrong")
    assert raised.value.smtp_code == 535
    assert time.monotonic() - started < 2
    assert smtp.logins == 0 and smtp.failed_logins >= 1


def test_smtp_implicit_tls() -> None:
    with SmtpStandin(tls="implicit", username="bot", password="s3cret") as standin:
        context = ssl.create_default_context(cafile=standin.ca_file)
        with smtplib.SMTP_SSL(standin.host, standin.port, timeout=5, context=context) as client:
            client.login("bot", "s3cret")
            client.send_message(lead_email())
        assert standin.messages[0].secure and standin.logins == 1


def test_smtp_plain_mode_offers_no_starttls() -> None:
    with SmtpStandin(tls="none") as standin:
        with smtplib.SMTP(standin.host, standin.port, timeout=5) as client:
            client.ehlo()
            assert not client.has_extn("starttls")
            client.send_message(lead_email())
        assert not standin.messages[0].secure


def test_smtp_reply_faults(smtp: SmtpStandin) -> None:
    smtp.fail_next(1, 451, "DATA")
    with pytest.raises(smtplib.SMTPDataError) as data_error:
        send(smtp, lead_email())
    assert data_error.value.smtp_code == 451

    smtp.fail_next(1, 550, "RCPT")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(smtp, lead_email())
    assert refused.value.recipients["home@example.org"][0] == 550

    smtp.fail_next(1, 421, "MAIL")
    with pytest.raises(smtplib.SMTPSenderRefused) as sender_refused:
        send(smtp, lead_email())
    assert sender_refused.value.smtp_code == 421

    smtp.fail_next(1, 550, "RCPT", rcpt="gone@example.org")
    refused_one = send(smtp, lead_email(to="gone@example.org, home@example.org"))
    assert list(refused_one) == ["gone@example.org"]
    assert smtp.messages[-1].rcpt_tos == ["home@example.org"]
    assert len(smtp.messages) == 1


def test_smtp_dropped_connection(smtp: SmtpStandin) -> None:
    for stage in ("MAIL", "DATA"):
        smtp.drop_next(1, stage=stage)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            send(smtp, lead_email())
    assert smtp.messages == []
    assert send(smtp, lead_email()) == {}
    assert smtp.connections == 3


def test_smtp_stops_with_a_client_still_connected() -> None:
    standin = SmtpStandin(username="bot", password="s3cret").start()
    client = smtplib.SMTP(standin.host, standin.port, timeout=5)
    try:
        client.starttls(context=standin.client_context())
        standin.close()
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    finally:
        client.close()
        standin.close()


# --- validators ---------------------------------------------------------------------


def test_slack_validator() -> None:
    validate_slack_message({"text": "New lead", "blocks": BLOCKS})
    header = {"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}
    with pytest.raises(AssertionError, match="150"):
        validate_slack_message({"text": "New lead", "blocks": [header]})
    typo = {"type": "section", "text": {"type": "mrkdwn", "text": "x"}, "accesory": {}}
    with pytest.raises(AssertionError, match="accesory"):
        validate_slack_message({"text": "New lead", "blocks": [typo]})
    with pytest.raises(AssertionError, match="51 blocks"):
        validate_slack_message({"text": "New lead", "blocks": [{"type": "divider"}] * 51})
    with pytest.raises(AssertionError, match="fallback"):
        validate_slack_message({"blocks": BLOCKS})


def test_card_schema_validator() -> None:
    validate_adaptive_card(CARD)
    with pytest.raises(AssertionError, match="'colour' was unexpected"):
        validate_adaptive_card(
            dict(CARD, body=[{"type": "TextBlock", "text": "x", "colour": "Good"}])
        )
    with pytest.raises(AssertionError, match=r"above 1\.5"):
        validate_adaptive_card(dict(CARD, version="1.6"))
    with pytest.raises(AssertionError, match="'Carousel'"):
        validate_adaptive_card(dict(CARD, body=[{"type": "Carousel", "pages": []}]))


def test_teams_message_validator() -> None:
    validate_teams_message(teams_message(CARD))
    with pytest.raises(AssertionError, match="contentType"):
        validate_teams_message({"type": "message", "attachments": [{"content": CARD}]})
    big = dict(CARD, body=[{"type": "TextBlock", "text": "x" * MAX_BODY_BYTES}])
    with pytest.raises(AssertionError, match="bytes"):
        validate_teams_message(teams_message(big), use_node=False)


@pytest.mark.skipif(
    not node_validator_available(), reason="node or tests/node/node_modules missing"
)
def test_node_card_validator() -> None:
    duplicate = dict(CARD, body=[{"type": "TextBlock", "text": "a", "id": "x"}] * 2)
    unknown = dict(CARD, body=[{"type": "Sparkle", "text": "a"}])
    good, dup, unk = validate_cards_with_node([CARD, duplicate, unknown])
    assert good == []
    assert any("DuplicateId" in p for p in dup)
    assert any("UnknownElementType" in p for p in unk)
    with pytest.raises(AssertionError, match="DuplicateId"):
        validate_teams_message(teams_message(duplicate))  # the schema alone lets it pass


def test_email_helpers() -> None:
    plain, html = assert_multipart_alternative(parse_email(lead_email().as_bytes()))
    assert "new lead" in plain and "<p>" in html
    text_only = EmailMessage()
    text_only["Subject"] = "x"
    text_only.set_content("just text")
    with pytest.raises(AssertionError, match="multipart/alternative"):
        assert_multipart_alternative(parse_email(text_only.as_bytes()))
