"""Import speed: ``reconcile import`` of 10,000 django-celery-beat rows and of 10,000 RedBeat
entries, time per task beside ``reconcile validate`` of the files it wrote, in the same run.

The rows are made by django-celery-beat's own migrations and models (in a child process:
Django is configured once per process) in a SQLite file; the entries by celery-redbeat
in a Redis database of the benchmark's own. Half the names are Chinese (spelled in
pinyin), a tenth of the tasks are disabled. Times are wall seconds: the import reads its
source over a connection.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.services import free_redis
from benchmarks.table import print_table

COUNT = 10_000

DJANGO_FILL = r"""
import sys
import django
from django.conf import settings

settings.configure(
    INSTALLED_APPS=["django_celery_beat"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sys.argv[1]}},
    USE_TZ=True, TIME_ZONE="UTC",
)
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

count = int(sys.argv[2])
crontabs = [
    CrontabSchedule.objects.create(minute=str(m), hour=f"*/{1 + m % 6}", timezone="Europe/Paris")
    for m in range(60)
]
intervals = [IntervalSchedule.objects.create(every=5 + n, period="minutes") for n in range(60)]
rows = []
for index in range(count):
    name = f"每日任务 {index}" if index % 2 else f"report {index}"
    kind = {"crontab": crontabs[index % 60]} if index % 3 else {"interval": intervals[index % 60]}
    rows.append(PeriodicTask(
        name=name, task=f"app.tasks.t{index % 50}", args=f"[{index}]",
        kwargs='{"x": 1}', enabled=index % 10 != 0, queue="default", **kind))
PeriodicTask.objects.bulk_create(rows, batch_size=1000)
"""


def fill_django(path: Path) -> None:
    subprocess.run(
        [sys.executable, "-c", DJANGO_FILL, str(path), str(COUNT)],
        check=True,
        capture_output=True,
        text=True,
    )


def fill_redbeat(url: str) -> None:
    from celery import Celery
    from celery.schedules import crontab, schedule
    from redbeat import RedBeatSchedulerEntry

    app = Celery("bench", broker="memory://")
    app.conf.update(redbeat_redis_url=url, timezone="UTC")
    for index in range(COUNT):
        every = (
            crontab(minute=index % 60, hour=f"*/{1 + index % 6}")
            if index % 3
            else schedule(dt.timedelta(minutes=5 + index % 60))
        )
        name = f"每日任务 {index}" if index % 2 else f"report {index}"
        RedBeatSchedulerEntry(
            name,
            f"app.tasks.t{index % 50}",
            every,
            args=[index],
            kwargs={"x": 1},
            enabled=index % 10 != 0,
            app=app,
        ).save()


def measure(kind: str, source: str, workdir: Path) -> dict[str, Any]:
    """Import ``source`` into a fresh tasks directory, then validate what it wrote."""
    from reconciler.cli.importer import read_source
    from reconciler.files.imports.plan import ImportOptions, plan_import, write_tasks
    from reconciler.files.loader import load_directory

    tasks_dir = workdir / f"tasks-{kind}"
    started = time.perf_counter()
    payloads, shown = read_source(kind, source, "redbeat:")
    read = time.perf_counter() - started
    tasks = plan_import(
        payloads,
        tasks_dir=tasks_dir,
        owner="bench",
        source=shown,
        options=ImportOptions(kind=kind),
    )
    write_tasks(tasks)
    imported = time.perf_counter() - started
    started = time.perf_counter()
    loaded = load_directory(tasks_dir)
    validated = time.perf_counter() - started
    if len(loaded.tasks) != COUNT or loaded.errors:
        raise SystemExit(f"{kind}: {len(loaded.tasks)} tasks, {len(loaded.errors)} errors")
    return {"kind": kind, "read": read, "import": imported, "validate": validated}


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-import-") as folder:
        workdir = Path(folder)
        database = workdir / "django.db"
        fill_django(database)
        results = [measure("django-celery-beat", f"sqlite:///{database}", workdir)]
        with free_redis() as url:
            fill_redbeat(url)
            results.append(measure("redbeat", url, workdir))
    for result in results:
        rows.append(
            [
                result["kind"],
                COUNT,
                result["read"],
                result["import"],
                result["import"] / COUNT * 1000,
                result["validate"],
                result["validate"] / COUNT * 1000,
                result["import"] / result["validate"],
            ]
        )
    print_table(
        [
            "source",
            "tasks",
            "read s",
            "import s",
            "ms/task",
            "validate s",
            "ms/task",
            "import/validate",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
