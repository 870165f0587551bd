"""Intervals as people write them: over-full parts carried, duration strings, one canonical
shape in the stored form, the plan and the words; the old form's ranges unchanged."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from reconciler.core.describe import describe
from reconciler.core.durations import DURATION_HINT
from reconciler.core.plan import FieldChange, make_plan
from reconciler.core.schedule import next_fire_times
from reconciler.core.schedulefields import Interval
from reconciler.core.values import FieldError
from tests.core.test_plan import Sourced, stored
from tests.factories import spec


@pytest.mark.parametrize(
    ("written", "parts", "text"),
    [
        ({"minutes": 90}, (0, 1, 30, 0), "1h30m"),
        ({"seconds": 300}, (0, 0, 5, 0), "5m"),
        ({"hours": 48}, (2, 0, 0, 0), "2d"),
        ({"hours": 25, "minutes": 61, "seconds": 61}, (1, 2, 2, 1), "1d2h2m1s"),
        (
            {"days": 365, "hours": 23, "minutes": 59, "seconds": 59},
            (365, 23, 59, 59),
            "365d23h59m59s",
        ),
        ({"hours": 1, "minutes": 30}, (0, 1, 30, 0), "1h30m"),
        ({"hours": 1, "minutes": 30, "seconds": 0, "days": 0}, (0, 1, 30, 0), "1h30m"),
        ("90m", (0, 1, 30, 0), "1h30m"),
        ("1h30m", (0, 1, 30, 0), "1h30m"),
        ("2d", (2, 0, 0, 0), "2d"),
        ("45s", (0, 0, 0, 45), "45s"),
        ("26h", (1, 2, 0, 0), "1d2h"),
        (" 300s ", (0, 0, 5, 0), "5m"),
        ("365d23h59m59s", (365, 23, 59, 59), "365d23h59m59s"),
    ],
)
def test_forms_normalise_to_one_shape(written: Any, parts: tuple[int, ...], text: str) -> None:
    interval = Interval.model_validate(written)
    assert (interval.days, interval.hours, interval.minutes, interval.seconds) == parts
    assert interval.text == text
    task = spec(interval=written)
    assert task.schedule_text == f"every {text}"
    assert describe(task) == f"every {text}"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ({"minutes": 90}, {"hours": 1, "minutes": 30}),
        ({"seconds": 300}, {"minutes": 5}),
        ("90m", {"hours": 1, "minutes": 30}),
        ("1h30m", {"minutes": 90}),
        ("2d", {"hours": 48}),
        ("26h", {"days": 1, "hours": 2}),
    ],
)
def test_equal_meanings_store_equal_text_and_plan_no_change(one: Any, other: Any) -> None:
    a, b = spec(interval=one), spec(interval=other)
    assert a == b and a.canonical() == b.canonical() and a.content_hash == b.content_hash
    assert not make_plan([Sourced(a)], [stored(b)])


@pytest.mark.parametrize(
    ("written", "message", "hint"),
    [
        (
            "90x",
            "'90x': unknown unit 'x'",
            "units are d (days), h (hours), m (minutes) and s (seconds)",
        ),
        ("1.5h", "'1.5h': fractions are not allowed", "write 1h30m"),
        ("90", "'90' has no unit", "add one: 90s, 90m, 90h or 90d"),
        ("0s", "'0s' must be above 0", "e.g. 45s, 5m or 1h"),
        (
            "366d",
            "366d is longer than the longest interval, 365d23h59m59s",
            "use at most 365d23h59m59s, or a crontab for a yearly schedule",
        ),
        (
            {"days": 365, "hours": 24},
            "365d24h is longer than the longest interval, 365d23h59m59s",
            "use at most 365d23h59m59s, or a crontab for a yearly schedule",
        ),
        (
            {"minutes": 600000},
            "600000m is longer than the longest interval, 365d23h59m59s",
            "use at most 365d23h59m59s, or a crontab for a yearly schedule",
        ),
        (
            90,
            "expected a duration or a mapping, got an integer (90)",
            "give it a unit: 90s, 90m or 90h",
        ),
        ({"minutes": 0}, "must be above 0", "set at least one of days, hours, minutes, seconds"),
        (1.5, "expected a duration or a mapping, got a number (1.5)", DURATION_HINT),
        (["5m"], "expected a duration or a mapping, got a list", DURATION_HINT),
    ],
)
def test_refusals_say_how_to_write_it(written: Any, message: str, hint: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Interval.model_validate(written)
    cause = caught.value.errors()[0]["ctx"]["error"]
    assert isinstance(cause, FieldError)
    assert (cause.message, cause.hint) == (message, hint)


@pytest.mark.parametrize(
    ("written", "loc", "kind"),
    [
        ({"days": 400}, ("days",), "less_than_equal"),
        ({"hours": -1}, ("hours",), "greater_than_equal"),
        ({"seconds": 1.5}, ("seconds",), "int_type"),
        ({"minutes": "5"}, ("minutes",), "int_type"),
        ({"minutes": True}, ("minutes",), "int_type"),
        ({"weeks": 1}, ("weeks",), "extra_forbidden"),
    ],
)
def test_the_old_forms_refusals_stay_with_their_part(
    written: dict[str, Any], loc: tuple[str, ...], kind: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Interval.model_validate(written)
    error = caught.value.errors()[0]
    assert (error["loc"], error["type"]) == (loc, kind)


def test_the_plan_shows_an_interval_change_in_one_shape() -> None:
    old, new = spec("t", interval={"hours": 1}), spec("t", interval="90m")
    plan = make_plan([Sourced(new)], [stored(old)])
    assert plan.updates[0].fields == (FieldChange("interval", "1h", "1h30m"),)
    assert plan.updates[0].schedule_changed


def test_fire_times_of_the_forms_agree() -> None:
    anchor = dt.datetime(2026, 3, 28, 23, 0, tzinfo=dt.UTC)
    expected = [anchor + k * dt.timedelta(minutes=90) for k in range(1, 6)]
    for written in (
        "90m",
        "1h30m",
        {"minutes": 90},
        {"seconds": 5400},
        {"hours": 1, "minutes": 30},
    ):
        task = spec(interval=written, timezone="Europe/Berlin")
        assert next_fire_times(task, anchor, 5) == expected
