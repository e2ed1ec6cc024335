"""The `leadbot` command as a person meets it: check, explain, status, the demo, exit codes.

Every test runs the real command as a subprocess (`python -m bot`) with a controlled environment.
Exit codes (README): 0 success; 1 needs attention at run time; 2 bad config or usage.
"""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path

import pytest
from conftest import (
    API_KEY,
    PUBLISHED,
    PUBLISHED_ROUTES,
    ROOT_RULES,
    SLACK_TOKEN,
    TEAMS_VARS,
    Result,
    World,
    bare_env,
    published_by_key,
    run_leadbot,
    wait_for,
)
from standins.validators import (
    assert_multipart_alternative,
    parse_email,
    validate_slack_message,
    validate_teams_messages,
)

pytestmark = pytest.mark.timeout(60)

WEBHOOK = "https://prod-42.uksouth.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig="


def leadbot(folder: Path, *args: str, **variables: str) -> Result:
    return run_leadbot([sys.executable, "-m", "bot", *args], bare_env(folder, **variables), folder)


# --- check -----------------------------------------------------------------------------------


def test_check_demo_accepts_the_root_rules_toml(tmp_path: Path) -> None:
    result = leadbot(tmp_path, "--config", str(ROOT_RULES), "check", "--demo")
    assert result.returncode == 0, result.stderr
    assert "rules.toml is valid" in result.stdout
    assert "the environment was not checked" in result.stdout  # the demo needs nothing


def test_check_without_a_key_exits_2_naming_the_variable(tmp_path: Path) -> None:
    result = leadbot(tmp_path, "--config", str(ROOT_RULES), "check")
    assert result.returncode == 2
    assert "AUTUMNA_API_KEY is not set" in result.stderr
    assert "leadbot run --demo" in result.stderr  # and how to try it without one


def test_check_with_every_secret_set_checks_the_environment_too(tmp_path: Path) -> None:
    result = leadbot(
        tmp_path,
        "check",
        "--config",
        str(ROOT_RULES),
        AUTUMNA_API_KEY=API_KEY,
        SLACK_BOT_TOKEN=SLACK_TOKEN,
        TEAMS_OPS_WEBHOOK=WEBHOOK + "opsSig1",
        TEAMS_NORTH_WEBHOOK=WEBHOOK + "northSig2",
    )
    assert result.returncode == 0, result.stderr
    assert "every secret and endpoint is set" in result.stdout
    for secret in (API_KEY, SLACK_TOKEN, "opsSig1", "northSig2"):
        assert secret not in result.stdout + result.stderr


def test_check_accepts_the_test_rules_with_the_stand_ins_environment(world: World) -> None:
    result = world.run("check")
    assert result.returncode == 0, result.stderr
    assert "4 destinations, 4 rules" in result.stdout
    assert "every secret and endpoint is set" in result.stdout
    assert world.slack.requests == [] and world.teams.requests == []  # check sends nothing


BROKEN_RULES = """\
[group]
name = "Rose Care Homes"
timezone = "Europe/Londn"

[polling]
interval = "often"

[email]
sender = "leads at rosecare"
tls = "plaintext"

[routing]
fallback = "group-leds"

[homes.100000]
name = "Rose Lodge"
slack = "rose-lodge"

[destinations]
group-leads = { slack = "#group-leads" }
inbox = { email = ["sales@rosecare.example"] }
ops-teams = { teams = "https://prod-00.westeurope.logic.azure.com/workflows/a?sig=TopSecretSig99" }

[[rules]]
name = "Call-backs"
when = { categroy = "Call Back Request" }
notify = ["group-leads"]

[[rules]]
name = "Sales"
notify = ["inboxx"]
"""

EVERY_MISTAKE = [
    'rules.toml: rules[0].when.categroy: unknown key (did you mean "category"?)',
    "rules.toml: rules[1].notify[0]: unknown destination 'inboxx' (did you mean \"inbox\"?)",
    "rules.toml: destinations.ops-teams.teams: secrets never go in rules.toml: put the value in "
    'an environment variable and write "${TEAMS_WEBHOOK_URL}" here',
    "rules.toml: routing.fallback: unknown destination 'group-leds' (did you mean "
    '"group-leads"?)',
    "rules.toml: group.timezone: unknown time zone 'Europe/Londn'",
    "rules.toml: polling.interval: expected a duration",
    "rules.toml: email.tls: expected one of starttls, implicit, none",
    "rules.toml: email.sender: 'leads at rosecare' is not an email address",
    "rules.toml: homes.100000.slack: 'rose-lodge' is not a Slack channel",
]


