"""Reading task files into validated specs: the only module that parses YAML.

Walks the tasks directory (docs/task-files.md), reads every file safely (size, encoding,
symlinks, no tags, no duplicate keys, no alias bombs) and validates each document
into a ``TaskSpec``. Every problem becomes a located ``Diagnostic``; nothing else is
raised. Used by ``reconcile validate``, apply, watch, ``next`` and the importer's checks.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.core.diagnostics import Diagnostic
from reconciler.core.redact import REDACTED, is_secret_key
from reconciler.core.schedule import never_fires
from reconciler.core.spec import (
    INT64_HINT,
    Crontab,
    FieldError,
    Interval,
    Options,
    TaskSpec,
    beyond_int64,
    describe_value,
)

MAX_FILE_BYTES = 1024 * 1024
"""Files above 1 MiB are refused unread: no task needs that much."""

MAX_ALIAS_EXPANSION = 10_000
"""How many values aliases may add to a document beyond its own (stops billion laughs)."""

MAX_DEPTH = 64
"""How deep values may nest; deeper documents are refused, not recursed into."""

MAX_PATH = 1000
"""The longest file path the database records as a task's source."""

YAML_SUFFIXES = (".yaml", ".yml")

Loc = tuple[str | int, ...]


# --- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedTask:
    """A valid task and where its document starts."""

    spec: TaskSpec
    path: str
    line: int


@dataclass
class LoadResult:
    """Everything one load found: the valid tasks and every diagnostic, in file order."""

    tasks: list[LoadedTask]
    diagnostics: list[Diagnostic]
    files: int
    missing_root: bool = False

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)


# --- the YAML reader -------------------------------------------------------------------

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_YAML_ORG = "tag:yaml.org,2002:"
_IMPLICIT = {
    _YAML_ORG + name: name
    for name in ("str", "int", "float", "bool", "null", "timestamp", "merge", "value", "yaml")
}
_IMPLICIT[_YAML_ORG + "seq"] = "seq"
_IMPLICIT[_YAML_ORG + "map"] = "map"


_SCALAR_RESOLVERS: dict[str, tuple[tuple[str, Any], ...]] = {
    first: tuple((_IMPLICIT[tag], pattern) for tag, pattern in resolvers)
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
    if first is not None
}


class _Reader(_BaseLoader):  # type: ignore[misc, valid-type]
    """PyYAML's (C) parser and composer, with implicit tags resolved to short names.

    The composer calls ``resolve`` only for untagged nodes, so after composing, any
    tag that is not a short name was written in the file, and is refused. Resolving
    is PyYAML's YAML 1.1 rules without its (unused) path resolvers, which is faster.
    """

    def resolve(self, kind: type[Node], value: Any, implicit: Any) -> str:
        if kind is ScalarNode:
            if implicit[0]:
                for tag, pattern in _SCALAR_RESOLVERS.get(value[:1], ()):
                    if pattern.match(value):
                        return tag
            return "str"
        return "seq" if kind is SequenceNode else "map"

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None


_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def _int(node: ScalarNode) -> int:
    value: str = node.value
    if value.isdigit():
        return int(value)
    result: int = _CONSTRUCTOR.construct_yaml_int(node)
    return result


def _float(node: ScalarNode) -> float:
    result: float = _CONSTRUCTOR.construct_yaml_float(node)
    return result


def _bool(node: ScalarNode) -> bool:
    result: bool = _CONSTRUCTOR.construct_yaml_bool(node)
    return result


def _timestamp(node: ScalarNode) -> dt.date:
    result: dt.date = _CONSTRUCTOR.construct_yaml_timestamp(node)
    return result


def _text(node: ScalarNode) -> str:
    value: str = node.value
    return value


def _null(node: ScalarNode) -> None:
    return None


_SCALARS: dict[str, Callable[[ScalarNode], Any]] = {
    "str": _text,
    "int": _int,
    "float": _float,
    "bool": _bool,
    "null": _null,
    "timestamp": _timestamp,
    "value": _text,
    "yaml": _text,
}


@dataclass
class _Problem:
    """A YAML-level problem at a node, reported once the document's field paths are known."""

    node: Node
    message: str
    hint: str | None = None


