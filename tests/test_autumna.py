"""Lead parsing and the Autumna API client: every quirk of Autumna's data, table by table."""

from __future__ import annotations

import json
import traceback
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

import bot
from bot.autumna import AutumnaClient
from bot.jsontext import repair_quotes
from bot.models import Category, Lead
from bot.parse import Batch, PollError, parse_body, parse_lead
from bot.text import clean_line, clean_text, parse_list_text

PUBLISHED = Path(bot.__file__).parent / "demo" / "published"
JUNE_27 = datetime(2021, 6, 27, 14, 17, 29, 517000, tzinfo=UTC)
APRIL_26 = datetime(2021, 4, 26, 10, 6, 45, 724000, tzinfo=UTC)


def published(name: str) -> str:
    return (PUBLISHED / name).read_text(encoding="utf-8")


def record(**changes: Any) -> dict[str, Any]:
    """Autumna's first published example as a dict, with some fields changed."""
    base: dict[str, Any] = json.loads(published("1-contact-form-message.json"))
    base.update(changes)
    return base


def only_lead(batch: Batch) -> Lead:
    assert batch.unreadable == []
    assert len(batch.leads) == 1
    return batch.leads[0]


# --- the eight published examples ---------------------------------------------------------------


PUBLISHED_EXPECTED = [
    # file, category, key, service id, on_behalf_of, funding, timescales, telephone, date
    (
        "1-contact-form-message.json",
        (1, "Contact Form Message"),
        "1:2000",
        100000,
        ("Family member",),
        ("Self Funding",),
        (),
        "01900 000000",
        JUNE_27,
    ),
    (
        "2-in-person-visit-request.json",
        (2, "In Person Visit Request"),
        "2:1811",
        100000,
        ("Family member",),
        ("Top-up",),
        (),
        "01900 000000",
        APRIL_26,
    ),
    (
        "3-virtual-visit-request.json",
        (3, "Virtual Visit Request"),
        "3:1812",
        100000,
        ("Family member",),
        ("Top-up",),
        (),
        "+447979908510",
        APRIL_26,
    ),
    (
        "4-call-back-request.json",
        (4, "Call Back Request"),
        "4:2000",
        100000,
        ("Family member",),
        ("Self Funding",),
        ("2-4 weeks",),
        "01900 000000",
        JUNE_27,
    ),
    (
        "5-email-details-request.json",
        (5, "Email Details Request"),
        "5:2000",
        100000,
        ("Family member",),
        ("Self Funding",),
        ("2-4 weeks",),
        "01900 000000",
        JUNE_27,
    ),
    (
        "6-referral-with-contact.json",
        (6, "Referral with contact"),
        "6:2000",
        200000,
        ("Myself",),
        ("Buy",),
        ("2-4 weeks",),
        "01900 000000",
        JUNE_27,
    ),
    (
        "7-referral-without-contact.json",
        (7, "Referral without contact"),
        "7:2000",
        200000,
        ("Myself",),
        ("Buy",),
        ("2-4 weeks",),
        "01900 000000",
        JUNE_27,
    ),
    (
        "8-placement.json",
        (8, "Placement"),
        "8:2000",
        200000,
        ("Myself",),
        ("Buy",),
        ("2-4 weeks",),
        "01900 000000",
        JUNE_27,
    ),
]


