"""Turning task payloads of the old web API into task files (``reconcile import``).

Reads the old ``POST /api/v1/tasks/`` bodies (one object, a list, or a list response
``{"data": [...]}``), maps each to a ``TaskSpec`` and writes one YAML file per task under
``<tasks dir>/imported/``. All or nothing: every payload is checked, and every file is
rendered and read back with the loader, before the first file is written.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from reconciler.core.spec import (
    CRON_FIELDS,
    NAME_PATTERN,
    RESERVED_NAMES,
    TaskSpec,
    check_cron_field,
)
from reconciler.errors import ReconcilerError, UsageError
from reconciler.files.loader import load_directory, load_paths

IMPORT_SUBDIR = "imported"
"""Imported files go to this folder of the tasks directory."""

SCHEMA_FILE = Path("schemas") / "task.schema.json"

PAYLOAD_FIELDS = (
    "name",
    "description",
    "task_type",
    "execution_type",
    "celery_task_name",
    "task_args",
    "task_kwargs",
    "scheduled_time",
    "crontab_minute",
    "crontab_hour",
    "crontab_day_of_month",
    "crontab_month_of_year",
    "crontab_day_of_week",
    "interval_days",
    "interval_hours",
    "interval_minutes",
    "interval_seconds",
    "enabled",
    "owner",
)
"""What a payload may hold: the old API's task fields, plus ``owner``."""

IGNORED_FIELDS = frozenset(
    {
        "id",
        "owner_id",
        "created_at",
        "updated_at",
        "last_run_at",
        "next_run_at",
        "total_run_count",
        "last_status",
        "status",
        "celery_task_id",
    }
)
"""Read-only fields of the old API's responses: exported lists carry them; they are dropped."""

TASK_TYPES = ("async", "scheduled", "periodic", "once")
EXECUTION_TYPES = ("immediate", "scheduled")
INTERVAL_PARTS = (("days", 86400), ("hours", 3600), ("minutes", 60), ("seconds", 1))
MAX_INTERVAL_SECONDS = 365 * 86400 + 23 * 3600 + 59 * 60 + 59

_SPEC_TO_PAYLOAD = {
    "name": "name",
    "description": "description",
    "owner": "owner",
    "task": "celery_task_name",
    "args": "task_args",
    "kwargs": "task_kwargs",
    "at": "scheduled_time",
    "enabled": "enabled",
}
_NAME_RE = re.compile(NAME_PATTERN)
_HASH_LENGTH = 8


