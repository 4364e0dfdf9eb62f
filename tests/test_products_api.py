"""The shop API on real data: a skirt's size run on two generated twins, through a live app.

`tests/product_fixtures.py` builds the product once per session with the product's own jobs
(Ava × S, Ava × XL, Leo × XL); each test talks HTTP to an app over its own copy of that store.
The product lists its sizes smallest first and every twin licensed for the channel with its
height, measurements, credit and provenance; each built look links a level manifest that
answers 200, AR files only for the twin licensed for AR, and a poster whose file carries the
disclosure. A look not built yet answers 202 with its job; hostile skus and channels are 4xx
in the error shape. Stills: the same request twice gives byte-identical files, another pose
another image (from a look draped in that pose), and the metadata says "digital twin".
"""

from __future__ import annotations

import shutil
import time
from urllib.parse import quote

import numpy as np
import pytest

from spatialtwin.body.pose import Pose
from spatialtwin.body.studio_poses import named_pose
from spatialtwin.gltf.still_image import DIGITAL_SOURCE_TYPE, read_still_metadata
from spatialtwin.server.app import create_app
from spatialtwin.server.keys import SERVICES
from spatialtwin.services.products import product_look_key
from spatialtwin.services.stills import parse_still_request
from tests.job_polling import job_done, started_job
from tests.product_fixtures import (
    POSTER_PX,
    SETTINGS,
    SKU,
    png_size,
    product_data,  # noqa: F401 - the session fixture
    skirt_metadata,
    skirt_of_size,
)

pytestmark = pytest.mark.slow
PATH = f"/api/v1/products/{quote(SKU, safe='')}"


@pytest.fixture
async def shop(aiohttp_client, tmp_path, product_data):  # noqa: F811
    template, ids = product_data
    shutil.copytree(template, tmp_path / "data")
    client = await aiohttp_client(create_app(tmp_path / "data", seed=False, settings=SETTINGS))
    client.ids = ids
    return client


def _look(body: dict, twin: str, size: str) -> dict:
    return next(e for e in body["looks"] if e["twin"] == twin and e["size"] == size)


async def test_the_product_lists_sizes_twins_and_built_looks(shop):
    ava, leo = shop.ids["twins"]["ava"], shop.ids["twins"]["leo"]
    started = time.perf_counter()
    r = await shop.get(PATH, params=[("twin", ava), ("twin", leo), ("size", "XL")])
    elapsed_ms = (time.perf_counter() - started) * 1000
    body = await r.json()
    assert r.status == 200, body
    assert elapsed_ms < 500, elapsed_ms  # built looks are read, never rebuilt
    assert body["sku"] == SKU and body["status"] == "ready" and body["category"] == "skirt"
    assert [s["label"] for s in body["sizes"]] == ["S", "XL"]
    twins = {t["id"]: t for t in body["twins"]}
    assert [t["id"] for t in body["twins"]] == [ava, leo]  # shortest first
    assert twins[ava]["height_m"] == pytest.approx(1.70, abs=0.005)
    assert twins[leo]["height_m"] == pytest.approx(1.82, abs=0.005)
    assert twins[leo]["measurements_m"]["waist_m"] == pytest.approx(0.84, abs=0.015)
    assert twins[ava]["credit"] == {"model": "Ava Sample", "agency": "SpatialTwin Demo Agency"}
    assert twins[ava]["provenance"]["digitalTwin"] is True
    assert "Digital twin of Ava Sample" in twins[ava]["disclosure"]
    assert (twins[ava]["ar"], twins[leo]["ar"]) == (True, False)
    assert len(body["looks"]) == 2
    on_ava, on_leo = _look(body, ava, "XL"), _look(body, leo, "XL")
    assert on_ava["look"] != on_leo["look"]
    for entry in (on_ava, on_leo):
        assert entry["status"] == "ready"
        m = await shop.get(entry["lod"]["manifest"])
        manifest = await m.json()
        assert m.status == 200, manifest
        assert (
            manifest["levels"][manifest["firstLevel"]]["url"] == entry["lod"]["firstLevel"]["url"]
        )
        assert entry["lod"]["firstLevel"]["bytes"] <= 60_000
        poster = entry["posters"][0]
        p = await shop.get(poster["url"])
        data = await p.read()
        assert p.status == 200 and p.content_type == "image/png"
        assert png_size(data) == POSTER_PX and len(data) == poster["bytes"]
        meta = read_still_metadata(data)
        assert meta["DigitalSourceType"] == DIGITAL_SOURCE_TYPE
        assert meta["description"] == entry["disclosure"]
    # AR files for the twin licensed for AR only; the USDZ is served.
    assert on_leo["ar"] == {"glb": None, "usdz": None, "glbBytes": None, "usdzBytes": None}
    u = await shop.get(on_ava["ar"]["usdz"])
    assert u.status == 200 and len(await u.read()) == on_ava["ar"]["usdzBytes"]
    g = await shop.get(on_ava["ar"]["glb"])
    assert g.status == 200 and (await g.read())[:4] == b"glTF"


