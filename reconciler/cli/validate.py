"""``reconcile validate [PATH...]``: the CI step (docs/ci.md).

Loads the task files, prints every diagnostic as text, JSON or GitHub workflow
annotations, and exits 0 (valid, warnings allowed), 1 (invalid) or 2 (usage). It
needs no database; Celery is imported only when ``--app`` asks for a registry check.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from reconciler.cli.options import format_option, handle_errors
from reconciler.core.diagnostics import Diagnostic
from reconciler.errors import ConfigError, ReconcilerError
from reconciler.settings import Settings

if TYPE_CHECKING:  # the loader (pydantic, YAML) is imported when it runs, not for --help
    from reconciler.files.loader import LoadResult, Progress


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option(
    "--tasks-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Task files directory when no PATH is given [env RECONCILER_TASKS_DIR; default ./tasks.d]",
)
@click.option(
    "--app",
    "app_path",
    default=None,
    help="Also check task names against this Celery app (module:attr).",
)
@format_option("text", "json", "github")
@handle_errors
def validate(
    paths: tuple[str, ...], tasks_dir: str | None, app_path: str | None, output_format: str
) -> None:
    """Check task files (default: the tasks directory) without touching the database."""
    progress = _ProgressBar() if output_format == "text" and sys.stderr.isatty() else None
    result = run_validation(paths, tasks_dir, app_path, progress)
    if output_format == "json":
        click.echo(json.dumps(as_json(result), indent=2))
    elif output_format == "github":
        for diagnostic in result.diagnostics:
            click.echo(github_annotation(diagnostic))
        click.echo(summary(result))
        summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary_file:
            try:
                with open(summary_file, "a", encoding="utf-8") as handle:
                    handle.write(markdown_summary(result))
            except OSError as exc:
                raise ConfigError(
                    f"GITHUB_STEP_SUMMARY={summary_file}: cannot append: {exc.strerror or exc}"
                ) from exc
    else:
        for diagnostic in result.diagnostics:
            click.echo(text_line(diagnostic))
        click.echo(summary(result))
    sys.exit(0 if result.ok else 1)


class _ProgressBar:
    """A progress bar on stderr for long runs (thousands of files), people only."""

    MIN_FILES = 2_000

    def __init__(self) -> None:
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if total < self.MIN_FILES:
            return
        if self._bar is None:
            self._bar = click.progressbar(length=total, label="validating", file=sys.stderr)
            self._bar.__enter__()
        self._bar.update(1)
        if done == total:
            self._bar.__exit__(None, None, None)


def run_validation(
    paths: Sequence[str],
    tasks_dir: str | None,
    app_path: str | None,
    progress: Progress | None = None,
) -> LoadResult:
    from reconciler.files.loader import check_registered, load_directory, load_paths

    if paths:
        result = load_paths(list(paths), progress=progress)
    else:
        tasks_root = Settings.resolve(tasks_dir=tasks_dir).tasks_dir
        result = load_directory(tasks_root, progress=progress)
    if app_path:
        # Imported here: validating without --app must not pay for (or need) Celery.
        from reconciler.celeryapp import load_app, registered_task_names

        try:
            names = registered_task_names(load_app(app_path))
        except ReconcilerError:
            raise
        except Exception as exc:  # the user's module may fail in any way while importing
            raise ConfigError(
                f"--app {app_path}: loading the app failed: {type(exc).__name__}: {exc}"
            ) from exc
        result.diagnostics = sorted(
            [*result.diagnostics, *check_registered(result, names)], key=Diagnostic.sort_key
        )
    return result


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def summary(result: LoadResult) -> str:
    """``N files, M tasks: K errors, W warnings``."""
    return (
        f"{_plural(result.files, 'file')}, {_plural(len(result.tasks), 'task')}: "
        f"{_plural(len(result.errors), 'error')}, {_plural(len(result.warnings), 'warning')}"
    )


def text_line(diagnostic: Diagnostic) -> str:
    if diagnostic.severity == "warning":
        return click.style("warning: ", fg="yellow") + str(diagnostic)
    return click.style(str(diagnostic), fg="red")


def as_json(result: LoadResult) -> dict[str, object]:
    """The stable JSON document of ``--format json`` (documented in docs/ci.md)."""
    return {
        "valid": result.ok,
        "files": result.files,
        "tasks": len(result.tasks),
        "errors": [d.to_dict() for d in result.errors],
        "warnings": [d.to_dict() for d in result.warnings],
    }


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotation(diagnostic: Diagnostic) -> str:
    """One workflow command: ``::error file=…,line=…,col=…::field: message``."""
    message = f"{diagnostic.field}: {diagnostic.message}"
    if diagnostic.hint:
        message += f" (hint: {diagnostic.hint})"
    return (
        f"::{diagnostic.severity} file={_escape_property(diagnostic.path)},"
        f"line={diagnostic.line},col={diagnostic.column}::{_escape_data(message)}"
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_summary(result: LoadResult) -> str:
    """The job summary appended to ``$GITHUB_STEP_SUMMARY``."""
    verdict = "valid" if result.ok else "invalid"
    lines = [f"### reconcile validate: {verdict}", "", summary(result), ""]
    if result.diagnostics:
        lines += ["| | file | line | field | message |", "|---|---|---|---|---|"]
        for d in result.diagnostics:
            mark = "error" if d.severity == "error" else "warning"
            message = d.message + (f" (hint: {d.hint})" if d.hint else "")
            lines.append(
                f"| {mark} | `{_cell(d.path)}` | {d.line}:{d.column} | `{_cell(d.field)}` "
                f"| {_cell(message)} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"
