"""Validate is the whole gate: what the database, the broker or the endpoint would refuse,
``validate`` refuses first, located and with the limit (docs/task-files.md, "Limits").

Each case is a file as it was found to pass ``validate`` and then fail at apply, in
``status``/``next`` or on the endpoint; the apply seam, the watch daemon and the smaller
gaps (a crontab that never fires, merge keys, psycopg2 URLs, ``db current``) follow.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from reconciler.apply import apply_loaded, reconcile
from reconciler.cli import main
from reconciler.core.spec import TaskSpec
from reconciler.errors import ConfigError, StateRefused
from reconciler.files.loader import LoadResult, load_directory
from reconciler.files.taskfile import LoadedTask
from reconciler.ops.watch import Watcher, WatchOptions
from reconciler.store.database import Database
from reconciler.store.tables import Task
from reconciler.web import create_app
from tests.support import wait_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx2
    from fastapi.testclient import TestClient

HEAD = "name: {name}\nowner: o\ntype: async\ntask: app.worker.test_celery\n"


def stored_tasks(session: Session) -> int:
    """How many rows the tasks table holds."""
    return int(session.scalar(select(func.count()).select_from(Task)) or 0)


def load(tmp_path: Path, text: str) -> LoadResult:
    tasks = tmp_path / "tasks.d"
    tasks.mkdir(exist_ok=True)
    (tasks / "t.yaml").write_text(text, encoding="utf-8")
    return load_directory(tasks)


# (id, file text, line, field, words the message must hold)
REFUSED = [
    (
        "nul-in-task",
        'name: a\nowner: o\ntype: async\ntask: "app.worker\\0.x"\n',
        4,
        "task",
        "control character NUL",
    ),
    ("nul-in-owner", 'name: a\nowner: "o\\0x"\ntype: async\ntask: t\n', 2, "owner", "NUL"),
    (
        "nul-in-description",
        HEAD.format(name="a") + 'description: "a\\0b"\n',
        5,
        "description",
        "NUL",
    ),
    ("escape-in-owner", 'name: a\nowner: "o\\ex"\ntype: async\ntask: t\n', 2, "owner", "U+001B"),
    (
        "owner-201",
        f"name: a\nowner: {'o' * 201}\ntype: async\ntask: t\n",
        2,
        "owner",
        "201 characters long, over the limit of 200",
    ),
    (
        "task-301",
        f"name: a\nowner: o\ntype: async\ntask: {'t' * 301}\n",
        4,
        "task",
        "301 characters long, over the limit of 300",
    ),
    (
        "description-4001",
        HEAD.format(name="a") + f"description: {'d' * 4001}\n",
        5,
        "description",
        "over the limit of 4000",
    ),
    (
        "queue-256-bytes",
        HEAD.format(name="a") + f"options: {{queue: {'é' * 128}}}\n",
        5,
        "options.queue",
        "256 bytes long, over the limit of 255",
    ),
    (
        "hex-4000-digits",
        HEAD.format(name="a") + f"kwargs: {{x: 0x{'f' * 4000}}}\n",
        5,
        "kwargs.x",
        "beyond the 64-bit range",
    ),
    (
        "hex-4000-digits-in-interval",
        "name: a\nowner: o\ntype: periodic\ntask: t\n" + f"interval: {{minutes: 0x{'f' * 4000}}}\n",
        5,
        "interval.minutes",
        "an integer of 16000 bits is beyond the 64-bit range",
    ),
    (
        "int-10e30",
        HEAD.format(name="a") + "kwargs: {n: 1000000000000000000000000000000}\n",
        5,
        "kwargs.n",
        "an integer of 31 digits is beyond the 64-bit range",
    ),
    (
        "int-below-int64-in-args",
        HEAD.format(name="a") + "args: [1, [-9223372036854775809]]\n",
        5,
        "args[1][0]",
        "beyond the 64-bit range",
    ),
    ("nul-in-kwargs-key", HEAD.format(name="a") + 'kwargs: {"k\\0": 1}\n', 5, "kwargs", "NUL"),
    ("nul-in-args", HEAD.format(name="a") + 'args: ["x\\0"]\n', 5, "args[0]", "NUL"),
    ("infinite-float", HEAD.format(name="a") + "kwargs: {f: .inf}\n", 5, "kwargs.f", "inf"),
    (
        "expires-beyond-32-bits",
        HEAD.format(name="a") + "options: {expires: 2147483648}\n",
        5,
        "options.expires",
        "at most 2147483647",
    ),
    (
        "label-with-line-break",
        HEAD.format(name="a") + 'labels: {team: "a\\nb"}\n',
        5,
        "labels.team",
        "U+000A",
    ),
    (
        "at-9999-new-york",
        "name: a\nowner: o\ntype: scheduled\ntask: t\ntimezone: America/New_York\n"
        "at: 9999-12-31T23:00:00\n",
        6,
        "at",
        "out of range: it must lie between 0001-01-02T00:00:00+00:00 and 9999-12-30T23:59:59",
    ),
    (
        "at-9999-utc-in-tokyo",
        "name: a\nowner: o\ntype: scheduled\ntask: t\ntimezone: Asia/Tokyo\n"
        "at: '9999-12-31T23:59:59Z'\n",
        6,
        "at",
        "so that it is a date in every time zone",
    ),
    (
        "at-year-1-in-tokyo",
        "name: a\nowner: o\ntype: scheduled\ntask: t\ntimezone: Asia/Tokyo\n"
        "at: '0001-01-01T00:00:00'\n",
        6,
        "at",
        "out of range",
    ),
    (
        "arabic-indic-digit",
        "name: a\nowner: o\ntype: periodic\ntask: t\ncrontab: '\u0663 * * * *'\n",
        5,
        "crontab",
        "digits other than ASCII 0-9",
    ),
    (
        "full-width-digit",
        "name: a\nowner: o\ntype: periodic\ntask: t\ncrontab: {minute: '\uff15'}\n",
        5,
        "crontab.minute",
        "digits other than ASCII 0-9",
    ),
    (
        "full-width-interval",
        "name: a\nowner: o\ntype: periodic\ntask: t\ninterval: {minutes: '\uff15'}\n",
        5,
        "interval.minutes",
        "expected an integer",
    ),
    (
        "localtime",
        "name: a\nowner: o\ntype: periodic\ntask: t\ncrontab: '0 9 * * *'\ntimezone: localtime\n",
        6,
        "timezone",
        "unknown time zone 'localtime'",
    ),
    (
        "posixrules",
        "name: a\nowner: o\ntype: periodic\ntask: t\ncrontab: '0 9 * * *'\ntimezone: posixrules\n",
        6,
        "timezone",
        "unknown time zone 'posixrules'",
    ),
    (
        "two-merge-keys",
        "name: a\n<<: {owner: o, type: async}\n<<: {task: t}\ntask: t\n",
        3,
        "<<",
        "duplicate key '<<'",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [case[1:] for case in REFUSED],
    ids=[case[0] for case in REFUSED],
)
def test_validate_refuses_what_would_fail_later(
    tmp_path: Path, text: str, line: int, field: str, words: str
) -> None:
    result = load(tmp_path, text)
    assert not result.ok
    assert [(d.line, d.field) for d in result.errors] == [(line, field)], result.errors
    assert words in result.errors[0].message


def test_the_limits_themselves_are_accepted(tmp_path: Path) -> None:
    text = (
        f"name: {'n' * 128}\nowner: {'o' * 200}\ntype: scheduled\ntask: {'t' * 300}\n"
        f'description: "{"d" * 3998}\\n\\t"\ntimezone: Asia/Tokyo\n'
        f"at: '9999-12-30T23:59:59Z'\n"
        f"options: {{queue: {'q' * 255}, expires: 2147483647}}\n"
        f'kwargs: {{max: 9223372036854775807, min: -9223372036854775808, s: "tab\\there"}}\n'
    )
    result = load(tmp_path, text)
    assert result.ok, result.errors


def test_a_crontab_that_never_fires_is_a_warning(tmp_path: Path) -> None:
    never = "name: n\nowner: o\ntype: periodic\ntask: t\ncrontab: '0 0 30 2 *'\n"
    leap = "name: l\nowner: o\ntype: periodic\ntask: t\ncrontab: '0 0 29 2 *'\n"
    result = load(tmp_path, never + "---\n" + leap)
    assert result.ok
    (warning,) = result.warnings
    assert (warning.line, warning.field) == (5, "crontab")
    assert "'0 0 30 2 *' never fires" in warning.message


def test_validate_cli_and_a_dry_run_print_the_never_fires_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    tasks = Path("tasks.d")
    tasks.mkdir()
    (tasks / "n.yaml").write_text(
        "name: n\nowner: o\ntype: periodic\ntask: t\ncrontab: 0 0 31 4 *\n"
    )
    validated = CliRunner().invoke(main, ["validate"])
    assert validated.exit_code == 0
    assert "warning: tasks.d/n.yaml:5:10: crontab: '0 0 31 4 *' never fires" in validated.output
    planned = CliRunner().invoke(
        main, ["apply", "--dry-run", "--database-url", f"sqlite:///{tmp_path}/s.db"]
    )
    assert planned.exit_code == 0, planned.output
    assert "'0 0 31 4 *' never fires" in planned.stderr


# --- the issue's examples, end to end --------------------------------------------------


def test_apply_refuses_the_issue_files_located_and_writes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.d"
    tasks.mkdir()
    (tasks / "nul.yaml").write_text(
        'name: nul\nowner: "bill\\0ing"\ntype: async\ntask: "app\\0.x"\ndescription: "a\\0b"\n'
    )
    (tasks / "long.yaml").write_text(
        f"name: long\nowner: {'o' * 201}\ntype: async\ntask: {'t' * 301}\n"
    )
    (tasks / "bigint.yaml").write_text(
        "name: bigint\nowner: o\ntype: async\ntask: app.worker.test_celery\n"
        "kwargs: {n: 1000000000000000000000000000000}\n"
    )
    result = CliRunner().invoke(
        main, ["apply", "--database-url", database_url, "--tasks-dir", str(tasks)]
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    for where in (
        "bigint.yaml:5:13: kwargs.n:",
        "long.yaml:2:8: owner: is 201 characters long, over the limit of 200",
        "long.yaml:4:7: task: is 301 characters long, over the limit of 300",
        "nul.yaml:2:8: owner: contains the control character NUL",
        "nul.yaml:4:7: task: contains the control character NUL",
        "nul.yaml:5:14: description: contains the control character NUL",
    ):
        assert where in result.stderr, result.stderr
    db = Database.open(database_url)
    try:
        with db.session() as session:
            assert stored_tasks(session) == 0
    finally:
        db.dispose()


def test_the_largest_integers_apply_and_are_served(database_url: str, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.d"
    tasks.mkdir()
    (tasks / "bigint.yaml").write_text(
        "name: bigint\nowner: o\ntype: async\ntask: app.worker.test_celery\n"
        "kwargs: {n: 9223372036854775807, m: -9223372036854775808}\n"
    )
    db = Database.open(database_url)
    try:
        assert reconcile(db, tasks).applied
        with TestClient(create_app(db)) as client:
            response = client.get("/api/v1/tasks/bigint")
        assert response.status_code == 200, response.text
        assert response.json()["definition"]["kwargs"] == {
            "n": 2**63 - 1,
            "m": -(2**63),
        }
    finally:
        db.dispose()


def test_the_latest_at_in_tokyo_is_shown_by_status_and_next(
    sqlite_url: str, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.d"
    tasks.mkdir()
    (tasks / "late.yaml").write_text(
        "name: late\nowner: o\ntype: scheduled\ntask: app.worker.test_celery\n"
        "timezone: Asia/Tokyo\nat: '9999-12-30T23:59:59Z'\n"
    )
    db = Database.open(sqlite_url)
    try:
        assert reconcile(db, tasks).applied
    finally:
        db.dispose()
    runner = CliRunner()
    status = runner.invoke(main, ["status", "--database-url", sqlite_url])
    assert status.exit_code == 0, status.output
    assert "9999-12-31" in status.output  # shown in the task's zone
    upcoming = runner.invoke(main, ["next", "late", "--tasks-dir", str(tasks)])
    assert upcoming.exit_code == 0, upcoming.output
    assert "9999-12-31" in upcoming.output


# --- the apply seam ------------------------------------------------------------------------


def unchecked(name: str, **fields: object) -> LoadResult:
    """A desired state that skipped validation: what the seam sees if validate misses one."""
    spec = TaskSpec.model_validate(
        {"name": name, "owner": "o", "type": "async", "task": "app.worker.test_celery"}
    )
    bad = spec.model_copy(update=fields)
    return LoadResult([LoadedTask(bad, "tasks.d/x.yaml", 1)], [], 1)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "fields",
    [{"owner": "o" * 201}, {"task": "t" * 301}, {"owner": "bill\x00ing"}],
    ids=["owner-201", "task-301", "nul-owner"],
)
def test_what_the_database_refuses_is_one_line_naming_the_task(
    postgres_url: str, tmp_path: Path, fields: dict[str, object]
) -> None:
    db = Database.open(postgres_url)
    try:
        with pytest.raises(StateRefused) as refused:
            apply_loaded(db, unchecked("refused", **fields), tmp_path)
        message = str(refused.value)
        assert "\n" not in message
        assert message.startswith("the database refused to store task 'refused': ")
        assert message.endswith("nothing applied, fix the task file")
        with db.session() as session:
            assert stored_tasks(session) == 0
    finally:
        db.dispose()


# --- watch: a refused state is reported once, then it waits for a change -----------------


ATTEMPTS = """
CREATE SEQUENCE attempts;
CREATE FUNCTION refuse_owner() RETURNS trigger AS $$
BEGIN
  PERFORM nextval('attempts');
  IF NEW.owner = 'refused' THEN
    RAISE EXCEPTION 'owner % is refused here', NEW.owner USING ERRCODE = '22023';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER refuse_owner BEFORE INSERT OR UPDATE ON tasks
  FOR EACH ROW EXECUTE FUNCTION refuse_owner();
