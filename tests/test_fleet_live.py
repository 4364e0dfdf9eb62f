"""Live mirror sessions across a fleet: two `spatialtwin serve --redis` processes behind Debian's
nginx on one real redis-server (`tests/nginx_server.py`), sharing the mirror tests' data (twin,
skirt, look: `tests/mirror_fixtures.py`).

- A session held by server A is watched through server B: B relays what A publishes for it on
  Redis, and its watcher sees the mirror's own frame ids with the same decoded cloth.
- A session's meshes (`mesh_url`) and the twin's body (`body_url?access=`) are served by
  either server, byte for byte alike, and by neither once the session ended.
- `kill -9` of the server holding a session: the mirror reconnects through nginx and resumes
  on the other server within 2 s (measured from the kill to the `welcome`), with its session
  id, stream ids and mesh URLs, and results flow again, starting from key frames.

The kill is last: it leaves one server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf import mirror_messages as mm
from tests.mirror_fixtures import TWIN, MirrorClient, standing_landmarks
from tests.nginx_server import (
    FleetKeys,
    SpatialTwinProcess,
    copy_store,
    fleet_keys,
    start_nginx,
    start_server,
    stop_all,
    wait_ready,
)

DB = 11  # this module's database on the session's redis-server
SESSIONS = "/api/v1/mirror/sessions"
RESUME_LIMIT_S = 2.0
SERVER_SETTINGS = {
    "look_max_frames": 40,
    "garment_target_edge_m": 0.05,
    "mirror_resume_s": 15.0,
    "mirror_heartbeat_s": 1.0,
    "mirror_hello_timeout_s": 3.0,
    "mirror_level_options": {"settle_frames": 10},
}


@dataclass
class LiveFleet:
    url: str
    blobs: Path
    token: str  # a mirror device's
    look: str
    garment: str
    keys: FleetKeys


async def _into_redis(root: Path, url: str, blobs: Path) -> str:
    """The embedded data into Redis and the blob folder; a mirror device registered there."""
    from spatialtwin.services.context import Services
    from spatialtwin.store.embedded import EmbeddedStore
    from spatialtwin.store.redis_store import RedisStore

    source, target = EmbeddedStore(root), RedisStore(url, blobs=blobs)
    try:
        records, copied = await copy_store(source, target)
        assert records >= 5 and copied >= 5, (records, copied)
        _, token = await Services(target).devices.register("Fleet live mirror", "test")
    finally:
        await source.close()
        await target.close()
    return token


@pytest.fixture(scope="module")
def live_fleet(mirror_data, redis_server, tmp_path_factory) -> LiveFleet:
    import redis

    folder = tmp_path_factory.mktemp("fleet-live")
    shutil.copytree(mirror_data.root, folder / "embedded")
    url = redis_server.url(DB)
    redis.Redis.from_url(url).flushdb()
    token = asyncio.run(_into_redis(folder / "embedded", url, folder / "blobs"))
    keys = fleet_keys(folder / "keys")
    return LiveFleet(url, folder / "blobs", token, mirror_data.look, mirror_data.garment, keys)


@pytest.fixture(scope="module")
def servers(live_fleet, tmp_path_factory):
    logs = tmp_path_factory.mktemp("fleet-live-logs")
    args = ["--redis", live_fleet.url, "--blobs", str(live_fleet.blobs)]
    for key, value in SERVER_SETTINGS.items():
        args += ["--setting", f"{key}={json.dumps(value)}"]
    started = [
        start_server(args, logs / f"server{i}.log", wait=False, env=live_fleet.keys.env)
        for i in range(2)
    ]
    try:
        for server in started:
            wait_ready(server)
        yield started
    finally:
        stop_all(started)


@pytest.fixture(scope="module")
def nginx(servers, live_fleet, tmp_path_factory):
    proxy = start_nginx(
        tmp_path_factory.mktemp("nginx-live"), [s.address for s in servers], live_fleet.blobs
    )
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def marks(average_body):
    return standing_landmarks(average_body)


def log_entries(server: SpatialTwinProcess, message: str) -> list[dict]:
    found = []
    for line in server.log_text().splitlines():
        if line.startswith("{") and message in line:
            found.append(json.loads(line))
    return found


def usage_events(fleet: LiveFleet) -> list[dict]:
    """The fleet's usage log (`store.event_log`: a JSONL file beside the shared blobs)."""
    path = Path(f"{fleet.blobs}-events") / "usage.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


