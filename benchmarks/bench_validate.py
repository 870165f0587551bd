"""Validation speed: ``load_directory`` against a floor of parsing the same files.

Writes 1,000, 10,000 and 50,000 task files of mixed types, then times the loader
and the floor (read + ``yaml.load`` with PyYAML's C loader, nothing else), each in a
fresh subprocess so each size's peak memory is its own. Times are CPU seconds (wall
time of the loader shown too). Targets: at most 2.0x the floor, time per file flat
within 1.5x from 1k to 50k, under 300 MB at 50k.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.table import peak_rss_mb, print_table

SIZES = (1_000, 10_000, 50_000)
FILES_PER_DIRECTORY = 1_000

_SCHEDULES = (
    'type: periodic\ncrontab: "{m} {h} * * 1-5"\n',
    "type: periodic\ncrontab:\n  minute: {m}\n  hour: '*/{hs}'\n  day_of_week: '0,6'\n",
    "type: periodic\ninterval:\n  hours: {hs}\n  minutes: {m}\n",
    "type: scheduled\nat: 2031-06-{d:02d}T{h:02d}:{m:02d}:00Z\n",
    "type: async\n",
)


def task_text(index: int) -> str:
    """One task file; the five schedule forms rotate, the rest varies a little."""
    schedule = _SCHEDULES[index % len(_SCHEDULES)].format(
        m=index % 60, h=index % 24, hs=index % 11 + 1, d=index % 28 + 1
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


def write_tree(root: Path, count: int) -> None:
    for index in range(count):
        directory = root / f"group-{index // FILES_PER_DIRECTORY:03d}"
        if index % FILES_PER_DIRECTORY == 0:
            directory.mkdir(parents=True)
        path = directory / f"task-{index:05d}.yaml"
        path.write_text(task_text(index), encoding="utf-8")


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
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout
    measured: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return measured


def run_size(count: int, workdir: Path, repeats: int) -> dict[str, float]:
    """Validation and floor for one size, alternated; the best of ``repeats`` each."""
    root = workdir / f"tasks-{count}"
    write_tree(root, count)
    floors: list[dict[str, float]] = []
    runs: list[dict[str, float]] = []
    for _ in range(repeats):
        floors.append(_in_child("measure_floor", str(root)))
        runs.append(_in_child("measure_validation", str(root)))
    shutil.rmtree(root)
    best = min(runs, key=lambda run: run["seconds"])
    if best["tasks"] != count or best["errors"]:
        raise SystemExit(f"validation found {best['errors']:.0f} errors in the generated files")
    return {
        "files": count,
        "seconds": best["seconds"],
        "wall": best["wall"],
        "floor": min(f["seconds"] for f in floors),
        "peak_mb": max(run["peak_mb"] for run in runs),
    }


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench-validate-"))
    try:
        results = [run_size(count, workdir, 3 if count <= 10_000 else 2) for count in SIZES]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    headers = [
        "files",
        "validate s",
        "(wall s)",
        "floor s",
        "ratio",
        "validate us/file",
        "floor us/file",
        "peak MB",
    ]
    rows = [
        [
            f"{r['files']:,.0f}",
            r["seconds"],
            r["wall"],
            r["floor"],
            r["seconds"] / r["floor"],
            r["seconds"] / r["files"] * 1e6,
            r["floor"] / r["files"] * 1e6,
            r["peak_mb"],
        ]
        for r in results
    ]
    print_table(headers, rows)
    ratios = [r["seconds"] / r["floor"] for r in results]
    per_file = [r["seconds"] / r["files"] for r in results]
    spread = max(per_file) / min(per_file)
    peak = results[-1]["peak_mb"]
    targets = [
        (f"ratio <= 2.0 (worst {max(ratios):.2f})", max(ratios) <= 2.0),
        (f"time per file flat within 1.5x ({spread:.2f}x)", spread <= 1.5),
        (f"peak < 300 MB at 50k ({peak:.0f} MB)", peak < 300),
    ]
    print("targets: " + "; ".join(f"{text}: {'met' if ok else 'NOT met'}" for text, ok in targets))


if __name__ == "__main__":
    main()
