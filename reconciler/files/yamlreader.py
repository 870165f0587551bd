"""The hardened YAML reader: PyYAML's composer with node positions kept, and plain values
built from the nodes with tags, duplicate keys, deep nesting and alias bombs refused.

The only place YAML is parsed (docs/task-files.md); problems are collected at their node.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.core.diagnostics import Diagnostic
from reconciler.core.values import INT64_HINT, beyond_int64

MAX_ALIAS_EXPANSION = 10_000
"""How many values aliases may add to a document beyond its own (stops billion laughs)."""

MAX_DEPTH = 64
"""How deep values may nest; deeper documents are refused, not recursed into."""

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_YAML_ORG = "tag:yaml.org,2002:"


class _Resolved(str):
    """A tag the reader resolved for an untagged node. A tag written in the file is a
    plain ``str``, even one that reads the same (``!<str>``, ``!<%73tr>``), so a node's
    tag is trusted only by its class."""

    __slots__ = ()


_IMPLICIT = {
    _YAML_ORG + name: _Resolved(name)
    for name in (
        "str",
        "int",
        "float",
        "bool",
        "null",
        "timestamp",
        "merge",
        "value",
        "yaml",
        "seq",
        "map",
    )
}
_STR, _INT, _NULL, _MERGE = (_IMPLICIT[_YAML_ORG + n] for n in ("str", "int", "null", "merge"))
_SEQ, _MAP = _IMPLICIT[_YAML_ORG + "seq"], _IMPLICIT[_YAML_ORG + "map"]


_SCALAR_RESOLVERS: dict[str, tuple[tuple[_Resolved, Any], ...]] = {
    first: tuple((_IMPLICIT[tag], pattern) for tag, pattern in resolvers)
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
    if first is not None
}


def _plain_tag(value: str) -> _Resolved:
    for tag, pattern in _SCALAR_RESOLVERS.get(value[:1], ()):
        if pattern.match(value):
            return tag
    return _STR


_SHORT_TEXT = 32
_short_plain_tag = functools.lru_cache(maxsize=4_096)(_plain_tag)
"""The tag of a short plain text, remembered: field names and common values recur."""


class _Reader(_BaseLoader):  # type: ignore[misc, valid-type]
    """PyYAML's (C) parser and composer, with implicit tags resolved to short names.

    The composer calls ``resolve`` only for untagged nodes, so after composing, any
    tag that is not a short name was written in the file, and is refused. Resolving
    is PyYAML's YAML 1.1 rules without its (unused) path resolvers, which is faster.
    """

    def resolve(self, kind: type[Node], value: Any, implicit: Any) -> _Resolved:
        if kind is ScalarNode:
            if implicit[0]:
                return _short_plain_tag(value) if len(value) <= _SHORT_TEXT else _plain_tag(value)
            return _STR
        return _SEQ if kind is SequenceNode else _MAP

    # Called by the composer around every node, for path resolvers this reader does not
    # have: C functions that do nothing useful cost less than Python ones that do nothing.
    descend_resolver = staticmethod(operator.is_)
    ascend_resolver = staticmethod(tuple)


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


def scalar_value(node: ScalarNode) -> Any:
    """The plain value of a scalar node; unknown tags read as their text."""
    return _SCALARS.get(node.tag, _text)(node)


def shorten(value: Any, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters for a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


@dataclass
class Problem:
    """A YAML-level problem at a node, reported once the document's field paths are known."""

    node: Node
    message: str
    hint: str | None = None


class Builder:
    """Turns one composed document into plain Python values, collecting problems."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def build(self, node: Node, depth: int = 0) -> Any:
        if node.__class__ is ScalarNode:
            construct = _SCALARS.get(node.tag)
            if construct is None or node.tag.__class__ is not _Resolved:
                self._tag_problem(node)
                return None
            try:
                value = construct(node)
            except (ValueError, yaml.YAMLError):
                self.problems.append(
                    Problem(
                        node, f"{shorten(node.value)} is not a valid {node.tag}", hint="quote it"
                    )
                )
                return None
            if node.tag is _INT and (beyond := beyond_int64(value)) is not None:
                # Refused here, for every field: larger numbers cannot be stored or served.
                self.problems.append(Problem(node, beyond, hint=INT64_HINT))
                return None
            return value
        if depth >= MAX_DEPTH:
            self.problems.append(Problem(node, f"values nest more than {MAX_DEPTH} levels deep"))
            return None
        if node.__class__ is SequenceNode:
            if node.tag is not _SEQ:
                self._tag_problem(node)
            return [self.build(child, depth + 1) for child in node.value]
        if node.__class__ is MappingNode:
            if node.tag is not _MAP:
                self._tag_problem(node)
            return self._mapping(node, depth)
        self.problems.append(Problem(node, "unsupported YAML node"))  # pragma: no cover
        return None  # pragma: no cover

    def _mapping(self, node: MappingNode, depth: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        first_seen: dict[Any, Node] = {}
        merged: list[Any] = []
        first_merge: Node | None = None
        for key_node, value_node in node.value:
            if key_node.__class__ is not ScalarNode:
                self.problems.append(
                    Problem(key_node, "a key must be a plain value, not a list or mapping")
                )
                continue
            if key_node.tag is _MERGE:
                if first_merge is not None:
                    # Like any other key, '<<' is set once; a second one would silently
                    # lose to the first for every key both merge.
                    line = first_merge.start_mark.line + 1
                    self.problems.append(
                        Problem(
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
            # Plain text, most keys and values, is taken as it is without a call per node.
            key = key_node.value if key_node.tag is _STR else self.build(key_node, depth + 1)
            if key in first_seen:
                first = first_seen[key].start_mark
                self.problems.append(
                    Problem(
                        key_node,
                        f"duplicate key {key!r}",
                        hint=f"it is already set at line {first.line + 1}; keep one",
                    )
                )
                continue
            first_seen[key] = key_node
            # Only scalars resolve to text.
            result[key] = (
                value_node.value if value_node.tag is _STR else self.build(value_node, depth + 1)
            )
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
                    Problem(source, "'<<' merges a mapping (or a list of mappings) only")
                )
                continue
            value = self.build(source, depth + 1)
            if isinstance(value, dict):
                sources.append(value)
        return sources

    def _tag_problem(self, node: Node) -> None:
        tag: str = node.tag
        if tag.startswith(_YAML_ORG):
            shown = "!!" + tag[len(_YAML_ORG) :]
        else:
            shown = tag if tag.startswith("!") else f"!<{tag}>"
        self.problems.append(
            Problem(
                node,
                f"YAML tags are not allowed (found {shown})",
                hint="remove the tag; write plain values",
            )
        )


def alias_growth(root: Node) -> int:
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


def compose(text: str, path: str) -> tuple[list[Node], Diagnostic | None]:
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


def is_empty(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag is _NULL
