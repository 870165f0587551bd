"""The read side of the store (reconciler.store.reads) on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete

from reconciler.core.times import iso
from reconciler.store.database import Database
from reconciler.store.reads.applies import list_applies
from reconciler.store.reads.counts import execution_counts, task_counts
from reconciler.store.reads.cursors import BadParameter
from reconciler.store.reads.detail import get_task
from reconciler.store.reads.executions import (
    execution_page,
    execution_record,
    iter_execution_records,
)
from reconciler.store.reads.reader import Reader
from reconciler.store.reads.records import EXECUTION_KEYS, execution_dict
from reconciler.store.reads.tasks import task_page
from reconciler.store.tables import ApplyRecord, Task, TaskExecution
from tests.webseed import BACKENDS, T0, add_apply, add_execution, add_task, backend_url

H = dt.timedelta(hours=1)


@pytest.fixture(scope="module", params=BACKENDS)
def module_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    for url in backend_url(str(request.param), tmp_path_factory.mktemp("queries")):
        database = Database.open(url)
        yield database
        database.dispose()


@pytest.fixture
def reader(db: Database) -> Reader:
    return Reader(db.engine)


@pytest.fixture
def db(module_db: Database) -> Database:
    """Empty tables for each test, in one database per backend (creating one per test
    would cost seconds each on PostgreSQL)."""
    with module_db.session() as session:
        for table in (TaskExecution, Task, ApplyRecord):
            session.execute(delete(table))
    return module_db


def test_an_execution_has_exactly_the_public_keys_and_redacts(db: Database, reader: Reader) -> None:
    with db.session() as s:
        add_task(s, "report")
        row = add_execution(
            s,
            "report",
            kwargs={"region": "eu", "DB_Password": "x", "nested": {"apiKey": "k", "n": 1}},
            result={"ok": True},
        )
        ident = row.id
    record = reader.run(execution_record(ident))
    assert record is not None
    out = execution_dict(record)
    assert tuple(out) == EXECUTION_KEYS
    assert out["kwargs"] == {
        "region": "eu",
        "DB_Password": "***",
        "nested": {"apiKey": "***", "n": 1},
    }
    assert out["queued_at"] == "2025-01-01T12:00:00+00:00"
    assert out["finished_at"] == "2025-01-01T12:00:03+00:00"
    assert out["task"] == "report" and out["result"] == {"ok": True}


def test_list_executions_newest_first_with_stable_cursor(db: Database, reader: Reader) -> None:
    with db.session() as s:
        add_task(s, "a")
        for i in range(7):
            add_execution(s, "a", queued_at=T0 + i * H)
    seen: list[int] = []
    page, cursor = reader.run(execution_page(task="a", limit=3))
    seen += [execution_dict(r)["id"] for r in page]
    assert cursor is not None
    # Rows added while paging appear on no later page and shift nothing.
    with db.session() as s:
        add_execution(s, "a", queued_at=T0 + 10 * H)
    while cursor is not None:
        page, cursor = reader.run(execution_page(task="a", limit=3, cursor=cursor))
        seen += [execution_dict(r)["id"] for r in page]
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == len(set(seen)) == 7


def test_list_executions_filters(db: Database, reader: Reader) -> None:
    with db.session() as s:
        add_task(s, "a", owner="billing")
        add_task(s, "b", owner="ops")
        add_execution(s, "a", status="failure", queued_at=T0)
        add_execution(s, "a", status="success", queued_at=T0 + H)
        add_execution(s, "b", status="success", queued_at=T0 + 2 * H)
        add_execution(s, "ghost", status="success", queued_at=T0)

    def page(key: str, **filters: Any) -> list[Any]:
        records, _ = reader.run(execution_page(**filters))
        return [execution_dict(record)[key] for record in records]

    task = EXECUTION_KEYS.index("task")
    with db.session() as s:
        assert page("task") == ["ghost", "b", "a", "a"]
        assert page("status", task="a", status="failure") == ["failure"]
        assert page("task", since=T0 + H) == ["b", "a"]
        assert page("task", until=T0 + H) == ["ghost", "a"]
        assert set(page("task", owner="billing")) == {"a"}
        assert page("task", owner="nobody") == []
        assert [r[task] for r in iter_execution_records(reader, owner="ops", batch=1)] == ["b"]
        assert len(list(iter_execution_records(reader, batch=3))) == 4


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"status": "done"}, "status"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"limit": 0}, "limit"),
        ({"since": dt.datetime(2025, 1, 1)}, "since"),
    ],
)
def test_list_executions_bad_parameters_name_the_parameter(
    db: Database, reader: Reader, kwargs: dict[str, object], parameter: str
) -> None:
    with pytest.raises(BadParameter) as info:
        reader.run(execution_page(**kwargs))  # type: ignore[arg-type]
    assert info.value.parameter == parameter
    assert str(info.value).startswith(f"{parameter}: ")


def test_get_execution_respects_owner(db: Database, reader: Reader) -> None:
    with db.session() as s:
        add_task(s, "a", owner="billing")
        row = add_execution(s, "a")
        ident = row.id
    assert reader.run(execution_record(ident)) is not None
    assert reader.run(execution_record(ident, owner="billing")) is not None
    assert reader.run(execution_record(ident, owner="ops")) is None
    assert reader.run(execution_record(ident + 100)) is None


def test_task_list_has_last_status_and_sorts_with_keyset(db: Database, reader: Reader) -> None:
    with db.session() as s:
        add_task(s, "c", next_run_at=T0 + 2 * H)
        add_task(s, "a", next_run_at=None)
        add_task(s, "b", next_run_at=T0 + H)
        add_task(s, "d", next_run_at=T0 + H)
        add_task(s, "gone", deleted_at=T0)
        add_execution(s, "a", status="success", queued_at=T0)
        add_execution(s, "a", status="failure", queued_at=T0 + 3 * H)
        add_execution(s, "c", status="started", queued_at=T0 + H)

    def names(sort: str, limit: int) -> list[str]:
        out: list[str] = []
        cursor: str | None = None
        while True:
            rows, cursor = reader.run(task_page(sort=sort, limit=limit, cursor=cursor))
            out += [r.name for r in rows]
            if cursor is None:
                return out

    for limit in (1, 2, 10):
        assert names("name", limit) == ["a", "b", "c", "d"]
        assert names("-name", limit) == ["d", "c", "b", "a"]
        assert names("next_run", limit) == ["b", "d", "c", "a"]
        assert names("last_run", limit) == ["b", "d", "c", "a"]
        assert names("-last_run", limit) == ["a", "c", "d", "b"]
    with db.session() as s:
        rows, _ = reader.run(task_page())
        by_name = {r.name: r for r in rows}
        assert by_name["a"].last_status == "failure"
        assert iso(by_name["a"].last_run) == (T0 + 3 * H).isoformat()
        assert by_name["b"].last_status is None
        cursor = reader.run(task_page(sort="name", limit=1))[1]
        assert cursor is not None
        with pytest.raises(BadParameter, match="cursor: not a cursor of a list sorted by next_run"):
            reader.run(task_page(sort="next_run", cursor=cursor))
        with pytest.raises(BadParameter, match="sort: 'size' is not one of"):
            reader.run(task_page(sort="size"))
        deleted = get_task(s, "gone")
        assert deleted is not None and deleted.task.deleted_at == T0
        assert get_task(s, "gone", owner="ops") is None


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("100%", ["pct"]),
        ("a_b", ["under"]),
        ("it's", ["quote"]),
        ('say "hi"', ["dquote"]),
        ("'; DROP TABLE tasks; --", ["sql"]),
        ("SELECT", ["sql"]),
        ("Zürich", ["unicode"]),
        ("日本", ["unicode"]),
        ("\\", ["backslash"]),
        ("REPORT", ["report"]),
        ("nothing-matches", []),
    ],
)
def test_search_is_literal_and_parameterised(
    db: Database, reader: Reader, q: str, expected: list[str]
) -> None:
    with db.session() as s:
        add_task(s, "pct", description="grows 100% a year")
        add_task(s, "under", description="a_b test")
        add_task(s, "aXb", description="axb")
        add_task(s, "quote", description="it's quoted")
        add_task(s, "dquote", description='they say "hi"')
        add_task(s, "sql", description="'; DROP TABLE tasks; -- SELECT")
        add_task(s, "unicode", description="Zürich 日本")
        add_task(s, "backslash", description="C:\\path")
        add_task(s, "report", task="app.reports.build")
    rows, _ = reader.run(task_page(q=q))
    assert [r.name for r in rows] == expected
    assert len(reader.run(task_page())[0]) == 9


def test_task_filters_and_counts(db: Database, reader: Reader) -> None:
    with db.session() as s:
        add_task(s, "a", owner="billing", type="periodic", enabled=True)
        add_task(s, "b", owner="billing", type="async", enabled=False, crontab=None)
        add_task(s, "c", owner="ops", type="periodic", enabled=False)
        add_execution(s, "a", status="success")
        add_execution(s, "a", status="success", queued_at=T0 + H)
        add_execution(s, "c", status="failure")
    with db.session() as s:
        assert [r.name for r in reader.run(task_page(owner="billing"))[0]] == ["a", "b"]
        assert [r.name for r in reader.run(task_page(type="async"))[0]] == ["b"]
        assert [r.name for r in reader.run(task_page(enabled=False))[0]] == ["b", "c"]
        with pytest.raises(BadParameter, match="type: "):
            reader.run(task_page(type="cron"))
        assert sorted(execution_counts(s)) == [("a", "success", 2), ("c", "failure", 1)]
        assert execution_counts(s, owner="billing") == [("a", "success", 2)]
        assert sorted(task_counts(s)) == [
            ("async", False, 1),
            ("periodic", False, 1),
            ("periodic", True, 1),
        ]


def test_apply_log_newest_first(db: Database) -> None:
    with db.session() as s:
        for i in range(3):
            add_apply(s, at=T0 + i * H, created=[f"t{i}"])
    with db.session() as s:
        page, cursor = list_applies(s, limit=2)
        assert [r.created_names for r in page] == [["t2"], ["t1"]]
        page, cursor = list_applies(s, limit=2, cursor=cursor)
        assert [r.created_names for r in page] == [["t0"]] and cursor is None


def test_export_records_match_the_pages(db: Database, reader: Reader) -> None:
    with db.session() as s:
        add_task(s, "a")
        add_execution(s, "a", queued_at=T0 + dt.timedelta(microseconds=500_000), result=None)
        add_execution(
            s,
            "a",
            kwargs={"token": "t", "x": [1, {"api_key": 2}]},
            result=[1, "é"],
            queued_at=T0 + H,
        )
        add_execution(s, "a", status="pending", queued_at=T0 + 2 * H, result="text")
    expected = [execution_dict(record) for record in reader.run(execution_page())[0]]
    records = list(iter_execution_records(reader, batch=2))
    assert len(records) == len(expected) == 3
    # What the pages show: nested secrets redacted, JSON decoded, microseconds kept.
    assert [e["result"] for e in expected] == ["text", [1, "é"], None]
    assert expected[1]["kwargs"] == {"token": "***", "x": [1, {"api_key": "***"}]}
    assert expected[2]["queued_at"] == "2025-01-01T12:00:00.500000+00:00"
    assert expected[0]["args"] == ["a"] and expected[0]["retries"] == 0
    for record, want in zip(records, expected, strict=True):
        got = dict(zip(EXECUTION_KEYS, record, strict=True))
        for key in ("args", "kwargs", "result"):
            if got[key] is not None and not isinstance(want[key], str):
                got[key] = json.loads(got[key])  # type: ignore[arg-type]
        assert got == want


def test_an_export_left_early_waits_for_its_prefetch_and_frees_the_connection(
    db: Database,
    reader: Reader,
) -> None:
    with db.session() as s:
        add_task(s, "a")
        for i in range(7):
            add_execution(s, "a", queued_at=T0 + i * H)
    pool = db.engine.pool
    records = iter_execution_records(reader, batch=2)
    first = [next(records) for _ in range(3)]  # into the second batch; the third is queried
    records.close()
    assert [r[EXECUTION_KEYS.index("queued_at")] for r in first] == [
        (T0 + i * H).isoformat() for i in (6, 5, 4)
    ]
    # Nothing is left running on the connection it used.
    assert len(list(iter_execution_records(reader, batch=3))) == 7
    assert pool.checkedout() == 0  # type: ignore[attr-defined]


def test_export_pages_overlap_but_keep_the_newest_first_order(db: Database, reader: Reader) -> None:
    with db.session() as s:
        add_task(s, "a")
        for i in range(11):
            add_execution(s, "a", queued_at=T0 + i * H)
    for batch in (1, 2, 5, 11, 50):
        ids = [r[0] for r in iter_execution_records(reader, batch=batch)]
        assert len(ids) == 11 and ids == sorted(ids, reverse=True)
