"""Crontab text as people write it (docs/task-files.md, "Schedules"): the five fields, month and
weekday names, ``7`` for Sunday and the ``@daily``-style macros, each checked and turned into
the one numeric text that is stored, so equal meanings plan no change.
"""

from __future__ import annotations

import functools
import re

from reconciler.core.values import FieldError

# The stored ranges: what the matcher expands (``*`` in the day of week is 0-6).
CRON_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day_of_month", 1, 31),
    ("month_of_year", 1, 12),
    ("day_of_week", 0, 6),
)
CRON_ORDER = tuple(name for name, _, _ in CRON_FIELDS)
_RANGES = {name: (low, high) for name, low, high in CRON_FIELDS}
# What may be written: 7 is Sunday as in cron, stored as 0.
_WRITTEN_HIGH = {**{name: high for name, _, high in CRON_FIELDS}, "day_of_week": 7}

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_NAMES: dict[str, dict[str, int]] = {
    "month_of_year": {name: number for number, name in enumerate(MONTHS, start=1)},
    "day_of_week": {name: number for number, name in enumerate(WEEKDAYS)},
}
_KIND = {"month_of_year": "month", "day_of_week": "weekday"}
_NAME_HINTS = {
    "month_of_year": " ".join(MONTHS) + " or 1-12",
    "day_of_week": " ".join((*WEEKDAYS[1:], WEEKDAYS[0])) + " or 0-7",
}

_FULL_NAMES = frozenset(
    {"JANUARY", "FEBRUARY", "MARCH", "APRIL", "JUNE", "JULY", "AUGUST", "SEPTEMBER", "SEPT"}
    | {"OCTOBER", "NOVEMBER", "DECEMBER", "SUNDAY", "MONDAY", "TUESDAY", "TUES", "WEDNESDAY"}
    | {"THURSDAY", "THUR", "THURS", "FRIDAY", "SATURDAY"}
)

MACROS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MACRO_HINT = "use one of " + ", ".join(MACROS) + ", or five fields such as '0 9 * * MON-FRI'"

# One item of a list: '*', a value or a range of values or names, each with an optional step.
_ITEM = re.compile(r"^(\*|([0-9A-Za-z]+)(?:-([0-9A-Za-z]+))?)(?:/([0-9]+))?$")
_SYNTAX_HINT = "use a number, '*', a range 'a-b', a step '*/n' or a list 'a,b'"


def split_cron_expression(expression: str) -> dict[str, str]:
    """``"0 9 * * 1"`` or a macro such as ``"@daily"`` -> the five named fields, or
    FieldError when it is neither."""
    text = expression.strip()
    if text.startswith("@"):
        macro = MACROS.get(text.lower())
        if macro is None:
            raise _unknown_macro(text)
        text = macro
    parts = text.split()
    if len(parts) != 5:
        raise FieldError(
            f"needs 5 fields, got {len(parts)} in {expression!r}",
            hint="minute hour day_of_month month_of_year day_of_week, e.g. '0 9 * * 1', "
            "or a macro such as '@daily'",
        )
    return dict(zip(CRON_ORDER, parts, strict=True))


@functools.lru_cache(maxsize=4096)
def check_cron_field(field: str, text: str) -> str:
    """The stored text of one crontab field, or FieldError saying why and how to write it.

    Names become their numbers and a Sunday written 7 becomes 0, item by item, so
    ``MON-FRI`` is stored as ``1-5``; numeric text keeps its shape (spaces removed).
    Messages leave out the field's name: the caller's location names it. Cached: tasks
    share a few field values, and a refusal (an exception) is not cached.
    """
    canonical = text.replace(" ", "")
    if not canonical:
        raise FieldError("is empty", hint="use '*' for every value")
    items = [_check_item(field, item) for item in canonical.split(",")]
    if all(written == stored for written, stored in zip(canonical.split(","), items, strict=True)):
        return canonical
    return ",".join(dict.fromkeys(",".join(items).split(",")))


def _check_item(field: str, item: str) -> str:
    """One list item's stored text (several items when a range runs up to a Sunday of 7)."""
    match = _ITEM.match(item)
    if match is None:
        raise _not_a_value(field, item)
    star, first_text, last_text, step = match.group(1) == "*", *match.group(2, 3, 4)
    if step is not None and int(step) < 1:
        raise FieldError(f"step must be at least 1, got {step}", hint="e.g. '*/5'")
    if star:
        return item
    first = _value(field, item, first_text, end=False)
    last = None if last_text is None else _value(field, item, last_text, end=first > 0)
    if last is not None and last < first:
        raise FieldError(
            f"range {first_text}-{last_text} runs backwards",
            hint=_backwards_hint(field, first_text, last_text or "", last),
        )
    stored = (
        str(first) + ("" if last is None else f"-{last}") + ("" if step is None else f"/{step}")
    )
    if field == "day_of_week" and 7 in (first, last):
        return _sunday_as_zero(first, last, step)
    return stored


