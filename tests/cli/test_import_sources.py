"""``reconcile import --from``: real Celery ``beat_schedule`` modules, django-celery-beat
tables made by its own migrations, and RedBeat entries written by celery-redbeat.

Each imported task's ``reconcile next`` must equal what the source library says it would
fire next after a run at the same instant.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from click.testing import CliRunner, Result

from reconciler.cli import main
from reconciler.files.loader import load_directory
from reconciler.store.importsources import read_redbeat

NOW = dt.datetime(2026, 3, 4, 10, 7, 30, tzinfo=dt.UTC)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "tasks.d").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RECONCILER_TASKS_DIR", raising=False)
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def next_time(name: str, start: dt.datetime = NOW) -> dt.datetime:
    result = run("next", name, "-n", "1", "--from", start.isoformat(), "--format", "json")
    assert result.exit_code == 0, result.output
    return dt.datetime.fromisoformat(json.loads(result.stdout)["next"][0])


def specs(project: Path) -> dict[str, Any]:
    loaded = load_directory(project / "tasks.d")
    assert loaded.errors == []  # a past one-off's time is warned about, as for any file
    return {task.spec.name: task.spec for task in loaded.tasks}


def celery_next(schedule: Any, last_run_at: dt.datetime = NOW) -> dt.datetime:
    """When the Celery schedule fires next after a run at ``last_run_at``, by Celery."""
    schedule.nowfun = lambda: last_run_at
    remaining: dt.timedelta = schedule.remaining_estimate(last_run_at)
    return last_run_at + remaining


# --- Celery's beat_schedule ------------------------------------------------------------


BEAT_MODULE = """
from datetime import timedelta
from celery import Celery
from celery.schedules import crontab, schedule, solar

app = Celery("old", broker="memory://")
app.conf.timezone = "Europe/Paris"
app.conf.beat_schedule = {
    "Office hours ping": {
        "task": "old.ping",
        "schedule": crontab(minute="*/15", hour="9-17", day_of_week="mon-fri"),
        "args": ("hello", 2),
    },
    "twice a day": {
        "task": "old.report",
        "schedule": crontab(minute=0, hour=[1, 13]),
        "kwargs": {"fmt": "pdf"},
        "options": {"queue": "reports", "priority": 5, "expires": 300.0},
    },
    "月度报表": {"task": "old.monthly", "schedule": crontab(0, 6, day_of_month="1")},
    "every 90 minutes": {"task": "old.sync", "schedule": timedelta(minutes=90)},
    "every 30 s": {"task": "old.poll", "schedule": 30.0},
    "every 2 h": {"task": "old.cleanup", "schedule": schedule(run_every=timedelta(hours=2))},
}
"""


@pytest.fixture
def beat_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    (tmp_path / "old_beat_app.py").write_text(BEAT_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("old_beat_app", None)
    import old_beat_app  # type: ignore[import-not-found]

    yield old_beat_app.app
    sys.modules.pop("old_beat_app", None)


def test_beat_schedule_of_every_kind(project: Path, beat_app: Celery) -> None:
    result = run("import", "--from", "beat-schedule", "old_beat_app:app", "--owner", "ops")
    assert result.exit_code == 0, result.output
    tasks = specs(project)
    assert sorted(tasks) == [
        "every-2-h",
        "every-30-s",
        "every-90-minutes",
        "office-hours-ping",
        "twice-a-day",
        "yuedubaobiao",
    ]
    ping = tasks["office-hours-ping"]
    assert (ping.crontab.expression, ping.timezone) == ("*/15 9-17 * * 1-5", "Europe/Paris")
    assert ping.args == ["hello", 2]
    assert ping.labels == {"imported-from": "beat-schedule", "original-name": "Office hours ping"}
    report = tasks["twice-a-day"]
    assert report.crontab.expression == "0 1,13 * * *"
    assert (report.options.queue, report.options.priority, report.options.expires) == (
        "reports",
        5,
        300,
    )
    assert report.kwargs == {"fmt": "pdf"}
    assert tasks["yuedubaobiao"].description == "月度报表"
    assert tasks["every-90-minutes"].interval.text == "1h30m"
    assert tasks["every-30-s"].interval.total_seconds == 30
    assert (
        "Imported from Celery's beat_schedule"
        in (project / "tasks.d" / "imported" / "every-2-h.yaml").read_text()
    )
    entries = beat_app.conf.beat_schedule
    for name, original in [
        ("office-hours-ping", "Office hours ping"),
        ("twice-a-day", "twice a day"),
        ("yuedubaobiao", "月度报表"),
        ("every-2-h", "every 2 h"),
    ]:
        assert next_time(name) == celery_next(entries[original]["schedule"]), name
    for name, seconds in [("every-90-minutes", 5400), ("every-30-s", 30)]:
        assert next_time(name) == NOW + dt.timedelta(seconds=seconds)


def test_beat_schedule_refusals_name_each_field(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "odd_beat_app.py").write_text(
        textwrap.dedent(
            """
            from celery import Celery
            from celery.schedules import crontab
            app = Celery("odd")
            app.conf.beat_schedule = {
                "routed": {"task": "t.r", "schedule": 60,
                           "options": {"exchange": "x", "routing_key": "r", "queue": "q"}},
                "both days": {"task": "t.b", "schedule": crontab(0, 0, day_of_week=1,
                                                                 day_of_month=13)},
                "fraction": {"task": "t.f", "schedule": 0.5},
            }
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run("import", "--from", "beat-schedule", "odd_beat_app:app", "--owner", "ops")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: odd_beat_app:app beat_schedule: 4 problems; nothing was written\n"
        "  beat_schedule['routed'].options.exchange: \"x\" is not supported by task files "
        "(docs/import.md lists what is); remove it at the source or pass --drop-unsupported\n"
        "  beat_schedule['routed'].options.routing_key: \"***\" is not supported by task files "
        "(docs/import.md lists what is); remove it at the source or pass --drop-unsupported\n"
        "  beat_schedule['both days'].crontab: day_of_month '13' and day_of_week '1' are both "
        "set: Celery fires on days matching both, a task file's crontab on days matching "
        "either; split it into two tasks or keep one of the two fields\n"
        "  beat_schedule['fraction'].interval: 0.5 seconds is not a whole number of seconds; "
        "task files count whole seconds\n"
    )
    assert not (project / "tasks.d" / "imported").exists()


