"""Explaining pydantic's validation errors as located diagnostics: a message and hint a
user can act on, placed at the node the error names (docs/task-files.md)."""

from __future__ import annotations

import datetime as dt
import difflib
from typing import Any

from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, ScalarNode

from reconciler.core.alerts import Alerts, NotifyTarget
from reconciler.core.calendars import Calendar
from reconciler.core.defaults import Defaults
from reconciler.core.diagnostics import Diagnostic
from reconciler.core.redact import REDACTED, is_secret_key
from reconciler.core.schedulefields import Crontab, Interval
from reconciler.core.spec import Options, TaskSpec
from reconciler.core.timing import Window
from reconciler.core.values import FieldError, describe_value
from reconciler.files.locate import Loc, field_name, position, walk
from reconciler.files.yamlreader import shorten
from reconciler.vocabulary import TaskType

_MODELS: dict[Loc, type[BaseModel]] = {
    (): TaskSpec,
    ("crontab",): Crontab,
    ("interval",): Interval,
    ("options",): Options,
    ("alerts",): Alerts,
    ("active",): Window,
}
# The models of the defaults document, by location; "*" stands for any key (an owner).
DEFAULTS_MODELS: dict[Loc, type[BaseModel]] = {
    (): Defaults,
    ("alerts",): Alerts,
    ("notify", "*"): NotifyTarget,
}
CALENDAR_MODELS: dict[Loc, type[BaseModel]] = {(): Calendar}

_PATTERN_MESSAGES = {
    "name": "must be lowercase letters, digits, '.', '_' or '-', starting and ending with "
    "a letter or digit, at most 128 characters",
    "task": "must be a Celery task name without spaces",
}
_PATTERN_MESSAGES["previous_names"] = _PATTERN_MESSAGES["name"]

_MISSING_HINTS: dict[Loc, str] = {
    ("name",): "add e.g. name: daily-report",
    ("owner",): "add e.g. owner: billing (the team whose history it is)",
    ("type",): f"add type: {TaskType.ASYNC}, {TaskType.SCHEDULED} or {TaskType.PERIODIC}",
    ("task",): "add the Celery task name, e.g. task: app.worker.test_celery",
}

_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "datetime_type": "an ISO 8601 date and time",
    "datetime_parsing": "an ISO 8601 date and time",
    "datetime_from_date_parsing": "an ISO 8601 date and time",
    "date_from_datetime_parsing": "an ISO 8601 date and time",
}


def _model_at(models: dict[Loc, type[BaseModel]], loc: Loc) -> type[BaseModel] | None:
    """The model whose fields are at ``loc``, matching "*" in ``models`` to any key."""
    for where, model in models.items():
        if len(where) == len(loc) and all(
            w in ("*", part) for w, part in zip(where, loc, strict=True)
        ):
            return model
    return None


def _explain(
    error: Any, loc: Loc, models: dict[Loc, type[BaseModel]]
) -> tuple[str, str | None, Loc]:
    """Message, hint and (possibly deeper) location for one pydantic error."""
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    hidden = any(is_secret_key(part) for part in loc)  # never quote a secret-looking value
    last = loc[-1] if loc else ""
    if kind == "missing":
        return "required field missing", _MISSING_HINTS.get(loc), loc
    if kind == "extra_forbidden":
        model = _model_at(models, loc[:-1])
        fields = model.model_fields if model else {}
        # ``calendars`` is filled in by the loader from the calendar documents, not written.
        known = sorted(f.alias or name for name, f in fields.items() if name != "calendars")
        close = difflib.get_close_matches(str(last), known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else None
        if hint is None and known:
            hint = "known fields: " + ", ".join(known)
        return "unknown field", hint, loc
    if kind in _EXPECTED:
        hint = None
        if kind.startswith("datetime") or kind.startswith("date_"):
            hint = "write it like 2025-12-02T15:00:00Z (no offset means the task's timezone)"
        elif kind == "string_type" and isinstance(value, (bool, int, float, dt.date)):
            hint = "quote it to make it a string"
        elif kind == "int_type" and isinstance(value, str) and any(c.isdigit() for c in value):
            hint = "write it unquoted, with ASCII digits 0-9"
        return f"expected {_EXPECTED[kind]}, got {describe_value(value, hidden=hidden)}", hint, loc
    if kind in ("literal_error", "enum"):
        return (
            f"expected {ctx.get('expected')}, got {describe_value(value, hidden=hidden)}",
            None,
            loc,
        )
    if kind == "string_pattern_mismatch":
        field = str(loc[0] if isinstance(last, int) else last)  # a list's item: its field
        message = _PATTERN_MESSAGES.get(field, f"must match {ctx.get('pattern')}")
        return f"{message}, got {shorten(REDACTED if hidden else value)}", None, loc
    if kind == "string_too_short":
        return "must not be empty", None, loc
    if kind == "string_too_long":
        limit = ctx.get("max_length")
        length = len(value) if isinstance(value, str) else "too many"
        return f"is {length} characters long, over the limit of {limit}", "shorten it", loc
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "less_than_equal": ("at most", "le"),
        "greater_than": ("above", "gt"),
        "less_than": ("below", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {ctx.get(key)}, got {REDACTED if hidden else value}", None, loc
    cause = ctx.get("error")
    if isinstance(cause, FieldError):
        return cause.message, cause.hint, loc + cause.loc
    if cause is not None:
        return str(cause), None, loc
    return str(error.get("msg", "invalid value")), None, loc


def overlaps(a: Loc, b: Loc) -> bool:
    """Whether one field path lies inside the other (compared as text)."""
    shorter = min(len(a), len(b))
    return [str(part) for part in a[:shorter]] == [str(part) for part in b[:shorter]]


def diagnostics_for(
    error: ValidationError,
    root: MappingNode,
    path: str,
    models: dict[Loc, type[BaseModel]] | None = None,
) -> list[tuple[Diagnostic, Loc]]:
    """Each pydantic error as a located diagnostic, with the field path it is about;
    ``models`` are the document's models by location (a task's by default)."""
    found: list[tuple[Diagnostic, Loc]] = []
    for item in error.errors():
        about_key = "[key]" in item["loc"]
        loc: Loc = tuple(str(p) if about_key else p for p in item["loc"] if p != "[key]")
        message, hint, loc = _explain(item, loc, _MODELS if models is None else models)
        node, key_node, matched = walk(root, loc)
        if about_key:
            message = f"keys must be strings, got {describe_value(item.get('input'))}"
            hint = "quote the key"
        if (item["type"] == "extra_forbidden" or about_key) and key_node is not None:
            node = key_node
        if matched < len(loc) and isinstance(node, ScalarNode) and item["type"] != "missing":
            # The model goes deeper than the YAML (a crontab string): name the part.
            rest = field_name(loc[matched:])
            message = f"{shorten(node.value)} {rest} {message}"
            loc = loc[:matched]
        line, column = position(node)
        found.append((Diagnostic(path, line, column, field_name(loc), message, hint), loc))
    return found
