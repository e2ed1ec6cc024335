"""Onboarding: `leadbot init` writes a starting rules.toml from Autumna's organisations endpoint
(or the documented example without a key), and `leadbot check --online` compares rules.toml with
what the keys cover.

The commands run as the real `leadbot` process against the Autumna stand-in, which answers the
organisations endpoint in several shapes (its real shape is not published); the parser and the
writer are also tested in-process on odd shapes and hostile names.
"""

from __future__ import annotations

import json
import sys
import threading
import tomllib
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from conftest import API_KEY, ROOT_RULES, Result, bare_env, run_leadbot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standins.autumna import ORGANISATIONS, AutumnaStandin

from bot.config import ConfigError
from bot.loader import Loader, load_config
from bot.onboard import keys_in, organisations_url
from bot.organisations import ListedService, Listing, Organisation, parse_organisations
from bot.parse import PollError
from bot.placeholders import placeholder_warnings
from bot.starter import starter

pytestmark = pytest.mark.timeout(60)

NORTH_KEY = "N0rthK3yN0rthK3yN0rthK3yN0rthK3yN0rthK3y"
SOUTH_KEY = "S0uthK3yS0uthK3yS0uthK3yS0uthK3yS0uthK3y"
SLACK_TOKEN = "xoxb-4242424242-1717171717-Qw3rTy8uIo9pAs2dFg5hJk7l"
WEBHOOK = "https://prod-42.uksouth.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig="


