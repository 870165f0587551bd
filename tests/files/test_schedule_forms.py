"""Names, macros, 7 and interval forms from task files: located refusals, the same stored
rows as the numeric form on both databases (rewriting one as the other plans no change),
and ``reconcile next`` in the one canonical shape."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from reconciler.apply import reconcile
from reconciler.cli import main
from reconciler.files.loader import load_directory
from reconciler.store.database import Database
from reconciler.store.tables import Task

HEAD = "owner: billing\ntype: periodic\ntask: app.worker.test_celery\n"

NUMERIC = {
    "weekdays": "crontab: '0 9 * * 1-5'\ntimezone: Europe/Berlin\n",
    "sundays": "crontab: '0 0 * * 0'\n",
    "weekend": "crontab: {hour: 8, day_of_week: '6,0'}\n",
    "quarters": "crontab: '0 6 1 1,4,7,10 *'\n",
    "yearly": "crontab: '0 0 1 1 *'\n",
    "daily": "crontab: '0 0 * * *'\n",
    "hourly": "crontab: '0 * * * *'\n",
    "ninety": "interval: {hours: 1, minutes: 30}\n",
    "five": "interval: {minutes: 5}\n",
    "two-days": "interval: {days: 2}\n",
}
WRITTEN = {
    "weekdays": "crontab: '0 9 * * MON-FRI'\ntimezone: Europe/Berlin\n",
    "sundays": "crontab: '0 0 * * 7'\n",
    "weekend": "crontab: {hour: 8, day_of_week: SAT-SUN}\n",
    "quarters": "crontab: '0 6 1 jan,apr,jul,oct *'\n",
    "yearly": "crontab: '@annually'\n",
    "daily": "crontab: '@midnight'\n",
    "hourly": "crontab: '@hourly'\n",
    "ninety": "interval: 90m\n",
    "five": "interval: {seconds: 300}\n",
    "two-days": "interval: 48h\n",
}


def write(directory: Path, schedules: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    text = "---\n".join(f"name: {name}\n{HEAD}{body}" for name, body in schedules.items())
    (directory / "tasks.yaml").write_text(text, encoding="utf-8")


def rows(db: Database) -> dict[str, tuple[str, str | None]]:
    with db.session() as session:
        found = session.execute(select(Task.name, Task.content_hash, Task.schedule_text))
        return {row.name: (row.content_hash, row.schedule_text) for row in found}


def test_rewriting_with_names_macros_and_durations_plans_no_change(
    db: Database, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.d"
    write(tasks, NUMERIC)
    assert reconcile(db, tasks).applied
    before = rows(db)
    write(tasks, WRITTEN)
    again = reconcile(db, tasks)
    assert not again.plan and not again.applied
    assert again.plan.unchanged == len(NUMERIC)
    assert rows(db) == before
    assert before["weekdays"][1] == "0 9 * * 1-5"
    assert before["ninety"][1] == "every 1h30m"


def test_a_new_task_written_with_names_stores_the_numeric_form(
    db: Database, tmp_path: Path
) -> None:
    written, numeric = tmp_path / "written", tmp_path / "numeric"
    write(written, WRITTEN)
    write(numeric, NUMERIC)
    assert reconcile(db, written).applied
    assert not reconcile(db, numeric).plan


def test_refusals_are_located_with_the_way_to_write_it(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.d"
    write(
        tasks,
        {
            "a": "crontab: '0 9 * * MON-FRY'\n",
            "b": "crontab: '@reboot'\n",
            "c": "crontab: {day_of_week: FRI-MON, month_of_year: MON}\n",
            "d": "interval: 90x\n",
            "e": "interval: 90\n",
            "f": "interval: {days: 365, hours: 30}\n",
        },
    )
    found = [str(d) for d in load_directory(tasks).errors]
    path = str(tasks / "tasks.yaml")
    assert found == [
        f"{path}:5:10: crontab: '0 9 * * MON-FRY' day_of_week 'MON-FRY': unknown weekday "
        "'FRY' (hint: MON TUE WED THU FRI SAT SUN or 0-7)",
        f"{path}:11:10: crontab: '@reboot' is not a schedule here "
        "(hint: use type: async to run once when applied)",
        f"{path}:17:24: crontab.day_of_week: range FRI-MON runs backwards "
        "(hint: split it: 'FRI-SUN,MON')",
        f"{path}:17:48: crontab.month_of_year: 'MON': unknown month 'MON' (hint: 'MON' is a "
        "weekday name, for the day_of_week field; months: JAN FEB MAR APR MAY JUN JUL AUG SEP "
        "OCT NOV DEC or 1-12)",
        f"{path}:23:11: interval: '90x': unknown unit 'x' "
        "(hint: units are d (days), h (hours), m (minutes) and s (seconds))",
        f"{path}:29:11: interval: expected a duration or a mapping, got an integer (90) "
        "(hint: give it a unit: 90s, 90m or 90h)",
        f"{path}:35:11: interval: 365d30h is longer than the longest interval, 365d23h59m59s "
        "(hint: use at most 365d23h59m59s, or a crontab for a yearly schedule)",
    ]


def test_next_shows_names_as_numbers_and_intervals_in_one_shape(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.d"
    write(tasks, WRITTEN)
    result = CliRunner().invoke(
        main,
        ["next", "weekdays", "-n", "2", "--from", "2026-12-04T12:00Z", "--tasks-dir", str(tasks)],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:5] == [
        "weekdays: At 09:00, Monday through Friday (Europe/Berlin)",
        f"  {tasks / 'tasks.yaml'}:1  crontab '0 9 * * 1-5'",
        "next 2 after 2026-12-04T13:00:00+01:00 (Europe/Berlin):",
        "  2026-12-07T09:00:00+01:00  Mon",
        "  2026-12-08T09:00:00+01:00  Tue",
    ]
    result = CliRunner().invoke(
        main,
        ["next", "ninety", "-n", "1", "--from", "2026-12-04T12:00Z", "--tasks-dir", str(tasks)],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "ninety: every 1h30m"
