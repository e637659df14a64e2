"""Schemathesis against the app's own OpenAPI, in-process (ASGI): no input makes a server error,
and every answer is one the spec documents."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.world import World


@pytest.fixture
def api_schema(world: World) -> schemathesis.BaseSchema:  # type: ignore[name-defined]
    app = world.aster_app(
        rate_limit={
            "requests_per_s": 100_000,
            "burst": 100_000,
            "misses_per_min": 100_000,
            "miss_burst": 100_000,
        },
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_no_server_error_and_documented_answers(api_schema: schemathesis.BaseSchema) -> None:  # type: ignore[name-defined]
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8
    calls = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS)
            calls.append(case.operation.label)

        run()
    assert len(calls) >= 5 * len(operations)


def test_the_spec_documents_every_route(world: World) -> None:
    from fastapi.testclient import TestClient

    with TestClient(world.aster_app()) as client:
        spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/01/{gtin}",
        "/01/{gtin}/10/{lot}",
        "/01/{gtin}/10/{lot}/21/{serial}",
        "/01/{gtin}/21/{serial}",
        "/api/v1/verify",
        "/api/v1/records/{record_id}/proof",
    ):
        assert path in paths
    item = paths["/01/{gtin}/10/{lot}/21/{serial}"]["get"]["responses"]
    assert {"200", "303", "400", "401", "403", "404", "406", "429"} <= set(item)
    assert "application/linkset+json" in item["200"]["content"]
    assert "application/problem+json" in item["404"]["content"]
    assert "Problem" in spec["components"]["schemas"]
    assert "Linkset" in spec["components"]["schemas"]
