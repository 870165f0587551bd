"""What one due slot becomes: a fire, a dropped slot, or one run for many missed ones.

Pure (docs/beat.md, "Catch-up", "Overlap"): the Beat tick (``reconciler.beat.ticker``) passes a
task's spec, its due slot, its schedule anchor, whether an execution of it is unfinished
(read in the claim transaction) and ``now``; ``decide`` says what to fire and what next.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from reconciler.core.schedule import slot_after
from reconciler.core.spec import TaskSpec
from reconciler.core.timing import Timing

DEFAULT_GRACE = dt.timedelta(seconds=60)
"""A slot later than this was missed (no beat ran, or the database or broker was away)."""

# Counting missed slots walks them: crontab slots one by one, interval slots with a
# calendar a day of the task's zone at a time (a calendar judges dates). After this many
# steps the walk jumps close to ``now``; the slots jumped over are counted neither as
# missed nor as dropped, so the counts are then lower bounds (docs/beat.md, "Catch-up").
_MAX_WALK = 20_000
_JUMP_BACK = dt.timedelta(days=2)


@dataclass(frozen=True)
class Decision:
    """The outcome for one due slot: what fires now and the task's new schedule state."""

    fire: dt.datetime | None
    """The slot to fire (the execution's ``scheduled_for``); None when nothing fires."""
    next_run_at: dt.datetime | None
    """The task's next slot; None when nothing is left to fire (async, scheduled)."""
    missed: int = 0
    """Slots dropped by the catch-up policy."""
    skipped: int = 0
    """Slots dropped because an execution was still unfinished (``overlap: skip``)."""
    reason: str | None = None
    """Why the slot was skipped, for beat's log."""
    calendar_skipped: int = 0
    """Slots dropped because a calendar excludes their date (``skip_on`` / ``only_on``):
    counted apart, as they are skipped by design and raise no alert."""


def decide(
    spec: TaskSpec,
    slot: dt.datetime,
    anchor: dt.datetime | None,
    now: dt.datetime,
    *,
    running: bool,
    grace: dt.timedelta = DEFAULT_GRACE,
) -> Decision:
    """Decide what the due ``slot`` (``slot <= now``) of ``spec`` becomes at ``now``.

    A slot at most ``grace`` old is on time and fires. Older slots were missed:
    ``catchup: skip`` drops every missed slot, ``once`` fires one run for them (for the
    latest missed slot); slots within the grace after them fire as usual on the next
    claims. ``async`` tasks are never missed: they fire once, whenever beat first sees
    them. A slot whose date a calendar excludes is dropped, on time or not, and counted in
    ``calendar_skipped``, never as missed. ``overlap: skip`` with an unfinished execution
    turns a fire into a skip.
    """
    anchor = anchor or slot
    cutoff = now - grace
    fire: dt.datetime | None
    if spec.type == "async" or slot >= cutoff:
        last, missed = slot, 0
        reason = spec.timing.dropped(slot) if spec.timing.calendars else None
        fire, dropped = (slot, 0) if reason is None else (None, 1)
    else:
        passed = missed_slots(spec, slot, anchor, cutoff)
        last, dropped, reason = passed.last, passed.dropped, passed.reason
        if spec.catchup == "once" and passed.kept is not None:
            fire, missed = passed.kept, passed.missed - 1
        else:
            fire, missed = None, passed.missed
    following = slot_after(spec, last, anchor)
    if fire is not None and running and spec.overlap == "skip":
        why = "still running" if reason is None else f"{reason}; still running"
        return Decision(None, following, missed, 1, why, dropped)
    return Decision(fire, following, missed, 0, reason, dropped)


@dataclass(frozen=True)
class Passed:
    """The slots from a due slot up to a cutoff, and which of them calendars drop."""

    last: dt.datetime
    """The latest of them: the task's next slot follows it."""
    count: int
    """How many there are, dropped ones included."""
    dropped: int
    """How many of them fall on a date a calendar drops."""
    kept: dt.datetime | None
    """The latest one no calendar drops (the run of ``catchup: once``); None if none."""
    reason: str | None = None
    """Why calendars dropped them, for beat's log."""

    @property
    def missed(self) -> int:
        return self.count - self.dropped


def missed_slots(
    spec: TaskSpec, slot: dt.datetime, anchor: dt.datetime, cutoff: dt.datetime
) -> Passed:
    """The slots from ``slot`` (itself before ``cutoff``) up to ``cutoff``: counted by
    arithmetic for an interval without calendars, else walked (bounded by ``_MAX_WALK``)."""
    timing = spec.timing
    if spec.interval is not None:
        if timing.end is not None and timing.end < cutoff:
            cutoff = timing.end  # no slot after the window
        period = spec.interval.timedelta
        if timing.calendars:
            return _interval_days(timing, slot, period, cutoff)
        count = _slots_before(slot, cutoff, period)
        last = slot + (count - 1) * period
        return Passed(last, count, 0, last)
    current, count, dropped = slot, 0, 0
    kept: dt.datetime | None = None
    reason: str | None = None
    jumped = False
    while True:
        count += 1
        why = timing.dropped(current) if timing.calendars else None
        if why is None:
            kept = current
        else:
            dropped, reason = dropped + 1, why
        following = slot_after(spec, current, anchor)
        if following is None or following >= cutoff or following <= current:
            return Passed(current, count, dropped, kept, _reason(dropped, reason))
        current = following
        if count >= _MAX_WALK and not jumped:
            jumped = True
            jump = slot_after(spec, cutoff - _JUMP_BACK, anchor)
            if jump is not None and current < jump < cutoff:
                current = jump


def _interval_days(
    timing: Timing, slot: dt.datetime, period: dt.timedelta, cutoff: dt.datetime
) -> Passed:
    """Interval slots from ``slot`` before ``cutoff``, a date of the task's zone at a time:
    the slots of one date are counted by arithmetic and share its calendar verdict."""
    start, count, dropped, days = slot, 0, 0, 0
    last = slot
    kept: dt.datetime | None = None
    reason: str | None = None
    while start < cutoff:
        if days >= _MAX_WALK:  # the rest counted neither way; the next slot still after it
            last = start + (_slots_before(start, cutoff, period) - 1) * period
            break
        days += 1
        number = _slots_before(start, min(timing.day_end(start), cutoff), period)
        last = start + (number - 1) * period
        why = timing.dropped(start)
        if why is None:
            kept = last
        else:
            dropped, reason = dropped + number, why
        count += number
        start = last + period
    return Passed(last, count, dropped, kept, _reason(dropped, reason))


def _slots_before(start: dt.datetime, until: dt.datetime, period: dt.timedelta) -> int:
    """How many of ``start + k * period`` (k >= 0) come before ``until``; at least one."""
    return max(-((start - until) // period), 1)


def _reason(dropped: int, last: str | None) -> str | None:
    if dropped <= 1:
        return last
    return f"{dropped} slots dropped by calendars, the last: {last}"
