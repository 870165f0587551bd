"""Validation speed: ``load_directory`` against a floor of parsing the same files.

Writes 1,000, 10,000 and 50,000 task files of mixed types, then times the loader
and the floor (read + ``yaml.load`` with PyYAML's C loader, nothing else), each in a
fresh subprocess so each size's peak memory is its own. Times are CPU seconds (wall
time of the loader shown too). Targets: at most 2.0x the floor, time per file flat
within 1.5x from 1k to 50k, under 300 MB at 50k. Beside the numeric files, in the same
run, the same files written with the schedule dialect (``CASES``): each within 10% of
the numeric run.

Where valgrind is installed, the cases are also counted in instructions (callgrind, 1,000
files, less the same program on an empty tree): a count that the machine's noise does not
move, beside the time that it does (``BENCH_VALIDATE_CALLGRIND=0`` skips it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from benchmarks import callgrind
from benchmarks.table import peak_rss_mb, print_table

SIZES = (1_000, 10_000, 50_000)
FILES_PER_DIRECTORY = 1_000

NUMERIC = "numeric"
# One rotation of five schedule forms per case, each form in the same slot written another
# way, so a case differs from the numeric one only in how its schedules are written. The
# numeric case is the baseline every other case is timed beside in the same run; a new
# schedule feature (spread, calendars) adds its case here.
CASES: dict[str, tuple[str, ...]] = {
    NUMERIC: (
        'type: periodic\ncrontab: "{m} {h} * * 1-5"\n',
        "type: periodic\ncrontab:\n  minute: {m}\n  hour: '*/{hs}'\n  day_of_week: '0,6'\n",
        "type: periodic\ninterval:\n  hours: {hs}\n  minutes: {m}\n",
        "type: scheduled\nat: 2031-06-{d:02d}T{h:02d}:{m:02d}:00Z\n",
        "type: async\n",
    ),
    "names and a macro": (
        'type: periodic\ncrontab: "{named}"\n',
        "type: periodic\ncrontab:\n  minute: {m}\n  hour: '*/{hs}'\n  day_of_week: 'SAT,sun'\n",
        "type: periodic\ninterval: {hs}h{m}m\n",
        "type: scheduled\nat: 2031-06-{d:02d}T{h:02d}:{m:02d}:00Z\n",
        "type: async\n",
    ),
    "spread and a calendar": (
        'type: periodic\ncrontab: "{m} {h} * * 1-5"\nspread: 10m\nskip_on: [bench-holidays]\n',
        "type: periodic\ncrontab:\n  minute: {m}\n  hour: '*/{hs}'\n  day_of_week: '0,6'\n"
        "spread: 5m\nonly_on: [bench-holidays]\n",
        "type: periodic\ninterval:\n  hours: {hs}\n  minutes: {m}\nspread: 1m\n"
        "skip_on: [bench-holidays]\n",
        "type: scheduled\nat: 2031-06-{d:02d}T{h:02d}:{m:02d}:00Z\n",
        "type: async\n",
    ),
}
CALENDAR = (
    "kind: calendar\nname: bench-holidays\ndates:\n  - 2031-12-25\n"
    "  - {from: 2031-12-24, until: 2031-12-31}\n  - {every_year: 05-01}\n"
)
"""The calendar the tasks of the calendar case name, written once per tree."""
_MACROS = ("@daily", "@hourly", "@weekly", "@monthly", "@yearly")


def task_text(index: int, case: str = NUMERIC) -> str:
    """One task file; the five schedule forms rotate, the rest varies a little. Every
    other crontab of the dialect case is a macro, the others use weekday and month names."""
    forms = CASES[case]
    turn = index // len(forms)
    named = (
        _MACROS[turn // 2 % len(_MACROS)]
        if turn % 2
        else f"{index % 60} {index % 24} * JAN-DEC MON-FRI"
    )
    schedule = forms[index % len(forms)].format(
        m=index % 60, h=index % 24, hs=index % 11 + 1, d=index % 28 + 1, named=named
    )
    return (
        "# yaml-language-server: $schema=../../schemas/task.schema.json\n"
        f"name: bench-task-{index}\n"
        f"description: Benchmark task number {index}\n"
        f"owner: team-{index % 7}\n"
        "task: app.worker.test_celery\n"
        f"{schedule}"
        f'args: ["report-{index}", {index}]\n'
        f"kwargs: {{region: eu-{index % 3}, retries: {index % 5}, dry_run: false}}\n"
        "timezone: Europe/Berlin\n"
        "options:\n  queue: reports\n  priority: 5\n  expires: 3600\n"
        f"labels: {{team: team-{index % 7}}}\n"
    )


def write_tree(root: Path, count: int, case: str = NUMERIC) -> None:
    for index in range(count):
        directory = root / f"group-{index // FILES_PER_DIRECTORY:03d}"
        if index % FILES_PER_DIRECTORY == 0:
            directory.mkdir(parents=True)
        path = directory / f"task-{index:05d}.yaml"
        path.write_text(task_text(index, case), encoding="utf-8")
    if any("_on: [bench-holidays]" in form for form in CASES[case]):
        (root / "calendars.yaml").write_text(CALENDAR, encoding="utf-8")


def _clock() -> float:
    # CPU time of this process: both sides are CPU-bound once the files are in the page
    # cache, and other load on the machine does not distort the comparison.
    return time.process_time()


def measure_floor(root: str) -> dict[str, float]:
    """Read and parse every file with the C loader: the least any validator must do."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    paths = sorted(str(p) for p in Path(root).rglob("*.yaml"))
    started_cpu, started_wall = _clock(), time.perf_counter()
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            yaml.load(handle.read(), Loader=loader)
    return {
        "seconds": _clock() - started_cpu,
        "wall": time.perf_counter() - started_wall,
        "files": len(paths),
        "peak_mb": peak_rss_mb(),
    }


