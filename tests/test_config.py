"""rules.toml: the example loads; every mistake is reported at once, with file, key path and fix."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

import bot
from bot.config import (
    Config,
    ConfigError,
    Home,
    channel_of_attribute,
    home_targets,
)
from bot.loader import load_config
from bot.models import Channel, Target

ROOT_RULES = Path(bot.__file__).resolve().parent.parent / "rules.toml"

WEBHOOK_URL = (
    "https://prod-01.westeurope.logic.azure.com:443/workflows/0123abcd/triggers/"
    "manual/paths/invoke?api-version=2016-06-01&sig=S3cr3tSignatureValue"
)
API_KEY = "Ab3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1eF3hJ5kL7n"
SLACK_TOKEN = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUv"


def write(tmp_path: Path, text: str, name: str = "rules.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


MINIMAL = """
[routing]
fallback = "group-leads"

[destinations]
group-leads = { slack = "#group-leads" }
"""


# --- the example ---------------------------------------------------------------------------------


def test_the_example_rules_toml_loads_without_problems() -> None:
    config = load_config(ROOT_RULES)

    assert config.group == "Rose Care Homes"
    assert config.timezone.key == "Europe/London"
    assert config.templates is None and config.lead_url == ""
    assert config.warnings == ()
    assert [(a.name, a.key_var) for a in config.accounts] == [("default", "AUTUMNA_API_KEY")]
    assert config.polling.interval == timedelta(minutes=1)
    assert config.polling.overlap == timedelta(minutes=15)
    assert config.polling.lookback == timedelta(hours=24)
    assert config.polling.history == timedelta(days=30)
    # tls unset: STARTTLS on 587 (implicit TLS only on 465), chosen by the email channel
    assert (config.email.host, config.email.port, config.email.tls) == (
        "smtp.rosecare.example",
        587,
        "",
    )
    assert config.email.sender == "Rose Care leads <leads@rosecare.example>"
    assert {sid: home.name for sid, home in config.homes.items()} == {
        100000: "Rose Lodge",
        200000: "Willow House",
        300000: "Oak Manor",
    }
    assert config.homes[200000].attributes["region"] == "North West"
    assert config.homes[100000].attributes["manager_slack"] == "U024BE7LH"
    assert set(config.destinations) == {"group-leads", "sales-inbox", "ops-teams", "north-teams"}
    assert config.destinations["sales-inbox"].targets == (
        Target(Channel.EMAIL, "sales@rosecare.example", "sales-inbox"),
    )
    assert config.destinations["ops-teams"].targets == (
        Target(Channel.TEAMS, "TEAMS_OPS_WEBHOOK", "ops-teams", "minimal"),
    )
    assert [rule.name for rule in config.rules] == [
        "Visit requests ping the home manager",
        "Call-back requests are urgent",
        "Emergencies are urgent too",
        "Referrals and placements go to the home and sales",
        "Dementia enquiries in the North West and Yorkshire reach the regional team",
        "Everything goes to the group channel",
    ]
    assert [rule.urgent for rule in config.rules] == [False, True, True, False, False, False]
    assert config.rules[0].conditions[0].values == (2, 3)
    assert config.rules[3].conditions[0].values == (6, 7, 8)
    assert config.rules[5].conditions == ()
    assert config.rules[1].notify == ("home.slack", "home.manager_email", "sales-inbox")
    assert (config.fallback, config.ops) == ("group-leads", "ops-teams")
    assert (config.privacy.slack, config.privacy.teams, config.privacy.email) == ("full",) * 3
    assert config.privacy.retention == timedelta(days=90)
    assert (config.retries.first, config.retries.cap, config.retries.give_up) == (
        timedelta(seconds=30),
        timedelta(hours=1),
        timedelta(hours=24),
    )
    assert config.secret_vars == {"AUTUMNA_API_KEY", "TEAMS_OPS_WEBHOOK", "TEAMS_NORTH_WEBHOOK"}
    assert config.targets_used() == {Channel.SLACK, Channel.EMAIL, Channel.TEAMS}


def test_ops_defaults_to_the_fallback(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert (config.fallback, config.ops) == ("group-leads", "group-leads")
    assert config.group == "Care group" and config.timezone.key == "Europe/London"
    assert config.rules == () and config.homes == {}


# --- one file, every mistake ------------------------------------------------------------------


BROKEN = f"""
colour = "red"

