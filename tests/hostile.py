"""The hostile corpus: leads as the public could type them (or as Autumna could mangle them), and
the checks that say whether an output let any of it escape its field.

Everything here is data and small builders, importable by any test:

- `TEXTS`: hostile strings by family (Slack syntax, HTML, Markdown, line breaks, terminal escapes,
  bidi controls, odd Unicode, bare URLs, header injection);
- `CORPUS`: lead records (dicts, as Autumna's JSON would decode) carrying them in every field, and
  records with the wrong JSON types; `BAD_BODIES`: HTTP bodies that are not clean UTF-8 JSON;
  `POISON_RECORDS`: single records that must not stop the good ones around them;
- `slack_problems`, `teams_problems`, `email_problems`, `terminal_problems`: what is wrong with an
  output (an empty list when nothing is);
- `Installation`: a leadbot folder wired to the loopback stand-ins, run as a real subprocess.
"""

from __future__ import annotations

import base64
import email
import email.policy
import functools
import html
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from email.generator import BytesGenerator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from standins.autumna import AutumnaStandin
from standins.slack import SlackStandin
from standins.smtp import SmtpStandin
from standins.teams import TeamsStandin
from standins.validators import (
    assert_multipart_alternative,
    parse_email,
    validate_slack_message,
    validate_teams_message,
)

from bot.channels import email as email_channel
from bot.config import PRIVACY_LEVELS, Config
from bot.models import CATEGORY_NAMES, Channel, Facts, Lead, Message, Target
from bot.render import SAMPLE, Renderer
from bot.rules import route
from bot.view import contact_view

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "bot" / "demo" / "published"
ROOT_RULES = ROOT / "rules.toml"
SENDER = "Rose Care leads <leads@rosecare.example>"
ADDRESSES = {
    Channel.SLACK: "#hostile",
    Channel.EMAIL: "sales@rosecare.example",
    Channel.TEAMS: "TEAMS_HOSTILE_WEBHOOK",
}
KNOWN_HOMES = (100000, 200000)  # in the root rules.toml and in E2E_RULES
UNKNOWN_HOME = 987654  # not configured: its name comes from the lead, so it is hostile too

# --- hostile texts, by family ------------------------------------------------------------------

SLACK_SYNTAX = {
    "channel": "<!channel>",
    "here": "<!here>",
    "everyone": "<!everyone>",
    "user": "<@U123>",
    "subteam": "<!subteam^S1>",
    "channel link": "<#C123>",
    "labelled link": "<https://evil.example|Autumna portal>",
    "mailto link": "<mailto:x@evil.example|Email Autumna>",
    "date token": "<!date^1392734382^{date_num}|Feb 18>",
    "pre-escaped": "&lt;!channel&gt; &amp;lt;!here&amp;gt;",
    "fullwidth": "＜!channel＞",
}
HTML = {
    "script": "<script>alert(1)</script>",
    "img onerror": "<img src=x onerror=alert(1)>",
    "attribute break": '"><a href="https://evil.example">Autumna</a>',
    "single quote break": "'><img src='https://evil.example/p.png'>",
    "svg onload": "<svg/onload=alert(1)>",
    "iframe": "<iframe src=https://evil.example></iframe>",
    "style": "<style>body{display:none}</style>",
    "comment": "<!-- --><script>alert(1)</script>",
    "entities": "&#60;script&#62;alert(1)&#60;/script&#62; &lt;b&gt;",
    "javascript url": "javascript:alert(document.cookie)",
}
MARKDOWN = {
    "link": "[Autumna](https://evil.example)",
    "image": "![x](https://evil.example/p.png)",
    "autolink": "<https://evil.example>",
    "email autolink": "<victim@evil.example>",
    "bold": "**BOLDMARK**",
    "italic": "_EMMARK_ *STARMARK*",
    "strike": "~~STRIKEMARK~~",
    "code": "`CODEMARK`",
    "reference": "[REFMARK][r]\n\n[r]: https://evil.example",
    "heading": "# HEADMARK",
    "setext": "SETEXTMARK\n===",
    "list": "- LISTMARK\n+ PLUSMARK\n1. OLMARK\n2) OLMARK2",
    "quote": "> QUOTEMARK",
    "table": "| TABLEMARK | b |\n|---|---|\n| c | d |",
    "raw html": "<b>HTMLMARK</b>",
    "escaped escape": "\\*\\*NOTBOLD\\*\\* \\",
    "rule": "---",
}
LINE_BREAKS = {
    "crlf bcc": "Eve\r\nBcc: victim@evil.example",
    "lf cc": "Eve\nCc: victim@evil.example",
    "lone cr": "Eve\rTo: victim@evil.example",
    "header then body": "Eve\r\n\r\n<html><script>alert(1)</script>",
    "nul": "Eve\x00Bcc: victim@evil.example",
    "nel": "Eve\x85Bcc: victim@evil.example",
    "line separator": "Eve\u2028Bcc: victim@evil.example\u2029",
    "vertical tab and form feed": "Eve\x0bBcc:\x0cvictim@evil.example",
    "encoded word": "=?utf-8?q?Eve=0D=0ABcc=3A_victim=40evil=2Eexample?=",
}
ANSI = {
    "clear and colour": "\x1b[2J\x1b[31mRED",
    "osc 8 hyperlink": "\x1b]8;;https://evil.example\x07click\x1b]8;;\x07",
    "osc title": "\x1b]0;pwned\x07",
    "c1 csi": "\x9b31mC1",
    "dcs": "\x1bP+q544e\x1b\\",
    "bell backspace delete": "\x07\x08\x08\x7fBS",
    "cursor up and erase": "\x1b[1A\x1b[2K",
}
BIDI = {
    "rlo": "\u202eevil.example/\u202c",
    "isolates": "\u2066\u2067\u2068\u2069",
    "embeddings": "\u202a\u202b\u202c\u202d",
    "trojan source": "admin\u2067\u2066 ''; return\u2069\u2066",
    "marks": "\u200e\u200f\u061c",
}
UNICODE = {
    "emoji": "👩‍👩‍👧‍👦 🏳️‍🌈 🇬🇧 😀",
    "combining": "Z̴̡̧̛̛͖̦̮̫̖̟̬̺̜̬̩͚͉̖̬̹̗̞̦͎̠̼̱̮̳̳͔͊̈́̈́̄̃̇̎̎̈́͌̏̑̆̊̈́͐̋̚͘͝",
    "combining flood": "e" + "\u0301" * 500,
    "zero width": "Ev\u200be\u200d\ufeff",
    "rtl text": "مرحبا שלום",
    "astral": "𝕰𝖛𝖊 𐐷 \U0010fffd",
    "private use": "\ue000\uf8ff",
    "replacement": "\ufffd\ufffe\uffff",
}
BARE_URLS = {
    "https": "https://evil.example",
    "upper case": "HTTPS://EVIL.EXAMPLE/login",
    "http path": "http://evil.example/autumna/login?next=/",
    "www": "www.evil.example",
    "ftp": "ftp://evil.example/file",
    "data": "data:text/html,<script>alert(1)</script>",
    "scheme relative": "//evil.example/x",
}
TEXTS: dict[str, str] = {
    f"{family}: {name}": text
    for family, texts in (
        ("slack", SLACK_SYNTAX),
        ("html", HTML),
        ("markdown", MARKDOWN),
        ("line breaks", LINE_BREAKS),
        ("ansi", ANSI),
        ("bidi", BIDI),
        ("unicode", UNICODE),
        ("url", BARE_URLS),
    )
    for name, text in texts.items()
}
KITCHEN_SINK = "\n".join(TEXTS.values())

