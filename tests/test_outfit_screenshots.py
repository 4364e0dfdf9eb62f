"""Textured MakeHuman outfits on two twins, seen in a browser (issue #6, "Must show").

Two outfits (one male, one female) are uploaded as zips of OBJ + MTL (`map_Kd`) + a gingham PNG
made here + the `.mhclo`, refitted and draped on the twin imported from MakeHuman's `base.obj`
and on a generated 1.70 m twin, written as look GLBs (Khronos validator: 0 errors), and shown by
Debian chromium on the shared web stage. The screenshots are kept in `tests/_out/outfits/` for a
person to look at; the test requires that the look carries the very texture bytes, that the
fabric's two colours cover a real share of the figure, that the twin's skin shows too (face,
hands, feet) and that the fabric starts below the head. A look that lost its texture shows the
MTL's white instead and fails. The other four outfits run in `bench/garment.py --shots DIR`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pygltflib
import pytest

from tests.conftest import shared
from tests.gltf_validation import assert_valid_glbs
from tests.outfit_shots import Shot, fabric_png, shoot_outfits, shot_twins

OUT = Path(__file__).resolve().parent / "_out" / "outfits"
OUTFITS = ["male_casualsuit02", "female_sportsuit01"]
TWINS = ["base", "m170"]  # MakeHuman's base.obj imported; generated at 1.70 m
SHOTS = [f"{o}_{t}" for o in OUTFITS for t in TWINS]
pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def shots(chromium: Any) -> list[Shot]:
    shared("bodies", "base.obj")  # skips when the shared data is not beside the repository
    return shoot_outfits(chromium, OUTFITS, shot_twins(), OUT)


def shot_id(shot: Shot) -> str:
    return f"{shot.look.outfit}_{shot.look.twin}"


def garment_base_colour_image(glb: bytes, outfit: str) -> bytes:
    """The image bytes of the base colour texture the outfit's garment node wears (which needs
    UVs to show)."""
    gltf = pygltflib.GLTF2.load_from_bytes(glb)
    node = next(n for n in gltf.nodes if n.name == f"garment:{outfit}")
    (primitive,) = gltf.meshes[node.mesh].primitives
    assert primitive.attributes.TEXCOORD_0 is not None, "the garment lost its UVs"
    texture = gltf.materials[primitive.material].pbrMetallicRoughness.baseColorTexture
    assert texture is not None, "the garment lost its base colour texture"
    image = gltf.images[gltf.textures[texture.index].source]
    view = gltf.bufferViews[image.bufferView]
    return gltf.binary_blob()[view.byteOffset : view.byteOffset + view.byteLength]


def test_each_outfit_on_each_twin_is_shot(shots: list[Shot]) -> None:
    assert sorted(shot_id(s) for s in shots) == sorted(SHOTS)
    for shot in shots:
        assert shot.png_path.is_file() and shot.png_path.stat().st_size > 10_000


def test_look_glbs_pass_the_khronos_validator(shots: list[Shot]) -> None:
    reports = assert_valid_glbs([s.look.glb for s in shots])
    assert all(r["numErrors"] == 0 for r in reports)


def test_look_glbs_carry_the_uploaded_texture_bytes(shots: list[Shot]) -> None:
    for shot in shots:
        assert garment_base_colour_image(shot.look.glb, shot.look.outfit) == fabric_png()


@pytest.mark.parametrize("name", SHOTS)
def test_screenshot_shows_the_textured_garment_on_the_twin(shots: list[Shot], name: str) -> None:
    shot = next(s for s in shots if shot_id(s) == name)
    state = shot.state
    assert state["error"] is None, (name, state["error"])
    assert state["problems"] == [], (name, state["problems"])
    # The browser decoded the texture onto the garment, and the twin is there too.
    garments = [m for m in state["meshes"] if m["name"].startswith("garment")]
    assert garments and all(m["textured"] for m in garments), (name, state["meshes"])
    assert any(m["name"] == "twin" for m in state["meshes"]), (name, state["meshes"])
    # The fabric's two colours cover a real share of the figure, the skin shows, the fabric
    # starts below the head (thresholds in tests/outfit_shots.py).
    assert shot.coverage.problems() == [], (name, shot.coverage.to_json())