@pytest.mark.parametrize(
    (
        "name",
        "category",
        "key",
        "service_id",
        "on_behalf_of",
        "funding",
        "timescales",
        "phone",
        "when",
    ),
    PUBLISHED_EXPECTED,
    ids=[row[0] for row in PUBLISHED_EXPECTED],
)
def test_every_published_example_parses_cleanly(
    name: str,
    category: tuple[int, str],
    key: str,
    service_id: int,
    on_behalf_of: tuple[str, ...],
    funding: tuple[str, ...],
    timescales: tuple[str, ...],
    phone: str,
    when: datetime,
) -> None:
    lead = only_lead(parse_body(published(name), "acct"))

    assert lead.category == Category(*category)
    assert lead.key == key
    assert lead.account == "acct"
    assert lead.service.id == service_id
    assert lead.service.name == "Example Service Name"  # " Example Service Name" in 4-8
    assert lead.service.postcode == "SW1A 1AA"  # " SW1A 1AA" in 2 and 3
    assert lead.sender == "johnsmith@gmail.com"  # " johnsmith@gmail.com " in 2 and 3
    assert lead.to == "example.service@group.com"
    assert lead.on_behalf_of == on_behalf_of
    assert lead.funding == funding
    assert lead.timescales == timescales
    assert lead.telephone == phone
    assert lead.date == when and lead.date.utcoffset() is not None
    assert (lead.enquirer_first_name, lead.enquirer_surname) == ("John", "Smith")
    assert lead.anonymised is False
    assert lead.problems == ()
    assert lead.extra == {}
    assert json.loads(lead.raw)["id"] == lead.id


@pytest.mark.parametrize("name", ["3-virtual-visit-request.json", "4-call-back-request.json"])
def test_the_two_published_examples_with_typographic_quotes_are_not_json_but_still_parse(
    name: str,
) -> None:
    text = published(name)
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert only_lead(parse_body(text, "acct")).on_behalf_of == ("Family member",)


@pytest.mark.parametrize("name", ["2-in-person-visit-request.json", "3-virtual-visit-request.json"])
def test_visit_requests_carry_the_visit_date_and_time(name: str) -> None:
    lead = only_lead(parse_body(published(name), "acct"))
    assert lead.visit_date == date(2021, 4, 29)
    assert lead.visit_time == "We don't get this"
    assert lead.instruction == "Please confirm directly with requester"


@pytest.mark.parametrize(
    ("name", "email_ok", "phone_ok"),
    [
        ("6-referral-with-contact.json", True, False),
        ("7-referral-without-contact.json", False, False),
        ("8-placement.json", False, False),
    ],
)
def test_referrals_carry_budget_and_permissions(name: str, email_ok: bool, phone_ok: bool) -> None:
    lead = only_lead(parse_body(published(name), "acct"))
    assert (lead.email_permission, lead.phone_permission) == (email_ok, phone_ok)
    assert (lead.budget_type, lead.budget_min, lead.budget_max) == ("Purchase", 350000, 450000)
    assert (lead.resident_first_name, lead.resident_surname) == (None, None)


@pytest.mark.parametrize("name", ["1-contact-form-message.json", "4-call-back-request.json"])
def test_direct_enquiries_have_no_permission_flags(name: str) -> None:
    lead = only_lead(parse_body(published(name), "acct"))
    assert (lead.email_permission, lead.phone_permission) == (None, None)
    assert lead.visit_date is None and lead.budget_min is None


