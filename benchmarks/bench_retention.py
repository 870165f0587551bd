"""History retention at scale: beat prunes millions of expired executions while it fires
and while the history endpoint is read.

A fresh PostgreSQL database with ``BENCH_RETENTION_TASKS`` tasks (default 10,000) firing
every 60 s and ``BENCH_RETENTION_EXECUTIONS`` executions (default 3,000,000) seeded with
COPY, ``BENCH_RETENTION_EXPIRED`` of them (default 2,000,000) queued 91 to 100 days ago,
the rest within the last 89 days (the default retention is 90 days). Two phases in the
same run, each with our beat (Redis broker, no worker) and ``reconcile serve`` read at
concurrency 8 (one task's executions, first page, a random task per request):

1. without pruning (``RECONCILER_PRUNE_EVERY=0``), for ``BENCH_RETENTION_WINDOW`` seconds;
2. with beat pruning (passes every 20 s from 20 s after its start), from its first
   delete to its last.

Before phase 2 the daily statistics of the seeded days are rolled up (what a beat's first
pass does after an upgrade), timed on its own. Reported: rows pruned per second, beat
lateness p99 (publish time minus slot) and endpoint p99 in each phase. Targets: lateness
p99 < 100 ms and endpoint p99 < 50 ms in both phases, pruning >= 20,000 rows/s.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import psycopg

from benchmarks.bench_beat import load_tasks, our_beat, percentile
from benchmarks.services import free_port, free_redis, fresh_postgres, stop
from benchmarks.table import print_table
from reconciler.store.database import Database
from reconciler.store.deadlines import PRUNE
from reconciler.store.rollup import roll_up

TASKS = int(os.environ.get("BENCH_RETENTION_TASKS", "10000"))
EXECUTIONS = int(os.environ.get("BENCH_RETENTION_EXECUTIONS", "3000000"))
EXPIRED = int(os.environ.get("BENCH_RETENTION_EXPIRED", "2000000"))
WINDOW = float(os.environ.get("BENCH_RETENTION_WINDOW", "60"))
PERIOD = 60.0
CONCURRENCY = 8
DAY = 86_400
ROOT = Path(__file__).resolve().parent.parent


def _lines(now: float) -> Iterator[str]:
    """The executions as COPY text: expired ones 91-100 days old, the rest 1 h-89 days."""
    rng = random.Random(16)
    for i in range(EXECUTIONS):
        name = f"b{i % TASKS:06d}"
        if i < EXPIRED:
            at = now - 100 * DAY + (i / EXPIRED) * 9 * DAY
        else:
            at = now - 89 * DAY + ((i - EXPIRED) / max(EXECUTIONS - EXPIRED, 1)) * (89 * DAY - 3600)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at)) + "+00"
        duration = 200 + rng.randrange(2000)
        end = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at + duration / 1000)) + "+00"
        status = "failure" if i % 23 == 0 else "success"
        yield (
            f"{name}\t{uuid.UUID(int=i)}\tmanual\t\\N\t{status}\t[]\t{{}}\t{stamp}\t{stamp}\t"
            f"{end}\t{duration}\tworker-{i % 4}\t\\N\t0\tbench\n"
        )


def seed(url: str, now: float) -> None:
    with (
        psycopg.connect(url) as conn,
        conn.cursor() as cursor,
        cursor.copy(
            "COPY task_executions (task_name, celery_task_id, trigger, scheduled_for, status, "
            "args, kwargs, queued_at, started_at, finished_at, duration_ms, worker, result, "
            "retries, owner) FROM STDIN"
        ) as copy,
    ):
        block: list[str] = []
        for line in _lines(now):
            block.append(line)
            if len(block) >= 50_000:
                copy.write("".join(block))
                block.clear()
        copy.write("".join(block))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def deleted_rows(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT n_tup_del FROM pg_stat_user_tables WHERE relname = 'task_executions'"
        ).fetchone()
    return int(row[0]) if row else 0


def lateness(url: str, start: float, end: float) -> tuple[int, float]:
    with psycopg.connect(url) as conn:
        values = [
            float(row[0])
            for row in conn.execute(
                "SELECT EXTRACT(EPOCH FROM published_at - scheduled_for) FROM task_executions "
                "WHERE scheduled_for >= %s AND scheduled_for < %s AND published_at IS NOT NULL",
                (dt.datetime.fromtimestamp(start, dt.UTC), dt.datetime.fromtimestamp(end, dt.UTC)),
            )
        ]
    return len(values), percentile(values, 0.99) * 1000


class Reader(threading.Thread):
    """Reads one random task's first page of executions, ``CONCURRENCY`` at a time, until
    stopped; each request's (start time, latency)."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.samples: list[tuple[float, float]] = []
        self.errors = 0
        self.halt = threading.Event()

    def run(self) -> None:
        asyncio.run(self._load())

    async def _load(self) -> None:
        rng = random.Random(7)
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(self.base, connector=connector, timeout=timeout) as s:

            async def worker() -> None:
                while not self.halt.is_set():
                    path = f"/api/v1/tasks/b{rng.randrange(TASKS):06d}/executions?limit=50"
                    started = time.time()
                    async with s.get(path) as response:
                        await response.read()
                        if response.status != 200:
                            self.errors += 1
                    self.samples.append((started, time.time() - started))

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    def p99(self, start: float, end: float) -> tuple[int, float]:
        values = [latency for at, latency in self.samples if start <= at < end]
        return len(values), percentile(values, 0.99) * 1000


