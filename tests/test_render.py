"""Rendering: every published lead on every channel, what each message may show, escaping of
everything the public typed, size limits, group templates and the bot's own notices."""

from __future__ import annotations

import html
import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from markdown_it import MarkdownIt
from standins.validators import (
    assert_multipart_alternative,
    parse_email,
    validate_slack_message,
    validate_teams_message,
    validate_teams_messages,
)

import bot
from bot import escape
from bot.config import Config
from bot.loader import load_config
from bot.models import Channel, Facts, Lead, Message, Target
from bot.parse import parse_body, parse_lead
from bot.render import Renderer
from bot.rules import route
from bot.view import format_day, format_moment, mailto_link, tel_link

ROOT = Path(bot.__file__).resolve().parent.parent
ROOT_RULES = ROOT / "rules.toml"
PUBLISHED = ROOT / "bot" / "demo" / "published"
NAMES = sorted(p.name for p in PUBLISHED.glob("*.json"))
CHANNELS = list(Channel)
PRIVACY = ["full", "minimal"]
ADDRESSES = {
    Channel.SLACK: ("#group-leads", "group-leads"),
    Channel.EMAIL: ("sales@rosecare.example", "sales-inbox"),
    Channel.TEAMS: ("TEAMS_OPS_WEBHOOK", "ops-teams"),
}
PHONE, EMAIL = "01900 000000", "johnsmith@gmail.com"
MARKER = "truncated"


def published_record(name: str) -> dict[str, Any]:
    text = (PUBLISHED / name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text.replace("“", '"').replace("”", '"'))
    return data


def published(name: str) -> Lead:
    (only,) = parse_body((PUBLISHED / name).read_text(encoding="utf-8"), "default").leads
    return only


def lead_from(name: str, **changes: Any) -> Lead:
    data = published_record(name)
    specific = changes.pop("specific", {})
    data.update(changes)
    data["categorySpecificData"] = {**data["categorySpecificData"], **specific}
    return parse_lead(data, "default")


def target(channel: Channel, privacy: str = "full") -> Target:
    address, label = ADDRESSES[channel]
    return Target(channel, address, label, privacy)


def render(
    renderer: Renderer,
    lead: Lead,
    channel: Channel,
    privacy: str = "full",
    facts: Facts | None = None,
) -> Message:
    return renderer.render(lead, target(channel, privacy), facts or Facts())


def email_of(message: Message) -> tuple[EmailMessage, bytes, str, str]:
    raw = bytes(message.payload)
    parsed = parse_email(raw)
    plain, html_part = assert_multipart_alternative(parsed)
    return parsed, raw, plain, html_part


def visible(message: Message) -> str:
    """Everything the recipient (or a server on the way) can read, as text."""
    if message.target.channel is Channel.EMAIL:
        parsed, raw, plain, html_part = email_of(message)
        headers = "\n".join(f"{name}: {value}" for name, value in parsed.items())
        return "\n".join([headers, plain, html.unescape(html_part), raw.decode("utf-8", "replace")])
    return json.dumps(message.payload, ensure_ascii=False)