@pytest.mark.parametrize(
    ("specific", "expected"),
    [
        (
            {"budget_type": "Weekly Budget", "budget_min": 1200, "budget_max": 1500},
            ("Weekly Budget", 1200.0, 1500.0),
        ),
        (
            {"budgetType": "Weekly Budget", "budgetMin": 1200, "budgetMax": 1500},
            ("Weekly Budget", 1200.0, 1500.0),
        ),
        (
            {"budgetType": "Monthly Budget", "budgetMin": "£4,500", "budgetMax": "5500.50"},
            ("Monthly Budget", 4500.0, 5500.5),
        ),
        (
            {
                "budget_type": None,
                "budgetType": "Hourly Budget",
                "budget_min": None,
                "budgetMin": 30,
            },
            ("Hourly Budget", 30.0, None),
        ),
        ({"budget_min": "ask us", "budget_max": True}, ("", None, None)),
    ],
    ids=["snake_case", "camelCase", "text amounts", "null snake falls back to camel", "junk"],
)
def test_budget_is_read_in_both_spellings(
    specific: dict[str, Any], expected: tuple[str, float | None, float | None]
) -> None:
    lead = parse_lead(
        record(category={"id": 6, "name": "Referral with contact"}, categorySpecificData=specific),
        "acct",
    )
    assert (lead.budget_type, lead.budget_min, lead.budget_max) == expected
    assert lead.extra == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2021-06-27T14:17:29.517Z", JUNE_27),
        ("2021-06-27T14:17:29Z", datetime(2021, 6, 27, 14, 17, 29, tzinfo=UTC)),
        ("2021-06-27T14:17:29", datetime(2021, 6, 27, 14, 17, 29, tzinfo=UTC)),
        ("2021-06-27 14:17:29", datetime(2021, 6, 27, 14, 17, 29, tzinfo=UTC)),
        ("2021-06-27T15:17:29+01:00", datetime(2021, 6, 27, 14, 17, 29, tzinfo=UTC)),
        (" 2021-01-05T09:00:00.000Z ", datetime(2021, 1, 5, 9, 0, tzinfo=UTC)),
    ],
    ids=[
        "milliseconds",
        "no milliseconds",
        "no zone means UTC",
        "space separator",
        "offset",
        "padded",
    ],
)
def test_dates_with_and_without_milliseconds_become_aware_utc(
    value: str, expected: datetime
) -> None:
    lead = parse_lead(record(date=value), "acct")
    assert lead.date == expected
    assert lead.date is not None and lead.date.utcoffset() == UTC.utcoffset(None)
    assert lead.problems == ()


# --- body shapes ---------------------------------------------------------------------------


LEAD_1 = published("1-contact-form-message.json")
LEAD_2 = published("2-in-person-visit-request.json")


@pytest.mark.parametrize(
    ("body", "keys"),
    [
        (f"[{LEAD_1}, {LEAD_2}]", ["1:2000", "2:1811"]),
        (f'{{"data": [{LEAD_1}, {LEAD_2}]}}', ["1:2000", "2:1811"]),
        (f'{{"data": [{LEAD_1}], "error": []}}', ["1:2000"]),
        (LEAD_1, ["1:2000"]),
        ("[]", []),
        ("{}", []),
        ('{"data": []}', []),
        ('{"data": [], "error": []}', []),
        (f"  \n[{LEAD_1}]\n", ["1:2000"]),
    ],
    ids=[
        "bare array",
        "data wrapper",
        "data wrapper with error list",
        "single object",
        "empty array",
        "empty object",
        "empty data",
        "empty data with error list",
        "whitespace",
    ],
)
def test_every_body_shape_autumna_might_send_is_accepted(body: str, keys: list[str]) -> None:
    batch = parse_body(body, "acct")
    assert [lead.key for lead in batch.leads] == keys
    assert batch.unreadable == []
    assert batch.nbytes == len(body.encode())


DEEP_LIST = "[" * 10_000 + "]" * 10_000
DEEP_OBJECT = '{"a":' * 10_000 + "1" + "}" * 10_000


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('{"message": "Invalid API key"}', "Invalid API key"),
        ('{"error": "Unknown error"}', "Unknown error"),
        ("", "empty"),
        ("   \r\n ", "empty"),
        ("<!DOCTYPE html><html><body><h1>500 Internal Server Error</h1></body></html>", "not JSON"),
        (LEAD_1[: len(LEAD_1) // 2], "not JSON"),
        (f"[{LEAD_1}, {LEAD_2}"[:-3], "not JSON"),
        ("null", "holds no leads"),
        ("42", "holds no leads"),
        ('"leads"', "holds no leads"),
        (DEEP_OBJECT, "nested too deeply"),
    ],
    ids=[
        "message",
        "error text",
        "empty",
        "blank",
        "HTML error page",
        "truncated object",
        "truncated array",
        "null",
        "number",
        "string",
        "10,000 nested objects",
    ],
)
def test_a_body_that_holds_no_leads_is_a_poll_error(body: str, says: str) -> None:
    with pytest.raises(PollError) as caught:
        parse_body(body, "acct")
    assert says in str(caught.value)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


