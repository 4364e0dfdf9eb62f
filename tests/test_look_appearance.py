"""Looks keep the garment's appearance: a textured garment made here (checkerboard PNG base
colour, PNG normal map, its own material factors) goes in through the API and the CLI and
comes out of the drape with the same image bytes, material and UVs, its render mesh riding on
the settled cloth; OBJ + MTL zips keep theirs too; oversized or broken images are refused
before anything decodes them."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from pathlib import Path

import aiohttp
import numpy as np
import pygltflib
import pytest
import trimesh
from PIL import Image

from spatialtwin.body.parametric import Measurements
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.cli import main
from spatialtwin.errors import SpatialTwinError
from spatialtwin.garment.appearance import Appearance
from spatialtwin.garment.fabrics import preset
from spatialtwin.garment.look import LookGarment, LookOptions, drape_look
from spatialtwin.gltf.garment_io import read_garment_file
from spatialtwin.gltf.twin_glb import twin_to_glb
from spatialtwin.lod.distance import points_at, sample_barycentric
from spatialtwin.rights.license import Rights
from spatialtwin.server.app import create_app
from spatialtwin.server.keys import STORE, TWINS
from spatialtwin.services.ingest import prepare_garment
from tests.conftest import generated_twin
from tests.gltf_validation import assert_valid_glb
from tests.test_looks_cli import read_accessor
from tests.textured_garment import (
    BASE_COLOUR_FACTOR,
    METALLIC,
    NORMAL_SCALE,
    ROUGHNESS,
    SKIRT_META,
    checkerboard_png,
    normal_map_png,
    skirt_mesh,
    textured_skirt_glb,
)

REPO = Path(__file__).resolve().parents[1]
AVA = json.loads((REPO / "assets" / "twins" / "ava.json").read_text())
FRAMES = 60


@pytest.fixture(scope="module")
def ava_body() -> TwinBody:
    return generated_twin(Measurements.from_json(AVA["measurements"]))


@pytest.fixture(scope="module")
def skirt():
    return textured_skirt_glb()


def garment_primitives(gltf: pygltflib.GLTF2, name: str) -> list[pygltflib.Primitive]:
    node = next(n for n in gltf.nodes if n.name == name)
    return gltf.meshes[node.mesh].primitives


def image_bytes(gltf: pygltflib.GLTF2, texture_index: int) -> bytes:
    image = gltf.images[gltf.textures[texture_index].source]
    view = gltf.bufferViews[image.bufferView]
    return gltf.binary_blob()[view.byteOffset : view.byteOffset + view.byteLength]


def assert_keeps_the_skirt_material(gltf: pygltflib.GLTF2, name: str) -> None:
    """The garment primitive wears the upload's material, textures byte for byte."""
    (primitive,) = garment_primitives(gltf, name)
    attrs = primitive.attributes
    assert attrs.TEXCOORD_0 is not None and attrs.NORMAL is not None
    assert attrs.COLOR_0 is None
    assert attrs.TANGENT is not None  # the normal map's tangent space, not left to viewers
    tangent = read_accessor(gltf, attrs.TANGENT)
    np.testing.assert_allclose(np.linalg.norm(tangent[:, :3], axis=1), 1.0, atol=1e-5)
    assert set(np.unique(tangent[:, 3])) <= {-1.0, 1.0}
    material = gltf.materials[primitive.material]
    pbr = material.pbrMetallicRoughness
    assert pbr.baseColorFactor == pytest.approx(BASE_COLOUR_FACTOR)
    assert pbr.metallicFactor == pytest.approx(METALLIC)
    assert pbr.roughnessFactor == pytest.approx(ROUGHNESS)
    assert material.doubleSided is True and material.alphaMode == "OPAQUE"
    assert material.normalTexture.scale == pytest.approx(NORMAL_SCALE)
    assert image_bytes(gltf, pbr.baseColorTexture.index) == checkerboard_png()
    assert image_bytes(gltf, material.normalTexture.index) == normal_map_png()
    sampler = gltf.samplers[gltf.textures[pbr.baseColorTexture.index].sampler]
    assert (sampler.wrapS, sampler.wrapT) == (pygltflib.REPEAT, pygltflib.CLAMP_TO_EDGE)
    uv = read_accessor(gltf, attrs.TEXCOORD_0)
    assert uv.min() >= -1e-6 and uv.max() <= 1 + 1e-6


