"""The mirror protocol end to end on a real server (`tests/mirror_fixtures.py`): a session opened
with a device token streams poses and vertex streams that decode to the session's own cloth;
a dropped socket resumes with key frames; a watcher through a share code gets the same frames
from its own key frame; the garment mesh is the stream in order and valid glTF; the closest
licensed twin is chosen by height; revoking the device or the twin ends the session within a
second; server-side tracking of real camera frames leaves no camera bytes on disk or in logs;
a server shutting down closes its sessions with 1001."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import struct
import time
import zlib

import aiohttp
import cv2
import numpy as np
import pygltflib
import pytest

from spatialtwin.body.skeleton import JOINT_NAMES
from spatialtwin.cli import main as cli
from spatialtwin.gltf import mirror_messages as mm
from tests.gltf_validation import validate_glbs
from tests.mirror_fixtures import (
    REVOCABLE,
    SERVER_SETTINGS,
    SHORT,
    TWIN,
    MirrorClient,
    ServerThread,
    standing_landmarks,
    stream_landmarks,
)
from tests.tracking_fixtures.models import PEOPLE, pose_models_dir  # noqa: F401  (fixture)

SESSIONS = "/api/v1/mirror/sessions"
STEP_ERROR_M = 0.5e-3 * np.sqrt(3) + 1e-6  # the vertex stream's 1 mm grid


@pytest.fixture(scope="module")
def marks(average_body):
    return standing_landmarks(average_body)


async def opened(http, server, token, **hello) -> tuple[MirrorClient, dict]:
    client = await MirrorClient(http, server.ws_url + SESSIONS).connect()
    return client, await client.hello(token, **hello)


def entry_of(server, session_id):
    return server.hub().service.sessions[session_id]


def record_display_positions(entry) -> list[np.ndarray]:
    """Every display-position array the session's cloth hands its encoder, in order."""
    recorded: list[np.ndarray] = []
    cloth = entry.pipeline._cloth[0]
    produce = cloth.display_positions

    def recording():
        x = produce()
        recorded.append(np.array(x, dtype=np.float64))
        return x

    cloth.display_positions = recording
    return recorded


async def test_a_session_streams_poses_and_garments_that_decode_to_its_cloth(
    mirror_server,
    mirror_data,
    marks,
):
    _, token = await mirror_server.register_device()
    async with aiohttp.ClientSession() as http:
        client, welcome = await opened(
            http, mirror_server, token, look=mirror_data.look, input="landmarks"
        )
        entry = entry_of(mirror_server, welcome["session"])
        recorded = record_display_positions(entry)
        sent_t = {}
        t0 = time.perf_counter()
        for frame_id in range(60):
            sent_t[frame_id] = 1000.0 * time.time()
            await client.send_landmarks(frame_id, marks, sent_t[frame_id])
            await asyncio.sleep(max(0.0, t0 + (frame_id + 1) / 30.0 - time.perf_counter()))
        await client.wait_for(lambda r: r.results and r.results[-1].frame_id >= 55, 5)
        await client.send_json({"type": "bye"})
        assert await client.wait_closed() == 1000
    got = client.received
    # the welcome
    assert welcome["version"] == 1 and welcome["session"].startswith("ms_")
    assert welcome["look"] == mirror_data.look and welcome["twin"]["id"] == TWIN
    assert welcome["joints"] == list(JOINT_NAMES) and welcome["resume_key"] and welcome["access"]
    live = entry.worn[0].live
    assert welcome["garments"] == [
        {
            "stream": 0,
            "garment": mirror_data.garment,
            "name": "Mirror test skirt",
            "vertices": live.vertex_count,
            "mesh_url": f"{SESSIONS}/{welcome['session']}/garments/0.glb?access="
            f"{welcome['access']}",
        }
    ]
    assert welcome["limits"] == {
        "max_frame_bytes": 4 << 20,
        "max_rate_hz": 60.0,
        "max_text_bytes": 65536,
    }
    kinds = [m["type"] for m in got.messages]
    assert kinds.index("welcome") == sum(k == "progress" for k in kinds)  # progress first
    fractions = [m["fraction"] for m in got.of_type("progress")]
    assert fractions == sorted(fractions)
    assert kinds[-1] == "ended" and got.messages[-1]["reason"] == "bye"
    # the results (frames the cloth did not get to are dropped, latest wins: the process's
    # first session loads its compiled kernels), their poses and streams decode
    assert client.decode_errors == []
    ids = [r.frame_id for r in got.results]
    assert ids == sorted(ids) and len(ids) >= 30 and set(ids) <= set(sent_t)
    assert all(mm.is_key_stream(s) for s in got.results[0].streams)
    for r in got.results:
        assert r.capture_t_ms == sent_t[r.frame_id]  # echoed bit for bit
        assert r.tracked and r.rotations.shape == (len(JOINT_NAMES), 4)
        np.testing.assert_allclose(np.linalg.norm(r.rotations, axis=1), 1.0, atol=1e-5)
        assert np.isfinite(r.root_m).all() and len(r.streams) == 1
        assert {"timings_ms", "quality", "effective_rate_hz", "dropped_frames"} <= set(r.info)
    # ...to the positions the session's cloth produced, within the 1 mm grid
    # (every result was sent, so they are the first of the frames the cloth made; frames it
    # made after the bye were not sent)
    assert entry.results_dropped == 0 and len(recorded) >= len(got.results)
    errors = [
        np.abs(decoded[0] - cloth).max()
        for decoded, cloth in zip(got.positions, recorded[: len(got.results)], strict=True)
    ]
    assert max(errors) <= STEP_ERROR_M
    # standing (the twin's own rest landmarks) the skirt stays near its live drape: moved by
    # under 5 mm at the median vertex, the hem swinging by a few centimetres at most
    moved = np.linalg.norm(got.positions[-1][0] - live.drape_positions_m, axis=1)
    assert np.median(moved) < 0.005 and moved.max() < 0.04
    status = got.of_type("status")
    assert status and status[-1]["received"] >= 25 and status[-1]["effective_rate_hz"] > 20
    assert set(status[-1]) >= {"dropped", "dropped_rate", "cloth_level", "reason", "timings_p95_ms"}


