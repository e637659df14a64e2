"""Access tiers, privacy, bundles and the proof checker, enumeration and rate limits."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from node.api.serials import new_serial
from node.oracles.digital_link import product
from tests.api.test_resolver import problem
from tests.api.world import GTIN_A, SECRETS, TOKENS, World


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with TestClient(world.aster_app(), follow_redirects=False) as test_client:
        yield test_client


def bearer(tier: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[tier]}"}


def record_types(passport: dict[str, Any]) -> set[str]:
    return {v["record"]["type"] for values in passport["aspects"].values() for v in values}


def test_each_tier_sees_its_own_field_set(client: TestClient, world: World) -> None:
    public = client.get(world.item_path()).json()
    legit = client.get(world.item_path(), headers=bearer("legitimate_interest")).json()
    authority = client.get(world.item_path(), headers=bearer("authority")).json()
    assert (public["tier"], legit["tier"], authority["tier"]) == (
        "public",
        "legitimate_interest",
        "authority",
    )
    assert record_types(public) == {"inspection", "bake_curve", "carbon_footprint"}
    assert record_types(legit) == record_types(public) | {"setpoint", "genealogy"}
    assert record_types(authority) == record_types(legit) | {"due_diligence", "incoming_lot"}
    assert all(node["id"] is None for node in public["supplyChain"])
    assert all(node["id"] for node in legit["supplyChain"])
    asked_down = client.get(world.item_path() + "?tier=public", headers=bearer("authority"))
    assert record_types(asked_down.json()) == record_types(public)


def test_a_token_of_another_tier_or_no_token_is_refused(client: TestClient, world: World) -> None:
    body = problem(
        client.get(world.item_path() + "?tier=authority", headers=bearer("legitimate_interest")),
        403,
        "forbidden-tier",
    )
    assert "legitimate_interest token" in str(body["detail"])
    problem(client.get(world.item_path() + "?tier=authority"), 403, "forbidden-tier")
    wrong = client.get(world.item_path(), headers={"Authorization": "Bearer guessed-token"})
    problem(wrong, 401, "unauthorized")
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    problem(
        client.get(world.item_path(), headers={"Authorization": "Basic eDp5"}), 401, "unauthorized"
    )


def test_bundles_follow_the_tiers(client: TestClient, world: World) -> None:
    due = world.records["due_diligence"]
    problem(client.get(f"/api/v1/records/{due}/proof"), 404, "not-found")
    unknown = "0x" + "ab" * 32
    hidden = client.get(f"/api/v1/records/{due}/proof").json()
    missing = client.get(f"/api/v1/records/{unknown}/proof").json()
    assert hidden["detail"].replace(due, "X") == missing["detail"].replace(unknown, "X")
    proof = client.get(f"/api/v1/records/{due}/proof", headers=bearer("authority"))
    assert proof.status_code == 200 and proof.json()["format"] == "qnode-proof-v1"
    inspection = world.records["inspection"]
    attestation = client.get(f"/api/v1/records/{inspection}/attestation")
    assert attestation.status_code == 200 and attestation.json()["primaryType"] == (
        "InspectionResult"
    )
    curve = client.get(f"/api/v1/records/{world.records['bake_curve']}/blobs/curve_blob")
    assert curve.status_code == 200 and json.loads(curve.content)["c"][1] == 120.1
    problem(
        client.get(f"/api/v1/records/{world.records['pending_inspection']}/proof"), 404, "not-found"
    )


def test_the_proof_checker_on_good_forged_and_truncated_bundles(
    client: TestClient, world: World
) -> None:
    inspection = world.records["inspection"]
    bundle = client.get(f"/api/v1/records/{inspection}/proof").json()
    verdict = client.post("/api/v1/verify", json=bundle)
    assert verdict.status_code == 200, verdict.text
    assert verdict.json()["valid"] is True and verdict.json()["memberName"] == "Aster Motors"
    attestation = client.get(f"/api/v1/records/{inspection}/attestation").json()
    assert (
        client.post("/api/v1/verify", json=attestation).json()["signer"] == (attestation["signer"])
    )
    forged = json.loads(json.dumps(bundle))
    forged["record"]["fields"]["value"] = 99.9
    body = problem(client.post("/api/v1/verify", json=forged), 422, "proof-invalid")
    assert "altered" in str(body["detail"])
    forged_signature = dict(attestation, message={**attestation["message"], "value": "5"})
    problem(client.post("/api/v1/verify", json=forged_signature), 422, "attestation-invalid")
    text = json.dumps(bundle)
    truncated = client.post(
        "/api/v1/verify",
        content=text[: len(text) // 2],
        headers={"Content-Type": "application/json"},
    )
    assert "not valid JSON" in str(problem(truncated, 400, "invalid-request")["detail"])
    problem(client.post("/api/v1/verify", json={"hello": 1}), 400, "invalid-request")
    problem(client.post("/api/v1/verify", json={"format": "x"}), 422, "proof-invalid")


def test_no_private_value_in_any_response(client: TestClient, world: World) -> None:
    texts = []
    for headers in ({}, bearer("legitimate_interest"), bearer("authority")):
        for path in (world.item_path(), f"/01/{GTIN_A}/10/{world.lot}", f"/01/{GTIN_A}"):
            for accept in ("application/json", "text/html", "application/linkset+json"):
                texts.append(client.get(path, headers={**headers, "Accept": accept}).text)
        for record_id in world.records.values():
            for kind in ("proof", "attestation"):
                texts.append(
                    client.get(f"/api/v1/records/{record_id}/{kind}", headers=headers).text
                )
    texts.append(client.get("/openapi.json").text)
    everything = "\n".join(texts)
    for secret in (*SECRETS, "auditor@example.com"):
        assert secret not in everything
    assert "operator_commitment" not in everything


def test_guessed_serials_look_like_any_other_miss(world: World) -> None:
    """A real serial under the wrong lot, a random serial, a serial outside the scheme and a
    known item with a sequential serial all get the same answer, at the same speed."""
    app = world.aster_app(
        rate_limit={
            "misses_per_min": 100_000,
            "miss_burst": 100_000,
            "requests_per_s": 100_000,
            "burst": 100_000,
        }
    )
    with TestClient(app, follow_redirects=False) as client:
        client.get(world.item_path())  # warm
        wrong_lot = product(GTIN_A, "L43", world.serial).uri("")
        client.get(product(GTIN_A, "L43").uri(""))
        guesses = {
            "real serial, wrong lot": product(GTIN_A, "L99", world.serial).uri(""),
            "random serial, unknown lot": product(GTIN_A, "L99", new_serial()).uri(""),
            "sequential serial": product(GTIN_A, "L99", world.weak_serial).uri(""),
        }
        shapes = set()
        timings: dict[str, list[float]] = {}
        for name, path in guesses.items():
            for _ in range(30):
                started = time.perf_counter()
                response = client.get(path)
                timings.setdefault(name, []).append(time.perf_counter() - started)
            headers = {k: v for k, v in response.headers.items() if k != "date"}
            shapes.add((response.status_code, headers["location"], headers.get("link")))
        assert len(shapes) == 1 and next(iter(shapes))[0] == 303
        medians = [statistics.median(t) for t in timings.values()]
        assert max(medians) < 3 * min(medians)
        weak = client.get(world.item_path(world.weak_serial))
        assert weak.status_code == 303  # recorded, but outside the serial scheme: never served
        assert wrong_lot


def test_a_burst_of_guesses_is_429_for_every_lookup(world: World) -> None:
    app = world.aster_app(rate_limit={"misses_per_min": 6, "miss_burst": 5})
    with TestClient(app, follow_redirects=False) as client:
        answers = [client.get(world.item_path(new_serial())).status_code for _ in range(5)]
        assert answers == [303] * 5
        limited = client.get(world.item_path(new_serial()))
        body = problem(limited, 429, "rate-limited")
        assert int(limited.headers["retry-after"]) >= 1 and "paused" in str(body["detail"])
        # a hit is refused too: the answer to a guess says nothing while the limit holds
        problem(client.get(world.item_path()), 429, "rate-limited")
        assert client.get("/api/v1/health").status_code == 200


def test_overall_request_limit(world: World) -> None:
    app = world.aster_app(rate_limit={"requests_per_s": 1, "burst": 3})
    with TestClient(app) as client:
        statuses = [client.get("/api/v1/health").status_code for _ in range(5)]
        assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]


def test_two_apps_in_one_process_share_nothing(world: World) -> None:
    tight = world.aster_app(rate_limit={"requests_per_s": 1, "burst": 1})
    loose = world.aster_app()
    with TestClient(tight) as first, TestClient(loose) as second:
        assert first.get("/api/v1/health").status_code == 200
        assert first.get("/api/v1/health").status_code == 429
        assert second.get("/api/v1/health").status_code == 200
        assert second.get("/api/v1/health").json()["member"] == "Aster Motors"
