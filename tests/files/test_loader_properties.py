"""Property tests: whatever the input, the loader returns specs or located errors.

Random text, random bytes, YAML-ish token soup and mutations of valid documents
(dropped, renamed, retyped and added keys) go through ``load_directory``; no
exception other than the project's own may escape, and every diagnostic is located.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.files.loader import LoadResult, load_directory

SETTINGS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

VALID: list[dict[str, Any]] = [
    {"name": "a", "owner": "o", "type": "async", "task": "t", "args": [1, "x"]},
    {
        "name": "s.b-1",
        "owner": "o",
        "type": "scheduled",
        "task": "app.x",
        "at": "2030-01-01T10:00:00",
        "timezone": "Europe/Berlin",
    },
    {
        "name": "c",
        "owner": "o",
        "type": "periodic",
        "task": "t",
        "crontab": "*/5 1-3 * * 0,6",
        "options": {"queue": "q", "priority": 5, "time_limit": 60, "soft_time_limit": 30},
    },
    {
        "name": "d",
        "owner": "o",
        "type": "periodic",
        "task": "t",
        "crontab": {"minute": 0, "hour": "9", "day_of_week": "1-5"},
        "kwargs": {"region": "eu", "n": [1, 2, {"deep": None}]},
        "labels": {"team": "x"},
    },
    {
        "name": "e",
        "owner": "o",
        "type": "periodic",
        "task": "t",
        "interval": {"hours": 1, "minutes": 30},
        "overlap": "skip",
        "catchup": "once",
        "enabled": False,
    },
]

TOKENS = [
    "name", "owner", "type", "task", "crontab", "interval", "at", "kwargs", "args",
    "options", "priority", "minute", ": ", ":", "\n", "\n  ", "\n    ", "- ", "---\n",
    "[", "]", "{", "}", ",", "'", '"', "&a ", "*a", "&b ", "*b", "<<: ", "!!python/object ",
    "!tag ", "!!str ", "!!binary ", "? ", "|\n  ", ">\n  ", "#", "%YAML 1.1\n", "...\n",
    "2025-01-01", "2025-01-01T10:00:00Z", "1:30", "0x1F", ".nan", "~", "null", "yes",
    "periodic", "async", "scheduled", "*/5 * * * *", "61", "-1", "1e9", "\t", "\\", "é",
    "\x00", "\ufeff",
]  # fmt: skip

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.dates(),
    st.datetimes(),
)
values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner, max_size=3),
    ),
    max_leaves=8,
)


# Line breaks as YAML (and so the loader's line numbers) counts them: CR LF, CR, LF, and
# the Unicode NEL, LS and PS.
LINE_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


@contextmanager
def task_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def check(result: LoadResult, path: Path, text_lines: int) -> None:
    for diagnostic in result.diagnostics:
        assert diagnostic.path == str(path)
        assert 1 <= diagnostic.line <= text_lines + 1, diagnostic
        assert diagnostic.column >= 1, diagnostic
        assert diagnostic.field and diagnostic.message, diagnostic
        assert "\n" not in diagnostic.message, diagnostic
        assert diagnostic.severity in ("error", "warning")
    for task in result.tasks:
        assert task.path == str(path) and task.line >= 1


def load_text(root: Path, data: str | bytes) -> LoadResult:
    path = root / "t.yaml"
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(data)
    result = load_directory(root)
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    check(result, path, len(LINE_BREAKS.findall(text)) + 1)
    return result


@SETTINGS
@given(st.text(max_size=300))
def test_random_text(text: str) -> None:
    with task_dir() as root:
        load_text(root, text)


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    with task_dir() as root:
        load_text(root, data)


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=60))
def test_yaml_token_soup(tokens: list[str]) -> None:
    with task_dir() as root:
        load_text(root, "".join(tokens))


def _mutate(document: dict[str, Any], draw: st.DrawFn) -> dict[str, Any]:
    result = dict(document)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        target = result
        nested = [k for k, v in result.items() if isinstance(v, dict)]
        go_deeper: bool = draw(st.booleans())
        if nested and go_deeper:
            key = draw(st.sampled_from(nested))
            target = result[key] = dict(result[key])
        action = draw(st.sampled_from(["drop", "rename", "retype", "add"]))
        keys = list(target)
        if action == "add" or not keys:
            target[draw(st.text(min_size=1, max_size=10))] = draw(values)
            continue
        key = draw(st.sampled_from(keys))
        if action == "drop":
            del target[key]
        elif action == "rename":
            target[draw(st.text(min_size=1, max_size=10))] = target.pop(key)
        else:
            target[key] = draw(values)
    return result


@st.composite
def mutated_documents(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(min_value=1, max_value=3))
    return [_mutate(draw(st.sampled_from(VALID)), draw) for _ in range(count)]


@SETTINGS
@given(mutated_documents())
def test_mutated_valid_documents(documents: list[dict[str, Any]]) -> None:
    text = yaml.safe_dump_all(documents, allow_unicode=True, sort_keys=False)
    with task_dir() as root:
        result = load_text(root, text)
    # Each document gives a task or at least one located error.
    assert len(result.tasks) + len(result.errors) >= 1
    assert len(result.tasks) <= len(documents)


def test_valid_documents_load() -> None:
    text = yaml.safe_dump_all(VALID, sort_keys=False)
    with task_dir() as root:
        result = load_text(root, text)
    assert [str(d) for d in result.diagnostics] == []
    assert [t.spec.name for t in result.tasks] == [d["name"] for d in VALID]