async def test_a_dropped_socket_resumes_with_key_frames(mirror_server, mirror_data, marks):
    _, token = await mirror_server.register_device()
    async with aiohttp.ClientSession() as http:
        first, welcome = await opened(
            http, mirror_server, token, look=mirror_data.look, input="landmarks"
        )
        next_id = await stream_landmarks(first, marks, 1.0)
        await first.close()  # no bye: a network drop as far as the server can tell
        resume = {"session": welcome["session"], "key": welcome["resume_key"]}
        await asyncio.sleep(0.1)
        entry = entry_of(mirror_server, welcome["session"])
        assert entry.mirror is None and entry.detached_at is not None
        wrong = await MirrorClient(http, mirror_server.ws_url + SESSIONS).connect()
        await wrong.send_json(
            {
                "type": "hello",
                "version": 1,
                "token": token,
                "resume": {**resume, "key": "not-the-key"},
            }
        )
        assert await wrong.wait_closed() == 4401
        second, again = await opened(http, mirror_server, token, resume=resume)
        assert again["session"] == welcome["session"] and again["garments"] == welcome["garments"]
        busy = await MirrorClient(http, mirror_server.ws_url + SESSIONS).connect()
        await busy.send_json({"type": "hello", "version": 1, "token": token, "resume": resume})
        assert await busy.wait_closed() == 4409
        await stream_landmarks(second, marks, 1.0, first_id=next_id)
        await second.wait_for(lambda r: len(r.results) >= 20, 5)
        await second.send_json({"type": "bye"})
        assert await second.wait_closed() == 1000
        gone = await MirrorClient(http, mirror_server.ws_url + SESSIONS).connect()
        await gone.send_json({"type": "hello", "version": 1, "token": token, "resume": resume})
        assert await gone.wait_closed() == 4404
    # the resumed socket's first result holds key frames; a fresh decoder reads them all
    results = second.received.results
    assert all(mm.is_key_stream(s) for s in results[0].streams)
    assert second.decode_errors == [] and results[0].frame_id >= next_id
    # the cloth went on: the resumed stream starts where the first one left off (standing)
    last_before = first.received.positions[-1][0]
    assert np.abs(second.received.positions[0][0] - last_before).max() < 0.01


