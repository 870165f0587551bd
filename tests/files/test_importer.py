"""``reconcile import``: old web API payloads become task files, all or nothing.

The payloads are the examples of the old web app's guide (in every form it had); the
written files must load with the loader to exactly the spec the importer meant.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.cli import main
from reconciler.core.spec import NAME_PATTERN
from reconciler.errors import ReconcilerError
from reconciler.files.imports.names import slugify
from reconciler.files.imports.plan import plan_import, write_tasks
from reconciler.files.loader import load_directory

SCHEMA_LINE = "# yaml-language-server: $schema=../../schemas/task.schema.json\n"

ONCE_IMMEDIATE = {
    "name": "测试任务",
    "description": "这是一个测试任务",
    "task_type": "once",
    "execution_type": "immediate",
    "celery_task_name": "app.worker.test_celery",
    "task_args": '["Hello World"]',
    "task_kwargs": "{}",
    "enabled": True,
}
ONCE_SCHEDULED = {
    "name": "定时任务",
    "description": "在指定时间执行",
    "task_type": "once",
    "execution_type": "scheduled",
    "celery_task_name": "app.worker.long_running_task",
    "task_args": "[60]",
    "task_kwargs": "{}",
    "scheduled_time": "2030-12-02T15:00:00",
    "enabled": True,
}
DAILY = {
    "name": "每日任务",
    "description": "每天凌晨1点执行",
    "task_type": "periodic",
    "celery_task_name": "app.worker.test_celery",
    "task_args": '["Daily Task"]',
    "task_kwargs": "{}",
    "crontab_minute": "0",
    "crontab_hour": "1",
    "crontab_day_of_month": "*",
    "crontab_month_of_year": "*",
    "crontab_day_of_week": "*",
    "enabled": True,
}
EVERY_5_MINUTES = {
    "name": "Frequent Task",
    "task_type": "periodic",
    "celery_task_name": "app.api.tasks.demo_periodic_task",
    "task_args": "[]",
    "task_kwargs": '{"check": "health"}',
    "interval_days": 0,
    "interval_hours": 0,
    "interval_minutes": 5,
    "interval_seconds": 0,
    "enabled": False,
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout-like folder: schemas/ beside tasks.d/, and the current directory."""
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "task.schema.json").write_text("{}")
    (tmp_path / "tasks.d").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RECONCILER_TASKS_DIR", raising=False)
    return tmp_path


def run_import(project: Path, payloads: Any, *extra: str) -> Result:
    source = project / "old.json"
    source.write_text(json.dumps(payloads, ensure_ascii=False), encoding="utf-8")
    return CliRunner().invoke(main, ["import", "old.json", *extra])


def imported_files(project: Path) -> dict[str, str]:
    folder = project / "tasks.d" / "imported"
    if not folder.exists():
        return {}
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(folder.iterdir())}


# --- every payload form --------------------------------------------------------------------


def test_once_immediate_becomes_async_held_back_with_a_readable_name(project: Path) -> None:
    result = run_import(project, ONCE_IMMEDIATE, "--owner", "demo")
    assert result.exit_code == 0, result.output
    assert (
        imported_files(project)
        == {
            "ceshirenwu.yaml": SCHEMA_LINE + "# Imported from the old web app, where it was called "
            "'测试任务'.\n"
            "# enabled: false because this one-off may already have run in the old system; set it "
            "to true to run it (again).\n"
            "name: ceshirenwu\n"
            "description: 这是一个测试任务\n"  # it holds the old name already: searchable
            "owner: demo\n"
            "type: async\n"
            "task: app.worker.test_celery\n"
            "args: [Hello World]\n"
            "enabled: false\n"
            "labels: {imported-from: web-api, original-name: 测试任务}\n"
        }
    )
    assert result.stdout == (
        "+ ceshirenwu (async) -> tasks.d/imported/ceshirenwu.yaml\n"
        "    note: name '测试任务' is not kept as it is; it became 'ceshirenwu'\n"
        "    note: one-off that may already have run: written enabled: false "
        "(--enable-one-offs keeps it enabled)\n"
        "Written disabled, as they may already have run: ceshirenwu (set enabled: true in a "
        "file to run that one-off).\n"
        "Imported 1 task. Check them with `reconcile validate`, then commit them.\n"
    )


