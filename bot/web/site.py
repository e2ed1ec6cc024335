"""What every page of the console shares: the config (as the run loop has it now), the
settings, the database (a connection per request), the templates and the login. Kept apart from
app.py, which builds the app from the pages, so the pages can name it without a circle."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from prometheus_client import CollectorRegistry
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse

from ..claims import minutes
from ..config import Config
from ..outbox import lead_of
from ..render import Renderer, builtin_templates
from ..settings import Settings
from ..store import Store
from .guard import Guard, secure
from .warm import Warm

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
    registry: CollectorRegistry = field(init=False)  # set by create_app, as are these two
    render_lock: threading.Lock = field(default_factory=threading.Lock)
    metrics: Warm[Any] = field(init=False)  # what /metrics reads: metrics.Snapshot
    stats: Warm[Any] = field(init=False)  # the overview's response times: stats.HomeTimes

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
            "lead_of": lead_of,
        }

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