async def test_a_watcher_sees_the_same_frames_from_its_own_key_frame(
    mirror_server,
    mirror_data,
    marks,
):
    _, token = await mirror_server.register_device()
    async with aiohttp.ClientSession() as http:
        mirror, welcome = await opened(
            http, mirror_server, token, look=mirror_data.look, input="landmarks"
        )
        next_id = await stream_landmarks(mirror, marks, 0.5)
        await mirror.send_json({"type": "share"})
        await mirror.wait_for(lambda r: r.of_type("share"), 2)
        share = mirror.received.of_type("share")[0]
        assert share["url"] == f"/web/watch.html?code={share['code']}"
        assert share["expires_s"] == 600 and len(share["code"]) == 6
        watch_url = f"{mirror_server.ws_url}/api/v1/mirror/watch?code={share['code']}"
        watcher = await MirrorClient(http, watch_url).connect()
        await watcher._welcome.wait()
        assert watcher.welcome["session"] == welcome["session"]
        assert "resume_key" not in watcher.welcome
        nosy = await MirrorClient(http, watch_url).connect()
        await nosy._welcome.wait()
        await nosy.send_json({"type": "key_frame"})  # a watcher sends only ping and bye
        assert await nosy.wait_closed() == 4400
        unknown_url = f"{mirror_server.ws_url}/api/v1/mirror/watch?code=ZZZZZZ"
        unknown = await MirrorClient(http, unknown_url).connect()
        assert await unknown.wait_closed() == 4404
        await stream_landmarks(mirror, marks, 2.0, first_id=next_id)
        await watcher.wait_for(lambda r: len(r.results) >= 40, 5)
        await mirror.send_json({"type": "bye"})
        assert await mirror.wait_closed() == 1000
        assert await watcher.wait_closed() == 1000
    assert watcher.received.messages[-1] == {"type": "ended", "reason": "bye"}
    seen = watcher.received.results
    assert all(mm.is_key_stream(s) for s in seen[0].streams) and watcher.decode_errors == []
    by_id = {
        r.frame_id: p
        for r, p in zip(mirror.received.results, mirror.received.positions, strict=True)
    }
    watched = [r.frame_id for r in seen]
    assert set(watched) <= set(by_id) and len(watched) >= 40
    for frame_id, positions in zip(watched, watcher.received.positions, strict=True):
        np.testing.assert_allclose(positions[0], by_id[frame_id][0], atol=1e-6)


def glb_json_and_accessor(glb: bytes, name: str) -> tuple[pygltflib.GLTF2, np.ndarray]:
    gltf = pygltflib.GLTF2.load_from_bytes(glb)
    prim = gltf.meshes[0].primitives[0]
    index = getattr(prim.attributes, name)
    acc = gltf.accessors[index]
    view = gltf.bufferViews[acc.bufferView]
    blob = gltf.binary_blob()
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3}[acc.type]
    stride = view.byteStride or 4 * width
    raw = np.frombuffer(blob, np.uint8, count=acc.count * stride, offset=view.byteOffset)
    rows = raw.reshape(acc.count, stride)[:, : 4 * width].copy().view("<f4")
    return gltf, rows.reshape(acc.count, width)


