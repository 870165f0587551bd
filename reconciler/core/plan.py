"""The plan: what apply must do to turn the stored tasks into the desired ones.

Pure: it compares the loader's task specs with the rows the store read and returns a
small typed value (creates, updates with each changed field, renames, deletes, an
unchanged count) that is falsy when there is nothing to do. ``reconciler.apply``
computes it inside the apply lock and hands it to the store; the CLI renders it.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from reconciler.core.durations import format_duration, parse_duration
from reconciler.core.spec import SCHEDULE_FIELDS, TaskSpec
from reconciler.core.timing import spread_offset
from reconciler.errors import ReconcilerError

# Denormalised task columns that must agree with the spec; an edit of one of them
# behind the reconciler's back is drift like an edit of the spec itself. Each is the
# TaskSpec attribute of the same name (``schedule_text`` is derived and cached).
COLUMN_FIELDS = (
    "owner",
    "type",
    "task",
    "description",
    "enabled",
    "schedule_text",
    "timezone",
)
# The spec fields a derived column is worked out from. When one of them is in an
# update's diff, the column's change is that diff's consequence, not drift of its own.
_DERIVED_FROM = {"schedule_text": ("type", "crontab", "interval", "at")}
# Nested spec values shown field by field (``options.queue: a -> b``) in a diff.
_FLATTENED = ("options", "alerts", "calendars")
# What makes two definitions the same job under two names: a delete and a create that
# agree on these are suggested as a rename (docs/plan-and-apply.md, "Renames").
_SAME_JOB = ("type", "task", "args", "kwargs", "crontab", "interval", "at", "timezone")


class Op(enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    RENAME = "rename"


class RenameRefused(ReconcilerError):
    """A ``previous_names`` entry the database state does not allow; nothing applied."""


class SourcedSpec(Protocol):
    """A desired task and where it was defined (``reconciler.files.taskfile.LoadedTask``)."""

    @property
    def spec(self) -> TaskSpec: ...

    @property
    def path(self) -> str: ...

    @property
    def line(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Current:
    """One live stored task as the store read it; ``spec_json`` is the stored JSON text."""

    name: str
    spec_json: str
    content_hash: str
    source_path: str = ""
    source_line: int = 1
    # The denormalised columns as stored (COLUMN_FIELDS); empty means "not checked".
    columns: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FieldChange:
    field: str
    old: Any
    new: Any
    # Where a value taken from elsewhere comes from ("the defaults at tasks.d/defaults.yaml:1").
    source: str | None = None


@dataclass(frozen=True, slots=True)
class NotifyChange:
    """Where one owner's alerts go, before and after (None: not configured)."""

    owner: str
    old: Mapping[str, Any] | None
    new: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class Change:
    """One operation on one task. ``spec`` is None for deletes."""

    op: Op
    name: str
    spec: TaskSpec | None = None
    canonical: Mapping[str, Any] | None = None
    content_hash: str | None = None
    # The spec as the store writes it (``spec.model_dump_json()``).
    spec_json: str | None = None
    path: str | None = None
    line: int | None = None
    fields: tuple[FieldChange, ...] = ()
    # A rename: the name the row has now, and whether that row is a deleted task's.
    previous: str | None = None
    revived: bool = False

    @property
    def schedule_changed(self) -> bool:
        """True when the task's schedule restarts (docs/beat.md): a schedule field changed."""
        return any(change.field.split(".")[0] in SCHEDULE_FIELDS for change in self.fields)


@dataclass(frozen=True, slots=True)
class Relocation:
    """A task whose definition moved (file or line) without changing: recorded quietly."""

    name: str
    path: str
    line: int


@dataclass(frozen=True, slots=True)
class RenameHint:
    """A delete and a create of the same job (``_SAME_JOB``): ``previous_names`` would
    keep the deleted task's history."""

    old: str
    new: str
    path: str
    line: int

    @property
    def text(self) -> str:
        return (
            f"{self.new!r} ({self.path}:{self.line}) runs what {self.old!r} ran, which this "
            f"plan deletes; add previous_names: [{self.old}] to {self.new!r} to rename it and "
            f"keep its history"
        )


