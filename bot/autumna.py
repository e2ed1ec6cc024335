"""The Autumna leads API: one request per account per cycle, and every quirk of its data handled
here, once (see README "Autumna's data"). The rest of leadbot sees clean `Lead`s.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import httpx

from . import jsontext
from .models import CATEGORY_NAMES, Category, Lead, Service, Unreadable

log = logging.getLogger(__name__)


class PollError(Exception):
    """The poll failed as a whole. The message is safe to log: it never holds the key or URL."""


class LeadError(ValueError):
    """One record could not be understood as a lead."""


@dataclass(frozen=True, slots=True)
class Batch:
    leads: list[Lead]
    unreadable: list[Unreadable]
    nbytes: int


class AutumnaClient:
    """Fetches one account's leads for a time window. The httpx client is built once and shared."""

    def __init__(self, base_url: str, http: httpx.Client) -> None:
        self.base_url = base_url
        self.http = http

    def fetch(self, account: str, api_key: str, since: datetime, until: datetime) -> Batch:
        params = {
            "api_key": api_key,
            "dateTimeFrom": _utc_param(since),
            "dateTimeTo": _utc_param(until),
        }
        try:
            response = self.http.get(
                self.base_url, params=params, headers={"Accept": "application/json"}
            )
        except httpx.TimeoutException:
            raise PollError("Autumna did not answer in time") from None
        except httpx.TransportError as exc:
            raise PollError(f"could not reach Autumna ({type(exc).__name__})") from None
        if response.status_code != 200:
            hint = " (Autumna answers a wrong API key the same way as an outage)" * (
                response.status_code == 500
            )
            raise PollError(f"Autumna answered HTTP {response.status_code}{hint}")
        try:
            return parse_body(response.text, account)
        except PollError as exc:  # Autumna's own error text might quote the key back
            raise PollError(_without(str(exc), params["api_key"])) from None


def _without(text: str, secret: str) -> str:
    return text.replace(secret, "[secret]") if secret else text


def _utc_param(moment: datetime) -> str:
    # Autumna reads these as UTC and wants no zone suffix, also during British Summer Time.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


# --- the body --------------------------------------------------------------------------------


def parse_body(text: str, account: str) -> Batch:
    """Read a whole response body. Raises PollError if it is not JSON at all (retry next cycle);
    a record that is JSON but not a lead comes back in `unreadable`, never dropped."""
    if not text.strip():
        raise PollError("Autumna answered with an empty body")
    try:
        records: list[Any] = _records_of(jsontext.loads(text))
    except jsontext.NotJSON:
        raise PollError(
            f"Autumna answered with something that is not JSON "
            f"({len(text)} characters, starting {_peek(text)})"
        ) from None
    except jsontext.TooDeep:
        # Some record is nested too deeply to decode: read the others one by one.
        texts = jsontext.record_texts(text)
        if texts is None:
            raise PollError("Autumna answered JSON nested too deeply to be leads") from None
        records = [_one(raw) for raw in texts]
    leads: list[Lead] = []
    unreadable: list[Unreadable] = []
    for record in records:
        try:
            if isinstance(record, _Raw):
                raise LeadError(record.problem)
            if jsontext.depth(record) > jsontext.MAX_DEPTH:
                raise LeadError("the record is nested too deeply to be a lead")
            leads.append(parse_lead(record, account))
        except LeadError as exc:
            unreadable.append(make_unreadable(record, account, str(exc)))
    return Batch(leads, unreadable, len(text.encode("utf-8", "surrogatepass")))


@dataclass(frozen=True, slots=True)
class _Raw:
    """A record we could not even decode, kept as text."""

    text: str
    problem: str


def _one(raw: str) -> Any:
    try:
        return jsontext.loads(raw)
    except jsontext.TooDeep:
        return _Raw(raw[:65536], "the record is nested too deeply to be a lead")
    except jsontext.NotJSON:
        return _Raw(raw[:65536], "the record is not JSON")


def _records_of(data: Any) -> list[Any]:
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        raise PollError(f"Autumna answered JSON that holds no leads ({type(data).__name__})")
    errors = data.get("error") or data.get("errors")
    if isinstance(data.get("data"), list):
        if errors and not data["data"]:
            raise PollError(f"Autumna answered with an error: {clean_line(str(errors))[:200]}")
        if errors:
            log.warning(
                "Autumna sent leads with an error alongside: %s", clean_line(str(errors))[:200]
            )
        return list(data["data"])
    if "id" in data or "category" in data:
        return [data]
    message = data.get("message") or data.get("error")
    if message:
        raise PollError(f"Autumna answered with an error: {clean_line(str(message))[:200]}")
    if data == {} or "data" in data:
        return []
    return [data]


def _peek(text: str) -> str:
    return json.dumps(clean_line(text[:20]))


