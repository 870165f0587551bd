"""How long a task's executions are kept (``history:``, docs/tracking.md "Retention").

Pydantic models and pure decisions only. A task's stored spec carries its effective
``history`` (its own, else the defaults document's); where neither sets it,
``RECONCILER_HISTORY_KEEP`` (days), else 90 days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, StrictInt

from reconciler.core.values import FileModel

DEFAULT_KEEP_DAYS = 90
MAX_KEEP_DAYS = 36500
MAX_KEEP_LAST = 1_000_000
# Per-day statistics are kept this long, whatever the history's retention.
STATS_KEEP_DAYS = 366
# The apply log keeps at least this many attempts, whatever their age.
APPLIES_KEEP_LAST = 1000


class History(FileModel):
    """``history: {keep_days, keep_last}``: executions older than ``keep_days`` beyond the
    ``keep_last`` newest are removed (never the latest success or failure, never a row
    that has not finished)."""

    keep_days: Annotated[StrictInt, Field(ge=1, le=MAX_KEEP_DAYS)] | None = None
    keep_last: Annotated[StrictInt, Field(ge=0, le=MAX_KEEP_LAST)] | None = None


def effective(own: History | None, default: History | None) -> History | None:
    """A task's history policy: its own ``history:`` as a whole, else the defaults'."""
    return own if own is not None else default


@dataclass(frozen=True)
class Policy:
    """The retention in force for one task name."""

    keep_days: int
    keep_last: int

    def cutoff(self, now: dt.datetime) -> dt.datetime:
        """Rows queued before this may go (beyond the ``keep_last`` newest)."""
        return now - dt.timedelta(days=self.keep_days)


def policy_of(stored: Mapping[str, Any] | None, default_days: int) -> Policy:
    """The policy from a stored spec's ``history`` mapping (unchecked: the store's text)."""
    stored = stored or {}
    days = stored.get("keep_days")
    last = stored.get("keep_last")
    return Policy(
        keep_days=days if isinstance(days, int) and days >= 1 else default_days,
        keep_last=last if isinstance(last, int) and last >= 0 else 0,
    )


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` percentile with linear interpolation between the closest ranks
    (PostgreSQL's ``percentile_cont``); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))