@dataclass(frozen=True, slots=True)
class Plan:
    creates: tuple[Change, ...] = ()
    updates: tuple[Change, ...] = ()
    deletes: tuple[Change, ...] = ()
    unchanged: int = 0
    relocations: tuple[Relocation, ...] = ()
    notify: tuple[NotifyChange, ...] = ()
    renames: tuple[Change, ...] = ()
    hints: tuple[RenameHint, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.creates or self.updates or self.renames or self.deletes or self.notify)

    @property
    def changes(self) -> tuple[Change, ...]:
        return self.creates + self.updates + self.renames + self.deletes

    @property
    def existing(self) -> int:
        """How many live tasks the store holds before this plan."""
        live_renames = sum(1 for change in self.renames if not change.revived)
        return len(self.updates) + live_renames + len(self.deletes) + self.unchanged

    @property
    def summary(self) -> str:
        renames = f"{len(self.renames)} to rename, " if self.renames else ""
        text = (
            f"Plan: {len(self.creates)} to create, {len(self.updates)} to update, "
            f"{renames}{len(self.deletes)} to delete, {self.unchanged} unchanged."
        )
        if self.notify:
            count = len(self.notify)
            text += f" Notify: {count} owner{'s' if count != 1 else ''} to change."
        return text

    def is_mass_delete(self) -> bool:
        """More than half of the existing tasks, or all of them, would be deleted."""
        deletes = len(self.deletes)
        return deletes > 0 and (deletes == self.existing or 2 * deletes > self.existing)

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON form of ``--format json``."""
        data: dict[str, Any] = {
            "create": [
                {"name": c.name, "path": c.path, "line": c.line, "spec": dict(c.canonical or {})}
                for c in self.creates
            ],
            "update": [{"name": c.name, "changes": _changes_dict(c)} for c in self.updates],
            "delete": [{"name": c.name} for c in self.deletes],
            "unchanged": self.unchanged,
        }
        if self.notify:
            data["notify"] = [{"owner": n.owner, "old": n.old, "new": n.new} for n in self.notify]
        if self.renames:
            data["rename"] = [
                {
                    "name": c.name,
                    "from": c.previous,
                    "path": c.path,
                    "line": c.line,
                    "revived": c.revived,
                    "changes": _changes_dict(c),
                }
                for c in self.renames
            ]
        if self.hints:
            data["hints"] = [{"old": h.old, "new": h.new, "text": h.text} for h in self.hints]
        return data


def make_plan(
    desired: Iterable[SourcedSpec], current: Iterable[Current], deleted: Collection[str] = ()
) -> Plan:
    """Diff the desired tasks against the live stored ones (names are unique on each side).

    The stored JSON text is compared with the desired one first (the common, unchanged
    case costs one serialisation per task); only on a mismatch are the canonical forms,
    their hashes and then the fields compared. A stored row whose spec, hash or columns
    were edited behind our back is an update back to the desired state. A task whose
    ``previous_names`` holds a stored row's name, its own name having none, is a rename
    of that row (``deleted``: the names of the soft-deleted rows); docs/plan-and-apply.md,
    "Renames". Raises ``RenameRefused`` for a rename the stored rows do not allow.
    """
    live = {row.name: row for row in current}
    items = list(desired)
    wanted = {item.spec.name for item in items}
    creates: list[Change] = []
    updates: list[Change] = []
    renames: list[Change] = []
    relocations: list[Relocation] = []
    unchanged = 0
    for item in items:
        spec = item.spec
        text = spec.model_dump_json()
        row = live.get(spec.name)
        previous = _rename_source(item, live, deleted, wanted) if spec.previous_names else None
        if previous is not None:
            wanted.add(previous)
            renames.append(_renamed(item, text, live.get(previous), previous))
            continue
        if row is None:
            canonical = spec.canonical()
            creates.append(_change(Op.CREATE, item, text, canonical, _hash(canonical)))
            continue
        if row.spec_json == text and _columns_agree(row, spec):
            same = True
        else:
            canonical = spec.canonical()
            digest = _hash(canonical)
            stored = _parse(row.spec_json)
            same = row.content_hash == digest and stored == canonical and _columns_agree(row, spec)
        if same:
            unchanged += 1
            if (row.source_path, row.source_line) != (item.path, item.line):
                relocations.append(Relocation(spec.name, item.path, item.line))
            continue
        changes = _sourced(diff_fields(stored, canonical), item)
        changes += _column_drift(row, spec, {change.field.split(".")[0] for change in changes})
        if not changes:
            # Only the stored hash (or the text's form) disagrees: say so, not an empty update.
            changes = (FieldChange("content_hash", row.content_hash, digest),)
        updates.append(_change(Op.UPDATE, item, text, canonical, digest, changes))
    deletes = [Change(Op.DELETE, name) for name in sorted(live) if name not in wanted]
    return Plan(
        creates=tuple(sorted(creates, key=_by_name)),
        updates=tuple(sorted(updates, key=_by_name)),
        deletes=tuple(deletes),
        unchanged=unchanged,
        relocations=tuple(relocations),
        renames=tuple(sorted(renames, key=_by_name)),
        hints=_rename_hints(creates, deletes, live),
    )


def _rename_source(
    item: SourcedSpec, live: Mapping[str, Current], deleted: Collection[str], wanted: set[str]
) -> str | None:
    """The stored row ``item`` takes over by its ``previous_names``: a live one, else the
    first listed deleted one; None when its own name has a row (renamed already) or
    none of them has."""
    spec = item.spec
    # A previous name still defined in the files is the loader's error, not a rename.
    previous = [name for name in spec.previous_names or () if name not in wanted]
    sources = [name for name in previous if name in live]
    where = f"{item.path}:{item.line}: previous_names"
    if len(sources) > 1:
        raise RenameRefused(
            f"{where}: cannot rename {_names(sources)} to {spec.name!r}: each is a task in the "
            f"database with a history of its own; list only the one {spec.name!r} continues"
        )
    if spec.name in live:
        if sources:
            raise RenameRefused(
                f"{where}: cannot rename {sources[0]!r} to {spec.name!r}: both are tasks in "
                f"the database; drop {sources[0]!r} from previous_names to delete it"
            )
        return None
    if spec.name in deleted:
        if sources:
            raise RenameRefused(
                f"{where}: cannot rename {sources[0]!r} to {spec.name!r}: the database keeps "
                f"the history of a deleted task {spec.name!r}; choose another name, or drop "
                f"{sources[0]!r} from previous_names"
            )
        return None
    if sources:
        return sources[0]
    return next((name for name in previous if name in deleted), None)


def _renamed(item: SourcedSpec, text: str, row: Current | None, previous: str) -> Change:
    """``previous``'s row under ``item``'s name; with the fields that change besides the
    name when the row is live (``row``), as a deleted one's comes back whole."""
    spec = item.spec
    canonical = spec.canonical()
    changes: tuple[FieldChange, ...] = ()
    if row is not None:
        stored = _parse(row.spec_json)
        changes = diff_fields({**stored, "name": spec.name}, canonical)
        # The spread's offset is taken from the name: a new name moves the slots.
        spread = (
            _spread_text(stored.get("spread"), previous),
            _spread_text(canonical.get("spread"), spec.name),
        )
        changes = tuple(c for c in changes if c.field != "spread")
        if spread[0] != spread[1]:
            changes += (FieldChange("spread", *spread),)
        changes = _sourced(changes, item)
        changes += _column_drift(row, spec, {change.field.split(".")[0] for change in changes})
    return _change(
        Op.RENAME,
        item,
        text,
        canonical,
        _hash(canonical),
        changes,
        previous,
        revived=row is None,
    )