def mrkdwn_objects(value: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(value, dict):
        if value.get("type") == "mrkdwn":
            found.append(value)
        for item in value.values():
            found.extend(mrkdwn_objects(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(mrkdwn_objects(item))
    return found


def card_of(message: Message) -> dict[str, Any]:
    (attachment,) = message.payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card: dict[str, Any] = attachment["content"]
    return card


def assert_valid(message: Message) -> None:
    channel = message.target.channel
    if channel is Channel.SLACK:
        validate_slack_message(message.payload)
        assert all(m.get("verbatim") is True for m in mrkdwn_objects(message.payload["blocks"]))
        assert message.payload["unfurl_links"] is False
        assert message.payload["unfurl_media"] is False
    elif channel is Channel.TEAMS:
        # The JSON schema here; Microsoft's adaptivecards library (Node) once for all cards, in
        # test_every_teams_card_passes_microsofts_own_library.
        validate_teams_message(message.payload, use_node=False)
        assert card_of(message)["version"] == "1.5"
    else:
        parsed, _, _, _ = email_of(message)
        subject = parsed["Subject"]
        assert subject and "\n" not in subject and "\r" not in subject
        assert not parsed.defects


# --- every published lead, every channel, both privacy levels ---------------------------------


@pytest.mark.parametrize("privacy", PRIVACY)
@pytest.mark.parametrize("channel", CHANNELS, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_every_published_lead_renders_a_valid_message(
    config: Config, renderer: Renderer, name: str, channel: Channel, privacy: str
) -> None:
    lead = published(name)
    routing = route(lead, config)
    facts = Facts(routing.urgent, routing.unrouted, tuple(routing.notes))

    message = render(renderer, lead, channel, privacy, facts)

    assert_valid(message)
    assert message.target == target(channel, privacy)
    assert message.ref == f"{lead.key}/{message.target.key}"
    assert lead.key in message.summary and "John" not in message.summary
    shown = visible(message)
    assert lead.key in shown
    assert ("Rose Lodge" if lead.service.id == 100000 else "Willow House") in shown


def test_every_teams_card_passes_microsofts_own_library(renderer: Renderer, hostile: Lead) -> None:
    payloads = [
        render(
            renderer,
            lead,
            Channel.TEAMS,
            privacy,
            Facts(urgent, urgent, ("a note",) if urgent else ()),
        ).payload
        for lead in [*map(published, NAMES), hostile]
        for privacy in PRIVACY
        for urgent in (False, True)
    ]
    payloads.append(
        renderer.render_notice(
            "Autumna is unreachable", "3 polls failed", target(Channel.TEAMS)
        ).payload
    )
    validate_teams_messages(payloads)  # uses Node when it is installed


def test_unrouted_leads_and_notes_are_shown(renderer: Renderer) -> None:
    facts = Facts(unrouted=True, notes=("home 424242 is not in rules.toml: add [homes.424242]",))
    for channel in CHANNELS:
        message = render(renderer, published("1-contact-form-message.json"), channel, facts=facts)
        assert_valid(message)
        shown = visible(message)
        assert "No rule routed this lead" in shown
        assert "homes.424242" in shown


# --- dates and times ---------------------------------------------------------------------------


@pytest.mark.parametrize("channel", CHANNELS, ids=str)
@pytest.mark.parametrize("name", ["2-in-person-visit-request.json", "3-virtual-visit-request.json"])
def test_visit_requests_show_the_visit_date_and_time(
    renderer: Renderer, name: str, channel: Channel
) -> None:
    shown = visible(render(renderer, published(name), channel))
    assert "Thu 29 Apr" in shown
    assert "We don't get this" in shown


@pytest.mark.parametrize("channel", CHANNELS, ids=str)
@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2021-06-27T14:17:29.517Z", "Sun 27 Jun, 15:17"),
        ("2021-01-15T09:30:00Z", "Fri 15 Jan, 09:30"),
        ("2021-03-28T00:59:00Z", "Sun 28 Mar, 00:59"),
        ("2021-03-28T01:00:00Z", "Sun 28 Mar, 02:00"),
        ("2021-12-31T23:59:59Z", "Fri 31 Dec, 23:59"),
        ("not a date", "time unknown"),
    ],
    ids=["BST", "GMT", "last minute of GMT", "first minute of BST", "new year's eve", "unreadable"],
)
def test_times_are_shown_in_the_groups_time_zone(
    renderer: Renderer, when: str, expected: str, channel: Channel
) -> None:
    lead = lead_from("1-contact-form-message.json", date=when)
    assert expected in visible(render(renderer, lead, channel))


@pytest.mark.parametrize(
    ("moment", "zone", "expected"),
    [
        (datetime(2021, 6, 27, 14, 17, 29, tzinfo=UTC), "Europe/London", "Sun 27 Jun, 15:17"),
        (datetime(2021, 1, 15, 9, 30, tzinfo=UTC), "Europe/London", "Fri 15 Jan, 09:30"),
        (datetime(2021, 6, 27, 14, 17, 29, tzinfo=UTC), "America/New_York", "Sun 27 Jun, 10:17"),
        (datetime(2021, 6, 27, 23, 30, tzinfo=UTC), "Europe/London", "Mon 28 Jun, 00:30"),
    ],
)
def test_format_moment(moment: datetime, zone: str, expected: str) -> None:
    assert format_moment(moment, ZoneInfo(zone)) == expected


def test_format_day() -> None:
    assert format_day(datetime(2021, 4, 29).date()) == "Thu 29 Apr"


# --- what each message may show ---------------------------------------------------------------


@pytest.mark.parametrize("channel", CHANNELS, ids=str)
@pytest.mark.parametrize(
    "flags", [(False, False), (True, True)], ids=["as published", "flags say yes"]
)
def test_no_permission_referrals_never_show_the_enquirers_phone_or_email(
    renderer: Renderer, channel: Channel, flags: tuple[bool, bool]
) -> None:
    lead = lead_from(
        "7-referral-without-contact.json",
        specific={"emailPermission": flags[0], "phonePermission": flags[1]},
    )
    message = render(renderer, lead, channel, facts=Facts(urgent=True))
    shown = visible(message)

    assert PHONE not in shown and "01900" not in shown
    assert EMAIL not in shown and "johnsmith" not in shown
    assert "no permission to contact the enquirer" in shown.lower()
    if channel is not Channel.EMAIL:
        assert "No permission to contact the enquirer" in shown
    else:
        assert "Reply-To" not in email_of(message)[0]


@pytest.mark.parametrize("channel", CHANNELS, ids=str)
def test_an_email_only_referral_shows_the_email_but_not_the_phone(
    renderer: Renderer, channel: Channel
) -> None:
    message = render(renderer, published("6-referral-with-contact.json"), channel)
    shown = visible(message)
    assert EMAIL in shown
    assert PHONE not in shown
    assert "permission to contact by email only" in shown.lower()
    assert "£350,000 – £450,000" in shown
    if channel is Channel.EMAIL:
        # A tap on the address writes to the family; no Reply-To (README "Email that reaches
        # the inbox"), so no out-of-office reply can go to them.
        parsed, _, _, html_part = email_of(message)
        assert "Reply-To" not in parsed
        assert f'<a href="mailto:{EMAIL}">{EMAIL}</a>' in html_part
    elif channel is Channel.SLACK:
        assert f"<mailto:{EMAIL}|{EMAIL}>" in shown


@pytest.mark.parametrize("channel", CHANNELS, ids=str)
def test_a_phone_only_referral_shows_the_phone_but_not_the_email(
    renderer: Renderer, channel: Channel
) -> None:
    lead = lead_from(
        "6-referral-with-contact.json", specific={"emailPermission": False, "phonePermission": True}
    )
    message = render(renderer, lead, channel)
    shown = visible(message)
    assert PHONE in shown
    assert EMAIL not in shown
    assert "permission to contact by phone only" in shown.lower()


@pytest.mark.parametrize("channel", CHANNELS, ids=str)
def test_direct_enquiries_show_both_contact_methods(renderer: Renderer, channel: Channel) -> None:
    shown = visible(render(renderer, published("4-call-back-request.json"), channel))
    assert PHONE in shown and EMAIL in shown
    assert "permission" not in shown.lower()


def test_permitted_contact_details_are_links_a_phone_can_tap(renderer: Renderer) -> None:
    lead = published("4-call-back-request.json")
    _, _, _, html_part = email_of(render(renderer, lead, Channel.EMAIL))
    assert f'<a href="tel:+441900000000">{PHONE}</a>' in html_part
    assert f'<a href="mailto:{EMAIL}">{EMAIL}</a>' in html_part
    slack = render(renderer, lead, Channel.SLACK).payload
    shown = "\n".join(m["text"] for m in mrkdwn_objects(slack["blocks"]))
    assert f"\n*Email:* <mailto:{EMAIL}|{EMAIL}>\n" in shown
    assert f"\n*Phone:* {PHONE}\n" in shown  # Slack documents mailto: links, not tel:


@pytest.mark.parametrize(
    ("typed", "link"),
    [
        ("01900 000000", "tel:+441900000000"),
        ("(01900) 000-000", "tel:+441900000000"),
        ("+44 (0)1900 000000", "tel:+441900000000"),
        ("0044 20 7946 0001", "tel:+442079460001"),
        ("+1 (555) 123-4567", "tel:+15551234567"),
        ("1900 000000", ""),  # no 0 or +: no telling which country
        ("01900 000000 or 07700 900123", ""),
        ("01900 000000 ext 2", ""),
        ("<tel:123|call me>", ""),
        ("٠١٩٠٠ ٠٠٠٠٠٠", ""),  # digits, but not the ones a dialler takes
    ],
)
def test_a_phone_number_is_a_link_only_when_it_is_one_number(typed: str, link: str) -> None:
    assert tel_link(typed) == link


@pytest.mark.parametrize(
    ("typed", "link"),
    [
        (" g.hughes@example.org ", "mailto:g.hughes@example.org"),
        ("o'brien+care@example.co.uk", "mailto:o'brien+care@example.co.uk"),
        ("a@b.example, x@evil.example", ""),
        ('"Autumna" <support@evil.example>', ""),
        ("x@evil.example (comment)", ""),
        ("a@[127.0.0.1]", ""),
        ("a..b@example.org", ""),
        ("=?utf-8?q?a=0D=0ABcc:x@evil.example?=@b.example", ""),
        ("zoë@example.org", ""),
    ],
)
def test_an_address_is_a_link_only_when_it_is_one_plain_address(typed: str, link: str) -> None:
    assert mailto_link(typed) == link


PERSONAL = [
    "John",
    "Jane",
    "Smith",
    PHONE,
    "+447979908510",
    "johnsmith",
    "looking for",
    "dementia",
    "Family member",
    "Myself",
    "350,000",
    "Self Funding",
    "Top-up",
]


@pytest.mark.parametrize("channel", CHANNELS, ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_minimal_privacy_shows_no_personal_details(
    renderer: Renderer, name: str, channel: Channel
) -> None:
    message = render(renderer, published(name), channel, "minimal", Facts(urgent=True))
    assert_valid(message)
    shown = visible(message)
    leaked = [word for word in PERSONAL if word in shown]
    assert leaked == []
    assert "Personal details are kept out" in shown


@pytest.mark.parametrize("channel", CHANNELS, ids=str)
@pytest.mark.parametrize(
    "name",
    ["1-contact-form-message.json", "4-call-back-request.json", "6-referral-with-contact.json"],
)
def test_anonymised_leads_show_no_personal_details(
    renderer: Renderer, name: str, channel: Channel
) -> None:
    lead = lead_from(name, isAnonymised=True)
    message = render(renderer, lead, channel, facts=Facts(urgent=True))
    assert_valid(message)
    shown = visible(message)
    leaked = [word for word in PERSONAL if word in shown]
    assert leaked == []
    assert "Anonymised" in shown
    if channel is Channel.EMAIL:
        assert "Reply-To" not in email_of(message)[0]


# --- urgency ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("service", "manager"), [(100000, "U024BE7LH"), (200000, "U024BE7LJ")])
def test_urgent_slack_messages_mention_the_homes_manager(
    renderer: Renderer, service: int, manager: str
) -> None:
    data = published_record("4-call-back-request.json")
    data["service"]["id"] = service
    lead = parse_lead(data, "default")
    urgent = render(renderer, lead, Channel.SLACK, facts=Facts(urgent=True))
    calm = render(renderer, lead, Channel.SLACK, facts=Facts(urgent=False))
    assert_valid(urgent)
    assert urgent.payload["blocks"][1]["text"]["text"].startswith(f"<@{manager}>")
    assert urgent.payload["text"].startswith("URGENT")
    assert "<@" not in json.dumps(calm.payload)
    assert "URGENT" not in json.dumps(calm.payload)


def test_urgent_leads_for_unknown_homes_mention_nobody(renderer: Renderer) -> None:
    lead = lead_from(
        "4-call-back-request.json",
        service={"id": 424242, "name": "Elm Court", "postcode": "SW1A 1AA"},
    )
    message = render(renderer, lead, Channel.SLACK, facts=Facts(urgent=True))
    assert_valid(message)
    assert "<@" not in json.dumps(message.payload)
    assert "Elm Court" in message.payload["blocks"][0]["text"]["text"]


@pytest.mark.parametrize("name", NAMES)
def test_urgent_email_says_urgent_in_the_subject_and_headers(renderer: Renderer, name: str) -> None:
    urgent, _, plain, _ = email_of(
        render(renderer, published(name), Channel.EMAIL, facts=Facts(urgent=True))
    )
    # (Python's email folding may put the whole subject on a continuation line: " URGENT…")
    assert urgent["Subject"].strip().startswith("URGENT")
    assert urgent["X-Priority"].startswith("1")
    assert urgent["Importance"] == "High"
    assert urgent["Priority"] == "urgent"
    assert "URGENT" in plain


@pytest.mark.parametrize("name", NAMES)
def test_non_urgent_email_has_no_urgency_markers(renderer: Renderer, name: str) -> None:
    calm, raw, _, _ = email_of(render(renderer, published(name), Channel.EMAIL))
    assert not calm["Subject"].strip().upper().startswith("URGENT")
    for header in ("X-Priority", "Importance", "Priority"):
        assert header not in calm
    assert b"URGENT" not in raw


def test_urgent_teams_cards_are_coloured(renderer: Renderer) -> None:
    lead = published("4-call-back-request.json")
    urgent = card_of(render(renderer, lead, Channel.TEAMS, facts=Facts(urgent=True)))
    calm = card_of(render(renderer, lead, Channel.TEAMS))
    assert urgent["body"][0].get("color") == "Attention"
    assert "color" not in calm["body"][0]


# --- escaping -----------------------------------------------------------------------------------


HOSTILE = (
    "<!channel> <@U123> <https://evil.example|Autumna portal> Tom & Jerry "
    "<script>alert(1)</script> [x](https://evil.example) "
    "![img](https://evil.example/a.png) see https://evil.example/path "
    "or www.evil.example\n- a list\n# a heading\n> a quote"
)
HOSTILE_NAME = "Eve <!here> [Smith](https://evil.example)\r\nBcc: x@evil.example"


@pytest.fixture(scope="module")
def hostile() -> Lead:
    return lead_from(
        "4-call-back-request.json",
        content=HOSTILE,
        enquirerFirstName=HOSTILE_NAME,
        residentFirstName="<@U999>",
        telephone="<tel:123|call me>",
    )


def test_slack_shows_hostile_text_as_text(renderer: Renderer, hostile: Lead) -> None:
    message = render(renderer, hostile, Channel.SLACK)
    assert_valid(message)
    texts = [m["text"] for m in mrkdwn_objects(message.payload["blocks"])]
    texts.append(message.payload["text"])
    for text in texts:
        for bad in (
            "<!channel>",
            "<!here>",
            "<@U123>",
            "<@U999>",
            "<https://",
            "<tel:",
            "<script",
            "Tom & Jerry",
            "https://evil",
        ):
            assert bad not in text, (bad, text)
    body = texts[0]
    assert "&lt;!channel&gt;" in body and "&lt;@U123&gt;" in body
    assert "Tom &amp; Jerry" in body
    assert "&lt;https:\u2060//evil.example|Autumna portal&gt;" in body


def test_email_html_shows_hostile_text_as_text(renderer: Renderer, hostile: Lead) -> None:
    _, _, plain, html_part = email_of(render(renderer, hostile, Channel.EMAIL))
    assert "<script" not in html_part.lower()
    assert 'href="https://evil' not in html_part
    # The one link is the enquirer's own address; "<tel:123|call me>" is no phone number.
    assert re.findall(r"<a [^>]*>", html_part) == [f'<a href="mailto:{EMAIL}">']
    assert "<img" not in html_part
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_part
    assert "Tom &amp; Jerry" in html_part
    assert "https://evil" not in plain and "www.evil" not in plain
    assert "<script>alert(1)</script>" in plain  # plain text stays as typed


def test_teams_markdown_shows_hostile_text_as_text(renderer: Renderer, hostile: Lead) -> None:
    message = render(renderer, hostile, Channel.TEAMS)
    assert_valid(message)
    md = MarkdownIt("commonmark")
    for block in card_of(message)["body"]:
        rendered = md.render(block["text"])
        for bad in (
            "<a ",
            "<img",
            "<script",
            "<h1",
            "<ul",
            "<blockquote",
            "https://evil",
            "www.evil",
        ):
            assert bad not in rendered, (bad, rendered)
    body = md.render(card_of(message)["body"][1]["text"])
    assert "[x](https:\u2060//evil.example)" in body  # shown literally, backslashes gone
    assert "- a list" in body and "# a heading" in body


@pytest.mark.parametrize("line", ["1. first", "2) second", "10. tenth"])
def test_teams_shows_a_numbered_line_without_a_stray_backslash(
    renderer: Renderer, line: str
) -> None:
    lead = lead_from("1-contact-form-message.json", content=f"Our needs:\n{line}")
    body = card_of(render(renderer, lead, Channel.TEAMS))["body"][1]["text"]
    rendered = MarkdownIt("commonmark").render(body)
    assert "<ol" not in rendered
    assert line in rendered, rendered


@pytest.mark.parametrize("cleaned", [True, False], ids=["parsed", "raw CR LF in the Lead"])
def test_email_headers_cannot_be_injected_through_a_name(
    renderer: Renderer, hostile: Lead, cleaned: bool
) -> None:
    lead = (
        hostile
        if cleaned
        else replace(
            hostile, enquirer_first_name=HOSTILE_NAME, sender="a@b.example\r\nBcc: y@evil.example"
        )
    )
    parsed, raw, _, _ = email_of(render(renderer, lead, Channel.EMAIL))
    subject = parsed["Subject"]
    assert "\r" not in subject and "\n" not in subject
    assert "Bcc" not in parsed and "Cc" not in parsed
    header_block = raw.split(b"\n\n", 1)[0]
    assert re.search(rb"(?im)^(bcc|cc):", header_block) is None
    for name, value in parsed.items():
        assert "\r" not in value and "\n" not in value, name


# --- limits -------------------------------------------------------------------------------------


MEGABYTE = ("Tom & Jerry <b> [x](y) " * 50_000)[:1_000_000]


@pytest.fixture(scope="module")
def huge() -> Lead:
    return lead_from(
        "2-in-person-visit-request.json",
        content=MEGABYTE,
        service={"id": 424242, "name": MEGABYTE, "postcode": "SW1A 1AA"},
        enquirerFirstName=MEGABYTE,
        specific={"visitTime": MEGABYTE, "instruction": MEGABYTE},
    )


def test_a_megabyte_of_text_is_cut_to_slacks_limits_with_a_marker(
    renderer: Renderer, huge: Lead
) -> None:
    message = render(renderer, huge, Channel.SLACK, facts=Facts(urgent=True))
    assert_valid(message)
    blocks = message.payload["blocks"]
    assert len(blocks[0]["text"]["text"]) <= 150
    assert MARKER in blocks[0]["text"]["text"]
    for text in mrkdwn_objects(blocks):
        assert len(text["text"]) <= 3000
    assert any(MARKER in t["text"] for t in mrkdwn_objects(blocks))
    assert len(message.payload["text"]) <= 3000


def test_a_megabyte_of_text_keeps_the_teams_message_under_28_kb(
    renderer: Renderer, huge: Lead
) -> None:
    message = render(renderer, huge, Channel.TEAMS, facts=Facts(urgent=True))
    assert_valid(message)
    validate_teams_message(message.payload)  # with Microsoft's library too, when Node is here
    for ascii_only in (True, False):
        assert len(json.dumps(message.payload, ensure_ascii=ascii_only).encode()) < 28 * 1024
    assert any(MARKER in block["text"] for block in card_of(message)["body"])


def test_email_carries_the_whole_of_a_megabyte_message(renderer: Renderer) -> None:
    lead = lead_from("1-contact-form-message.json", content=MEGABYTE)
    _, _, plain, html_part = email_of(render(renderer, lead, Channel.EMAIL))
    assert len(plain) > 1_000_000
    assert plain.count("Tom & Jerry") == MEGABYTE.count("Tom & Jerry")
    assert html_part.count("Tom &amp; Jerry") == MEGABYTE.count("Tom & Jerry")


def test_a_long_name_does_not_make_an_unbounded_email_subject(renderer: Renderer) -> None:
    lead = lead_from("4-call-back-request.json", enquirerFirstName="Tom " * 5_000)
    parsed, _, _, _ = email_of(render(renderer, lead, Channel.EMAIL))
    assert len(parsed["Subject"]) <= 998  # RFC 5322's line limit: Slack's header is cut at 150


@pytest.mark.parametrize(
    "text",
    [
        "a" * 10 + "&amp;" * 40,
        "&lt;" * 60,
        "x&gt;y" * 40,
        "\\*" * 80,
        "a\\\\b" * 50,
        "\\\\" * 80,
    ],
    ids=["&amp;", "&lt;", "&gt;", "escaped stars", "escaped backslashes", "only backslashes"],
)
def test_truncate_never_cuts_an_escape_in_half(text: str) -> None:
    marker = "… (truncated)"
    for limit in range(len(marker), len(text)):
        cut = escape.truncate(text, limit, marker)
        assert len(cut) <= limit and cut.endswith(marker)
        kept = cut[: -len(marker)]
        assert re.search(r"&(?!amp;|lt;|gt;)", kept) is None, (limit, kept)
        trailing = len(kept) - len(kept.rstrip("\\"))
        assert trailing % 2 == 0, (limit, kept)


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("exactly10!", 10, "exactly10!"),
        ("a" * 20, 15, "aa… (truncated)"),
    ],
)
def test_truncate_leaves_short_text_alone_and_marks_cut_text(
    text: str, limit: int, expected: str
) -> None:
    assert escape.truncate(text, limit) == expected


# --- group templates ----------------------------------------------------------------------------


def group_config(tmp_path: Path, files: dict[str, str]) -> Config:
    folder = tmp_path / "my-templates"
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    rules = ROOT_RULES.read_text(encoding="utf-8").replace(
        '# templates = "my-templates"', 'templates = "my-templates"', 1
    )
    assert 'templates = "my-templates"' in rules
    (tmp_path / "rules.toml").write_text(rules, encoding="utf-8")
    return load_config(tmp_path / "rules.toml")


def test_a_group_template_overrides_one_block_and_the_rest_stays_built_in(
    tmp_path: Path, renderer: Renderer
) -> None:
    config = group_config(
        tmp_path,
        {
            "slack/call-back-request.j2": "{% block header %}Ring them: {{ home.name }} "
            "{{ lead.enquirer }}{% endblock %}",
        },
    )
    ours = Renderer(config)
    lead = replace(published("4-call-back-request.json"), enquirer_first_name="<!channel>")

    custom = render(ours, lead, Channel.SLACK)
    builtin = render(renderer, lead, Channel.SLACK)

    assert_valid(custom)
    assert custom.payload["blocks"][0]["text"]["text"] == "Ring them: Rose Lodge <!channel> Smith"
    assert custom.payload["blocks"][1:] == builtin.payload["blocks"][1:]
    assert custom.payload["text"] == builtin.payload["text"]
    assert "please call back within the hour" in custom.payload["text"]
    other = render(ours, published("1-contact-form-message.json"), Channel.SLACK)
    assert (
        other.payload
        == render(renderer, published("1-contact-form-message.json"), Channel.SLACK).payload
    )
    mine, theirs = render(ours, lead, Channel.EMAIL), render(renderer, lead, Channel.EMAIL)
    assert email_of(mine)[0]["Subject"] == email_of(theirs)[0]["Subject"]
    mine, theirs = render(ours, lead, Channel.TEAMS), render(renderer, lead, Channel.TEAMS)
    assert visible(mine).split("\n", 1)[0] == visible(theirs).split("\n", 1)[0]
    assert ours.check() == []


def test_a_group_default_template_block_applies_to_every_category_and_is_escaped(
    tmp_path: Path,
) -> None:
    config = group_config(
        tmp_path,
        {
            "slack/default.j2": "{% block footer %}Rose Care · {{ lead.content }}{% endblock %}",
        },
    )
    ours = Renderer(config)
    for name in NAMES:
        lead = replace(published(name), content="<!channel> & co")
        message = render(ours, lead, Channel.SLACK)
        assert_valid(message)
        footer = message.payload["blocks"][-1]["elements"][0]["text"]
        assert footer == "Rose Care · &lt;!channel&gt; &amp; co"


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("{% block header %}{% if %}{% endblock %}", "TemplateSyntaxError"),
        ("{% block header %}{{ ''.__class__.__mro__ }}{% endblock %}", "SecurityError"),
        (
            "{% block header %}{{ lead.content.__class__.__base__.__subclasses__() }}"
            "{% endblock %}",
            "SecurityError",
        ),
        ("{% block header %}{{ no_such_thing }}{% endblock %}", "UndefinedError"),
        ("{% block header %}{{ lead.no_such_field.deeper }}{% endblock %}", "UndefinedError"),
        ("{% block header %}{% include 'nowhere.j2' %}{% endblock %}", "TemplateNotFound"),
    ],
    ids=[
        "syntax error",
        "mro escape",
        "subclasses escape",
        "unknown name",
        "unknown field",
        "missing include",
    ],
)
def test_a_broken_group_template_is_reported_by_check_not_a_crash(
    tmp_path: Path, template: str, says: str
) -> None:
    config = group_config(tmp_path, {"slack/call-back-request.j2": template})
    problems = Renderer(config).check()
    assert problems, "check() found nothing wrong"
    assert all(isinstance(p, str) and "\n" not in p for p in problems)
    assert any(says in p and "call-back-request" in p and "slack" in p for p in problems)