async def test_the_garment_mesh_is_the_stream_in_order_and_valid_gltf(mirror_server, mirror_data):
    _, token = await mirror_server.register_device()
    async with aiohttp.ClientSession() as http:
        client, welcome = await opened(
            http, mirror_server, token, look=mirror_data.look, input="landmarks"
        )
        live = entry_of(mirror_server, welcome["session"]).worn[0].live
        mesh_url = mirror_server.url + welcome["garments"][0]["mesh_url"]
        body_url = mirror_server.url + welcome["twin"]["body_url"]
        async with http.get(mesh_url) as r:
            assert r.status == 200 and r.content_type == "model/gltf-binary"
            glb = await r.read()
        async with http.get(body_url) as r:
            assert r.status == 200 and (await r.read())[:4] == b"glTF"
        wrong = body_url.replace(welcome["access"], "x" * 32)
        async with http.get(wrong) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "session_not_found"
        async with http.get(mesh_url.replace(welcome["access"], "y" * 32)) as r:
            assert r.status == 404
        await client.send_json({"type": "bye"})
        assert await client.wait_closed() == 1000
        for url in (mesh_url, body_url):
            async with http.get(url) as r:
                assert r.status == 404  # the session has ended
    report = validate_glbs([glb])[0]
    assert report["numErrors"] == 0, report["messages"]
    n = live.vertex_count
    gltf, positions = glb_json_and_accessor(glb, "POSITION")
    _, stream_vertex = glb_json_and_accessor(glb, "_STREAM_VERTEX")
    assert gltf.asset.extras["spatialtwin"]["streamVertices"] == n
    assert gltf.asset.extras["spatialtwin"]["garmentId"] == mirror_data.garment
    assert len(positions) >= n and gltf.meshes[0].primitives[0].attributes.TEXCOORD_0 is not None
    np.testing.assert_array_equal(positions[:n], live.drape_positions_m.astype(np.float32))
    sv = stream_vertex[:, 0].astype(np.int64)
    np.testing.assert_array_equal(sv[:n], np.arange(n))
    assert sv.max() < n
    np.testing.assert_array_equal(positions[n:], positions[sv[n:]])  # seam copies


async def test_the_closest_licensed_twin_is_chosen_by_height(mirror_server, mirror_data):
    """Twins at 1.76 m (two, mirror), 1.60 m (mirror) and 1.58 m (e-commerce only)."""
    _, token = await mirror_server.register_device()
    garments = [mirror_data.garment]
    async with aiohttp.ClientSession() as http:
        for height, expected in ((1.57, SHORT), (1.9, TWIN)):
            client, welcome = await opened(
                http,
                mirror_server,
                token,
                garments=garments,
                twin="closest",
                height_m=height,
                input="landmarks",
            )
            assert welcome["twin"]["id"] == expected and welcome["look"] is None
            await client.send_json({"type": "bye"})
            assert await client.wait_closed() == 1000
        refusals = [
            (
                {"garments": garments, "twin": "twn_mirror_shop_only"},
                4403,
                "license_channel",
                "channel_not_licensed",
            ),
            ({"garments": garments, "twin": "twn_nobody"}, 4404, "twin_not_found", None),
            ({"garments": ["gar_nothing"], "twin": TWIN}, 4404, "garment_not_found", None),
            ({"look": "look_nothing"}, 4404, "look_not_found", None),
        ]
        for fields, code, reason, error in refusals:
            client = await MirrorClient(http, mirror_server.ws_url + SESSIONS).connect()
            await client.send_json({"type": "hello", "version": 1, "token": token, **fields})
            assert await client.wait_closed() == code
            assert client.ws.close_code == code
            assert client.received.close_reason == reason
            errors = client.received.of_type("error")
            assert errors and errors[0]["error"]["code"] == (error or reason)


async def streaming(client: MirrorClient, marks, stop: asyncio.Event) -> None:
    frame_id = 0
    while not stop.is_set() and not client.ws.closed:
        with contextlib.suppress(ConnectionError):  # the server may close it meanwhile
            await client.send_landmarks(frame_id, marks, 0.0)
        frame_id += 1
        await asyncio.sleep(1 / 30)


async def test_revoking_the_device_ends_its_session_within_a_second(
    mirror_server,
    mirror_data,
    marks,
):
    """Revoked from another process's view of the data directory (the CLI, its own store):
    the server finds out by polling the device record."""
    device_id, token = await mirror_server.register_device("to revoke")
    async with aiohttp.ClientSession() as http:
        client, _ = await opened(
            http, mirror_server, token, look=mirror_data.look, input="landmarks"
        )
        stop = asyncio.Event()
        feeder = asyncio.create_task(streaming(client, marks, stop))
        await client.wait_for(lambda r: len(r.results) >= 5, 5)
        argv = ["mirror", "revoke", device_id, "--data", str(mirror_server.data_dir)]
        assert await asyncio.to_thread(cli, argv) == 0
        revoked_at = time.perf_counter()
        code = await client.wait_closed(5)
        ended_s = time.perf_counter() - revoked_at
        stop.set()
        await feeder
        print(f"device revoked by the CLI: session closed {ended_s:.2f} s later")
        assert code == 4401 and client.ws.close_code == 4401
        assert client.received.messages[-1] == {"type": "ended", "reason": "revoked"}
        assert ended_s <= 1.0, ended_s
        again = await MirrorClient(http, mirror_server.ws_url + SESSIONS).connect()
        await again.send_json(
            {"type": "hello", "version": 1, "token": token, "look": mirror_data.look}
        )
        assert await again.wait_closed() == 4401


