"""The server attacked as an outsider would: bad types, bad numbers, bad sizes, bad framing.

One test per defect of issue #7's probe at the HTTP layer and in the store's record semantics.
Every refusal is a 4xx with a strict-JSON `{"error": {...}}` body and leaves the store
byte-identical (`snapshot(content=True)` hashes every record and blob).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import aiohttp
import pytest

from spatialtwin.store.embedded import EmbeddedStore
from tests.conftest import AVERAGE, HOSTILE_RIGHTS, shared

FABRIC = {
    "name": "Probe twill",
    "construction": "woven",
    "areal_density_gsm": 180.0,
    "thickness_mm": 0.4,
    "stretch_warp_n_m": 3000.0,
    "stretch_weft_n_m": 2000.0,
    "shear_n_m": 40.0,
    "bending_n_m": 1e-5,
    "friction": 0.4,
}


def strict_json(body: bytes) -> object:
    """Parse as a strict client would: NaN/Infinity are not JSON."""

    def refuse(token: str) -> None:
        raise ValueError(f"{token} is not JSON")

    return json.loads(body, parse_constant=refuse)


async def refused(r: aiohttp.ClientResponse, *statuses: int) -> dict:
    """The error of a refused request, checked to be a strict-JSON error body."""
    body = await r.read()
    assert r.status in statuses, (r.status, body[:300])
    assert r.content_type == "application/json"
    error = strict_json(body)["error"]
    assert error["code"] and error["message"]
    return error


async def send_json(client, method: str, path: str, text: str | bytes) -> aiohttp.ClientResponse:
    data = text.encode() if isinstance(text, str) else text
    return await client.request(
        method, path, data=data, headers={"Content-Type": "application/json"}
    )


def license_file(client) -> bytes:
    return (client.store.root / "records" / "twins" / f"{client.twin_id}.json").read_bytes()


async def raw_exchange(client, request: bytes, timeout_s: float = 5.0) -> tuple[int, dict, bytes]:
    """Send raw bytes on a fresh connection, with the client's token after the request line
    (as a client that may make the request would); (status, headers, body) of the answer."""
    token = client.session.headers.get("Authorization")
    if token and b"\r\n" in request and b"authorization:" not in request.lower():
        line, rest = request.split(b"\r\n", 1)
        request = line + b"\r\nAuthorization: " + token.encode() + b"\r\n" + rest
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:]) if k}
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(reader.readexactly(length), timeout_s)
        return int(lines[0].split()[1]), headers, body
    finally:
        writer.close()


def measurements_request(**over: object) -> dict:
    return {"measurements": AVERAGE.to_json(), **HOSTILE_RIGHTS, **over}


# --- 1. booleans are booleans; revocation is final -----------------------------------------


@pytest.mark.parametrize("value", ["0", "1", '"false"', '"true"', "null", "[]"])
async def test_revoked_must_be_a_json_boolean(twin_api, value):
    before, stored = twin_api.store.snapshot(content=True), license_file(twin_api)
    r = await send_json(
        twin_api, "PATCH", f"/api/v1/twins/{twin_api.twin_id}/license", f'{{"revoked": {value}}}'
    )
    error = await refused(r, 400)
    assert error["code"] == "invalid_license" and error["detail"]["field"] == "revoked"
    assert license_file(twin_api) == stored
    assert twin_api.store.snapshot(content=True) == before
    r = await twin_api.get(f"/api/v1/twins/{twin_api.twin_id}/body.glb")
    assert r.status == 200  # neither revoked by a truthy 1 nor changed at all


@pytest.mark.parametrize("value", ["false", "0", "null", '"false"', '""'])
async def test_revocation_cannot_be_undone_by_any_value(twin_api, value):
    path = f"/api/v1/twins/{twin_api.twin_id}/license"
    r = await twin_api.patch(path, json={"revoked": True})
    assert r.status == 200 and (await r.json())["license"]["revoked"] is True
    before, stored = twin_api.store.snapshot(content=True), license_file(twin_api)
    r = await send_json(twin_api, "PATCH", path, f'{{"revoked": {value}}}')
    await refused(r, 400, 409)
    assert license_file(twin_api) == stored
    assert twin_api.store.snapshot(content=True) == before
    r = await twin_api.get(f"/api/v1/twins/{twin_api.twin_id}/body.glb")
    assert r.status == 410


async def test_a_create_with_a_non_boolean_revoked_is_refused(twin_api):
    before = twin_api.store.snapshot(content=True)
    lic = {**HOSTILE_RIGHTS["license"], "revoked": "no"}
    r = await twin_api.post("/api/v1/twins", json=measurements_request(license=lic))
    assert (await refused(r, 400))["code"] == "invalid_license"
    assert twin_api.store.snapshot(content=True) == before


# --- 2. numbers: finite, and within a float --------------------------------------------------


@pytest.mark.parametrize(
    "number",
    ["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "1" + "0" * 400, "9" * 5000, "true"],
    ids=["nan", "inf", "-inf", "1e999", "-1e400", "400-digits", "5000-digits", "bool"],
)
async def test_a_license_fee_must_be_a_finite_float(twin_api, number):
    before, stored = twin_api.store.snapshot(content=True), license_file(twin_api)
    r = await send_json(
        twin_api,
        "PATCH",
        f"/api/v1/twins/{twin_api.twin_id}/license",
        f'{{"fee_per_use_eur": {number}}}',
    )
    error = await refused(r, 400, 422)
    assert error["code"] in ("invalid_number", "invalid_license")
    assert license_file(twin_api) == stored
    assert twin_api.store.snapshot(content=True) == before
    r = await twin_api.get("/api/v1/twins")
    twins = strict_json(await r.read())["twins"]
    assert [t["license"]["fee_per_use_eur"] for t in twins] == [None]


async def test_a_nan_fee_at_create_is_refused_before_any_work(twin_api):
    before = twin_api.store.snapshot(content=True)
    text = json.dumps(measurements_request()).replace(
        '"channels"', '"fee_per_use_eur": NaN, "channels"'
    )
    start = time.perf_counter()
    r = await send_json(twin_api, "POST", "/api/v1/twins", text)
    assert (await refused(r, 400))["code"] == "invalid_number"
    assert time.perf_counter() - start < 1.0  # no twin was generated to be thrown away
    assert twin_api.store.snapshot(content=True) == before


async def test_error_bodies_never_echo_nan(twin_api):
    # A string "NaN" is valid JSON; the fabric check turns it into a float NaN in its detail.
    fabric = {**FABRIC, "id": "probe-nan", "bending_n_m": "NaN"}
    r = await twin_api.post("/api/v1/fabrics", json=fabric)
    error = await refused(r, 422)
    assert error["detail"]["bending_n_m"]["value"] == "NaN"


def test_strict_dumps_sends_non_finite_numbers_as_strings():
    from spatialtwin.server.middleware import strict_dumps

    text = strict_dumps({"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5]})
    assert strict_json(text.encode()) == {"a": "NaN", "b": ["Infinity", "-Infinity", 1.5]}


# --- 3. bounded bodies -------------------------------------------------------------------


async def test_a_json_body_declared_too_large_is_refused_before_it_is_sent(twin_api):
    head = (
        b"POST /api/v1/looks HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: 300000000\r\n\r\n{"
    )
    start = time.perf_counter()
    status, headers, body = await raw_exchange(twin_api, head)
    assert status == 413 and time.perf_counter() - start < 2.0
    assert strict_json(body)["error"]["code"] == "payload_too_large"
    assert headers.get("connection", "").lower() == "close"


async def test_an_upload_declared_too_large_is_refused_before_it_is_sent(twin_api):
    head = (
        b"POST /api/v1/twins HTTP/1.1\r\nHost: t\r\n"
        b"Content-Type: multipart/form-data; boundary=B\r\n"
        b"Content-Length: 2000000000\r\n\r\n--B\r\n"
    )
    status, _, body = await raw_exchange(twin_api, head)
    assert status == 413
    assert strict_json(body)["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_json_body_over_the_limit_is_413(twin_api, chunked):
    from spatialtwin.server.requests import MAX_JSON_BYTES

    text = json.dumps({**FABRIC, "id": "big", "name": "x" * (MAX_JSON_BYTES + 10)}).encode()

    async def pieces():
        for i in range(0, len(text), 65536):
            yield text[i : i + 65536]

    before = twin_api.store.snapshot(content=True)
    r = await twin_api.post(
        "/api/v1/fabrics",
        data=pieces() if chunked else text,
        headers={"Content-Type": "application/json"},
    )
    assert (await refused(r, 413))["detail"]["limit_bytes"] == MAX_JSON_BYTES
    assert twin_api.store.snapshot(content=True) == before


@pytest.mark.parametrize("depth", [None, 100_000], ids=["one-past-the-limit", "100000"])
async def test_deeply_nested_json_is_a_400(twin_api, depth):
    from spatialtwin.server import validate

    depth = depth or validate.MAX_JSON_DEPTH + 1
    before = twin_api.store.snapshot(content=True)
    text = '{"terms": ' + "[" * depth + "]" * depth + "}"
    r = await send_json(twin_api, "PATCH", f"/api/v1/twins/{twin_api.twin_id}/license", text)
    error = await refused(r, 400)
    assert error["detail"]["max_depth"] == validate.MAX_JSON_DEPTH
    assert twin_api.store.snapshot(content=True) == before


async def test_a_large_json_body_is_parsed_off_the_event_loop(twin_api, monkeypatch):
    from spatialtwin.server import requests

    threads = []
    real = requests.parse_json

    def spy(raw, *args):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(raw, *args)

    monkeypatch.setattr(requests, "parse_json", spy)
    text = json.dumps({"terms": "x" * 1000, "pad": ["y" * 100] * 3000})  # ~300 kB
    r = await send_json(twin_api, "PATCH", f"/api/v1/twins/{twin_api.twin_id}/license", text)
    await refused(r, 422)  # `pad` is no license field
    small = await send_json(
        twin_api, "PATCH", f"/api/v1/twins/{twin_api.twin_id}/license", '{"pad": 1}'
    )
    await refused(small, 422)
    assert threads == [False, True]  # the large body in a worker thread, the small one inline


async def test_uploads_stream_to_a_temp_file_and_are_never_held_whole(twin_api, tmp_path):
    """48 MiB sent as the file part, then metadata that refuses it: the server's allocations
    stay far below the upload's size (it went to disk), and nothing is left behind."""
    size = 48 << 20
    big = tmp_path / "big.glb"
    with open(big, "wb") as fh:
        fh.write(b"glTF" + os.urandom(1 << 20) * (size >> 20))
    scratch = twin_api.store.scratch_dir()
    before = twin_api.store.snapshot(content=True)
    tracemalloc.start()
    try:
        with open(big, "rb") as fh:
            form = aiohttp.FormData()
            form.add_field("file", fh, filename="big.glb")
            form.add_field("metadata", json.dumps({"owner": "nobody"}))
            r = await twin_api.post("/api/v1/twins", data=form)
            error = await refused(r, 422)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error["code"] == "invalid_owner"
    assert peak < size / 4, f"peak {peak / 2**20:.1f} MiB for a {size >> 20} MiB upload"
    assert list(scratch.iterdir()) == []
    assert twin_api.store.snapshot(content=True) == before