def _change(
    op: Op,
    item: SourcedSpec,
    text: str,
    canonical: Mapping[str, Any],
    digest: str,
    fields: tuple[FieldChange, ...] = (),
    previous: str | None = None,
    revived: bool = False,
) -> Change:
    """The change of ``item``'s task, written as ``text`` (``spec.model_dump_json()``)."""
    spec = item.spec
    return Change(
        op,
        spec.name,
        spec,
        canonical,
        digest,
        text,
        item.path,
        item.line,
        fields,
        previous,
        revived,
    )


def _rename_hints(
    creates: list[Change], deletes: list[Change], live: Mapping[str, Current]
) -> tuple[RenameHint, ...]:
    """A hint for each create and delete of the same job, where each is the other's
    only match."""
    deleted_jobs: dict[str, list[str]] = {}
    for change in deletes:
        job = _job(_parse(live[change.name].spec_json))
        deleted_jobs.setdefault(job, []).append(change.name)
    created_jobs: dict[str, list[Change]] = {}
    for change in creates:
        created_jobs.setdefault(_job(change.canonical or {}), []).append(change)
    return tuple(
        RenameHint(olds[0], news[0].name, news[0].path or "", news[0].line or 1)
        for job, news in sorted(created_jobs.items(), key=lambda pair: pair[1][0].name)
        if len(news) == 1 and len(olds := deleted_jobs.get(job, [])) == 1
    )


def _job(definition: Mapping[str, Any]) -> str:
    return json.dumps([definition.get(key) for key in _SAME_JOB], sort_keys=True)


