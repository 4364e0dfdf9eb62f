"""Levels of a draped look: built once per drape, new URLs after a new drape, license-bound."""

from __future__ import annotations

import pygltflib
import pytest

from tests.job_polling import job_done
from tests.test_looks_api import api, ava_body, finished  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow


async def drape(api, garment: str, pose: dict | None = None) -> dict:  # noqa: F811
    payload = {"twin": api.twin_id, "garments": [garment], "channel": "ecommerce"}
    if pose is not None:
        payload["pose"] = pose
    r = await api.post("/api/v1/looks", json=payload)
    assert r.status == 202, await r.text()
    state, _ = await finished(api, (await r.json())["links"]["job"])
    assert state["status"] == "done", state
    return state["result"]


async def levels_of(api, url: str):  # noqa: F811
    """The manifest at `url`: the first request starts the build job (202, never a build
    inside the request); once it is done the manifest is served (200)."""
    r = await api.get(url)
    assert r.status == 202, await r.text()
    state, _ = await job_done(api, (await r.json())["links"]["job"])
    assert state["status"] == "done" and state["kind"] == "lod_build", state
    return await api.get(url)


async def test_look_levels_are_cached_per_drape_and_withdrawn_on_revocation(api):  # noqa: F811
    skirt = await drape(api, api.garment_ids["skirt_a_line"])
    url = f"/api/v1/looks/{skirt['id']}/lod/manifest.json"
    r = await levels_of(api, url)
    assert r.status == 200, await r.text()
    manifest = await r.json()
    etag = r.headers["ETag"]
    levels = manifest["levels"]
    assert len(levels) >= 4 and manifest["lookId"] == skirt["id"]
    assert [lv["triangles"] for lv in levels] == sorted(
        (lv["triangles"] for lv in levels), reverse=True
    )
    r = await api.get(url, headers={"If-None-Match": etag})
    assert r.status == 304

    level = await api.get(levels[0]["url"])
    assert level.status == 200 and "immutable" in level.headers["Cache-Control"]
    gltf = pygltflib.GLTF2.load_from_bytes(await level.read())
    names = {n.name for n in gltf.nodes if n.mesh is not None}
    assert "twin" in names and any(n.startswith("garment:") for n in names)

    # A new drape is new content: its levels live at new URLs; the old ones stay served.
    tee = await drape(api, api.garment_ids["tshirt"])
    other = await (await levels_of(api, f"/api/v1/looks/{tee['id']}/lod/manifest.json")).json()
    assert {lv["url"] for lv in other["levels"]}.isdisjoint({lv["url"] for lv in levels})
    assert (await api.get(levels[1]["url"])).status == 200

    # Revoking the twin withdraws the manifest and every level file of its looks.
    r = await api.patch(f"/api/v1/twins/{api.twin_id}/license", json={"revoked": True})
    assert r.status == 200
    r = await api.get(url)
    assert r.status == 410 and (await r.json())["error"]["code"] == "license_revoked"
    # (The revocation withdrew them before it answered.)
    for lv in levels + other["levels"]:
        assert (await api.get(lv["url"])).status == 404


async def test_a_posed_look_streams_static_levels_of_its_pose(api):  # noqa: F811
    """A posed look once answered 422 `lod_needs_rest_pose`; now its levels are the posed
    meshes baked (no skin: the draped cloth would not follow the body into another pose)."""
    pose = {"root": [0, 0, 0], "joints": {"spine": [0.0, 0.0871557, 0.0, 0.9961947]}}
    look = await drape(api, api.garment_ids["skirt_a_line"], pose)
    r = await levels_of(api, f"/api/v1/looks/{look['id']}/lod/manifest.json")
    assert r.status == 200, await r.text()
    manifest = await r.json()
    assert manifest["skinned"] is False and len(manifest["levels"]) >= 4
    full = await (await api.get(manifest["levels"][0]["url"])).read()
    gltf = pygltflib.GLTF2.load_from_bytes(full)
    assert not gltf.skins and "twin" in {n.name for n in gltf.nodes}
