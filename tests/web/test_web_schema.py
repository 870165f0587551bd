"""Schemathesis over the OpenAPI document: no 5xx, and every response fits its schema.

Runs in-process against the ASGI app on a seeded SQLite store, valid and invalid
parameters and a few examples per operation, so it stays bounded: once with a tokens file
(an admin's token, data on every path, and an owner's), and once without one, as
``reconcile serve`` runs it then, answering only the Host names it allows (here the
test client's name, besides loopback ones).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from reconciler.store.database import Database
from reconciler.web import create_app
from reconciler.web.tokens import load_tokens
from tests.webseed import TOKENS, seed_standard, tokens_yaml

ADMIN = {"Authorization": f"Bearer {TOKENS['root']}"}
OWNER = {"Authorization": f"Bearer {TOKENS['alice']}"}


TEST_CLIENT_HOST = "testserver"  # the Host schemathesis's ASGI client sends


@pytest.fixture(scope="module", params=["tokens", "no tokens"])
def api_schema(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, list[dict[str, str]]]]:
    """The schema of an app with tokens or without, and the headers of each caller."""
    directory: Path = tmp_path_factory.mktemp("schema")
    (directory / "tokens.yaml").write_text(tokens_yaml())
    database = Database.open(f"sqlite:///{directory / 'state.db'}")
    with database.session() as session:
        seed_standard(session)
    if request.param == "tokens":
        tokens = load_tokens(directory / "tokens.yaml")
        app = create_app(database, tokens=tokens, app_path="reconciler.demo:app")
        callers = [ADMIN, OWNER]
    else:
        hosts = (TEST_CLIENT_HOST,)
        app = create_app(database, app_path="reconciler.demo:app", allowed_hosts=hosts)
        callers = [{}]
    yield schemathesis.openapi.from_asgi("/openapi.json", app), callers
    database.dispose()


PARAMETERLESS = {"/healthz", "/metrics", "/api/v1/tasks/registered"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_api_conforms_to_its_schema(api_schema: tuple[Any, list[dict[str, str]]]) -> None:
    schema, callers = api_schema
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    for operation, mode in itertools.product(operations, GenerationMode):
        if mode is GenerationMode.NEGATIVE and operation.path in PARAMETERLESS:
            continue  # nothing to make invalid

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=15,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: Any) -> None:
            for headers in callers:
                case.call_and_validate(headers=headers, checks=CHECKS)

        run()
