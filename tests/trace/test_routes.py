"""The trace routes of the verifier API: tokens and tiers, bounded requests, answers with proofs,
nothing private."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from node.api import create_app
from node.trace.part import ANOMALIES_FORMAT, LINKS_FORMAT
from tests.trace.world import (
    AUTHORITY_TOKEN,
    CATHODE,
    CELL_LOT,
    COATER,
    ITEM_1,
    SECRETS,
    T0,
    TRACE_TOKEN,
    World,
)

HOUR = 3600 * 1_000_000


@pytest.fixture(scope="module")
def client(world: World) -> TestClient:
    node = world.nodes["cygnus"]
    return TestClient(create_app(world.settings["cygnus"], lambda: node))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _no_secret(body: Any) -> None:
    text = str(body)
    for secret in SECRETS:
        assert secret not in text


def test_a_trace_needs_a_legitimate_interest_token(client: TestClient) -> None:
    anonymous = client.post("/api/v1/trace/links", json={"ids": [ITEM_1]})
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    wrong = client.post(
        "/api/v1/trace/links", json={"ids": [ITEM_1]}, headers=_bearer("not-a-token")
    )
    assert wrong.status_code == 401
    higher = client.post(
        "/api/v1/trace/links?tier=authority", json={"ids": [ITEM_1]}, headers=_bearer(TRACE_TOKEN)
    )
    assert higher.status_code == 403


def test_links_come_with_proof_bundles_and_name_the_owners_of_inputs(
    client: TestClient, world: World
) -> None:
    answer = client.post(
        "/api/v1/trace/links", json={"ids": [ITEM_1]}, headers=_bearer(TRACE_TOKEN)
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["format"] == LINKS_FORMAT
    assert body["member"].lower() == world.addresses["cygnus"].lower()
    assert body["implied"] == {ITEM_1: CELL_LOT}
    records = body["records"]
    assert len(records) == 1
    [entry] = records.values()
    assert entry["bundle"]["format"] == "qnode-proof-v1"
    assert entry["bundle"]["record"]["fields"]["output"] == CELL_LOT
    assert body["owners"][CATHODE].lower() == world.addresses["sierra"].lower()
    assert CATHODE in body["unknown"]
    _no_secret(body)


def test_anomalies_are_served_by_tier_and_the_rest_is_counted_as_withheld(
    client: TestClient,
) -> None:
    query = {
        "subjects": [CATHODE, CELL_LOT],
        "equipment": [{"id": COATER, "since_us": T0 - 24 * HOUR, "until_us": T0}],
    }
    interest = client.post("/api/v1/trace/anomalies", json=query, headers=_bearer(TRACE_TOKEN))
    assert interest.status_code == 200
    body = interest.json()
    assert body["format"] == ANOMALIES_FORMAT
    kinds = sorted(a["kind"] for a in body["anomalies"])
    assert kinds == ["inspection_failed"]
    assert body["withheld"] == {"incoming_lot": 1}
    authority = client.post(
        "/api/v1/trace/anomalies", json=query, headers=_bearer(AUTHORITY_TOKEN)
    ).json()
    assert sorted(a["kind"] for a in authority["anomalies"]) == [
        "incoming_out_of_spec",
        "inspection_failed",
    ]
    assert authority["withheld"] == {}
    for anomaly in authority["anomalies"]:
        for record_id in anomaly["records"]:
            entry = authority["records"][record_id]
            assert entry["bundle"]["record"]["id"] == record_id
    _no_secret(authority)


@pytest.mark.parametrize(
    "body",
    [
        {"ids": []},
        {"ids": ["x" * 501]},
        {"ids": [ITEM_1] * 201},
        {"ids": [ITEM_1], "max_depth": 33},
        {"ids": [ITEM_1], "unknown": 1},
    ],
)
def test_malformed_links_requests_are_400(client: TestClient, body: dict[str, Any]) -> None:
    answer = client.post("/api/v1/trace/links", json=body, headers=_bearer(TRACE_TOKEN))
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


def test_an_inverted_or_too_long_window_is_400(client: TestClient) -> None:
    for since, until in ((T0, T0 - 1), (T0 - 100 * 24 * HOUR, T0)):
        answer = client.post(
            "/api/v1/trace/anomalies",
            json={"equipment": [{"id": COATER, "since_us": since, "until_us": until}]},
            headers=_bearer(TRACE_TOKEN),
        )
        assert answer.status_code == 400, answer.text


def test_the_trace_routes_are_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/v1/trace/links", "/api/v1/trace/anomalies"):
        responses = paths[path]["post"]["responses"]
        assert {"200", "400", "401", "403", "429", "503"} <= set(responses)


def test_the_suppliers_answers_hold_nothing_private(world: World) -> None:
    import httpx

    from tests.trace.world import CRYSTALLIZER, KILN, LITHIUM

    window = {"since_us": T0 - 30 * HOUR, "until_us": T0}
    for member, ids, equipment in (
        ("sierra", [CATHODE], KILN),
        ("rhea", [LITHIUM], CRYSTALLIZER),
    ):
        base = world.urls[member]
        headers = _bearer(AUTHORITY_TOKEN)
        links = httpx.post(f"{base}/api/v1/trace/links", json={"ids": ids}, headers=headers)
        anomalies = httpx.post(
            f"{base}/api/v1/trace/anomalies",
            json={"subjects": ids, "equipment": [{"id": equipment, **window}]},
            headers=headers,
        )
        assert links.status_code == anomalies.status_code == 200
        for text in (links.text, anomalies.text):
            for secret in SECRETS:
                assert secret not in text
            for field in ("operator_id", "inspector_id", "biometric_template"):
                assert field not in text