def _names(names: Iterable[str]) -> str:
    return " and ".join(repr(name) for name in names)


def _changes_dict(change: Change) -> dict[str, Any]:
    """An update's or rename's changed fields as ``--format json`` shows them."""
    return {
        f.field: {"old": f.old, "new": f.new} | ({"source": f.source} if f.source else {})
        for f in change.fields
    }


def notify_changes(
    desired: Mapping[str, Mapping[str, Any]], stored: Mapping[str, Mapping[str, Any]]
) -> tuple[NotifyChange, ...]:
    """Each owner whose notify target the files change, add or remove, by owner."""
    return tuple(
        NotifyChange(owner, stored.get(owner), desired.get(owner))
        for owner in sorted({*desired, *stored})
        if stored.get(owner) != desired.get(owner)
    )


def _sourced(changes: tuple[FieldChange, ...], item: SourcedSpec) -> tuple[FieldChange, ...]:
    """``changes`` with the source of each value the task takes from elsewhere (the
    defaults document: ``LoadedTask.inherited``), so the plan says why it changes."""
    inherited = dict(getattr(item, "inherited", ()))
    if not inherited:
        return changes
    return tuple(
        FieldChange(c.field, c.old, c.new, _source_text(inherited[key]))
        if (key := c.field if c.field in inherited else c.field.split(".")[0]) in inherited
        else c
        for c in changes
    )


def _source_text(where: str) -> str:
    """``calendar:PATH:LINE`` for a calendar's entries, else ``PATH:LINE`` of the defaults."""
    if where.startswith("calendar:"):
        return f"the calendar at {where.removeprefix('calendar:')}"
    return f"the defaults at {where}"


def diff_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    """Each changed field ``old -> new``; interval and options field by field."""
    changes: list[FieldChange] = []
    for key in _ordered_keys(old, new):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key == "crontab":
            changes.append(FieldChange(key, _cron_text(before), _cron_text(after)))
        elif key == "interval":
            changes.append(FieldChange(key, _interval_text(before), _interval_text(after)))
        elif key == "spread":
            name = str(new.get("name") or old.get("name") or "")
            changes.append(FieldChange(key, _spread_text(before, name), _spread_text(after, name)))
        elif key in _FLATTENED and isinstance(before, Mapping) and isinstance(after, Mapping):
            for sub in _ordered_keys(before, after):
                if before.get(sub) != after.get(sub):
                    changes.append(FieldChange(f"{key}.{sub}", before.get(sub), after.get(sub)))
        else:
            changes.append(FieldChange(key, before, after))
    return tuple(changes)


def _spread_text(value: Any, name: str) -> Any:
    """``10m (offset 4m12s)``: the spread with this task's offset (docs/task-files.md)."""
    if not isinstance(value, str):
        return value
    offset = spread_offset(name, parse_duration(value, allow_zero=True))
    return f"{value} (offset {format_duration(offset)})"


def _hash(canonical: Mapping[str, Any]) -> str:
    # The same digest as TaskSpec.content_hash, from the already dumped dict.
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _parse(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _columns_agree(row: Current, spec: TaskSpec) -> bool:
    return all(value == getattr(spec, name) for name, value in row.columns.items())


def _column_drift(row: Current, spec: TaskSpec, seen: set[str]) -> tuple[FieldChange, ...]:
    """The columns that disagree with ``spec`` for a reason the spec diff (``seen``, its
    top-level fields) does not already show."""
    return tuple(
        FieldChange(name, row.columns[name], getattr(spec, name))
        for name in COLUMN_FIELDS
        if name in row.columns
        and seen.isdisjoint(_DERIVED_FROM.get(name, (name,)))
        and row.columns[name] != getattr(spec, name)
    )


def _cron_text(value: Any) -> Any:
    if isinstance(value, Mapping):
        order = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
        return " ".join(str(value.get(part, "*")) for part in order)
    return value


def _interval_text(value: Any) -> Any:
    """A stored interval in its one written shape, ``1h30m`` (docs/task-files.md)."""
    if isinstance(value, Mapping):
        parts = {key: value.get(key, 0) for key in ("days", "hours", "minutes", "seconds")}
        try:
            return format_duration(dt.timedelta(**parts))
        except (TypeError, ValueError, OverflowError):  # a row edited by hand: shown as is
            return value
    return value


def _ordered_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = list(new)
    keys += [key for key in old if key not in new]
    return keys


def _by_name(change: Change) -> str:
    return change.name