# RFC 2047 encoded words: text that a careless email library decodes while folding a header, so
# that the CR LF inside them reaches the wire (CPython before 3.11.10 / 3.12.5, CVE-2024-6923).
ENCODED_WORDS = {
    "name": "=?utf-8?q?Eve=0D=0ABcc=3A_victim=40evil=2Eexample?=",
    "surname": "=?utf-8?b?"
    + base64.b64encode(  # short: it must fit in a 200-character Subject
        b"\r\nReply-To: a@evil.example\r\nContent-Type: text/html\r\n\r\n"
        b"<a href=//evil.example>Open the lead</a>"
    ).decode()
    + "?=",
    "home": "=?utf-8?q?Rose=0ABcc=3A_victim=40evil=2Eexample?=",
    "category": "=?us-ascii?q?Visit=0D=0AX-Injected=3A_yes?=",
    "resident": "=?utf-8?q?=E2=80=AEevil=1B[2J?=",  # bidi override and ESC, encoded
}
ENCODED_WORD_FIELDS = {
    "name": "enquirerFirstName",
    "surname": "enquirerSurname",
    "resident": "enquirerFirstName",
}

# --- lead records --------------------------------------------------------------------------------

# Personal details that only a "full" output may show, and only with permission. Distinctive, so a
# search finds nothing by accident.
PII = {
    "enquirer first": "Zebedee",
    "enquirer surname": "Quillfeather",
    "resident first": "Marigold",
    "resident surname": "Thistlewood",
    "phone": "07700 900123",
    "email": "zebedee.quill@example.org",
    "content": "My mother Marigold needs residential care near Hampstead.",
}


def base_record(lead_id: int = 4242, category: int = 1, service: int = 100000) -> dict[str, Any]:
    """A clean, complete lead of any category, with the PII above."""
    return {
        "id": lead_id,
        "category": {"id": category, "name": CATEGORY_NAMES.get(category, ("Other",))[0]},
        "service": {"id": service, "name": " Rose Lodge", "postcode": "SW1A 1AA"},
        "to": "rose.lodge@rosecare.example",
        "from": PII["email"],
        "date": "2021-06-27T14:17:29.517Z",
        "content": PII["content"],
        "enquirerFirstName": PII["enquirer first"],
        "enquirerSurname": PII["enquirer surname"],
        "onBehalfOf": "['Family member']",
        "residentFirstName": PII["resident first"],
        "residentSurname": PII["resident surname"],
        "telephone": PII["phone"],
        "isAnonymised": False,
        "funding": "['Self Funding']",
        "timescales": "['2-4 weeks']",
        "categorySpecificData": {
            "instruction": "Please confirm directly with requester",
            "visitDate": "2021-07-01",
            "visitTime": "Afternoon",
            "emailPermission": True,
            "phonePermission": True,
            "budget_type": "Weekly Budget",
            "budget_min": 1000,
            "budget_max": 1500,
        },
    }


