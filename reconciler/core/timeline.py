"""Many tasks' slots counted per time bucket, for the page's timeline (docs/page.md,
"Pictures").

The slots are the ones ``reconcile next`` shows and beat fires (spread, windows and
calendars applied; ``reconciler.core.schedule``). Tasks whose stored schedules are the
same but for ``spread`` (the same fields, anchor, window, calendars and zone) have the
same plain slots, so ``schedules_of`` groups them and ``count_slots`` computes a group's
plain slots once per window, then moves them by each member's offset with beat's rule
(``spread_move``) and keeps those its window and calendars keep: a fleet costs one
schedule computation per distinct schedule, not per task or per spread offset.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from reconciler.core.schedule import next_fire_times, plain_slots, spread_move
from reconciler.core.spec import TaskSpec, stored_spec
from reconciler.core.timing import spread_offset
from reconciler.errors import StoredSpecUnreadable
from reconciler.vocabulary import TaskType

NOT_SLOTS = frozenset(
    {
        "name",
        "description",
        "owner",
        "labels",
        "task",
        "args",
        "kwargs",
        "options",
        "alerts",
        "history",
        "overlap",
        "catchup",
        "enabled",
    }
)
"""Stored fields that do not move a slot; every other field (a new one too) keeps two
tasks apart, so a task never shares slots it does not have."""

TOP = 3
"""Names kept per bucket: the tasks with the most slots in it."""

_MAX_SLOTS = 10_000_000  # a bound far above any window's: until ends the walk
_TICK = dt.timedelta(microseconds=1)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Scheduled:
    """One live, enabled task with something left to fire, as stored."""

    name: str
    spec: Mapping[str, Any]
    anchor: dt.datetime | None


@dataclass(frozen=True)
class SlotBucket:
    """One bucket's slots: how many, of how many tasks, and the tasks with the most."""

    start: dt.datetime
    slots: int
    tasks: int
    top: tuple[tuple[str, int], ...]


@dataclass
class SlotCounts:
    """The non-empty buckets, oldest first."""

    buckets: list[SlotBucket] = field(default_factory=list)
    slots: int = 0
    groups: int = 0


@dataclass(frozen=True)
class Member:
    """One task of a ``Schedule``: from when it has slots (its anchor) and its spread."""

    name: str
    anchor: dt.datetime | None
    spread: dt.timedelta
    offset: dt.timedelta


@dataclass
class Schedule:
    """Tasks with the same plain slots, each from its own anchor (when its schedule
    started) and moved by its own spread offset."""

    spec: TaskSpec
    """The first member's: its own spread is not used, its window and calendars are all's."""
    anchor: dt.datetime | None
    """An interval's anchor (the same for all); a crontab's slots do not depend on it."""
    members: list[Member] = field(default_factory=list)


@dataclass
class Schedules:
    """The tasks grouped by schedule, and the names of those whose stored spec this
    version cannot read (left out: beat leaves their slots waiting too)."""

    groups: list[Schedule]
    unreadable: list[str]


def bucket_start(moment: dt.datetime, size: dt.timedelta) -> dt.datetime:
    """The start of the bucket holding ``moment``: buckets are aligned to the epoch, so
    5-minute buckets start at :00, :05, ..."""
    seconds = int(size.total_seconds())
    epoch = int(moment.timestamp()) // seconds * seconds
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def schedules_of(tasks: Iterable[Scheduled]) -> Schedules:
    """``tasks`` grouped by what decides their plain slots (all but ``spread``), each
    group's spec read once per stored ``spread`` its members have."""
    found: dict[str, Schedule] = {}
    spreads: dict[tuple[str, str], dt.timedelta] = {}  # (group, stored spread): as read
    unreadable: list[str] = []
    for task in sorted(tasks, key=lambda each: each.name):
        fields = {k: v for k, v in task.spec.items() if k not in NOT_SLOTS and k != "spread"}
        key_parts: dict[str, Any] = {"fields": fields}
        if fields.get("interval") is not None and task.anchor is not None:
            key_parts["anchor"] = task.anchor.isoformat()
        key = json.dumps(key_parts, sort_keys=True, default=str, separators=(",", ":"))
        stored = json.dumps(task.spec.get("spread"), sort_keys=True, default=str)
        spread = spreads.get((key, stored))
        if spread is None:
            try:
                spec = stored_spec(task.name, task.spec)
            except StoredSpecUnreadable:
                unreadable.append(task.name)
                continue
            spread = spreads[key, stored] = spec.timing.spread
            if key not in found:
                found[key] = Schedule(spec, task.anchor)
        offset = spread_offset(task.name, spread)
        found[key].members.append(Member(task.name, task.anchor, spread, offset))
    return Schedules(list(found.values()), unreadable)