def serve(url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "reconciler", "serve", "--database-url", url]
    argv += ["--port", str(port), "--no-access-log", "--workers", "2"]
    server = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise RuntimeError(f"the server did not start; see {log}")
        time.sleep(0.1)


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench_retention_"))
    with fresh_postgres("bench_retention") as url, free_redis() as broker:
        Database.open(url).dispose()
        now = time.time()
        started = time.perf_counter()
        seed(url, now)
        print(
            f"seeded {EXECUTIONS:,} executions ({EXPIRED:,} expired) in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        server, http = serve(url, workdir / "serve.log")
        base = time.time() + 8 + TASKS / 20_000
        load_tasks(url, TASKS, PERIOD, base)
        reader = Reader(http)
        reader.start()
        rows = []
        try:
            # Phase 1: beat without pruning.
            os.environ["RECONCILER_PRUNE_EVERY"] = "0"
            beat = our_beat(url, broker, workdir / "beat-quiet.log")
            try:
                time.sleep(max(base + 2 - time.time(), 0))
                quiet = (time.time(), time.time() + WINDOW)
                time.sleep(WINDOW + 3)
            finally:
                stop(beat)
            slots, late = lateness(url, *quiet)
            reads, read_p99 = reader.p99(*quiet)
            rows.append(("without pruning", "-", "-", slots, late, reads, read_p99))

            # The seeded days' statistics, as a beat's first pass after an upgrade.
            database = Database.open(url, upgrade=False, deadlines=PRUNE)
            started = time.perf_counter()
            days, _ = roll_up(database, dt.datetime.now(dt.UTC), time.monotonic() + 3600)
            rolled = time.perf_counter() - started
            database.dispose()
            print(f"rolled up {days} days of statistics ({EXECUTIONS:,} rows) in {rolled:.1f} s")

            # Phase 2: beat prunes.
            # The first pass starts 20 s after beat (once it has loaded its tasks and
            # caught up), so the window measures pruning, not beat's start.
            os.environ["RECONCILER_PRUNE_EVERY"] = "20"
            before = deleted_rows(url)
            beat = our_beat(url, broker, workdir / "beat-prune.log")
            first = last = 0.0
            gone = 0
            try:
                deadline = time.time() + 60 + EXPIRED / 2_000
                idle_since = time.time()
                while time.time() < deadline:
                    time.sleep(0.5)
                    now_gone = deleted_rows(url) - before
                    if now_gone > gone:
                        first = first or time.time() - 0.5
                        last, gone, idle_since = time.time(), now_gone, time.time()
                    # A backend reports its deletes to pg_stat up to 10 s after its last
                    # transaction: idle a little longer than that means the pass is done.
                    elif gone and (gone >= EXPIRED or time.time() - idle_since > 15):
                        break
                time.sleep(3)
            finally:
                stop(beat)
            span = max(last - first, 1e-9)
            slots, late = lateness(url, first, last)
            reads, read_p99 = reader.p99(first, last)
            rows.append(
                ("while pruning", f"{gone:,}", f"{gone / span:,.0f}", slots, late, reads, read_p99)
            )
        finally:
            reader.halt.set()
            reader.join(30)
            stop(server)
        print_table(
            ("phase", "pruned", "rows/s", "slots", "lateness p99 ms", "reads", "read p99 ms"),
            rows,
        )
        print(
            f"targets: lateness p99 < 100 ms, read p99 < 50 ms, >= 20,000 rows/s; "
            f"read errors {reader.errors}; logs in {workdir}"
        )