def make_unreadable(record: Any, account: str, problem: str) -> Unreadable:
    try:
        raw = (
            record.text
            if isinstance(record, _Raw)
            else json.dumps(record, ensure_ascii=True, sort_keys=True, default=str)
        )
    except (RecursionError, ValueError):
        raw = repr(record)[:65536]
    raw = raw.encode("utf-8", "backslashreplace").decode("utf-8")
    digest = hashlib.sha256(raw.encode()).hexdigest()[:16]
    return Unreadable(key=f"raw:{digest}", account=account, raw=raw, problem=problem)


# --- one lead --------------------------------------------------------------------------------


def parse_lead(record: Any, account: str) -> Lead:
    """One lead object -> Lead. Odd values are tolerated and noted in `problems`; only a record
    without a usable id or category raises LeadError."""
    if not isinstance(record, dict):
        raise LeadError(f"expected a lead object, got {type(record).__name__}")
    problems: list[str] = []
    lead_id = _int(record.get("id"))
    if lead_id is None:
        raise LeadError("the lead has no usable id")
    category = _category(record.get("category"))
    if category is None:
        raise LeadError("the lead has no usable category id")
    specific = record.get("categorySpecificData")
    if not isinstance(specific, dict):
        if specific is not None:
            problems.append("categorySpecificData is not an object")
        specific = {}
    when = _datetime(record.get("date"))
    if when is None and record.get("date") is not None:
        problems.append("date could not be read")
    visit_date = _date(specific.get("visitDate"))
    if visit_date is None and specific.get("visitDate") not in (None, ""):
        problems.append("visitDate could not be read")
    return Lead(
        id=lead_id,
        category=category,
        service=_service(record.get("service")),
        account=account,
        date=when,
        to=clean_line(record.get("to")),
        sender=clean_line(record.get("from")),
        content=clean_text(record.get("content")),
        enquirer_first_name=_name(record.get("enquirerFirstName")),
        enquirer_surname=_name(record.get("enquirerSurname")),
        resident_first_name=_name(record.get("residentFirstName")),
        resident_surname=_name(record.get("residentSurname")),
        on_behalf_of=parse_list_text(record.get("onBehalfOf")),
        telephone=clean_line(record.get("telephone")),
        anonymised=_anonymised(record.get("isAnonymised")),
        funding=parse_list_text(record.get("funding")),
        timescales=parse_list_text(record.get("timescales")),
        visit_date=visit_date,
        visit_time=clean_line(specific.get("visitTime")),
        instruction=clean_text(specific.get("instruction")),
        email_permission=_bool(specific.get("emailPermission")),
        phone_permission=_bool(specific.get("phonePermission")),
        budget_type=clean_line(_either(specific, "budget_type", "budgetType")),
        budget_min=_number(_either(specific, "budget_min", "budgetMin")),
        budget_max=_number(_either(specific, "budget_max", "budgetMax")),
        extra=_extra(record, specific),
        problems=tuple(problems),
        raw=json.dumps(record, ensure_ascii=True),  # ASCII: a lone surrogate cannot break SQLite
    )


KNOWN_FIELDS = frozenset(
    {
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
    }
)
KNOWN_SPECIFIC = frozenset(
    {
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
    }
)


def _extra(record: dict[str, Any], specific: dict[str, Any]) -> dict[str, Any]:
    extra = {k: v for k, v in record.items() if k not in KNOWN_FIELDS}
    more = {k: v for k, v in specific.items() if k not in KNOWN_SPECIFIC}
    if more:
        extra["categorySpecificData"] = more
    return extra


def _either(data: dict[str, Any], *keys: str) -> Any:
    return next((data[k] for k in keys if data.get(k) is not None), None)


def _category(value: Any) -> Category | None:
    if isinstance(value, dict):
        cid, name = _int(value.get("id")), clean_line(value.get("name"))
    else:
        cid, name = _int(value), ""
    if cid is None:
        return None
    known = CATEGORY_NAMES.get(cid)
    return Category(cid, name or (known[0] if known else f"Category {cid}"))


def _service(value: Any) -> Service:
    if not isinstance(value, dict):
        return Service(_int(value), "", "")
    return Service(
        _int(value.get("id")), clean_line(value.get("name")), clean_line(value.get("postcode"))
    )


def _name(value: Any) -> str | None:
    return clean_line(value) or None


ID_LIMIT = 2**53  # beyond this no id is real, and SQLite stops at 2**63


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < ID_LIMIT:
        value = int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip()) if len(value.strip()) < 19 else None
    return value if isinstance(value, int) and 0 <= value < ID_LIMIT else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str) and len(value) < 40:
            number = float(value.strip().replace(",", "").lstrip("£").strip())
        else:
            return None
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    return None


def _anonymised(value: Any) -> bool:
    """Privacy first: anything but a clear "no" (false, 0, "false", absent) means anonymised."""
    return value not in (None, "") and _bool(value) is not False


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace(" ", "T", 1)
    try:
        moment = datetime.fromisoformat(text)
        # Autumna's times are UTC; one without a zone is UTC too.
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return moment if 1970 <= moment.year <= 2200 else None  # else no lead of ours


def _date(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None


# --- text --------------------------------------------------------------------------------------

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
