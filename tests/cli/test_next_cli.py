"""``reconcile next``: fire times from the task files, in the task's zone, text and JSON."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import main

HEADER = "owner: ops\ntask: app.worker.test_celery\n"


@pytest.fixture
def tasks(tmp_path: Path) -> Path:
    directory = tmp_path / "tasks.d"
    directory.mkdir()
    (directory / "reports.yaml").write_text(
        f"name: nightly\ndescription: Nightly report\n{HEADER}type: periodic\n"
        "crontab: '30 2 * * *'\ntimezone: Europe/Berlin\n"
        "---\n"
        f"name: quarter-hour\n{HEADER}type: periodic\n"
        "crontab: {minute: '*/30'}\ntimezone: Europe/Berlin\n"
    )
    (directory / "other.yml").write_text(
        f"name: every-90m\n{HEADER}type: periodic\n"
        "interval: {hours: 1, minutes: 30}\ntimezone: America/New_York\n"
        "---\n"
        f"name: launch\n{HEADER}type: scheduled\nat: 2026-12-02T15:00:00\n"
        "timezone: Australia/Lord_Howe\n"
        "---\n"
        f"name: once-now\n{HEADER}type: async\n"
        "---\n"
        f"name: paused\n{HEADER}type: periodic\ncrontab: '0 9 * * 1-5'\nenabled: false\n"
    )
    return directory


def run(tasks: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["next", *args, "--tasks-dir", str(tasks)])


def test_text_shows_times_in_the_task_zone_and_the_crontab_in_words(tasks: Path) -> None:
    result = run(tasks, "nightly", "-n", "3", "--from", "2026-10-24T12:00:00Z")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "nightly: At 02:30 (Europe/Berlin)",
        "  Nightly report",
        f"  {tasks / 'reports.yaml'}:1  crontab '30 2 * * *'",
        "next 3 after 2026-10-24T14:00:00+02:00 (Europe/Berlin):",
        "  2026-10-25T02:30:00+02:00  Sun",
        "  2026-10-26T02:30:00+01:00  Mon",
        "  2026-10-27T02:30:00+01:00  Tue",
    ]


def test_json(tasks: Path) -> None:
    result = run(
        tasks, "nightly", "-n", "2", "--from", "2026-03-28T12:00:00+00:00", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "name": "nightly",
        "description": "Nightly report",
        "type": "periodic",
        "schedule": "At 02:30 (Europe/Berlin)",
        "crontab": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "enabled": True,
        "path": str(tasks / "reports.yaml"),
        "line": 1,
        "from": "2026-03-28T13:00:00+01:00",
        "next": ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
        "anchor": None,
        "spread": None,
        "spread_offset": None,
        "active": None,
        "skip_on": [],
        "only_on": [],
        "skipped": [],
    }


def next_times(tasks: Path, *args: str) -> list[str]:
    result = run(tasks, *args, "--format", "json")
    assert result.exit_code == 0, result.output
    times: list[str] = json.loads(result.stdout)["next"]
    return times


def test_from_without_offset_is_in_the_task_zone(tasks: Path) -> None:
    # 02:45 occurs twice on 2026-10-25 in Berlin: the first occurrence is meant
    assert next_times(tasks, "quarter-hour", "-n", "3", "--from", "2026-10-25T02:45") == [
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]


def test_interval_counts_from_from(tasks: Path) -> None:
    assert next_times(tasks, "every-90m", "-n", "2", "--from", "2026-03-08T00:00") == [
        "2026-03-08T01:30:00-05:00",
        "2026-03-08T04:00:00-04:00",
    ]


def test_scheduled_shows_its_one_time_only_when_after_from(tasks: Path) -> None:
    assert next_times(tasks, "launch", "--from", "2026-01-01T00:00Z") == [
        "2026-12-02T15:00:00+11:00"
    ]
    assert next_times(tasks, "launch", "--from", "2026-12-02T15:00") == []
    result = run(tasks, "launch", "--from", "2027-01-01T00:00")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == (
        "no times after 2027-01-01T00:00:00+11:00: it fires once, at 2026-12-02T15:00:00+11:00"
    )


def test_async_has_no_times(tasks: Path) -> None:
    result = run(tasks, "once-now")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "once-now: once, as soon as it is applied",
        f"  {tasks / 'other.yml'}:15",
        "no times: it is not on a schedule",
    ]
    assert next_times(tasks, "once-now") == []


def test_disabled_task_says_so(tasks: Path) -> None:
    result = run(tasks, "paused", "-n", "1", "--from", "2026-11-27T10:00Z")
    assert result.exit_code == 0, result.output
    assert "  disabled (enabled: false): it fires at these times only once enabled" in (
        result.stdout.splitlines()
    )
    assert result.stdout.splitlines()[-1] == "  2026-11-30T09:00:00+00:00  Mon"


def test_default_from_is_now(tasks: Path) -> None:
    before = dt.datetime.now(dt.UTC)
    times = next_times(tasks, "quarter-hour")
    assert len(times) == 5
    first = dt.datetime.fromisoformat(times[0])
    assert before < first <= before + dt.timedelta(minutes=30)


def test_unknown_name_suggests_close_names(tasks: Path) -> None:
    result = run(tasks, "nightlly")
    assert result.exit_code == 1
    assert result.stderr == f"error: no task named 'nightlly' in {tasks}; did you mean 'nightly'?\n"
    result = run(tasks, "zzz")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: no task named 'zzz' in {tasks}; the tasks there are: every-90m, launch, "
        "nightly, once-now, paused, quarter-hour\n"
    )


def test_errors_in_other_files_are_a_warning_count(tasks: Path) -> None:
    (tasks / "broken.yaml").write_text(
        f"name: broken\n{HEADER}type: periodic\ncrontab: '61 * * * *'\n"
    )
    result = run(tasks, "nightly", "-n", "1", "--from", "2026-01-01")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"warning: 1 error in other task files under {tasks} (reconcile validate lists them)\n"
    )
    assert result.stdout.splitlines()[-1] == "  2026-01-01T02:30:00+01:00  Thu"


def test_an_invalid_task_itself_prints_the_diagnostics_and_exits_1(tasks: Path) -> None:
    (tasks / "broken.yaml").write_text(
        f"name: broken\n{HEADER}type: periodic\ncrontab: '61 * * * *'\n"
    )
    result = run(tasks, "broken")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"error: {tasks / 'broken.yaml'}:5:")
    assert "minute must be 0-59" in lines[0]
    assert lines[-1] == (
        f"error: 1 error in the task files under {tasks}; fix them (reconcile validate lists "
        "them) and run again"
    )
    assert result.stdout == ""


def test_missing_tasks_directory_exits_1(tmp_path: Path) -> None:
    result = run(tmp_path / "nowhere", "nightly")
    assert result.exit_code == 1
    assert "nowhere" in result.stderr


def test_bad_from_is_a_usage_error(tasks: Path) -> None:
    result = run(tasks, "nightly", "--from", "next tuesday")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --from: 'next tuesday' is not an ISO 8601 time; use e.g. "
        "2026-10-25T02:00:00+02:00, or 2026-10-25T02:00 for the task's time zone "
        "(Europe/Berlin)\n"
    )


def test_tasks_dir_from_the_environment(tasks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_TASKS_DIR", str(tasks))
    result = CliRunner().invoke(main, ["next", "nightly", "-n", "1", "--from", "2026-01-01"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "  2026-01-01T02:30:00+01:00  Thu"
