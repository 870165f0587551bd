"""Loading a set of task files into validated specs (docs/task-files.md): the entry points
for ``reconcile validate``, apply, watch, ``next`` and the importer's checks.

Collects every file's tasks and diagnostics, refuses a name already used in another
file and a second defaults document, gives each task its effective alerts (its own,
else the defaults'), and sorts the diagnostics; nothing else is raised.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yaml.nodes import MappingNode

from reconciler.core.alerts import effective
from reconciler.core.diagnostics import Diagnostic
from reconciler.files.discovery import file_error, read_text, task_files
from reconciler.files.locate import Loc, position, walk
from reconciler.files.taskfile import LoadedDefaults, LoadedTask, load_file
from reconciler.files.yamlreader import compose


@dataclass
class LoadResult:
    """Everything one load found: the valid tasks and every diagnostic, in file order."""

    tasks: list[LoadedTask]
    diagnostics: list[Diagnostic]
    files: int
    missing_root: bool = False
    defaults: LoadedDefaults | None = None

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)

    @property
    def notify(self) -> dict[str, dict[str, Any]]:
        """The defaults document's ``notify``: owner -> its target as plain values."""
        if self.defaults is None or self.defaults.defaults is None:
            return {}
        return {
            owner: target.model_dump(mode="json")
            for owner, target in self.defaults.defaults.notify.items()
        }


Progress = Callable[[int, int], None]
"""Called after each file with (files read, files in total), e.g. for a progress bar."""


class _Collector:
    """Gathers the files to read first (so progress has a total), then reads them."""

    def __init__(self, now: dt.datetime | None, progress: Progress | None) -> None:
        now = now or dt.datetime.now(dt.UTC)
        self.now = now if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)
        self.progress = progress
        self.tasks: list[LoadedTask] = []
        self.diagnostics: list[Diagnostic] = []
        self.missing_root = False
        self._files: list[str] = []
        self._listed: set[str] = set()
        self._vanished = 0
        self._names: dict[str, tuple[str, int, int]] = {}
        self.defaults: LoadedDefaults | None = None

    def add_file(self, path: str) -> None:
        if os.path.isfile(path):
            self._files.append(path)
        else:
            self.diagnostics.append(file_error(path, "is not a regular file"))

    def add_directory(self, root: str) -> None:
        if not os.path.isdir(root):
            self.missing_root = True
            what = "is not a directory" if os.path.exists(root) else "does not exist"
            self.diagnostics.append(
                file_error(root, f"tasks directory {what}", "create it or pass --tasks-dir")
            )
            return
        found = list(task_files(root, self.diagnostics))
        self._listed.update(found)
        self._files.extend(found)

    def _read(self, path: str) -> None:
        outcome = load_file(path, self.now, listed=path in self._listed)
        if outcome is None:
            self._vanished += 1
            return
        self.diagnostics.extend(outcome.diagnostics)
        for found in outcome.defaults:
            if self.defaults is None:
                self.defaults = found
                continue
            self.diagnostics.append(
                Diagnostic(
                    found.path,
                    found.line,
                    found.column,
                    "kind",
                    f"a second defaults document; the first is at {self.defaults.where}",
                    "keep one kind: defaults document in the tasks tree and merge the two",
                )
            )
        for task, (line, column) in outcome.tasks:
            first = self._names.get(task.spec.name)
            if first is not None:
                where = f"{first[0]}:{first[1]}:{first[2]}"
                self.diagnostics.append(
                    Diagnostic(
                        path,
                        line,
                        column,
                        "name",
                        f"{task.spec.name!r} is already used at {where}",
                        "task names are unique across all files; rename one",
                    )
                )
                continue
            self._names[task.spec.name] = (path, line, column)
            self.tasks.append(task)

    def result(self) -> LoadResult:
        total = len(self._files)
        for done, path in enumerate(self._files, start=1):
            self._read(path)
            if self.progress is not None:
                self.progress(done, total)
        diagnostics = sorted(self.diagnostics, key=Diagnostic.sort_key)
        tasks = with_defaults(self.tasks, self.defaults)
        return LoadResult(
            tasks, diagnostics, total - self._vanished, self.missing_root, self.defaults
        )


def with_defaults(tasks: list[LoadedTask], defaults: LoadedDefaults | None) -> list[LoadedTask]:
    """Each task with its effective alerts, noting those taken from the defaults."""
    default = defaults.defaults.alerts if defaults and defaults.defaults else None
    resolved: list[LoadedTask] = []
    for task in tasks:
        own = task.spec.alerts
        alerts = effective(own, default)
        if alerts != own:
            task = dataclasses.replace(task, spec=task.spec.model_copy(update={"alerts": alerts}))
        if own is None and alerts is not None and defaults is not None:
            where = f"{defaults.path}:{defaults.line}"
            task = dataclasses.replace(task, inherited=(("alerts", where),))
        resolved.append(task)
    return resolved


def load_directory(
    tasks_dir: Path | str, now: dt.datetime | None = None, progress: Progress | None = None
) -> LoadResult:
    """Load every task file under ``tasks_dir``; ``now`` decides which ``at`` is past."""
    collector = _Collector(now, progress)
    collector.add_directory(str(tasks_dir))
    return collector.result()


def load_paths(
    paths: Sequence[Path | str], now: dt.datetime | None = None, progress: Progress | None = None
) -> LoadResult:
    """Load the given files and directories (directories recursively) as one set."""
    collector = _Collector(now, progress)
    for path in paths:
        text = str(path)
        if os.path.isdir(text) or not os.path.exists(text):
            collector.add_directory(text)
        else:
            collector.add_file(text)
    return collector.result()


def field_position(task: LoadedTask, loc: Loc) -> tuple[int, int]:
    """Where ``loc`` (e.g. ``("task",)``) of a loaded task is written: re-reads its file."""
    text = read_text(task.path)
    if not isinstance(text, str):
        return task.line, 1
    documents, _ = compose(text, task.path)
    for root in documents:
        if isinstance(root, MappingNode) and position(root)[0] == task.line:
            node, _, _ = walk(root, loc)
            return position(node)
    return task.line, 1


def check_registered(result: LoadResult, registered: Collection[str]) -> list[Diagnostic]:
    """Errors for tasks whose ``task:`` the Celery app does not register."""
    known = sorted(registered)
    found: list[Diagnostic] = []
    for task in result.tasks:
        if task.spec.task in registered:
            continue
        close = difflib.get_close_matches(task.spec.task, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else "run 'reconcile tasks' to list them"
        line, column = field_position(task, ("task",))
        found.append(
            Diagnostic(
                task.path,
                line,
                column,
                "task",
                f"{task.spec.task!r} is not registered by the Celery app",
                hint,
            )
        )
    return found