class Streamer:
    """Landmark frames at 30 fps to whichever socket is current (frame ids go on increasing
    across sockets, as a mirror's camera does)."""

    def __init__(self, marks) -> None:
        self.marks = marks
        self.client: MirrorClient | None = None
        self.next_id = 0
        self.sent_at: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self, client: MirrorClient) -> None:
        self.client = client
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        t0 = time.perf_counter()
        sent = 0
        while True:
            client = self.client
            if client is not None and client.ws is not None and not client.ws.closed:
                self.sent_at[self.next_id] = time.perf_counter()
                with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError):
                    await client.send_landmarks(self.next_id, self.marks, 1000.0 * time.time())
                self.next_id += 1
            sent += 1
            await asyncio.sleep(max(0.0, t0 + sent / 30.0 - time.perf_counter()))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self._task


async def open_session(http, url: str, fleet: LiveFleet) -> tuple[MirrorClient, dict]:
    client = await MirrorClient(http, url + SESSIONS).connect()
    welcome = await client.hello(fleet.token, look=fleet.look, input="landmarks")
    return client, welcome


async def test_a_session_on_one_server_is_watched_through_the_other(servers, live_fleet, marks):
    holder, other = servers
    async with aiohttp.ClientSession() as http:
        mirror, welcome = await open_session(http, holder.url.replace("http", "ws"), live_fleet)
        streamer = Streamer(marks)
        streamer.start(mirror)
        await mirror.wait_for(lambda r: len(r.results) >= 5, 30)
        await mirror.send_json({"type": "share"})
        await mirror.wait_for(lambda r: r.of_type("share"), 5)
        code = mirror.received.of_type("share")[0]["code"]
        watch = f"/api/v1/mirror/watch?code={code}"
        local = await MirrorClient(http, holder.url.replace("http", "ws") + watch).connect()
        remote = await MirrorClient(http, other.url.replace("http", "ws") + watch).connect()
        for watcher in (local, remote):
            await asyncio.wait_for(watcher._welcome.wait(), 10)
        wrong = await MirrorClient(
            http, other.url.replace("http", "ws") + "/api/v1/mirror/watch?code=ZZZZZZ"
        ).connect()
        assert await wrong.wait_closed() == 4404
        await remote.wait_for(lambda r: len(r.results) >= 60, 20)
        await remote.wait_for(lambda r: r.of_type("status"), 5)
        await streamer.stop()
        await asyncio.sleep(0.3)  # the last results reach every socket
        await mirror.send_json({"type": "bye"})
        assert await mirror.wait_closed() == 1000
        assert await remote.wait_closed(5) == 1000
        assert await local.wait_closed(5) == 1000
    # the welcome through B is the holder's own for a watcher
    seen_by_b = remote.welcome
    assert seen_by_b is not None and seen_by_b == local.welcome
    assert seen_by_b["session"] == welcome["session"] and "resume_key" not in seen_by_b
    assert seen_by_b["garments"] == welcome["garments"]
    assert remote.received.messages[-1] == {"type": "ended", "reason": "bye"}
    # B's watcher sees the mirror's frame ids, from its first (key) frame on, with the same
    # decoded cloth; so does A's local watcher
    by_id = {
        r.frame_id: (p, t)
        for r, p, t in zip(
            mirror.received.results,
            mirror.received.positions,
            mirror.received.arrival_s,
            strict=True,
        )
    }
    results = remote.received.results
    assert all(mm.is_key_stream(s) for s in results[0].streams) and remote.decode_errors == []
    ids_b = [r.frame_id for r in results]
    assert ids_b == sorted(ids_b) and set(ids_b) <= set(by_id)
    window = [i for i in by_id if ids_b[0] <= i <= ids_b[-1]]
    assert len(ids_b) >= 0.95 * len(window), (len(ids_b), len(window))
    ids_local = {r.frame_id for r in local.received.results}
    assert len(set(ids_b) & ids_local) >= 0.9 * len(ids_b)
    for frame_id, positions in zip(ids_b, remote.received.positions, strict=True):
        np.testing.assert_allclose(positions[0], by_id[frame_id][0][0], atol=1e-6)
    # latency of the relay: a result's arrival at B's watcher after the mirror's own
    latency_ms = sorted(
        1e3 * (t - by_id[i][1]) for i, t in zip(ids_b, remote.received.arrival_s, strict=True)
    )
    local_ms = sorted(
        1e3 * (t - by_id[r.frame_id][1])
        for r, t in zip(local.received.results, local.received.arrival_s, strict=True)
        if r.frame_id in by_id
    )
    p50, p95 = statistics.median(latency_ms), latency_ms[int(0.95 * (len(latency_ms) - 1))]
    print(
        f"watcher through B: {len(ids_b)} results of {len(window)}, after the mirror's own by "
        f"{p50:.1f} ms median, {p95:.1f} ms p95 (local watcher on A: "
        f"{statistics.median(local_ms):.1f} ms median)"
    )
    assert p50 < 50.0


