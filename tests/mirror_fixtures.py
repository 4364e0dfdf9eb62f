"""A real SpatialTwin server for the mirror protocol tests, and a small client for it.

`mirror_server` (session-scoped) runs the app on a free port in a thread with its own event
loop, over a data directory made once: twins made from the shared average body (licensed for
the mirror, one to revoke, and records of other heights and licenses for the closest-twin
rule), a small skirt — `tests.cloth_scenes.flared_skirt` sized on that body, uploaded as an
OBJ with UVs and ingested at a 5 cm simulation edge (~590 cloth vertices, so a session keeps
30 fps on two cores shared with other work) — and a look of it. Settings shorten the protocol's
timers (resume window, hello timeout, send-buffer limits) so the tests run in seconds.

`MirrorClient` speaks the protocol with aiohttp's client: hello, landmark or image frames
(`gltf.mirror_messages`), results decoded with the Python vertex-stream decoder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import threading
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from spatialtwin.body.pose import Pose
from spatialtwin.gltf import mirror_messages as mm
from spatialtwin.gltf.vertex_stream import VertexStreamDecoder

REPO = Path(__file__).resolve().parents[1]
TWIN = "twn_mirror_mara"
REVOCABLE = "twn_mirror_revocable"
SHORT = "twn_mirror_short"  # a record of Mara's body listed at 1.60 m, licensed for the mirror
SHOP_ONLY = "twn_mirror_shop_only"  # listed at 1.58 m, licensed for e-commerce only
RIGHTS = {
    "owner": {"model": "Mara Test", "agency": "North Models"},
    "license": {
        "id": "lic_mirror",
        "channels": ["ecommerce", "mirror"],
        "valid_from": "2026-01-01T00:00:00+00:00",
    },
    "consent": {"given_at": "2026-01-01T00:00:00+00:00"},
}
DATA_SETTINGS = {"garment_target_edge_m": 0.05, "look_max_frames": 40}
SERVER_SETTINGS: dict[str, Any] = {
    **DATA_SETTINGS,
    "mirror_resume_s": 2.0,
    "mirror_hello_timeout_s": 1.0,
    "mirror_heartbeat_s": 1.0,
    "mirror_send_buffer_bytes": 48 * 1024,
    "mirror_send_over_s": 1.0,
    "mirror_socket_send_bytes": 8 * 1024,
    "mirror_close_timeout_s": 0.5,
    "mirror_revocation_poll_s": 0.5,
}


@dataclass
class MirrorData:
    root: Path
    twin: str
    garment: str
    look: str


def skirt_obj(body: Any, target_vertices: int = 400) -> bytes:
    """A flared skirt sized on `body` as an OBJ upload: the cone's vertices, a UV per grid
    vertex (its column and row across the panel), triangles. Taller than wide (10° flare,
    62 cm long), so the upload's up axis reads as +Y."""
    from tests.cloth_scenes import flared_skirt

    skirt = flared_skirt(body.vertices_m, target_vertices, flare_deg=10.0, length_m=0.62)
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in skirt.positions_m]
    lines += [
        f"vt {c / (skirt.cols - 1):.6f} {1 - r / (skirt.rows - 1):.6f}"
        for r in range(skirt.rows)
        for c in range(skirt.cols)
    ]
    lines += ["f " + " ".join(f"{i + 1}/{i + 1}" for i in f) for f in skirt.faces]
    return ("\n".join(lines) + "\n").encode()


