"""One beat's cache of what firing a task needs, kept small (docs/design/beat-spec-cache.md).

Each task beat has fired is one ``CachedTask``: the ``change_seq`` it was read at, its
schedule (one object shared by every task whose spec differs only in what the firing
decision does not read) and its message (Celery task, arguments, options) as JSON bytes.
The cache is refreshed from the rows ``apply`` changed since the change marker last seen.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.beat.message import Message
from reconciler.core.spec import Options, TaskSpec, stored_spec
from reconciler.core.timing import spread_offset
from reconciler.errors import StoredSpecUnreadable
from reconciler.store import scheduling
from reconciler.vocabulary import Trigger

log = logging.getLogger("reconciler.beat")

NOT_FIRING: dict[str, Any] = {
    "name": "",
    "description": "",
    "owner": "",
    "labels": {},
    "task": "",
    "args": [],
    "kwargs": {},
    "options": Options(),
    "alerts": None,
    "history": None,
}
"""Fields the firing decision does not read, and their blank values in a shared schedule
(the name is read only for ``spread``'s offset). A field not listed (a new one) is kept in
the schedule, so it never fires wrongly: at worst tasks that differ in it do not share."""

_BLANK = {k: v for k, v in NOT_FIRING.items() if k in TaskSpec.model_fields}
_BLANK_KEEPING_NAME = {k: v for k, v in _BLANK.items() if k != "name"}

RELOAD_CHUNK = 500
"""Names per read when changed specs are read again (bounded memory for a large apply)."""


@dataclass(frozen=True, slots=True)
class CachedTask:
    """What firing one task needs: its version, its shared schedule, its message as JSON."""

    change_seq: int
    schedule: TaskSpec
    """The spec with the fields of ``NOT_FIRING`` blanked: what ``decide`` reads."""
    payload: bytes
    """``[task, args, kwargs, apply_async options]`` as compact JSON."""

    @property
    def overlap(self) -> str:
        return self.schedule.overlap

    @property
    def catchup(self) -> str:
        return self.schedule.catchup

    @property
    def task(self) -> str:
        return str(json.loads(self.payload)[0])

    @property
    def args(self) -> list[Any]:
        return list(json.loads(self.payload)[1])

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(json.loads(self.payload)[2])

    def message(
        self,
        name: str,
        task_id: str,
        scheduled_for: Any,
        trigger: str = Trigger.SCHEDULE,
        *,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> Message:
        """The message for this task (``reconciler.beat.message.message_for`` from the
        compact form); ``args`` / ``kwargs`` replace the stored ones when given."""
        task, own_args, own_kwargs, options = json.loads(self.payload)
        return Message(
            name=name,
            task=task,
            task_id=task_id,
            args=list(own_args if args is None else args),
            kwargs=dict(own_kwargs if kwargs is None else kwargs),
            options=options,
            scheduled_for=scheduled_for,
            trigger=trigger,
        )

    def summary(self) -> dict[str, Any]:
        """The task as beat holds it: schedule fields and message (for Celery's ``schedule``)."""
        task, args, kwargs, options = json.loads(self.payload)
        shown = {k: v for k, v in self.schedule.canonical().items() if k not in NOT_FIRING}
        return {**shown, "task": task, "args": args, "kwargs": kwargs, "options": options}


class SpecCache:
    """Live tasks' firing records by name; a spec that cannot be read is left out (its
    slots wait). Only tasks that were due are held: idle ones are never read."""

    def __init__(self) -> None:
        self.specs: dict[str, CachedTask] = {}
        self.seen_seq: int | None = None
        # One schedule object per distinct schedule, dropped with its last task.
        self._schedules: weakref.WeakValueDictionary[str, TaskSpec] = weakref.WeakValueDictionary()

    def __len__(self) -> int:
        return len(self.specs)

    def cached(self) -> dict[str, CachedTask]:
        return dict(self.specs)

    def schedules(self) -> int:
        """How many distinct schedule objects the cached tasks share."""
        return len(self._schedules)

    def pickup(self, session: Any) -> None:
        """Refresh the cached tasks changed since the marker last seen (only those held:
        a task not yet fired is read when it is first due)."""
        seq = scheduling.change_marker(session)
        if self.seen_seq is None:
            self.seen_seq = seq
            return
        if seq == self.seen_seq:
            return
        stale: list[str] = []
        for change in scheduling.changed_tasks(session, self.seen_seq):
            held = self.specs.get(change.name)
            if held is None:
                continue
            if not change.live:
                del self.specs[change.name]
            elif held.change_seq != change.change_seq:
                stale.append(change.name)
        for start in range(0, len(stale), RELOAD_CHUNK):
            self._load(session, stale[start : start + RELOAD_CHUNK])
        log.debug("beat: changes up to %d picked up", seq)
        self.seen_seq = seq

    def for_due(self, session: Any, due: list[scheduling.DueSlot]) -> dict[str, CachedTask]:
        """Records for due tasks: from the cache when its version matches the row's."""
        found: dict[str, CachedTask] = {}
        stale: list[str] = []
        for slot in due:
            cached = self.specs.get(slot.name)
            if cached is not None and cached.change_seq == slot.change_seq:
                found[slot.name] = cached
            else:
                stale.append(slot.name)
        if stale:
            found.update(self._load(session, stale))
        return found

    def by_name(self, session: Any, names: Sequence[str]) -> dict[str, CachedTask]:
        """Records of live tasks by name, from the cache or else from the database."""
        found = {name: self.specs[name] for name in names if name in self.specs}
        missing = [name for name in names if name not in found]
        if missing:
            found.update(self._load(session, missing))
        return found

    def _cache(self, row: scheduling.SpecRow) -> CachedTask | None:
        try:
            spec = stored_spec(row.name, row.spec)
        except StoredSpecUnreadable as exc:
            log.error("beat: %s; its slots wait until then", exc)
            self.specs.pop(row.name, None)
            return None
        payload = [spec.task, spec.args, spec.kwargs, spec.options.apply_async_kwargs()]
        entry = CachedTask(
            row.change_seq,
            self._shared_schedule(row.spec, spec),
            json.dumps(payload, separators=(",", ":")).encode(),
        )
        self.specs[row.name] = entry
        return entry

    def _shared_schedule(self, stored: dict[str, Any], spec: TaskSpec) -> TaskSpec:
        """The schedule object for ``spec``, shared with every cached task that has the
        same stored values outside ``NOT_FIRING`` (and, with ``spread``, the same offset)."""
        fields = {k: v for k, v in stored.items() if k not in _BLANK}
        blank = _BLANK
        if spec.spread:
            # The offset is a hash of the name: the name stays, and tasks share only when
            # their offsets are equal.
            blank = _BLANK_KEEPING_NAME
            fields[" offset"] = spread_offset(spec.name, spec.spread).total_seconds()
        key = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        schedule = self._schedules.get(key)
        if schedule is None:
            schedule = spec.updated(**blank)
            self._schedules[key] = schedule
        return schedule

    def _load(self, session: Any, names: Sequence[str]) -> dict[str, CachedTask]:
        found: dict[str, CachedTask] = {}
        for row in scheduling.specs_by_name(session, names):
            if not row.live:
                self.specs.pop(row.name, None)
                continue
            entry = self._cache(row)
            if entry is not None:
                found[row.name] = entry
        return found