"""


def conninfo(url: str) -> str:
    """The database URL as psycopg takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def attempts(url: str) -> int:
    """Rows the tasks table was asked to take (a sequence: rollbacks do not undo it)."""
    with psycopg.connect(conninfo(url)) as connection:
        row = connection.execute("SELECT last_value, is_called FROM attempts").fetchone()
    assert row is not None
    return int(row[0]) if row[1] else 0


def refuse_owners(url: str) -> None:
    """Make the database refuse any task whose owner is 'refused' (and count attempts)."""
    Database.open(url).dispose()
    with psycopg.connect(conninfo(url)) as connection:
        connection.execute(ATTEMPTS)  # type: ignore[arg-type]


@pytest.mark.postgres
def test_apply_cli_reports_a_refusal_in_one_line_without_a_traceback(
    postgres_url: str, tmp_path: Path
) -> None:
    refuse_owners(postgres_url)
    tasks = tmp_path / "tasks.d"
    tasks.mkdir()
    (tasks / "a.yaml").write_text(HEAD.format(name="a").replace("owner: o", "owner: refused"))
    result = CliRunner().invoke(
        main, ["apply", "--database-url", postgres_url, "--tasks-dir", str(tasks)]
    )
    assert result.exit_code == 1
    assert result.stderr == (
        "error: the database refused to store task 'a': owner refused is refused here; "
        "nothing applied, fix the task file\n"
    )
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.postgres
def test_a_refusal_among_many_changes_names_the_refused_task(
    postgres_url: str, tmp_path: Path
) -> None:
    refuse_owners(postgres_url)
    tasks = tmp_path / "tasks.d"
    tasks.mkdir()
    for index in range(7):
        owner = "refused" if index == 5 else "o"
        (tasks / f"t{index}.yaml").write_text(
            HEAD.format(name=f"t{index}").replace("owner: o", f"owner: {owner}")
        )
    db = Database.open(postgres_url)
    try:
        with pytest.raises(StateRefused) as refused:
            reconcile(db, tasks)
        assert str(refused.value) == (
            "the database refused to store task 't5': owner refused is refused here; "
            "nothing applied, fix the task file"
        )
        with db.session() as session:
            assert stored_tasks(session) == 0
    finally:
        db.dispose()


