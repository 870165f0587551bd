"""``python -m benchmarks [NAME ...]`` runs every benchmark module (or the named ones).

Each ``bench_*.py`` module has a ``main() -> None`` that measures its case and its
baseline in the same run and prints a table of both and their ratio.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import benchmarks


def main(argv: list[str]) -> int:
    available = sorted(
        info.name
        for info in pkgutil.iter_modules(benchmarks.__path__)
        if info.name.startswith("bench_")
    )
    wanted = [name if name.startswith("bench_") else f"bench_{name}" for name in argv] or available
    unknown = sorted(set(wanted) - set(available))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available)}")
        return 2
    for name in wanted:
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        importlib.import_module(f"benchmarks.{name}").main()
        print(f"({name} took {time.perf_counter() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
