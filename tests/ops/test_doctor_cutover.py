"""``reconcile doctor --old-scheduler``: after a cut-over, warn while the scheduler the
tasks were imported from still looks alive, reading its real store: a real RedBeat beat
holding its lock in Redis, and django-celery-beat tables made by its own migrations."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from reconciler.cli import main
from reconciler.ops.checkbase import Check, Context
from reconciler.ops.cutover import check_old_scheduler
from reconciler.settings import Settings
from reconciler.store.database import Database
from tests.cli.test_import_sources import run_django
from tests.support import Process, wait_for

APP = "reconciler.demo:app"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def check(state_url: str, old: str | None, key_prefix: str = "redbeat:") -> Check | None:
    settings = Settings.resolve("tasks.d", state_url, "memory://", APP)
    ctx = Context(settings, dt.datetime.now(dt.UTC), 0.5, old_scheduler=old, key_prefix=key_prefix)
    ctx.database = Database.open(state_url, upgrade=False)
    try:
        return check_old_scheduler(ctx)
    finally:
        ctx.database.dispose()


def import_and_apply(tmp_path: Path, state_url: str, *source: str) -> None:
    tasks = str(tmp_path / "tasks.d")
    code, output = run("import", *source, "--owner", "ops", "--tasks-dir", tasks)
    assert code == 0, output
    code, output = run("--database-url", state_url, "--tasks-dir", tasks)
    assert code == 0, output


# --- django-celery-beat ----------------------------------------------------------------


def old_row(url: str, assignment: str, **values: object) -> None:
    """Change the 'Sync stock' row as django-celery-beat's beat or admin would."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            statement = f"UPDATE django_celery_beat_periodictask {assignment} WHERE name = :n"
            connection.execute(text(statement), {**values, "n": "Sync stock"})
    finally:
        engine.dispose()


OLD_ROWS = """
every = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.MINUTES)
PeriodicTask.objects.create(
    name="Sync stock", task="app.sync", interval=every, last_run_at=now)
PeriodicTask.objects.create(name="paused", task="app.p", interval=every, enabled=False)
"""