# --- ingest --------------------------------------------------------------------------------------


def test_ingest_keeps_the_glb_material_and_its_image_bytes(skirt):
    prepared = prepare_garment(skirt.glb, "checker_skirt.glb", "skirt", "m")
    (material,) = prepared.materials
    assert material["base_color"] == pytest.approx(BASE_COLOUR_FACTOR)
    assert material["metallic_factor"] == METALLIC and material["roughness_factor"] == ROUGHNESS
    assert material["normal_texture"]["scale"] == pytest.approx(NORMAL_SCALE)
    assert material["double_sided"] is True and material["alpha_mode"] == "OPAQUE"
    base = prepared.images[material["base_color_texture"]["image"]]
    normal = prepared.images[material["normal_texture"]["image"]]
    assert base.data == checkerboard_png() and base.mime == "image/png"
    assert (base.width_px, base.height_px) == (256, 256)
    assert normal.data == normal_map_png()
    # UVs kept per corner (OBJ's convention, v up), the back seam's two sides apart.
    assert prepared.render.corner_uvs is not None
    assert prepared.render.corner_uvs[..., 1].max() == pytest.approx(1.0)
    assert np.isclose(prepared.render.corner_uvs[..., 0], 1.0).any()  # the back seam's side
    assert prepared.warnings == []


def obj_zip(png_kd: bytes, png_norm: bytes, bump: bytes | None = None) -> bytes:
    """The skirt as OBJ + MTL + textures in a zip, as a merchandiser would send it."""
    v, f, uv = skirt_mesh()
    lines = ["mtllib skirt.mtl", "usemtl checker"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v]
    lines += [f"vt {s:.6f} {1.0 - t:.6f}" for s, t in uv]  # OBJ's v runs up the image
    lines += [f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}" for a, b, c in f]
    mtl = [
        "newmtl checker",
        "Kd 0.9 0.8 0.7",
        "d 1.0",
        "Pr 0.6",
        "Ns 96.0",
        "map_Kd textures/checker.png",
        "norm -bm 0.5 textures/rib normal.png",
    ]
    if bump is not None:
        mtl += ["newmtl plain", "Kd 0.2 0.2 0.2", "map_Bump textures/height.png"]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("skirt/skirt.obj", "\n".join(lines))
        z.writestr("skirt/skirt.mtl", "\n".join(mtl))
        z.writestr("skirt/textures/checker.png", png_kd)
        z.writestr("skirt/textures/rib normal.png", png_norm)
        if bump is not None:
            z.writestr("skirt/textures/height.png", bump)
    return out.getvalue()


def test_obj_mtl_zip_keeps_its_textures_and_factors():
    source = read_garment_file(obj_zip(checkerboard_png(), normal_map_png()), "skirt.zip")
    (material,) = source.materials
    assert material["name"] == "checker"
    assert material["base_color"] == pytest.approx([0.9, 0.8, 0.7, 1.0])
    assert material["roughness_factor"] == pytest.approx(0.6)  # Pr, not the Phong Ns
    assert material["metallic_factor"] == 0.0 and material["double_sided"] is True
    assert material["normal_texture"]["scale"] == pytest.approx(0.5)
    assert source.images[material["base_color_texture"]["image"]].data == checkerboard_png()
    assert source.images[material["normal_texture"]["image"]].data == normal_map_png()
    assert source.corner_uvs is not None and source.warnings == []


def gltf_variant(kind: str) -> tuple[bytes, str]:
    """The test skirt as a .gltf with data URIs, or a zip of .gltf + .bin + PNG files."""
    gltf = pygltflib.GLTF2.load_from_bytes(textured_skirt_glb().glb)
    if kind == "data-uri":
        gltf.convert_buffers(pygltflib.BufferFormat.DATAURI)
        return gltf.to_json().encode(), "skirt.gltf"
    blob = gltf.binary_blob()
    files = {}
    for image in gltf.images:
        view = gltf.bufferViews[image.bufferView]
        image.bufferView, image.uri = None, f"textures/{image.name}.png"
        files[image.uri] = blob[view.byteOffset : view.byteOffset + view.byteLength]
    gltf.buffers[0].uri = "skirt.bin"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("skirt.gltf", gltf.to_json())
        z.writestr("skirt.bin", blob)
        for name, data in files.items():
            z.writestr(name, data)
    return out.getvalue(), "skirt.zip"


