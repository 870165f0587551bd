"""Reconcile at 10,000 tasks on SQLite and PostgreSQL, each case beside validation alone.

Cases: the first apply (10,000 creates), a no-op reconcile, and one changed file among
10,000 (which must write only that task's row, plus the change marker and the apply
log). Targets: no-op and one change at most 1.5x validation, first apply at most 3x.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, event

from benchmarks.services import fresh_postgres
from benchmarks.table import print_table
from reconciler.apply import reconcile
from reconciler.files.loader import load_directory
from reconciler.store.database import Database
from reconciler.store.tables import ApplyRecord, Task

TASKS = 10_000
REPEAT = 3
TARGETS = {"first apply": 3.0, "no-op": 1.5, "one changed file": 1.5}


def task_text(index: int, hour: int = 1) -> str:
    return (
        f"name: task-{index:05d}\n"
        f"description: benchmark task {index}\n"
        f"owner: team-{index % 17}\n"
        "type: periodic\n"
        "task: app.worker.test_celery\n"
        f"args: [{index}, 'x']\n"
        f"kwargs: {{region: eu, shard: {index % 8}}}\n"
        f'crontab: "{index % 60} {hour} * * *"\n'
        "timezone: Europe/Berlin\n"
        "options: {queue: reports, priority: 5}\n"
    )


def write_tasks(directory: Path) -> None:
    for index in range(TASKS):
        sub = directory / f"group-{index % 50:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"task-{index:05d}.yaml").write_text(task_text(index))


def changed_file(directory: Path, index: int) -> Path:
    return directory / f"group-{index % 50:02d}" / f"task-{index:05d}.yaml"


@dataclass
class Counter:
    statements: int = 0
    writes: int = 0
    rows_written: int = 0
    tables: set[str] = field(default_factory=set)

    def __call__(
        self, _c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, many: bool
    ) -> None:
        self.statements += 1
        words = statement.split()
        verb = words[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE"):
            self.writes += 1
            self.rows_written += len(params) if many else 1
            self.tables.add(words[2] if verb in ("INSERT", "DELETE") else words[1])


@contextmanager
def counting(db: Database) -> Iterator[Counter]:
    counter = Counter()
    event.listen(db.engine, "before_cursor_execute", counter)
    try:
        yield counter
    finally:
        event.remove(db.engine, "before_cursor_execute", counter)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def validate_seconds(directory: Path) -> float:
    return timed(lambda: load_directory(directory))


def run_backend(name: str, url: str, directory: Path) -> list[list[object]]:
    """Each case REPEAT times, each run right after a validation of the same files.

    The machine may be busy with other work; the minimum of each series is the least
    disturbed measurement, so the ratio is min(case) / min(validate).
    """
    rows: list[list[object]] = []
    db = Database.open(url)

    def series(case: str, prepare: Callable[[int], None]) -> None:
        validates: list[float] = []
        times: list[float] = []
        counters: list[Counter] = []
        for attempt in range(REPEAT):
            prepare(attempt)
            validates.append(validate_seconds(directory))
            with counting(db) as counter:
                times.append(timed(lambda: reconcile(db, directory)))
            counters.append(counter)
        seconds, validate, counter = min(times), min(validates), counters[-1]
        ratio = seconds / validate
        rows.append(
            [
                name,
                case,
                seconds,
                validate,
                ratio,
                f"<= {TARGETS[case]:g}",
                "ok" if ratio <= TARGETS[case] else "MISSED",
                counter.statements,
                counter.writes,
                counter.rows_written,
                ",".join(sorted(counter.tables)) or "-",
            ]
        )

    def empty(_attempt: int) -> None:
        with db.session() as session:
            session.execute(delete(Task))
            session.execute(delete(ApplyRecord))

    def change_one(attempt: int) -> None:
        index = 4242 + attempt
        changed_file(directory, index).write_text(task_text(index, hour=2))

    try:
        series("first apply", empty)
        series("no-op", lambda _attempt: None)
        series("one changed file", change_one)
    finally:
        for attempt in range(REPEAT):  # the original files again, for the next backend
            index = 4242 + attempt
            changed_file(directory, index).write_text(task_text(index))
        db.dispose()
    return rows


def main() -> None:
    headers = [
        "backend",
        "case",
        "seconds",
        "validate s",
        "ratio",
        "target",
        "",
        "statements",
        "writes",
        "rows written",
        "tables written",
    ]
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp:
        directory = Path(tmp) / "tasks.d"
        write_tasks(directory)
        print(f"{TASKS} tasks in {TASKS} files; best of {REPEAT} runs, each after a validation")
        rows += run_backend("sqlite", f"sqlite:///{tmp}/state.db", directory)
        with ExitStack() as stack:
            try:
                url = stack.enter_context(fresh_postgres("bench_reconcile"))
            except Exception as exc:
                print(f"PostgreSQL skipped: {exc}")
            else:
                rows += run_backend("postgresql", url, directory)
    print_table(headers, rows)


if __name__ == "__main__":
    main()
