"""When tasks fire: the only place that turns a task's schedule into instants.

The rules: docs/beat.md, "Schedules" and "Daylight saving time"; the crontab's are
applied in ``reconciler.core.cronmatch``.

Pure: aware datetimes in, aware UTC datetimes out, the current time always a parameter.
Apply calls ``first_slot``; the Beat scheduler calls ``slot_after`` for every fire;
``reconcile next`` calls ``next_fire_times``.
"""

from __future__ import annotations

import datetime as dt

from reconciler.core.cronmatch import compiled
from reconciler.core.spec import TaskSpec
from reconciler.core.zones import zone_changes
from reconciler.vocabulary import TaskType

__all__ = ["first_slot", "next_fire_times", "slot_after"]


def first_slot(spec: TaskSpec, anchor: dt.datetime) -> dt.datetime | None:
    """The first slot of a task whose schedule starts at ``anchor`` (enabled is not checked)."""
    anchor = _aware(anchor, "anchor")
    if spec.type == TaskType.ASYNC:
        return anchor
    if spec.type == TaskType.SCHEDULED:
        return spec.at.astimezone(dt.UTC) if spec.at is not None else None
    if spec.interval is not None:
        return anchor + spec.interval.timedelta
    return slot_after(spec, anchor, anchor)


def slot_after(spec: TaskSpec, instant: dt.datetime, anchor: dt.datetime) -> dt.datetime | None:
    """The first slot strictly after ``instant``; None for one-off types and crontabs that
    never match.

    ``anchor`` is when the schedule started: intervals count from it (anchor + k * interval,
    k >= 1); crontabs ignore it.
    """
    instant = _aware(instant, "instant")
    if spec.type != TaskType.PERIODIC:
        return None
    if spec.interval is not None:
        anchor = _aware(anchor, "anchor")
        period = spec.interval.timedelta
        steps = max((instant - anchor) // period + 1, 1)
        return anchor + steps * period
    if spec.crontab is None:
        return None
    return compiled(spec.crontab).after(zone_changes(spec.timezone), instant)


def next_fire_times(
    spec: TaskSpec, start: dt.datetime, count: int, anchor: dt.datetime | None = None
) -> list[dt.datetime]:
    """Up to ``count`` fire times strictly after ``start`` (an interval counts from ``anchor``,
    by default ``start``); a past ``scheduled`` task and an ``async`` one give none."""
    start = _aware(start, "start")
    if spec.type == TaskType.ASYNC or count <= 0:
        return []
    if spec.type == TaskType.SCHEDULED:
        at = first_slot(spec, start)
        return [at] if at is not None and at > start else []
    anchor = start if anchor is None else _aware(anchor, "anchor")
    times: list[dt.datetime] = []
    current = slot_after(spec, start, anchor)
    while current is not None and len(times) < count:
        times.append(current)
        current = slot_after(spec, current, anchor)
    return times


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got {value!r}")
    return value.astimezone(dt.UTC)