def _value(field: str, item: str, token: str, *, end: bool) -> int:
    """A token's number: digits in the field's range, or a name of this field.

    ``end``: the token closes a range that starts after Sunday, where ``SUN`` is 7
    (``FRI-SUN`` is Friday to Sunday).
    """
    low, high = _RANGES[field][0], _WRITTEN_HIGH[field]
    if token.isdigit():
        number = int(token)
        if not low <= number <= high:
            raise FieldError(f"must be {low}-{high}, got {token}", hint=_NAME_HINTS.get(field))
        return number
    if not token.isalpha():
        raise _not_a_value(field, item)
    named = _NAMES.get(field, {}).get(token.upper())
    if named is None:
        raise _unknown_name(field, item, token)
    return 7 if end and field == "day_of_week" and named == 0 else named


def _sunday_as_zero(first: int, last: int | None, step: str | None) -> str:
    """A day-of-week item reaching 7 as items within 0-6, with the same days."""
    by = int(step) if step else 1
    if first == 7:
        return "0"
    days = range(first, (last if last is not None else 7) + 1, by)
    head = f"{first}" if first == 6 else f"{first}-6" + (f"/{step}" if step else "")
    return head if 7 not in days or first == 0 else f"{head},0"


def _unknown_name(field: str, item: str, token: str) -> FieldError:
    kind = _KIND.get(field)
    if kind is None:
        other = next((f for f, names in _NAMES.items() if token.upper() in names), None)
        where = _SYNTAX_HINT if other is None else _elsewhere(token, other)
        return FieldError(f"{item!r} is not a cron value", hint=where)
    hint = _NAME_HINTS[field]
    upper = token.upper()
    if upper in _FULL_NAMES and upper[:3] in _NAMES[field]:
        hint = f"write {upper[:3]}; {kind}s: {hint}"
    other = next((f for f, names in _NAMES.items() if f != field and token.upper() in names), None)
    if other is not None:
        hint = f"{_elsewhere(token, other)}; {kind}s: {hint}"
    return FieldError(f"{item!r}: unknown {kind} {token!r}", hint=hint)


def _elsewhere(token: str, field: str) -> str:
    return f"{token!r} is a {_KIND[field]} name, for the {field} field"


def _not_a_value(field: str, item: str) -> FieldError:
    if any(ch.isdigit() and not ch.isascii() for ch in item):
        return FieldError(
            f"{item!r} uses digits other than ASCII 0-9", hint="write the number as 0-9"
        )
    if item == "?":
        return FieldError("'?' is not a cron value", hint="write '*'")
    if item.startswith("@"):
        return FieldError(
            f"{item!r} is not a cron value",
            hint=f"a macro stands for the whole crontab: crontab: '{item}'",
        )
    hint = _SYNTAX_HINT
    if field in _NAMES:
        hint = f"{hint}; names: {_NAME_HINTS[field]}"
    return FieldError(f"{item!r} is not a cron value", hint=hint)


def _backwards_hint(field: str, first_text: str, last_text: str, last: int) -> str:
    """How to write a range that wraps around (``22-2``, ``NOV-FEB``, ``FRI-MON``): split."""
    low, high = _RANGES[field]
    if field == "day_of_week" and last == 0:
        return f"write {first_text}-7 (Sunday is 0 or 7)"
    if field == "day_of_week" and first_text == "7":
        return f"write 0-{last_text} (Sunday is 0 or 7)"
    names = _NAMES.get(field)
    if names is not None and first_text.isalpha() and last_text.isalpha():
        spelled = {number: name for name, number in names.items()}
        # A week written in names wraps at Sunday: FRI-SUN,MON.
        top, bottom = ("SUN", 1) if field == "day_of_week" else (spelled[high], low)
        first_text, last_text, bottom_text = first_text.upper(), last_text.upper(), spelled[bottom]
    else:
        top, bottom, bottom_text = str(high), low, str(low)
    head = first_text if first_text == top else f"{first_text}-{top}"
    tail = bottom_text if last == bottom else f"{bottom_text}-{last_text}"
    return f"split it: '{head},{tail}'"


def _unknown_macro(text: str) -> FieldError:
    if text.lower().startswith("@every"):
        return FieldError(
            f"{text!r} is not a crontab", hint=f"use interval: {text[6:].strip() or '5m'}"
        )
    if text.lower() == "@reboot":
        return FieldError(
            "'@reboot' is not a schedule here", hint="use type: async to run once when applied"
        )
    return FieldError(f"unknown macro {text!r}", hint=_MACRO_HINT)
