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
    """The schedule in words, e.g. ``At 02:30 (Europe/Berlin)``, ``every 1 hour 30 minutes``."""
    if spec.type == TaskType.ASYNC:
        return "once, as soon as it is applied"
    if spec.type == TaskType.SCHEDULED and spec.at is not None:
        local = spec.at.astimezone(spec.tz)
        pattern = "%Y-%m-%d %H:%M:%S" if local.second or local.microsecond else "%Y-%m-%d %H:%M"
        return f"once at {local.strftime(pattern)} {spec.timezone}"
    if spec.interval is not None:
        parts = [
            f"{value} {unit}{'' if value == 1 else 's'}"
            for value, unit in (
                (spec.interval.days, "day"),
                (spec.interval.hours, "hour"),
                (spec.interval.minutes, "minute"),
                (spec.interval.seconds, "second"),
            )
            if value
        ]
        return "every " + " ".join(parts)
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
