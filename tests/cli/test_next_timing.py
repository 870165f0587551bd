"""``reconcile next`` for expressions without a file, with spread, windows and calendars,
and from the anchor the database holds (docs/cli.md, "reconcile next")."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from click.testing import CliRunner, Result

from reconciler.apply import reconcile
from reconciler.cli import main
from reconciler.store.database import Database
from tests.factories import task_yaml

CALENDAR = "kind: calendar\nname: de-holidays\ndates:\n  - {from: 2026-12-24, until: 2026-12-26}\n"


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["next", *args])


def test_a_crontab_with_names_without_a_file(tmp_path: Path) -> None:
    result = run(
        "--cron", "0 9 * * MON-FRI", "--timezone", "Europe/Berlin", "-n", "3",
        "--from", "2026-10-23T00:00", "--tasks-dir", str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "expression: At 09:00, Monday through Friday (Europe/Berlin)",
        "  crontab '0 9 * * 1-5'",
        "next 3 after 2026-10-23T00:00:00+02:00 (Europe/Berlin):",
        "  2026-10-23T09:00:00+02:00  Fri",
        "  2026-10-26T09:00:00+01:00  Mon",
        "  2026-10-27T09:00:00+01:00  Tue",
    ]


def test_an_interval_with_spread_and_a_calendar_without_a_task_file(tmp_path: Path) -> None:
    (tmp_path / "holidays.yaml").write_text(CALENDAR)
    result = run(
        "a", "--interval", "1d", "--spread", "10m", "--calendar", "de-holidays", "-n", "2",
        "--from", "2026-12-23T00:00:00Z", "--tasks-dir", str(tmp_path), "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["spread"] == "10m" and report["spread_offset"] == "2m23s"
    assert report["skip_on"] == ["de-holidays"]
    # a day after --from, then each day; the calendar's three days are left out
    assert report["next"] == ["2026-12-27T00:02:23+00:00", "2026-12-28T00:02:23+00:00"]
    assert [each["time"] for each in report["skipped"]] == [
        "2026-12-24T00:02:23+00:00",
        "2026-12-25T00:02:23+00:00",
    ]  # at most -n of them


def test_bad_expressions_are_usage_errors_naming_the_option(tmp_path: Path) -> None:
    result = run("--cron", "0 9 * * MON-FRY", "--tasks-dir", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --cron: 'MON-FRY': unknown weekday 'FRY' (hint: MON TUE WED THU FRI SAT SUN "
        "or 0-7)\n"
    )
    result = run("--interval", "90", "--tasks-dir", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --interval: ")
    result = run("--calendar", "x", "--cron", "@daily", "--tasks-dir", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr == f"error: --calendar: no calendar named 'x' under {tmp_path}\n"
    result = run("--tasks-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "give a task NAME, or --cron EXPR or --interval DURATION" in result.stderr


def test_a_task_with_spread_a_window_and_a_calendar(tmp_path: Path) -> None:
    (tmp_path / "calendars.yaml").write_text(CALENDAR)
    (tmp_path / "a.yaml").write_text(
        task_yaml(
            "a",
            crontab="0 9 * * *",
            timezone="Europe/Berlin",
            spread="10m",
            active={"until": "2026-12-28"},
            skip_on=["de-holidays"],
        )
    )
    result = run("a", "--from", "2026-12-23", "--tasks-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[2:] == [
        "  spread 10m: each time moved by this task's offset +2m23s",
        "  active until 2026-12-28 (Europe/Berlin)",
        "  skip_on calendar de-holidays",
        "next 3 after 2026-12-23T00:00:00+01:00 (Europe/Berlin):",
        "  2026-12-23T09:02:23+01:00  Wed",
        "  2026-12-27T09:02:23+01:00  Sun",
        "  2026-12-28T09:02:23+01:00  Mon",
        "skipped by calendars:",
        "  2026-12-24T09:02:23+01:00  2026-12-24 is on calendar de-holidays (skip_on)",
        "  2026-12-25T09:02:23+01:00  2026-12-25 is on calendar de-holidays (skip_on)",
        "  2026-12-26T09:02:23+01:00  2026-12-26 is on calendar de-holidays (skip_on)",
    ]
    ended = run("a", "--from", "2027-01-01", "--tasks-dir", str(tmp_path))
    assert ended.stdout.splitlines()[-1] == (
        "no times after 2027-01-01T00:00:00+01:00: its active window has ended"
    )


def test_an_interval_counts_from_the_stored_anchor_as_beat_does(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "a.yaml").write_text(task_yaml("a", interval="90m"))
    applied = dt.datetime(2026, 6, 1, 0, 0, 10, tzinfo=dt.UTC)
    reconcile(db, tmp_path, now=applied)
    args = ["a", "-n", "2", "--from", "2026-06-01T12:00:00Z", "--tasks-dir", str(tmp_path)]
    stored = json.loads(run(*args, "--database-url", database_url, "--format", "json").stdout)
    assert stored["anchor_from"] == "database"
    assert stored["next"] == ["2026-06-01T12:00:10+00:00", "2026-06-01T13:30:10+00:00"]
    # without the database (none at that URL): from --from, and it says why
    elsewhere = f"sqlite:///{tmp_path / 'none.db'}"
    fresh = json.loads(run(*args, "--database-url", elsewhere, "--format", "json").stdout)
    assert fresh["anchor_from"] == "from (the task is not applied yet)"
    assert fresh["next"] == ["2026-06-01T13:30:00+00:00", "2026-06-01T15:00:00+00:00"]
    # a schedule the files change is not the stored one: apply restarts it
    (tmp_path / "a.yaml").write_text(task_yaml("a", interval="2h"))
    changed = json.loads(run(*args, "--database-url", database_url, "--format", "json").stdout)
    assert changed["anchor_from"] == "from (the files change its schedule; apply restarts it)"
