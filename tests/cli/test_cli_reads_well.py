"""The command line in a terminal: ``status`` within the width, one wording of schedules
(CLI and API), the help text, and ``history`` times in the task's zone or UTC."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import warnings
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from reconciler.cli import COMMANDS, main
from reconciler.cli.fit import ELLIPSIS
from reconciler.store.database import Database
from reconciler.store.executions import ExecutionUpdate, apply_updates
from reconciler.vocabulary import Status
from reconciler.web import create_app
from tests.factories import task_yaml

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx2
    from fastapi.testclient import TestClient

LONG_NAME = "nightly-reconciliation-of-every-ledger-account"
# The wording of each kind of schedule, the same in status, next and the API.
WORDS = {
    "berlin-weekdays": "At 07:30, Monday through Friday (Europe/Berlin)",
    "every": "every 1h30m",
    "launch": "once at 2030-06-01 09:00 Europe/Berlin",
    "hello": "once, as soon as it is applied",
    LONG_NAME: "Every 15 minutes, between 08:00 and 18:59, on day 1 and 15 of the month "
    "(America/Argentina/Buenos_Aires)",
}


def run(*args: str, columns: int | None = None) -> Result:
    env = {"COLUMNS": str(columns) if columns else None}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tasks = tmp_path_factory.mktemp("cli") / "tasks.d"
    tasks.mkdir()
    files = {
        "berlin-weekdays": task_yaml(
            "berlin-weekdays", crontab="30 7 * * 1-5", timezone="Europe/Berlin", owner="ops"
        ),
        "every": task_yaml("every", crontab=None, interval={"hours": 1, "minutes": 30}),
        "launch": task_yaml(
            "launch",
            type="scheduled",
            crontab=None,
            at="2030-06-01T09:00:00",
            timezone="Europe/Berlin",
        ),
        "hello": task_yaml("hello", type="async", crontab=None),
        LONG_NAME: task_yaml(
            LONG_NAME,
            crontab="*/15 8-18 1,15 * *",
            timezone="America/Argentina/Buenos_Aires",
            owner="finance-platform-team",
            enabled=False,
        ),
    }
    for name, text in files.items():
        (tasks / f"{name}.yaml").write_text(text)
    return tasks


@pytest.fixture(scope="module")
def url(tasks_dir: Path) -> str:
    database_url = f"sqlite:///{tasks_dir.parent / 'state.db'}"
    result = run("--tasks-dir", str(tasks_dir), "--database-url", database_url)
    assert result.exit_code == 0, result.output
    return database_url


# --- status within the terminal --------------------------------------------------------


@pytest.mark.parametrize("columns", [80, 120])
def test_status_fits_the_terminal_and_marks_what_it_cut(url: str, columns: int) -> None:
    result = run("status", "--database-url", url, columns=columns)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines and all(len(line) <= columns for line in lines), [
        (len(line), line) for line in lines if len(line) > columns
    ]
    header = next(line for line in lines if line.startswith("NAME"))
    for title in ("NAME", "SCHEDULE", "ENABLED", "NEXT RUN", "LAST STATUS"):
        assert title in header  # what a narrow terminal keeps
    long_row = next(line for line in lines if line.startswith(LONG_NAME[:10]))
    assert ELLIPSIS in long_row and LONG_NAME not in long_row
    assert " no " in long_row  # the disabled task still says so
    assert lines[-1].startswith("(not shown: ") and lines[-1].endswith("--wide shows all)")
    assert "SOURCE" in lines[-1]


def test_status_of_one_task_fits_too(url: str) -> None:
    result = run("status", LONG_NAME, "--database-url", url, columns=80)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    schedule = next(line for line in lines if line.startswith("schedule:"))
    assert schedule.endswith(ELLIPSIS) and len(schedule) == 80


def test_wide_shows_every_column_whole(url: str) -> None:
    result = run("status", "--database-url", url, "--wide", columns=80)
    assert result.exit_code == 0, result.output
    assert ELLIPSIS not in result.stdout and "not shown" not in result.stdout
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("NAME"))
    assert header.split("  ")[0] == "NAME"
    for title in ("TYPE", "OWNER", "SOURCE", "LAST QUEUED", "LAST SUCCESS"):
        assert title in header
    long_row = next(line for line in lines if line.startswith(LONG_NAME))
    assert WORDS[LONG_NAME] in long_row and "finance-platform-team" in long_row
    assert f"{LONG_NAME}.yaml:1" in long_row
    assert max(len(line) for line in lines) > 200


def test_without_a_terminal_lines_are_whole(url: str) -> None:
    """No COLUMNS and stdout not a terminal (a pipe): nothing is cut."""
    assert (
        run("status", "--database-url", url).stdout
        == run("status", "--database-url", url, "--wide").stdout
    )


def test_json_does_not_depend_on_the_width(url: str) -> None:
    narrow = json.loads(run("status", "--database-url", url, "--format", "json", columns=80).stdout)
    whole = json.loads(run("status", "--database-url", url, "--format", "json").stdout)
    assert narrow["tasks"] == whole["tasks"] and narrow["sync"]["line"] == whole["sync"]["line"]
    assert {task["name"]: task["schedule"] for task in whole["tasks"]} == WORDS


# --- one wording of schedules -----------------------------------------------------------


def test_schedules_read_the_same_in_status_next_and_the_api(url: str, tasks_dir: Path) -> None:
    status = json.loads(run("status", "--database-url", url, "--format", "json").stdout)
    in_status = {task["name"]: task["schedule"] for task in status["tasks"]}
    in_next = {
        name: json.loads(
            run("next", name, "--tasks-dir", str(tasks_dir), "--format", "json").stdout
        )["schedule"]
        for name in WORDS
    }
    db = Database.open(url)
    try:
        with TestClient(create_app(db)) as client:
            listed = client.get("/api/v1/tasks/").json()["items"]
            in_list = {item["name"]: item["schedule"] for item in listed}
            in_detail = {
                name: client.get(f"/api/v1/tasks/{name}").json()["schedule"] for name in WORDS
            }
            csv_text = client.get("/api/v1/tasks/?format=csv").text
    finally:
        db.dispose()
    assert in_status == in_next == in_list == in_detail == WORDS
    assert WORDS["berlin-weekdays"] in csv_text


def test_status_text_shows_the_same_words(url: str) -> None:
    text = run("status", "--database-url", url, "--wide").stdout
    for words in WORDS.values():
        assert words in text


# --- help -------------------------------------------------------------------------------

TOP_HELP = """\
Usage: reconcile [OPTIONS] COMMAND [ARGS]...

  Celery schedules as code: validate, plan and apply tasks.d/ to the database.

  Without a command, reconcile is reconcile apply: 'reconcile --dry-run' prints the plan and
  writes nothing.

