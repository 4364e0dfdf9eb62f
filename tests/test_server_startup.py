"""`spatialtwin serve` listens within 2 s of its start (issue #7) and loads its services after.

The HTTP layer, the routes and the store open first; the services, with SciPy, trimesh, numba
and scikit-image under them, are imported on a thread once the server listens
(`server.loading`). Requests that need them wait; `/healthz` says `loading` meanwhile.
"""

from __future__ import annotations

import ast
import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from spatialtwin.server.app import create_app

SERVER_DIR = Path(__file__).resolve().parents[1] / "src" / "spatialtwin" / "server"
# What the server must not import before it listens: each costs 0.2-1 s on the 2-core EPYC.
HEAVY_MODULES = (
    "scipy",
    "trimesh",
    "networkx",
    "numba",
    "skimage",
    "mediapipe",
    "cv2",
    "spatialtwin.services.context",
    "spatialtwin.services.job_kinds",
)
LISTEN_BOUND_S = 3.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, timeout_s: float = 2.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_imports_no_numerics_before_it_listens():
    """What `spatialtwin serve` imports up to `web.run_app`: the command line naming `serve`
    and the whole server package, in a fresh interpreter. None of the heavy modules may be
    among them (a route module importing `live` or `services.looks` at its top fails this)."""
    code = (
        "import json, sys\n"
        "from spatialtwin.cli import build_parser\n"
        "build_parser(['serve', '--port', '1'])\n"
        "import spatialtwin.server.app\n"
        f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_handlers_reach_services_through_the_loader():
    """`app[keys.SERVICES]`, `app[keys.TWINS]` … exist only when an app opens its services
    before listening (tests do); `spatialtwin serve` does not, so a server module that reads
    them would answer 500 in production while its in-process tests pass. Handlers use
    `ready_services(request)`; only `app.py` sets those keys."""
    service_keys = {"SERVICES", "JOBS", "TWINS", "GARMENTS", "LOOKS", "LOD"}
    readers = []
    for path in sorted(SERVER_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
                key = node.slice
                name = key.attr if isinstance(key, ast.Attribute) else getattr(key, "id", None)
                if name in service_keys:
                    readers.append(f"{path.name}:{node.lineno} reads app[{name}]")
    assert readers == []


def test_serve_answers_healthz_within_bound_and_requests_wait_for_services(tmp_path):
    """From `Popen` of `spatialtwin serve` (a fresh interpreter, a fresh data directory, the
    samples seeded in the background) to the first `200` of `/healthz`.

    The target is 2 s. Measured on the 2-core EPYC (`bench/startup.py`, 5 starts each): now
    0.4 s median on a quiet machine, 0.6-0.7 s median (p95 1.7 s) with the load average at 6;
    before the services loaded after listening, 3.2 s median quiet (4.5 s in the issue) and
    4.7-6.1 s median (2.5-10.8 s) at load 6. The machine is shared with other sessions'
    tests, so the bound is 3.0 s: a margin over the target that the old start-up missed in
    most runs. What it cannot miss: the first answer says the services are still `loading`,
    which a server that imports them before it listens never says.

    A request for the twins sent then is answered 200 (it waited) once the services are
    ready, never refused."""
    port, data = free_port(), tmp_path / "data"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "spatialtwin", "serve", "--port", str(port), "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                status, first = get_json(base + "/healthz")
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.perf_counter() - started < 60, "server did not come up"
                time.sleep(0.01)
        listened_s = time.perf_counter() - started
        assert status == 200 and first["services"]["status"] == "loading", first
        assert first["status"] == "loading"

        answer: dict = {}
        waiting = threading.Thread(
            target=lambda: answer.update(twins=get_json(base + "/api/v1/twins", 60))
        )
        waiting.start()
        waiting.join(timeout=60)
        _, health = get_json(base + "/healthz")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    print(f"first /healthz 200 after {listened_s:.2f} s")
    assert listened_s <= LISTEN_BOUND_S, f"listened {listened_s:.2f} s after the start"
    assert answer["twins"][0] == 200 and isinstance(answer["twins"][1]["twins"], list)
    assert health["services"]["status"] == "ready" and health["services"]["ms"] > 0
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    listening = next(e for e in events if e["msg"] == "listening")
    ready = next(e for e in events if e["msg"] == "services ready")
    twins = next(e for e in events if e.get("path") == "/api/v1/twins")
    # the twins request arrived after the server listened, before its services were ready,
    # and was answered once they were
    arrived_s = twins["ts"] - twins["ms"] / 1000
    assert listening["ts"] <= arrived_s < ready["ts"] <= twins["ts"] + 0.002, (ready, twins)


async def test_services_that_cannot_open_answer_503_not_500(tmp_path):
    """A data directory whose records cannot be read (a twin record that is not JSON, as a
    disk fault would leave it): the server listens, `/healthz` says `failed` (503) with the
    error, and a request that needs the services gets the JSON 503, instead of a process
    that never listens or requests that wait forever."""
    records = tmp_path / "data" / "records" / "twins"
    records.mkdir(parents=True)
    (records / "twn_broken.json").write_text('{"id": "twn_broken", ')
    client = TestClient(
        TestServer(create_app(tmp_path / "data", seed=False, services_after_listening=True))
    )
    await client.start_server()
    try:
        deadline = time.monotonic() + 30
        while (health := await client.get("/healthz")).status == 200:
            assert (await health.json())["status"] == "loading"
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        body = await health.json()
        assert health.status == 503 and body["status"] == "failed"
        assert body["services"]["error"]["code"] == "services_failed"
        twins = await client.get("/api/v1/twins")
        error = (await twins.json())["error"]
        assert twins.status == 503 and error["code"] == "services_unavailable"
        assert error["detail"]["code"] == "services_failed"
    finally:
        await client.close()