def test_enable_one_offs_keeps_them_enabled(project: Path) -> None:
    result = run_import(project, ONCE_IMMEDIATE, "--owner", "demo", "--enable-one-offs")
    assert result.exit_code == 0, result.output
    (text,) = imported_files(project).values()
    assert "enabled: true\n" in text
    assert "may already have run" not in text + result.stdout


def test_once_scheduled_becomes_scheduled_in_utc(project: Path) -> None:
    result = run_import(project, [ONCE_SCHEDULED], "--owner", "demo")
    assert result.exit_code == 0, result.output
    (text,) = imported_files(project).values()
    assert text.endswith(
        "type: scheduled\ntask: app.worker.long_running_task\nargs: [60]\nenabled: true\n"
        "at: 2030-12-02T15:00:00Z\nlabels: {imported-from: web-api, original-name: 定时任务}\n"
    )


def test_periodic_crontab_becomes_a_crontab_string(project: Path) -> None:
    result = run_import(project, [DAILY], "--owner", "billing")
    assert result.exit_code == 0, result.output
    (text,) = imported_files(project).values()
    assert "owner: billing\n" in text
    assert text.endswith(
        "args: [Daily Task]\nenabled: true\ncrontab: 0 1 * * *\n"
        "labels: {imported-from: web-api, original-name: 每日任务}\n"
    )


def test_periodic_interval(project: Path) -> None:
    result = run_import(project, [EVERY_5_MINUTES], "--owner", "demo")
    assert result.exit_code == 0, result.output
    assert imported_files(project) == {
        "frequent-task.yaml": SCHEMA_LINE + "# Imported from the old web app, where it was called "
        "'Frequent Task'.\n"
        "name: frequent-task\n"
        "description: Frequent Task\n"
        "owner: demo\n"
        "type: periodic\n"
        "task: app.api.tasks.demo_periodic_task\n"
        "kwargs: {check: health}\n"
        "enabled: false\n"
        "interval: {minutes: 5}\n"
        "labels: {imported-from: web-api, original-name: Frequent Task}\n"
    }
    assert "    note: name 'Frequent Task' is not kept as it is; it became 'frequent-task'\n" in (
        result.stdout
    )


def test_plain_types_a_list_response_and_overfull_intervals(project: Path) -> None:
    payloads = {
        "data": [
            {"name": "ping", "task_type": "async", "celery_task_name": "app.worker.test_celery"},
            {
                "name": "launch",
                "task_type": "scheduled",
                "celery_task_name": "app.api.tasks.demo_scheduled_task",
                "scheduled_time": "2031-01-01T08:00:00+02:00",
            },
            {
                "id": 7,
                "owner_id": "5f0c",
                "created_at": "2025-01-01T00:00:00",
                "name": "sync",
                "task_type": "periodic",
                "celery_task_name": "app.api.tasks.demo_dynamic_task",
                "task_args": [1, 2],
                "task_kwargs": {"deep": {"x": [True, None]}},
                "interval_minutes": 90,
                "crontab_minute": "*",
            },
        ],
        "count": 3,
    }
    result = run_import(project, payloads, "--owner", "ops")
    assert result.exit_code == 0, result.output
    loaded = load_directory(project / "tasks.d")
    assert loaded.diagnostics == []
    specs = {task.spec.name: task.spec for task in loaded.tasks}
    assert specs["ping"].type == "async"
    assert specs["launch"].at is not None
    assert specs["launch"].at.isoformat() == "2031-01-01T06:00:00+00:00"
    assert specs["sync"].interval is not None
    assert (specs["sync"].interval.hours, specs["sync"].interval.minutes) == (1, 30)
    assert specs["sync"].args == [1, 2]
    assert specs["sync"].kwargs == {"deep": {"x": [True, None]}}
    assert specs["ping"].enabled is False  # a one-off that may have run already
    assert specs["sync"].labels == {"imported-from": "web-api"}
    assert "note" not in result.stdout.replace("ping.yaml\n    note: one-off", "")


