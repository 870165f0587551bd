"""The stored form of a task's spec (the ``tasks.spec`` column), for rows written straight
into the store by the HTTP benchmark and the read-side tests."""

from __future__ import annotations

from typing import Any


def spec_document(
    name: str,
    *,
    owner: str,
    description: str = "",
    type: str = "periodic",
    task: str = "app.worker.test_celery",
    enabled: bool = True,
    crontab: str | None = "0 1 * * *",
    kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A task's spec as apply stores it: in UTC, no options, the crontab (a periodic task's)
    split into its fields."""
    minute, hour, dom, month, dow = (crontab or "* * * * *").split()
    return {
        "name": name,
        "description": description,
        "owner": owner,
        "type": type,
        "task": task,
        "args": [],
        "kwargs": kwargs or {},
        "enabled": enabled,
        "crontab": (
            {
                "minute": minute,
                "hour": hour,
                "day_of_month": dom,
                "month_of_year": month,
                "day_of_week": dow,
            }
            if type == "periodic" and crontab
            else None
        ),
        "interval": None,
        "at": None,
        "timezone": "UTC",
        "options": {},
        "overlap": "allow",
        "catchup": "skip",
        "labels": {},
    }


_7M = {"days": 0, "hours": 0, "minutes": 7, "seconds": 0}
_90M = {"days": 0, "hours": 1, "minutes": 30, "seconds": 0}
MIXED: tuple[tuple[str | None, dict[str, int] | None, str], ...] = (
    ("*/5 * * * *", None, "UTC"),
    ("0 * * * *", None, "UTC"),
    ("*/15 * * * *", None, "UTC"),
    ("30 2 * * *", None, "Europe/Berlin"),
    ("0 9 * * 1-5", None, "America/New_York"),
    (None, _7M, "UTC"),
    (None, _90M, "UTC"),
)
"""A fleet's schedules (crontab, interval, zone): crontabs in three zones and intervals."""


def mixed_spec(name: str, index: int, *, owner: str, **fields: Any) -> dict[str, Any]:
    """Task ``index`` of a mixed fleet: the ``MIXED`` schedules in turn, every other task
    with ``spread: 10m`` (each its own offset), so slots are not one schedule's."""
    crontab, interval, timezone = MIXED[index % len(MIXED)]
    spec = spec_document(name, owner=owner, crontab=crontab, **fields)
    spec.update(interval=interval, timezone=timezone)
    if index % 2:
        spec["spread"] = "10m"
    return spec
