"""The console's pages, behind the login: the overview, the leads, a lead; the resend button;
logging in and out. Lists are paged by keyset (`?after=`/`?before=` name the last row shown).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ..store import Store
from ..store.console import Cursor
from .guard import secure
from .stats import chart, home_name
from .timeline import lead_page

if TYPE_CHECKING:
    from .site import Site

PAGE = 50
FORM_LIMIT = 16_384  # bytes: every form here is a few short fields
FIGURES_WAIT = 3.0  # seconds a page waits for the response times the first time
WRONG_PASSWORD_DELAY = 0.5  # seconds: guessing is slow
View = Callable[[Request], Awaitable[Response]]


def site_of(request: Request) -> Site:
    site: Site = request.app.state.site
    return site


def login_required(view: View) -> View:
    async def guarded(request: Request) -> Response:
        site = site_of(request)
        if site.guard.logged_in(request, site.clock()):
            return await view(request)
        if request.method != "GET":
            raise HTTPException(403, "Please log in first")
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return secure(RedirectResponse(f"/login?next={quote(target)}", status_code=303))

    return guarded


async def form(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (the first value of each)."""
    body = await request.body()
    if len(body) > FORM_LIMIT:
        raise HTTPException(413, "That form is too big")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20)
    return {name: values[0] for name, values in fields.items()}


def cursor(text: str | None) -> Cursor | None:
    """`1764000000.5:1234` -> (seen_at, rowid); anything else is the first page."""
    seen, _, rowid = (text or "").partition(":")
    try:
        return float(seen), int(rowid)
    except ValueError:
        return None


# -- the overview


@login_required
async def overview(request: Request) -> Response:
    site = site_of(request)
    after = cursor(request.query_params.get("after"))
    before = request.query_params.get("dead_before", "")
    data = await site.run(overview_data, site, after, int(before) if before.isdigit() else None)
    resent = request.query_params.get("resent", "")
    return site.page(request, "overview.j2", resent=resent, **data)


def overview_data(
    store: Store, site: Site, after: Cursor | None, dead_before: int | None
) -> dict[str, Any]:
    config, now = site.config, site.clock()
    polls = store.poll_states()
    limit = config.polling.alert_after.total_seconds()
    accounts = []
    for account in config.accounts:
        state = polls.get(account.name) or {}
        success = state.get("last_success")
        accounts.append(
            {
                "name": account.name,
                "success": success,
                "age": now - success if success else None,
                "error": state.get("last_error", ""),
                "ok": success is not None and now - success <= limit,
            }
        )
    since = now - config.claims.lookback.total_seconds()
    unclaimed = store.unclaimed(since, after, PAGE + 1)
    keys = [r["key"] for r in unclaimed[:PAGE]]
    steps = store.escalations_of(keys)
    for r in unclaimed:
        r["home"] = home_name(config, r["service_id"])
        r["fired"] = sum(s["status"] == "fired" for s in steps.get(r["key"], []))
    dead = store.dead_letters(dead_before, PAGE + 1)
    homes, figured_at = site.stats.get(FIGURES_WAIT, 0.2)
    return {
        "now": now,
        "accounts": accounts,
        "queue": store.queue_counts(now),
        "unclaimed": unclaimed[:PAGE],
        "unclaimed_next": _next(unclaimed),
        "unclaimed_total": store.unclaimed_count(since),
        "lookback": config.claims.lookback.total_seconds(),
        "dead": dead[:PAGE],
        "dead_next": dead[PAGE - 1].id if len(dead) > PAGE else None,
        "homes": homes,
        "chart": chart(homes or []),
        "figured_at": figured_at,
    }


def _next(rows: list[dict[str, Any]]) -> str:
    if len(rows) <= PAGE:
        return ""
    last = rows[PAGE - 1]
    return f"{last['seen_at']!r}:{last['rowid']}"


# -- leads


@login_required
async def leads(request: Request) -> Response:
    site = site_of(request)
    wanted = request.query_params.get("key", "").strip()
    if wanted:
        return secure(RedirectResponse(f"/leads/{quote(wanted, safe=':')}", status_code=303))
    before = cursor(request.query_params.get("before"))
    rows = await site.run(Store.leads_page, before, PAGE + 1)
    for r in rows:
        r["home"] = home_name(site.config, r["service_id"])
    return site.page(request, "leads.j2", leads=rows[:PAGE], next=_next(rows), now=site.clock())


@login_required
async def lead(request: Request) -> Response:
    site = site_of(request)
    key = request.path_params["key"]
    data = await site.run(lead_page, site, key)
    if data is None:
        raise HTTPException(404, f"No lead {key}")
    return site.page(request, "lead.j2", key=key, now=site.clock(), **data)


# -- the resend button


@login_required
async def resend(request: Request) -> Response:
    site = site_of(request)
    fields = await form(request)
    if not site.guard.genuine_post(request, fields.get("csrf", "")):
        raise HTTPException(403, "This form has expired: open the page again and resend")
    delivery_id = int(request.path_params["id"])
    done = await site.run(requeue_dead, delivery_id, site.clock())
    if not done:
        raise HTTPException(404, f"Delivery {delivery_id} is not a dead letter (any more)")
    back = fields.get("back", "/")
    back = back if back.startswith("/") and not back.startswith("//") else "/"
    joiner = "&" if "?" in back else "?"
    return secure(RedirectResponse(f"{back}{joiner}resent={delivery_id}", status_code=303))


def requeue_dead(store: Store, delivery_id: int, now: float) -> bool:
    """Store.requeue for one delivery that failed for good (never one that was sent)."""
    if store.dead_letter(delivery_id) is None:
        return False
    return store.requeue([delivery_id], now) == 1


# -- logging in and out


async def login(request: Request) -> Response:
    site = site_of(request)
    target = request.query_params.get("next", "/")
    if request.method == "GET":
        return site.page(request, "login.j2", next=target, wrong=False)
    fields = await form(request)
    if not site.guard.genuine_post(request, fields.get("csrf", "")):
        raise HTTPException(403, "This form has expired: open the page again")
    target = fields.get("next", "/")
    if not (target.startswith("/") and not target.startswith("//")):
        target = "/"
    if not site.guard.right_password(fields.get("password", "")):
        await asyncio.sleep(WRONG_PASSWORD_DELAY)
        return site.page(request, "login.j2", 401, next=target, wrong=True)
    response = RedirectResponse(target, status_code=303)
    site.guard.log_in(response, request, site.clock())
    return secure(response)


async def logout(request: Request) -> Response:
    site = site_of(request)
    fields = await form(request)
    if not site.guard.genuine_post(request, fields.get("csrf", "")):
        raise HTTPException(403, "This form has expired: open the page again")
    response = RedirectResponse("/login", status_code=303)
    site.guard.log_out(response)
    return secure(response)


ROUTES = [
    Route("/", overview),
    Route("/leads", leads),
    Route("/leads/{key}", lead),
    Route("/deliveries/{id:int}/resend", resend, methods=["POST"]),
    Route("/login", login, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["POST"]),
]
