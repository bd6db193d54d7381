"""The page a notice links to: the code and its QR from the link's fragment, not the server."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from cloud.core.codes import pickup_link, qr_payload
from cloud.services.scan_open import qr_svg
from tests.cloud.api.conftest import BASE_URL
from tests.cloud.db.builders import CAB, register_cabinet

CODE = "42901029"


@pytest.fixture
def registered(engine: Engine) -> None:
    with Session(engine) as session:
        register_cabinet(session, CAB)


def test_the_notice_link_opens_a_page_naming_the_cabinet_without_the_code(
    client: TestClient, registered: None
) -> None:
    link = pickup_link(BASE_URL, CAB, CODE)
    path, fragment = link.removeprefix(BASE_URL).split("#")
    assert fragment == qr_payload(CAB, CODE)  # the code rides where no server sees it
    page = client.get(path)
    assert page.status_code == 200
    assert "Gate 1" in page.text and "1 Road" in page.text
    assert CODE not in page.text
    assert page.headers["cache-control"] == "no-store"


def test_the_qr_is_the_payload_the_cabinet_scanner_accepts(
    client: TestClient, registered: None
) -> None:
    answer = client.post(f"/pickup/{CAB}/qr", json={"payload": qr_payload(CAB, CODE)})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("image/svg+xml")
    assert answer.text == qr_svg(f"LKR1:{CAB}:{CODE}")  # qrcode's drawing of exactly that text


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ("hello", "not a pickup QR"),
        (f"LKR1:{CAB}:12ab5678", "not a pickup QR"),
        (f"LKR1:other-cab:{CODE}", "another cabinet"),
    ],
)
def test_a_payload_that_is_not_this_cabinets_pickup_qr_is_refused(
    client: TestClient, registered: None, payload: str, why: str
) -> None:
    answer = client.post(f"/pickup/{CAB}/qr", json={"payload": payload})
    assert answer.status_code == 422
    assert why in answer.text


def test_an_unknown_cabinet_has_no_pickup_page(client: TestClient, registered: None) -> None:
    assert client.get("/pickup/nowhere").status_code == 404
    qr = client.post("/pickup/nowhere/qr", json={"payload": qr_payload("nowhere", CODE)})
    assert qr.status_code == 404


def test_a_phone_browser_shows_the_code_and_its_qr(tmp_path: Path) -> None:
    """Debian's headless Chromium opens the link as a recipient's phone would."""
    from playwright.sync_api import sync_playwright

    from tests.cabinet.kiosk.browser import CHROMIUM_ARGS, require_chromium
    from tests.cabinet.kiosk.cloud import CloudServer

    chromium = require_chromium()
    server = CloudServer(tmp_path, CAB)
    try:
        link = pickup_link(server.url, CAB, CODE)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 390, "height": 844})
                page.goto(link)
                page.wait_for_selector("#qr svg", timeout=10_000)
                assert page.inner_text("#code") == CODE
                assert page.inner_text("#msg") == ""
                page.goto(f"{server.url}/pickup/{CAB}")  # the link cut short: no fragment
                page.wait_for_function("document.getElementById('msg').textContent !== ''")
                assert "incomplete" in page.inner_text("#msg")
                assert page.inner_text("#code") == ""
            finally:
                browser.close()
    finally:
        server.close()
