"""Autumna's organisations endpoint -> the organisations and services a key covers, for
`leadbot init` and `leadbot check --online`. Its shape is not published (../shared/autumna/API.md
says only "the caller's organisations and their service ids"), so it is read as tolerantly as
leads: a bare array, {"data": ...} (or "organisations", "results"...), a single object;
organisations with nested services, with bare service ids or with services keyed by id, or a flat
list of services naming their organisation; ids as numbers or strings; typographic quotes and
padding. Whatever is not understood is kept (`extra`, `notes`, `skipped`) to be written as
comments and said on the terminal, never dropped silently.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from . import jsontext
from .parse import PollError
from .parse import _int as id_of
from .text import clean_line

Scalar = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Organisation:
    id: int | None
    name: str
    account: str
    service_ids: tuple[int, ...]
    extra: dict[str, Any] = field(default_factory=dict)  # fields not understood


@dataclass(frozen=True, slots=True)
class ListedService:
    id: int
    name: str  # "" when Autumna gives none
    account: str
    organisation: str  # the organisation's name (or "organisation 7"), "" if not known
    details: dict[str, Scalar] = field(default_factory=dict)  # attributes: postcode, town...
    email: str = ""  # the home's address as Autumna has it: suggested, never a destination
    extra: dict[str, Any] = field(default_factory=dict)  # fields not understood


@dataclass
class Listing:
    organisations: list[Organisation]
    services: list[ListedService]
    skipped: list[str] = field(default_factory=list)  # what was left out, and why
    notes: dict[str, Any] = field(default_factory=dict)  # top-level fields not understood
    shape: str = ""  # how the body was read, for the terminal

    def by_organisation(self) -> list[tuple[str, list[ListedService]]]:
        """The services under their organisation's name (in Autumna's order), ids ascending;
        services with no organisation last, under ""."""
        order = {o.name: i for i, o in enumerate(self.organisations)}
        groups: dict[str, list[ListedService]] = {}
        for service in sorted(
            self.services, key=lambda s: (order.get(s.organisation, len(order)), s.id)
        ):
            groups.setdefault(service.organisation, []).append(service)
        return list(groups.items())

    def merged(self, other: Listing) -> Listing:
        """Another account's listing added; a service listed by both is kept once."""
        seen = {s.id: s for s in self.services}
        skipped = self.skipped + other.skipped
        for service in other.services:
            if service.id in seen:
                skipped.append(
                    f"service {service.id} is listed for accounts {seen[service.id].account!r} "
                    f"and {service.account!r}: written once (leads come through either key "
                    "and are recognised as the same lead)"
                )
        organisations = {(o.id, o.name): o for o in self.organisations}
        for o in other.organisations:  # one organisation seen through two keys is one
            known = organisations.get((o.id, o.name))
            ids = known.service_ids if known else ()
            organisations[(o.id, o.name)] = Organisation(
                o.id,
                o.name,
                known.account if known else o.account,
                tuple(dict.fromkeys(ids + o.service_ids)),
                {**o.extra, **(known.extra if known else {})},
            )
        return Listing(
            list(organisations.values()),
            self.services + [s for s in other.services if s.id not in seen],
            skipped,
            {**self.notes, **other.notes},
            "; ".join(dict.fromkeys(s for s in (self.shape, other.shape) if s)),
        )


def norm(key: Any) -> str:
    """serviceId, service_id and ServiceID are one key."""
    return re.sub(r"[^a-z0-9]", "", str(key).casefold())


