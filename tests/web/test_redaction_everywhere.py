"""Secrets found in clear where values are shown, each pinned as it was found: a task's
definition served by the API, args entries, results that echo their kwargs (the API the
page reads, its CSV, ``reconcile history``), errors and tracebacks, and the plan in every
format (the markdown one is posted as a pull-request comment)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main
from reconciler.store.database import Database
from reconciler.web import create_app
from tests.webseed import BACKENDS, T0, add_execution, add_task, backend_url

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx2
    from fastapi.testclient import TestClient

SECRETS = ("hunter2", "AKIA-abc", "tok-123", "arg-pw", "echoed-pw", "err-pw", "tb-key")
KWARGS = {
    "region": "eu",
    "db_password": "hunter2",
    "service": {"name": "s3", "api_key": "AKIA-abc"},
    "hooks": [{"url": "https://example.com", "token": "tok-123"}],
}


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} shown in {text[:300]!r}"


@pytest.fixture(scope="module", params=BACKENDS)
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, int]]]:
    directory = tmp_path_factory.mktemp("leaks")
    for url in backend_url(str(request.param), directory):
        database = Database.open(url)
        with database.session() as session:
            task = add_task(session, "billing-export", kwargs=KWARGS)
            task.spec = {**task.spec, "args": ["eu", {"password": "arg-pw"}]}
            echo = add_execution(
                session,
                "billing-export",
                kwargs=KWARGS,
                # the demo's dynamic task returns its kwargs
                result={"echo": {"kwargs": {"db_password": "echoed-pw"}}},
            )
            echo.args = ["eu", {"password": "arg-pw"}]
            as_repr = add_execution(
                session,
                "billing-export",
                queued_at=T0 + dt.timedelta(hours=1),
                result="{'db_password': 'echoed-pw', 'n': 1}",
            )
            failed = add_execution(
                session,
                "billing-export",
                status="failure",
                queued_at=T0 + dt.timedelta(hours=2),
                error="OperationalError: connect(user='bob', password='err-pw')",
                traceback="Traceback (most recent call last):\n"
                "  File \"job.py\", line 3, in run\n    client = Client(api_key='tb-key')\n"
                "ValueError: boom",
            )
            session.flush()
            ids = {"echo": echo.id, "repr": as_repr.id, "failed": failed.id}
        database.dispose()
        yield url, ids


@pytest.fixture(scope="module")
def client(seeded: tuple[str, dict[str, int]]) -> Iterator[TestClient]:
    database = Database.open(seeded[0])
    with TestClient(create_app(database)) as client:
        yield client
    database.dispose()


def test_the_definition_served_by_the_api_hides_secret_kwargs_and_args(
    client: TestClient,
) -> None:
    response = client.get("/api/v1/tasks/billing-export")
    assert response.status_code == 200
    assert_no_secret(response.text)
    definition = response.json()["definition"]
    assert definition["kwargs"] == {
        "region": "eu",
        "db_password": "***",
        "service": {"name": "s3", "api_key": "***"},
        "hooks": [{"url": "https://example.com", "token": "***"}],
    }
    assert definition["args"] == ["eu", {"password": "***"}]


def test_executions_hide_args_results_errors_and_tracebacks(
    client: TestClient, seeded: tuple[str, dict[str, int]]
) -> None:
    ids = seeded[1]
    page = client.get("/api/v1/tasks/billing-export/executions")
    assert page.status_code == 200
    assert_no_secret(page.text)
    by_id = {item["id"]: item for item in page.json()["items"]}
    echo = by_id[ids["echo"]]
    assert echo["args"] == ["eu", {"password": "***"}]
    assert echo["kwargs"]["service"] == {"name": "s3", "api_key": "***"}
    assert echo["result"] == {"echo": {"kwargs": {"db_password": "***"}}}
    assert by_id[ids["repr"]]["result"] == "{'db_password': '***', 'n': 1}"
    failed = by_id[ids["failed"]]
    assert failed["error"] == "OperationalError: connect(user='bob', password='***')"
    assert "Client(api_key='***')" in failed["traceback"]
    for key, id in ids.items():
        single = client.get(f"/api/v1/tasks/executions/{id}")
        assert single.status_code == 200, key
        assert_no_secret(single.text)
    assert_no_secret(client.get("/api/v1/executions").text)


@pytest.mark.parametrize(
    "path", ["/api/v1/executions?format=csv", "/api/v1/tasks/billing-export/executions?format=csv"]
)
def test_the_csv_export_hides_them_too(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert_no_secret(response.text)
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert any(json.loads(row["args"]) == ["eu", {"password": "***"}] for row in rows)


@pytest.mark.parametrize("output_format", ["json", "csv", "text"])
def test_reconcile_history_hides_them_in_every_format(
    seeded: tuple[str, dict[str, int]], output_format: str
) -> None:
    result = CliRunner().invoke(
        main,
        ["history", "billing-export", "--database-url", seeded[0], "--format", output_format],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "billing-export" in result.output or output_format == "text"
    assert_no_secret(result.output)


TASK = """\
name: billing-export
owner: billing
type: periodic
task: app.worker.test_celery
crontab: "0 1 * * *"
args: [eu, {{password: arg-pw}}]
kwargs:
  region: eu
  db_password: {password}
  service: {{name: s3, api_key: AKIA-abc}}
  hooks: [{{url: "https://example.com", token: tok-123}}]
  vault: {{secret_env: BILLING_VAULT_TOKEN}}
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("RECONCILER_TASKS_DIR", "RECONCILER_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "tasks.d").mkdir()
    (tmp_path / "tasks.d" / "billing.yaml").write_text(TASK.format(password="hunter2"))
    return tmp_path


def plan(*args: str) -> str:
    result = CliRunner().invoke(main, ["--dry-run", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("output_format", ["markdown", "text", "json"])
def test_the_plan_hides_secrets_in_every_format(workdir: Path, output_format: str) -> None:
    created = plan("--format", output_format)
    assert "billing-export" in created
    assert_no_secret(created)
    if output_format == "json":
        spec = json.loads(created)["create"][0]["spec"]
        assert spec["kwargs"]["db_password"] == "***"
        assert spec["kwargs"]["vault"] == {"secret_env": "BILLING_VAULT_TOKEN"}
    assert CliRunner().invoke(main, ["apply"], catch_exceptions=False).exit_code == 0
    (workdir / "tasks.d" / "billing.yaml").write_text(TASK.format(password="new-pw"))
    updated = plan("--format", output_format)
    assert "db_password" in updated or output_format != "json"
    assert_no_secret(updated)
    assert "new-pw" not in updated


def test_validate_never_quotes_the_value_of_a_secret_looking_key(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.d"
    tasks.mkdir()
    (tasks / "a.yaml").write_text(
        "name: a\nowner: team\ntype: async\ntask: app.worker.test_celery\n"
        "labels:\n  api_token: 12345678901234\n  region: 42\n"
    )
    result = CliRunner().invoke(main, ["validate", "--tasks-dir", str(tasks)])
    assert result.exit_code == 1
    assert "labels.api_token: expected a string, got an integer" in result.output
    assert "12345678901234" not in result.output
    # Values under other keys are still quoted: they help to find the mistake.
    assert "labels.region: expected a string, got an integer (42)" in result.output
