"""Looks in the browser: garments drawn in their own textures, the fit map a switch away.

A real server and Debian chromium. A checkerboard-textured skirt made by the test
(`tests/textured_garment.py`) is uploaded and draped on the sample twin Ava under the sample
T-shirt; the twin viewer (`/?look=<id>`) must show the checkerboard, then — after a click on
"Stretch" or "Ease" — the fit-map colours with a legend in % or cm, and the texture again
after "Garment". Screenshots are kept in `tests/_out/` for a person to look at.
"""

from __future__ import annotations

import io
import json
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser_harness import RunningServer, page_problems, start_spatialtwin_server
from tests.textured_garment import SKIRT_META, textured_skirt_glb

pytestmark = pytest.mark.browser

OUT = Path(__file__).resolve().parent / "_out"
AVA = "twn_sample_ava"
TEE = "gar_sample_tshirt"
LOOK_TIMEOUT_S = 600.0  # two garments draped on 2 shared cores


def post_multipart(server: RunningServer, path: str, fields: dict[str, Any]) -> tuple[int, Any]:
    """POST multipart/form-data; a field is a str or (filename, bytes)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        if isinstance(value, tuple):
            filename, data = value
            head = (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            )
        else:
            head = f'Content-Disposition: form-data; name="{name}"\r\n\r\n'
            data = value.encode()
        parts.append(f"--{boundary}\r\n".encode() + head.encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        server.url(path),
        data=body,
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            **server.auth_headers(),
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status, json.loads(response.read())


@pytest.fixture(scope="module")
def look_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A seeded server holding one look: the textured skirt under the sample T-shirt on Ava."""
    data_dir = tmp_path_factory.mktemp("fitmap-server") / "data"
    with start_spatialtwin_server(data_dir) as server:
        status, skirt = post_multipart(
            server,
            "/api/v1/garments",
            {
                "file": ("checker_skirt.glb", textured_skirt_glb().glb),
                "metadata": json.dumps(SKIRT_META),
            },
        )
        assert status == 201, skirt
        status, started = server.post_json(
            "/api/v1/looks", {"twin": AVA, "garments": [skirt["id"], TEE]}
        )
        assert status == 202, started
        deadline = time.monotonic() + LOOK_TIMEOUT_S
        while True:
            job = server.get_json(started["links"]["job"])
            if job["status"] in ("done", "failed"):
                break
            assert time.monotonic() < deadline, job
            time.sleep(0.5)
        assert job["status"] == "done", job
        server.look = job["result"]  # type: ignore[attr-defined]
        server.skirt = skirt  # type: ignore[attr-defined]
        yield server


def open_look(page: Any, server: RunningServer, query: str = "") -> dict[str, Any]:
    page.goto(server.url(f"/?look={server.look['id']}{query}"))  # type: ignore[attr-defined]
    page.wait_for_function(
        "() => { const v = window.spatialTwinViewer;"
        " return !!v && ((v.ready && v.fitMap !== null) || v.error !== null); }",
        timeout=120_000,
    )
    return page.evaluate("() => JSON.parse(JSON.stringify(window.spatialTwinViewer))")


