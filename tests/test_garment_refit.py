"""Real garments on real bodies: MakeHuman outfits refitted through their authoring body.

The outfits in ../shared/data/garments were authored on MakeHuman's hm08 base mesh
(bodies/base.obj) and bound to it by their .mhclo files. These tests take them through the
product's own ingest and look pipeline onto twins imported from base.obj (the authoring body
itself) and generated from the hm08 template, and measure the drape independently (trimesh's
signed distance, nearest-vertex body parts). `bench/garment.py` runs the whole matrix.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from spatialtwin.errors import SpatialTwinError
from spatialtwin.garment.binding import AuthoringBody
from spatialtwin.garment.fabrics import preset
from spatialtwin.garment.fit_check import body_parts, inside_depth_m
from spatialtwin.garment.look import LookGarment, drape_look
from spatialtwin.garment.refit import GarmentRefit, correspond_authoring
from spatialtwin.gltf.makehuman import obj_vertex_positions, read_mhclo
from spatialtwin.gltf.template_npz import shipped_template
from spatialtwin.services.ingest import prepare_garment
from spatialtwin.services.twins import import_twin
from tests.conftest import shared
from tests.test_garment_api import OUTFITS, form
from tests.test_garment_api import api as api

pytestmark = pytest.mark.slow


def outfit(name: str) -> tuple[bytes, bytes]:
    return (
        shared("garments", f"{name}.obj").read_bytes(),
        shared("garments", f"{name}.mhclo").read_bytes(),
    )


def bound(name: str):
    obj, mhclo = outfit(name)
    template = shipped_template()
    authoring = AuthoringBody.from_template(template, read_mhclo(mhclo), obj_vertex_positions(obj))
    return prepare_garment(obj, f"{name}.obj", "outfit", authoring=authoring)


@pytest.fixture(scope="module")
def base_twin():
    # As the server and CLI import it: auto-rigged, then the template's weights carried over.
    return import_twin(shared("bodies", "base.obj").read_bytes(), "base.obj").body


def look_garment(prepared, authoring=None) -> LookGarment:
    refit = GarmentRefit(
        prepared.render,
        prepared.binding,
        authoring or AuthoringBody.from_template(shipped_template()),
    )
    return LookGarment(
        "outfit",
        prepared.simulation,
        prepared.pieces,
        preset("cotton-jersey").to_solver(),
        meta={"category": "outfit"},
        refit=refit,
    )


# ---------------------------------------------------------------- the .mhclo reader


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("verts 0\n1 2 3 0.5 0.5 0 0 0 0\n99999 2 3 1 0 0 0 0 0\n", "bad_mhclo"),
        ("verts 0\n1 2 3 0.5 0.5 0 nan 0 0\n", "bad_mhclo"),
        ("verts 0\n1 2 3 0.5 0.5 0 0 0\n", "bad_mhclo"),
        ("verts 0\n1 2 3 0.9 0.9 0.9 0 0 0\n", "bad_mhclo"),
        ("name nothing\n", "bad_mhclo"),
        ("x_scale 1 2 -1\nverts 0\n1\n", "bad_mhclo"),
    ],
)
def test_bad_mhclo_files_are_refused_with_a_code(text, code):
    with pytest.raises(SpatialTwinError) as err:
        read_mhclo(text.encode())
    assert err.value.code == code and err.value.status == 422


def test_an_oversized_mhclo_is_refused_before_parsing():
    with pytest.raises(SpatialTwinError) as err:
        read_mhclo(b"#" * (8 * 1024 * 1024 + 1))
    assert err.value.status == 413


@pytest.mark.parametrize("name", sorted(OUTFITS))
def test_every_outfit_is_bound_to_hm08_and_placed_back_exactly(name):
    obj, mhclo = outfit(name)
    proxy = read_mhclo(mhclo)
    assert proxy.vertex_count == len(obj_vertex_positions(obj))
    prepared = bound(name)
    template = shipped_template()
    back = prepared.binding.place(template.base_vertices_m)
    assert np.abs(back - prepared.render.vertices_m).max() < 1e-9
    # Worn on hm08 (metres, feet on y = 0), as tall as SOURCES.md's "fitted onto base.obj".
    assert prepared.authoring == "hm08" and prepared.units == "dm"
    assert 0.03 < prepared.render.vertices_m[:, 1].min() < 0.52


def test_the_authoring_body_itself_corresponds_exactly(base_twin):
    template = shipped_template()
    c = correspond_authoring(AuthoringBody.from_template(template), base_twin)
    shift = base_twin.vertices_m.mean(0) - template.body.vertices_m.mean(0)
    skin = c.points_m[template.body_base_index]
    assert np.abs(skin - (template.body.vertices_m + shift)).max() < 1e-6


# ---------------------------------------------------------------- looks


def test_outfit_on_its_own_authoring_body_settles_where_it_was_authored(base_twin):
    prepared = bound("male_casualsuit06")
    look = drape_look(base_twin, [look_garment(prepared)])
    g = look.garments[0]
    assert g.settled and g.stop_reason == "settled"
    depth = inside_depth_m(look.body_vertices_m, look.body_faces, g.positions_m)
    assert np.mean(depth > 0.001) <= 0.005
    assert g.mean_stretch <= 0.02
    shift = base_twin.vertices_m.mean(0) - shipped_template().body.vertices_m.mean(0)
    d = np.linalg.norm(g.positions_m - (prepared.simulation.vertices_m + shift), axis=1)
    # Measured 1.42 cm mean / 2.63 cm p95: the proxy floats ~1 cm over the skin and settles.
    assert d.mean() <= 0.016 and np.percentile(d, 95) <= 0.03
    template = shipped_template().body
    before = body_parts(template.vertices_m, template.skin, prepared.simulation.vertices_m)
    after = body_parts(base_twin.vertices_m, base_twin.skin, g.positions_m)
    # With the template's weights on the scan: measured 98.3 % (bone-heat weights: 88.9 %).
    assert np.mean(before == after) >= 0.96


@pytest.mark.parametrize("name", sorted(OUTFITS))
def test_every_outfit_on_a_generated_twin_keeps_to_the_same_body_parts(name, average_body):
    prepared = bound(name)
    look = drape_look(average_body, [look_garment(prepared)])
    g = look.garments[0]
    assert g.settled  # measured 30-67 frames
    template = shipped_template()
    sim = prepared.simulation.vertices_m
    before = body_parts(template.body.vertices_m, template.body.skin, sim)
    after = body_parts(average_body.vertices_m, average_body.skin, g.positions_m)
    # Measured on the 1.70 m twin (bench/garment.py): 98.2-98.9 %; the worksuit's overalls read
    # 94.9 % before their back straps were sewn to the back panel (garment.stitches).
    assert np.mean(before == after) >= 0.97
    depth = inside_depth_m(look.body_vertices_m, look.body_faces, g.positions_m)
    # measured 0 % over 1 mm inside; mean stretch 0.66-1.34 %
    assert np.mean(depth > 0.001) <= 0.005 and g.mean_stretch <= 0.02


def test_the_mesh_shown_stays_out_of_the_skin(base_twin):
    """The upload's own mesh rides on the cloth; MakeHuman's leggings were authored cutting
    into the skin, and before the render mesh was kept out of the body 15 % of its vertices
    were over 1 mm inside on their own authoring body (skin in patches through them)."""
    import dataclasses

    prepared = bound("female_sportsuit01")
    garment = dataclasses.replace(look_garment(prepared), render=prepared.render)
    look = drape_look(base_twin, [garment])
    g = look.garments[0]
    shown = g.render_positions_m()
    assert len(shown) >= prepared.render.vertex_count
    depth = inside_depth_m(look.body_vertices_m, look.body_faces, shown)
    assert np.mean(depth > 0.001) <= 0.005  # measured 0 %
    # kept out, not blown up: the shown mesh stays within 2 cm of the cloth it rides on
    riding = g.render_binding().positions_m(g.positions_m)
    assert np.percentile(np.linalg.norm(shown - riding, axis=1), 99) <= 0.02


def test_a_lunge_tracked_from_a_photo_stands_on_the_floor_dressed(average_body):
    import cv2

    from spatialtwin.tracking.tracker import TwinPoseTracker

    image = cv2.cvtColor(cv2.imread(str(shared("people", "war0.jpg"))), cv2.COLOR_BGR2RGB)
    with TwinPoseTracker(average_body.skeleton) as tracker:
        pose = tracker.track(image, 0.0).pose
    prepared = bound("female_sportsuit01")
    look = drape_look(average_body, [look_garment(prepared)], pose)
    posed = average_body.posed_vertices(look.pose)
    assert abs(float(posed[:, 1].min())) <= 0.01  # the lowest foot on y = 0
    g = look.garments[0]
    depth = inside_depth_m(look.body_vertices_m, look.body_faces, g.positions_m)
    # Measured 1.15 % over 1 mm inside (the bent knee pinches the leggings); the issue's
    # goal is 0.5 %, not reached yet: this guards against the 38 mm bands of before.
    assert np.mean(depth > 0.001) <= 0.015 and depth.max() <= 0.02
    # Mean stretch measured 3.07 % (leggings over a deep lunge), over the 2 % goal.
    assert np.isfinite(g.positions_m).all() and g.mean_stretch <= 0.04


def test_arms_raised_from_a_photo_settle(average_body):
    """Arms raised pull the shirt's shoulder pins apart; the drape must still come to rest.
    Strain limiting that ran every frame fought that equilibrium: the kinetic energy stayed at
    2.5-3e-10 J per vertex (settled is below 1e-10) and the look ran to its time limit."""
    import cv2

    from spatialtwin.tracking.tracker import TwinPoseTracker

    image = cv2.cvtColor(cv2.imread(str(shared("people", "y1.jpg"))), cv2.COLOR_BGR2RGB)
    with TwinPoseTracker(average_body.skeleton) as tracker:
        pose = tracker.track(image, 0.0).pose
    look = drape_look(average_body, [look_garment(bound("male_casualsuit02"))], pose)
    g = look.garments[0]
    # measured: settled in 66 frames, mean stretch 1.31 %
    assert g.settled and g.stop_reason == "settled" and g.frames < 150
    assert g.mean_stretch <= 0.02
    depth = inside_depth_m(look.body_vertices_m, look.body_faces, g.positions_m)
    assert np.mean(depth > 0.001) <= 0.005


def test_a_bare_obj_gets_an_estimated_authoring_body(base_twin):
    obj, _ = outfit("male_casualsuit02")
    template = AuthoringBody.from_template(shipped_template())
    prepared = prepare_garment(obj, "a.obj", "outfit", estimate_from=template)
    assert prepared.authoring == "estimated" and prepared.units == "dm"
    turns = prepared.estimate["limb_turns_deg"]
    assert all(abs(t) <= 40.0 for t in turns.values())
    from spatialtwin.garment.estimate import posed_template

    authoring = posed_template(template, prepared.estimate["rotations"])
    look = drape_look(base_twin, [look_garment(prepared, authoring)])
    g = look.garments[0]
    assert g.settled and g.mean_stretch <= 0.02
    sim = prepared.simulation.vertices_m
    before = body_parts(authoring.body.vertices_m, authoring.body.skin, sim)
    after = body_parts(base_twin.vertices_m, base_twin.skin, g.positions_m)
    # MakeHuman's weights and base.obj's auto-rig split shoulders and hips differently: the
    # authored outfit placed exactly agrees 90.9 %; this drape measured 90.9 %.
    assert np.mean(before == after) >= 0.88


# ---------------------------------------------------------------- uploads


def _zip(**entries: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(name.replace("_", ".", 1), data)
    return buf.getvalue()


async def test_a_zip_with_its_mhclo_is_stored_with_its_authoring_body(api):
    obj, mhclo = outfit("female_sportsuit01")
    data = _zip(**{"suit_obj": obj, "suit_mhclo": mhclo})
    r = await api.post("/api/v1/garments", data=form(data, "suit.zip"))
    rec = await r.json()
    assert r.status == 201, rec
    assert rec["authoring_body"]["kind"] == "hm08"
    assert rec["authoring_body"]["binding"] == "suit.mhclo"
    assert rec["authoring_body"]["bound_vertices"] == rec["vertices"]


async def test_bad_authoring_attachments_are_refused_and_store_nothing(api):
    obj, mhclo = outfit("female_sportsuit01")
    before = len(await api.store.list_records("garments"))

    async def post(parts: dict[str, tuple[str, bytes]], meta=None, filename="a.obj", data=obj):
        fd = form(data, filename, **(meta or {}))
        for name, (fname, payload) in parts.items():
            fd.add_field(name, payload, filename=fname, content_type="application/octet-stream")
        r = await api.post("/api/v1/garments", data=fd)
        return r.status, (await r.json())["error"]["code"]

    other_obj, _ = outfit("male_casualsuit02")  # 2136 vertices against sportsuit's 1797
    assert await post({"binding": ("a.mhclo", mhclo)}, data=other_obj) == (422, "binding_mismatch")
    assert await post({"binding": ("a.mhclo", mhclo)}, filename="a.ply", data=b"ply\n") == (
        422,
        "binding_needs_obj",
    )
    assert await post({"binding": ("a.mhclo", b"verts 0\n1 2\n")}) == (422, "bad_mhclo")
    both = {"binding": ("a.mhclo", mhclo), "authoring_body": ("b.obj", obj)}
    assert await post(both) == (422, "ambiguous_authoring_body")
    assert await post({"authoring_body": ("b.txt", b"x")}) == (415, "unsupported_authoring_body")
    assert await post({}, meta={"estimate_body": 1}) == (422, "invalid_metadata")
    assert len(await api.store.list_records("garments")) == before


def test_cli_drape_picks_up_the_sibling_mhclo(tmp_path, base_twin):
    from spatialtwin.cli import main

    obj, mhclo = outfit("female_sportsuit01")
    (tmp_path / "suit.obj").write_bytes(obj)
    (tmp_path / "suit.mhclo").write_bytes(mhclo)
    out = tmp_path / "look.glb"
    code = main(
        [
            "drape",
            "--twin",
            str(shared("bodies", "base.obj")),
            "--garment",
            str(tmp_path / "suit.obj"),
            "--category",
            "outfit",
            "--fabric",
            "cotton-jersey",
            "--data",
            str(tmp_path / "none"),
            "-o",
            str(out),
            "--json",
        ]
    )
    assert code in (0, 3) and out.stat().st_size > 10_000
    import pygltflib

    gltf = pygltflib.GLTF2.load_from_bytes(out.read_bytes())
    prov = gltf.asset.extras["spatialtwin"]
    placement = prov["garments"][0]["placement"]
    assert placement["method"] == "refit from hm08"
