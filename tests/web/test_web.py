"""The HTTP API in-process (reconciler.web): every path, filter, sort, page, CSV, 405.

Store-facing behaviour runs on SQLite and PostgreSQL (``database_url``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from reconciler.settings import Settings
from reconciler.store.database import Database
from reconciler.web import create_app
from tests.support import TcpProxy
from tests.webseed import (
    BACKENDS,
    T0,
    TRACEBACK,
    add_execution,
    add_task,
    backend_url,
    seed_standard,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx2
    from fastapi.testclient import TestClient

H = dt.timedelta(hours=1)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def seeded(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One database per backend for the tests that only read: the standard seed."""
    for url in backend_url(backend, tmp_path_factory.mktemp("seeded")):
        database = Database.open(url)
        with database.session() as session:
            ids = seed_standard(session)
        yield database, ids
        database.dispose()


@pytest.fixture(scope="module")
def scratch(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """One database per backend for tests that add rows; each uses its own owner/names."""
    for url in backend_url(backend, tmp_path_factory.mktemp("scratch")):
        database = Database.open(url)
        yield database
        database.dispose()


@pytest.fixture(scope="module")
def ids(seeded: Any) -> dict[str, int]:
    return dict(seeded[1])


@pytest.fixture(scope="module")
def client(seeded: Any) -> Iterator[TestClient]:
    with TestClient(create_app(seeded[0], app_path="reconciler.demo:app")) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def scratch_client(scratch: Database) -> Iterator[TestClient]:
    with TestClient(create_app(scratch)) as test_client:
        yield test_client


@pytest.fixture
def owner() -> str:
    return f"o{uuid.uuid4().hex[:8]}"


def names(body: dict[str, Any]) -> list[str]:
    return [item["name"] for item in body["items"]]


def test_task_list_shows_last_status_and_next_run(client: TestClient, ids: dict[str, int]) -> None:
    response = client.get("/api/v1/tasks/")
    assert response.status_code == 200
    body = response.json()
    assert names(body) == ["billing-async", "daily-report", "ops-cleanup"]
    assert body["next_cursor"] is None
    report = body["items"][1]
    assert report["last_status"] == "failure"
    assert report["last_execution_id"] == ids["failed"]
    assert report["last_run"] == "2025-01-01T13:00:00+00:00"
    assert report["next_run"] == "2025-01-02T00:00:00+00:00"
    assert report["schedule"] == "At 01:00 (UTC)"  # the words the CLI shows
    assert body["items"][0]["last_status"] is None
    assert body["items"][0]["schedule"] == "once, as soon as it is applied"
    assert client.get("/api/v1/tasks").json() == body  # without the trailing slash too


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q=revenue", ["daily-report"]),
        ("q=REPORT", ["daily-report"]),
        ("q=app.api", ["billing-async"]),
        ("q=%25", []),
        ("q=worker_test", []),
        ("q=test_celery", ["daily-report", "ops-cleanup"]),
        ("q=%27%3B%20DROP%20TABLE%20tasks%3B--", []),
        ("q=%3Dtmp", ["ops-cleanup"]),
        ("q=Zürich", []),
        ("owner=ops", ["ops-cleanup"]),
        ("type=async", ["billing-async"]),
        ("enabled=false", ["billing-async"]),
        ("enabled=true&type=periodic", ["daily-report", "ops-cleanup"]),
        ("sort=-name", ["ops-cleanup", "daily-report", "billing-async"]),
        ("sort=next_run", ["ops-cleanup", "daily-report", "billing-async"]),
        ("sort=last_run", ["billing-async", "daily-report", "ops-cleanup"]),
        ("sort=-last_run", ["ops-cleanup", "daily-report", "billing-async"]),
    ],
)
def test_task_list_filters_and_sorts(
    client: TestClient, ids: dict[str, int], query: str, expected: list[str]
) -> None:
    response = client.get(f"/api/v1/tasks/?{query}")
    assert response.status_code == 200, response.text
    assert names(response.json()) == expected


