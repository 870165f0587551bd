"""Reading an import's files: the old web API's ``POST /api/v1/tasks/`` bodies from a JSON
file, and the ``--names`` map (docs/import.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

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


def read_names(path: Path) -> dict[str, str]:
    """``import --names FILE``: a YAML (or JSON) mapping of old names to task names."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ReconcilerError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ReconcilerError(f"{path}: cannot read it: {exc}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise ReconcilerError(f"{path}{where}: not valid YAML: {reason}") from exc
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ReconcilerError(
            f"{path}: holds a {json_type(document)}; expected a mapping of old names to task "
            f"names, e.g. '每日报告: daily-report'"
        )
    names: dict[str, str] = {}
    for old, new in document.items():
        if not isinstance(new, str) or not new.strip():
            raise ReconcilerError(f"{path}: {str(old)!r}: the new name must be a string")
        names[str(old)] = new.strip()
    return names
