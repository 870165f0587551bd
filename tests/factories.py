"""Task specs and task files for tests: the one place that knows what a valid task needs.

``fields`` go over a valid periodic task of owner ``billing`` (a crontab at 01:00 unless
the fields give a schedule); a field set to ``None`` is left out of a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reconciler.core.spec import TaskSpec

BASE: dict[str, Any] = {"owner": "billing", "type": "periodic", "task": "app.worker.test_celery"}
DEFAULT_CRONTAB = "0 1 * * *"


def document(name: str, **fields: Any) -> dict[str, Any]:
    """A task document as a task file holds it."""
    values: dict[str, Any] = {"name": name, **BASE}
    if fields.get("type", "periodic") == "periodic" and not {"crontab", "interval"} & set(fields):
        values["crontab"] = DEFAULT_CRONTAB
    values.update(fields)
    return values


def spec(name: str = "t", **fields: Any) -> TaskSpec:
    """A validated ``TaskSpec``."""
    return TaskSpec.model_validate(document(name, **fields))


def task_yaml(name: str, **fields: Any) -> str:
    """The text of a task file with one document (JSON scalars are YAML too)."""
    return "".join(
        f"{key}: {json.dumps(value)}\n"
        for key, value in document(name, **fields).items()
        if value is not None
    )


def write_tasks(directory: Path, names: list[str], **fields: Any) -> None:
    """One task file per name in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / f"{name}.yaml").write_text(task_yaml(name, **fields))