Options:
  --version   Show the version and exit.
  -h, --help  Show this message and exit.

Options of apply (also reconcile without a command):
  --tasks-dir DIRECTORY          Task files directory [env RECONCILER_TASKS_DIR; default
                                 ./tasks.d]
  --database-url TEXT            SQLAlchemy URL [env RECONCILER_DATABASE_URL; default embedded
                                 SQLite]
  --dry-run                      Validate and print the plan; write nothing.
  --detailed-exitcode            Exit 0 for no changes, 2 for changes (planned or applied), 1
                                 for an error.
  --allow-mass-delete            Apply even if more than half (or all) of the tasks would be
                                 deleted.
  --lock-timeout FLOAT RANGE     Seconds to wait for another reconciler's apply lock.  [default:
                                 30.0; x>=0]
  --format [text|json|markdown]  Output format.  [default: text]

Commands:
"""


def help_of(*args: str, width: int = 96) -> str:
    result = CliRunner().invoke(
        main, [*args, "--help"], prog_name="reconcile", terminal_width=width
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_top_level_help_shows_apply_options_and_whole_descriptions() -> None:
    assert help_of().startswith(TOP_HELP)
    # Wide enough, each command's whole description on one line.
    commands = help_of(width=110).split("Commands:\n")[1].splitlines()
    assert commands == [f"  {name:<8}  {COMMANDS[name][2]}" for name in sorted(COMMANDS)]


def test_each_command_is_listed_with_its_own_short_help() -> None:
    ctx = click.Context(main)
    for name, (_, _, summary) in COMMANDS.items():
        command = main.get_command(ctx, name)
        assert command is not None
        assert command.get_short_help_str(limit=1000) == summary, name


def option_names(*command: str) -> set[str]:
    ctx = click.Context(main)
    group: click.Command | None = main
    for part in command:
        assert isinstance(group, click.Group)
        group = group.get_command(ctx, part)
    assert group is not None
    return {opt for param in group.params for opt in param.opts if opt.startswith("--")}


@pytest.mark.parametrize(
    ("command", "options"),
    [
        (("history",), {"--database-url", "--limit", "--status", "--format", "--utc"}),
        (("db", "upgrade"), {"--database-url"}),
        (("db", "current"), {"--database-url"}),
        (("status",), {"--database-url", "--beats-expected", "--format", "--wide"}),
        (
            ("apply",),
            {
                "--tasks-dir",
                "--database-url",
                "--dry-run",
                "--detailed-exitcode",
                "--allow-mass-delete",
                "--lock-timeout",
                "--format",
            },
        ),
    ],
)
def test_commands_list_only_the_options_they_use(
    command: tuple[str, ...], options: set[str]
) -> None:
    assert option_names(*command) == options


def test_history_help_is_pinned() -> None:
    assert (
        help_of("history")
        == """\