@pytest.mark.parametrize("sort", ["name", "-name", "next_run", "last_run", "-last_run"])
def test_task_pages_are_stable_while_tasks_are_added(
    scratch_client: TestClient, scratch: Database, sort: str, owner: str
) -> None:
    with scratch.session() as session:
        for i in range(7):
            add_task(session, f"{owner}-t{i}", owner=owner, next_run_at=T0 + (i % 3) * H)
            add_execution(session, f"{owner}-t{i}", queued_at=T0 + (i % 2) * H)
    url = f"/api/v1/tasks/?owner={owner}&sort={sort}"
    full = names(scratch_client.get(f"{url}&limit=100").json())
    assert len(full) == 7
    seen: list[str] = []
    body = scratch_client.get(f"{url}&limit=3").json()
    seen += names(body)
    with scratch.session() as session:
        # lands on a page already read, or on a later one; nothing shifts either way
        add_task(session, f"{owner}-t9", owner=owner, next_run_at=T0)
    while body["next_cursor"]:
        body = scratch_client.get(f"{url}&limit=3&cursor={body['next_cursor']}").json()
        seen += names(body)
    assert [n for n in seen if n != f"{owner}-t9"] == full


def test_one_task_and_its_status(client: TestClient, ids: dict[str, int]) -> None:
    task = client.get("/api/v1/tasks/daily-report").json()
    assert task["definition"]["name"] == "daily-report"
    assert task["source"] == {
        "path": "tasks.d/billing.yaml",
        "line": 3,
        "commit": "0123abc",  # the last applied; linked only with a repository URL
        "commit_url": None,
        "url": None,
    }
    assert task["created_at"] == "2025-01-01T12:00:00+00:00"
    assert task["deleted_at"] is None
    status = client.get("/api/v1/tasks/daily-report/status").json()
    assert status == {
        "name": "daily-report",
        "enabled": True,
        "deleted": False,
        "last_status": "failure",
        "last_run": "2025-01-01T13:00:00+00:00",
        "last_finished_at": "2025-01-01T13:00:03+00:00",
        "last_execution_id": ids["failed"],
        "next_run": "2025-01-02T00:00:00+00:00",
        "last_success_at": "2025-01-01T12:00:03+00:00",
        "last_failure_at": "2025-01-01T13:00:03+00:00",
        "consecutive_failures": 1,
    }
    assert client.get("/api/v1/tasks/nope").status_code == 404
    assert client.get("/api/v1/tasks/nope/status").status_code == 404
    assert client.get("/api/v1/tasks/Bad%20Name").status_code == 404


def test_deleted_task_is_shown_with_deleted_at_and_its_history_stays(
    client: TestClient, ids: dict[str, int]
) -> None:
    assert "old-report" not in names(client.get("/api/v1/tasks/").json())
    task = client.get("/api/v1/tasks/old-report").json()
    assert task["deleted_at"] == "2025-01-01T17:00:00+00:00"
    assert client.get("/api/v1/tasks/old-report/status").json()["deleted"] is True
    history = client.get("/api/v1/tasks/old-report/executions").json()
    assert [e["id"] for e in history["items"]] == [ids["old"]]
    assert client.get(f"/api/v1/tasks/executions/{ids['old']}").status_code == 200


def test_executions_of_a_task(client: TestClient, ids: dict[str, int]) -> None:
    body = client.get("/api/v1/tasks/daily-report/executions").json()
    assert [e["id"] for e in body["items"]] == [ids["failed"], ids["ok"]]
    failed, ok = body["items"]
    assert failed["traceback"] == TRACEBACK and failed["error"] == "ValueError: boom"
    assert ok["kwargs"] == {"region": "eu", "password": "***"}
    assert ok["result"] == {"rows": 3}
    assert list(ok) == [
        "id", "task", "celery_task_id", "trigger", "scheduled_for", "status", "args", "kwargs",
        "queued_at", "started_at", "finished_at", "duration_ms", "worker", "result", "error",
        "traceback", "retries",
    ]  # fmt: skip
    only = client.get("/api/v1/tasks/daily-report/executions?status=success").json()
    assert [e["id"] for e in only["items"]] == [ids["ok"]]
    since = client.get(
        "/api/v1/tasks/daily-report/executions", params={"since": "2025-01-01T13:00:00+00:00"}
    ).json()
    assert [e["id"] for e in since["items"]] == [ids["failed"]]
    until = client.get(
        "/api/v1/tasks/daily-report/executions", params={"until": "2025-01-01T13:00:00"}
    ).json()
    assert [e["id"] for e in until["items"]] == [ids["ok"]]
    assert client.get("/api/v1/tasks/nope/executions").status_code == 404
    one = client.get(f"/api/v1/tasks/executions/{ids['failed']}").json()
    assert one == failed
    assert client.get("/api/v1/tasks/executions/999999").status_code == 404


