"""Small real filesystems for local-fault tests: a tmpfs that can be filled or made read-only.

Mounting needs root (CI runs the suite as root); elsewhere the tests that need it skip
(under ``RECONCILER_REQUIRE_SERVICES=1`` they fail instead).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import missing


@contextlib.contextmanager
def tmpfs(path: Path, size_kb: int = 2048) -> Iterator[Path]:
    """A fresh tmpfs of ``size_kb`` KiB mounted at ``path`` for the block's duration."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        missing(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield path
    finally:
        # Lazy: a process that still holds a file there must not fail the test's cleanup.
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def remount(path: Path, mode: str) -> None:
    """``mode`` "ro" or "rw": remount the tmpfs at ``path`` read-only or writable again."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def fill(directory: Path) -> Path:
    """Write one file until the filesystem under ``directory`` is full; delete it to free."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (1 << 16, 1 << 12, 1):
            chunk = b"\0" * size
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, chunk)
        try:
            os.write(fd, b"\0")
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        else:
            raise AssertionError(f"{directory} is not full")
    finally:
        os.close(fd)
    return filler