async def test_revoking_the_twin_ends_its_sessions_within_a_second(
    mirror_server,
    mirror_data,
    marks,
):
    _, token = await mirror_server.register_device()
    async with aiohttp.ClientSession() as http:
        client, welcome = await opened(
            http,
            mirror_server,
            token,
            garments=[mirror_data.garment],
            twin=REVOCABLE,
            input="landmarks",
        )
        await client.send_json({"type": "share"})
        await client.wait_for(lambda r: r.of_type("share"), 2)
        code = client.received.of_type("share")[0]["code"]
        watcher = await MirrorClient(
            http, f"{mirror_server.ws_url}/api/v1/mirror/watch?code={code}"
        ).connect()
        await watcher._welcome.wait()
        stop = asyncio.Event()
        feeder = asyncio.create_task(streaming(client, marks, stop))
        await watcher.wait_for(lambda r: len(r.results) >= 5, 5)
        async with http.patch(
            f"{mirror_server.url}/api/v1/twins/{REVOCABLE}/license",
            json={"revoked": True},
            headers=mirror_server.admin_headers(),
        ) as r:
            assert r.status == 200
        revoked_at = time.perf_counter()
        assert await client.wait_closed(5) == 4403
        ended_s = time.perf_counter() - revoked_at
        assert await watcher.wait_closed(5) == 1000
        stop.set()
        await feeder
        print(f"twin revoked over HTTP: session closed {ended_s:.2f} s later")
        assert ended_s <= 1.0, ended_s
        assert client.received.messages[-1] == {"type": "ended", "reason": "revoked"}
        assert watcher.received.messages[-1] == {"type": "ended", "reason": "revoked"}
        async with http.get(mirror_server.url + welcome["garments"][0]["mesh_url"]) as r:
            assert r.status == 404
        again = await MirrorClient(http, mirror_server.ws_url + SESSIONS).connect()
        await again.send_json(
            {
                "type": "hello",
                "version": 1,
                "token": token,
                "garments": [mirror_data.garment],
                "twin": REVOCABLE,
            }
        )
        assert await again.wait_closed() == 4403


def camera_jpeg() -> bytes:
    """A real photo of a person (t5.jpg, a T-pose), 480 px wide, as a mirror would send it."""
    image = cv2.imread(str(PEOPLE / "t5.jpg"))
    scale = 480 / image.shape[1]
    image = cv2.resize(image, (480, round(image.shape[0] * scale)))
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return data.tobytes()


def undecodable_png() -> bytes:
    """A PNG whose header (64 × 64) reads and whose pixel data is not zlib: refused only when
    the tracking thread decodes it."""
    _, png = cv2.imencode(".png", np.full((64, 64, 3), 120, np.uint8))
    junk = b"not zlib data at all"
    crc = zlib.crc32(b"IDAT" + junk)
    idat = struct.pack(">I", len(junk)) + b"IDAT" + junk + struct.pack(">I", crc)
    return png.tobytes()[:33] + idat + png.tobytes()[-12:]


