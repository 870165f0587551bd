"""Finding task files under the tasks directory and reading their text within limits.

Symlinks may not leave the tree, special files are never opened, and a file deleted
between listing and reading is simply not there (docs/task-files.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from reconciler.core.diagnostics import Diagnostic

MAX_FILE_BYTES = 1024 * 1024
"""Files above 1 MiB are refused unread: no task needs that much."""

MAX_PATH = 1000
"""The longest file path the database records as a task's source."""

YAML_SUFFIXES = (".yaml", ".yml")


def file_error(path: str, message: str, hint: str | None = None) -> Diagnostic:
    """A diagnostic about a whole file, placed at its first line."""
    return Diagnostic(path, 1, 1, "file", message, hint)


def read_text(path: str, *, listed: bool = False) -> str | Diagnostic | None:
    """The file's text, or why it cannot be read; None when a ``listed`` file (found by
    listing its directory) was deleted before it was read: it is simply not there."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_FILE_BYTES:
                return file_error(path, f"is {size:,} bytes, over the 1 MiB limit", "split it")
            # A buffer sized to the file, not to the limit (docs/design/validate-read-path.md);
            # a file that has grown since is read on, up to the limit.
            data = handle.read(size + 1)
            if len(data) > size:
                data += handle.read(MAX_FILE_BYTES + 1 - len(data))
    except FileNotFoundError as exc:
        return None if listed else file_error(path, f"cannot be read: {exc.strerror or exc}")
    except OSError as exc:
        return file_error(path, f"cannot be read: {exc.strerror or exc}")
    if len(data) > MAX_FILE_BYTES:
        return file_error(path, "is over the 1 MiB limit", "split it")
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


def _inside(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def task_files(root: str, diagnostics: list[Diagnostic]) -> Iterator[str]:
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
                            file_error(
                                entry.path,
                                f"is a symlink that leaves the tasks directory (to {real})",
                                "copy the file into the tasks directory",
                            )
                        )
                    continue
                if os.path.isdir(real):
                    continue  # its target is inside the tree and is read there
                if is_task_file and not os.path.exists(real):
                    diagnostics.append(file_error(entry.path, "is a broken symlink"))
                    continue
            if entry.is_dir():
                subdirectories.append(entry.path)
            elif is_task_file and entry.is_file():
                yield os.path.normpath(entry.path)
            elif is_task_file and os.path.lexists(entry.path):
                # A FIFO or device would block or stream forever: never opened.
                diagnostics.append(file_error(entry.path, "is not a regular file"))
        pending.extend(reversed(subdirectories))
