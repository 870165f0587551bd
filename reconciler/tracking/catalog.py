"""Which managed task an execution belongs to: the task rows by Celery task name, kept by
the writer and re-read when the tasks' change marker moves."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reconciler.store.managed import ManagedTask, change_seq, managed_tasks, pick_by_arguments

CATALOG_MAX_AGE = 30.0  # re-read the managed tasks at least this often
CATALOG_RECHECK = 0.2  # the change marker (did any task change?) is read at most this often


@dataclass
class Catalog:
    """The task rows by Celery task name, re-read when the change marker moves."""

    by_celery: dict[str, list[ManagedTask]] = field(default_factory=dict)
    picked: dict[str, str | None] = field(default_factory=dict)  # among several, by arguments
    seq: int | None = None
    loaded_at: float = 0.0
    checked_at: float = 0.0
    clock: Callable[[], float] = time.monotonic  # seconds, monotonic

    def refresh(self, session: Any, *, force: bool = False) -> None:
        now = self.clock()
        if not force and self.seq is not None and now - self.loaded_at < CATALOG_MAX_AGE:
            if now - self.checked_at < CATALOG_RECHECK:
                return
            self.checked_at = now
            if change_seq(session) == self.seq:
                return
        seq, tasks = managed_tasks(session)
        by_celery: dict[str, list[ManagedTask]] = {}
        for task in tasks:
            by_celery.setdefault(task.celery_name, []).append(task)
        self.by_celery, self.seq, self.loaded_at, self.checked_at = by_celery, seq, now, now
        self.picked = {}

    def resolve(
        self, session: Any, celery_name: str, args: list[Any], kwargs: dict[str, Any], live: bool
    ) -> str | None:
        """The managed task's name for an execution of ``celery_name``, or None if unmanaged.

        Several tasks may share one Celery task: the one defined with the same arguments
        wins, else the first by name. Worker steps also match deleted tasks, whose
        executions in flight still finish in their history.
        """
        candidates = self.by_celery.get(celery_name)
        if candidates is None:
            self.refresh(session)
            candidates = self.by_celery.get(celery_name, [])
        alive = [task.name for task in candidates if task.live]
        names = alive or ([] if live else [task.name for task in candidates])
        if len(names) > 1:
            key = json.dumps([celery_name, names, args, kwargs], sort_keys=True, default=repr)
            if key not in self.picked:
                if len(self.picked) > 10_000:  # arguments vary without end: stay bounded
                    self.picked.clear()
                self.picked[key] = pick_by_arguments(session, names, args, kwargs)
            return self.picked[key] or names[0]
        return names[0] if names else None
