"""Execution records: the columns a page of executions reads and the redaction each
record goes through, the same on every backend and for every reader (docs/security.md)."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Select,
    Text,
    cast,
    func,
    literal_column,
    select,
    type_coerce,
)

from reconciler.core.redact import might_hold_secrets, redact_json, redact_text
from reconciler.core.times import iso
from reconciler.store.tables import TaskExecution, UTCDateTime

EXECUTION_KEYS = (
    "id",
    "task",
    "celery_task_id",
    "trigger",
    "scheduled_for",
    "status",
    "args",
    "kwargs",
    "queued_at",
    "started_at",
    "finished_at",
    "duration_ms",
    "worker",
    "result",
    "error",
    "traceback",
    "retries",
)

EXECUTION_COLUMNS = (
    TaskExecution.id,
    TaskExecution.task_name,
    TaskExecution.celery_task_id,
    TaskExecution.trigger,
    TaskExecution.scheduled_for,
    TaskExecution.status,
    TaskExecution.args,
    TaskExecution.kwargs,
    TaskExecution.queued_at,
    TaskExecution.started_at,
    TaskExecution.finished_at,
    TaskExecution.duration_ms,
    TaskExecution.worker,
    TaskExecution.result,
    TaskExecution.error,
    TaskExecution.traceback,
    TaskExecution.retries,
)
EXECUTION_JSON_KEYS = ("args", "kwargs", "result")
"""The keys whose values records carry as JSON text."""
EXECUTION_TEXT_KEYS = ("task", "celery_task_id", "worker", "result", "error", "traceback")
"""The keys whose values can be any text (the others are numbers, ISO times, fixed words,
or JSON arrays and objects)."""

EXECUTION_TIME_KEYS = ("scheduled_for", "queued_at", "started_at", "finished_at")
_TIME_INDEXES = tuple(EXECUTION_KEYS.index(key) for key in EXECUTION_TIME_KEYS)
_ARGS_INDEX = EXECUTION_KEYS.index("args")
_KWARGS_INDEX = EXECUTION_KEYS.index("kwargs")
_RETRIES_INDEX = EXECUTION_KEYS.index("retries")
_RESULT_INDEX = EXECUTION_KEYS.index("result")
_FREE_TEXT_INDEXES = (EXECUTION_KEYS.index("error"), EXECUTION_KEYS.index("traceback"))


def execution_dict(record: Sequence[Any]) -> dict[str, Any]:
    """An execution record (``execution_page``) as the object ``reconcile history
    --format json`` prints: its JSON text decoded, its times ISO text. The HTTP endpoint
    serves the same record without decoding it (``reconciler.web.body``), and its JSON
    encoder writes the times the same way."""
    item = dict(zip(EXECUTION_KEYS, record, strict=True))
    for key in EXECUTION_JSON_KEYS:
        if item[key] is not None:
            item[key] = json.loads(item[key])
    for key in EXECUTION_TIME_KEYS:
        item[key] = iso(item[key])
    return item


@functools.cache
def record_select(postgres: bool) -> Select[Any]:
    """The columns of a record, in ``EXECUTION_KEYS`` order (see ``_Records``)."""
    columns: list[Any] = []
    for source in EXECUTION_COLUMNS:
        if source.key in EXECUTION_JSON_KEYS:
            columns.append(cast(source, Text).label(source.key))
        elif postgres and isinstance(source.type, UTCDateTime):
            columns.append(pg_utc(source).label(source.key))
        else:
            columns.append(source)
    return select(*columns)


class _Records:
    """Executions as records: their values in ``EXECUTION_KEYS`` order, with args, kwargs
    and result as their JSON text (result null: None), read as stored rather than decoded
    and encoded again. Args, kwargs, result, error and traceback go through
    ``reconciler.core.redact``: one search for secret-looking words each, and decoded only
    when one appears (args and kwargs repeat from run to run: cached). Times are
    datetimes in UTC: naive ones from PostgreSQL (``pg_utc``), aware ones from SQLite;
    ``execution_dict`` and the exports write them as ISO text, the endpoint's JSON
    encoder as the same text."""

    def __init__(self) -> None:
        # args or kwargs text -> as shown: each distinct text is checked once
        self.redacted: dict[str, str] = {}

    def convert(self, row: Any) -> list[Any]:
        record: list[Any] = list(row)
        args = record[_ARGS_INDEX]
        if args in (None, "null"):
            record[_ARGS_INDEX] = "[]"
        elif args != "[]":
            record[_ARGS_INDEX] = self._shown(args)
        kwargs = record[_KWARGS_INDEX]
        if kwargs in (None, "null"):
            record[_KWARGS_INDEX] = "{}"
        else:
            record[_KWARGS_INDEX] = self._shown(kwargs)
        result = record[_RESULT_INDEX]
        if result == "null":
            record[_RESULT_INDEX] = None
        elif result is not None and might_hold_secrets(result):
            record[_RESULT_INDEX] = redact_json(result)
        for index in _FREE_TEXT_INDEXES:
            text = record[index]
            if text:
                record[index] = redact_text(text)
        if record[_RETRIES_INDEX] is None:
            record[_RETRIES_INDEX] = 0
        return record

    def exported(self, row: Any) -> list[Any]:
        """A record for exports: times as ISO text, and a result that is a JSON string
        decoded, so a spreadsheet shows the text."""
        record = self.convert(row)
        for index in _TIME_INDEXES:
            record[index] = iso(record[index])
        result = record[_RESULT_INDEX]
        if isinstance(result, str) and result.startswith('"'):
            record[_RESULT_INDEX] = json.loads(result)
        return record

    def _shown(self, text: str) -> str:
        shown = self.redacted.get(text)
        if shown is None:
            if len(self.redacted) > 4096:
                self.redacted.clear()
            shown = redact_json(text)
            self.redacted[text] = shown
        return shown


RECORDS = _Records()
"""The one converter (records look the same on every backend), shared, so its redaction
cache serves every request."""


def pg_utc(column: Any) -> ColumnElement[dt.datetime]:
    """A time column as PostgreSQL's naive UTC time: the cheapest form to have it send
    and the driver load (a ``timestamptz`` comes with a zone the driver converts every
    value to; formatting ISO text with ``to_char`` had been most of what a page cost the
    database). Naive times in these records are UTC, for ``iso`` and the endpoint's
    JSON encoder alike."""
    aware = type_coerce(column, DateTime(timezone=True))
    return func.timezone(literal_column("'UTC'"), aware, type_=DateTime())
