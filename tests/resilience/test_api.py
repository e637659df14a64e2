"""``GET /api/v1/resilience`` and the page ``/explorer/resilience``: tiers, the documented shape,
every chart drawn as well-formed SVG; and a fresh node (no contracts, no records) answering
both."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from node.api import create_app
from node.api.access import token_hash
from node.api.pages_resilience import ResilienceModel
from node.chain.connection import embedded_chain
from node.keys import hardhat_dev_key
from node.provisioning import MemberSpec, init_member
from node.resilience import resilience_report
from node.resilience.charts import Series, bar_chart, line_chart, number, radar_chart
from node.runtime import Node
from node.settings import LOCAL_CHAIN_ID, Settings, settings_from_values
from tests.resilience.world import ResilienceWorld

AUDITOR = "auditor-token-0123456789abcdef"
REPAIRER = "repairer-token-0123456789abcdef"
CHART_IDS = (
    "chart-qrrc",
    "chart-risk",
    "chart-risk-ppm",
    "chart-tasks",
    "chart-plans",
    "chart-ppm",
)
_SVG = re.compile(r"<svg\b.*?</svg>", re.S)


def app_of(node: Node) -> FastAPI:
    values = node.settings.model_dump(mode="json")
    values["api"] = {
        **values["api"],
        "tokens": [
            {"name": "auditor", "tier": "authority", "sha256": token_hash(AUDITOR)},
            {"name": "repairer", "tier": "legitimate_interest", "sha256": token_hash(REPAIRER)},
        ],
        "rate_limit": {
            "requests_per_s": 10_000,
            "burst": 10_000,
            "misses_per_min": 600,
            "miss_burst": 60,
        },
    }
    settings: Settings = settings_from_values(values)
    return create_app(settings, lambda: node)


@pytest.fixture(scope="module")
def client(world: ResilienceWorld) -> Iterator[TestClient]:
    with TestClient(app_of(world.aster), follow_redirects=False) as client:
        yield client


def signed_in(client: TestClient) -> TestClient:
    response = client.post("/explorer/login", data={"token": AUDITOR, "next": ""})
    assert response.status_code == 303, response.text
    return client


def svgs(page: str) -> list[ET.Element]:
    """Every inline chart of the page, parsed (a malformed one raises)."""
    return [ET.fromstring(match) for match in _SVG.findall(page)]


# -- JSON ------------------------------------------------------------------------------------------


def test_the_json_needs_an_authority_token(client: TestClient) -> None:
    anonymous = client.get("/api/v1/resilience")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    lower = client.get("/api/v1/resilience", headers={"Authorization": f"Bearer {REPAIRER}"})
    assert lower.status_code == 403 and lower.json()["type"].endswith("forbidden-tier")
    wrong = client.get("/api/v1/resilience", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_the_json_is_the_documented_report(client: TestClient, world: ResilienceWorld) -> None:
    response = client.get("/api/v1/resilience", headers={"Authorization": f"Bearer {AUDITOR}"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    document: dict[str, Any] = response.json()
    ResilienceModel.model_validate(document)
    assert document["member"] == world.aster.address
    kinds = sorted(d["kind"] for d in document["qrrc"]["disturbances"])
    assert kinds == ["compensation", "line_stop", "out_of_spec", "supplier_hold"]
    assert {d["status"] for d in document["qrrc"]["disturbances"]} == {"recovered"}
    scopes = {(g["scopeKind"], g["label"]) for g in document["qrrc"]["byScope"]}
    assert scopes == {("line", "coater"), ("line", "packing"), ("supplier", "Borealis Cells")}
    assert document["qrrc"]["computedFrom"]["CompensationAcknowledged events"] == 1
    assert document["highRiskSuppliers"]["share"] == 1.0
    (radar,) = document["radar"]["suppliers"]
    assert [a["name"] for a in radar["axes"]] == [
        "cpk_stability",
        "ppm",
        "closure_time",
        "traceability",
        "change_management",
    ]
    assert document["contingencyPlans"]["stale"] == 1
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/api/v1/resilience"]["get"]
    assert {"200", "401", "403", "429", "503"} <= set(operation["responses"])
    assert "ResilienceModel" in spec["components"]["schemas"]
    assert not any(path.startswith("/explorer") for path in spec["paths"])


# -- the page --------------------------------------------------------------------------------------


def test_the_page_needs_the_explorers_sign_in(world: ResilienceWorld) -> None:
    with TestClient(app_of(world.aster), follow_redirects=False) as anonymous:
        response = anonymous.get("/explorer/resilience")
        assert response.status_code == 303
        assert response.headers["location"] == "/explorer/login?next=%2Fexplorer%2Fresilience"
        refused = anonymous.post("/explorer/login", data={"token": REPAIRER, "next": ""})
        assert refused.status_code == 403


def test_the_page_draws_every_chart(client: TestClient) -> None:
    response = signed_in(client).get("/explorer/resilience")
    assert response.status_code == 200, response.text[:2000]
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert "<script" not in response.text
    page = response.text
    charts = svgs(page)
    ids = {svg.get("id") for svg in charts}
    assert set(CHART_IDS) <= ids and "radar-0" in ids
    for svg in charts:
        assert svg.tag == "{http://www.w3.org/2000/svg}svg"
        assert svg.find("{http://www.w3.org/2000/svg}title") is not None
    assert "Borealis Cells" in page and "coater" in page and "packing" in page
    for section in ("qrrc", "risk", "tasks", "plans", "radar", "trend"):
        assert f'id="{section}"' in page
    assert "stale" in page and "fresh" in page


# -- a fresh node ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    root: Path = tmp_path_factory.mktemp("fresh-node")
    spec = MemberSpec("Fresh Member", "manufacturer", "http://127.0.0.1:1", "embedded")
    settings = init_member(root / "fresh", spec, "pw", hardhat_dev_key(5), 16)
    node = Node.open(settings, "pw", embedded_chain(LOCAL_CHAIN_ID))
    yield node
    node.close()


def test_a_fresh_node_reports_nothing_and_says_why(fresh: Node) -> None:
    report = resilience_report(fresh)
    assert not report.disturbances and not report.suppliers and not report.plans
    statuses = {s.name: s.status for s in report.sources}
    assert statuses["store"] == "ok"
    assert {statuses[name] for name in ("LineControl", "SupplierQuality", "QualityLedger")} == {
        "not_deployed"
    }
    ResilienceModel.model_validate(report.as_json())


def test_a_fresh_node_serves_the_json_and_the_page(fresh: Node) -> None:
    with TestClient(app_of(fresh), follow_redirects=False) as client:
        response = client.get("/api/v1/resilience", headers={"Authorization": f"Bearer {AUDITOR}"})
        assert response.status_code == 200
        ResilienceModel.model_validate(response.json())
        page = signed_in(client).get("/explorer/resilience")
        assert page.status_code == 200, page.text[:2000]
    charts = svgs(page.text)
    assert {svg.get("id") for svg in charts} == set(CHART_IDS)
    assert page.text.count(">no data</text>") == len(CHART_IDS)
    assert "Not every source could be read" in page.text


# -- the charts ------------------------------------------------------------------------------------


def test_charts_escape_what_they_draw_and_stay_well_formed() -> None:
    hostile = 'A&B <script>alert("x")</script>'
    drawn = [
        bar_chart(hostile, [hostile, "b"], [Series(hostile, (1.0, None))], "h<", "b1"),
        line_chart(hostile, ["2026-01", "2026-02"], [Series(hostile, (None, 3.0))], "PPM", "l1"),
        radar_chart(hostile, [(hostile, 0.5, "<raw>"), ("b", None, ""), ("c", 1.0, "")], "r1"),
        bar_chart("empty", [], [], "h", "b2"),
        line_chart("empty", [], [], "PPM", "l2"),
        radar_chart("too few axes", [("a", 1.0, "")], "r2"),
    ]
    for svg in drawn:
        root = ET.fromstring(svg)  # well-formed
        assert not [e for e in root.iter() if e.tag.endswith("script")]
        assert "<script" not in svg
    assert '<script>alert("x")</script>' in "".join(ET.fromstring(drawn[0]).itertext())
    assert all("no data" in svg for svg in drawn[3:])


def test_chart_numbers_are_for_people() -> None:
    assert [number(v) for v in (555_555.6, 1.0, 0.94, 12.345, 0.00022, None)] == [
        "555,556",
        "1",
        "0.94",
        "12.3",
        "0.00022",
        "n/a",
    ]
