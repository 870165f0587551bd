"""Reading an import's source: the old web API's ``POST /api/v1/tasks/`` bodies from a JSON
file (docs/import.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reconciler.errors import ReconcilerError


def read_payloads(path: Path) -> list[Any]:
    """The payloads in a JSON file: an object, a list, or a list response with ``data``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ReconcilerError(f"{path}: no such file") from exc
    except UnicodeDecodeError as exc:
        raise ReconcilerError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise ReconcilerError(f"{path}: cannot read it: {exc.strerror}") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReconcilerError(
            f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}"
        ) from exc
    if isinstance(document, dict) and isinstance(document.get("data"), list):
        document = document["data"]
    if isinstance(document, dict):
        return [document]
    if isinstance(document, list):
        return document
    raise ReconcilerError(
        f"{path}: holds a JSON {json_type(document)}; expected a task payload object or a "
        f"list of them"
    )


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages: ``string``, ``array``..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