def slots_of(
    schedule: Schedule, after: dt.datetime, until: dt.datetime
) -> Iterator[tuple[list[str], list[int]]]:
    """The members with the same slots in ``(after, until)`` (the same start, spread and
    offset): their names, and their slots in microseconds since the epoch, in order."""
    spec, timing = schedule.spec, schedule.spec.timing
    same: dict[tuple[dt.datetime, dt.timedelta, dt.timedelta], list[str]] = {}
    for member in schedule.members:
        anchor = member.anchor
        begin = after if anchor is None or anchor <= after else anchor - _TICK
        same.setdefault((begin, member.spread, member.offset), []).append(member.name)
    if spec.type != TaskType.PERIODIC:
        for (begin, _, _), names in same.items():
            found = next_fire_times(spec, begin, _MAX_SLOTS, schedule.anchor, until=until)
            yield names, [_micros(slot) for slot in found]
        return
    # a spread slot is at most its offset after its plain slot: start that much earlier
    earliest = min(begin - offset for begin, _, offset in same)
    plain = plain_slots(spec, earliest, until, schedule.anchor or after)
    bases = [_micros(slot) for slot in plain]
    gaps: list[int | None] = [following - base for base, following in pairwise(bases)]
    if bases:
        gaps.append(None)  # the last: at or after until, or the schedule's last slot
    # kept: spread slots inside the window and before until, as slot_after keeps them
    first = _micros(timing.start) if timing.start is not None else None
    end = _micros(until if timing.end is None else min(until, timing.end))
    for (begin, spread, offset), names in same.items():
        moves = {
            gap: spread_move(offset, spread, None if gap is None else gap * _TICK) // _TICK
            for gap in set(gaps)
        }
        slots = [base + moves[gap] for base, gap in zip(bases, gaps, strict=True)]
        low = bisect_right(slots, _micros(begin))
        if first is not None:
            low = max(low, bisect_left(slots, first))
        kept = slots[low : bisect_left(slots, end)]
        if timing.calendars:  # the spread slot's date, as next_fire_times
            kept = [slot for slot in kept if timing.dropped(_EPOCH + slot * _TICK) is None]
        yield names, kept


def _micros(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // _TICK


def count_slots(
    schedules: Sequence[Schedule],
    after: dt.datetime,
    until: dt.datetime,
    size: dt.timedelta,
    top: int = TOP,
) -> SlotCounts:
    """The slots in ``(after, until)`` counted per bucket of ``size``. A task's slots
    start at its anchor when that is later than ``after`` (its schedule did not exist
    before)."""
    result = SlotCounts()
    # the names of the tasks with the same slots, per set of them
    groups: list[list[str]] = []
    # bucket index -> [(slots per task, group index)]
    shares: dict[int, list[tuple[int, int]]] = {}
    seconds = int(size.total_seconds())
    micros = seconds * 1_000_000
    for schedule in schedules:
        for same, slots in slots_of(schedule, after, until):
            index = len(groups)
            groups.append(same)
            for key, count in Counter(slot // micros for slot in slots).items():
                shares.setdefault(key, []).append((count, index))
    result.groups = len(groups)
    for key in sorted(shares):
        share = shares[key]
        slots_in = sum(count * len(groups[index]) for count, index in share)
        tasks_in = sum(len(groups[index]) for _, index in share)
        best = heapq.nsmallest(top, share, key=lambda item: (-item[0], groups[item[1]][0]))
        # the best groups hold the best names: sort their first names for the exact order
        candidates = [(name, count) for count, index in best for name in groups[index][:top]]
        names = sorted(candidates, key=lambda item: (-item[1], item[0]))
        start = dt.datetime.fromtimestamp(key * seconds, dt.UTC)
        result.buckets.append(SlotBucket(start, slots_in, tasks_in, tuple(names[:top])))
        result.slots += slots_in
    return result
