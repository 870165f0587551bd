"""How a plan reads: text like ``terraform plan``, stable JSON, and a pull-request comment.

``reconcile apply`` / ``--dry-run`` and ``reconcile watch`` print through these; the
plan itself (``reconciler.core.plan``) knows nothing of presentation. Every format shows
values through ``reconciler.core.redact`` (a plan is often posted where many can read it).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import click

from reconciler.core.plan import Change, NotifyChange, Plan
from reconciler.core.redact import redact_definition, redact_field

Style = Callable[[str, str], str]
# Below this many changes apply is quick enough that a progress bar only flickers.
PROGRESS_THRESHOLD = 500


def use_colour(stream: IO[str] | None = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def value_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def where(change: Change) -> str:
    return f"{change.path}:{change.line}" if change.path else ""


def render_text(plan: Plan, colour: bool = False) -> str:
    def style(text: str, fg: str) -> str:
        return click.style(text, fg=fg) if colour else text

    lines = [plan.summary]
    if plan:
        lines.append("")
    for change in plan.creates:
        lines.append(style(f"+ {change.name}", "green") + f" ({where(change)})")
    for change in (*plan.updates, *plan.renames):
        lines.append(style(f"~ {_title(change)}", "yellow") + f" ({where(change)})")
        if change.revived:
            lines.append("    (a deleted task: it comes back under this name with its history)")
        for item in change.fields:
            old = value_text(redact_field(item.field, item.old))
            new = value_text(redact_field(item.field, item.new))
            source = f" (from {item.source})" if item.source else ""
            lines.append(f"    {item.field}: {old} -> {new}{source}")
    for change in plan.deletes:
        lines.append(style(f"- {change.name}", "red"))
    for notify in plan.notify:
        lines.append(style(f"~ notify {notify.owner}", "yellow") + f": {_target(notify)}")
    if plan.hints:
        lines.append("")
    lines += [f"hint: {hint.text}" for hint in plan.hints]
    return "\n".join(lines)


def _title(change: Change) -> str:
    """``name``, or ``old -> new`` for a rename."""
    return f"{change.previous} -> {change.name}" if change.previous else change.name


def _target(change: NotifyChange) -> str:
    """A notify target's change in words; only the variable's name is ever shown."""
    old, new = value_text(change.old), value_text(change.new)
    return f"{old} -> {new}"


def render_json(plan: Plan) -> dict[str, Any]:
    data = plan.to_dict()
    for created in data["create"]:
        created["spec"] = redact_definition(created["spec"])
    for updated in (*data["update"], *data.get("rename", ())):
        updated["changes"] = {
            field: {side: redact_field(field, value) for side, value in change.items()}
            for field, change in updated["changes"].items()
        }
    return data


def render_markdown(plan: Plan) -> str:
    """A pull-request comment: the summary, a table of the changes, the diff folded away."""
    lines = ["### reconcile plan", "", f"**{plan.summary}**", ""]
    if not plan:
        lines.append("No changes: the database already matches the task files.")
        return "\n".join(lines)
    lines += ["| | task | source | changed fields |", "|---|---|---|---|"]
    for change in plan.creates:
        lines.append(f"| + | `{change.name}` | {_cell(where(change))} | (new) |")
    for change in (*plan.updates, *plan.renames):
        fields = ", ".join(f"`{item.field}`" for item in change.fields) or "(renamed)"
        lines.append(f"| ~ | `{_title(change)}` | {_cell(where(change))} | {fields} |")
    for change in plan.deletes:
        lines.append(f"| - | `{change.name}` | | (deleted) |")
    for notify in plan.notify:
        lines.append(f"| ~ | notify `{notify.owner}` | | {_cell(_target(notify))} |")
    lines += ["", "<details><summary>Diff</summary>", "", "```diff"]
    for change in plan.creates:
        lines.append(f"+ {change.name} ({where(change)})")
    for change in (*plan.updates, *plan.renames):
        lines.append(f"! {_title(change)} ({where(change)})")
        for item in change.fields:
            lines.append(f"-     {item.field}: {value_text(redact_field(item.field, item.old))}")
            lines.append(f"+     {item.field}: {value_text(redact_field(item.field, item.new))}")
    for change in plan.deletes:
        lines.append(f"- {change.name}")
    lines += ["```", "", "</details>"]
    lines += [f"\n> hint: {hint.text}" for hint in plan.hints]
    return "\n".join(lines)


def applied_line(plan: Plan) -> str:
    if not plan:
        return "No changes. Nothing applied."
    renamed = f"{len(plan.renames)} renamed, " if plan.renames else ""
    text = (
        f"Applied: {len(plan.creates)} created, {len(plan.updates)} updated, "
        f"{renamed}{len(plan.deletes)} deleted."
    )
    if plan.notify:
        text += f" Notify: {len(plan.notify)} changed."
    return text


def _cell(text: str) -> str:
    return f"`{text}`".replace("|", "\\|") if text else ""


@contextmanager
def progress_bar(total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr for long applies on a terminal; otherwise nothing."""
    if total < PROGRESS_THRESHOLD or not sys.stderr.isatty():
        yield lambda _count: None
        return
    with click.progressbar(length=total, label="Applying", file=sys.stderr) as bar:
        yield bar.update