@pytest.mark.parametrize("kind", ["data-uri", "zip"])
def test_gltf_json_keeps_its_images_embedded_or_beside_it(kind):
    data, filename = gltf_variant(kind)
    source = read_garment_file(data, filename)
    (material,) = source.materials
    assert source.images[material["base_color_texture"]["image"]].data == checkerboard_png()
    assert source.images[material["normal_texture"]["image"]].data == normal_map_png()
    assert source.corner_uvs is not None and source.warnings == []


def test_a_greyscale_bump_map_is_dropped_with_a_warning():
    grey = io.BytesIO()
    Image.fromarray(np.full((32, 32), 128, np.uint8), "L").save(grey, format="PNG")
    source = read_garment_file(
        obj_zip(checkerboard_png(), normal_map_png(), bump=grey.getvalue()), "skirt.zip"
    )
    assert [w["code"] for w in source.warnings] == ["bump_height_map_dropped"]


def test_an_obj_without_its_mtl_says_what_it_lost():
    v, f, _ = skirt_mesh()
    text = "mtllib skirt.mtl\n" + "\n".join(f"v {x} {y} {z}" for x, y, z in v)
    text += "\n" + "\n".join(f"f {a + 1} {b + 1} {c + 1}" for a, b, c in f)
    source = read_garment_file(text.encode(), "skirt.obj")
    assert source.warnings[0]["code"] == "material_library_missing"
    assert len(source.materials) == 1 and source.images == []


def glb_with_image(png: bytes) -> bytes:
    """The test skirt with its base colour image replaced by `png`."""
    gltf = pygltflib.GLTF2.load_from_bytes(textured_skirt_glb().glb)
    blob = bytearray(gltf.binary_blob())
    while len(blob) % 4:
        blob.append(0)
    gltf.bufferViews.append(
        pygltflib.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(png))
    )
    blob.extend(png)
    gltf.images[0].bufferView = len(gltf.bufferViews) - 1
    gltf.buffers[0].byteLength = len(blob)
    gltf.set_binary_blob(bytes(blob))
    out = gltf.save_to_bytes()
    return b"".join(out) if isinstance(out, list) else bytes(out)


def huge_png() -> bytes:
    """5000 × 4000 px (20 million pixels) of one colour: a few kB, 60 MB once decoded."""
    out = io.BytesIO()
    Image.new("RGB", (5000, 4000), (200, 30, 40)).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("huge", 413, "image_too_large"),
        ("truncated", 422, "corrupt_image"),
        ("not-an-image", 422, "corrupt_image"),
    ],
)
def test_bad_images_are_refused_before_decoding(case, status, code):
    if case == "huge":
        png = huge_png()
        assert len(png) < 200_000  # the upload is small; only the header tells
    elif case == "truncated":
        png = checkerboard_png()[:-40]
    else:
        png = b"\x89PNG\r\n\x1a\n" + b"garbage" * 20
    with pytest.raises(SpatialTwinError) as err:
        read_garment_file(glb_with_image(png), "skirt.glb")
    assert err.value.status == status and err.value.code == code
    assert err.value.detail["image"] == "checker"


# --- the drape: render mesh on the settled cloth -------------------------------------------------


def test_render_mesh_follows_the_drape(skirt, ava_body):
    prepared = prepare_garment(skirt.glb, "checker_skirt.glb", "skirt", "m")
    garment = LookGarment(
        "checker",
        prepared.simulation,
        prepared.pieces,
        preset("cotton-poplin").to_solver(),
        meta={"category": "skirt"},
        render=prepared.render,
        appearance=Appearance.from_record(prepared.materials, prepared.images),
    )
    look = drape_look(ava_body, [garment], None, LookOptions(max_frames=FRAMES))
    draped = look.garments[0]
    binding = draped.render_binding()
    render = draped.render_positions_m()
    # The coarse upload (5 cm rows) is split to the cloth's 1.5 cm edges to follow its folds.
    assert binding.mesh.vertex_count > prepared.render.vertex_count
    sites = sample_barycentric(render, binding.faces, 20_000, seed=1)
    on_render = points_at(render, binding.faces, sites)
    sim = trimesh.Trimesh(draped.positions_m, draped.faces, process=False)
    _, distance_m, _ = trimesh.proximity.closest_point(sim, on_render)
    assert distance_m.max() < 0.005
    # …and it did move with the cloth: the hem swung in from its placed flare.
    start = binding.positions_m(draped.start_positions_m)
    assert np.linalg.norm(render - start, axis=1).max() > 0.01
    # Fit values per render vertex, blended from the cloth.
    assert binding.values(draped.strain).shape == (binding.mesh.vertex_count,)
    assert draped.fit_shares()["strain"]["relaxed"] > 0.6


