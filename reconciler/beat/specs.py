"""One beat's cache of task specs, each kept with the ``change_seq`` it was read at and
refreshed from the rows ``apply`` changed since the change marker last seen."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from reconciler.core.spec import TaskSpec, stored_spec
from reconciler.errors import StoredSpecUnreadable
from reconciler.store import scheduling

log = logging.getLogger("reconciler.beat")


class SpecCache:
    """Live tasks' specs by name; a spec that cannot be read is left out (its slots wait)."""

    def __init__(self) -> None:
        self.specs: dict[str, tuple[int, TaskSpec]] = {}
        self.seen_seq: int | None = None

    def __len__(self) -> int:
        return len(self.specs)

    def cached(self) -> dict[str, TaskSpec]:
        return {name: spec for name, (_, spec) in self.specs.items()}

    def pickup(self, session: Any) -> None:
        """Refresh the cache from the rows changed since the marker last seen."""
        seq = scheduling.change_marker(session)
        if self.seen_seq is None:
            self.seen_seq = seq
            return
        if seq == self.seen_seq:
            return
        for row in scheduling.changed_specs(session, self.seen_seq):
            if row.live:
                self._cache(row)
            else:
                self.specs.pop(row.name, None)
        log.debug("beat: changes up to %d picked up", seq)
        self.seen_seq = seq

    def for_due(self, session: Any, due: list[scheduling.DueSlot]) -> dict[str, TaskSpec]:
        """Specs for due tasks: from the cache when its version matches the row's."""
        found: dict[str, TaskSpec] = {}
        stale: list[str] = []
        for slot in due:
            cached = self.specs.get(slot.name)
            if cached is not None and cached[0] == slot.change_seq:
                found[slot.name] = cached[1]
            else:
                stale.append(slot.name)
        if stale:
            found.update(self._load(session, stale))
        return found

    def by_name(self, session: Any, names: Sequence[str]) -> dict[str, TaskSpec]:
        """Specs of live tasks by name, from the cache or else from the database."""
        found = {name: self.specs[name][1] for name in names if name in self.specs}
        missing = [name for name in names if name not in found]
        if missing:
            found.update(self._load(session, missing))
        return found

    def _cache(self, row: scheduling.SpecRow) -> TaskSpec | None:
        try:
            spec = stored_spec(row.name, row.spec)
        except StoredSpecUnreadable as exc:
            log.error("beat: %s; its slots wait until then", exc)
            self.specs.pop(row.name, None)
            return None
        self.specs[row.name] = (row.change_seq, spec)
        return spec

    def _load(self, session: Any, names: Sequence[str]) -> dict[str, TaskSpec]:
        found: dict[str, TaskSpec] = {}
        for row in scheduling.specs_by_name(session, names):
            if not row.live:
                self.specs.pop(row.name, None)
                continue
            spec = self._cache(row)
            if spec is not None:
                found[row.name] = spec
        return found
