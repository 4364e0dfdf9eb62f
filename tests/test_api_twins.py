"""The twins API over real HTTP: create, list, read, pose, licensing, refusals."""

from __future__ import annotations

import json
from urllib.parse import quote

import numpy as np
import pygltflib
import pytest
from scipy.spatial.transform import Rotation

from spatialtwin.body.skeleton import JOINT_NAMES
from spatialtwin.rights.license import Rights
from spatialtwin.server.app import create_app
from spatialtwin.server.keys import STORE, TWINS
from tests.conftest import AVERAGE
from tests.job_polling import job_done, started_job

RIGHTS = {
    "owner": {"model": "Mara Test", "agency": "North Models"},
    "license": {
        "id": "lic_test",
        "channels": ["ecommerce", "mirror"],
        "valid_from": "2026-01-01T00:00:00+00:00",
    },
    "consent": {"given_at": "2026-01-01T00:00:00+00:00"},
}


@pytest.fixture
async def app_client(aiohttp_client, tmp_path, average_body):
    app = create_app(tmp_path / "data", seed=False)
    client = await aiohttp_client(app)
    twins = app[TWINS]
    record = await twins.create_from_body(
        "Mara", average_body, Rights.from_json(RIGHTS), {"kind": "measurements"}
    )
    client.twin_id = record["id"]
    client.store = app[STORE]
    return client


def glb_json(data: bytes) -> pygltflib.GLTF2:
    return pygltflib.GLTF2.load_from_bytes(data)


async def test_healthz_and_list(app_client):
    r = await app_client.get("/healthz")
    assert (await r.json())["status"] == "ok"
    r = await app_client.get("/api/v1/twins")
    twins = (await r.json())["twins"]
    assert [t["id"] for t in twins] == [app_client.twin_id]
    t = twins[0]
    assert t["owner"] == {"model": "Mara Test", "agency": "North Models"}
    assert "Digital twin of Mara Test" in t["disclosure"]
    assert t["measurements"]["height_m"] == pytest.approx(AVERAGE.height_m, abs=0.005)
    assert "blobs" not in t


async def test_create_twin_from_measurements(app_client):
    payload = {
        "name": "Jo",
        "measurements": {
            "height_m": 1.65,
            "chest_m": 0.88,
            "waist_m": 0.70,
            "hips_m": 0.96,
            "inseam_m": 0.76,
            "shoulder_m": 0.37,
        },
        **RIGHTS,
    }
    r = await app_client.post("/api/v1/twins", json=payload)
    # The template fit takes seconds: a `twin.generate` job, whose result is the twin.
    state, seen = await job_done(app_client, await started_job(r))
    assert state["status"] == "done", state
    assert state["kind"] == "twin_generate" and seen == sorted(seen)
    rec = state["result"]
    assert rec == await (await app_client.get(rec["links"]["self"])).json()
    assert rec["measurements"]["height_m"] == pytest.approx(1.65, abs=0.005)
    assert rec["measurements"]["hips_m"] == pytest.approx(0.96, abs=0.015)
    assert rec["vertex_count"] >= 8000
    r = await app_client.get(rec["links"]["body"])
    assert r.status == 200
    assert r.content_type == "model/gltf-binary"
    data = await r.read()
    assert data[:4] == b"glTF"
    gltf = glb_json(data)
    prim = gltf.meshes[0].primitives[0]
    assert gltf.accessors[prim.attributes.POSITION].count == rec["vertex_count"]
    assert gltf.accessors[prim.indices].count == 3 * rec["triangle_count"]


async def test_body_glb_has_canonical_joints_and_provenance(app_client):
    r = await app_client.get(f"/api/v1/twins/{app_client.twin_id}/body.glb?channel=ecommerce")
    gltf = glb_json(await r.read())
    skin = gltf.skins[0]
    assert [gltf.nodes[j].name for j in skin.joints] == list(JOINT_NAMES)
    prov = gltf.asset.extras["spatialtwin"]
    assert prov["twinId"] == app_client.twin_id
    assert prov["licenseId"] == "lic_test"
    assert prov["owner"]["model"] == "Mara Test"
    assert prov["digitalTwin"] is True and "Digital twin" in prov["disclosure"]
    pos = gltf.accessors[gltf.meshes[0].primitives[0].attributes.POSITION]
    assert pos.min[1] == pytest.approx(0.0, abs=1e-6)
    assert pos.max[1] == pytest.approx(AVERAGE.height_m, abs=0.001)


