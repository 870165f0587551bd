"""Execution tracking's cost: 5,000 no-op tasks through a prefork worker, four ways.

With tracking off; with tracking on (PostgreSQL) for messages sent as user code sends
them; with tracking on for messages sent as beat sends them (each row written first,
each message carrying the reconciler's header, so each delivery claims its row before
it runs); and with Celery's own SQLAlchemy result backend on the same PostgreSQL
database. All in the same run, each on a Redis broker with a prefork worker of
concurrency 2. The messages are queued before the worker starts; throughput counts from
the first task to the last one recorded.
Targets: tracking (both ways) >= 0.8 of the throughput without it, and >= the result
backend's.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from celery import Celery, signals

from benchmarks.services import free_redis, fresh_postgres
from benchmarks.table import print_table

TASKS = int(os.environ.get("BENCH_TRACKING_TASKS", "5000"))
ROUNDS = int(os.environ.get("BENCH_TRACKING_ROUNDS", "5"))
ROOT = Path(__file__).resolve().parent.parent
MODES = ("off", "tracking", "claimed", "backend")
TRACKED = ("tracking", "claimed")
COUNTER = "bench:tracking:done"

# --- the worker's app (imported by the worker as benchmarks.bench_tracking:app) ---------

app = Celery("bench-tracking", set_as_current=False)
app.conf.update(
    broker_url=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0"),
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
_MODE = os.environ.get("BENCH_TRACKING_MODE", "off")
if _MODE == "backend":
    app.conf.update(
        result_backend=os.environ["BENCH_BACKEND_URL"],
        task_ignore_result=False,
    )
elif _MODE in TRACKED:
    from reconciler import tracking

    tracking.install(app)


@app.task(name="bench.noop")
def noop() -> None:
    """Does nothing: what is measured is the worker and what records the execution."""


_counter: Any = None


@signals.task_postrun.connect
def _count(**_: Any) -> None:
    # The same small cost in every mode: how the benchmark sees that a task ran.
    global _counter
    if _counter is None:
        import redis

        _counter = redis.Redis.from_url(app.conf.broker_url)
    _counter.incr(COUNTER)


# --- the harness ------------------------------------------------------------------------


def _seed(database_url: str) -> None:
    """The schema, and ``bench.noop`` as a managed task, so tracking records its runs."""
    import datetime as dt

    from reconciler.store.database import Database
    from reconciler.store.tables import Task

    now = dt.datetime.now(dt.UTC)
    database = Database.open(database_url)
    with database.session() as session:
        session.add(
            Task(
                name="bench-noop", owner="bench", type="async", task="bench.noop",
                spec={"name": "bench-noop", "task": "bench.noop", "args": [], "kwargs": {}},
                content_hash="0" * 64, created_at=now, updated_at=now,
            )
        )  # fmt: skip
    database.dispose()


def _scheduled(database_url: str) -> list[str]:
    """Rows as beat writes them before it publishes (``pending``, trigger ``schedule``)."""
    import datetime as dt
    import uuid

    from sqlalchemy import insert

    from reconciler.store.database import Database
    from reconciler.store.tables import TaskExecution

    now = dt.datetime.now(dt.UTC)
    ids = [str(uuid.uuid4()) for _ in range(TASKS)]
    rows = [
        {"task_name": "bench-noop", "celery_task_id": celery_task_id, "trigger": "schedule",
         "scheduled_for": now + dt.timedelta(seconds=i), "status": "pending", "args": [],
         "kwargs": {}, "queued_at": now, "published_at": now}
        for i, celery_task_id in enumerate(ids)
    ]  # fmt: skip
    database = Database.open(database_url, upgrade=False)
    with database.session() as session:
        session.execute(insert(TaskExecution), rows)
    database.dispose()
    return ids


def _recorded(database_url: str) -> int:
    from sqlalchemy import func, select

    from reconciler.store.database import Database
    from reconciler.store.tables import TaskExecution

    database = Database.open(database_url, upgrade=False)
    try:
        with database.session() as session:
            return int(
                session.scalar(select(func.count()).where(TaskExecution.status == "success")) or 0
            )
    finally:
        database.dispose()


def _settle(database_url: str) -> None:
    """Start every mode from the same quiet state: a new database and freshly written
    rows leave the server flushing and its statistics stale for the first seconds."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ANALYZE")
        conn.execute("CHECKPOINT")