async def test_a_sessions_meshes_and_body_are_served_by_either_server(
    servers, nginx, live_fleet, marks
):
    holder, other = servers
    async with aiohttp.ClientSession() as http:
        mirror, welcome = await open_session(http, holder.url.replace("http", "ws"), live_fleet)
        mesh_url = welcome["garments"][0]["mesh_url"]
        body_url = welcome["twin"]["body_url"]
        descriptor_bytes = _descriptor_bytes(live_fleet.url, welcome["session"])
        assert body_url.startswith(f"/api/v1/twins/{TWIN}/body.glb?access=")
        got: dict[str, list[bytes]] = {mesh_url: [], body_url: []}
        for url in (mesh_url, body_url):
            for base in (holder.url, other.url, nginx.url, other.url):  # B twice: its cache
                async with http.get(base + url) as r:
                    assert r.status == 200, (base, url, await r.text())
                    assert r.headers["Content-Type"] == "model/gltf-binary"
                    got[url].append(await r.read())
        for url, bodies in got.items():
            assert bodies[0][:4] == b"glTF" and len(bodies[0]) > 10_000
            assert all(b == bodies[0] for b in bodies), url  # byte for byte alike
        stream_vertices = json.loads(got[mesh_url][0][20 : 20 + _json_length(got[mesh_url][0])])
        extras = stream_vertices["asset"]["extras"]["spatialtwin"]
        assert extras["streamVertices"] == welcome["garments"][0]["vertices"]
        # a wrong key, another stream: 404 on B as on A
        forged = mesh_url[:-8] + ("A" * 8 if not mesh_url.endswith("A" * 8) else "B" * 8)
        for base in (holder.url, other.url):
            async with http.get(base + forged) as r:
                assert r.status == 404
                assert (await r.json())["error"]["code"] == "session_not_found"
            async with http.get(base + mesh_url.replace("/garments/0.glb", "/garments/7.glb")) as r:
                assert r.status == 404
                assert (await r.json())["error"]["code"] == "stream_not_found"
        await mirror.send_json({"type": "bye"})
        assert await mirror.wait_closed() == 1000
        for base in (holder.url, other.url):  # ended: neither serves it any more
            deadline = time.monotonic() + 3
            while True:
                async with http.get(base + mesh_url) as r:
                    if r.status == 404:
                        break
                assert time.monotonic() < deadline, f"{base} still serves an ended session"
                await asyncio.sleep(0.05)
            async with http.get(base + body_url) as r:
                assert r.status == 404
    print(f"a session's descriptor in Redis: {descriptor_bytes} B of JSON")
    assert 200 < descriptor_bytes < 4096
    # B read the live garments A stored; it never draped the look itself
    assert log_entries(other, "live build not stored") == []
    assert log_entries(other, "stored live build not used") == []


def _descriptor_bytes(url: str, session_id: str) -> int:
    """The session's descriptor as Redis holds it (`store.redis_store`: a hash per kind),
    with no key in the clear."""
    import redis

    from spatialtwin.live.session_registry import SESSIONS

    stored = redis.Redis.from_url(url).hget(f"spatialtwin:rec:{SESSIONS}", session_id)
    assert stored is not None
    descriptor = json.loads(stored)
    assert descriptor["holder"].startswith("srv_") and "resume_key" not in descriptor
    assert len(descriptor["resume_key_sha256"]) == 64 and "access_key" not in descriptor
    return len(stored)