async def test_sizes_give_different_looks_of_different_widths(shop):
    ava = shop.ids["twins"]["ava"]
    body = await (await shop.get(PATH, params={"twin": ava})).json()
    small, large = _look(body, ava, "S"), _look(body, ava, "XL")
    assert small["lod"]["manifest"] != large["lod"]["manifest"]
    assert small["lod"]["firstLevel"]["url"] != large["lod"]["firstLevel"]["url"]
    width = {
        k: e["bounds_m"]["max"][2] - e["bounds_m"]["min"][2]
        for k, e in (("S", small), ("XL", large))
    }
    # The body sets the box's width (arms); the skirt its depth: XL stands further out.
    assert width["XL"] > width["S"] + 0.01, width
    assert small["fit"] and large["fit"]


async def test_a_look_not_built_yet_answers_202_with_its_job(shop):
    leo = shop.ids["twins"]["leo"]
    r = await shop.get(PATH, params={"twin": leo, "size": "S"})
    body = await r.json()
    assert r.status == 202 and r.headers["Retry-After"] == "2"
    assert body["status"] == "building"
    entry = body["looks"][0]
    assert entry["status"] == "building" and entry["job"]["kind"] == "product_look"
    assert entry["links"]["job"] == f"/api/v1/jobs/{entry['job']['id']}"
    # Asked again meanwhile: the same job, never a second one.
    again = await (await shop.get(PATH, params={"twin": leo, "size": "S"})).json()
    assert again["looks"][0]["job"]["id"] == entry["job"]["id"]


async def test_a_new_upload_gives_a_new_look_key(shop):
    services = shop.app[SERVICES]
    ava = await services.twins.get(shop.ids["twins"]["ava"])
    old = await services.garments.get(shop.ids["garments"]["S"])
    new = await services.garments.ingest(
        skirt_of_size("XL"), "skirt_M.glb", {**skirt_metadata("M")}
    )
    options = services.options.look
    assert product_look_key(ava, old, options) == product_look_key(ava, old, options)
    assert product_look_key(ava, new, options) != product_look_key(ava, old, options)
    body = await (await shop.get(PATH, params={"twin": ava["id"], "size": "M"})).json()
    assert [s["label"] for s in body["sizes"]] == ["S", "M", "XL"]
    assert body["looks"][0]["status"] == "building"


@pytest.mark.parametrize(
    ("path", "query", "status", "code"),
    [
        ("/api/v1/products/" + "A" * 65, {}, 400, "invalid_sku"),
        ("/api/v1/products/%3Cscript%3E", {}, 400, "invalid_sku"),
        ("/api/v1/products/-LEADING-DASH", {}, 400, "invalid_sku"),
        ("/api/v1/products/NO-SUCH-SKU", {}, 404, "product_not_found"),
        (PATH, {"channel": "mirror"}, 400, "invalid_channel"),
        (PATH, {"size": "XXXL"}, 404, "size_not_in_run"),
        (PATH, {"twin": "twn_nobody"}, 404, "twin_not_found"),
        (PATH, {"twin": "x" * 65}, 400, "invalid_filter"),
    ],
)
async def test_hostile_product_requests_are_4xx_errors(shop, path, query, status, code):
    r = await shop.get(path, params=query)
    body = await r.json()
    assert r.status == status, body
    assert set(body["error"]) == {"code", "message", "detail"}
    assert body["error"]["code"] == code


async def test_a_revoked_twin_leaves_the_product_and_its_poster_is_refused(shop):
    ava, leo = shop.ids["twins"]["ava"], shop.ids["twins"]["leo"]
    body = await (await shop.get(PATH, params={"twin": ava, "size": "S"})).json()
    poster = body["looks"][0]["posters"][0]["url"]
    r = await shop.patch(f"/api/v1/twins/{ava}/license", json={"revoked": True})
    assert r.status == 200
    after = await (await shop.get(PATH, params={"twin": leo, "size": "XL"})).json()
    assert [t["id"] for t in after["twins"]] == [leo]
    assert (await shop.get(PATH, params={"twin": ava})).status == 410
    assert (await shop.get(poster)).status == 410
    # The AR channel: Leo is not licensed for it, Ava is revoked: a product with no twins.
    ar = await (await shop.get(PATH, params={"channel": "ar"})).json()
    assert ar["twins"] == [] and ar["looks"] == []


