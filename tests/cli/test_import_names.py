"""``reconcile import`` names from any script (docs/import.md, "Rules"): each old name is
spelled in ASCII, a suffix comes only where two meet, and the old name stays where the
API's search (``q``, the page's too) and its label filter find it, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from reconciler.apply import reconcile
from reconciler.store.database import Database
from reconciler.web import create_app
from tests.files.test_importer import DAILY, project, run_import

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx2
    from fastapi.testclient import TestClient

__all__ = ["project"]  # the fixture, used by name

OLD_NAMES = {
    "Отчёт": "otchet",
    "Otchet": "otchet-2",  # spells the same as the one before it
    "Ημερήσια αναφορά": "imerisia-anafora",
    "毎日のレポート": "meiri-no-repoto",
    "일일 보고서": "ilil-bogoseo",
    "تقرير يومي": "tqryr-ywmy",
    "Отчёт 报告 Daily": "otchet-baogao-daily",
    "🙂": "test_celery",  # nothing to spell: the Celery task's last segment
}


def test_names_from_every_script_are_spelled_and_found_by_their_old_name(
    project: Path, db: Database
) -> None:
    payloads = [{**DAILY, "name": old} for old in OLD_NAMES]
    result = run_import(project, payloads, "--owner", "demo", "--format", "json")
    assert result.exit_code == 0, result.output
    imported = json.loads(result.stdout)["imported"]
    assert {item["original_name"]: item["name"] for item in imported} == OLD_NAMES

    reconcile(db, project / "tasks.d")
    with TestClient(create_app(db)) as client:

        def found(**query: str) -> list[str]:
            response = client.get("/api/v1/tasks/", params=query)
            assert response.status_code == 200, response.text
            return sorted(item["name"] for item in response.json()["items"])

        assert found(q="Отчёт") == ["otchet", "otchet-baogao-daily"]
        assert found(q="Otchet") == ["otchet", "otchet-2", "otchet-baogao-daily"]  # new names too
        assert found(label="original-name=Otchet") == ["otchet-2"]
        for old in ("Ημερήσια αναφορά", "毎日のレポート", "일일 보고서", "تقرير يومي", "🙂"):
            assert found(q=old) == [OLD_NAMES[old]], old
            assert found(label=f"original-name={old}") == [OLD_NAMES[old]], old
        detail = client.get("/api/v1/tasks/ilil-bogoseo").json()
    assert detail["description"] == "일일 보고서: 每天凌晨1点执行"
