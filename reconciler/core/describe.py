"""A task's schedule in words, for ``reconcile next`` and ``status``: the crontab read
out by cron-descriptor under our meaning of its fields (docs/beat.md, "Schedules")."""

from __future__ import annotations

from cron_descriptor import (
    ExpressionDescriptor,
    FormatException,
    MissingFieldException,
    Options,
    WrongArgumentException,
)

from reconciler.core.cronmatch import compiled
from reconciler.core.schedulefields import Crontab
from reconciler.core.spec import TaskSpec
from reconciler.vocabulary import TaskType


def describe(spec: TaskSpec) -> str:
    """The schedule in words, e.g. ``At 02:30 (Europe/Berlin)``; an interval in its one
    written shape, ``every 1h30m``, as the plan and the task list show it."""
    if spec.type == TaskType.ASYNC:
        return "once, as soon as it is applied"
    if spec.type == TaskType.SCHEDULED and spec.at is not None:
        local = spec.at.astimezone(spec.tz)
        pattern = "%Y-%m-%d %H:%M:%S" if local.second or local.microsecond else "%Y-%m-%d %H:%M"
        return f"once at {local.strftime(pattern)} {spec.timezone}"
    if spec.interval is not None:
        return f"every {spec.interval.text}"
    if spec.crontab is not None:
        return f"{describe_crontab(spec.crontab)} ({spec.timezone})"
    return "never"


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