[group]
name = "Rose Care Homes"
timezon = "Europe/London"
timezone = "Europe/Londn"
templates = "no-such-folder"

[polling]
interval = "1 minute"
overlap = "15m"

[[autumna.accounts]]
name = "north"
api_key = "{API_KEY}"

[[autumna.accounts]]
name = "north"
api_key = "${{AUTUMNA_KEY_NORTH}}"

[routing]
fallback = "group-leeds"

[homes.100000]
name = "Rose Lodge"
region = "London"
slack = "rose-lodge"
manager_slack = "U024BE7LH"
manager_email = "amira.khan@rosecare.example"

[homes.rose-lodge]
name = "Rose Lodge again"

[destinations]
group-leads = {{ slack = "#group-leads" }}
sales-inbox = {{ email = ["sales"] }}
ops-teams = {{ teams = "{WEBHOOK_URL}" }}
bot-token = {{ slack = "{SLACK_TOKEN}" }}
quiet = {{ slack = "#quiet", privacy = "none" }}

[[rules]]
name = "misspelt condition"
when = {{ categroy = 4 }}
notify = ["group-leads"]

[[rules]]
name = "misspelt category and destination"
when = {{ category = "Call Bak Request" }}
notify = ["group-leds"]

[[rules]]
name = "home attributes nobody has"
when = {{ home = {{ regoin = "London" }} }}
notify = ["home.manager_teams"]

[[rules]]
name = "a region is not a destination"
when = {{ content_regex = "(unclosed" }}
notify = ["home.region"]

[[rules]]
name = "bad postcode, bad flag"
when = {{ postcode = "12345", category = 0 }}
notify = ["group-leads"]
urgent = "yes"

