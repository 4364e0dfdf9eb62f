"""The product page in Chromium: a skirt's size run on two twins, from the shop API.

A real server process runs over a copy of `tests/product_fixtures.py`'s data (looks, levels
and posters already built, so the page streams and nothing drapes). The page shows the look
coarse level first, then a sharper one (its network log); the body chooser and the size
switcher load other looks (other URLs; S and XL of different depths); the disclosure and the
credit are on screen; the fit map shows its legend in percent; `<model-viewer>` carries AR
(`ar-modes`, `ar-scale="fixed"`, `ios-src` = the USDZ) and `getDimensions()` gives the twin's
height within 1 cm; on a 390 × 844 phone the figure fills most of the stage. Screenshots land
in `tests/_out/product/`.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image

from tests.browser_harness import RunningServer, page_problems, watch_page
from tests.product_fixtures import SKU, product_data, start_product_server  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]
OUT = Path(__file__).resolve().parent / "_out" / "product"
BACKGROUND_RGB = (0xF4, 0xF2, 0xEF)
READY = "() => { const s = window.spatialTwinProduct; return !!s && (s.ready || !!s.error); }"
IDLE = (
    "() => { const s = window.spatialTwinProduct; return !s.loading && s.looksShown.length >= %d; }"
)


@pytest.fixture(scope="module")
def shop_server(product_data, tmp_path_factory):  # noqa: F811
    template, ids = product_data
    data = tmp_path_factory.mktemp("product-page") / "data"
    shutil.copytree(template, data)
    with start_product_server(data) as server:
        server.ids = ids  # type: ignore[attr-defined]
        yield server


def product_url(server: RunningServer, query: str = "") -> str:
    return server.url(f"/web/product.html?sku={quote(SKU, safe='')}{query}")


def open_page(page: Any, url: str) -> dict[str, Any]:
    page.goto(url)
    page.wait_for_function(READY, timeout=120_000)
    state = page.evaluate("() => JSON.parse(JSON.stringify(window.spatialTwinProduct))")
    assert state["error"] is None, state["error"]
    return state


def state_of(page: Any) -> dict[str, Any]:
    return page.evaluate("() => JSON.parse(JSON.stringify(window.spatialTwinProduct))")


def drawn_rows(png: bytes) -> tuple[int, int]:
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    drawn = np.abs(image - np.array(BACKGROUND_RGB)).max(axis=2) > 24
    rows = np.flatnonzero(drawn.any(axis=1))
    assert rows.size, "nothing drawn"
    return int(rows[-1] - rows[0] + 1), image.shape[0]


def test_the_look_streams_coarse_first_and_the_choosers_change_it(
    shop_server: RunningServer, browser_page: Any
) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    page = browser_page
    levels: list[str] = []
    page.on("request", lambda r: levels.append(r.url) if "/api/v1/lod/" in r.url else None)
    ava, leo = shop_server.ids["twins"]["ava"], shop_server.ids["twins"]["leo"]  # type: ignore[attr-defined]
    state = open_page(page, product_url(shop_server, f"&twin={ava}&size=S"))
    first = state["looksShown"][0]
    assert (first["twin"], first["size"]) == (ava, "S")
    # Coarse level first, then a sharper one, both fetched in that order.
    assert len(state["levelUrls"]) == 2 and state["shown"][0] > state["shown"][1]
    fetched = [u for u in levels if u.endswith(".glb")]
    assert [shop_server.url(u) for u in state["levelUrls"]] == fetched[:2]
    # The disclosure and the model's credit are on screen.
    disclosure = page.locator("#disclosure")
    assert disclosure.is_visible() and "Digital twin of Ava Sample" in disclosure.inner_text()
    credit = page.locator("#credit")
    assert credit.is_visible()
    assert credit.inner_text() == "Model: Ava Sample · Agency: SpatialTwin Demo Agency"
    assert page.locator("#twin-chooser button").all_inner_texts() == ["170 cm", "182 cm"]
    assert page.locator("#size-chooser button").all_inner_texts() == ["S", "XL"]
    page.screenshot(path=str(OUT / "product_ava_S.png"))

    page.locator('#size-chooser button[data-value="XL"]').click()
    page.wait_for_function(IDLE % 2, timeout=240_000)
    assert state_of(page)["error"] is None, state_of(page)["error"]
    page.locator(f'#twin-chooser button[data-value="{leo}"]').click()
    page.wait_for_function(IDLE % 3, timeout=240_000)
    state = state_of(page)
    assert state["error"] is None, state["error"]
    small, large, tall = state["looksShown"]
    assert (large["twin"], large["size"], tall["twin"], tall["size"]) == (ava, "XL", leo, "XL")
    assert len({small["look"], large["look"], tall["look"]}) == 3
    assert len({small["firstLevel"], large["firstLevel"], tall["firstLevel"]}) == 3
    depth = {
        k: v["boundingBox"]["max"][2] - v["boundingBox"]["min"][2]
        for k, v in (("S", small), ("XL", large))
    }
    assert depth["XL"] > depth["S"] + 0.01, depth
    height = {
        k: v["boundingBox"]["max"][1] - v["boundingBox"]["min"][1]
        for k, v in (("ava", large), ("leo", tall))
    }
    assert height["leo"] - height["ava"] == pytest.approx(0.12, abs=0.01)
    assert "Leo Sample" in page.locator("#credit").inner_text()
    # The fit map: its legend in percent strain.
    page.locator('.fit-mode[data-mode="strain"]').click()
    page.wait_for_function("() => window.spatialTwinProduct.fitMap.loaded === true", timeout=60_000)
    assert "Stretch (%)" in page.locator(".fit-legend").inner_text()
    page.screenshot(path=str(OUT / "product_leo_XL_strain.png"))
    assert page_problems(page) == []


def test_model_viewer_mode_carries_ar_at_true_scale(
    shop_server: RunningServer, browser_page: Any
) -> None:
    page = browser_page
    ava = shop_server.ids["twins"]["ava"]  # type: ignore[attr-defined]
    state = open_page(page, product_url(shop_server, f"&twin={ava}&size=S&viewer=model-viewer"))
    mv = page.locator("model-viewer")
    assert mv.get_attribute("ar") == ""
    assert mv.get_attribute("ar-modes") == "webxr scene-viewer quick-look"
    assert mv.get_attribute("ar-scale") == "fixed"
    assert mv.get_attribute("ios-src") == state["ar"]["usdz"] and state["ar"]["usdz"].endswith(
        ".usdz"
    )
    assert mv.get_attribute("poster").endswith(".png")
    status, _, body = shop_server.get(state["ar"]["usdz"])
    assert status == 200 and len(body) == state["ar"]["usdzBytes"]
    dims = page.evaluate(
        "() => { const d = document.querySelector('model-viewer').getDimensions();"
        " return [d.x, d.y, d.z]; }"
    )
    assert dims[1] == pytest.approx(1.70, abs=0.01)  # Ava is 1.70 m tall, shown at 1:1
    assert page.locator("#disclosure").is_visible() and page.locator("#credit").is_visible()
    assert page_problems(page) == []


def test_on_a_phone_the_figure_fills_the_stage(shop_server: RunningServer, chromium: Any) -> None:
    context = chromium.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page = watch_page(context.new_page())
    try:
        ava = shop_server.ids["twins"]["ava"]  # type: ignore[attr-defined]
        open_page(page, product_url(shop_server, f"&twin={ava}&size=XL"))
        page.screenshot(path=str(OUT / "product_phone_390x844.png"), full_page=True)
        box = page.locator("#stage").bounding_box()
        assert box["width"] == pytest.approx(390, abs=1)
        assert box["height"] >= 0.6 * 844  # the stage keeps most of the screen
        rows, canvas_rows = drawn_rows(page.locator("#stage canvas").screenshot())
        # The product framing keeps 1.2 × the figure's height in view.
        assert rows / canvas_rows == pytest.approx(1 / 1.2, abs=0.05)
        assert rows / 2 >= 0.45 * 844  # the figure is at least 45 % of the phone's height (CSS px)
        for locator in ("#disclosure", "#credit", "#size-chooser", "#twin-chooser"):
            assert page.locator(locator).is_visible(), locator
        assert page_problems(page) == []
    finally:
        context.close()
