"""The whole of ``reconcile import``, all or nothing: every payload is checked, and every
file rendered and read back with the loader, before the first file is written."""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reconciler.core.spec import TaskSpec
from reconciler.errors import ReconcilerError, UsageError
from reconciler.files.imports import SOURCES
from reconciler.files.imports.entries import entry_to_document
from reconciler.files.imports.mapping import SPEC_TO_PAYLOAD, Payload, payload_to_document
from reconciler.files.imports.names import slugify, with_suffix
from reconciler.files.imports.render import render, schema_comment
from reconciler.files.imports.source import json_type
from reconciler.files.loader import load_directory, load_paths

IMPORT_SUBDIR = "imported"
"""Imported files go to this folder of the tasks directory."""


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
    where: str = ""
    held: bool = False
    """A one-off that may already have run, written ``enabled: false``."""
    last_run_at: dt.datetime | None = None
    """When the old scheduler last ran it, where the source keeps it."""


@dataclass(frozen=True)
class ImportOptions:
    """How ``reconcile import`` maps entries (docs/import.md)."""

    kind: str = "web-api"
    owner: str | None = None
    names: Mapping[str, str] | None = None
    enable_one_offs: bool = False
    drop_unsupported: bool = False
    default_zone: str = "UTC"
    last_run_from: dt.datetime | None = None
    """``--last-run-from``: the last run of periodic tasks whose source keeps none."""


def plan_import(
    payloads: Sequence[Any],
    *,
    tasks_dir: Path,
    owner: str | None,
    source: str,
    options: ImportOptions | None = None,
    now: dt.datetime | None = None,
) -> list[ImportedTask]:
    """Check every payload and render its file; raise ImportProblems listing every problem."""
    options = replace(options or ImportOptions(), owner=owner)
    target_dir = tasks_dir / IMPORT_SUBDIR
    if owner is None:
        _require_owner(payloads, source, options.kind)
    problems: list[str] = []
    documents: list[tuple[Payload, dict[str, Any]]] = []
    for index, data in enumerate(payloads):
        if not isinstance(data, dict):
            problems.append(f"payload[{index}]: is a JSON {json_type(data)}, not an object")
            continue
        payload = Payload(index, data, label=str(data.get("where") or ""))
        document = _document(payload, options)
        problems += payload.problems
        if document is not None:
            documents.append((payload, document))
    existing: dict[str, str] = {}
    if tasks_dir.is_dir():
        existing = {loaded.spec.name: loaded.path for loaded in load_directory(tasks_dir).tasks}
    problems += _name(documents, existing, options.names or {})
    held = _hold_one_offs(documents, options, now or dt.datetime.now(dt.UTC))
    comment = schema_comment(target_dir)
    tasks = _checked(documents, problems, target_dir, comment, options, held)
    problems += _collisions(tasks, existing)
    if problems:
        raise ImportProblems(source, problems)
    problems, tasks = _read_back(tasks)
    if problems:
        raise ImportProblems(source, problems)
    return tasks


def _document(payload: Payload, options: ImportOptions) -> dict[str, Any] | None:
    if options.kind == "web-api":
        return payload_to_document(payload, options.owner)
    return entry_to_document(
        payload,
        options.owner,
        default_zone=options.default_zone,
        drop_unsupported=options.drop_unsupported,
    )


def _name(
    documents: list[tuple[Payload, dict[str, Any]]],
    existing: Mapping[str, str],
    names: Mapping[str, str],
) -> list[str]:
    """Give each document its identity: the ``--names`` map's, the old name when valid, else
    a readable one; a suffix only where two different old names would meet."""
    problems = [
        f"--names: {old!r} is not the name of any imported entry"
        for old in names
        if old not in {document["name"] for _, document in documents}
    ]
    wanted: list[tuple[Payload, dict[str, Any], str, bool]] = []
    for payload, document in documents:
        original = document["name"]
        if original in names:
            wanted.append((payload, document, names[original], True))
        else:
            fallback = str(document["task"]).rsplit(".", 1)[-1]
            wanted.append((payload, document, slugify(original, fallback), False))
    # Names given or kept as they were come first: a made-up name yields to them.
    fixed = {name for _, document, name, given in wanted if given or name == document["name"]}
    taken = set(existing) | fixed
    originals: dict[str, str] = {}
    for payload, document, name, given in wanted:
        original = document["name"]
        made = not given and name != original
        if made and (name in fixed or originals.get(name, original) != original):
            number = 2
            while with_suffix(name, number) in taken:
                number += 1
            name = with_suffix(name, number)
        originals.setdefault(name, original)
        taken.add(name)
        document["name"] = name
        document["_original"] = original
        if name != original:
            how = "--names gives" if given else "it became"
            payload.notes.append(f"name {original!r} is not kept as it is; {how} {name!r}")
    return problems


