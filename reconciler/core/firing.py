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

DEFAULT_GRACE = dt.timedelta(seconds=60)
"""A slot later than this was missed (no beat ran, or the database or broker was away)."""

# Counting missed crontab slots walks them one by one; a year of a minute schedule is
# 525,600 slots, so after this many the walk jumps close to ``now`` (the count is then a
# lower bound).
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
    """Slots dropped because an execution was still unfinished (``overlap: skip``) or the
    slot's date is excluded by a calendar (``skip_on`` / ``only_on``)."""
    reason: str | None = None
    """Why the slot was skipped, for beat's log."""


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
    them. ``overlap: skip`` with an unfinished execution turns a fire into a skip, and so
    does a slot whose date a calendar excludes.
    """
    anchor = anchor or slot
    cutoff = now - grace
    fire: dt.datetime | None
    if spec.type == "async" or slot >= cutoff:
        fire, missed, last = slot, 0, slot
    else:
        last, count = latest_missed(spec, slot, anchor, cutoff)
        if spec.catchup == "once":
            fire, missed = last, count - 1
        else:
            fire, missed = None, count
    following = slot_after(spec, last, anchor)
    if fire is not None and spec.timing.calendars:
        reason = spec.timing.dropped(fire)
        if reason is not None:
            return Decision(None, following, missed, 1, reason)
    if fire is not None and running and spec.overlap == "skip":
        return Decision(None, following, missed, 1, "still running")
    return Decision(fire, following, missed, 0)


def latest_missed(
    spec: TaskSpec, slot: dt.datetime, anchor: dt.datetime, cutoff: dt.datetime
) -> tuple[dt.datetime, int]:
    """The latest slot before ``cutoff`` (at or after ``slot < cutoff``) and how many there are."""
    if spec.interval is not None:
        end = spec.timing.end
        if end is not None and end < cutoff:
            cutoff = end  # no slot after the window
        period = spec.interval.timedelta
        steps = (cutoff - slot) // period
        if slot + steps * period >= cutoff:
            steps -= 1
        return slot + steps * period, steps + 1
    current, count = slot, 1
    while True:
        following = slot_after(spec, current, anchor)
        if following is None or following >= cutoff or following <= current:
            return current, count
        current, count = following, count + 1
        if count >= _MAX_WALK:
            jump = slot_after(spec, cutoff - _JUMP_BACK, anchor)
            if jump is not None and current < jump < cutoff:
                current = jump