EDIT = """
task = PeriodicTask.objects.get(name="Sync stock")
task.description = "edited in the old admin"
task.save()  # as the admin saves it: django-celery-beat bumps PeriodicTasks.last_update
"""


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_django_celery_beat_that_runs_or_is_edited_after_the_import_is_a_warning(
    tmp_path: Path, sqlite_url: str, backend: str, request: pytest.FixtureRequest
) -> None:
    old_url = (
        f"sqlite:///{tmp_path / 'django.db'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    run_django(old_url, OLD_ROWS, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    import_and_apply(tmp_path, sqlite_url, "--from", "django-celery-beat", old_url)

    unchecked = check(sqlite_url, None)
    assert unchecked is not None and unchecked.status == "skip"
    assert unchecked.message == (
        "not checked: 2 task(s) were imported from django-celery-beat; pass --old-scheduler "
        "URL to check that the old scheduler is stopped"
    )
    stopped = check(sqlite_url, old_url)
    assert stopped is not None and stopped.status == "ok", stopped
    assert "none of the 2 task(s) imported from it ran there after the import" in stopped.message

    # The old beat was not stopped: it sends the task again.
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    old_row(old_url, "SET last_run_at = :at", at=now)
    alive = check(sqlite_url, old_url)
    assert alive is not None and alive.status == "warn", alive
    assert alive.message.startswith("the django-celery-beat scheduler at ")
    assert alive.message.endswith(" still looks alive")
    assert len(alive.details) == 1
    assert alive.details[0].startswith("sync-stock: django-celery-beat ran 'Sync stock' at ")
    assert alive.fix is not None and "stop the old celery beat" in alive.fix

    run_django(old_url, EDIT)
    edited = check(sqlite_url, old_url)
    assert edited is not None and len(edited.details) == 2
    assert edited.details[1].startswith("its tasks were edited at ")
    assert edited.details[1].endswith("and 1 of the imported ones are still enabled there")

    # Stopped, and the task disabled there: nothing says it runs.
    old_row(old_url, "SET enabled = :off", off=False)
    done = check(sqlite_url, old_url)
    assert done is not None and done.status == "ok", done


def test_no_line_without_imported_tasks_and_a_warning_when_the_store_cannot_be_read(
    tmp_path: Path, sqlite_url: str
) -> None:
    Database.open(sqlite_url).dispose()
    assert check(sqlite_url, None) is None
    broken = check(sqlite_url, f"sqlite:///{tmp_path / 'nothing.db'}")
    assert broken is not None and broken.status == "warn"
    assert "no table django_celery_beat_periodictask" in broken.message
    unreachable = check(sqlite_url, "redis://127.0.0.1:1/0")
    assert unreachable is not None and unreachable.status == "warn"
    assert unreachable.message.startswith("redis://127.0.0.1:1/0: cannot read RedBeat's keys")


# --- RedBeat ---------------------------------------------------------------------------


OLD_APP = """
from celery import Celery

app = Celery("old", broker={url!r})
app.conf.update(
    redbeat_redis_url={url!r}, redbeat_key_prefix="old:", redbeat_lock_timeout=10,
    beat_max_loop_interval=1, timezone="UTC",
)
"""


@pytest.mark.redis
def test_a_running_redbeat_beat_is_a_warning_until_stopped_and_its_entry_gone(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    from celery import Celery
    from celery.schedules import schedule
    from redbeat import RedBeatSchedulerEntry  # type: ignore[import-untyped]

    app = Celery("old", broker="memory://")
    app.conf.update(redbeat_redis_url=redis_url, redbeat_key_prefix="old:", timezone="UTC")
    ping = RedBeatSchedulerEntry("ping", "old.ping", schedule(dt.timedelta(seconds=1)), app=app)
    ping.save()
    import_and_apply(tmp_path, sqlite_url, "--from", "redbeat", redis_url, "--key-prefix", "old:")
    stopped = check(sqlite_url, redis_url, "old:")
    assert stopped is not None and stopped.status == "ok", stopped
    assert stopped.message.endswith("ran there after the import, and its lock is free")

    (tmp_path / "oldapp.py").write_text(OLD_APP.format(url=redis_url))
    argv = [sys.executable, "-m", "celery", "-A", "oldapp:app", "beat", "-S",
            "redbeat.RedBeatScheduler", "-l", "info"]  # fmt: skip
    beat = Process(argv, tmp_path / "old-beat.log", cwd=tmp_path)
    client = redis.Redis.from_url(redis_url)
    try:
        wait_for(lambda: client.exists("old::lock"), 30, message="RedBeat's beat to take its lock")

        def both_signs() -> Check | None:
            found = check(sqlite_url, redis_url, "old:")
            return found if found is not None and len(found.details) == 2 else None

        alive = wait_for(both_signs, 30, message="the old beat to send ping")
        assert alive is not None and alive.status == "warn"
        assert alive.details[0].startswith("RedBeat's lock old::lock is held (expires in ")
        assert alive.details[1].startswith("ping: redbeat ran 'ping' at ")
        # The command says it too, and a warning does not fail it.
        code, output = run(
            "doctor", "--database-url", sqlite_url, "--broker-url", redis_url, "--timeout",
            "0.5", "--old-scheduler", redis_url, "--key-prefix", "old:", "--format", "json",
        )  # fmt: skip
        report = {c["name"]: c for c in json.loads(output)["checks"]}
        assert report["old-beat"]["status"] == "warn"
        assert code == 1  # no beat of ours runs here
        # An import while it runs says so.
        again = ["import", "--from", "redbeat", redis_url, "--key-prefix", "old:", "--owner",
                 "ops", "--tasks-dir", str(tmp_path / "again")]  # fmt: skip
        result = CliRunner().invoke(main, again)
        assert result.exit_code == 0, result.output
        assert result.stderr.startswith(
            "note: RedBeat's lock old::lock is held, so its beat still runs: stop it first"
        )
        beat.stop()
        wait_for(lambda: not client.exists("old::lock"), 15, message="the lock to be released")
    finally:
        beat.stop()
        client.close()
    ran = check(sqlite_url, redis_url, "old:")
    assert ran is not None and ran.status == "warn" and len(ran.details) == 1
    ping.delete()
    done = check(sqlite_url, redis_url, "old:")
    assert done is not None and done.status == "ok", done
