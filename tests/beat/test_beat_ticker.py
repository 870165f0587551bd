"""The Beat tick against a real database (SQLite and PostgreSQL) with an injected clock.

The publisher is faked at the project's own seam (``reconciler.beat.message.Publisher``);
claims, overlap and recovery run as real SQL.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from reconciler.beat.ticker import RECOVERY_EVERY, Ticker
from reconciler.core.spec import TaskSpec
from reconciler.store import scheduling
from reconciler.store.database import Database
from reconciler.store.tables import BeatHeartbeat, Task
from tests.beatsupport import (
    Clock,
    FakePublisher,
    at,
    delete_task,
    executions,
    put_task,
    run_until,
    set_status,
    spec,
    task_row,
    wait_lapsed,
)

T0 = at("2026-01-05T10:00:00Z")


def make_ticker(
    db: Database, clock: Clock, publisher: FakePublisher | None = None, **options: Any
) -> Ticker:
    return Ticker(db, publisher or FakePublisher(), clock=clock, batch=50, **options)


def one_task(db: Database, task: TaskSpec) -> tuple[Ticker, FakePublisher, Clock]:
    """``task`` put at T0, and a ticker on a clock at T0 with a fake publisher."""
    clock = Clock(T0)
    put_task(db, task, T0)
    publisher = FakePublisher()
    return make_ticker(db, clock, publisher), publisher, clock


def short_lease(seconds_: float, margin: float = 0.0) -> dict[str, dt.timedelta]:
    """Ticker options for a lease that lapses within a test (by the database's clock)."""
    return {"lease": seconds(seconds_), "lease_margin": seconds(margin)}


def seconds(n: float) -> dt.timedelta:
    return dt.timedelta(seconds=n)


def test_interval_fires_every_slot_once_without_drift(db: Database) -> None:
    ticker, publisher, clock = one_task(
        db, spec("every10", interval={"seconds": 10}, args=[1], kwargs={"a": "b"})
    )
    run_until(ticker, clock, T0 + seconds(100), lag=0.3)
    expected = [T0 + seconds(10 * k) for k in range(1, 11)]
    assert publisher.slots("every10") == expected
    rows = executions(db, "every10")
    assert [row.scheduled_for for row in rows] == expected
    assert {row.trigger for row in rows} == {"schedule"}
    assert {row.status for row in rows} == {"pending"}
    assert all(row.published_at is not None for row in rows)
    assert [row.celery_task_id for row in rows] == [m.task_id for m in publisher.sent]
    assert rows[0].args == [1] and rows[0].kwargs == {"a": "b"}
    task = task_row(db, "every10")
    assert task.last_run_at == expected[-1]
    assert task.next_run_at == T0 + seconds(110)


def test_a_stored_definition_this_version_refuses_waits_and_the_others_fire(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0)
    put_task(db, spec("old", interval={"seconds": 10}), T0)
    put_task(db, spec("fine", interval={"seconds": 10}), T0)
    with db.session() as session:
        session.execute(
            update(Task)
            .where(Task.name == "old")
            .values(spec={**spec("old", interval={"seconds": 10}).canonical(), "timezone": "x"})
        )
    publisher = FakePublisher()
    ticker = make_ticker(db, clock, publisher)
    run_until(ticker, clock, T0 + seconds(30), lag=0.3)
    assert publisher.slots("old") == []
    assert publisher.slots("fine") == [T0 + seconds(10 * k) for k in (1, 2, 3)]
    assert "task 'old': its stored definition does not pass" in caplog.text


def test_nothing_fires_before_its_slot(db: Database) -> None:
    ticker, publisher, _ = one_task(db, spec("later", interval={"minutes": 5}))
    delay = ticker.tick(T0 + seconds(299))
    assert publisher.sent == []
    assert 0 < delay <= 0.25


def test_async_fires_once_and_never_again(db: Database) -> None:
    ticker, publisher, _ = one_task(db, spec("now", type="async"))
    for k in range(5):
        ticker.tick(T0 + seconds(k))
    assert publisher.slots("now") == [T0]
    assert task_row(db, "now").next_run_at is None


def test_scheduled_fires_at_its_time_and_again_only_when_at_changes(db: Database) -> None:
    clock = Clock(T0)
    first = spec("once", type="scheduled", at="2026-01-05T10:01:00Z")
    put_task(db, first, T0)
    publisher = FakePublisher()
    ticker = make_ticker(db, clock, publisher)
    ticker.tick(T0 + seconds(59))
    assert publisher.sent == []
    ticker.tick(T0 + seconds(60.1))
    ticker.tick(T0 + seconds(70))
    assert publisher.slots("once") == [at("2026-01-05T10:01:00Z")]
    moved = spec("once", type="scheduled", at="2026-01-05T10:03:00Z")
    put_task(db, moved, T0 + seconds(80))
    ticker.tick(T0 + seconds(180.1))
    assert publisher.slots("once") == [at("2026-01-05T10:01:00Z"), at("2026-01-05T10:03:00Z")]


def test_disabled_never_fires_and_enabling_resumes_from_now(db: Database) -> None:
    ticker, publisher, clock = one_task(db, spec("toggle", interval={"seconds": 30}, enabled=False))
    run_until(ticker, clock, T0 + seconds(300))
    assert publisher.sent == []
    enabled_at = T0 + seconds(305)
    put_task(db, spec("toggle", interval={"seconds": 30}), enabled_at)
    clock.now = enabled_at
    run_until(ticker, clock, enabled_at + seconds(61))
    assert publisher.slots("toggle") == [enabled_at + seconds(30), enabled_at + seconds(60)]


def test_options_go_with_the_message(db: Database) -> None:
    clock = Clock(T0)
    options = {
        "queue": "reports",
        "priority": 5,
        "expires": 60,
        "time_limit": 9,
        "soft_time_limit": 8,
    }
    put_task(db, spec("opts", type="async", options=options), T0)
    publisher = FakePublisher()
    make_ticker(db, clock, publisher).tick(T0)
    assert publisher.sent[0].options == options
    assert publisher.sent[0].task == "app.worker.test_celery"


def test_catchup_skip_after_downtime_drops_missed_slots_and_counts_them(db: Database) -> None:
    put_task(db, spec("skipper", interval={"seconds": 10}, catchup="skip"), T0)
    publisher = FakePublisher()
    clock = Clock(T0 + seconds(600))  # no beat ran for ten minutes
    ticker = make_ticker(db, clock, publisher)
    ticker.tick(clock.now)
    fired = publisher.slots("skipper")
    # Only slots within the grace (the last 60 s) fire; the 54 before are dropped.
    assert fired == [T0 + seconds(10 * k) for k in range(54, 61)]
    row = task_row(db, "skipper")
    assert row.missed_count == 53
    assert row.next_run_at == T0 + seconds(610)


def test_catchup_once_after_downtime_fires_one_run_for_the_missed_slots(db: Database) -> None:
    put_task(db, spec("oncer", crontab="*/5 * * * *", catchup="once"), T0)
    publisher = FakePublisher()
    clock = Clock(T0 + seconds(3 * 3600 + 120))  # back at 13:02
    ticker = make_ticker(db, clock, publisher)
    ticker.tick(clock.now)
    ticker.tick(clock.now + seconds(1))
    assert publisher.slots("oncer") == [at("2026-01-05T13:00:00Z")]
    row = task_row(db, "oncer")
    assert row.missed_count == 35  # 10:05 .. 12:55, folded into the 13:00 run
    assert row.next_run_at == at("2026-01-05T13:05:00Z")


def test_overlap_skip_is_decided_by_the_unfinished_execution_in_the_database(
    db: Database,
) -> None:
    ticker, publisher, clock = one_task(db, spec("solo", interval={"seconds": 10}, overlap="skip"))
    ticker.tick(T0 + seconds(10))
    first = publisher.sent[0].task_id
    set_status(db, first, "started")
    ticker.tick(T0 + seconds(20))
    # A fresh process sees the same: the decision is in the database, not in memory.
    make_ticker(db, clock, publisher).tick(T0 + seconds(30))
    assert publisher.slots("solo") == [T0 + seconds(10)]
    assert task_row(db, "solo").skipped_count == 2
    set_status(db, first, "success")
    ticker.tick(T0 + seconds(40))
    assert publisher.slots("solo") == [T0 + seconds(10), T0 + seconds(40)]


def test_overlap_allow_fires_while_running(db: Database) -> None:
    ticker, publisher, _ = one_task(db, spec("many", interval={"seconds": 10}))
    ticker.tick(T0 + seconds(10))
    set_status(db, publisher.sent[0].task_id, "started")
    ticker.tick(T0 + seconds(20))
    assert len(publisher.sent) == 2


def test_a_change_is_picked_up_from_the_change_marker(db: Database) -> None:
    ticker, publisher, _ = one_task(db, spec("edit", interval={"seconds": 10}, args=["old"]))
    ticker.tick(T0 + seconds(10))
    put_task(db, spec("edit", interval={"seconds": 10}, args=["new"]), T0 + seconds(15))
    ticker.tick(T0 + seconds(16))
    assert ticker.cached()["edit"].args == ["new"]
    ticker.tick(T0 + seconds(25))
    assert [m.args for m in publisher.sent] == [["old"], ["new"]]
    assert publisher.slots("edit")[-1] == T0 + seconds(25)


def test_a_deleted_task_stops_firing_and_leaves_the_cache(db: Database) -> None:
    ticker, publisher, _ = one_task(db, spec("gone", interval={"seconds": 10}))
    ticker.tick(T0 + seconds(10))
    delete_task(db, "gone", T0 + seconds(12))
    ticker.tick(T0 + seconds(20))
    ticker.tick(T0 + seconds(30))
    assert len(publisher.sent) == 1
    assert "gone" not in ticker.cached()


def test_two_beats_on_one_database_fire_each_slot_once(db: Database) -> None:
    for n in range(20):
        put_task(db, spec(f"t{n:02d}", interval={"seconds": 1}), T0)
    publisher = FakePublisher()
    clock = Clock(T0)
    first, second = make_ticker(db, clock, publisher), make_ticker(db, clock, publisher)
    for step in range(1, 41):
        now = T0 + seconds(step * 0.5)
        (first if step % 2 else second).tick(now)
        (second if step % 2 else first).tick(now)
    slots = [(m.name, m.scheduled_for) for m in publisher.sent]
    assert len(slots) == len(set(slots)) == 20 * 20
    assert len(executions(db)) == 400


def test_broker_outage_keeps_ticking_and_sends_claimed_slots_when_it_returns(
    db: Database,
) -> None:
    clock = Clock(T0)
    put_task(db, spec("steady", interval={"seconds": 1}), T0)
    publisher = FakePublisher(fail_after=3)
    ticker = make_ticker(db, clock, publisher)
    for step in range(1, 21):
        clock.now = T0 + seconds(step)
        ticker.tick(clock.now)
    assert ticker.broker_health.up is False
    assert len(publisher.sent) == 3
    # The slot whose publish failed stays claimed but unpublished; later slots wait.
    unsent = [row for row in executions(db, "steady") if row.published_at is None]
    assert len(unsent) == 1
    publisher.down = False
    for step in range(21, 24):
        clock.now = T0 + seconds(step)
        ticker.tick(clock.now)
    slots = publisher.slots("steady")
    timed = [slot for slot in slots if slot is not None]
    assert slots == timed == sorted(set(timed))
    assert slots == [T0 + seconds(k) for k in range(1, 24)]
    assert all(row.published_at is not None for row in executions(db, "steady"))


def test_broker_back_after_longer_than_the_grace_follows_catchup_skip(db: Database) -> None:
    clock = Clock(T0)
    put_task(db, spec("late", interval={"seconds": 10}, catchup="skip"), T0)
    publisher = FakePublisher(fail_after=1)
    ticker = make_ticker(db, clock, publisher)
    ticker.tick(T0 + seconds(10))
    ticker.tick(T0 + seconds(20))  # claimed, publish fails
    for minute in range(1, 6):
        ticker.tick(T0 + seconds(20 + 60 * minute))
    publisher.down = False
    clock.now = T0 + seconds(400)
    ticker.tick(clock.now)
    rows = executions(db, "late")
    failed = [row for row in rows if row.status == "failure"]
    assert len(failed) == 1 and failed[0].scheduled_for == T0 + seconds(20)
    assert "not published" in (failed[0].error or "")
    assert "catchup: skip" in (failed[0].error or "")
    assert T0 + seconds(20) not in publisher.slots("late")
    assert task_row(db, "late").missed_count > 0
    assert all(slot is not None and slot >= T0 + seconds(340) for slot in publisher.slots()[1:])


def test_a_beat_killed_after_the_claim_leaves_the_slot_to_the_next_beat(db: Database) -> None:
    clock = Clock(T0)
    put_task(db, spec("crash", interval={"seconds": 10}), T0)

    class Crash(Exception):
        pass

    class DyingPublisher(FakePublisher):
        def publish(self, messages):  # type: ignore[no-untyped-def]
            raise Crash

    dying = make_ticker(db, clock, DyingPublisher(), **short_lease(3))
    with pytest.raises(Crash):
        dying.tick(T0 + seconds(10))
    (row,) = executions(db, "crash")
    assert row.published_at is None and row.claimed_by == dying.instance
    publisher = FakePublisher()
    survivor = make_ticker(db, clock, publisher)
    survivor.tick(T0 + seconds(11))  # its lease is live: its beat may still be sending it
    assert publisher.sent == []
    # However late the survivor's clock says it is: leases go by the database's clock.
    survivor.tick(T0 + seconds(10) + RECOVERY_EVERY + seconds(1))
    assert row.celery_task_id not in {m.task_id for m in publisher.sent}
    wait_lapsed(db)
    survivor.tick(T0 + seconds(10) + 2 * RECOVERY_EVERY + seconds(1))
    assert [m.task_id for m in publisher.sent].count(row.celery_task_id) == 1
    assert publisher.slots("crash") == [T0 + seconds(10), T0 + seconds(20)]
    (row,) = [r for r in executions(db, "crash") if r.celery_task_id == row.celery_task_id]
    assert row.claimed_by == survivor.instance and row.published_at is not None


def test_a_beat_host_with_a_skewed_clock_does_not_take_a_live_lease(db: Database) -> None:
    real = dt.datetime.now(dt.UTC)
    for n in range(3):
        put_task(db, spec(f"skew{n}", interval={"seconds": 10}), real - seconds(15))
    slow = make_ticker(db, Clock(real), FakePublisher(down=True))
    slow.tick(real)  # claims three slots, the broker refuses them
    assert slow.broker_health.up is False
    held = {row.celery_task_id for row in executions(db)}
    assert len(held) == 3
    for minutes in (3, -3, 30):
        publisher = FakePublisher()
        skewed = make_ticker(db, Clock(real + dt.timedelta(minutes=minutes)), publisher)
        skewed.tick()  # recovers first; later slots it claims itself are its own
        stolen = held & {m.task_id for m in publisher.sent}
        assert not stolen, f"a beat {minutes} min off took a live lease"
    rows = [row for row in executions(db) if row.celery_task_id in held]
    assert {row.claimed_by for row in rows} == {slow.instance}
    assert all(row.published_at is None for row in rows)


def test_a_beat_whose_lease_lapsed_between_chunks_does_not_publish_the_rest(
    db: Database,
) -> None:
    for n in range(4):
        put_task(db, spec(f"chunk{n}", interval={"seconds": 10}), T0)
    clock = Clock(T0 + seconds(10))
    other = FakePublisher()
    rival = make_ticker(db, clock, other)

    @contextmanager
    def stall() -> Iterator[None]:
        # After its first chunk is sent and marked, beat A stalls past its lease (a GC
        # pause, a starved CPU, SIGSTOP) while beat B takes over what is left.
        yield
        if not other.sent:
            wait_lapsed(db)
            rival.tick(clock.now + seconds(1))

    publisher = FakePublisher()
    slow = make_ticker(db, clock, publisher, shield=stall, publish_chunk=2, **short_lease(0.3))
    slow.tick(clock.now)
    mine, theirs = [m.task_id for m in publisher.sent], [m.task_id for m in other.sent]
    assert len(mine) == 2 and len(theirs) == 2
    assert not set(mine) & set(theirs)
    assert slow.stats.lease_lost == 2 and rival.stats.recovered == 2
    rows = executions(db)
    assert all(row.published_at is not None for row in rows)
    assert {row.claimed_by for row in rows if row.celery_task_id in theirs} == {rival.instance}


def test_a_slow_beat_that_still_holds_its_lease_renews_it_and_publishes(db: Database) -> None:
    for n in range(4):
        put_task(db, spec(f"renew{n}", interval={"seconds": 10}), T0)
    clock = Clock(T0 + seconds(10))
    chunks: list[int] = []

    @contextmanager
    def pause() -> Iterator[None]:
        yield
        chunks.append(1)
        if len(chunks) == 1:
            # Past the 0.2 s window without renewing, well within the 30 s lease.
            time.sleep(0.3)

    publisher = FakePublisher()
    ticker = make_ticker(
        db, clock, publisher, shield=pause, publish_chunk=2, **short_lease(30, margin=29.8)
    )
    ticker.tick(clock.now)
    assert len(publisher.sent) == 4 and ticker.stats.lease_lost == 0
    leases = sorted(row.lease_until for row in executions(db) if row.lease_until is not None)
    # The second chunk's lease was renewed (from the database's now) before it was sent.
    assert leases[2] - leases[1] >= seconds(0.25)


def test_a_stale_unpublished_slot_of_a_catchup_once_task_is_sent_once(db: Database) -> None:
    clock = Clock(T0)
    put_task(db, spec("once", interval={"seconds": 10}, catchup="once"), T0)
    publisher = FakePublisher(fail_after=0)
    ticker = make_ticker(db, clock, publisher, **short_lease(0.2))
    ticker.tick(T0 + seconds(10))
    publisher.down = False
    wait_lapsed(db)
    fresh = make_ticker(db, clock, publisher)
    clock.now = T0 + seconds(600)
    fresh.tick(clock.now)
    assert publisher.slots("once")[0] == T0 + seconds(10)


def test_the_heartbeat_is_written_every_tick_second(db: Database) -> None:
    clock = Clock(T0)
    ticker = make_ticker(db, clock, name="beat-a")
    ticker.tick(T0)
    ticker.tick(T0 + seconds(2))
    with db.session() as session:
        beat = session.execute(select(BeatHeartbeat)).scalar_one()
    assert (beat.instance, beat.name, beat.wanted_name) == (ticker.instance, "beat-a", None)
    assert beat.last_tick_at == T0 + seconds(2)


def test_periodic_callbacks_run_from_the_tick(db: Database) -> None:
    clock = Clock(T0)
    ticker = make_ticker(db, clock)
    calls: list[dt.datetime] = []
    ticker.every(seconds(15), calls.append)
    for step in range(0, 40, 5):
        ticker.tick(T0 + seconds(step))
    assert calls == [T0, T0 + seconds(15), T0 + seconds(30)]


def test_the_tick_cost_does_not_depend_on_idle_tasks(db: Database) -> None:
    clock = Clock(T0)
    for n in range(300):
        put_task(db, spec(f"idle{n}", interval={"days": 1}), T0)
    put_task(db, spec("busy", interval={"seconds": 1}), T0)
    publisher = FakePublisher()
    ticker = make_ticker(db, clock, publisher)
    ticker.tick(T0 + seconds(1))
    # Only the due task's spec was read: the idle ones were never loaded.
    assert set(ticker.cached()) == {"busy"}


@pytest.mark.parametrize(
    ("crontab", "zone", "start", "end", "expected"),
    [
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-03-27T12:00:00Z",
            "2026-03-30T12:00:00Z",
            ["2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
        ),
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-10-23T12:00:00Z",
            "2026-10-26T12:00:00Z",
            ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
        ),
        (
            "0 * * * *",
            "Europe/Berlin",
            "2026-10-24T23:30:00Z",
            "2026-10-25T02:30:00Z",
            [
                "2026-10-25T00:00:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T02:00:00Z",
            ],
        ),
    ],
)
def test_dst_rows_through_the_scheduler(
    db: Database, crontab: str, zone: str, start: str, end: str, expected: list[str]
) -> None:
    clock = Clock(at(start))
    put_task(db, spec("dst", crontab=crontab, timezone=zone), at(start))
    publisher = FakePublisher()
    run_until(make_ticker(db, clock, publisher), clock, at(end))
    assert publisher.slots("dst") == [at(text) for text in expected]


