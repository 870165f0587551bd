"""The JSON Schema: generated from the models, committed in sync, used by the examples."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from pydantic import ValidationError

from reconciler.celeryapp import load_app, registered_task_names
from reconciler.cli import main
from reconciler.core.calendars import Calendar
from reconciler.core.spec import TaskSpec
from reconciler.files.loader import check_registered, load_directory
from reconciler.files.schema import (
    CALENDAR_SCHEMA_ID,
    SCHEMA_ID,
    defaults_schema,
    render,
    render_calendar,
    render_defaults,
    task_schema,
)

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "schemas" / "task.schema.json"
EXAMPLES = ROOT / "tasks.d"
SCHEMA_LINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")


def test_committed_schema_is_current() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(), (
        "schemas/task.schema.json is stale: run `make schema` and commit it"
    )


def test_schema_command_prints_it() -> None:
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0
    assert result.output == render()


def test_schema_shape() -> None:
    schema = task_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID
    assert schema["title"] == "celery-reconciler task"
    # ``calendars`` is carried in from the calendar documents, never written in a task file
    assert set(schema["properties"]) == set(TaskSpec.model_fields) - {"calendars"}
    assert schema["required"] == ["name", "owner", "type", "task"]
    assert schema["additionalProperties"] is False
    crontab = schema["properties"]["crontab"]["anyOf"]
    assert {"$ref": "#/$defs/Crontab"} in crontab
    assert crontab[0]["type"] == "string"
    assert schema["$defs"]["Crontab"]["properties"]["minute"]["type"] == ["string", "integer"]
    at_pattern = re.compile(schema["properties"]["at"]["anyOf"][0]["pattern"])
    for accepted in (
        "2030-01-01",
        "2030-01-01T10:00",
        "2030-01-01 10:00:00.5+02:00",
        "2030-01-01T10:00:00Z",
    ):
        assert at_pattern.match(accepted), accepted
        assert TaskSpec.model_validate(
            {"name": "a", "owner": "o", "type": "scheduled", "task": "t", "at": accepted}
        ).at
    assert not at_pattern.match("tomorrow")
    assert schema["properties"]["name"]["not"] == {"enum": ["registered", "executions"]}
    assert all(prop.get("description") for prop in schema["properties"].values())
    rules = {rule["if"]["properties"]["type"]["const"]: rule["then"] for rule in schema["allOf"]}
    assert rules["scheduled"]["required"] == ["at"]
    assert rules["periodic"]["oneOf"] == [{"required": ["crontab"]}, {"required": ["interval"]}]
    json.dumps(schema)  # serialisable as is


def _example_files() -> list[Path]:
    return sorted(p for p in EXAMPLES.rglob("*") if p.suffix in (".yaml", ".yml"))


def test_examples_point_at_the_schema() -> None:
    files = _example_files()
    assert files, "tasks.d/ holds the examples"
    for path in files:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        match = SCHEMA_LINE.match(first)
        assert match, f"{path} must start with '# yaml-language-server: $schema=...'"
        assert (path.parent / match.group(1)).resolve() == COMMITTED


def test_examples_are_valid_against_the_demo_app() -> None:
    result = load_directory(EXAMPLES)
    assert [str(d) for d in result.errors] == []
    names = registered_task_names(load_app("reconciler.demo:app"))
    assert [str(d) for d in check_registered(result, names)] == []


def test_examples_cover_every_type_and_schedule_form() -> None:
    schema_fields = set(task_schema()["properties"])
    forms: set[str] = set()
    for path in _example_files():
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not document:
                continue
            assert set(document) <= schema_fields
            if "crontab" in document:
                kind = "string" if isinstance(document["crontab"], str) else "mapping"
                forms.add(f"crontab {kind}")
            else:
                forms.add("interval" if "interval" in document else document["type"])
    assert forms >= {"async", "scheduled", "crontab string", "crontab mapping", "interval"}


def test_schema_takes_names_macros_and_durations_as_the_model_does() -> None:
    properties = task_schema()["properties"]
    crontab = re.compile(properties["crontab"]["anyOf"][0]["pattern"])
    interval = re.compile(properties["interval"]["anyOf"][0]["pattern"])
    assert {"$ref": "#/$defs/Interval"} in properties["interval"]["anyOf"]
    base = {"name": "a", "owner": "o", "type": "periodic", "task": "t"}
    for text in ("0 9 * * MON-FRI", "0 0 * * 7", "@daily", "@Hourly", " @annually "):
        assert crontab.match(text), text
        assert TaskSpec.model_validate({**base, "crontab": text}).crontab
    for text in ("@reboot", "@every 5m", "0 9 * *"):
        assert not crontab.match(text), text
    for text in ("90m", "1h30m", "2d", "45s", "26h"):
        assert interval.match(text), text
        assert TaskSpec.model_validate({**base, "interval": text}).interval
    for text in ("1.5h", "90", "30m1h", "2w"):
        assert not interval.match(text), text
    hours = task_schema()["$defs"]["Interval"]["properties"]["hours"]
    assert "maximum" not in hours  # over-full parts are carried, not refused


@pytest.mark.parametrize(
    ("document", "rendered"), [("defaults", render_defaults), ("calendar", render_calendar)]
)
def test_committed_document_schemas_are_current(document: str, rendered: Callable[[], str]) -> None:
    committed = ROOT / "schemas" / f"{document}.schema.json"
    assert committed.read_text(encoding="utf-8") == rendered(), (
        f"schemas/{document}.schema.json is stale: run `make schema` and commit it"
    )
    result = CliRunner().invoke(main, ["schema", "--document", document])
    assert result.exit_code == 0 and result.output == rendered()


def test_alerts_in_both_schemas() -> None:
    defaults = defaults_schema()
    assert defaults["required"] == ["kind"]
    assert defaults["properties"]["kind"]["const"] == "defaults"
    assert {"kind", "alerts", "notify", "spread"} <= set(defaults["properties"])
    alerts = task_schema()["$defs"]["Alerts"]
    assert set(alerts["properties"]) == {
        "on_failure",
        "failures_in_a_row",
        "success_within",
        "max_duration",
        "missed",
    }
    duration = re.compile(alerts["properties"]["success_within"]["anyOf"][0]["pattern"])
    assert duration.match("1h30m") and not duration.match("30 minutes")
    assert all(prop.get("description") for prop in alerts["properties"].values())


def _conforms(schema: dict[str, Any], value: Any) -> bool:
    """``value`` against the keywords the calendar schema uses (type, const, pattern,
    format date, lengths, properties, required, additionalProperties, items, oneOf)."""
    kinds = {"string": str, "object": dict, "array": list}
    if "type" in schema and not isinstance(value, kinds[schema["type"]]):
        return False
    if "const" in schema and value != schema["const"]:
        return False
    if "oneOf" in schema and sum(_conforms(each, value) for each in schema["oneOf"]) != 1:
        return False
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return False
        if len(value) > schema.get("maxLength", len(value)):
            return False
        if schema.get("format") == "date":
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                return False
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", len(value)):
            return False
        return all(_conforms(schema.get("items", {}), item) for item in value)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        if not set(schema.get("required", ())) <= set(value):
            return False
        if schema.get("additionalProperties") is False and not set(value) <= set(properties):
            return False
        return all(_conforms(properties.get(key, {}), item) for key, item in value.items())
    return True


def test_calendar_schema_takes_a_calendar_file_and_refuses_bad_ones() -> None:
    schema = json.loads(render_calendar())
    assert schema["$id"] == CALENDAR_SCHEMA_ID
    assert schema["required"] == ["kind", "name", "dates"]
    # As an editor reads the file: YAML's dates are the text written.
    valid = (
        "kind: calendar\nname: de-holidays\ndescription: public holidays\ndates:\n"
        "  - '2026-12-25'\n  - {from: '2026-12-24', until: '2026-12-31'}\n"
        "  - {every_year: '05-01'}\n"
    )
    document = yaml.safe_load(valid)
    assert _conforms(schema, document)
    assert Calendar.model_validate(document).name == "de-holidays"
    for bad in (
        {**document, "kind": "defaults"},
        {**document, "name": "De Holidays"},
        {**document, "colour": "red"},
        {key: value for key, value in document.items() if key != "dates"},
        {**document, "dates": ["2026-13-01"]},
        {**document, "dates": [{"from": "2026-12-24"}]},
        {**document, "dates": [{"every_year": "5-1"}]},
        {**document, "dates": [{"every_year": "05-01", "from": "2026-12-24"}]},
    ):
        assert not _conforms(schema, bad), bad
        with pytest.raises(ValidationError):
            Calendar.model_validate(bad)
