"""1. Pipeline CPU: parse + route + render for every target of every lead, on one core, against
`json.loads` of the same bytes as the floor.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bot.config import Config
from bot.loader import load_config
from bot.models import Facts, Lead
from bot.parse import parse_body
from bot.render import Renderer
from bot.rules import route

from .harness import Row, Table, timed
from .workload import ACCOUNT, body, lead_documents, utcnow, write_rules

TARGET_LEADS_PER_S = 5000


def pipeline(text: str, config: Config, renderer: Renderer) -> tuple[int, float, float, float]:
    """What leadbot does for each new lead, minus I/O: returns messages and seconds per stage."""
    parse_s, batch = timed(lambda: parse_body(text, ACCOUNT))
    route_s = render_s = 0.0
    messages = 0
    clock = time.perf_counter
    for lead in batch.leads:
        start = clock()
        routing = route(lead, config)
        routed = clock()
        facts = Facts(routing.urgent, routing.unrouted, tuple(routing.notes))
        for target in routing.targets:
            renderer.render(lead, target, facts, f"{lead.key}/{target.key}")
        route_s += routed - start
        render_s += clock() - routed
        messages += len(routing.targets)
    return messages, parse_s, route_s, render_s


def warm(renderer: Renderer, config: Config, leads: list[Lead]) -> None:
    """Compile every template chain before timing, as a running leadbot has long done."""
    for lead in leads:
        routing = route(lead, config)
        for target in routing.targets:
            renderer.render(lead, target, Facts(routing.urgent, routing.unrouted))
    renderer.forget()  # compiled templates stay; no render of these leads is kept


def run(table: Table, folder: Path, quick: bool) -> None:
    count = 2000 if quick else 10_000
    config = load_config(write_rules(folder / "cpu"))
    text = body(lead_documents(count, utcnow()))
    renderer = Renderer(config)
    warm(renderer, config, parse_body(text, ACCOUNT).leads[:400])

    repeats = 1 if quick else 2
    floor = min(timed(lambda: json.loads(text))[0] for _ in range(5))
    runs = []
    for _ in range(repeats):
        renderer.forget()
        runs.append(pipeline(text, config, renderer))
    messages, parse_s, route_s, render_s = min(runs, key=lambda r: sum(r[1:]))
    total = parse_s + route_s + render_s
    rate = count / total
    table.add(
        Row(
            "1",
            f"Pipeline CPU: parse + route + render, {count:,} leads, 50 homes, 20 rules",
            f"{rate:,.0f} leads/s, {total / count * 1e6:,.0f} µs/lead ({messages:,} messages, "
            f"{messages / count:.1f}/lead)",
            f"{total / floor:,.0f}× `json.loads` of the same {len(text) / 1e6:.1f} MB "
            f"({floor * 1000:.0f} ms)",
            f"≥ {TARGET_LEADS_PER_S:,} leads/s",
            rate >= TARGET_LEADS_PER_S,
            f"per lead: parse {parse_s / count * 1e6:,.0f} µs ({parse_s / floor:.0f}× json.loads), "
            f"route {route_s / count * 1e6:,.0f} µs, render {render_s / count * 1e6:,.0f} µs "
            f"({render_s / messages * 1e6:,.0f} µs/message); one thread, best of {repeats}",
        )
    )
    if rate < TARGET_LEADS_PER_S:
        sample = text[: len(text) // 10].rsplit(",\n", 1)[0] + "]"
        table.note(
            "1: where the time goes (cProfile, share of the pipeline's time; nested "
            "rows overlap): " + profile(sample, config, renderer)
        )
        table.note("1: each template block, in µs per lead: " + per_block(sample, config))

    quoted = quirky_body(text)
    clean_s = min(timed(lambda: parse_body(text, ACCOUNT))[0] for _ in range(repeats))
    quirky_s = min(timed(lambda: parse_body(quoted, ACCOUNT))[0] for _ in range(repeats))
    table.add(
        Row(
            "1b",
            "Parse of the same body when one record has typographic quotes (as two of "
            "Autumna's published examples do)",
            f"{quirky_s * 1000:,.0f} ms vs {clean_s * 1000:,.0f} ms",
            f"{quirky_s / clean_s:.1f}× the clean body",
            "—",
            None,
            "one bad record sends the whole body through a second decode, after `repair_quotes` "
            "(one regular-expression pass) has mended it",
        )
    )


def quirky_body(text: str) -> str:
    """The same body with the last record's onBehalfOf in “…”, which is not JSON."""
    head, _, tail = text.rpartition('"onBehalfOf": "')
    value, _, rest = tail.partition('"')
    return f'{head}"onBehalfOf": “{value}”{rest}'