@pytest.fixture
def autumna() -> Iterator[AutumnaStandin]:
    standin = AutumnaStandin()
    standin.thread = threading.Thread(  # a quick shutdown: serve_forever polls every 0.5 s
        target=standin.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    with standin:
        yield standin


def leadbot(folder: Path, *args: str, **variables: str) -> Result:
    return run_leadbot([sys.executable, "-m", "bot", *args], bare_env(folder, **variables), folder)


def init(folder: Path, autumna: AutumnaStandin, *args: str, **keys: str) -> Result:
    return leadbot(folder, "init", *args, AUTUMNA_API_URL=autumna.url, **keys)


def homes_in(path: Path) -> dict[int, dict[str, Any]]:
    return {int(k): v for k, v in tomllib.loads(path.read_text("utf-8"))["homes"].items()}


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (API_KEY, NORTH_KEY, SOUTH_KEY):
            assert secret not in text


# --- init, one key, every shape --------------------------------------------------------------

# shape -> (homes written: id -> name, organisations found, what the terminal says besides)
SHAPES: dict[str, tuple[dict[int, str], int, list[str]]] = {
    "nested": (
        {100000: "Rose Lodge", 200000: "Willow House", 300000: "Oak Manor"},
        1,
        ["Rose Care Group Ltd: 3 services", "[homes.300000] Oak Manor (LS1 4DY)"],
    ),
    "wrapped": (
        {100000: "Rose Lodge", 400000: "Birch Court"},
        1,
        ["Not understood, kept as comments in the file: isActive, url."],
    ),
    "single": ({200000: "Willow House"}, 1, ["Willow Care: 1 service"]),
    "flat": (
        {100000: "Rose Lodge", 500000: "Elm Grange"},
        2,
        ["Elm Homes Scotland: 1 service", "read as a list of services"],
    ),
    "ids": (
        {100000: "CHANGE-ME (service 100000)", 200000: "CHANGE-ME (service 200000)"},
        1,
        ["[homes.200000] no name given: CHANGE-ME in the file"],
    ),
    "keyed": ({100000: "Rose Lodge", 200000: "Willow House"}, 0, ["(no organisation given)"]),
    "odd": (
        {100000: 'Rose Lodge "East" [homes.1] slack = "#x"'},
        2,
        [
            "Dormant Ltd: no services",
            "Skipped 2 (kept as comments in the file)",
            'a service ("Nameless Id") with no usable service id',
            'service 100000 ("Rose Lodge (listed twice)") is listed twice: the first is kept',
            "Not understood, kept as comments in the file: meta, rating, ratingSummary.",
        ],
    ),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_init_writes_a_home_per_service_whatever_the_shape(
    shape: str, tmp_path: Path, autumna: AutumnaStandin
) -> None:
    homes, organisations, said = SHAPES[shape]
    autumna.serve_organisations(shape)
    result = init(tmp_path, autumna, AUTUMNA_API_KEY=API_KEY)
    assert result.returncode == 0, result.output
    s = "s" * (len(homes) != 1)
    assert f"Autumna lists {organisations} organisation" in result.stdout
    assert f"and {len(homes)} service{s} for AUTUMNA_API_KEY" in result.stdout
    for line in said:
        assert line in result.stdout
    assert f"Wrote rules.toml: {len(homes)} home{s}." in result.stdout
    written = homes_in(tmp_path / "rules.toml")
    assert {sid: home["name"] for sid, home in written.items()} == homes
    for home in written.values():  # every home's people are placeholders to fill in
        assert home["slack"] == "#CHANGE-ME"
        assert home["manager_slack"] == "CHANGE-ME"
        assert home["manager_email"] == "CHANGE-ME@example.invalid"
    assert autumna.requests == [{"api_key": "***"}]  # one request for the one key
    assert_no_secret(result.output, (tmp_path / "rules.toml").read_text("utf-8"))


def test_what_autumna_says_about_a_home_is_kept(tmp_path: Path, autumna: AutumnaStandin) -> None:
    autumna.serve_organisations("wrapped")
    assert init(tmp_path, autumna, AUTUMNA_API_KEY=API_KEY).returncode == 0
    text = (tmp_path / "rules.toml").read_text("utf-8")
    rose = homes_in(tmp_path / "rules.toml")[100000]
    assert rose["postcode"] == "SW1A 1AA"  # padding gone
    assert rose["beds"] == 42  # a number, though Autumna sent "42"
    assert rose["care_type"] == "Nursing"
    assert (
        "# from Autumna, not understood: url = "
        "https://www.autumna.co.uk/care-homes/london/rose-lodge" in text
    )
    assert "# --- From Autumna: organisation Rose Care Group Ltd" in text

    autumna.serve_organisations("single")
    assert init(tmp_path, autumna, "--force", AUTUMNA_API_KEY=API_KEY).returncode == 0
    willow = homes_in(tmp_path / "rules.toml")[200000]
    assert willow["town"] == "Manchester" and willow["address"] == "1 Mill Lane"
    assert willow["nation"] == "england"  # whose bank holidays the home keeps
    text = (tmp_path / "rules.toml").read_text("utf-8")
    # Autumna's address for the home is offered, never made a destination by itself
    assert '# email = "willow.house@willowcare.example"' in text
    assert "email" not in willow
    assert 'name = "Willow Care"' in text  # one organisation: the group's name


def test_the_result_passes_check_with_each_placeholder_a_warning(
    tmp_path: Path, autumna: AutumnaStandin
) -> None:
    autumna.serve_organisations("nested")
    assert init(tmp_path, autumna, AUTUMNA_API_KEY=API_KEY).returncode == 0
    result = leadbot(tmp_path, "check", "--demo")
    assert result.returncode == 0, result.output
    assert "rules.toml is valid: 3 homes, 2 destinations, 5 rules" in result.stdout
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
    expected = [
        'email.host: placeholder "CHANGE-ME": write the mail server',
        'email.sender: placeholder "Leads <CHANGE-ME@example.invalid>": write the address',
        'homes.100000.slack: placeholder "#CHANGE-ME": write Rose Lodge\'s Slack channel',
        'homes.200000.manager_slack: placeholder "CHANGE-ME": write the Slack member id of '
        "Willow House's manager",
        'homes.300000.manager_email: placeholder "CHANGE-ME@example.invalid": write the email '
        "address of Oak Manor's manager",
        'destinations.group-leads.slack: placeholder "#CHANGE-ME": write the Slack channel',
        "destinations.ops-alerts.email[0]: placeholder",
    ]
    for text in expected:
        assert any(f"warning: rules.toml: {text}" in w for w in warnings), text
    assert len(warnings) == 2 + 3 * 3 + 2  # [email], three per home, two destinations

    # and a real check says what else is missing from the environment, the placeholders still
    # warnings, not errors
    result = leadbot(tmp_path, "check", AUTUMNA_API_KEY=API_KEY, SLACK_BOT_TOKEN=SLACK_TOKEN)
    assert result.returncode == 0, result.output
    assert result.stdout.count("warning: ") == len(warnings)


def test_once_filled_in_no_warning_is_left(tmp_path: Path, autumna: AutumnaStandin) -> None:
    autumna.serve_organisations("single")
    assert init(tmp_path, autumna, AUTUMNA_API_KEY=API_KEY).returncode == 0
    path = tmp_path / "rules.toml"
    text = path.read_text("utf-8")
    for placeholder, value in (
        ('"#CHANGE-ME"', '"#willow-house"'),
        ('"CHANGE-ME@example.invalid"', '"tom.reid@willowcare.example"'),
        ('"CHANGE-ME"', '"U024BE7LJ"'),
        ('"Leads <CHANGE-ME@example.invalid>"', '"Willow leads <leads@willowcare.example>"'),
    ):
        text = text.replace(placeholder, value)
    path.write_text(text.replace('host = "U024BE7LJ"', 'host = "smtp.willowcare.example"'))
    result = leadbot(tmp_path, "check", "--demo")
    assert result.returncode == 0, result.output
    assert "warning" not in result.output


# --- init: several keys, failures, the example, an existing file --------------------------------


def test_several_accounts_are_asked_one_request_each(
    tmp_path: Path, autumna: AutumnaStandin
) -> None:
    autumna.serve_organisations("nested", key=NORTH_KEY)
    autumna.serve_organisations("flat", key=SOUTH_KEY)
    result = init(tmp_path, autumna, AUTUMNA_KEY_NORTH=NORTH_KEY, AUTUMNA_KEY_SOUTH=SOUTH_KEY)
    assert result.returncode == 0, result.output
    assert len(autumna.requests) == 2
    assert "account 'north' (AUTUMNA_KEY_NORTH): 3 services" in result.stdout
    assert "account 'south' (AUTUMNA_KEY_SOUTH): 1 service" in result.stdout
    assert "service 100000 is listed for accounts 'north' and 'south'" in result.stdout
    raw = tomllib.loads((tmp_path / "rules.toml").read_text("utf-8"))
    assert raw["autumna"]["accounts"] == [
        {"name": "north", "api_key": "${AUTUMNA_KEY_NORTH}"},
        {"name": "south", "api_key": "${AUTUMNA_KEY_SOUTH}"},
    ]
    assert sorted(int(k) for k in raw["homes"]) == [100000, 200000, 300000, 500000]
    assert '# --- From Autumna: organisation Elm Homes Scotland, account "south"' in (
        tmp_path / "rules.toml"
    ).read_text("utf-8")
    assert raw["homes"]["500000"]["nation"] == "scotland"
    check = leadbot(tmp_path, "check", "--demo")
    assert check.returncode == 0, check.output
    assert_no_secret(result.output)


FAILURES: dict[str, tuple[dict[str, Any], str]] = {
    "HTTP 500, as Autumna answers a wrong key": (
        {"status": 500},
        "Autumna answered HTTP 500. Autumna answers a wrong API key the same way as an outage: "
        "check that AUTUMNA_API_KEY holds the Service API Key of account 'default'",
    ),
    "an error in a 200 answer": (
        {"status": 200, "body": ORGANISATIONS["refused"]},
        'Autumna answered with an error: ["Invalid API key"]',
    ),
    "an HTML page": (
        {
            "status": 200,
            "body": "<html><body>Maintenance</body></html>",
            "content_type": "text/html",
        },
        'not JSON (37 characters, starting "<html><body>Maintena"). Check AUTUMNA_API_KEY',
    ),
    "a dropped connection": ({"drop": True}, "could not reach Autumna (RemoteProtocolError)"),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_when_autumna_does_not_answer_nothing_is_written(
    failure: str, tmp_path: Path, autumna: AutumnaStandin
) -> None:
    fault, said = FAILURES[failure]
    autumna.fail_next(2, **fault)  # httpx retries a dropped connection once
    result = leadbot(
        tmp_path,
        "--log-level",
        "DEBUG",
        "init",
        AUTUMNA_API_URL=autumna.url,
        AUTUMNA_API_KEY=API_KEY,
    )
    assert result.returncode == 1, result.output
    assert said in result.stderr
    assert "Nothing was written." in result.stderr
    assert not (tmp_path / "rules.toml").exists()
    assert_no_secret(result.output)  # even at DEBUG, where httpx logs every URL


def test_one_refused_key_of_two_stops_it_all(tmp_path: Path, autumna: AutumnaStandin) -> None:
    autumna.serve_organisations("nested", key=NORTH_KEY)  # the south key gets HTTP 500
    result = init(tmp_path, autumna, AUTUMNA_KEY_NORTH=NORTH_KEY, AUTUMNA_KEY_SOUTH="short-key")
    assert result.returncode == 1
    assert "for AUTUMNA_KEY_SOUTH (account 'south'): Autumna answered HTTP 500" in result.stderr
    assert "40 letters and digits (this one has 9 characters, not all letters and digits)" in (
        result.stderr
    )
    assert not (tmp_path / "rules.toml").exists()


def test_a_key_that_covers_no_service_writes_nothing(
    tmp_path: Path, autumna: AutumnaStandin
) -> None:
    autumna.serve_organisations("empty")
    result = init(tmp_path, autumna, AUTUMNA_API_KEY=API_KEY)
    assert result.returncode == 1
    assert "Autumna lists no services for AUTUMNA_API_KEY" in result.stderr
    assert not (tmp_path / "rules.toml").exists()


def test_without_a_key_init_writes_the_documented_example(
    tmp_path: Path, autumna: AutumnaStandin
) -> None:
    result = init(tmp_path, autumna)
    assert result.returncode == 0, result.output
    assert "No Autumna key in the environment" in result.stdout
    assert (tmp_path / "rules.toml").read_bytes() == ROOT_RULES.read_bytes()
    assert autumna.requests == []
    check = leadbot(tmp_path, "check", "--demo")
    assert check.returncode == 0 and "warning" not in check.output, check.output


def test_an_existing_file_is_replaced_only_with_force(
    tmp_path: Path, autumna: AutumnaStandin
) -> None:
    autumna.serve_organisations("nested")
    mine = tmp_path / "mine.toml"
    mine.write_text("# my own rules, months of work\n")
    result = init(tmp_path, autumna, "--config", str(mine), AUTUMNA_API_KEY=API_KEY)
    assert result.returncode == 1
    assert "mine.toml already exists: nothing was written. Give --force" in result.stderr
    assert mine.read_text() == "# my own rules, months of work\n"
    assert autumna.requests == []  # not even asked

    result = init(tmp_path, autumna, "--config", str(mine), "--force", AUTUMNA_API_KEY=API_KEY)
    assert result.returncode == 0, result.output
    assert sorted(homes_in(mine)) == [100000, 200000, 300000]
    assert [p.name for p in tmp_path.iterdir()] == ["mine.toml"]  # no temporary file left


# --- check --online --------------------------------------------------------------------------


def online(folder: Path, autumna: AutumnaStandin, config: Path, **extra: str) -> Result:
    return leadbot(
        folder,
        "check",
        "--online",
        "--config",
        str(config),
        AUTUMNA_API_URL=autumna.url,
        AUTUMNA_API_KEY=API_KEY,
        SLACK_BOT_TOKEN=SLACK_TOKEN,
        TEAMS_OPS_WEBHOOK=WEBHOOK + "opsSig1",
        TEAMS_NORTH_WEBHOOK=WEBHOOK + "northSig2",
        **extra,
    )


def test_check_online_names_homes_not_covered_and_services_missing(
    tmp_path: Path, autumna: AutumnaStandin
) -> None:
    autumna.serve_organisations("wrapped")  # 100000 and 400000; the example has 1, 2 and 300000
    result = online(tmp_path, autumna, ROOT_RULES)
    assert result.returncode == 0, result.output
    assert "rules.toml is valid" in result.stdout
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: rules.toml: homes.200000 (Willow House): Autumna does not list service 200000 "
        "for AUTUMNA_API_KEY, so no lead for it will come: check the service id, or add the "
        "[[autumna.accounts]] entry whose key covers it",
        "warning: rules.toml: homes.300000 (Oak Manor): Autumna does not list service 300000 "
        "for AUTUMNA_API_KEY, so no lead for it will come: check the service id, or add the "
        "[[autumna.accounts]] entry whose key covers it",
        'warning: rules.toml: service 400000 "Birch Court", Rose Care Group Ltd (account '
        "'default') has no home in rules.toml: its leads go to the fallback (group-leads). Add "
        '[homes.400000] with name = "Birch Court" (`leadbot init --config new.toml` writes one '
        "to copy from)",
    ]
    assert "2 homes not covered, 1 service without a home." in result.stdout
    assert autumna.requests == [{"api_key": "***"}]
    assert_no_secret(result.output)


def test_check_online_after_init_finds_everything_in_place(
    tmp_path: Path, autumna: AutumnaStandin
) -> None:
    autumna.serve_organisations("nested")
    assert init(tmp_path, autumna, AUTUMNA_API_KEY=API_KEY).returncode == 0
    result = online(tmp_path, autumna, tmp_path / "rules.toml")
    assert result.returncode == 0, result.output
    assert "each is a home here, and each home is among them" in result.stdout
    assert "does not list" not in result.stdout and "has no home" not in result.stdout


def test_check_online_when_autumna_refuses_exits_1(tmp_path: Path, autumna: AutumnaStandin) -> None:
    autumna.fail_next(1, status=500)
    result = online(tmp_path, autumna, ROOT_RULES)
    assert result.returncode == 1
    assert "leadbot check --online: Autumna did not list the services for AUTUMNA_API_KEY" in (
        result.stderr
    )
    assert_no_secret(result.output)


def test_check_online_is_not_for_the_demo(tmp_path: Path) -> None:
    result = leadbot(tmp_path, "check", "--online", "--demo", "--config", str(ROOT_RULES))
    assert result.returncode == 2
    assert "--online asks the real Autumna; leave out --demo" in result.stderr


# --- the parser, in-process, on odd shapes -----------------------------------------------------

PARSED: dict[str, tuple[str, dict[int, str], list[str]]] = {
    # name: (body, services id -> name, organisations)
    "bare ids": ('[100000, "200000", 300000.0]', {100000: "", 200000: "", 300000: ""}, []),
    "snake case and padding": (
        '[{"organisation_id": " 7 ", "organisation_name": "  Rose  Care ", '
        '"service_list": [{"service_id": "100000", "service_name": "\\tRose Lodge  "}]}]',
        {100000: "Rose Lodge"},
        ["Rose Care"],
    ),
    "results wrapper with a nested data wrapper": (
        '{"results": {"data": [{"id": 1, "name": "A", "homes": [{"id": 5, "name": "H"}]}]}}',
        {5: "H"},
        ["A"],
    ),
    "services keyed by id inside an organisation": (
        '{"id": 1, "name": "A", "services": {"5": "Five", "6": {"name": "Six"}}}',
        {5: "Five", 6: "Six"},
        ["A"],
    ),
    "a service that says what it is": (
        '[{"type": "service", "id": 9, "name": "Nine", "providerName": "P"}]',
        {9: "Nine"},
        ["P"],
    ),
    "an organisation with no services beside one with": (
        '[{"id": 1, "name": "A", "services": [{"id": 5, "name": "H"}]}, {"id": 2, "name": "B"}]',
        {5: "H"},
        ["A", "B"],
    ),
    "typographic quotes and a byte-order mark": (
        '\ufeff[{"id": 1, "name": “A”, "services": [{"id": 5, "name": “Home”}]}]',
        {5: "Home"},
        ["A"],
    ),
    "control characters and terminal escapes in names": (
        '[{"id": 5, "name": "Rose\\u001b[31m Lodge\\u0007\\u202e"}]',
        {5: "Rose Lodge"},
        [],
    ),
    "an empty wrapper": ('{"data": [], "error": []}', {}, []),
}


@pytest.mark.parametrize("case", list(PARSED))
def test_the_parser_reads_odd_shapes(case: str) -> None:
    body, services, organisations = PARSED[case]
    listing = parse_organisations(body, "default")
    assert {s.id: s.name for s in listing.services} == services
    assert [o.name for o in listing.organisations] == organisations


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("", "empty body"),
        ("   \n", "empty body"),
        ("<html>", "not JSON"),
        ('{"message": "Invalid API key"}', "error: Invalid API key"),
        ('{"success": false}', "error: success is false"),
        ('"just text"', "lists no organisations (text)"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
    ],
)
def test_the_parser_refuses_what_lists_nothing(body: str, said: str) -> None:
    with pytest.raises(PollError) as raised:
        parse_organisations(body, "default")
    assert said in str(raised.value)


def test_what_the_parser_does_not_understand_is_kept() -> None:
    listing = parse_organisations(
        json.dumps(
            {
                "data": [
                    {
                        "id": 1,
                        "name": "A",
                        "cqcProvider": "1-234",
                        "services": [{"id": 5, "name": "H", "rating": {"cqc": "Good"}}, "x"],
                    }
                ],
                "meta": {"page": 1},
            }
        ),
        "default",
    )
    assert listing.notes == {"meta": {"page": 1}}
    assert listing.organisations[0].extra == {"cqcProvider": "1-234"}
    assert listing.services[0].extra == {"rating": {"cqc": "Good"}}
    assert listing.skipped == ["[0].services[1]: text, not a service"]


# --- the writer: whatever Autumna sends, the file loads ---------------------------------------


def load_text(text: str, folder: Path) -> Any:
    path = folder / "rules.toml"
    return Loader(path, tomllib.loads(text)).load()


names = st.text(st.characters(codec="utf-8"), max_size=40)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    services=st.dictionaries(
        st.integers(1, 2**53 - 1),
        st.tuples(names, names, st.dictionaries(names, names, max_size=3)),
        min_size=1,
        max_size=4,
    ),
    organisation=names,
)
def test_any_names_from_autumna_make_a_file_that_loads(
    services: dict[int, tuple[str, str, dict[str, str]]], organisation: str, tmp_path: Path
) -> None:
    listing = Listing(
        [Organisation(7, organisation, "default", tuple(services))],
        [
            ListedService(sid, name, "default", organisation, {"postcode": post}, "", extra)
            for sid, (name, post, extra) in services.items()
        ],
        skipped=[organisation],
        notes={organisation: organisation},
    )
    config = load_text(
        starter(listing, {"default": "AUTUMNA_API_KEY"}, date(2026, 12, 1)), tmp_path
    )
    assert set(config.homes) == set(services)
    for home in config.homes.values():
        assert home.name  # never empty: Autumna's name, or a placeholder