async def test_camera_frames_are_tracked_and_never_reach_disk_or_logs(
    mirror_server,
    mirror_data,
    pose_models_dir,  # noqa: F811
    caplog,
):
    caplog.set_level(logging.DEBUG)
    jpeg = camera_jpeg()
    _, token = await mirror_server.register_device("camera")
    async with aiohttp.ClientSession() as http:
        client, welcome = await opened(
            http, mirror_server, token, look=mirror_data.look, input="frames", model="lite"
        )
        assert welcome["input"] == "frames" and welcome["camera"] is None
        for frame_id in range(20):
            await client.send_image(frame_id, jpeg, float(frame_id))
            await asyncio.sleep(0.1)
        await client.wait_for(lambda r: any(x.frame_id >= 15 for x in r.results), 10)
        await client.send_image(20, undecodable_png(), 20.0)  # its header reads, not pixels
        await client.wait_for(lambda r: r.of_type("error"), 5)
        await client.send_json({"type": "bye"})
        assert await client.wait_closed() == 1000
    results = client.received.results
    assert sum(r.tracked for r in results) >= 10
    assert results[-1].info["timings_ms"]["landmarks"] > 0.0  # detected on the server
    # a T-pose: the upper arms are raised well above the A-pose's 45° down
    upper_arm = JOINT_NAMES.index("leftUpperArm")
    angle = np.degrees(2 * np.arccos(min(1.0, abs(results[-1].rotations[upper_arm, 3]))))
    assert angle > 20.0
    assert client.received.of_type("error")[0]["error"]["code"] == "bad_frame"
    # no byte of the camera frames anywhere the server writes
    probes = [jpeg[i : i + 48] for i in (600, len(jpeg) // 2, len(jpeg) - 100)]
    for path in mirror_server.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(p in data for p in probes), path
    text = caplog.text + "".join(
        str(r.args) + str(getattr(r, "fields", "")) for r in caplog.records
    )
    for p in probes:
        for form in (p.hex(), repr(p)[2:-1], p.decode("latin-1")):
            assert form not in text


async def test_a_server_shutting_down_closes_its_sessions_with_1001(mirror_data, tmp_path, marks):
    from spatialtwin.live.garments import LevelOptions

    shutil.copytree(mirror_data.root, tmp_path / "data")
    settings = {
        **SERVER_SETTINGS,
        "look_max_frames": 5,
        "mirror_level_options": LevelOptions(coarse_edge_factors=(), settle_frames=2),
    }
    server = await asyncio.to_thread(lambda: ServerThread(tmp_path / "data", settings).start())
    try:
        _, token = await server.register_device()
        async with aiohttp.ClientSession() as http:
            client, _ = await opened(http, server, token, look=mirror_data.look, input="landmarks")
            await stream_landmarks(client, marks, 0.3)
            waiting = await MirrorClient(http, server.ws_url + SESSIONS).connect()  # no hello
            await asyncio.to_thread(server.stop)
            assert await client.wait_closed() == 1001
            assert client.received.messages[-1] == {"type": "ended", "reason": "server_shutdown"}
            assert await waiting.wait_closed() == 1001
    finally:
        if server._thread.is_alive():
            await asyncio.to_thread(server.stop)


async def test_a_switch_wears_new_streams_and_a_refused_one_leaves_the_session_as_it_was(
    mirror_server, mirror_data, marks
):
    from spatialtwin.gltf.vertex_stream import read_header

    _, token = await mirror_server.register_device()
    async with aiohttp.ClientSession() as http:
        client, welcome = await opened(
            http, mirror_server, token, look=mirror_data.look, input="landmarks"
        )
        next_id = await stream_landmarks(client, marks, 0.5)
        await client.send_json({"type": "switch", "look": "look_nothing"})
        await client.wait_for(lambda r: r.of_type("error"), 3)
        assert client.received.of_type("error")[0]["error"]["code"] == "look_not_found"
        await client.send_json({"type": "switch", "garments": [mirror_data.garment]})
        await client.wait_for(lambda r: r.of_type("switched"), 10)
        switched_at = len(client.received.results)
        await stream_landmarks(client, marks, 1.0, first_id=next_id)
        await client.send_json({"type": "bye"})
        assert await client.wait_closed() == 1000
    switched = client.received.of_type("switched")[0]["garments"]
    assert [g["stream"] for g in switched] == [1]  # a new stream id, never reused
    assert switched[0]["garment"] == mirror_data.garment
    assert switched[0]["mesh_url"] != welcome["garments"][0]["mesh_url"]
    after = [read_header(r.streams[0]) for r in client.received.results[switched_at:]]
    assert after and after[-1].stream == 1
    first_new = next(h for h in after if h.stream == 1)
    assert first_new.kind == 0  # the new garment starts with a key frame
    assert all(h.stream == 0 for h in after[: after.index(first_new)])
