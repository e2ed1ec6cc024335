"""Autumna's data -> clean `Lead`s: every quirk of its JSON handled here, once (see README
"Autumna's data"). The rest of leadbot sees clean, typed leads and never re-checks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from . import jsontext
from .models import CATEGORY_NAMES, Category, Lead, Service, Unreadable
from .text import clean_line, clean_text, parse_list_text

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
