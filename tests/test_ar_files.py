"""AR files of a posed look on real data: its levels, and the USDZ iOS AR Quick Look places.

The twin is imported from MakeHuman's `bodies/base.obj`; it wears MakeHuman's
`female_sportsuit01` outfit (OBJ + its `.mhclo`, uploaded as a merchandiser would, in a zip
with an MTL whose `map_Kd` is a checkerboard PNG, so the texture's path through every file can
be followed) draped in a walking pose. The look, its level set and its USDZ are made once per
module by the product's own services and jobs (a short drape and a single simplifier setting,
to stay quick); every test then talks to a live app over HTTP, on its own copy of the store.

The USDZ is checked as a phone would need it: opened again with `pxr.Usd`, every
`pxr.UsdValidation` validator (as `usdchecker --arkit`) and the ARKit rules at 0 errors in every
variant, true scale (bounds of the AR GLB within 2 mm, the posed body's height within 5 mm),
the uploaded texture byte for byte in the package and referenced, UVs flipped to USD's t-up,
the fit map as band materials, the twin's provenance, and served only for the `ar` channel.
Pictures drawn from the USDZ alone land in `tests/_out/ar/`.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from spatialtwin.cloth.fit_map import FIT_LEGEND
from spatialtwin.gltf.level_glb import decode_meshopt_glb
from spatialtwin.gltf.read_glb import read_glb_scene
from spatialtwin.gltf.usdz_writer import srgb_to_linear
from spatialtwin.lod.levels import DEFAULTS
from spatialtwin.rights.license import Rights
from spatialtwin.server.app import create_app
from spatialtwin.services.twins import import_twin
from tests.conftest import shared
from tests.gltf_validation import assert_valid_glbs
from tests.textured_garment import checkerboard_png
from tests.usd_render import render_usdz
from tests.usd_validation import assert_valid_usdz

pytestmark = pytest.mark.slow

OUT = Path(__file__).resolve().parent / "_out" / "ar"
OUTFIT = "female_sportsuit01"
# One simplifier setting and lighter error sampling: the level chain's quality is
# tests/test_lod_levels.py's subject; here it is what a posed look's levels and AR files are.
LOD = replace(DEFAULTS, candidates=(), error_samples=2000)
SETTINGS = {"look_max_frames": 40, "lod_options": LOD}
RIGHTS = {
    "owner": {"model": "Base Mesh", "agency": "MakeHuman (CC0)"},
    "license": {
        "id": "lic_ar_test",
        "channels": ["ecommerce", "ar"],
        "valid_from": "2026-01-01T00:00:00+00:00",
    },
    "consent": {"given_at": "2026-01-01T00:00:00+00:00"},
}


def turn(axis: str, degrees: float) -> list[float]:
    """A quaternion [x, y, z, w] turning `degrees` about a world axis."""
    half = np.radians(degrees) / 2
    q = [0.0, 0.0, 0.0, float(np.cos(half))]
    q["xyz".index(axis)] = float(np.sin(half))
    return q


# Mid-stride: left thigh forward, knee bent, right thigh back, left forearm swung in, a turn
# of the trunk. The left foot ends ~0.2 m ahead of where it stands at rest.
WALKING = {
    "root": [0.0, 0.0, 0.0],
    "joints": {
        "leftUpperLeg": turn("x", -20),
        "leftLowerLeg": turn("x", 25),
        "rightUpperLeg": turn("x", 12),
        "leftLowerArm": turn("y", 60),
        "rightUpperArm": turn("z", -10),
        "spine": turn("y", 8),
    },
}


def textured_outfit_zip() -> bytes:
    """The MakeHuman outfit with an MTL naming a checkerboard base colour texture, and its
    .mhclo, zipped as a merchandiser would upload them."""
    obj = shared("garments", f"{OUTFIT}.obj").read_bytes()
    mhclo = shared("garments", f"{OUTFIT}.mhclo").read_bytes()
    mtl = "newmtl suit\nKd 0.9 0.9 0.95\nd 1.0\nPr 0.8\nmap_Kd textures/checker.png\n"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr(f"{OUTFIT}/{OUTFIT}.obj", b"mtllib suit.mtl\nusemtl suit\n" + obj)
        z.writestr(f"{OUTFIT}/suit.mtl", mtl)
        z.writestr(f"{OUTFIT}/textures/checker.png", checkerboard_png())
        z.writestr(f"{OUTFIT}/{OUTFIT}.mhclo", mhclo)
    return out.getvalue()


@pytest.fixture(scope="module")
def ar_data(tmp_path_factory) -> tuple[Path, dict]:
    """A data directory: the base.obj twin (ecommerce + ar), the textured outfit, the look in
    the walking pose and its level set (with the USDZ), made by the services and jobs."""
    from spatialtwin.jobs.queue import StoreJobQueue
    from spatialtwin.jobs.runner import JobRunner
    from spatialtwin.services import job_kinds
    from spatialtwin.services.context import Services
    from spatialtwin.store.embedded import EmbeddedStore

    root = tmp_path_factory.mktemp("ar-data")
    body = import_twin(shared("bodies", "base.obj").read_bytes(), "base.obj").body

    async def make() -> dict:
        store = EmbeddedStore(root)
        services = Services(store, settings=SETTINGS)
        kinds = job_kinds.kinds(services)
        services.attach_jobs(StoreJobQueue(store, kinds))
        twin = await services.twins.create_from_body(
            "Base", body, Rights.from_json(RIGHTS), {"kind": "import", "filename": "base.obj"}
        )
        meta = {"sku": "SPORT-1", "name": "Sport suit", "category": "outfit"}
        garment = await services.garments.ingest(
            textured_outfit_zip(), f"{OUTFIT}.zip", {**meta, "fabric": "cotton-jersey"}
        )
        request = {"twin": twin["id"], "garments": [garment["id"]], "pose": WALKING}
        look = await services.looks.create(await services.looks.check_request(request))
        answer = await services.lod.look_manifest(look["id"], "ecommerce")
        done = await JobRunner(store, kinds).run_job(answer.job["id"])
        assert done is not None and done["status"] == "done", done
        return {"twin": twin, "garment": garment, "look": look}

    return root, asyncio.run(make())


@pytest.fixture
async def api(aiohttp_client, tmp_path, ar_data):
    template, made = ar_data
    shutil.copytree(template, tmp_path / "data")
    client = await aiohttp_client(create_app(tmp_path / "data", seed=False, settings=SETTINGS))
    client.made = made
    return client


async def fetched(api, url: str, **params) -> bytes:
    r = await api.get(url, params=params)
    assert r.status == 200, await r.text()
    data = await r.read()
    assert hashlib.sha256(data).hexdigest() == url.rsplit("/", 1)[1].split(".")[0]
    return data


async def manifest_of(api) -> dict:
    r = await api.get(f"/api/v1/looks/{api.made['look']['id']}/lod/manifest.json")
    assert r.status == 200, await r.text()  # built with the look's set: served at once
    return await r.json()


async def usdz_file(api, tmp_path: Path) -> tuple[Path, dict]:
    manifest = await manifest_of(api)
    entry = manifest["ar"]["usdz"]
    r = await api.get(entry["url"], params={"channel": "ar"})
    assert r.status == 200, await r.text()
    assert r.headers["Content-Type"] == "model/vnd.usdz+zip" == entry["mediaType"]
    data = await r.read()
    assert len(data) == entry["bytes"]
    path = tmp_path / "look.usdz"
    path.write_bytes(data)
    return path, manifest


def bounds(points: np.ndarray) -> np.ndarray:
    return np.stack([points.min(axis=0), points.max(axis=0)])


# --- item 3: a posed look streams ------------------------------------------------------------


async def test_a_posed_look_has_static_levels_of_its_pose_that_pass_the_validator(api):
    manifest = await manifest_of(api)
    levels = manifest["levels"]
    assert manifest["skinned"] is False and len(levels) == 4
    triangles = [lv["triangles"] for lv in levels]
    assert triangles == sorted(triangles, reverse=True) and triangles[-1] < triangles[0] / 10
    errors = [lv["geometricError_m"] for lv in levels]
    assert errors[0] == 0.0 and errors[1] < 0.02 and errors == sorted(errors)
    assert set(levels[1]["errorByPose_m"]) == {"bind"}  # measured in the pose it is shown in

    compressed = [await fetched(api, lv["url"]) for lv in levels]
    ar_glbs = [await fetched(api, lv["quantized"]["url"]) for lv in levels]
    reports = assert_valid_glbs([decode_meshopt_glb(g) for g in compressed] + ar_glbs)
    assert all(r["numErrors"] == 0 for r in reports)

    # The levels show the body *in the pose*: the same place as the posed body of the look GLB
    # (not the bind pose, where the left foot stands 0.2 m further back).
    look_glb = await (await api.get(f"/api/v1/looks/{api.made['look']['id']}/look.glb")).read()
    posed = {m.role: m for m in read_glb_scene(look_glb).meshes}
    full = read_glb_scene(ar_glbs[0])
    assert full.rig is None and not any(m.skinned for m in full.meshes)
    body = next(m for m in full.meshes if m.name == "twin")
    assert np.abs(bounds(body.positions_m) - bounds(posed["body"].positions_m)).max() < 0.001
    twin = api.made["twin"]["id"]
    rest_glb = await (await api.get(f"/api/v1/twins/{twin}/body.glb")).read()
    rest = read_glb_scene(rest_glb).meshes[0]
    ahead_m = body.positions_m[:, 2].max() - rest.positions_m[:, 2].max()
    assert ahead_m > 0.05, ahead_m  # the left foot stepped forward
    assert manifest["bounds_m"]["max"][1] == pytest.approx(
        float(posed["body"].positions_m[:, 1].max()), abs=0.001
    )


# --- item 4: the USDZ ------------------------------------------------------------------------


async def test_the_usdz_passes_every_usd_validator_and_the_arkit_rules(api, tmp_path):
    path, _ = await usdz_file(api, tmp_path)
    report = assert_valid_usdz(path)
    assert len(report.validators) >= 25  # core, geom, shade, skel, usdz … all of them ran
    assert "usdUtilsValidators:UsdzPackageValidator" in report.validators
    assert set(report.variants_checked) == {
        "/Look{fitMap=garment}",
        "/Look{fitMap=strain}",
        "/Look{fitMap=ease}",
    }


async def test_the_usdz_is_the_ar_level_at_true_scale(api, tmp_path):
    from pxr import Usd, UsdGeom

    path, manifest = await usdz_file(api, tmp_path)
    stage = Usd.Stage.Open(str(path))
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    assert stage.GetDefaultPrim().GetPath() == "/Look"
    cache = UsdGeom.BBoxCache(Usd.TimeCode.Default(), [UsdGeom.Tokens.default_])
    box = cache.ComputeWorldBound(stage.GetDefaultPrim()).ComputeAlignedRange()
    usd_bounds = np.array([list(box.GetMin()), list(box.GetMax())])

    ar = manifest["ar"]
    ar_glb = await fetched(api, ar["url"])
    ar_scene = read_glb_scene(ar_glb)
    glb_bounds = bounds(np.concatenate([m.positions_m for m in ar_scene.meshes]))
    assert np.abs(usd_bounds - glb_bounds).max() < 0.002
    manifest_bounds = np.array([manifest["bounds_m"]["min"], manifest["bounds_m"]["max"]])
    assert np.abs(usd_bounds - manifest_bounds).max() < 0.002

    # The body alone: as tall as the posed twin of the look, within 5 mm.
    look_glb = await (await api.get(f"/api/v1/looks/{api.made['look']['id']}/look.glb")).read()
    posed_body = next(m for m in read_glb_scene(look_glb).meshes if m.role == "body")
    twin = UsdGeom.Mesh(stage.GetPrimAtPath("/Look/twin"))
    twin_box = cache.ComputeWorldBound(twin.GetPrim()).ComputeAlignedRange()
    height_m = twin_box.GetMax()[1] - twin_box.GetMin()[1]
    assert height_m == pytest.approx(float(np.ptp(posed_body.positions_m[:, 1])), abs=0.005)
    # …which the walking pose keeps within a few centimetres of the twin's standing height.
    assert height_m == pytest.approx(api.made["twin"]["measurements"]["height_m"], abs=0.04)

    # Meshes as AR Quick Look wants them: triangles, normals, not subdivided.
    for prim in stage.Traverse():
        if prim.IsA(UsdGeom.Mesh):
            mesh = UsdGeom.Mesh(prim)
            counts = np.asarray(mesh.GetFaceVertexCountsAttr().Get())
            assert (counts == 3).all()
            assert mesh.GetSubdivisionSchemeAttr().Get() == UsdGeom.Tokens.none
            assert len(mesh.GetNormalsAttr().Get()) == len(mesh.GetPointsAttr().Get())
    print(f"\nUSDZ {ar['usdz']['bytes']} B, AR GLB {ar['bytes']} B, level {ar['level']}")
    # The figure: at most 1.5x the AR GLB. Measured 1.45x (241,640 B against
    # 166,864 B): float32 points and normals against the GLB's 16- and 8-bit ones, the skin
    # welded back at its UV seams, the textured suit with st per vertex (cheaper here).
    assert ar["usdz"]["bytes"] <= 1.5 * ar["bytes"]


async def test_the_uploaded_texture_is_in_the_package_and_mapped_t_up(api, tmp_path):
    from pxr import Usd, UsdGeom, UsdShade

    path, manifest = await usdz_file(api, tmp_path)
    with zipfile.ZipFile(path) as package:
        names = package.namelist()
        textures = [n for n in names if n.endswith(".png")]  # UsdUtils files it as 0/<name>
        assert len(textures) == 1 and textures[0].endswith(".png"), names
        # 256 px, under the AR level's 1024 px cap: the merchandiser's bytes, unchanged.
        assert package.read(textures[0]) == checkerboard_png()
        for info in package.infolist():
            assert info.compress_type == zipfile.ZIP_STORED  # USDZ: stored, 64-byte aligned

    stage = Usd.Stage.Open(str(path))
    garment = next(
        p for p in stage.Traverse() if p.IsA(UsdGeom.Mesh) and p.GetName().startswith("garment")
    )
    material = UsdShade.MaterialBindingAPI(garment).ComputeBoundMaterial()[0]
    surface = material.ComputeSurfaceSource()[0]
    assert surface.GetShaderId() == "UsdPreviewSurface"
    source = surface.GetInput("diffuseColor").GetConnectedSources()[0][0].source
    texture = UsdShade.Shader(source.GetPrim())
    assert texture.GetShaderId() == "UsdUVTexture"
    assert texture.GetInput("file").Get().path == textures[0]
    assert texture.GetInput("sourceColorSpace").Get() == "sRGB"
    reader = UsdShade.Shader(texture.GetInput("st").GetConnectedSources()[0][0].source.GetPrim())
    assert reader.GetShaderId() == "UsdPrimvarReader_float2"
    assert reader.GetInput("varname").Get() == "st"
    # The base colour factor (MTL Kd) multiplies the texture, as glTF's factor does.
    scale = np.array(texture.GetInput("scale").Get())
    assert scale[:3] == pytest.approx([0.9, 0.9, 0.95], abs=1e-6)

    # primvars:st are the AR GLB's UVs with t = 1 - v (glTF's v runs down the image).
    st = UsdGeom.PrimvarsAPI(garment).GetPrimvar("st")
    flat = np.asarray(st.ComputeFlattened(), dtype=np.float64)
    indices = np.asarray(UsdGeom.Mesh(garment).GetFaceVertexIndicesAttr().Get())
    if st.GetInterpolation() == UsdGeom.Tokens.vertex:
        usd_corners = flat[indices]
    else:
        assert st.GetInterpolation() == UsdGeom.Tokens.faceVarying
        usd_corners = flat
    ar_scene = read_glb_scene(await fetched(api, manifest["ar"]["url"]))
    glb_garment = next(m for m in ar_scene.meshes if m.name.startswith("garment"))
    expected = glb_garment.uvs[glb_garment.faces].reshape(-1, 2) * [1.0, -1.0] + [0.0, 1.0]
    # The same corners (faces may be grouped differently by material subsets): each side's
    # UVs found on the other within 1e-4.
    from scipy.spatial import cKDTree

    assert len(usd_corners) == len(expected)
    assert cKDTree(expected).query(usd_corners)[0].max() < 1e-4
    assert cKDTree(usd_corners).query(expected)[0].max() < 1e-4


async def test_the_fit_map_is_a_variant_of_band_materials(api, tmp_path):
    from pxr import Usd, UsdGeom, UsdShade

    path, _ = await usdz_file(api, tmp_path)
    stage = Usd.Stage.Open(str(path))
    variants = stage.GetDefaultPrim().GetVariantSets().GetVariantSet("fitMap")
    assert variants.GetVariantSelection() == "garment"  # what AR Quick Look shows
    garment = next(
        p for p in stage.Traverse() if p.IsA(UsdGeom.Mesh) and p.GetName().startswith("garment")
    )
    assert not UsdShade.MaterialBindingAPI(garment).GetMaterialBindSubsets()
    face_count = len(UsdGeom.Mesh(garment).GetFaceVertexCountsAttr().Get())
    for name in ("strain", "ease"):
        variants.SetVariantSelection(name)
        subsets = UsdShade.MaterialBindingAPI(garment).GetMaterialBindSubsets()
        faces = np.concatenate([np.asarray(s.GetIndicesAttr().Get()) for s in subsets])
        assert len(faces) == face_count and len(np.unique(faces)) == face_count  # a partition
        colours = {
            tuple(round(c, 5) for c in srgb_to_linear(b.colour)) for b in FIT_LEGEND[name].bands
        }
        for subset in subsets:
            bound = UsdShade.MaterialBindingAPI(subset.GetPrim()).ComputeBoundMaterial()[0]
            diffuse = bound.ComputeSurfaceSource()[0].GetInput("diffuseColor").Get()
            assert tuple(round(c, 5) for c in diffuse) in colours
        assert len(subsets) >= 2, name  # a real drape is not all one band
    variants.SetVariantSelection("garment")


async def test_the_usdz_says_whose_likeness_it_is(api, tmp_path):
    from pxr import Usd

    path, _ = await usdz_file(api, tmp_path)
    stage = Usd.Stage.Open(str(path))
    layer = stage.GetRootLayer()
    provenance = json.loads(layer.customLayerData["spatialtwin"])
    twin = api.made["twin"]
    assert provenance["twinId"] == twin["id"] and provenance["digitalTwin"] is True
    assert provenance["licenseId"] == "lic_ar_test"
    assert provenance["look"]["id"] == api.made["look"]["id"]
    assert provenance["disclosure"] == twin["disclosure"]
    assert "digital twin" in layer.documentation


async def test_the_usdz_is_served_only_for_ar(api):
    manifest = await manifest_of(api)
    usdz, ar_glb = manifest["ar"]["usdz"]["url"], manifest["ar"]["url"]
    assert manifest["ar"]["usdz"]["channel"] == "ar"
    twin = api.made["twin"]["id"]
    for channel in ("ar", "ecommerce", None):
        params = {} if channel is None else {"channel": channel}
        assert (await api.get(usdz, params=params)).status == 200
    r = await api.patch(f"/api/v1/twins/{twin}/license", json={"channels": ["ecommerce"]})
    assert r.status == 200, await r.text()
    for channel in ("ar", "ecommerce", None):
        params = {} if channel is None else {"channel": channel}
        r = await api.get(usdz, params=params)
        assert r.status == 403 and (await r.json())["error"]["code"] == "channel_not_licensed"
    assert (await api.get(ar_glb, params={"channel": "ecommerce"})).status == 200
    r = await api.patch(f"/api/v1/twins/{twin}/license", json={"revoked": True})
    assert r.status == 200
    assert (await api.get(usdz, params={"channel": "ar"})).status == 404  # withdrawn


async def test_pictures_drawn_from_the_usdz_show_the_textured_look(api, tmp_path):
    path, _ = await usdz_file(api, tmp_path)
    OUT.mkdir(parents=True, exist_ok=True)
    front = render_usdz(path, "front", pixels_per_m=300)
    side = render_usdz(path, "left", pixels_per_m=300)
    strain = render_usdz(path, "front", pixels_per_m=300, variant="strain")
    sheet = np.full(
        (max(front.height, side.height), front.width * 2 + side.width, 3), 255, np.uint8
    )
    for x, picture in ((0, front), (front.width, strain), (2 * front.width, side)):
        sheet[: picture.height, x : x + picture.width] = np.asarray(picture)
    from PIL import Image

    Image.fromarray(sheet).save(OUT / "walking_sportsuit.png")
    pixels = np.asarray(front).reshape(-1, 3).astype(int)
    # The checkerboard's red (178, 34, 52) and cream (246, 236, 214), × Kd and shading, on
    # the suit: the texture is bound and sampled, not the plain base colour.
    red = (pixels[:, 0] > 1.8 * pixels[:, 1]) & (pixels[:, 0] > 60)
    cream = (pixels[:, 0] > 150) & (np.abs(pixels[:, 0] - pixels[:, 2]) < 60) & ~red
    assert red.sum() > 2000 and cream.sum() > 2000
    strain_pixels = np.asarray(strain).reshape(-1, 3).astype(int)
    snug = np.all(np.abs(strain_pixels - [242, 165, 65]) < 60, axis=1)
    assert snug.sum() > 500  # a band colour of the fit map shows in its variant