[[rules]]
name = "nobody to notify"
notify = []
"""

# key path, what the message says (the whole message after "rules.toml: <key path>: ")
BROKEN_EXPECTED = [
    ("colour", "unknown key"),
    ("group.timezon", 'unknown key (did you mean "timezone"?)'),
    ("group.timezone", "unknown time zone 'Europe/Londn' (e.g. \"Europe/London\")"),
    ("group.templates", "does not exist"),
    ("polling.interval", 'expected a duration like "90s", "15m", "24h" or "30d", got \'1 minute\''),
    (
        "autumna.accounts[0].api_key",
        "secrets never go in rules.toml: put the value in an "
        'environment variable and write "${AUTUMNA_API_KEY}" here',
    ),
    ("autumna.accounts", "two accounts are named 'north': names must differ"),
    ("routing.fallback", "unknown destination 'group-leeds' (did you mean \"group-leads\"?)"),
    (
        "homes.100000.slack",
        '\'rose-lodge\' is not a Slack channel ("#name") or id ("C…", '
        '"U…") (did you mean "#rose-lodge"?)',
    ),
    ("homes.rose-lodge", "a home is keyed by its Autumna service id, e.g. [homes.100000]"),
    ("destinations.sales-inbox.email", "'sales' is not an email address"),
    (
        "destinations.ops-teams.teams",
        "secrets never go in rules.toml: put the value in an "
        'environment variable and write "${TEAMS_WEBHOOK_URL}" '
        "here",
    ),
    ("destinations.bot-token.slack", "this looks like a secret URL or token"),
    ("destinations.quiet.privacy", "expected one of full, minimal"),
    ("rules[0].when.categroy", 'unknown key (did you mean "category"?)'),
    (
        "rules[1].when.category",
        "unknown category 'Call Bak Request' (did you mean \"Call Back Request\"?)",
    ),
    ("rules[1].notify[0]", "unknown destination 'group-leds' (did you mean \"group-leads\"?)"),
    ("rules[2].when.home.regoin", "no home has 'regoin' (did you mean \"region\"?)"),
    ("rules[2].notify[0]", "no home has 'manager_teams'"),
    ("rules[3].when.content_regex", "bad regular expression '(unclosed'"),
    ("rules[3].notify[0]", "home.region is not a destination"),
    ("rules[4].when.postcode", "'12345' is not a postcode area"),
    ("rules[4].when.category", "unknown category 0"),
    ("rules[4].urgent", "expected true or false"),
    ("rules[5].notify", "list at least one destination"),
]


@pytest.fixture(scope="module")
def broken_problems(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return problems_of(write(tmp_path_factory.mktemp("broken"), BROKEN))


def test_a_broken_file_reports_every_problem_and_nothing_else(broken_problems: list[str]) -> None:
    assert len(broken_problems) == len(BROKEN_EXPECTED), "\n".join(broken_problems)
    assert all(p.startswith("rules.toml: ") for p in broken_problems)


@pytest.mark.parametrize(
    ("where", "says"), BROKEN_EXPECTED, ids=[where for where, _ in BROKEN_EXPECTED]
)
def test_each_mistake_is_reported_with_file_key_path_and_fix(
    broken_problems: list[str], where: str, says: str
) -> None:
    prefix = f"rules.toml: {where}: "
    found = [p[len(prefix) :] for p in broken_problems if p.startswith(prefix)]
    assert any(says in message for message in found), f"{prefix}{says!r} not in {found}"


def test_problems_never_repeat_a_secret_written_in_the_file(broken_problems: list[str]) -> None:
    everything = "\n".join(broken_problems)
    for secret in (API_KEY, WEBHOOK_URL, "S3cr3tSignatureValue", SLACK_TOKEN, "logic.azure"):
        assert secret not in everything


# --- one mistake at a time ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "where", "says"),
    [
        (
            '[destinations]\ngroup-leads = { slack = "#group-leads" }\n',
            "routing.fallback",
            "required: name the destination that gets leads no rule routes",
        ),
        (MINIMAL + '[polling]\noverlap = "15 minutes"\n', "polling.overlap", "expected a duration"),
        (MINIMAL + "[polling]\nlookback = true\n", "polling.lookback", "expected a duration"),
        (
            MINIMAL + '[email]\nsender = "leads at rosecare"\n',
            "email.sender",
            "is not an email address",
        ),
        (MINIMAL + '[email]\ntls = "maybe"\n', "email.tls", "expected one of starttls"),
        (MINIMAL + '[email]\nport = "587"\n', "email.port", "expected a port number"),
        (MINIMAL + '[email]\npassword = "hunter2"\n', "email.password", "unknown key"),
        (
            MINIMAL.replace("[routing]", '[routing]\nops = "opz"'),
            "routing.ops",
            "unknown destination 'opz'",
        ),
        (
            MINIMAL + 'sales = { email = "sales@@rosecare" }\n',
            "destinations.sales.email",
            "is not an email address",
        ),
        (
            MINIMAL + 'hook = { slack = "https://hooks.slack.com/services/T0/B0/XYZ" }\n',
            "destinations.hook.slack",
            "looks like a secret",
        ),
        (
            MINIMAL + 'room = { slack = "Group Leads" }\n',
            "destinations.room.slack",
            '(did you mean "#group leads"?)',
        ),
        (
            MINIMAL + 'teams = { teams = "TEAMS_URL" }\n',
            "destinations.teams.teams",
            "secrets never go in rules.toml",
        ),
        (
            MINIMAL + 'nothing = { privacy = "full" }\n',
            "destinations.nothing",
            "give at least one of slack, email or teams",
        ),
        (
            MINIMAL + 'odd = { slack = "#odd", sms = "07700" }\n',
            "destinations.odd.sms",
            "unknown key",
        ),
        (
            MINIMAL + 'home-office = { slack = "#home-office" }\n',
            "destinations.home-office",
            "kept for home.<attribute>",
        ),
        (
            MINIMAL + '[homes.100000]\nregion = "London"\n',
            "homes.100000.name",
            "every home needs a name",
        ),
        (
            MINIMAL + '[homes.100000]\nname = "Rose Lodge"\nmanager_email = ["a@b.example", '
            '"nope"]\n',
            "homes.100000.manager_email",
            "'nope' is not an email address",
        ),
        (
            MINIMAL + '[homes.100000]\nname = "Rose Lodge"\nteams = "' + WEBHOOK_URL + '"\n',
            "homes.100000.teams",
            "secrets never go in rules.toml",
        ),
        (
            MINIMAL + '[homes.100000]\nname = "Rose Lodge"\nfloors = [1, 2]\n',
            "homes.100000.floors",
            "expected a single value",
        ),
        (
            MINIMAL + '[[autumna.accounts]]\nname = "north"\n',
            "autumna.accounts[0].api_key",
            'expected an environment variable reference like "${AUTUMNA_API_KEY}"',
        ),
        (
            MINIMAL + '[[rules]]\nnotify = ["group-leads"]\nurgent = 1\n',
            "rules[0].urgent",
            "expected true or false",
        ),
        (
            MINIMAL + '[[rules]]\nnotify = ["group-leads"]\nstop = "yes"\n',
            "rules[0].stop",
            "expected true or false",
        ),
        (MINIMAL + '[[rules]]\nname = "x"\n', "rules[0].notify", "list at least one destination"),
        (
            MINIMAL + '[[rules]]\nwhen = { category = [] }\nnotify = ["group-leads"]\n',
            "rules[0].when.category",
            "give at least one value",
        ),
        (
            MINIMAL + '[[rules]]\nwhen = { anonymised = "yes" }\nnotify = ["group-leads"]\n',
            "rules[0].when.anonymised",
            "expected true or false",
        ),
        (
            MINIMAL + '[[rules]]\nwhen = { service = "Rose Lodg" }\nnotify = ["group-leads"]\n'
            '[homes.100000]\nname = "Rose Lodge"\n',
            "rules[0].when.service",
            "no home is named 'Rose Lodg' (did you mean \"Rose Lodge\"?)",
        ),
        (
            MINIMAL + '[[rules]]\nwhen = { category = "Referal with contact permision" }\n'
            'notify = ["group-leads"]\n',
            "rules[0].when.category",
            '(did you mean "Referral with contact permission"?)',
        ),
        (
            MINIMAL + '[[rules]]\nwhen = { home.regoin = "London" }\nnotify = ["group-leads"]\n'
            '[homes.100000]\nname = "Rose Lodge"\nregion = "London"\n',
            "rules[0].when.home.regoin",
            "no home has 'regoin' (did you mean \"region\"?)",
        ),
        (
            MINIMAL + '[[rules]]\nnotify = ["home.slak"]\n[homes.100000]\nname = "Rose Lodge"\n'
            'slack = "#rose"\n',
            "rules[0].notify[0]",
            "no home has 'slak' (did you mean \"home.slack\"?)",
        ),
        (
            MINIMAL + '[[rules]]\nnotify = ["home.name"]\n[homes.100000]\nname = "Rose Lodge"\n',
            "rules[0].notify[0]",
            "home.name is not a destination",
        ),
    ],
    ids=[
        "missing fallback",
        "bad overlap",
        "boolean duration",
        "sender not an address",
        "unknown tls",
        "port as text",
        "password in the file",
        "unknown ops",
        "email not an address",
        "slack webhook URL",
        "slack name with capitals",
        "teams without ${}",
        "destination without a channel",
        "unknown destination key",
        "destination named home*",
        "home without a name",
        "one bad address in a list",
        "webhook URL as a home attribute",
        "list as a plain attribute",
        "account without api_key",
        "urgent = 1",
        "stop = yes",
        "rule without notify",
        "empty condition list",
        "anonymised = yes",
        "unknown home name",
        "misspelt alternative category name",
        "home condition with a dotted key",
        "misspelt home destination",
        "home.name in notify",
    ],
)
def test_one_mistake_gives_one_problem(tmp_path: Path, toml: str, where: str, says: str) -> None:
    problems = problems_of(write(tmp_path, toml))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"rules.toml: {where}: "), problems
    assert says in problems[0]
    assert WEBHOOK_URL not in problems[0] and "XYZ" not in problems[0]


@pytest.mark.parametrize(
    ("toml", "where"),
    [
        (
            MINIMAL.replace('fallback = "group-leads"', 'fallback = ["group-leads"]'),
            "routing.fallback",
        ),
        (MINIMAL.replace("[routing]", '[routing]\nops = { slack = "#ops" }'), "routing.ops"),
        (
            MINIMAL + '[[rules]]\nwhen = { content = 4 }\nnotify = ["group-leads"]\n',
            "rules[0].when.content",
        ),
        (
            MINIMAL + '[[rules]]\nwhen = { content = ["fall", 4] }\nnotify = ["group-leads"]\n',
            "rules[0].when.content",
        ),
    ],
    ids=[
        "fallback as a list",
        "ops as a table",
        "content as a number",
        "a number among content words",
    ],
)
def test_a_value_of_the_wrong_type_is_a_problem_not_a_crash(
    tmp_path: Path, toml: str, where: str
) -> None:
    problems = problems_of(write(tmp_path, toml))
    assert [p.split(": ")[1] for p in problems] == [where], problems


def test_two_home_tables_for_the_same_service_id_are_a_problem(tmp_path: Path) -> None:
    # [homes.0100000] and [homes.100000] are different TOML keys but the same Autumna service.
    problems = problems_of(
        write(
            tmp_path,
            MINIMAL
            + """
