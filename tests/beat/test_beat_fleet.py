"""How many beats are alive, under which names: the ticker's heartbeat, as ``doctor``,
``status`` and ``/metrics`` read it, on SQLite and PostgreSQL with injected clocks."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from reconciler.beat.ticker import NAME_SETTLE, Ticker
from reconciler.cli import main
from reconciler.ops.doctor import run_checks
from reconciler.settings import Settings
from reconciler.store import heartbeats
from reconciler.store.database import Database
from reconciler.store.tables import BeatHeartbeat
from reconciler.web import metrics
from tests.beatsupport import Clock, FakePublisher, at

T0 = at("2026-01-05T10:00:00Z")
SERIES = re.compile(r'^reconciler_beat_heartbeat_age_seconds\{beat="([^"]+)"\}', re.M)


def seconds(n: float) -> dt.timedelta:
    return dt.timedelta(seconds=n)


def ticker(db: Database, name: str, now: dt.datetime) -> Ticker:
    return Ticker(db, FakePublisher(), clock=Clock(now), name=name)


def names(db: Database) -> dict[str | None, str]:
    """name -> instance of every beat heartbeat."""
    with db.session() as session:
        found = session.execute(select(BeatHeartbeat.name, BeatHeartbeat.instance))
        return {name: instance for name, instance in found}


def series(db: Database) -> list[str]:
    """The ``beat`` labels of the heartbeat age metric, as Prometheus scrapes them."""
    return SERIES.findall(metrics.render(db, None).decode())


def test_restarts_keep_the_stable_name_and_add_no_series(db: Database) -> None:
    first = ticker(db, "beat-a", T0)
    first.tick(T0)
    assert names(db) == {"beat-a": first.instance} and series(db) == ["beat-a"]
    first.leave()  # a clean stop
    assert names(db) == {} and series(db) == []

    second = ticker(db, "beat-a", T0 + seconds(10))
    second.tick(T0 + seconds(10))
    assert names(db) == {"beat-a": second.instance} and series(db) == ["beat-a"]

    # Killed (no leave) and started again at once: the new process waits until the old
    # heartbeat has stood still for NAME_SETTLE, then takes the name over.
    third = ticker(db, "beat-a", T0 + seconds(11))
    third.tick(T0 + seconds(11))
    assert names(db) == {"beat-a": second.instance}
    third.tick(T0 + seconds(11) + NAME_SETTLE)
    assert names(db) == {"beat-a": third.instance} and series(db) == ["beat-a"]
    assert third.name == "beat-a"


def test_a_live_beat_removes_the_heartbeat_of_one_that_stopped_minutes_ago(
    db: Database,
) -> None:
    live, killed = ticker(db, "live", T0), ticker(db, "killed", T0)
    live.tick(T0)
    killed.tick(T0)
    live.tick(T0 + heartbeats.BEAT_FORGET_AFTER - seconds(1))
    assert set(names(db)) == {"live", "killed"}
    live.tick(T0 + heartbeats.BEAT_FORGET_AFTER + seconds(15))
    assert set(names(db)) == {"live"}


def test_one_of_two_beats_alive_fails_doctor_and_shows_in_status_and_metrics(
    db: Database, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = dt.datetime.now(dt.UTC)
    ticker(db, "beat-a", now).tick(now)
    ticker(db, "beat-b", now).tick(now - seconds(120))  # stopped ticking 2 min ago
    settings = Settings.resolve(
        tmp_path / "tasks.d", database_url, f"sqla+sqlite:///{tmp_path}/broker.db",
        "reconciler.demo:app",
    )  # fmt: skip
    monkeypatch.delenv("RECONCILER_BEATS_EXPECTED", raising=False)

    def beat_check(expected: int | None = None) -> tuple[str, str, list[str]]:
        checks = run_checks(settings, now=now, timeout=0.5, beats_expected=expected)
        check = next(check for check in checks if check.name == "beat")
        return check.status, check.message, check.details

    status, message, details = beat_check(2)
    assert (status, message) == ("fail", "1 of 2 beats alive")
    assert [detail.split(" (pid ")[0] for detail in details] == [
        "beat-a: last tick 0 s ago",
        "beat-b: not ticking, last tick 2 min ago",
    ]
    # Without an expected count one beat alive is enough; the other is a warning.
    assert beat_check()[:2] == ("warn", "1 beat alive; 1 stopped ticking: beat-b")
    monkeypatch.setenv("RECONCILER_BEATS_EXPECTED", "2")
    assert beat_check()[:2] == ("fail", "1 of 2 beats alive")
    assert beat_check(1)[0] == "warn"  # the flag wins over the variable

    doctor = CliRunner().invoke(
        main, ["doctor", "--database-url", database_url, "--broker-url", settings.broker_url]
    )
    assert doctor.exit_code == 1 and "✗ beat        1 of 2 beats alive" in doctor.stdout

    monkeypatch.delenv("RECONCILER_BEATS_EXPECTED")
    text = CliRunner().invoke(
        main, ["status", "--database-url", database_url, "--beats-expected", "2"]
    )
    line = next(line for line in text.stdout.splitlines() if line.startswith("Beats: "))
    assert re.fullmatch(
        r"Beats: 1 of 2 alive: beat-a \(\d s ago\); not ticking: beat-b \(12\d s ago\)", line
    ), line
    data = json.loads(
        CliRunner()
        .invoke(main, ["status", "--database-url", database_url, "--format", "json"])
        .stdout
    )
    assert (data["beat"]["alive"], data["beat"]["expected"]) == (1, None)
    assert [(b["name"], b["alive"]) for b in data["beat"]["beats"]] == [
        ("beat-a", True),
        ("beat-b", False),
    ]

    monkeypatch.setenv("RECONCILER_BEATS_EXPECTED", "2")
    scraped = metrics.render(db, None).decode()
    assert "reconciler_beats_alive 1.0" in scraped
    assert "reconciler_beats_expected 2.0" in scraped
    assert series(db) == ["beat-a", "beat-b"]


def test_a_bad_expected_count_or_name_is_refused_naming_the_variable(
    db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_BEATS_EXPECTED", "two")
    result = CliRunner().invoke(main, ["status", "--database-url", database_url])
    assert result.exit_code == 1
    assert result.stderr == (
        "error: RECONCILER_BEATS_EXPECTED: 'two' is not a whole number above 0\n"
    )
    monkeypatch.delenv("RECONCILER_BEATS_EXPECTED")
    monkeypatch.setenv("RECONCILER_BEAT_NAME", " ")
    from reconciler.errors import ConfigError

    with pytest.raises(ConfigError, match="RECONCILER_BEAT_NAME: ' ' is not a name"):
        Ticker(db, FakePublisher())
