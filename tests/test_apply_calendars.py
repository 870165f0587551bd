"""Calendars and spread through validate, the plan and apply, on SQLite and PostgreSQL:
located errors and warnings, each task's stored spec carrying its calendars' entries, and
an update planned (with its reason) for every task using a calendar that changes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import select

from reconciler.apply import reconcile
from reconciler.cli.planview import render_text
from reconciler.files.loader import load_directory
from reconciler.store.database import Database
from reconciler.store.tables import Task
from tests.factories import task_yaml

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
HOLIDAYS = """\
kind: calendar
name: de-holidays
description: public holidays in Germany
dates:
  - 2026-12-25
  - {from: 2026-12-24, until: 2026-12-26}
  - {every_year: 05-01}
"""


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def diagnostics(root: Path) -> list[str]:
    return [
        f"{d.severity}: {str(d).removeprefix(str(root) + '/')}"
        for d in load_directory(root, NOW).diagnostics
    ]


def stored(db: Database) -> dict[str, Any]:
    with db.session() as session:
        return dict(session.execute(select(Task.name, Task.spec)).tuples().all())


def test_validate_locates_unknown_calendars_bad_dates_and_unused_calendars(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        {
            "calendars/de.yaml": HOLIDAYS,
            "calendars/bad.yaml": (
                "kind: calendar\nname: bad\ndates:\n  - 2026-13-01\n"
                "  - {from: 2026-12-31, until: 2026-12-01}\n  - {every_year: 02-30}\n"
                "  - {every_year: 12-25, note: x}\n"
            ),
            "calendars/unused.yaml": "kind: calendar\nname: unused\ndates: [2026-01-01]\n",
            "calendars/zz-again.yaml": "kind: calendar\nname: unused\ndates: []\n",
            "a.yaml": task_yaml("a", skip_on=["de-holidays", "de-holiday"]),
            "b.yaml": task_yaml("b", only_on=["de-holidays"], type="async"),
            "c.yaml": task_yaml("c", calendars={"x": []}),
        },
    )
    assert diagnostics(tmp_path) == [
        "error: a.yaml:6:26: skip_on[1]: unknown calendar 'de-holiday' (hint: did you mean "
        "'de-holidays'?)",
        "error: b.yaml:5:10: only_on: is for periodic tasks, not 'async' (hint: remove 'only_on')",
        "error: c.yaml:6:1: calendars: unknown field (a task names its calendars in skip_on or "
        "only_on) (hint: write skip_on: [NAME] or only_on: [NAME]; the calendar is a kind: "
        "calendar document)",
        "error: calendars/bad.yaml:4:5: dates[0]: '2026-13-01' is not a valid timestamp (hint: "
        "quote it)",
        "error: calendars/bad.yaml:5:31: dates[1].until: 2026-12-01 is before from (2026-12-31) "
        "(hint: swap them)",
        "error: calendars/bad.yaml:6:18: dates[2].every_year: '02-30' is not a day of the year "
        "(hint: check the month and day)",
        "error: calendars/bad.yaml:7:5: dates[3]: unknown field 'note': an entry is a date, "
        "{from, until} or {every_year} (hint: write a date like 2026-12-25, {from: 2026-12-24, "
        "until: 2026-12-31} or {every_year: 12-25})",
        "warning: calendars/unused.yaml:2:7: name: calendar 'unused' is used by no task (hint: "
        "name it in a task's skip_on or only_on, or remove it)",
        f"error: calendars/zz-again.yaml:2:7: name: calendar 'unused' is already defined at "
        f"{tmp_path}/calendars/unused.yaml:2:7 (hint: calendar names are unique across all "
        "files; rename or merge one)",
    ]


def test_loaded_tasks_share_their_calendar_and_drop_its_dates(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.d"
    write(
        tasks,
        {
            "calendars/de.yaml": HOLIDAYS,
            "a.yaml": task_yaml("a", crontab="0 9 * * *", skip_on=["de-holidays"]),
            "b.yaml": task_yaml("b", crontab="0 9 * * *", skip_on=["de-holidays"]),
        },
    )
    a, b = (task.spec for task in load_directory(tasks, NOW).tasks)
    assert a.calendars is b.calendars  # one mapping, not a copy per task
    assert a.canonical()["calendars"] == {
        "de-holidays": [
            {"from": "2026-12-24", "until": "2026-12-26"},
            "2026-12-25",
            {"every_year": "05-01"},
        ]
    }
    assert a.timing.skip[0][1] is b.timing.skip[0][1]  # one date set for the calendar
    christmas = dt.datetime(2026, 12, 25, 9, tzinfo=dt.UTC)
    assert a.timing.dropped(christmas) == "2026-12-25 is on calendar de-holidays (skip_on)"
    assert b.timing.dropped(christmas + dt.timedelta(days=2)) is None


def test_calendar_change_plans_an_update_of_every_task_using_it(
    db: Database, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.d"
    write(
        tasks,
        {
            "calendars/de.yaml": HOLIDAYS,
            "a.yaml": task_yaml("a", skip_on=["de-holidays"]),
            "b.yaml": task_yaml("b", only_on=["de-holidays"], spread="10m"),
            "c.yaml": task_yaml("c"),
        },
    )
    first = reconcile(db, tasks, now=NOW)
    assert [c.name for c in first.plan.creates] == ["a", "b", "c"]
    held = stored(db)
    # sorted by first day, yearly days last
    assert held["a"]["calendars"] == {
        "de-holidays": [
            {"from": "2026-12-24", "until": "2026-12-26"},
            "2026-12-25",
            {"every_year": "05-01"},
        ]
    }
    assert held["b"]["spread"] == "10m" and "calendars" not in held["c"]
    # reordering a calendar's dates changes nothing
    write(
        tasks,
        {
            "calendars/de.yaml": HOLIDAYS.replace(
                "  - 2026-12-25\n  - {from: 2026-12-24, until: 2026-12-26}\n",
                "  - {from: 2026-12-24, until: 2026-12-26}\n  - 2026-12-25\n",
            )
        },
    )
    assert not reconcile(db, tasks, dry_run=True, now=NOW).plan
    write(tasks, {"calendars/de.yaml": HOLIDAYS.replace("2026-12-25\n", "2026-12-31\n")})
    plan = reconcile(db, tasks, dry_run=True, now=NOW).plan
    source = f"(from the calendar at {tasks}/calendars/de.yaml:1)"
    assert render_text(plan).splitlines() == [
        "Plan: 0 to create, 2 to update, 0 to delete, 1 unchanged.",
        "",
        f"~ a ({tasks}/a.yaml:1)",
        '    calendars.de-holidays: [{"from": "2026-12-24", "until": "2026-12-26"}, '
        '"2026-12-25", {"every_year": "05-01"}] -> [{"from": "2026-12-24", "until": '
        f'"2026-12-26"}}, "2026-12-31", {{"every_year": "05-01"}}] {source}',
        f"~ b ({tasks}/b.yaml:1)",
        '    calendars.de-holidays: [{"from": "2026-12-24", "until": "2026-12-26"}, '
        '"2026-12-25", {"every_year": "05-01"}] -> [{"from": "2026-12-24", "until": '
        f'"2026-12-26"}}, "2026-12-31", {{"every_year": "05-01"}}] {source}',
    ]
    reconcile(db, tasks, now=NOW)
    assert "2026-12-31" in stored(db)["a"]["calendars"]["de-holidays"]


def test_spread_from_the_defaults_is_planned_with_its_offset(db: Database, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.d"
    write(tasks, {"a.yaml": task_yaml("a"), "b.yaml": task_yaml("b", spread="0s")})
    reconcile(db, tasks, now=NOW)
    write(tasks, {"defaults.yaml": "kind: defaults\nspread: 10m\n"})
    plan = reconcile(db, tasks, dry_run=True, now=NOW).plan
    assert render_text(plan).splitlines() == [
        "Plan: 0 to create, 1 to update, 0 to delete, 1 unchanged.",
        "",
        f"~ a ({tasks}/a.yaml:1)",
        f'    spread: null -> "10m (offset 2m23s)" (from the defaults at {tasks}/defaults.yaml:1)',
    ]
    reconcile(db, tasks, now=NOW)
    with db.session() as session:
        row = session.execute(select(Task.next_run_at).where(Task.name == "a")).one()
    # 01:00 UTC daily, moved by the name's offset
    assert row.next_run_at == dt.datetime(2026, 12, 1, 1, 2, 23, tzinfo=dt.UTC)
