"""Loading a set of task files into validated specs (docs/task-files.md): the entry points
for ``reconcile validate``, apply, watch, ``next`` and the importer's checks.

Collects every file's tasks and diagnostics, refuses a name already used in another
file and a second defaults document, gives each task its effective alerts (its own,
else the defaults'), and sorts the diagnostics; nothing else is raised.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import difflib
import gc
import os
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yaml.nodes import MappingNode

from reconciler.core.alerts import effective
from reconciler.core.calendars import CalendarEntry
from reconciler.core.diagnostics import Diagnostic
from reconciler.core.retention import effective as effective_history
from reconciler.core.spec import TaskSpec
from reconciler.files.discovery import file_error, read_text, task_files
from reconciler.files.locate import Loc, position, walk
from reconciler.files.taskfile import LoadedCalendar, LoadedDefaults, LoadedTask, load_file
from reconciler.files.yamlreader import compose


@dataclass
class LoadResult:
    """Everything one load found: the valid tasks and every diagnostic, in file order."""

    tasks: list[LoadedTask]
    diagnostics: list[Diagnostic]
    files: int
    missing_root: bool = False
    defaults: LoadedDefaults | None = None
    calendars: dict[str, LoadedCalendar] = dataclasses.field(default_factory=dict)

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
        self.calendars: dict[str, LoadedCalendar] = {}

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
        for calendar in outcome.calendars:
            name = calendar.calendar.name
            if name in self.calendars:
                earlier = self.calendars[name]
                self.diagnostics.append(
                    Diagnostic(
                        calendar.path,
                        *calendar.name_at,
                        "name",
                        f"calendar {name!r} is already defined at {earlier.path}:"
                        f"{earlier.name_at[0]}:{earlier.name_at[1]}",
                        "calendar names are unique across all files; rename or merge one",
                    )
                )
                continue
            self.calendars[name] = calendar
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
        with _cycle_collector_paused():
            for done, path in enumerate(self._files, start=1):
                self._read(path)
                if self.progress is not None:
                    self.progress(done, total)
            tasks = with_calendars(
                with_defaults(self.tasks, self.defaults), self.calendars, self.diagnostics
            )
        self.diagnostics.extend(previous_name_errors(tasks))
        diagnostics = sorted(self.diagnostics, key=Diagnostic.sort_key)
        return LoadResult(
            tasks,
            diagnostics,
            total - self._vanished,
            self.missing_root,
            self.defaults,
            self.calendars,
        )


@contextlib.contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """Python's cycle collector off while files are read: a load makes many small objects
    and no reference cycles, so collecting during it only costs time
    (docs/design/validate-read-path.md)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def with_defaults(tasks: list[LoadedTask], defaults: LoadedDefaults | None) -> list[LoadedTask]:
    """Each task with its effective alerts and history, noting those taken from the defaults."""
    given = defaults.defaults if defaults and defaults.defaults else None
    default_alerts = given.alerts if given else None
    default_history = given.history if given else None
    resolved: list[LoadedTask] = []
    for task in tasks:
        update: dict[str, Any] = {}
        inherited: list[tuple[str, str]] = []
        own = task.spec.alerts
        alerts = effective(own, default_alerts)
        if alerts != own:
            update["alerts"] = alerts
        if own is None and alerts is not None and defaults is not None:
            inherited.append(("alerts", f"{defaults.path}:{defaults.line}"))
        own_history = task.spec.history
        history = effective_history(own_history, default_history)
        if history != own_history:
            update["history"] = history
        if own_history is None and history is not None and defaults is not None:
            inherited.append(("history", f"{defaults.path}:{defaults.line}"))
        if given and given.spread and task.spec.spread is None and task.spec.type == "periodic":
            update["spread"] = given.spread
            assert defaults is not None  # ``given`` is its document
            inherited.append(("spread", f"{defaults.path}:{defaults.line}"))
        if update:
            task = dataclasses.replace(task, spec=task.spec.updated(**update))
        if inherited:
            task = dataclasses.replace(task, inherited=tuple(inherited))
        resolved.append(task)
    return resolved


