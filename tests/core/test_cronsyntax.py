"""The cron dialect of cron: month and weekday names, 7 for Sunday and the macros are stored
as the numeric form, so they plan no change and fire at the same times; every refusal says
how to write it."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core.cronsyntax import (
    MACROS,
    MONTHS,
    WEEKDAYS,
    check_cron_field,
    split_cron_expression,
)
from reconciler.core.describe import describe
from reconciler.core.plan import make_plan
from reconciler.core.schedule import next_fire_times
from reconciler.core.spec import TaskSpec
from reconciler.core.values import FieldError
from tests.core.test_plan import Sourced, stored
from tests.factories import spec

WEEK_HINT = "MON TUE WED THU FRI SAT SUN or 0-7"
MONTH_HINT = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC or 1-12"
SYNTAX_HINT = "use a number, '*', a range 'a-b', a step '*/n' or a list 'a,b'"
MACRO_HINT = (
    "use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, "
    "or five fields such as '0 9 * * MON-FRI'"
)


def _cases(name: str) -> list[str]:
    return [name, name.lower(), name.title()]


# --- every name, in any case -------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "stored"),
    [(text, str(number)) for number, name in enumerate(MONTHS, 1) for text in _cases(name)],
)
def test_every_month_name(written: str, stored: str) -> None:
    assert check_cron_field("month_of_year", written) == stored


@pytest.mark.parametrize(
    ("written", "stored"),
    [(text, str(number)) for number, name in enumerate(WEEKDAYS) for text in _cases(name)],
)
def test_every_weekday_name(written: str, stored: str) -> None:
    assert check_cron_field("day_of_week", written) == stored


# --- ranges, lists, steps and 7 ----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "written", "stored"),
    [
        ("day_of_week", "MON-FRI", "1-5"),
        ("day_of_week", "mon-fri", "1-5"),
        ("day_of_week", "Mon-Fri/2", "1-5/2"),
        ("day_of_week", "MON,WED,FRI", "1,3,5"),
        ("day_of_week", "MON-WED,FRI", "1-3,5"),
        ("day_of_week", "SUN-SAT", "0-6"),
        ("day_of_week", "SUN", "0"),
        ("day_of_week", "7", "0"),
        ("day_of_week", "0,7", "0"),
        ("day_of_week", "SUN,7", "0"),
        ("day_of_week", "1,7", "1,0"),
        ("day_of_week", "5-7", "5-6,0"),
        ("day_of_week", "FRI-SUN", "5-6,0"),
        ("day_of_week", "SAT-SUN", "6,0"),
        ("day_of_week", "6-7", "6,0"),
        ("day_of_week", "0-7", "0-6"),
        ("day_of_week", "1-7", "1-6,0"),
        ("day_of_week", "1-7/2", "1-6/2,0"),
        ("day_of_week", "2-7/2", "2-6/2"),
        ("day_of_week", "SUN-SUN", "0-0"),
        ("day_of_week", "7/2", "0"),
        ("day_of_week", "MON/2", "1/2"),
        ("day_of_week", "1-MON", "1-1"),
        ("day_of_week", "*/2", "*/2"),
        ("month_of_year", "JAN-MAR", "1-3"),
        ("month_of_year", "JAN-MAR,jul,Dec", "1-3,7,12"),
        ("month_of_year", "JAN-DEC/3", "1-12/3"),
        ("month_of_year", "jun-8", "6-8"),
        ("month_of_year", "*/3", "*/3"),
        # numeric text keeps its shape, so stored specs stay as they are
        ("day_of_week", "0,6", "0,6"),
        ("day_of_week", "1,1", "1,1"),
        ("month_of_year", " 1, 2 ", "1,2"),
        ("minute", "0-59/15", "0-59/15"),
    ],
)
def test_names_ranges_lists_and_seven(field: str, written: str, stored: str) -> None:
    assert check_cron_field(field, written) == stored


@pytest.mark.parametrize(
    ("macro", "fields"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
        ("@Hourly", "0 * * * *"),
        ("  @weekly ", "0 0 * * 0"),
    ],
)
def test_every_macro(macro: str, fields: str) -> None:
    assert " ".join(split_cron_expression(macro).values()) == fields
    assert spec(crontab=macro) == spec(crontab=fields)
    assert set(MACROS) == {
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    }


# --- refusals, each with how to write it -------------------------------------------------


@pytest.mark.parametrize(
    ("field", "written", "message", "hint"),
    [
        ("day_of_week", "MON-FRY", "'MON-FRY': unknown weekday 'FRY'", WEEK_HINT),
        ("day_of_week", "fry", "'fry': unknown weekday 'fry'", WEEK_HINT),
        (
            "day_of_week",
            "MONDAY",
            "'MONDAY': unknown weekday 'MONDAY'",
            f"write MON; weekdays: {WEEK_HINT}",
        ),
        (
            "day_of_week",
            "Tues",
            "'Tues': unknown weekday 'Tues'",
            f"write TUE; weekdays: {WEEK_HINT}",
        ),
        (
            "day_of_week",
            "JAN",
            "'JAN': unknown weekday 'JAN'",
            f"'JAN' is a month name, for the month_of_year field; weekdays: {WEEK_HINT}",
        ),
        (
            "month_of_year",
            "JANUARY",
            "'JANUARY': unknown month 'JANUARY'",
            f"write JAN; months: {MONTH_HINT}",
        ),
        (
            "month_of_year",
            "MON-FRI",
            "'MON-FRI': unknown month 'MON'",
            f"'MON' is a weekday name, for the day_of_week field; months: {MONTH_HINT}",
        ),
        ("month_of_year", "JAN-FOO", "'JAN-FOO': unknown month 'FOO'", MONTH_HINT),
        (
            "minute",
            "MON",
            "'MON' is not a cron value",
            "'MON' is a weekday name, for the day_of_week field",
        ),
        (
            "hour",
            "JAN",
            "'JAN' is not a cron value",
            "'JAN' is a month name, for the month_of_year field",
        ),
        ("minute", "L", "'L' is not a cron value", SYNTAX_HINT),
        ("day_of_week", "8", "must be 0-7, got 8", WEEK_HINT),
        ("day_of_week", "MON-8", "must be 0-7, got 8", WEEK_HINT),
        ("month_of_year", "13", "must be 1-12, got 13", MONTH_HINT),
        ("month_of_year", "0", "must be 1-12, got 0", MONTH_HINT),
        ("day_of_week", "FRI-MON", "range FRI-MON runs backwards", "split it: 'FRI-SUN,MON'"),
        ("day_of_week", "sat-tue", "range sat-tue runs backwards", "split it: 'SAT-SUN,MON-TUE'"),
        ("day_of_week", "5-0", "range 5-0 runs backwards", "write 5-7 (Sunday is 0 or 7)"),
        ("day_of_week", "5-1", "range 5-1 runs backwards", "split it: '5-6,0-1'"),
        ("day_of_week", "7-1", "range 7-1 runs backwards", "write 0-1 (Sunday is 0 or 7)"),
        ("month_of_year", "NOV-FEB", "range NOV-FEB runs backwards", "split it: 'NOV-DEC,JAN-FEB'"),
        ("month_of_year", "DEC-JAN", "range DEC-JAN runs backwards", "split it: 'DEC,JAN'"),
        ("hour", "22-2", "range 22-2 runs backwards", "split it: '22-23,0-2'"),
        ("hour", "23-0", "range 23-0 runs backwards", "split it: '23,0'"),
        ("day_of_month", "5-1", "range 5-1 runs backwards", "split it: '5-31,1'"),
        (
            "day_of_week",
            "*/MON",
            "'*/MON' is not a cron value",
            f"{SYNTAX_HINT}; names: {WEEK_HINT}",
        ),
        ("day_of_week", "MON-", "'MON-' is not a cron value", f"{SYNTAX_HINT}; names: {WEEK_HINT}"),
        (
            "month_of_year",
            "JAN1",
            "'JAN1' is not a cron value",
            f"{SYNTAX_HINT}; names: {MONTH_HINT}",
        ),
        ("day_of_week", "MON/0", "step must be at least 1, got 0", "e.g. '*/5'"),
        ("day_of_week", "?", "'?' is not a cron value", "write '*'"),
        (
            "minute",
            "@daily",
            "'@daily' is not a cron value",
            "a macro stands for the whole crontab: crontab: '@daily'",
        ),
        ("day_of_week", "", "is empty", "use '*' for every value"),
        (
            "day_of_week",
            "\uff11",
            "'\uff11' uses digits other than ASCII 0-9",
            "write the number as 0-9",
        ),
    ],
)
def test_refusals_say_how_to_write_it(field: str, written: str, message: str, hint: str) -> None:
    with pytest.raises(FieldError) as caught:
        check_cron_field(field, written)
    assert (caught.value.message, caught.value.hint) == (message, hint)


@pytest.mark.parametrize(
    ("written", "message", "hint"),
    [
        ("@reboot", "'@reboot' is not a schedule here", "use type: async to run once when applied"),
        ("@every 5m", "'@every 5m' is not a crontab", "use interval: 5m"),
        ("@weekdays", "unknown macro '@weekdays'", MACRO_HINT),
        ("@daily 5", "unknown macro '@daily 5'", MACRO_HINT),
        (
            "0 9 * MON-FRI",
            "needs 5 fields, got 4 in '0 9 * MON-FRI'",
            "minute hour day_of_month month_of_year day_of_week, e.g. '0 9 * * 1', "
            "or a macro such as '@daily'",
        ),
    ],
)
def test_macro_refusals(written: str, message: str, hint: str) -> None:
    with pytest.raises(FieldError) as caught:
        split_cron_expression(written)
    assert (caught.value.message, caught.value.hint) == (message, hint)


# --- equal meanings, equal stored text, no change planned --------------------------------

EQUAL_MEANINGS = [
    ("0 9 * * MON-FRI", "0 9 * * 1-5"),
    ("0 9 * * mon-fri", "0 9 * * 1-5"),
    ("0 0 * * 7", "0 0 * * 0"),
    ("0 0 * * SUN", "0 0 * * 0"),
    ("0 0 * * 5-7", "0 0 * * 5-6,0"),
    ("0 0 * * FRI-SUN", "0 0 * * 5-6,0"),
    ("0 12 1 JAN,JUL *", "0 12 1 1,7 *"),
    ("30 4 * jan-mar MON", "30 4 * 1-3 1"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@weekly", "0 0 * * SUN"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
    ({"hour": 9, "day_of_week": "MON-FRI"}, "* 9 * * 1-5"),
    ({"month_of_year": "DEC", "day_of_week": 7}, "* * * 12 0"),
]


@pytest.mark.parametrize(("written", "numeric"), EQUAL_MEANINGS)
def test_equal_meanings_store_equal_text_and_plan_no_change(written: Any, numeric: str) -> None:
    named, plain = spec(crontab=written), spec(crontab=numeric)
    assert named == plain
    assert named.canonical() == plain.canonical()
    assert named.content_hash == plain.content_hash
    assert named.schedule_text == plain.schedule_text
    plan = make_plan([Sourced(named)], [stored(plain)])
    assert not plan and plan.unchanged == 1


# Content hashes of numeric specs as the previous version stored them: a task file that
# does not change must plan no change after an upgrade.
BASE = {"name": "nightly", "owner": "billing", "type": "periodic", "task": "app.worker.test_celery"}
STORED_HASHES: list[tuple[dict[str, Any], str]] = [
    (
        {"crontab": "0 9 * * 1-5"},
        "c7aeede6b3087a78eb80ebf517fc272d5b789b1b3ea3383e8c00a1eebabb36ab",
    ),
    (
        {"crontab": "*/15 0-6,22-23 1,15 1-12/3 0,6", "timezone": "Europe/Berlin"},
        "6cd7a59d14144d8354d9fb4841ef0b97fcc84a3babaaddcf357baecbbf0e134e",
    ),
    (
        {"crontab": {"minute": 0, "hour": "9", "day_of_week": "0-6"}},
        "bf43bbee50f99ec33eda3d76e19d21e3b2dd069c2a6b16b066d46cca54f432aa",
    ),
    ({"crontab": "0 0 1 1 *"}, "8283812dfba2f8ed7bb3dbdb4855c98111cc6abb27f42d258cc052b9a57ffcb4"),
    ({"crontab": "0 0 * * 0"}, "095cf7058910b7a179b6e3f5af5d4ad79d04d74d9a1bc63e0d7d65f804a16822"),
    (
        {"interval": {"hours": 1, "minutes": 30}},
        "637f5cec32f0ae82424caa90f8ef76c2d1c465890fece6ae1d7aa6492d731f78",
    ),
    (
        {"interval": {"days": 365, "hours": 23, "minutes": 59, "seconds": 59}},
        "3632ba0d2acb63dc5c010a6746c2f98a1c5215f77f3f94caaf6f8dbddeb8ea5f",
    ),
    (
        {"interval": {"seconds": 5}, "enabled": False, "labels": {"team": "x"}},
        "de3efdfef7d7a78e23bb76e1257e00f9ba7859bfbe062d590fd8679a705ef7cb",
    ),
    (
        {"type": "scheduled", "at": "2030-01-01T10:00:00", "timezone": "Asia/Tokyo"},
        "fba7452e160b756271af6951bb55b0cb3d7c2e614961ed5f6179a472285cf913",
    ),
    (
        {"type": "async", "args": [1, "a"], "kwargs": {"k": {"secret_env": "TOKEN"}}},
        "b5039883781848a2dc960f673a2555392700f72ebf149a3ba23e4ffa93109fcb",
    ),
]


@pytest.mark.parametrize(("fields", "digest"), STORED_HASHES)
def test_numeric_specs_keep_their_stored_hash(fields: dict[str, Any], digest: str) -> None:
    task = TaskSpec.model_validate({**BASE, **fields})
    assert task.content_hash == digest
    # and the same schedule written with names or a macro has the same one
    if fields.get("crontab") == "0 9 * * 1-5":
        assert (
            TaskSpec.model_validate({**BASE, "crontab": "0 9 * * Mon-Fri"}).content_hash == digest
        )
    if fields.get("crontab") == "0 0 1 1 *":
        assert TaskSpec.model_validate({**BASE, "crontab": "@yearly"}).content_hash == digest
    if fields.get("crontab") == "0 0 * * 0":
        assert TaskSpec.model_validate({**BASE, "crontab": "0 0 * * 7"}).content_hash == digest


def test_stored_text_is_the_numeric_form() -> None:
    task = spec(crontab="0 9 * JAN-MAR MON-FRI")
    assert json.loads(task.model_dump_json())["crontab"] == {
        "minute": "0",
        "hour": "9",
        "day_of_month": "*",
        "month_of_year": "1-3",
        "day_of_week": "1-5",
    }
    assert task.schedule_text == "0 9 * 1-3 1-5"


# --- in words ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "words"),
    [
        ("0 9 * * MON-FRI", "At 09:00, Monday through Friday (UTC)"),
        ("0 0 * * 7", "At 00:00, only on Sunday (UTC)"),
        ("0 0 * * FRI-SUN", "At 00:00, Friday through Sunday (UTC)"),
        ("0 0 * * SAT-SUN", "At 00:00, only on Saturday and Sunday (UTC)"),
        ("0 0 * * 1-7/2", "At 00:00, only on Monday, Wednesday, Friday, and Sunday (UTC)"),
        ("0 0 * * MON-SUN", "At 00:00 (UTC)"),
        ("0 0 13 * FRI", "At 00:00, on day 13 of the month, or only on Friday (UTC)"),
        ("0 0 1 * THU-SUN", "At 00:00, on day 1 of the month, or Thursday through Sunday (UTC)"),
        ("0 12 * JAN,JUL SUN", "At 12:00, only on Sunday, only in January and July (UTC)"),
        ("@yearly", "At 00:00, on day 1 of the month, only in January (UTC)"),
        ("@monthly", "At 00:00, on day 1 of the month (UTC)"),
        ("@weekly", "At 00:00, only on Sunday (UTC)"),
        ("@daily", "At 00:00 (UTC)"),
        ("@hourly", "Every hour (UTC)"),
    ],
)
def test_described_in_words(written: str, words: str) -> None:
    assert describe(spec(crontab=written)) == words


# --- the same fire times as the numeric form ---------------------------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]


@st.composite
def weekday_item(draw: st.DrawFn) -> tuple[str, str]:
    """One day-of-week item as (numeric text, the same days written with names or 7)."""
    name = st.sampled_from([str.upper, str.lower, str.title])
    kind = draw(st.sampled_from(["one", "range", "to-sunday"]))
    if kind == "one":
        day = draw(st.integers(0, 6))
        written = draw(st.sampled_from(["7", "SUN"])) if day == 0 else WEEKDAYS[day]
        return str(day), draw(name)(written)
    if kind == "range":
        first = draw(st.integers(0, 5))
        last = draw(st.integers(first + 1, 6))
        step = draw(st.sampled_from(["", "/2", "/3"]))
        written = f"{WEEKDAYS[first]}-{WEEKDAYS[last]}{step}"
        return f"{first}-{last}{step}", draw(name)(written)
    first = draw(st.integers(1, 6))
    days = ",".join(str(day) for day in [*range(first, 7), 0])
    written = draw(st.sampled_from([f"{WEEKDAYS[first]}-SUN", f"{first}-7"]))
    return days, draw(name)(written)


@st.composite
def month_item(draw: st.DrawFn) -> tuple[str, str]:
    first = draw(st.integers(1, 12))
    if draw(st.booleans()):
        return str(first), draw(st.sampled_from([str.upper, str.lower]))(MONTHS[first - 1])
    last = draw(st.integers(first, 12))
    return f"{first}-{last}", f"{MONTHS[first - 1]}-{MONTHS[last - 1].lower()}"


def _listed(items: list[tuple[str, str]]) -> tuple[str, str]:
    return ",".join(n for n, _ in items), ",".join(w for _, w in items)


@settings(max_examples=150, deadline=None)
@given(
    weekdays=st.one_of(
        st.just(("*", "*")), st.lists(weekday_item(), min_size=1, max_size=3).map(_listed)
    ),
    months=st.one_of(
        st.just(("*", "*")), st.lists(month_item(), min_size=1, max_size=3).map(_listed)
    ),
    minute=st.sampled_from(["0", "30", "*/20"]),
    hour=st.sampled_from(["9", "2", "*", "*/5", "1-3"]),
    day=st.sampled_from(["*", "1", "13", "*/10"]),
    zone=st.sampled_from(ZONES),
    start=st.datetimes(
        dt.datetime(2020, 1, 1), dt.datetime(2032, 12, 31), timezones=st.just(dt.UTC)
    ),
)
def test_names_and_seven_fire_as_the_numeric_form(
    weekdays: tuple[str, str],
    months: tuple[str, str],
    minute: str,
    hour: str,
    day: str,
    zone: str,
    start: dt.datetime,
) -> None:
    numeric = spec(crontab=f"{minute} {hour} {day} {months[0]} {weekdays[0]}", timezone=zone)
    named = spec(crontab=f"{minute} {hour} {day} {months[1]} {weekdays[1]}", timezone=zone)
    assert next_fire_times(named, start, 6) == next_fire_times(numeric, start, 6)


@settings(max_examples=60, deadline=None)
@given(
    macro=st.sampled_from(sorted(MACROS)),
    case=st.sampled_from([str.lower, str.upper]),
    zone=st.sampled_from(ZONES),
    start=st.datetimes(
        dt.datetime(2020, 1, 1), dt.datetime(2032, 12, 31), timezones=st.just(dt.UTC)
    ),
)
def test_macros_fire_as_the_numeric_form(
    macro: str, case: Any, zone: str, start: dt.datetime
) -> None:
    named = spec(crontab=case(macro), timezone=zone)
    numeric = spec(crontab=MACROS[macro], timezone=zone)
    assert next_fire_times(named, start, 4) == next_fire_times(numeric, start, 4)