async def _make_data(root: Path, body: Any) -> MirrorData:
    from spatialtwin.rights.license import Rights
    from spatialtwin.services.context import Services
    from spatialtwin.store.embedded import EmbeddedStore
    from spatialtwin.store.schema import TWINS

    store = EmbeddedStore(root)
    services = Services(store, settings=DATA_SETTINGS)
    rights = Rights.from_json(RIGHTS)
    twin = await services.twins.create_from_body("Mara", body, rights, {"kind": "t"}, TWIN)
    await services.twins.create_from_body("Rev", body, rights, {"kind": "t"}, REVOCABLE)
    for twin_id, height, channels in ((SHORT, 1.60, ["mirror"]), (SHOP_ONLY, 1.58, ["ecommerce"])):
        record = json.loads(json.dumps(twin))
        record["id"] = twin_id
        record["measurements"]["height_m"] = height
        record["license"]["channels"] = channels
        await store.create_record(TWINS, twin_id, record)
    garment = await services.garments.ingest(
        skirt_obj(body),
        "mirror_skirt.obj",
        {
            "sku": "MIRROR-SKIRT",
            "name": "Mirror test skirt",
            "category": "skirt",
            "size_label": "M",
            "fabric": "cotton-poplin",
            "units": "m",
        },
    )
    request = await services.looks.check_request(
        {"twin": TWIN, "garments": [garment["id"]], "channel": "mirror"}
    )
    look = await services.looks.create(request)
    await store.close()
    return MirrorData(root, TWIN, garment["id"], look["id"])


@pytest.fixture(scope="session")
def mirror_data(tmp_path_factory, average_body) -> MirrorData:
    root = tmp_path_factory.mktemp("mirror-data")
    return asyncio.run(_make_data(root, average_body))


