"""The page's live channel: what 50 live clients cost the server over a minute on
PostgreSQL (200 tasks, 50,000 executions), when nothing changes and when one task fires
every second, beside the same server with no client in the same run.

Each client does what the page does: a long poll of ``/api/v1/changes`` (``wait=25``)
and, when it names a change, the reads the page makes again (the task list, the open
task's executions, the apply log). A firing is one finished execution row a second,
written straight into the store. The server is one uvicorn process running the same app
as ``reconcile serve``, with a counter of the statements it sends the database (every
read, through SQLAlchemy or the reader: ``benchmarks.querycount``); its CPU is user +
system seconds of that process. Target: with nothing changing, the database reads do
not grow with the clients (the watcher's one read a second, about 60 a minute).

``BENCH_LIVE_SECONDS`` (default 60) sets each phase's length; the baseline runs half of
it. Numbers are per minute.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil
import psycopg

from benchmarks.bench_http import HOT, seed
from benchmarks.services import free_port, fresh_postgres, stop, wait_serving
from benchmarks.table import print_table
from reconciler.store.database import Database

TASKS = 200
EXECUTIONS = 50_000
CLIENTS = 50
WAIT = 25  # seconds a poll is held, as the page asks
SECONDS = float(os.environ.get("BENCH_LIVE_SECONDS", "60"))
FIRING = HOT
ROOT = Path(__file__).resolve().parent.parent


def serve(url: str, port: int, counts: str) -> None:
    """The server process: the app, uvicorn as ``reconcile serve`` runs it (one process),
    and its statement counter written to ``counts`` at each SIGUSR1."""
    import uvicorn

    from benchmarks.querycount import QueryCount
    from reconciler.store.deadlines import SERVE
    from reconciler.web.app import create_app
    from reconciler.web.protocol import ServerProtocol

    app = create_app(Database.open(url, deadlines=SERVE), app_path="reconciler.demo:app")
    queries = QueryCount(app)

    def publish(signum: int, frame: object) -> None:
        Path(f"{counts}.new").write_text(str(queries.count))
        os.replace(f"{counts}.new", counts)

    signal.signal(signal.SIGUSR1, publish)
    uvicorn.run(
        app, host="127.0.0.1", port=port, http=ServerProtocol, access_log=False, log_level="warning"
    )


@dataclass
class Phase:
    """What one phase cost the server and what its clients saw."""

    label: str
    clients: int
    seconds: float
    cpu: float = 0.0
    queries: int = 0
    polls: int = 0
    rereads: int = 0
    delays: list[float] = field(default_factory=list)  # firing -> a client told, seconds

    def per_minute(self, value: float) -> float:
        return value * 60 / self.seconds


async def _client(
    base: str, until: float, phase: Phase, fired: list[float], session: aiohttp.ClientSession
) -> None:
    """One page: a long poll, and the page's reads again when something changed."""
    async with session.get(f"{base}/api/v1/changes") as response:
        version = (await response.json())["version"]
    while time.monotonic() < until:
        poll = f"{base}/api/v1/changes?since={version}&wait={WAIT}"
        try:
            async with asyncio.timeout(until - time.monotonic()):
                async with session.get(poll) as response:
                    answer = await response.json()
        except TimeoutError:
            return
        phase.polls += 1
        if answer["changed"] and fired:
            phase.delays.append(time.time() - fired[-1])
        reads = []
        if {"tasks", "executions"} & set(answer["changed"]):
            reads.append(f"{base}/api/v1/tasks/?limit=100")
        if "executions" in answer["changed"]:
            reads.append(f"{base}/api/v1/tasks/{FIRING}/executions?limit=50")
        if "applies" in answer["changed"]:
            reads.append(f"{base}/api/v1/applies?limit=20")
        for path in reads:
            async with session.get(path) as response:
                await response.read()
            phase.rereads += 1
        version = answer["version"]


