"""`spatialtwin serve --redis` and `spatialtwin worker --redis` processes for the fleet tests,
and the data they share (a twin and a small skirt put into Redis and the blob folder here).

    auth = FleetAuth.make(tmp_path / "keys")     # one key folder for the whole fleet
    server = spawn_serve(url, blobs, tmp_path / "a.log", "--setting", "look_max_frames=20",
                         auth=auth)
    wait_healthy(server)
    status, headers, body = server.request("GET", "/api/v1/twins")   # as an admin
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.mirror_fixtures import RIGHTS, skirt_obj
from tests.redis_server import free_port

REPO = Path(__file__).resolve().parents[1]
TWIN = "twn_fleet_mara"
DATA_SETTINGS = {"garment_target_edge_m": 0.05, "look_max_frames": 40}


@dataclass(frozen=True)
class FleetAuth:
    """What lets a test call the fleet's servers as an admin: the key folder every process
    shares (`SPATIALTWIN_KEYS`) and a bearer token signed with its key. Empty where the
    server checks no tokens (`services.auth` absent)."""

    env: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def make(cls, folder: Path) -> FleetAuth:
        try:
            from spatialtwin.services.auth import KeyRing
        except ImportError:
            return cls()
        ring, _ = KeyRing.init(folder)
        token = ring.issue("admin", None, subject="fleet-tests")
        return cls({"SPATIALTWIN_KEYS": str(folder)}, {"Authorization": f"Bearer {token}"})


@dataclass
class Process:
    """A `spatialtwin` process with its log (`port` for a server) and the headers its
    requests carry."""

    proc: subprocess.Popen[bytes]
    log: Path
    port: int | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def entries(self) -> list[dict[str, Any]]:
        """The JSON log lines."""
        found = []
        for line in self.text().splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
        return found

    def request(
        self, method: str, path: str, body: Any = None, timeout_s: float = 30.0
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request (JSON body when given); (status, headers, body), 4xx/5xx too."""
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self.headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as answer:
                return answer.status, dict(answer.headers), answer.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()


def _spawn(args: list[str], log: Path, auth: FleetAuth | None, port: int | None = None) -> Process:
    auth = auth or FleetAuth()
    command = [sys.executable, "-m", "spatialtwin", *args]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **auth.env},
        )
    return Process(proc, log, port, dict(auth.headers))


def spawn_serve(
    url: str, blobs: Path, log: Path, *extra: str, auth: FleetAuth | None = None
) -> Process:
    """`spatialtwin serve --redis URL --blobs DIR` on a free port (its data directory, unused
    but for what it keeps of its own, beside the log)."""
    port = free_port()
    data = log.with_suffix(".data")
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--no-seed", "--data", str(data)]
    return _spawn([*args, "--redis", url, "--blobs", str(blobs), *extra], log, auth, port)


def spawn_worker(
    url: str, blobs: Path, log: Path, *extra: str, auth: FleetAuth | None = None
) -> Process:
    return _spawn(["worker", "--redis", url, "--blobs", str(blobs), *extra], log, auth)


def wait_healthy(server: Process, timeout_s: float = 90.0) -> None:
    """Until `/healthz` says ok (the services loaded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert server.proc.poll() is None, server.text()[-3000:]
        try:
            status, _, body = server.request("GET", "/healthz", timeout_s=2)
            if status == 200 and json.loads(body).get("status") == "ok":
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, server.text()[-3000:]
        time.sleep(0.05)


def wait_receiving(workers: list[Process], timeout_s: float = 90.0) -> None:
    """Until each worker logged that it receives jobs."""
    deadline = time.monotonic() + timeout_s
    for worker in workers:
        while "worker receiving jobs" not in worker.text():
            assert worker.proc.poll() is None, worker.text()[-3000:]
            assert time.monotonic() < deadline, worker.text()[-3000:]
            time.sleep(0.05)


def stop_all(processes: list[Process]) -> None:
    """SIGTERM every process at once, then wait for each (kill what hangs)."""
    for p in processes:
        if p.proc.poll() is None:
            p.proc.terminate()
    for p in processes:
        try:
            p.proc.wait(30)
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait(10)


async def put_fleet_data(url: str, blobs: Path, body: Any) -> str:
    """The twin `TWIN` (licensed for e-commerce and the mirror) made from `body`, and a small
    skirt sized on it (~590 cloth vertices), stored in Redis at `url` and in `blobs`; returns
    the skirt's garment id."""
    from spatialtwin.rights.license import Rights
    from spatialtwin.services.context import Services
    from spatialtwin.store.redis_store import RedisStore

    store = RedisStore(url, blobs=blobs)
    try:
        services = Services(store, settings=DATA_SETTINGS)
        rights = Rights.from_json(RIGHTS)
        await services.twins.create_from_body("Mara", body, rights, {"kind": "t"}, TWIN)
        garment = await services.garments.ingest(
            skirt_obj(body),
            "fleet_skirt.obj",
            {
                "sku": "FLEET-SKIRT",
                "name": "Fleet test skirt",
                "category": "skirt",
                "size_label": "M",
                "fabric": "cotton-poplin",
                "units": "m",
            },
        )
    finally:
        await store.close()
    return str(garment["id"])