@pytest.mark.parametrize(
    "body",
    [
        DEEP_LIST,
        "[" * 80 + "]" * 80,
        # Not JSON as sent (a typographic quote), and 10,000 levels deep once the quote is repaired:
        "[“a”, " + DEEP_LIST + "]",
        f"[{LEAD_1}, " + DEEP_LIST + f", {LEAD_2}]",
        '{"data": [' + LEAD_1 + ", " + DEEP_LIST + "]}",
    ],
    ids=[
        "10,000 nested lists",
        "80 levels",
        "deep after quote repair",
        "between two leads",
        "inside a data wrapper",
    ],
)
def test_a_record_nested_too_deeply_is_kept_unreadable_and_the_others_still_parse(
    body: str,
) -> None:
    batch = parse_body(body, "acct")
    assert any("nested too deeply" in u.problem for u in batch.unreadable)
    if LEAD_1 in body:
        assert "1:2000" in [lead.key for lead in batch.leads]


# --- typographic quotes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{\"onBehalfOf\": “['Family member']”}", {"onBehalfOf": "['Family member']"}),
        ('{"a": “x”, "b": “y”}', {"a": "x", "b": "y"}),
        ('{"content": "she said “hello”, then left"}', {"content": "she said “hello”, then left"}),
        (
            '{"content": "she said “hello, then left", "x": “y”}',
            {"content": "she said “hello, then left", "x": "y"},
        ),
        ('{"content": "a \\"quoted\\" word", "x": “y”}', {"content": 'a "quoted" word', "x": "y"}),
        (
            '{"content": "ends with a backslash \\\\", "x": “y”}',
            {"content": "ends with a backslash \\", "x": "y"},
        ),
        ('{"x": “say "hi"”}', {"x": 'say "hi"'}),
    ],
    ids=[
        "published",
        "two values",
        "curly inside a string stays",
        "unbalanced curly inside",
        "escaped ascii quotes",
        "escaped backslash",
        "ascii quote inside curly",
    ],
)
def test_repair_quotes_turns_curly_quoted_values_into_json_strings(
    text: str, expected: dict[str, Any]
) -> None:
    assert json.loads(repair_quotes(text)) == expected


@pytest.mark.parametrize("name", sorted(p.name for p in PUBLISHED.glob("*.json")))
def test_repair_quotes_leaves_valid_json_as_it_is(name: str) -> None:
    text = published(name).replace("“", '"').replace("”", '"')
    assert repair_quotes(text) == text


# --- Python list literals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("['Family member']", ("Family member",)),
        ("['Part Buy, Part Rent']", ("Part Buy, Part Rent",)),
        ("['A', 'B']", ("A", "B")),
        ('["A"]', ("A",)),
        ("[]", ()),
        ("[ ]", ()),
        (None, ()),
        ("", ()),
        (["Self Funding", " Top-up "], ("Self Funding", "Top-up")),
        ([], ()),
        ("Self Funding", ("Self Funding",)),
        ("  Self Funding ", ("Self Funding",)),
        ("[‘Family member’]", ("Family member",)),
        ("[‘A’, ‘B’]", ("A", "B")),
        ("[Part Buy, Part Rent]", ("Part Buy, Part Rent",)),
        ("[Buy, Rent]", ("Buy", "Rent")),
        ("[Part Buy, Part Rent, Buy]", ("Part Buy, Part Rent", "Buy")),
        ("['Part Buy, Part Rent', 'Buy']", ("Part Buy, Part Rent", "Buy")),
        ("['Don\\'t know']", ("Don't know",)),
        ('["Don\'t know"]', ("Don't know",)),
        ("['A', '']", ("A",)),
        # The published typographic quotes, had they arrived inside a JSON string:
        ("“['Family member']”", ("Family member",)),
    ],
    ids=lambda v: repr(v),
)
def test_parse_list_text_reads_autumnas_list_literals(
    value: Any, expected: tuple[str, ...]
) -> None:
    assert parse_list_text(value) == expected