def test_all_executions_with_filters(client: TestClient, ids: dict[str, int]) -> None:
    body = client.get("/api/v1/executions").json()
    assert [e["id"] for e in body["items"]] == sorted(ids.values(), reverse=True)
    by_task = client.get("/api/v1/executions?task=ops-cleanup&status=started").json()
    assert [e["id"] for e in by_task["items"]] == [ids["running"]]
    assert client.get("/api/v1/executions?task=nope").json()["items"] == []


@pytest.mark.parametrize(
    "path", ["/api/v1/executions?task={name}", "/api/v1/tasks/{name}/executions"]
)
def test_execution_pages_are_stable_while_rows_are_added(
    scratch_client: TestClient, scratch: Database, owner: str, path: str
) -> None:
    name = f"{owner}-x"
    with scratch.session() as session:
        add_task(session, name, owner=owner)
        expected = [add_execution(session, name, queued_at=T0 + i * H).id for i in range(5)]
    url = path.format(name=name)
    seen: list[int] = []
    page = scratch_client.get(f"{url}&limit=2" if "?" in url else f"{url}?limit=2").json()
    seen += [e["id"] for e in page["items"]]
    with scratch.session() as session:
        add_execution(session, name, queued_at=T0 + 9 * H)
    while page["next_cursor"]:
        sep = "&" if "?" in url else "?"
        page = scratch_client.get(f"{url}{sep}limit=2&cursor={page['next_cursor']}").json()
        seen += [e["id"] for e in page["items"]]
    assert seen == expected[::-1]


