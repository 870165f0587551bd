"""Text output that fits the terminal: its width, tables that drop and shorten columns to
it, and lines cut with ``…`` (docs/cli.md, "Output and exit codes")."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass

ELLIPSIS = "…"
GAP = "  "
TIME_FORMAT = "%Y-%m-%d %H:%M:%S %Z"
"""A time as ``status`` and ``history`` print it, in the zone it was converted to."""
SHORT_TIME_FORMAT = "%m-%d %H:%M %Z"
"""The same time where the whole one does not fit."""


def output_width(wide: bool) -> int | None:
    """The columns text output may use: ``COLUMNS`` when set, else the terminal's; None
    (no limit) with ``--wide`` or when stdout is not a terminal, so a pipe keeps whole lines."""
    if wide:
        return None
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def clip(text: str, width: int | None) -> str:
    """``text`` cut to ``width`` characters, the last one ``…`` when anything was cut."""
    if width is None or len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + ELLIPSIS if width > 0 else ""


def time_text(value: dt.datetime | None, short: bool = False) -> str:
    if value is None:
        return "-"
    return value.strftime(SHORT_TIME_FORMAT if short else TIME_FORMAT)


@dataclass(frozen=True)
class Column:
    """A table column: ``keep`` orders which columns stay when not all fit (lower first);
    a column with ``least`` may be narrowed down to that many characters, its cells cut."""

    title: str
    keep: int
    least: int | None = None


def fit_table(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int | None
) -> tuple[list[str], list[str]]:
    """The table's lines within ``width`` (None: as wide as it is) and the titles of the
    columns left out: columns go by ``keep`` until the rest fit at their least widths,
    then the widest narrowable column gives up a character at a time."""
    natural = _natural(columns, rows)
    least = [natural[i] if c.least is None else min(natural[i], max(c.least, 1))
             for i, c in enumerate(columns)]  # fmt: skip
    shown = list(range(len(columns)))
    if width is not None and _total(natural, shown) > width:
        shown = []
        for i in sorted(range(len(columns)), key=lambda i: columns[i].keep):
            if not shown or _total(least, [*shown, i]) <= width:
                shown.append(i)
        shown.sort()
    widths = {i: natural[i] for i in shown}
    if width is not None:
        excess = _total(natural, shown) - width
        while excess > 0:
            narrowable = [i for i in shown if widths[i] > least[i]]
            if not narrowable:
                break
            widest = max(narrowable, key=lambda i: (widths[i] - least[i], widths[i]))
            widths[widest] -= 1
            excess -= 1
    lines = [
        GAP.join(clip(cells[i], widths[i]).ljust(widths[i]) for i in shown).rstrip()
        for cells in [[column.title for column in columns], *rows]
    ]
    hidden = [columns[i].title for i in range(len(columns)) if i not in shown]
    return [clip(line, width) for line in lines], hidden


def _total(widths: Sequence[int], shown: Sequence[int]) -> int:
    return sum(widths[i] for i in shown) + len(GAP) * max(len(shown) - 1, 0)


def table_width(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> int:
    """The width of the whole table, every column and cell whole."""
    return _total(_natural(columns, rows), range(len(columns)))


def _natural(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> list[int]:
    return [max(len(cell) for cell in (column.title, *(row[i] for row in rows)))
            for i, column in enumerate(columns)]  # fmt: skip
