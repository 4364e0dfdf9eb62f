"""The browser twin viewer draws the served body at true scale and says honestly what it is.

In the viewer's test mode (`?camera=ortho&pxPerMetre=N`) one metre on the body is exactly N
CSS pixels on screen, so the body's height in a screenshot, divided by N, must be the twin's
`height_m`: a body rescaled anywhere between generator, GLB writer, server and loader fails.
"""

from __future__ import annotations

import io
import json
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser_harness import (
    RunningServer,
    page_problems,
    start_spatialtwin_server,
    wait_for_twin_viewer,
)

pytestmark = pytest.mark.browser

PX_PER_METRE = 300
HEIGHT_TOLERANCE_M = 0.02
FEET_ON_FLOOR_TOLERANCE_M = 0.005
# A pixel differing from the plain background by more than this (0–255, any channel) is body;
# anti-aliased edges fade over ~1 px, which the 2 cm (6 px) tolerance absorbs.
BACKGROUND_THRESHOLD = 24


@pytest.fixture(scope="module")
def sample_twin(spatialtwin_server: RunningServer) -> dict[str, Any]:
    twins = spatialtwin_server.get_json("/api/v1/twins")["twins"]
    assert twins, "the server seeds a sample twin on first start"
    return twins[0]


def body_mask(png: bytes, background_rgb: list[int]) -> np.ndarray:
    """Boolean (rows, cols) image of the pixels that are not the plain test background."""
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    difference = np.abs(image - np.asarray(background_rgb, dtype=np.int16)).max(axis=2)
    return difference > BACKGROUND_THRESHOLD


def test_ortho_view_shows_twin_at_true_scale(
    spatialtwin_server: RunningServer, browser_page: Any, sample_twin: dict[str, Any]
) -> None:
    height_m = sample_twin["measurements"]["height_m"]
    browser_page.goto(
        spatialtwin_server.url(
            f"/?twin={quote(sample_twin['id'])}&camera=ortho&pxPerMetre={PX_PER_METRE}"
        )
    )
    state = wait_for_twin_viewer(browser_page)
    assert state["error"] is None
    assert state["ready"] is True
    assert state["pxPerMetre"] == PX_PER_METRE
    canvas_w, canvas_h = state["canvasSizePx"]
    assert canvas_h > height_m * PX_PER_METRE * 1.1, "viewport too small for the body"

    mask = body_mask(browser_page.locator("#viewport canvas").screenshot(), state["background"])
    assert mask.shape == (canvas_h, canvas_w)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    # A standing adult at 300 px/m covers well over 30k pixels; a blank canvas covers none.
    assert mask.sum() > 30_000
    assert rows[0] > 0 and rows[-1] < canvas_h - 1, "body cropped at the top or bottom"
    assert cols[0] > 0 and cols[-1] < canvas_w - 1, "body cropped at a side"

    drawn_height_m = (rows[-1] - rows[0] + 1) / PX_PER_METRE
    drawn_width_m = (cols[-1] - cols[0] + 1) / PX_PER_METRE
    box_min, box_max = (
        np.asarray(state["boundingBox"]["min"]),
        np.asarray(state["boundingBox"]["max"]),
    )
    assert drawn_height_m == pytest.approx(height_m, abs=HEIGHT_TOLERANCE_M)
    assert drawn_width_m == pytest.approx(box_max[0] - box_min[0], abs=HEIGHT_TOLERANCE_M)
    assert box_max[1] - box_min[1] == pytest.approx(height_m, abs=HEIGHT_TOLERANCE_M)
    assert box_min[1] == pytest.approx(0.0, abs=FEET_ON_FLOOR_TOLERANCE_M)
    assert state["provenance"]["twinId"] == sample_twin["id"]
    assert page_problems(browser_page) == []


def test_page_discloses_twin_and_names_owner(
    spatialtwin_server: RunningServer, browser_page: Any, sample_twin: dict[str, Any]
) -> None:
    browser_page.goto(spatialtwin_server.url(f"/?twin={quote(sample_twin['id'])}"))
    state = wait_for_twin_viewer(browser_page)
    assert state["error"] is None

    disclosure = browser_page.locator("#disclosure")
    expect(disclosure).to_be_visible()
    expect(disclosure).to_contain_text(sample_twin["disclosure"])
    details = browser_page.locator("#details")
    expect(details).to_contain_text(sample_twin["owner"]["model"])
    expect(details).to_contain_text(sample_twin["owner"]["agency"])
    expect(details).to_contain_text(sample_twin["license"]["id"])
    selected = browser_page.locator('.twin-item[aria-current="true"]')
    expect(selected).to_have_count(1)
    expect(selected).to_contain_text(sample_twin["name"])
    # The perspective view draws a lit body over the floor grid, not an empty canvas.
    image = np.asarray(
        Image.open(io.BytesIO(browser_page.locator("#viewport canvas").screenshot()))
    )
    assert np.unique(image.reshape(-1, image.shape[-1]), axis=0).shape[0] > 200
    assert page_problems(browser_page) == []


