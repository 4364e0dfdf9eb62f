"""The merchandiser page uploads a real garment, follows its processing and previews it on a twin.

A real server and Debian chromium: the MakeHuman casual suit (an OBJ in decimetres) goes through
the page's form; the page must show the progress reaching 100 %, the garment record the API made
(units detected as decimetres, 1.285 m tall once in metres) and a 3D preview on the sample twin.
A corrupt file must come back as the API's own error message and code on the page.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.browser_harness import RunningServer, page_problems

pytestmark = pytest.mark.browser

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CASUAL_SUIT = SHARED_DATA / "garments" / "female_casualsuit01.obj"
# MakeHuman's casual suit is modelled in decimetres: 12.85 units tall.
CASUAL_SUIT_HEIGHT_M = 1.285
PAGE = "/web/merchandiser.html"
UPLOAD_TIMEOUT_S = 240.0  # ingest (weld, remesh, place) runs on 2 cores under a full test suite


def page_state(page: Any) -> dict[str, Any]:
    return page.evaluate("() => JSON.parse(JSON.stringify(window.spatialTwinMerchandiser))")


def open_page(page: Any, server: RunningServer) -> dict[str, Any]:
    page.goto(server.url(PAGE))
    page.wait_for_function(
        "() => { const s = window.spatialTwinMerchandiser;"
        " return !!s && (s.ready || s.lastError !== null); }",
        timeout=60_000,
    )
    state = page_state(page)
    assert state["lastError"] is None, state["lastError"]
    assert state["ready"] is True
    return state


def fill_form(page: Any, file: Path, *, sku: str, category: str, fabric: str) -> None:
    page.set_input_files("#garment-file", str(file))
    page.fill("#garment-sku", sku)
    page.fill("#garment-name", f"Test garment {sku}")
    page.select_option("#garment-category", category)
    page.fill("#garment-size", "M")
    page.select_option("#garment-fabric", fabric)
    page.select_option("#garment-units", "auto")


def record_progress(page: Any) -> None:
    """Keep every percentage the page shows, so the test can see the bar move, not just end."""
    page.evaluate(
        """() => {
          window.__progressSeen = [];
          const label = document.getElementById('upload-percent');
          new MutationObserver(() => window.__progressSeen.push(label.textContent))
            .observe(label, {childList: true, characterData: true, subtree: true});
        }"""
    )


@pytest.fixture(scope="module")
def fabric_ids(spatialtwin_server: RunningServer) -> list[str]:
    body = spatialtwin_server.get_json("/api/v1/fabrics")
    fabrics = body["fabrics"] if isinstance(body, dict) else body
    return [f["id"] for f in fabrics]


def test_form_choices_come_from_the_api(
    spatialtwin_server: RunningServer, browser_page: Any, fabric_ids: list[str]
) -> None:
    open_page(browser_page, spatialtwin_server)
    offered = browser_page.eval_on_selector_all(
        "#garment-fabric option", "options => options.map(o => o.value).filter(Boolean)"
    )
    assert offered == fabric_ids
    twins = spatialtwin_server.get_json("/api/v1/twins")["twins"]
    offered_twins = browser_page.eval_on_selector_all(
        "#twin-select option", "options => options.map(o => o.value)"
    )
    assert offered_twins == [t["id"] for t in twins]
    units = browser_page.eval_on_selector_all(
        "#garment-units option", "options => options.map(o => o.value)"
    )
    assert units == ["auto", "m", "dm", "cm", "mm", "in"]
    assert page_problems(browser_page) == []


def test_obj_upload_reaches_100_percent_and_previews_on_a_twin(
    spatialtwin_server: RunningServer, browser_page: Any, fabric_ids: list[str]
) -> None:
    if not CASUAL_SUIT.is_file():
        pytest.skip(f"test data {CASUAL_SUIT} is not beside the repository")
    page = browser_page
    open_page(page, spatialtwin_server)
    sku = f"MH-CASUAL-{int(time.time() * 1000) % 10**8}"
    fabric = "cotton-jersey" if "cotton-jersey" in fabric_ids else fabric_ids[0]
    fill_form(page, CASUAL_SUIT, sku=sku, category="outfit", fabric=fabric)
    record_progress(page)
    page.click("#upload-button")
    page.wait_for_function(
        "() => { const s = window.spatialTwinMerchandiser;"
        " return s.previewLoaded || s.phase === 'failed' || s.lastError !== null; }",
        timeout=UPLOAD_TIMEOUT_S * 1000,
    )
    state = page_state(page)
    assert state["lastError"] is None, state["lastError"]

    # Progress: the bar moved through intermediate values and ended full.
    assert state["phase"] == "done"
    assert state["progress"] == 1
    expect(page.locator("#upload-percent")).to_have_text("100%")
    assert page.eval_on_selector("#upload-progress", "p => p.value") == 100
    seen = [int(text.rstrip("%")) for text in page.evaluate("() => window.__progressSeen")]
    assert any(0 < p < 100 for p in seen), f"progress jumped straight to the end: {seen}"
    assert seen == sorted(seen), f"progress went backwards: {seen}"

    # The record is the API's, shown on the page and listed.
    record = state["lastGarment"]
    assert record["sku"] == sku
    assert record["category"] == "outfit"
    assert record["units"] == "dm"
    assert record["extent_m"][1] == pytest.approx(CASUAL_SUIT_HEIGHT_M, abs=0.01)
    listed = spatialtwin_server.get_json("/api/v1/garments")
    listed = listed["garments"] if isinstance(listed, dict) else listed
    assert record["id"] in [g["id"] for g in listed]
    expect(page.locator(f'.garment-item[data-garment-id="{record["id"]}"]')).to_contain_text(sku)
    expect(page.locator("#detail-units")).to_contain_text("decimetres")
    expect(page.locator("#detail-height")).to_contain_text("1.285 m")

    # The preview is the garment on a twin: taller than the garment alone, standing on y = 0.
    assert state["previewLoaded"] is True
    assert state["twinId"]
    box_min = np.asarray(state["previewBoundingBox"]["min"])
    box_max = np.asarray(state["previewBoundingBox"]["max"])
    assert box_max[1] - box_min[1] > record["extent_m"][1] + 0.1
    assert box_min[1] == pytest.approx(0.0, abs=0.05)
    canvas = page.locator("#viewport canvas").screenshot()
    from io import BytesIO

    from PIL import Image

    pixels = np.asarray(Image.open(BytesIO(canvas)).convert("RGB"))
    assert np.unique(pixels.reshape(-1, 3), axis=0).shape[0] > 200, "preview canvas is blank"
    assert page_problems(page) == []


def test_corrupt_file_shows_the_api_error_message_and_code(
    spatialtwin_server: RunningServer, browser_page: Any, fabric_ids: list[str], tmp_path: Path
) -> None:
    page = browser_page
    open_page(page, spatialtwin_server)
    bad = tmp_path / "bad.glb"
    bad.write_bytes(np.random.default_rng(7).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    fill_form(page, bad, sku="BAD-FILE-1", category="top", fabric=fabric_ids[0])
    with page.expect_response(
        lambda r: r.url.endswith("/api/v1/garments") and r.request.method == "POST"
    ) as answer:
        page.click("#upload-button")
    response = answer.value
    if response.status == 202:
        # Refused while processing: the error is the job's.
        job_url = response.json()["links"]["job"]
        deadline = time.monotonic() + UPLOAD_TIMEOUT_S
        while (job := spatialtwin_server.get_json(job_url))["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline, "job never finished"
            time.sleep(0.2)
        assert job["status"] == "failed"
        error = job["error"]
    else:
        assert 400 <= response.status < 500
        error = json.loads(response.body())["error"]
    assert error["code"] and error["message"]

    page.wait_for_function(
        "() => window.spatialTwinMerchandiser.phase === 'failed'", timeout=60_000
    )
    alert = page.locator("#upload-error")
    expect(alert).to_be_visible()
    expect(page.locator("#upload-error-message")).to_have_text(error["message"])
    expect(page.locator("#upload-error-code")).to_have_text(error["code"])
    state = page_state(page)
    assert state["lastError"]["code"] == error["code"]
    assert state["lastError"]["message"] == error["message"]
    assert state["lastGarment"] is None
    # The only console error allowed is the browser's own note about the 4xx answer.
    assert [p for p in page_problems(page) if "Failed to load resource" not in p] == []
