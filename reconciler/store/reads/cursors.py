"""Opaque keyset cursors for the read side's pages, and the error a bad parameter is.

A cursor is the sort key of a page's last row as URL-safe base64 JSON; decoding checks
whatever a client made up, so a bad one is ``BadParameter`` rather than a driver error.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from reconciler.errors import UsageError

MAX_ID = 2**63 - 1


class BadParameter(UsageError):
    """A query parameter (filter, sort, cursor, limit) that cannot be used; names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.detail = message


def encode_cursor(kind: str, *values: Any) -> str:
    text = json.dumps([kind, *values], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, size: int) -> list[Any]:
    """The values of a cursor made by ``encode_cursor(kind, ...)``, or ``BadParameter``:
    a flat list of null, integers and text a database can hold (no NUL, no lone
    surrogate), whatever a client made up."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error, RecursionError):
        raise BadParameter("cursor", "not a cursor returned by this list") from None
    if not isinstance(decoded, list) or len(decoded) != size + 1 or decoded[0] != kind:
        raise BadParameter("cursor", "not a cursor returned by this list") from None
    values = decoded[1:]
    if not all(value is None or type(value) is int or _storable(value) for value in values):
        raise BadParameter("cursor", "not a cursor returned by this list")
    return values


def _storable(value: Any) -> bool:
    if type(value) is not str or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (a JSON \ud800 escape)
        return False
    return True


def decode_id_cursor(cursor: str, kind: str) -> int:
    """The id of a cursor made by ``encode_cursor(kind, id)`` (lists keyset on id)."""
    (before,) = decode_cursor(cursor, kind, 1)
    if type(before) is not int or not 0 < before <= MAX_ID:
        raise BadParameter("cursor", "not a cursor returned by this list")
    return before


def check_limit(limit: int) -> None:
    if limit < 1:
        raise BadParameter("limit", f"must be at least 1, got {limit}")


def check_choice(parameter: str, value: str | None, choices: Sequence[str]) -> None:
    """``BadParameter`` unless ``value`` is None or one of ``choices``."""
    if value is not None and value not in choices:
        raise BadParameter(parameter, f"{value!r} is not one of {', '.join(choices)}")
