"""Beat's compact cache of fired tasks (docs/design/beat-spec-cache.md), through real
ticks on SQLite and PostgreSQL with an injected clock."""

from __future__ import annotations

import datetime as dt

from reconciler.beat.ticker import Ticker
from reconciler.core.spec import stored_spec
from reconciler.store.database import Database
from tests.beatsupport import Clock, FakePublisher, at, delete_task, put_task, spec

T0 = at("2026-01-05T10:00:00Z")


def seconds(n: float) -> dt.timedelta:
    return dt.timedelta(seconds=n)


def ticker_on(db: Database, publisher: FakePublisher) -> Ticker:
    return Ticker(db, publisher, clock=Clock(T0), batch=50)


def test_tasks_on_one_schedule_share_it_and_keep_their_own_messages(db: Database) -> None:
    for n in range(20):
        put_task(db, spec(f"s{n:02d}", args=[n], kwargs={"n": n}, labels={"i": str(n)}), T0)
    put_task(db, spec("other", interval={"seconds": 20}, args=["x"]), T0)
    publisher = FakePublisher()
    ticker = ticker_on(db, publisher)
    ticker.tick(T0)  # the change marker's first reading
    ticker.tick(T0 + seconds(20))
    cached = ticker.cached()
    assert len(cached) == 21
    assert ticker.specs.schedules() == 2
    assert len({id(entry.schedule) for name, entry in cached.items() if name != "other"}) == 1
    sent = {m.name: m for m in publisher.sent}
    assert [sent[f"s{n:02d}"].args for n in range(20)] == [[n] for n in range(20)]
    assert sent["s07"].kwargs == {"n": 7} and sent["s07"].task == cached["s07"].task
    assert sent["other"].args == ["x"]


def test_spread_tasks_keep_the_offset_of_their_own_name(db: Database) -> None:
    names = [f"spread{n}" for n in range(8)]
    for name in names:
        put_task(db, spec(name, crontab="* * * * *", spread="1m"), T0)
    publisher = FakePublisher()
    ticker = ticker_on(db, publisher)
    ticker.tick(T0)
    ticker.tick(T0 + seconds(180))
    cached = ticker.cached()
    assert set(cached) == set(names)
    for name in names:
        own = stored_spec(name, spec(name, crontab="* * * * *", spread="1m").canonical())
        assert cached[name].schedule.timing.offset == own.timing.offset
    offsets = {own.timing.offset for own in (cached[name].schedule for name in names)}
    assert ticker.specs.schedules() == len(offsets) > 1


def test_a_change_is_read_again_only_for_tasks_beat_holds(db: Database) -> None:
    put_task(db, spec("held", args=["old"]), T0)
    put_task(db, spec("idle", interval={"hours": 1}, args=["old"]), T0)
    publisher = FakePublisher()
    ticker = ticker_on(db, publisher)
    ticker.tick(T0)
    ticker.tick(T0 + seconds(10))
    assert set(ticker.cached()) == {"held"}
    put_task(db, spec("held", args=["new"]), T0 + seconds(12))
    put_task(db, spec("idle", interval={"hours": 1}, args=["new"]), T0 + seconds(12))
    put_task(db, spec("fresh", args=["new"]), T0 + seconds(12))
    ticker.tick(T0 + seconds(13))
    assert set(ticker.cached()) == {"held"}
    assert ticker.cached()["held"].args == ["new"]


def test_a_schedule_goes_with_its_last_task(db: Database) -> None:
    put_task(db, spec("one", interval={"seconds": 7}), T0)
    put_task(db, spec("two", interval={"seconds": 10}), T0)
    ticker = ticker_on(db, FakePublisher())
    ticker.tick(T0)
    ticker.tick(T0 + seconds(10))
    assert ticker.specs.schedules() == 2
    delete_task(db, "one", T0 + seconds(11))
    ticker.tick(T0 + seconds(12))
    assert set(ticker.cached()) == {"two"}
    assert ticker.specs.schedules() == 1
