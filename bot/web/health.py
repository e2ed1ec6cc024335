"""/healthz and /metrics, for the monitoring a group already runs. Neither needs a login, so
neither says anything about a lead: account names (from rules.toml), ages, counts.

/healthz is 200 while the run loop turns (it did within LOOP_LIMIT seconds) and every account
has polled Autumna successfully within `polling.alert_after` (counted from the console's start
for an account not polled yet); 503 with the reasons otherwise.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..store import Store
from .guard import secure
from .pages import site_of

if TYPE_CHECKING:
    from .site import Site

LOOP_LIMIT = 30.0  # seconds: the loop turns at least once a second when it is well


async def healthz(request: Request) -> Response:
    site = site_of(request)
    now = site.clock()
    try:
        body = await site.run(check, site, now)
    except sqlite3.Error as exc:
        body = {"status": "failing", "reasons": [f"the database cannot be read ({exc})"]}
    code = 200 if body["status"] == "ok" else 503
    return secure(JSONResponse(body, status_code=code))


def check(store: Store, site: Site, now: float) -> dict[str, Any]:
    reasons = []
    body: dict[str, Any] = {}
    runner = site.runner
    if runner is not None:
        turned = runner.heartbeat or site.started  # not turned yet: counted from the start
        body["loop"] = {"seconds_since_turn": round(now - turned, 1)}
        if now - turned > LOOP_LIMIT:
            reasons.append(f"the run loop has not turned for {now - turned:.0f} s")
    limit = site.config.polling.alert_after.total_seconds()
    polls = store.poll_states()
    accounts = {}
    for account in site.config.accounts:
        success = (polls.get(account.name) or {}).get("last_success")
        age = now - (success or site.started)
        accounts[account.name] = {
            "seconds_since_success": round(age, 1) if success else None,
            "ok": age <= limit,
        }
        if age > limit:
            reasons.append(
                f"account {account.name!r}: no successful poll for {age:.0f} s "
                f"(polling.alert_after is {limit:.0f} s)"
            )
    body["accounts"] = accounts
    return {"status": "failing" if reasons else "ok", **body, "reasons": reasons}


async def metrics(request: Request) -> Response:
    site = site_of(request)
    data = await run_in_threadpool(generate_latest, site.registry)
    return secure(Response(data, media_type=CONTENT_TYPE_LATEST))
