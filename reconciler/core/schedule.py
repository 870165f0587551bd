"""When tasks fire: the only place that turns a task's schedule into instants.

The rules: docs/beat.md, "Schedules" and "Daylight saving time"; the crontab's are
applied in ``reconciler.core.cronmatch``.

Pure: aware datetimes in, aware UTC datetimes out, the current time always a parameter.
Apply calls ``first_slot``; the Beat scheduler calls ``slot_after`` for every fire;
``reconcile next`` calls ``next_fire_times``.
"""

from __future__ import annotations

import datetime as dt
from typing import TypeVar

from reconciler.core.cronmatch import compiled
from reconciler.core.spec import TaskSpec
from reconciler.core.timing import Timing
from reconciler.core.zones import zone_changes
from reconciler.vocabulary import TaskType

__all__ = ["first_slot", "next_fire_times", "plain_slots", "slot_after", "spread_move"]


def first_slot(spec: TaskSpec, anchor: dt.datetime) -> dt.datetime | None:
    """The first slot of a task whose schedule starts at ``anchor`` (enabled is not checked)."""
    anchor = _aware(anchor, "anchor")
    if spec.type == TaskType.ASYNC:
        return anchor
    if spec.type == TaskType.SCHEDULED:
        return spec.at.astimezone(dt.UTC) if spec.at is not None else None
    if spec.interval is not None and not spec.timing.moves:
        return anchor + spec.interval.timedelta
    return slot_after(spec, anchor, anchor)


def slot_after(spec: TaskSpec, instant: dt.datetime, anchor: dt.datetime) -> dt.datetime | None:
    """The first slot strictly after ``instant``; None for one-off types, crontabs that
    never match and a window that has ended.

    ``anchor`` is when the schedule started: intervals count from it (anchor + k * interval,
    k >= 1); crontabs ignore it. ``spread`` and ``active`` are applied here (calendars are
    not: beat drops a slot on a calendar date when it comes due, counting it as skipped).
    """
    instant = _aware(instant, "instant")
    if spec.type != TaskType.PERIODIC:
        return None
    timing = spec.timing
    if not timing.moves:
        return _plain_after(spec, instant, anchor)
    if timing.start is not None and instant < timing.start:
        instant = timing.start - _TICK
    if timing.spread:
        slot = _spread_after(spec, timing, instant, anchor)
    else:
        slot = _plain_after(spec, instant, anchor)
    if slot is not None and timing.end is not None and slot >= timing.end:
        return None
    return slot


_TICK = dt.timedelta(microseconds=1)
_K = TypeVar("_K")
_V = TypeVar("_V")
_MEMO_SIZE = 64


def _spread_after(
    spec: TaskSpec, timing: Timing, instant: dt.datetime, anchor: dt.datetime
) -> dt.datetime | None:
    """The first spread slot after ``instant``: each plain slot moved by the task's offset,
    scaled down where the next plain slot is nearer than ``spread`` (never past it).

    Spread slots keep the plain slots' order, and none is more than ``offset`` after its
    plain slot, so the search starts at the first plain slot after ``instant - offset``,
    or (beat's case: ``instant`` is a slot given out before) after that slot's plain slot.
    """
    offset, spread = timing.offset, timing.spread
    given = timing.bases if spec.interval is None else None  # intervals: cheap, anchored
    known = given.get(instant) if given is not None else None
    if known is not None:
        base = _next_plain(spec, known, anchor)
    else:
        base = _plain_after(spec, instant - offset, anchor)
    while base is not None:
        following = _next_plain(spec, base, anchor)
        if following is not None and following <= instant:
            base = following  # this slot comes before the next plain one, so before instant
            continue
        slot = base + spread_move(offset, spread, None if following is None else following - base)
        if given is not None:
            # Also the slot asked from, when it is this base's: every task sharing the
            # schedule that fired there starts from its plain slot, without a search.
            _remember(given, slot, base, _MEMO_SIZE)
        if slot > instant:
            return slot
        base = following
    return None


