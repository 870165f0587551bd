"""``reconciler.beat.DatabaseScheduler`` as Celery Beat sees it, on a real in-memory broker."""

from __future__ import annotations

import datetime as dt

import pytest
from celery import Celery

from reconciler.beat.scheduler import DatabaseScheduler, catchup_grace, database_url
from reconciler.errors import ConfigError
from reconciler.store.database import Database
from tests.beatsupport import executions, put_task, spec


def memory_app(url: str) -> Celery:
    app = Celery("beat-test", broker="memory://")
    app.conf.reconciler_database_url = url
    return app


def test_the_scheduler_fires_due_tasks_through_the_apps_broker(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECONCILER_DATABASE_URL", raising=False)
    db = Database.open(sqlite_url)
    now = dt.datetime.now(dt.UTC)
    put_task(db, spec("now", type="async", kwargs={"k": 1}, options={"queue": "q1"}), now)
    app = memory_app(sqlite_url)
    scheduler = DatabaseScheduler(app)
    try:
        assert "database -> sqlite" in scheduler.info
        delay = scheduler.tick()
        assert 0 <= delay <= 1
        (row,) = executions(db, "now")
        assert row.published_at is not None
        with app.connection_for_read() as connection:
            message = connection.SimpleQueue("q1").get(timeout=1)
            assert message.headers["id"] == row.celery_task_id
            assert message.headers["reconciler_trigger"] == "schedule"
            assert message.headers["reconciler_slot"] == row.scheduled_for.isoformat()  # type: ignore[union-attr]
            message.ack()
        assert set(scheduler.schedule) == {"now"}
    finally:
        scheduler.close()
        db.dispose()


def test_settings_come_from_the_environment_first(monkeypatch: pytest.MonkeyPatch) -> None:
    app = memory_app("sqlite:///from-app.db")
    monkeypatch.delenv("RECONCILER_DATABASE_URL", raising=False)
    monkeypatch.delenv("RECONCILER_BEAT_GRACE", raising=False)
    assert database_url(app) == "sqlite:///from-app.db"
    assert catchup_grace(app) == dt.timedelta(seconds=60)
    monkeypatch.setenv("RECONCILER_DATABASE_URL", "sqlite:///from-env.db")
    monkeypatch.setenv("RECONCILER_BEAT_GRACE", "2.5")
    assert database_url(app) == "sqlite:///from-env.db"
    assert catchup_grace(app) == dt.timedelta(seconds=2.5)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", "RECONCILER_BEAT_GRACE: 'soon' is not a number of seconds"),
        ("0", "RECONCILER_BEAT_GRACE: must be above 0 seconds, got '0'"),
    ],
)
def test_a_bad_grace_is_refused_with_the_setting_named(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("RECONCILER_BEAT_GRACE", value)
    with pytest.raises(ConfigError) as caught:
        DatabaseScheduler(memory_app("sqlite://"), lazy=True)
    assert str(caught.value) == message


def test_beat_keeps_ticking_when_the_database_is_not_there_yet(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECONCILER_DATABASE_URL", raising=False)
    app = memory_app("postgresql://nobody@127.0.0.1:1/none")
    scheduler = DatabaseScheduler(app)
    assert scheduler.tick() == 1.0
    assert scheduler.tick() == 1.0
    scheduler.close()
