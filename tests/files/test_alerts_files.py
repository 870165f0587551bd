"""``alerts:`` on a task and the ``kind: defaults`` document: every refusal located and
pinned, one defaults document per tree, and the effective alerts each task carries."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from reconciler.core.alerts import Alerts
from reconciler.files.loader import LoadResult, load_directory

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

TASK = """\
name: {name}
owner: billing
type: periodic
task: app.worker.test_celery
crontab: "0 1 * * *"
"""


@pytest.fixture
def tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``tasks.d`` in a fresh working directory, so paths print relative."""
    monkeypatch.chdir(tmp_path)
    root = Path("tasks.d")
    root.mkdir()
    return root


def load(root: Path, files: dict[str, str]) -> LoadResult:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return load_directory(root, NOW)


def lines(result: LoadResult) -> list[str]:
    return [str(d) for d in result.diagnostics]


HINT_DURATION = "write it like 45s, 30m, 1h30m, 26h or 2d (days, hours, minutes, seconds)"


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        (
            "{on_failure: yes please}",
            "7:22: alerts.on_failure: expected true or false, got a string ('yes please')",
        ),
        ("{failures_in_a_row: 0}", "7:29: alerts.failures_in_a_row: must be at least 1, got 0"),
        (
            "{failures_in_a_row: 1001}",
            "7:29: alerts.failures_in_a_row: must be at most 1000, got 1001",
        ),
        (
            "{failures_in_a_row: '3'}",
            "7:29: alerts.failures_in_a_row: expected an integer, got a string ('3') (hint: write "
            "it unquoted, with ASCII digits 0-9)",
        ),
        (
            "{success_within: 26}",
            f"7:26: alerts.success_within: expected a duration, got an integer (26) (hint: "
            f"{HINT_DURATION})",
        ),
        (
            "{success_within: 26x}",
            "7:26: alerts.success_within: '26x': unknown unit 'x' (hint: units are d (days), h "
            "(hours), m (minutes) and s (seconds))",
        ),
        (
            "{success_within: 0s}",
            "7:26: alerts.success_within: '0s' must be above 0 (hint: e.g. 45s, 5m or 1h)",
        ),
        (
            "{success_within: 366d}",
            "7:26: alerts.success_within: '366d' is over the limit of 365d (hint: use a duration "
            "up to 365d)",
        ),
        (
            "{max_duration: 1.5h}",
            "7:24: alerts.max_duration: '1.5h': fractions are not allowed (hint: write 1h30m)",
        ),
        (
            "{max_duration: 30min}",
            "7:24: alerts.max_duration: '30min': unknown unit 'min' (hint: write 30m)",
        ),
        ("{missed: 1}", "7:18: alerts.missed: expected true or false, got an integer (1)"),
        ("{missd: true}", "7:10: alerts.missd: unknown field (hint: did you mean 'missed'?)"),
        (
            "{on_failure: true, failures_in_a_row: 3}",
            "7:47: alerts.failures_in_a_row: on_failure alerts on every failure, so "
            "failures_in_a_row would never add one (hint: keep one: on_failure: true, or "
            "failures_in_a_row: N for N in a row)",
        ),
        ("[on_failure]", "7:9: alerts: expected a mapping, got a list"),
    ],
)
def test_task_alerts_refusals_are_located(tasks: Path, alerts: str, expected: str) -> None:
    text = TASK.format(name="a") + "description: x\n" + f"alerts: {alerts}\n"
    result = load(tasks, {"a.yaml": text})
    assert lines(result) == [f"tasks.d/a.yaml:{expected}"]
    assert result.tasks == []


def test_task_alerts_are_read_and_normalised(tasks: Path) -> None:
    text = TASK.format(name="a") + (
        "alerts:\n  on_failure: true\n  success_within: 26h\n  max_duration: 90m\n  missed: true\n"
    )
    result = load(tasks, {"a.yaml": text})
    assert lines(result) == []
    alerts = result.tasks[0].spec.alerts
    assert alerts == Alerts(
        on_failure=True,
        success_within=dt.timedelta(hours=26),
        max_duration=dt.timedelta(minutes=90),
        missed=True,
    )
    stored = result.tasks[0].spec.canonical()["alerts"]
    assert stored == {
        "on_failure": True,
        "failures_in_a_row": None,
        "success_within": "1d2h",
        "max_duration": "1h30m",
        "missed": True,
    }


def test_a_task_without_alerts_stores_no_alerts_key(tasks: Path) -> None:
    # Specs stored before alerts existed keep their exact text: no update is planned.
    result = load(tasks, {"a.yaml": TASK.format(name="a") + "alerts: {}\n"})
    spec = result.tasks[0].spec
    assert spec.alerts is None
    assert "alerts" not in spec.canonical() and '"alerts"' not in spec.model_dump_json()


DEFAULTS = """\
kind: defaults
alerts: {failures_in_a_row: 3, success_within: 26h}
notify:
  billing: {webhook_url_env: BILLING_ALERTS_URL, format: slack}
  ops: {webhook_url_env: OPS_URL}
"""