TOP_TEXT_FIELDS = (
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
SPECIFIC_TEXT_FIELDS = ("instruction", "visitTime", "budget_type")


def everywhere(
    text: str, lead_id: int, category: int = 1, service: int = UNKNOWN_HOME
) -> dict[str, Any]:
    """A lead with `text` in every field that holds text: names, addresses, phone, message,
    the Python-list fields, the category's and the home's names, visit time and instruction."""
    record = base_record(lead_id, category, service)
    for name in TOP_TEXT_FIELDS:
        record[name] = text
    record["category"]["name"] = text
    record["service"].update(name=text, postcode=text)
    for name in SPECIFIC_TEXT_FIELDS:
        record["categorySpecificData"][name] = text
    return record


def everywhere_as_list(
    text: str, lead_id: int, category: int = 1, service: int = UNKNOWN_HOME
) -> dict[str, Any]:
    """The same, with the list fields as Autumna writes them: a Python list literal."""
    record = everywhere(text, lead_id, category, service)
    for name in ("onBehalfOf", "funding", "timescales"):
        record[name] = repr([text, "Self Funding"])
    return record


@dataclass(frozen=True)
class Hostile:
    name: str
    record: dict[str, Any]

    @property
    def body(self) -> str:
        return json.dumps([self.record])


def _type_confusion() -> list[Hostile]:
    """Numbers where strings belong and the reverse, and values of the wrong shape."""
    out = []

    def add(name: str, lead_id: int, **changes: Any) -> None:
        record = base_record(lead_id, category=6, service=100000)
        record["categorySpecificData"].update(changes.pop("specific", {}))
        record.update(changes)
        out.append(Hostile(f"types: {name}", record))

    add("id as a string", 5001, id="5001")
    add("id padded", 5002, id=" 5002 ")
    add("telephone as a number", 5003, telephone=7700900123)
    add("names as numbers", 5004, enquirerFirstName=42, enquirerSurname=3.5, residentFirstName=True)
    add(
        "names as lists",
        5005,
        enquirerFirstName=["Eve", "<!channel>"],
        enquirerSurname=[["<script>"]],
        residentFirstName=[],
    )
    add(
        "names as objects",
        5006,
        enquirerFirstName={"first": "<!here>"},
        enquirerSurname={"a": {"b": "<img src=x onerror=alert(1)>"}},
    )
    add(
        "content as an object",
        5007,
        content={"html": "<script>alert(1)</script>", "n": [1, 2, None]},
    )
    add("service as a number", 5008, service=100000)
    add("service as a string", 5009, service={"id": "100000", "name": 7, "postcode": None})
    add("category as a number", 5010, category=4)
    add("category name as a number", 5011, category={"id": "6", "name": 6})
    add("date as a number", 5012, date=1624803449)
    add("specific data as a string", 5013, categorySpecificData="<!channel>")
    add(
        "permissions as strings",
        5014,
        specific={"emailPermission": "false", "phonePermission": "no"},
    )
    add(
        "budget as text",
        5015,
        specific={"budget_min": "£1,000", "budget_max": "lots", "budgetType": ["Weekly"]},
    )
    add("visit date as a number", 5016, specific={"visitDate": 20210701, "visitTime": 1400})
    add(
        "lists nested",
        5017,
        onBehalfOf=["Family member", ["<!channel>", ["deeper"]]],
        funding=3,
        timescales={"a": 1},
    )
    add(
        "nulls everywhere",
        5018,
        to=None,
        enquirerFirstName=None,
        enquirerSurname=None,
        residentFirstName=None,
        residentSurname=None,
        telephone=None,
        content=None,
        funding=None,
        timescales=None,
        onBehalfOf=None,
    )
    add("is anonymised yes", 5019, isAnonymised="yes")
    add("is anonymised 1", 5020, isAnonymised=1)
    add("booleans as text", 5021, telephone=False, content=True)
    add(
        "floats",
        5022,
        id=5022.0,
        telephone=1e308,
        specific={"budget_min": -0.0, "budget_max": 1e300},
    )
    add(
        "unknown fields",
        5023,
        extraField="<!channel>",
        currentCircumstances=["Hospital"],
        specific={"careType": "<script>"},
    )
    add("year one", 5024, date="0001-01-01T00:00:00Z")
    add("year 9999", 5025, date="9999-12-31T23:59:59Z")
    return out


def _special() -> list[Hostile]:
    out = []
    crlf = base_record(6001, category=6, service=200000)
    crlf.update(
        enquirerFirstName="Eve\r\nBcc: victim@evil.example",
        enquirerSurname="\r\n\r\n<script>alert(1)</script>",
        residentFirstName="Mallory\nCc: x@evil.example",
        **{"from": "a@b.example\r\nBcc: x@evil.example"},
    )
    out.append(Hostile("header injection in names and from", crlf))
    for i, sender in enumerate(
        [
            "a@b.example\r\nBcc: x@evil.example",
            "a@b.example\nBcc: x@evil.example",
            "a@b.example\x00Bcc: x@evil.example",
            "a@b.example, x@evil.example",
            '"Autumna" <support@evil.example>',
            "a@b.example\rTo: x@evil.example",
            "a@b.example;x@evil.example",
            "=?utf-8?q?a=0D=0ABcc:x@evil.example?=@b.example",
            "x@evil.example (comment)\r\n",
            "a@[127.0.0.1]",
        ]
    ):
        record = base_record(6010 + i, category=6, service=100000)
        record["from"] = sender
        out.append(Hostile(f"reply-to injection {i}: {sender!r}", record))
    urgent = everywhere(KITCHEN_SINK, 6030, category=4, service=100000)
    out.append(Hostile("kitchen sink, urgent, known home", urgent))
    big = base_record(6040, category=1, service=UNKNOWN_HOME)
    big["content"] = ("<!channel> <script>alert(1)</script> [x](https://evil.example) " * 20_000)[
        :1_000_000
    ]
    out.append(Hostile("1 MB of content", big))
    wide = everywhere("<!here> &<>" * 2_000, 6041, category=2, service=UNKNOWN_HOME)
    out.append(Hostile("20 KB in every field", wide))
    lines = base_record(6042, category=3, service=100000)
    lines["content"] = "\n".join(f"- line {i} <!channel>" for i in range(5000))
    out.append(Hostile("5000 lines", lines))
    surrogates = base_record(6043, category=1, service=100000)
    surrogates.update(
        content="lone \ud800 high and \udfff low", enquirerFirstName="\udc80", telephone="\ud83d"
    )
    out.append(Hostile("lone surrogates", surrogates))
    for i, (where, encoded) in enumerate(ENCODED_WORDS.items()):
        record = base_record(
            6050 + i,
            category=99 if where == "category" else 1,
            service=UNKNOWN_HOME if where in ("home", "category") else 100000,
        )
        if where == "home":
            record["service"]["name"] = encoded
        elif where == "category":
            record["category"]["name"] = encoded
        else:
            record[ENCODED_WORD_FIELDS[where]] = encoded
        out.append(Hostile(f"encoded word in the {where}", record))
    anonymised = base_record(6044, category=2, service=100000)
    anonymised["isAnonymised"] = True
    out.append(Hostile("anonymised with details present", anonymised))
    return out


def _build_corpus() -> list[Hostile]:
    corpus = []
    services = (100000, 200000, UNKNOWN_HOME)
    for i, (name, text) in enumerate(TEXTS.items()):
        builder = everywhere_as_list if i % 2 else everywhere
        corpus.append(
            Hostile(name, builder(text, 1000 + i, category=i % 8 + 1, service=services[i % 3]))
        )
    for category in (1, 2, 6, 7, 8):
        corpus.append(
            Hostile(
                f"kitchen sink, category {category}",
                everywhere(KITCHEN_SINK, 2000 + category, category=category),
            )
        )
    corpus.append(
        Hostile("kitchen sink, unknown category", everywhere(KITCHEN_SINK, 2009, category=77))
    )
    return corpus + _special() + _type_confusion()


CORPUS: list[Hostile] = _build_corpus()
CORPUS_BY_NAME = {h.name: h for h in CORPUS}
assert len(CORPUS_BY_NAME) == len(CORPUS), "corpus names must be unique"
assert len({int(float(str(h.record["id"]))) for h in CORPUS}) == len(CORPUS), "ids must differ"


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def good_record(lead_id: int) -> str:
    return json.dumps(base_record(lead_id, category=1, service=100000))


# HTTP bodies that are not clean UTF-8 JSON. Each must give leads, unreadable records or a
# PollError: never another exception.
BAD_BODIES: dict[str, bytes] = {
    "invalid utf-8 in a string": b'[{"id": 1, "category": 1, "content": "caf\xe9 \xff\xfe '
    b'\xc0\xbc \x80"}]',
    "utf-8 encoded surrogate": b'[{"id": 1, "category": 1, "content": "\xed\xa0\x80x"}]',
    "json lone surrogates": b'[{"id": 1, "category": 1, "content": "\\ud800 and \\udfff", '
    b'"enquirerFirstName": "\\udc00", "telephone": "\\ud83d"}]',
    "utf-8 bom": b'\xef\xbb\xbf[{"id": 1, "category": 1}]',
    "utf-16": '[{"id": 1, "category": 1}]'.encode("utf-16"),
    "latin-1": '[{"id": 1, "category": 1, "content": "café"}]'.encode("latin-1"),
    "raw control characters": b'[{"id": 1, "category": 1, "content": "a\x00b\x1b[2Jc\r\nd"}]',
    "nested 100000 arrays": nested(100_000).encode(),
    "nested 100000 objects": (b'{"a":' * 100_000) + b"1" + (b"}" * 100_000),
    "nested 1000 in a lead": (
        '[{"id": 1, "category": 1, "content": ' + nested(1000) + "}]"
    ).encode(),
    "truncated": b'[{"id": 1, "category": 1, "content": "abc',
    "html error page": b"<html><body><h1>502 Bad Gateway</h1>\x1b[31m</body></html>",
    "error with escapes": b'{"message": "\\u001b[2J\\u001b]8;;https://evil.example\\u0007x'
    b'\\u001b]8;;\\u0007 \\u202e down"}',
    "top-level string": b'"<!channel>"',
    "top-level number": b"42",
    "null": b"null",
    "empty": b"",
    "whitespace": b" \r\n\t ",
    "nul bytes": b"\x00" * 64,
    "huge number": b"[" + b"9" * 5000 + b"]",
    "Infinity and NaN": b'[{"id": Infinity, "category": NaN}, {"id": 2, "category": 1}]',
}

# Single records that are wrong in one way. Between two good leads, each must never stop the
# good ones from being read, stored and delivered.
POISON_RECORDS: dict[str, str] = {
    "a string": '"just a string"',
    "a number": "42",
    "null": "null",
    "an empty object": "{}",
    "an empty list": "[]",
    "no category": '{"id": 9001}',
    "id Infinity": '{"id": Infinity, "category": 1}',
    "id superscript two": '{"id": "²", "category": 1}',
    "id arabic-indic digits": '{"id": "٣٤", "category": 1}',
    "category id superscript": '{"id": 9002, "category": {"id": "³"}}',
    "service id superscript": '{"id": 9003, "category": 1, "service": {"id": "¹"}}',
    "id with 5000 digits": '{"id": ' + "9" * 5000 + ', "category": 1}',
    "id above 2**63": '{"id": 100000000000000000000000000000, "category": 1}',
    "category id above 2**63": '{"id": 9004, "category": {"id": 100000000000000000000000}}',
    "service id above 2**63": '{"id": 9005, "category": 1, '
    '"service": {"id": 100000000000000000000000}}',
    "budget of 400 digits": '{"id": 9006, "category": 6, "categorySpecificData": '
    '{"budget_min": 1' + "0" * 400 + "}}",
    "budget NaN and Infinity": '{"id": 9007, "category": 6, "categorySpecificData": '
    '{"budget_min": NaN, "budget_max": Infinity}}',
    "date before year 1 in UTC": '{"id": 9008, "category": 1, "date": "0001-01-01T00:00:00+01:00"}',
    "date after year 9999 in UTC": '{"id": 9009, "category": 1, '
    '"date": "9999-12-31T23:59:59-01:00"}',
    "date in year 1": '{"id": 9010, "category": 1, "date": "0001-01-01T00:00:00Z"}',
    "a field nested 70 deep": '{"id": 9011, "category": 1, "x": ' + nested(70) + "}",
    "a field nested 100000 deep": '{"id": 9012, "category": 1, "x": ' + nested(100_000) + "}",
}
GOOD_AROUND_POISON = (8101, 8102)  # ids of the good leads (category 1) around each poison


def poisoned_body(poison: str) -> str:
    first, second = GOOD_AROUND_POISON
    return f"[{good_record(first)},\n{poison},\n{good_record(second)}]"


# --- rendering every output of a lead -------------------------------------------------------


@dataclass
class Output:
    """One rendered message and what it may contain."""

    target: Target
    facts: Facts
    payload: Any  # Slack/Teams dict; for email the raw bytes as SMTP would carry them
    mentions: frozenset[str] = frozenset()  # Slack mentions leadbot itself may add

    @property
    def channel(self) -> Channel:
        return self.target.channel


def routed_facts(lead: Lead, config: Config) -> Facts:
    routing = route(lead, config)
    notes = tuple(routing.notes) + tuple(f"Autumna sent an odd value: {p}" for p in lead.problems)
    return Facts(routing.urgent, routing.unrouted, notes)


def allowed_mentions(lead: Lead, config: Config, facts: Facts, channel: Channel) -> frozenset[str]:
    """The one mention leadbot adds: the home's manager, on Slack, for an urgent lead."""
    home = config.homes.get(lead.service.id) if lead.service.id is not None else None
    manager = home.attributes.get("manager_slack") if home else None
    if facts.urgent and channel is Channel.SLACK and isinstance(manager, str):
        return frozenset({f"<@{manager}>"})
    return frozenset()


def email_bytes(message: Message, sender: str = SENDER) -> bytes:
    """The email as smtplib would put it on the wire (CRLF line ends)."""
    msg = email_channel.stamp(message, sender)
    out = io.BytesIO()
    BytesGenerator(out, policy=msg.policy).flatten(msg, linesep="\r\n")
    return out.getvalue()


def render_output(
    renderer: Renderer, lead: Lead, target: Target, facts: Facts, config: Config
) -> Output:
    message = renderer.render(lead, target, facts)
    payload = email_bytes(message) if target.channel is Channel.EMAIL else message.payload
    return Output(target, facts, payload, allowed_mentions(lead, config, facts, target.channel))


def every_output(renderer: Renderer, lead: Lead, config: Config) -> Iterator[Output]:
    """The lead rendered for each channel at both privacy levels, as routed (urgent or not), and
    for each target its routing picked."""
    facts = routed_facts(lead, config)
    targets = [
        Target(channel, ADDRESSES[channel], "hostile", privacy)
        for channel in Channel
        for privacy in PRIVACY_LEVELS
    ]
    targets += route(lead, config).targets
    for target in targets:
        yield render_output(renderer, lead, target, facts, config)


# --- what must never appear ----------------------------------------------------------------

CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 (but tab, newline), DEL, C1
BIDI_OVERRIDES = re.compile("[\u202a-\u202e\u2066-\u2069]")
LIVE_URL = re.compile(
    r"(?i)\b(?:https?|ftp|file|javascript|vbscript|data):(?![\u2060\s…]|$)|"
    r"\bwww\.(?!\u2060)"
)
SLACK_LIVE = ("<!", "<@", "<#", "<http", "<mailto", "<tel")
# The only links leadbot makes from what an enquirer gave (bot/view.py, contact_view): a phone
# number in E.164 and exactly one plain address; in Slack the address is the link's label too.
CONTACT_HREF = re.compile(
    r"tel:\+[1-9][0-9]{6,14}|mailto:[A-Za-z0-9_%+'-]+(?:\.[A-Za-z0-9_%+'-]+)*@[A-Za-z0-9.-]+"
)
SLACK_CONTACT_LINK = re.compile(r"<(mailto:([^|<>]*))\|([^<>]*)>")


def _unless_contact_link(link: re.Match[str]) -> str:
    """Nothing for a link leadbot made, labelled with its address (word joiners aside)."""
    ours = CONTACT_HREF.fullmatch(link[1]) and link[3].replace("\u2060", "") == link[2]
    return "" if ours else link[0]


def text_problems(where: str, text: str) -> list[str]:
    """What no text meant for people may contain: controls, bidi overrides, a live URL."""
    found = []
    for pattern, what in (
        (CONTROLS, "a control character"),
        (BIDI_OVERRIDES, "a bidi override or isolate"),
        (LIVE_URL, "a live URL"),
    ):
        match = pattern.search(text)
        if match:
            found.append(f"{where}: {what} {match[0]!r} in {_around(text, match.start())}")
    return found


def _around(text: str, at: int, width: int = 40) -> str:
    return repr(text[max(0, at - width) : at + width])


def terminal_problems(text: str) -> list[str]:
    """A terminal must get no escape sequence, bidi control, NUL or other C0/C1 control."""
    found = []
    for pattern, what in ((CONTROLS, "control character"), (BIDI_OVERRIDES, "bidi control")):
        for match in list(pattern.finditer(text))[:3]:
            found.append(f"{what} {match[0]!r} in {_around(text, match.start())}")
    return found


def _fail_list(check: Any, *args: Any, **kwargs: Any) -> list[str]:
    try:
        check(*args, **kwargs)
    except AssertionError as error:
        return [str(error)[:500]]
    return []


def slack_problems(payload: dict[str, Any], mentions: frozenset[str] = frozenset()) -> list[str]:
    found = _fail_list(validate_slack_message, payload)
    blocks = payload.get("blocks", [])
    if len(blocks) > 50:
        found.append(f"{len(blocks)} blocks")
    mrkdwn: list[tuple[str, str]] = [("text", payload.get("text", ""))]
    for i, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "header":
            text = block["text"]["text"]
            found += text_problems(f"blocks[{i}] header", text)
            if len(text) > 150:
                found.append(f"blocks[{i}]: header of {len(text)} characters")
        for j, obj in enumerate(_text_objects(block)):
            if obj.get("type") == "mrkdwn":
                if obj.get("verbatim") is not True:
                    found.append(f"blocks[{i}] text object {j}: mrkdwn without verbatim: true")
                mrkdwn.append((f"blocks[{i}] mrkdwn {j}", obj["text"]))
                if len(obj["text"]) > 3000:
                    found.append(f"blocks[{i}]: mrkdwn of {len(obj['text'])} characters")
    for where, text in mrkdwn:
        found += text_problems(where, text)
        bare = SLACK_CONTACT_LINK.sub(_unless_contact_link, text)
        for mention in mentions:
            bare = bare.replace(mention, "")
        for live in SLACK_LIVE:
            if live in bare.lower():
                found.append(
                    f"{where}: live Slack syntax {live!r} in "
                    f"{_around(bare, bare.lower().index(live))}"
                )
        for pattern, what in ((r"[<>]", "< or >"), (r"&(?!amp;|lt;|gt;)", "&")):
            match = re.search(pattern, bare)
            if match:
                found.append(f"{where}: unescaped {what} in {_around(bare, match.start())}")
    return found


def _text_objects(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if value.get("type") in ("mrkdwn", "plain_text") and "text" in value:
            yield value
        for item in value.values():
            yield from _text_objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _text_objects(item)


MARKDOWN_IT = MarkdownIt("commonmark")


class _Tags(HTMLParser):
    """Every (tag, attribute, value) triple of an HTML text, and its visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.triples: set[tuple[str, str, str]] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.triples.add((tag, "", ""))
        self.triples.update((tag, name, value or "") for name, value in attrs)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_comment(self, data: str) -> None:
        self.triples.add(("!--", "", data))

    def handle_pi(self, data: str) -> None:
        self.triples.add(("?", "", data))


def html_tags(markup: str) -> tuple[set[tuple[str, str, str]], str]:
    parser = _Tags()
    parser.feed(markup)
    parser.close()
    return parser.triples, "".join(parser.text)


def teams_text_blocks(payload: dict[str, Any]) -> list[str]:
    return [
        block["text"]
        for attachment in payload.get("attachments", [])
        for block in attachment["content"].get("body", [])
        if block.get("type") == "TextBlock"
    ]


def teams_problems(payload: dict[str, Any], baseline: set[tuple[str, str, str]]) -> list[str]:
    found = _fail_list(validate_teams_message, payload, use_node=False)
    size = len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())
    if size >= 28 * 1024:
        found.append(f"{size} bytes of JSON; Teams takes under 28 KB")
    for i, text in enumerate(teams_text_blocks(payload)):
        found += text_problems(f"TextBlock {i}", text)
        rendered = MARKDOWN_IT.render(text)
        for bad in ("<a ", "<img", "<script"):
            if bad in rendered:
                found.append(
                    f"TextBlock {i}: Markdown makes {bad!r}: "
                    f"{_around(rendered, rendered.index(bad))}"
                )
        triples, _ = html_tags(rendered)
        # An indented line becomes a code block in CommonMark; Adaptive Cards render no code
        # blocks, and a code block can neither link nor spoof, so it is let through.
        extra = {t for t in triples - baseline if t[0] not in ("pre", "code")}
        if extra:
            found.append(
                f"TextBlock {i}: Markdown makes elements the template does not: {sorted(extra)[:5]}"
            )
    return found


EMAIL_HEADERS = {
    "subject",
    "from",
    "to",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "reply-to",
    "auto-submitted",
    "x-auto-response-suppress",
}
AUTOMATIC = {"auto-submitted": "auto-generated", "x-auto-response-suppress": "All"}
PRIORITY_HEADERS = {"x-priority", "importance", "priority"}
HEADER_LINE = re.compile(rb"^([!-9;-~]+):")


def email_problems(
    raw: bytes,
    target: Target,
    urgent: bool,
    baseline: set[tuple[str, str, str]],
    reply_to: str | None = None,
) -> list[str]:
    """`raw` as it went over SMTP. `reply_to`: the one address Reply-To may name, if any."""
    found = []
    head, _, _ = raw.partition(b"\r\n\r\n")
    allowed = EMAIL_HEADERS | (PRIORITY_HEADERS if urgent else set())
    for line in head.split(b"\r\n"):
        if b"\r" in line or b"\n" in line or b"\x00" in line:
            found.append(f"header line with a bare CR, LF or NUL: {line[:80]!r}")
        if line[:1] in (b" ", b"\t"):
            continue
        match = HEADER_LINE.match(line)
        if match is None:
            found.append(f"header section has a line that is no header: {line[:80]!r}")
        elif match[1].decode().lower() not in allowed:
            found.append(f"unexpected header line: {line[:80]!r}")
    message = parse_email(raw)
    for name, value in AUTOMATIC.items():
        if message.get_all(name) != [value]:
            found.append(f"{name} is {message.get_all(name)!r}, not exactly [{value!r}]")
    names = {name.lower() for name in message}
    if urgent and not names >= PRIORITY_HEADERS:
        found.append(f"urgent, but the priority headers are missing: {sorted(names)}")
    to = message.get_all("To") or []
    if len(to) != 1 or [a.addr_spec for a in to[0].addresses] != [target.address]:
        found.append(f"To is {to!r}, not exactly {target.address}")
    for name, value in message.items():
        if any(c in str(value) for c in "\r\n\x00"):
            found.append(f"{name} header value holds CR, LF or NUL: {str(value)[:80]!r}")
        found += text_problems(f"{name} header", str(value))
    reply = message.get_all("Reply-To") or []
    if reply:
        addresses = [a.addr_spec for h in reply for a in h.addresses]
        if len(reply) != 1 or addresses != [reply_to]:
            found.append(f"Reply-To names {addresses!r}, expected only {reply_to!r}")
    try:
        plain, markup = assert_multipart_alternative(message)
    except AssertionError as error:
        return [*found, str(error)[:300]]
    plain, markup = plain.replace("\r\n", "\n"), markup.replace("\r\n", "\n")
    found += text_problems("text part", plain)
    tags = "".join(re.findall(r"<[^>]*>", markup)).lower()  # text has no "<": it is escaped
    for bad in ("<script", "onerror=", 'href="https://evil', 'src="https://evil'):
        if bad in tags:
            found.append(f"HTML part has a tag with {bad!r}: {_around(tags, tags.index(bad))}")
    triples, visible = html_tags(markup)
    extra = {
        t for t in triples - baseline if t[:2] != ("a", "href") or not CONTACT_HREF.fullmatch(t[2])
    }
    if extra:
        found.append(
            f"HTML part has elements or attributes the template does not: {sorted(extra)[:5]}"
        )
    found += text_problems("HTML text", visible)
    return found


def output_problems(output: Output, lead: Lead, baselines: Baselines) -> list[str]:
    if output.channel is Channel.SLACK:
        return slack_problems(output.payload, output.mentions)
    if output.channel is Channel.TEAMS:
        return teams_problems(output.payload, baselines.markdown)
    reply_to = expected_reply_to(lead, output.target)
    return email_problems(
        output.payload, output.target, output.facts.urgent, baselines.html, reply_to
    )


def expected_reply_to(lead: Lead, target: Target) -> str | None:
    """Reply-To may only name the enquirer's own address, when the output may show it."""
    personal = not lead.anonymised and target.privacy != "minimal"
    return contact_view(lead, personal)["email"] or None


def visible_text(output: Output) -> str:
    """Everything a reader of the output could see, decoded."""
    if output.channel is not Channel.EMAIL:
        return json.dumps(output.payload, ensure_ascii=False)
    message = parse_email(output.payload)
    parts = [f"{name}: {value}" for name, value in message.items()]
    for part in message.walk():
        if part.get_content_maintype() == "text":
            parts.append(str(part.get_content()))
    return html.unescape("\n".join(parts))


# --- what the templates themselves put there ----------------------------------------------------


@dataclass(frozen=True)
class Baselines:
    html: set[tuple[str, str, str]]  # email HTML (tag, attribute, value) triples
    markdown: set[tuple[str, str, str]]  # what Teams TextBlocks render to


@functools.cache
def baselines(config_path: Path = ROOT_RULES) -> Baselines:
    """Render a benign lead every way the templates can show it, and record the HTML elements
    and attributes that appear: anything more in a hostile output came from the lead."""
    from bot.loader import load_config

    config = load_config(config_path)
    renderer = Renderer(config)
    html_triples: set[tuple[str, str, str]] = set()
    md_triples: set[tuple[str, str, str]] = set()
    for cid in [*CATEGORY_NAMES, 99]:
        for anonymised in (False, True):
            lead = replace(SAMPLE, category=replace(SAMPLE.category, id=cid), anonymised=anonymised)
            for facts in (Facts(), Facts(True, True, ("a note",))):
                for privacy in PRIVACY_LEVELS:
                    for channel in (Channel.EMAIL, Channel.TEAMS):
                        target = Target(channel, ADDRESSES[channel], "baseline", privacy)
                        message = renderer.render(lead, target, facts)
                        if channel is Channel.EMAIL:
                            parsed = email.message_from_bytes(
                                email_bytes(message), policy=email.policy.default
                            )
                            body = parsed.get_body(("html",))
                            html_triples |= html_tags(body.get_content())[0]
                        else:
                            for text in teams_text_blocks(message.payload):
                                md_triples |= html_tags(MARKDOWN_IT.render(text))[0]
    return Baselines(html_triples, md_triples)


# --- a leadbot installation on loopback ---------------------------------------------------------

E2E_RULES = """\
[group]
name = "Rose Care Homes"
timezone = "Europe/London"

[polling]
interval = "1m"
overlap = "15m"
lookback = "30d"
history = "30d"
alert_after = "{alert_after}"

[retries]
first = "1s"
cap = "1s"
give_up = "1h"

[privacy]
retention = "{retention}"

[email]
host = "smtp.rosecare.example"
port = 587
sender = "{sender}"
tls = "starttls"
ca_file = "{ca_file}"

[routing]
fallback = "sales-inbox"
ops = "ops-teams"

[homes.100000]
name = "Rose Lodge"
region = "London"
slack = "#rose-lodge"
manager_slack = "U024BE7LH"
manager_email = "amira.khan@rosecare.example"

[homes.200000]
name = "Willow House"
region = "North West"
slack = "#willow-house"
manager_slack = "U024BE7LJ"

[destinations]
fallback-slack = {{ slack = "#leads-fallback" }}
sales-inbox = {{ email = ["sales@rosecare.example"] }}
group-teams = {{ teams = "${{TEAMS_GROUP_WEBHOOK}}" }}
ops-teams = {{ teams = "${{TEAMS_OPS_WEBHOOK}}", privacy = "minimal" }}
{destinations}
[[rules]]
name = "Call-back requests are urgent"
when = {{ category = 4 }}
notify = ["home.slack", "home.manager_slack"]
urgent = true

[[rules]]
name = "Visits go to the group's Teams"
when = {{ category = [2, 3] }}
notify = ["group-teams"]

[[rules]]
name = "Every lead reaches the sales inbox"
notify = ["sales-inbox"]
{rules}"""
TEAMS_VARS = ("TEAMS_GROUP_WEBHOOK", "TEAMS_OPS_WEBHOOK")


@dataclass
class Installation:
    """One leadbot folder and the loopback servers it talks to; leadbot runs as a subprocess."""

    folder: Path
    autumna: AutumnaStandin
    slack: SlackStandin
    teams: TeamsStandin
    smtp: SmtpStandin
    config: Path
    env: dict[str, str]
    outputs: list[str] = field(default_factory=list)  # every stdout and stderr so far

    @property
    def db(self) -> Path:
        return self.folder / "leadbot.db"

    def command(self, *args: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bot",
            "--config",
            str(self.config),
            "--db",
            str(self.db),
            *args,
        ]

    def run(
        self, *args: str, timeout: float = 60, **env: str | None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.command(*args),
            env=self.environment(**env),
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            errors="surrogateescape",
        )
        self.outputs += [done.stdout, done.stderr]
        return done

    def environment(self, **overrides: str | None) -> dict[str, str]:
        env = dict(self.env)
        for name, value in overrides.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def start(self, *args: str, **env: str | None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            env=self.environment(**env),
            cwd=self.folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="surrogateescape",
        )

    def files(self) -> dict[Path, bytes]:
        """Every file in the folder (the database, its -wal and -shm, the lock, anything else)."""
        return {p: p.read_bytes() for p in sorted(self.folder.rglob("*")) if p.is_file()}


@contextmanager
def installation(
    folder: Path,
    documents: Iterable[str] = (),
    *,
    api_key: str,
    slack_token: str = "xoxb-hostile-test-token",
    smtp_user: str = "leadbot",
    smtp_password: str = "smtp-hostile-test-password",
    retention: str = "90d",
    alert_after: str = "15m",
    destinations: str = "",
    rules: str = "",
    teams_vars: Iterable[str] = (),
) -> Iterator[Installation]:
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        autumna = stack.enter_context(AutumnaStandin(list(documents), api_key=api_key))
        slack = stack.enter_context(SlackStandin(token=slack_token))
        teams = stack.enter_context(TeamsStandin())
        smtp = stack.enter_context(
            SmtpStandin(tls="starttls", username=smtp_user, password=smtp_password)
        )
        config = folder / "rules.toml"
        config.write_text(
            E2E_RULES.format(
                retention=retention,
                alert_after=alert_after,
                sender=SENDER,
                ca_file=smtp.ca_file,
                destinations=destinations,
                rules=rules,
            ),
            encoding="utf-8",
        )
        webhooks = {
            var: teams.url(var.removeprefix("TEAMS_").removesuffix("_WEBHOOK").lower())
            for var in (*TEAMS_VARS, *teams_vars)
        }
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(folder),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "LEADBOT_WEB_LISTEN": "",  # no console here
            "AUTUMNA_API_URL": autumna.url,
            "AUTUMNA_API_KEY": api_key,
            "SLACK_BOT_TOKEN": slack_token,
            "SLACK_API_URL": slack.base_url,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp.port),
            "SMTP_USERNAME": smtp_user,
            "SMTP_PASSWORD": smtp_password,
            **webhooks,
        }
        yield Installation(folder, autumna, slack, teams, smtp, config, env)
