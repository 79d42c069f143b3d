"""Property-based tests of the served OpenAPI spec (schemathesis): no 500, only documented status codes,
responses that match their schemas, schema-invalid requests rejected with 4xx.

Bounded: a few examples per operation against one uvicorn server (SQLite) holding a running
experiment, so the run takes well under a minute.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlmodel import Session

from abcore.access.api_keys import create_api_key
from abcore.store.db import init_db, make_engine

from .conftest import start_server

MAX_EXAMPLES = 15


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    folder = tmp_path_factory.mktemp("schemathesis")
    url = f"sqlite:///{folder / 'abcore.db'}"
    engine = init_db(make_engine(url))
    with Session(engine) as session:
        key = create_api_key(session=session, name="fuzz", role="editor", rate_limit=0)[1]
    engine.dispose()
    server = start_server(url, folder / "api.log")
    auth = {"Authorization": f"Bearer {key}"}
    body = {"name": "exp", "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}]}
    created = httpx.post(server.url + "/api/v1/experiments", json=body, headers=auth)
    assert created.status_code == 201, created.text
    httpx.put(server.url + "/api/v1/experiments/1/status", json={"status": "running"}, headers=auth)
    try:
        yield server.url, key
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api_schema(served: tuple[str, str]) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(served[0] + "/openapi.json")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_honours_its_spec(api_schema: schemathesis.BaseSchema, served: tuple[str, str], mode: GenerationMode) -> None:
    """Every operation, MAX_EXAMPLES generated requests each (schema-valid, then schema-invalid)."""
    base_url, key = served
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        # derandomize: the same examples every run (a random negative case can be "invalid" only in the
        # Authorization header this test replaces, plus a query key httpx drops; seen once, 2026-12-02)
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  derandomize=True)
        def run(case: schemathesis.Case) -> None:
            # positive_data_acceptance is left out: a schema-valid request may still name an experiment
            # that does not exist (404) or ask for a transition the lifecycle refuses (409), both documented.
            case.call_and_validate(
                base_url=base_url, headers={"Authorization": f"Bearer {key}"},
                excluded_checks=[positive_data_acceptance],
            )

        try:
            run()
        except Unsatisfiable:  # negative mode: an operation without parameters or body has no invalid input
            assert mode == GenerationMode.NEGATIVE, operation.label
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_the_spec_documents_every_route(served: tuple[str, str]) -> None:
    spec = httpx.get(served[0] + "/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/api/v1/experiments", "/api/v1/experiments/{ref}", "/api/v1/experiments/{ref}/status",
        "/api/v1/experiments/{ref}/ship", "/api/v1/assign", "/api/v1/assign/batch",
        "/api/v1/experiments/conversions", "/api/v1/events", "/api/v1/experiments/{ref}/metrics",
        "/api/v1/experiments/{ref}/results", "/api/v1/experiments/{ref}/export",
    } <= paths
    assert httpx.get(served[0] + "/docs").status_code == 200
    post = spec["paths"]["/api/v1/experiments"]["post"]["responses"]
    assert {"201", "401", "403", "413", "422", "429"} <= set(post)