def test_owner_is_required_and_a_broken_module_is_named(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "raising_app.py").write_text("raise RuntimeError('no settings')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run("import", "--from", "beat-schedule", "raising_app:app", "--owner", "ops")
    assert (result.exit_code, result.stderr) == (
        1,
        "error: --app raising_app:app: importing it failed: RuntimeError: no settings\n",
    )
    result = run("import", "--from", "redbeat", "redis://127.0.0.1:6379/0")
    assert (result.exit_code, result.stderr) == (
        2,
        "error: redis://127.0.0.1:6379/0: RedBeat keeps no owner: pass --owner NAME, the team "
        "that may read the tasks' history\n",
    )
    result = run("import", "--from", "redbeat", "redis://x", "--timezone", "Europe/Pariss")
    assert (result.exit_code, result.stderr) == (
        2,
        "error: --timezone: unknown time zone 'Europe/Pariss' (did you mean 'Europe/Paris'?)\n",
    )
    result = run("import", "--from", "redbeat", "redis://127.0.0.1:1/0", "--owner", "ops")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot read RedBeat's keys from Redis: ")


# --- django-celery-beat ----------------------------------------------------------------


DJANGO_SETUP = r"""
import datetime as dt, json, sys
import django
from django.conf import settings

url = sys.argv[1]
now = dt.datetime.fromisoformat(sys.argv[2])
if url.startswith("sqlite"):
    database = {"ENGINE": "django.db.backends.sqlite3", "NAME": url.removeprefix("sqlite:///")}
else:
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    database = {
        "ENGINE": "django.db.backends.postgresql", "NAME": parts.path.lstrip("/"),
        "USER": parts.username or "", "HOST": parts.hostname, "PORT": parts.port or 5432,
    }
settings.configure(
    INSTALLED_APPS=["django_celery_beat"], DATABASES={"default": database},
    USE_TZ=True, TIME_ZONE="UTC",
)
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django_celery_beat.models import (
    ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask,
)
"""
"""django-celery-beat configured on the database URL argv[1] and migrated, its models
imported; ``now`` is argv[2]."""

DJANGO_ROWS = r"""
paris = CrontabSchedule.objects.create(
    minute="30", hour="8", day_of_week="1-5", timezone="Europe/Paris")
utc_cron = CrontabSchedule.objects.create(minute="*/10", hour="*")
every_90 = IntervalSchedule.objects.create(every=90, period=IntervalSchedule.MINUTES)
every_day = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.DAYS)
today = dt.datetime.now(dt.timezone.utc)
past = ClockedSchedule.objects.create(clocked_time=today - dt.timedelta(days=2))
future = ClockedSchedule.objects.create(clocked_time=today + dt.timedelta(days=30))

PeriodicTask.objects.create(
    name="Morning digest", task="app.digest", crontab=paris, args=json.dumps([1]),
    kwargs=json.dumps({"to": "team"}), queue="mail", priority=3, expire_seconds=600,
    last_run_at=now - dt.timedelta(hours=1), description="Sent at 08:30 Paris time")
PeriodicTask.objects.create(name="poll", task="app.poll", crontab=utc_cron, enabled=False)
PeriodicTask.objects.create(name="每日同步", task="app.sync", interval=every_90)
PeriodicTask.objects.create(name="daily", task="app.daily", interval=every_day)
PeriodicTask.objects.create(
    name="launch", task="app.launch", clocked=future, one_off=True)
PeriodicTask.objects.create(
    name="old launch", task="app.launch", clocked=past, one_off=True)

fire = {}
for task in PeriodicTask.objects.filter(clocked__isnull=True, solar__isnull=True):
    schedule = task.schedule
    schedule.nowfun = lambda: now
    fire[task.name] = (now + schedule.remaining_estimate(now)).isoformat()
print(json.dumps(fire))
"""


def run_django(url: str, script: str, now: dt.datetime = NOW) -> str:
    """``script`` after ``DJANGO_SETUP`` (django-celery-beat's tables created by its own
    migrations), in a process of its own (Django is configured once per process); its
    output."""
    done = subprocess.run(
        [sys.executable, "-c", DJANGO_SETUP + script, url, now.isoformat()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def fill_django_celery_beat(url: str) -> dict[str, dt.datetime]:
    """Fill django-celery-beat's tables through its models; the next fire time of each
    periodic row after a run at NOW, by django-celery-beat."""
    fire: dict[str, str] = json.loads(run_django(url, DJANGO_ROWS))
    return {name: dt.datetime.fromisoformat(text) for name, text in fire.items()}


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_django_celery_beat(project: Path, backend: str, request: pytest.FixtureRequest) -> None:
    url = (
        f"sqlite:///{project / 'django.db'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    fire = fill_django_celery_beat(url)
    result = run("import", "--from", "django-celery-beat", url, "--owner", "web")
    assert result.exit_code == 0, result.output
    tasks = specs(project)
    assert sorted(tasks) == [
        "daily",
        "launch",
        "meiritongbu",
        "morning-digest",
        "old-launch",
        "poll",
    ]
    digest = tasks["morning-digest"]
    assert (digest.crontab.expression, digest.timezone) == ("30 8 * * 1-5", "Europe/Paris")
    assert (digest.args, digest.kwargs) == ([1], {"to": "team"})
    assert (digest.options.queue, digest.options.priority, digest.options.expires) == (
        "mail",
        3,
        600,
    )
    assert digest.description == "Morning digest: Sent at 08:30 Paris time"
    assert digest.labels["imported-from"] == "django-celery-beat"
    assert tasks["poll"].enabled is False
    assert tasks["meiritongbu"].interval.text == "1h30m"
    assert tasks["launch"].type == "scheduled" and tasks["launch"].enabled is True
    # a clocked one-off in the past may have run: held back
    assert tasks["old-launch"].type == "scheduled" and tasks["old-launch"].enabled is False
    assert "Written disabled, as they may already have run: old-launch" in result.stdout
    for name, original in [
        ("morning-digest", "Morning digest"),
        ("poll", "poll"),
        ("meiritongbu", "每日同步"),
        ("daily", "daily"),
    ]:
        assert next_time(name) == fire[original], name


SOLAR_AND_ROUTED = r"""
from django_celery_beat.models import SolarSchedule
dawn = SolarSchedule.objects.create(event="sunrise", latitude=48.85, longitude=2.35)
PeriodicTask.objects.create(name="dawn", task="app.dawn", solar=dawn)
PeriodicTask.objects.create(
    name="routed", task="app.r", interval=every_90, exchange="x", routing_key="r",
    headers=json.dumps({"auth_token": "s3cret", "trace": "on"}))
PeriodicTask.objects.create(name="once later", task="app.o", interval=every_90, one_off=True)
PeriodicTask.objects.create(
    name="expired", task="app.e", interval=every_day, expires=today - dt.timedelta(days=1))
"""


def test_django_celery_beat_refusals_and_drop_unsupported(project: Path) -> None:
    url = f"sqlite:///{project / 'django.db'}"
    run_django(url, DJANGO_ROWS.replace("fire = {}", SOLAR_AND_ROUTED + "fire = {}"))
    result = run("import", "--from", "django-celery-beat", url, "--owner", "web")
    assert result.exit_code == 1
    problems = result.stderr.splitlines()
    assert problems[0] == f"error: {url}: 4 problems; nothing was written"
    assert problems[1:] == [
        "  periodic_task[7].schedule: a solar schedule (sunrise, sunset... at a place) has no "
        "equivalent in task files; write a crontab near the times it fires and import the rest",
        '  periodic_task[8].exchange: "x" is not supported by task files (docs/import.md lists '
        "what is); remove it at the source or pass --drop-unsupported",
        '  periodic_task[8].routing_key: "***" is not supported by task files (docs/import.md '
        "lists what is); remove it at the source or pass --drop-unsupported",
        '  periodic_task[8].headers: {"auth_token": "***", "trace": "on"} is not supported by '
        "task files (docs/import.md lists what is); remove it at the source or pass "
        "--drop-unsupported",
    ]
    assert "s3cret" not in result.output
    assert not (project / "tasks.d" / "imported").exists()
    result = run(
        "import", "--from", "django-celery-beat", url, "--owner", "web", "--drop-unsupported"
    )
    assert result.exit_code == 1  # a solar schedule is refused still
    assert result.stderr.splitlines() == [
        f"error: {url}: 1 problem; nothing was written",
        problems[1],
    ]
    with sqlite3.connect(project / "django.db") as connection:
        connection.execute("DELETE FROM django_celery_beat_periodictask WHERE name = 'dawn'")
    result = run(
        "import",
        "--from",
        "django-celery-beat",
        url,
        "--owner",
        "web",
        "--drop-unsupported",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    report = {item["name"]: item for item in json.loads(result.stdout)["imported"]}
    assert report["routed"]["source"] == "periodic_task[8]"
    assert report["morning-digest"]["last_run_at"] == (NOW - dt.timedelta(hours=1)).isoformat()
    assert report["routed"]["last_run_at"] is None
    assert report["routed"]["notes"][:1] == [
        'exchange: "x" is not supported by task files (docs/import.md lists what is); '
        "dropped (--drop-unsupported)"
    ]
    tasks = specs(project)
    assert tasks["routed"].options.queue is None and tasks["routed"].interval.text == "1h30m"
    # one_off on an interval fires once, at the interval's next time: a scheduled task
    once = tasks["once-later"]
    assert once.type == "scheduled" and once.enabled is True
    assert abs(once.at - dt.datetime.now(dt.UTC) - dt.timedelta(minutes=90)) < dt.timedelta(
        minutes=1
    )
    # an absolute expiry in the past: the old scheduler would never send it again
    assert tasks["expired"].enabled is False
    assert report["expired"]["notes"][0].startswith("expires: it expired at ")


def test_django_celery_beat_without_its_tables(project: Path) -> None:
    url = f"sqlite:///{project / 'empty.db'}"
    result = run("import", "--from", "django-celery-beat", url, "--owner", "web")
    assert result.exit_code == 1
    assert "no table django_celery_beat_periodictask" in result.stderr


# --- RedBeat ---------------------------------------------------------------------------


def test_redbeat(project: Path, redis_url: str) -> None:
    from celery.schedules import crontab, schedule
    from redbeat import RedBeatSchedulerEntry  # type: ignore[import-untyped]

    app = Celery("old", broker="memory://")
    app.conf.update(redbeat_redis_url=redis_url, redbeat_key_prefix="old:", timezone="UTC")
    entries = {
        "nightly": RedBeatSchedulerEntry(
            "nightly",
            "app.nightly",
            crontab(minute=15, hour=2),
            args=[1],
            kwargs={"full": True},
            options={"queue": "batch"},
            app=app,
        ),
        "Heartbeat 心跳": RedBeatSchedulerEntry(
            "Heartbeat 心跳", "app.beat", schedule(dt.timedelta(seconds=45)), app=app
        ),
        "paused": RedBeatSchedulerEntry(
            "paused", "app.p", crontab(minute="*/5"), enabled=False, app=app
        ),
    }
    for entry in entries.values():
        entry.save()
    entries["nightly"].reschedule(last_run_at=NOW - dt.timedelta(hours=3))
    # An interval counts from its last run, carried into the file as last_run.
    entries["Heartbeat 心跳"].reschedule(last_run_at=NOW)
    result = run("import", "--from", "redbeat", redis_url, "--key-prefix", "old:", "--owner", "ops")
    assert result.exit_code == 0, result.output
    tasks = specs(project)
    assert sorted(tasks) == ["heartbeat-xintiao", "nightly", "paused"]
    nightly = tasks["nightly"]
    assert (nightly.crontab.expression, nightly.args, nightly.kwargs) == (
        "15 2 * * *",
        [1],
        {"full": True},
    )
    assert nightly.options.queue == "batch"
    assert tasks["paused"].enabled is False
    last_runs = {entry["name"]: entry["last_run_at"] for entry in read_redbeat(redis_url, "old:")}
    assert last_runs["nightly"] == NOW - dt.timedelta(hours=3)
    assert (nightly.last_run, tasks["heartbeat-xintiao"].last_run) == (last_runs["nightly"], NOW)
    assert tasks["heartbeat-xintiao"].labels == {
        "imported-from": "redbeat",
        "original-name": "Heartbeat 心跳",
    }
    for name, original in [
        ("nightly", "nightly"),
        ("heartbeat-xintiao", "Heartbeat 心跳"),
        ("paused", "paused"),
    ]:
        assert next_time(name) == celery_next(entries[original].schedule), name


# --- a watch loop applying the folder ----------------------------------------------------


def test_import_says_when_a_watch_loop_applies_the_folder(
    project: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import socket

    from reconciler.store import heartbeats
    from reconciler.store.database import Database

    database = Database.open(sqlite_url)
    now = dt.datetime.now(dt.UTC)
    naming = heartbeats.Naming(
        heartbeats.WATCHES,
        "deploy-watch",
        "instance-1",
        socket.gethostname(),
        os.getpid(),
        now,
        settle=dt.timedelta(seconds=20),
        stale=heartbeats.WATCH_ALIVE_WITHIN,
    )
    values = {"tasks_dir": str((project / "tasks.d").absolute())}
    assert heartbeats.write(database, naming, now, values)
    database.dispose()
    monkeypatch.setenv("RECONCILER_DATABASE_URL", sqlite_url)
    payload = {"name": "now", "task_type": "async", "celery_task_name": "app.ping"}
    (project / "old.json").write_text(json.dumps([payload]))
    result = run("import", "old.json", "--owner", "ops")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"note: the watch loop deploy-watch (pid {os.getpid()}) applies tasks.d: the files "
        "apply as soon as they are written (one-offs that may have run are written disabled)\n"
        "note: wrote schemas/task.schema.json, the schema the files' first line names "
        "(editors check the fields with it)\n"
    )
    assert specs(project)["now"].enabled is False
