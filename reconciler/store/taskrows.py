"""The rows applying a plan writes to the tasks table: a created row, the bound values of an
update (with the schedule when it restarts), and the batches they are sent in."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import bindparam

from reconciler.core.plan import COLUMN_FIELDS, Change
from reconciler.core.spec import TaskSpec
from reconciler.store.database import RawJSON
from reconciler.vocabulary import TaskType

NextRun = Callable[[TaskSpec, dt.datetime], dt.datetime | None]

_T = TypeVar("_T")
# Rows per executemany batch: bounds statement size and gives the progress bar steps.
BATCH = 1000

# Columns an update writes from the spec, and those it writes when the schedule restarts.
SPEC_COLUMNS = (
    *COLUMN_FIELDS,
    "spec",
    "content_hash",
    "source_path",
    "source_line",
    "change_seq",
    "updated_at",
)
SCHEDULED_COLUMNS = (*SPEC_COLUMNS, "schedule_anchor", "next_run_at")


def assignments(columns: Sequence[str]) -> dict[str, Any]:
    """Each column set from the bound parameter ``b_<column>`` of a row."""
    return {name: bindparam(f"b_{name}") for name in columns}


def _spec_values(change: Change, seq: int, now: dt.datetime) -> dict[str, Any]:
    spec = change.spec
    assert spec is not None and change.spec_json is not None
    return {
        "owner": spec.owner,
        "type": spec.type,
        "task": spec.task,
        "description": spec.description,
        "enabled": spec.enabled,
        "schedule_text": spec.schedule_text,
        "timezone": spec.timezone,
        "spec": RawJSON(change.spec_json),
        "content_hash": change.content_hash,
        "source_path": change.path or "",
        "source_line": change.line or 1,
        "change_seq": seq,
        "updated_at": now,
    }


def _schedule(
    change: Change, now: dt.datetime, next_run: NextRun, anchor: dt.datetime | None = None
) -> dict[str, Any]:
    spec = change.spec
    assert spec is not None
    start = anchor or now
    first = next_run(spec, start) if spec.enabled else None
    return {"schedule_anchor": start, "next_run_at": first}


def created_anchor(spec: TaskSpec, now: dt.datetime) -> dt.datetime:
    """Where a new row's schedule counts from: ``now``, or the last run a periodic task
    brought from the scheduler it was imported from (never after ``now``), so its first
    slot is the one that scheduler would have fired next (docs/import.md, "Cutting over")."""
    if spec.last_run is None or spec.type != TaskType.PERIODIC:
        return now
    return min(spec.last_run, now)


def created_row(change: Change, seq: int, now: dt.datetime, next_run: NextRun) -> dict[str, Any]:
    assert change.spec is not None
    return {
        "name": change.name,
        **_spec_values(change, seq, now),
        **_schedule(change, now, next_run, created_anchor(change.spec, now)),
        "version": 1,
        "created_at": now,
        "deleted_at": None,
        "last_run_at": None,
        "skipped_count": 0,
        "missed_count": 0,
    }


def changed_row(
    change: Change, seq: int, now: dt.datetime, next_run: NextRun, scheduled: bool
) -> dict[str, Any]:
    values = _spec_values(change, seq, now)
    if scheduled:
        values.update(_schedule(change, now, next_run))
    row = {f"b_{key}": value for key, value in values.items()}
    row["b_name"] = change.name
    return row


def batches(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    """``items`` in slices of at most ``BATCH``."""
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]
