"""The YAML text of an imported task file: the schema line, comments, then the document."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

SCHEMA_FILE = Path("schemas") / "task.schema.json"


def schema_comment(file_dir: Path) -> str:
    """The yaml-language-server line, pointing at the checkout's schema when one is found."""
    start = file_dir.resolve()  # the folder may not exist yet; resolving still works
    for folder in (start, *start.parents):
        schema = folder / SCHEMA_FILE
        if schema.is_file():
            relative = Path(os.path.relpath(schema, start)).as_posix()
            return f"# yaml-language-server: $schema={relative}"
    return f"# yaml-language-server: $schema=../../{SCHEMA_FILE.as_posix()}"


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
