"""Running leadbot for real, through the real `leadbot` process: the systemd unit (checked by
`systemd-analyze`), the Containerfile, `status --check` for health checks, `backup` while `run`
drains (and a restore that announces nothing twice), and JSON log lines.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import PUBLISHED, ROOT, World, query, wait_for

from bot.demo.standin import redate

pytestmark = pytest.mark.timeout(120)

UNIT = ROOT / "deploy" / "leadbot.service"
ENV_EXAMPLE = ROOT / "deploy" / "leadbot.env.example"
CONTAINERFILE = ROOT / "Containerfile"
OPEN = ("pending", "sending", "retrying")


def fresh_leads(count: int, now: datetime | None = None) -> list[str]:
    """`count` leads made from the published examples, each with its own id, dated recently."""
    published = [p.read_text(encoding="utf-8").strip() for p in PUBLISHED]
    docs = [
        re.sub(r'^\{"id": \d+', f'{{"id": {5000 + i}', published[i % len(published)])
        for i in range(count)
    ]
    return redate(docs, now or datetime.now(UTC))


# --- the systemd unit -------------------------------------------------------------------------


def unit_settings() -> dict[str, list[str]]:
    """Key -> every value it is given in the unit (systemd allows a key more than once)."""
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def systemd_analyze() -> str:
    """systemd-analyze, or a skip saying why it cannot run here (a failure in CI, which
    installs Debian's systemd package)."""
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing: .ci/run installs Debian's systemd package")
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    return found


def installed_unit(folder: Path) -> Path:
    """The unit as shipped, its ExecStart pointed at this checkout's leadbot: verify checks that
    the program exists."""
    leadbot = Path(sys.executable).with_name("leadbot")
    assert leadbot.exists(), leadbot
    path = folder / "leadbot.service"
    text = UNIT.read_text(encoding="utf-8")
    path.write_text(text.replace("/opt/leadbot/bin/leadbot", str(leadbot)), encoding="utf-8")
    return path


def test_the_unit_passes_systemd_analyze_verify_without_a_warning(tmp_path: Path) -> None:
    analyze = systemd_analyze()
    probe = tmp_path / "probe.service"
    probe.write_text("[Service]\nExecStart=/bin/true\n", encoding="utf-8")
    done = subprocess.run(
        [analyze, "verify", str(probe)], capture_output=True, text=True, check=False
    )
    if done.returncode or done.stderr.strip():
        pytest.skip(f"systemd-analyze verify cannot run in this container: {done.stderr[:300]}")
    done = subprocess.run(
        [analyze, "verify", str(installed_unit(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    # Unknown keys and bad values are only warnings to systemd: none is allowed here.
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_the_units_sandboxing_rates_ok_with_systemd_analyze_security(tmp_path: Path) -> None:
    analyze = systemd_analyze()
    done = subprocess.run(
        [analyze, "security", "--offline=true", str(installed_unit(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    level = re.search(r"Overall exposure level for leadbot\.service: (\d+\.\d+)", done.stdout)
    if level is None:
        pytest.skip(f"systemd-analyze security --offline cannot run here: {done.stderr[:300]}")
    assert float(level[1]) <= 2.0, done.stdout  # systemd calls up to 2.0 "OK"


def test_the_unit_runs_leadbot_unprivileged_sandboxed_and_restartable() -> None:
    unit = unit_settings()
    one = {key: values[-1] for key, values in unit.items()}
    assert one["ExecStart"].endswith("/leadbot run")
    assert one["User"] == "leadbot" and one["Group"] == "leadbot"
    assert one["StateDirectory"] == "leadbot" and one["StateDirectoryMode"] == "0700"
    assert "LEADBOT_DB=/var/lib/leadbot/leadbot.db" in unit["Environment"]
    assert one["EnvironmentFile"] == "/etc/leadbot/leadbot.env"
    assert one["Restart"] == "on-failure"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "PrivateDevices": "yes",
        "UMask": "0077",
        "CapabilityBoundingSet": "",
    }.items():
        assert one.get(key) == value, key
    # The install steps in the unit's comment give the secrets file mode 0600.
    assert "install -m 0600 deploy/leadbot.env.example /etc/leadbot/leadbot.env" in (
        UNIT.read_text(encoding="utf-8")
    )


def test_the_environment_file_example_names_every_secret_and_no_value() -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert "install -m 0600 -o root -g root" in text
    names = dict(
        line.lstrip("#").split("=", 1)
        for line in text.splitlines()
        if re.match(r"^#?[A-Z_]+=", line)
    )
    assert {"AUTUMNA_API_KEY", "SLACK_BOT_TOKEN", "SMTP_PASSWORD", "TEAMS_OPS_WEBHOOK"} <= set(
        names
    )
    assert set(names.values()) <= {"", "json"}  # an example: no value to leak or to keep


# --- the Containerfile ------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    text = CONTAINERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_the_containerfile_runs_leadbot_as_a_user_with_its_database_on_a_volume() -> None:
    steps = instructions()
    kinds = [kind for kind, _ in steps]
    bases = [arg for kind, arg in steps if kind == "FROM"]
    assert bases and all(re.match(r"python:3\.1[1-9]-slim\b", base) for base in bases), bases
    user = [arg for kind, arg in steps if kind == "USER"][-1]
    assert user not in ("root", "0") and not user.startswith("0:")
    assert kinds.index("CMD") > len(kinds) - 1 - kinds[::-1].index("USER")  # CMD runs as it
    env = " ".join(arg for kind, arg in steps if kind == "ENV")
    assert "LEADBOT_DB=/var/lib/leadbot/leadbot.db" in env
    volumes = [arg for kind, arg in steps if kind == "VOLUME"]
    assert volumes == ['["/var/lib/leadbot"]']
    (health,) = [arg for kind, arg in steps if kind == "HEALTHCHECK"]
    assert health.endswith('CMD ["leadbot", "status", "--check"]'), health
    assert "--start-period=" in health  # no poll yet right after a start is not unhealthy
    assert [arg for kind, arg in steps if kind == "CMD"] == ['["leadbot", "run"]']
    # Secrets come from the environment at run time, never from the image.
    for secret in ("AUTUMNA_API_KEY", "SLACK_BOT_TOKEN", "SMTP_PASSWORD", "WEBHOOK"):
        assert secret not in env and not any(kind == "ARG" and secret in arg for kind, arg in steps)


def test_the_containerfile_copies_only_what_exists_and_leaves_local_state_out() -> None:
    for kind, arg in instructions():
        if kind == "COPY" and not arg.startswith("--from"):
            for source in shlex.split(arg)[:-1]:
                assert (ROOT / source).exists(), source
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for local in (".venv", "*.db*", "leadbot-demo", ".git", "*.env"):
        assert local in ignored, local


# --- status --check ---------------------------------------------------------------------------


def check(world: World, **env: str | None) -> tuple[int, list[str]]:
    done = world.run("status", "--check", env=world.env(**env))
    return done.returncode, (done.stdout + done.stderr).splitlines()


def test_status_check_is_healthy_after_a_good_poll_and_says_so_in_one_line(world: World) -> None:
    assert world.once().returncode == 0
    code, lines = check(world)
    assert code == 0 and len(lines) == 1, lines
    assert re.fullmatch(
        r"healthy: every account polled within 15 min \(default \d+ s ago\)", lines[0]
    ), lines


def test_status_check_is_unhealthy_when_polling_has_failed_for_too_long(world: World) -> None:
    assert world.once().returncode == 0
    world.autumna.fail_next(1, status=500)
    assert world.once().returncode == 1
    world.change("UPDATE polls SET last_success = last_success - 3600")  # an hour ago
    code, lines = check(world)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(
        "unhealthy: account 'default' last polled successfully 1 h ago; last error: "
        "Autumna answered HTTP 500"
    ), lines
    assert lines[0].endswith("(polling.alert_after is 15 min; `leadbot status` shows more)")


def test_status_check_is_unhealthy_before_the_first_good_poll(world: World) -> None:
    code, lines = check(world)
    assert code == 1 and lines == [
        f"leadbot: no database at {world.db} yet: run `leadbot run` first"
    ]
    world.autumna.fail_next(1, status=500)
    assert world.once().returncode == 1
    code, lines = check(world)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(
        "unhealthy: account 'default' has never been polled successfully (last error: "
    ), lines


def test_status_check_names_each_account_that_is_behind(world: World) -> None:
    accounts = '[[autumna.accounts]]\nname = "north"\napi_key = "${KEY_NORTH}"\n\n'
    accounts += '[[autumna.accounts]]\nname = "south"\napi_key = "${KEY_SOUTH}"\n\n'
    text = world.config.read_text(encoding="utf-8")
    world.config.write_text(text.replace("[email]", accounts + "[email]"), encoding="utf-8")
    assert world.once(KEY_NORTH="north-key", KEY_SOUTH="south-key").returncode == 0
    assert check(world)[0] == 0
    world.change("DELETE FROM polls WHERE account = 'south'")
    code, lines = check(world)
    assert code == 1
    assert lines[0].startswith("unhealthy: account 'south' has never been polled successfully")


def test_status_check_with_a_broken_rules_toml_exits_1_not_2(world: World) -> None:
    assert world.once().returncode == 0
    world.config.write_text("[group\n", encoding="utf-8")
    code, lines = check(world)
    assert code == 1  # Docker's HEALTHCHECK reserves 2
    assert lines == [f"unhealthy: {world.config} has 1 problem(s): `leadbot check` lists them"]


def test_status_check_is_healthy_while_run_keeps_polling(world: World) -> None:
    with world.running("run") as process:
        wait_for(
            lambda: query_while_starting(world.db, "SELECT last_success FROM polls"),
            what="the first poll",
        )
        code, lines = check(world)
        assert code == 0 and lines[0].startswith("healthy: "), lines
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


# --- backup and restore -----------------------------------------------------------------------


def statuses(db: Path) -> Counter[str]:
    return Counter(
        row["status"] for row in query_while_starting(db, "SELECT status FROM deliveries")
    )


def query_while_starting(db: Path, sql: str) -> list[sqlite3.Row]:
    """A query that finds nothing (rather than failing) before `run` has made its tables."""
    try:
        return query(db, sql)
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise


def deliveries_by_lead(db: Path) -> dict[str, set[tuple[str, str]]]:
    found: dict[str, set[tuple[str, str]]] = {}
    for row in query(db, "SELECT subject, channel, address FROM deliveries"):
        found.setdefault(row["subject"], set()).add((row["channel"], row["address"]))
    return found


def test_a_backup_is_consistent_owner_only_and_taken_while_run_keeps_draining(
    world: World,
) -> None:
    world.autumna.add(*fresh_leads(16))  # Slack paces each channel at 1/s: a drain of seconds
    copy = world.folder / "backups" / "leadbot-backup.db"
    copy.parent.mkdir()
    with world.running("run") as process:
        wait_for(lambda: statuses(world.db)["sent"] >= 3, what="the drain to begin")
        done = world.run("backup", str(copy))  # `run` holds its lock all along
        assert done.returncode == 0, done.output
        wait_for(
            lambda: statuses(world.db) and not set(statuses(world.db)) & set(OPEN),
            timeout=60,
            what="the drain to finish",
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert f"Backed up {world.db} to {copy}: 16 leads," in done.stdout
    assert "To restore: stop leadbot, delete" in done.stdout
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert sorted(p.name for p in copy.parent.iterdir()) == [copy.name]  # one file, no -wal

    taken = statuses(copy)
    assert taken["sent"] >= 3 and sum(taken[s] for s in OPEN) >= 1, taken  # mid-drain
    db = sqlite3.connect(copy)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        db.close()
    # One transaction writes a lead with its deliveries: the copy has each lead whole.
    final = deliveries_by_lead(world.db)
    assert deliveries_by_lead(copy) == {lead: final[lead] for lead in deliveries_by_lead(copy)}
    assert len(query(copy, "SELECT key FROM leads")) == 16


SLACK_ONLY = """
[[rules]]
name = "Every lead to the home's channel and its manager"
notify = ["home.slack", "home.manager_slack"]
"""


def test_a_backup_taken_during_a_drain_restores_with_nothing_delivered_twice(
    world: World,
) -> None:
    """Back up mid-drain, lose the machine, delete the database, restore the backup, run again:
    no lead is announced as new again, and no message goes out twice. (Slack only: a message
    in flight at the crash is looked up in the channel before it is sent again; email and Teams
    can repeat that one message, as after any crash; see the README.)"""
    text = world.config.read_text(encoding="utf-8")
    world.config.write_text(text.split("[[rules]]")[0] + SLACK_ONLY, encoding="utf-8")
    world.autumna.add(*fresh_leads(12))
    copy = world.folder / "leadbot-backup.db"
    with world.running("run") as process:
        wait_for(lambda: statuses(world.db)["sent"] >= 3, what="the drain to begin")
        process.send_signal(signal.SIGSTOP)  # the drain holds still while the backup is taken
        try:
            done = world.run("backup", str(copy))
            assert done.returncode == 0, done.output
        finally:
            process.send_signal(signal.SIGKILL)  # then the machine is lost
    taken = statuses(copy)
    assert taken["sent"] >= 3 and sum(taken[s] for s in OPEN) >= 1, taken

    for path in world.folder.glob("leadbot.db*"):  # the database, its -wal, -shm and lock
        path.unlink()
    shutil.copy(copy, world.db)  # restore: as the README says
    assert world.once().returncode == 0

    assert len(world.query("SELECT key FROM leads")) == 12  # every lead known: none new
    assert set(statuses(world.db)) == {"sent"}
    posted = Counter(m.metadata["event_payload"]["ref"] for m in world.slack.messages if m.metadata)
    assert len(posted) == 24 and set(posted.values()) == {1}, posted.most_common(3)


def test_backup_says_why_when_it_cannot(world: World) -> None:
    done = world.run("backup", str(world.folder / "copy.db"))
    assert done.returncode == 1
    assert done.stderr.strip() == f"leadbot backup: no database at {world.db}: nothing to back up"
    assert world.once().returncode == 0
    done = world.run("backup", str(world.db))
    assert done.returncode == 1 and "is the live database: name another file" in done.stderr
    done = world.run("backup", str(world.folder / "no" / "such" / "folder" / "copy.db"))
    assert done.returncode == 1 and "cannot write" in done.stderr
    assert not list(world.folder.glob("**/.copy.db.partial-*"))


def test_backup_into_a_folder_writes_a_dated_file(world: World) -> None:
    assert world.once().returncode == 0
    folder = world.folder / "backups"
    folder.mkdir()
    assert world.run("backup", str(folder)).returncode == 0
    (made,) = folder.iterdir()
    assert re.fullmatch(r"leadbot-\d{8}T\d{6}Z\.db", made.name), made.name


# --- JSON log lines ---------------------------------------------------------------------------


def test_json_logs_are_one_object_a_line_with_each_deliverys_outcome(world: World) -> None:
    world.autumna.add(*fresh_leads(8))
    world.slack.fail_channel("#willow-house", "channel_not_found")  # dead: gave up
    world.teams.fail_next(1, 500, webhook="group")  # retrying: left for the next run
    done = world.once(LEADBOT_LOG_FORMAT="json")
    assert done.returncode == 1  # a delivery was dead-lettered during the run
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # every line is JSON
    for line in lines:
        moment = datetime.fromisoformat(line["time"])
        assert moment.utcoffset() is not None and line["time"].endswith("+05:30")
        assert line["level"] in ("DEBUG", "INFO", "WARNING", "ERROR") and line["message"]
    deliveries = [line for line in lines if line.get("event") == "delivery"]
    outcomes = Counter(line["outcome"] for line in deliveries)
    assert outcomes["sent"] >= 10 and outcomes["dead"] >= 1 and outcomes["retrying"] == 1
    sent = next(line for line in deliveries if line["outcome"] == "sent")
    assert sent["lead"] and sent["destination"] and sent["channel"] in ("slack", "email", "teams")
    assert sent["message"].startswith("sent ")
    dead = next(line for line in deliveries if line["outcome"] == "dead")
    assert dead["destination"] == "home.slack" and dead["address"] == "#willow-house"
    assert dead["error"] == "Slack error channel_not_found" and dead["level"] == "ERROR"
    retrying = next(line for line in deliveries if line["outcome"] == "retrying")
    assert retrying["destination"] == "group-teams" and retrying["error"] == "HTTP 500 from Teams"
    assert "left for the next run" in retrying["message"]


def test_an_unknown_log_format_is_said_and_text_is_written(world: World) -> None:
    done = world.once(LEADBOT_LOG_FORMAT="xml")
    assert done.returncode == 0
    first = done.stderr.splitlines()[0]
    assert first.endswith("LEADBOT_LOG_FORMAT is 'xml': it can be text or json; writing text")
    assert not first.startswith("{")
