"""Working hours, bank holidays and the group's time zone: real 2027 dates, both clock changes
(28 March and 31 October 2027, 01:00 UTC), and the admin's mistakes with their messages."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.schedule import Calendar, Hours, parse_hours

LONDON = ZoneInfo("Europe/London")
CALENDAR = Calendar(LONDON)
HOUR = 3600.0


def london(text: str) -> float:
    """A wall time in London ("2027-03-05 17:55") as an instant; not for repeated times."""
    return datetime.fromisoformat(text).replace(tzinfo=LONDON).timestamp()


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def hours(table: dict[str, Any], name: str = "office") -> Hours:
    parsed, problems = parse_hours(name, table)
    assert parsed is not None, problems
    return parsed


OFFICE = hours({"mon-fri": "08:00-18:00", "sat": "09:00-13:00", "bank_holidays": "closed"})
WEEKDAYS = hours({"mon-fri": "08:00-18:00"})
WEEKDAYS_EVEN_BANK_HOLIDAYS = hours({"mon-fri": "08:00-18:00", "bank_holidays": "open"})
LUNCH_BREAK = hours({"mon-fri": ["08:00-12:00", "13:00-17:30"]})
SUNDAYS_ALL_DAY = hours({"sun": "00:00-24:00"})
SUNDAY_SMALL_HOURS = hours({"sun": "01:30-03:00"})  # straddles 01:00-02:00, skipped or repeated

# -- reading [hours.<name>]


def test_the_office_example_from_the_issue_reads_as_minutes_monday_first() -> None:
    assert (OFFICE.name, OFFICE.bank_holidays_open) == ("office", False)
    assert OFFICE.week == (((480, 1080),),) * 5 + (((540, 780),), ())


@pytest.mark.parametrize(
    ("table", "week"),
    [
        ({"mon": "08:00-18:00"}, [((480, 1080),), (), (), (), (), (), ()]),
        ({"tue,thu": "09:30-17:00"}, [(), ((570, 1020),), (), ((570, 1020),), (), (), ()]),
        ({"mon-tue,sun": "10:00-11:00"}, [((600, 660),)] * 2 + [()] * 4 + [((600, 660),)]),
        ({"sat-sun": "00:00-24:00"}, [()] * 5 + [((0, 1440),)] * 2),
        (
            {"wed": ["13:00-17:30", "08:00-12:00"]},
            [(), (), ((480, 720), (780, 1050)), (), (), (), ()],
        ),
        ({"fri": ["08:00-12:00", "12:00-14:00"]}, [(), (), (), (), ((480, 840),), (), ()]),
        ({"mon": "08:00-18:00", "tue": "closed"}, [((480, 1080),), (), (), (), (), (), ()]),
    ],
)
def test_days_ranges_lists_and_closed_days_read_into_a_week(
    table: dict[str, Any], week: list[tuple[tuple[int, int], ...]]
) -> None:
    assert hours(table).week == tuple(week)


def test_bank_holidays_open_is_remembered() -> None:
    assert WEEKDAYS_EVEN_BANK_HOLIDAYS.bank_holidays_open
    assert not WEEKDAYS.bank_holidays_open


NO_OPEN_DAY = (
    'hours.office: no day is open; give at least one day hours, e.g. mon-fri = "08:00-18:00"'
)
HINT = 'write HH:MM-HH:MM, 24-hour, like "08:00-18:00" ("00:00-24:00" for all day)'


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (
            {"mon-fry": "08:00-18:00"},
            'hours.office.mon-fry: unknown day "fry"; write mon, tue, wed, thu, fri, sat or sun',
        ),
        (
            {"monday": "08:00-18:00"},
            'hours.office.monday: unknown day "monday"; write mon, tue, wed, thu, fri, sat or sun',
        ),
        (
            {"weekdays": "08:00-18:00"},
            "hours.office.weekdays: unknown key; expected a day (mon, tue, ... sun), "
            'a range like "mon-fri", a list like "tue,thu", or bank_holidays',
        ),
        ({"mon": "8:00-18:00"}, f'hours.office.mon: bad hours "8:00-18:00"; {HINT}'),
        ({"mon": "08:00-25:00"}, f'hours.office.mon: bad hours "08:00-25:00"; {HINT}'),
        ({"mon": "08:00-18:60"}, f'hours.office.mon: bad hours "08:00-18:60"; {HINT}'),
        ({"mon": "open"}, f'hours.office.mon: bad hours "open"; {HINT}'),
        (
            {"mon": 8},
            'hours.office.mon: expected hours in quotes, a list of them, or "closed"; ' + HINT,
        ),
        (
            {"mon": "18:00-08:00"},
            'hours.office.mon: "18:00-08:00" does not end after it starts; '
            "hours cannot run past midnight",
        ),
        (
            {"mon": "09:00-09:00"},
            'hours.office.mon: "09:00-09:00" does not end after it starts; '
            "hours cannot run past midnight",
        ),
        (
            {"mon": ["08:00-12:00", "11:00-13:00"]},
            'hours.office.mon: "08:00-12:00" and "11:00-13:00" overlap; join them',
        ),
        (
            {"mon-fri": "08:00-18:00", "wed": "10:00-12:00"},
            'hours.office.wed: wed already given by "mon-fri"; name each day once',
        ),
        (
            {"tue,thu": "08:00-18:00", "mon-fri": "closed"},
            'hours.office.mon-fri: tue, thu already given by "tue,thu"; name each day once',
        ),
        (
            {"mon,mon-wed": "08:00-18:00"},
            'hours.office."mon,mon-wed": mon is named twice; name each day once',
        ),
        (
            {"fri-mon": "08:00-18:00"},
            'hours.office.fri-mon: "fri-mon" wraps past Sunday; write it as a list, "fri-sun,mon"',
        ),
        (
            {"mon-wed-fri": "08:00-18:00"},
            'hours.office.mon-wed-fri: "mon-wed-fri" is not a range; write one like "mon-fri"',
        ),
        (
            {"mon": "08:00-18:00", "bank_holidays": "sometimes"},
            'hours.office.bank_holidays: expected "closed" or "open", got \'sometimes\'',
        ),
        ({"mon-sun": "closed", "bank_holidays": "open"}, NO_OPEN_DAY),
        ({}, NO_OPEN_DAY),
    ],
)
def test_mistakes_are_reported_with_the_key_and_the_fix(
    table: dict[str, Any], problem: str
) -> None:
    assert parse_hours("office", table) == (None, [problem])


def test_every_mistake_in_a_table_is_reported_at_once() -> None:
    parsed, problems = parse_hours("night", {"mon": "22:00-06:00", "tue": "x", "tues": "closed"})
    assert parsed is None
    assert [problem.split(":")[0] for problem in problems] == [
        "hours.night.mon",
        "hours.night.tue",
        "hours.night.tues",
    ]


# -- bank holidays


@pytest.mark.parametrize(
    ("day", "nation", "holiday"),
    [
        (date(2027, 3, 29), "england", True),  # Easter Monday
        (date(2027, 3, 29), "wales", True),
        (date(2027, 3, 29), "scotland", False),
        (date(2027, 1, 4), "scotland", True),  # 2 January fell on a Saturday
        (date(2027, 1, 4), "england", False),
        (date(2027, 11, 30), "scotland", True),  # St Andrew's Day
        (date(2027, 11, 30), "england", False),
        (date(2027, 3, 17), "northern-ireland", True),  # St Patrick's Day
        (date(2027, 7, 12), "northern-ireland", True),  # Battle of the Boyne
        (date(2027, 7, 12), "england", False),
        (date(2027, 12, 25), "england", True),  # a Saturday...
        (date(2027, 12, 27), "england", True),  # ...so Monday and Tuesday are substitutes
        (date(2027, 12, 28), "england", True),
        (date(2027, 12, 29), "england", False),
    ],
)
def test_bank_holidays_follow_the_nation(day: date, nation: str, holiday: bool) -> None:
    assert CALENDAR.is_bank_holiday(day, nation) is holiday


def test_the_default_nation_is_england_unless_the_group_says_otherwise() -> None:
    assert CALENDAR.is_bank_holiday(date(2027, 3, 29))
    assert not Calendar(LONDON, "scotland").is_bank_holiday(date(2027, 3, 29))


def test_an_unknown_nation_is_refused_naming_the_valid_ones() -> None:
    expected = (
        "unknown nation 'cornwall'; expected one of england, wales, scotland, northern-ireland"
    )
    with pytest.raises(ValueError, match=expected):
        Calendar(LONDON, "cornwall")
    with pytest.raises(ValueError, match=expected):
        CALENDAR.next_open(WEEKDAYS, london("2027-03-05 12:00"), nation="cornwall")


# -- open or closed, and when it next opens


@pytest.mark.parametrize(
    ("schedule", "at", "nation", "open_"),
    [
        (OFFICE, "2027-03-03 12:00", None, True),  # a Wednesday
        (OFFICE, "2027-03-03 07:59", None, False),
        (OFFICE, "2027-03-03 08:00", None, True),
        (OFFICE, "2027-03-03 18:00", None, False),  # the end is not included
        (OFFICE, "2027-03-06 10:00", None, True),  # Saturday morning
        (OFFICE, "2027-03-06 13:30", None, False),
        (OFFICE, "2027-03-07 10:00", None, False),  # Sunday
        (OFFICE, "2027-03-29 10:00", "england", False),  # Easter Monday
        (OFFICE, "2027-03-29 10:00", "scotland", True),
        (WEEKDAYS_EVEN_BANK_HOLIDAYS, "2027-03-29 10:00", "england", True),
        (LUNCH_BREAK, "2027-03-03 12:30", None, False),
        (LUNCH_BREAK, "2027-03-03 13:00", None, True),
        (None, "2027-03-07 03:00", None, True),  # no hours: always open
    ],
)
def test_is_open_in_wall_clock_time(
    schedule: Hours | None, at: str, nation: str | None, open_: bool
) -> None:
    assert CALENDAR.is_open(schedule, london(at), nation) is open_


@pytest.mark.parametrize(
    ("schedule", "at", "nation", "opens"),
    [
        (WEEKDAYS, "2027-03-03 12:00", None, "2027-03-03 12:00"),  # open now: now
        (WEEKDAYS, "2027-03-03 06:30", None, "2027-03-03 08:00"),
        (WEEKDAYS, "2027-03-05 18:30", None, "2027-03-08 08:00"),  # the weekend
        (OFFICE, "2027-03-05 18:30", None, "2027-03-06 09:00"),  # Saturday morning
        (OFFICE, "2027-03-06 13:00", None, "2027-03-08 08:00"),
        (LUNCH_BREAK, "2027-03-03 12:10", None, "2027-03-03 13:00"),
        (WEEKDAYS, "2027-03-25 19:00", "england", "2027-03-30 08:00"),  # Easter
        (WEEKDAYS, "2027-03-25 19:00", "scotland", "2027-03-29 08:00"),
        (WEEKDAYS_EVEN_BANK_HOLIDAYS, "2027-03-25 19:00", "england", "2027-03-26 08:00"),
        (WEEKDAYS, "2026-12-31 19:00", "england", "2027-01-04 08:00"),  # New Year
        (WEEKDAYS, "2026-12-31 19:00", "scotland", "2027-01-05 08:00"),
        (WEEKDAYS, "2027-03-16 19:00", "england", "2027-03-17 08:00"),  # St Patrick's Day
        (WEEKDAYS, "2027-03-16 19:00", "northern-ireland", "2027-03-18 08:00"),
        (WEEKDAYS, "2027-12-24 18:30", "england", "2027-12-29 08:00"),  # substitute days
        (None, "2027-03-07 03:00", None, "2027-03-07 03:00"),
    ],
)
def test_next_open_skips_closed_days_weekends_and_bank_holidays(
    schedule: Hours | None, at: str, nation: str | None, opens: str
) -> None:
    assert CALENDAR.next_open(schedule, london(at), nation) == london(opens)


def test_hours_that_never_open_give_up_instead_of_looping() -> None:
    never = Hours("never", week=((),) * 7)
    with pytest.raises(ValueError, match=re.escape("hours.never do not open within 400 days")):
        CALENDAR.next_open(never, london("2027-03-03 12:00"))
    with pytest.raises(
        ValueError, match=re.escape("hours.never do not add up to 60s within 400 days")
    ):
        CALENDAR.add_open_time(never, london("2027-03-03 12:00"), 60)


# -- counting open time


@pytest.mark.parametrize(
    ("schedule", "start", "minutes", "nation", "due"),
    [
        (WEEKDAYS, "2027-03-05 17:55", 15, None, "2027-03-08 08:10"),  # the issue's example
        (WEEKDAYS, "2027-03-05 17:55", 5, None, "2027-03-05 18:00"),  # as it closes, not Monday
        (WEEKDAYS, "2027-03-03 09:00", 15, None, "2027-03-03 09:15"),
        (WEEKDAYS, "2027-03-06 10:00", 30, None, "2027-03-08 08:30"),  # started while closed
        (OFFICE, "2027-03-05 17:55", 15, None, "2027-03-06 09:10"),  # Saturday morning counts
        (LUNCH_BREAK, "2027-03-03 11:50", 20, None, "2027-03-03 13:10"),
        (WEEKDAYS, "2027-03-03 09:00", 0, None, "2027-03-03 09:00"),
        (WEEKDAYS, "2027-03-01 08:00", 10 * 10 * 60, None, "2027-03-12 18:00"),  # two weeks
        (WEEKDAYS, "2027-12-24 17:55", 15, "england", "2027-12-29 08:10"),
        (WEEKDAYS, "2027-03-25 17:55", 15, "england", "2027-03-30 08:10"),
        (WEEKDAYS, "2027-03-25 17:55", 15, "scotland", "2027-03-29 08:10"),
        (None, "2027-03-06 10:00", 30, None, "2027-03-06 10:30"),
    ],
)
def test_add_open_time_counts_only_open_time(
    schedule: Hours | None, start: str, minutes: int, nation: str | None, due: str
) -> None:
    assert CALENDAR.add_open_time(schedule, london(start), minutes * 60, nation) == london(due)


def test_negative_open_time_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        CALENDAR.add_open_time(WEEKDAYS, london("2027-03-03 09:00"), -1)


# -- the clocks change: 28 March 2027 (01:00 GMT -> 02:00 BST), 31 October 2027 (back)


@pytest.mark.parametrize(
    ("at", "opens_utc"),
    [
        ("2027-03-27 12:00", "2027-03-29 07:00"),  # 08:00 BST
        ("2027-10-30 12:00", "2027-11-01 08:00"),  # 08:00 GMT
    ],
)
def test_opening_time_is_wall_clock_time_after_either_clock_change(at: str, opens_utc: str) -> None:
    assert CALENDAR.next_open(WEEKDAYS_EVEN_BANK_HOLIDAYS, london(at)) == utc(opens_utc)


@pytest.mark.parametrize(
    ("start", "due_utc"),
    [
        ("2027-03-26 17:55", "2027-03-29 07:10"),  # 17:55 GMT + 15 min = 08:10 BST
        ("2027-10-29 17:55", "2027-11-01 08:10"),  # 17:55 BST + 15 min = 08:10 GMT
    ],
)
def test_open_time_carries_over_either_clock_change(start: str, due_utc: str) -> None:
    due = CALENDAR.add_open_time(WEEKDAYS_EVEN_BANK_HOLIDAYS, london(start), 15 * 60)
    assert due == utc(due_utc)


@pytest.mark.parametrize(
    ("sunday", "hours_long", "next_sunday"),
    [
        ("2027-03-28", 23, "2027-04-04"),
        ("2027-10-31", 25, "2027-11-07"),
        ("2027-03-14", 24, "2027-03-21"),
    ],
)
def test_all_day_on_a_clock_change_day_lasts_23_or_25_real_hours(
    sunday: str, hours_long: int, next_sunday: str
) -> None:
    midnight = london(f"{sunday} 00:00")
    end = CALENDAR.add_open_time(SUNDAYS_ALL_DAY, midnight, hours_long * HOUR)
    assert end == midnight + hours_long * HOUR
    assert datetime.fromtimestamp(end, LONDON).date() == date.fromisoformat(sunday) + timedelta(1)
    # one more hour has to wait for the next Sunday
    later = CALENDAR.add_open_time(SUNDAYS_ALL_DAY, midnight, (hours_long + 1) * HOUR)
    assert later == london(f"{next_sunday} 01:00")


@pytest.mark.parametrize(
    ("utc_time", "open_"),
    [
        ("2027-03-28 22:59", True),  # 23:59 BST, still Sunday
        ("2027-03-28 23:00", False),  # Monday 00:00 BST
        ("2027-10-31 23:59", True),  # 23:59 GMT, still Sunday
        ("2027-10-30 23:00", True),  # Sunday 00:00 BST
        ("2027-10-30 22:59", False),
    ],
)
def test_an_all_day_sunday_starts_and_ends_at_local_midnight(utc_time: str, open_: bool) -> None:
    assert CALENDAR.is_open(SUNDAYS_ALL_DAY, utc(utc_time)) is open_


def test_a_skipped_wall_time_opens_when_the_clocks_jump() -> None:
    # 01:30 does not exist on 28 March: open at 02:00 BST (01:00 UTC) until 03:00 BST, one hour
    saturday = london("2027-03-27 12:00")
    assert CALENDAR.next_open(SUNDAY_SMALL_HOURS, saturday) == utc("2027-03-28 01:00")
    assert CALENDAR.add_open_time(SUNDAY_SMALL_HOURS, saturday, HOUR) == utc("2027-03-28 02:00")


def test_a_repeated_wall_time_opens_at_its_first_occurrence() -> None:
    # 01:30 happens twice on 31 October: open at 01:30 BST (00:30 UTC) until 03:00 GMT, 2.5 hours
    saturday = london("2027-10-30 12:00")
    assert CALENDAR.next_open(SUNDAY_SMALL_HOURS, saturday) == utc("2027-10-31 00:30")
    assert CALENDAR.add_open_time(SUNDAY_SMALL_HOURS, saturday, 2.5 * HOUR) == utc(
        "2027-10-31 03:00"
    )


# -- describing an instant to people


@pytest.mark.parametrize(
    ("at", "now", "text"),
    [
        ("2027-03-10 14:05", "2027-03-10 09:00", "today 14:05"),
        ("2027-03-11 08:00", "2027-03-10 09:00", "tomorrow 08:00"),
        ("2027-03-11 00:15", "2027-03-10 23:30", "tomorrow 00:15"),
        ("2027-03-15 08:00", "2027-03-10 09:00", "Mon 08:00"),
        ("2027-03-16 08:00", "2027-03-10 09:00", "Tue 08:00"),  # six days ahead
        ("2027-03-17 08:00", "2027-03-10 09:00", "Wed 17 Mar 08:00"),  # seven
        ("2029-12-25 08:00", "2029-12-10 09:00", "Tue 25 Dec 08:00"),
        ("2028-01-04 08:00", "2027-12-20 09:00", "Tue 4 Jan 2028 08:00"),
        ("2027-03-09 08:00", "2027-03-10 09:00", "Tue 9 Mar 08:00"),  # in the past
        ("2027-07-01 08:00", "2027-07-01 06:00", "today 08:00"),  # BST, not UTC
    ],
)
def test_describe_speaks_in_the_groups_wall_clock(at: str, now: str, text: str) -> None:
    assert CALENDAR.describe(london(at), london(now)) == text


def test_describe_uses_local_dates_across_midnight_utc() -> None:
    # 23:30 UTC on 1 July is already 00:30 on 2 July in London
    assert CALENDAR.describe(utc("2027-07-01 23:30"), london("2027-07-01 09:00")) == (
        "tomorrow 00:30"
    )
