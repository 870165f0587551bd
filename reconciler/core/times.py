"""Times as every output writes them (the API, ``reconcile`` commands, CSV): ISO 8601 in
UTC with its offset, ``2025-01-01T10:00:00+00:00``.

The endpoint's JSON encoder (orjson) writes datetimes the same way itself.
"""

from __future__ import annotations

import datetime as dt


def iso(value: dt.datetime | None) -> str | None:
    """``value`` in UTC as ``datetime.isoformat`` writes it (microseconds only when there
    are some); a naive time is taken as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.isoformat() + "+00:00"
    return value.astimezone(dt.UTC).isoformat()
