"""One task file into specs: each document built by the YAML reader, validated into a
``TaskSpec`` and checked for warnings (a past ``at``, a crontab that never fires); a
document with ``kind: defaults`` is validated into ``Defaults`` instead."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.core.calendars import CALENDAR_KIND, Calendar
from reconciler.core.cronmatch import never_fires
from reconciler.core.defaults import DEFAULTS_KIND, Defaults
from reconciler.core.diagnostics import Diagnostic
from reconciler.core.spec import TaskSpec
from reconciler.core.values import describe_value
from reconciler.files.discovery import MAX_PATH, file_error, read_text
from reconciler.files.explain import CALENDAR_MODELS, DEFAULTS_MODELS, diagnostics_for, overlaps
from reconciler.files.locate import Loc, field_name, path_of, position, walk
from reconciler.files.yamlreader import (
    MAX_ALIAS_EXPANSION,
    Builder,
    Problem,
    alias_growth,
    compose,
    is_empty,
    scalar_value,
)
from reconciler.vocabulary import TaskType


@dataclass(frozen=True)
class LoadedTask:
    """A valid task and where its document starts; ``inherited`` names the fields its
    spec takes from the defaults document, with where that document is (``path:line``)."""

    spec: TaskSpec
    path: str
    line: int
    inherited: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LoadedDefaults:
    """A defaults document and where it starts; ``defaults`` is None when it is invalid
    (its errors are reported; it still counts as the tree's one defaults document)."""

    defaults: Defaults | None
    path: str
    line: int
    column: int

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True)
class LoadedCalendar:
    """A valid calendar document, where it starts and where its name is written."""

    calendar: Calendar
    path: str
    line: int
    name_at: tuple[int, int]

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class FileOutcome:
    """What one file holds: its valid tasks (with where their name is written) and diagnostics."""

    tasks: list[tuple[LoadedTask, tuple[int, int]]] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    defaults: list[LoadedDefaults] = field(default_factory=list)
    calendars: list[LoadedCalendar] = field(default_factory=list)


def _load_document(
    root: Node, path: str, now: dt.datetime, outcome: FileOutcome, has_anchors: bool
) -> None:
    """Validate one document into ``outcome``: its task, or why it is not one."""
    line, column = position(root)
    if not isinstance(root, MappingNode):
        kind = "a list" if isinstance(root, SequenceNode) else "a single value"
        outcome.diagnostics.append(
            Diagnostic(
                path, line, column, "document", f"a task must be a mapping of fields, got {kind}"
            )
        )
        return
    if has_anchors and alias_growth(root) > MAX_ALIAS_EXPANSION:
        outcome.diagnostics.append(
            Diagnostic(
                path,
                line,
                column,
                "document",
                f"aliases expand to more than {MAX_ALIAS_EXPANSION:,} values",
                "write the values out instead of repeating anchors",
            )
        )
        return
    builder = Builder()
    data = builder.build(root)
    if not all(type(key) is str for key in data):
        for key_node, _ in root.value:
            if isinstance(key_node, ScalarNode) and key_node.tag not in ("str", "merge"):
                key = scalar_value(key_node)
                builder.problems.append(
                    Problem(key_node, f"field names are strings, got {describe_value(key)}")
                )
    problem_locs: list[Loc] = []
    for problem in builder.problems:
        loc = path_of(root, problem.node)
        problem_locs.append(loc)
        p_line, p_column = position(problem.node)
        outcome.diagnostics.append(
            Diagnostic(path, p_line, p_column, field_name(loc), problem.message, problem.hint)
        )
    if data.get("kind") == CALENDAR_KIND:
        _load_calendar(root, data, path, outcome, problem_locs)
        return
    if "kind" in data:
        _load_defaults(root, data, path, outcome, problem_locs)
        return
    if "calendars" in data:
        node, key_node, _ = walk(root, ("calendars",))
        outcome.diagnostics.append(
            Diagnostic(
                path,
                *position(key_node or node),
                "calendars",
                "unknown field (a task names its calendars in skip_on or only_on)",
                "write skip_on: [NAME] or only_on: [NAME]; the calendar is a kind: calendar "
                "document",
            )
        )
        return
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as exc:
        for diagnostic, loc in diagnostics_for(exc, root, path):
            # A value the YAML reader already refused is not reported a second time.
            if not any(overlaps(loc, refused) for refused in problem_locs):
                outcome.diagnostics.append(diagnostic)
        return
    if problem_locs:
        return
    outcome.diagnostics.extend(_warnings(spec, root, path, now))
    name_node, _, _ = walk(root, ("name",))
    outcome.tasks.append((LoadedTask(spec, path, line), position(name_node)))


