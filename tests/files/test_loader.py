"""The loader: finding task files, reading them safely, and every rule's message (pinned)."""

from __future__ import annotations

import datetime as dt
import gc
import os
import time
from pathlib import Path

import pytest

from reconciler.core.diagnostics import Diagnostic
from reconciler.files.discovery import MAX_FILE_BYTES, read_text
from reconciler.files.loader import (
    LoadResult,
    check_registered,
    load_directory,
    load_paths,
)
from reconciler.files.taskfile import LoadedTask

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

BASE = """\
name: daily-report
owner: billing
type: periodic
task: app.worker.test_celery
"""

ASYNC = """\
name: a
owner: o
type: async
task: t
"""


@pytest.fixture
def tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``tasks.d`` in a fresh working directory, so paths print relative."""
    monkeypatch.chdir(tmp_path)
    root = Path("tasks.d")
    root.mkdir()
    return root


def write(root: Path, name: str, text: str | bytes) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def lines(result: LoadResult) -> list[str]:
    return [str(d) for d in result.diagnostics]


def one_file(root: Path, text: str | bytes) -> list[str]:
    write(root, "t.yaml", text)
    return lines(load_directory(root, now=NOW))


# --- finding files --------------------------------------------------------------------


def test_finds_yaml_and_yml_recursively_skipping_dot_names(tasks: Path) -> None:
    write(tasks, "one.yaml", ASYNC)
    write(tasks, "sub/deeper/two.yml", ASYNC.replace("name: a", "name: b"))
    write(tasks, ".hidden.yaml", "not: [valid")
    write(tasks, ".git/three.yaml", "not: [valid")
    write(tasks, "notes.txt", "not: [valid")
    result = load_directory(tasks, now=NOW)
    assert lines(result) == []
    assert result.ok and result.files == 2
    assert [(t.spec.name, t.path, t.line) for t in result.tasks] == [
        ("a", "tasks.d/one.yaml", 1),
        ("b", "tasks.d/sub/deeper/two.yml", 1),
    ]


def test_several_documents_per_file_and_empty_documents_ignored(tasks: Path) -> None:
    text = "---\n" + ASYNC + "---\n# only a comment\n---\n" + ASYNC.replace("a\n", "b\n", 1)
    write(tasks, "many.yaml", text + "---\n")
    result = load_directory(tasks, now=NOW)
    assert lines(result) == []
    assert [(t.spec.name, t.line) for t in result.tasks] == [("a", 2), ("b", 9)]


def test_missing_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = load_directory(Path("nowhere"))
    assert result.missing_root and not result.ok and result.tasks == []
    assert lines(result) == [
        "nowhere:1:1: file: tasks directory does not exist (hint: create it or pass --tasks-dir)"
    ]


def test_empty_directory_is_valid(tasks: Path) -> None:
    result = load_directory(tasks)
    assert result.ok and result.files == 0 and not result.missing_root


def test_load_paths_mixes_files_and_directories(tasks: Path) -> None:
    write(tasks, "x/one.yaml", ASYNC)
    write(tasks, "two.yaml", ASYNC.replace("name: a", "name: b"))
    result = load_paths([tasks / "x", tasks / "two.yaml"], now=NOW)
    assert result.ok and sorted(t.spec.name for t in result.tasks) == ["a", "b"]
    assert result.files == 2


def test_progress_reports_every_file(tasks: Path) -> None:
    write(tasks, "one.yaml", ASYNC)
    write(tasks, "sub/two.yaml", ASYNC.replace("name: a", "name: b"))
    seen: list[tuple[int, int]] = []
    load_directory(tasks, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 2), (2, 2)]


def test_a_file_deleted_between_listing_and_reading_is_simply_absent(tasks: Path) -> None:
    # The progress callback runs after each file is read, and every file was listed
    # before the first is read: deleting the next one there is the watch loop's race.
    for name in ("a", "b", "c"):
        write(tasks, f"{name}.yaml", ASYNC.replace("name: a", f"name: {name}"))
    deleted: list[int] = []

    def delete_b(done: int, _total: int) -> None:
        if done == 1:
            (tasks / "b.yaml").unlink()
            deleted.append(done)

    result = load_directory(tasks, now=NOW, progress=delete_b)
    assert deleted == [1]
    assert lines(result) == []
    assert [t.spec.name for t in result.tasks] == ["a", "c"] and result.files == 2
    # A file named explicitly that does not exist is still an error.
    missing = load_paths([tasks / "a.yaml", tasks / "b.yaml"], now=NOW)
    assert [t.spec.name for t in missing.tasks] == ["a"] and not missing.ok


def test_result_properties(tasks: Path) -> None:
    write(tasks, "past.yaml", ASYNC.replace("async", "scheduled") + "at: 2020-01-01T00:00:00Z\n")
    result = load_directory(tasks, now=NOW)
    assert result.ok and len(result.warnings) == 1 and result.errors == []
    assert isinstance(result.tasks[0], LoadedTask)


# --- safe reading ---------------------------------------------------------------------


def test_file_over_one_mebibyte_is_refused(tasks: Path) -> None:
    write(tasks, "big.yaml", ASYNC + "#" * MAX_FILE_BYTES)
    assert lines(load_directory(tasks)) == [
        "tasks.d/big.yaml:1:1: file: is 1,048,613 bytes, over the 1 MiB limit (hint: split it)"
    ]


def test_a_file_longer_than_its_stated_size_is_read_to_its_end(tmp_path: Path) -> None:
    # Files under /proc state a size of 0 and hold text: the read is sized by fstat
    # first, then goes on to the end of the file (and the limit).
    status = Path("/proc/self/status")
    if not status.is_file() or status.stat().st_size != 0:
        pytest.skip("needs a Linux /proc file that states a size of 0")
    text = read_text(str(status))
    assert isinstance(text, str) and text.startswith("Name:") and "\nPid:" in text


def test_a_file_at_the_limit_is_read_whole(tasks: Path) -> None:
    path = write(tasks, "t.yaml", ASYNC + "#" * (MAX_FILE_BYTES - len(ASYNC)))
    assert path.stat().st_size == MAX_FILE_BYTES
    assert read_text(str(path)) == ASYNC + "#" * (MAX_FILE_BYTES - len(ASYNC))
    assert lines(load_directory(tasks)) == []


def test_the_cycle_collector_is_paused_only_while_files_are_read(tasks: Path) -> None:
    write(tasks, "one.yaml", ASYNC)
    during: list[bool] = []
    load_directory(tasks, progress=lambda done, total: during.append(gc.isenabled()))
    assert during == [False] and gc.isenabled()
    gc.disable()
    try:
        load_directory(tasks)
        assert not gc.isenabled()  # the caller's choice is kept
    finally:
        gc.enable()


def test_non_utf8_file_is_refused_at_the_byte(tasks: Path) -> None:
    assert one_file(tasks, b"name: a\nowner: caf\xe9\n") == [
        "tasks.d/t.yaml:2:11: file: is not UTF-8 text (byte 0xe9) (hint: save the file as UTF-8)"
    ]


def test_symlink_leaving_the_tree_is_refused(tasks: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    write(outside, "secret.yaml", ASYNC)
    os.symlink(outside / "secret.yaml", tasks / "link.yaml")
    os.symlink(outside, tasks / "linkdir")
    result = load_directory(tasks)
    assert [d.path for d in result.diagnostics] == ["tasks.d/link.yaml", "tasks.d/linkdir"]
    assert lines(result)[0] == (
        f"tasks.d/link.yaml:1:1: file: is a symlink that leaves the tasks directory "
        f"(to {outside.resolve() / 'secret.yaml'}) "
        "(hint: copy the file into the tasks directory)"
    )
    assert result.tasks == []


def test_symlink_inside_the_tree_is_read(tasks: Path) -> None:
    write(tasks, "real/one.yml", ASYNC)
    os.symlink("real", tasks / "alias-dir")
    os.symlink("real/one.yml", tasks / "alias.yaml")
    os.symlink("missing.yaml", tasks / "broken.yaml")
    result = load_directory(tasks)
    assert lines(result) == [
        "tasks.d/broken.yaml:1:1: file: is a broken symlink",
        "tasks.d/real/one.yml:1:7: name: 'a' is already used at tasks.d/alias.yaml:1:7 "
        "(hint: task names are unique across all files; rename one)",
    ]


def test_fifo_is_refused_not_opened(tasks: Path) -> None:
    os.mkfifo(tasks / "pipe.yaml")
    assert lines(load_directory(tasks)) == ["tasks.d/pipe.yaml:1:1: file: is not a regular file"]
    assert lines(load_paths([tasks / "pipe.yaml"])) == [
        "tasks.d/pipe.yaml:1:1: file: is not a regular file"
    ]


def test_billion_laughs_is_refused_fast(tasks: Path) -> None:
    rows = ['  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 10):
        rows.append(f"  a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]")
    write(tasks, "bomb.yaml", ASYNC + "kwargs:\n" + "\n".join(rows) + "\n")
    started = time.perf_counter()
    result = load_directory(tasks)
    assert time.perf_counter() - started < 0.5
    assert lines(result) == [
        "tasks.d/bomb.yaml:1:1: document: aliases expand to more than 10,000 values "
        "(hint: write the values out instead of repeating anchors)"
    ]


def test_recursive_alias_is_refused(tasks: Path) -> None:
    assert one_file(tasks, ASYNC + "args: &loop [1, *loop]\n") == [
        "tasks.d/t.yaml:1:1: document: aliases expand to more than 10,000 values "
        "(hint: write the values out instead of repeating anchors)"
    ]


def test_small_anchors_and_merge_keys_work(tasks: Path) -> None:
    text = (
        "name: a\nowner: o\ntype: async\ntask: t\n"
        "labels: &common {team: billing}\n"
        "kwargs:\n  <<: *common\n  team: override\n  region: eu\n"
    )
    write(tasks, "t.yaml", text)
    result = load_directory(tasks)
    assert lines(result) == []
    assert result.tasks[0].spec.kwargs == {"team": "override", "region": "eu"}


def test_yaml_tags_construct_nothing(tasks: Path) -> None:
    text = ASYNC.replace("task: t", "task: !custom t") + "args: !!python/object:os.system [1]\n"
    assert one_file(tasks, text) == [
        "tasks.d/t.yaml:4:7: task: YAML tags are not allowed (found !custom) "
        "(hint: remove the tag; write plain values)",
        "tasks.d/t.yaml:5:7: args: YAML tags are not allowed (found !!python/object:os.system) "
        "(hint: remove the tag; write plain values)",
    ]


def test_explicit_standard_tag_that_changes_meaning_is_refused(tasks: Path) -> None:
    assert one_file(tasks, ASYNC + "args: [!!str 5]\n") == [
        "tasks.d/t.yaml:5:8: args[0]: YAML tags are not allowed (found !!str) "
        "(hint: remove the tag; write plain values)"
    ]


def test_a_tag_spelled_like_a_plain_value_is_refused(tasks: Path) -> None:
    # Verbatim and percent-encoded tags can spell the reader's own names for plain
    # values; they are still tags written in the file.
    text = ASYNC + 'args: [!<int> "5", !<%73tr> 6]\nkwargs: !<map> {a: 1}\n'
    assert one_file(tasks, text) == [
        "tasks.d/t.yaml:5:8: args[0]: YAML tags are not allowed (found !<int>) "
        "(hint: remove the tag; write plain values)",
        "tasks.d/t.yaml:5:20: args[1]: YAML tags are not allowed (found !<str>) "
        "(hint: remove the tag; write plain values)",
        "tasks.d/t.yaml:6:9: kwargs: YAML tags are not allowed (found !<map>) "
        "(hint: remove the tag; write plain values)",
    ]
    assert one_file(tasks, "--- !<null> x\n") == [
        "tasks.d/t.yaml:1:5: document: a task must be a mapping of fields, got a single value"
    ]


def test_duplicate_keys(tasks: Path) -> None:
    assert one_file(tasks, BASE + 'crontab: "0 1 * * *"\nowner: x\n') == [
        "tasks.d/t.yaml:6:1: owner: duplicate key 'owner' (hint: it is already set at line 2; "
        "keep one)"
    ]


def test_duplicate_nested_key(tasks: Path) -> None:
    assert one_file(tasks, ASYNC + "kwargs:\n  a: 1\n  a: 2\n") == [
        "tasks.d/t.yaml:7:3: kwargs.a: duplicate key 'a' (hint: it is already set at line 6; "
        "keep one)"
    ]


def test_yaml_syntax_error_is_located(tasks: Path) -> None:
    assert one_file(tasks, "name: a\nowner: [o\n") == [
        "tasks.d/t.yaml:3:1: yaml: did not find expected ',' or ']', while parsing a flow sequence"
    ]


def test_unquoted_star_crontab_gets_a_hint(tasks: Path) -> None:
    assert one_file(tasks, BASE + "crontab: */5 * * * *\n") == [
        "tasks.d/t.yaml:5:11: yaml: did not find expected alphabetic or numeric character, "
        "while scanning an alias (hint: quote values that start with '*' or '&')"
    ]


def test_too_deep_nesting(tasks: Path) -> None:
    result = one_file(tasks, ASYNC + "args: " + "[" * 80 + "]" * 80 + "\n")
    assert len(result) == 1
    assert result[0].startswith("tasks.d/t.yaml:5:70: args[0][0]")
    assert result[0].endswith(": values nest more than 64 levels deep")


def test_document_must_be_a_mapping(tasks: Path) -> None:
    assert one_file(tasks, "- a\n- b\n---\njust text\n") == [
        "tasks.d/t.yaml:1:1: document: a task must be a mapping of fields, got a list",
        "tasks.d/t.yaml:4:1: document: a task must be a mapping of fields, got a single value",
    ]


def test_field_names_must_be_strings(tasks: Path) -> None:
    assert one_file(tasks, ASYNC + "1: x\n") == [
        "tasks.d/t.yaml:5:1: 1: field names are strings, got an integer (1)"
    ]


def test_control_character_is_located(tasks: Path) -> None:
    assert one_file(tasks, "name: a\nowner: x\x07y\n") == [
        "tasks.d/t.yaml:2:9: yaml: contains the character #x0007, which YAML does not allow "
        "(hint: remove it)"
    ]


def test_overlong_values_are_shortened(tasks: Path) -> None:
    assert one_file(tasks, ASYNC.replace("name: a", "name: " + "A" * 60)) == [
        "tasks.d/t.yaml:1:7: name: must be lowercase letters, digits, '.', '_' or '-', starting "
        "and ending with a letter or digit, at most 128 characters, got 'AAAAAAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAAAA...'"
    ]


def test_a_key_cannot_be_a_mapping(tasks: Path) -> None:
    assert one_file(tasks, ASYNC + "? {a: 1}\n: x\n") == [
        "tasks.d/t.yaml:5:3: document: a key must be a plain value, not a list or mapping"
    ]


# --- the rules, with their messages ---------------------------------------------------


RULES: list[tuple[str, str, list[str]]] = [
    (
        "unknown field with the closest known one",
        BASE + 'crontabb: "0 1 * * *"\n',
        ["5:1: crontabb: unknown field (hint: did you mean 'crontab'?)"],
    ),
    (
        "unknown nested field",
        BASE + "crontab: {minute: 5, hourz: 3}\n",
        ["5:22: crontab.hourz: unknown field (hint: did you mean 'hour'?)"],
    ),
    (
        "unknown field far from any",
        ASYNC + "zzz: 1\n",
        [
            "5:1: zzz: unknown field (hint: known fields: active, alerts, args, at, catchup, "
            "crontab, description, enabled, history, interval, kwargs, labels, last_run, name, "
            "only_on, options, overlap, owner, previous_names, skip_on, spread, task, "
            "timezone, type)"
        ],
    ),
    (
        "required fields",
        "name: a\ntype: async\n",
        [
            "1:1: owner: required field missing "
            "(hint: add e.g. owner: billing (the team whose history it is))",
            "1:1: task: required field missing "
            "(hint: add the Celery task name, e.g. task: app.worker.test_celery)",
        ],
    ),
    (
        "wrong types say what was expected",
        BASE + 'crontab: "0 1 * * *"\nenabled: "yes"\nargs: {a: 1}\nlabels: [a]\n',
        [
            "6:10: enabled: expected true or false, got a string ('yes')",
            "7:7: args: expected a list, got a mapping",
            "8:9: labels: expected a mapping, got a list",
        ],
    ),
    (
        "a number where a string belongs",
        ASYNC + "labels: {team: 1}\ndescription: 5\n",
        [
            "5:16: labels.team: expected a string, got an integer (1) "
            "(hint: quote it to make it a string)",
            "6:14: description: expected a string, got an integer (5) "
            "(hint: quote it to make it a string)",
        ],
    ),
    (
        "unknown type",
        ASYNC.replace("async", "cron"),
        ["3:7: type: expected 'async', 'scheduled' or 'periodic', got a string ('cron')"],
    ),
    (
        "bad name",
        ASYNC.replace("name: a", "name: Daily_Report"),
        [
            "1:7: name: must be lowercase letters, digits, '.', '_' or '-', starting and ending "
            "with a letter or digit, at most 128 characters, got 'Daily_Report'"
        ],
    ),
    (
        "reserved name",
        ASYNC.replace("name: a", "name: executions"),
        [
            "1:7: name: 'executions' is reserved (it is a path of the HTTP API) "
            "(hint: choose another name)"
        ],
    ),
    (
        "reserved name registered",
        ASYNC.replace("name: a", "name: registered"),
        [
            "1:7: name: 'registered' is reserved (it is a path of the HTTP API) "
            "(hint: choose another name)"
        ],
    ),
    (
        "empty owner and a task name with spaces",
        'name: a\nowner: ""\ntype: async\ntask: "a b"\n',
        [
            "2:8: owner: must not be empty",
            "4:7: task: must be a Celery task name without spaces, got 'a b'",
        ],
    ),
    (
        "schedule field not fitting the type",
        BASE + "at: 2030-01-01T00:00:00Z\n",
        [
            "5:5: at: does not fit type 'periodic', which takes 'crontab' or 'interval' "
            "(hint: remove 'at' or change the type)"
        ],
    ),
    (
        "crontab on an async task",
        ASYNC + 'crontab: "* * * * *"\n',
        [
            "5:10: crontab: does not fit type 'async', which takes no schedule field "
            "(hint: remove 'crontab' or change the type)"
        ],
    ),
    (
        "periodic without a schedule",
        BASE,
        [
            "3:7: type: 'periodic' needs 'crontab' or 'interval' "
            "(hint: add e.g. crontab: '0 9 * * 1' or interval: {minutes: 5})"
        ],
    ),
    (
        "periodic with both schedules",
        BASE + 'crontab: "0 1 * * *"\ninterval: {minutes: 5}\n',
        [
            "6:11: interval: 'periodic' takes one of 'crontab' or 'interval', not both "
            "(hint: remove 'interval' or 'crontab')"
        ],
    ),
    (
        "scheduled without at",
        ASYNC.replace("async", "scheduled"),
        ["3:7: type: 'scheduled' needs 'at' (hint: add e.g. at: 2025-12-02T15:00:00Z)"],
    ),
    (
        "crontab string out of range",
        BASE + 'crontab: "61 * * * *"\n',
        ["5:10: crontab: '61 * * * *' minute must be 0-59, got 61"],
    ),
    (
        "crontab string with four fields",
        BASE + 'crontab: "0 1 * *"\n',
        [
            "5:10: crontab: needs 5 fields, got 4 in '0 1 * *' "
            "(hint: minute hour day_of_month month_of_year day_of_week, e.g. '0 9 * * 1', "
            "or a macro such as '@daily')"
        ],
    ),
    (
        "crontab mapping fields point at their own lines",
        BASE
        + 'crontab:\n  minute: "*/0"\n  hour: 24\n  day_of_week: mon-fry\n  day_of_month: 5-1\n',
        [
            "6:11: crontab.minute: step must be at least 1, got 0 (hint: e.g. '*/5')",
            "7:9: crontab.hour: must be 0-23, got 24",
            "8:16: crontab.day_of_week: 'mon-fry': unknown weekday 'fry' "
            "(hint: MON TUE WED THU FRI SAT SUN or 0-7)",
            "9:17: crontab.day_of_month: range 5-1 runs backwards (hint: split it: '5-31,1')",
        ],
    ),
    (
        "crontab day of week 8 and month 0",
        BASE + "crontab: {day_of_week: 8, month_of_year: 0, day_of_month: ''}\n",
        [
            "5:24: crontab.day_of_week: must be 0-7, got 8 "
            "(hint: MON TUE WED THU FRI SAT SUN or 0-7)",
            "5:42: crontab.month_of_year: must be 1-12, got 0 "
            "(hint: JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC or 1-12)",
            "5:59: crontab.day_of_month: is empty (hint: use '*' for every value)",
        ],
    ),
    (
        "interval out of range",
        BASE + "interval: {days: 400, hours: -1, seconds: 1.5}\n",
        [
            "5:18: interval.days: must be at most 365, got 400",
            "5:30: interval.hours: must be at least 0, got -1",
            "5:43: interval.seconds: expected an integer, got a number (1.5)",
        ],
    ),
    (
        "interval of zero",
        BASE + "interval: {minutes: 0}\n",
        [
            "5:11: interval: must be above 0 "
            "(hint: set at least one of days, hours, minutes, seconds)"
        ],
    ),
    (
        "unknown time zone with a suggestion",
        BASE + 'crontab: "0 1 * * *"\ntimezone: Europe/Berlinn\n',
        [
            "6:11: timezone: unknown time zone 'Europe/Berlinn' "
            "(hint: did you mean 'Europe/Berlin'?)"
        ],
    ),
    (
        "unknown time zone",
        BASE + 'crontab: "0 1 * * *"\ntimezone: Mars/Olympus\n',
        [
            "6:11: timezone: unknown time zone 'Mars/Olympus' "
            "(hint: use an IANA name such as 'Europe/Berlin' or 'UTC')"
        ],
    ),
    (
        "options point at their own lines",
        ASYNC + "options:\n  queue: q\n  priority: 10\n  expires: 0\n",
        [
            "7:13: options.priority: must be at most 9, got 10",
            "8:12: options.expires: must be above 0, got 0",
        ],
    ),
    (
        "soft time limit above the hard one",
        ASYNC + "options:\n  time_limit: 10\n  soft_time_limit: 20\n",
        ["7:20: options.soft_time_limit: must not exceed time_limit (10)"],
    ),
    (
        "a bare date in kwargs must be quoted",
        ASYNC + "kwargs:\n  day: 2025-01-01\n",
        [
            "6:8: kwargs.day: a date (2025-01-01) is not a plain JSON value "
            "(hint: quote it to pass it as a string: '2025-01-01')"
        ],
    ),
    (
        "a timestamp in args must be quoted",
        ASYNC + "args: [1, 2025-01-01T10:00:00Z]\n",
        [
            "5:11: args[1]: a timestamp (2025-01-01 10:00:00+00:00) is not a plain JSON value "
            "(hint: quote it to pass it as a string: '2025-01-01T10:00:00+00:00')"
        ],
    ),
    (
        "not-a-number in args",
        ASYNC + "args: [1, .nan]\n",
        ["5:11: args[1]: nan is not a JSON number (hint: use a finite number)"],
    ),
    (
        "a non-string key in kwargs",
        ASYNC + "kwargs: {1: a}\n",
        ["5:10: kwargs.1: keys must be strings, got an integer (1) (hint: quote the key)"],
    ),
    (
        "at as a number",
        ASYNC.replace("async", "scheduled") + "at: 1700000000\n",
        [
            "5:5: at: expected an ISO 8601 date and time, got an integer (1700000000) "
            "(hint: write it like 2025-12-02T15:00:00Z (no offset means the task's timezone))"
        ],
    ),
    (
        "at as words",
        ASYNC.replace("async", "scheduled") + "at: tomorrow\n",
        [
            "5:5: at: expected an ISO 8601 date and time, got a string ('tomorrow') "
            "(hint: write it like 2025-12-02T15:00:00Z (no offset means the task's timezone))"
        ],
    ),
    (
        "overlap and catchup values",
        ASYNC + "overlap: never\ncatchup: all\n",
        [
            "5:10: overlap: expected 'allow' or 'skip', got a string ('never')",
            "6:10: catchup: expected 'skip' or 'once', got a string ('all')",
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_rule_messages(tasks: Path, text: str, expected: list[str]) -> None:
    assert one_file(tasks, text) == [f"tasks.d/t.yaml:{line}" for line in expected]


def test_all_errors_of_all_files_in_one_run(tasks: Path) -> None:
    write(tasks, "a.yaml", BASE + 'crontab: "61 * * * *"\n---\n' + ASYNC + "zzz: 1\nyyy: 2\n")
    write(tasks, "b/c.yaml", ASYNC.replace("name: a", "name: c") + "options: {priority: 10}\n")
    result = load_directory(tasks, now=NOW)
    assert [(d.path, d.line, d.field) for d in result.diagnostics] == [
        ("tasks.d/a.yaml", 5, "crontab"),
        ("tasks.d/a.yaml", 11, "zzz"),
        ("tasks.d/a.yaml", 12, "yyy"),
        ("tasks.d/b/c.yaml", 5, "options.priority"),
    ]


def test_a_name_used_twice_names_both_places(tasks: Path) -> None:
    write(tasks, "a.yaml", ASYNC)
    write(tasks, "b.yaml", "# another\n" + ASYNC)
    assert lines(load_directory(tasks, now=NOW)) == [
        "tasks.d/b.yaml:2:7: name: 'a' is already used at tasks.d/a.yaml:1:7 "
        "(hint: task names are unique across all files; rename one)"
    ]


def test_past_at_is_a_warning(tasks: Path) -> None:
    write(tasks, "t.yaml", ASYNC.replace("async", "scheduled") + "at: 2025-12-31 23:00\n")
    result = load_directory(tasks, now=NOW)
    assert result.ok and len(result.tasks) == 1
    assert [(d.severity, str(d)) for d in result.diagnostics] == [
        (
            "warning",
            "tasks.d/t.yaml:5:5: at: 2025-12-31T23:00:00+00:00 is in the past "
            "(hint: set a future time, or remove the task once it has run)",
        )
    ]
    later = load_directory(tasks, now=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    assert later.diagnostics == []


def test_at_accepts_an_unquoted_timestamp_in_the_task_zone(tasks: Path) -> None:
    write(
        tasks,
        "t.yaml",
        ASYNC.replace("async", "scheduled")
        + "at: 2030-07-01T10:00:00\ntimezone: Europe/Berlin\n"
        + "---\n"
        + ASYNC.replace("async", "scheduled").replace("name: a", "name: b")
        + "at: 2030-07-01T10:00:00+02:00\n",
    )
    result = load_directory(tasks, now=NOW)
    assert lines(result) == []
    expected = dt.datetime(2030, 7, 1, 8, 0, tzinfo=dt.UTC)
    assert [t.spec.at for t in result.tasks] == [expected, expected]


def test_check_registered_points_at_the_task_field(tasks: Path) -> None:
    write(tasks, "t.yaml", "# c\n" + ASYNC.replace("task: t", "task: app.worker.test_celeri"))
    result = load_directory(tasks, now=NOW)
    assert [str(d) for d in check_registered(result, {"app.worker.test_celery"})] == [
        "tasks.d/t.yaml:5:7: task: 'app.worker.test_celeri' is not registered by the Celery app "
        "(hint: did you mean 'app.worker.test_celery'?)"
    ]
    assert [str(d) for d in check_registered(result, {"other"})] == [
        "tasks.d/t.yaml:5:7: task: 'app.worker.test_celeri' is not registered by the Celery app "
        "(hint: run 'reconcile tasks' to list them)"
    ]


def test_diagnostic_str_and_dict() -> None:
    plain = Diagnostic("a.yaml", 3, 5, "crontab", "bad")
    assert str(plain) == "a.yaml:3:5: crontab: bad"
    hinted = Diagnostic("a.yaml", 3, 5, "name", "taken", hint="rename", severity="warning")
    assert str(hinted) == "a.yaml:3:5: name: taken (hint: rename)"
    assert hinted.to_dict() == {
        "path": "a.yaml",
        "line": 3,
        "column": 5,
        "field": "name",
        "message": "taken",
        "hint": "rename",
    }


def test_no_sqlalchemy_or_celery_in_the_loader() -> None:
    import subprocess
    import sys

    code = (
        "import sys, reconciler.files.loader, reconciler.core.spec, reconciler.core.diagnostics; "
        "print(sorted(m for m in ('sqlalchemy', 'celery', 'click') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_readme_example_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- section: task-files -->", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "example.yaml").write_text(example, encoding="utf-8")
    result = load_directory(tmp_path, now=NOW)
    assert [str(d) for d in result.diagnostics] == []
    assert [t.spec.type for t in result.tasks] == ["async", "scheduled", "periodic", "periodic"]