class _Builder:
    """Turns one composed document into plain Python values, collecting problems."""

    def __init__(self) -> None:
        self.problems: list[_Problem] = []

    def build(self, node: Node, depth: int = 0) -> Any:
        if node.__class__ is ScalarNode:
            construct = _SCALARS.get(node.tag)
            if construct is None:
                self._tag_problem(node)
                return None
            try:
                value = construct(node)
            except (ValueError, yaml.YAMLError):
                self.problems.append(
                    _Problem(
                        node, f"{_shorten(node.value)} is not a valid {node.tag}", hint="quote it"
                    )
                )
                return None
            if node.tag == "int" and (beyond := beyond_int64(value)) is not None:
                # Refused here, for every field: larger numbers cannot be stored or served.
                self.problems.append(_Problem(node, beyond, hint=INT64_HINT))
                return None
            return value
        if depth >= MAX_DEPTH:
            self.problems.append(_Problem(node, f"values nest more than {MAX_DEPTH} levels deep"))
            return None
        if node.__class__ is SequenceNode:
            if node.tag != "seq":
                self._tag_problem(node)
            return [self.build(child, depth + 1) for child in node.value]
        if node.__class__ is MappingNode:
            if node.tag != "map":
                self._tag_problem(node)
            return self._mapping(node, depth)
        self.problems.append(_Problem(node, "unsupported YAML node"))  # pragma: no cover
        return None  # pragma: no cover

    def _mapping(self, node: MappingNode, depth: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        first_seen: dict[Any, Node] = {}
        merged: list[Any] = []
        first_merge: Node | None = None
        for key_node, value_node in node.value:
            if key_node.__class__ is not ScalarNode:
                self.problems.append(
                    _Problem(key_node, "a key must be a plain value, not a list or mapping")
                )
                continue
            if key_node.tag == "merge":
                if first_merge is not None:
                    # Like any other key, '<<' is set once; a second one would silently
                    # lose to the first for every key both merge.
                    line = first_merge.start_mark.line + 1
                    self.problems.append(
                        _Problem(
                            key_node,
                            "duplicate key '<<'",
                            hint=f"it is already set at line {line}; merge several mappings "
                            f"with one key: '<<: [*a, *b]'",
                        )
                    )
                    continue
                first_merge = key_node
                merged.extend(self._merge_sources(value_node, depth))
                continue
            key = self.build(key_node, depth + 1)
            if key in first_seen:
                first = first_seen[key].start_mark
                self.problems.append(
                    _Problem(
                        key_node,
                        f"duplicate key {key!r}",
                        hint=f"it is already set at line {first.line + 1}; keep one",
                    )
                )
                continue
            first_seen[key] = key_node
            result[key] = self.build(value_node, depth + 1)
        # ``<<: *base`` merges: keys written in the mapping win, then earlier sources.
        for source in merged:
            for key, value in source.items():
                result.setdefault(key, value)
        return result

    def _merge_sources(self, node: Node, depth: int) -> list[dict[Any, Any]]:
        nodes = node.value if isinstance(node, SequenceNode) else [node]
        sources: list[dict[Any, Any]] = []
        for source in nodes:
            if not isinstance(source, MappingNode):
                self.problems.append(
                    _Problem(source, "'<<' merges a mapping (or a list of mappings) only")
                )
                continue
            value = self.build(source, depth + 1)
            if isinstance(value, dict):
                sources.append(value)
        return sources

    def _tag_problem(self, node: Node) -> None:
        tag: str = node.tag
        shown = "!!" + tag[len(_YAML_ORG) :] if tag.startswith(_YAML_ORG) else tag
        self.problems.append(
            _Problem(
                node,
                f"YAML tags are not allowed (found {shown})",
                hint="remove the tag; write plain values",
            )
        )


def _alias_growth(root: Node) -> int:
    """How many values the document's aliases add when expanded (linear in its nodes)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Node, depth: int) -> int:
        key = id(node)
        known = sizes.get(key)
        if known is not None:
            return known
        if key in active or depth > MAX_DEPTH:
            # A recursive alias (or absurd depth): count it as unbounded.
            return MAX_ALIAS_EXPANSION * 10
        active.add(key)
        total = 1
        if isinstance(node, SequenceNode):
            for child in node.value:
                total += size(child, depth + 1)
        elif isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                total += size(key_node, depth + 1) + size(value_node, depth + 1)
        active.discard(key)
        sizes[key] = total
        return total

    expanded = size(root, 0)
    return expanded - len(sizes)


# --- locating fields -------------------------------------------------------------------


def _shorten(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _position(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _field_name(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "document"


def _walk(root: Node, loc: Loc) -> tuple[Node, Node | None, int]:
    """Follow ``loc`` down the node tree as far as the YAML goes.

    Returns the value node reached, the key node naming it (None at the root or in a
    list) and how many parts of ``loc`` were matched.
    """
    node, key_node, matched = root, None, 0
    for part in loc:
        child: Node | None = None
        child_key: Node | None = None
        if isinstance(node, MappingNode):
            for k, v in node.value:
                if isinstance(k, ScalarNode) and k.value == str(part):
                    child, child_key = v, k
                    break
        elif (
            isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value)
        ):
            child = node.value[part]
        if child is None:
            break
        node, key_node, matched = child, child_key, matched + 1
    return node, key_node, matched


def _path_of(root: Node, target: Node) -> Loc:
    """The field path of ``target`` inside the document (for YAML-level problems)."""
    stack: list[tuple[Node, Loc, int]] = [(root, (), 0)]
    seen: set[int] = set()
    while stack:
        node, loc, depth = stack.pop()
        if node is target:
            return loc
        if id(node) in seen or depth > MAX_DEPTH:
            continue
        seen.add(id(node))
        if isinstance(node, SequenceNode):
            for index, child in enumerate(node.value):
                stack.append((child, (*loc, index), depth + 1))
        elif isinstance(node, MappingNode):
            for k, v in node.value:
                if k is target:
                    return (*loc, k.value) if isinstance(k, ScalarNode) else loc
                name = k.value if isinstance(k, ScalarNode) else "?"
                stack.append((v, (*loc, name), depth + 1))
    return ()


# --- pydantic errors to diagnostics -----------------------------------------------------

_MODELS: dict[Loc, type[BaseModel]] = {
    (): TaskSpec,
    ("crontab",): Crontab,
    ("interval",): Interval,
    ("options",): Options,
}

_PATTERN_MESSAGES = {
    "name": "must be lowercase letters, digits, '.', '_' or '-', starting and ending with "
    "a letter or digit, at most 128 characters",
    "task": "must be a Celery task name without spaces",
}

_MISSING_HINTS: dict[Loc, str] = {
    ("name",): "add e.g. name: daily-report",
    ("owner",): "add e.g. owner: billing (the team whose history it is)",
    ("type",): "add type: async, scheduled or periodic",
    ("task",): "add the Celery task name, e.g. task: app.worker.test_celery",
}

_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "datetime_type": "an ISO 8601 date and time",
    "datetime_parsing": "an ISO 8601 date and time",
    "datetime_from_date_parsing": "an ISO 8601 date and time",
    "date_from_datetime_parsing": "an ISO 8601 date and time",
}


def _explain(error: Any, loc: Loc) -> tuple[str, str | None, Loc]:
    """Message, hint and (possibly deeper) location for one pydantic error."""
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    hidden = any(is_secret_key(part) for part in loc)  # never quote a secret-looking value
    last = loc[-1] if loc else ""
    if kind == "missing":
        return "required field missing", _MISSING_HINTS.get(loc), loc
    if kind == "extra_forbidden":
        model = _MODELS.get(loc[:-1])
        known = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(str(last), known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else None
        if hint is None and known:
            hint = "known fields: " + ", ".join(known)
        return "unknown field", hint, loc
    if kind in _EXPECTED:
        hint = None
        if kind.startswith("datetime") or kind.startswith("date_"):
            hint = "write it like 2025-12-02T15:00:00Z (no offset means the task's timezone)"
        elif kind == "string_type" and isinstance(value, (bool, int, float, dt.date)):
            hint = "quote it to make it a string"
        elif kind == "int_type" and isinstance(value, str) and any(c.isdigit() for c in value):
            hint = "write it unquoted, with ASCII digits 0-9"
        return f"expected {_EXPECTED[kind]}, got {describe_value(value, hidden=hidden)}", hint, loc
    if kind == "literal_error":
        return (
            f"expected {ctx.get('expected')}, got {describe_value(value, hidden=hidden)}",
            None,
            loc,
        )
    if kind == "string_pattern_mismatch":
        message = _PATTERN_MESSAGES.get(str(last), f"must match {ctx.get('pattern')}")
        return f"{message}, got {_shorten(REDACTED if hidden else value)}", None, loc
    if kind == "string_too_short":
        return "must not be empty", None, loc
    if kind == "string_too_long":
        limit = ctx.get("max_length")
        length = len(value) if isinstance(value, str) else "too many"
        return f"is {length} characters long, over the limit of {limit}", "shorten it", loc
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "less_than_equal": ("at most", "le"),
        "greater_than": ("above", "gt"),
        "less_than": ("below", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"must be {words} {ctx.get(key)}, got {REDACTED if hidden else value}", None, loc
    cause = ctx.get("error")
    if isinstance(cause, FieldError):
        return cause.message, cause.hint, loc + cause.loc
    if cause is not None:
        return str(cause), None, loc
    return str(error.get("msg", "invalid value")), None, loc


def _overlaps(a: Loc, b: Loc) -> bool:
    shorter = min(len(a), len(b))
    return [str(part) for part in a[:shorter]] == [str(part) for part in b[:shorter]]


def _diagnostics_for(
    error: ValidationError, root: MappingNode, path: str
) -> list[tuple[Diagnostic, Loc]]:
    """Each pydantic error as a located diagnostic, with the field path it is about."""
    found: list[tuple[Diagnostic, Loc]] = []
    for item in error.errors():
        about_key = "[key]" in item["loc"]
        loc: Loc = tuple(str(p) if about_key else p for p in item["loc"] if p != "[key]")
        message, hint, loc = _explain(item, loc)
        node, key_node, matched = _walk(root, loc)
        if about_key:
            message = f"keys must be strings, got {describe_value(item.get('input'))}"
            hint = "quote the key"
        if (item["type"] == "extra_forbidden" or about_key) and key_node is not None:
            node = key_node
        if matched < len(loc) and isinstance(node, ScalarNode) and item["type"] != "missing":
            # The model goes deeper than the YAML (a crontab string): name the part.
            rest = _field_name(loc[matched:])
            message = f"{_shorten(node.value)} {rest} {message}"
            loc = loc[:matched]
        line, column = _position(node)
        found.append((Diagnostic(path, line, column, _field_name(loc), message, hint), loc))
    return found


# --- one file ----------------------------------------------------------------------------


@dataclass
class _FileOutcome:
    tasks: list[tuple[LoadedTask, tuple[int, int]]] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def _read_text(path: str, *, listed: bool = False) -> str | Diagnostic | None:
    """The file's text, or why it cannot be read; None when a ``listed`` file (found by
    listing its directory) was deleted before it was read: it is simply not there."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_FILE_BYTES:
                return _file_error(path, f"is {size:,} bytes, over the 1 MiB limit", "split it")
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        return None if listed else _file_error(path, f"cannot be read: {exc.strerror or exc}")
    except OSError as exc:
        return _file_error(path, f"cannot be read: {exc.strerror or exc}")
    if len(data) > MAX_FILE_BYTES:
        return _file_error(path, "is over the 1 MiB limit", "split it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return Diagnostic(
            path,
            line,
            column,
            "file",
            f"is not UTF-8 text (byte 0x{data[exc.start]:02x})",
            "save the file as UTF-8",
        )