[homes.0100000]
name = "Rose Lodge"
slack = "#rose-lodge"
[homes.100000]
name = "Rose Lodge (new manager)"
slack = "#rose-lodge-2"
""",
        )
    )
    assert len(problems) == 1 and problems[0].startswith("rules.toml: homes."), problems


@pytest.mark.parametrize(
    ("when", "values"),
    [
        ("{ category = 4 }", (4,)),
        ('{ category = "Call Back Request" }', (4,)),
        ('{ category = "  call back   REQUEST " }', (4,)),
        ('{ category = "Referral with contact permission" }', (6,)),
        ('{ category = "Referral without contact" }', (7,)),
        ('{ category = "Known Placements" }', (8,)),
        ('{ category = ["Placement", 2, "Virtual Visit Request"] }', (8, 2, 3)),
        ('{ service = "rose lodge" }', (100000,)),
        ('{ service = [100000, "200000"] }', (100000, 200000)),
        ('{ postcode = "sw1a  1" }', ("SW1A 1",)),
        ('{ postcode = ["M", "LS6"] }', ("M", "LS6")),
        ('{ funding = "Part Buy, Part Rent" }', ("part buy, part rent",)),
        ('{ on_behalf_of = "Family  Member" }', ("family member",)),
        ("{ anonymised = false }", (False,)),
        ('{ account = "North" }', ("north",)),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_conditions_accept_every_documented_spelling(
    tmp_path: Path, when: str, values: tuple[object, ...]
) -> None:
    config = load_config(
        write(
            tmp_path,
            MINIMAL
            + f"""
