"""`spatialtwin serve --redis` processes on a real `redis-server`: what a fleet's server does when
Redis is not there, goes away, or carries another server's news.

- Redis unreachable at the start: one line naming the URL (never its password), exit status 2.
- Redis restarted (AOF on) while clients keep posting fabrics (201) and twin requests (202):
  while it is down every answer is 503 `store_unavailable` with `Retry-After`, never a 500;
  the server reconnects by itself once Redis is back, and everything answered 201/202 is there.
- Redis gone while the services load: loading waits for it, then the server serves.
- Two servers on one Redis: a twin revoked through server A ends the mirror session held by
  server B at once — B polls every 30 s here, so only the `twins` announcement on Redis pub/sub
  can end it that soon — and B refuses the twin's body (410) from then on.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from spatialtwin.store.redis_store import RedisStore
from tests.conftest import AVERAGE, HOSTILE_RIGHTS
from tests.fleet_processes import (
    REPO,
    TWIN,
    FleetAuth,
    Process,
    put_fleet_data,
    spawn_serve,
    stop_all,
    wait_healthy,
)
from tests.mirror_fixtures import MirrorClient, standing_landmarks
from tests.redis_server import free_port, start_redis, stop_redis

DB = 3  # this module's database on the session's redis-server
SESSIONS = "/api/v1/mirror/sessions"


def test_a_server_without_redis_says_so_in_one_line_and_exits_2(tmp_path):
    url = f"redis://admin:s3cret@127.0.0.1:{free_port()}/4"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "spatialtwin", "serve", "--redis", url, "--blobs", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    took_s = time.monotonic() - started
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 2, result.stderr.decode()[-2000:]
    assert len(lines) == 1, lines
    assert lines[0].startswith("spatialtwin: error: cannot reach Redis at redis://admin:***@127")
    assert f":{url.rsplit(':', 1)[1]}" in lines[0] and "s3cret" not in lines[0]
    assert result.stdout == b""  # nothing announced: it never listened
    print(f"unreachable Redis reported in {took_s:.2f} s")


# --- a Redis restart ---------------------------------------------------------------------


def fabric(n: int) -> dict[str, Any]:
    return {
        "id": f"restart-{n:04d}",
        "name": f"Restart test {n}",
        "construction": "woven",
        "areal_density_gsm": 120.0,
        "thickness_mm": 0.25,
        "stretch_warp_n_m": 3000.0,
        "stretch_weft_n_m": 2000.0,
        "shear_n_m": 8.0,
        "bending_n_m": 1e-5,
        "friction": 0.35,
    }


TWIN_REQUEST = {"name": "Restart", "measurements": AVERAGE.to_json(), **HOSTILE_RIGHTS}


class Poster:
    """Posts fabrics and twin requests in a loop on its own thread, keeping every answer."""

    def __init__(self, server: Process) -> None:
        self.server = server
        self.answers: list[tuple[float, str, int, dict[str, str], dict[str, Any]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            if n % 3:
                what, status, headers, body = (
                    "fabric",
                    *self.server.request("POST", "/api/v1/fabrics", fabric(n), timeout_s=10),
                )
            else:
                what, status, headers, body = (
                    "twin",
                    *self.server.request("POST", "/api/v1/twins", TWIN_REQUEST, timeout_s=10),
                )
            self.answers.append((time.monotonic(), what, status, headers, json.loads(body)))
            time.sleep(0.01)

    def statuses(self, since: float = 0.0) -> Counter[int]:
        return Counter(a[2] for a in self.answers if a[0] >= since)


def test_a_redis_restart_is_503_while_down_and_loses_nothing_answered(tmp_path):
    folder = tmp_path / "redis"
    aof = ("--appendonly", "yes", "--appendfsync", "everysec")
    redis_server = start_redis(folder, None, *aof)
    port = redis_server.port
    url = redis_server.url(0)
    auth = FleetAuth.make(tmp_path / "keys")
    server = spawn_serve(url, tmp_path / "blobs", tmp_path / "server.log", auth=auth)
    poster = Poster(server)
    try:
        wait_healthy(server)
        poster.thread.start()
        while poster.statuses()[201] < 10:
            assert poster.statuses()[201] == len(poster.answers) or len(poster.answers) < 30, (
                poster.answers[-1]
            )
            time.sleep(0.02)
        stop_redis(redis_server)  # SIGTERM: Redis writes its AOF and exits
        down_at = time.monotonic()
        time.sleep(1.0)
        redis_server = start_redis(folder, port, *aof)  # same port, same AOF
        up_at = time.monotonic()
        while not any(a[0] > up_at and a[2] in (201, 202) for a in poster.answers):
            assert time.monotonic() - up_at < 15, poster.statuses(up_at)
            time.sleep(0.02)
        back_at = min(a[0] for a in poster.answers if a[0] > up_at and a[2] in (201, 202))
        time.sleep(0.3)
        poster.stop.set()
        poster.thread.join(15)

        down = [a for a in poster.answers if down_at + 0.05 < a[0] < up_at]
        print(
            f"Redis down {up_at - down_at:.2f} s: {len(down)} answers "
            f"{dict(Counter(a[2] for a in down))}; first 2xx {back_at - up_at:.2f} s after it "
            f"was back; all answers {dict(poster.statuses())}"
        )
        # While down: 503, but for a request whose writes landed before Redis went (its
        # record is there, checked below; its message may be left to the workers' sweep).
        assert sum(a[2] == 503 for a in down) >= len(down) - 2 and len(down) >= 3, down
        assert 500 not in poster.statuses() and set(poster.statuses()) <= {201, 202, 503}
        for _, _, status, headers, body in poster.answers:
            if status == 503:
                assert body["error"]["code"] == "store_unavailable"
                assert int(headers["Retry-After"]) >= 1
                assert body["error"]["detail"]["url"] == url
        assert back_at - up_at < 5.0

        answered_fabrics = {a[4]["id"] for a in poster.answers if a[1] == "fabric" and a[2] == 201}
        answered_jobs = {
            a[4]["job"]["id"] for a in poster.answers if a[1] == "twin" and a[2] == 202
        }
        assert len(answered_fabrics) >= 10 and answered_jobs
        status, _, body = server.request("GET", "/api/v1/fabrics")
        stored = {f["id"] for f in json.loads(body)["fabrics"]}
        assert status == 200 and answered_fabrics <= stored
        for job_id in answered_jobs:
            status, _, body = server.request("GET", f"/api/v1/jobs/{job_id}")
            assert status == 200 and json.loads(body)["status"] == "queued"  # no worker here
        # The job messages too: every answered job is waiting on Dramatiq's queue, or the server
        # said its message could not be sent (Redis went between the record and the message)
        # and the workers' sweep sends it.
        client = redis.Redis.from_url(url)
        queued = {json.loads(m)["args"][0] for m in client.hvals("spatialtwin.jobs:jobs.msgs")}
        client.close()
        unsent = {
            e["jobId"]
            for e in server.entries()
            if e.get("msg", "").startswith("job message not sent")
        }
        assert answered_jobs <= queued | unsent and len(unsent) <= 2, (answered_jobs, unsent)
        errors = [e for e in server.entries() if e.get("level") == "error"]
        assert errors == [], errors[:3]
    finally:
        poster.stop.set()
        stop_all([server])
        stop_redis(redis_server)


def test_a_server_whose_redis_goes_away_as_it_loads_waits_for_it(tmp_path):
    """Redis answered the start's check, then went away while the services were still being
    imported: loading is tried again until Redis is back (503 meanwhile), no restart needed."""
    folder = tmp_path / "redis"
    redis_server = start_redis(folder)
    port = redis_server.port
    server = spawn_serve(
        redis_server.url(0),
        tmp_path / "blobs",
        tmp_path / "server.log",
        auth=FleetAuth.make(tmp_path / "keys"),
    )
    try:
        while True:  # listening, the services still loading (their imports take seconds)
            assert server.proc.poll() is None, server.text()[-2000:]
            try:
                status, _, body = server.request("GET", "/healthz", timeout_s=2)
                break
            except OSError:
                time.sleep(0.02)
        assert json.loads(body)["status"] == "loading", body
        stop_redis(redis_server)
        while not any(e.get("msg") == "services wait for the store" for e in server.entries()):
            assert server.proc.poll() is None, server.text()[-2000:]
            time.sleep(0.05)
        status, headers, body = server.request("GET", "/api/v1/fabrics")
        assert status == 503 and "Retry-After" in headers, body
        redis_server = start_redis(folder, port)
        back_at = time.monotonic()
        wait_healthy(server, timeout_s=30)
        print(f"services loaded {time.monotonic() - back_at:.2f} s after Redis was back")
        status, _, body = server.request("GET", "/api/v1/fabrics")
        assert status == 200 and json.loads(body)["fabrics"], body
    finally:
        stop_all([server])
        stop_redis(redis_server)


# --- two servers, one Redis ----------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet_db(redis_server, tmp_path_factory, average_body) -> tuple[str, Path, str]:
    url = redis_server.url(DB)
    redis.Redis.from_url(url).flushdb()
    blobs = tmp_path_factory.mktemp("serve-fleet") / "blobs"
    return url, blobs, asyncio.run(put_fleet_data(url, blobs, average_body))


async def register_device(url: str, blobs: Path) -> str:
    from spatialtwin.services.context import Services

    store = RedisStore(url, blobs=blobs)
    try:
        _, token = await Services(store).devices.register("Fleet mirror", "test")
    finally:
        await store.close()
    return str(token)


async def test_a_revocation_through_one_server_ends_a_session_on_another(
    fleet_db, tmp_path, average_body
):
    url, blobs, garment = fleet_db
    slow_poll = ("--setting", "mirror_revocation_poll_s=30", "--setting", "look_max_frames=20")
    auth = FleetAuth.make(tmp_path / "keys")
    a = spawn_serve(url, blobs, tmp_path / "a.log", auth=auth)
    b = spawn_serve(url, blobs, tmp_path / "b.log", *slow_poll, auth=auth)
    started = time.perf_counter()
    try:
        await asyncio.to_thread(wait_healthy, a)
        await asyncio.to_thread(wait_healthy, b)
        healthy_s = time.perf_counter() - started
        token = await register_device(url, blobs)
        marks = standing_landmarks(average_body)
        async with aiohttp.ClientSession() as http:
            client = await MirrorClient(http, f"ws://127.0.0.1:{b.port}{SESSIONS}").connect()
            await client.hello(token, garments=[garment], twin=TWIN, input="landmarks")
            welcomed_s = time.perf_counter() - started
            frame = 0
            while len(client.received.results) < 3:
                await client.send_landmarks(frame, marks, 0.0)
                frame += 1
                await asyncio.sleep(1 / 30)
            status, _, _ = await asyncio.to_thread(
                b.request, "GET", f"/api/v1/twins/{TWIN}/body.glb?channel=ecommerce"
            )
            assert status == 200
            listening = redis.Redis.from_url(url)
            [(_, subscribers)] = listening.pubsub_numsub(f"spatialtwin:{DB}:twins")
            listening.close()
            assert subscribers >= 1  # B's mirror service hears the twins channel on Redis
            sent_at = time.perf_counter()
            status, _, _ = await asyncio.to_thread(
                a.request, "PATCH", f"/api/v1/twins/{TWIN}/license", {"revoked": True}
            )
            answered_s = time.perf_counter() - sent_at
            assert status == 200
            code = await client.wait_closed(5)
            ended_s = time.perf_counter() - sent_at
            print(
                f"servers healthy {healthy_s:.1f} s, B's session welcomed {welcomed_s:.1f} s "
                f"after the start; revoked through A (answered in {answered_s * 1000:.0f} ms): "
                f"B's session closed {ended_s * 1000:.0f} ms after the request was sent"
            )
            assert code == 4403 and ended_s < 1.0, (code, ended_s)
            assert client.received.messages[-1] == {"type": "ended", "reason": "revoked"}
            status, _, body = await asyncio.to_thread(
                b.request, "GET", f"/api/v1/twins/{TWIN}/body.glb?channel=ecommerce"
            )
            assert status == 410 and json.loads(body)["error"]["code"] == "license_revoked"
    finally:
        stop_all([a, b])