def test_placeholders_warn_and_real_mistakes_still_fail(tmp_path: Path) -> None:
    text = ROOT_RULES.read_text("utf-8").replace('"#rose-lodge"', '"#CHANGE-ME"')
    text = text.replace('"tom.reid@rosecare.example"', '"CHANGE-ME@example.invalid"')
    config = load_text(text, tmp_path)
    assert config.warnings == (
        'rules.toml: homes.100000.slack: placeholder "#CHANGE-ME": write Rose Lodge\'s Slack '
        'channel, e.g. "#rose-lodge"',
        'rules.toml: homes.200000.manager_email: placeholder "CHANGE-ME@example.invalid": write '
        "the email address of Willow House's manager",
    )
    broken = text.replace('"#willow-house"', '"willow house"')
    with pytest.raises(ConfigError) as raised:
        load_text(broken, tmp_path)
    assert "homes.200000.slack: 'willow house' is not a Slack channel" in str(raised.value)
    assert placeholder_warnings({"rules": [{"notify": ["x", "change-me"]}]}) == [
        ("rules[0].notify[1]", 'placeholder "change-me": write the real value')
    ]


def test_the_example_shipped_in_the_package_is_the_documented_one() -> None:
    from bot.starter import example

    assert example() == ROOT_RULES.read_text("utf-8")
    assert load_config(ROOT_RULES).warnings == ()


@pytest.mark.parametrize(
    ("leads_url", "organisations"),
    [
        ("https://www.autumna.co.uk/api/leads/", "https://www.autumna.co.uk/api/organisations/"),
        ("https://www.autumna.co.uk/api/leads", "https://www.autumna.co.uk/api/organisations/"),
        ("http://127.0.0.1:8080/api/leads/?x=1", "http://127.0.0.1:8080/api/organisations/"),
        ("https://proxy.example/autumna/api/", "https://proxy.example/autumna/api/organisations/"),
    ],
)
def test_the_organisations_are_asked_beside_the_leads(leads_url: str, organisations: str) -> None:
    assert organisations_url(leads_url) == organisations


def test_keys_come_from_autumna_api_key_and_each_autumna_key_name() -> None:
    env = {
        "AUTUMNA_API_KEY": " k1 ",
        "AUTUMNA_KEY_NORTH_WEST": "k2",
        "AUTUMNA_KEY_EMPTY": " ",
        "AUTUMNA_API_URL": "https://example/api/leads/",
    }
    assert keys_in(env) == {
        "default": ("AUTUMNA_API_KEY", "k1"),
        "north_west": ("AUTUMNA_KEY_NORTH_WEST", "k2"),
    }