[homes.100000]
name = "Rose Lodge"
[homes.200000]
name = "Willow House"
[[rules]]
when = {when}
notify = ["group-leads"]
""",
        )
    )
    (condition,) = config.rules[0].conditions
    assert condition.values == values
    assert config.warnings == ()


# --- warnings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "where", "suggestion"),
    [
        ('{ funding = "Self Funded" }', "rules[0].when.funding", '(did you mean "Self Funding"?)'),
        ('{ funding = ["Buy", "Council"] }', "rules[0].when.funding", ""),
        ('{ timescales = "2-4 week" }', "rules[0].when.timescales", '(did you mean "2-4 weeks"?)'),
        ('{ timescales = "Yesterday" }', "rules[0].when.timescales", ""),
    ],
)
def test_values_outside_autumnas_lists_are_warnings_not_errors(
    tmp_path: Path, when: str, where: str, suggestion: str
) -> None:
    config = load_config(
        write(
            tmp_path,
            MINIMAL
            + f"""
[[rules]]
when = {when}
notify = ["group-leads"]
""",
        )
    )
    (warning,) = config.warnings
    assert warning.startswith(f"rules.toml: {where}: ")
    assert "is not one of Autumna's documented values" in warning
    assert "it will still match" in warning
    assert suggestion in warning


@pytest.mark.parametrize(
    "when",
    [
        '{ funding = ["Top-up", "Part Buy, Part Rent", "self funding", "NHS Continuing '
        'Healthcare"] }',
        '{ timescales = ["Emergency", "asap", "Over 12 months", "Not Sure"] }',
    ],
)
def test_documented_values_give_no_warning(tmp_path: Path, when: str) -> None:
    config = load_config(
        write(
            tmp_path,
            MINIMAL
            + f"""