async def test_an_import_reads_its_upload_from_the_scratch_folder(twin_api):
    from spatialtwin.server import requests

    seen = []
    real = requests.Upload.read

    async def spy(self):
        seen.append((self.path.parent, self.path.exists(), self.size_bytes))
        return await real(self)

    glb = shared("bodies", "CesiumMan.glb").read_bytes()
    form = aiohttp.FormData()
    form.add_field("file", glb, filename="CesiumMan.glb")
    form.add_field("metadata", json.dumps({"name": "Cesium", **HOSTILE_RIGHTS}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(requests.Upload, "read", spy)
        r = await twin_api.post("/api/v1/twins", data=form)
    assert r.status == 201, await r.text()
    assert seen == [(twin_api.store.scratch_dir(), True, len(glb))]
    assert list(twin_api.store.scratch_dir().iterdir()) == []


# --- 4. wrong JSON types, broken multipart, the HTTP layer ---------------------------------


@pytest.mark.parametrize(
    "over",
    [
        {"license": "all channels"},
        {"license": [1, 2]},
        {"consent": "yes"},
        {"consent": [["given_by", "x"]]},
        {"license": {**HOSTILE_RIGHTS["license"], "revoked_at": {"when": 1}}},
        {"license": {**HOSTILE_RIGHTS["license"], "terms": {"a": 1}}},
        {"license": {**HOSTILE_RIGHTS["license"], "id": 5}},
        {"owner": {"model": 5, "agency": "North"}},
        {"id": "../../etc/x"},
        {"id": {"a": 1}},
        {"name": {"first": "x"}},
    ],
    ids=[
        "license-string",
        "license-list",
        "consent-string",
        "consent-list",
        "revoked_at-object",
        "terms-object",
        "license-id-number",
        "owner-model-number",
        "id-traversal",
        "id-object",
        "name-object",
    ],
)
async def test_wrong_json_types_in_a_twin_create_are_4xx(twin_api, over):
    before = twin_api.store.snapshot(content=True)
    start = time.perf_counter()
    r = await twin_api.post("/api/v1/twins", json=measurements_request(**over))
    await refused(r, 400, 422)
    assert time.perf_counter() - start < 1.0  # refused before a twin is generated
    assert twin_api.store.snapshot(content=True) == before


@pytest.mark.parametrize(
    "pose",
    [{"root": {"x": 1}}, {"root": "up"}, {"joints": {"hips": [[1], [2, 3]]}}, {"joints": [1]}],
    ids=["root-object", "root-string", "joint-ragged", "joints-list"],
)
async def test_a_pose_of_the_wrong_shape_is_4xx(twin_api, pose):
    from urllib.parse import quote

    r = await twin_api.get(
        f"/api/v1/twins/{twin_api.twin_id}/body.glb?pose={quote(json.dumps(pose))}"
    )
    assert (await refused(r, 400, 422))["code"] == "invalid_pose"
    before = twin_api.store.snapshot(content=True)
    r = await twin_api.post(
        "/api/v1/looks", json={"twin": twin_api.twin_id, "garments": ["gar_x"], "pose": pose}
    )
    assert (await refused(r, 400, 422))["code"] == "invalid_pose"
    assert twin_api.store.snapshot(content=True) == before


@pytest.mark.parametrize(
    "joint_map", [["hips", "spine"], {"Skeleton_torso_joint_1": {"a": 1}}, "hips"]
)
async def test_an_import_joint_map_of_the_wrong_type_is_400(twin_api, joint_map):
    before = twin_api.store.snapshot(content=True)
    form = aiohttp.FormData()
    form.add_field("file", shared("bodies", "CesiumMan.glb").read_bytes(), filename="c.glb")
    form.add_field("metadata", json.dumps({**HOSTILE_RIGHTS, "joint_map": joint_map}))
    r = await twin_api.post("/api/v1/twins", data=form)
    assert (await refused(r, 400))["code"] == "invalid_joint_map"
    assert twin_api.store.snapshot(content=True) == before


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"--x\r\n\r\n"),
        (
            "multipart/form-data; boundary=BOUND",
            b'--BOUND\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n{}\r\n'
            b'--BOUND\r\nContent-Disposition: form-data; name="file"; filename="x.glb"\r\n\r\nglTF',
        ),
        ("multipart/form-data; boundary=BOUND", b"--BOUND\r\nnot a header\r\n\r\nxx\r\n--BOUND--"),
        ("multipart/form-data; boundary=BOUND", b"no boundary anywhere"),
    ],
    ids=["no-boundary", "unterminated-part", "bad-part-header", "no-opening-boundary"],
)
@pytest.mark.parametrize("path", ["/api/v1/twins", "/api/v1/garments"])
async def test_malformed_multipart_is_a_400(twin_api, path, content_type, body):
    before = twin_api.store.snapshot(content=True)
    r = await twin_api.post(path, data=body, headers={"Content-Type": content_type})
    assert (await refused(r, 400))["code"] == "invalid_multipart"
    assert twin_api.store.snapshot(content=True) == before
    assert list(twin_api.store.scratch_dir().iterdir()) == []


