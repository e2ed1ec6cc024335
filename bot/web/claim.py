"""Claim links: `/claim/<token>` from an email or a Teams card. No login: the signed token is
the permission, for one lead, until it expires. The page shows a minimal summary (personal
details only as `privacy.web` allows) and a form for a name; sending it records the claim the
way a Slack claim is recorded (claims.record: first wins, escalation stops, the Slack messages
are edited). A forged, altered or expired token gets a 403 page and changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import links
from ..claims import ClaimEvent, record
from ..store import Store
from .pages import form, site_of
from .stats import home_name
from .timeline import arrival, lead_details

if TYPE_CHECKING:
    from .site import Site

NAME_LIMIT = 100


async def claim_page(request: Request) -> Response:
    site = site_of(request)
    now = site.clock()
    try:
        lead = links.verify(site.settings.web_secret, request.path_params["token"], now)
    except links.BadLink as exc:
        why = str(exc)
        text = f"{why[:1].upper()}{why[1:]}. Nothing was changed."
        return site.page(request, "problem.j2", 403, title="This link does not work", text=text)
    fields = await form(request) if request.method == "POST" else {}
    if request.method == "POST" and not site.guard.genuine_post(request, fields.get("csrf", "")):
        return site.page(
            request,
            "problem.j2",
            403,
            title="This form has expired",
            text="Nothing was changed: open the link from your message again.",
        )
    name = " ".join(fields.get("name", "").split())[:NAME_LIMIT]
    claiming = request.method == "POST" and bool(name)
    data = await site.run(claim_lead, site, lead, name if claiming else "", now)
    if data is None:
        return site.page(
            request,
            "problem.j2",
            404,
            title="This lead is not in leadbot's records",
            text="Nothing was changed.",
        )
    status = 400 if request.method == "POST" and not claiming else 200
    return site.page(
        request,
        "claim.j2",
        status,
        name=name,
        asked=request.method == "POST",
        now=now,
        **data,
    )


def claim_lead(store: Store, site: Site, lead: str, name: str, now: float) -> dict[str, Any] | None:
    """The lead's summary and claim, after claiming it for `name` if one is given."""
    row = store.lead_row(lead)
    if row is None or row["unreadable"]:
        return None
    won = bool(name) and record(store, ClaimEvent(via="web", by_name=name, lead=lead, at=now), now)
    details = lead_details(row, site.config)
    return {
        "key": lead,
        "category": row["category"] or "Lead",
        "home": home_name(site.config, row["service_id"]),
        "arrived": arrival(row),
        "enquirer": (details or {}).get("lead", {}).get("enquirer", ""),
        "claim": store.claim_of(lead),
        "won": won,
    }


ROUTES = [Route("/claim/{token}", claim_page, methods=["GET", "POST"])]
