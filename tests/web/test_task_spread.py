"""The HTTP API's task shows the offset ``spread`` gives it (docs/http-api.md)."""

from __future__ import annotations

import warnings
from pathlib import Path

from reconciler.apply import reconcile
from reconciler.store.database import Database
from reconciler.web import create_app
from tests.factories import task_yaml

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx2
    from fastapi.testclient import TestClient


def test_a_task_shows_its_spread_offset(db: Database, tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(task_yaml("a", spread="10m"))
    (tmp_path / "b.yaml").write_text(task_yaml("b"))
    reconcile(db, tmp_path)
    with TestClient(create_app(db)) as client:
        spread = client.get("/api/v1/tasks/a").json()
        plain = client.get("/api/v1/tasks/b").json()
    assert spread["spread_offset"] == "2m23s"
    assert spread["definition"]["spread"] == "10m"
    assert plain["spread_offset"] is None