class ServerThread:
    """The app on 127.0.0.1:<free port>, served by a loop on its own thread."""

    def __init__(self, data_dir: Path, settings: dict[str, Any]) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.app: web.Application | None = None
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mirror-test-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        from spatialtwin.server.app import create_app

        self.app = create_app(self.data_dir, seed=False, settings=self.settings)
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("the test server did not start")
        return self

    def run(self, coro: Awaitable[Any], timeout_s: float = 60.0) -> Any:
        """Run a coroutine on the server's loop (from any other thread) and return its value."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)  # type: ignore[arg-type]

    async def on_server(self, coro: Awaitable[Any], timeout_s: float = 60.0) -> Any:
        """The same, awaited from another event loop (a test's)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def admin_headers(self) -> dict[str, str]:
        """An admin's Authorization header for this server (its own key ring signs it)."""
        from spatialtwin.server.auth import KEYRING

        assert self.app is not None
        return {"Authorization": f"Bearer {self.app[KEYRING].issue('admin', None)}"}

    def services(self) -> Any:
        from spatialtwin.server import keys

        assert self.app is not None
        return self.app[keys.SERVICES]

    def hub(self) -> Any:
        from spatialtwin.server.routes_mirror import MIRROR

        assert self.app is not None
        return self.app[MIRROR]

    def stats(self) -> dict[str, Any]:
        from spatialtwin.server.routes_mirror import mirror_stats

        async def read() -> dict[str, Any]:
            assert self.app is not None
            return mirror_stats(self.app)

        return self.run(read())

    async def register_device(self, name: str = "Test mirror") -> tuple[str, str]:
        record, token = await self.on_server(self.services().devices.register(name, "test"))
        return record["id"], token

    def stop(self) -> None:
        async def stop() -> None:
            assert self._runner is not None
            await self._runner.cleanup()

        with contextlib.suppress(Exception):
            self.run(stop(), 30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="session")
def mirror_server(mirror_data, tmp_path_factory) -> Iterator[ServerThread]:
    root = tmp_path_factory.mktemp("mirror-server") / "data"
    shutil.copytree(mirror_data.root, root)
    from spatialtwin.live.garments import LevelOptions

    settings = {**SERVER_SETTINGS, "mirror_level_options": LevelOptions(settle_frames=10)}
    server = ServerThread(root, settings).start()
    yield server
    server.stop()


# --- landmarks --------------------------------------------------------------------------------


def standing_landmarks(body: Any) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """MediaPipe-convention landmarks of the twin's own skeleton at rest: (33, 5), (33, 4)."""
    from tests.tracking_fixtures.synthetic import synthetic_landmarks

    frame = synthetic_landmarks(body.skeleton, Pose.rest())
    image = np.column_stack([frame.image[:, :4], np.ones(33)])
    return image, frame.world.copy(), tuple(frame.size_px)  # type: ignore[return-value]


# --- a protocol client ------------------------------------------------------------------------


@dataclass
class Received:
    """What a client saw: result frames (decoded), control messages, the close."""

    results: list[mm.ResultFrame] = field(default_factory=list)
    positions: list[dict[int, np.ndarray]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    arrival_s: list[float] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str | None = None

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]


class MirrorClient:
    """One socket of the protocol, read by a background task into `received`."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.http = session
        self.url = url
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.received = Received()
        self.decoder = VertexStreamDecoder()
        self.decode_errors: list[str] = []
        self._reader: asyncio.Task[None] | None = None
        self._welcome = asyncio.Event()
        self.welcome: dict[str, Any] | None = None

    async def connect(self) -> MirrorClient:
        self.ws = await self.http.ws_connect(self.url, autoclose=True, max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        while True:
            msg = await self.ws.receive()
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                if msg.type == aiohttp.WSMsgType.CLOSE:  # the server's close frame
                    self.received.close_code = int(msg.data)
                    self.received.close_reason = msg.extra or ""
                break
            if msg.type == aiohttp.WSMsgType.BINARY:
                frame = mm.read_result_frame(msg.data)
                self.received.results.append(frame)
                self.received.arrival_s.append(time.perf_counter())
                try:
                    self.received.positions.append(
                        {s: self.decoder.decode(b).positions_m for s, b in enumerate(frame.streams)}
                    )
                except Exception as exc:  # a gap: recorded, the test decides
                    self.decode_errors.append(type(exc).__name__)
                    self.received.positions.append({})
            elif msg.type == aiohttp.WSMsgType.TEXT:
                message = json.loads(msg.data)
                self.received.messages.append(message)
                if message.get("type") == "welcome":
                    self.welcome = message
                    self._welcome.set()
        if not self.ws.closed:
            await self.ws.close()
        if self.received.close_code is None:  # no close frame came (a reset, a lost socket)
            self.received.close_code = self.ws.close_code

    async def send_json(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_str(json.dumps(message))

    async def hello(self, token: str, **fields: Any) -> dict[str, Any]:
        """Send a hello and wait for the welcome (an `error` or a close first fails)."""
        await self.send_json({"type": "hello", "version": 1, "token": token, **fields})
        assert self._reader is not None
        welcome = asyncio.ensure_future(self._welcome.wait())
        await asyncio.wait(
            {welcome, self._reader}, timeout=120, return_when=asyncio.FIRST_COMPLETED
        )
        welcome.cancel()
        assert self.welcome is not None, (self.received.messages, self.received.close_code)
        return self.welcome

    async def send_landmarks(
        self, frame_id: int, marks: tuple[np.ndarray, np.ndarray, tuple[int, int]], t_ms: float
    ) -> None:
        assert self.ws is not None
        image, world, size = marks
        payload = mm.landmark_payload(size, image, world)
        await self.ws.send_bytes(mm.camera_frame(mm.KIND_LANDMARKS, frame_id, t_ms, payload))

    async def send_image(self, frame_id: int, data: bytes, t_ms: float) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(mm.camera_frame(mm.KIND_IMAGE, frame_id, t_ms, data))

    async def wait_closed(self, timeout_s: float = 10.0) -> int | None:
        assert self._reader is not None
        await asyncio.wait_for(self._reader, timeout_s)
        return self.received.close_code

    async def wait_for(self, predicate: Any, timeout_s: float = 10.0) -> None:
        end = time.perf_counter() + timeout_s
        while not predicate(self.received):
            if time.perf_counter() > end:
                raise TimeoutError("the condition did not come true in time")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)


async def stream_landmarks(
    client: MirrorClient,
    marks: tuple[np.ndarray, np.ndarray, tuple[int, int]],
    seconds: float,
    fps: float = 30.0,
    first_id: int = 0,
) -> int:
    """Send landmark frames at `fps` for `seconds`; returns the next frame id."""
    t0 = time.perf_counter()
    frame_id = first_id
    while (elapsed := time.perf_counter() - t0) < seconds:
        await client.send_landmarks(frame_id, marks, 1000.0 * (t0 + elapsed))
        frame_id += 1
        await asyncio.sleep(max(0.0, t0 + (frame_id - first_id) / fps - time.perf_counter()))
    return frame_id
