"""The consumer page (the resolver's HTML): badges per value with their bundles, the bake curve
drawn from its blob, the inspection history, the supply chain with why a part is unverified,
the tier; every value escaped. And the curve reader and chart on their own."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from node.api.pages_chart import CurveError, curve_svg, parse_curve
from node.api.pages_consumer import ConsumerPage
from node.api.pages_html import Html
from node.api.rendering import PageContext
from node.errors import StoreError
from tests.api.world import GTIN_A, SECRETS, TOKENS, World

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with TestClient(world.aster_app(), follow_redirects=False) as test_client:
        yield test_client


def page_of(client: TestClient, world: World, tier: str | None = None) -> str:
    headers = {"Accept": BROWSER}
    if tier is not None:
        headers["Authorization"] = f"Bearer {TOKENS[tier]}"
    response = client.get(world.item_path(), headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    return response.text


def chart_of(page: str) -> ET.Element:
    found = re.search(r'<svg class="chart".*?</svg>', page, re.S)
    assert found is not None, "no chart in the page"
    return ET.fromstring(found.group(0))


def test_the_page_shows_the_product_its_tier_and_a_badge_per_value(
    client: TestClient, world: World
) -> None:
    page = page_of(client, world)
    assert page.startswith("<!doctype html>") and '<html lang="en">' in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "<script" not in page
    assert '<h1 id="product-heading">NCM 811 pouch cell</h1>' in page
    assert "Access: public" in page and "nominal capacity ah" in page
    passport = client.get(world.item_path()).json()
    values = [v for vs in passport["aspects"].values() for v in vs]
    for value in values:  # every value: its badge, its status and its bundle
        record = value["record"]["id"]
        status = value["verification"]["status"]
        assert f'data-status="{status}" data-record="{record}"' in page
        assert f'href="{value["links"]["proof"]}"' in page
    assert page.count("✔</span> Verified") >= passport["summary"]["verified"]
    assert "</span> Not yet verified" in page  # the pending inspection
    summary = passport["summary"]
    assert f"{summary['verified']} of {summary['values']} values verified" in page
    inspection = next(v for v in values if v["record"]["id"] == world.records["inspection"])
    assert f"{inspection['verification']['signature']['memberName']} (oracle key " in page
    block = inspection["verification"]["anchor"]["blockNumber"]
    assert f"block {block}, by Aster Motors" in page
    for secret in SECRETS:
        assert secret not in page


def test_the_bake_curve_is_a_chart_with_axes_units_and_sampling(
    client: TestClient, world: World
) -> None:
    page = page_of(client, world)
    chart = chart_of(page)
    texts = ["".join(t.itertext()) for t in chart.iter(f"{SVG}text")]
    assert "time (s)" in texts and "temperature (°C)" in texts
    assert chart.get("role") == "img" and chart.get("aria-labelledby")
    desc = "".join(next(chart.iter(f"{SVG}desc")).itertext())
    assert desc.startswith("3 samples every 0.5 s over 1 s") and "max 120.1 °C" in desc
    (line,) = chart.iter(f"{SVG}polyline")
    assert len(line.get("points", "").split()) == 3
    assert "The data file's SHA-256 matches the anchored record." in page
    curve = world.records["bake_curve"]
    assert f'href="/api/v1/records/{curve}/blobs/curve_blob"' in page
    assert client.get(f"/api/v1/records/{curve}/blobs/curve_blob").status_code == 200


def test_inspection_history_newest_first_and_the_supply_chain_with_why_unverified(
    client: TestClient, world: World
) -> None:
    page = page_of(client, world)
    history = page[page.index('id="inspections-heading"') : page.index('id="materials-heading"')]
    assert '<ol class="values" reversed>' in history  # newest first
    assert "internal resistance mohm" in history and "capacity ah" in history
    assert "50.2 Ah" in history and ">pass</span>" in history
    supply = page[page.index('id="supply-chain"') :]
    assert "Owner: Borealis Cells (supplier)" in supply
    assert "Owner: Cobalt Separators (supplier)" in supply
    assert "unverified: Cobalt Separators&#39;s node at http://127.0.0.1:" in supply
    assert "did not answer" in supply
    assert re.search(r"GTIN 04012345000016.*?✔</span> Verified", supply, re.S)
    materials = page[page.index('id="materials-heading"') : page.index('id="carbon-heading"')]
    assert "Ni fraction" in materials and "by Borealis Cells" in materials


def test_the_authority_tier_sees_more(client: TestClient, world: World) -> None:
    page = page_of(client, world, "authority")
    assert "Access: authority" in page and "Supply-chain due diligence" in page
    assert "Genealogy records" in page and "bake temp" in page
    assert "Supply-chain due diligence" not in page_of(client, world)


def test_every_value_is_escaped(world: World) -> None:
    hostile = '<img src=x onerror="alert(1)">&'
    app = world.aster_app(products={GTIN_A: {"name": hostile, "description": "<b>bold</b>"}})
    with TestClient(app) as client:
        page = page_of(client, world)
    assert hostile not in page and "<b>bold</b>" not in page
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&amp;" in page


def passport(curve: dict[str, Any] | None = None, **value: Any) -> dict[str, Any]:
    entry = {
        "label": "bake temperature curve",
        "value": {"curve_blob": "ab" * 32, "sampling_ms": 500},
        "unit": None,
        "details": {},
        "subject": "urn:x",
        "observedAt": None,
        "source": {"member": "0xOWN", "name": "Aster"},
        "record": {"id": "0x01", "type": "bake_curve"},
        "verification": {"status": "verified", "detail": "", "anchor": None, "signature": None},
        "links": {"proof": "/p", "attestation": None, "blobs": {"curve_blob": "/b"}},
        **value,
    }
    return {"tier": "public", "aspects": {"process": [entry]}, "supplyChain": []}


def render(document: dict[str, Any], blob: bytes | Exception) -> str:
    def read(_: str) -> bytes:
        if isinstance(blob, Exception):
            raise blob
        return blob

    page = ConsumerPage(Html(), blobs=lambda: read, own=lambda: "0xown")
    return page(document, PageContext("/01/x", "public", "/01/x?linkType=all"))


def test_a_curve_that_cannot_be_drawn_is_said_so_not_a_server_error() -> None:
    missing = render(passport(), StoreError("gone"))
    assert "the curve&#39;s data is not available" in missing and "<svg" not in missing
    broken = render(passport(), b'{"t_s": [0, 1], "c": [1]}')
    assert "the curve cannot be drawn: 2 times but 1 values" in broken
    other = render(passport(source={"member": "0xOTHER", "name": "B"}), b"[]")
    assert "kept by its owner" in other
    drawn = render(passport(), b"[120, 121, 122]")
    assert '<svg class="chart"' in drawn


@pytest.mark.parametrize(
    ("data", "sampling_ms", "count", "unit"),
    [
        (b'{"t_s": [0, 0.5, 1], "c": [1, 2, 3]}', None, 3, "°C"),
        (b'{"samples": [[0, 1], [2, 3]], "unit": "FAH"}', None, 2, "°F"),
        (b"[1, 2, 3, 4]", 500, 4, "°C"),
        (b"[[0, 1], [1, 2]]", None, 2, "°C"),
        (b"t_s,celsius\n0,118.5\n0.5,119\n1,120\n", None, 3, "°C"),
    ],
)
def test_curve_shapes(data: bytes, sampling_ms: int | None, count: int, unit: str) -> None:
    curve = parse_curve(data, sampling_ms)
    assert len(curve.values) == count and curve.unit == unit


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"{", "not valid JSON"),
        (b'{"t_s": [0, 1]}', "names no value series"),
        (b"[1, 2]", "no sampling interval"),
        (b'{"t_s": [0, 0], "c": [1, 2]}', "do not increase"),
        (b'{"t_s": [0, 1], "c": [1, "x"]}', "not a number"),
        (b"0,1\n1,nan\n", "not finite"),
        (b'{"t_s": [0], "c": [1]}', "at least two"),
        (b"a,b\n1,x\n", "not two numbers"),
    ],
)
def test_bad_curves_say_why(data: bytes, words: str) -> None:
    with pytest.raises(CurveError, match=words):
        parse_curve(data)


def test_a_long_curve_keeps_its_peaks_in_few_points() -> None:
    values = [120.0] * 20_000
    values[12_345] = 180.0  # one spike
    curve = parse_curve(json.dumps(values).encode(), 500)
    svg = curve_svg(curve, "long <curve>")
    root = ET.fromstring(svg)
    (line,) = root.iter(f"{SVG}polyline")
    points = line.get("points", "").split()
    assert len(points) <= 1200
    assert "long &lt;curve&gt;" in svg
    ys = [float(p.split(",")[1]) for p in points]
    assert min(ys) < max(ys)  # the spike is drawn
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert "time (min)" in texts