def test_claimed_rows_carry_the_slot_and_the_queue_time(db: Database) -> None:
    clock = Clock(T0)
    put_task(db, spec("rec", interval={"seconds": 10}), T0)
    ticker = make_ticker(db, clock)
    ticker.tick(T0 + seconds(10.5))
    (row,) = executions(db, "rec")
    assert row.scheduled_for == T0 + seconds(10)
    assert row.queued_at == T0 + seconds(10.5)
    with db.session() as session:
        assert scheduling.unfinished(session, ["rec", "other"]) == {"rec"}


@pytest.mark.postgres
def test_a_database_outage_is_ridden_out_and_caught_up_by_policy(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from urllib.parse import urlsplit

    from tests.support import TcpProxy

    direct = Database.open(postgres_url)
    put_task(direct, spec("skip", interval={"seconds": 10}, catchup="skip"), T0)
    put_task(direct, spec("once", interval={"seconds": 10}, catchup="once"), T0)
    parts = urlsplit(postgres_url)
    with TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        proxied = Database.open(postgres_url.replace(f":{parts.port}/", f":{proxy.port}/"))
        clock = Clock(T0)
        publisher = FakePublisher()
        ticker = Ticker(proxied, publisher, clock=clock, batch=50)
        ticker.tick(T0 + seconds(10))
        assert len(publisher.sent) == 2
        proxy.cut()
        for minute in range(1, 6):
            assert ticker.tick(T0 + seconds(10 + 60 * minute)) > 0
        assert ticker.database_health.up is False
        proxy.restore()
        clock.now = T0 + seconds(310)
        ticker.tick(clock.now)
        proxied.dispose()
    assert ticker.database_health.up is True
    messages = [r.getMessage() for r in caplog.records]
    assert sum("database unavailable" in m for m in messages) == 1
    assert sum("database is back" in m for m in messages) == 1
    skip_slots = publisher.slots("skip")
    once_slots = publisher.slots("once")
    # Slots older than the grace: skip dropped them, once ran one of them.
    assert all(s is not None and s >= T0 + seconds(250) for s in skip_slots[1:])
    assert len([s for s in once_slots[1:] if s is not None and s < T0 + seconds(250)]) == 1
    assert task_row(direct, "skip").missed_count > 0
    direct.dispose()


def test_with_the_reconcilers_own_apply(db: Database, tmp_path: Path) -> None:
    from reconciler.apply import reconcile

    tasks_dir = tmp_path / "tasks.d"
    tasks_dir.mkdir()
    path = tasks_dir / "t.yaml"

    def write(extra: str) -> None:
        path.write_text(
            "name: applied\nowner: team\ntype: periodic\ntask: app.worker.test_celery\n"
            f"interval: {{seconds: 10}}\n{extra}"
        )

    write("args: [1]\n")
    reconcile(db, tasks_dir, now=T0)
    publisher = FakePublisher()
    clock = Clock(T0)
    ticker = make_ticker(db, clock, publisher)
    ticker.tick(T0 + seconds(10))
    write("args: [2]\n")
    reconcile(db, tasks_dir, now=T0 + seconds(15))
    ticker.tick(T0 + seconds(20))
    write("args: [2]\nenabled: false\n")
    reconcile(db, tasks_dir, now=T0 + seconds(25))
    ticker.tick(T0 + seconds(30))
    ticker.tick(T0 + seconds(40))
    assert [(m.args, m.scheduled_for) for m in publisher.sent] == [
        ([1], T0 + seconds(10)),
        ([2], T0 + seconds(20)),
    ]
    assert task_row(db, "applied").next_run_at is None


def test_a_publish_and_its_mark_happen_inside_the_shield(db: Database) -> None:
    from collections.abc import Iterator as Iter
    from contextlib import contextmanager

    put_task(db, spec("shielded", interval={"seconds": 10}), T0)
    events: list[str] = []

    @contextmanager
    def shield() -> Iter[None]:
        events.append("enter")
        yield
        marked = [row.published_at is not None for row in executions(db, "shielded")]
        events.append(f"exit marked={marked}")

    class Recording(FakePublisher):
        def publish(self, messages):  # type: ignore[no-untyped-def]
            events.append("publish")
            return super().publish(messages)

    ticker = Ticker(db, Recording(), clock=Clock(T0), shield=shield)
    ticker.tick(T0 + seconds(10))
    assert events[-3:] == ["enter", "publish", "exit marked=[True]"]


def test_beat_defers_stop_signals_while_shielded() -> None:
    import os
    import signal

    from reconciler.beat.scheduler import deferred_stop

    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        with deferred_stop():
            os.kill(os.getpid(), signal.SIGTERM)
            assert received == []
        assert received == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