def test_check_lists_every_mistake_with_its_key_path(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(BROKEN_RULES, encoding="utf-8")
    result = leadbot(tmp_path, "--config", str(rules), "check")
    assert result.returncode == 2
    problems = [line for line in result.stderr.splitlines() if line.startswith("rules.toml: ")]
    for mistake in EVERY_MISTAKE:
        assert any(line.startswith(mistake) for line in problems), (mistake, result.stderr)
    assert f"{len(problems)} problems to fix." in result.stderr
    assert "Traceback" not in result.stderr
    assert "TopSecretSig99" not in result.stdout + result.stderr  # not even when mistyped


def test_check_says_when_rules_toml_is_not_toml(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[group]\nname = "Rose Care Homes\n', encoding="utf-8")
    result = leadbot(tmp_path, "--config", str(rules), "check")
    assert result.returncode == 2
    assert "rules.toml: not valid TOML" in result.stderr


def test_check_names_each_missing_environment_variable(tmp_path: Path) -> None:
    result = leadbot(tmp_path, "--config", str(ROOT_RULES), "check", AUTUMNA_API_KEY=API_KEY)
    assert result.returncode == 2
    for variable in ("SLACK_BOT_TOKEN", "TEAMS_OPS_WEBHOOK", "TEAMS_NORTH_WEBHOOK"):
        assert re.search(rf"^environment: {variable} is not set", result.stderr, re.M), variable
    assert "3 problems to fix." in result.stderr

    partly = leadbot(
        tmp_path,
        "--config",
        str(ROOT_RULES),
        "check",
        AUTUMNA_API_KEY=API_KEY,
        SLACK_BOT_TOKEN=SLACK_TOKEN,
        TEAMS_OPS_WEBHOOK=WEBHOOK + "opsSig1",
    )
    assert partly.returncode == 2
    assert "TEAMS_NORTH_WEBHOOK is not set" in partly.stderr
    assert "SLACK_BOT_TOKEN" not in partly.stderr and "TEAMS_OPS_WEBHOOK" not in partly.stderr
    assert "1 problem to fix." in partly.stderr


def test_run_refuses_to_start_with_a_variable_missing(world: World) -> None:
    result = world.once(SLACK_BOT_TOKEN=None)
    assert result.returncode == 2
    assert "SLACK_BOT_TOKEN is not set" in result.stderr
    assert world.autumna.requests == []  # nothing was polled


# --- explain ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lead_file", PUBLISHED, ids=[p.name for p in PUBLISHED])
def test_explain_shows_rules_destinations_and_messages_and_sends_nothing(
    world: World, lead_file: Path
) -> None:
    key, expected = PUBLISHED_ROUTES[lead_file.name]
    result = world.run("explain", str(lead_file))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"Lead {key}:" in out
    assert re.search(r"✓ rules\[3\] 'Everything goes to the group channel'", out)
    shown = set(re.findall(r"^  → (\w+):(\S+)", out, re.M))
    vars_of = {name: var for var, name in TEAMS_VARS.items()}
    assert shown == {(c, vars_of[a] if c == "teams" else a) for c, a in expected}
    rendered = re.findall(r"^── (\w+) message to (\S+) ──$", out, re.M)
    assert sorted(rendered) == sorted(shown)
    for channel, _ in rendered:
        if channel != "email":
            assert '"type"' in out  # the JSON that would be posted
    # it sent nothing and remembered nothing
    assert world.autumna.requests == [] and world.slack.requests == []
    assert world.teams.requests == [] and world.smtp.connections == 0
    assert not world.db.exists()


def test_explain_names_the_urgent_call_back_rule(world: World) -> None:
    result = world.run("explain", str(PUBLISHED[3]))
    assert result.returncode == 0
    assert "✓ rules[1] 'Call-back requests are urgent' [urgent]" in result.stdout
    assert "Urgent: yes" in result.stdout
    assert "Subject: URGENT" in result.stdout


def test_explain_refuses_a_file_that_is_not_json(world: World) -> None:
    notes = world.folder / "notes.txt"
    notes.write_text("Called Mrs Smith back on Tuesday; she will visit next week.\n")
    result = world.run("explain", str(notes))
    assert result.returncode == 2
    assert "notes.txt" in result.stderr and "not JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_explain_says_when_the_file_cannot_be_read(world: World) -> None:
    result = world.run("explain", str(world.folder / "missing.json"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "missing.json" in result.stderr


# --- status ----------------------------------------------------------------------------------


def test_status_shows_the_leads_and_each_deliverys_state(world: World) -> None:
    leads = published_by_key()
    world.autumna.add(leads["2:1811"], leads["4:2000"])
    world.teams.fail_next(1, 500, webhook="group")
    assert world.once().returncode == 0

    # options after the command work too
    result = run_leadbot(
        [
            sys.executable,
            "-m",
            "bot",
            "status",
            "--config",
            str(world.config),
            "--db",
            str(world.db),
        ],
        world.env(),
        world.folder,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"default: last success", out)
    assert re.search(r"^\s+4:2000\s.*Call Back Request.*Rose Lodge.*URGENT", out, re.M)
    assert re.search(r"^\s+2:1811\s.*In Person Visit Request.*Rose Lodge", out, re.M)
    rows = world.query("SELECT * FROM deliveries")
    assert len(rows) == 7
    assert sorted(r["status"] for r in rows) == ["retrying"] + ["sent"] * 6
    for row in rows:
        line = rf"^\s+{row['status']}\s+{row['channel']}\s+{re.escape(row['address'])}\b"
        assert re.search(line, out, re.M), (line, out)
    assert re.search(r"retrying\s+teams\s+TEAMS_GROUP_WEBHOOK.*HTTP 500", out)


def test_status_without_a_database_says_so(tmp_path: Path) -> None:
    result = leadbot(
        tmp_path, "--config", str(ROOT_RULES), "--db", str(tmp_path / "none.db"), "status"
    )
    assert result.returncode == 1
    assert "no database" in result.stderr and "none.db" in result.stderr
    assert not (tmp_path / "none.db").exists()


# --- usage, help, python -m bot ----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["run", "--bogus"],
        ["--log-level", "LOUD", "status"],
        ["explain"],
        ["status", "--limit", "many"],
    ],
    ids=[
        "no-command",
        "unknown-command",
        "unknown-option",
        "bad-log-level",
        "missing-file",
        "bad-limit",
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    result = leadbot(tmp_path, *args)
    assert result.returncode == 2
    assert "usage: leadbot" in result.stderr


def test_python_m_bot_help_lists_the_commands(tmp_path: Path) -> None:
    result = leadbot(tmp_path, "--help")
    assert result.returncode == 0
    for command in ("run", "check", "explain", "status"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.M), command
    run_help = leadbot(tmp_path, "run", "--help")
    assert run_help.returncode == 0
    assert "--once" in run_help.stdout and "--backfill" in run_help.stdout


def test_the_leadbot_script_is_python_m_bot(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "leadbot"
    if not script.exists():
        pytest.skip("leadbot is not installed as a script in this environment")
    result = run_leadbot([str(script), "--help"], bare_env(tmp_path), tmp_path)
    assert result.returncode == 0
    assert result.stdout == leadbot(tmp_path, "--help").stdout


# --- the demo --------------------------------------------------------------------------------


def test_run_demo_once_writes_every_message_into_leadbot_demo(tmp_path: Path) -> None:
    result = leadbot(tmp_path, "--config", str(ROOT_RULES), "run", "--demo", "--once")
    assert result.returncode == 0, result.stderr
    assert "Demo summary" in result.stdout
    demo = tmp_path / "leadbot-demo"
    slack, email, teams = (
        sorted((demo / c).glob(f"*.{ext}"))
        for c, ext in (("slack", "json"), ("email", "eml"), ("teams", "json"))
    )
    assert slack and email and teams
    for path in slack:
        payload = json.loads(path.read_text(encoding="utf-8"))
        validate_slack_message(payload)
        assert payload["metadata"]["event_type"] == "autumna_lead"
    validate_teams_messages(
        [json.loads(p.read_text(encoding="utf-8")) for p in teams], use_node=False
    )
    for path in email:
        message = parse_email(path.read_bytes())
        assert_multipart_alternative(message)
        assert message["Message-ID"] and message["To"]
    assert (demo / "leadbot.db").exists()
    assert not (tmp_path / "leadbot.db").exists()

    again = leadbot(tmp_path, "--config", str(ROOT_RULES), "run", "--demo", "--once")
    assert again.returncode == 0
    assert "Nothing new" in again.stdout
    assert sorted((demo / "slack").glob("*.json")) == slack


# --- one leadbot per database ----------------------------------------------------------------


def test_a_second_run_on_the_same_database_refuses_to_start(world: World) -> None:
    world.autumna.add(published_by_key()["1:2000"])
    with world.running("run") as first:
        wait_for(lambda: world.teams.requests, what="the first leadbot to deliver")
        second = world.once()
        assert second.returncode == 1
        assert "already running" in second.stderr and str(world.db) in second.stderr
        assert first.poll() is None  # the first one carries on
        status = world.run("status")  # reading the database is fine meanwhile
        assert status.returncode == 0 and "1:2000" in status.stdout
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    assert first.returncode == 0
    assert len(world.teams.requests) == 1  # delivered once, by the first
    assert len(world.autumna.requests) == 1  # the second never polled
