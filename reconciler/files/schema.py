"""The JSON Schema of a task file, generated from the models in ``reconciler.core.spec``,
and those of the defaults document (``reconciler.core.defaults``) and of a calendar
(``reconciler.core.calendars``).

``reconcile schema`` prints it and ``schemas/task.schema.json`` is its committed copy
(``make schema``), which editors running yaml-language-server use to complete and
check task files. A test fails when the committed copy is stale.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from pydantic import BaseModel

from reconciler.core.calendars import Calendar
from reconciler.core.cronsyntax import CRON_FIELDS, MACROS
from reconciler.core.defaults import Defaults
from reconciler.core.durations import DURATION_PATTERN
from reconciler.core.spec import TaskSpec

SCHEMA_ID = "urn:celery-reconciler:schemas:task"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
AT_PATTERN = (
    r"^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*([Zz]|[+-]\d{2}(:?\d{2})?)?)?$"
)

DESCRIPTIONS: dict[str, str] = {
    "name": "Identity of the task: lowercase letters, digits, '.', '_', '-'; unique.",
    "description": "Free text shown by status and the HTTP endpoint.",
    "owner": "Who may read the task's history through the HTTP endpoint.",
    "type": "async: once when applied; scheduled: once at 'at'; periodic: crontab or interval.",
    "task": "The registered Celery task name, e.g. app.worker.test_celery.",
    "args": "Positional arguments (plain JSON values; {secret_env: NAME} for a secret).",
    "kwargs": "Keyword arguments (plain JSON values; quote dates; {secret_env: NAME} for a "
    "secret, read from the environment when published).",
    "enabled": "false keeps the task defined but stops it firing.",
    "crontab": "periodic only: five fields such as '0 9 * * MON-FRI', a macro (@yearly, "
    "@annually, @monthly, @weekly, @daily, @midnight, @hourly), or a mapping of the fields.",
    "interval": "periodic only: a duration such as '90m', '1h30m' or '2d', or a mapping of "
    "days, hours, minutes, seconds (over-full parts are carried); above 0, at most 365d23h59m59s.",
    "at": "scheduled only: ISO 8601 time; no offset means 'timezone'.",
    "timezone": "IANA time zone of the crontab and of an 'at' without offset.",
    "options": "Passed to Celery's apply_async.",
    "overlap": "skip: no new run while the previous one is still running.",
    "catchup": "After downtime: skip the missed runs, or run once for them.",
    "labels": "Free string labels.",
    "alerts": "When the owner wants to hear about the task: on_failure, failures_in_a_row, "
    "success_within, max_duration, missed. Replaces the defaults document's alerts as a whole.",
    "spread": "periodic only: move each slot by a fixed offset in [0, spread) taken from the "
    "task's name (e.g. 10m); never past the next slot.",
    "history": "How long its executions are kept: {keep_days: 1-36500, keep_last: 0-1000000}; "
    "the latest success, latest failure and unfinished executions always stay. Replaces the "
    "defaults document's history as a whole.",
    "active": "periodic only: {from, until}, a date or date and time in 'timezone'; no slot "
    "outside (either end may be left out).",
    "skip_on": "periodic only: names of kind: calendar documents; no slot on their dates.",
    "only_on": "periodic only: names of kind: calendar documents; slots only on their dates.",
    "previous_names": "Names the task had before: apply renames that task's row to this name, "
    "keeping its history and schedule, instead of deleting it and creating this one.",
    "last_run": "periodic only: when the scheduler it was imported from last ran it (ISO 8601; "
    "no offset means 'timezone'); the apply that creates the task counts its schedule from it.",
}

DEFAULTS_SCHEMA_ID = "urn:celery-reconciler:schemas:defaults"
DEFAULTS_DESCRIPTIONS: dict[str, str] = {
    "kind": "Always 'defaults': this document holds the defaults of every task in the tree.",
    "alerts": "The alerts of every task that has no 'alerts' of its own.",
    "notify": "Where each owner's alerts go: {OWNER: {webhook_url_env: NAME, format: json|slack}}"
    "; the URL is read from the environment variable NAME.",
    "spread": "The spread of every periodic task that has no 'spread' of its own (0s: none).",
    "history": "The history retention of every task that has no 'history' of its own "
    "({keep_days, keep_last}; default 90 days).",
}
CALENDAR_SCHEMA_ID = "urn:celery-reconciler:schemas:calendar"
CALENDAR_DESCRIPTIONS: dict[str, str] = {
    "kind": "Always 'calendar': this document is a calendar, not a task.",
    "name": "What tasks name in skip_on / only_on: lowercase letters, digits, '.', '_', '-'; "
    "unique across the tree.",
    "description": "Free text.",
    "dates": "Its days: a date (2026-12-25), a range {from: 2026-12-24, until: 2026-12-31} "
    "(both days included) or a day of every year {every_year: 12-25}.",
}
ALERT_DESCRIPTIONS: dict[str, str] = {
    "on_failure": "Alert on every failed execution (after Celery's own retries).",
    "failures_in_a_row": "Alert once this many executions in a row have failed.",
    "success_within": "Dead-man's switch: alert when no execution succeeded for this long "
    "(e.g. 26h).",
    "max_duration": "Alert when an execution runs longer than this (e.g. 30m).",
    "missed": "Alert when a slot is missed or skipped (catch-up or overlap).",
}

_CRON_RANGE_TEXT = {
    "minute": "0-59",
    "hour": "0-23",
    "day_of_month": "1-31",
    "month_of_year": "1-12 or JAN-DEC (any case)",
    "day_of_week": "0-7, 0 and 7 = Sunday, or SUN-SAT (any case)",
}
# Five fields, or a macro in any case (JSON Schema patterns take no flags).
_MACRO_PATTERN = "|".join(
    "@" + "".join(f"[{ch.upper()}{ch}]" for ch in name[1:]) for name in MACROS
)
CRONTAB_PATTERN = rf"^\s*(\S+(\s+\S+){{4}}|{_MACRO_PATTERN})\s*$"


def _schedule_rules() -> list[dict[str, Any]]:
    """Which schedule field each type takes (the model checks the same in Python)."""

    def when(kind: str, then: dict[str, Any]) -> dict[str, Any]:
        return {
            "if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
            "then": then,
        }

    def absent(*fields: str) -> dict[str, Any]:
        return {"not": {"anyOf": [{"required": [f]} for f in fields]}}

    return [
        when("async", absent("crontab", "interval", "at")),
        when("scheduled", {"required": ["at"], **absent("crontab", "interval")}),
        when(
            "periodic",
            {
                "oneOf": [{"required": ["crontab"]}, {"required": ["interval"]}],
                **absent("at"),
            },
        ),
    ]


def task_schema() -> dict[str, Any]:
    """The schema as a dict, adjusted for what YAML users may write."""
    generated = copy.deepcopy(TaskSpec.model_json_schema())
    properties: dict[str, Any] = generated["properties"]
    for name, text in DESCRIPTIONS.items():
        properties[name]["description"] = text
    # A crontab may be written as one string or as a mapping of its fields.
    properties["crontab"] = {
        "description": DESCRIPTIONS["crontab"],
        "anyOf": [
            {"type": "string", "pattern": CRONTAB_PATTERN},
            {"$ref": "#/$defs/Crontab"},
            {"type": "null"},
        ],
        "default": None,
    }
    # An interval may be written as a duration or as a mapping of its parts.
    properties["interval"] = {
        "description": DESCRIPTIONS["interval"],
        "anyOf": [
            {"type": "string", "pattern": DURATION_PATTERN},
            {"$ref": "#/$defs/Interval"},
            {"type": "null"},
        ],
        "default": None,
    }
    cron_properties: dict[str, Any] = generated["$defs"]["Crontab"]["properties"]
    for field, _, _ in CRON_FIELDS:
        cron_properties[field]["type"] = ["string", "integer"]
        cron_properties[field]["description"] = (
            f"{_CRON_RANGE_TEXT[field]}; '*', lists, ranges and steps as in cron"
        )
    for name in ("at", "last_run"):
        properties[name] = {
            "description": DESCRIPTIONS[name],
            # A pattern, not "format": date-time, which would demand an offset that the
            # format lets users leave out (the task's timezone applies then).
            "anyOf": [{"type": "string", "pattern": AT_PATTERN}, {"type": "null"}],
            "default": None,
        }
    properties["name"]["not"] = {"enum": ["registered", "executions"]}
    _describe_alerts(generated["$defs"])
    schema = _document(
        generated,
        SCHEMA_ID,
        "celery-reconciler task",
        "One task of a tasks.d/ file (each YAML document is one task).",
    )
    schema["allOf"] = _schedule_rules()
    return schema


def render() -> str:
    """The schema as the text of ``schemas/task.schema.json``."""
    return json.dumps(task_schema(), indent=2, ensure_ascii=False) + "\n"


def _document(
    generated: dict[str, Any], schema_id: str, title: str, description: str
) -> dict[str, Any]:
    """A published schema: its header first, then pydantic's schema but its title and
    description."""
    schema: dict[str, Any] = {
        "$schema": DRAFT,
        "$id": schema_id,
        "title": title,
        "description": description,
    }
    for key, value in generated.items():
        if key not in ("title", "description"):
            schema[key] = value
    return schema


def _describe_alerts(definitions: dict[str, Any]) -> None:
    properties: dict[str, Any] = definitions["Alerts"]["properties"]
    for name, text in ALERT_DESCRIPTIONS.items():
        properties[name]["description"] = text


def _described(model: type[BaseModel], descriptions: dict[str, str]) -> dict[str, Any]:
    """``model``'s generated schema with our description of each of its fields."""
    generated = copy.deepcopy(model.model_json_schema())
    properties: dict[str, Any] = generated["properties"]
    for name, text in descriptions.items():
        properties[name]["description"] = text
    return generated


def defaults_schema() -> dict[str, Any]:
    """The schema of the ``kind: defaults`` document (a file of its own, so that the task
    schema stays strict about a task's fields)."""
    generated = _described(Defaults, DEFAULTS_DESCRIPTIONS)
    _describe_alerts(generated["$defs"])
    return _document(
        generated,
        DEFAULTS_SCHEMA_ID,
        "celery-reconciler defaults",
        "The kind: defaults document of a tasks.d/ tree (at most one).",
    )


def render_defaults() -> str:
    """The schema as the text of ``schemas/defaults.schema.json``."""
    return json.dumps(defaults_schema(), indent=2, ensure_ascii=False) + "\n"


def calendar_schema() -> dict[str, Any]:
    """The schema of a ``kind: calendar`` document."""
    return _document(
        _described(Calendar, CALENDAR_DESCRIPTIONS),
        CALENDAR_SCHEMA_ID,
        "celery-reconciler calendar",
        "A kind: calendar document of a tasks.d/ tree: days tasks skip or keep to.",
    )


def render_calendar() -> str:
    """The schema as the text of ``schemas/calendar.schema.json``."""
    return json.dumps(calendar_schema(), indent=2, ensure_ascii=False) + "\n"
