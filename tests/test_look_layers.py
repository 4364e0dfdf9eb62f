"""Layered looks: the sample T-shirt worn over the sample skirt on Ava covers it (no skirt through
the hem, measured with rays and seen in a render), garments are ordered by category unless the
request says otherwise, and the inner garment's surface faces outward whatever its winding."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import trimesh

from spatialtwin.body.parametric import Measurements
from spatialtwin.cloth.collider import BodyCollider, DrapeLayer, LayeredCollider, surface_frames
from spatialtwin.errors import SpatialTwinError
from spatialtwin.garment.fabrics import preset
from spatialtwin.garment.layers import draping_order
from spatialtwin.garment.look import LookGarment, LookOptions, drape_look, drape_one, posed_body
from spatialtwin.garment.placement import BodyLandmarks
from spatialtwin.rights.license import Rights
from spatialtwin.server.app import create_app
from spatialtwin.server.keys import TWINS
from spatialtwin.services.ingest import prepare_garment
from tests.conftest import generated_twin
from tests.software_render import render, save_png, shows_through

REPO = Path(__file__).resolve().parents[1]
AVA = json.loads((REPO / "assets" / "twins" / "ava.json").read_text())
GARMENTS = REPO / "assets" / "garments"
OUT = REPO / "tests" / "_out"
VIEWS = ("front", "left", "back", "right")
BOX_M = ((-0.45, 0.45), (0.45, 1.55))  # Ava from the knees up, in view coordinates
COLOURS = [(0.85, 0.75, 0.65), (0.80, 0.30, 0.30), (0.30, 0.50, 0.90)]  # skin, skirt, tee
LOOK = LookOptions()  # the full settling budget


def sample(name: str) -> LookGarment:
    path = GARMENTS / f"{name}.glb"
    meta = json.loads(path.with_suffix(".json").read_text())
    prepared = prepare_garment(path.read_bytes(), path.name, meta["category"], "m")
    fabric = preset(meta["fabric"]).to_solver()
    return LookGarment(name, prepared.simulation, prepared.pieces, fabric, meta=meta)


@pytest.fixture(scope="module")
def ava():
    body = generated_twin(Measurements.from_json(AVA["measurements"]))
    return body, BodyLandmarks.of(body)


@pytest.fixture(scope="module")
def layered(ava):
    """T-shirt and skirt given T-shirt first: the category order drapes the skirt first."""
    body, marks = ava
    return drape_look(body, [sample("tshirt"), sample("skirt_a_line")], None, LOOK, landmarks=marks)


def outside_where_covered(look, inner: str, outer: str) -> tuple[int, int]:
    """(inner vertices the outer garment covers, those of them outside it).

    Independent of the solver: from the closest body point of each inner vertex, a ray along
    the body's normal; the outer garment covers the vertex when the ray hits it within 15 cm,
    and the vertex pokes out when it is farther from the skin than that hit (0.5 mm slack).
    """
    g = {d.key: d for d in look.garments}
    body = trimesh.Trimesh(look.body_vertices_m, look.body_faces, process=False)
    cover = trimesh.Trimesh(g[outer].positions_m, g[outer].faces, process=False)
    points = g[inner].positions_m
    q, _, tri = trimesh.proximity.closest_point(body, points)
    bary = trimesh.triangles.points_to_barycentric(body.triangles[tri], q)
    n = np.einsum("pk,pkj->pj", bary, body.vertex_normals[body.faces[tri]])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    height = np.einsum("ij,ij->i", points - q, n)
    hits, ray, _ = cover.ray.intersects_location(q + 1e-4 * n, n, multiple_hits=True)
    first = np.full(len(points), np.inf)
    np.minimum.at(first, ray, np.einsum("ij,ij->i", hits - q[ray], n[ray]))
    covered = first < 0.15
    return int(covered.sum()), int(np.sum(covered & (height > first + 0.0005)))


def test_category_order_drapes_the_skirt_under_the_tshirt(layered):
    assert [g.key for g in layered.garments] == ["skirt_a_line", "tshirt"]
    tee = layered.garments[1]
    assert tee.placement["layer_push_m"] > 0.001  # it was pushed out over the skirt
    assert tee.quality["under_layer_fraction"] <= 0.005


def test_skirt_stays_under_the_tshirt_where_it_covers_it(layered):
    covered, outside = outside_where_covered(layered, "skirt_a_line", "tshirt")
    assert covered > 500  # the T-shirt's hem overlaps the skirt's hips for real
    assert outside <= 0.005 * covered


def test_render_shows_no_skirt_through_the_hem(layered, ava):
    """Four views of the look (PNGs in tests/_out/): no skirt pixel above the T-shirt's hem.
    The same T-shirt draped on the body alone, as looks were draped before layers, shows the
    skirt through it in every view: the check can fail."""
    body, marks = ava
    g = {d.key: d for d in layered.garments}
    skirt = (g["skirt_a_line"].positions_m, g["skirt_a_line"].faces)
    alone = drape_one(sample("tshirt"), body, posed_body(body, None), None, marks, LOOK)
    body_mesh = (layered.body_vertices_m, layered.body_faces)
    tee = (g["tshirt"].positions_m, g["tshirt"].faces)
    for view in VIEWS:
        ids, shade = render([body_mesh, skirt, tee], view, BOX_M)
        save_png(ids, shade, COLOURS, OUT / f"look_layers_{view}.png")
        assert np.sum(ids == 2) > 20_000  # the T-shirt is in view
        assert shows_through(ids, 1, 2) <= 50
        ids_alone, _ = render([body_mesh, skirt, (alone.positions_m, alone.faces)], view, BOX_M)
        assert shows_through(ids_alone, 1, 2) > 500


def test_as_given_order_wears_the_skirt_over_the_tshirt(ava):
    """Tucked in: listed T-shirt first with "as_given", the skirt drapes over it."""
    body, marks = ava
    garments = [sample("tshirt"), sample("skirt_a_line")]
    look = drape_look(body, garments, None, LOOK, landmarks=marks, layer_order="as_given")
    assert [g.key for g in look.garments] == ["tshirt", "skirt_a_line"]
    covered, outside = outside_where_covered(look, "tshirt", "skirt_a_line")
    assert covered > 500
    assert outside <= 0.005 * covered


def test_draping_order_by_category_keeps_ties_in_request_order():
    categories = ["outerwear", "top", "skirt", "dress", "trousers", None]
    assert draping_order(categories) == [2, 4, 3, 1, 5, 0]
    assert draping_order(categories, "as_given") == [0, 1, 2, 3, 4, 5]
    with pytest.raises(SpatialTwinError) as err:
        draping_order(categories, "outside_in")
    assert err.value.code == "invalid_layer_order" and err.value.status == 422


@pytest.mark.parametrize("flip", [False, True])
def test_layer_shell_faces_outward_whatever_the_winding(layered, flip):
    """The skirt as a layer, wound either way: its shell lies its thickness outside the skirt
    and its normals point away from the body."""
    skirt = layered.garments[0]
    faces = skirt.faces[:, ::-1] if flip else skirt.faces
    thickness = 0.0015
    collider = LayeredCollider(
        layered.body_vertices_m,
        layered.body_faces,
        [DrapeLayer(skirt.positions_m, faces, thickness)],
    )
    shell_v = collider.shell.current_m
    shell_n = collider.shell.normals_current
    shift = shell_v - skirt.positions_m
    assert np.allclose(np.linalg.norm(shift, axis=1), thickness, atol=1e-9)
    assert np.all(np.einsum("ij,ij->i", shift, shell_n) > 0.9 * thickness)  # outward
    body = BodyCollider(layered.body_vertices_m, layered.body_faces)
    _, body_n, _, dist = surface_frames(shell_v, body, 0.3)
    near = np.isfinite(dist) & (dist < 0.03)  # where the skirt rests on the hips
    assert near.sum() > 200
    assert np.mean(np.einsum("ij,ij->i", shell_n[near], body_n[near]) > 0.5) > 0.95


async def test_layer_order_in_look_requests(aiohttp_client, tmp_path, ava):
    """`layer_order` is checked before any work (422) and kept with the draping order."""
    body, _ = ava
    app = create_app(tmp_path / "data", seed=False, settings={"look_max_frames": 3})
    client = await aiohttp_client(app)
    twin = await app[TWINS].create_from_body("Ava", body, Rights.from_json(AVA), {})
    ids = {}
    for name in ("tshirt", "skirt_a_line"):
        meta = json.loads((GARMENTS / f"{name}.json").read_text())
        fd = aiohttp.FormData()
        fd.add_field("file", (GARMENTS / f"{name}.glb").read_bytes(), filename=f"{name}.glb")
        keys = ("sku", "name", "category", "fabric", "units")
        fd.add_field("metadata", json.dumps({k: meta[k] for k in keys}))
        r = await client.post("/api/v1/garments", data=fd)
        assert r.status == 201, await r.text()
        ids[name] = (await r.json())["id"]
    request = {"twin": twin["id"], "garments": [ids["tshirt"], ids["skirt_a_line"]]}
    r = await client.post("/api/v1/looks", json={**request, "layer_order": "inside_out"})
    assert r.status == 422 and (await r.json())["error"]["code"] == "invalid_layer_order"
    for order, first in (("as_given", "tshirt"), ("category", "skirt_a_line")):
        r = await client.post("/api/v1/looks", json={**request, "layer_order": order})
        assert r.status == 202, await r.text()
        link = (await r.json())["links"]["job"]
        for _ in range(1200):
            job = await (await client.get(link)).json()
            if job["status"] in ("done", "failed"):
                break
            await asyncio.sleep(0.05)
        assert job["status"] == "done", job
        look = job["result"]
        assert look["layer_order"] == order and look["draping_order"][0] == ids[first]
        assert look["garments"] == request["garments"]  # as requested; draped in draping_order