def _json_length(glb: bytes) -> int:
    return int.from_bytes(glb[12:16], "little")


def ws(server: SpatialTwinProcess) -> str:
    return server.url.replace("http://", "ws://")


async def resume_hello(http, url: str, fleet: LiveFleet, resume: dict) -> MirrorClient:
    """A resuming hello on a new socket (the caller waits for its welcome or close)."""
    client = await MirrorClient(http, url + SESSIONS).connect()
    await client.send_json({"type": "hello", "version": 1, "token": fleet.token, "resume": resume})
    return client


async def welcome_or_close(client: MirrorClient, timeout_s: float = 10.0) -> dict | None:
    waiting = asyncio.ensure_future(client._welcome.wait())
    assert client._reader is not None
    await asyncio.wait({waiting, client._reader}, timeout=timeout_s, return_when="FIRST_COMPLETED")
    waiting.cancel()
    return client.welcome


def test_a_stored_live_build_reads_back_bit_exactly_and_refuses_another(servers, live_fleet):
    """What a server taking a session over starts its cloth from: the live build the first
    server stored (the earlier tests made one), read back array for array."""
    from spatialtwin.live.session_registry import LIVE_BUILDS
    from spatialtwin.live.stored_builds import live_build_from_npz, live_build_to_npz
    from spatialtwin.store.redis_store import RedisStore

    async def read() -> tuple[dict, bytes]:
        store = RedisStore(live_fleet.url, blobs=live_fleet.blobs)
        try:
            records = await store.list_records(LIVE_BUILDS)
            assert len(records) == 1, records  # one look, one build, whichever server asked
            data = await store.get_blob(records[0]["blob"])
            assert data is not None
            return records[0], data
        finally:
            await store.close()

    record, data = asyncio.run(read())
    assert record["bytes"] == len(data) and record["garments"] == [live_fleet.garment]
    lives = live_build_from_npz(data, record["id"])
    assert len(lives) == 1 and lives[0].key == live_fleet.garment
    assert live_build_to_npz(record["id"], lives) == data  # nothing lost or changed on the way
    with pytest.raises(SpatialTwinError) as other:
        live_build_from_npz(data, "0" * 64)
    assert other.value.code == "stored_build_invalid"
    with pytest.raises(SpatialTwinError) as cut:
        live_build_from_npz(data[: len(data) // 2], record["id"])
    assert cut.value.code == "stored_build_invalid"
    print(f"stored live build of the test skirt: {len(data)} B")


async def test_a_dropped_mirror_resumes_through_the_other_server_as_its_holder_lets_go(
    servers, live_fleet, marks
):
    holder, other = servers
    async with aiohttp.ClientSession() as http:
        first, welcome = await open_session(http, ws(holder), live_fleet)
        streamer = Streamer(marks)
        streamer.start(first)
        await first.wait_for(lambda r: len(r.results) >= 10, 30)
        await first.send_json({"type": "share"})
        await first.wait_for(lambda r: r.of_type("share"), 5)
        watch = f"/api/v1/mirror/watch?code={first.received.of_type('share')[0]['code']}"
        watcher = await MirrorClient(http, ws(holder) + watch).connect()
        await asyncio.wait_for(watcher._welcome.wait(), 10)
        resume = {"session": welcome["session"], "key": welcome["resume_key"]}
        busy = await resume_hello(http, ws(other), live_fleet, resume)
        assert await busy.wait_closed() == 4409  # A's socket still holds it
        wrong = await resume_hello(http, ws(other), live_fleet, {**resume, "key": "not-the-key"})
        assert await wrong.wait_closed() == 4401
        streamer.client = None
        await first.close()  # a network drop: A keeps the session for the resume window
        await asyncio.sleep(0.2)
        asked = time.perf_counter()
        second = await resume_hello(http, ws(other), live_fleet, resume)
        again = await welcome_or_close(second)
        handover_s = time.perf_counter() - asked
        assert again is not None, (second.received.messages, second.received.close_code)
        streamer.client = second
        await second.wait_for(lambda r: len(r.results) >= 20, 20)
        # A's watcher is told to come back (1001, no `ended`: the session goes on) and,
        # back through A, watches the session B holds now
        assert await watcher.wait_closed(5) == 1001
        assert watcher.received.close_reason == "session_moved"
        assert not watcher.received.of_type("ended")
        back = await MirrorClient(http, ws(holder) + watch).connect()
        await asyncio.wait_for(back._welcome.wait(), 10)
        await back.wait_for(lambda r: len(r.results) >= 10, 10)
        await streamer.stop()
        await second.send_json({"type": "bye"})
        assert await second.wait_closed() == 1000
        assert await back.wait_closed(5) == 1000
    print(f"a dropped mirror resumed through the other server in {handover_s:.2f} s")
    assert again["session"] == welcome["session"] and again["garments"] == welcome["garments"]
    assert all(mm.is_key_stream(s) for s in second.received.results[0].streams)
    assert back.welcome is not None and back.welcome["session"] == welcome["session"]
    assert back.received.messages[-1] == {"type": "ended", "reason": "bye"}
    assert back.decode_errors == []
    taken = log_entries(other, "mirror session taken over")
    assert [(e["session"], e["holder"]) for e in taken] == [(welcome["session"], "released")]
    minutes = [e["session"] for e in usage_events(live_fleet) if e["kind"] == "mirror_minute"]
    assert minutes.count(welcome["session"]) == 1  # not metered again where it went on
    ended = log_entries(holder, "mirror session ended")
    assert {"session": welcome["session"], "reason": "moved"}.items() <= ended[-1].items()
    assert handover_s <= RESUME_LIMIT_S


async def test_a_server_shutting_down_leaves_its_sessions_to_the_others(
    servers, live_fleet, marks, tmp_path
):
    """SIGTERM: the server ends its sessions with 1001 `server_shutdown` and tells the fleet
    it is going; the mirror resumes on another server at once (a third server, so the fleet
    behind nginx keeps both of its own)."""
    args = ["--redis", live_fleet.url, "--blobs", str(live_fleet.blobs)]
    for key, value in SERVER_SETTINGS.items():
        args += ["--setting", f"{key}={json.dumps(value)}"]
    leaving = start_server(args, tmp_path / "leaving.log", env=live_fleet.keys.env)
    try:
        async with aiohttp.ClientSession() as http:
            first, welcome = await open_session(http, ws(leaving), live_fleet)
            streamer = Streamer(marks)
            streamer.start(first)
            await first.wait_for(lambda r: len(r.results) >= 10, 30)
            leaving.proc.terminate()
            assert await first.wait_closed(10) == 1001
            assert first.received.messages[-1] == {"type": "ended", "reason": "server_shutdown"}
            asked = time.perf_counter()
            resume = {"session": welcome["session"], "key": welcome["resume_key"]}
            second = await resume_hello(http, ws(servers[0]), live_fleet, resume)
            again = await welcome_or_close(second)
            resumed_s = time.perf_counter() - asked
            assert again is not None, (second.received.messages, second.received.close_code)
            streamer.client = second
            await second.wait_for(lambda r: len(r.results) >= 10, 20)
            await streamer.stop()
            await second.send_json({"type": "bye"})
            assert await second.wait_closed() == 1000
        await asyncio.to_thread(leaving.proc.wait, 20)  # it drains and exits by itself
    finally:
        leaving.stop()
    print(f"after a shutdown the mirror resumed on another server in {resumed_s:.2f} s")
    assert again["session"] == welcome["session"] and again["garments"] == welcome["garments"]
    assert resumed_s <= RESUME_LIMIT_S
    assert leaving.proc.returncode == 0


async def test_kill_9_of_a_sessions_server_resumes_it_on_the_other_within_2_s(
    servers, nginx, live_fleet, marks
):
    async with aiohttp.ClientSession() as http:
        first, welcome = await open_session(http, nginx.ws_url, live_fleet)
        session = welcome["session"]

        def holders() -> list[SpatialTwinProcess]:
            return [s for s in servers if any(
                e.get("session") == session for e in log_entries(s, "mirror session opened")
            )]  # fmt: skip

        await wait_until(lambda: len(holders()) == 1, 5, "the session was opened on one server")
        victim = holders()[0]
        survivor = next(s for s in servers if s is not victim)
        streamer = Streamer(marks)
        streamer.start(first)
        await first.send_json({"type": "share"})
        await first.wait_for(lambda r: r.of_type("share"), 5)
        watch = f"/api/v1/mirror/watch?code={first.received.of_type('share')[0]['code']}"
        watcher = await MirrorClient(http, ws(survivor) + watch).connect()  # a remote watch
        await asyncio.wait_for(watcher._welcome.wait(), 10)
        await first.wait_for(lambda r: len(r.results) >= 20, 30)
        await watcher.wait_for(lambda r: len(r.results) >= 5, 10)
        last_before = first.received.results[-1].frame_id

        victim.kill()  # kill -9: no goodbye, its sockets reset
        killed_at = time.perf_counter()
        await asyncio.wait_for(first._reader, 5)  # nginx closes the mirror's socket
        noticed_s = time.perf_counter() - killed_at
        resume = {"session": session, "key": welcome["resume_key"]}
        attempts = []
        while True:  # what a mirror does: reconnect and resume (its own back-off aside)
            second = await MirrorClient(http, nginx.ws_url + SESSIONS).connect()
            await second.send_json({"type": "hello", "version": 1, "token": live_fleet.token,
                                    "resume": resume})  # fmt: skip
            done = asyncio.ensure_future(second._welcome.wait())
            await asyncio.wait({done, second._reader}, timeout=10, return_when="FIRST_COMPLETED")
            done.cancel()
            if second.welcome is not None:
                break
            attempts.append(second.received.close_code)
            assert time.perf_counter() - killed_at < 10, attempts
            await asyncio.sleep(0.05)
        resumed_s = time.perf_counter() - killed_at
        streamer.client = second
        await second.wait_for(lambda r: len(r.results) >= 30, 20)
        first_result_s = second.received.arrival_s[0] - killed_at
        # the watcher of the dead holder's session is told to come back (1001) once the
        # holder is silent and gone; back, it watches the session where it runs now
        assert await watcher.wait_closed(8) == 1001
        watcher_closed_s = time.perf_counter() - killed_at
        back = await MirrorClient(http, ws(survivor) + watch).connect()
        await asyncio.wait_for(back._welcome.wait(), 10)
        await back.wait_for(lambda r: len(r.results) >= 10, 10)
        await streamer.stop()
        again = second.welcome
        await second.send_json({"type": "bye"})
        assert await second.wait_closed() == 1000
        assert await back.wait_closed(5) == 1000
    print(
        f"kill -9 of the holder: socket closed after {noticed_s * 1e3:.0f} ms, resumed on the "
        f"other server {resumed_s:.2f} s after the kill ({len(attempts)} refused attempts "
        f"{attempts}), first result after {first_result_s:.2f} s; its remote watcher closed "
        f"1001 after {watcher_closed_s:.2f} s"
    )
    assert resumed_s <= RESUME_LIMIT_S
    assert again["session"] == session and again["resume_key"] == welcome["resume_key"]
    assert again["garments"] == welcome["garments"] and again["access"] == welcome["access"]
    assert again["twin"] == welcome["twin"]
    results = second.received.results
    assert all(mm.is_key_stream(s) for s in results[0].streams) and second.decode_errors == []
    ids = [r.frame_id for r in results]
    assert ids == sorted(ids) and ids[0] > last_before and len(ids) >= 30
    # the cloth restarted from the look's static drape, standing: it stays on the body
    assert np.abs(second.received.positions[-1][0] - first.received.positions[-1][0]).max() < 0.05
    # its first minute was metered once, by the holder that died: the survivor went on from it
    minutes = [e for e in usage_events(live_fleet) if e["kind"] == "mirror_minute"]
    assert [e["session"] for e in minutes].count(session) == 1
    taken = [
        e for e in log_entries(survivor, "mirror session taken over") if e["session"] == session
    ]
    assert [e["holder"] for e in taken] == ["gone"]
    assert back.welcome is not None and back.welcome["session"] == session
    assert back.decode_errors == [] and all(
        mm.is_key_stream(s) for s in back.received.results[0].streams
    )