def test_applies_newest_first(client: TestClient, ids: dict[str, int]) -> None:
    body = client.get("/api/v1/applies").json()
    assert [a["deleted_names"] for a in body["items"]] == [["old-report"], []]
    assert body["items"][1]["created_names"] == ["daily-report", "ops-cleanup", "old-report"]
    assert body["items"][0]["applied_at"] == "2025-01-01T17:00:00+00:00"
    page = client.get("/api/v1/applies?limit=1").json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = client.get(f"/api/v1/applies?limit=1&cursor={page['next_cursor']}").json()
    assert rest["items"][0]["id"] == body["items"][1]["id"] and rest["next_cursor"] is None


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize(
    "path",
    ["/api/v1/executions", "/api/v1/tasks/ops-cleanup/executions", "/api/v1/tasks/"],
)
def test_csv_by_format_or_accept_with_header_and_neutralised_cells(
    client: TestClient, ids: dict[str, int], path: str
) -> None:
    by_param = client.get(path, params={"format": "csv"})
    by_accept = client.get(path, headers={"Accept": "text/csv"})
    assert by_param.status_code == by_accept.status_code == 200
    assert by_param.headers["content-type"] == "text/csv; charset=utf-8"
    assert by_param.text == by_accept.text
    assert by_param.text.startswith(("id,task,", "name,owner,"))
    rows = read_csv(by_param.text)
    if path == "/api/v1/tasks/":
        assert [r["name"] for r in rows] == ["billing-async", "daily-report", "ops-cleanup"]
        assert rows[2]["description"] == "Clean =tmp"
    else:
        ops = next(r for r in rows if r["id"] == str(ids["ops"]))
        assert ops["result"] == "'=cmd|' /C calc'!A0"  # a string result is text
        assert ops["error"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
        assert ops["traceback"] == "'-2+3"


def test_csv_follows_filters_and_redacts(client: TestClient, ids: dict[str, int]) -> None:
    rows = read_csv(client.get("/api/v1/executions?format=csv&task=daily-report").text)
    assert [int(r["id"]) for r in rows] == [ids["failed"], ids["ok"]]
    assert rows[1]["kwargs"] == '{"region": "eu", "password": "***"}'
    assert rows[0]["traceback"] == TRACEBACK
    rows = read_csv(client.get("/api/v1/tasks/?format=csv&q=ops").text)
    assert [r["name"] for r in rows] == ["ops-cleanup"]


def test_times_are_iso_in_utc_with_microseconds_only_when_there_are_some(
    scratch_client: TestClient, scratch: Database, owner: str
) -> None:
    """The same text on both backends, in pages, single executions, the task list and
    CSV: ``datetime.isoformat`` of the time in UTC."""
    moments = [T0 + dt.timedelta(microseconds=500_000), T0 + H]
    with scratch.session() as session:
        add_task(session, owner, owner=owner)
        for moment in moments:
            add_execution(session, owner, queued_at=moment)
    want = [(m + dt.timedelta(seconds=s)).isoformat() for m in reversed(moments) for s in (0, 3)]
    page = scratch_client.get(f"/api/v1/tasks/{owner}/executions").json()["items"]
    assert [t for e in page for t in (e["queued_at"], e["finished_at"])] == want
    one = scratch_client.get(f"/api/v1/tasks/executions/{page[1]['id']}").json()
    assert one["queued_at"] == "2025-01-01T12:00:00.500000+00:00"
    assert one["scheduled_for"] == one["queued_at"] and one["started_at"].endswith(
        ":01.500000+00:00"
    )
    tasks = scratch_client.get("/api/v1/tasks/", params={"owner": owner}).json()["items"]
    assert tasks[0]["last_run"] == (T0 + H).isoformat()
    rows = read_csv(scratch_client.get(f"/api/v1/tasks/{owner}/executions?format=csv").text)
    assert [t for r in rows for t in (r["queued_at"], r["finished_at"])] == want
    tasks_csv = read_csv(scratch_client.get(f"/api/v1/tasks/?owner={owner}&format=csv").text)
    assert tasks_csv[0]["last_run"] == (T0 + H).isoformat()


def test_csv_streams_more_than_one_chunk(
    scratch_client: TestClient, scratch: Database, owner: str
) -> None:
    with scratch.session() as session:
        add_task(session, owner, owner=owner)
        for i in range(1001):
            second = T0 + i * dt.timedelta(seconds=1)
            add_execution(session, owner, queued_at=second, flush=False)
    rows = read_csv(scratch_client.get(f"/api/v1/tasks/{owner}/executions?format=csv").text)
    assert len(rows) == 1001 and rows[0]["queued_at"] > rows[-1]["queued_at"]


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/v1/tasks/?limit=0", "limit"),
        ("/api/v1/tasks/?limit=501", "limit"),
        ("/api/v1/tasks/?sort=size", "sort"),
        ("/api/v1/tasks/?type=cron", "type"),
        ("/api/v1/tasks/?enabled=maybe", "enabled"),
        ("/api/v1/tasks/?cursor=nope", "cursor"),
        ("/api/v1/tasks/?q=a%00b", "q"),
        ("/api/v1/tasks/?owner=a%00b", "owner"),
        ("/api/v1/tasks/?cursor=%00", "cursor"),
        ("/api/v1/tasks/?limit=", "limit"),
        ("/api/v1/executions?task=a%00b", "task"),
        ("/api/v1/executions?since=0001-01-01T00:00:00%2B01:00", "since"),
        ("/api/v1/executions?status=done", "status"),
        ("/api/v1/executions?since=yesterday", "since"),
        ("/api/v1/executions?until=2025-13-01", "until"),
        ("/api/v1/executions?cursor=WyJ0Il0", "cursor"),
        ("/api/v1/executions?format=xml", "format"),
        ("/api/v1/tasks/daily-report/executions?limit=-1", "limit"),
        ("/api/v1/tasks/executions/abc", "id"),
        ("/api/v1/tasks/executions/0", "id"),
        ("/api/v1/applies?limit=1000", "limit"),
    ],
)
def test_bad_parameters_are_422_naming_the_parameter(
    client: TestClient, ids: dict[str, int], path: str, parameter: str
) -> None:
    response = client.get(path)
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith(f"{parameter}: ")