STAGES = {  # what to call it: (file, function) whose cumulative time it is
    "email MIME composition (`channels/email.compose`, stdlib `email`)": (
        "bot/channels/email.py",
        "compose",
    ),
    "Jinja blocks (`Renderer.parts`)": ("bot/render.py", "parts"),
    "  of which escaping (`finalize` → `escape.*`)": ("bot/render.py", "finalize"),
    "  of which Jinja contexts (`new_context`)": ("jinja2/environment.py", "new_context"),
    "routing (`rules.route`)": ("bot/rules.py", "route"),
    "parsing (`parse.parse_body`)": ("bot/parse.py", "parse_body"),
    "the view (`view.lead_view`)": ("bot/view.py", "lead_view"),
    "Slack JSON (`channels/slack.compose`)": ("bot/channels/slack.py", "compose"),
    "Teams card (`channels/teams.compose`)": ("bot/channels/teams.py", "compose"),
}


def profile(text: str, config: Config, renderer: Renderer) -> str:
    """Share of the pipeline's time in each stage (cumulative, so nested rows overlap)."""
    profiler = cProfile.Profile()
    profiler.enable()
    pipeline(text, config, renderer)
    profiler.disable()
    rows = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = next(
        row[3]
        for (path, _, name), row in rows.items()
        if name == "pipeline" and path.endswith("cpu.py")
    )
    shares = []
    for label, (suffix, function) in STAGES.items():
        seconds = sum(
            row[3]
            for (path, _, name), row in rows.items()
            if name == function and path.replace("\\", "/").endswith(suffix)
        )
        shares.append(f"{label.strip()} {seconds / total:.0%}")
    return "; ".join(shares)


def per_block(text: str, config: Config) -> str:
    """The time of each template block per lead (what a render that is not shared costs), by
    timing every block function of every compiled template while the pipeline runs."""
    renderer = Renderer(config)
    leads = parse_body(text, ACCOUNT).leads
    warm(renderer, config, leads)
    spent: defaultdict[tuple[str, str], float] = defaultdict(float)
    for env in renderer.envs.values():
        for name in env.list_templates():
            if name.endswith(".j2") and "/web/" not in name:
                template = env.get_template(name)
                channel = name.split("/")[1]
                for block, render in list(template.blocks.items()):
                    template.blocks[block] = _stopwatch(render, spent, (channel, block))
    start = time.perf_counter()
    pipeline(text, config, renderer)
    total = time.perf_counter() - start
    count, blocks = len(leads), sum(spent.values())
    largest = sorted(spent.items(), key=lambda item: -item[1])[:8]
    top = ", ".join(
        f"{channel} {block} {seconds / count * 1e6:.0f}" for (channel, block), seconds in largest
    )
    return (
        f"all blocks {blocks / count * 1e6:.0f} of the pipeline's {total / count * 1e6:.0f} "
        f"(the rest: parse, route, views, contexts, MIME and JSON); the largest: {top}"
    )


def _stopwatch(
    render: Callable[[Any], Iterator[str]],
    spent: defaultdict[tuple[str, str], float],
    key: tuple[str, str],
) -> Callable[[Any], Iterator[str]]:
    def timed_block(context: Any) -> Iterator[str]:
        start = time.perf_counter()
        text = list(render(context))
        spent[key] += time.perf_counter() - start
        yield from text

    return timed_block
