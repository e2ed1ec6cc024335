"""Property tests (hypothesis) over the lead parser and every renderer.

The parser: any JSON-ish value in any field, any text or bytes as a body — it returns leads and
unreadable records, or raises PollError; nothing else. The renderers: a lead made of arbitrary
text in every field (controls, lone surrogates, bidi overrides and the hostile corpus's fragments
included), any category, permissions, anonymisation, privacy level and urgency — no crash, no
live Slack mention or link, no Teams Markdown link or image, no HTML tag or attribute and no
email header line that the template did not put there, and every channel's size limits kept.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hostile import (
    ENCODED_WORDS,
    ROOT_RULES,
    TEXTS,
    UNKNOWN_HOME,
    base_record,
    baselines,
    expected_reply_to,
    render_output,
    slack_problems,
    teams_problems,
)
from hostile import email_problems as email_output_problems
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from bot.autumna import AutumnaClient
from bot.config import PRIVACY_LEVELS, Config
from bot.loader import load_config
from bot.models import Channel, Facts, Target
from bot.parse import PollError, parse_body, parse_lead
from bot.render import Renderer
from bot.text import clean_line

pytestmark = pytest.mark.timeout(120)

# No example database: every run explores afresh, and the runtime does not depend on history.
# Shrinking is left out where one example is costly: the failing example is still printed, and
# each hole found has a minimal reproduction in test_hostile.py or an @example here.
FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
THOROUGH = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    phases=[Phase.explicit, Phase.generate],
)

CONFIG: Config = load_config(ROOT_RULES)
RENDERER = Renderer(CONFIG)
ADDRESS = {
    Channel.SLACK: "#prop",
    Channel.EMAIL: "sales@rosecare.example",
    Channel.TEAMS: "TEAMS_PROP_WEBHOOK",
}

# --- strategies -------------------------------------------------------------------------------

ANY_CHARACTER = st.characters(exclude_categories=())  # surrogates, controls, private use: all
FRAGMENTS = sorted(
    {
        *TEXTS.values(),
        *ENCODED_WORDS.values(),
        "\r\n",
        "\r",
        "\n",
        "\x00",
        "\x1b[",
        "\x1b]8;;",
        "\x07",
        "\x85",
        "\u2028",
        "\u202e",
        "\u2066",
        "<",
        ">",
        "&",
        "&amp;",
        "&lt;",
        "*",
        "**",
        "_",
        "~",
        "`",
        "|",
        "\\",
        "[",
        "](",
        "![",
        "#",
        "- ",
        "1. ",
        "> ",
        "=",
        "http://",
        "https://",
        "www.",
        "javascript:",
        "<!",
        "<@",
        "<#",
        "<http",
        "=?utf-8?q?",
        "=?utf-8?b?",
        "?=",
        "=0D=0A",
        "Bcc: ",
        "\ud800",
        "😀",
        "\u0301",
        "\ufeff",
    }
)
hostile_text = st.lists(
    st.one_of(st.text(ANY_CHARACTER, max_size=16), st.sampled_from(FRAGMENTS)), max_size=8
).map("".join)
# The same without RFC 2047 encoded words, to look past the one hole they open in email headers.
plain_fragments = [f for f in FRAGMENTS if "=?" not in f and "?=" not in f]
hostile_text_without_encoded_words = (
    st.lists(
        st.one_of(st.text(ANY_CHARACTER, max_size=16), st.sampled_from(plain_fragments)), max_size=8
    )
    .map("".join)
    .filter(lambda text: "=?" not in text)
)


numberish = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=4),
    st.sampled_from(["2000", " 2000 ", "1e400", "-1", "0x10", "²", "٣", "1_000", "NaN"]),
)
json_scalar = st.one_of(st.none(), st.booleans(), numberish, hostile_text)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(hostile_text, inner, max_size=3)
    ),
    max_leaves=10,
)

FIELDS = (
    "id",
    "category",
    "service",
    "to",
    "from",
    "date",
    "content",
    "enquirerFirstName",
    "enquirerSurname",
    "onBehalfOf",
    "residentFirstName",
    "residentSurname",
    "telephone",
    "isAnonymised",
    "funding",
    "timescales",
    "categorySpecificData",
)
SPECIFIC = (
    "visitDate",
    "visitTime",
    "instruction",
    "emailPermission",
    "phonePermission",
    "budget_type",
    "budgetType",
    "budget_min",
    "budgetMin",
    "budget_max",
    "budgetMax",
)


@st.composite
def odd_records(draw: st.DrawFn) -> dict[str, Any]:
    """A lead with any JSON value in any field; id and category are often usable."""
    record: dict[str, Any] = {}
    for name in FIELDS:
        if draw(st.booleans()):
            record[name] = draw(json_value)
    if draw(st.booleans()):
        record["id"] = draw(st.one_of(st.integers(0, 10**6), numberish))
        record["category"] = draw(
            st.one_of(
                st.integers(1, 9), st.fixed_dictionaries({"id": numberish, "name": json_value})
            )
        )
        record["service"] = draw(
            st.one_of(
                st.fixed_dictionaries(
                    {
                        "id": st.one_of(st.sampled_from([100000, 200000]), numberish),
                        "name": json_value,
                        "postcode": json_value,
                    }
                ),
                json_value,
            )
        )
        record["categorySpecificData"] = draw(
            st.dictionaries(st.sampled_from(SPECIFIC), json_value, max_size=len(SPECIFIC))
        )
    return record


moments = st.builds(
    lambda when, offset, form: form(
        when.replace(tzinfo=timezone(offset)) if offset is not None else when
    ),
    st.one_of(
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
        st.sampled_from(
            [datetime(1, 1, 1), datetime(1, 1, 1, 0, 30), datetime(9999, 12, 31, 23, 59, 59)]
        ),
    ),
    st.one_of(
        st.none(),
        st.timedeltas(
            min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
        ),
    ),
    st.sampled_from(
        [
            lambda d: d.isoformat(),
            lambda d: d.isoformat().replace("+00:00", "Z"),
            lambda d: d.isoformat(sep=" "),
        ]
    ),
)


def parse_or_poll_error(body: str) -> None:
    try:
        batch = parse_body(body, "prop")
    except PollError:
        return
    for lead in batch.leads:
        for text in (
            lead.content,
            lead.telephone,
            lead.sender,
            lead.enquirer_first_name or "",
            lead.category.name,
            lead.service.name,
            lead.visit_time,
            lead.instruction,
        ):
            assert not any(0xD800 <= ord(c) <= 0xDFFF for c in text), "a lone surrogate got in"


# --- the parser -------------------------------------------------------------------------------


@THOROUGH
@given(st.lists(odd_records(), max_size=4))
@example(records=[{"id": 1, "category": 1}, {"id": "²", "category": 1}])
def test_the_parser_takes_any_json_in_any_field(records: list[dict[str, Any]]) -> None:
    parse_or_poll_error(json.dumps(records))


@FAST
@given(
    st.lists(st.one_of(st.integers(0, 10**6), numberish), min_size=1, max_size=3),
    st.one_of(st.integers(1, 9), numberish),
)
@example(ids=["²"], category=1)
@example(ids=[1], category={"id": "³"})
@example(ids=[10**30], category=1)
def test_the_parser_takes_any_id(ids: list[Any], category: Any) -> None:
    records = [{"id": i, "category": category, "service": {"id": i}} for i in ids]
    parse_or_poll_error(json.dumps(records))


@FAST
@given(st.one_of(numberish, json_value), st.one_of(numberish, json_value))
@example(low=10**400, high=None)
def test_the_parser_takes_any_budget(low: Any, high: Any) -> None:
    parse_or_poll_error(
        json.dumps(
            [
                {
                    "id": 1,
                    "category": 6,
                    "categorySpecificData": {"budget_min": low, "budgetMax": high},
                }
            ]
        )
    )


@FAST
@given(st.text(ANY_CHARACTER, max_size=300))
def test_the_parser_takes_any_text_as_a_body(body: str) -> None:
    parse_or_poll_error(body)


@FAST
@given(
    st.binary(max_size=300),
    st.sampled_from(["application/json", "text/html", "application/json; charset=latin-1"]),
)
def test_the_client_takes_any_bytes_as_a_body(body: bytes, content_type: str) -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, content=body, headers={"Content-Type": content_type})
    )
    with httpx.Client(transport=transport) as http:
        now = datetime.now(UTC)
        with contextlib.suppress(PollError):
            AutumnaClient("https://autumna.invalid/api/leads/", http).fetch(
                "prop", "K" * 40, now - timedelta(hours=1), now
            )


@FAST
@given(moments, st.sampled_from(list(Channel)))
@example(moment="0001-01-01T00:00:00+01:00", channel=Channel.SLACK)
@example(moment="0001-01-01T00:00:00Z", channel=Channel.EMAIL)
def test_any_date_parses_and_renders(moment: str, channel: Channel) -> None:
    record = base_record(1, category=2, service=100000)
    record["date"] = moment
    record["categorySpecificData"]["visitDate"] = moment[:10]
    lead = parse_lead(record, "prop")
    RENDERER.render(lead, Target(channel, ADDRESS[channel], "prop"), Facts())


# --- the renderers ----------------------------------------------------------------------------

TEXT_FIELDS = (
    "to",
    "from",
    "content",
    "enquirerFirstName",
    "enquirerSurname",
    "residentFirstName",
    "residentSurname",
    "telephone",
    "onBehalfOf",
    "funding",
    "timescales",
)


def _any_text(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Mostly short; sometimes repeated past every channel's limits."""
    long_text = st.builds(lambda t, times: (t or "x") * times, text, st.sampled_from([40, 400]))
    return st.one_of(text, text, text, text, long_text)


