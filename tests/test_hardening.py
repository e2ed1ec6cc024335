"""What a real deployment hits, through the real `leadbot` process: no silent demo, no poll body
or busy database that can kill the loop, a `--once` that always ends, an old database upgraded
in place, and log lines that say when."""

from __future__ import annotations

import hashlib
import re
import shutil
import signal
import socket
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from conftest import (
    ROOT_RULES,
    World,
    bare_env,
    published_by_key,
    run_leadbot,
    wait_for,
    write_rules,
)

from bot.demo.standin import redate
from bot.store import Store

V1_DATABASE = Path(__file__).parent / "fixtures" / "leadbot-v1.db"
ISO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d (INFO|WARNING|ERROR|DEBUG)")


def leadbot(folder: Path, *args: str, **variables: str) -> tuple[int, str, str]:
    done = run_leadbot([sys.executable, "-m", "bot", *args], bare_env(folder, **variables), folder)
    return done.returncode, done.stdout, done.stderr


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def a_real_database(folder: Path) -> Path:
    """A group's live database (leadbot 1.0's, with 20 leads), and its write-ahead log."""
    path = folder / "live" / "leadbot.db"
    path.parent.mkdir()
    shutil.copy(V1_DATABASE, path)
    return path


# --- 1. the demo only when asked ------------------------------------------------------------


def test_run_without_a_key_exits_2_naming_it_and_touches_nothing(tmp_path: Path) -> None:
    live = a_real_database(tmp_path)
    before = digest(live)
    code, _, err = leadbot(tmp_path, "--config", str(ROOT_RULES), "run", LEADBOT_DB=str(live))
    assert code == 2
    assert "AUTUMNA_API_KEY is not set" in err and "problems to fix" in err
    assert not (tmp_path / "leadbot-demo").exists()  # no silent demo
    assert digest(live) == before and sorted(p.name for p in live.parent.iterdir()) == [
        "leadbot.db"
    ]


def test_a_missing_account_key_is_named_by_its_own_variable(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        ROOT_RULES.read_text(encoding="utf-8").replace(
            '# [[autumna.accounts]]\n# name = "north"\n# api_key = "${AUTUMNA_KEY_NORTH}"',
            '[[autumna.accounts]]\nname = "north"\napi_key = "${AUTUMNA_KEY_NORTH}"',
        ),
        encoding="utf-8",
    )
    code, _, err = leadbot(tmp_path, "--config", str(rules), "run", "--once")
    assert code == 2
    assert "AUTUMNA_KEY_NORTH is not set" in err and "'north'" in err
    code, _, err = leadbot(tmp_path, "--config", str(rules), "check")
    assert code == 2 and "AUTUMNA_KEY_NORTH is not set" in err


def test_the_demo_never_opens_the_database_that_leadbot_db_or_db_names(tmp_path: Path) -> None:
    live = a_real_database(tmp_path)
    before = digest(live)
    code, out, err = leadbot(
        tmp_path,
        "--config",
        str(ROOT_RULES),
        "run",
        "--demo",
        "--once",
        LEADBOT_DB=str(live),
        AUTUMNA_API_KEY="a-real-key-that-the-demo-must-not-use",
    )
    assert code == 0, err
    assert "Demo summary" in out and "20 leads" in out
    assert "the Autumna key in the environment is not used" in err  # the demo wins, and says so
    assert "LEADBOT_DB is not used" in err
    assert "a-real-key" not in out + err
    assert digest(live) == before  # byte for byte: no watermark moved, no demo lead stored
    assert sorted(p.name for p in live.parent.iterdir()) == ["leadbot.db"]  # no -wal, no lock
    assert (tmp_path / "leadbot-demo" / "leadbot.db").exists()

    code, out, err = leadbot(
        tmp_path, "--config", str(ROOT_RULES), "--db", str(live), "run", "--demo", "--once"
    )
    assert code == 0 and "--db is not used" in err and "Nothing new" in out
    assert digest(live) == before


def test_status_never_falls_back_to_the_demo_database(tmp_path: Path) -> None:
    code, _, _ = leadbot(tmp_path, "--config", str(ROOT_RULES), "run", "--demo", "--once")
    assert code == 0
    code, out, err = leadbot(tmp_path, "--config", str(ROOT_RULES), "status")
    assert code == 1 and "no database at leadbot.db" in err and out == ""
    code, out, _ = leadbot(tmp_path, "--config", str(ROOT_RULES), "status", "--demo")
    assert code == 0 and "Deliveries:" in out and "sent     slack" in out  # the demo's


# --- 2. nothing that comes back from Autumna can kill the loop ---------------------------------


def fresh(key: str) -> str:
    """A published lead dated a few minutes ago: within a running leadbot's next window."""
    return redate([published_by_key()[key]], datetime.now(UTC))[0]


def fast_polls(world: World, extra: str = "") -> None:
    rules = write_rules(world.folder, world.smtp.ca_file, extra=extra)
    rules.write_text(
        rules.read_text(encoding="utf-8").replace('interval = "1m"', 'interval = "1s"'),
        encoding="utf-8",
    )
    world.config = rules


