"""Counting the statements an HTTP app sends its database, for the live channel's test
and benchmark: those that go through SQLAlchemy (its cursor event) and the reader's
plain-row reads, which go to the driver directly (``reconciler.store.reads.reader``)."""

from __future__ import annotations

import threading
from typing import Any, TypeVar

from fastapi import FastAPI
from sqlalchemy import event

from reconciler.store.database import Database
from reconciler.store.reads.reader import Read, Reader

_T = TypeVar("_T")


class QueryCount:
    """``count``: the statements ``app`` has sent since this was made."""

    def __init__(self, app: FastAPI) -> None:
        self.count = 0
        self._lock = threading.Lock()
        database: Database = app.state.database
        event.listen(database.engine, "before_cursor_execute", self._seen)
        reader: Reader = app.state.reader
        run, run_async = reader.run, reader.run_async

        def counted(read: Read[_T]) -> _T:
            self._add()
            return run(read)

        async def counted_async(read: Read[_T]) -> _T:
            self._add()
            return await run_async(read)

        reader.run = counted  # type: ignore[method-assign]
        if reader.postgres:  # on SQLite ``run_async`` calls ``run`` in a thread
            reader.run_async = counted_async  # type: ignore[method-assign]

    def _seen(self, *args: Any) -> None:
        self._add()

    def _add(self) -> None:
        with self._lock:
            self.count += 1