WRAPPERS = ("data", "organisations", "organizations", "orgs", "results", "items", "records")
SERVICE_LISTS = (
    "services",
    "servicelist",
    "serviceids",
    "homes",
    "carehomes",
    "locations",
    "service",
)
ORG_ID = ("organisationid", "organizationid", "orgid", "providerid", "groupid")
ORG_NAME = ("organisationname", "organizationname", "orgname", "providername", "groupname")
ORG_NESTED = ("organisation", "organization", "org", "provider")
SERVICE_ID = ("serviceid", "homeid", "locationid")
SERVICE_NAME = ("servicename", "homename", "name", "title", "displayname")
EMAIL_KEYS = ("email", "emailaddress", "serviceemail")
# The home attribute -> Autumna's names for it (normalised). No attribute here may be named like a
# destination (slack, email, teams or *_slack...): Autumna's data never sends anybody anything.
ATTRIBUTES = {
    "postcode": ("postcode", "postalcode", "zip"),
    "address": ("address", "address1", "addressline1", "line1", "street", "streetaddress"),
    "address_2": ("address2", "addressline2", "line2"),
    "town": ("town", "city", "posttown", "locality"),
    "county": ("county",),
    "region": ("region",),
    "telephone": ("telephone", "phone", "phonenumber"),
    "care_type": ("caretype", "servicetype", "type"),
    "beds": ("beds", "numberofbeds", "bedcount"),
    "nation": ("country",),  # only England, Wales, Scotland or Northern Ireland
}
DETAILS = {name: attribute for attribute, names in ATTRIBUTES.items() for name in names}
NATIONS = {"england", "wales", "scotland", "northern ireland", "northern-ireland"}
KINDS = {"organisation": "organisation", "organization": "organisation", "service": "service"}
KINDS |= {"carehome": "service", "home": "service", "location": "service"}


def parse_organisations(text: str, account: str) -> Listing:
    """Read one key's answer. Raises PollError (safe to print) for a body that lists nothing
    readable: empty, not JSON, or an error message."""
    if not text.strip():
        raise PollError("Autumna answered with an empty body")
    try:
        data = jsontext.loads(text)
    except jsontext.NotJSON:
        start = json.dumps(clean_line(text[:20]))
        raise PollError(
            f"Autumna answered with something that is not JSON ({len(text)} characters, "
            f"starting {start})"
        ) from None
    except jsontext.TooDeep:
        raise PollError("Autumna answered JSON nested too deeply to be organisations") from None
    reader = _Reader(account)
    for i, record in enumerate(_records(data, reader.notes)):
        reader.item(record, f"[{i}]")
    return reader.listing()


def _records(data: Any, notes: dict[str, Any], depth: int = 0) -> list[Any]:
    """The records in the body, unwrapped from {"data": ...} and the like."""
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        raise PollError(f"Autumna answered JSON that lists no organisations ({_kind(data)})")
    if _keyed_by_id(data):
        return _by_id(data)
    keys = {norm(k): k for k in data}
    problem = _problem(data, keys)
    wrapper = next(
        (keys[w] for w in WRAPPERS if w in keys and isinstance(data[keys[w]], list | dict)), None
    )
    # {"data": [...], "error": []} is a wrapper; {"id": 7, "services": [...]} is a record.
    itself = "id" in keys or any(isinstance(data.get(keys.get(k, "")), list) for k in SERVICE_LISTS)
    if wrapper is not None and not itself and depth < 4:
        notes.update({k: v for k, v in data.items() if k != wrapper and v not in ([], {}, None)})
        records = _records(data[wrapper], notes, depth + 1)
        if problem and not records:
            raise PollError(f"Autumna answered with an error: {problem}")
        return records
    if _is_record(keys):
        return [data]
    if problem:
        raise PollError(f"Autumna answered with an error: {problem}")
    return [data] if data else []


def _problem(data: dict[str, Any], keys: dict[str, str]) -> str:
    for key in ("error", "errors", "message"):
        value = data.get(keys.get(key, ""))
        if value not in (None, "", [], {}):
            return clean_line(value if isinstance(value, str) else json.dumps(value))[:200]
    return "success is false" if data.get(keys.get("success", "")) is False else ""


def _is_record(keys: dict[str, str]) -> bool:
    known = ("id", *ORG_ID, *ORG_NAME, *SERVICE_ID, *SERVICE_NAME, *ORG_NESTED, *SERVICE_LISTS)
    return any(k in keys and k not in WRAPPERS for k in known)


def _keyed_by_id(data: Any) -> bool:
    return isinstance(data, dict) and bool(data) and all(id_of(k) is not None for k in data)


def _by_id(data: dict[str, Any]) -> list[Any]:
    """{"100000": "Rose Lodge"} or {"100000": {...}} -> records with their ids."""
    out: list[Any] = []
    for key, value in data.items():
        if isinstance(value, dict):
            out.append({"id": key, **value} if "id" not in value else value)
        elif isinstance(value, str | None):
            out.append({"id": key, "name": value or ""})
        else:
            out.append({"id": key, "value": value})
    return out


def _kind(value: Any) -> str:
    kinds = {list: "an array", dict: "an object", str: "text"}
    return next((v for k, v in kinds.items() if isinstance(value, k)), type(value).__name__)