ANY_TEXT = _any_text(hostile_text)
ANY_TEXT_WITHOUT_ENCODED_WORDS = _any_text(hostile_text_without_encoded_words)


@st.composite
def hostile_leads(draw: st.DrawFn, encoded_words: bool = True) -> dict[str, Any]:
    """Arbitrary text in every string field; any category, permissions and anonymisation."""
    any_text = ANY_TEXT if encoded_words else ANY_TEXT_WITHOUT_ENCODED_WORDS
    category = draw(st.one_of(st.integers(1, 8), st.integers(-3, 120)))
    record = base_record(
        draw(st.integers(1, 10**9)),
        category=max(category, 0),
        service=draw(st.sampled_from([100000, 200000, UNKNOWN_HOME])),
    )
    for name in TEXT_FIELDS:
        record[name] = draw(any_text)
    record["category"]["name"] = draw(any_text)
    record["service"].update(name=draw(any_text), postcode=draw(any_text))
    specific = record["categorySpecificData"]
    for name in ("instruction", "visitTime", "budget_type"):
        specific[name] = draw(any_text)
    for name in ("emailPermission", "phonePermission"):
        specific[name] = draw(st.sampled_from([True, False, None, "yes", "no", 1, "maybe"]))
    record["isAnonymised"] = draw(st.sampled_from([True, False, "yes", "no", None]))
    return record