def test_every_written_file_loads_as_meant(project: Path) -> None:
    payloads = [ONCE_IMMEDIATE, ONCE_SCHEDULED, DAILY, EVERY_5_MINUTES]
    result = run_import(project, payloads, "--owner", "demo", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["imported"]
    assert [item["type"] for item in report] == ["async", "scheduled", "periodic", "periodic"]
    assert [item["original_name"] for item in report] == [p["name"] for p in payloads]
    loaded = load_directory(project / "tasks.d")
    assert loaded.diagnostics == []
    assert sorted(task.spec.name for task in loaded.tasks) == sorted(i["name"] for i in report)
    for task in loaded.tasks:
        assert task.spec.owner == "demo"


def test_owner_in_the_payload_and_tasks_dir_option(tmp_path: Path) -> None:
    source = tmp_path / "one.json"
    source.write_text(json.dumps({**DAILY, "name": "daily", "owner": "reports"}))
    target = tmp_path / "elsewhere"
    result = CliRunner().invoke(main, ["import", str(source), "--tasks-dir", str(target)])
    assert result.exit_code == 0, result.output
    text = (target / "imported" / "daily.yaml").read_text()
    assert "owner: reports\n" in text
    # no schemas/ folder above it: the conventional place is assumed
    assert text.startswith(SCHEMA_LINE)


def test_past_scheduled_time_is_imported_with_a_note(project: Path) -> None:
    old = {**ONCE_SCHEDULED, "name": "old-run", "scheduled_time": "2020-01-01T00:00:00"}
    result = run_import(project, [old], "--owner", "demo")
    assert result.exit_code == 0, result.output
    assert "    note: scheduled_time: 2020-01-01T00:00:00+00:00 is in the past\n" in result.stdout


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("daily-report", "daily-report"),
        ("Daily Report", "daily-report"),
        ("  Nightly  ETL / v2!  ", "nightly-etl-v2"),
        ("Café Überweisung", "cafe-uberweisung"),
        ("registered", "registered-task"),
        ("A__B..C", "a_b.c"),
    ],
)
def test_slugify(old: str, new: str) -> None:
    assert slugify(old) == new


def test_slugify_spells_chinese_in_pinyin_and_shortens() -> None:
    assert slugify("测试任务", "test_celery") == "ceshirenwu"
    assert slugify("每日报告 Daily", "x") == "meiribaogao-daily"
    assert slugify("报表 Report", "x") == "baobiao-report"
    assert slugify("!!!") == "task"
    assert slugify("🙂", "app.tasks.ping") == "app.tasks.ping"
    long = slugify("Nightly export of the accounting ledger " * 4)
    assert len(long) <= 64 and not long.endswith("-")
    assert long.startswith("nightly-export-of-the-accounting-ledger-nightly")
    assert len(slugify("x" * 300)) == 64


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("Ежедневный отчёт", "ezhednevnyy-otchet"),  # Cyrillic
        ("Подъезд 5", "podezd-5"),  # the hard sign is no word break
        ("Ημερήσια αναφορά", "imerisia-anafora"),  # Greek, accents dropped
        ("まいにちのレポート", "mainichino-repoto"),  # hiragana, then katakana
        ("毎日のレポート", "meiri-no-repoto"),  # kanji read as Chinese, kana as Japanese
        ("ﾃｽﾄ ジョブ", "tesuto-jobu"),  # half-width katakana; a small yo joins its syllable
        ("バックアップ", "bakkuappu"),  # a small tsu doubles the consonant after it
        ("ちょっと チェック", "chotto-chekku"),
        ("ウィークリー ファイル", "wikuri-fairu"),  # small vowels; the long mark is dropped
        ("일일 보고서", "ilil-bogoseo"),  # Hangul
        ("تقرير يومي", "tqryr-ywmy"),  # Arabic, right to left, in reading order
        ("דוח יומי", "dvh-yvmy"),  # Hebrew
        ("नमस्ते दुनिया", "nmste-duniya"),  # Devanagari, its vowel signs in the word
        ("Отчёт Daily 报告", "otchet-daily-baogao"),  # three scripts
        ("ОтчётDaily", "otchet-daily"),  # noqa: RUF001 (a change of script is a word break)
        ("v2报告2024", "v2-baogao-2024"),
        ("Größe straße", "grosse-strasse"),
        ("ＥＴＬ ｎｉｇｈｔｌｙ", "etl-nightly"),  # noqa: RUF001 (full-width Latin)
        ("Ñandú 🚀 report", "nandu-report"),  # emoji among words are dropped
    ],
)
def test_slugify_spells_other_scripts(old: str, new: str) -> None:
    assert slugify(old, "app.tasks.ping") == new


