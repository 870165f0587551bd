"""The task model: normalisation (equal meanings compare equal) and derived values."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from reconciler.core.cronsyntax import check_cron_field
from reconciler.core.schedulefields import Crontab, Interval
from reconciler.core.spec import SCHEDULE_FIELDS, Options, TaskSpec
from reconciler.core.values import FieldError, describe_value

BASE: dict[str, Any] = {
    "name": "daily-report",
    "owner": "billing",
    "type": "periodic",
    "task": "app.worker.test_celery",
}


def spec(**fields: Any) -> TaskSpec:
    return TaskSpec.model_validate({**BASE, **fields})


def test_crontab_string_and_mapping_compare_equal() -> None:
    as_text = spec(crontab="0 9 * * 1")
    as_mapping = spec(crontab={"minute": 0, "hour": "9", "day_of_week": 1})
    assert as_text == as_mapping
    assert as_text.content_hash == as_mapping.content_hash
    assert as_text.crontab is not None and as_text.crontab.expression == "0 9 * * 1"


def test_crontab_canonical_text_drops_spaces() -> None:
    assert spec(crontab={"minute": "0, 30"}).crontab == Crontab(minute="0,30")
    assert Crontab.parse("*/5 1-3 * * 0,6").expression == "*/5 1-3 * * 0,6"


def test_interval_parts_and_defaults_fill_in() -> None:
    a = spec(interval={"minutes": 90 - 60, "hours": 1})
    b = spec(interval={"hours": 1, "minutes": 30, "seconds": 0, "days": 0})
    assert a == b
    assert a.interval == Interval(hours=1, minutes=30)
    assert a.interval.total_seconds == 5400
    assert a.interval.timedelta == dt.timedelta(minutes=90)


def test_defaults_are_filled() -> None:
    task = spec(crontab="* * * * *")
    assert task.canonical() == {
        **BASE,
        "description": "",
        "args": [],
        "kwargs": {},
        "enabled": True,
        "crontab": {
            "minute": "*",
            "hour": "*",
            "day_of_month": "*",
            "month_of_year": "*",
            "day_of_week": "*",
        },
        "interval": None,
        "at": None,
        "timezone": "UTC",
        "options": {
            "queue": None,
            "priority": None,
            "expires": None,
            "time_limit": None,
            "soft_time_limit": None,
        },
        "overlap": "allow",
        "catchup": "skip",
        "labels": {},
    }


def test_content_hash_changes_with_content() -> None:
    assert spec(crontab="0 9 * * 1").content_hash != spec(crontab="0 9 * * 2").content_hash
    assert len(spec(crontab="0 9 * * 1").content_hash) == 64


def test_at_without_offset_uses_the_task_zone_and_is_stored_in_utc() -> None:
    local = spec(type="scheduled", at="2030-01-15T10:00:00", timezone="Europe/Berlin")
    assert local.at == dt.datetime(2030, 1, 15, 9, 0, tzinfo=dt.UTC)
    assert local.at is not None and local.at.tzinfo == dt.UTC
    offset = spec(type="scheduled", at="2030-01-15T09:00:00Z", timezone="Europe/Berlin")
    assert offset == local
    assert local.tz == ZoneInfo("Europe/Berlin")


def test_options_for_apply_async() -> None:
    options = Options(queue="reports", priority=5)
    assert options.apply_async_kwargs() == {"queue": "reports", "priority": 5}


def test_schedule_fields() -> None:
    assert SCHEDULE_FIELDS == (
        "type",
        "crontab",
        "interval",
        "at",
        "timezone",
        "enabled",
        "spread",
        "active",
    )


def test_spec_is_frozen() -> None:
    task = spec(crontab="* * * * *")
    with pytest.raises(ValidationError):
        task.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "text", "message"),
    [
        ("minute", "60", "must be 0-59, got 60"),
        ("hour", "1-24", "must be 0-23, got 24"),
        ("day_of_month", "0", "must be 1-31, got 0"),
        ("month_of_year", "13", "must be 1-12, got 13"),
        ("day_of_week", "8", "must be 0-7, got 8"),
        ("minute", "*/0", "step must be at least 1, got 0"),
        ("minute", "5-1", "range 5-1 runs backwards"),
        ("minute", "", "is empty"),
        ("minute", "L", "'L' is not a cron value"),
    ],
)
def test_cron_field_ranges(field: str, text: str, message: str) -> None:
    with pytest.raises(FieldError) as caught:
        check_cron_field(field, text)
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("field", "text"),
    [("minute", "0-59/15"), ("hour", "*/2"), ("day_of_week", "0,6"), ("day_of_month", "1-31")],
)
def test_cron_field_accepts(field: str, text: str) -> None:
    assert check_cron_field(field, text) == text


def test_describe_value() -> None:
    assert describe_value("x") == "a string ('x')"
    assert describe_value(True) == "a boolean (True)"
    assert describe_value(None) == "null"
    assert describe_value([1]) == "a list"
    assert describe_value(dt.date(2025, 1, 1)) == "a date (2025-01-01)"
    assert describe_value("y" * 50) == "a string ('" + "y" * 36 + "...)"
