"""What a task file's values may hold: text without control characters, plain JSON,
integers in the 64-bit range; and ``FieldError``, the failure that knows where it belongs.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pydantic import BaseModel, ConfigDict

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT64_HINT = "pass it as a string, e.g. '12345678901234567890123'"


class FieldError(ValueError):
    """A validation failure that knows where it belongs.

    ``loc`` is the path below the field (or model) whose validator raised it, so the
    loader can point at the offending key or value; ``hint`` says how to fix it.
    """

    def __init__(self, message: str, *, loc: tuple[str | int, ...] = (), hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.hint = hint


class FileModel(BaseModel):
    """A mapping of a task file: unknown keys refused, strings stripped, frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


_TYPE_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "a list",
    dict: "a mapping",
    type(None): "null",
    dt.datetime: "a timestamp",
    dt.date: "a date",
}


def describe_value(value: Any, *, hidden: bool = False) -> str:
    """How a YAML user would name this value: ``an integer (5)``, ``a list``; ``hidden``
    (a secret-looking key's value) names its kind only."""
    name = _TYPE_NAMES.get(type(value), f"a {type(value).__name__}")
    if isinstance(value, (list, dict)) or value is None or hidden:
        return name
    if isinstance(value, int) and value.bit_length() > 64:
        return f"{name} ({value.bit_length()} bits)"
    text = repr(value) if isinstance(value, str) else str(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{name} ({text})"


_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def check_text(value: str, *, multiline: bool, loc: tuple[str | int, ...] = ()) -> None:
    """Refuse characters no column, terminal or JSON reader takes as text: NUL and other
    control characters (tab and line breaks too, unless ``multiline``), lone surrogates."""
    found = (_CONTROL_TEXT if multiline else _CONTROL_ONE_LINE).search(value)
    if found is not None:
        code = ord(found.group())
        name = "NUL" if code == 0 else f"U+{code:04X}"
        allowed = " (tabs and line breaks are allowed)" if multiline else ""
        raise FieldError(
            f"contains the control character {name} at position {found.start() + 1}",
            loc=loc,
            hint=f"remove it; control characters are not allowed here{allowed}",
        )
    found = _SURROGATE.search(value)
    if found is not None:
        raise FieldError(
            f"contains a lone surrogate U+{ord(found.group()):04X} at position "
            f"{found.start() + 1}, which is not text",
            loc=loc,
            hint="remove it",
        )


def beyond_int64(value: int) -> str | None:
    """Why ``value`` is refused, when it lies outside the signed 64-bit range."""
    if INT64_MIN <= value <= INT64_MAX:
        return None
    bits = value.bit_length()
    # Over ~4,300 digits Python refuses to write an int out in decimal: count bits then.
    size = f"{len(str(abs(value)))} digits" if bits < 4_000 else f"{bits} bits"
    return f"an integer of {size} is beyond the 64-bit range ({INT64_MIN} to {INT64_MAX})"


def check_key(key: str, loc: tuple[str | int, ...]) -> None:
    """A mapping key is checked as one-line text, reported at its mapping (a location
    holding the bad key would print it)."""
    try:
        check_text(key, multiline=False)
    except FieldError as exc:
        raise FieldError(f"key {key!r} {exc.message}", loc=loc, hint=exc.hint) from exc


def check_json(value: Any, loc: tuple[str | int, ...]) -> None:
    """Refuse anything in ``value`` that is not a plain JSON value, at its location."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        check_text(value, multiline=True, loc=loc)
        return
    if isinstance(value, int):
        beyond = beyond_int64(value)
        if beyond is not None:
            raise FieldError(beyond, loc=loc, hint=INT64_HINT)
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise FieldError(f"{value} is not a JSON number", loc=loc, hint="use a finite number")
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            check_json(item, (*loc, index))
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise FieldError(
                    f"key {key!r} is {describe_value(key)}, not a string",
                    loc=loc,
                    hint=f"quote the key: '{key}'",
                )
            check_key(key, loc)
            check_json(item, (*loc, key))
        return
    if isinstance(value, dt.date):
        raise FieldError(
            f"{describe_value(value)} is not a plain JSON value",
            loc=loc,
            hint=f"quote it to pass it as a string: '{value.isoformat()}'",
        )
    raise FieldError(f"{describe_value(value)} is not a plain JSON value", loc=loc)