async def test_a_json_body_that_is_not_utf8_is_a_400(twin_api):
    r = await send_json(
        twin_api, "PATCH", f"/api/v1/twins/{twin_api.twin_id}/license", b'{"terms": "caf\xe9"}'
    )
    assert (await refused(r, 400))["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("request_bytes", "statuses"),
    [
        (b"THIS IS NOT HTTP\r\n\r\n", (400,)),
        (b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", (400, 431)),
        (b"POST /api/v1/looks HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n", (400,)),
    ],
    ids=["request-line", "header-too-long", "content-length"],
)
async def test_errors_of_the_http_layer_are_json(twin_api, request_bytes, statuses):
    status, headers, body = await raw_exchange(twin_api, request_bytes)
    assert status in statuses
    assert headers["content-type"].startswith("application/json")
    assert strict_json(body)["error"]["code"] in ("bad_request", "headers_too_large")


async def test_router_errors_are_json(twin_api):
    r = await twin_api.get("/api/v1/nothing-here")
    assert (await refused(r, 404))["code"] == "not_found"
    r = await twin_api.delete("/api/v1/twins")
    assert (await refused(r, 405))["code"] == "method_not_allowed"


# --- 5. OBJ text that is not UTF-8 ---------------------------------------------------------


def test_obj_text_falls_back_to_latin1_line_by_line():
    from spatialtwin.gltf.obj_text import as_utf8, decode_obj_text

    data = "# café\n".encode() + b"# tissu fran\xe7ais\nv 0 0 0\n"
    assert decode_obj_text(data) == "# café\n# tissu français\nv 0 0 0\n"
    assert as_utf8(b"v 1 2 3\n") == b"v 1 2 3\n"


def test_a_body_obj_with_a_latin1_comment_reads_as_the_plain_file():
    import numpy as np

    from spatialtwin.gltf.read_scene import read_scene

    obj = shared("bodies", "base.obj").read_bytes()
    plain = read_scene(obj, "base.obj")
    latin1 = read_scene(b"# mod\xe8le de base\n" + obj, "base.obj")
    positions = sum(1 for line in obj.splitlines() if line.startswith(b"v "))  # independently
    assert len(latin1.vertices) == len(plain.vertices) and len(plain.vertices) >= positions
    np.testing.assert_array_equal(latin1.vertices, plain.vertices)
    np.testing.assert_array_equal(latin1.faces, plain.faces)
    assert latin1.group_names == plain.group_names


async def test_a_garment_obj_with_a_latin1_comment_is_accepted(twin_api):
    obj = shared("garments", "female_casualsuit01.obj").read_bytes()
    form = aiohttp.FormData()
    sent = b"# tissu fran\xe7ais\n" + obj  # \xe7 is not UTF-8
    form.add_field("file", sent, filename="suit.obj")
    form.add_field(
        "metadata",
        json.dumps({"sku": "LATIN-1", "category": "outfit", "fabric": "cotton-jersey"}),
    )
    r = await twin_api.post("/api/v1/garments", data=form)
    assert r.status == 201, await r.text()
    record = await r.json()
    assert record["bytes"] == len(sent)  # stored as sent, the comment's byte included
    faces = sum(1 for line in obj.splitlines() if line.startswith(b"f "))  # read independently
    assert record["source"] == {"format": "obj", "polygons": faces} and faces == 2118


# --- 6. create-only, compare-and-set -------------------------------------------------------


async def test_two_creates_of_one_twin_id_one_wins_the_other_is_409(
    twin_api, average_body, monkeypatch
):
    # Both requests pass the early "id taken?" check and do their work before writing; the
    # template fit (2-3 s each) is not what is under test, so it hands back a made body.
    monkeypatch.setattr(
        "spatialtwin.services.twins.create_twin_body", lambda m, template: average_body
    )
    from tests.job_polling import job_done

    first = measurements_request(id="twn_race", name="First")
    second = {**measurements_request(id="twn_race", name="Second")}
    second["owner"] = {"model": "Someone Else", "agency": "Other Agency"}
    a, b = await asyncio.gather(
        twin_api.post("/api/v1/twins", json=first), twin_api.post("/api/v1/twins", json=second)
    )
    # A create from measurements is a job (202); the id is held from the moment it is queued.
    assert sorted([a.status, b.status]) == [202, 409]
    winner, sent = (a, first) if a.status == 202 else (b, second)
    loser = b if winner is a else a
    assert (await refused(loser, 409))["code"] == "twin_exists"
    state, _ = await job_done(twin_api, (await winner.json())["links"]["job"])
    assert state["status"] == "done", state
    stored = await (await twin_api.get("/api/v1/twins/twn_race")).json()
    assert stored["owner"] == state["result"]["owner"] == sent["owner"]
    assert stored["name"] == state["result"]["name"] == sent["name"]


async def test_two_creates_of_one_fabric_id_one_wins_the_other_is_409(twin_api):
    one = {**FABRIC, "id": "race-twill", "name": "One"}
    two = {**FABRIC, "id": "race-twill", "name": "Two"}
    a, b = await asyncio.gather(
        twin_api.post("/api/v1/fabrics", json=one), twin_api.post("/api/v1/fabrics", json=two)
    )
    assert sorted([a.status, b.status]) == [201, 409]
    winner = a if a.status == 201 else b
    fabrics = (await (await twin_api.get("/api/v1/fabrics")).json())["fabrics"]
    assert [f["name"] for f in fabrics if f["id"] == "race-twill"] == [
        (await winner.json())["name"]
    ]


async def test_the_store_creates_only_once_and_replaces_only_its_revision(tmp_path):
    from spatialtwin.store.base import RecordChangedError, RecordExistsError

    store = EmbeddedStore(tmp_path)
    rev = await store.create_record("twins", "t1", {"id": "t1", "n": 0})
    with pytest.raises(RecordExistsError):
        await store.create_record("twins", "t1", {"id": "t1", "n": 99})
    assert await store.get_record("twins", "t1") == {"id": "t1", "n": 0}
    got = await store.get_record_revision("twins", "t1")
    assert got == ({"id": "t1", "n": 0}, rev)
    new_rev = await store.replace_record("twins", "t1", {"id": "t1", "n": 1}, rev)
    with pytest.raises(RecordChangedError):
        await store.replace_record("twins", "t1", {"id": "t1", "n": 2}, rev)  # stale
    assert await store.get_record("twins", "t1") == {"id": "t1", "n": 1}
    assert new_rev != rev
    with pytest.raises(RecordChangedError):
        await store.replace_record("twins", "gone", {"id": "gone"}, rev)
    assert not list(tmp_path.rglob("*.tmp"))


async def test_compare_and_set_loses_no_update_under_contention(tmp_path):
    from spatialtwin.store.base import RecordChangedError

    store = EmbeddedStore(tmp_path)
    await store.create_record("counters", "c", {"n": 0})

    async def increment() -> None:
        while True:
            record, rev = await store.get_record_revision("counters", "c")
            try:
                await store.replace_record("counters", "c", {"n": record["n"] + 1}, rev)
                return
            except RecordChangedError:
                await asyncio.sleep(0)

    await asyncio.gather(*(increment() for _ in range(24)))
    assert await store.get_record("counters", "c") == {"n": 24}


async def test_a_license_patch_never_undoes_a_revocation_that_lands_meanwhile(twin_api):
    """A channel change reads the license; before it writes, the owner revokes. The change
    must be re-applied to the revoked license, never written over the revocation."""
    store, twin_id = twin_api.store, twin_api.twin_id
    real_replace = store.replace_record
    raced = []

    async def revoke_first(kind, record_id, record, revision):
        if not raced:
            raced.append(True)
            current = await store.get_record("twins", record_id)
            current["license"] = {
                **current["license"],
                "revoked": True,
                "revoked_at": "2026-06-01T00:00:00+00:00",
            }
            await store.put_record("twins", record_id, current)  # the owner's revocation
        return await real_replace(kind, record_id, record, revision)

    store.replace_record = revoke_first
    try:
        r = await twin_api.patch(f"/api/v1/twins/{twin_id}/license", json={"channels": ["ar"]})
    finally:
        del store.replace_record
    assert r.status == 200, await r.text()
    lic = (await r.json())["license"]
    assert lic["revoked"] is True and lic["channels"] == ["ar"] and raced == [True]
    r = await twin_api.get(f"/api/v1/twins/{twin_id}/body.glb?channel=ar")
    assert r.status == 410


# --- 7. leftovers of a killed process ------------------------------------------------------


KILLED_WRITER = """
import os, sys
from spatialtwin.store import atomic
os.replace = lambda *a: os._exit(9)  # killed between writing the temp file and the rename
atomic.write_bytes_atomic(sys.argv[1], b"half a record")
"""


async def test_temp_files_of_a_killed_writer_are_removed_at_start(tmp_path):
    store = EmbeddedStore(tmp_path)
    await store.put_record("twins", "keep", {"id": "keep"})
    target = tmp_path / "records" / "twins" / "t9.json"
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], check=False)
    assert done.returncode == 9
    dead_writer = list(target.parent.glob(".t9.json.*.tmp"))
    assert len(dead_writer) == 1 and not target.exists()
    # An upload in transit of a process that died, and one of a process that still runs.
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_upload = tmp_path / "tmp" / f"upload-{int(gone.stdout)}-abc123.part"
    dead_upload.write_bytes(b"x" * 1000)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live_upload = tmp_path / "tmp" / f"upload-{alive.pid}-def456.part"
        live_upload.write_bytes(b"y" * 1000)
        reopened = EmbeddedStore(tmp_path)
        assert reopened.leftovers_removed == 2
        assert not dead_writer[0].exists() and not dead_upload.exists()
        assert live_upload.exists()
        assert await reopened.get_record("twins", "keep") == {"id": "keep"}
        assert reopened.snapshot() == {"records": 1, "blobs": 0}
    finally:
        alive.kill()
        alive.wait()