# --- odd values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "check"),
    [
        ({"id": "2000"}, lambda lead: lead.id == 2000 and lead.key == "1:2000"),
        ({"id": " 2001 "}, lambda lead: lead.id == 2001),
        ({"id": 2002.0}, lambda lead: lead.id == 2002),
        (
            {"category": {"id": "4", "name": "Call Back Request"}},
            lambda lead: lead.category == Category(4, "Call Back Request") and lead.key == "4:2000",
        ),
        ({"category": 5}, lambda lead: lead.category == Category(5, "Email Details Request")),
        (
            {"category": {"id": 6}},
            lambda lead: lead.category == Category(6, "Referral with contact"),
        ),
        (
            {"category": {"id": 9, "name": "Brochure Request"}},
            lambda lead: (
                lead.category == Category(9, "Brochure Request")
                and lead.key == "9:2000"
                and lead.category.slug == "brochure-request"
            ),
        ),
        ({"category": {"id": 9}}, lambda lead: lead.category.name == "Category 9"),
        ({"telephone": 7700900123}, lambda lead: lead.telephone == "7700900123"),
        ({"telephone": None}, lambda lead: lead.telephone == ""),
        (
            {"service": {"id": "100000", "name": 42, "postcode": None}},
            lambda lead: (
                (lead.service.id, lead.service.name, lead.service.postcode) == (100000, "42", "")
            ),
        ),
        ({"service": None}, lambda lead: lead.service.id is None),
        (
            {"enquirerFirstName": None, "enquirerSurname": None},
            lambda lead: (lead.enquirer_first_name, lead.enquirer_surname) == (None, None),
        ),
        (
            {"enquirerFirstName": "  ", "residentSurname": ""},
            lambda lead: lead.enquirer_first_name is None and lead.resident_surname is None,
        ),
        ({"isAnonymised": "true"}, lambda lead: lead.anonymised is True),
        ({"isAnonymised": "false"}, lambda lead: lead.anonymised is False),
        ({"isAnonymised": 1}, lambda lead: lead.anonymised is True),
        ({"isAnonymised": None}, lambda lead: lead.anonymised is False),
        ({"content": None}, lambda lead: lead.content == ""),
        ({"content": 12345}, lambda lead: lead.content == "12345"),
        (
            {"funding": "['Top-up']", "timescales": "['Tomorrow']"},
            lambda lead: lead.funding == ("Top-up",) and lead.timescales == ("Tomorrow",),
        ),
        (
            {"currentCircumstances": "['At Home With Care']"},
            lambda lead: lead.extra == {"currentCircumstances": "['At Home With Care']"},
        ),
        (
            {"categorySpecificData": {"instruction": "", "postalAddressProvided": True}},
            lambda lead: lead.extra == {"categorySpecificData": {"postalAddressProvided": True}},
        ),
        (
            {"categorySpecificData": {"emailPermission": "true", "phonePermission": "no"}},
            lambda lead: (lead.email_permission, lead.phone_permission) == (True, False),
        ),
        (
            {"categorySpecificData": {"emailPermission": "maybe"}},
            lambda lead: lead.email_permission is None,
        ),
    ],
    ids=[
        "id as string",
        "padded id string",
        "id as float",
        "category id as string",
        "category as a bare id",
        "category without name",
        "unknown category kept",
        "unknown category without name",
        "number as telephone",
        "null telephone",
        "service odd types",
        "no service",
        "null names",
        "blank names",
        "isAnonymised 'true'",
        "isAnonymised 'false'",
        "isAnonymised 1",
        "isAnonymised null",
        "null content",
        "number as content",
        "values outside the documented lists",
        "unknown top-level field kept",
        "unknown specific field kept",
        "permissions as text",
        "unreadable permission",
    ],
)
def test_odd_values_are_tolerated(changes: dict[str, Any], check: Any) -> None:
    lead = parse_lead(record(**changes), "acct")
    assert check(lead), lead


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"date": "yesterday"}, "date could not be read"),
        ({"date": "27/06/2021 14:17"}, "date could not be read"),
        ({"date": 1624803449}, "date could not be read"),
        ({"categorySpecificData": {"visitDate": "29/04/2021"}}, "visitDate could not be read"),
        ({"categorySpecificData": "visit on Thursday"}, "categorySpecificData is not an object"),
    ],
)
def test_an_unreadable_value_becomes_none_with_a_note(
    changes: dict[str, Any], problem: str
) -> None:
    lead = parse_lead(record(**changes), "acct")
    assert problem in lead.problems
    assert lead.key == "1:2000"
    if "date" in changes:
        assert lead.date is None
    else:
        assert lead.visit_date is None