def test_check_passes_for_the_built_in_templates(renderer: Renderer) -> None:
    assert renderer.check() == []


def test_a_lead_url_adds_an_open_button_everywhere(tmp_path: Path) -> None:
    rules = ROOT_RULES.read_text(encoding="utf-8").replace("# lead_url = ", "lead_url = ", 1)
    (tmp_path / "rules.toml").write_text(rules, encoding="utf-8")
    ours = Renderer(load_config(tmp_path / "rules.toml"))
    url = "https://crm.rosecare.example/leads/4/2000"
    lead = published("4-call-back-request.json")

    slack = render(ours, lead, Channel.SLACK)
    assert_valid(slack)
    assert {
        "type": "button",
        "text": {"type": "plain_text", "text": "Open the lead"},
        "url": url,
        "style": "primary",
    } in slack.payload["blocks"][-2]["elements"]
    teams = render(ours, lead, Channel.TEAMS)
    assert_valid(teams)
    assert card_of(teams)["actions"][0]["url"] == url
    _, _, plain, html_part = email_of(render(ours, lead, Channel.EMAIL))
    assert f'href="{url}"' in html_part and url in plain


# --- the bot's own notices ----------------------------------------------------------------------


@pytest.mark.parametrize("privacy", PRIVACY)
@pytest.mark.parametrize("channel", CHANNELS, ids=str)
def test_render_notice_renders_for_every_channel(
    renderer: Renderer, channel: Channel, privacy: str
) -> None:
    message = renderer.render_notice(
        "Autumna is unreachable",
        "3 polls failed <!channel> & https://evil.example",
        target(channel, privacy),
    )
    assert_valid(message)
    assert message.ref == f"notice/{message.target.key}"
    assert "Autumna is unreachable" in message.summary
    shown = visible(message)
    assert "Autumna is unreachable" in shown
    assert "Rose Care Homes" in shown
    assert "https://evil" not in shown
    if channel is Channel.SLACK:
        assert "&lt;!channel&gt; &amp;" in shown and "<!channel>" not in shown
    if channel is Channel.EMAIL:
        assert email_of(message)[0]["Subject"] == "leadbot: Autumna is unreachable"