@pytest.mark.parametrize("old", ["🙂", "🚀📈", "✓ ✗", "→ ← ↑", "★"])
def test_slugify_without_letters_starts_from_the_task_name(old: str) -> None:
    assert slugify(old, "app.tasks.ping") == "app.tasks.ping"


def test_slugify_shortens_a_spelled_name_at_a_word_boundary() -> None:
    long = "Ежедневный отчёт о продажах по всем регионам и филиалам компании за прошлый месяц"  # noqa: RUF001
    assert slugify(long) == "ezhednevnyy-otchet-o-prodazhakh-po-vsem-regionam-i-filialam"
    korean = "jugan-maechul-bogoseo-jugan-maechul-bogoseo-jugan-maechul"
    assert slugify("주간 매출 보고서 " * 8) == korean  # 64 would cut "bogoseo" short
    assert len(slugify("ежедневный" * 20)) == 64  # no word boundary: cut at the limit


ALPHABETS = (
    "Ежедневныйотчёт Ημερήσιααναφορά まいにちレポートジョッィ 일일보고서 تقرير דוח 每日报告 🙂-._"
)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=ALPHABETS, max_size=120))
def test_slugify_spells_every_script_into_a_valid_name(name: str) -> None:
    slug = slugify(name, "app.tasks.ping")
    assert re.fullmatch(NAME_PATTERN, slug) and len(slug) <= 64
    if any(ch.isalpha() and ch not in "ーッ" for ch in name):  # these alone spell nothing
        assert slug != "app.tasks.ping"


def test_a_suffix_only_where_two_old_names_meet(project: Path) -> None:
    payloads = [
        {**DAILY, "name": "每日报告"},
        {**DAILY, "name": "每日 报告"},
        {**DAILY, "name": "meiribaogao"},
        {**DAILY, "name": "周报"},
    ]
    result = run_import(project, payloads, "--owner", "demo", "--format", "json")
    assert result.exit_code == 0, result.output
    names = [item["name"] for item in json.loads(result.stdout)["imported"]]
    # the valid old name keeps itself; the two that spell the same get -2 and -3
    assert names == ["meiribaogao-2", "meiri-baogao", "meiribaogao", "zhoubao"]


def test_names_map(project: Path) -> None:
    (project / "names.yaml").write_text("每日任务: daily-at-one\n", encoding="utf-8")
    result = run_import(project, [DAILY], "--owner", "demo", "--names", "names.yaml")
    assert result.exit_code == 0, result.output
    assert list(imported_files(project)) == ["daily-at-one.yaml"]
    loaded = load_directory(project / "tasks.d").tasks[0].spec
    assert loaded.labels == {"imported-from": "web-api", "original-name": "每日任务"}
    assert loaded.description == "每日任务: 每天凌晨1点执行"
    (project / "names.yaml").write_text("没有: x\nbad: [1\n", encoding="utf-8")
    result = run_import(project, [DAILY], "--owner", "demo", "--names", "names.yaml")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: names.yaml:3:1: not valid YAML: ")
    (project / "names.yaml").write_text("没有: x\n", encoding="utf-8")
    result = run_import(project, [DAILY], "--owner", "demo", "--names", "names.yaml")
    assert result.exit_code == 1
    assert "  --names: '没有' is not the name of any imported entry\n" in result.stderr


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.text(max_size=40))
def test_slugify_always_gives_a_valid_name(name: str, fallback: str) -> None:
    slug = slugify(name, fallback)
    assert re.fullmatch(NAME_PATTERN, slug)
    assert slug not in ("registered", "executions")


