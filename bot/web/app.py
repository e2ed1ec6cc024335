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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import uvicorn
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ..claims import minutes
from ..config import Config
from ..outbox import lead_of
from ..render import Renderer, builtin_templates
from ..settings import Settings, redact
from ..store import Store
from . import claim, health, pages
from .guard import Guard, secure
from .metrics import Figures, Figuring, Snapshot
from .stats import CACHE_SECONDS, HomeTimes, response_times
from .timeline import moment
from .warm import Warm

log = logging.getLogger(__name__)
T = TypeVar("T")


class Loop(Protocol):
    """What the console reads of the run loop (runner.Runner)."""

    heartbeat: float  # when the loop last turned
    poll_seconds: list[float]  # how long the recent polls took


@dataclass
class Site:
    """Everything a page needs, built once per app."""

    started_with: Config  # `config` is the run loop's, which a reload (SIGHUP) replaces
    settings: Settings
    db_path: Path
    runner: Loop | None
    clock: Callable[[], float]
    claiming: str
    started: float = 0.0
    guard: Guard = field(init=False)
    templates: Environment = field(init=False)
    rendering: tuple[Config, Renderer] | None = None
    registry: CollectorRegistry = field(init=False)
    render_lock: threading.Lock = field(default_factory=threading.Lock)
    metrics: Warm[Snapshot] = field(init=False)  # what /metrics reads from the database
    stats: Warm[list[HomeTimes]] = field(init=False)  # the overview's response times

    def __post_init__(self) -> None:
        self.started = self.clock()
        self.guard = Guard(
            self.settings.web_password, self.settings.web_secret, self.config.web.public_url
        )
        self.templates = Environment(
            loader=FileSystemLoader(builtin_templates() / "web"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.globals |= {
            "group": self.config.group,
            "minutes": minutes,
            "age": age,
            "moment": lambda at: moment(at, self.config),
            "lead_of": lead_of,
        }
        figures = Figures()

        def snapshot() -> Snapshot:
            with self.store() as store:
                return figures.update(store, self.config, self.clock())

        def homes() -> list[HomeTimes]:
            with self.store() as store:
                return response_times(store, self.config, self.clock())

        self.metrics = Warm(snapshot, 0.0, self.clock)
        self.stats = Warm(homes, CACHE_SECONDS, self.clock)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(Figuring(self))
        ProcessCollector(registry=self.registry)

    @property
    def config(self) -> Config:
        current = getattr(self.runner, "config", None)
        return current if isinstance(current, Config) else self.started_with

    @property
    def renderer(self) -> Renderer:
        """Messages as the run renders them now: with the config it has now."""
        config, rendering = self.config, self.rendering
        if rendering is None or rendering[0] is not config:
            rendering = self.rendering = (
                config,
                Renderer(config, self.claiming, self.settings.web_secret),
            )
        return rendering[1]

    @contextmanager
    def store(self) -> Iterator[Store]:
        """A connection of this request's own (never the run loop's)."""
        store = Store(self.db_path)
        try:
            yield store
        finally:
            store.close()

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """`work(store, *args)` on a worker thread, with a connection opened there."""

        def call() -> T:
            with self.store() as store:
                return work(store, *args)

        return await run_in_threadpool(call)

    def page(
        self, request: Request, template: str, status: int = 200, **values: Any
    ) -> HTMLResponse:
        cookie, token = self.guard.form_token(request)
        html = self.templates.get_template(template).render(
            csrf=token,
            logged_in=self.guard.password and self.guard.logged_in(request, self.clock()),
            **values,
        )
        response = HTMLResponse(html, status_code=status)
        self.guard.keep_form_cookie(response, request, cookie)
        return secure(response)


def age(seconds: float) -> str:
    """How long, as a person says it; under a minute in seconds."""
    return f"{max(0, round(seconds))} s" if seconds < 60 else minutes(seconds)


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
    routes = [
        *pages.ROUTES,
        *claim.ROUTES,
        Route("/healthz", health.healthz),
        Route("/metrics", health.metrics),
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