async def _fire(url: str, until: float, fired: list[float]) -> None:
    """One finished execution of ``FIRING`` a second."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while time.monotonic() < until:
            await conn.execute(
                "INSERT INTO task_executions (task_name, celery_task_id, trigger, "
                "scheduled_for, status, args, kwargs, queued_at, started_at, finished_at, "
                "duration_ms, worker, retries) VALUES (%s, %s, 'schedule', now(), 'success', "
                "'[]', '{}', now(), now(), now(), 5, 'worker-1', 0)",
                (FIRING, uuid.uuid4().hex),
            )
            fired.append(time.time())
            await asyncio.sleep(1)


def _run(phase: Phase, base: str, url: str, firing: bool, read_counts: Counts) -> Phase:
    async def run() -> None:
        fired: list[float] = []
        until = time.monotonic() + phase.seconds
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            work = [_client(base, until, phase, fired, session) for _ in range(phase.clients)]
            if firing:
                work.append(_fire(url, until, fired))
            if not work:
                await asyncio.sleep(phase.seconds)
            await asyncio.gather(*work)

    cpu, queries = read_counts()
    asyncio.run(run())
    cpu_after, queries_after = read_counts()
    phase.cpu, phase.queries = cpu_after - cpu, queries_after - queries
    return phase


class Counts:
    """The server's CPU seconds and database statements so far."""

    def __init__(self, pid: int, counts: Path) -> None:
        self.process = psutil.Process(pid)
        self.counts = counts

    def __call__(self) -> tuple[float, int]:
        times = self.process.cpu_times()
        self.counts.unlink(missing_ok=True)
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not self.counts.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not write its statement count")
            time.sleep(0.02)
        return times.user + times.system, int(self.counts.read_text())


def main() -> None:
    with fresh_postgres("bench_live") as url, tempfile.TemporaryDirectory() as directory:
        Database.open(url).dispose()
        started = time.perf_counter()
        seed(url, tasks=TASKS, executions=EXECUTIONS)
        print(
            f"seeded {TASKS} tasks and {EXECUTIONS} executions in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        counts = Path(directory) / "queries"
        log = Path(directory) / "server.log"
        argv = [sys.executable, "-m", "benchmarks.bench_live", "serve", url, str(port), str(counts)]
        with open(log, "wb") as output:
            server = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            wait_serving(base, server, lambda: f":\n{log.read_text()}")
            read_counts = Counts(server.pid, counts)
            print(
                f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
                f"phases of {SECONDS:.0f} s (the baseline {SECONDS / 2:.0f} s); the clients "
                "share these CPUs",
                flush=True,
            )
            baseline = _run(Phase("no client", 0, SECONDS / 2), base, url, False, read_counts)
            idle = _run(Phase("nothing changes", CLIENTS, SECONDS), base, url, False, read_counts)
            busy = _run(Phase("a firing a second", CLIENTS, SECONDS), base, url, True, read_counts)
        finally:
            stop(server)
    _report(baseline, [idle, busy])


def _report(baseline: Phase, phases: list[Phase]) -> None:
    base_cpu = baseline.per_minute(baseline.cpu)
    base_queries = baseline.per_minute(baseline.queries)
    rows: list[tuple[object, ...]] = [
        (baseline.label, 0, f"{base_cpu:.2f}", "1.00", f"{base_queries:.0f}", *[""] * 4, "baseline")
    ]
    for phase in phases:
        cpu = phase.per_minute(phase.cpu)
        queries = phase.per_minute(phase.queries)
        # Statements per client and second beyond the baseline's.
        extra = (queries - base_queries) / phase.clients / 60
        told = (
            f"{statistics.median(phase.delays):.2f} / {max(phase.delays):.2f}"
            if phase.delays
            else ""
        )
        quiet = not phase.delays
        target = ("ok" if queries <= 70 else "MISSED") if quiet else ""
        rows.append(
            (
                phase.label,
                phase.clients,
                f"{cpu:.2f}",
                f"{cpu / base_cpu:.1f}" if base_cpu else "-",
                f"{queries:.0f}",
                f"{extra:.3f}",
                f"{phase.per_minute(phase.polls):.0f}",
                f"{phase.per_minute(phase.rereads):.0f}",
                told,
                target,
            )
        )
    print_table(
        (
            "case",
            "clients",
            "server CPU s/min",
            "vs no client",
            "DB statements/min",
            "per client/s",
            "polls answered/min",
            "page reads/min",
            "told after s (median / max)",
            "target",
        ),
        rows,
    )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
