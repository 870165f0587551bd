"""Pages of executions, one execution's record, and every matching record for exports,
keyset on id, each statement built once per combination of filters."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam

from reconciler.store.reads.cursors import (
    BadParameter,
    check_choice,
    check_limit,
    decode_id_cursor,
    encode_cursor,
)
from reconciler.store.reads.reader import Read, Reader, Row
from reconciler.store.reads.records import RECORDS, record_select
from reconciler.store.tables import TaskExecution
from reconciler.vocabulary import Status


def _aware(parameter: str, value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise BadParameter(parameter, "needs a UTC offset (e.g. 2025-01-01T00:00:00Z)")
    return value


def _execution_params(
    *,
    task: str | None,
    status: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    owner: str | None,
) -> dict[str, Any]:
    """The bound values of the filters that are given (checked; ``BadParameter``)."""
    check_choice("status", status, tuple(Status))
    values = {
        "task": task,
        "status": status,
        "since": _aware("since", since),
        "until": _aware("until", until),
        "owner": owner,
    }
    return {key: value for key, value in values.items() if value is not None}


def _execution_conditions(keys: Iterable[str]) -> list[ColumnElement[bool]]:
    """The WHERE conditions for the bound parameters ``keys`` (see ``_execution_params``;
    ``before``: ids below a page cursor's), each value a bound parameter of that name."""
    conditions: dict[str, Callable[[], ColumnElement[bool]]] = {
        "task": lambda: TaskExecution.task_name == bindparam("task"),
        "status": lambda: TaskExecution.status == bindparam("status"),
        "since": lambda: TaskExecution.queued_at >= bindparam("since"),
        "until": lambda: TaskExecution.queued_at < bindparam("until"),
        # the owner the execution ran under, not its task's owner of today (docs/http-api.md)
        "owner": lambda: TaskExecution.owner == bindparam("owner"),
        "before": lambda: TaskExecution.id < bindparam("before"),
    }
    return [conditions[key]() for key in keys if key in conditions]


def execution_page(
    *,
    task: str | None = None,
    status: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    owner: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Read[tuple[list[list[Any]], str | None]]:
    """One page of executions as records (``reconciler.store.reads.records``), newest
    first, and the cursor of the next page (or None).

    ``since`` (inclusive) and ``until`` (exclusive) bound the queue time; ``owner`` keeps
    only executions that ran under that owner (``task_executions.owner``). Pages are
    keyset on ``id``, so rows added while a client pages never shift or repeat what it
    sees. The statement for each combination of filters is built once and reused with
    new values, so a request costs the query and the rows, not building and compiling
    SQL.
    """
    params = _execution_params(task=task, status=status, since=since, until=until, owner=owner)
    params.update(_execution_cursor(cursor, limit))
    params["limit"] = limit + 1

    def page(rows: list[Row]) -> tuple[list[list[Any]], str | None]:
        items = [RECORDS.convert(row) for row in rows[:limit]]
        return items, encode_cursor("e", rows[limit - 1][0]) if len(rows) > limit else None

    return Read(functools.partial(_record_page, keys=frozenset(params)), params, page)


def _execution_cursor(cursor: str | None, limit: int) -> dict[str, int]:
    check_limit(limit)
    if cursor is None:
        return {}
    return {"before": decode_id_cursor(cursor, "e")}


@functools.lru_cache(maxsize=256)
def _record_page(postgres: bool, keys: frozenset[str]) -> Select[Any]:
    """Records under the conditions for ``keys``, newest first, ``limit`` of them."""
    stmt = record_select(postgres).where(*_execution_conditions(sorted(keys)))
    return stmt.order_by(TaskExecution.id.desc()).limit(bindparam("limit"))


@functools.lru_cache(maxsize=64)
def _record_lookup(postgres: bool, owned: bool) -> Select[Any]:
    """One record by ``id`` (and, when ``owned``, only one that ran under ``owner``)."""
    keys = ["owner"] if owned else []
    return record_select(postgres).where(
        TaskExecution.id == bindparam("id"), *_execution_conditions(keys)
    )


def iter_execution_records(
    reader: Reader,
    *,
    task: str | None = None,
    status: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    owner: str | None = None,
    batch: int = 5000,
) -> Generator[list[Any], None, None]:
    """Every matching execution as a record for exports: times as ISO text, and a result
    that is a JSON string decoded, so a spreadsheet shows the text. Memory stays at one
    batch."""
    params = _execution_params(task=task, status=status, since=since, until=until, owner=owner)
    for rows in _keyset_batches(reader, params, batch):
        for row in rows:
            yield RECORDS.exported(row)


def execution_record(id: int, *, owner: str | None = None) -> Read[list[Any] | None]:
    """The record of one execution; ``None`` when it does not exist or ran under another
    owner."""
    params: dict[str, Any] = {"id": id}
    if owner is not None:
        params["owner"] = owner

    def record(rows: list[Row]) -> list[Any] | None:
        return RECORDS.convert(rows[0]) if rows else None

    return Read(functools.partial(_record_lookup, owned=owner is not None), params, record)


def _keyset_batches(reader: Reader, params: dict[str, Any], batch: int) -> Iterator[list[Row]]:
    """Records under the conditions for ``params``, newest first, one batch of rows at a
    time (keyset on id); no connection stays checked out while the client reads.

    The next batch is queried in a helper thread while the caller works through the
    current one, so the database's time and ours overlap; the pending query is waited
    for before the generator ends.
    """
    params = {**params, "limit": batch}

    def fetch(values: dict[str, Any]) -> list[Row]:
        build = functools.partial(_record_page, keys=frozenset(values))
        return reader.run(Read(build, values, lambda rows: rows))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="export") as prefetch:
        pending: Future[list[Row]] | None = prefetch.submit(fetch, params)
        while pending is not None:
            rows = pending.result()
            pending = None
            if len(rows) == batch:
                pending = prefetch.submit(fetch, {**params, "before": rows[-1][0]})
            yield rows