def measure_validation(root: str) -> dict[str, float]:
    """Time ``load_directory`` (run in a child process, so peak memory is its own)."""
    from reconciler.files.loader import load_directory

    started_cpu, started_wall = _clock(), time.perf_counter()
    result = load_directory(Path(root))
    return {
        "seconds": _clock() - started_cpu,
        "wall": time.perf_counter() - started_wall,
        "files": result.files,
        "tasks": len(result.tasks),
        "errors": len(result.errors),
        "peak_mb": peak_rss_mb(),
    }


_ROOT = Path(__file__).resolve().parent.parent


def _in_child(function: str, root: str) -> dict[str, float]:
    code = (
        f"import json, sys; from benchmarks.bench_validate import {function}; "
        f"print(json.dumps({function}(sys.argv[1])))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code, root],
        check=True,
        capture_output=True,
        text=True,
        cwd=_ROOT,
    ).stdout
    measured: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return measured


def run_size(count: int, workdir: Path, repeats: int) -> list[dict[str, Any]]:
    """Validation of every case and the floor for one size, alternated so that each case
    meets the same machine; the best of ``repeats`` each, one result per case."""
    roots = {case: workdir / f"tasks-{count}-{index}" for index, case in enumerate(CASES)}
    for case, root in roots.items():
        write_tree(root, count, case)
    floors: dict[str, list[dict[str, float]]] = {case: [] for case in CASES}
    runs: dict[str, list[dict[str, float]]] = {case: [] for case in CASES}
    for _ in range(repeats):
        for case, root in roots.items():
            floors[case].append(_in_child("measure_floor", str(root)))
            runs[case].append(_in_child("measure_validation", str(root)))
    for root in roots.values():
        shutil.rmtree(root)
    results: list[dict[str, Any]] = []
    for case in CASES:
        best = min(runs[case], key=lambda run: run["seconds"])
        if best["tasks"] != count or best["errors"]:
            raise SystemExit(
                f"validation found {best['errors']:.0f} errors in the generated files ({case})"
            )
        results.append(
            {
                "case": case,
                "files": count,
                "seconds": best["seconds"],
                "wall": best["wall"],
                "floor": min(f["seconds"] for f in floors[case]),
                "peak_mb": max(run["peak_mb"] for run in runs[case]),
            }
        )
    return results


CALLGRIND_FILES = 1_000


def _instructions(function: str, root: str) -> int:
    """Instructions the child that runs ``function`` on ``root`` executes, under callgrind."""
    code = f"import sys; from benchmarks.bench_validate import {function}; {function}(sys.argv[1])"
    return callgrind.count([sys.executable, "-c", code, root], cwd=_ROOT)


