"""The look-ahead: slots due within it are claimed in one round and each message is held
until its slot (docs/beat.md, "Look-ahead"), against a real database with an injected
clock; the publisher records the clock at each publish."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event

from reconciler.beat.message import Message
from reconciler.beat.scheduler import DatabaseScheduler, lookahead
from reconciler.beat.ticker import Ticker
from reconciler.errors import ConfigError
from reconciler.store.database import Database
from tests.beat.test_beat_scheduler import memory_app
from tests.beatsupport import (
    Clock,
    FakePublisher,
    at,
    delete_task,
    executions,
    put_task,
    set_status,
    spec,
    wait_lapsed,
)

T0 = at("2026-01-05T10:00:00Z")
AHEAD = dt.timedelta(seconds=1)


def seconds(n: float) -> dt.timedelta:
    return dt.timedelta(seconds=n)


@dataclass
class Timed(FakePublisher):
    """Records, with each message sent, the clock's time when it was published."""

    clock: Clock = field(default_factory=lambda: Clock(T0))
    times: dict[str, dt.datetime] = field(default_factory=dict)

    def publish(self, messages: Sequence[Message]) -> list[str]:
        sent = super().publish(messages)
        for task_id in sent:
            self.times.setdefault(task_id, self.clock.now)
        return sent


def ticker(db: Database, clock: Clock, publisher: FakePublisher, **options: Any) -> Ticker:
    return Ticker(db, publisher, clock=clock, batch=50, **options)


def run(ticker: Ticker, clock: Clock, end: dt.datetime) -> int:
    """Tick as beat does, sleeping what each tick returns, until ``end``; return the ticks."""
    ticks = 0
    while clock.now < end:
        clock.now += seconds(ticker.tick(clock.now))
        ticks += 1
    return ticks


def put_tenths(db: Database, count: int) -> None:
    """``count`` tasks every 2 s, each a tenth of a second after the one before."""
    for n in range(count):
        put_task(db, spec(f"t{n:02d}", interval={"seconds": 2}), T0 + seconds(n / 10))


def statements(db: Database) -> list[int]:
    counted = [0]

    def count(*_: Any) -> None:
        counted[0] += 1

    event.listen(db.engine, "before_cursor_execute", count)
    return counted


@pytest.mark.parametrize("ahead", [0.0, 1.0])
def test_claimed_ahead_slots_are_published_at_their_time_never_before(
    db: Database, ahead: float
) -> None:
    put_tenths(db, 20)
    clock = Clock(T0)
    publisher = Timed(clock=clock)
    beat = ticker(db, clock, publisher, lookahead=seconds(ahead))
    counted = statements(db)
    run(beat, clock, T0 + seconds(12))
    expected = {
        (f"t{n:02d}", T0 + seconds(n / 10 + 2 * k)) for n in range(20) for k in (1, 2, 3, 4, 5)
    }
    slots = [(m.name, m.scheduled_for) for m in publisher.sent]
    assert len(slots) == len(set(slots)) and set(slots) >= expected
    for message in publisher.sent:
        assert message.scheduled_for is not None
        assert publisher.times[message.task_id] == message.scheduled_for  # on time, not early
    sent = set(publisher.times)
    rows = [row for row in executions(db) if row.celery_task_id in sent]
    assert len(rows) == len(sent)
    assert all(row.published_at == row.queued_at == row.scheduled_for for row in rows)
    if ahead:
        # One claim round covers many instants: far fewer statements than one per instant.
        assert counted[0] < 600
    else:
        assert beat.sender.next_held() is None
        assert counted[0] > 600


def test_without_look_ahead_nothing_is_claimed_before_it_is_due(db: Database) -> None:
    put_task(db, spec("soon", interval={"seconds": 10}), T0)
    clock = Clock(T0 + seconds(9.5))
    publisher = Timed(clock=clock)
    ticker(db, clock, publisher).tick(clock.now)
    assert executions(db, "soon") == []
    ahead = ticker(db, clock, publisher, lookahead=AHEAD)
    ahead.tick(clock.now)
    (row,) = executions(db, "soon")
    assert row.scheduled_for == T0 + seconds(10) and row.published_at is None
    assert row.claimed_by == ahead.instance and publisher.sent == []
    assert ahead.tick(clock.now) == pytest.approx(0.25)  # the next round comes first
    clock.now = T0 + seconds(9.99)
    ahead.tick(clock.now)
    assert publisher.sent == []
    clock.now = T0 + seconds(10)
    ahead.tick(clock.now)
    assert [m.task_id for m in publisher.sent] == [row.celery_task_id]
    assert publisher.times[row.celery_task_id] == T0 + seconds(10)