async def test_pose_parameter_rotates_the_joint_nodes(app_client):
    q = Rotation.from_euler("z", 70, degrees=True).as_quat()
    pose = {"root": [0, 0.02, 0], "joints": {"leftUpperArm": list(q)}}
    r = await app_client.get(
        f"/api/v1/twins/{app_client.twin_id}/body.glb?pose={quote(json.dumps(pose))}"
    )
    assert r.status == 200
    gltf = glb_json(await r.read())
    node = next(n for n in gltf.nodes if n.name == "leftUpperArm")
    assert np.allclose(node.rotation, q, atol=1e-6)
    hips = next(n for n in gltf.nodes if n.name == "hips")
    rest = next(
        n
        for n in glb_json(
            await (await app_client.get(f"/api/v1/twins/{app_client.twin_id}/body.glb")).read()
        ).nodes
        if n.name == "hips"
    )
    assert hips.translation[1] - rest.translation[1] == pytest.approx(0.02, abs=1e-6)


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("channel=ar", 403, "channel_not_licensed"),
        ("channel=billboard", 400, "unknown_channel"),
        ("pose=%7Bnot-json", 400, "invalid_pose"),
        ("pose=" + quote('{"joints": {"leftElbow": [0,0,0,1]}}'), 422, "invalid_pose"),
    ],
)
async def test_body_glb_refusals(app_client, query, status, code):
    r = await app_client.get(f"/api/v1/twins/{app_client.twin_id}/body.glb?{query}")
    assert r.status == status
    assert (await r.json())["error"]["code"] == code


async def test_unknown_twin_is_404_json(app_client):
    r = await app_client.get("/api/v1/twins/twn_nope/body.glb")
    assert r.status == 404
    assert (await r.json())["error"]["code"] == "twin_not_found"
    r = await app_client.get("/api/v1/nothing-here")
    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"


async def test_expired_and_future_licenses_are_refused(app_client):
    tid = app_client.twin_id
    r = await app_client.patch(
        f"/api/v1/twins/{tid}/license",
        json={"valid_from": "2020-01-01T00:00:00Z", "valid_until": "2021-01-01T00:00:00Z"},
    )
    assert r.status == 200
    r = await app_client.get(f"/api/v1/twins/{tid}/body.glb")
    assert r.status == 403 and (await r.json())["error"]["code"] == "license_expired"
    r = await app_client.patch(
        f"/api/v1/twins/{tid}/license",
        json={"valid_from": "2099-01-01T00:00:00Z", "valid_until": None},
    )
    r = await app_client.get(f"/api/v1/twins/{tid}/body.glb")
    assert r.status == 403 and (await r.json())["error"]["code"] == "license_not_yet_valid"


async def test_revoked_twin_is_gone_for_good(app_client):
    tid = app_client.twin_id
    r = await app_client.patch(f"/api/v1/twins/{tid}/license", json={"revoked": True})
    assert r.status == 200
    assert (await r.json())["license"]["revoked_at"]
    for channel in ("ecommerce", "mirror"):
        r = await app_client.get(f"/api/v1/twins/{tid}/body.glb?channel={channel}")
        assert r.status == 410
        assert (await r.json())["error"]["code"] == "license_revoked"
    r = await app_client.patch(f"/api/v1/twins/{tid}/license", json={"revoked": False})
    assert r.status == 409


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"measurements": {**AVERAGE.to_json(), "height_m": 0.2}}, 422, "measurement_out_of_range"),
        ({"measurements": {**AVERAGE.to_json(), "height_m": 4.0}}, 422, "measurement_out_of_range"),
        ({"measurements": {**AVERAGE.to_json(), "height_m": 176}}, 422, "measurement_out_of_range"),
        ({"measurements": {"height_m": 1.7}}, 422, "missing_measurements"),
        ({"measurements": AVERAGE.to_json(), "owner": {"model": ""}}, 422, "invalid_owner"),
        (
            {
                "measurements": AVERAGE.to_json(),
                "owner": RIGHTS["owner"],
                "license": {"channels": ["tv"]},
            },
            422,
            "invalid_license",
        ),
    ],
    ids=["too-short", "too-tall", "centimetres", "missing", "no-owner", "bad-channel"],
)
async def test_bad_twin_requests_leave_the_store_unchanged(app_client, payload, status, code):
    payload = {**RIGHTS, **payload}
    before = app_client.store.snapshot(content=True)
    r = await app_client.post("/api/v1/twins", json=payload)
    assert r.status == status
    body = await r.json()
    assert body["error"]["code"] == code and body["error"]["message"]
    assert app_client.store.snapshot(content=True) == before