def count_instructions(workdir: Path) -> list[dict[str, Any]] | None:
    """Each case's validation and floor in instructions, less those of an empty tree;
    None where valgrind is not installed or the count is switched off."""
    if not callgrind.available("BENCH_VALIDATE_CALLGRIND"):
        return None
    roots = {case: workdir / f"callgrind-{index}" for index, case in enumerate(CASES)}
    empty = workdir / "callgrind-empty"
    empty.mkdir()
    for case, root in roots.items():
        write_tree(root, CALLGRIND_FILES, case)
    runs = [
        (function, str(root))
        for function in ("measure_validation", "measure_floor")
        for root in (empty, *roots.values())
    ]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counted = dict(zip(runs, pool.map(lambda run: _instructions(*run), runs), strict=True))
    results = []
    for case, root in roots.items():
        validation, floor = (
            counted[(function, str(root))] - counted[(function, str(empty))]
            for function in ("measure_validation", "measure_floor")
        )
        results.append({"case": case, "validation": validation, "floor": floor})
    return results


def _print_instructions(counted: list[dict[str, Any]] | None) -> list[tuple[str, bool]]:
    if counted is None:
        print("instructions: not counted (no valgrind, or BENCH_VALIDATE_CALLGRIND=0)")
        return []
    numeric = next(r for r in counted if r["case"] == NUMERIC)
    rows = [
        [
            r["case"],
            r["validation"] / 1e6,
            r["floor"] / 1e6,
            r["validation"] / numeric["validation"],
            r["floor"] / numeric["floor"],
        ]
        for r in counted
    ]
    print(f"\ninstructions (callgrind, {CALLGRIND_FILES:,} files):")
    print_table(["case", "validate M", "floor M", "vs numeric", "floor vs numeric"], rows)
    return [
        (
            f"{r['case']} within 10% of numeric in instructions "
            f"({r['validation'] / numeric['validation']:.3f}x)",
            r["validation"] / numeric["validation"] <= 1.10,
        )
        for r in counted
        if r["case"] != NUMERIC
    ]


def _repeats(count: int) -> int:
    """Runs per case, the best kept: more where a run is short and the machine's noise
    is a larger share of it."""
    if count <= 1_000:
        return 7
    return 5 if count <= 10_000 else 3


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-validate-"))
    try:
        sizes = [run_size(count, workdir, _repeats(count)) for count in SIZES]
        counted = count_instructions(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    headers = [
        "files",
        "case",
        "validate s",
        "(wall s)",
        "floor s",
        "ratio",
        "validate us/file",
        "floor us/file",
        "vs numeric",
        "peak MB",
    ]
    rows = []
    against: dict[str, list[float]] = {case: [] for case in CASES if case != NUMERIC}
    for results in sizes:
        numeric = next(r for r in results if r["case"] == NUMERIC)
        for r in results:
            versus = r["seconds"] / numeric["seconds"]
            if r["case"] != NUMERIC:
                against[r["case"]].append(versus)
            rows.append(
                [
                    f"{r['files']:,.0f}",
                    r["case"],
                    r["seconds"],
                    r["wall"],
                    r["floor"],
                    r["seconds"] / r["floor"],
                    r["seconds"] / r["files"] * 1e6,
                    r["floor"] / r["files"] * 1e6,
                    versus,
                    r["peak_mb"],
                ]
            )
    print_table(headers, rows)
    results = [r for size in sizes for r in size if r["case"] == NUMERIC]
    ratios = [r["seconds"] / r["floor"] for r in results]
    per_file = [r["seconds"] / r["files"] for r in results]
    spread = max(per_file) / min(per_file)
    peak = results[-1]["peak_mb"]
    targets = [
        (f"ratio <= 2.0 (worst {max(ratios):.2f})", max(ratios) <= 2.0),
        (f"time per file flat within 1.5x ({spread:.2f}x)", spread <= 1.5),
        (f"peak < 300 MB at 50k ({peak:.0f} MB)", peak < 300),
    ]
    targets += [
        (f"{case} within 10% of numeric (worst {max(ratio):.2f}x)", max(ratio) <= 1.10)
        for case, ratio in against.items()
    ]
    targets += _print_instructions(counted)
    print("targets: " + "; ".join(f"{text}: {'met' if ok else 'NOT met'}" for text, ok in targets))


if __name__ == "__main__":
    main()