def _hold_one_offs(
    documents: list[tuple[Payload, dict[str, Any]]], options: ImportOptions, now: dt.datetime
) -> set[int]:
    """One-offs that may already have run in the old system (``async``, or ``scheduled`` in the
    past) are written disabled, unless ``--enable-one-offs``; their payload indexes."""
    held: set[int] = set()
    if options.enable_one_offs:
        return held
    for payload, document in documents:
        at = document.get("at")
        past = isinstance(at, dt.datetime) and at.astimezone(dt.UTC) <= now
        one_off = document["type"] == "async" or (document["type"] == "scheduled" and past)
        if one_off and document.get("enabled", True) is True:
            document["enabled"] = False
            held.add(payload.index)
            payload.notes.append(
                "one-off that may already have run: written enabled: false "
                "(--enable-one-offs keeps it enabled)"
            )
    return held


def _require_owner(payloads: Sequence[Any], source: str, kind: str) -> None:
    """Without --owner, every payload must name its owner; the old web app's never do."""
    if kind != "web-api":
        raise UsageError(
            f"{source}: {SOURCES.get(kind, kind)} keeps no owner: pass --owner NAME, the team "
            f"that may read the tasks' history"
        )
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
    documents: list[tuple[Payload, dict[str, Any]]],
    problems: list[str],
    target_dir: Path,
    comment: str,
    options: ImportOptions,
    held: set[int],
) -> list[ImportedTask]:
    tasks: list[ImportedTask] = []
    kind = options.kind
    field_names = SPEC_TO_PAYLOAD if kind == "web-api" else {}
    for payload, document in documents:
        original = str(document.pop("_original"))
        ran = _last_run(payload)
        last_run = (ran or options.last_run_from) if document["type"] == "periodic" else None
        if last_run is not None:
            document["last_run"] = last_run
        _keep_origin(document, original, kind)
        try:
            spec = TaskSpec.model_validate(document)
        except ValidationError as exc:
            for error in exc.errors():
                loc = error["loc"]
                key = field_names.get(str(loc[0]), str(loc[0])) if loc else None
                message = str(error["msg"]).removeprefix("Value error, ")
                payload.problem(key, message)
            problems += payload.problems
            continue
        header = [comment]
        where = SOURCES.get(kind, kind)
        if payload.label:
            where += f" ({payload.label})"
        if spec.name != original:
            header.append(f"# Imported from {where}, where it was called {original!r}.")
        else:
            header.append(f"# Imported from {where}.")
        if last_run is not None:
            header.append(
                "# last_run: when it last ran there; its first run here is the slot after "
                "it (docs/import.md)."
            )
        if payload.index in held:
            header.append(
                "# enabled: false because this one-off may already have run in the old "
                "system; set it to true to run it (again)."
            )
        text = render(document, header)
        path = target_dir / f"{spec.name}.yaml"
        tasks.append(
            ImportedTask(
                payload.index,
                original,
                spec,
                path,
                text,
                tuple(payload.notes),
                where=payload.where(),
                held=payload.index in held,
                last_run_at=last_run or ran,
            )
        )
    return tasks


def _last_run(payload: Payload) -> dt.datetime | None:
    value = payload.data.get("last_run_at")
    return value if isinstance(value, dt.datetime) and value.tzinfo is not None else None


def _keep_origin(document: dict[str, Any], original: str, kind: str) -> None:
    """Where it came from, as a label; a changed name kept where the page and the API
    search (the description) and as a label."""
    labels = {"imported-from": kind}
    if document["name"] != original:
        labels["original-name"] = " ".join(original.split())[:200]
        description = document.get("description") or ""
        if original not in description:
            document["description"] = f"{original}: {description}" if description else original
            # the description comes right after the name in a task file
            order = ["name", "description"]
            rest = {key: value for key, value in document.items() if key not in order}
            reordered = {key: document[key] for key in order} | rest
            document.clear()
            document.update(reordered)
    document["labels"] = labels


def _collisions(tasks: Sequence[ImportedTask], existing: Mapping[str, str]) -> list[str]:
    """Files that exist already, names used twice in the import or by an existing task."""
    problems: list[str] = []
    first: dict[str, ImportedTask] = {}
    for task in tasks:
        name = task.spec.name
        where = f"{task.where}.name"
        if name in first:
            problems.append(
                f"{where}: {task.original_name!r} becomes the task {name!r}, as "
                f"{first[name].where} does; give one of them another name"
            )
            continue
        first[name] = task
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
                field_name = SPEC_TO_PAYLOAD.get(diagnostic.field, diagnostic.field)
                notes[task.index].append(f"{field_name}: {diagnostic.message}")
                continue
            problems.append(
                f"{task.where}: the written file would not load: line {diagnostic.line}: "
                f"{diagnostic.field}: {diagnostic.message}"
            )
        for loaded in result.tasks:
            task = files[loaded.path]
            if loaded.spec != task.spec:
                problems.append(f"{task.where}: the written file reads back differently")
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
