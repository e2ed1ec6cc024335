"""The `leadbot` command: run, check, explain, status, claim, resend, purge, report,
digest, init, send-test, backup.

Exit codes: 0 success; 1 something needs attention at run time (a poll failed under --once,
another instance holds the database); 2 bad config or usage.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from .config import ConfigError
from .logformat import JsonFormatter
from .settings import RedactingFilter, redact

log = logging.getLogger("leadbot")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for name in ("config", "db", "log_level"):  # given before or after the command, or not
        setattr(args, name, getattr(args, name, None))
    setup_logging(args.log_level)
    from . import commands  # after parsing: `leadbot --help` need not load the pipeline

    command: Callable[[argparse.Namespace], int] = getattr(commands, args.command)
    try:
        return command(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(
            f"{len(exc.problems)} problem{'s' * (len(exc.problems) != 1)} to fix.", file=sys.stderr
        )
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `leadbot explain ... | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        # One line, redacted: a traceback could carry a key, a webhook URL or a lead's details.
        # Exit 1, so a supervisor (systemd's Restart=on-failure) starts leadbot again.
        message = redact(f"{type(exc).__name__}: {exc}")[:500].replace("\n", " ")
        print(f"leadbot: stopped by an error it cannot recover from: {message}", file=sys.stderr)
        return 1


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="rules.toml to use (env LEADBOT_CONFIG; default ./rules.toml)",
    )
    common.add_argument(
        "--db",
        type=Path,
        default=argparse.SUPPRESS,
        help="SQLite database (env LEADBOT_DB; default ./leadbot.db; the demo always uses its "
        "own, leadbot-demo/leadbot.db)",
    )
    common.add_argument(
        "--log-level",
        default=argparse.SUPPRESS,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="env LEADBOT_LOG_LEVEL; default INFO",
    )
    top = argparse.ArgumentParser(
        prog="leadbot",
        parents=[common],
        description=(
            "Polls Autumna for new care home leads and delivers each to the right people on "
            "Slack, email and Microsoft Teams, as rules.toml says."
        ),
    )
    sub = top.add_subparsers(title="commands", required=True, metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="poll and deliver, in a loop")
    run.add_argument("--once", action="store_true", help="one cycle, then exit")
    run.add_argument(
        "--backfill",
        action="store_true",
        help="first start: announce leads older than the lookback too",
    )
    run.add_argument(
        "--demo",
        action="store_true",
        help="run the demo: a bundled local Autumna, messages written to leadbot-demo/ "
        "(its own database; keys in the environment are not used)",
    )
    run.set_defaults(command="run")

    check = sub.add_parser(
        "check", parents=[common], help="validate rules.toml, templates and environment"
    )
    check.add_argument(
        "--demo", action="store_true", help="check for the demo: skip the environment checks"
    )
    check.add_argument(
        "--online",
        action="store_true",
        help="also ask Autumna which services the keys cover, and compare them with the homes",
    )
    check.set_defaults(command="check")

    init = sub.add_parser(
        "init",
        parents=[common],
        help="write a starting rules.toml: your homes from Autumna when a key is set, else the "
        "documented example",
    )
    init.add_argument("--force", action="store_true", help="replace an existing file")
    init.set_defaults(command="init")

    explain = sub.add_parser(
        "explain",
        parents=[common],
        help="show how a lead would be routed and rendered; sends nothing",
    )
    explain.add_argument("lead_file", type=Path, metavar="LEAD.json")
    explain.set_defaults(command="explain")

    resend = sub.add_parser(
        "resend",
        parents=[common],
        help=("queue dead and retrying deliveries again, once their cause is fixed"),
    )
    which = resend.add_argument_group("which deliveries (at least one)")
    which.add_argument("--all", action="store_true", help="every dead or retrying delivery")
    which.add_argument("--lead", metavar="KEY", help="one lead, e.g. 4:2000")
    which.add_argument(
        "--destination", metavar="NAME", help="a destination name, address or channel:address"
    )
    resend.add_argument("--dead", action="store_true", help="only dead ones, not retrying ones")
    resend.set_defaults(command="resend")

    purge = sub.add_parser(
        "purge",
        parents=[common],
        help=("erase personal details older than privacy.retention now (run does it daily)"),
    )
    purge.set_defaults(command="purge")

    claim = sub.add_parser(
        "claim",
        parents=[common],
        help="record that someone will call the family (e.g. who answered the email)",
    )
    claim.add_argument("lead", metavar="KEY", help="the lead, e.g. 4:2000")
    claim.add_argument("--by", required=True, metavar="NAME", help="who will call them")
    claim.add_argument("--demo", action="store_true", help="a lead in the demo's database")
    claim.set_defaults(command="claim")

    status = sub.add_parser("status", parents=[common], help="recent leads and their deliveries")
    status.add_argument("--limit", type=int, default=20, help="how many leads (default 20)")
    status.add_argument("--demo", action="store_true", help="the demo's database")
    status.add_argument(
        "--check",
        action="store_true",
        help="one line; exit 1 unless every account polled within polling.alert_after "
        "(a health check)",
    )
    status.set_defaults(command="status")

    send_test = sub.add_parser(
        "send-test",
        parents=[common],
        help="send a clearly marked test message to a destination; records nothing",
    )
    send_test.add_argument(
        "destination", nargs="?", metavar="DESTINATION", help="a name in [destinations], or home.*"
    )
    send_test.add_argument("--home", metavar="SERVICE_ID", help="the home, for home.* names")
    send_test.add_argument("--all", action="store_true", help="every destination, once each")
    send_test.set_defaults(command="send_test")

    backup = sub.add_parser(
        "backup",
        parents=[common],
        help="copy the database, consistently, while leadbot runs (owner-only file)",
    )
    backup.add_argument("path", type=Path, metavar="PATH", help="a file, or a folder")
    backup.set_defaults(command="backup")

    report = sub.add_parser(
        "report",
        parents=[common],
        help="every lead with its first message and claim, and each home's response times",
    )
    report.add_argument(
        "--since",
        default="30d",
        metavar="WHEN",
        help='how far back: "30d", "12h", or a date like 2026-11-01 (default 30d)',
    )
    report.add_argument("--home", metavar="NAME", help="one home, by name or service id")
    report.add_argument(
        "--format",
        choices=["table", "csv", "json"],
        default="table",
        help="csv opens in Excel (UTF-8, ISO 8601 times); default table",
    )
    report.set_defaults(command="leads_report")  # commands.report is the printing module

    digest = sub.add_parser(
        "digest", parents=[common], help="show a [[digests]] digest as it goes, without sending"
    )
    digest.add_argument("name", metavar="NAME", help="its name in rules.toml")
    digest.add_argument(
        "--preview", action="store_true", required=True, help="write it; send nothing"
    )
    digest.add_argument(
        "--to",
        type=Path,
        metavar="FOLDER",
        help="write each channel's payload here (.json, .eml and .html); default: print it",
    )
    digest.set_defaults(command="digest")
    return top


def setup_logging(level: str | None) -> None:
    name = (level or os.environ.get("LEADBOT_LOG_LEVEL") or "INFO").upper()
    handler = logging.StreamHandler(sys.stderr)
    log_format = os.environ.get("LEADBOT_LOG_FORMAT", "").strip().lower()
    if log_format == "json":  # one JSON object per line, for log shippers
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(Formatter("%(asctime)s %(levelname)-7s %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, name, logging.INFO))
    if root.level > logging.DEBUG:
        # These print request URLs at INFO; the Autumna key travels in the query string.
        for noisy in ("httpx", "httpcore", "slack_sdk", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    else:
        # At DEBUG slack-sdk prints every request body: the enquirers' personal details.
        logging.getLogger("slack_sdk").setLevel(logging.INFO)
    if log_format not in ("", "text", "json"):
        log.warning("LEADBOT_LOG_FORMAT is %r: it can be text or json; writing text", log_format)


class Formatter(logging.Formatter):
    """Times as ISO 8601 with the date and the offset: 2026-12-01T14:05:09+00:00."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="seconds")
