"""JSON response bodies, encoded by orjson.

Executions come from the store as records whose args, kwargs and result are the JSON
text stored in the database; they go into the body as they are (``orjson.Fragment``)
instead of being decoded and encoded again, which is most of what a page would cost.
Their times are datetimes (naive ones in UTC), which orjson writes as ISO 8601 text.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from reconciler.store.reads.records import EXECUTION_JSON_KEYS, EXECUTION_KEYS

_ARGS, _KWARGS, _RESULT = (EXECUTION_KEYS.index(key) for key in EXECUTION_JSON_KEYS)
_Fragment = orjson.Fragment


class JSONBody(Response):
    """``application/json`` encoded by orjson; datetimes without a zone count as UTC."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NAIVE_UTC)


def execution_item(record: list[Any]) -> dict[str, Any]:
    """An execution record as served: the same object as ``reconcile history --format
    json`` prints (``reconciler.store.reads.records.execution_dict``), its JSON text unparsed.
    The record is the caller's to give away: its JSON texts are wrapped in place (args
    and kwargs are always there; result may be null)."""
    record[_ARGS] = _Fragment(record[_ARGS])
    record[_KWARGS] = _Fragment(record[_KWARGS])
    result = record[_RESULT]
    if result is not None:
        record[_RESULT] = _Fragment(result)
    return dict(zip(EXECUTION_KEYS, record, strict=True))
