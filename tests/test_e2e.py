"""End to end: the real `leadbot` process against real servers on loopback.

Autumna is leadbot's own demo stand-in; Slack, Teams (behind verified TLS) and SMTP (STARTTLS and
AUTH, verified against a trustme CA) are the stand-ins in tests/standins. Every assertion is on
what really went out: the JSON the Slack and Teams servers received, the email bytes the SMTP
server received, the requests Autumna saw, and what leadbot wrote to its SQLite database.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import (
    PUBLISHED_ROUTES,
    ROSE_MANAGER_EMAIL,
    ROSE_MANAGER_SLACK,
    SALES,
    SENDER,
    SLACK_TOKEN,
    SMTP_USER,
    TEAMS_VARS,
    Result,
    World,
    open_world,
    published_by_key,
    published_documents,
    wait_for,
    write_rules,
)
from standins.slack import SlackMessage
from standins.validators import (
    assert_multipart_alternative,
    parse_email,
    validate_slack_message,
    validate_teams_messages,
)

from bot import pipeline
from bot.channels.slack import SlackChannel
from bot.demo.standin import redate
from bot.loader import load_config
from bot.models import Channel
from bot.settings import Settings
from bot.store import Store

pytestmark = pytest.mark.timeout(60)

FOOTER_KEY = re.compile(r"Autumna lead (\d+:\d+)")  # every template's footer names the lead
UTC_PARAM = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")  # no zone suffix, no fraction
WEBHOOK_VAR = {name: var for var, name in TEAMS_VARS.items()}


# --- what the stand-ins received ---------------------------------------------------------------


def slack_key(message: SlackMessage) -> str | None:
    metadata = message.metadata or {}
    ref = (metadata.get("event_payload") or {}).get("ref", "")
    return ref.split("/", 1)[0] or None


def text_key(text: str) -> str | None:
    found = FOOTER_KEY.search(text)
    return found[1] if found else None


def email_text(raw: bytes) -> str:
    plain, _ = assert_multipart_alternative(parse_email(raw))
    return plain


def arrivals(world: World) -> Counter[tuple[str | None, str, str]]:
    """(lead key, channel, address) of everything the three services accepted; Slack by the
    channel argument leadbot sent, Teams by webhook name, email by envelope recipient."""
    got: Counter[tuple[str | None, str, str]] = Counter()
    for message in world.slack.messages:
        got[(slack_key(message), "slack", message.channel_arg)] += 1
    for request in world.teams.requests:
        if request.status == 202:
            got[
                (
                    text_key(json.dumps(request.payload, ensure_ascii=False)),
                    "teams",
                    request.webhook,
                )
            ] += 1
    for mail in world.smtp.messages:
        for rcpt in mail.rcpt_tos:
            got[(text_key(email_text(mail.raw)), "email", rcpt)] += 1
    return got


def destinations_of(world: World, key: str) -> Counter[tuple[str, str]]:
    return Counter({(c, a): n for (k, c, a), n in arrivals(world).items() if k == key})


def sent_nothing(world: World) -> bool:
    return not (world.slack.messages or world.teams.requests or world.smtp.messages)


def db_address(channel: str, address: str) -> str:
    return WEBHOOK_VAR[address] if channel == "teams" else address


def assert_ran(result: Result, code: int = 0) -> None:
    assert result.returncode == code, f"exit {result.returncode}\n{result.stderr[-3000:]}"


def assert_no_secret(text: str, world: World) -> None:
    for secret in world.secrets():
        assert secret not in text, f"a secret ({secret[:6]}…) leaked"


# --- 1, 2, 3, 9: the eight published leads, one run ---------------------------------------------


@dataclass
class Published:
    world: World
    result: Result


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    """All eight published leads (two invalid JSON as published), recently dated, through one
    `leadbot run --once` at DEBUG level."""
    with open_world(tmp_path_factory.mktemp("published")) as world:
        world.autumna.add(*published_documents())
        yield Published(world, world.once("--log-level", "DEBUG"))


def test_the_published_run_succeeds(published: Published) -> None:
    assert_ran(published.result)
    assert "Traceback" not in published.result.stderr


@pytest.mark.parametrize("name", sorted(PUBLISHED_ROUTES))
def test_each_published_lead_arrives_at_exactly_its_destinations(
    published: Published, name: str
) -> None:
    key, expected = PUBLISHED_ROUTES[name]
    assert destinations_of(published.world, key) == Counter(expected)
    rows = [r for r in published.world.query("SELECT * FROM deliveries WHERE subject = ?", key)]
    assert {(r["channel"], r["address"]) for r in rows} == {
        (c, db_address(c, a)) for c, a in expected
    }
    assert {r["status"] for r in rows} == {"sent"}
    assert all(r["attempts"] == 1 and r["sent_at"] for r in rows)


def test_all_eight_are_announced_including_the_six_sharing_id_2000(published: Published) -> None:
    keys = {k for k, _, _ in arrivals(published.world)}
    assert keys == {key for key, _ in PUBLISHED_ROUTES.values()}
    rows = published.world.query("SELECT key, announced, raw FROM leads WHERE lead_id = 2000")
    assert sorted(r["key"] for r in rows) == [f"{c}:2000" for c in (1, 4, 5, 6, 7, 8)]
    assert all(r["announced"] == 1 and r["raw"] for r in rows)
    # nothing reached the fallback or ops: every lead was routed, nothing failed
    assert published.world.slack.messages_for("#leads-fallback") == []
    assert published.world.teams.payloads("ops") == []


def test_every_slack_message_is_valid_block_kit_with_lead_metadata(published: Published) -> None:
    messages = published.world.slack.messages
    assert len(messages) == 8
    for message in messages:
        validate_slack_message({"text": message.text, "blocks": message.blocks})
        assert message.metadata is not None
        assert message.metadata["event_type"] == "autumna_lead"
        assert message.metadata["event_payload"]["ref"].startswith(f"{slack_key(message)}/slack:")
        assert message.unfurl_links is False and message.unfurl_media is False


def test_every_teams_message_is_a_valid_card_answered_202(published: Published) -> None:
    requests = published.world.teams.requests
    assert len(requests) == 8
    assert {r.status for r in requests} == {202}
    validate_teams_messages([r.payload for r in requests])  # schema 1.5, and Node if installed


def test_every_email_is_multipart_sent_over_starttls_with_auth(published: Published) -> None:
    mails = published.world.smtp.messages
    assert len(mails) == 5
    ids = []
    for mail in mails:
        assert mail.secure and mail.login == SMTP_USER
        message = parse_email(mail.raw)
        plain, html = assert_multipart_alternative(message)
        assert message.get_content_type() == "multipart/alternative"
        assert SENDER in str(message["From"])
        assert [str(message["To"])] == mail.rcpt_tos
        assert text_key(plain) and text_key(plain) in html
        ids.append(str(message["Message-ID"]))
    assert all(re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_an_urgent_call_back_is_flagged_in_email_and_mentions_the_manager(
    published: Published,
) -> None:
    world = published.world
    emails = {
        mail.rcpt_tos[0]: parse_email(mail.raw)
        for mail in world.smtp.messages
        if text_key(email_text(mail.raw)) == "4:2000"
    }
    assert set(emails) == {ROSE_MANAGER_EMAIL, SALES}
    for message in emails.values():
        # A long Subject is folded right after "Subject:"; unfolded, it starts "URGENT".
        assert str(message["Subject"]).lstrip().startswith("URGENT")
        assert str(message["X-Priority"]).startswith("1")
        assert str(message["Importance"]) == "High"
    routine = [
        parse_email(m.raw) for m in world.smtp.messages if text_key(email_text(m.raw)) == "6:2000"
    ]
    assert routine and all(m["X-Priority"] is None for m in routine)
    assert not any("URGENT" in str(m["Subject"]) for m in routine)

    home = {slack_key(m): m for m in world.slack.messages_for("#rose-lodge")}
    assert f"<@{ROSE_MANAGER_SLACK}>" in json.dumps(home["4:2000"].blocks)
    assert "<@" not in json.dumps(home["2:1811"].blocks)  # a routine visit pings nobody


def test_one_request_per_cycle_with_a_utc_window(published: Published) -> None:
    requests = published.world.autumna.requests
    assert len(requests) == 1  # eight leads of eight categories: still one request
    request = requests[0]
    assert request["api_key"] == "***"
    assert "categoryId" not in request
    assert UTC_PARAM.match(request["dateTimeFrom"]) and UTC_PARAM.match(request["dateTimeTo"])
    until = datetime.fromisoformat(request["dateTimeTo"]).replace(tzinfo=UTC)
    # leadbot ran in Asia/Kolkata (UTC+5:30): the window is UTC all the same
    assert abs(until - datetime.now(UTC)) < timedelta(minutes=5)
    since = datetime.fromisoformat(request["dateTimeFrom"]).replace(tzinfo=UTC)
    assert until - since == timedelta(days=30)  # first start: polling.history


def test_debug_output_and_database_hold_no_secret(published: Published) -> None:
    world = published.world
    assert "DEBUG" in published.result.stderr  # it really ran at DEBUG
    assert_no_secret(published.result.output, world)
    assert_database_holds_no_secret(world)


def assert_database_holds_no_secret(world: World) -> None:
    files = [p for p in world.folder.iterdir() if p.name.startswith(world.db.name)]
    assert world.db in files
    data = b"".join(p.read_bytes() for p in files)
    assert b"I am looking for" in data  # the leads are really in there
    for secret in world.secrets():
        assert secret.encode() not in data, f"a secret ({secret[:6]}…) is in {files}"


# --- 3, 4: running again -----------------------------------------------------------------------


def served(world: World, request: dict[str, str]) -> str:
    """What the Autumna stand-in answered to one of the requests it saw."""
    since, until = (
        datetime.fromisoformat(request[k]).replace(tzinfo=UTC)
        for k in ("dateTimeFrom", "dateTimeTo")
    )
    return world.autumna.body(since, until)


def test_running_again_sends_nothing_new_and_a_new_lead_once(world: World) -> None:
    leads = published_by_key()
    # dated in the last quarter of an hour: the next poll's overlap brings them back
    world.autumna.add(
        *redate([leads["2:1811"], leads["6:2000"]], datetime.now(UTC), spacing=timedelta(minutes=2))
    )
    assert_ran(world.once())
    first = arrivals(world)
    assert set(first.values()) == {1} and len(first) == 6

    assert_ran(world.once())
    assert arrivals(world) == first  # nothing twice, anywhere
    before, after = world.autumna.requests
    previous_until = datetime.fromisoformat(before["dateTimeTo"])
    assert datetime.fromisoformat(after["dateTimeFrom"]) == previous_until - timedelta(minutes=15)
    again = served(world, after)
    assert '"id": 1811' in again and '"id": 2000' in again  # really served twice

    fresh = json.loads(redate([leads["5:2000"]], datetime.now(UTC))[0])
    fresh["id"] = 2001
    world.autumna.add(fresh)
    assert_ran(world.once())
    assert arrivals(world) - first == Counter({("5:2001", "teams", "group"): 1})

    assert_ran(world.once())
    assert '"id": 2001' in served(world, world.autumna.requests[-1])
    assert arrivals(world) - first == Counter({("5:2001", "teams", "group"): 1})
    assert len(world.autumna.requests) == 4


def test_several_accounts_are_polled_once_each_per_cycle(world: World) -> None:
    world.config = write_rules(
        world.folder,
        world.smtp.ca_file,
        extra=(
            '\n[[autumna.accounts]]\nname = "north"\napi_key = "${AUTUMNA_KEY_NORTH}"\n'
            '\n[[autumna.accounts]]\nname = "south"\napi_key = "${AUTUMNA_KEY_SOUTH}"\n'
        ),
    )
    world.extra_env = {
        "AUTUMNA_KEY_NORTH": "N" * 20 + "0123456789abcdefghij",
        "AUTUMNA_KEY_SOUTH": "S" * 20 + "0123456789abcdefghij",
    }
    leads = published_by_key()
    world.autumna.add(leads["2:1811"], leads["4:2000"])
    result = world.once(AUTUMNA_API_KEY=None)
    assert_ran(result)
    assert len(world.autumna.requests) == 2
    assert len({(r["dateTimeFrom"], r["dateTimeTo"]) for r in world.autumna.requests}) == 1
    # both accounts see the same two leads: each is announced once
    assert set(arrivals(world).values()) == {1}
    assert {k for k, _, _ in arrivals(world)} == {"2:1811", "4:2000"}
    for key in world.extra_env.values():
        assert key not in result.output


# --- 5: first start ----------------------------------------------------------------------------


def test_first_start_records_older_leads_without_announcing_them(world: World) -> None:
    now = datetime.now(UTC)
    leads = published_by_key()
    old = redate([leads["2:1811"], leads["6:2000"]], now - timedelta(days=2))
    world.autumna.add(*old, leads["4:2000"])
    assert_ran(world.once())
    assert {k for k, _, _ in arrivals(world)} == {"4:2000"}
    assert (
        world.query("SELECT COUNT(*) FROM deliveries WHERE subject IN ('2:1811', '6:2000')")[0][0]
        == 0
    )

    status = world.run("status")
    assert_ran(status)
    lines = {
        key: line
        for line in status.stdout.splitlines()
        for key in ("2:1811", "6:2000", "4:2000")
        if line.strip().startswith(key)
    }
    assert "recorded, not announced" in lines["2:1811"]
    assert "recorded, not announced" in lines["6:2000"]
    assert "recorded, not announced" not in lines["4:2000"]


def test_backfill_announces_older_leads_on_first_start(world: World) -> None:
    now = datetime.now(UTC)
    leads = published_by_key()
    world.autumna.add(*redate([leads["2:1811"], leads["6:2000"]], now - timedelta(days=2)))
    assert_ran(world.once("--backfill"))
    assert destinations_of(world, "2:1811") == Counter(
        PUBLISHED_ROUTES["2-in-person-visit-request.json"][1]
    )
    assert destinations_of(world, "6:2000") == Counter(
        PUBLISHED_ROUTES["6-referral-with-contact.json"][1]
    )


# --- 6: a failed poll --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def truncated(world: World) -> str:
    body = world.autumna.body(None, None)
    return body[: len(body) // 2]


def wrong_key(world: World) -> None:
    world.autumna.api_key = "Wr0ngKeyWr0ngKeyWr0ngKeyWr0ngKeyWr0ngKey"  # Autumna: HTTP 500


# Each failure: what to break (it may return environment overrides), and what the log must say.
POLL_FAILURES: dict[str, tuple[Callable[[World], dict[str, str] | None], str]] = {
    "http-500": (lambda w: w.autumna.fail_next(1, status=500), "HTTP 500"),
    "wrong-api-key": (wrong_key, "wrong API key"),
    "html-error-page-with-200": (
        lambda w: w.autumna.fail_next(
            1,
            status=200,
            body="<!DOCTYPE html><html><body><h1>Down for maintenance</h1></body></html>",
            content_type="text/html",
        ),
        "not JSON",
    ),
    "json-error-with-200": (
        lambda w: w.autumna.fail_next(1, status=200, body='{"message": "Too many requests"}'),
        "Too many requests",
    ),
    "empty-body": (lambda w: w.autumna.fail_next(1, status=200, body=""), "empty body"),
    "truncated-json": (lambda w: w.autumna.fail_next(1, status=200, body=truncated(w)), "not JSON"),
    "connection-dropped": (lambda w: w.autumna.fail_next(1, drop=True), "could not reach Autumna"),
    "connection-refused": (
        lambda w: {"AUTUMNA_API_URL": f"http://127.0.0.1:{free_port()}/api/leads/"},
        "could not reach Autumna",
    ),
}


@pytest.mark.parametrize("failure", sorted(POLL_FAILURES))
def test_a_failed_poll_exits_1_says_why_and_loses_nothing(world: World, failure: str) -> None:
    arrange, reason = POLL_FAILURES[failure]
    leads = published_by_key()
    world.autumna.add(leads["2:1811"], leads["4:2000"])
    result = world.once(**(arrange(world) or {}))

    assert_ran(result, 1)
    failed = [line for line in result.stderr.splitlines() if "poll" in line and "failed" in line]
    assert failed and reason in failed[0], result.stderr
    assert_no_secret(result.output, world)
    assert sent_nothing(world)
    assert world.query("SELECT watermark FROM polls")[0]["watermark"] is None
    assert world.query("SELECT COUNT(*) FROM leads")[0][0] == 0

    world.autumna.api_key = None  # the fault is gone
    assert_ran(world.once())
    assert {k for k, _, _ in arrivals(world)} == {"2:1811", "4:2000"}
    assert set(arrivals(world).values()) == {1}


def test_after_a_failed_poll_the_next_asks_from_the_same_point(world: World) -> None:
    assert_ran(world.once())  # first start, nothing yet: the watermark is set
    world.autumna.add(*redate([published_by_key()["2:1811"]], datetime.now(UTC)))
    world.autumna.fail_next(1, status=500)
    assert_ran(world.once(), 1)
    status = world.run("status")
    assert_ran(status)
    assert re.search(r"default: last success .*FAILING since .*HTTP 500", status.stdout)
    assert_ran(world.once())
    ok, failed, recovered = world.autumna.requests
    mark = datetime.fromisoformat(ok["dateTimeTo"])
    assert datetime.fromisoformat(failed["dateTimeFrom"]) == mark - timedelta(minutes=15)
    assert recovered["dateTimeFrom"] == failed["dateTimeFrom"]  # the watermark did not move
    assert {k for k, _, _ in arrivals(world)} == {"2:1811"}


# --- 7: a failing destination never blocks the others ------------------------------------------


def test_a_slack_channel_not_found_does_not_block_the_other_destinations(world: World) -> None:
    leads = published_by_key()
    world.autumna.add(leads["2:1811"], leads["4:2000"])
    world.slack.fail_channel("#rose-lodge")
    assert_ran(world.once(), 1)  # a delivery was dead-lettered during the run: exit 1

    assert world.slack.messages_for("#rose-lodge") == []
    assert destinations_of(world, "2:1811") == Counter(
        {("slack", ROSE_MANAGER_SLACK): 1, ("teams", "group"): 1}
    )
    assert destinations_of(world, "4:2000") == Counter(
        {("email", ROSE_MANAGER_EMAIL): 1, ("email", SALES): 1, ("teams", "group"): 1}
    )
    deliveries = world.deliveries()
    for key in ("2:1811", "4:2000"):
        failed = deliveries[(key, "slack", "#rose-lodge")]
        assert failed["status"] == "dead"  # a missing channel needs the admin, not a retry
        assert "channel_not_found" in failed["last_error"]
    # ops hears about it, once (rules.toml: ops gets leadbot's own alerts)
    (notice,) = world.teams.payloads("ops")
    text = json.dumps(notice, ensure_ascii=False)
    assert "failed for good" in text and "#rose-lodge" in text


def test_a_lead_whose_only_destination_fails_for_good_still_reaches_the_fallback(
    world: World,
) -> None:
    world.autumna.add(published_by_key()["1:2000"])  # the group channel is its only destination
    world.teams.fail_next(1, 404, webhook="group")  # the workflow was deleted
    assert_ran(world.once(), 1)  # a delivery was dead-lettered during the run: exit 1
    assert world.deliveries()[("1:2000", "teams", "TEAMS_GROUP_WEBHOOK")]["status"] == "dead"
    assert destinations_of(world, "1:2000") == Counter({("slack", "#leads-fallback"): 1})
    assert len(world.teams.payloads("ops")) == 1  # and ops is told


def test_a_teams_outage_is_retried_by_a_later_run(world: World) -> None:
    world.autumna.add(published_by_key()["2:1811"])
    world.teams.fail_next(1, 500, webhook="group")
    assert_ran(world.once())

    assert [r.status for r in world.teams.requests] == [500]
    assert destinations_of(world, "2:1811") == Counter(
        {("slack", "#rose-lodge"): 1, ("slack", ROSE_MANAGER_SLACK): 1}
    )
    row = world.deliveries()[("2:1811", "teams", "TEAMS_GROUP_WEBHOOK")]
    assert row["status"] == "retrying" and "500" in row["last_error"]

    assert world.make_retries_due() == 1
    assert_ran(world.once())
    assert destinations_of(world, "2:1811") == Counter(
        PUBLISHED_ROUTES["2-in-person-visit-request.json"][1]
    )
    assert {r["status"] for r in world.deliveries().values()} == {"sent"}


def test_a_mail_server_451_is_retried_by_a_later_run(world: World) -> None:
    world.autumna.add(published_by_key()["4:2000"])
    world.smtp.fail_next(1, 451, "DATA", rcpt=SALES)
    assert_ran(world.once())

    assert destinations_of(world, "4:2000") == Counter(
        {("slack", "#rose-lodge"): 1, ("email", ROSE_MANAGER_EMAIL): 1, ("teams", "group"): 1}
    )
    row = world.deliveries()[("4:2000", "email", SALES)]
    assert row["status"] == "retrying" and "451" in row["last_error"]

    assert world.make_retries_due() == 1
    assert_ran(world.once())
    assert destinations_of(world, "4:2000") == Counter(
        PUBLISHED_ROUTES["4-call-back-request.json"][1]
    )
    assert {r["status"] for r in world.deliveries().values()} == {"sent"}


def test_an_untrusted_mail_server_certificate_stops_the_email_and_nothing_else(
    world: World,
) -> None:
    # rules.toml trusts another CA than the one that signed the mail server's certificate
    world.config = write_rules(world.folder, world.teams.ca_file)
    world.autumna.add(published_by_key()["4:2000"])
    assert_ran(world.once(), 1)  # the emails were dead-lettered during the run
    assert world.smtp.messages == []  # not sent, and not sent in plaintext either
    assert destinations_of(world, "4:2000") == Counter(
        {("slack", "#rose-lodge"): 1, ("teams", "group"): 1}
    )
    row = world.deliveries()[("4:2000", "email", SALES)]
    assert row["status"] == "dead" and "not trusted" in row["last_error"]


# --- 8: a lead that cannot be understood -------------------------------------------------------


def test_a_lead_without_an_id_is_kept_raw_and_reported_to_the_fallback(world: World) -> None:
    leads = published_by_key()
    broken = json.loads(redate([leads["1:2000"]], datetime.now(UTC))[0])
    del broken["id"]
    broken["content"] = "Please call me about a room for my father"
    world.autumna.add(leads["2:1811"], broken, leads["6:2000"])
    assert_ran(world.once())

    fallback = world.slack.messages_for("#leads-fallback")
    assert len(fallback) == 1
    validate_slack_message({"text": fallback[0].text, "blocks": fallback[0].blocks})
    assert "could not read" in json.dumps(fallback[0].blocks)
    assert destinations_of(world, "2:1811") == Counter(
        PUBLISHED_ROUTES["2-in-person-visit-request.json"][1]
    )
    assert destinations_of(world, "6:2000") == Counter(
        PUBLISHED_ROUTES["6-referral-with-contact.json"][1]
    )

    (row,) = world.query("SELECT * FROM leads WHERE unreadable = 1")
    assert row["key"].startswith("raw:") and "no usable id" in row["problem"]
    assert "Please call me about a room for my father" in row["raw"]
    status = world.run("status")
    assert_ran(status)
    assert re.search(rf"{re.escape(row['key'])}\s+UNREADABLE", status.stdout)

    assert_ran(world.once())  # the same record comes back in the overlap: not reported again
    assert len(world.slack.messages_for("#leads-fallback")) == 1
    assert len(world.query("SELECT * FROM leads WHERE unreadable = 1")) == 1


# --- 2: the same delivery sent again keeps its Message-ID ---------------------------------------


def test_an_email_sent_again_after_a_crash_has_the_same_message_id(world: World) -> None:
    world.autumna.add(published_by_key()["4:2000"])
    assert_ran(world.once())
    assert len(world.smtp.messages) == 2
    # As if leadbot died after handing the message over but before recording it.
    assert (
        world.change(
            "UPDATE deliveries SET status = 'sending' WHERE channel = 'email' AND address = ?",
            SALES,
        )
        == 1
    )
    assert_ran(world.once())

    to_sales = [parse_email(m.raw) for m in world.smtp.messages if m.rcpt_tos == [SALES]]
    assert len(to_sales) == 2
    assert to_sales[0]["Message-ID"] == to_sales[1]["Message-ID"]
    assert len(world.smtp.messages) == 3  # the manager's copy was not sent again
    assert len(world.slack.messages) == 1 and len(world.teams.requests) == 1


# --- 10: secrets, on the paths where things go wrong --------------------------------------------


def test_no_secret_in_debug_output_or_database_when_things_fail(world: World) -> None:
    leads = published_by_key()
    broken = json.loads(leads["5:2000"])
    del broken["id"]
    world.autumna.add(leads["2:1811"], leads["4:2000"], broken)
    world.autumna.fail_next(1, status=500)
    outputs = [world.once("--log-level", "DEBUG")]
    assert_ran(outputs[-1], 1)

    world.slack.fail_channel("#rose-lodge", "invalid_auth")
    world.teams.fail_next(1, 500)
    world.smtp.fail_next(1, 451, "DATA")
    outputs.append(world.once("--log-level", "DEBUG"))
    assert_ran(outputs[-1], 1)  # invalid_auth: dead-lettered during the run
    assert (
        world.query("SELECT COUNT(*) FROM deliveries WHERE status IN ('retrying', 'dead')")[0][0]
        >= 3
    )
    world.make_retries_due()
    outputs.append(world.once("--log-level", "DEBUG"))
    outputs.append(world.run("status"))

    for result in outputs:
        assert_no_secret(result.output, world)
    assert_database_holds_no_secret(world)


# --- 11: restart safety ------------------------------------------------------------------------


def deliveries_where(world: World, status: str, channel: str, address: str) -> bool:
    try:
        return bool(
            world.query(
                "SELECT 1 FROM deliveries WHERE status = ? AND channel = ? AND address = ?",
                status,
                channel,
                address,
            )
        )
    except sqlite3.OperationalError:  # leadbot is still creating its tables
        return False


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_finishes_the_send_in_flight_and_a_restart_sends_nothing_twice(
    world: World, stop: signal.Signals
) -> None:
    world.autumna.add(published_by_key()["2:1811"])
    world.slack.fail_next(1, delay=1.5, method="chat.postMessage", channel="#rose-lodge")
    with world.running("run") as process:
        wait_for(
            lambda: (
                deliveries_where(world, "sending", "slack", "#rose-lodge")
                and world.slack.requests.count("chat.postMessage") >= 2
            ),
            what="the slow Slack send to be in flight",
        )
        assert world.slack.messages_for("#rose-lodge") == []
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert len(world.slack.messages_for("#rose-lodge")) == 1
    row = world.deliveries()[("2:1811", "slack", "#rose-lodge")]
    assert row["status"] == "sent" and row["attempts"] == 1

    assert_ran(world.once())
    assert destinations_of(world, "2:1811") == Counter(
        PUBLISHED_ROUTES["2-in-person-visit-request.json"][1]
    )
    assert {r["status"] for r in world.deliveries().values()} == {"sent"}


def test_a_send_cut_off_by_a_kill_is_not_posted_twice_after_a_restart(world: World) -> None:
    world.autumna.add(published_by_key()["2:1811"])
    world.slack.fail_next(1, delay=1.5, method="chat.postMessage", channel="#rose-lodge")
    with world.running("run", "--once") as process:
        # Only the slow send is in doubt: the others were sent and recorded. (A Teams webhook
        # has no history to look in, so a Teams send cut off by a kill may go twice.)
        wait_for(
            lambda: (
                deliveries_where(world, "sending", "slack", "#rose-lodge")
                and deliveries_where(world, "sent", "slack", ROSE_MANAGER_SLACK)
                and deliveries_where(world, "sent", "teams", "TEAMS_GROUP_WEBHOOK")
                and world.slack.requests.count("chat.postMessage") >= 2
            ),
            what="the slow Slack send to be the only one in flight",
        )
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    # Slack got the message although leadbot never heard back: its outcome is unknown.
    wait_for(lambda: world.slack.messages_for("#rose-lodge"), what="Slack to post it")
    assert deliveries_where(world, "sending", "slack", "#rose-lodge")
    assert_database_holds_no_secret(world)  # as a kill left it, write-ahead log and all

    assert_ran(world.once())
    assert len(world.slack.messages_for("#rose-lodge")) == 1  # found in the channel: not re-sent
    assert "conversations.history" in world.slack.requests
    assert destinations_of(world, "2:1811") == Counter(
        PUBLISHED_ROUTES["2-in-person-visit-request.json"][1]
    )
    assert {r["status"] for r in world.deliveries().values()} == {"sent"}


def test_the_database_is_private_to_its_owner(world: World) -> None:
    world.autumna.add(published_by_key()["1:2000"])
    assert_ran(world.once())
    assert Path(world.db).stat().st_mode & 0o077 == 0


# --- the fallback: a home that rules.toml does not list ------------------------------------------


def test_a_lead_for_an_unlisted_home_also_reaches_the_fallback_with_a_note(world: World) -> None:
    lead = json.loads(published_by_key()["2:1811"])
    lead["service"] = {"id": 300000, "name": "Oak Manor", "postcode": "YO1 7HH"}
    world.autumna.add(lead)
    assert_ran(world.once())
    # no home.slack to reach: the group channel by its rule, the fallback for the unknown home
    assert destinations_of(world, "2:1811") == Counter(
        {("teams", "group"): 1, ("slack", "#leads-fallback"): 1}
    )
    (message,) = world.slack.messages_for("#leads-fallback")
    assert "[homes.300000]" in json.dumps(message.blocks)


# --- in-process, where a subprocess cannot be precise: a Slack post that timed out ---------------


def test_a_slack_post_that_timed_out_is_not_posted_twice_when_retried(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slack took longer than leadbot waited, and posted the message anyway. The outcome was
    unknown to leadbot, just as after a crash: the retry must not post it a second time (the
    message metadata lets leadbot look, as it does after a restart)."""
    monkeypatch.setenv("SSL_CERT_FILE", world.teams.ca_file)  # httpx trusts the Teams stand-in
    world.autumna.add(published_by_key()["2:1811"])
    world.slack.fail_next(1, delay=2.5, method="chat.postMessage", channel="#rose-lodge")
    config = load_config(world.config)

    def cycle() -> None:
        store = Store(world.db)
        runner = pipeline.build(config, Settings.from_env(world.env(), config), store)
        # the real Slack channel, waiting 1 s instead of 15 for an answer
        runner.dispatcher.senders[Channel.SLACK] = SlackChannel(
            SLACK_TOKEN, world.slack.base_url, timeout=1
        )
        try:
            assert runner.run(once=True)
        finally:
            store.close()

    cycle()
    row = world.deliveries()[("2:1811", "slack", "#rose-lodge")]
    assert row["status"] == "retrying"  # leadbot gave up waiting, and then Slack posted it:
    wait_for(lambda: world.slack.messages_for("#rose-lodge"), what="Slack to post it")

    world.make_retries_due()
    cycle()
    assert len(world.slack.messages_for("#rose-lodge")) == 1
    assert world.deliveries()[("2:1811", "slack", "#rose-lodge")]["status"] == "sent"
