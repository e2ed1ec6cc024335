"""`leadbot init` and `leadbot check --online`: ask Autumna's organisations endpoint which services
each key covers, then write a starting rules.toml (starter.py) or compare the services with the
homes of an existing one. One request per key; the key travels in the query string as for leads,
so the URL is a secret: it is never logged or printed, and errors name the variable instead.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections import Counter
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from .config import Config, ConfigError
from .loader import Loader
from .organisations import ListedService, Listing, parse_organisations
from .parse import PollError
from .placeholders import MARKER
from .settings import DEFAULT_URL, Settings, register_secrets
from .starter import example, starter

KEY_PREFIX = "AUTUMNA_KEY_"  # AUTUMNA_KEY_NORTH holds the key of account "north"
Keys = dict[str, tuple[str, str]]  # account -> (environment variable, key)


class Unanswered(Exception):
    """Autumna did not list the services of one key. The message says what to check."""


def keys_in(env: Mapping[str, str]) -> Keys:
    """The Autumna keys in the environment: AUTUMNA_API_KEY (account "default") and every
    AUTUMNA_KEY_<NAME> (account "<name>")."""
    keys: Keys = {}
    if env.get("AUTUMNA_API_KEY", "").strip():
        keys["default"] = ("AUTUMNA_API_KEY", env["AUTUMNA_API_KEY"].strip())
    for variable in sorted(env):
        name = variable.removeprefix(KEY_PREFIX).lower()
        if variable.startswith(KEY_PREFIX) and name and env[variable].strip():
            keys.setdefault(name, (variable, env[variable].strip()))
    return keys


def organisations_url(leads_url: str) -> str:
    """Beside the leads endpoint: .../api/leads/ -> .../api/organisations/."""
    parts = urlsplit(leads_url)
    path = parts.path.rstrip("/")
    base = path.rsplit("/", 1)[0] if path.endswith("/leads") else path
    return urlunsplit((parts.scheme, parts.netloc, f"{base}/organisations/", "", ""))


def ask(keys: Keys, leads_url: str) -> Listing:
    """Every key's organisations and services, merged. Raises Unanswered for the first key
    Autumna does not answer."""
    register_secrets([key for _, key in keys.values()])
    url = organisations_url(leads_url)
    listing = Listing([], [])
    with httpx.Client(
        timeout=httpx.Timeout(30.0, connect=10.0), transport=httpx.HTTPTransport(retries=1)
    ) as http:
        for account, (variable, key) in keys.items():
            try:
                one = parse_organisations(_get(http, url, key), account)
            except PollError as exc:
                raise Unanswered(_unanswered(account, variable, key, str(exc))) from None
            except Exception as exc:  # a body no rule foresaw: said, never a crash
                problem = f"its answer could not be read ({type(exc).__name__})"
                raise Unanswered(_unanswered(account, variable, key, problem)) from None
            listing = listing.merged(one)
    return listing


def _get(http: httpx.Client, url: str, key: str) -> str:
    try:
        response = http.get(url, params={"api_key": key}, headers={"Accept": "application/json"})
    except httpx.TimeoutException:
        raise PollError("Autumna did not answer in time") from None
    except httpx.TransportError as exc:
        raise PollError(f"could not reach Autumna ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise PollError(f"Autumna's answer could not be read ({type(exc).__name__})") from None
    except (httpx.InvalidURL, ValueError):
        raise PollError("AUTUMNA_API_URL is not a URL leadbot can use") from None
    if response.status_code != 200:
        raise PollError(f"Autumna answered HTTP {response.status_code}")
    return response.text.replace(key, "[secret]")  # an error text may quote the key back


def _unanswered(account: str, variable: str, key: str, problem: str) -> str:
    shape = ""
    if len(key) != 40 or not key.isalnum():
        odd = ", not all letters and digits" * (not key.isalnum())
        shape = f" (this one has {len(key)} characters{odd})"
    if "HTTP 500" in problem or "error" in problem:
        what = (
            f"Autumna answers a wrong API key the same way as an outage: check that {variable} "
            f"holds the Service API Key of account {account!r}, 40 letters and digits{shape}; "
            "if it does, Autumna may be down: try again in a few minutes"
        )
    elif "reach" in problem or "in time" in problem or "URL" in problem:
        what = (
            "check the network, and AUTUMNA_API_URL if it is set (the organisations are asked "
            "beside the leads: .../api/organisations/)"
        )
    else:
        what = f"check {variable}{shape} and AUTUMNA_API_URL if it is set, then try again"
    return (
        f"Autumna did not list the services for {variable} (account {account!r}): {problem}. "
        f"{what[0].upper()}{what[1:]}."
    )


# --- leadbot init ------------------------------------------------------------------------------


def init(path: Path, env: Mapping[str, str], force: bool, today: date) -> int:
    """Write a starting rules.toml at `path` and say what was found. 0; or 1, with nothing
    written: the file exists (without --force), Autumna did not answer, or it listed nothing."""
    if path.exists() and not force:
        print(
            f"leadbot init: {path} already exists: nothing was written. Give --force to replace "
            "it, or --config PATH to write another file.",
            file=sys.stderr,
        )
        return 1
    keys = keys_in(env)
    if not keys:
        try:
            text = example()
        except OSError:
            print(
                "leadbot init: the documented example is missing from this installation "
                "(reinstall leadbot). Nothing was written.",
                file=sys.stderr,
            )
            return 1
        summary = [
            "No Autumna key in the environment (AUTUMNA_API_KEY, or AUTUMNA_KEY_<NAME> for each "
            "account), so this is the documented example: Rose Care Homes, three example homes.",
            f"Wrote {path}. Try it with `leadbot run --demo --once`; replace the example homes "
            "with yours, or set your key and run `leadbot init --force` to list them from Autumna.",
        ]
    else:
        try:
            listing = ask(keys, env.get("AUTUMNA_API_URL", "").strip() or DEFAULT_URL)
        except Unanswered as exc:
            print(f"leadbot init: {exc} Nothing was written.", file=sys.stderr)
            return 1
        summary = found(listing, keys)
        if not listing.services:
            print("\n".join(summary), file=sys.stderr)
            print(
                "leadbot init: Autumna lists no services for "
                + " and ".join(v for v, _ in keys.values())
                + ": check that each is your group's Service API Key. Nothing was written.",
                file=sys.stderr,
            )
            return 1
        text = starter(listing, {a: v for a, (v, _) in keys.items()}, today)
        summary.append(
            f"Wrote {path}: {_count(len(listing.services), 'home')}. To do: fill in each "
            f"{MARKER} (every home's Slack channel, manager and email; the group channel, "
            "the ops address and the mail server) — `leadbot check` lists them — then set "
            'the environment (README: "Running it for real") and run `leadbot check --online`.'
        )
    problems = _problems(path, text)
    if problems:  # a bug of ours: never leave a file that does not load
        print("\n".join(["leadbot init: the file would not load:", *problems]), file=sys.stderr)
        return 1
    try:
        write(path, text, force)
    except FileExistsError:
        print(f"leadbot init: {path} appeared meanwhile: nothing was written.", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"leadbot init: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return 1
    print("\n".join(summary))
    return 0


def _problems(path: Path, text: str) -> list[str]:
    try:
        Loader(path, tomllib.loads(text)).load()
    except ConfigError as exc:
        return exc.problems
    except tomllib.TOMLDecodeError as exc:
        return [f"not valid TOML: {exc}"]
    return []


def write(path: Path, text: str, force: bool) -> None:
    """Whole or not at all: a new file is created exclusively; --force replaces atomically."""
    temporary = path if not force else path.with_name(f".{path.name}.{os.getpid()}.new")
    try:
        with temporary.open("x", encoding="utf-8") as out:
            out.write(text)
        if temporary != path:
            os.replace(temporary, path)
    except BaseException:
        if temporary != path:
            temporary.unlink(missing_ok=True)
        raise


def found(listing: Listing, keys: Keys) -> list[str]:
    """What Autumna listed, for the terminal: organisations, services, what was skipped."""
    variables = " and ".join(variable for variable, _ in keys.values())
    lines = [
        f"Autumna lists {_count(len(listing.organisations), 'organisation')} and "
        f"{_count(len(listing.services), 'service')} for {variables}"
        + (f" (read as {listing.shape})." if listing.shape else ".")
    ]
    if len(keys) > 1:
        per = Counter(s.account for s in listing.services)
        lines += [
            f"  account {a!r} ({v}): {_count(per[a], 'service')}" for a, (v, _) in keys.items()
        ]
    listed = dict(listing.by_organisation())
    for org in listing.organisations:
        count = _count(len(org.service_ids), "service") if org.service_ids else "no services"
        lines.append(f"  {org.name or 'an organisation with no name'}: {count}")
        lines += [_service_line(s) for s in listed.pop(org.name, [])]
    for services in listed.values():
        lines.append("  (no organisation given):")
        lines += [_service_line(s) for s in services]
    if listing.skipped:
        lines.append(f"Skipped {len(listing.skipped)} (kept as comments in the file):")
        lines += [f"  {line}" for line in listing.skipped[:20]]
        lines += [f"  ... and {len(listing.skipped) - 20} more"] * (len(listing.skipped) > 20)
    unknown = Counter(k for s in listing.services for k in s.extra)
    unknown.update([k for o in listing.organisations for k in o.extra])
    unknown.update(list(listing.notes))
    if unknown:
        lines.append(
            "Not understood, kept as comments in the file: "
            + ", ".join(f"{k} ({n}×)" if n > 1 else k for k, n in sorted(unknown.items()))
            + "."
        )
    return lines


def _service_line(service: ListedService) -> str:
    place = f" ({service.details['postcode']})" if "postcode" in service.details else ""
    return (
        f"    [homes.{service.id}] {service.name or f'no name given: {MARKER} in the file'}{place}"
    )


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' * (n != 1)}"


# --- leadbot check --online ----------------------------------------------------------------------


def check_online(config: Config, env: Mapping[str, str]) -> int:
    """Warn about homes no key covers and services no home describes. 0, or 1 if Autumna could
    not be asked."""
    settings = Settings.from_env(env, config)
    keys = {
        a.name: (a.key_var, settings.api_keys[a.name])
        for a in config.accounts
        if a.name in settings.api_keys
    }
    try:
        listing = ask(keys, settings.autumna_url)
    except Unanswered as exc:
        print(f"leadbot check --online: {exc}", file=sys.stderr)
        return 1
    variables = " and ".join(variable for variable, _ in keys.values())
    covered = {s.id: s for s in listing.services}
    name = config.path.name
    for sid, home in sorted(config.homes.items()):
        if sid not in covered:
            print(
                f"warning: {name}: homes.{sid} ({home.name}): Autumna does not list service "
                f"{sid} for {variables}, so no lead for it will come: check the service id, "
                "or add the [[autumna.accounts]] entry whose key covers it"
            )
    for sid, service in sorted(covered.items()):
        if sid not in config.homes:
            where = f", {service.organisation}" if service.organisation else ""
            print(
                f'warning: {name}: service {sid} "{service.name or "no name given"}"{where} '
                f"(account {service.account!r}) has no home in {name}: its leads go to the "
                f"fallback ({config.fallback}). Add [homes.{sid}] with "
                f'name = "{service.name or "..."}" (`leadbot init --config new.toml` writes '
                "one to copy from)"
            )
    missing = len(set(config.homes) - set(covered))
    extra = len(set(covered) - set(config.homes))
    print(
        f"Autumna lists {_count(len(covered), 'service')} for {variables}: "
        + (
            "each is a home here, and each home is among them."
            if not missing and not extra
            else f"{_count(missing, 'home')} not covered, "
            f"{_count(extra, 'service')} without a home."
        )
    )
    return 0
