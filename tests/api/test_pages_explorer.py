"""The auditor's explorer pages over HTTP: sign-in and its cookie, every page, the proof checker
(pasted, uploaded, forged, malformed, oversize, without CSRF), the graphs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.api.pages_world import (
    AUDITOR_TOKEN,
    CATHODE,
    CELL,
    REPAIRER_TOKEN,
    PagesWorld,
    build_pages_world,
    csrf_of,
    forged,
)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PagesWorld]:
    built = build_pages_world(tmp_path_factory.mktemp("explorer-pages"))
    yield built
    built.close()


@pytest.fixture
def anonymous(pages: PagesWorld) -> Iterator[TestClient]:
    with TestClient(pages.aster_app(), follow_redirects=False) as client:
        yield client


@pytest.fixture
def auditor(anonymous: TestClient) -> TestClient:
    response = anonymous.post("/explorer/login", data={"token": AUDITOR_TOKEN, "next": ""})
    assert response.status_code == 303, response.text
    return anonymous


def html_page(response: object, status: int = 200) -> str:
    from httpx2 import Response

    assert isinstance(response, Response)
    assert response.status_code == status, response.text[:2000]
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src" not in response.headers["content-security-policy"]
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert '<html lang="en">' in response.text
    return response.text


# -- sign-in ----------------------------------------------------------------------------------


def test_pages_need_a_session_and_send_browsers_to_sign_in(anonymous: TestClient) -> None:
    response = anonymous.get("/explorer/members")
    assert response.status_code == 303
    assert response.headers["location"] == "/explorer/login?next=%2Fexplorer%2Fmembers"
    form = html_page(anonymous.get(response.headers["location"]))
    assert 'name="token"' in form and 'value="/explorer/members"' in form
    html_page(anonymous.post("/explorer/proof", data={"bundle": "{}"}), 401)


def test_sign_in_sets_a_strict_http_only_cookie_and_returns_to_the_page(
    anonymous: TestClient,
) -> None:
    response = anonymous.post(
        "/explorer/login", data={"token": AUDITOR_TOKEN, "next": "/explorer/members"}
    )
    assert response.status_code == 303 and response.headers["location"] == "/explorer/members"
    cookie = response.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/explorer", "Max-Age=28800"):
        assert attribute in cookie
    assert AUDITOR_TOKEN not in cookie  # base64url, not the token in clear
    page = html_page(anonymous.get("/explorer/members"))
    assert "Signed in: auditor" in page and "Aster Motors" in page
    assert anonymous.get("/explorer/members").headers["cache-control"] == "no-store"


def test_behind_an_https_proxy_the_cookie_is_secure(pages: PagesWorld) -> None:
    app = pages.aster_app(public_base_url="https://explorer.aster.example")
    with TestClient(app, follow_redirects=False) as client:
        response = client.post(
            "/explorer/login",
            data={"token": AUDITOR_TOKEN},
            headers={"Origin": "https://explorer.aster.example"},
        )
        assert response.status_code == 303 and "Secure" in response.headers["set-cookie"]


def test_wrong_tokens_and_other_sites_are_refused(anonymous: TestClient) -> None:
    wrong = html_page(anonymous.post("/explorer/login", data={"token": "guess"}), 401)
    assert "not recognised" in wrong and "set-cookie" not in anonymous.cookies
    lower = html_page(anonymous.post("/explorer/login", data={"token": REPAIRER_TOKEN}), 403)
    assert "legitimate_interest token does not open the explorer" in lower
    html_page(anonymous.post("/explorer/login", data={"token": ""}), 401)
    evil = anonymous.post(
        "/explorer/login",
        data={"token": AUDITOR_TOKEN},
        headers={"Origin": "https://evil.example"},
    )
    assert "other site" in html_page(evil, 403)
    outside = anonymous.post(
        "/explorer/login", data={"token": AUDITOR_TOKEN, "next": "//evil.example/x"}
    )
    assert outside.headers["location"] == "/explorer"  # never sent to another site
    assert anonymous.get("/explorer").status_code == 200


def test_an_altered_or_expired_cookie_is_no_session(pages: PagesWorld) -> None:
    def cookie(client: TestClient, value: str) -> None:
        client.cookies.clear()
        client.cookies.set("qnode_explorer", value)

    with TestClient(pages.aster_app(), follow_redirects=False) as client:
        client.post("/explorer/login", data={"token": AUDITOR_TOKEN})
        value = client.cookies["qnode_explorer"]
        cookie(client, value)
        assert client.get("/explorer").status_code == 200
        version, issued, nonce, token, mac = value.split(".")
        cookie(client, ".".join([version, issued, nonce, token, mac[:-2] + "AA"]))
        assert client.get("/explorer").status_code == 303
        cookie(client, ".".join([version, str(int(issued) - 28_801), nonce, token, mac]))
        assert client.get("/explorer").status_code == 303
        cookie(client, "v1.1.2.3")
        assert client.get("/explorer").status_code == 303
    with TestClient(pages.aster_app(tokens=[]), follow_redirects=False) as revoked:
        cookie(revoked, value)
        assert revoked.get("/explorer").status_code == 303  # the token is no longer configured


def test_sign_out_needs_the_csrf_token_and_clears_the_cookie(auditor: TestClient) -> None:
    page = html_page(auditor.get("/explorer"))
    html_page(auditor.post("/explorer/logout", data={}), 403)
    html_page(auditor.post("/explorer/logout", data={"csrf": "x" * 43}), 403)
    out = auditor.post("/explorer/logout", data={"csrf": csrf_of(page)})
    assert out.status_code == 303 and out.headers["location"] == "/explorer/login"
    assert 'qnode_explorer=""' in out.headers["set-cookie"]
    assert auditor.get("/explorer").status_code == 303


# -- chain pages --------------------------------------------------------------------------------


def test_blocks_block_and_transaction_with_its_decoded_call_and_events(
    auditor: TestClient, pages: PagesWorld
) -> None:
    blocks = html_page(auditor.get("/explorer/blocks"))
    head = pages.aster.connection.head_block()
    assert f'href="/explorer/blocks/{head}"' in blocks
    older = html_page(auditor.get(f"/explorer/blocks?before={head}"))
    assert f'href="/explorer/blocks/{head}"' not in older
    tx = html_page(auditor.get(f"/explorer/tx/{pages.hold_tx}"))
    assert "SupplierQuality.placeHold" in tx and "placeHold(address,bytes32)" in tx
    assert "SupplierHeld" in tx and "CaseOpened" in tx  # events of both contracts, decoded
    assert pages.borealis.address in tx
    block_number = pages.aster.connection.w3.eth.get_transaction(pages.hold_tx)["blockNumber"]
    block = html_page(auditor.get(f"/explorer/blocks/{block_number}"))
    assert pages.hold_tx[:10] in block and "success" in block
    assert auditor.get(f"/explorer/search?q={block_number}").headers["location"] == (
        f"/explorer/blocks/{block_number}"
    )
    assert auditor.get(f"/explorer/search?q={pages.hold_tx}").headers["location"] == (
        f"/explorer/tx/{pages.hold_tx}"
    )
    html_page(auditor.get("/explorer/search?q=nonsense"), 404)
    html_page(auditor.get("/explorer/blocks/999999"), 404)
    html_page(auditor.get("/explorer/blocks/not-a-block"), 404)
    html_page(auditor.get("/explorer/tx/0x" + "ab" * 32), 404)
    html_page(auditor.get("/explorer/blocks?before=-1"), 400)


def test_members_anchors_and_a_batch_with_its_records(
    auditor: TestClient, pages: PagesWorld
) -> None:
    members = html_page(auditor.get("/explorer/members"))
    for name in ("Aster Motors", "Borealis Cells", "Cobalt Test Lab"):
        assert name in members
    assert members.count('class="badge active">active</span>') >= 3  # one oracle key each
    anchors = html_page(auditor.get("/explorer/anchors"))
    assert pages.batch_id[:10] in anchors and "Aster Motors" in anchors
    batch = html_page(auditor.get(f"/explorer/batches/{pages.batch_id}"))
    assert "gives the anchored root" in batch
    for record_id in pages.anchored_ids:
        assert record_id in batch
    assert batch.count(">intact<") == len(pages.anchored_ids)
    assert "emp-4711" not in batch  # private fields: only their salted commitment
    html_page(auditor.get("/explorer/batches/0x" + "00" * 32), 404)


# -- the proof checker --------------------------------------------------------------------------


def check(client: TestClient, status: int, **form: str) -> str:
    page = html_page(client.get("/explorer/proof"))
    data = {"csrf": csrf_of(page), **form}
    return html_page(client.post("/explorer/proof", data=data), status)


def test_a_pasted_real_bundle_is_valid_with_every_check(
    auditor: TestClient, pages: PagesWorld
) -> None:
    page = check(auditor, 200, bundle=json.dumps(pages.bundle))
    assert 'data-valid="true"' in page and "VALID" in page and "offline and on-chain" in page
    assert page.count('<li class="pass"') >= 4
    offline = check(auditor, 200, bundle=json.dumps(pages.bundle), offline="on")
    assert "offline only" in offline


def test_an_uploaded_bundle_file_is_checked(auditor: TestClient, pages: PagesWorld) -> None:
    page = html_page(auditor.get("/explorer/proof"))
    response = auditor.post(
        "/explorer/proof",
        data={"csrf": csrf_of(page), "bundle": ""},
        files={"file": ("bundle.json", json.dumps(pages.bundle).encode(), "application/json")},
    )
    assert 'data-valid="true"' in html_page(response)


def test_a_forged_bundle_is_invalid_with_its_reason(auditor: TestClient, pages: PagesWorld) -> None:
    page = check(auditor, 422, bundle=forged(pages.bundle))
    assert 'data-valid="false"' in page and "INVALID" in page
    assert 'data-reason="record_altered"' in page
    assert "the record does not hash to its leaf" in page


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"format": "qnode-proof-v1", "record": {"id": ', "malformed_json"),
        ("[" * 100_000, "malformed_json"),
        ('{"hello": "world"}', "not_a_bundle"),
        ("<script>alert(1)</script>", "malformed_json"),
    ],
)
def test_a_malformed_bundle_is_a_verdict_not_an_error(
    auditor: TestClient, text: str, reason: str
) -> None:
    page = check(auditor, 422, bundle=text)
    assert f'data-reason="{reason}"' in page
    assert "<script>alert(1)</script>" not in page  # echoed escaped


def test_the_checker_refuses_forms_without_csrf_empty_or_too_large(
    auditor: TestClient, pages: PagesWorld
) -> None:
    bundle = json.dumps(pages.bundle)
    missing = html_page(auditor.post("/explorer/proof", data={"bundle": bundle}), 403)
    assert "lacks its CSRF token" in missing
    html_page(auditor.post("/explorer/proof", data={"bundle": bundle, "csrf": "forged"}), 403)
    assert "paste a proof" in check(auditor, 422, bundle="  ")
    huge = "x" * (pages.aster.settings.api.max_upload_bytes + 1)
    page = html_page(auditor.get("/explorer/proof"))
    too_large = auditor.post(
        "/explorer/proof",
        data={"csrf": csrf_of(page)},
        files={"file": ("big.json", huge.encode(), "application/json")},
    )
    assert "larger than this node accepts" in html_page(too_large, 413)
    not_a_form = auditor.post(
        "/explorer/proof", content=bundle, headers={"Content-Type": "application/json"}
    )
    html_page(not_a_form, 415)


# -- graphs ---------------------------------------------------------------------------------------


def svg_texts(svg: str) -> list[str]:
    root = ET.fromstring(svg.encode())
    assert not list(root.iter("{http://www.w3.org/2000/svg}script"))
    return ["".join(e.itertext()) for e in root.iter("{http://www.w3.org/2000/svg}text")]


def test_the_genealogy_of_a_product_is_drawn(auditor: TestClient) -> None:
    page = html_page(auditor.get("/explorer/genealogy", params={"id": CELL}))
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in page and "<?xml" not in page
    assert "Genealogy of" in page and "cathode_coating" in page
    assert 'href="/explorer/genealogy?id=' in page  # a lot opens its own genealogy
    svg = auditor.get("/explorer/genealogy.svg", params={"id": CELL})
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    texts = svg_texts(svg.text)
    assert any("CATH-7" in t for t in texts)
    down = html_page(
        auditor.get("/explorer/genealogy", params={"id": CATHODE, "direction": "downstream"})
    )
    assert "Made from" in down
    html_page(auditor.get("/explorer/genealogy", params={"id": "https://id.gs1.org/01/1"}), 404)
    html_page(auditor.get("/explorer/genealogy", params={"id": CELL, "direction": "sideways"}), 400)
    assert "Draw" in html_page(auditor.get("/explorer/genealogy"))


def test_decisions_and_the_decision_path_drawn_with_its_transaction(
    auditor: TestClient, pages: PagesWorld
) -> None:
    listed = html_page(auditor.get("/explorer/decisions"))
    decision_id = pages.decision.decision_hash
    assert f'href="/explorer/decisions/{decision_id}"' in listed and "incoming-usl" in listed
    page = html_page(auditor.get(f"/explorer/decisions/{decision_id}"))
    assert "Decision path of rule incoming-usl" in page
    assert f'href="/explorer/tx/{pages.hold_tx}"' in page  # the transaction node is a link
    assert page.count(">ok<") >= 5  # every input still hashes as the decision recorded
    assert "SupplierQuality.SupplierHeld" in page
    svg = auditor.get(f"/explorer/decisions/{decision_id}/graph.svg")
    assert any("rule incoming-usl" in t for t in svg_texts(svg.text))
    html_page(auditor.get("/explorer/decisions/0x" + "12" * 32), 404)
    html_page(auditor.get("/explorer/decisions/nonsense"), 404)


def test_the_pages_are_not_in_the_openapi_document(anonymous: TestClient) -> None:
    paths = anonymous.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(("/explorer", "/portal"))]