class ImportProblems(ReconcilerError):
    """One or more payloads cannot be imported; nothing was written."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        count = len(self.problems)
        lines = [f"{source}: {count} problem{'' if count == 1 else 's'}; nothing was written"]
        lines += [f"  {problem}" for problem in self.problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class ImportedTask:
    """One payload as a task file: the spec, where it goes, its text and what to tell."""

    index: int
    original_name: str
    spec: TaskSpec
    path: Path
    text: str
    notes: tuple[str, ...] = ()


@dataclass
class _Payload:
    """One payload being read: its index, and the problems found so far."""

    index: int
    data: Mapping[str, Any]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def where(self, name: str | None = None) -> str:
        return f"payload[{self.index}]" + (f".{name}" if name else "")

    def problem(self, name: str | None, message: str) -> None:
        self.problems.append(f"{self.where(name)}: {message}")

    def get(self, name: str) -> Any:
        return self.data.get(name)


# --- reading -----------------------------------------------------------------------


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
        f"{path}: holds a JSON {_json_type(document)}; expected a task payload object or a "
        f"list of them"
    )


def _json_type(value: Any) -> str:
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


# --- names -------------------------------------------------------------------------


def slugify(name: str, fallback: str = "task") -> str:
    """A valid task identity for an old display name, e.g. ``Daily Report`` -> ``daily-report``.

    Accents are dropped (``Café`` -> ``cafe``). When other characters cannot be kept
    (Chinese, emoji), a short hash of the original name is appended, so two different
    old names never become the same identity; an empty result starts from ``fallback``.
    """
    if _NAME_RE.match(name) and name not in RESERVED_NAMES:
        return name
    decomposed = unicodedata.normalize("NFKD", name)
    kept = "".join(ch for ch in decomposed if ch.isascii())
    lost = any(not ch.isascii() and not unicodedata.combining(ch) for ch in decomposed)
    slug = _clean(kept)
    if not slug:
        slug, lost = _clean(fallback) or "task", True
    suffix = ""
    if lost:
        suffix = "-" + hashlib.sha256(name.encode()).hexdigest()[:_HASH_LENGTH]
    elif slug in RESERVED_NAMES:
        suffix = "-task"
    slug = slug[: 128 - len(suffix)].rstrip("._-") + suffix
    return slug


def _clean(text: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower())
    slug = re.sub(r"([._-])[._-]+", r"\1", slug)
    return slug.strip("._-")


# --- mapping one payload -------------------------------------------------------------


def payload_to_document(payload: _Payload, owner: str | None) -> dict[str, Any] | None:
    """The task document (in file field order) for one payload, or None after problems."""
    data = payload.data
    for key in data:
        if key in IGNORED_FIELDS:
            continue
        if key not in PAYLOAD_FIELDS:
            payload.problem(key, "unknown field; " + _closest(key))
    original = _text_field(payload, "name", required=True)
    description = _text_field(payload, "description", required=False) or ""
    task = _text_field(payload, "celery_task_name", required=True)
    task_owner = _text_field(payload, "owner", required=False) or owner or ""
    args = _json_field(payload, "task_args", list)
    kwargs = _json_field(payload, "task_kwargs", dict)
    enabled = data.get("enabled", True)
    if enabled is None:
        enabled = True
    if not isinstance(enabled, bool):
        payload.problem("enabled", f"must be true or false, got {json.dumps(enabled)}")
    task_type = _task_type(payload)
    schedule = _schedule(payload, task_type) if task_type else None
    if task_type:
        _note_unused_schedule(payload, task_type)
    if payload.problems or original is None or task is None or task_type is None:
        return None
    name = slugify(original, fallback=task.rsplit(".", 1)[-1])
    if name != original:
        payload.notes.append(f"name {original!r} is not a valid identity; it became {name!r}")
        if not description:
            description = original
            payload.notes.append("its original name is kept as the description")
    document: dict[str, Any] = {"name": name}
    if description:
        document["description"] = description
    document["owner"] = task_owner
    document["type"] = task_type
    document["task"] = task
    if args:
        document["args"] = args
    if kwargs:
        document["kwargs"] = kwargs
    document["enabled"] = enabled
    if schedule is not None:
        document.update(schedule)
    return document


def _note_unused_schedule(payload: _Payload, task_type: str) -> None:
    """The old form sent every schedule field; say which meaningful ones are dropped."""
    unused: list[str] = []
    if task_type != "scheduled" and payload.get("scheduled_time"):
        unused.append("scheduled_time")
    if task_type != "periodic":
        unused += [
            f"crontab_{name}"
            for name, _, _ in CRON_FIELDS
            if payload.get(f"crontab_{name}") not in (None, "", "*")
        ]
        unused += [
            f"interval_{part}"
            for part, _ in INTERVAL_PARTS
            if payload.get(f"interval_{part}") not in (None, "", 0, "0")
        ]
    if unused:
        payload.notes.append(f"{', '.join(unused)} ignored: type {task_type!r} does not use them")


def _closest(key: str) -> str:
    match = difflib.get_close_matches(key, PAYLOAD_FIELDS, n=1)
    return f"did you mean {match[0]!r}?" if match else "remove it"


def _text_field(payload: _Payload, name: str, *, required: bool) -> str | None:
    value = payload.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            payload.problem(name, "is required")
        return None
    if not isinstance(value, str):
        payload.problem(name, f"must be a string, got {_json_type(value)}")
        return None
    return value.strip()


def _json_field(payload: _Payload, name: str, kind: type[list[Any]] | type[dict[str, Any]]) -> Any:
    """``task_args`` / ``task_kwargs``: a JSON string (as the old API sent) or the value itself."""
    expected = "array" if kind is list else "object"
    value = payload.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return kind()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            payload.problem(name, f"not valid JSON: {exc.msg} at column {exc.colno}")
            return kind()
    if not isinstance(value, kind):
        payload.problem(name, f"must be a JSON {expected}, got {_json_type(value)}")
        return kind()
    return value


def _task_type(payload: _Payload) -> str | None:
    """Map the old ``task_type`` (and ``execution_type`` for ``once``) to a type."""
    task_type = payload.get("task_type")
    if task_type not in TASK_TYPES:
        given = "is required" if task_type is None else f"is {json.dumps(task_type)}"
        payload.problem("task_type", f"{given}; use one of {', '.join(TASK_TYPES)}")
        return None
    execution = payload.get("execution_type")
    if execution is not None and execution not in EXECUTION_TYPES:
        payload.problem(
            "execution_type",
            f"is {json.dumps(execution)}; use one of {', '.join(EXECUTION_TYPES)}",
        )
        return None
    if task_type != "once":
        return str(task_type)
    if execution is None:
        execution = "scheduled" if payload.get("scheduled_time") else "immediate"
    return "scheduled" if execution == "scheduled" else "async"


def _schedule(payload: _Payload, task_type: str) -> dict[str, Any] | None:
    if task_type == "scheduled":
        at = _scheduled_time(payload)
        return None if at is None else {"at": at}
    if task_type == "periodic":
        return _periodic(payload)
    return {}


def _scheduled_time(payload: _Payload) -> dt.datetime | None:
    """``scheduled_time`` as aware UTC; without an offset it is UTC, as the old system kept it."""
    value = payload.get("scheduled_time")
    if value is None or value == "":
        payload.problem(
            "scheduled_time",
            "is required when the task runs at a set time, e.g. 2025-12-02T15:00:00",
        )
        return None
    if not isinstance(value, str):
        payload.problem("scheduled_time", f"must be an ISO 8601 string, got {_json_type(value)}")
        return None
    try:
        at = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        payload.problem(
            "scheduled_time", f"{value!r} is not an ISO 8601 time, e.g. 2025-12-02T15:00:00"
        )
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return at.astimezone(dt.UTC)


def _periodic(payload: _Payload) -> dict[str, Any] | None:
    """A crontab (from the ``crontab_*`` fields) or an interval (from ``interval_*``)."""
    cron: dict[str, str] = {}
    for cron_field, _, _ in CRON_FIELDS:
        key = f"crontab_{cron_field}"
        value = payload.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            payload.problem(
                key, f"must be a cron field string such as '*/5', got {_json_type(value)}"
            )
            continue
        try:
            cron[cron_field] = check_cron_field(cron_field, str(value))
        except ValueError as exc:
            hint = getattr(exc, "hint", None)
            payload.problem(key, str(exc) + (f" ({hint})" if hint else ""))
    seconds = _interval_seconds(payload)
    if payload.problems:
        return None
    restricting = any(value != "*" for value in cron.values())
    if seconds and restricting:
        payload.problem(
            None,
            "has both crontab_* and interval_* values; a periodic task takes one schedule: "
            "clear the one that is not meant",
        )
        return None
    if seconds:
        return {"interval": _interval(seconds)}
    if cron:
        parts = [cron.get(name, "*") for name, _, _ in CRON_FIELDS]
        return {"crontab": " ".join(parts)}
    payload.problem(
        None,
        "task_type 'periodic' needs crontab_* fields (e.g. crontab_minute: '*/5') or "
        "interval_* fields (e.g. interval_minutes: 5)",
    )
    return None


def _interval_seconds(payload: _Payload) -> int:
    total = 0
    for part, seconds in INTERVAL_PARTS:
        key = f"interval_{part}"
        value = payload.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            payload.problem(key, f"must be a whole number, got {json.dumps(value)}")
            continue
        if value < 0:
            payload.problem(key, f"must not be negative, got {value}")
            continue
        total += value * seconds
    if total > MAX_INTERVAL_SECONDS:
        payload.problem(None, "the interval_* fields add up to more than 365 days")
    return total


def _interval(total: int) -> dict[str, int]:
    """Carry over-full parts (90 minutes -> 1 hour 30 minutes); only parts above 0."""
    interval: dict[str, int] = {}
    for part, seconds in INTERVAL_PARTS:
        count, total = divmod(total, seconds)
        if count:
            interval[part] = count
    return interval


# --- files ---------------------------------------------------------------------------


def schema_comment(file_dir: Path) -> str:
    """The yaml-language-server line, pointing at the checkout's schema when one is found."""
    start = file_dir.resolve()  # the folder may not exist yet; resolving still works
    for folder in (start, *start.parents):
        schema = folder / SCHEMA_FILE
        if schema.is_file():
            relative = Path(os.path.relpath(schema, start)).as_posix()
            return f"# yaml-language-server: $schema={relative}"
    return f"# yaml-language-server: $schema=../../{SCHEMA_FILE.as_posix()}"


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, writing times as ``2025-12-02T15:00:00Z`` like the docs do."""


def _represent_time(dumper: yaml.SafeDumper, value: dt.datetime) -> yaml.ScalarNode:
    text = value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return dumper.represent_scalar("tag:yaml.org,2002:timestamp", text)


class _Document(dict[str, Any]):
    """The top level of a task file: always block style, one field per line."""


def _represent_document(dumper: yaml.SafeDumper, value: _Document) -> yaml.MappingNode:
    return dumper.represent_mapping("tag:yaml.org,2002:map", dict(value), flow_style=False)


_Dumper.add_representer(dt.datetime, _represent_time)
_Dumper.add_representer(_Document, _represent_document)


def render(document: Mapping[str, Any], comment_lines: Sequence[str]) -> str:
    """The file text: comment lines, then the document in the given field order."""
    body = yaml.dump(
        _Document(document),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=None,
        width=100,
    )
    return "".join(f"{line}\n" for line in comment_lines) + body


# --- the whole import ----------------------------------------------------------------


def plan_import(
    payloads: Sequence[Any], *, tasks_dir: Path, owner: str | None, source: str
) -> list[ImportedTask]:
    """Check every payload and render its file; raise ImportProblems listing every problem."""
    target_dir = tasks_dir / IMPORT_SUBDIR
    if owner is None:
        _require_owner(payloads, source)
    problems: list[str] = []
    documents: list[tuple[_Payload, dict[str, Any]]] = []
    for index, data in enumerate(payloads):
        if not isinstance(data, dict):
            problems.append(f"payload[{index}]: is a JSON {_json_type(data)}, not an object")
            continue
        payload = _Payload(index, data)
        document = payload_to_document(payload, owner)
        problems += payload.problems
        if document is not None:
            documents.append((payload, document))
    comment = schema_comment(target_dir)
    tasks = _checked(documents, problems, target_dir, comment)
    problems += _collisions(tasks, tasks_dir)
    if problems:
        raise ImportProblems(source, problems)
    problems, tasks = _read_back(tasks)
    if problems:
        raise ImportProblems(source, problems)
    return tasks


def _require_owner(payloads: Sequence[Any], source: str) -> None:
    """Without --owner, every payload must name its owner; the old web app's never do."""
    ownerless = [
        f"payload[{index}]"
        for index, data in enumerate(payloads)
        if isinstance(data, dict)
        and not (isinstance(data.get("owner"), str) and data["owner"].strip())
    ]
    if ownerless:
        shown = ", ".join(ownerless[:5]) + (
            f" and {len(ownerless) - 5} more" if len(ownerless) > 5 else ""
        )
        raise UsageError(
            f"{source}: {shown} {'has' if len(ownerless) == 1 else 'have'} no owner (the old "
            f"web app's payloads have none): pass --owner NAME, the team that may read the "
            f"tasks' history"
        )