def test_a_missing_date_is_none_without_a_note() -> None:
    lead = parse_lead(record(date=None), "acct")
    assert lead.date is None and lead.problems == ()


# --- records that are not leads ---------------------------------------------------------------


BROKEN_RECORDS = [
    ({k: v for k, v in json.loads(LEAD_1).items() if k != "id"}, "id"),
    (record(id=None), "id"),
    (record(id="two thousand"), "id"),
    (record(id=True), "id"),
    ({k: v for k, v in json.loads(LEAD_1).items() if k != "category"}, "category"),
    (record(category={"name": "Call Back Request"}), "category"),
    (record(category="Call Back Request"), "category"),
    ("a string", "str"),
    (42, "int"),
    (None, "NoneType"),
    ([1, 2], "list"),
]


@pytest.mark.parametrize(
    ("broken", "problem"),
    BROKEN_RECORDS,
    ids=[
        "no id",
        "null id",
        "word id",
        "bool id",
        "no category",
        "category without id",
        "category as a name",
        "string",
        "number",
        "null",
        "list",
    ],
)
def test_a_record_that_is_not_a_lead_is_kept_raw_and_the_rest_still_parse(
    broken: Any, problem: str
) -> None:
    body = json.dumps([json.loads(LEAD_1), broken, json.loads(LEAD_2)])
    batch = parse_body(body, "acct")

    assert [lead.key for lead in batch.leads] == ["1:2000", "2:1811"]
    assert len(batch.unreadable) == 1
    bad = batch.unreadable[0]
    assert bad.account == "acct"
    assert json.loads(bad.raw) == broken
    assert problem in bad.problem
    assert bad.key.startswith("raw:") and len(bad.key) > 10
    assert parse_body(body, "acct").unreadable[0].key == bad.key  # stable across polls


def test_unreadable_keys_differ_between_records_and_ignore_key_order() -> None:
    first = parse_body('[{"content": "a", "x": 1}]', "acct").unreadable[0]
    reordered = parse_body('[{"x": 1, "content": "a"}]', "acct").unreadable[0]
    other = parse_body('[{"content": "b", "x": 1}]', "acct").unreadable[0]
    assert first.key == reordered.key
    assert first.key != other.key


def test_a_non_object_categoryspecificdata_is_noted_not_fatal() -> None:
    batch = parse_body(json.dumps([record(categorySpecificData=[1, 2])]), "acct")
    lead = only_lead(batch)
    assert "categorySpecificData is not an object" in lead.problems