[[rules]]
when = {when}
notify = ["group-leads"]
""",
        )
    )
    assert config.warnings == ()


# --- files that cannot be read -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '[group\nname = "x"\n',
        "name = \n",
        '[routing]\nfallback = "a"\n[routing]\nops = "b"\n',
        'name = "unterminated\n',
    ],
    ids=["unclosed table", "missing value", "table defined twice", "unterminated string"],
)
def test_invalid_toml_is_one_clear_problem(tmp_path: Path, text: str) -> None:
    (problem,) = problems_of(write(tmp_path, text))
    assert problem.startswith("rules.toml: not valid TOML: ")
    assert "line" in problem


def test_a_file_that_is_not_utf8_is_one_clear_problem(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_bytes(b'[group]\nname = "Caf\xe9"\n')
    (problem,) = problems_of(path)
    assert problem.startswith("rules.toml: not valid TOML")


def test_a_missing_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path / "nowhere" / "rules.toml")
    assert "rules.toml" in problem and "no such file" in problem
    assert "--config" in problem and "LEADBOT_CONFIG" in problem


# --- home attributes as destinations -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "channel"),
    [
        ("slack", Channel.SLACK),
        ("email", Channel.EMAIL),
        ("teams", Channel.TEAMS),
        ("manager_slack", Channel.SLACK),
        ("manager_email", Channel.EMAIL),
        ("night_shift_teams", Channel.TEAMS),
        ("region", None),
        ("name", None),
        ("slack_channel", None),
        ("myslack", None),
        ("emails", None),
        ("teams_webhook", None),
        ("Slack", None),
    ],
)
def test_attributes_named_or_ending_with_a_channel_are_destinations(
    name: str, channel: Channel | None
) -> None:
    assert channel_of_attribute(name) is channel


@pytest.fixture
def home_config(tmp_path: Path) -> Config:
    return load_config(
        write(
            tmp_path,
            MINIMAL
            + """
[homes.100000]
name = "Rose Lodge"
region = "London"
beds = 42
slack = "#rose-lodge"
manager_slack = "U024BE7LH"
manager_email = ["Amira.Khan@rosecare.example", "deputy@rosecare.example"]
teams = "${TEAMS_ROSE_LODGE}"
night_teams = "${TEAMS_ROSE_NIGHTS}"
""",
        )
    )


def test_home_targets_lists_every_destination_attribute(home_config: Config) -> None:
    home = home_config.homes[100000]
    assert home == Home(100000, "Rose Lodge", home.attributes)
    assert home_targets(home, None) == [
        Target(Channel.SLACK, "#rose-lodge", "home.slack"),
        Target(Channel.SLACK, "U024BE7LH", "home.manager_slack"),
        Target(Channel.EMAIL, "amira.khan@rosecare.example", "home.manager_email"),
        Target(Channel.EMAIL, "deputy@rosecare.example", "home.manager_email"),
        Target(Channel.TEAMS, "TEAMS_ROSE_LODGE", "home.teams"),
        Target(Channel.TEAMS, "TEAMS_ROSE_NIGHTS", "home.night_teams"),
    ]


@pytest.mark.parametrize(
    ("attribute", "keys"),
    [
        ("slack", ["slack:#rose-lodge"]),
        ("manager_email", ["email:amira.khan@rosecare.example", "email:deputy@rosecare.example"]),
        ("teams", ["teams:TEAMS_ROSE_LODGE"]),
        ("night_teams", ["teams:TEAMS_ROSE_NIGHTS"]),
        ("region", []),
        ("beds", []),
        ("email", []),
    ],
)
def test_home_targets_of_one_attribute(
    home_config: Config, attribute: str, keys: list[str]
) -> None:
    assert [t.key for t in home_targets(home_config.homes[100000], attribute)] == keys


def test_teams_references_keep_only_the_variable_name(home_config: Config) -> None:
    assert {"TEAMS_ROSE_LODGE", "TEAMS_ROSE_NIGHTS"} <= home_config.secret_vars
    for target in home_targets(home_config.homes[100000], None):
        assert "$" not in target.key and "{" not in target.key and "://" not in target.key


# --- found while testing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "xapp-1-A0123456-7890123456-abcdef0123456789",  # a Slack app-level token
        "xoxc-1234567890-0987654321-AbCdEfGhIjKlMnOp",  # a Slack client token
    ],
)
def test_a_slack_token_written_as_a_destination_is_never_repeated_in_the_problem(
    tmp_path: Path, token: str
) -> None:
    (problem,) = problems_of(write(tmp_path, MINIMAL + f'leak = {{ slack = "{token}" }}\n'))
    assert problem.startswith("rules.toml: destinations.leak.slack: ")
    assert token not in problem and token.lower() not in problem


def test_a_lead_url_with_an_unknown_placeholder_is_a_config_problem(tmp_path: Path) -> None:
    # Loaded as is, every message would fail to render with KeyError: 'lead'.
    text = '[group]\nlead_url = "https://crm.example/leads/{lead}"\n' + MINIMAL
    problems = problems_of(write(tmp_path, text))
    assert [p.split(": ")[1] for p in problems] == ["group.lead_url"]