def test_unknown_twin_shows_the_api_error_message(
    spatialtwin_server: RunningServer, browser_page: Any
) -> None:
    status, _, body = spatialtwin_server.get(
        "/api/v1/twins/doesnotexist/body.glb?channel=ecommerce"
    )
    assert status == 404
    message = json.loads(body)["error"]["message"]

    browser_page.goto(spatialtwin_server.url("/?twin=doesnotexist"))
    state = wait_for_twin_viewer(browser_page)

    assert state["ready"] is False
    assert state["error"]["status"] == 404
    assert state["error"]["message"] == message
    expect(browser_page.locator("#viewport-error")).to_be_visible()
    expect(browser_page.locator("#viewport-error-message")).to_have_text(message)
    expect(browser_page.locator("#disclosure")).to_be_hidden()


def test_choosing_another_twin_loads_its_body(
    spatialtwin_server: RunningServer, browser_page: Any
) -> None:
    twins = spatialtwin_server.get_json("/api/v1/twins")["twins"]
    if len(twins) < 2:
        pytest.skip("the seeded store has a single twin")
    first, second = twins[0], twins[1]
    browser_page.goto(
        spatialtwin_server.url(f"/?twin={quote(first['id'])}&camera=ortho&pxPerMetre=200")
    )
    assert wait_for_twin_viewer(browser_page)["twinId"] == first["id"]

    browser_page.locator(f'.twin-item[data-twin-id="{second["id"]}"]').click()
    browser_page.wait_for_function(
        "id => window.spatialTwinViewer.twinId === id && window.spatialTwinViewer.ready",
        arg=second["id"],
    )
    state = wait_for_twin_viewer(browser_page)

    box_min, box_max = state["boundingBox"]["min"], state["boundingBox"]["max"]
    assert box_max[1] - box_min[1] == pytest.approx(
        second["measurements"]["height_m"], abs=HEIGHT_TOLERANCE_M
    )
    assert f"twin={second['id']}" in browser_page.url
    expect(browser_page.locator("#disclosure")).to_contain_text(second["disclosure"])
    assert page_problems(browser_page) == []


REVOKED_TWIN = {
    "id": "twn_revoked_viewer_test",
    "name": "Revoked viewer test twin",
    "measurements": {
        "height_m": 1.64,
        "chest_m": 0.88,
        "waist_m": 0.7,
        "hips_m": 0.95,
        "inseam_m": 0.75,
        "shoulder_m": 0.36,
    },
    "owner": {"model": "Test Model", "agency": "Test Agency"},
    "consent": {
        "given_by": "Test Model",
        "given_at": "2026-01-01T00:00:00+00:00",
        "scope": "Automated tests of the twin viewer.",
    },
    "license": {
        "id": "lic_viewer_test",
        "channels": ["ecommerce"],
        "valid_from": "2026-01-01T00:00:00+00:00",
        "valid_until": None,
    },
}


def _send_json(server: RunningServer, method: str, path: str, payload: Any) -> int:
    request = urllib.request.Request(
        server.url(path),
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", **server.auth_headers()},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status


def test_revoked_twin_shows_why_it_is_withdrawn(browser_page: Any, tmp_path: Path) -> None:
    # Its own unseeded server: revoking is irreversible and must not leak into other tests.
    with start_spatialtwin_server(tmp_path / "data", extra_args=("--no-seed",)) as server:
        # A twin from measurements is made by a job (202); wait until it is stored.
        assert _send_json(server, "POST", "/api/v1/twins", REVOKED_TWIN) == 202
        twin_id = REVOKED_TWIN["id"]
        deadline = time.monotonic() + 120
        while server.get(f"/api/v1/twins/{twin_id}")[0] != 200:
            assert time.monotonic() < deadline, "the twin was not made"
            time.sleep(0.2)
        revoke = {"revoked": True}
        assert _send_json(server, "PATCH", f"/api/v1/twins/{twin_id}/license", revoke) == 200
        status, _, body = server.get(f"/api/v1/twins/{twin_id}/body.glb?channel=ecommerce")
        assert status == 410
        message = json.loads(body)["error"]["message"]

        browser_page.goto(server.url(f"/?twin={twin_id}"))
        state = wait_for_twin_viewer(browser_page)

    assert state["ready"] is False
    assert state["error"]["status"] == 410
    expect(browser_page.locator("#viewport-error-message")).to_have_text(message)
    expect(browser_page.locator(f'.twin-item[data-twin-id="{twin_id}"]')).to_contain_text("Revoked")
    expect(browser_page.locator("#details")).to_contain_text("Revoked")
