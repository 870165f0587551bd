"""What tracking stores of a task's values: results, arguments, errors and tracebacks as
JSON, each cut to a bound so one huge value never bloats the history (docs/tracking.md)."""

from __future__ import annotations

import json
import traceback as traceback_module
from typing import Any

RESULT_LIMIT = 64 * 1024
"""Results, tracebacks and errors above this many bytes are cut, with a marker saying so."""


NUL_STANDIN = "\ufffd"
"""What a NUL character becomes: PostgreSQL's text and jsonb cannot hold one."""


def scrub(value: Any) -> Any:
    """``value`` with every NUL in its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", NUL_STANDIN)
    if isinstance(value, list):
        return [scrub(item) for item in value]
    if isinstance(value, dict):
        return {scrub(key): scrub(item) for key, item in value.items()}
    return value


def cut(text: str, limit: int = RESULT_LIMIT) -> str:
    """``text`` within ``limit`` UTF-8 bytes, with a marker saying how much was cut."""
    text = text.replace("\x00", NUL_STANDIN)
    size = len(text.encode("utf-8", "replace"))
    if size <= limit:
        return text
    head = text.encode("utf-8", "replace")[:limit].decode("utf-8", "ignore")
    return f"{head}… [truncated: {size} bytes, {limit} kept]"


def encode_result(value: Any) -> Any:
    """The result as stored: itself when it is JSON, else its repr; cut to 64 KiB."""
    if value is None or isinstance(value, (bool, int)):
        return value
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, OverflowError, RecursionError):
        return cut(safe_repr(value))
    if "\\u0000" in text:
        value = scrub(value)
        text = json.dumps(value, separators=(",", ":"))
    if len(text) <= RESULT_LIMIT // 4 or len(text.encode("utf-8")) <= RESULT_LIMIT:
        return value
    return cut(text)


_SCALARS = (str, int, bool, type(None))


def _plain(value: Any, depth: int = 0) -> bool:
    """JSON as it is (the common case), checked without serialising it."""
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, _SCALARS):
        return True
    if depth > 4:
        return False
    if isinstance(value, list):
        return all(_plain(item, depth + 1) for item in value)
    if isinstance(value, dict):
        pairs = value.items()
        return all(isinstance(k, str) and _plain(k) and _plain(v, depth + 1) for k, v in pairs)
    return False


def json_safe(value: Any) -> Any:
    """Arguments as stored: unchanged when JSON, else each odd value as its repr."""
    if _plain(value):
        return value
    try:
        return scrub(json.loads(json.dumps(value, default=safe_repr, allow_nan=False)))
    except (TypeError, ValueError, OverflowError, RecursionError):
        return cut(safe_repr(value))


def safe_repr(value: Any) -> str:
    """``repr(value)``, or a placeholder naming its type when its ``__repr__`` fails."""
    try:
        return repr(value)
    except Exception:  # a broken __repr__ must not lose the record
        return f"<unrepresentable {type(value).__name__}>"


def describe_error(exc: BaseException | None) -> str | None:
    """``"TypeName: message"`` (the name alone without a message), cut to 4 KiB."""
    if exc is None:
        return None
    message = str(exc)
    name = type(exc).__name__
    return cut(f"{name}: {message}" if message else name, 4096)


def traceback_text(einfo: Any, exc: BaseException | None) -> str | None:
    """The traceback Celery formatted, else the exception's own; cut to 64 KiB."""
    text = getattr(einfo, "traceback", None)
    if not text and exc is not None and exc.__traceback__ is not None:
        text = "".join(traceback_module.format_exception(type(exc), exc, exc.__traceback__))
    return cut(text) if text else None
