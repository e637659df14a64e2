"""The pages in headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright) against
real uvicorn servers on free loopback ports: the consumer page on a phone, without JavaScript;
the explorer's proof checker (a real bundle, a forged one); a decision's graph; a discipline
submitted in the supplier portal reaching the chain.

Screenshots go to ``$QNODE_TEST_ARTIFACTS/pages`` when that is set, else to a pytest temporary
directory; the directory is printed. Without Chromium (or the playwright package) the tests are
skipped, except under ``CI=true``, where they fail. One browser for the module.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from node.chain.localnode import free_port
from tests.api.pages_world import (
    AUDITOR_TOKEN,
    PORTAL_TOKEN,
    PagesWorld,
    build_pages_world,
    forged,
)
from tests.api.world import World

CHROMIUM_ENV = "QNODE_TEST_CHROMIUM"
ARTIFACTS_ENV = "QNODE_TEST_ARTIFACTS"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True}
TIMEOUT_MS = 15_000


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: browser tests must not be skipped)")
    pytest.skip(reason)


def chromium_path() -> str | None:
    for candidate in (os.environ.get(CHROMIUM_ENV), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        _skip_or_fail(f"no chromium at /usr/bin/chromium, on PATH or in ${CHROMIUM_ENV}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("the playwright package is not installed")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    configured = os.environ.get(ARTIFACTS_ENV)
    directory = (
        Path(configured) / "pages" if configured else tmp_path_factory.mktemp("page-screenshots")
    )
    directory.mkdir(parents=True, exist_ok=True)
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\npage screenshots: {directory}")
    return directory


class Served:
    """An app on a free loopback port, served by uvicorn in a thread."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PagesWorld]:
    root = tmp_path_factory.mktemp("browser-pages")
    # In a thread of its own: the world runs asyncio, and Playwright's loop runs in this one.
    with ThreadPoolExecutor(1) as pool:
        built = pool.submit(build_pages_world, root).result()
    yield built
    built.close()


@pytest.fixture(scope="module")
def aster_explorer(pages: PagesWorld) -> Iterator[Served]:
    served = Served(pages.aster_app())
    yield served
    served.stop()


@pytest.fixture(scope="module")
def borealis_portal(pages: PagesWorld) -> Iterator[Served]:
    served = Served(pages.borealis_app())
    yield served
    served.stop()


def sign_in(page: Any, base: str, area: str, token: str) -> None:
    page.goto(f"{base}/{area}")
    assert f"/{area}/login" in page.url
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/{area}")


def test_the_consumer_page_on_a_phone_without_javascript(
    browser: Any, world: World, artifacts: Path
) -> None:
    served = Served(world.aster_app())
    context = browser.new_context(java_script_enabled=False, **PHONE)
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        response = page.goto(served.url + world.item_path())
        assert response is not None and response.status == 200
        assert page.locator("h1").inner_text() == "NCM 811 pouch cell"
        assert page.locator("#tier").inner_text() == "Access: public"
        chart = page.locator("svg.chart")
        assert chart.is_visible()
        box = chart.bounding_box()
        assert box is not None and 300 <= box["width"] <= 390  # fills the phone's width
        assert page.locator("svg.chart polyline").count() == 1
        assert page.locator(".badge.verified").count() >= 5
        assert (
            page.locator("[data-status=pending] .badge")
            .first.inner_text()
            .endswith("Not yet verified")
        )
        assert "unverified: Cobalt Separators" in page.locator("#supply-chain").inner_text()
        page.locator("summary").first.click()  # <details> opens without script
        assert page.locator("details[open] a[download]").first.is_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width} px wide on a 390 px phone"
        page.screenshot(path=str(artifacts / "consumer-mobile.png"), full_page=True)
    finally:
        context.close()
        served.stop()


def test_the_proof_checker_with_a_real_and_a_forged_bundle(
    browser: Any, pages: PagesWorld, aster_explorer: Served, artifacts: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        sign_in(page, aster_explorer.url, "explorer", AUDITOR_TOKEN)
        page.goto(aster_explorer.url + "/explorer/proof")
        page.fill("#bundle", json.dumps(pages.bundle, indent=1))
        page.click("#check")
        verdict = page.locator("#verdict")
        assert verdict.get_attribute("data-valid") == "true"
        assert "VALID" in page.locator("#verdict-heading").inner_text()
        page.screenshot(path=str(artifacts / "explorer-proof-valid.png"), full_page=True)
        page.fill("#bundle", forged(pages.bundle))
        page.click("#check")
        assert page.locator("#verdict").get_attribute("data-valid") == "false"
        failed = page.locator("#checks li.fail").first
        assert failed.get_attribute("data-reason") == "record_altered"
        assert "the record does not hash to its leaf" in failed.inner_text()
        page.screenshot(path=str(artifacts / "explorer-proof-forged.png"), full_page=True)
    finally:
        context.close()


def test_the_decision_graph_page(
    browser: Any, pages: PagesWorld, aster_explorer: Served, artifacts: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        sign_in(page, aster_explorer.url, "explorer", AUDITOR_TOKEN)
        page.goto(aster_explorer.url + "/explorer/decisions")
        page.click(f"a[href='/explorer/decisions/{pages.decision.decision_hash}']")
        graph = page.locator("#graph svg")
        assert graph.is_visible()
        assert graph.locator("text=rule incoming-usl").count() >= 1
        box = graph.bounding_box()
        assert box is not None and box["width"] > 400 and box["height"] > 200
        page.screenshot(path=str(artifacts / "explorer-decision.png"), full_page=True)
        page.locator(f"#graph a[href='/explorer/tx/{pages.hold_tx}']").click()
        page.wait_for_url(f"**/explorer/tx/{pages.hold_tx}")
        assert "SupplierQuality.placeHold" in page.locator("#call").inner_text()
    finally:
        context.close()


def test_a_discipline_submitted_in_the_portal_reaches_the_chain(
    browser: Any, pages: PagesWorld, borealis_portal: Served, artifacts: Path, tmp_path: Path
) -> None:
    report = tmp_path / "D0-report.txt"
    report.write_text("D0: suspect lots quarantined, sorting started.\n", encoding="utf-8")
    context = browser.new_context(**PHONE)
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        sign_in(page, borealis_portal.url, "portal", PORTAL_TOKEN)
        assert page.locator("tr.overdue").count() == 1
        page.screenshot(path=str(artifacts / "portal-mobile.png"), full_page=True)
        case = page.locator(f"#case-{pages.held_case}")
        case.locator("input[type=file]").set_input_files(str(report))
        case.locator("button[type=submit]").click()
        page.wait_for_url("**/portal/receipts/0x*")
        receipt = page.locator("#receipt").inner_text()
        assert f"Case {pages.held_case}: D0 is on-chain" in receipt
        tx_hash = page.locator("#tx-hash").inner_text().strip()
        page.screenshot(path=str(artifacts / "portal-receipt.png"), full_page=True)
    finally:
        context.close()
    chain = pages.aster.connection.w3
    assert chain.eth.get_transaction_receipt(tx_hash)["status"] == 1
    assert chain.eth.get_transaction(tx_hash)["from"] == pages.borealis.address
    case_now = pages.aster.corrective_action().case(pages.held_case)
    assert case_now.awaiting_review and int(case_now.discipline) == 0
