"""Garments over real HTTP: every MakeHuman outfit at true scale, refusals, jobs, fabrics."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile

import aiohttp
import numpy as np
import pygltflib
import pytest
import trimesh

from spatialtwin.rights.license import Rights
from spatialtwin.server.app import create_app
from spatialtwin.server.keys import STORE, TWINS
from tests.conftest import shared
from tests.test_api_twins import RIGHTS

# OBJ-native heights from SOURCES.md (decimetres) and quads per file.
OUTFITS = {
    "female_casualsuit01": (-7.38, 5.47, 2118),
    "female_elegantsuit01": (-2.99, 5.62, 2096),
    "female_sportsuit01": (-7.38, 5.47, 1718),
    "male_casualsuit02": (-7.53, 6.97, 2060),
    "male_casualsuit06": (-7.53, 6.87, 3584),
    "male_worksuit01": (0.41, 14.36, 3493),
}

# A custom fabric a merchandiser may define (tests/test_rate_limit.py posts it too).
HEAVY_LINEN = {
    "id": "linen-heavy",
    "name": "Heavy linen",
    "areal_density_gsm": 280,
    "thickness_mm": 0.6,
    "stretch_warp_n_m": 5000,
    "stretch_weft_n_m": 4000,
    "shear_n_m": 60,
    "bending_n_m": 3e-5,
    "friction": 0.4,
}


async def _client(aiohttp_client, tmp_path, body, settings=None):
    app = create_app(tmp_path / "data", seed=False, settings=settings)
    client = await aiohttp_client(app)
    record = await app[TWINS].create_from_body(
        "Mara", body, Rights.from_json(RIGHTS), {"kind": "measurements"}
    )
    client.twin_id = record["id"]
    client.store = app[STORE]
    return client


@pytest.fixture
async def api(aiohttp_client, tmp_path, average_body):
    return await _client(aiohttp_client, tmp_path, average_body)


def form(data: bytes, filename: str, **meta):
    metadata = {
        "sku": "SKU-1",
        "name": "Test",
        "category": "outfit",
        "size_label": "M",
        "fabric": "cotton-jersey",
        **meta,
    }
    fd = aiohttp.FormData()
    fd.add_field("file", data, filename=filename, content_type="application/octet-stream")
    fd.add_field("metadata", json.dumps(metadata), content_type="application/json")
    return fd


def outfit_bytes(name: str) -> bytes:
    return shared("garments", f"{name}.obj").read_bytes()


async def test_every_makehuman_outfit_is_stored_at_true_scale(api):
    for name, (y_lo, y_hi, quads) in OUTFITS.items():
        r = await api.post("/api/v1/garments", data=form(outfit_bytes(name), f"{name}.obj"))
        assert r.status == 201, await r.text()
        rec = await r.json()
        assert rec["units"] == "dm" and rec["units_detected"] is True, name
        assert rec["up_axis"] == "+Y"
        assert rec["extent_m"][1] == pytest.approx((y_hi - y_lo) / 10, abs=0.002), name
        assert rec["triangles"] == 2 * quads, name
        sim = rec["simulation"]
        assert sim["triangles"] > rec["triangles"]
        assert sim["edge_length_m"]["max"] <= 4 / 3 * rec["edge_length_m"] * 1.2
        assert 0.6 * rec["edge_length_m"] < sim["edge_length_m"]["mean"] < rec["edge_length_m"]
        assert len([p for p in rec["pieces"] if p["area_m2"] > 0.1]) >= 2
        assert rec["fabric"]["id"] == "cotton-jersey"
        assert rec["links"]["self"] == f"/api/v1/garments/{rec['id']}"
        got = await (await api.get(rec["links"]["self"])).json()
        assert got["extent_m"] == rec["extent_m"] and "blobs" not in got
    listed = (await (await api.get("/api/v1/garments")).json())["garments"]
    assert len(listed) == len(OUTFITS)
    # One record plus two blobs (source file, prepared meshes) per garment, one twin (3).
    assert api.store.snapshot() == {"records": 1 + 6, "blobs": 2 + 12}


async def test_explicit_units_override_detection(api):
    r = await api.post(
        "/api/v1/garments", data=form(outfit_bytes("female_casualsuit01"), "a.obj", units="cm")
    )
    assert r.status == 422  # 0.13 m is no outfit: the category check names it
    assert (await r.json())["error"]["code"] == "category_mismatch"
    r = await api.post(
        "/api/v1/garments",
        data=form(outfit_bytes("female_elegantsuit01"), "b.obj", units="dm"),
    )
    rec = await r.json()
    assert rec["units"] == "dm" and rec["units_detected"] is False


def _zip(entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


TRI = b"v 0 0 0\nv 0.5 0 0\nv 0 0.7 0\n"


def _bad_inputs():
    obj = outfit_bytes("female_casualsuit01")
    glb_cut = b"glTF\x02\x00\x00\x00" + (5000).to_bytes(4, "little") + b"\x00" * 40
    nan_obj = obj.replace(b"v 0.9040 1.3165 -0.4041", b"v nan 1.3165 -0.4041")
    # One closed tube 13 units tall: a plausible outfit height in dm, but a single piece.
    upright = trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0])
    tube = trimesh.creation.cylinder(radius=1.5, height=13.0, sections=24, transform=upright)
    tube = tube.export(file_type="obj").encode()
    degenerate = obj + b"\n" + b"\n".join(b"f %d %d %d" % (i, i, i + 1) for i in range(1, 200))
    return [
        ("truncated-obj", obj[:-100], "x.obj", {}, 422, "corrupt_file"),
        ("truncated-glb", glb_cut, "x.glb", {}, 422, "corrupt_file"),
        ("unsupported", b"Kaydara FBX Binary  \x00", "x.fbx", {}, 415, "unsupported_format"),
        ("zip-bomb", _zip({"g.obj": b"#" * (60 * 1024 * 1024)}), "x.zip", {}, 413, "zip_bomb"),
        ("zip-traversal", _zip({"../../evil.obj": obj}), "x.zip", {}, 422, "unsafe_archive_path"),
        ("non-finite", nan_obj, "x.obj", {}, 422, "non_finite_vertices"),
        ("degenerate", degenerate, "x.obj", {}, 422, "degenerate_triangles"),
        ("no-geometry", b"# nothing\n" + TRI, "x.obj", {}, 422, "no_geometry"),
        ("category", obj, "x.obj", {"category": "top"}, 422, "category_mismatch"),
        ("one-piece-outfit", tube, "x.obj", {}, 422, "category_mismatch"),
        ("unknown-fabric", obj, "x.obj", {"fabric": "kevlar"}, 422, "unknown_fabric"),
        ("bad-category", obj, "x.obj", {"category": "hat"}, 422, "invalid_category"),
    ]


@pytest.mark.parametrize(
    ("data", "filename", "meta", "status", "code"),
    [case[1:] for case in _bad_inputs()],
    ids=[case[0] for case in _bad_inputs()],
)
async def test_bad_uploads_are_refused_and_leave_nothing(api, data, filename, meta, status, code):
    before = api.store.snapshot(content=True)
    r = await api.post("/api/v1/garments", data=form(data, filename, **meta))
    body = await r.json()
    assert r.status == status, body
    assert body["error"]["code"] == code and body["error"]["message"]
    assert api.store.snapshot(content=True) == before


async def test_triangle_budget_is_configurable(aiohttp_client, tmp_path, average_body):
    api = await _client(aiohttp_client, tmp_path, average_body, {"garment_max_triangles": 4000})
    before = api.store.snapshot(content=True)
    r = await api.post("/api/v1/garments", data=form(outfit_bytes("female_casualsuit01"), "a.obj"))
    body = await r.json()
    assert r.status == 413 and body["error"]["code"] == "too_many_triangles"
    assert body["error"]["detail"] == {"triangles": 4236, "limit": 4000}
    assert api.store.snapshot(content=True) == before


async def test_large_upload_becomes_a_job_with_progress(aiohttp_client, tmp_path, average_body):
    api = await _client(
        aiohttp_client, tmp_path, average_body, {"garment_inline_max_bytes": 100_000}
    )
    r = await api.post("/api/v1/garments", data=form(outfit_bytes("male_worksuit01"), "w.obj"))
    assert r.status == 202
    job = await r.json()
    assert job["job"]["status"] in ("queued", "running")
    seen = []
    for _ in range(600):
        state = await (await api.get(job["links"]["job"])).json()
        seen.append(state["progress"])
        if state["status"] in ("done", "failed"):
            break
        await asyncio.sleep(0.02)
    assert state["status"] == "done", state
    assert state["kind"] == "garment_ingest" and state["error"] is None
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(set(seen)) >= 3
    assert state["result"]["units"] == "dm" and state["result"]["triangles"] == 6986
    stored = await (await api.get(f"/api/v1/garments/{state['result']['id']}")).json()
    assert stored["sku"] == "SKU-1"


async def test_failed_job_leaves_only_its_job_record(aiohttp_client, tmp_path, average_body):
    api = await _client(aiohttp_client, tmp_path, average_body, {"garment_inline_max_bytes": 10})
    before = api.store.snapshot(content=True)
    obj = outfit_bytes("female_casualsuit01")
    r = await api.post("/api/v1/garments", data=form(obj, "a.obj", category="skirt"))
    job = await r.json()
    for _ in range(600):
        state = await (await api.get(job["links"]["job"])).json()
        if state["status"] in ("done", "failed"):
            break
        await asyncio.sleep(0.02)
    assert state["status"] == "failed" and state["result"] is None
    assert state["error"]["code"] == "category_mismatch"
    assert api.store.snapshot() == {"records": before["records"] + 1, "blobs": before["blobs"]}
    assert (await (await api.get("/api/v1/garments")).json())["garments"] == []


async def test_unknown_job_is_404(api):
    r = await api.get("/api/v1/jobs/job_nope")
    assert r.status == 404 and (await r.json())["error"]["code"] == "job_not_found"


async def test_fabric_presets_and_custom_fabrics(api):
    fabrics = {f["id"]: f for f in (await (await api.get("/api/v1/fabrics")).json())["fabrics"]}
    for preset in (
        "cotton-jersey",
        "cotton-poplin",
        "denim",
        "silk-charmeuse",
        "wool-knit",
        "polyester",
    ):
        assert fabrics[preset]["preset"] is True
    assert fabrics["denim"]["areal_density_gsm"] == pytest.approx(373.0, abs=0.5)
    assert fabrics["silk-charmeuse"]["areal_density_gsm"] == pytest.approx(68.9, abs=0.5)
    assert 140 <= fabrics["cotton-jersey"]["areal_density_gsm"] <= 200
    assert fabrics["denim"]["bending_n_m"] > 10 * fabrics["cotton-jersey"]["bending_n_m"]
    assert fabrics["denim"]["stretch_weft_n_m"] > 10 * fabrics["cotton-jersey"]["stretch_weft_n_m"]
    custom = dict(HEAVY_LINEN)
    before = api.store.snapshot(content=True)
    r = await api.post("/api/v1/fabrics", json={**custom, "areal_density_gsm": -3})
    assert r.status == 422 and (await r.json())["error"]["code"] == "invalid_fabric"
    assert api.store.snapshot(content=True) == before
    r = await api.post("/api/v1/fabrics", json=custom)
    assert r.status == 201
    r = await api.post("/api/v1/fabrics", json=custom)
    assert r.status == 409
    r = await api.post(
        "/api/v1/garments",
        data=form(outfit_bytes("female_sportsuit01"), "s.obj", fabric="linen-heavy"),
    )
    rec = await r.json()
    assert rec["fabric"]["areal_density_gsm"] == 280


async def test_preview_glb_has_twin_and_placed_garment(api):
    fd = form(outfit_bytes("female_casualsuit01"), "a.obj")
    binding = shared("garments", "female_casualsuit01.mhclo").read_bytes()
    fd.add_field("binding", binding, filename="a.mhclo", content_type="text/plain")
    r = await api.post("/api/v1/garments", data=fd)
    rec = await r.json()
    assert r.status == 201 and rec["authoring_body"]["kind"] == "hm08"
    r = await api.get(f"{rec['links']['preview']}?twin={api.twin_id}&channel=ecommerce")
    assert r.status == 200 and r.content_type == "model/gltf-binary"
    gltf = pygltflib.GLTF2.load_from_bytes(await r.read())
    names = {n.name: n for n in gltf.nodes}
    assert names["twin"].skin is not None
    node = names[f"garment:{rec['id']}"]
    pos = gltf.accessors[gltf.meshes[node.mesh].primitives[0].attributes.POSITION]
    assert pos.max[1] == pytest.approx(1.47 + 0.05, abs=0.08)  # collar near the neck (1.47 m)
    # Refitted through hm08 onto Ava, whose chest (0.90 m) is larger than hm08's (0.79 m):
    # the refit follows the body before the solver pulls the cloth back to its own size, so it
    # is no narrower than as authored, and wider by at most the chest ratio.
    width = float(np.ptp([pos.min[0], pos.max[0]]))
    assert rec["extent_m"][0] - 0.01 <= width <= rec["extent_m"][0] * 0.90 / 0.79
    prov = gltf.asset.extras["spatialtwin"]
    assert prov["twinId"] == api.twin_id and prov["garment"]["id"] == rec["id"]
    r = await api.get(f"{rec['links']['preview']}?twin={api.twin_id}&channel=ar")
    assert r.status == 403 and (await r.json())["error"]["code"] == "channel_not_licensed"
