"""``previous_names`` in task files: each name checked where it is written, a name still
defined or claimed twice refused across files, and the schema's entry."""

from __future__ import annotations

from pathlib import Path

from reconciler.files.loader import load_directory
from reconciler.files.schema import task_schema
from tests.files.test_loader import ASYNC, NOW, lines, one_file, tasks, write

__all__ = ["tasks"]  # the fixture: an empty tasks.d in a fresh working directory


def test_a_valid_list_is_kept_out_of_the_stored_definition(tasks: Path) -> None:
    write(tasks, "a.yaml", ASYNC + "previous_names: [old-a, older.a]\n")
    result = load_directory(tasks, now=NOW)
    assert lines(result) == []
    (task,) = result.tasks
    assert task.spec.previous_names == ["old-a", "older.a"]
    assert "previous_names" not in task.spec.canonical()


def test_each_name_is_checked_where_it_is_written(tasks: Path) -> None:
    assert one_file(tasks, ASYNC + "previous_names: [ok, Not-Valid]\n") == [
        "tasks.d/t.yaml:5:22: previous_names[1]: must be lowercase letters, digits, '.', '_' "
        "or '-', starting and ending with a letter or digit, at most 128 characters, got "
        "'Not-Valid'"
    ]
    assert one_file(tasks, ASYNC + "previous_names: [b, a]\n") == [
        "tasks.d/t.yaml:5:21: previous_names[1]: 'a' is the task's own name "
        "(hint: list only the names the task had before)"
    ]
    assert one_file(tasks, ASYNC + "previous_names:\n  - b\n  - b\n") == [
        "tasks.d/t.yaml:7:5: previous_names[1]: 'b' is listed twice (hint: list it once)"
    ]


def test_a_name_still_defined_or_claimed_twice_is_refused(tasks: Path) -> None:
    write(tasks, "a.yaml", ASYNC + "previous_names: [old, b]\n")
    write(tasks, "b.yaml", ASYNC.replace("name: a", "name: b"))
    write(tasks, "c.yaml", ASYNC.replace("name: a", "name: c") + "previous_names:\n  - old\n")
    result = load_directory(tasks, now=NOW)
    assert lines(result) == [
        "tasks.d/a.yaml:5:23: previous_names[1]: 'b' is still defined at tasks.d/b.yaml:1 "
        "(hint: remove 'b' from the files to rename it, or drop it from here)",
        "tasks.d/c.yaml:6:5: previous_names[0]: 'old' is already a previous name of 'a' at "
        "tasks.d/a.yaml:5:18 (hint: a task's history goes to one task; keep it in one of them)",
    ]
    assert not result.ok


def test_the_schema_describes_the_field() -> None:
    entry = task_schema()["properties"]["previous_names"]
    assert entry["description"].startswith("Names the task had before")
    assert entry["anyOf"][0]["items"]["pattern"].startswith("^[a-z0-9]")