class _Reader:
    """Sorts records into organisations and services, remembering what it did not understand."""

    def __init__(self, account: str) -> None:
        self.account = account
        self.orgs: dict[tuple[str, Any], dict[str, Any]] = {}  # (by, id or name) -> fields
        self.services: dict[int, ListedService] = {}
        self.skipped: list[str] = []
        self.notes: dict[str, Any] = {}
        self.plain: list[tuple[dict[str, Any], str]] = []  # {id, name}: decided at the end
        self.nested = self.flat = 0

    def item(self, record: Any, where: str) -> None:
        if not isinstance(record, dict):
            if id_of(record) is not None:  # a bare service id
                self.flat += 1
                return self.add(ListedService(id_of(record) or 0, "", self.account, ""), where)
            return self.skip(where, f"{_kind(record)}, neither an organisation nor a service")
        kind = self.kind(record)
        if kind == "organisation":
            self.organisation(record, where)
        elif kind == "service":
            self.flat += 1
            self.service(record, where, None)
        else:
            self.plain.append((record, where))

    def kind(self, record: dict[str, Any]) -> str:
        keys = {norm(k): k for k in record}
        lists = [k for k in SERVICE_LISTS if isinstance(record.get(keys.get(k, "")), list | dict)]
        if lists and not (lists == ["service"] and isinstance(record[keys["service"]], dict)):
            return "organisation"
        stated = KINDS.get(norm(record.get(keys.get("type", ""), "")))
        if stated:
            return stated
        if any(k in keys for k in (*SERVICE_ID, "servicename", "homename", "service")):
            return "service"
        if any(k in keys for k in DETAILS if k not in ("type", "region", "country")):
            return "service"
        if "id" in keys and any(k in keys for k in (*ORG_ID, *ORG_NAME, *ORG_NESTED)):
            return "service"  # a service naming its organisation
        if any(k in keys for k in (*ORG_ID, *ORG_NAME)):
            return "organisation"
        return ""

    def organisation(self, record: dict[str, Any], where: str) -> None:
        fields = dict(record)
        nested = _pop(fields, ORG_NESTED)
        if isinstance(nested, dict):
            fields = {**nested, **fields}
        oid = id_of(_pop(fields, ORG_ID)) or id_of(_pop(fields, ("id",)))
        name = clean_line(_pop(fields, (*ORG_NAME, "name", "title", "displayname")))
        if oid is None and not name:  # {"services": [...]} alone: a list of services
            org = None
        else:
            org = self.org(oid, name)
            self.nested += 1
        while (key := _find(fields, SERVICE_LISTS)) is not None:
            listed = fields.pop(key)
            items = _by_id(listed) if _keyed_by_id(listed) else listed
            items = [items] if isinstance(items, dict) else items
            for j, item in enumerate(items if isinstance(items, list) else []):
                here = f"{where}.{key}[{j}]"
                self.flat += org is None
                if isinstance(item, dict):
                    self.service(item, here, org)
                elif id_of(item) is not None:
                    label = org["label"] if org else ""
                    self.add(ListedService(id_of(item) or 0, "", self.account, label), here)
                    if org is not None:
                        org["ids"].append(id_of(item))
                else:
                    self.skip(here, f"{_kind(item)}, not a service")
        if org is not None:
            org["extra"].update(fields)
        else:
            self.notes.update(fields)

    def service(self, record: dict[str, Any], where: str, org: dict[str, Any] | None) -> None:
        fields = dict(record)
        kind = _find(fields, ("type",))
        if kind is not None and norm(fields[kind]) in KINDS:
            del fields[kind]  # "type": "service" says what it is, not what kind of care
        inner = fields.pop(_find(fields, ("service",)) or "", None)
        if isinstance(inner, dict):  # {"service": {id, name, postcode}, "organisation": ...}
            fields = {**fields, **inner}
        if org is None:
            nested = _pop(fields, ORG_NESTED)
            nested = nested if isinstance(nested, dict) else {"name": nested} if nested else {}
            oid = id_of(_pop(fields, ORG_ID)) or id_of(nested.get("id"))
            oname = clean_line(_pop(fields, ORG_NAME) or nested.get("name"))
            org = self.org(oid, oname) if oid is not None or oname else None
            if org is not None:
                org["extra"].update({k: v for k, v in nested.items() if k not in ("id", "name")})
        sid = id_of(_pop(fields, SERVICE_ID)) or id_of(_pop(fields, ("id",)))
        name = clean_line(_pop(fields, SERVICE_NAME))
        if sid is None:
            what = f" ({json.dumps(name)})" if name else ""
            return self.skip(where, f"a service{what} with no usable service id", record)
        details, email = _details(fields)
        label = org["label"] if org else ""
        self.add(ListedService(sid, name, self.account, label, details, email, fields), where)
        if org is not None:
            org["ids"].append(sid)

    def org(self, oid: int | None, name: str) -> dict[str, Any]:
        key = ("id", oid) if oid is not None else ("name", name.casefold())
        if key not in self.orgs:
            label = name or (f"organisation {oid}" if oid is not None else "")
            self.orgs[key] = {"id": oid, "name": name, "label": label, "ids": [], "extra": {}}
        found = self.orgs[key]
        if name and not found["name"]:
            found["name"] = found["label"] = name
        return found

    def add(self, service: ListedService, where: str) -> None:
        known = self.services.get(service.id)
        if known is None:
            self.services[service.id] = service
        elif known.organisation == service.organisation and not known.name:
            self.services[service.id] = service  # the ids first, then the details
        elif service.name or service.details:
            again = f" ({json.dumps(service.name, ensure_ascii=False)})" * bool(service.name)
            self.skip(where, f"service {service.id}{again} is listed twice: the first is kept")

    def skip(self, where: str, why: str, value: Any = None) -> None:
        shown = f": {brief(value)}" if value is not None else ""
        self.skipped.append(f"{where}: {why}{shown}")

    def listing(self) -> Listing:
        for record, where in self.plain:
            if self.nested:  # beside organisations with services: organisations without any
                self.organisation(record, where)
            else:  # a plain list of {id, name}: services
                self.flat += 1
                self.service(record, where, None)
        organisations = [
            Organisation(
                o["id"], o["label"], self.account, tuple(dict.fromkeys(o["ids"])), o["extra"]
            )
            for o in self.orgs.values()
        ]
        shape = (
            "organisations with their services"
            if self.nested and not self.flat
            else "a list of services" + " and organisations" * bool(self.nested)
        )
        return Listing(organisations, list(self.services.values()), self.skipped, self.notes, shape)