# --- text from the public -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("John\r\nBcc: x@evil.example", "John Bcc: x@evil.example"),
        ("  John \n\n Smith\t", "John Smith"),
        ("John\rSmith", "John Smith"),
        ("John\u2028Smith", "John Smith"),
        ("Jo\x00hn", "John"),
        ("\x1b[31mJohn\x1b[0m", "John"),
        ("John\u202eSmith\u202c", "JohnSmith"),
        ("\u2066John\u2069", "John"),
        ("Jo\ud800hn", "John"),
        ("Jo\udfffhn", "John"),
        ("Jo\x85hn", "John"),
        (None, ""),
        (7700900123, "7700900123"),
        ("Zoë Ó Súilleabháin 🌹", "Zoë Ó Súilleabháin 🌹"),
    ],
    ids=[
        "CRLF header injection",
        "spaces",
        "CR",
        "line separator",
        "NUL",
        "ANSI escape",
        "bidi override",
        "bidi isolate",
        "lone high surrogate",
        "lone low surrogate",
        "NEL",
        "None",
        "number",
        "unicode kept",
    ],
)
def test_clean_line_makes_one_safe_line(value: Any, expected: str) -> None:
    assert clean_line(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Dear home,\r\nMy mother...\r\n\r\nThanks", "Dear home,\nMy mother...\n\nThanks"),
        ("old\rmac", "old\nmac"),
        ("tab\tkept", "tab\tkept"),
        ("  padded  \n", "padded"),
        ("bell\x07 and \x1b[2J clear", "bell and  clear"),
        ("\u202egnp.exe", "gnp.exe"),
        ("lone \ud83d surrogate", "lone  surrogate"),
    ],
    ids=["CRLF kept as newlines", "CR", "tab", "trimmed", "controls", "bidi", "surrogate"],
)
def test_clean_text_keeps_lines_and_removes_controls(value: str, expected: str) -> None:
    assert clean_text(value) == expected


def test_names_addresses_and_phone_are_single_lines_but_content_keeps_its_newlines() -> None:
    lead = parse_lead(
        record(
            enquirerFirstName="John\r\nBcc: x@evil.example",
            enquirerSurname="Sm\u202eith",
            residentFirstName="Ja\x00ne",
            residentSurname="\x1b[1mSmith",
            telephone="01900\n000000",
            **{"from": "john@example.com\r\nCc: y@evil.example"},
            content="Line one\r\nLine two\u202e\x00\n\nLast",
            categorySpecificData={"visitTime": "2pm\r\nX-Header: 1", "instruction": "a\r\nb"},
        ),
        "acct",
    )
    single = [
        lead.enquirer_first_name,
        lead.enquirer_surname,
        lead.resident_first_name,
        lead.resident_surname,
        lead.telephone,
        lead.sender,
        lead.visit_time,
    ]
    for value in single:
        assert value is not None
        assert not set(value) & {"\r", "\n", "\x00", "\x1b", "\u202e"}, value
    assert lead.enquirer_first_name == "John Bcc: x@evil.example"
    assert lead.sender == "john@example.com Cc: y@evil.example"
    assert lead.content == "Line one\nLine two\n\nLast"
    assert lead.instruction == "a\nb"


def test_lone_surrogates_from_json_escapes_are_removed() -> None:
    body = (
        '[{"id": 1, "category": {"id": 1}, "content": "a\\ud800b", "enquirerFirstName": '
        '"J\\udc00o"}]'
    )
    lead = only_lead(parse_body(body, "acct"))
    assert lead.content == "ab"
    assert lead.enquirer_first_name == "Jo"
    lead.content.encode("utf-8")  # would raise on a surrogate


# --- the API client -------------------------------------------------------------------------------


KEY = "Ab3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1eF3hJ5kL7n"
URL = "https://autumna.test/api/leads/"


