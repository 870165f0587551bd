"""``reconcile COMMAND --help`` for every command: its own options only, printed without
loading the libraries the command uses (docs/cli.md, "Output and exit codes")."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

# Loaded by running commands, never by asking one for its help.
HEAVY = (
    "sqlalchemy",
    "alembic",
    "psycopg",
    "celery",
    "kombu",
    "redis",
    "fastapi",
    "starlette",
    "uvicorn",
    "prometheus_client",
    "orjson",
    "pydantic",
    "watchfiles",
    "cron_descriptor",
    "pypinyin",
    "anyascii",
    "yaml",
)

# One interpreter asks every command (and every subcommand of a group) for its help, in
# turn, and reports what each printed, declared and newly loaded.
PROBE = """
import contextlib, io, json, sys
import click
from reconciler.cli import COMMANDS, main

heavy = set(json.loads(sys.argv[1]))
report = {}

def ask(path):
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            main([*path, "--help"], prog_name="reconcile")
        except SystemExit as exc:
            code = exc.code
        else:
            code = None
    command = main
    ctx = click.Context(main)
    for part in path:
        command = command.get_command(ctx, part)
    declared = sorted(
        opt for param in command.get_params(ctx) for opt in (*param.opts, *param.secondary_opts)
        if opt.startswith("-")
    )
    loaded = sorted({name.split(".")[0] for name in sys.modules} & heavy)
    report[" ".join(path)] = {"code": code, "help": buffer.getvalue(),
                              "declared": declared, "loaded": loaded}
    if isinstance(command, click.Group):
        for sub in command.list_commands(ctx):
            ask([*path, sub])

for name in sorted(COMMANDS):
    ask([name])
print(json.dumps(report))
"""


def probe() -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, dict[str, Any]] = json.loads(done.stdout)
    return report


OPTION = re.compile(r"(?:^|[ ,/])(--?[a-zA-Z][\w-]*)")


def listed_options(text: str) -> list[str]:
    """The option names in the help's ``Options:`` section (its first column)."""
    section = text.split("\nOptions:\n", 1)[1].split("\n\n", 1)[0]
    names: list[str] = []
    for line in section.splitlines():
        if line.startswith("  -"):
            first_column = line[2:].split("  ", 1)[0]
            names += OPTION.findall(first_column)
    return sorted(names)


def test_every_command_help_is_its_own_and_loads_no_heavy_library() -> None:
    report = probe()
    from reconciler.cli import COMMANDS

    assert set(COMMANDS) <= set(report)
    assert {"db upgrade", "db current"} <= set(report)  # a group's commands are asked too
    previous: set[str] = set()
    for path, seen in report.items():
        text = seen["help"]
        assert seen["code"] == 0, (path, text)
        assert text.startswith(f"Usage: reconcile {path} "), (path, text)
        # Loaded since the command before: the libraries its help needed (none may be).
        loaded = set(seen["loaded"])
        assert loaded - previous == set(), f"reconcile {path} --help loaded {loaded - previous}"
        previous = loaded
        # Only its own options: one options section, listing exactly what it declares.
        assert text.count("Options:") == 1, (path, text)
        assert "Options of apply" not in text
        assert listed_options(text) == sorted({*seen["declared"], "-h", "--help"}), path
