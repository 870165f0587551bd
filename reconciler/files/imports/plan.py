"""The whole of ``reconcile import``, all or nothing: every payload is checked, and every
file rendered and read back with the loader, before the first file is written."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reconciler.core.spec import TaskSpec
from reconciler.errors import ReconcilerError, UsageError
from reconciler.files.imports.mapping import SPEC_TO_PAYLOAD, Payload, payload_to_document
from reconciler.files.imports.render import render, schema_comment
from reconciler.files.imports.source import json_type, read_payloads
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


def plan_import(
    payloads: Sequence[Any], *, tasks_dir: Path, owner: str | None, source: str
) -> list[ImportedTask]:
    """Check every payload and render its file; raise ImportProblems listing every problem."""
    target_dir = tasks_dir / IMPORT_SUBDIR
    if owner is None:
        _require_owner(payloads, source)
    problems: list[str] = []
    documents: list[tuple[Payload, dict[str, Any]]] = []
    for index, data in enumerate(payloads):
        if not isinstance(data, dict):
            problems.append(f"payload[{index}]: is a JSON {json_type(data)}, not an object")
            continue
        payload = Payload(index, data)
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
    documents: list[tuple[Payload, dict[str, Any]]],
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
                key = SPEC_TO_PAYLOAD.get(str(loc[0])) if loc else None
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
                field_name = SPEC_TO_PAYLOAD.get(diagnostic.field, diagnostic.field)
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
