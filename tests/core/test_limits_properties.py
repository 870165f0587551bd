"""Property: a task file ``validate`` accepts applies, and is served and shown without error.

Hypothesis writes whole task files with values around every limit (lengths, control
characters, 64-bit integers, non-finite floats, ``at`` near the years 1 and 9999 in
extreme zones, non-ASCII digits, host zone names). Whatever ``load_directory`` accepts
must apply on SQLite and PostgreSQL, be served by every read endpoint (task list, task
detail, status, executions; JSON and CSV) and be shown by ``reconcile status``,
``next`` and ``history``.
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import update

from reconciler.apply import reconcile
from reconciler.cli import main
from reconciler.core.cronsyntax import CRON_FIELDS
from reconciler.files.loader import load_directory
from reconciler.store import outbox, scheduling
from reconciler.store.database import Database
from reconciler.store.tables import TaskExecution
from reconciler.web import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx2
    from fastapi.testclient import TestClient

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

ZONES = [
    "UTC",
    "Asia/Tokyo",
    "America/New_York",
    "Pacific/Kiritimati",  # UTC+14
    "Etc/GMT+12",  # UTC-12
    "Europe/Berlin",
]
HOSTILE_CHARACTERS = ["\x00", "\x1b", "\x7f", "\n", "\t", "\u0663", "\uff15"]
printable = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"))


class Values:
    """Value strategies for one file: within every limit (up to the limit itself), or
    ``hostile``, also just past them (control characters, 2**63, .inf, 'localtime', ...)."""

    def __init__(self, hostile: bool) -> None:
        self.hostile = hostile
        characters = (
            st.one_of(printable, st.sampled_from(HOSTILE_CHARACTERS)) if hostile else printable
        )
        self.characters = characters
        big = [2**63 - 1, -(2**63)] + ([2**63, -(2**63) - 1, 2**64, 10**30] if hostile else [])
        self.integers = st.one_of(st.integers(-1000, 1000), st.sampled_from(big))
        self.floats = st.floats(allow_nan=hostile, allow_infinity=hostile)
        self.json = st.recursive(
            st.one_of(st.none(), st.booleans(), self.integers, self.floats, self.text()),
            lambda inner: st.one_of(
                st.lists(inner, max_size=3), st.dictionaries(self.text(1, 6), inner, max_size=3)
            ),
            max_leaves=8,
        )
        self.zones = st.sampled_from(ZONES + (["localtime", "posixrules"] if hostile else []))

    def text(
        self, min_size: int = 0, max_size: int = 12, near: int | None = None
    ) -> st.SearchStrategy[str]:
        """Short strings, or (with ``near``) strings of about the limit ``near``."""
        short = st.text(self.characters, min_size=min_size, max_size=max_size)
        if near is None:
            return short
        over = 1 if self.hostile else 0
        return st.one_of(short, st.integers(near - 2, near + over).map(lambda n: "x" * n))

    def crontab(self) -> st.SearchStrategy[str]:
        fields = [
            st.one_of(st.just("*"), st.integers(low, high).map(str), st.just(f"{low}-{high}/2"))
            for _, low, high in CRON_FIELDS
        ]
        if self.hostile:
            fields = [
                st.one_of(f, st.sampled_from(["61", "\u0663", "\uff15", "30"])) for f in fields
            ]
        return st.tuples(*fields).map(" ".join)

    def interval(self) -> st.SearchStrategy[dict[str, Any]]:
        minutes = st.integers(0, 59)
        return st.fixed_dictionaries(
            {"seconds": st.integers(1, 59)},
            optional={
                "days": st.integers(0, 3),
                "hours": st.integers(0, 23),
                "minutes": st.one_of(minutes, st.just("\uff15")) if self.hostile else minutes,
            },
        )


instants = st.one_of(
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59)),
    st.datetimes(min_value=dt.datetime(9999, 12, 29), max_value=dt.datetime(9999, 12, 31, 23)),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(1, 1, 3)),
    st.datetimes(min_value=dt.datetime(2030, 1, 1), max_value=dt.datetime(2040, 1, 1)),
)
at_text = st.tuples(instants, st.booleans()).map(
    lambda pair: pair[0].isoformat() + ("Z" if pair[1] else "")
)


@st.composite
def task_documents(draw: st.DrawFn, name: str, values: Values) -> dict[str, Any]:
    kind = draw(st.sampled_from(["async", "scheduled", "periodic", "periodic"]))
    document: dict[str, Any] = {
        "name": name,
        "owner": draw(values.text(1, 12, near=200)),
        "type": kind,
        "task": draw(st.one_of(st.just("app.worker.test_celery"), values.text(1, 12, near=300))),
        "timezone": draw(values.zones),
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "description": values.text(0, 40, near=4000),
        "args": st.lists(values.json, max_size=3),
        "kwargs": st.dictionaries(values.text(1, 6), values.json, max_size=3),
        "enabled": st.booleans(),
        "labels": st.dictionaries(values.text(1, 6), values.text(0, 8, near=200), max_size=2),
        "options": st.fixed_dictionaries(
            {},
            optional={
                "queue": values.text(1, 8, near=255),
                "priority": st.integers(0, 9),
                "expires": st.sampled_from(
                    [1, 3600, 2**31 - 1] + ([2**31] if values.hostile else [])
                ),
            },
        ),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            document[key] = draw(strategy)
    if kind == "scheduled":
        document["at"] = draw(at_text)
    elif kind == "periodic":
        schedule = st.one_of(
            values.crontab().map(lambda c: {"crontab": c}),
            values.interval().map(lambda i: {"interval": i}),
        )
        document.update(draw(schedule))
    return document


@st.composite
def task_files(draw: st.DrawFn) -> tuple[dict[str, Any], ...]:
    values = Values(hostile=draw(st.integers(0, 3)) == 0)
    count = draw(st.integers(1, 3))
    return tuple(draw(task_documents(f"t{index}", values)) for index in range(count))


@pytest.fixture
def served(database_url: str) -> Iterator[tuple[Database, TestClient, str]]:
    db = Database.open(database_url)
    with TestClient(create_app(db)) as client:
        yield db, client, database_url
    db.dispose()


def record_execution(db: Database, name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
    """An execution that ran with the task's arguments and echoed them in its result."""
    task_id = str(uuid.uuid4())
    now = dt.datetime.now(dt.UTC)
    with scheduling.transaction(db) as session:
        outbox.insert_executions(
            session, [outbox.NewExecution(name, task_id, "manual", None, args, kwargs, now)]
        )
        session.execute(
            update(TaskExecution)
            .where(TaskExecution.celery_task_id == task_id)
            .values(status="success", finished_at=now, result={"args": args, "kwargs": kwargs})
        )