# Routing notes quote the home's name as Autumna sent it, cleaned at the edge like every field.
facts = st.builds(
    Facts,
    st.booleans(),
    st.booleans(),
    st.lists(hostile_text.map(clean_line), max_size=3).map(tuple),
)


def render(record: dict[str, Any], channel: Channel, privacy: str, fact: Facts) -> Any:
    lead = parse_lead(record, "prop")
    target = Target(channel, ADDRESS[channel], "prop", privacy)
    output = render_output(RENDERER, lead, target, fact, CONFIG)
    return lead, target, output


@THOROUGH
@given(hostile_leads(), st.sampled_from(PRIVACY_LEVELS), facts)
def test_slack_messages_stay_text_and_within_limits(
    record: dict[str, Any], privacy: str, fact: Facts
) -> None:
    _, _, output = render(record, Channel.SLACK, privacy, fact)
    problems = slack_problems(output.payload, output.mentions)
    assert not problems, problems[:5]
    assert len(output.payload["blocks"]) <= 50


@THOROUGH
@given(hostile_leads(), st.sampled_from(PRIVACY_LEVELS), facts)
def test_teams_cards_stay_text_and_within_limits(
    record: dict[str, Any], privacy: str, fact: Facts
) -> None:
    _, _, output = render(record, Channel.TEAMS, privacy, fact)
    problems = teams_problems(output.payload, baselines().markdown)
    assert not problems, problems[:5]
    size = len(json.dumps(output.payload, ensure_ascii=False, separators=(",", ":")).encode())
    assert size < 28 * 1024


def email_problems(record: dict[str, Any], privacy: str, fact: Facts) -> list[str]:
    lead, target, output = render(record, Channel.EMAIL, privacy, fact)
    return email_output_problems(
        output.payload, target, fact.urgent, baselines().html, expected_reply_to(lead, target)
    )


def _with_name(name: str) -> dict[str, Any]:
    record = base_record(1, category=1, service=100000)
    record["enquirerFirstName"] = name
    return record


@settings(FAST, phases=[Phase.explicit, Phase.generate])
@given(hostile_leads(), st.sampled_from(PRIVACY_LEVELS), facts)
@example(record=_with_name(ENCODED_WORDS["name"]), privacy="full", fact=Facts())
def test_emails_stay_text_and_keep_their_headers(
    record: dict[str, Any], privacy: str, fact: Facts
) -> None:
    problems = email_problems(record, privacy, fact)
    assert not problems, problems[:5]


@FAST
@given(hostile_leads(encoded_words=False), st.sampled_from(PRIVACY_LEVELS), facts)
def test_emails_without_encoded_words_stay_text_and_keep_their_headers(
    record: dict[str, Any], privacy: str, fact: Facts
) -> None:
    problems = email_problems(record, privacy, fact)
    assert not problems, problems[:5]


@FAST
@given(
    st.text(st.characters(exclude_categories=()), max_size=60),
    st.sampled_from(list(Channel)),
    st.sampled_from(PRIVACY_LEVELS),
)
def test_a_name_alone_never_adds_an_email_header_or_a_mention(
    name: str, channel: Channel, privacy: str
) -> None:
    """One field at a time, so a failure names the field's text exactly."""
    record = base_record(1, category=1, service=100000)
    record["enquirerFirstName"] = name
    lead, target, output = render(record, channel, privacy, Facts())
    if channel is Channel.EMAIL:
        problems = email_output_problems(
            output.payload, target, False, baselines().html, expected_reply_to(lead, target)
        )
    elif channel is Channel.SLACK:
        problems = slack_problems(output.payload)
    else:
        problems = teams_problems(output.payload, baselines().markdown)
    assert not problems, problems[:5]