def test_an_old_temp_file_is_a_leftover_whoever_wrote_it(tmp_path):
    store = EmbeddedStore(tmp_path)
    old = tmp_path / "blobs" / "ab" / f".abcd.{os.getpid()}.zz.tmp"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"x")
    fresh = old.with_name(f".abce.{os.getpid()}.zz.tmp")
    fresh.write_bytes(b"y")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    assert store.remove_leftovers() == 1
    assert not old.exists() and fresh.exists()  # this process's own write may be in flight


# --- 8. "store unchanged" compares content -----------------------------------------------


async def test_a_content_snapshot_sees_a_rewritten_record_and_blob(tmp_path):
    store = EmbeddedStore(tmp_path)
    await store.put_record("twins", "t1", {"id": "t1", "owner": "A"})
    key, _ = await store.put_blob(b"blob bytes")
    before = store.snapshot(content=True)
    assert set(before) == {"records", "blobs", "sha256"}
    await store.put_record("twins", "t1", {"id": "t1", "owner": "B"})  # same count
    after = store.snapshot(content=True)
    assert after["records"] == before["records"] and after["sha256"] != before["sha256"]
    await store.put_record("twins", "t1", {"id": "t1", "owner": "A"})
    assert store.snapshot(content=True) == before
    Path(store.blob_path(key)).write_bytes(b"other bytes")
    assert store.snapshot(content=True)["sha256"] != before["sha256"]
