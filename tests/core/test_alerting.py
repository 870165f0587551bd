"""Each alert condition fires and clears at the instants it should (an injected ``now``)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from reconciler.core.alerting import (
    Clear,
    Condition,
    Execution,
    Health,
    Open,
    Resolution,
    Watched,
    evaluate,
    rules_of,
)
from reconciler.core.alerts import Alerts
from reconciler.core.durations import format_duration

T0 = dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.UTC)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def health(**fields: object) -> Health:
    base = Health(name="nightly", owner="billing", enabled=True, live=True, anchor=T0)
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


def rules(**fields: object) -> Alerts:
    return Alerts.model_validate(fields)


def failed_run(id: int, finished: dt.datetime, **fields: object) -> Execution:
    return Execution(
        id=id,
        task_name="nightly",
        celery_task_id=f"c{id}",
        status="failure",
        started_at=finished - dt.timedelta(seconds=5),
        finished_at=finished,
        error="ValueError: bad password=hunter2",
        **fields,  # type: ignore[arg-type]
    )


def opened(verdict_fire: object, alert_id: int = 1) -> Open:
    fire = verdict_fire
    return Open(alert_id, fire.task_name, fire.condition, fire.episode, fire.details)  # type: ignore[attr-defined]


def test_rules_are_read_from_the_stored_spec_and_bad_ones_ignored() -> None:
    assert rules_of({"alerts": {"success_within": "26h", "missed": True}}) == rules(
        success_within="26h", missed=True
    )
    assert rules_of({}) is None
    assert rules_of({"alerts": {}}) is None
    assert rules_of({"alerts": {"success_within": 5}}) is None  # unreadable: no alerts
    assert rules_of({"alerts": "yes"}) is None


def test_on_failure_fires_per_failure_with_secrets_redacted_and_clears_on_success() -> None:
    rule = rules(on_failure=True)
    run = failed_run(7, at(1), kwargs={"api_token": "s3cret", "n": 1})
    verdict = evaluate([Watched(health(consecutive_failures=1), rule, failures=[run])], [], at(2))
    [fire] = verdict.fire
    assert (fire.condition, fire.episode, fire.since) == (Condition.ON_FAILURE, "7", at(1))
    execution = fire.details["execution"]
    assert execution["kwargs"] == {"api_token": "***", "n": 1}
    assert execution["error"] == "ValueError: bad password=***"
    assert "hunter2" not in fire.summary and "failed" in fire.summary
    alert = opened(fire)
    # Still failing, nothing new: stays open. A newer failure supersedes it.
    still = evaluate([Watched(health(consecutive_failures=1), rule)], [alert], at(3))
    assert still.fire == [] and still.clear == []
    newer = evaluate(
        [Watched(health(consecutive_failures=2), rule, failures=[failed_run(8, at(4))])],
        [alert],
        at(5),
    )
    assert [f.episode for f in newer.fire] == ["8"]
    assert newer.clear == [Clear(1, Resolution.SUPERSEDED)]
    # A success after the failure clears it.
    cleared = evaluate([Watched(health(last_success_at=at(6)), rule)], [alert], at(7))
    assert cleared.clear == [Clear(1, Resolution.CLEARED)]


def test_the_same_failure_seen_again_does_not_supersede_its_own_alert() -> None:
    rule = rules(on_failure=True)
    run = failed_run(7, at(1))
    [fire] = evaluate([Watched(health(), rule, failures=[run])], [], at(2)).fire
    again = evaluate([Watched(health(), rule, failures=[run])], [opened(fire)], at(3))
    assert again.clear == []


def test_failures_in_a_row_fires_at_the_threshold_once_per_run_and_clears_on_success() -> None:
    rule = rules(failures_in_a_row=3)
    two = health(consecutive_failures=2, last_success_at=at(0), last_failure_at=at(5))
    assert evaluate([Watched(two, rule)], [], at(6)).fire == []
    three = dataclasses.replace(two, consecutive_failures=3, last_failure_at=at(7))
    [fire] = evaluate([Watched(three, rule)], [], at(8)).fire
    assert fire.condition == Condition.FAILURES_IN_A_ROW
    assert fire.details["consecutive_failures"] == 3
    # A fourth failure is the same episode (same run of failures): no new alert.
    four = dataclasses.replace(three, consecutive_failures=4)
    [again] = evaluate([Watched(four, rule)], [opened(fire)], at(9)).fire
    assert again.episode == fire.episode
    assert evaluate([Watched(four, rule)], [opened(fire)], at(9)).clear == []
    # A success resets the count: cleared.
    ok = dataclasses.replace(four, consecutive_failures=0, last_success_at=at(10))
    verdict = evaluate([Watched(ok, rule)], [opened(fire)], at(11))
    assert verdict.fire == [] and verdict.clear == [Clear(1, Resolution.CLEARED)]


def test_success_within_is_a_dead_mans_switch_counted_from_the_last_success() -> None:
    rule = rules(success_within="26h")
    never = health()
    assert evaluate([Watched(never, rule)], [], T0 + dt.timedelta(hours=26)).fire == []
    [fire] = evaluate([Watched(never, rule)], [], T0 + dt.timedelta(hours=26, seconds=1)).fire
    assert fire.since == T0 + dt.timedelta(hours=26)
    assert "never succeeded" in fire.summary
    assert format_duration(dt.timedelta(hours=26)) in fire.summary
    # It keeps firing as the same episode until a success comes.
    later = T0 + dt.timedelta(hours=40)
    assert evaluate([Watched(never, rule)], [opened(fire)], later).clear == []
    succeeded = health(last_success_at=T0 + dt.timedelta(hours=39))
    verdict = evaluate([Watched(succeeded, rule)], [opened(fire)], later)
    assert verdict.fire == [] and verdict.clear == [Clear(1, Resolution.CLEARED)]
    # 26 h after that success it fires again: a new episode.
    [second] = evaluate([Watched(succeeded, rule)], [], T0 + dt.timedelta(hours=66)).fire
    assert second.episode != fire.episode


def test_success_within_counts_from_a_later_schedule_start() -> None:
    rule = rules(success_within="1h")
    rescheduled = health(last_success_at=at(0), anchor=at(120))
    assert evaluate([Watched(rescheduled, rule)], [], at(150)).fire == []
    assert len(evaluate([Watched(rescheduled, rule)], [], at(181)).fire) == 1


def test_max_duration_fires_for_a_long_execution_and_clears_when_it_ends() -> None:
    rule = rules(max_duration="30m")
    run = Execution(1, "nightly", "c1", "started", started_at=at(0))
    assert evaluate([Watched(health(), rule, running=[run])], [], at(30)).fire == []
    [fire] = evaluate([Watched(health(), rule, running=[run])], [], at(31)).fire
    assert (fire.condition, fire.episode, fire.since) == (Condition.MAX_DURATION, "1", at(30))
    assert evaluate([Watched(health(), rule, running=[run])], [opened(fire)], at(40)).clear == []
    done = evaluate([Watched(health(), rule)], [opened(fire)], at(41))
    assert done.clear == [Clear(1, Resolution.CLEARED)]


def test_missed_records_a_silent_baseline_then_fires_per_change_and_clears_on_a_fire() -> None:
    rule = rules(missed=True)
    old = health(missed_count=4, last_run_at=at(0))
    [baseline] = evaluate([Watched(old, rule)], [], at(1)).fire
    assert baseline.silent and baseline.episode == "4/0"
    assert evaluate([Watched(old, rule, missed_seen="4/0")], [], at(2)).fire == []
    skipped = dataclasses.replace(old, missed_count=6, skipped_count=1)
    [fire] = evaluate([Watched(skipped, rule, missed_seen="4/0")], [], at(3)).fire
    assert not fire.silent and fire.episode == "6/1"
    assert fire.summary == "nightly: 2 slot(s) missed and 1 slot(s) skipped"
    alert = opened(fire)
    quiet = evaluate([Watched(skipped, rule, missed_seen="6/1")], [alert], at(4))
    assert quiet.fire == [] and quiet.clear == []
    fired = dataclasses.replace(skipped, last_run_at=at(5))
    verdict = evaluate([Watched(fired, rule, missed_seen="6/1")], [alert], at(6))
    assert verdict.clear == [Clear(1, Resolution.CLEARED)]


def test_missed_reports_overlap_skips_and_takes_lowered_counts_as_a_new_baseline() -> None:
    rule = rules(missed=True)
    held = health(missed_count=1, skipped_count=3)  # seen at 1/0: three overlap skips since
    [fire] = evaluate([Watched(held, rule, missed_seen="1/0")], [], at(2)).fire
    assert fire.summary == "nightly: 3 slot(s) skipped" and fire.episode == "1/3"
    assert (fire.details["newly_missed"], fire.details["newly_skipped"]) == (0, 3)
    lowered = health(missed_count=0, skipped_count=2)
    [baseline] = evaluate([Watched(lowered, rule, missed_seen="1/3")], [], at(3)).fire
    assert baseline.silent and baseline.episode == "0/2"  # a hand edit: recorded, not sent


def test_open_alerts_end_when_the_task_is_disabled_deleted_or_its_rule_removed() -> None:
    rule = rules(success_within="1h")
    [fire] = evaluate([Watched(health(), rule)], [], at(61)).fire
    alert = opened(fire)
    disabled = evaluate([Watched(health(enabled=False), rule)], [alert], at(62))
    assert disabled.fire == [] and disabled.clear == [Clear(1, Resolution.TASK_DISABLED)]
    deleted = evaluate([Watched(health(live=False), rule)], [alert], at(62))
    assert deleted.clear == [Clear(1, Resolution.TASK_DELETED)]
    other = evaluate([Watched(health(), rules(missed=True), missed_seen="0/0")], [alert], at(62))
    assert other.clear == [Clear(1, Resolution.ALERT_REMOVED)]
    assert evaluate([], [alert], at(62)).clear == [Clear(1, Resolution.ALERT_REMOVED)]