def _file_error(path: str, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic(path, 1, 1, "file", message, hint)


def _compose(text: str, path: str) -> tuple[list[Node], Diagnostic | None]:
    """Every document's node tree, and the syntax error that stopped reading, if any."""
    documents: list[Node] = []
    reader = _Reader(text)
    try:
        while reader.check_node():
            documents.append(reader.get_node())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = ", ".join(p for p in (exc.problem, exc.context) if p) or "invalid YAML"
        hint = "quote values that start with '*' or '&'" if "alias" in problem else None
        return documents, Diagnostic(path, line, column, "yaml", problem, hint)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        message = f"contains the character #x{exc.character:04x}, which YAML does not allow"
        return documents, Diagnostic(path, line, column, "yaml", message, "remove it")
    except (yaml.YAMLError, ValueError, RecursionError, MemoryError) as exc:
        message = " ".join(str(exc).split())
        return documents, Diagnostic(path, 1, 1, "yaml", f"cannot be parsed: {message}")
    finally:
        reader.dispose()
    return documents, None


def _is_empty(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "null"


def _load_document(
    root: Node, path: str, now: dt.datetime, outcome: _FileOutcome, has_anchors: bool
) -> None:
    line, column = _position(root)
    if not isinstance(root, MappingNode):
        kind = "a list" if isinstance(root, SequenceNode) else "a single value"
        outcome.diagnostics.append(
            Diagnostic(
                path, line, column, "document", f"a task must be a mapping of fields, got {kind}"
            )
        )
        return
    if has_anchors and _alias_growth(root) > MAX_ALIAS_EXPANSION:
        outcome.diagnostics.append(
            Diagnostic(
                path,
                line,
                column,
                "document",
                f"aliases expand to more than {MAX_ALIAS_EXPANSION:,} values",
                "write the values out instead of repeating anchors",
            )
        )
        return
    builder = _Builder()
    data = builder.build(root)
    if not all(type(key) is str for key in data):
        for key_node, _ in root.value:
            if isinstance(key_node, ScalarNode) and key_node.tag not in ("str", "merge"):
                key = _SCALARS.get(key_node.tag, _text)(key_node)
                builder.problems.append(
                    _Problem(key_node, f"field names are strings, got {describe_value(key)}")
                )
    problem_locs: list[Loc] = []
    for problem in builder.problems:
        loc = _path_of(root, problem.node)
        problem_locs.append(loc)
        p_line, p_column = _position(problem.node)
        outcome.diagnostics.append(
            Diagnostic(path, p_line, p_column, _field_name(loc), problem.message, problem.hint)
        )
    try:
        spec = TaskSpec.model_validate(data)
    except ValidationError as exc:
        for diagnostic, loc in _diagnostics_for(exc, root, path):
            # A value the YAML reader already refused is not reported a second time.
            if not any(_overlaps(loc, refused) for refused in problem_locs):
                outcome.diagnostics.append(diagnostic)
        return
    if problem_locs:
        return
    if spec.type == "scheduled" and spec.at is not None and spec.at < now:
        node, _, _ = _walk(root, ("at",))
        at_line, at_column = _position(node)
        outcome.diagnostics.append(
            Diagnostic(
                path,
                at_line,
                at_column,
                "at",
                f"{spec.at.isoformat()} is in the past",
                "set a future time, or remove the task once it has run",
                severity="warning",
            )
        )
    if spec.crontab is not None and never_fires(spec.crontab):
        node, _, _ = _walk(root, ("crontab",))
        cron_line, cron_column = _position(node)
        outcome.diagnostics.append(
            Diagnostic(
                path,
                cron_line,
                cron_column,
                "crontab",
                f"'{spec.crontab.expression}' never fires: no date has that day_of_month "
                f"in that month_of_year",
                "check the day and month (February has at most 29 days; April, June, "
                "September and November 30)",
                severity="warning",
            )
        )
    name_node, _, _ = _walk(root, ("name",))
    outcome.tasks.append((LoadedTask(spec, path, line), _position(name_node)))


def _load_file(path: str, now: dt.datetime, *, listed: bool = False) -> _FileOutcome | None:
    """What one file holds; None when a listed file vanished before it was read."""
    outcome = _FileOutcome()
    if len(path) > MAX_PATH:
        outcome.diagnostics.append(
            _file_error(
                path,
                f"path is {len(path)} characters long, over the limit of {MAX_PATH}",
                "use shorter directory or file names",
            )
        )
        return outcome
    text = _read_text(path, listed=listed)
    if text is None:
        return None
    if isinstance(text, Diagnostic):
        outcome.diagnostics.append(text)
        return outcome
    documents, syntax_error = _compose(text, path)
    has_anchors = "&" in text
    for root in documents:
        if not _is_empty(root):
            _load_document(root, path, now, outcome, has_anchors)
    if syntax_error is not None:
        outcome.diagnostics.append(syntax_error)
    return outcome


# --- finding files -----------------------------------------------------------------------


def _inside(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def _task_files(root: str, diagnostics: list[Diagnostic]) -> Iterator[str]:
    """Task files under ``root`` in a stable order; dot-names skipped, symlinks checked."""
    real_root = os.path.realpath(root)
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) and directory != root:
                continue  # deleted since its parent was listed: not there this time
            diagnostics.append(
                Diagnostic(directory, 1, 1, "file", f"cannot be listed: {exc.strerror or exc}")
            )
            continue
        subdirectories: list[str] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            is_task_file = entry.name.endswith(YAML_SUFFIXES)
            if entry.is_symlink():
                real = os.path.realpath(entry.path)
                if not _inside(real, real_root):
                    if is_task_file or os.path.isdir(real):
                        diagnostics.append(
                            _file_error(
                                entry.path,
                                f"is a symlink that leaves the tasks directory (to {real})",
                                "copy the file into the tasks directory",
                            )
                        )
                    continue
                if os.path.isdir(real):
                    continue  # its target is inside the tree and is read there
                if is_task_file and not os.path.exists(real):
                    diagnostics.append(_file_error(entry.path, "is a broken symlink"))
                    continue
            if entry.is_dir():
                subdirectories.append(entry.path)
            elif is_task_file and entry.is_file():
                yield os.path.normpath(entry.path)
            elif is_task_file and os.path.lexists(entry.path):
                # A FIFO or device would block or stream forever: never opened.
                diagnostics.append(_file_error(entry.path, "is not a regular file"))
        pending.extend(reversed(subdirectories))


# --- entry points ------------------------------------------------------------------------


Progress = Callable[[int, int], None]
"""Called after each file with (files read, files in total), e.g. for a progress bar."""


class _Collector:
    """Gathers the files to read first (so progress has a total), then reads them."""

    def __init__(self, now: dt.datetime | None, progress: Progress | None) -> None:
        now = now or dt.datetime.now(dt.UTC)
        self.now = now if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)
        self.progress = progress
        self.tasks: list[LoadedTask] = []
        self.diagnostics: list[Diagnostic] = []
        self.missing_root = False
        self._files: list[str] = []
        self._listed: set[str] = set()
        self._vanished = 0
        self._names: dict[str, tuple[str, int, int]] = {}

    def add_file(self, path: str) -> None:
        if os.path.isfile(path):
            self._files.append(path)
        else:
            self.diagnostics.append(_file_error(path, "is not a regular file"))

    def add_directory(self, root: str) -> None:
        if not os.path.isdir(root):
            self.missing_root = True
            what = "is not a directory" if os.path.exists(root) else "does not exist"
            self.diagnostics.append(
                _file_error(root, f"tasks directory {what}", "create it or pass --tasks-dir")
            )
            return
        found = list(_task_files(root, self.diagnostics))
        self._listed.update(found)
        self._files.extend(found)

    def _read(self, path: str) -> None:
        outcome = _load_file(path, self.now, listed=path in self._listed)
        if outcome is None:
            self._vanished += 1
            return
        self.diagnostics.extend(outcome.diagnostics)
        for task, (line, column) in outcome.tasks:
            first = self._names.get(task.spec.name)
            if first is not None:
                where = f"{first[0]}:{first[1]}:{first[2]}"
                self.diagnostics.append(
                    Diagnostic(
                        path,
                        line,
                        column,
                        "name",
                        f"{task.spec.name!r} is already used at {where}",
                        "task names are unique across all files; rename one",
                    )
                )
                continue
            self._names[task.spec.name] = (path, line, column)
            self.tasks.append(task)

    def result(self) -> LoadResult:
        total = len(self._files)
        for done, path in enumerate(self._files, start=1):
            self._read(path)
            if self.progress is not None:
                self.progress(done, total)
        diagnostics = sorted(self.diagnostics, key=Diagnostic.sort_key)
        return LoadResult(self.tasks, diagnostics, total - self._vanished, self.missing_root)


def load_directory(
    tasks_dir: Path | str, now: dt.datetime | None = None, progress: Progress | None = None
) -> LoadResult:
    """Load every task file under ``tasks_dir``; ``now`` decides which ``at`` is past."""
    collector = _Collector(now, progress)
    collector.add_directory(str(tasks_dir))
    return collector.result()


def load_paths(
    paths: Sequence[Path | str], now: dt.datetime | None = None, progress: Progress | None = None
) -> LoadResult:
    """Load the given files and directories (directories recursively) as one set."""
    collector = _Collector(now, progress)
    for path in paths:
        text = str(path)
        if os.path.isdir(text) or not os.path.exists(text):
            collector.add_directory(text)
        else:
            collector.add_file(text)
    return collector.result()


def field_position(task: LoadedTask, loc: Loc) -> tuple[int, int]:
    """Where ``loc`` (e.g. ``("task",)``) of a loaded task is written: re-reads its file."""
    text = _read_text(task.path)
    if not isinstance(text, str):
        return task.line, 1
    documents, _ = _compose(text, task.path)
    for root in documents:
        if isinstance(root, MappingNode) and _position(root)[0] == task.line:
            node, _, _ = _walk(root, loc)
            return _position(node)
    return task.line, 1


def check_registered(result: LoadResult, registered: Collection[str]) -> list[Diagnostic]:
    """Errors for tasks whose ``task:`` the Celery app does not register."""
    known = sorted(registered)
    found: list[Diagnostic] = []
    for task in result.tasks:
        if task.spec.task in registered:
            continue
        close = difflib.get_close_matches(task.spec.task, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else "run 'reconcile tasks' to list them"
        line, column = field_position(task, ("task",))
        found.append(
            Diagnostic(
                task.path,
                line,
                column,
                "task",
                f"{task.spec.task!r} is not registered by the Celery app",
                hint,
            )
        )
    return found
