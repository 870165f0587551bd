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