def test_a_body_labelled_gzip_that_is_not_is_a_failed_poll_and_the_loop_lives(
    world: World,
) -> None:
    fast_polls(world)
    world.autumna.fail_next(1, status=200, body='[{"id": 1}]', encoding="gzip")
    with world.running("run") as process:
        wait_for(lambda: len(world.autumna.requests) >= 2, what="a poll after the bad one")
        world.autumna.add(fresh("2:1811"))
        wait_for(lambda: world.slack.messages_for("#rose-lodge"), what="the next lead delivered")
        assert process.poll() is None  # alive
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "could not be read (DecodingError)" in stderr
    assert "Traceback" not in stderr
    (poll,) = world.query("SELECT * FROM polls")
    assert poll["last_error"] == ""  # recovered


def test_the_loop_waits_out_a_database_locked_by_another_program(world: World) -> None:
    fast_polls(world)
    with world.running("run") as process:
        wait_for(lambda: world.autumna.requests, what="the first poll")
        time.sleep(0.5)
        holder = sqlite3.connect(world.db, timeout=30, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds on past the busy timeout
        world.autumna.add(fresh("2:1811"))
        time.sleep(12)
        assert process.poll() is None  # alive, waiting
        holder.execute("COMMIT")
        holder.close()
        wait_for(lambda: world.slack.messages_for("#rose-lodge"), what="the lead delivered")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "the database is busy (database is locked)" in stderr
    assert "Traceback" not in stderr


def test_an_error_it_cannot_survive_exits_1_with_one_redacted_line(world: World) -> None:
    world.db.write_bytes(b"this is not a database, and api_key=SeCrEt123 is not for logs" * 100)
    result = world.once()
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "stopped by an error it cannot recover from: DatabaseError" in result.stderr
    assert "SeCrEt123" not in result.output


# --- 3. `run --once` always ends ---------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_once_ends_in_bounded_time_when_retries_are_quick_and_smtp_is_down(
    world: World,
) -> None:
    world.config = write_rules(
        world.folder, world.smtp.ca_file, extra='\n[retries]\nfirst = "1s"\ncap = "2s"\n'
    )
    world.autumna.add(published_by_key()["4:2000"])  # urgent: two emails
    started = time.monotonic()
    result = world.once(SMTP_PORT=str(closed_port()))
    elapsed = time.monotonic() - started
    assert elapsed < 30, f"--once took {elapsed:.0f} s"
    assert result.returncode == 0, result.stderr  # retrying is normal: the next run goes on
    assert "left for the next run" in result.stderr
    statuses = {(r["channel"], r["status"], r["attempts"]) for r in world.deliveries().values()}
    assert ("email", "retrying", 1) in statuses  # tried once in this run, not until give_up


def test_run_once_waits_for_a_short_retry_after_within_the_run(world: World) -> None:
    world.autumna.add(published_by_key()["2:1811"])
    world.slack.fail_next(1, status=429, retry_after=1, method="chat.postMessage")
    result = world.once()
    assert result.returncode == 0, result.stderr
    assert {r["status"] for r in world.deliveries().values()} == {"sent"}


# --- 4. foundations -------------------------------------------------------------------------------


def test_a_v1_database_is_upgraded_in_place_and_keeps_everything(tmp_path: Path) -> None:
    path = a_real_database(tmp_path)
    store = Store(path)
    try:
        applied = [r["name"] for r in store.db.query("SELECT name FROM _sqlite_migrations")]
        assert applied[:2] == ["v1_schema", "v2_claims"]  # and every later one, once
        assert len(applied) == len(set(applied))
        assert store.db.execute("SELECT COUNT(*) FROM leads").fetchone()[0] == 20
        assert store.counts() == {"sent": 50}
        assert store.poll_state("default") is not None
    finally:
        store.close()
    again = Store(path)  # a second start applies nothing twice
    try:
        count = again.db.execute("SELECT COUNT(*) FROM _sqlite_migrations").fetchone()[0]
        assert count == len(applied)
    finally:
        again.close()
    code, out, _ = leadbot(tmp_path, "--config", str(ROOT_RULES), "--db", str(path), "status")
    assert code == 0 and "Deliveries:" in out and "sent     slack" in out  # the demo's


def test_log_lines_carry_the_date_and_the_offset(world: World) -> None:
    world.autumna.add(published_by_key()["2:1811"])
    result = world.once()
    lines = result.stderr.splitlines()
    assert lines and all(ISO_LINE.match(line) for line in lines), lines[:3]
    assert "+05:30 INFO" in result.stderr  # the test's TZ is Asia/Kolkata


def test_an_smtp_port_that_is_not_a_number_is_a_configuration_error(world: World) -> None:
    result = world.run("check", env=world.env(SMTP_PORT="587a"))
    assert result.returncode == 2
    assert "SMTP_PORT is '587a', not a port number" in result.stderr
    assert world.once(SMTP_PORT="smtp").returncode == 2


def test_the_shipped_autumna_stand_in_has_no_fault_hooks() -> None:
    from bot.demo import standin

    assert not hasattr(standin, "Fault")
    assert not hasattr(standin.AutumnaStandin, "fail_next")
