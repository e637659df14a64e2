"""The supplier portal over HTTP, on Borealis' own node: its holds, tasks (one overdue) and cases;
a discipline's report reaching the chain signed by the supplier's key; the contract's refusals
as pages; CSRF, uploads and sign-in."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from node.control.actions.tasks import TaskBoard, TaskStatus
from tests.api.pages_world import (
    AUDITOR_TOKEN,
    PORTAL_TOKEN,
    PagesWorld,
    build_pages_world,
    csrf_of,
)
from tests.api.test_pages_explorer import html_page


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PagesWorld]:
    built = build_pages_world(tmp_path_factory.mktemp("portal-pages"))
    yield built
    built.close()


@pytest.fixture
def supplier(pages: PagesWorld) -> Iterator[TestClient]:
    with TestClient(pages.borealis_app(), follow_redirects=False) as client:
        response = client.post("/portal/login", data={"token": PORTAL_TOKEN})
        assert response.status_code == 303 and response.headers["location"] == "/portal"
        yield client


def submit(
    client: TestClient, case_id: int, discipline: int, csrf: str | None = None, **form: object
) -> object:
    if csrf is None:
        csrf = csrf_of(client.get("/portal").text)
    data = {"csrf": csrf, **{k: v for k, v in form.items() if k != "files"}}
    files = form.get("files")
    return client.post(
        f"/portal/cases/{case_id}/disciplines/{discipline}",
        data=data,
        files=files,  # type: ignore[arg-type]
    )


def test_the_portal_needs_its_token(pages: PagesWorld) -> None:
    with TestClient(pages.borealis_app(), follow_redirects=False) as client:
        assert client.get("/portal").headers["location"] == "/portal/login?next=%2Fportal"
        html_page(client.post("/portal/login", data={"token": AUDITOR_TOKEN}), 401)
        html_page(client.post("/portal/cases/1/disciplines/0", data={"csrf": "x"}), 401)
        response = client.post("/portal/login", data={"token": PORTAL_TOKEN})
        cookie = response.headers["set-cookie"]
        assert "Path=/portal" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    with TestClient(pages.aster_app(), follow_redirects=False) as aster:
        assert "serves no supplier portal" in html_page(aster.get("/portal"), 404)
        html_page(aster.post("/portal/login", data={"token": PORTAL_TOKEN}), 404)


def test_holds_tasks_with_deadlines_and_cases_with_their_disciplines(
    supplier: TestClient, pages: PagesWorld
) -> None:
    page = html_page(supplier.get("/portal"))
    assert "Borealis Cells" in page and pages.borealis.address in page
    assert 'id="holds"' in page and "placed by the customer" in page and "Aster Motors" in page
    assert f'<a href="#case-{pages.held_case}">case {pages.held_case}</a>' in page
    assert "1 task overdue." in page
    overdue = f'<tr class="overdue" data-key="supplier_task:{pages.direct_case}:D0">'
    assert overdue in page and "overdue by 1" in page
    assert f'data-key="supplier_task:{pages.held_case}:D0">' in page
    assert re.search(r"due in (9\.9|10\.0) days", page)
    for case_id in (pages.held_case, pages.direct_case):
        assert f'id="case-{case_id}"' in page
        assert f'action="/portal/cases/{case_id}/disciplines/0"' in page
    assert page.count('data-state="to submit"') == 2 and page.count('data-state="not yet"') == 16
    assert "D5 Permanent corrective actions chosen" in page


def test_a_discipline_report_reaches_the_chain_and_closes_its_task(
    supplier: TestClient, pages: PagesWorld
) -> None:
    report = b"D0: lots L1-L5 quarantined; sorting at Borealis from today.\n"
    response = submit(
        supplier, pages.held_case, 0, files={"report_file": ("d0.txt", report, "text/plain")}
    )
    assert response.status_code == 303, getattr(response, "text", "")
    location = response.headers["location"]
    assert location.startswith("/portal/receipts/0x")
    receipt = html_page(supplier.get(location))
    tx_hash = location.rsplit("/", 1)[1]
    digest = "0x" + hashlib.sha256(report).hexdigest()
    assert tx_hash in receipt and digest in receipt
    assert "CorrectiveAction.DisciplineSubmitted" in receipt
    assert f"Case {pages.held_case}: D0 is on-chain" in receipt
    assert ">closed</span>" in receipt
    corrective = pages.aster.corrective_action()
    case = corrective.case(pages.held_case)
    assert case.awaiting_review and int(case.discipline) == 0
    assert corrective.report(pages.held_case, 0) == digest
    sender = pages.aster.connection.w3.eth.get_transaction(tx_hash)["from"]
    assert sender == pages.borealis.address  # signed with the supplier's member key
    assert pages.borealis.store().blobs.get(digest[2:]) == report
    task = TaskBoard(pages.borealis.store()).get(f"supplier_task:{pages.held_case}:D0")
    assert task is not None and task.status is TaskStatus.CLOSED
    page = html_page(supplier.get("/portal"))
    assert 'data-discipline="0" data-state="awaiting review"' in page
    assert "D0 awaits Aster Motors" in page
    again = submit(supplier, pages.held_case, 0, report_text="D0 once more")
    assert "DisciplineAwaitingReview" in html_page(again, 409)
    html_page(supplier.get("/portal/receipts/" + pages.hold_tx), 404)  # not the supplier's


def test_a_text_report_is_kept_as_a_blob_too(supplier: TestClient, pages: PagesWorld) -> None:
    text = "D0 of the directly opened case: burrs removed, 100 % inspection in place."
    response = submit(supplier, pages.direct_case, 0, report_text=text)
    assert response.status_code == 303
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert pages.aster.corrective_action().report(pages.direct_case, 0) == "0x" + digest
    assert pages.borealis.store().blobs.exists(digest)


def test_a_discipline_out_of_order_is_the_contracts_message_as_a_409(
    supplier: TestClient, pages: PagesWorld
) -> None:
    page = html_page(submit(supplier, pages.direct_case, 3, report_text="D3 too early"), 409)
    assert "DisciplineOutOfOrder" in page
    assert "the discipline is not the one the case is at" in page
    html_page(submit(supplier, 999, 0, report_text="no such case"), 404)


def test_forms_without_csrf_empty_too_large_or_ambiguous_are_refused(
    supplier: TestClient, pages: PagesWorld
) -> None:
    case_id = pages.held_case
    path = f"/portal/cases/{case_id}/disciplines/1"
    missing = supplier.post(path, data={"report_text": "D1"})
    assert "lacks its CSRF token" in html_page(missing, 403)
    html_page(submit(supplier, case_id, 1, csrf="not-the-token", report_text="D1"), 403)
    assert "attach D1" in html_page(submit(supplier, case_id, 1, report_text="   "), 422)
    both = submit(
        supplier,
        case_id,
        1,
        report_text="D1",
        files={"report_file": ("d1.txt", b"D1", "text/plain")},
    )
    assert "not both" in html_page(both, 422)
    big = b"x" * (pages.borealis.settings.api.max_upload_bytes + 1)
    too_large = submit(supplier, case_id, 1, files={"report_file": ("big.pdf", big, "x/y")})
    assert "larger than this node accepts" in html_page(too_large, 413)
    html_page(submit(supplier, case_id, 9, report_text="D9"), 400)
    cross = supplier.post(
        path,
        data={"csrf": csrf_of(supplier.get("/portal").text), "report_text": "D1"},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    html_page(cross, 403)
    case = pages.aster.corrective_action().case(case_id)
    assert int(case.discipline) == 0  # none of these reached the chain
