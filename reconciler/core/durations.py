"""Durations as people write them in task files: ``90m``, ``1h30m``, ``26h``, ``2d``, ``45s``
(docs/task-files.md: an interval, the alerts), and the one canonical text each is shown as.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

from reconciler.core.values import FieldError, describe_value

UNITS: tuple[tuple[str, int], ...] = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
_SECONDS = dict(UNITS)
# Parts in falling order, each at most once, ASCII digits only (``٣h`` would be stored as written).
_DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
# One number and the letters after it, to say what is wrong with a refused text.
_PART = re.compile(r"([0-9]*\.?[0-9]*)([^0-9.]*)")
_MAX_DIGITS = 9
_MAX_SECONDS = int(dt.timedelta.max.total_seconds())
_OTHER_UNITS = {"w": 7 * 86_400, "sec": 1, "min": 60, "hr": 3_600, "hour": 3_600, "day": 86_400}
DURATION_HINT = "write it like 45s, 30m, 1h30m, 26h or 2d (days, hours, minutes, seconds)"
DURATION_PATTERN = r"^\s*([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?\s*$"
"""The same grammar for the JSON Schema (which cannot say "at least one part")."""


def parse_duration(text: str, *, allow_zero: bool = False) -> dt.timedelta:
    """``text`` as a duration, or ``FieldError`` (a ValueError) quoting it, with a hint.

    Parts may be over-full (``90m``, ``26h``) or zero (``1h0m``); the total must be
    above 0 unless ``allow_zero``.
    """
    if not isinstance(text, str):
        raise FieldError(f"expected a duration, got {describe_value(text)}", hint=DURATION_HINT)
    stripped = text.strip()
    found = _DURATION.fullmatch(stripped)
    if not stripped or found is None:
        raise _refusal(stripped)
    parts = found.groups()
    if any(part is not None and len(part) > _MAX_DIGITS for part in parts):
        raise FieldError(f"{stripped!r} is too large", hint="use at most 9 digits per part")
    seconds = sum(
        int(part) * size for part, (_, size) in zip(parts, UNITS, strict=True) if part is not None
    )
    if seconds > _MAX_SECONDS:
        raise FieldError(f"{stripped!r} is too large", hint="use a shorter duration")
    if seconds == 0 and not allow_zero:
        raise FieldError(f"{stripped!r} must be above 0", hint="e.g. 45s, 5m or 1h")
    return dt.timedelta(seconds=seconds)


def format_duration(value: dt.timedelta) -> str:
    """The canonical text of a whole number of seconds: each unit at most once, in the
    order d, h, m, s, none over-full (``1d2h``, ``1h30m``, ``1m30s``); ``0s`` for nothing.

    Equal durations get equal text, ``parse_duration`` reads it back unchanged, and an
    interval's parts in the old form's ranges are written exactly as they stand.
    """
    if value < dt.timedelta(0) or value.microseconds:
        raise ValueError(f"not a whole, non-negative number of seconds: {value}")
    rest = value.days * 86_400 + value.seconds
    text = ""
    for unit, size in UNITS:
        count, rest = divmod(rest, size)
        if count:
            text += f"{count}{unit}"
    return text or "0s"


def _refusal(written: str) -> FieldError:
    """Why ``written`` is not a duration, with the way to write it when one can be seen."""
    if not written:
        return FieldError("is empty", hint=DURATION_HINT)
    if written.startswith("-"):
        return FieldError(f"{written!r} must be positive", hint=f"drop the '-': {written[1:]!r}")
    if any(ch.isdigit() and not ch.isascii() for ch in written):
        return FieldError(
            f"{written!r} uses digits other than ASCII 0-9", hint="write the numbers as 0-9"
        )
    squeezed = "".join(written.split())
    if squeezed != written and _DURATION.fullmatch(squeezed):
        return FieldError(f"{written!r} has spaces", hint=f"write it without: {squeezed!r}")
    parts = _PART.findall(squeezed)[:-1]  # findall ends with an empty match
    if not parts or "".join(number + unit for number, unit in parts) != squeezed:
        return FieldError(f"{written!r} is not a duration", hint=DURATION_HINT)
    seconds = Decimal(0)
    for number, unit in parts:
        if not number.strip("."):
            return FieldError(f"{written!r} is not a duration", hint=DURATION_HINT)
        if not unit:
            if len(parts) > 1:
                return FieldError(f"{written!r}: {number} has no unit", hint=DURATION_HINT)
            whole = number.split(".")[0] or "0"
            return FieldError(
                f"{written!r} has no unit",
                hint=f"add one: {whole}s, {whole}m, {whole}h or {whole}d",
            )
        size = _size(unit)
        if size is None:
            return FieldError(f"{written!r}: unknown unit {unit!r}", hint=_UNITS_HINT)
        try:
            seconds += Decimal(number) * size
        except InvalidOperation:
            return FieldError(f"{written!r} is not a duration", hint=DURATION_HINT)
    canonical = _canonical(seconds)
    if any("." in number for number, _ in parts):
        if canonical is None:
            return FieldError(
                f"{written!r} is not a whole number of seconds", hint="durations are whole seconds"
            )
        return FieldError(f"{written!r}: fractions are not allowed", hint=f"write {canonical}")
    bad = [unit for _, unit in parts if unit not in _SECONDS]
    then = f"write {canonical}" if canonical else DURATION_HINT
    if bad:
        return FieldError(f"{written!r}: unknown unit {bad[0]!r}", hint=then)
    return FieldError(
        f"{written!r}: units must come in the order d, h, m, s, each at most once", hint=then
    )


_UNITS_HINT = "units are d (days), h (hours), m (minutes) and s (seconds)"


def _size(unit: str) -> int | None:
    """Seconds in ``unit``, also for a few units people write that are refused with a
    translation (``2w``, ``1H``); ``M`` stays unknown (minutes or months?)."""
    if unit in _SECONDS:
        return _SECONDS[unit]
    lower = unit.lower()
    if lower in _OTHER_UNITS:
        return _OTHER_UNITS[lower]
    return _SECONDS[lower] if lower in _SECONDS and lower != "m" else None


def _canonical(seconds: Decimal) -> str | None:
    """The canonical text of ``seconds``, when it is a whole number above 0 that fits."""
    if seconds != seconds.to_integral_value() or not 0 < seconds <= _MAX_SECONDS:
        return None
    return format_duration(dt.timedelta(seconds=int(seconds)))