def _checked(
    documents: list[tuple[_Payload, dict[str, Any]]],
    problems: list[str],
    target_dir: Path,
    comment: str,
) -> list[ImportedTask]:
    tasks: list[ImportedTask] = []
    for payload, document in documents:
        try:
            spec = TaskSpec.model_validate(document)
        except ValidationError as exc:
            for error in exc.errors():
                loc = error["loc"]
                key = _SPEC_TO_PAYLOAD.get(str(loc[0])) if loc else None
                message = str(error["msg"]).removeprefix("Value error, ")
                payload.problem(key, message)
            problems += payload.problems
            continue
        original = str(payload.data["name"]).strip()
        header = [comment]
        if spec.name != original:
            header.append(f"# Imported from the old web app, where it was called {original!r}.")
        text = render(document, header)
        path = target_dir / f"{spec.name}.yaml"
        tasks.append(ImportedTask(payload.index, original, spec, path, text, tuple(payload.notes)))
    return tasks


def _collisions(tasks: Sequence[ImportedTask], tasks_dir: Path) -> list[str]:
    """Files that exist already, names used twice in the import or by an existing task."""
    problems: list[str] = []
    first_index: dict[str, int] = {}
    existing: dict[str, str] = {}
    if tasks_dir.is_dir():
        existing = {loaded.spec.name: loaded.path for loaded in load_directory(tasks_dir).tasks}
    for task in tasks:
        name = task.spec.name
        where = f"payload[{task.index}].name"
        if name in first_index:
            problems.append(
                f"{where}: {task.original_name!r} becomes the task {name!r}, as payload"
                f"[{first_index[name]}] does; give one of them another name"
            )
            continue
        first_index[name] = task.index
        if task.path.exists() or task.path.is_symlink():
            problems.append(
                f"{where}: {task.path} already exists; it is never overwritten (move it away, "
                f"or rename the task)"
            )
        elif name in existing:
            problems.append(
                f"{where}: the task {name!r} already exists in {existing[name]}; rename one of them"
            )
    return problems