def test_a_beat_killed_holding_claims_ahead_leaves_them_to_another_beat_once(
    db: Database,
) -> None:
    put_tenths(db, 10)
    clock = Clock(T0 + seconds(1.2))
    dying = ticker(
        db, clock, Timed(clock=clock), lookahead=AHEAD, lease=seconds(3), lease_margin=seconds(0)
    )
    dying.tick(clock.now)  # claims the slots of 2.0 to 2.2 s ahead, publishes nothing
    held = {m.task_id for m in dying.sender.held()}
    assert len(held) == 3
    # Killed: no more ticks, no leave(). A survivor must not send what is still leased.
    publisher = Timed(clock=clock)
    survivor = ticker(db, clock, publisher, lookahead=AHEAD)
    clock.now = T0 + seconds(2.3)
    survivor.tick(clock.now)
    assert held.isdisjoint(publisher.times)
    wait_lapsed(db)
    run(survivor, clock, T0 + seconds(12))
    sent = [m.task_id for m in publisher.sent]
    assert all(sent.count(task_id) == 1 for task_id in held)
    rows = {row.celery_task_id: row for row in executions(db)}
    assert all(rows[task_id].claimed_by == survivor.instance for task_id in held)
    assert all(rows[task_id].published_at is not None for task_id in held)
    slots = [(m.name, m.scheduled_for) for m in publisher.sent]
    assert len(slots) == len(set(slots))
    for message in publisher.sent:
        assert message.scheduled_for is not None
        assert publisher.times[message.task_id] >= message.scheduled_for


def test_a_stopping_beat_gives_up_its_held_claims_for_recovery_at_once(db: Database) -> None:
    put_task(db, spec("next", interval={"seconds": 10}), T0)
    clock = Clock(T0 + seconds(9.5))
    stopping = ticker(db, clock, Timed(clock=clock), lookahead=AHEAD)
    stopping.tick(clock.now)
    (row,) = executions(db, "next")
    stopping.leave()
    publisher = Timed(clock=clock)
    survivor = ticker(db, clock, publisher, lookahead=AHEAD)
    survivor.tick(clock.now)  # takes it over without waiting for the lease, holds it
    assert publisher.sent == [] and survivor.sender.next_held() == T0 + seconds(10)
    clock.now = T0 + seconds(10)
    survivor.tick(clock.now)
    assert [m.task_id for m in publisher.sent] == [row.celery_task_id]
    assert publisher.times[row.celery_task_id] == T0 + seconds(10)


def test_a_broker_outage_while_holding_leaves_the_claims_to_recovery(db: Database) -> None:
    put_task(db, spec("a", interval={"seconds": 10}), T0)
    put_task(db, spec("b", interval={"seconds": 10}), T0 + seconds(0.5))
    clock = Clock(T0 + seconds(9.2))
    publisher = Timed(clock=clock, fail_after=0)
    beat = ticker(db, clock, publisher, lookahead=AHEAD)
    beat.tick(clock.now)  # claims both, holds both
    clock.now = T0 + seconds(10)
    beat.tick(clock.now)  # the publish of "a" fails
    assert beat.broker_health.up is False
    clock.now = T0 + seconds(10.2)
    beat.tick(clock.now)
    assert beat.sender.held() == [] and publisher.times == {}
    publisher.down = False
    clock.now = T0 + seconds(10.3)
    beat.tick(clock.now)  # back: "a" is late and sent now, "b" held for its slot
    assert [m.name for m in publisher.sent] == ["a"]
    clock.now = T0 + seconds(10.5)
    beat.tick(clock.now)
    assert [m.name for m in publisher.sent] == ["a", "b"]
    assert publisher.times[publisher.sent[1].task_id] == T0 + seconds(10.5)
    assert all(row.published_at is not None for row in executions(db))


def test_overlap_skip_is_decided_when_the_slot_comes_not_ahead(db: Database) -> None:
    put_task(db, spec("one", interval={"seconds": 10}, overlap="skip"), T0)
    clock = Clock(T0 + seconds(10))
    publisher = Timed(clock=clock)
    beat = ticker(db, clock, publisher, lookahead=AHEAD)
    beat.tick(clock.now)
    (first,) = executions(db, "one")
    clock.now = T0 + seconds(19.5)
    beat.tick(clock.now)  # still running: not decided yet, not claimed
    assert len(executions(db, "one")) == 1
    set_status(db, first.celery_task_id, "success")
    clock.now = T0 + seconds(20)
    beat.tick(clock.now)
    assert [m.scheduled_for for m in publisher.sent] == [T0 + seconds(10), T0 + seconds(20)]


def test_a_task_deleted_after_its_slot_was_claimed_ahead_is_failed_by_recovery(
    db: Database,
) -> None:
    put_task(db, spec("gone", interval={"seconds": 10}), T0)
    clock = Clock(T0 + seconds(9.5))
    holder = ticker(db, clock, Timed(clock=clock), lookahead=AHEAD)
    holder.tick(clock.now)
    holder.leave()
    delete_task(db, "gone", clock.now)
    publisher = Timed(clock=clock)
    ticker(db, clock, publisher, lookahead=AHEAD).tick(clock.now)
    (row,) = executions(db, "gone")
    assert row.status == "failure" and publisher.sent == []


def test_the_look_ahead_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    app = memory_app("sqlite://")
    monkeypatch.delenv("RECONCILER_BEAT_LOOKAHEAD", raising=False)
    assert lookahead(app) == dt.timedelta(0)
    monkeypatch.setenv("RECONCILER_BEAT_LOOKAHEAD", "1")
    assert lookahead(app) == AHEAD
    for value, message in [
        ("soon", "RECONCILER_BEAT_LOOKAHEAD: 'soon' is not a number of seconds"),
        ("3", "RECONCILER_BEAT_LOOKAHEAD: must be 0 to 2 seconds, got '3'"),
    ]:
        monkeypatch.setenv("RECONCILER_BEAT_LOOKAHEAD", value)
        with pytest.raises(ConfigError) as caught:
            DatabaseScheduler(memory_app("sqlite://"), lazy=True)
        assert str(caught.value) == message
