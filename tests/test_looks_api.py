"""Looks over real HTTP: POST → job with progress → record and valid GLB with provenance;
license refusals on create and on every read; bad requests refused with the store unchanged."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import numpy as np
import pygltflib
import pytest

from spatialtwin.body.parametric import Measurements
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.rights.license import Rights
from spatialtwin.server.app import create_app
from spatialtwin.server.keys import STORE, TWINS
from tests.conftest import generated_twin
from tests.gltf_validation import assert_valid_glb
from tests.test_looks_cli import read_accessor

REPO = Path(__file__).resolve().parents[1]
AVA = json.loads((REPO / "assets" / "twins" / "ava.json").read_text())
GARMENTS = REPO / "assets" / "garments"
FRAMES = 40
POSE = {"root": [0.0, 0.0, 0.0], "joints": {"spine": [0.0, 0.08715574, 0.0, 0.9961947]}}


@pytest.fixture(scope="module")
def ava_body() -> TwinBody:
    return generated_twin(Measurements.from_json(AVA["measurements"]))


def upload(name: str) -> aiohttp.FormData:
    meta = json.loads((GARMENTS / f"{name}.json").read_text())
    fd = aiohttp.FormData()
    fd.add_field("file", (GARMENTS / f"{name}.glb").read_bytes(), filename=f"{name}.glb")
    fd.add_field(
        "metadata",
        json.dumps({k: meta[k] for k in ("sku", "name", "category", "fabric", "units")}),
    )
    return fd


@pytest.fixture
async def api(aiohttp_client, tmp_path, ava_body):
    app = create_app(tmp_path / "data", seed=False, settings={"look_max_frames": FRAMES})
    client = await aiohttp_client(app)
    rights = {**AVA, "license": {**AVA["license"], "channels": ["ecommerce", "mirror"]}}
    twin = await app[TWINS].create_from_body("Ava", ava_body, Rights.from_json(rights), {})
    client.twin_id = twin["id"]
    client.store = app[STORE]
    client.garment_ids = {}
    for name in ("tshirt", "skirt_a_line"):
        r = await client.post("/api/v1/garments", data=upload(name))
        assert r.status == 201, await r.text()
        client.garment_ids[name] = (await r.json())["id"]
    return client


async def finished(api, job_link: str) -> tuple[dict, list[float]]:
    seen = []
    for _ in range(1200):
        state = await (await api.get(job_link)).json()
        seen.append(state["progress"])
        if state["status"] in ("done", "failed"):
            return state, seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_link} did not finish: {state}")


async def test_look_job_drapes_layers_and_serves_a_valid_glb(api):
    skirt, tee = api.garment_ids["skirt_a_line"], api.garment_ids["tshirt"]
    payload = {"twin": api.twin_id, "garments": [skirt, tee], "pose": POSE, "channel": "ecommerce"}
    r = await api.post("/api/v1/looks", json=payload)
    assert r.status == 202, await r.text()
    started = await r.json()
    assert started["job"]["status"] in ("queued", "running")
    state, seen = await finished(api, started["links"]["job"])
    assert state["status"] == "done", state
    assert state["kind"] == "look_drape" and state["error"] is None
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(set(seen)) >= 2
    look = state["result"]
    assert look["twin"] == api.twin_id and look["garments"] == [skirt, tee]
    assert look["pose"]["joints"]["spine"] == pytest.approx(POSE["joints"]["spine"])
    assert set(look["stats"]) == {skirt, tee}
    for stats in look["stats"].values():
        assert 1 <= stats["frames"] <= FRAMES
        assert 0.0 <= stats["mean_stretch"] < 0.05 and stats["max_stretch"] < 2.0
        assert isinstance(stats["settled"], bool) and "min_body_clearance_m" in stats
    assert look["links"]["glb"] == f"/api/v1/looks/{look['id']}/look.glb"
    got = await (await api.get(f"/api/v1/looks/{look['id']}")).json()
    assert got["stats"] == look["stats"] and "blobs" not in got

    r = await api.get(look["links"]["glb"])
    assert r.status == 200 and r.content_type == "model/gltf-binary"
    data = await r.read()
    assert_valid_glb(data)
    gltf = pygltflib.GLTF2.load_from_bytes(data)
    names = [n.name for n in gltf.nodes if n.mesh is not None]
    assert names == ["twin", f"garment:{skirt}", f"garment:{tee}"]
    spine = next(n for n in gltf.nodes if n.name == "spine")
    np.testing.assert_allclose(spine.rotation, POSE["joints"]["spine"], atol=1e-6)
    prov = gltf.asset.extras["spatialtwin"]
    assert prov["twinId"] == api.twin_id and prov["licenseId"] == AVA["license"]["id"]
    assert prov["digitalTwin"] is True and "Ava Sample" in prov["disclosure"]
    assert [g["id"] for g in prov["garments"]] == [skirt, tee]
    assert [g["fabric"] for g in prov["garments"]] == ["cotton-poplin", "cotton-jersey"]
    tee_node = next(n for n in gltf.nodes if n.name == f"garment:{tee}")
    attrs = gltf.meshes[tee_node.mesh].primitives[0].attributes
    tee_y = read_accessor(gltf, attrs.POSITION)[:, 1]
    assert tee_y.min() > 0.8 and tee_y.max() < 1.5  # a T-shirt between hips and neck, metres
    # The T-shirt keeps its material; the fit map is an overlay, not vertex colours.
    assert attrs.COLOR_0 is None and attrs._STRAIN is not None and attrs._EASE is not None

    # Revoking the twin's license withdraws its looks on every read.
    r = await api.patch(f"/api/v1/twins/{api.twin_id}/license", json={"revoked": True})
    assert r.status == 200
    for path in (f"/api/v1/looks/{look['id']}", look["links"]["glb"]):
        r = await api.get(path)
        assert r.status == 410 and (await r.json())["error"]["code"] == "license_revoked"


async def test_channel_outside_the_license_is_refused_before_any_work(api):
    before = api.store.snapshot(content=True)
    payload = {"twin": api.twin_id, "garments": [api.garment_ids["tshirt"]], "channel": "ar"}
    r = await api.post("/api/v1/looks", json=payload)
    body = await r.json()
    assert r.status == 403 and body["error"]["code"] == "channel_not_licensed"
    assert body["error"]["detail"]["licensed"] == ["ecommerce", "mirror"]
    assert api.store.snapshot(content=True) == before


BAD = [
    ("unknown-twin", {"twin": "twn_nobody"}, 404, "twin_not_found"),
    ("unknown-garment", {"garments": ["gar_nothing"]}, 404, "garment_not_found"),
    ("no-garments", {"garments": []}, 422, "invalid_garments"),
    ("duplicate-garments", {"garments": ["TEE", "TEE"]}, 422, "invalid_garments"),
    ("no-twin", {"twin": None}, 422, "missing_twin"),
    ("unknown-joint", {"pose": {"joints": {"tail": [0, 0, 0, 1]}}}, 422, "invalid_pose"),
    ("zero-quaternion", {"pose": {"joints": {"spine": [0, 0, 0, 0]}}}, 422, "invalid_pose"),
    ("pose-not-object", {"pose": [1, 2, 3]}, 422, "invalid_pose"),
    ("unknown-field", {"size": "XL"}, 422, "invalid_request"),
    ("unknown-channel", {"channel": "billboard"}, 400, "unknown_channel"),
]


@pytest.mark.parametrize(
    ("change", "status", "code"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
async def test_bad_look_requests_are_refused_and_leave_the_store_unchanged(
    api, change, status, code
):
    before = api.store.snapshot(content=True)
    payload = {"twin": api.twin_id, "garments": [api.garment_ids["tshirt"]], **change}
    if payload["garments"] == ["TEE", "TEE"]:
        payload["garments"] = [api.garment_ids["tshirt"]] * 2
    r = await api.post("/api/v1/looks", json=payload)
    body = await r.json()
    assert r.status == status, body
    assert body["error"]["code"] == code and body["error"]["message"]
    assert api.store.snapshot(content=True) == before


async def test_non_json_body_and_unknown_look(api):
    before = api.store.snapshot(content=True)
    r = await api.post("/api/v1/looks", data=b"{twin:", headers={"Content-Type": "text/plain"})
    assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_json"
    r = await api.get("/api/v1/looks/look_nope/look.glb")
    assert r.status == 404 and (await r.json())["error"]["code"] == "look_not_found"
    assert api.store.snapshot(content=True) == before