def _run(mode: str, broker_url: str, database_url: str) -> dict[str, Any]:
    import redis

    from reconciler import tracking

    client = redis.Redis.from_url(broker_url)
    client.flushdb()
    producer_app = Celery("bench-producer", broker=broker_url, set_as_current=False)
    producer_app.conf.task_ignore_result = True
    if mode == "tracking":
        # Published from here, as user code would: tracking writes each pending row.
        tracking.install(producer_app, database_url=database_url)
    with producer_app.producer_or_acquire() as producer:
        if mode == "claimed":
            # As beat sends them: the rows exist, the messages carry the header.
            from reconciler.vocabulary import Header, Trigger

            headers = {Header.TRIGGER: Trigger.SCHEDULE}
            for celery_task_id in _scheduled(database_url):
                producer_app.send_task(
                    "bench.noop", task_id=celery_task_id, producer=producer, headers=headers
                )
        else:
            for _ in range(TASKS):
                producer_app.send_task("bench.noop", producer=producer)
    tracking.flush(60)
    tracking.uninstall(producer_app)
    _settle(database_url)
    env = {
        **os.environ,
        "BENCH_TRACKING_MODE": mode,
        "BENCH_BROKER_URL": broker_url,
        "BENCH_BACKEND_URL": "db+" + database_url.replace("postgresql://", "postgresql+psycopg://"),
        "RECONCILER_DATABASE_URL": database_url,
        "PYTHONPATH": str(ROOT),
    }
    argv = [sys.executable, "-m", "celery", "-A", "benchmarks.bench_tracking:app", "worker",
            "--pool", "prefork", "--concurrency", "2", "--loglevel", "WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
    worker = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    first = last = ran_at = None
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            done = int(client.get(COUNTER) or 0)
            now = time.perf_counter()
            if done and first is None:
                first = now
            if done >= TASKS:
                last = now
                break
            time.sleep(0.005)
        ran_at = last
        if mode in TRACKED:
            # The run counts as done once every execution is recorded as finished.
            while _recorded(database_url) < TASKS and time.monotonic() < deadline:
                time.sleep(0.01)
            last = time.perf_counter()
    finally:
        worker.terminate()
        _, errors = worker.communicate(timeout=60)
    if first is None or last is None:
        raise RuntimeError(f"{mode}: the worker did not finish: {errors.decode()[-2000:]}")
    seconds = last - first
    ran = (ran_at or last) - first
    return {"mode": mode, "seconds": seconds, "per_second": (TASKS - 1) / seconds, "ran": ran}


def main() -> None:
    print(f"{TASKS} no-op tasks, prefork worker (concurrency 2), Redis broker, "
          f"{ROUNDS} rounds, modes interleaved")  # fmt: skip
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with free_redis() as broker_url:
        for round_ in range(ROUNDS):
            for mode in MODES:
                with fresh_postgres("bench_tracking") as database_url:
                    _seed(database_url)
                    result = _run(mode, broker_url, database_url)
                results[mode].append(result)
                print(f"  round {round_ + 1}: {mode:<8} {result['per_second']:8.0f} tasks/s "
                      f"(tasks ran in {result['ran']:.2f} s)", flush=True)  # fmt: skip
    median = {mode: statistics.median(r["per_second"] for r in results[mode]) for mode in MODES}
    best = {mode: max(r["per_second"] for r in results[mode]) for mode in MODES}
    labels = {
        "off": "tracking off",
        "tracking": "tracking on (PostgreSQL), sent as user code",
        "claimed": "tracking on, sent as beat (claimed)",
        "backend": "db result backend (PostgreSQL)",
    }
    rows = [
        (labels[mode], round(median[mode]), round(best[mode]),
         median[mode] / median["off"], median[mode] / median["backend"])
        for mode in MODES
    ]  # fmt: skip
    print_table(("case", "tasks/s median", "tasks/s best", "vs off", "vs backend"), rows)
    # Each round runs the three modes back to back, so a round's ratios compare runs
    # under the same load; their median is the verdict (the machine may be shared).
    for mode in TRACKED:
        paired_off = [
            t["per_second"] / o["per_second"]
            for t, o in zip(results[mode], results["off"], strict=True)
        ]
        paired_backend = [
            t["per_second"] / b["per_second"]
            for t, b in zip(results[mode], results["backend"], strict=True)
        ]
        ratio_off = statistics.median(paired_off)
        ratio_backend = statistics.median(paired_backend)
        print(f"per-round {mode}/off: " + ", ".join(f"{r:.2f}" for r in paired_off))
        print(f"per-round {mode}/backend: " + ", ".join(f"{r:.2f}" for r in paired_backend))
        print(f"target (median of rounds): {mode} >= 0.8 x off: "
              f"{'met' if ratio_off >= 0.8 else 'NOT met'} ({ratio_off:.2f}); {mode} >= backend: "
              f"{'met' if ratio_backend >= 1 else 'NOT met'} ({ratio_backend:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