def _load_defaults(
    root: MappingNode,
    data: dict[str, Any],
    path: str,
    outcome: FileOutcome,
    problem_locs: list[Loc],
) -> None:
    """Validate a document that has ``kind`` into ``outcome``: the defaults, or why not."""
    if data["kind"] != DEFAULTS_KIND:
        node, _, _ = walk(root, ("kind",))
        line, column = position(node)
        outcome.diagnostics.append(
            Diagnostic(
                path,
                line,
                column,
                "kind",
                f"must be {DEFAULTS_KIND!r} or {CALENDAR_KIND!r}, got "
                f"{describe_value(data['kind'])}",
                "write kind: defaults for the defaults of all tasks, kind: calendar for a "
                "calendar; a document without kind is a task",
            )
        )
        return
    defaults: Defaults | None = None
    try:
        defaults = Defaults.model_validate(data)
    except ValidationError as exc:
        for diagnostic, loc in diagnostics_for(exc, root, path, DEFAULTS_MODELS):
            if not any(overlaps(loc, refused) for refused in problem_locs):
                outcome.diagnostics.append(diagnostic)
    valid = defaults if not problem_locs else None
    outcome.defaults.append(LoadedDefaults(valid, path, *position(root)))


def _load_calendar(
    root: MappingNode,
    data: dict[str, Any],
    path: str,
    outcome: FileOutcome,
    problem_locs: list[Loc],
) -> None:
    """Validate a ``kind: calendar`` document into ``outcome``: the calendar, or why not."""
    try:
        calendar = Calendar.model_validate(data)
    except ValidationError as exc:
        for diagnostic, loc in diagnostics_for(exc, root, path, CALENDAR_MODELS):
            if not any(overlaps(loc, refused) for refused in problem_locs):
                outcome.diagnostics.append(diagnostic)
        return
    if problem_locs:
        return
    name_node, _, _ = walk(root, ("name",))
    line, _ = position(root)
    outcome.calendars.append(LoadedCalendar(calendar, path, line, position(name_node)))


def _warning(root: MappingNode, path: str, name: str, message: str, hint: str) -> Diagnostic:
    """A warning placed at the top-level field ``name`` of the document."""
    node, _, _ = walk(root, (name,))
    line, column = position(node)
    return Diagnostic(path, line, column, name, message, hint, severity="warning")


def _warnings(spec: TaskSpec, root: MappingNode, path: str, now: dt.datetime) -> list[Diagnostic]:
    """What is valid but probably not meant: a past ``at``, a crontab that never fires."""
    found: list[Diagnostic] = []
    if spec.type == TaskType.SCHEDULED and spec.at is not None and spec.at < now:
        found.append(
            _warning(
                root,
                path,
                "at",
                f"{spec.at.isoformat()} is in the past",
                "set a future time, or remove the task once it has run",
            )
        )
    if spec.crontab is not None and never_fires(spec.crontab):
        found.append(
            _warning(
                root,
                path,
                "crontab",
                f"'{spec.crontab.expression}' never fires: no date has that day_of_month "
                f"in that month_of_year",
                "check the day and month (February has at most 29 days; April, June, "
                "September and November 30)",
            )
        )
    return found


def load_file(path: str, now: dt.datetime, *, listed: bool = False) -> FileOutcome | None:
    """What one file holds; None when a listed file vanished before it was read."""
    outcome = FileOutcome()
    if len(path) > MAX_PATH:
        outcome.diagnostics.append(
            file_error(
                path,
                f"path is {len(path)} characters long, over the limit of {MAX_PATH}",
                "use shorter directory or file names",
            )
        )
        return outcome
    text = read_text(path, listed=listed)
    if text is None:
        return None
    if isinstance(text, Diagnostic):
        outcome.diagnostics.append(text)
        return outcome
    documents, syntax_error = compose(text, path)
    has_anchors = "&" in text
    for root in documents:
        if not is_empty(root):
            _load_document(root, path, now, outcome, has_anchors)
    if syntax_error is not None:
        outcome.diagnostics.append(syntax_error)
    return outcome
