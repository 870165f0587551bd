"""Counting instructions with callgrind: a measure of a program's own work that the
machine's noise (other tenants, CPU steal, frequency) does not move, unlike its time.

``count`` counts a whole program. ``count_window`` counts only what a child runs between
``begin()`` and ``end()``: the child starts with counting off, says when it is
ready, and the parent switches counting on and off with ``callgrind_control``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

_VALGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")
_COLLECTED = re.compile(r"Collected : (\d+)")
_BEGIN = "callgrind: begin"
_END = "callgrind: end"


def available(switch: str) -> bool:
    """Whether valgrind is installed and the environment variable ``switch`` is not ``0``."""
    return (
        os.environ.get(switch) != "0"
        and shutil.which("valgrind") is not None
        and shutil.which("callgrind_control") is not None
    )


def count(argv: Sequence[str], *, cwd: Path) -> int:
    """Instructions the program ``argv`` executes from start to exit."""
    completed = subprocess.run(
        [*_VALGRIND, *argv], check=True, capture_output=True, text=True, cwd=cwd
    )
    return _collected(completed.stderr)


def count_window(argv: Sequence[str], *, cwd: Path, env: dict[str, str]) -> int:
    """Instructions the child ``argv`` executes between its ``begin()`` and ``end()``."""
    with tempfile.TemporaryFile("w+") as errors:
        with subprocess.Popen(
            [*_VALGRIND, "--instr-atstart=no", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            cwd=cwd,
            env=env,
        ) as child:
            assert child.stdin is not None and child.stdout is not None
            _expect(child.stdout, _BEGIN, errors)
            _instrument(child.pid, "on")
            _answer(child.stdin)
            _expect(child.stdout, _END, errors)
            _instrument(child.pid, "off")
            _answer(child.stdin)
        errors.seek(0)
        output = errors.read()
    if child.returncode:
        raise SystemExit(f"the counted program failed: {output[-800:]}")
    return _collected(output)


# --- in the child ------------------------------------------------------------------------


def begin() -> None:
    """Say the counted part starts here, and wait until counting is on."""
    print(_BEGIN, flush=True)
    sys.stdin.readline()


def end() -> None:
    """Say the counted part ended, and wait until counting is off."""
    print(_END, flush=True)
    sys.stdin.readline()


# --- helpers -----------------------------------------------------------------------------


def _expect(stdout: IO[str], marker: str, errors: IO[str]) -> None:
    for line in stdout:
        if line.rstrip("\n") == marker:
            return
    errors.seek(0)
    raise SystemExit(f"the counted program ended before {marker!r}: {errors.read()[-800:]}")


def _answer(stdin: IO[str]) -> None:
    stdin.write("\n")
    stdin.flush()


def _instrument(pid: int, state: str) -> None:
    subprocess.run(
        ["callgrind_control", "-i", state, str(pid)],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _collected(stderr: str) -> int:
    found = _COLLECTED.search(stderr)
    if found is None:
        raise SystemExit(f"callgrind printed no instruction count: {stderr[-500:]}")
    return int(found.group(1))