# --- stills ------------------------------------------------------------------------------


async def _still(shop, look_id: str, request: dict) -> tuple[dict, bytes]:
    r = await shop.post(f"/api/v1/looks/{look_id}/stills", json=request)
    if r.status == 202:
        state, _ = await job_done(shop, await started_job(r), timeout_s=180)
        assert state["status"] == "done", state
        still = state["result"]
    else:
        assert r.status == 200, await r.text()
        still = await r.json()
    f = await shop.get(still["links"]["file"])
    assert f.status == 200
    return still, await f.read()


async def test_a_poster_request_is_a_cache_hit(shop):
    ava = shop.ids["twins"]["ava"]
    body = await (await shop.get(PATH, params={"twin": ava, "size": "S"})).json()
    entry = body["looks"][0]
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        r = await shop.post(
            f"/api/v1/looks/{entry['look']}/stills", json={"size_px": list(POSTER_PX)}
        )
        timings.append((time.perf_counter() - started) * 1000)
        assert r.status == 200, await r.text()
    assert (await r.json())["links"]["file"] == entry["posters"][0]["url"]
    print(f"still cache hit: median {sorted(timings)[2]:.1f} ms")
    assert sorted(timings)[2] <= 50


async def test_stills_are_identical_for_one_request_and_differ_with_the_pose(shop):
    ava = shop.ids["twins"]["ava"]
    body = await (await shop.get(PATH, params={"twin": ava, "size": "S"})).json()
    look_id = body["looks"][0]["look"]
    request = {
        "size_px": [160, 240],
        "label": True,
        "background": "#dde3ea",
        "camera": {"focal_length_mm": 85, "framing": "full"},
        "lights": {"key": {"temperature_k": 3200, "intensity": 2.5}},
    }
    first, data = await _still(shop, look_id, request)
    assert png_size(data) == (160, 240)
    meta = read_still_metadata(data)
    assert meta["DigitalSourceType"] == DIGITAL_SOURCE_TYPE
    assert "Digital twin of Ava Sample" in meta["description"]
    assert f"<spatialtwin:lookId>{look_id}</spatialtwin:lookId>" in meta["xmp"]
    # Made again from nothing (record dropped): byte for byte the same file.
    services = shop.app[SERVICES]
    record = await services.store.get_record("stills", first["id"])
    await services.store.delete_record("stills", first["id"])
    again = await services.stills.render(
        look_id, parse_still_request({**request, "channel": "ecommerce"})
    )
    assert again["blob"] == record["blob"]
    assert await services.store.get_blob(again["blob"]) == data
    # Another pose: a look draped in it, and another picture.
    walking, posed = await _still(shop, look_id, {**request, "pose": "walking"})
    assert walking["shown_look"] != look_id and posed != data
    shown = await services.look_records.get(walking["shown_look"])
    asked = named_pose("walking")
    got = Pose.from_json(shown["pose"])
    assert set(got.rotations) == set(asked.rotations)
    assert np.allclose(got.quaternions(), asked.quaternions(), atol=1e-6)
    assert shown["garments"] == (await services.look_records.get(look_id))["garments"]


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"size_px": [4096, 4096]}, "size_px"),
        ({"size_px": [10, 10]}, "size_px"),
        ({"size_px": [512.5, 512]}, "size_px"),
        ({"pose": "cartwheel"}, "pose"),
        ({"background": "red"}, "background"),
        ({"camera": {"focal_length_mm": 2}}, "camera.focal_length_mm"),
        ({"lights": {"key": {"temperature_k": 99999}}}, "lights.key.temperature_k"),
        ({"format": "gif"}, "format"),
        ({"shutter": 1}, None),
    ],
)
async def test_bad_still_requests_are_refused_before_any_work(shop, request_body, field):
    ava = shop.ids["twins"]["ava"]
    body = await (await shop.get(PATH, params={"twin": ava, "size": "S"})).json()
    r = await shop.post(f"/api/v1/looks/{body['looks'][0]['look']}/stills", json=request_body)
    error = (await r.json())["error"]
    assert r.status == 422, error
    assert error["code"] == "invalid_still"
    if field and field != "pose":
        assert error["detail"].get("field", field) == field