# --- through the API ----------------------------------------------------------------------------


@pytest.fixture
async def api(aiohttp_client, tmp_path, ava_body):
    app = create_app(tmp_path / "data", seed=False, settings={"look_max_frames": FRAMES})
    client = await aiohttp_client(app)
    twin = await app[TWINS].create_from_body("Ava", ava_body, Rights.from_json(AVA), {})
    client.twin_id = twin["id"]
    client.store = app[STORE]
    return client


def upload_form(data: bytes, filename: str = "checker_skirt.glb") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename)
    form.add_field("metadata", json.dumps(SKIRT_META))
    return form


async def test_api_look_keeps_textures_material_and_uvs(api, skirt):
    r = await api.post("/api/v1/garments", data=upload_form(skirt.glb))
    assert r.status == 201, await r.text()
    record = await r.json()
    assert [i["mime"] for i in record["images"]] == ["image/png", "image/png"]
    assert record["images"][0]["width_px"] == 256 and "blobs" not in record

    r = await api.get(f"/api/v1/garments/{record['id']}/preview.glb?twin={api.twin_id}")
    assert r.status == 200
    preview = pygltflib.GLTF2.load_from_bytes(await r.read())
    assert_keeps_the_skirt_material(preview, f"garment:{record['id']}")

    r = await api.post("/api/v1/looks", json={"twin": api.twin_id, "garments": [record["id"]]})
    assert r.status == 202, await r.text()
    job_link = (await r.json())["links"]["job"]
    for _ in range(2400):
        job = await (await api.get(job_link)).json()
        if job["status"] in ("done", "failed"):
            break
        await asyncio.sleep(0.05)
    assert job["status"] == "done", job
    look = job["result"]
    fit = look["stats"][record["id"]]["fit"]
    assert set(fit) == {"strain", "ease"} and fit["strain"]["relaxed"] > 0.6
    data = await (await api.get(look["links"]["glb"])).read()
    report = assert_valid_glb(data)
    assert report["numWarnings"] == 0, report["messages"]
    gltf = pygltflib.GLTF2.load_from_bytes(data)
    name = f"garment:{record['id']}"
    assert_keeps_the_skirt_material(gltf, name)
    attrs = garment_primitives(gltf, name)[0].attributes
    strain, ease = read_accessor(gltf, attrs._STRAIN), read_accessor(gltf, attrs._EASE)
    assert strain.min() >= 0 and ease.min() > -0.01 and ease.max() < 0.3
    assert gltf.asset.extras["spatialtwin"]["fitMap"]["ease"]["unit"] == "m"


async def test_an_oversized_texture_is_refused_and_nothing_is_stored(api):
    before = api.store.snapshot(content=True)
    r = await api.post("/api/v1/garments", data=upload_form(glb_with_image(huge_png())))
    assert r.status == 413
    body = await r.json()
    assert body["error"]["code"] == "image_too_large"
    assert body["error"]["detail"]["width_px"] == 5000
    assert api.store.snapshot(content=True) == before


# --- through the CLI ----------------------------------------------------------------------------


def test_cli_drape_writes_the_textured_look(skirt, ava_body, tmp_path, capsys):
    twin = tmp_path / "ava.glb"
    twin.write_bytes(twin_to_glb(ava_body, provenance={"twinId": AVA["id"]}))
    garment = tmp_path / "checker_skirt.glb"
    garment.write_bytes(skirt.glb)
    garment.with_suffix(".json").write_text(json.dumps(SKIRT_META))
    out = tmp_path / "look.glb"
    argv = ["drape", "--twin", str(twin), "--garment", str(garment)]
    argv += ["--data", str(tmp_path / "none"), "--max-frames", str(FRAMES), "-o", str(out)]
    assert main(argv) in (0, 3)  # 3: done with drape warnings, still written
    data = out.read_bytes()
    assert_valid_glb(data)
    assert_keeps_the_skirt_material(pygltflib.GLTF2.load_from_bytes(data), "garment:checker_skirt")