@SETTINGS
@given(documents=task_files())
def test_what_validate_accepts_applies_and_is_served(
    served: tuple[Database, TestClient, str], tmp_path: Path, documents: tuple[dict[str, Any], ...]
) -> None:
    db, client, url = served
    tasks = tmp_path / "tasks.d"
    shutil.rmtree(tasks, ignore_errors=True)
    tasks.mkdir()
    text = yaml.safe_dump_all(documents, allow_unicode=True, sort_keys=False)
    (tasks / "t.yaml").write_text(text, encoding="utf-8")
    note(text)
    loaded = load_directory(tasks)
    event(f"accepted {len(loaded.tasks)} of {len(documents)}" if loaded.ok else "refused")
    if not loaded.ok:
        return  # refused, located: the loader's own property tests cover that
    reconcile(db, tasks, allow_mass_delete=True)
    runner = CliRunner()
    for task in loaded.tasks:
        name = task.spec.name
        record_execution(db, name, task.spec.args, task.spec.kwargs)
        for path in (
            f"/api/v1/tasks/{name}",
            f"/api/v1/tasks/{name}/status",
            f"/api/v1/tasks/{name}/executions",
            f"/api/v1/tasks/{name}/executions?format=csv",
        ):
            response = client.get(path)
            assert response.status_code == 200, (path, response.text)
        shown = runner.invoke(main, ["next", name, "--tasks-dir", str(tasks)])
        assert shown.exit_code == 0, shown.output
        history = runner.invoke(main, ["history", name, "--database-url", url])
        assert history.exit_code == 0, history.output
    for path in (
        "/api/v1/tasks",
        "/api/v1/tasks?format=csv",
        "/api/v1/executions",
        "/api/v1/executions?format=csv",
    ):
        response = client.get(path)
        assert response.status_code == 200, (path, response.text)
    listed = client.get("/api/v1/executions").json()
    for item in listed["items"][:3]:
        response = client.get(f"/api/v1/tasks/executions/{item['id']}")
        assert response.status_code == 200, response.text
    for output_format in ("text", "json"):
        status = runner.invoke(main, ["status", "--database-url", url, "--format", output_format])
        assert status.exit_code == 0, status.output
