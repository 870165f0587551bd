"""Locating a field in a document's node tree: its line and column, and the field path
of a node, so every diagnostic names where it is written (docs/task-files.md)."""

from __future__ import annotations

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.files.yamlreader import MAX_DEPTH

Loc = tuple[str | int, ...]
"""A field path, as pydantic gives it: ``("crontab", "minute")``, ``("args", 0)``."""


def position(node: Node) -> tuple[int, int]:
    """The node's 1-based line and column."""
    return node.start_mark.line + 1, node.start_mark.column + 1


def field_name(loc: Loc) -> str:
    """The field path as written in messages: ``options.queue``, ``args[0]``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "document"


def walk(root: Node, loc: Loc) -> tuple[Node, Node | None, int]:
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


def path_of(root: Node, target: Node) -> Loc:
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
