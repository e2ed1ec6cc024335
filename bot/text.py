"""Text typed by the public, made safe to carry: control characters, terminal escapes and bidi
overrides removed; single-line fields folded to one line; Autumna's list-in-a-string read."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

_QUOTED = re.compile(r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)\"""")
_COMMA_VALUES = ("Part Buy, Part Rent",)  # one documented value that contains a comma
# C0/C1 controls (but tab and newline), lone surrogates, and bidi overrides that can disguise text
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]"
)
_SPACES = re.compile(r"\s+")
# Terminal escape sequences as a whole (CSI "ESC [ 31 m", OSC "ESC ] 8;; url BEL"), so no
# "[31m" is left behind when the ESC itself is removed.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]|"
    r"\x9b[0-?]*[ -/]*[@-~]"
)


def clean_text(value: Any) -> str:
    """Multi-line free text from the public: controls removed, line ends normalised, trimmed."""
    if value is None:
        return ""
    if not isinstance(value, str):
        value = value if isinstance(value, int | float) else json.dumps(value, default=str)
        value = str(value)
    value = value.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n")
    value = value.replace("\u2029", "\n")
    return _CONTROL.sub("", _ANSI.sub("", value)).strip()


def clean_line(value: Any) -> str:
    """Single-line text (names, addresses, phone numbers): any run of white space is one space,
    so no CR or LF can ever reach an email header."""
    return _SPACES.sub(" ", clean_text(value)).strip()


def parse_list_text(value: Any) -> tuple[str, ...]:
    """Autumna sends lists as Python list literals in a string: "['Family member']". Also accepts
    real lists and plain strings. `Part Buy, Part Rent` stays one value."""
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(item for item in (clean_line(v) for v in _flatten(value)) if item)
    text = clean_line(value).translate(str.maketrans("‘’“”", "''\"\""))
    if len(text) > 1 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()  # the list literal arrived quoted once more
    if not (text.startswith("[") and text.endswith("]")):
        return (text,) if text else ()
    inner = text[1:-1].strip()
    quoted = _QUOTED.findall(inner)
    if quoted:
        items = [(a or b).replace("\\'", "'").replace('\\"', '"') for a, b in quoted]
    else:
        for i, joined in enumerate(_COMMA_VALUES):
            inner = inner.replace(joined, f"\0{i}\0")
        items = [
            re.sub(r"\0(\d)\0", lambda m: _COMMA_VALUES[int(m[1])], p) for p in inner.split(",")
        ]
    return tuple(item for item in (clean_line(i) for i in items) if item)


def _flatten(values: Iterable[Any]) -> Iterable[Any]:
    for v in values:
        if isinstance(v, list):
            yield from _flatten(v)
        else:
            yield v
