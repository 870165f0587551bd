"""The Beat scheduler's statements (reconciler.store.scheduling, .outbox, .leases) on
SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from reconciler.store import leases, outbox, scheduling
from reconciler.store.database import Database
from tests.beatsupport import at, delete_task, executions, put_task, spec, task_row, wait_lapsed

T0 = at("2026-01-05T10:00:00Z")


def seconds(n: float) -> dt.timedelta:
    return dt.timedelta(seconds=n)


def new_execution(name: str, celery_id: str, slot: dt.datetime | None) -> outbox.NewExecution:
    return outbox.NewExecution(name, celery_id, "schedule", slot, [], {}, T0)


def test_due_slots_are_oldest_first_limited_and_only_live_enabled_tasks(db: Database) -> None:
    for n in range(5):
        put_task(db, spec(f"t{n}", interval={"seconds": 10 + n}), T0)
    put_task(db, spec("off", interval={"seconds": 1}, enabled=False), T0, next_run_at=T0)
    put_task(db, spec("dead", interval={"seconds": 1}), T0)
    delete_task(db, "dead", T0)
    with db.session() as session:
        due = scheduling.due_slots(session, T0 + seconds(12), limit=2)
        assert [d.name for d in due] == ["t0", "t1"]
        assert due[0].slot == T0 + seconds(10)
        assert due[0].anchor == T0
        everything = scheduling.due_slots(session, T0 + seconds(100), limit=100)
        assert {d.name for d in everything} == {"t0", "t1", "t2", "t3", "t4"}
        assert scheduling.next_due(session) == T0 + seconds(10)


def test_the_claim_is_a_compare_and_set_on_the_slot(db: Database) -> None:
    put_task(db, spec("cas", interval={"seconds": 10}), T0)
    task_id = task_row(db, "cas").id
    claim = scheduling.Claim(task_id, T0 + seconds(10), T0 + seconds(20), T0 + seconds(10))
    with db.session() as session:
        assert scheduling.claim(session, [claim]) == {task_id}
    with db.session() as session:
        # A second beat holding the old slot loses.
        assert scheduling.claim(session, [claim]) == set()
    row = task_row(db, "cas")
    assert row.next_run_at == T0 + seconds(20)
    assert row.last_run_at == T0 + seconds(10)


def test_claims_count_missed_and_skipped_and_may_clear_the_next_run(db: Database) -> None:
    put_task(db, spec("a", type="async"), T0)
    put_task(db, spec("b", interval={"seconds": 10}), T0)
    a, b = task_row(db, "a"), task_row(db, "b")
    claims = [
        scheduling.Claim(a.id, T0, None, T0),
        scheduling.Claim(b.id, T0 + seconds(10), T0 + seconds(20), None, missed=3, skipped=1),
    ]
    with db.session() as session:
        assert scheduling.claim(session, claims) == {a.id, b.id}
    a, b = task_row(db, "a"), task_row(db, "b")
    assert a.next_run_at is None and a.last_run_at == T0
    assert (b.missed_count, b.skipped_count, b.last_run_at) == (3, 1, None)


def test_one_execution_row_per_slot(db: Database) -> None:
    with db.session() as session:
        first = outbox.insert_executions(
            session, [new_execution("x", "id-1", T0), new_execution("x", "id-2", T0 + seconds(1))]
        )
        again = outbox.insert_executions(
            session, [new_execution("x", "id-3", T0), new_execution("x", "id-4", None)]
        )
    assert first == {"id-1", "id-2"}
    assert again == {"id-4"}
    assert [row.celery_task_id for row in executions(db, "x")] == ["id-1", "id-2", "id-4"]


@pytest.mark.postgres
def test_two_beats_split_due_rows_instead_of_waiting(postgres_url: str) -> None:
    db = Database.open(postgres_url)
    try:
        for n in range(6):
            put_task(db, spec(f"t{n}", interval={"seconds": 10}), T0)
        now = T0 + seconds(10)
        with db.session() as first:
            mine = scheduling.due_slots(first, now, limit=4)
            with db.session() as second:
                theirs = scheduling.due_slots(second, now, limit=4)
        assert len(mine) == 4 and len(theirs) == 2
        assert not {d.name for d in mine} & {d.name for d in theirs}
    finally:
        db.dispose()


def claim_rows(db: Database, lease: leases.Lease | None, *ids: str, first: int = 0) -> None:
    """Pending rows of task ``u``, one per id, for slots ``first``, ``first + 1``... s."""
    rows = [
        new_execution("u", celery_id, T0 + seconds(first + n)) for n, celery_id in enumerate(ids)
    ]
    with db.session() as session:
        outbox.insert_executions(session, rows, lease)


def taken(db: Database, lease: leases.Lease, legacy_age: float = 5) -> list[str]:
    with db.session() as session:
        return [row.celery_task_id for row in leases.take_over(session, lease, legacy_age, 10)]


def test_unpublished_rows_are_taken_over_marked_and_failed(db: Database) -> None:
    claim_rows(db, leases.Lease("beat-a", 0.2), "id-0", "id-1", "id-2")
    with db.session() as session:
        outbox.mark_published(session, ["id-0"], T0 + seconds(1))
    wait_lapsed(db)
    with db.session() as session:
        rows = leases.take_over(session, leases.Lease("beat-b", 10), 5, 10)
        assert [row.celery_task_id for row in rows] == ["id-1", "id-2"]
        assert rows[0].scheduled_for == T0 + seconds(1) and rows[0].queued_at == T0
        outbox.fail_unpublished(session, [rows[0].id], "not published: test", T0)
    by_id = {row.celery_task_id: row for row in executions(db, "u")}
    assert by_id["id-0"].published_at == T0 + seconds(1)
    assert by_id["id-1"].status == "failure"
    assert by_id["id-1"].error == "not published: test"
    assert by_id["id-2"].status == "pending"
    assert by_id["id-2"].claimed_by == "beat-b"


def test_a_claim_carries_its_owner_and_a_lease_from_the_database_clock(db: Database) -> None:
    with db.session() as session:
        before = leases.database_now(session)
    # The rows are queued at T0 by the beat's clock; the lease ignores that clock.
    claim_rows(db, leases.Lease("beat-a", 10), "id-0", "id-1")
    with db.session() as session:
        after = leases.database_now(session)
    rows = executions(db, "u")
    assert {row.claimed_by for row in rows} == {"beat-a"}
    for row in rows:
        assert row.lease_until is not None
        assert before + seconds(10) <= row.lease_until <= after + seconds(10)
    claim_rows(db, None, "id-9", first=9)
    (unclaimed,) = [row for row in executions(db, "u") if row.celery_task_id == "id-9"]
    assert unclaimed.claimed_by is None and unclaimed.lease_until is None


def test_a_live_lease_is_never_taken_over_and_a_lapsed_one_by_one_beat_only(db: Database) -> None:
    claim_rows(db, leases.Lease("beat-a", 30), "live")
    assert taken(db, leases.Lease("beat-b", 10)) == []
    claim_rows(db, leases.Lease("beat-a", 0.2), "short", first=1)
    wait_lapsed_rows(db, "short")
    assert taken(db, leases.Lease("beat-b", 10)) == ["short"]
    # Now beat B holds it: a third beat gets nothing, B itself may take its own again.
    assert taken(db, leases.Lease("beat-c", 10)) == []
    assert taken(db, leases.Lease("beat-b", 10)) == ["short"]
    rows = {row.celery_task_id: row for row in executions(db, "u")}
    assert rows["short"].claimed_by == "beat-b"
    assert rows["live"].claimed_by == "beat-a"


def wait_lapsed_rows(db: Database, *ids: str) -> None:
    from tests.support import wait_for

    def lapsed() -> bool:
        with db.session() as session:
            now = leases.database_now(session)
        rows = [row for row in executions(db) if row.celery_task_id in ids]
        return all(row.lease_until is not None and row.lease_until < now for row in rows)

    wait_for(lapsed, 10, message=f"the leases of {ids} to lapse")


def test_rows_claimed_before_leases_are_taken_over_by_their_age_on_the_database_clock(
    db: Database,
) -> None:
    with db.session() as session:
        now = leases.database_now(session)
        outbox.insert_executions(
            session,
            [
                outbox.NewExecution("u", "old", "schedule", T0, [], {}, now - seconds(60)),
                outbox.NewExecution("u", "new", "schedule", T0 + seconds(1), [], {}, now),
                outbox.NewExecution("u", "ext", "external", T0 + seconds(2), [], {}, T0),
            ],
        )
    assert taken(db, leases.Lease("beat-b", 10), legacy_age=30) == ["old"]


def test_renewal_is_a_compare_and_set_on_the_owner_and_a_live_lease(db: Database) -> None:
    claim_rows(db, leases.Lease("beat-a", 10), "id-0", "id-1", "id-2")
    first = {row.celery_task_id: row.lease_until for row in executions(db, "u")}
    with db.session() as session:
        assert leases.renew(session, leases.Lease("beat-b", 10), ["id-0", "id-1"]) == set()
        outbox.mark_published(session, ["id-2"], T0)
    with db.session() as session:
        renewed = leases.renew(session, leases.Lease("beat-a", 20), ["id-0", "id-1", "id-2"])
    assert renewed == {"id-0", "id-1"}  # id-2 was sent: nothing left to hold
    rows = {row.celery_task_id: row for row in executions(db, "u")}
    for celery_id in ("id-0", "id-1"):
        until, was = rows[celery_id].lease_until, first[celery_id]
        assert until is not None and was is not None and until >= was + seconds(9)
    claim_rows(db, leases.Lease("beat-a", 0.2), "lapsing", first=3)
    wait_lapsed_rows(db, "lapsing")
    with db.session() as session:
        # Lapsed: not even its owner may renew it, though no other beat took it yet.
        assert leases.renew(session, leases.Lease("beat-a", 10), ["lapsing"]) == set()


@pytest.mark.postgres
def test_two_beats_taking_over_at_once_never_both_get_a_row(postgres_url: str) -> None:
    db = Database.open(postgres_url)
    try:
        claim_rows(db, leases.Lease("beat-a", 0.2), "id-0", "id-1", "id-2")
        wait_lapsed(db)
        with db.session() as first:
            mine = leases.take_over(first, leases.Lease("beat-b", 10), 5, 2)
            with db.session() as second:
                # B's transaction is still open: its rows are locked, C skips them.
                theirs = leases.take_over(second, leases.Lease("beat-c", 10), 5, 10)
        assert [row.celery_task_id for row in mine] == ["id-0", "id-1"]
        assert [row.celery_task_id for row in theirs] == ["id-2"]
        # Committed: B's live leases keep C away.
        assert taken(db, leases.Lease("beat-c", 10)) == ["id-2"]
        assert taken(db, leases.Lease("beat-d", 10)) == []
    finally:
        db.dispose()


def test_changes_are_read_by_the_marker(db: Database) -> None:
    put_task(db, spec("one"), T0)
    with db.session() as session:
        seen = scheduling.change_marker(session)
    put_task(db, spec("two"), T0)
    delete_task(db, "one", T0)
    with db.session() as session:
        assert scheduling.change_marker(session) == seen + 2
        changed = {row.name: row.live for row in scheduling.changed_specs(session, seen)}
        assert changed == {"two": True, "one": False}
        found = scheduling.find_task(session, "one")
        assert found is not None and found.deleted
        assert scheduling.find_task(session, "nope") is None