def test_effective_alerts_own_else_defaults(tasks: Path) -> None:
    result = load(
        tasks,
        {
            "defaults.yaml": DEFAULTS,
            "inherits.yaml": TASK.format(name="inherits"),
            "own.yaml": TASK.format(name="own") + "alerts: {on_failure: true}\n",
            "quiet.yaml": TASK.format(name="quiet") + "alerts: {}\n",
        },
    )
    assert lines(result) == []
    by_name = {task.spec.name: task for task in result.tasks}
    default = Alerts(failures_in_a_row=3, success_within=dt.timedelta(hours=26))
    assert by_name["inherits"].spec.alerts == default
    assert by_name["inherits"].inherited == (("alerts", "tasks.d/defaults.yaml:1"),)
    # A task's own alerts replace the defaults' as a whole; {} turns them off.
    assert by_name["own"].spec.alerts == Alerts(on_failure=True)
    assert by_name["own"].inherited == ()
    assert by_name["quiet"].spec.alerts is None
    assert result.notify == {
        "billing": {"webhook_url_env": "BILLING_ALERTS_URL", "format": "slack"},
        "ops": {"webhook_url_env": "OPS_URL", "format": "json"},
    }


def test_one_defaults_document_per_tree(tasks: Path) -> None:
    result = load(
        tasks,
        {
            "a/defaults.yaml": "kind: defaults\n",
            "b/more.yaml": TASK.format(name="t") + "---\nkind: defaults\nalerts: {missed: true}\n",
        },
    )
    assert lines(result) == [
        "tasks.d/b/more.yaml:7:1: kind: a second defaults document; the first is at "
        "tasks.d/a/defaults.yaml:1:1 (hint: keep one kind: defaults document in the tasks "
        "tree and merge the two)"
    ]
    assert not result.ok
    # The first one counts even when it is itself invalid.
    result = load(tasks, {"a/defaults.yaml": "kind: defaults\nalerts: {missed: 2}\n"})
    assert [d.field for d in result.errors] == ["alerts.missed", "kind"]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            "kind: holidays\nname: x\n",
            "1:7: kind: must be 'defaults' or 'calendar', got a string ('holidays') (hint: write "
            "kind: defaults for the defaults of all tasks, kind: calendar for a calendar; a "
            "document without kind is a task)",
        ),
        (
            "kind: [defaults]\n",
            "1:7: kind: must be 'defaults' or 'calendar', got a list (hint: write kind: defaults "
            "for the defaults of all tasks, kind: calendar for a calendar; a document without "
            "kind is a task)",
        ),
        (
            "kind: defaults\nalert: {missed: true}\n",
            "2:1: alert: unknown field (hint: did you mean 'alerts'?)",
        ),
        (
            "kind: defaults\nname: x\n",
            "2:1: name: unknown field (hint: known fields: alerts, history, kind, notify, spread)",
        ),
        (
            "kind: defaults\nalerts: {failures_in_a_row: 0}\n",
            "2:29: alerts.failures_in_a_row: must be at least 1, got 0",
        ),
        ("kind: defaults\nnotify: [billing]\n", "2:9: notify: expected a mapping, got a list"),
        (
            "kind: defaults\nnotify: {billing: {webhook_url_env: BAD-NAME}}\n",
            "2:37: notify.billing.webhook_url_env: must name an environment variable, got "
            "'BAD-NAME' (hint: use a variable name: letters, digits and '_', not starting with a "
            "digit, e.g. BILLING_ALERTS_URL (the URL stays out of git))",
        ),
        (
            "kind: defaults\nnotify: {billing: {webhook_url_env: A, format: teams}}\n",
            "2:48: notify.billing.format: expected 'json' or 'slack', got a string ('teams')",
        ),
        (
            "kind: defaults\nnotify: {billing: {webhook_url_env: A, url: "
            "https://example.invalid}}\n",
            "2:40: notify.billing.url: unknown field (hint: known fields: format, webhook_url_env)",
        ),
        (
            "kind: defaults\nnotify: {billing: {format: json}}\n",
            "2:19: notify.billing.webhook_url_env: required field missing",
        ),
        (
            f"kind: defaults\nnotify: {{billing: {{webhook_url_env: {'V' * 201}}}}}\n",
            "2:37: notify.billing.webhook_url_env: is 201 characters long, over the limit of 200 "
            "(hint: use a shorter variable name)",
        ),
        (
            "kind: defaults\nnotify: {'': {webhook_url_env: A}}\n",
            "2:9: notify: an owner must not be empty (hint: name the owner, e.g. billing)",
        ),
    ],
)
def test_defaults_refusals_are_located(tasks: Path, document: str, expected: str) -> None:
    result = load(tasks, {"defaults.yaml": document, "t.yaml": TASK.format(name="t")})
    assert lines(result) == [f"tasks.d/defaults.yaml:{expected}"]