async def test_non_json_body_is_a_400(app_client):
    before = app_client.store.snapshot(content=True)
    r = await app_client.post(
        "/api/v1/twins", data=b"{height: tall", headers={"Content-Type": "application/json"}
    )
    assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_json"
    assert app_client.store.snapshot(content=True) == before


async def test_failed_write_rolls_back_blobs(app_client, monkeypatch):
    store = app_client.store
    jobs = ("jobs",)  # the job's own record: what it did and how it ended
    before = store.snapshot(content=True, ignore_kinds=jobs)
    real_create = store.create_record

    async def broken_twin_write(kind, *args, **kwargs):
        if kind == "twins":
            raise OSError("disk full")
        return await real_create(kind, *args, **kwargs)

    async def broken_put_record(kind, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store, "put_record", broken_put_record)
    monkeypatch.setattr(store, "create_record", broken_twin_write)  # creates are create-only
    payload = {"measurements": {**AVERAGE.to_json(), "height_m": 1.80, "inseam_m": 0.83}, **RIGHTS}
    r = await app_client.post("/api/v1/twins", json=payload)
    state, _ = await job_done(app_client, await started_job(r))
    assert state["status"] == "failed"
    assert state["error"]["code"] == "internal_error"
    assert store.snapshot(content=True, ignore_kinds=jobs) == before


async def test_upload_of_a_rigged_glb_imports_and_normalises(app_client):
    from aiohttp import FormData

    from tests.conftest import shared

    form = FormData()
    form.add_field(
        "file",
        shared("bodies", "CesiumMan.glb").read_bytes(),
        filename="CesiumMan.glb",
        content_type="model/gltf-binary",
    )
    form.add_field(
        "metadata", json.dumps({"name": "Cesium Man", **RIGHTS}), content_type="application/json"
    )
    r = await app_client.post("/api/v1/twins", data=form)
    assert r.status == 201, await r.text()
    rec = await r.json()
    assert rec["source"]["kind"] == "import"
    assert rec["source"]["units"] == "m"
    assert rec["measurements"]["height_m"] == pytest.approx(1.507, abs=0.01)
    r = await app_client.get(rec["links"]["body"])
    gltf = glb_json(await r.read())
    assert [gltf.nodes[j].name for j in gltf.skins[0].joints] == list(JOINT_NAMES)


@pytest.mark.parametrize(
    ("filename", "data", "status", "code"),
    [
        ("broken.glb", b"glTF\x02\x00\x00\x00\xff\xff\x00\x00garbage", 400, "corrupt_file"),
        ("body.stl", b"solid x\nendsolid x\n", 415, "unsupported_format"),
        ("nan.obj", b"v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", 422, "non_finite_vertices"),
        ("points.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\n", 422, "no_triangles"),
    ],
    ids=["corrupt-glb", "unsupported", "nan", "no-faces"],
)
async def test_bad_body_uploads_are_refused_and_leave_no_trace(
    app_client, filename, data, status, code
):
    from aiohttp import FormData

    before = app_client.store.snapshot(content=True)
    form = FormData()
    form.add_field("file", data, filename=filename)
    form.add_field("metadata", json.dumps(RIGHTS), content_type="application/json")
    r = await app_client.post("/api/v1/twins", data=form)
    assert r.status == status, await r.text()
    assert (await r.json())["error"]["code"] == code
    assert app_client.store.snapshot(content=True) == before
