"""The YAML text of an imported task file: the schema line, comments, then the document."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from reconciler.files import schema

SCHEMA_FILE = Path("schemas") / "task.schema.json"


def schema_file(file_dir: Path) -> Path:
    """The task schema that files written to ``file_dir`` (TASKS_DIR/imported) point at: the
    nearest ``schemas/task.schema.json`` of this format above them, else one beside the tasks
    directory, which ``write_schema`` creates (docs/import.md)."""
    start = file_dir.resolve()  # the folder may not exist yet; resolving still works
    for folder in (start, *start.parents):
        if _is_task_schema(folder / SCHEMA_FILE):
            return folder / SCHEMA_FILE
    return start.parent.parent / SCHEMA_FILE


def _is_task_schema(path: Path) -> bool:
    """A file of that name may be another project's: it counts when its ``$id`` is ours."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and document.get("$id") == schema.SCHEMA_ID


def schema_comment(file_dir: Path) -> str:
    """The yaml-language-server line, as a path relative to the file (``schema_file``)."""
    relative = os.path.relpath(schema_file(file_dir), file_dir.resolve())
    return f"# yaml-language-server: $schema={Path(relative).as_posix()}"


def write_schema(file_dir: Path) -> Path | None:
    """Write ``reconcile schema``'s output where the files in ``file_dir`` point, when that
    file is missing or differs (an older version's); the path written, else None. OSError
    when it cannot be written, or holds another project's file."""
    path = schema_file(file_dir)
    text = schema.render()
    if path.exists():
        if not _is_task_schema(path):
            raise FileExistsError(errno.EEXIST, "it holds another file, left as it is", str(path))
        if path.read_text(encoding="utf-8") == text:
            return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


_Base: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_Base):  # type: ignore[valid-type,misc]
    """PyYAML's safe dumper (libyaml's emitter where PyYAML has it: an import of 10,000
    tasks spent most of its time emitting), writing times as ``2025-12-02T15:00:00Z``."""


def _represent_time(dumper: yaml.SafeDumper, value: dt.datetime) -> yaml.ScalarNode:
    text = value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return dumper.represent_scalar("tag:yaml.org,2002:timestamp", text)


class _Document(dict[str, Any]):
    """The top level of a task file: always block style, one field per line."""


def _represent_document(dumper: yaml.SafeDumper, value: _Document) -> yaml.MappingNode:
    return dumper.represent_mapping("tag:yaml.org,2002:map", dict(value), flow_style=False)


_Dumper.add_representer(dt.datetime, _represent_time)
_Dumper.add_representer(_Document, _represent_document)


def render(document: Mapping[str, Any], comment_lines: Sequence[str]) -> str:
    """The file text: comment lines, then the document in the given field order."""
    body = yaml.dump(
        _Document(document),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=None,
        width=100,
    )
    return "".join(f"{line}\n" for line in comment_lines) + body