# --- never overwrite, all or nothing ---------------------------------------------------------


def test_never_overwrites_and_writes_nothing(project: Path) -> None:
    folder = project / "tasks.d" / "imported"
    folder.mkdir()
    (folder / "frequent-task.yaml").write_text("# mine\n")
    result = run_import(project, [DAILY, EVERY_5_MINUTES], "--owner", "demo")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: old.json: 1 problem; nothing was written\n"
        "  payload[1].name: tasks.d/imported/frequent-task.yaml already exists; it is never "
        "overwritten (move it away, or rename the task)\n"
    )
    assert imported_files(project) == {"frequent-task.yaml": "# mine\n"}


def test_name_taken_by_an_existing_task_or_twice_in_the_import(project: Path) -> None:
    (project / "tasks.d" / "mine.yaml").write_text(
        "name: daily\nowner: me\ntype: async\ntask: app.worker.test_celery\n"
    )
    payloads = [
        {**DAILY, "name": "Daily"},
        {**DAILY, "name": "Nightly"},
        {**DAILY, "name": "NIGHTLY"},
        {**DAILY, "name": "Nightly"},
    ]
    result = run_import(project, payloads, "--owner", "demo")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: old.json: 2 problems; nothing was written\n"
        "  payload[0].name: the task 'daily' already exists in "
        f"{Path('tasks.d') / 'mine.yaml'}; rename one of them\n"
        "  payload[3].name: 'Nightly' becomes the task 'nightly', as payload[1] does; "
        "give one of them another name\n"
    )
    assert imported_files(project) == {}


def test_owner_is_required_when_payloads_have_none(project: Path) -> None:
    result = run_import(project, [DAILY, {**DAILY, "owner": "x"}, EVERY_5_MINUTES])
    assert result.exit_code == 2
    assert result.stderr == (
        "error: old.json: payload[0], payload[2] have no owner (the old web app's payloads "
        "have none): pass --owner NAME, the team that may read the tasks' history\n"
    )
    assert imported_files(project) == {}


# --- bad payloads ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"task_args": "[1, 2"},
            "payload[1].task_args: not valid JSON: Expecting ',' delimiter at column 6",
        ),
        ({"task_args": '{"a": 1}'}, "payload[1].task_args: must be a JSON array, got object"),
        ({"task_kwargs": "[1]"}, "payload[1].task_kwargs: must be a JSON object, got array"),
        ({"celery_task_name": None}, "payload[1].celery_task_name: is required"),
        (
            {"celery_task_name": "app.worker. test"},
            "payload[1].celery_task_name: String should match pattern '^\\S+$'",
        ),
        ({"name": 5}, "payload[1].name: must be a string, got number"),
        (
            {"task_type": "weekly"},
            'payload[1].task_type: is "weekly"; use one of async, scheduled, periodic, once',
        ),
        (
            {"execution_type": "later"},
            'payload[1].execution_type: is "later"; use one of immediate, scheduled',
        ),
        (
            {"crontab_minute": "61"},
            "payload[1].crontab_minute: must be 0-59, got 61",
        ),
        (
            {"crontab_hour": "*/x"},
            "payload[1].crontab_hour: '*/x' is not a cron value (use a number, '*', a range "
            "'a-b', a step '*/n' or a list 'a,b')",
        ),
        (
            {"interval_minutes": 5},
            "payload[1]: has both crontab_* and interval_* values; a periodic task takes one "
            "schedule: clear the one that is not meant",
        ),
        ({"enabled": "yes"}, 'payload[1].enabled: must be true or false, got "yes"'),
        (
            {"crontab_minut": "5"},
            "payload[1].crontab_minut: unknown field; did you mean 'crontab_minute'?",
        ),
    ],
)
def test_bad_payload_is_named_with_its_field(
    project: Path, change: dict[str, Any], message: str
) -> None:
    result = run_import(project, [EVERY_5_MINUTES, {**DAILY, **change}], "--owner", "demo")
    assert result.exit_code == 1
    assert result.stderr == f"error: old.json: 1 problem; nothing was written\n  {message}\n"
    assert imported_files(project) == {}