def _read_back(tasks: Sequence[ImportedTask]) -> tuple[list[str], list[ImportedTask]]:
    """Read every rendered file with the loader: it must give back exactly the spec.

    The loader's warnings (a ``scheduled_time`` in the past) become notes of their task.
    """
    problems: list[str] = []
    notes: dict[int, list[str]] = {task.index: list(task.notes) for task in tasks}
    with tempfile.TemporaryDirectory(prefix="reconcile-import-") as staging:
        files: dict[str, ImportedTask] = {}
        for task in tasks:
            path = Path(staging) / f"{task.index}-{task.path.name}"
            path.write_text(task.text, encoding="utf-8")
            files[str(path)] = task
        result = load_paths(list(files))
        for diagnostic in result.diagnostics:
            task = files[diagnostic.path]
            if diagnostic.severity == "warning":
                field_name = _SPEC_TO_PAYLOAD.get(diagnostic.field, diagnostic.field)
                notes[task.index].append(f"{field_name}: {diagnostic.message}")
                continue
            problems.append(
                f"payload[{task.index}]: the written file would not load: line {diagnostic.line}: "
                f"{diagnostic.field}: {diagnostic.message}"
            )
        for loaded in result.tasks:
            task = files[loaded.path]
            if loaded.spec != task.spec:
                problems.append(f"payload[{task.index}]: the written file reads back differently")
    return problems, [replace(task, notes=tuple(notes[task.index])) for task in tasks]


def write_tasks(tasks: Sequence[ImportedTask]) -> None:
    """Write the files, never replacing one; if any cannot be written, remove those written."""
    written: list[Path] = []
    try:
        for task in tasks:
            task.path.parent.mkdir(parents=True, exist_ok=True)
            with task.path.open("x", encoding="utf-8") as handle:
                written.append(task.path)
                handle.write(task.text)
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        reason = "it already exists" if isinstance(exc, FileExistsError) else exc.strerror
        raise ReconcilerError(
            f"cannot write {exc.filename}: {reason}; nothing was imported"
        ) from exc


def import_file(path: Path, *, tasks_dir: Path, owner: str | None) -> list[ImportedTask]:
    """The whole of ``reconcile import``: read, check, render, read back, then write."""
    tasks = plan_import(read_payloads(path), tasks_dir=tasks_dir, owner=owner, source=str(path))
    write_tasks(tasks)
    return tasks
