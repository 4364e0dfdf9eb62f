"""Every page draws on the one shared stage (web_client/lib/stage.js) under one import map.

The three pages — the twin viewer (`/`), the merchandiser and the product page — are glue over
`web_client/lib/`: the three.js scene set-up (renderer, lights, environment, floor, orbit
controls, true-scale framing) exists once, in `lib/stage.js`, and the import map once, in
`lib/importmap.js`. The source checks fail when a page grows its own copy again; the browser
checks open each page on a live server and require that the page's module graph fetched
`lib/stage.js` (and the API client and DOM helpers), that its canvas is the one the shared stage
made, and that the canvas shows the body, not just the background. Screenshots are kept in
`tests/_out/stage_*.png` for a person to look at.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.browser_harness import RunningServer, page_problems

WEB = Path(__file__).resolve().parents[1] / "web_client"
OUT = Path(__file__).resolve().parent / "_out"
PAGES_HTML = ("index.html", "merchandiser.html", "product.html", "mirror.html", "watch.html")
PAGES_JS = ("twin-viewer.js", "merchandiser.js", "product.js", "mirror.js", "watch.js")
SHARED_MODULES = ("/web/lib/stage.js", "/web/lib/api.js", "/web/lib/dom.js", "/web/lib/fit-map.js")
# Three.js set-up that belongs to the stage alone.
STAGE_ONLY = (
    r"new THREE\.WebGLRenderer",
    r"OrbitControls",
    r"new THREE\.PMREMGenerator",
    r"RoomEnvironment",
    r"new THREE\.GridHelper",
    r"new THREE\.(Perspective|Orthographic)Camera",
    r"new GLTFLoader",
)
# A pixel differing from the stage's background by more than this (any channel, 0–255) is drawn.
BACKGROUND_THRESHOLD = 24
PAGE_TIMEOUT_MS = 240_000  # the product page's first request builds the LOD levels
AVA = "twn_sample_ava"
SAMPLE_TEE = "gar_sample_tshirt"


# ---------------------------------------------------------------------------------------------
# Source: one stage, one import map.


def test_only_the_stage_sets_up_three_js() -> None:
    for js in sorted(WEB.rglob("*.js")):
        if js.relative_to(WEB).as_posix() == "lib/stage.js":
            continue
        text = js.read_text()
        for pattern in STAGE_ONLY:
            assert not re.search(pattern, text), f"{js.name} sets up three.js itself: {pattern}"
    stage = (WEB / "lib" / "stage.js").read_text()
    for pattern in STAGE_ONLY:
        assert re.search(pattern, stage), pattern


def test_every_page_imports_the_shared_stage_and_api() -> None:
    for name in PAGES_JS:
        text = (WEB / name).read_text()
        assert "from './lib/stage.js'" in text, name
        assert "from './lib/api.js'" in text, name
        assert "from 'three'" not in text, f"{name} imports three.js past the stage"


def test_every_page_has_the_one_shared_import_map() -> None:
    for name in PAGES_HTML:
        html = (WEB / name).read_text()
        assert 'type="importmap"' not in html, f"{name} carries an import map of its own"
        tags = re.findall(r"<script[^>]*>", html)
        shared = [i for i, t in enumerate(tags) if 'src="/web/lib/importmap.js"' in t]
        modules = [i for i, t in enumerate(tags) if 'type="module"' in t]
        assert len(shared) == 1, name
        # The map must be in place before any module is resolved (modulepreloads included).
        assert all(shared[0] < i for i in modules), name
        head = html[: html.index("</head>")]
        first_preload = head.find('rel="modulepreload"')
        assert first_preload == -1 or head.index("/web/lib/importmap.js") < first_preload, name


# ---------------------------------------------------------------------------------------------
# Browser: each page loads the stage and draws the body.


@dataclass(frozen=True)
class Page:
    name: str
    path: str
    ready: str  # a JS expression true once the page has drawn (or failed)
    state: str  # the page's state object, for the failure message
    canvas: str
    view: str  # the stage view the page uses (data-stage on the canvas)
    background: tuple[int, int, int]  # sRGB of that view's background
    # Share of canvas pixels that must differ from the background: the sample twin covers
    # 0.13-0.17 of each page's canvas; the studio's floor grid alone stays well below.
    min_drawn_share: float


PAGES = (
    Page(
        "viewer",
        f"/?twin={AVA}",
        "(s => !!s && (s.ready || s.error !== null))(window.spatialTwinViewer)",
        "window.spatialTwinViewer",
        "#viewport canvas",
        "studio",
        (0xEC, 0xEF, 0xF3),
        0.07,
    ),
    Page(
        "merchandiser",
        "/web/merchandiser.html",
        "(s => !!s && (s.previewLoaded || s.lastError !== null))(window.spatialTwinMerchandiser)",
        "window.spatialTwinMerchandiser",
        "#viewport canvas",
        "studio",
        (0xEC, 0xEF, 0xF3),
        0.07,
    ),
    Page(
        "product",
        f"/web/product.html?twin={AVA}",
        "(s => !!s && (s.ready || !!s.error))(window.spatialTwinProduct)",
        "window.spatialTwinProduct",
        "#stage canvas",
        "product",
        (0xF4, 0xF2, 0xEF),
        0.07,
    ),
)


def open_page(page: Any, server: RunningServer, spec: Page) -> None:
    page.goto(server.url(spec.path))
    if spec.name == "merchandiser":
        # The preview of the seeded sample T-shirt on the sample twin.
        page.wait_for_function(
            "() => window.spatialTwinMerchandiser?.ready === true", timeout=60_000
        )
        page.select_option("#twin-select", AVA)
        page.locator(f'.garment-item[data-garment-id="{SAMPLE_TEE}"]').click()
    page.wait_for_function(f"() => {spec.ready}", timeout=PAGE_TIMEOUT_MS)
    state = page.evaluate(f"() => JSON.parse(JSON.stringify({spec.state}))")
    assert state.get("error") is None and state.get("lastError") is None, state


@pytest.mark.browser
@pytest.mark.parametrize("spec", PAGES, ids=[p.name for p in PAGES])
def test_page_loads_the_shared_stage_and_draws_the_body(
    spatialtwin_server: RunningServer, browser_page: Any, spec: Page
) -> None:
    open_page(browser_page, spatialtwin_server, spec)

    # The module graph: the page fetched the shared stage, API client and DOM helpers.
    fetched = browser_page.evaluate(
        "() => performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname)"
    )
    for module in SHARED_MODULES:
        assert module in fetched, (module, sorted(set(fetched)))
    # One import map, the shared one, and bare `three` resolved through it.
    maps = browser_page.evaluate(
        "() => [...document.querySelectorAll('script[type=importmap]')]"
        ".map((s) => JSON.parse(s.textContent))"
    )
    assert len(maps) == 1
    assert maps[0]["imports"]["three"] == "/vendor/three/build/three.module.min.js"
    assert "/vendor/three/build/three.module.min.js" in fetched
    assert "/vendor/three/build/three.module.js" not in fetched

    # The page has one canvas, and it is the one the shared stage made.
    canvases = browser_page.locator("canvas")
    assert canvases.count() == 1
    assert browser_page.locator(spec.canvas).get_attribute("data-stage") == spec.view

    # The canvas draws the body, not just the background.
    png = browser_page.locator(spec.canvas).screenshot()
    OUT.mkdir(exist_ok=True)
    (OUT / f"stage_{spec.name}.png").write_bytes(png)
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    drawn = np.abs(rgb - np.array(spec.background)).max(axis=2) > BACKGROUND_THRESHOLD
    assert drawn.mean() > spec.min_drawn_share, f"{spec.name}: {drawn.mean():.4f} drawn"
    # ... standing upright in the middle of the canvas: taller than wide (arms in an A-pose
    # span ~0.6 of the height), centred horizontally.
    rows = np.flatnonzero(drawn.any(axis=1))
    cols = np.flatnonzero(drawn.mean(axis=0) > 0.05)  # columns the figure covers, not grid lines
    assert rows.size and cols.size
    assert rows[-1] - rows[0] > 1.3 * (cols[-1] - cols[0]), (
        spec.name,
        rows[[0, -1]],
        cols[[0, -1]],
    )
    assert (cols[0] + cols[-1]) / 2 / rgb.shape[1] == pytest.approx(0.5, abs=0.1)
    assert page_problems(browser_page) == []
