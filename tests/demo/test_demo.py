"""The bundled demo app and the example task files (docs/demo.md).

The demo tasks run eagerly here (with execution tracking pointed at a private, migrated
database), and once through a real worker on the embedded SQLite broker.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler import tracking
from reconciler.celeryapp import registered_task_names
from reconciler.demo import DemoFailure, app, prepare_sqlite_broker, sqlite_broker_path
from reconciler.files.loader import load_directory
from reconciler.store.database import Database
from tests.support import ROOT, Process, wait_for

DEMO_TASKS = [
    "app.api.tasks.demo_async_task",
    "app.api.tasks.demo_dynamic_task",
    "app.api.tasks.demo_periodic_task",
    "app.api.tasks.demo_scheduled_task",
    "app.worker.long_running_task",
    "app.worker.test_celery",
]


@pytest.fixture(scope="module")
def tracking_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Eager runs fire the tracking signals; give them a private, migrated database."""
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'state.db'}"
    Database.open(url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECONCILER_DATABASE_URL", url)
        yield url
        tracking.flush()


def run(name: str, *args: Any, **kwargs: Any) -> Any:
    return app.tasks[name].apply(args=args, kwargs=kwargs, throw=True).get()


def test_registers_the_old_task_names() -> None:
    # Other tests' apps may add their shared tasks to every app in this process.
    assert [name for name in registered_task_names(app) if name.startswith("app.")] == DEMO_TASKS


def test_config() -> None:
    conf = app.conf
    assert conf.result_backend is None
    assert conf.task_acks_late is False
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_connection_retry_on_startup is True
    assert (conf.timezone, conf.enable_utc) == ("UTC", True)


@pytest.mark.parametrize("name", DEMO_TASKS)
def test_every_task_fails_on_request(tracking_database: str, name: str) -> None:
    short = name.rsplit(".", 1)[-1]
    message = f"{short} failed on purpose: it was called with fail=True"
    with pytest.raises(DemoFailure, match=re.escape(message)):
        app.tasks[name].apply(
            kwargs={"fail": True, "seconds": 0} if "long" in name else {"fail": True}, throw=True
        )


def test_results(tracking_database: str) -> None:
    assert run("app.worker.test_celery", "Hello World") == {
        "task": "test_celery",
        "message": "test task return Hello World",
        "args": ["Hello World"],
        "kwargs": {},
    }
    assert run("app.api.tasks.demo_async_task", message="hi")["message"] == "hi"
    assert run("app.api.tasks.demo_periodic_task", "tick")["label"] == "tick"
    assert run("app.api.tasks.demo_scheduled_task", "now")["message"] == "now"
    assert run("app.worker.long_running_task", 0.05)["seconds"] == 0.05


@pytest.mark.parametrize("name", DEMO_TASKS)
def test_every_task_takes_the_old_guides_arguments_and_echoes_them(
    tracking_database: str, name: str
) -> None:
    # The old guide's example: ["Hello", "World"] (long_running_task reads a number first).
    args = [0.01, "Hello", "World"] if "long" in name else ["Hello", "World"]
    result = run(name, *args, colour="blue", count=3)
    assert result["args"] == args
    assert result["kwargs"] == {"colour": "blue", "count": 3}


def test_long_running_task_refuses_a_non_number_clearly(tracking_database: str) -> None:
    with pytest.raises(DemoFailure, match="seconds must be a number, got 'Hello'"):
        app.tasks["app.worker.long_running_task"].apply(args=["Hello", "World"], throw=True)


def test_dynamic_task_echoes_and_retries(tracking_database: str) -> None:
    assert run("app.api.tasks.demo_dynamic_task", 1, "two", key="value") == {
        "task": "demo_dynamic_task",
        "args": [1, "two"],
        "kwargs": {"key": "value"},
        "retries": 0,
    }
    task = app.tasks["app.api.tasks.demo_dynamic_task"]
    # Eagerly, a retry runs again at once: the result is that of the last attempt.
    assert task.apply(kwargs={"retries": 2}).get()["retries"] == 2
    failed = task.apply(kwargs={"retries": 1, "fail": True})
    assert isinstance(failed.result, DemoFailure)


def test_sqlite_broker_path_and_its_directory(tmp_path: Path) -> None:
    assert sqlite_broker_path("sqla+sqlite:///.reconciler/broker.db") == Path(
        ".reconciler/broker.db"
    )
    assert sqlite_broker_path("sqla+sqlite:////abs/b.db?timeout=3") == Path("/abs/b.db")
    assert sqlite_broker_path("redis://localhost:6379/0") is None
    assert sqlite_broker_path("sqla+sqlite:///:memory:") is None
    target = tmp_path / "a" / "b" / "broker.db"
    assert prepare_sqlite_broker(f"sqla+sqlite:///{target}") == {"connect_args": {"timeout": 30}}
    assert target.parent.is_dir()
    assert prepare_sqlite_broker("amqp://guest@localhost//") == {}


# --- the example task files ----------------------------------------------------------------


def test_example_files_are_valid_and_cover_every_form() -> None:
    result = load_directory(ROOT / "tasks.d")
    assert result.diagnostics == []
    specs = [loaded.spec for loaded in result.tasks]
    assert {spec.task for spec in specs} <= set(DEMO_TASKS)
    forms = {
        spec.type + ("-crontab" if spec.crontab else "-interval" if spec.interval else "")
        for spec in specs
    }
    assert forms == {"async", "scheduled", "periodic-crontab", "periodic-interval"}
    texts = {loaded.path: Path(loaded.path).read_text() for loaded in result.tasks}
    assert any(re.search(r"^crontab: \"", text, re.M) for text in texts.values())
    assert any(re.search(r"^crontab: \{", text, re.M) for text in texts.values())
    assert any(spec.interval and spec.interval.total_seconds == 10 for spec in specs)
    assert any(not spec.enabled for spec in specs)
    assert any(spec.options.time_limit for spec in specs)
    assert {spec.overlap for spec in specs} == {"allow", "skip"}
    assert {spec.catchup for spec in specs} == {"skip", "once"}
    assert any(spec.labels for spec in specs)
    assert any(spec.timezone != "UTC" for spec in specs)
    assert {spec.owner for spec in specs} >= {"demo", "billing"}


def test_example_files_point_at_the_schema() -> None:
    files = sorted((ROOT / "tasks.d").rglob("*.yaml"))
    assert len({path.parent for path in files}) >= 2
    for path in files:
        first = path.read_text().splitlines()[0]
        prefix = "# yaml-language-server: $schema="
        assert first.startswith(prefix), path
        schema = (path.parent / first.removeprefix(prefix)).resolve()
        assert schema == ROOT / "schemas" / "task.schema.json", path


# --- a real worker on the embedded SQLite broker -------------------------------------------


@pytest.mark.e2e
def test_worker_runs_tasks_on_the_sqlite_broker(tmp_path: Path) -> None:
    broker_url = f"sqla+sqlite:///{tmp_path / 'not-yet' / 'broker.db'}"
    database_url = f"sqlite:///{tmp_path / 'state.db'}"
    Database.open(database_url)
    env = {"RECONCILER_BROKER_URL": broker_url, "RECONCILER_DATABASE_URL": database_url}
    argv = [sys.executable, "-m", "celery", "-A", "reconciler.demo:app", "worker"]
    argv += ["--pool=solo", "--loglevel=INFO", "--without-mingle", "--without-gossip"]
    with (
        pytest.MonkeyPatch.context() as patch,
        Process(argv, tmp_path / "worker.log", env=env, cwd=tmp_path) as worker,
    ):
        patch.setenv("RECONCILER_DATABASE_URL", database_url)
        wait_for(lambda: "ready." in worker.output(), 20, message="the worker to start")
        with app.connection_for_write(broker_url) as connection:
            ok = app.send_task("app.worker.test_celery", ["sqlite"], connection=connection)
            failing = app.send_task(
                "app.api.tasks.demo_async_task", kwargs={"fail": True}, connection=connection
            )
            retried = app.send_task(
                "app.api.tasks.demo_dynamic_task", kwargs={"retries": 1}, connection=connection
            )
        wait_for(
            lambda: (
                f"[{ok.id}] succeeded" in worker.output()
                and f"[{failing.id}] raised unexpected: DemoFailure" in worker.output()
                and f"[{retried.id}] succeeded" in worker.output()
            ),
            15,
            message="the three tasks to finish",
        )
        log = worker.output()
        assert "test task return sqlite" in log
        assert f"[{retried.id}] retry: Retry in 0.2s: DemoRetry" in log
        tracking.flush()
