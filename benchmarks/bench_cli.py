"""Start-up of the command line: whole-process ``reconcile --help`` and ``reconcile
validate tasks.d`` beside ``python -c pass``, the interpreter's own start, in one run.

Each command runs ``RUNS`` times as a fresh process, the three taking turns so that a
busy machine slows each alike; the table has median wall and CPU times and each one's
ratio to the baseline. Target: ``reconcile --help`` under 0.3 s (docs/cli.md).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.table import print_table

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_CLI_RUNS", "20"))
HELP_TARGET_S = 0.3


def reconcile_command() -> list[str]:
    """The installed ``reconcile`` script beside this interpreter (what users run)."""
    script = Path(sys.executable).parent / "reconcile"
    return [str(script)] if script.exists() else [sys.executable, "-m", "reconciler"]


def cases() -> dict[str, list[str]]:
    reconcile = reconcile_command()
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "reconcile --help": [*reconcile, "--help"],
        "reconcile validate tasks.d": [*reconcile, "validate", "tasks.d"],
    }


def run_once(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one process running ``argv``."""
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("COLUMNS", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    commands = cases()
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():  # a first run each warms the file cache
        run_once(argv)
    for _ in range(RUNS):
        for name, argv in commands.items():
            wall, cpu = run_once(argv)
            walls[name].append(wall)
            cpus[name].append(cpu)
    base_wall = statistics.median(walls["python -c pass"])
    base_cpu = statistics.median(cpus["python -c pass"])
    rows = []
    for name in commands:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        target = f"< {HELP_TARGET_S} s: {'met' if wall < HELP_TARGET_S else 'MISSED'}"
        rows.append(
            (
                name,
                RUNS,
                wall,
                max(walls[name]),
                wall / base_wall,
                cpu,
                cpu / base_cpu if base_cpu else float("nan"),
                target if name == "reconcile --help" else "",
            )
        )
    print(f"whole-process times, median of {RUNS} runs each, taking turns (load {_load()})")
    print_table(
        ("command", "runs", "wall s", "max s", "x pass", "cpu s", "cpu x pass", "target"),
        rows,
    )


def _load() -> str:
    try:
        return " ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "unknown"
