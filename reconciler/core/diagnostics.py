"""Diagnostics: one located finding about a task file (an error or a warning).

The loader produces them; ``reconcile validate``, apply, watch and the plan print
them. ``str(d)`` is the one-line form ``path:line:column: field: message``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Diagnostic:
    """A finding at ``path:line:column`` (1-based) about ``field`` (a dotted path)."""

    path: str
    line: int
    column: int
    field: str
    message: str
    hint: str | None = None
    severity: Severity = "error"

    def __str__(self) -> str:
        text = f"{self.path}:{self.line}:{self.column}: {self.field}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.path, self.line, self.column, self.field)

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON form used by ``validate --format json``."""
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "message": self.message,
            "hint": self.hint,
        }
