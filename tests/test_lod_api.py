"""LOD streaming over HTTP: the manifest, immutable level files, caching and invalidation.

The levels are built once per distinct input and kept in the store; these tests check what a
browser and a CDN rely on: strong ETags with 304s, content-hashed immutable files, byte ranges,
new URLs when the body changes, the same URLs when nothing the files show changed, and license
refusals. A manifest not built yet answers 202 with the `lod.build` job that builds it (never
inside the request); these tests follow the job and ask again, as a client would. Builds use
cheaper error sampling (bind pose only) to keep the module fast; the level chain itself is
covered by tests/test_lod_levels.py.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import replace

import numpy as np
import pygltflib
import pytest

from spatialtwin.gltf.body_arrays import body_to_npz
from spatialtwin.lod.levels import DEFAULTS
from spatialtwin.rights.license import Rights
from spatialtwin.server.app import create_app
from spatialtwin.server.keys import SERVICES, STORE, TWINS
from spatialtwin.store.embedded import EmbeddedStore
from tests.conftest import AVERAGE
from tests.job_polling import job_done

FAST_LOD = replace(DEFAULTS, error_samples=1000, measure_poses=False, candidates=())
RIGHTS = {
    "owner": {"model": "Mara Test", "agency": "North Models"},
    "license": {
        "id": "lic_lod_test",
        "channels": ["ecommerce", "mirror"],
        "valid_from": "2026-01-01T00:00:00+00:00",
    },
    "consent": {"given_at": "2026-01-01T00:00:00+00:00"},
}


@pytest.fixture
async def lod_client(aiohttp_client, tmp_path, average_body):
    app = create_app(tmp_path / "data", seed=False, settings={"lod_options": FAST_LOD})
    client = await aiohttp_client(app)
    record = await app[TWINS].create_from_body(
        "Mara", average_body, Rights.from_json(RIGHTS), {"kind": "measurements"}
    )
    client.twin_id = record["id"]
    client.app_ref = app
    return client


def manifest_url(twin_id: str, channel: str = "ecommerce") -> str:
    return f"/api/v1/twins/{twin_id}/lod/manifest.json?channel={channel}"


async def built(client, r) -> None:
    """Follow the build job of a 202 manifest answer to its end."""
    assert r.status == 202, await r.text()
    started = await r.json()
    assert r.headers["Location"] == started["links"]["job"]
    state, _ = await job_done(client, started["links"]["job"])
    assert state["status"] == "done" and state["kind"] == "lod_build", state


async def get_manifest(client, channel: str = "ecommerce", headers=None) -> tuple[dict, str]:
    r = await client.get(manifest_url(client.twin_id, channel), headers=headers)
    if r.status == 202:
        await built(client, r)
        r = await client.get(manifest_url(client.twin_id, channel), headers=headers)
    assert r.status == 200, await r.text()
    return await r.json(), r.headers["ETag"]


def level_urls(manifest: dict) -> list[str]:
    out = []
    for lv in manifest["levels"]:
        out += [lv["url"], lv["fallback"]["url"], lv["quantized"]["url"]]
    return out


async def test_manifest_has_a_strong_etag_and_answers_304(lod_client):
    manifest, etag = await get_manifest(lod_client)
    assert etag.startswith('"') and not etag.startswith("W/")
    assert etag == f'"{manifest["key"]}"'
    assert len(manifest["levels"]) == 4
    record = await lod_client.app_ref[TWINS].get(lod_client.twin_id)
    assert manifest["levels"][0]["triangles"] == record["triangle_count"]
    assert manifest["bounds_m"]["max"][1] == pytest.approx(AVERAGE.height_m, abs=0.005)
    r = await lod_client.get(manifest_url(lod_client.twin_id), headers={"If-None-Match": etag})
    assert r.status == 304
    assert r.headers["ETag"] == etag
    assert await r.read() == b""
    # A second request is served from the store: same key, nothing rebuilt.
    again, etag2 = await get_manifest(lod_client)
    assert etag2 == etag and level_urls(again) == level_urls(manifest)


async def test_level_files_are_immutable_and_tagged_with_their_hash(lod_client):
    manifest, _ = await get_manifest(lod_client)
    for url in level_urls(manifest):
        r = await lod_client.get(url)
        assert r.status == 200, url
        data = await r.read()
        sha = url.rsplit("/", 1)[1].split(".")[0]
        assert hashlib.sha256(data).hexdigest() == sha
        assert r.headers["ETag"] == f'"{sha}"'
        assert "immutable" in r.headers["Cache-Control"]
        assert "max-age=31536000" in r.headers["Cache-Control"]
        expected_type = "model/gltf-binary" if url.endswith(".glb") else "application/octet-stream"
        assert r.headers["Content-Type"] == expected_type
        assert int(r.headers["Content-Length"]) == len(data)
    first = manifest["levels"][manifest["firstLevel"]]
    r = await lod_client.get(first["url"])
    data = await r.read()
    assert len(data) == first["bytes"]
    doc = pygltflib.GLTF2.load_from_bytes(data)
    assert doc.asset.extras["spatialtwin"]["twinId"] == lod_client.twin_id
    assert doc.asset.extras["spatialtwin"]["lod"]["triangles"] == first["triangles"]
    r = await lod_client.get(first["url"], headers={"If-None-Match": f'"{first["url"][-68:-4]}"'})
    assert r.status == 304 and "immutable" in r.headers["Cache-Control"]


async def test_range_requests_return_exact_slices(lod_client):
    manifest, _ = await get_manifest(lod_client)
    url = manifest["levels"][0]["url"]
    whole = await (await lod_client.get(url)).read()
    r = await lod_client.get(url, headers={"Range": "bytes=100-1123"})
    assert r.status == 206
    assert await r.read() == whole[100:1124]
    assert r.headers["Content-Range"] == f"bytes 100-1123/{len(whole)}"
    assert r.headers["ETag"] == f'"{url[-68:-4]}"'
    r = await lod_client.get(url, headers={"Range": "bytes=-20"})
    assert r.status == 206 and await r.read() == whole[-20:]
    r = await lod_client.get(url, headers={"Range": f"bytes={len(whole) + 10}-"})
    assert r.status == 416


async def test_unknown_or_non_lod_hashes_are_404_json(lod_client):
    r = await lod_client.get("/api/v1/lod/" + "0" * 64 + ".glb")
    assert r.status == 404
    assert (await r.json())["error"]["code"] == "lod_file_not_found"
    # The twin's raw body arrays are a blob in the same store, but not a LOD file.
    record = await lod_client.app_ref[TWINS].get(lod_client.twin_id)
    r = await lod_client.get(f"/api/v1/lod/{record['blobs']['body_npz']}.bin")
    assert r.status == 404
    assert (await r.json())["error"]["code"] == "lod_file_not_found"
    manifest, _ = await get_manifest(lod_client)
    glb_as_bin = manifest["levels"][1]["url"][:-4] + ".bin"
    r = await lod_client.get(glb_as_bin)
    assert r.status == 404


async def test_a_new_body_gives_new_level_urls(lod_client, average_body):
    before, etag = await get_manifest(lod_client)
    # A re-scan of the same person, 2 mm fuller: the record now points at new body arrays.
    fuller = replace(
        average_body, vertices_m=average_body.vertices_m + 0.002 * average_body.normals
    )
    app = lod_client.app_ref
    key, _ = await app[STORE].put_blob(body_to_npz(fuller))
    record = await app[TWINS].get(lod_client.twin_id)
    record["blobs"]["body_npz"] = key
    await app[STORE].put_record("twins", record["id"], record)

    after, etag_after = await get_manifest(lod_client, headers={"If-None-Match": etag})
    assert etag_after != etag
    assert after["inputs"]["twinBody"] == key != before["inputs"]["twinBody"]
    assert not set(level_urls(after)) & set(level_urls(before))
    # The new levels show the new body: the full level is 2 mm wider at the widest point.
    width = lambda m: m["bounds_m"]["max"][0] - m["bounds_m"]["min"][0]  # noqa: E731
    assert width(after) - width(before) == pytest.approx(0.004, abs=0.0005)
    # Old URLs stay valid for clients that still hold them (immutable means immutable).
    r = await lod_client.get(before["levels"][0]["url"])
    assert r.status == 200


async def test_license_dates_do_not_change_bytes_but_channels_do(lod_client):
    before, etag = await get_manifest(lod_client)
    tid = lod_client.twin_id
    r = await lod_client.patch(
        f"/api/v1/twins/{tid}/license", json={"valid_until": "2031-01-01T00:00:00Z"}
    )
    assert r.status == 200
    same, etag_same = await get_manifest(lod_client)
    assert etag_same == etag and level_urls(same) == level_urls(before)
    # The channels are written into every level's provenance, so the files must change.
    r = await lod_client.patch(
        f"/api/v1/twins/{tid}/license", json={"channels": ["ecommerce", "mirror", "ar"]}
    )
    assert r.status == 200
    changed, etag_changed = await get_manifest(lod_client)
    assert etag_changed != etag
    assert changed["inputs"]["twinBody"] == before["inputs"]["twinBody"]

    def glbs(m: dict) -> set[str]:
        return {lv["url"] for lv in m["levels"]} | {lv["quantized"]["url"] for lv in m["levels"]}

    assert not glbs(changed) & glbs(before)
    # The uncompressed fallback buffers hold geometry only: same body, same bytes, same URLs.
    assert [lv["fallback"]["url"] for lv in changed["levels"]] == [
        lv["fallback"]["url"] for lv in before["levels"]
    ]
    doc = pygltflib.GLTF2.load_from_bytes(
        await (await lod_client.get(changed["levels"][-1]["url"])).read()
    )
    assert doc.asset.extras["spatialtwin"]["channels"] == ["ecommerce", "mirror", "ar"]
    # Same geometry, so the same triangle counts and errors.
    tri = lambda m: [lv["triangles"] for lv in m["levels"]]  # noqa: E731
    assert tri(changed) == tri(before)


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("channel=ar", 403, "channel_not_licensed"),
        ("channel=billboard", 400, "unknown_channel"),
    ],
)
async def test_manifest_refuses_unlicensed_channels(lod_client, query, status, code):
    r = await lod_client.get(f"/api/v1/twins/{lod_client.twin_id}/lod/manifest.json?{query}")
    assert r.status == status
    assert (await r.json())["error"]["code"] == code
    assert await lod_client.app_ref[STORE].list_records("lod_sets") == []


async def test_unknown_twin_manifest_is_404_json(lod_client):
    r = await lod_client.get(manifest_url("twn_nope"))
    assert r.status == 404
    assert (await r.json())["error"]["code"] == "twin_not_found"


async def test_revoked_twin_loses_its_manifest_and_its_files(lod_client):
    manifest, _ = await get_manifest(lod_client)
    urls = [*level_urls(manifest), manifest["ar"]["usdz"]["url"]]  # the AR USDZ goes too
    r = await lod_client.patch(
        f"/api/v1/twins/{lod_client.twin_id}/license", json={"revoked": True}
    )
    assert r.status == 200
    r = await lod_client.get(manifest_url(lod_client.twin_id))
    assert r.status == 410
    assert (await r.json())["error"]["code"] == "license_revoked"
    # The revocation withdrew the files before it answered.
    statuses = [(await lod_client.get(u)).status for u in urls]
    assert set(statuses) == {404}
    assert await lod_client.app_ref[SERVICES].lod.withdraw(lod_client.twin_id) == 0
    files = await lod_client.app_ref[STORE].list_records("lod_files")
    assert len(files) == len(urls) and all(f["withdrawn"] for f in files)


async def test_concurrent_first_requests_build_once(lod_client):
    calls = [lod_client.get(manifest_url(lod_client.twin_id)) for _ in range(3)]
    responses = await asyncio.gather(*calls)
    started = [await r.json() for r in responses]
    assert {r.status for r in responses} == {202}
    assert len({b["key"] for b in started}) == 1
    assert len({b["job"]["id"] for b in started}) == 1  # one build, whoever asked
    await built(lod_client, responses[0])
    responses = await asyncio.gather(
        *[lod_client.get(manifest_url(lod_client.twin_id)) for _ in range(3)]
    )
    bodies = [await r.json() for r in responses]
    assert {r.status for r in responses} == {200}
    assert {b["key"] for b in bodies} == {started[0]["key"]}
    sets = await lod_client.app_ref[STORE].list_records("lod_sets")
    assert len(sets) == 1
    assert len(np.unique([b["levels"][0]["url"] for b in bodies])) == 1


class StoreWithoutLocalFiles(EmbeddedStore):
    """A store whose blobs have no local path (as a Redis or object store would have none):
    what it serves, it streams through `open_blob`."""

    def blob_path(self, key: str) -> None:
        return None


async def test_a_store_without_local_files_serves_levels_by_streaming(
    aiohttp_client, tmp_path, average_body
):
    app = create_app(
        tmp_path / "data",
        seed=False,
        settings={"lod_options": FAST_LOD},
        store_factory=StoreWithoutLocalFiles,
    )
    client = await aiohttp_client(app)
    store = app[STORE]
    assert isinstance(store, StoreWithoutLocalFiles)
    record = await app[TWINS].create_from_body(
        "Mara", average_body, Rights.from_json(RIGHTS), {"kind": "measurements"}
    )
    client.twin_id = record["id"]
    manifest, _ = await get_manifest(client)
    url = manifest["levels"][0]["url"]
    sha = url.rsplit("/", 1)[1].split(".")[0]
    stored = await store.get_blob(sha)
    r = await client.get(url)
    assert r.status == 200 and await r.read() == stored
    assert int(r.headers["Content-Length"]) == len(stored) and r.headers["ETag"] == f'"{sha}"'
    assert len(stored) > 100_100
    r = await client.get(url, headers={"Range": "bytes=100-100099"})
    assert r.status == 206 and await r.read() == stored[100:100100]
    r = await client.get(url, headers={"Range": "bytes=-20"})
    assert r.status == 206 and await r.read() == stored[-20:]
