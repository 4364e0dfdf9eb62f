"""Browser screenshots of textured MakeHuman outfits worn by twins (issue #6, "Must show").

The MakeHuman outfits in ../shared/data/garments have UVs but no textures. Here each gets one
as a merchandiser would upload it: a zip of the OBJ (with `mtllib`/`usemtl` added), an MTL
whose `map_Kd` names a PNG made here (a blue-on-green check, a woven gingham), and the `.mhclo`
binding it to MakeHuman's base body. The zip goes through the upload path's readers
(`services.authoring.resolve_authoring`, `garment.pipeline.prepare_garment`), is refitted and
draped on a twin, and written as a look GLB by the house writer (`gltf.look_glb.look_to_glb`).
Debian chromium then shows each GLB on the shared web stage (web_client/lib/stage.js under the
one import map) on `tests/web/look_shot.html`, served by a throwaway loopback HTTP server, and
the canvas is kept as a PNG for a person to look at.

Why the pattern is blue and green: neither hue comes near the twin's skin (hue ~28°, pale),
the studio background (near grey) or the floor grid (grey-blue, low saturation), so a pixel's
hue and saturation alone tell garment texture from everything else — and a look that dropped
the texture shows the MTL's white `Kd` instead, with no blue or green at all.

Used by tests/test_outfit_screenshots.py (two outfits on two twins) and by
`bench/garment.py --shots DIR` (all six outfits on both twins).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import threading
import time
import urllib.parse
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from spatialtwin.body.parametric import Measurements, create_twin_body
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.garment.appearance import Appearance
from spatialtwin.garment.fabrics import preset
from spatialtwin.garment.look import LookGarment, drape_look
from spatialtwin.garment.refit import GarmentRefit
from spatialtwin.gltf.look_glb import look_to_glb
from spatialtwin.gltf.template_npz import shipped_template
from spatialtwin.services.authoring import resolve_authoring, stored_authoring
from spatialtwin.services.ingest import prepare_garment
from spatialtwin.services.twins import import_body

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
GARMENTS = SHARED / "garments"
PAGE = "/shot/look_shot.html"
# The bench's "M" twin: 1.70 m, chest 0.90, waist 0.74, hips 0.98, inseam 0.78, shoulder 0.38.
TWIN_170 = Measurements(1.70, 0.90, 0.74, 0.98, 0.78, 0.38)
VIEWPORT = {"width": 640, "height": 900}
SHOT_TIMEOUT_S = 120.0

# The fabric: a gingham of blue bands on a green ground, navy where bands cross (sRGB).
TEXTURE_PX = 512
BAND_PERIOD_PX = 32  # 16 checks across the UV square: ~4 cm checks on MakeHuman's UV layout
BAND_WIDTH_PX = 14
GROUND_RGB = (38, 128, 64)
BAND_RGB = (40, 70, 178)
CROSS_RGB = (26, 38, 110)

# Pixel classes of a screenshot by hue (degrees) and saturation/value (0–1): lit or in shade,
# the fabric keeps its hue; the studio's greys have saturation < 0.15.
BLUE_HUE_DEG = (195.0, 255.0)
GREEN_HUE_DEG = (95.0, 170.0)
PATTERN_MIN_SAT = 0.30
SKIN_HUE_DEG = (5.0, 45.0)
SKIN_SAT = (0.08, 0.55)
SKIN_MIN_VALUE = 0.40
BACKGROUND_THRESHOLD = 24  # any channel, 0–255: a pixel differing more from the background
# What a textured look must show, as shares of the figure's pixels (everything not background,
# the floor shadow included). Measured here: fabric 0.32-0.74, each colour >= 0.09, skin
# 0.12-0.53 (tight outfits show skin where the body comes through; see the report of #6). A
# look without its texture or UVs shows no green at all.
MIN_FIGURE_PX = 40_000  # of 640 x 900: the figure fills a real part of the canvas
MIN_PATTERN_SHARE = 0.20
MIN_COLOUR_SHARE = 0.05  # each of the fabric's two colours: a check, not a flat colour
MIN_SKIN_SHARE = 0.03  # face, hands, feet at least
MIN_BARE_HEAD_SHARE = 0.08  # the fabric starts below the head (~13 % of a body's height)


def fabric_png() -> bytes:
    """The gingham texture, TEXTURE_PX square, as PNG bytes."""
    i = np.arange(TEXTURE_PX) % BAND_PERIOD_PX < BAND_WIDTH_PX
    rows, cols = i[:, None], i[None, :]
    rgb = np.empty((TEXTURE_PX, TEXTURE_PX, 3), dtype=np.uint8)
    rgb[:] = GROUND_RGB
    rgb[rows | cols] = BAND_RGB
    rgb[rows & cols] = CROSS_RGB
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, format="PNG")
    return out.getvalue()


def textured_outfit_zip(outfit: str) -> bytes:
    """The outfit as an upload: OBJ (+ `mtllib`, `usemtl`), MTL with `map_Kd`, PNG, .mhclo.

    The OBJ keeps its name (the .mhclo's `obj_file`) and every vertex line, so the binding's
    vertex count still matches; `Kd 1 1 1` lets the texture alone give the colour.
    """
    obj = (GARMENTS / f"{outfit}.obj").read_bytes()
    mhclo = (GARMENTS / f"{outfit}.mhclo").read_bytes()
    header = f"mtllib {outfit}.mtl\nusemtl {outfit}_fabric\n".encode()
    mtl = (
        f"newmtl {outfit}_fabric\nKa 0 0 0\nKd 1 1 1\nKs 0.04 0.04 0.04\nNs 8\nd 1\n"
        f"map_Kd {outfit}_fabric.png\n"
    ).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{outfit}.obj", header + obj)
        archive.writestr(f"{outfit}.mtl", mtl)
        archive.writestr(f"{outfit}_fabric.png", fabric_png())
        archive.writestr(f"{outfit}.mhclo", mhclo)
    return out.getvalue()


def outfit_garment(outfit: str) -> tuple[LookGarment, float]:
    """The textured outfit zip ingested as an upload is (with its .mhclo authoring body), ready
    to drape on any twin; and the ingest wall time, seconds."""
    data = textured_outfit_zip(outfit)
    began = time.perf_counter()
    authoring, record, _ = resolve_authoring(data, f"{outfit}.zip", None)
    if authoring is None:
        raise ValueError(f"{outfit}.zip: no .mhclo authoring body was found")
    prepared = prepare_garment(data, f"{outfit}.zip", "outfit", authoring=authoring)
    refit_body = stored_authoring({"authoring_body": record}, None)
    assert refit_body is not None and prepared.binding is not None
    garment = LookGarment(
        key=outfit,
        mesh=prepared.simulation,
        pieces=prepared.pieces,
        fabric=preset("cotton-jersey").to_solver(),
        meta={"category": "outfit", "file": f"{outfit}.zip"},
        render=prepared.render,
        appearance=Appearance.from_record(prepared.materials, prepared.images),
        refit=GarmentRefit(prepared.render, prepared.binding, refit_body),
    )
    return garment, time.perf_counter() - began


@functools.cache
def shot_twins() -> dict[str, TwinBody]:
    """The two twins of the screenshots: MakeHuman's base body imported as a scan (`base`) and
    a 1.70 m twin generated from measurements (`m170`)."""
    template = shipped_template().body
    return {
        "base": import_body(SHARED / "bodies" / "base.obj", template=template).body,
        "m170": create_twin_body(TWIN_170, template),
    }


@dataclass
class OutfitLook:
    outfit: str
    twin: str
    glb: bytes
    stats: dict[str, Any]
    ingest_s: float
    drape_s: float


def outfit_look(outfit: str, garment: LookGarment, twin: str, body: TwinBody) -> OutfitLook:
    """`garment` draped on `body` at rest, written as the look GLB the API would serve."""
    began = time.perf_counter()
    look = drape_look(body, [garment])
    drape_s = time.perf_counter() - began
    glb = look_to_glb(
        body,
        look.garments,
        pose=None,
        provenance={"twinId": twin, "garments": [{"garmentId": outfit}]},
        garment_extras=[{"garmentId": g.key} for g in look.garments],
    )
    return OutfitLook(outfit, twin, glb, look.garments[0].stats(), 0.0, drape_s)


# ---------------------------------------------------------------------------------------------
# A throwaway static server: the shared web client, vendored three.js, the page and the GLBs.


class _Handler(http.server.SimpleHTTPRequestHandler):
    routes: ClassVar[dict[str, Path]] = {}

    def translate_path(self, path: str) -> str:
        clean = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
        for prefix, folder in self.routes.items():
            if clean.startswith(prefix):
                target = (folder / clean[len(prefix) :]).resolve()
                if target.is_relative_to(folder.resolve()):
                    return str(target)
        return str(REPO / "__nothing_here__")

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def static_server(glb_dir: Path) -> Iterator[str]:
    """Serve /web/ (web_client), /vendor/three/ (node_modules/three), /shot/ (tests/web) and
    /glb/ (`glb_dir`) on a free loopback port; yields the base URL."""
    routes = {
        "/web/": REPO / "web_client",
        "/vendor/three/": REPO / "node_modules" / "three",
        "/shot/": REPO / "tests" / "web",
        "/glb/": Path(glb_dir),
    }
    handler = type("ShotHandler", (_Handler,), {"routes": routes})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def screenshot_glb(browser: Any, base_url: str, glb_name: str) -> tuple[bytes, dict[str, Any]]:
    """(canvas PNG, page state) of /glb/<glb_name> on the shared studio stage."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    try:
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
        page.on(
            "console",
            lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None,
        )
        page.goto(f"{base_url}{PAGE}?glb=/glb/{urllib.parse.quote(glb_name)}")
        page.wait_for_function(
            "() => !!window.lookShot && (window.lookShot.ready || window.lookShot.error)",
            timeout=SHOT_TIMEOUT_S * 1000,
        )
        state = page.evaluate("() => JSON.parse(JSON.stringify(window.lookShot))")
        png = page.locator("#stage canvas").screenshot()
        state["problems"] = problems
        return png, state
    finally:
        context.close()


# ---------------------------------------------------------------------------------------------
# Reading a screenshot


@dataclass(frozen=True)
class ShotCoverage:
    """Pixel shares of a screenshot: of the figure (all non-background pixels)."""

    figure_px: int
    blue: float  # the fabric's bands and crossings
    green: float  # the fabric's ground
    skin: float
    pattern_rows: tuple[int, int]  # first/last image row with fabric pixels
    figure_rows: tuple[int, int]

    @property
    def pattern(self) -> float:
        return self.blue + self.green

    def problems(self) -> list[str]:
        """Why this screenshot does not show a textured garment on the twin (empty: it does)."""
        found = []
        if self.figure_px < MIN_FIGURE_PX:
            found.append(f"the figure covers {self.figure_px} px < {MIN_FIGURE_PX}")
        if self.pattern < MIN_PATTERN_SHARE:
            found.append(f"fabric covers {self.pattern:.3f} of the figure < {MIN_PATTERN_SHARE}")
        for colour, share in (("blue", self.blue), ("green", self.green)):
            if share < MIN_COLOUR_SHARE:
                found.append(f"the fabric's {colour} covers {share:.3f} < {MIN_COLOUR_SHARE}")
        if self.skin < MIN_SKIN_SHARE:
            found.append(f"skin covers {self.skin:.3f} of the figure < {MIN_SKIN_SHARE}")
        top, bottom = self.figure_rows
        if self.pattern_rows[0] - top < MIN_BARE_HEAD_SHARE * (bottom - top):
            found.append(f"the fabric starts at row {self.pattern_rows[0]}, on the head")
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "figure_px": self.figure_px,
            "blue": round(self.blue, 4),
            "green": round(self.green, 4),
            "skin": round(self.skin, 4),
            "pattern_rows": list(self.pattern_rows),
            "figure_rows": list(self.figure_rows),
        }