def _find(fields: dict[str, Any], names: tuple[str, ...]) -> str | None:
    """The first key of `fields` that is one of `names` (normalised), in the order of `names`."""
    keys = {norm(k): k for k in fields}
    return next((keys[n] for n in names if n in keys), None)


def _pop(fields: dict[str, Any], names: tuple[str, ...]) -> Any:
    """Take the first of `names` that has a value; the others of `names` stay (not understood)."""
    keys = {norm(k): k for k in fields}
    for n in names:
        if n in keys and fields[keys[n]] not in (None, ""):
            return fields.pop(keys[n])
    return None


def _details(fields: dict[str, Any]) -> tuple[dict[str, Scalar], str]:
    """Take the attributes leadbot understands out of `fields` (what stays is not understood)."""
    details: dict[str, Scalar] = {}
    email = ""
    address = _find(fields, ("address", "location"))
    if address is not None and isinstance(fields[address], dict):
        nested = fields.pop(address)
        found, _ = _details(nested)
        details.update(found)
        if nested:
            fields[address] = nested  # what is left of it
    for key in list(fields):
        value = fields[key]
        name = DETAILS.get(norm(key))
        if norm(key) in EMAIL_KEYS and isinstance(value, str) and not email:
            email = clean_line(fields.pop(key))
        elif name is None or name in details or isinstance(value, bool):
            continue
        elif name == "beds" and id_of(value) is not None:
            details[name] = id_of(value) or 0
            del fields[key]
        elif name == "nation" and isinstance(value, str):
            if clean_line(value).casefold() in NATIONS:
                details[name] = clean_line(value).casefold().replace(" ", "-")
                del fields[key]
        elif isinstance(value, str | int | float) and name != "beds" and clean_line(value):
            details[name] = clean_line(value)[:200]
            del fields[key]
    return details, email


def brief(value: Any, limit: int = 200) -> str:
    """A value on one line, cut short: for comments and the terminal."""
    try:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    except (RecursionError, ValueError, TypeError):
        text = f"({_kind(value)} too deeply nested to show)"
    text = clean_line(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
