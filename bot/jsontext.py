"""Reading JSON as Autumna writes it: typographic quotes around values, a byte-order mark, numbers
too long for Python's int limit, and (from anyone) nesting too deep to decode. The lead parser
(parse.py) is the only user.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64  # deeper than this is not a lead


class NotJSON(ValueError):
    pass


class TooDeep(ValueError):
    pass


def loads(text: str) -> Any:
    """Decode, repairing typographic quotes if need be. Raises NotJSON or TooDeep."""
    text = text.lstrip("\ufeff")
    for candidate in (text, None):
        try:
            return json.loads(
                repair_quotes(text) if candidate is None else candidate,
                parse_int=_int_or_text,
                parse_constant=_no_constant,
            )
        except RecursionError:
            raise TooDeep from None
        except ValueError:
            continue
    raise NotJSON


def _int_or_text(digits: str) -> int | str:
    # Beyond 18 digits it is no id we know, and past 4300 Python refuses it outright.
    return int(digits) if len(digits.lstrip("-")) <= 18 else digits


def _no_constant(name: str) -> None:
    return None  # NaN and Infinity are not JSON; read them as null


def depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((depth(v, level + 1) for v in value), default=level + 1)
    return level


# A JSON string (kept as it is), or a value in typographic quotes (made a JSON string).
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|“((?:[^”\\]|\\.)*)”', re.DOTALL)


def repair_quotes(text: str) -> str:
    """Two published examples wrap a string in typographic quotes (`“['Family member']”`),
    which is not JSON. Outside JSON strings, “…” becomes a JSON string; inside them, curly quotes
    are content and stay as they are."""
    if "“" not in text:
        return text
    return _STRINGS.sub(_repair, text)


def _repair(match: re.Match[str]) -> str:
    curly = match[1]
    if curly is None:
        return match[0]
    return '"' + re.sub(r'(?<!\\)"', '\\"', curly) + '"'


_DATA_KEY = re.compile(r'\s*"data"\s*:\s*')


def record_texts(text: str) -> list[str] | None:
    """The raw text of each record in a bare array or in {"data": [...]}, found without decoding
    them, so one record too deep to decode can be set aside while the others are read. None if
    the body has neither shape."""
    text = repair_quotes(text.lstrip("\ufeff")).strip()
    if text.startswith("["):
        return [text[a:b] for a, b in _items(text, 0)]
    if text.startswith("{"):
        for a, _ in _items(text, 0):
            member = _DATA_KEY.match(text, a)
            if member and text.startswith("[", member.end()):
                return [text[x:y] for x, y in _items(text, member.end())]
    return None


def _items(text: str, start: int) -> list[tuple[int, int]]:
    """Spans of the items directly inside the array or object opening at text[start]."""
    spans, level, in_string, escaped, begin = [], 0, False, False, start + 1
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            level += 1
        elif ch in "]}":
            level -= 1
            if level == 0:
                spans.append((begin, i))
                break
        elif ch == "," and level == 1:
            spans.append((begin, i))
            begin = i + 1
    return [(a, b) for a, b in spans if text[a:b].strip()]
