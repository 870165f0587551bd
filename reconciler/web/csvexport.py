"""CSV export: rows streamed in chunks, with cells a spreadsheet would run neutralised.

Used by the HTTP endpoint's task and execution lists (``format=csv`` or ``Accept:
text/csv``) and by ``reconcile history --format csv``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from reconciler.core.times import iso

# A cell starting with one of these is a formula (or becomes one) in Excel, LibreOffice
# and Google Sheets; a leading apostrophe makes it text (OWASP's advice).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_CHARS = frozenset("=+-@\t\r")
CHUNK_ROWS = 1000


def cell(value: Any) -> str:
    """One CSV cell: JSON for lists and mappings, ISO text for times, '' for null,
    formulas neutralised."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dt.datetime):
        return iso(value) or ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def stream_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """The header row, then the rows, yielded in chunks of ``CHUNK_ROWS`` lines."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for count, row in enumerate(rows, 1):
        writer.writerow([cell(row.get(column)) for column in columns])
        if count % CHUNK_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def stream_records(
    columns: Sequence[str],
    records: Iterable[Sequence[Any]],
    *,
    text_columns: Sequence[str] | None = None,
) -> Iterator[str]:
    """Like ``stream_csv`` for rows already in column order whose values are text, numbers
    or null (JSON already encoded): the export's fast path, formulas still neutralised.

    ``text_columns``: the only columns that can hold text a spreadsheet would run (the
    others hold numbers, times, names or JSON arrays and objects, which never start with
    a formula character); default: every column.
    """
    indexes = (
        range(len(columns))
        if text_columns is None
        else [columns.index(name) for name in text_columns]
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    formula = _FORMULA_CHARS
    for count, record in enumerate(records, 1):
        cells = list(record)
        for index in indexes:
            value = cells[index]
            if type(value) is str and value and value[0] in formula:
                cells[index] = "'" + value
        writer.writerow(cells)
        if count % CHUNK_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