def spread_move(
    offset: dt.timedelta, spread: dt.timedelta, gap: dt.timedelta | None
) -> dt.timedelta:
    """How far spread moves a plain slot: the task's ``offset``, scaled down where ``gap``
    (to the next plain slot; None when there is none) is shorter than ``spread``, so that
    a slot never moves past the next one (docs/task-files.md, "Spread"). Whole seconds,
    like the offset: a fleet's slots share instants, so beat claims them in few rounds."""
    if gap is None or gap >= spread:
        return offset
    scaled = offset // _TICK * (gap // _TICK) // (spread // _TICK)
    return dt.timedelta(seconds=scaled // 1_000_000)


def plain_slots(
    spec: TaskSpec, start: dt.datetime, until: dt.datetime, anchor: dt.datetime
) -> list[dt.datetime]:
    """A periodic schedule's own slots (DST rules applied; before spread, ``active`` and
    calendars) strictly after ``start`` and before ``until``, then the first one at or
    after ``until`` if there is one: spread moves each slot by the gap to the next."""
    start, anchor = _aware(start, "start"), _aware(anchor, "anchor")
    times: list[dt.datetime] = []
    current = _plain_after(spec, start, anchor) if spec.type == TaskType.PERIODIC else None
    while current is not None:
        times.append(current)
        if current >= until:
            break
        current = _plain_after(spec, current, anchor)
    return times


_PLAIN_NEXT: dict[tuple[str, str, dt.datetime], dt.datetime | None] = {}
"""Crontab slots already stepped, by (expression, zone, slot), shared by every task with
that schedule: a spread fleet on one crontab asks for the same few slots a minute."""
_PLAIN_NEXT_SIZE = 4_096


def _next_plain(spec: TaskSpec, base: dt.datetime, anchor: dt.datetime) -> dt.datetime | None:
    """The plain slot after ``base``, remembered: beat asks for it again at the next fire,
    and every task on the same crontab asks for it too."""
    if spec.crontab is None:
        return _plain_after(spec, base, anchor)  # arithmetic, and it depends on the anchor
    key = (spec.crontab.expression, spec.timezone, base)
    if key in _PLAIN_NEXT:
        return _PLAIN_NEXT[key]
    return _remember(_PLAIN_NEXT, key, _plain_after(spec, base, anchor), _PLAIN_NEXT_SIZE)


def _remember(memo: dict[_K, _V], key: _K, value: _V, size: int) -> _V:
    """Keep ``value`` under ``key``; a memo holding ``size`` entries is emptied first."""
    if len(memo) >= size:
        memo.clear()
    memo[key] = value
    return value


def _plain_after(spec: TaskSpec, instant: dt.datetime, anchor: dt.datetime) -> dt.datetime | None:
    """The schedule's own next slot after ``instant`` (DST rules applied), before spread."""
    if spec.interval is not None:
        anchor = _aware(anchor, "anchor")
        period = spec.interval.timedelta
        steps = max((instant - anchor) // period + 1, 1)
        return anchor + steps * period
    if spec.crontab is None:
        return None
    return compiled(spec.crontab).after(zone_changes(spec.timezone), instant)


_MAX_DROPPED = 100_000
"""``next_fire_times`` stops after passing this many slots dropped by calendars."""


def next_fire_times(
    spec: TaskSpec,
    start: dt.datetime,
    count: int,
    anchor: dt.datetime | None = None,
    dropped: list[tuple[dt.datetime, str]] | None = None,
    until: dt.datetime | None = None,
) -> list[dt.datetime]:
    """Up to ``count`` fire times strictly after ``start`` (an interval counts from ``anchor``,
    by default ``start``), and before ``until`` when given; a past ``scheduled`` task and
    an ``async`` one give none.

    Slots a calendar drops are left out, and added to ``dropped`` with the reason when
    given (at most ``count`` of them).
    """
    start = _aware(start, "start")
    if spec.type == TaskType.ASYNC or count <= 0:
        return []
    if spec.type == TaskType.SCHEDULED:
        at = first_slot(spec, start)
        return [at] if at is not None and at > start and (until is None or at < until) else []
    anchor = start if anchor is None else _aware(anchor, "anchor")
    times: list[dt.datetime] = []
    calendars = spec.timing.calendars
    passed = 0
    current = slot_after(spec, start, anchor)
    while current is not None and len(times) < count and passed < _MAX_DROPPED:
        if until is not None and current >= until:
            break
        reason = spec.timing.dropped(current) if calendars else None
        if reason is None:
            times.append(current)
        else:
            passed += 1
            if dropped is not None and len(dropped) < count:
                dropped.append((current, reason))
        current = slot_after(spec, current, anchor)
    return times


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got {value!r}")
    return value.astimezone(dt.UTC)