def redraw(page: Any) -> None:
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def canvas_rgb(page: Any, name: str) -> np.ndarray:
    png = page.locator("#viewport canvas").screenshot()
    OUT.mkdir(exist_ok=True)
    (OUT / name).write_bytes(png)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def checker_red(rgb: np.ndarray) -> np.ndarray:
    """Pixels of the checkerboard's dark squares (#b22234 under the stage's lights)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return (r > 80) & (r > 2.2 * g) & (r > 1.8 * b)


def near_colour(rgb: np.ndarray, hex_colour: str, tolerance: int = 60) -> np.ndarray:
    target = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return np.abs(rgb - target).max(axis=2) < tolerance


def test_look_shows_the_garments_in_their_own_textures(
    look_server: RunningServer, browser_page: Any
) -> None:
    state = open_look(browser_page, look_server)
    assert state["error"] is None, state["error"]
    assert state["lookId"] == look_server.look["id"]  # type: ignore[attr-defined]
    assert state["twinId"] == AVA
    fit = state["fitMap"]
    assert fit["available"] is True and fit["mode"] == "garment"
    assert fit["modes"] == ["garment", "strain", "ease"]
    assert fit["garments"] >= 2 and fit["texturedGarments"] >= 1
    # Calibrated so a garment that fits reads mostly neutral.
    assert fit["shares"]["strain"][0] > 0.6
    legend = state["provenance"]["fitMap"]
    assert legend["strain"]["bands"][0]["below"] == pytest.approx(0.03)
    rgb = canvas_rgb(browser_page, "look_textured.png")
    # The checkerboard's red squares are on screen (a few thousand pixels of skirt).
    assert checker_red(rgb).sum() > 1500
    expect(browser_page.locator("#fit-map")).to_be_visible()
    expect(browser_page.locator(".fit-legend")).to_be_hidden()
    expect(browser_page.locator("#details")).to_contain_text("Loaded look")
    assert page_problems(browser_page) == []


def test_fit_map_switch_colours_by_stretch_and_ease_with_a_legend(
    look_server: RunningServer, browser_page: Any
) -> None:
    state = open_look(browser_page, look_server)
    assert state["error"] is None
    # Where the checkerboard's red squares are drawn; the camera stays put between modes.
    squares = checker_red(canvas_rgb(browser_page, "look_before_fitmap.png"))
    assert squares.sum() > 1500

    browser_page.locator('.fit-mode[data-mode="strain"]').click()
    redraw(browser_page)
    state = browser_page.evaluate("() => JSON.parse(JSON.stringify(window.spatialTwinViewer))")
    assert state["fitMap"]["mode"] == "strain"
    legend = browser_page.locator(".fit-legend")
    expect(legend).to_be_visible()
    expect(legend).to_contain_text("Stretch (%)")
    expect(legend).to_contain_text("< 3 %")
    expect(legend).to_contain_text("3–8 %")
    expect(legend).to_contain_text("≥ 8 %")
    rgb = canvas_rgb(browser_page, "look_fitmap_strain.png")
    # The skirt's red squares now read as the fit map: mostly the neutral "relaxed" colour.
    assert checker_red(rgb)[squares].mean() < 0.1
    assert near_colour(rgb, "#d9d4cc")[squares].mean() > 0.6

    browser_page.locator('.fit-mode[data-mode="ease"]').click()
    redraw(browser_page)
    expect(legend).to_contain_text("Ease (cm)")
    expect(browser_page.locator(".fit-legend")).to_contain_text("0.5–3 cm")
    rgb = canvas_rgb(browser_page, "look_fitmap_ease.png")
    # The skirt's flare hangs away from the legs: blue "relaxed"/"loose" ease colours.
    blue = near_colour(rgb, "#3d7fc1", 50) | near_colour(rgb, "#9cc3e4", 40)
    assert blue[squares].mean() > 0.3

    browser_page.locator('.fit-mode[data-mode="garment"]').click()
    redraw(browser_page)
    expect(browser_page.locator(".fit-legend")).to_be_hidden()
    assert checker_red(canvas_rgb(browser_page, "look_after_fitmap.png"))[squares].mean() > 0.9
    assert page_problems(browser_page) == []


def test_fit_parameter_opens_the_look_on_the_fit_map(
    look_server: RunningServer, browser_page: Any
) -> None:
    state = open_look(browser_page, look_server, "&fit=ease")
    assert state["fitMap"]["mode"] == "ease"
    expect(browser_page.locator('.fit-mode[data-mode="ease"]')).to_have_attribute(
        "aria-checked", "true"
    )
    assert page_problems(browser_page) == []


def test_unknown_look_shows_the_api_error(look_server: RunningServer, browser_page: Any) -> None:
    status, _, body = look_server.get("/api/v1/looks/look_nope?channel=ecommerce")
    assert status == 404
    browser_page.goto(look_server.url("/?look=look_nope"))
    browser_page.wait_for_function("() => window.spatialTwinViewer?.error !== null")
    state = browser_page.evaluate("() => JSON.parse(JSON.stringify(window.spatialTwinViewer))")
    assert state["error"]["status"] == 404
    assert state["error"]["message"] == json.loads(body)["error"]["message"]
    expect(browser_page.locator("#viewport-error-message")).to_have_text(state["error"]["message"])


def merchandiser_state(page: Any) -> dict[str, Any]:
    return page.evaluate("() => JSON.parse(JSON.stringify(window.spatialTwinMerchandiser))")


def test_merchandiser_previews_the_texture_and_drapes_to_a_fit_map(
    look_server: RunningServer, browser_page: Any
) -> None:
    skirt_id = look_server.skirt["id"]  # type: ignore[attr-defined]
    page = browser_page
    page.goto(look_server.url("/web/merchandiser.html"))
    page.wait_for_function("() => window.spatialTwinMerchandiser?.ready === true", timeout=60_000)
    page.select_option("#twin-select", AVA)
    page.locator(f'.garment-item[data-garment-id="{skirt_id}"]').click()
    page.wait_for_function("() => window.spatialTwinMerchandiser.previewLoaded", timeout=120_000)
    expect(page.locator("#detail-textures")).to_contain_text("256 × 256 PNG")
    expect(page.locator("#detail-materials")).to_contain_text("checker-cotton")
    squares = checker_red(canvas_rgb(page, "merchandiser_preview_textured.png"))
    assert squares.sum() > 1500  # the placed (undraped) preview shows the checkerboard
    expect(page.locator("#fit-map")).to_be_hidden()  # no fit map before a drape

    page.locator("#drape-button").click()
    page.wait_for_function(
        "() => ['done', 'failed'].includes(window.spatialTwinMerchandiser.look?.status)",
        timeout=LOOK_TIMEOUT_S * 1000,
    )
    state = merchandiser_state(page)
    assert state["look"]["status"] == "done", state["lastError"]
    assert state["fitMap"]["available"] and state["fitMap"]["texturedGarments"] == 1
    squares = checker_red(canvas_rgb(page, "merchandiser_look_textured.png"))
    assert squares.sum() > 1500
    page.locator('.fit-mode[data-mode="strain"]').click()
    redraw(page)
    expect(page.locator(".fit-legend")).to_contain_text("Stretch (%)")
    rgb = canvas_rgb(page, "merchandiser_look_strain.png")
    assert checker_red(rgb)[squares].mean() < 0.1
    assert near_colour(rgb, "#d9d4cc")[squares].mean() > 0.6
    assert merchandiser_state(page)["fitMap"]["mode"] == "strain"
    assert page_problems(page) == []


def test_product_page_streams_the_textured_look_and_loads_the_fit_map_on_demand(
    look_server: RunningServer, browser_page: Any
) -> None:
    look_id = look_server.look["id"]  # type: ignore[attr-defined]
    page = browser_page
    page.goto(look_server.url(f"/web/product.html?look={look_id}"))
    page.wait_for_function(
        "() => { const s = window.spatialTwinProduct; return !!s && (s.ready || s.error); }",
        timeout=300_000,
    )
    state = page.evaluate("() => JSON.parse(JSON.stringify(window.spatialTwinProduct))")
    assert state["error"] is None, state["error"]
    assert state["fitMap"] == {
        "mode": "garment",
        "loaded": False,
        "modes": ["garment", "strain", "ease"],
        "texturedGarments": None,
    }
    canvas = page.locator("#stage canvas")
    png = canvas.screenshot()
    (OUT / "product_look_textured.png").write_bytes(png)
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    squares = checker_red(rgb)
    assert squares.sum() > 1000  # the level keeps the base colour texture

    page.locator('.fit-mode[data-mode="strain"]').click()
    page.wait_for_function("() => window.spatialTwinProduct.fitMap.loaded === true")
    redraw(page)
    state = page.evaluate("() => JSON.parse(JSON.stringify(window.spatialTwinProduct))")
    assert state["fitMap"]["mode"] == "strain" and state["fitMap"]["texturedGarments"] >= 1
    expect(page.locator(".fit-legend")).to_contain_text("Stretch (%)")
    png = canvas.screenshot()
    (OUT / "product_look_strain.png").write_bytes(png)
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    assert checker_red(rgb)[squares].mean() < 0.1
    assert page_problems(page) == []
