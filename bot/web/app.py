"""The web console's app: `create_app` builds it from its dependencies (the config, the
environment's settings, the database's path, the run loop when there is one, a clock), like
Datasette's core; `serve` runs it with uvicorn on a daemon thread of `leadbot run`.

The console is a front door to the store, like the CLI: it never touches the run loop's
connection or its stages. Each request opens its own connection (SQLite's busy timeout orders
it with the loop's writes), and each change it makes is one store call (a claim, a resend),
which the loop picks up from the database within a second, as it does `leadbot claim`'s.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..config import Config
from ..settings import Settings, redact
from .claim import ROUTES as CLAIM_ROUTES
from .health import healthz, metrics
from .metrics import Figures, Figuring, Snapshot
from .pages import ROUTES as PAGE_ROUTES
from .site import Loop, Site
from .stats import CACHE_SECONDS, HomeTimes, response_times
from .timeline import moment
from .warm import Warm

log = logging.getLogger(__name__)


def create_app(
    config: Config,
    settings: Settings,
    db_path: Path | str,
    *,
    runner: Loop | None = None,
    clock: Callable[[], float] = time.time,
    claiming: str = "",
) -> Starlette:
    """The console as an ASGI app. `claiming` is how people claim in Slack (as the run's
    renderer has it), so the messages shown on a lead's page are the ones that were sent."""
    site = Site(config, settings, Path(db_path), runner, clock, claiming)
    site.templates.globals["moment"] = lambda at: moment(at, site.config)
    figures = Figures()

    def snapshot() -> Snapshot:
        with site.store() as store:
            return figures.update(store, site.config, site.clock())

    def homes() -> list[HomeTimes]:
        with site.store() as store:
            return response_times(store, site.config, site.clock())

    site.metrics = Warm(snapshot, 0.0, site.clock)
    site.stats = Warm(homes, CACHE_SECONDS, site.clock)
    site.registry = CollectorRegistry(auto_describe=False)
    site.registry.register(Figuring(site))
    ProcessCollector(registry=site.registry)
    routes = [
        *PAGE_ROUTES,
        *CLAIM_ROUTES,
        Route("/healthz", healthz),
        Route("/metrics", metrics),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _crash},
    )
    app.state.site = site
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    site: Site = request.app.state.site
    return site.page(request, "problem.j2", exc.status_code, title=exc.detail, text="")


async def _crash(request: Request, exc: Exception) -> Response:
    """A page that fails says so; the loop, on its own thread, never notices."""
    route = request.scope.get("route")  # its pattern: a claim link's token stays out of the log
    where = getattr(route, "path", "a page")
    log.error("web console: %s failed: %s", where, redact(repr(exc))[:300])
    site: Site = request.app.state.site
    return site.page(
        request,
        "problem.j2",
        500,
        title="Something went wrong",
        text="This page failed; leadbot itself goes on delivering leads. The log says why.",
    )


class Serving:
    """The console running on its own thread; calling it stops it (a closer of the run)."""

    def __init__(
        self,
        server: uvicorn.Server | None = None,
        thread: threading.Thread | None = None,
        port: int = 0,
    ) -> None:
        self.server, self.thread, self.port = server, thread, port

    def __call__(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=5)


def serve(app: Any, listen: str) -> Serving:
    """Listen on `listen` ("host:port"; port 0 takes a free one) and serve `app` on a daemon
    thread. The socket is bound here, so a busy port is said at once; leadbot then goes on
    delivering leads without its console."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
        sock.listen(128)
    except (OSError, ValueError) as exc:
        sock.close()
        log.error(
            "the web console cannot listen on %s (%s): leadbot goes on without it; set "
            "[web] listen or LEADBOT_WEB_LISTEN to a free port",
            listen,
            exc,
        )
        return Serving()
    config = uvicorn.Config(
        app,
        log_config=None,  # leadbot's logging, with its filter that keeps secrets out
        access_log=False,  # a claim link's token is in its path
        lifespan="off",
        loop="asyncio",
        http="h11",
        server_header=False,
        limit_concurrency=64,
    )
    server = uvicorn.Server(config)

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # the console's end is never the loop's
            log.error("the web console stopped: %s", redact(repr(exc))[:300])
        finally:
            sock.close()

    thread = threading.Thread(target=run, name="web", daemon=True)
    serving = Serving(server, thread, sock.getsockname()[1])
    thread.start()
    shown = f"[{host}]" if ":" in host else host
    log.info("web console: http://%s:%d/", shown, serving.port)
    return serving
