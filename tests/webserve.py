"""``reconcile serve`` as a child process for the web tests: on a free port, handed over
once ``/healthz`` answers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from benchmarks.services import free_port, healthy
from tests.support import Process, reconcile_argv, wait_for


@contextlib.contextmanager
def serving(
    url: str,
    log: Path,
    *options: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[tuple[str, Process]]:
    """``reconcile serve`` on ``url`` with ``options``: its loopback base URL and process once
    it answers; its log is the error if it never does."""
    port = free_port()
    argv = reconcile_argv("serve", "--database-url", url, "--port", str(port), *options)
    with Process(argv, log, env=env, cwd=cwd) as process:
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: healthy(base), 30, message="reconcile serve to answer")
        except AssertionError:
            raise AssertionError(process.output()) from None
        yield base, process