def _in(hue: NDArray[np.float64], band: tuple[float, float]) -> NDArray[np.bool_]:
    return (hue >= band[0]) & (hue <= band[1])


def coverage(png: bytes, background_rgb: tuple[int, int, int]) -> ShotCoverage:
    """Classify a screenshot's pixels: fabric blue, fabric green, skin, among the figure's."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    rgb = np.asarray(image, dtype=np.int16)
    hsv = np.asarray(image.convert("HSV"), dtype=np.float64)
    hue, sat, val = hsv[..., 0] * 360.0 / 255.0, hsv[..., 1] / 255.0, hsv[..., 2] / 255.0
    figure = np.abs(rgb - np.array(background_rgb)).max(axis=2) > BACKGROUND_THRESHOLD
    blue = figure & _in(hue, BLUE_HUE_DEG) & (sat >= PATTERN_MIN_SAT)
    green = figure & _in(hue, GREEN_HUE_DEG) & (sat >= PATTERN_MIN_SAT)
    skin = (
        figure
        & _in(hue, SKIN_HUE_DEG)
        & (sat >= SKIN_SAT[0])
        & (sat <= SKIN_SAT[1])
        & (val >= SKIN_MIN_VALUE)
    )
    n = max(int(figure.sum()), 1)

    def rows(mask: NDArray[np.bool_]) -> tuple[int, int]:
        found = np.flatnonzero(mask.sum(axis=1) > 2)
        return (int(found[0]), int(found[-1])) if found.size else (-1, -1)

    return ShotCoverage(
        figure_px=int(figure.sum()),
        blue=float(blue.sum()) / n,
        green=float(green.sum()) / n,
        skin=float(skin.sum()) / n,
        pattern_rows=rows(blue | green),
        figure_rows=rows(figure),
    )


STUDIO_BACKGROUND_RGB = (0xEC, 0xEF, 0xF3)


@dataclass
class Shot:
    look: OutfitLook
    png_path: Path
    state: dict[str, Any]
    coverage: ShotCoverage


def shoot_outfits(
    browser: Any, outfits: list[str], twins: dict[str, TwinBody], out_dir: Path
) -> list[Shot]:
    """Every outfit on every twin: look GLB and screenshot in `out_dir` as
    `<outfit>_<twin>.glb` / `.png`. The GLBs are validated by the caller."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shots: list[Shot] = []
    with static_server(out_dir) as base_url:
        for outfit in outfits:
            garment, ingest_s = outfit_garment(outfit)
            for twin, body in twins.items():
                look = outfit_look(outfit, garment, twin, body)
                look.ingest_s = ingest_s
                name = f"{outfit}_{twin}"
                glb_path = out_dir / f"{name}.glb"
                tmp = glb_path.with_suffix(".glb.tmp")
                tmp.write_bytes(look.glb)
                tmp.replace(glb_path)
                png, state = screenshot_glb(browser, base_url, glb_path.name)
                png_path = out_dir / f"{name}.png"
                png_path.write_bytes(png)
                shots.append(Shot(look, png_path, state, coverage(png, STUDIO_BACKGROUND_RGB)))
    return shots
