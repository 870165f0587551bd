"""A task's schedule in words, for ``reconcile next`` and ``status``: the crontab read
out by cron-descriptor under our meaning of its fields (docs/beat.md, "Schedules")."""

from __future__ import annotations

import datetime as dt
import functools

from cron_descriptor import (
    ExpressionDescriptor,
    FormatException,
    MissingFieldException,
    Options,
    WrongArgumentException,
)

from reconciler.core.cronmatch import compiled
from reconciler.core.durations import format_duration
from reconciler.core.schedulefields import ASYNC_TEXT, AT_PREFIX, INTERVAL_PREFIX, Crontab
from reconciler.core.spec import TaskSpec
from reconciler.core.zones import zone


def describe(spec: TaskSpec) -> str:
    """The schedule in words, e.g. ``At 02:30 (Europe/Berlin)``; an interval in its one
    written shape, ``every 1h30m``, as the plan and the task list show it."""
    return schedule_words(spec.schedule_text, spec.timezone)


@functools.lru_cache(maxsize=4096)
def schedule_words(text: str | None, timezone: str | None) -> str:
    """The one wording of a schedule that the CLI, the API and the page show (docs/cli.md,
    "Schedules in words"), from the stored one-line form (``schedule_text``) and the
    task's zone, so a list of many tasks words each distinct schedule once."""
    timezone = timezone or "UTC"
    if text is None:
        return "never"
    if text == ASYNC_TEXT:
        return "once, as soon as it is applied"
    if text.startswith(INTERVAL_PREFIX):
        return text
    if text.startswith(AT_PREFIX):
        local = dt.datetime.fromisoformat(text.removeprefix(AT_PREFIX)).astimezone(zone(timezone))
        pattern = "%Y-%m-%d %H:%M:%S" if local.second or local.microsecond else "%Y-%m-%d %H:%M"
        return f"once at {local.strftime(pattern)} {timezone}"
    try:
        crontab = Crontab.parse(text)
    except ValueError:  # not a crontab this version reads: show it as it is stored
        return f"cron '{text}'"
    return f"{describe_crontab(crontab)} ({timezone})"


def describe_crontab(crontab: Crontab) -> str:
    """The five fields in words (cron-descriptor, 24-hour clock, 0 = Sunday, our OR rule)."""
    fields = compiled(crontab)
    # Spell whole-range fields as '*' so the words follow our meaning of 'restricted'.
    texts = [
        "*" if full else text
        for text, full in zip(crontab.expression.split(), fields.full, strict=True)
    ]
    texts[4] = _week_ending_on_sunday(texts[4], fields.weekdays)
    options = Options()
    options.use_24hour_time_format = True
    options.day_of_week_start_index_zero = True
    try:
        descriptor = ExpressionDescriptor(" ".join(texts), options)
        words: str = descriptor.get_description()
        weekdays: str = descriptor.get_day_of_week_description()
    except (FormatException, MissingFieldException, WrongArgumentException):
        return f"cron '{crontab.expression}'"
    # cron-descriptor says "or" only for a single weekday; say it for ranges and lists too.
    if fields.day_or and weekdays.startswith(", ") and not weekdays.startswith(", or "):
        words = words.replace(weekdays, ", or " + weekdays[2:], 1)
    return words


def _week_ending_on_sunday(text: str, weekdays: frozenset[int]) -> str:
    """A day of week stored with Sunday as 0 after the others (``FRI-SUN`` is ``5-6,0``),
    as cron-descriptor words it best: ``5-7`` (Friday through Sunday), or a plain list."""
    if not text.endswith(",0") or len(weekdays) < 2:
        return text
    others = sorted(weekdays - {0})
    if "/" not in text and len(others) > 1 and others == list(range(others[0], 7)):
        return f"{others[0]}-7"
    return ",".join(str(day) for day in (*others, 0))


def describe_timing(spec: TaskSpec) -> str:
    """Spread, window and calendars in a few words (empty when the task has none), e.g.
    ``spread 10m (offset 2m23s); active until 2027-03-31T18:00:00; skip_on de-holidays``."""
    parts: list[str] = []
    if spec.spread is not None:
        parts.append(
            f"spread {format_duration(spec.spread)} (offset {format_duration(spec.timing.offset)})"
        )
    if spec.active is not None:
        ends = [f"from {spec.active.from_}" if spec.active.from_ else ""]
        ends.append(f"until {spec.active.until}" if spec.active.until else "")
        parts.append("active " + " ".join(end for end in ends if end))
    for kind in ("skip_on", "only_on"):
        names = getattr(spec, kind)
        if names:
            parts.append(f"{kind} {', '.join(names)}")
    return "; ".join(parts)


def window_ended(spec: TaskSpec, now: dt.datetime) -> bool:
    """True when the task's ``active`` window ended at or before ``now``: no slot is left."""
    end = spec.timing.end
    return end is not None and end <= now
