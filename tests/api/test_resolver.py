"""The resolver: every Digital Link form, content negotiation, and every kind of bad input."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from node.api.models import Linkset, PassportModel
from node.api.serials import new_serial
from node.oracles.digital_link import product
from tests.api.world import GTIN_A, GTIN_B, World

PROBLEM = "application/problem+json"


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with TestClient(world.aster_app(), follow_redirects=False) as test_client:
        yield test_client


def problem(response: object, status: int, kind: str) -> dict[str, object]:
    from httpx2 import Response

    assert isinstance(response, Response)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert set(body) == {"type", "title", "status", "detail", "instance"}
    assert body["status"] == status and str(body["type"]).endswith("/" + kind)
    return dict(body)


def test_an_item_serves_its_verified_passport_as_json(client: TestClient, world: World) -> None:
    response = client.get(world.item_path())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert 'rel="linkset"' in response.headers["link"]
    passport = PassportModel.model_validate(response.json())
    assert passport.serial == world.serial and passport.tier == "public"
    assert passport.product is not None and passport.product.name == "NCM 811 pouch cell"
    statuses = {
        v["record"]["id"]: v["verification"]["status"]
        for values in response.json()["aspects"].values()
        for v in values
    }
    assert statuses[world.records["inspection"]] == "verified"
    assert statuses[world.records["bake_curve"]] == "verified"
    assert statuses[world.records["pending_inspection"]] == "pending"
    assert statuses[world.records["borealis_lab"]] == "verified"  # fetched from Borealis' node
    inspection = next(
        v
        for v in response.json()["aspects"]["inspections"]
        if v["record"]["id"] == world.records["inspection"]
    )
    signature = inspection["verification"]["signature"]
    assert signature["valid"] and signature["memberName"] == "Aster Motors"
    assert inspection["verification"]["anchor"]["proofValid"] is True
    cobalt = [n for n in passport.supplyChain if n.gtin and n.gtin.startswith("0409876")]
    assert cobalt and cobalt[0].status == "unavailable"  # its node is down: reported, not fatal


def test_the_other_forms(client: TestClient, world: World) -> None:
    serial_only = client.get(product(GTIN_A, serial=world.serial).uri(""))
    assert serial_only.status_code == 200 and serial_only.json()["serial"] == world.serial
    lot = client.get(product(GTIN_A, world.lot).uri(""))
    assert lot.status_code == 200 and lot.json()["level"] == "lot"
    assert lot.json()["aspects"]["carbonFootprint"]
    gtin = client.get(product(GTIN_A).uri(""))
    assert gtin.status_code == 200 and gtin.json()["level"] == "product"
    short = client.get("/01/9506000134352")  # GTIN-13: normalised
    assert short.status_code == 200 and short.json()["gtin"] == GTIN_A


def test_html_for_browsers_and_a_linkset_for_link_type_all(
    client: TestClient, world: World
) -> None:
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    page = client.get(world.item_path(), headers={"Accept": browser})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "NCM 811 pouch cell" in page.text and "verified" in page.text
    for response in (
        client.get(world.item_path() + "?linkType=all"),
        client.get(world.item_path(), headers={"Accept": "application/linkset+json"}),
    ):
        assert response.headers["content-type"] == "application/linkset+json"
        document = Linkset.model_validate(response.json())
        [context] = response.json()["linkset"]
        assert context["anchor"] == product(GTIN_A, world.lot, world.serial).uri(
            world.aster_settings.api.resolver_domain
        )
        assert context["https://ref.gs1.org/voc/pip"][0]["type"] == "text/html"
        assert context["up"][0]["href"].endswith(f"/10/{world.lot}")
        assert document.linkset
    problem(client.get(world.item_path(), headers={"Accept": "image/png"}), 406, "not-acceptable")


def test_an_unknown_serial_in_a_known_lot_is_sent_to_the_lot(
    client: TestClient, world: World
) -> None:
    response = client.get(world.item_path(new_serial()) + "?linkType=all")
    assert response.status_code == 303
    assert response.headers["location"] == f"/01/{GTIN_A}/10/{world.lot}?linkType=all"


def test_nothing_known_is_404(client: TestClient, world: World) -> None:
    problem(client.get(product(GTIN_B, "CATH-7").uri("")), 404, "not-found")  # not ours
    problem(client.get("/01/09506000000008"), 404, "not-found")  # ours, unknown


@pytest.mark.parametrize(
    ("path", "kind", "words"),
    [
        ("/01/09506000134353", "invalid-identifier", "check digit should be 2"),
        ("/01/95060001343", "invalid-identifier", "8 or 12 or 13 or 14 digits"),
        ("/01/09506000134352/21/AB/10/L42", "invalid-identifier", "out of order"),
        ("/01/09506000134352/10/L42/99/x", "invalid-identifier", "unknown AI 99"),
        ("/01/09506000134352/10/%E2%82%AC", "invalid-identifier", "character set 82"),
        ("/01/09506000134352/10/" + "L" * 21, "invalid-identifier", "too long"),
        ("/01/09506000134352/10", "invalid-identifier", "AI/value pairs"),
    ],
)
def test_bad_identifiers_are_400_with_the_rule(
    client: TestClient, path: str, kind: str, words: str
) -> None:
    body = problem(client.get(path), 400, kind)
    assert words in str(body["detail"])
    assert body["instance"] == path.split("?")[0] or body["instance"]


def test_bad_queries_are_400(client: TestClient, world: World) -> None:
    problem(client.get(world.item_path() + "?tier=emperor"), 400, "invalid-request")
    problem(client.get("/api/v1/records/0x1234/proof"), 400, "invalid-request")