def test_the_last_of_repeated_parameters_counts_and_unknown_ones_are_ignored(
    client: TestClient, ids: dict[str, int]
) -> None:
    body = client.get("/api/v1/executions?limit=500&limit=1&colour=blue").json()
    assert [e["id"] for e in body["items"]] == [max(ids.values())]
    assert body["next_cursor"] is not None
    refused = client.get("/api/v1/executions?status=success&status=done")
    assert refused.status_code == 422
    assert refused.json()["message"].startswith("status: ")


def test_every_query_parameter_a_route_reads_is_in_the_openapi_document(
    client: TestClient,
) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    def documented(path: str) -> list[str]:
        parameters = paths[path]["get"]["parameters"]
        return sorted(p["name"] for p in parameters if p["in"] == "query")

    listed = ["cursor", "format", "limit"]
    assert documented("/api/v1/tasks/") == sorted(
        [*listed, "q", "owner", "type", "enabled", "last_status", "label", "sort"]
    )
    assert documented("/api/v1/tasks/{name}/executions") == sorted(
        [*listed, "status", "since", "until"]
    )
    assert documented("/api/v1/executions") == sorted([*listed, "task", "status", "since", "until"])
    assert documented("/api/v1/applies") == ["cursor", "limit", "outcome"]
    limit = next(p for p in paths["/api/v1/tasks/"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 500 and limit["schema"]["default"] == 50


def test_a_cursor_from_another_sort_is_refused(client: TestClient, ids: dict[str, int]) -> None:
    cursor = client.get("/api/v1/tasks/?limit=1").json()["next_cursor"]
    response = client.get(f"/api/v1/tasks/?limit=1&sort=next_run&cursor={cursor}")
    assert response.status_code == 422
    assert response.json()["message"] == "cursor: not a cursor of a list sorted by next_run"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
@pytest.mark.parametrize(
    "path", ["/api/v1/tasks/", "/api/v1/tasks/daily-report", "/api/v1/executions", "/nope", "/"]
)
def test_writes_are_405_saying_where_changes_are_made(
    client: TestClient, method: str, path: str
) -> None:
    response = client.request(method, path, json={"name": "x"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    detail = response.json()["detail"]
    assert "task files" in detail and "reconcile trigger" in detail


@pytest.mark.parametrize(
    "path",
    ["/healthz", "/api/v1/tasks/", "/api/v1/executions?format=csv", "/api/v1/tasks/daily-report"],
)
def test_head_is_get_without_a_body(client: TestClient, ids: dict[str, int], path: str) -> None:
    head = client.head(path)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == client.get(path).headers["content-type"]


def test_metrics_count_the_deliveries_workers_refused_to_run(
    scratch_client: TestClient, scratch: Database, owner: str
) -> None:
    with scratch.session() as session:
        for name in (f"{owner}-twice", f"{owner}-once"):
            add_task(session, name, owner=owner)
        for hour, refused in enumerate((2, 0, 1)):
            add_execution(session, f"{owner}-twice", queued_at=T0 + hour * H).duplicates = refused
        add_execution(session, f"{owner}-once")
    text = scratch_client.get("/metrics").text
    assert f'reconciler_duplicate_deliveries{{task="{owner}-twice"}} 3.0' in text
    assert f'reconciler_duplicate_deliveries{{task="{owner}-once"}}' not in text


def test_healthz_metrics_and_page(client: TestClient, ids: dict[str, int]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    text = client.get("/metrics").text
    assert 'reconciler_executions{status="failure",task="daily-report"} 1.0' in text
    assert 'reconciler_executions{status="started",task="ops-cleanup"} 1.0' in text
    assert 'reconciler_tasks{enabled="false",type="async"} 1.0' in text
    assert 'reconciler_tasks{enabled="true",type="periodic"} 2.0' in text
    assert 'reconciler_beat_heartbeat_age_seconds{beat="beat-1"}' in text
    assert "reconciler_beats_alive 0.0" in text
    assert "reconciler_last_apply_timestamp_seconds 1.7357508e+09" in text
    assert 'reconciler_last_apply_tasks{change="deleted"} 1.0' in text
    page = client.get("/")
    assert page.status_code == 200 and "<title>celery-reconciler</title>" in page.text
    assert client.get("/static/app.js").status_code == 200


def test_registered_tasks_of_the_app(client: TestClient) -> None:
    body = client.get("/api/v1/tasks/registered").json()
    assert body["app"] == "reconciler.demo:app"
    assert "app.worker.test_celery" in body["items"]


def test_registered_is_503_when_the_app_cannot_load(seeded: Any) -> None:
    with TestClient(create_app(seeded[0], app_path="no_such_module_xyz:app")) as test_client:
        response = test_client.get("/api/v1/tasks/registered")
    assert response.status_code == 503
    assert "no_such_module_xyz" in response.json()["detail"]


@pytest.mark.postgres
def test_a_database_restart_costs_no_request(postgres_url: str) -> None:
    """The endpoint's pool does not ping before each checkout: when the pooled connection
    died (here: cut by a proxy, as a restart does), the read is repeated on a new one."""
    url = make_url(postgres_url)
    Database.open(postgres_url).dispose()
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    try:
        settings = Settings.resolve(
            database_url=url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
        )
        with TestClient(create_app(settings)) as test_client:
            assert test_client.get("/api/v1/tasks/").status_code == 200
            proxy.cut()
            proxy.restore()
            for path in ("/api/v1/tasks/", "/api/v1/executions", "/api/v1/applies"):
                response = test_client.get(path)
                assert response.status_code == 200, response.text
            proxy.cut()  # and down for good: a clear 503, not a retry loop
            response = test_client.get("/api/v1/tasks/")
            assert response.status_code == 503
            assert response.json()["detail"].startswith("database unavailable: ")
    finally:
        proxy.close()


def test_database_down_is_503() -> None:
    database = Database.open("postgresql://postgres@127.0.0.1:1/none", upgrade=False)
    with TestClient(create_app(database)) as test_client:
        response = test_client.get("/api/v1/tasks/")
        assert response.status_code == 503
        assert response.json()["detail"].startswith("database unavailable: ")
        assert test_client.get("/healthz").status_code == 200


def test_page_routes_read_in_a_bounded_number_of_threads(scratch: Database) -> None:
    """At most READ_THREADS reads at once per process: the rest wait their turn instead of
    competing for the interpreter and the database."""
    import threading

    from anyio import to_thread

    from reconciler.web.app import READ_THREADS

    running = 0
    most = 0
    done = 0
    lock = threading.Lock()
    release = threading.Event()

    def slow_read() -> None:
        nonlocal running, most, done
        with lock:
            running += 1
            most = max(most, running)
        release.wait(10)
        with lock:
            running -= 1
            done += 1

    with TestClient(create_app(scratch)) as test_client:

        async def limit() -> float:
            return to_thread.current_default_thread_limiter().total_tokens

        assert test_client.portal is not None
        assert test_client.portal.call(limit) == READ_THREADS

        async def many() -> None:
            import anyio

            async with anyio.create_task_group() as group:
                for _ in range(READ_THREADS * 3):
                    group.start_soon(to_thread.run_sync, slow_read)
                with anyio.fail_after(10):
                    while most < READ_THREADS:  # the first ones are in, the rest wait
                        await anyio.sleep(0.01)
                release.set()

        test_client.portal.call(many)
    assert most == READ_THREADS
    assert done == READ_THREADS * 3