def test_schedule_problems_and_every_problem_listed(project: Path) -> None:
    no_time = {**ONCE_SCHEDULED, "scheduled_time": None}
    no_schedule = {"name": "p", "task_type": "periodic", "celery_task_name": "t"}
    negative = {**EVERY_5_MINUTES, "interval_minutes": -5}
    bad_time = {**ONCE_SCHEDULED, "scheduled_time": "tomorrow"}
    result = run_import(
        project, [no_time, no_schedule, negative, bad_time, "oops"], "--owner", "demo"
    )
    assert result.exit_code == 1
    assert result.stderr == (
        "error: old.json: 5 problems; nothing was written\n"
        "  payload[0].scheduled_time: is required when the task runs at a set time, e.g. "
        "2025-12-02T15:00:00\n"
        "  payload[1]: task_type 'periodic' needs crontab_* fields (e.g. crontab_minute: "
        "'*/5') or interval_* fields (e.g. interval_minutes: 5)\n"
        "  payload[2].interval_minutes: must not be negative, got -5\n"
        "  payload[3].scheduled_time: 'tomorrow' is not an ISO 8601 time, e.g. "
        "2025-12-02T15:00:00\n"
        "  payload[4]: is a JSON string, not an object\n"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"name": ', "error: old.json:1:11: not valid JSON: Expecting value\n"),
        (
            '"just text"',
            "error: old.json: holds a JSON string; expected a task payload object "
            "or a list of them\n",
        ),
    ],
)
def test_unreadable_file(project: Path, content: str, message: str) -> None:
    (project / "old.json").write_text(content)
    result = CliRunner().invoke(main, ["import", "old.json", "--owner", "demo"])
    assert result.exit_code == 1
    assert result.stderr == message


def test_missing_file_and_empty_list(project: Path) -> None:
    result = CliRunner().invoke(main, ["import", "nope.json", "--owner", "demo"])
    assert (result.exit_code, result.stderr) == (1, "error: nope.json: no such file\n")
    result = run_import(project, [], "--owner", "demo")
    assert (result.exit_code, result.stdout) == (
        0,
        "old.json holds no payloads; nothing to import\n",
    )


def test_a_file_that_appears_before_writing_stops_the_whole_import(project: Path) -> None:
    tasks = plan_import(
        [DAILY, EVERY_5_MINUTES], tasks_dir=Path("tasks.d"), owner="demo", source="old.json"
    )
    tasks[1].path.parent.mkdir(parents=True)
    tasks[1].path.write_text("# raced\n")
    with pytest.raises(ReconcilerError, match="already exists; nothing was imported"):
        write_tasks(tasks)
    assert imported_files(project) == {tasks[1].path.name: "# raced\n"}


def test_schedule_fields_a_type_does_not_use_are_noted(project: Path) -> None:
    payload = {**ONCE_IMMEDIATE, "name": "now", "crontab_minute": "*", "interval_minutes": 5}
    payload["scheduled_time"] = "2030-01-01T00:00:00"
    result = run_import(project, [payload], "--owner", "demo")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1] == (
        "    note: scheduled_time, interval_minutes ignored: type 'async' does not use them"
    )