@contextlib.contextmanager
def running(daemon: Watcher) -> Iterator[threading.Thread]:
    """The watch daemon running in a thread, stopped and joined on the way out."""
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        daemon.stop()
        thread.join(10)


@pytest.fixture
def watcher(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Watcher, Path]]:
    refuse_owners(postgres_url)
    tasks = tmp_path / "tasks.d"
    tasks.mkdir()
    watcher = Watcher(
        WatchOptions(
            tasks_dir=tasks,
            database_url=postgres_url,
            resync_interval=0.1,
            debounce_ms=20,
            max_backoff=0.1,
        )
    )
    yield watcher, tasks
    watcher.stop()


@pytest.mark.postgres
def test_watch_reports_a_refused_state_once_and_waits_for_a_change(
    watcher: tuple[Watcher, Path], postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    daemon, tasks = watcher
    (tasks / "a.yaml").write_text(HEAD.format(name="a").replace("owner: o", "owner: refused"))
    caplog.set_level(logging.INFO, logger="reconciler.watch")
    with running(daemon) as thread:
        wait_for(lambda: attempts(postgres_url) >= 1, 30, message="first attempt")
        # Many resync intervals and backoff periods later, it has not tried again.
        cycles_then = daemon.cycles
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
        while dt.datetime.now(dt.UTC) < deadline:
            assert thread.is_alive()
            threading.Event().wait(0.1)
        assert attempts(postgres_url) == 1
        refused = [r.message for r in caplog.records if "not applied" in r.message]
        assert len(refused) == 1, refused
        assert "not applied, waiting for a change of the task files" in refused[0]
        assert "task 'a'" in refused[0] and "owner refused is refused here" in refused[0]
        # A change of the files is tried at once, and applies.
        (tasks / "a.yaml").write_text(HEAD.format(name="a"))
        wait_for(lambda: daemon.cycles > cycles_then, 30, message="the fixed state applied")
        assert attempts(postgres_url) == 2
    assert not thread.is_alive()


# --- URLs and the schema revision ----------------------------------------------------------


@pytest.mark.postgres
def test_a_psycopg2_url_is_used_through_psycopg_3(postgres_url: str) -> None:
    url = make_url(postgres_url).set(drivername="postgresql+psycopg2")
    db = Database.open(url.render_as_string(hide_password=False))
    try:
        assert db.engine.url.drivername == "postgresql+psycopg"
        assert db.current_revision() is not None
    finally:
        db.dispose()


def test_another_postgresql_driver_is_refused_with_the_form_to_use() -> None:
    with pytest.raises(
        ConfigError, match=r"'postgresql\+pg8000' is not supported; write postgresql://"
    ):
        Database.open("postgresql+pg8000://u@127.0.0.1/db", upgrade=False)


def test_db_current_exits_1_unless_at_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    runner = CliRunner()
    behind = runner.invoke(main, ["db", "current", "--database-url", url])
    assert behind.exit_code == 1
    assert "none (behind: head is " in behind.output and "reconcile db upgrade" in behind.output
    assert runner.invoke(main, ["db", "upgrade", "--database-url", url]).exit_code == 0
    at_head = runner.invoke(main, ["db", "current", "--database-url", url])
    assert at_head.exit_code == 0 and at_head.output.endswith("(head)\n")
    db = Database.open(url, upgrade=False)
    try:
        with db.engine.begin() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    finally:
        db.dispose()
    ahead = runner.invoke(main, ["db", "current", "--database-url", url])
    assert ahead.exit_code == 1
    assert ahead.output.startswith("9999 (ahead: this celery-reconciler knows revisions up to ")
    assert "upgrade celery-reconciler" in ahead.output


def test_watch_keeps_running_on_the_year_9999_file(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = tmp_path / "tasks.d"
    tasks.mkdir()
    (tasks / "ny.yaml").write_text(
        "name: ny\nowner: o\ntype: scheduled\ntask: t\ntimezone: America/New_York\n"
        "at: 9999-12-31T23:00:00\n"
    )
    caplog.set_level(logging.INFO, logger="reconciler.watch")
    daemon = Watcher(
        WatchOptions(tasks_dir=tasks, database_url=sqlite_url, resync_interval=0.1, debounce_ms=20)
    )
    with running(daemon) as thread:
        wait_for(
            lambda: any("invalid task files" in r.message for r in caplog.records),
            30,
            message="the invalid state reported",
        )
        (tasks / "ny.yaml").write_text(HEAD.format(name="ny"))
        wait_for(lambda: daemon.cycles >= 1, 30, message="the fixed file applied")
        assert thread.is_alive()
    invalid = [r.message for r in caplog.records if "invalid task files" in r.message]
    assert len(invalid) == 1
    assert "at: 9999-12-31T23:00:00 is out of range" in invalid[0]