Usage: reconcile history [OPTIONS] NAME

  Show the executions of task NAME, newest first (deleted tasks included).

Options:
  --database-url TEXT             SQLAlchemy URL [env RECONCILER_DATABASE_URL; default embedded
                                  SQLite]
  -n, --limit INTEGER RANGE       How many executions to show, newest first.  [default: 20;
                                  x>=1]
  --status [pending|started|success|failure|retry|revoked]
                                  Only executions in this state.
  --format [text|json|csv]        Output format.  [default: text]
  --utc                           Times in UTC, not in the task's time zone.
  -h, --help                      Show this message and exit.
"""
    )


def test_db_help_is_pinned() -> None:
    assert (
        help_of("db", "upgrade")
        == """\
Usage: reconcile db upgrade [OPTIONS]

  Run the migrations up to the newest revision (safe to run concurrently).

Options:
  --database-url TEXT  SQLAlchemy URL [env RECONCILER_DATABASE_URL; default embedded SQLite]
  -h, --help           Show this message and exit.
"""
    )


def test_help_imports_no_heavy_library() -> None:
    """``reconcile --help`` loads click and the command table, not the libraries the
    commands use (the time it takes is in ``make bench``: benchmarks/bench_cli.py)."""
    code = (
        "import sys\n"
        "from reconciler.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('pydantic', 'sqlalchemy', 'celery', 'kombu', 'fastapi', 'yaml',"
        " 'cron_descriptor')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--dry-run" in done.stdout
    assert done.stderr.strip() == "[]"


# --- history times -----------------------------------------------------------------------

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def history_url(url: str) -> str:
    db = Database.open(url)
    try:
        with db.session() as session:
            apply_updates(
                session,
                [
                    ExecutionUpdate(
                        "berlin-1", Status.PENDING, T0, task_name="berlin-weekdays",
                        trigger="schedule", args=[], kwargs={},
                    ),
                    ExecutionUpdate(
                        "long-1", Status.PENDING, T0, task_name=LONG_NAME,
                        trigger="manual", args=[], kwargs={},
                    ),
                ],
            )  # fmt: skip
    finally:
        db.dispose()
    return url


@pytest.mark.parametrize(
    ("name", "local"),
    [
        ("berlin-weekdays", "2026-03-01 13:00:00 CET"),
        (LONG_NAME, "2026-03-01 09:00:00 -03"),
    ],
)
def test_history_times_are_in_the_task_zone_or_utc(history_url: str, name: str, local: str) -> None:
    zoned = run("history", name, "--database-url", history_url)
    assert zoned.exit_code == 0, zoned.output
    assert zoned.stdout.splitlines()[1].split("  ")[1].strip() == local
    utc = run("history", name, "--database-url", history_url, "--utc")
    assert utc.stdout.splitlines()[1].split("  ")[1].strip() == "2026-03-01 12:00:00 UTC"
    # JSON keeps UTC ISO 8601 whatever the flag.
    (execution,) = json.loads(
        run("history", name, "--database-url", history_url, "--format", "json").stdout
    )
    assert execution["queued_at"] == "2026-03-01T12:00:00+00:00"