def client_for(handler: Any) -> tuple[AutumnaClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record_and_answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer: httpx.Response = handler(request)
        return answer

    http = httpx.Client(transport=httpx.MockTransport(record_and_answer))
    return AutumnaClient(URL, http), seen


def assert_secret_free(exc: BaseException) -> None:
    shown = "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)
    assert KEY not in shown
    assert "autumna.test" not in shown and "api_key=" not in shown


@pytest.mark.parametrize(
    ("since", "until", "sent_from", "sent_to"),
    [
        (
            datetime(2024, 1, 10, 9, 0, tzinfo=UTC),
            datetime(2024, 1, 10, 9, 15, tzinfo=UTC),
            "2024-01-10T09:00:00",
            "2024-01-10T09:15:00",
        ),
        (
            datetime(2024, 7, 1, 10, 0, 30, tzinfo=ZoneInfo("Europe/London")),
            datetime(2024, 7, 1, 10, 15, 59, 999999, tzinfo=ZoneInfo("Europe/London")),
            "2024-07-01T09:00:30",
            "2024-07-01T09:15:59",
        ),
        (
            datetime(2024, 3, 31, 0, 30, tzinfo=UTC),
            datetime(2024, 3, 31, 2, 30, tzinfo=ZoneInfo("Europe/London")),
            "2024-03-31T00:30:00",
            "2024-03-31T01:30:00",
        ),
    ],
    ids=["GMT", "BST", "across the clock change"],
)
def test_fetch_sends_the_window_in_utc_without_a_zone_suffix(
    since: datetime, until: datetime, sent_from: str, sent_to: str
) -> None:
    client, seen = client_for(lambda request: httpx.Response(200, text=f"[{LEAD_1}]"))

    batch = client.fetch("north", KEY, since, until)

    assert [lead.key for lead in batch.leads] == ["1:2000"]
    assert batch.leads[0].account == "north"
    (request,) = seen
    assert request.method == "GET"
    assert str(request.url).startswith(URL + "?")
    assert dict(request.url.params) == {
        "api_key": KEY,
        "dateTimeFrom": sent_from,
        "dateTimeTo": sent_to,
    }
    assert request.headers["Accept"] == "application/json"
    assert request.content == b""


def test_fetch_reads_the_published_quirks_through_the_client() -> None:
    body = "[" + ", ".join(published(p.name) for p in sorted(PUBLISHED.glob("*.json"))) + "]"
    client, _ = client_for(lambda request: httpx.Response(200, text=body))
    batch = client.fetch(
        "acct", KEY, datetime(2021, 4, 1, tzinfo=UTC), datetime(2021, 7, 1, tzinfo=UTC)
    )
    assert len({lead.key for lead in batch.leads}) == 8
    assert batch.unreadable == []


@pytest.mark.parametrize(
    ("status", "says_wrong_key"),
    [
        (500, True),
        (502, False),
        (503, False),
        (404, False),
        (401, False),
        (302, False),
    ],
)
def test_an_http_error_is_a_poll_error_without_the_key(status: int, says_wrong_key: bool) -> None:
    client, _ = client_for(
        lambda request: httpx.Response(
            status,
            text=f"<html>error for {request.url}</html>",
            headers={"Location": str(request.url)},
        )
    )

    with pytest.raises(PollError) as caught:
        client.fetch(
            "acct", KEY, datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 0, 15, tzinfo=UTC)
        )

    message = str(caught.value)
    assert str(status) in message
    assert ("wrong API key" in message and "outage" in message) is says_wrong_key
    assert_secret_free(caught.value)


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (httpx.ReadTimeout, "did not answer in time"),
        (httpx.ConnectTimeout, "did not answer in time"),
        (httpx.ConnectError, "could not reach Autumna (ConnectError)"),
        (httpx.RemoteProtocolError, "could not reach Autumna (RemoteProtocolError)"),
    ],
    ids=["read timeout", "connect timeout", "connection refused", "dropped connection"],
)
def test_a_timeout_or_connection_error_is_a_poll_error_without_the_key(
    error: type[httpx.TransportError], says: str
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error(f"failed to reach {request.url}", request=request)

    client, _ = client_for(fail)
    with pytest.raises(PollError) as caught:
        client.fetch(
            "acct", KEY, datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 0, 15, tzinfo=UTC)
        )
    assert says in str(caught.value)
    assert_secret_free(caught.value)


def test_a_200_that_is_not_json_is_a_poll_error_without_the_key() -> None:
    client, _ = client_for(
        lambda request: httpx.Response(200, text=f"<html>Please log in: {request.url}</html>")
    )
    with pytest.raises(PollError) as caught:
        client.fetch(
            "acct", KEY, datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 0, 15, tzinfo=UTC)
        )
    assert "not JSON" in str(caught.value)
    assert_secret_free(caught.value)
