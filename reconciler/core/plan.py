"""The plan: what apply must do to turn the stored tasks into the desired ones.

Pure: it compares the loader's task specs with the rows the store read and returns a
small typed value (creates, updates with each changed field, deletes, an unchanged
count) that is falsy when there is nothing to do. ``reconciler.apply`` computes it
inside the apply lock and hands it to the store; the CLI renders it.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from reconciler.core.durations import format_duration, parse_duration
from reconciler.core.spec import SCHEDULE_FIELDS, TaskSpec
from reconciler.core.timing import spread_offset

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


class Op(enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


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
class Plan:
    creates: tuple[Change, ...] = ()
    updates: tuple[Change, ...] = ()
    deletes: tuple[Change, ...] = ()
    unchanged: int = 0
    relocations: tuple[Relocation, ...] = ()
    notify: tuple[NotifyChange, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.creates or self.updates or self.deletes or self.notify)

    @property
    def changes(self) -> tuple[Change, ...]:
        return self.creates + self.updates + self.deletes

    @property
    def existing(self) -> int:
        """How many live tasks the store holds before this plan."""
        return len(self.updates) + len(self.deletes) + self.unchanged

    @property
    def summary(self) -> str:
        text = (
            f"Plan: {len(self.creates)} to create, {len(self.updates)} to update, "
            f"{len(self.deletes)} to delete, {self.unchanged} unchanged."
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
        return {
            "create": [
                {"name": c.name, "path": c.path, "line": c.line, "spec": dict(c.canonical or {})}
                for c in self.creates
            ],
            "update": [
                {
                    "name": c.name,
                    "changes": {
                        f.field: {"old": f.old, "new": f.new}
                        | ({"source": f.source} if f.source else {})
                        for f in c.fields
                    },
                }
                for c in self.updates
            ],
            "delete": [{"name": c.name} for c in self.deletes],
            "unchanged": self.unchanged,
        } | (
            {"notify": [{"owner": n.owner, "old": n.old, "new": n.new} for n in self.notify]}
            if self.notify
            else {}
        )


def make_plan(desired: Iterable[SourcedSpec], current: Iterable[Current]) -> Plan:
    """Diff the desired tasks against the live stored ones (names are unique on each side).

    The stored JSON text is compared with the desired one first (the common, unchanged
    case costs one serialisation per task); only on a mismatch are the canonical forms,
    their hashes and then the fields compared. A stored row whose spec, hash or columns
    were edited behind our back is an update back to the desired state.
    """
    live = {row.name: row for row in current}
    creates: list[Change] = []
    updates: list[Change] = []
    relocations: list[Relocation] = []
    unchanged = 0
    wanted: set[str] = set()
    for item in desired:
        spec = item.spec
        wanted.add(spec.name)
        text = spec.model_dump_json()
        row = live.get(spec.name)
        if row is None:
            canonical = spec.canonical()
            creates.append(
                Change(
                    Op.CREATE,
                    spec.name,
                    spec,
                    canonical,
                    _hash(canonical),
                    text,
                    item.path,
                    item.line,
                )
            )
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
        updates.append(
            Change(
                Op.UPDATE, spec.name, spec, canonical, digest, text, item.path, item.line, changes
            )
        )
    deletes = [Change(Op.DELETE, name) for name in sorted(live) if name not in wanted]
    return Plan(
        creates=tuple(sorted(creates, key=_by_name)),
        updates=tuple(sorted(updates, key=_by_name)),
        deletes=tuple(deletes),
        unchanged=unchanged,
        relocations=tuple(relocations),
    )


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