def with_calendars(
    tasks: list[LoadedTask],
    calendars: Mapping[str, LoadedCalendar],
    diagnostics: list[Diagnostic],
) -> list[LoadedTask]:
    """Each task with the entries of the calendars it names carried into its spec.

    A task naming an unknown calendar is an error at that name (and the task is left
    out); a calendar no task names is a warning at its name.
    """
    used: set[str] = set()
    resolved: list[LoadedTask] = []
    entries = {name: loaded.calendar.entries for name, loaded in calendars.items()}
    # Worked out once per combination of names, shared by the tasks that name it: the
    # unknown names, and the (read only) mapping and sources carried into each spec.
    combinations: dict[tuple[tuple[str, ...], tuple[str, ...]], _Named] = {}
    for task in tasks:
        spec = task.spec
        skip_on, only_on = spec.skip_on, spec.only_on
        if not skip_on and not only_on:
            resolved.append(task)
            continue
        key = (tuple(skip_on or ()), tuple(only_on or ()))
        named = combinations.get(key)
        if named is None:
            named = combinations[key] = _named(key, calendars, entries)
            used.update(name for _, _, name in named.names if name in calendars)
        if named.unknown:
            diagnostics.extend(_unknown_calendar(task, *bad, calendars) for bad in named.unknown)
            continue
        _carry(spec, named.carried)
        resolved.append(dataclasses.replace(task, inherited=task.inherited + named.sources))
    for name, calendar in calendars.items():
        if name not in used:
            diagnostics.append(
                Diagnostic(
                    calendar.path,
                    *calendar.name_at,
                    "name",
                    f"calendar {name!r} is used by no task",
                    "name it in a task's skip_on or only_on, or remove it",
                    severity="warning",
                )
            )
    return resolved


@dataclass(frozen=True)
class _Named:
    """The calendars one combination of ``skip_on`` and ``only_on`` names."""

    names: tuple[tuple[str, int, str], ...]
    unknown: tuple[tuple[str, int, str], ...]
    carried: dict[str, list[CalendarEntry]]
    sources: tuple[tuple[str, str], ...]


def _named(
    key: tuple[tuple[str, ...], tuple[str, ...]],
    calendars: Mapping[str, LoadedCalendar],
    entries: Mapping[str, list[CalendarEntry]],
) -> _Named:
    names = tuple(
        (kind, i, name)
        for kind, listed in zip(("skip_on", "only_on"), key, strict=True)
        for i, name in enumerate(listed)
    )
    unknown = tuple(named for named in names if named[2] not in calendars)
    known = () if unknown else tuple(name for _, _, name in names)
    return _Named(
        names,
        unknown,
        {name: entries[name] for name in known},
        tuple((f"calendars.{name}", f"calendar:{calendars[name].where}") for name in known),
    )


def _unknown_calendar(
    task: LoadedTask, kind: str, i: int, name: str, calendars: Mapping[str, LoadedCalendar]
) -> Diagnostic:
    """An error at a name no calendar document has, with the nearest name as a hint."""
    line, column = field_position(task, (kind, i))
    close = difflib.get_close_matches(name, sorted(calendars), n=1, cutoff=0.6)
    hint = (
        f"did you mean {close[0]!r}?"
        if close
        else "define it in a kind: calendar document under the tasks directory"
    )
    return Diagnostic(task.path, line, column, f"{kind}[{i}]", f"unknown calendar {name!r}", hint)


def previous_name_errors(tasks: Sequence[LoadedTask]) -> list[Diagnostic]:
    """A previous name that a task still has, or that a second task claims too, is an
    error at that name (docs/task-files.md, "Renames")."""
    defined = {task.spec.name: task for task in tasks}
    claimed: dict[str, tuple[LoadedTask, int]] = {}
    found: list[Diagnostic] = []
    for task in tasks:
        for i, old in enumerate(task.spec.previous_names or ()):
            field = f"previous_names[{i}]"
            holder = defined.get(old)
            first = claimed.setdefault(old, (task, i))
            if holder is not None:
                message = f"{old!r} is still defined at {holder.path}:{holder.line}"
                hint = f"remove {old!r} from the files to rename it, or drop it from here"
            elif first[0] is not task:
                line, column = field_position(first[0], ("previous_names", first[1]))
                message = (
                    f"{old!r} is already a previous name of {first[0].spec.name!r} at "
                    f"{first[0].path}:{line}:{column}"
                )
                hint = "a task's history goes to one task; keep it in one of them"
            else:
                continue
            line, column = field_position(task, ("previous_names", i))
            found.append(Diagnostic(task.path, line, column, field, message, hint))
    return found


def _carry(spec: TaskSpec, calendars: dict[str, list[CalendarEntry]]) -> None:
    """Set ``calendars`` on a spec this load made and nothing else holds yet, in place:
    a copy of every task that names a calendar was most of validate's extra memory."""
    object.__setattr__(spec, "calendars", calendars)
    spec.__pydantic_fields_set__.add("calendars")
    spec.__dict__.pop("timing", None)  # derived from the calendars


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
