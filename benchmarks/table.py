"""Printing benchmark results as an aligned text table, and measuring peak memory."""

from __future__ import annotations

import resource
from collections.abc import Sequence


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("  ".join(value.rjust(width) for value, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def peak_rss_mb() -> float:
    """Peak resident memory of this process's program, in MB.

    Linux's ``VmHWM``, the high-water mark of the program's own memory. ``ru_maxrss``
    also counts the process it was started from: the kernel carries the parent's peak
    into a child's maximum when the child starts a new program, so a child started by
    ``make bench`` after a benchmark that had used 400 MB reported 400 MB whatever it
    used itself. Elsewhere, ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
