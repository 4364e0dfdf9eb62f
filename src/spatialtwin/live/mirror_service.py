"""Mirror sessions of one server process: live garments made ready once per content, sessions
by id (resume and access keys, share codes, limits), results fanned out to each receiver,
sessions ended when their twin or device may no longer be used.

The WebSocket protocol on top (`docs/mirror-protocol.md`) is the server's
(`server/routes_mirror.py`); this is what it calls. It lives in `live/` because it holds
`MirrorSession`s and builds `LiveGarment`s, which the services layer below may not import.

1. **Live garments** (`live_garments`): the twin's body and the stored garments draped at the
   bind pose (`garment.look.drape_look`, the look's own layer order), then each made live
   (`live.garments.build_live_garment`), on the services' executor with progress reported to
   every waiting session. Cached by content — the body's blob hash, each garment's mesh blob
   hash and fabric, the layer order, the drape and level options — in a byte-bounded LRU; two
   sessions asking for the same look while it builds share the one build.
2. **Sessions** (`open`, `resume`, `end`): a `MirrorSession` per shopper with its id (`ms_…`),
   a resume key (a dropped socket keeps the session `resume_s`) and an access key (the meshes
   and the body GLB a page loads). A device holds at most `sessions_per_device` sessions.
   Server-side tracking pins cores (`SessionOptions.pin_cores`): only one session of the
   process holds the pinning at a time; the others run unpinned, so two sessions never pin
   their threads to the same two cores.
3. **Results** (`_on_result`, on the cloth thread): the mirror's socket gets the session's own
   vertex streams; each watcher gets streams from its own encoders, fed by positions decoded
   once per frame from the session's (a watcher starts on a key frame). The result frames are
   packed there and handed to the event loop with `call_soon_threadsafe`.
4. **Revocation**: every `revocation_poll_s` (and at once on the store's `twins` and
   `mirror_devices` announcements) each session's twin is put to the access door for channel
   `mirror` and its device re-read; a refused one ends (its receivers are closed). Polling
   covers revocations written by another process (the CLI, another server).

Camera frames never pass through here: they go from the socket straight into
`MirrorSession.submit_frame`, which keeps them in memory on its tracking thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from spatialtwin import metrics
from spatialtwin.body.skeleton import JOINT_NAMES
from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf import mirror_messages as mm
from spatialtwin.gltf.vertex_stream import VertexStreamDecoder, VertexStreamEncoder
from spatialtwin.services.access import Decision
from spatialtwin.services.cache import ByteLRU
from spatialtwin.services.devices import CHANNEL as DEVICE_CHANNEL

if TYPE_CHECKING:
    from spatialtwin.body.twin_body import TwinBody
    from spatialtwin.garment.look import LookGarment, LookOptions
    from spatialtwin.garment.placement import BodyLandmarks
    from spatialtwin.live.garments import LevelOptions, LiveGarment
    from spatialtwin.live.session import LiveResult, MirrorSession
    from spatialtwin.services.context import Services

log = logging.getLogger("spatialtwin.mirror")
CHANNEL = "mirror"  # the license channel every mirror use of a twin is checked for
API = "/api/v1"
SHARE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a screen
SHARE_CODE_CHARS = 6
Report = Callable[[str, float, str], None]  # (stage, fraction 0..1, message)


@dataclass(frozen=True)
class MirrorOptions:
    """Limits and timings of mirror sessions (seconds, bytes); `from_settings` reads the
    server's `mirror_*` settings, which is how tests shorten them."""

    hello_timeout_s: float = 10.0
    heartbeat_s: float = 5.0
    resume_s: float = 30.0
    share_s: float = 600.0
    close_timeout_s: float = 2.0
    sessions_per_device: int = 2
    max_sessions: int = 16
    watchers_per_session: int = 4
    revocation_poll_s: float = 0.5
    send_buffer_bytes: int = 1 << 20
    send_over_s: float = 5.0
    socket_send_bytes: int = 256 * 1024
    max_frame_bytes: int = mm.MAX_FRAME_BYTES
    max_text_bytes: int = mm.MAX_TEXT_BYTES
    max_rate_hz: float = 60.0
    bad_frames_in_a_row: int = 10
    live_cache_bytes: int = 512 << 20
    glb_cache_bytes: int = 64 << 20
    level_options: Any = None  # live.garments.LevelOptions; None: its defaults
    models_dir: Path | None = None

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> MirrorOptions:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            key = f"mirror_{f.name}"
            if key in settings:
                values[f.name] = settings[key]
        options = cls(**values)
        for name in ("hello_timeout_s", "heartbeat_s", "resume_s", "share_s", "send_over_s"):
            value = getattr(options, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"mirror_{name} must be a positive number of seconds")
        return options


class Receiver(Protocol):
    """A socket that receives a session's output (the mirror's or a watcher's); every method
    is called on the event loop."""

    def offer_result(self, packet: bytes, is_key: bool) -> None: ...

    def send_message(self, message: dict[str, Any]) -> None: ...

    def end(self, close_code: int, close_reason: str, ended: str | None) -> None: ...


# --- live garments ----------------------------------------------------------------------------


def build_live_look(
    body: TwinBody,
    wearing: list[LookGarment],
    layer_order: str,
    look_options: LookOptions,
    level_options: LevelOptions | None,
    marks: BodyLandmarks | None,
    report: Report,
) -> tuple[LiveGarment, ...]:
    """The garments draped on `body` at its bind pose, then made live (stream = draping
    order, inner first); what a session of this look wears. CPU work for the executor."""
    from spatialtwin.garment.look import drape_look
    from spatialtwin.live.garments import LEVEL_DEFAULTS, build_live_garment

    count = len(wearing)

    def drape_progress(stage: str, fraction: float) -> None:
        report("live_garments", 0.5 * max(0.0, min(1.0, fraction)), f"draping: {stage}")

    report("live_garments", 0.0, "draping at the bind pose")
    look = drape_look(body, wearing, None, look_options, drape_progress, marks, layer_order)
    by_key = {g.key: g for g in wearing}
    lives = []
    for i, draped in enumerate(look.garments):
        report("live_garments", 0.5 + 0.5 * i / count, f"cloth levels of garment {i + 1}/{count}")
        lives.append(
            build_live_garment(by_key[draped.key], draped, body, i, level_options or LEVEL_DEFAULTS)
        )
    report("live_garments", 1.0, "ready")
    return tuple(lives)


@dataclass
class _Build:
    future: asyncio.Future[tuple[LiveGarment, ...]]
    listeners: list[Report] = field(default_factory=list)
    last: tuple[str, float, str] | None = None

    def report(self, stage: str, fraction: float, message: str) -> None:
        self.last = (stage, fraction, message)
        for listener in list(self.listeners):
            listener(stage, fraction, message)


class LiveBuilds:
    """Live garments by content key: a byte-bounded LRU of finished builds and, per key, at
    most one build running (later askers wait for it and hear its progress)."""

    def __init__(self, max_bytes: int) -> None:
        self.done = ByteLRU(max_bytes)
        self._running: dict[str, _Build] = {}
        self.builds = 0

    async def get(
        self,
        key: str,
        build: Callable[[Report], Awaitable[tuple[LiveGarment, ...]]],
        progress: Report,
    ) -> tuple[LiveGarment, ...]:
        hit = self.done.get(key)
        if hit is not None:
            return hit
        running = self._running.get(key)
        if running is None:
            loop = asyncio.get_running_loop()
            running = _Build(loop.create_future())
            self._running[key] = running

            def threadsafe(stage: str, fraction: float, message: str) -> None:
                with contextlib.suppress(RuntimeError):  # the loop closed under a late report
                    loop.call_soon_threadsafe(running.report, stage, fraction, message)

            async def run() -> None:
                try:
                    lives = await build(threadsafe)
                except BaseException as exc:
                    if not running.future.done():
                        running.future.set_exception(exc)
                    raise
                else:
                    self.builds += 1
                    self.done.put(key, lives)
                    running.future.set_result(lives)
                finally:
                    self._running.pop(key, None)

            task = asyncio.ensure_future(run())
            task.add_done_callback(_consume)
        running.listeners.append(progress)
        if running.last is not None:
            progress(*running.last)
        try:
            return await asyncio.shield(running.future)
        finally:
            with contextlib.suppress(ValueError):
                running.listeners.remove(progress)


def _consume(task: asyncio.Task[Any]) -> None:
    """A build task's exception is handed to its waiters; do not log it again as lost."""
    if not task.cancelled():
        task.exception()


# --- sessions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Worn:
    """A garment a session wears: its stream id, record id and name, and the live garment."""

    stream: int
    garment_id: str
    name: str
    live: LiveGarment
    glb_key: str  # content key of its display mesh GLB


class StreamTap:
    """The session's vertex streams decoded back to positions, once per frame, for the
    watchers' own encoders; it starts (and restarts after a gap) on a frame whose streams are
    all key frames. Used on the cloth thread only."""

    def __init__(self) -> None:
        self._decoder: VertexStreamDecoder | None = None
        self.waiting_since: float | None = None

    def positions(self, streams: dict[int, bytes]) -> dict[int, NDArray[np.float64]] | None:
        if self._decoder is None:
            if not all(mm.is_key_stream(b) for b in streams.values()):
                return None
            self._decoder = VertexStreamDecoder()
        try:
            return {s: self._decoder.decode(b).positions_m for s, b in streams.items()}
        except SpatialTwinError:
            self._decoder = None
            return None

    def stop(self) -> None:
        self._decoder = None


class WatcherFeed:
    """One watcher's encoders (one per stream), used on the cloth thread; `reset` (set from
    the loop after a dropped result) makes the next frame of every stream a key frame."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.reset = False
        self._encoders: dict[int, VertexStreamEncoder] = {}

    def encode(self, positions: dict[int, NDArray[np.float64]], streams: list[int]) -> list[bytes]:
        if self.reset:
            self.reset = False
            self._encoders.clear()
        live = set(streams)
        for gone in set(self._encoders) - live:
            del self._encoders[gone]
        out = []
        for s in streams:
            encoder = self._encoders.get(s)
            if encoder is None:
                encoder = self._encoders[s] = VertexStreamEncoder(s)
            out.append(encoder.encode(positions[s]))
        return out


@dataclass
class LiveSessionEntry:
    """The server's record of one shopper's session (mutated on the event loop; the cloth
    thread reads `mirror`, `watchers` and `ended` and writes the result statistics under
    `lock`)."""

    id: str
    resume_key: str
    access_key: str
    device_id: str
    twin: dict[str, Any]
    look_id: str | None
    input: str
    camera_deg: tuple[float, float] | None
    worn: tuple[Worn, ...]
    pipeline: MirrorSession | None = None
    mirror: Receiver | None = None
    watchers: tuple[WatcherFeed, ...] = ()
    detached_at: float | None = None
    ended: str | None = None
    next_stream: int = 0
    pinned: bool = False
    camera_saved: bool = False
    frames_received: int = 0
    dropped_rate: int = 0
    results_dropped: int = 0
    switching: bool = False
    tap: StreamTap = field(default_factory=StreamTap)
    lock: threading.Lock = field(default_factory=threading.Lock)
    recent_ms: deque[dict[str, float]] = field(default_factory=lambda: deque(maxlen=60))
    last_quality: dict[str, Any] = field(default_factory=dict)
    last_rate_hz: float = 0.0
    last_result_at: float = 0.0
    key_requested_at: float = 0.0
    dropped_counted: int = 0  # of the pipeline's dropped frames, those the metrics have
    started_at: float = field(default_factory=time.monotonic)
    minutes_metered: int = 0  # usage events written: one per started minute attached

    @property
    def twin_id(self) -> str:
        return str(self.twin["id"])


@dataclass
class MirrorStats:
    """Counts since the process started (what an operator or a test reads)."""

    opened: int = 0
    resumed: int = 0
    ended: dict[str, int] = field(default_factory=dict)
    closes: dict[int, int] = field(default_factory=dict)
    results_dropped: int = 0  # results not sent to a receiver that did not read them

    def count_close(self, code: int) -> None:
        self.closes[code] = self.closes.get(code, 0) + 1


def body_key(twin: dict[str, Any]) -> str:
    """The blob hash of the twin's body arrays (`store.twin_repository.body_key`; `live` may
    not import the store)."""
    return str(twin["blobs"]["body_npz"])


def _secret_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _content_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()


def license_close_reason(exc: SpatialTwinError) -> str:
    """The 4403 close reason for a license refusal (`docs/mirror-protocol.md` §5)."""
    return {
        "license_revoked": "revoked",
        "channel_not_licensed": "license_channel",
        "license_expired": "license_expired",
        "license_not_yet_valid": "license_not_yet_valid",
    }.get(exc.code, exc.code)


def _session_error(code: str, message: str, status: int, detail: Any = None) -> SpatialTwinError:
    return SpatialTwinError(code, message, detail, status=status)


class MirrorService:
    """See the module doc. Used from one event loop (its `start` loop)."""

    def __init__(self, services: Services, options: MirrorOptions) -> None:
        self.services = services
        self.options = options
        self.builds = LiveBuilds(options.live_cache_bytes)
        self.glbs = ByteLRU(options.glb_cache_bytes)
        self.sessions: dict[str, LiveSessionEntry] = {}
        self.share_codes: dict[str, tuple[str, float]] = {}  # code → (session id, expires at)
        self.stats = MirrorStats()
        self._opening: dict[str, int] = {}
        self._core_holder: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closings: set[asyncio.Future[None]] = set()
        self._closing = False

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._watch(), name="mirror-watch"),
            asyncio.create_task(self._listen("twins"), name="mirror-listen-twins"),
            asyncio.create_task(self._listen(DEVICE_CHANNEL), name="mirror-listen-devices"),
        ]

    async def close(self) -> None:
        """End every session ("server_shutdown", close 1001) and stop watching."""
        self._closing = True
        for entry in list(self.sessions.values()):
            await self.end(entry, "server_shutdown", mm.CLOSE_GOING_AWAY, "server_shutdown")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._closings:
            await asyncio.gather(*self._closings, return_exceptions=True)

    async def _listen(self, channel: str) -> None:
        """Wake the revocation check at once when a license or device change is announced."""
        async for _ in self.services.store.subscribe(channel):
            self._wake.set()

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.options.revocation_poll_s)
            self._wake.clear()
            try:
                await self.check_sessions()
            except Exception:
                log.exception("mirror session check failed")

    async def check_sessions(self) -> None:
        """End what may no longer run: sessions whose twin the access door refuses for the
        mirror or whose device is revoked, detached sessions past the resume window; drop
        expired share codes; keep a camera tilt a session has settled on."""
        access = self.services.access
        twins: dict[str, dict[str, Any] | None] = {}
        devices: dict[str, bool] = {}
        now = time.monotonic()
        for entry in list(self.sessions.values()):
            if entry.ended:
                continue
            if entry.twin_id not in twins:
                twins[entry.twin_id] = await self.services.twin_records.find(entry.twin_id)
            twin = twins[entry.twin_id]
            try:
                if twin is None:
                    raise SpatialTwinError("license_revoked", "the twin is gone", status=410)
                lic = access.check(twin, CHANNEL)
            except SpatialTwinError as exc:
                ended = "revoked" if exc.code == "license_revoked" else "license"
                await self.end(entry, ended, mm.CLOSE_LICENSE, license_close_reason(exc))
                continue
            if entry.device_id not in devices:
                devices[entry.device_id] = await self.services.devices.is_usable(entry.device_id)
            if not devices[entry.device_id]:
                await self.end(entry, "revoked", mm.CLOSE_UNAUTHORISED, "device_revoked")
                continue
            if entry.detached_at is not None and now - entry.detached_at > self.options.resume_s:
                await self.end(entry, "idle", mm.CLOSE_NORMAL, "idle")
                continue
            if entry.detached_at is None:
                await self._meter_minutes(entry, twin, lic, now)
            await self._keep_camera_tilt(entry)
        for code, (_, expires) in list(self.share_codes.items()):
            if expires <= now:
                del self.share_codes[code]

    async def _meter_minutes(
        self, entry: LiveSessionEntry, twin: dict[str, Any], lic: dict[str, Any], now: float
    ) -> None:
        """Each started minute of an attached session is a usage event (`mirror_minute`),
        written at most 0.5 s into the minute (the check's period)."""
        due = int((now - entry.started_at) // 60) + 1
        while entry.minutes_metered < due:
            entry.minutes_metered += 1
            decision = Decision(twin, lic, CHANNEL)
            await self.services.access.meter("mirror_minute", [decision], session=entry.id)

    async def _keep_camera_tilt(self, entry: LiveSessionEntry) -> None:
        pipeline = entry.pipeline
        if entry.camera_saved or entry.camera_deg is not None or pipeline is None:
            return
        if not pipeline.camera_tilt_is_fixed:
            return
        entry.camera_saved = True
        pitch, roll = pipeline.camera_tilt_deg
        try:
            await self.services.devices.set_camera(entry.device_id, pitch, roll)
        except SpatialTwinError as exc:
            log.info("camera tilt not kept", extra={"fields": {"code": exc.code}})

    # --- what a session wears -----------------------------------------------------------------

    async def resolve_wear(
        self, wear: mm.WearSpec, twin_id: str | None = None
    ) -> tuple[dict[str, Any], list[dict[str, Any]], str, str | None]:
        """(twin record, garment records, layer order, look id) of what a hello or a switch
        names; the twin passes the access door for channel `mirror`. `twin_id` fixes the twin
        (a switch keeps the session's)."""
        access = self.services.access
        if wear.look is not None:
            look = await self.services.look_records.get(wear.look)
            if twin_id is not None and look["twin"] != twin_id:
                raise _session_error(
                    "switch_twin",
                    "a switched-in look must dress the session's twin",
                    422,
                    {"look": wear.look, "twin": look["twin"], "session_twin": twin_id},
                )
            twin = await access.twin_for_use(look["twin"], CHANNEL)
            garment_ids = [str(g) for g in look["garments"]]
            layer_order = str(look.get("layer_order", "category"))
            look_id: str | None = look["id"]
        else:
            if twin_id is not None:
                twin = await access.twin_for_use(twin_id, CHANNEL)
            elif wear.twin == "closest":
                twin = await self.closest_twin(float(wear.height_m or 0.0))
            else:
                twin = await access.twin_for_use(str(wear.twin), CHANNEL)
            garment_ids, layer_order, look_id = list(wear.garments), "category", None
        garments = [await self.services.garments.get(g) for g in garment_ids]
        return twin, garments, layer_order, look_id

    async def closest_twin(self, height_m: float) -> dict[str, Any]:
        """The twin licensed for the mirror whose height is nearest `height_m` (ties: id)."""
        usable = await self.services.access.twins_for_use(CHANNEL)
        if not usable:
            raise _session_error("twin_not_found", "no twin is licensed for the mirror", 404)

        def distance(twin: dict[str, Any]) -> tuple[float, str]:
            height = float((twin.get("measurements") or {}).get("height_m") or 0.0)
            return abs(height - height_m), str(twin["id"])

        return min(usable, key=distance)

    async def live_garments(
        self,
        twin: dict[str, Any],
        garments: list[dict[str, Any]],
        layer_order: str,
        progress: Report,
    ) -> tuple[str, tuple[LiveGarment, ...]]:
        """(content key, live garments) for `garments` on `twin` (cached by the key, built
        once)."""
        services = self.services
        look_options = services.options.look
        key = _content_key(
            {
                "body": body_key(twin),
                "garments": [
                    [g["id"], g["blobs"]["meshes_npz"], json.dumps(g["fabric"], sort_keys=True)]
                    for g in garments
                ],
                "layer_order": layer_order,
                "look": repr(look_options),
                "levels": repr(self.options.level_options),
            }
        )

        async def build(report: Report) -> tuple[LiveGarment, ...]:
            body = await services.twins.body(twin)
            wearing = [await services.garments.stored_look_garment(g) for g in garments]
            marks = await services.garments.landmarks(body, body_key(twin))
            return await services.run(
                build_live_look,
                body,
                wearing,
                layer_order,
                look_options,
                self.options.level_options,
                marks,
                report,
            )

        return key, await self.builds.get(key, build, progress)

    def _worn(
        self,
        first_stream: int,
        garments: list[dict[str, Any]],
        build_key: str,
        lives: tuple[LiveGarment, ...],
    ) -> tuple[Worn, ...]:
        """The live garments as worn from stream `first_stream` on (a switch numbers its
        garments after the ones before, so their frames are never confused)."""
        by_id = {g["id"]: g for g in garments}
        return tuple(
            Worn(
                first_stream + i,
                live.key,
                str(by_id.get(live.key, {}).get("name") or live.key),
                dataclasses.replace(live, stream=first_stream + i),
                f"{build_key}:{i}",
            )
            for i, live in enumerate(lives)
        )

    # --- opening, resuming, ending --------------------------------------------------------

    def _live_count(self, device_id: str) -> int:
        held = sum(1 for e in self.sessions.values() if e.device_id == device_id and not e.ended)
        return held + self._opening.get(device_id, 0)

    async def open(
        self, hello: mm.Hello, device: dict[str, Any], progress: Report
    ) -> LiveSessionEntry:
        """A new session for a checked hello from a verified device; raises
        `SpatialTwinError` (429 too many, 404 not found, 403/410 license)."""
        if self._closing:
            raise _session_error("server_shutdown", "the server is shutting down", 503)
        device_id = str(device["id"])
        if self._live_count(device_id) >= self.options.sessions_per_device:
            raise _session_error(
                "too_many_sessions",
                f"a device holds at most {self.options.sessions_per_device} sessions",
                429,
                {"limit": self.options.sessions_per_device},
            )
        if len(self.sessions) + sum(self._opening.values()) >= self.options.max_sessions:
            raise _session_error(
                "server_busy",
                "this server runs as many mirror sessions as it can",
                429,
                {"limit": self.options.max_sessions},
            )
        assert hello.wear is not None
        self._opening[device_id] = self._opening.get(device_id, 0) + 1
        try:
            twin, garments, layer_order, look_id = await self.resolve_wear(hello.wear)
            build_key, lives = await self.live_garments(twin, garments, layer_order, progress)
            body = await self.services.twins.body(twin)
            stored = device.get("camera") or None
            camera = hello.camera_deg or (
                (float(stored["pitch_deg"]), float(stored["roll_deg"])) if stored else None
            )
            entry = LiveSessionEntry(
                id=f"ms_{secrets.token_hex(12)}",
                resume_key=secrets.token_urlsafe(24),
                access_key=secrets.token_urlsafe(24),
                device_id=device_id,
                twin=twin,
                look_id=look_id,
                input=hello.input,
                camera_deg=camera,
                worn=self._worn(0, garments, build_key, lives),
            )
            entry.next_stream = len(entry.worn)
            entry.pinned = hello.input == "frames" and self._take_cores(entry.id)
            try:
                entry.pipeline = await asyncio.to_thread(
                    self._new_pipeline, entry, hello.model, body
                )
            except BaseException:
                self._release_cores(entry.id)
                raise
        finally:
            self._opening[device_id] -= 1
            if not self._opening[device_id]:
                del self._opening[device_id]
        if self._closing:
            await self._close_pipeline(entry.pipeline)
            raise _session_error("server_shutdown", "the server is shutting down", 503)
        self.sessions[entry.id] = entry
        self.stats.opened += 1
        log.info(
            "mirror session opened",
            extra={
                "fields": {
                    "session": entry.id,
                    "device": device_id,
                    "twin": entry.twin_id,
                    "garments": [w.garment_id for w in entry.worn],
                    "input": entry.input,
                    "pinned": entry.pinned,
                }
            },
        )
        return entry

    def _take_cores(self, session_id: str) -> bool:
        """The process's one core pinning, if free (and the process may use two cores)."""
        cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        if self._core_holder is not None or len(cores) < 2:
            return False
        self._core_holder = session_id
        return True

    def _release_cores(self, session_id: str) -> None:
        if self._core_holder == session_id:
            self._core_holder = None

    def _new_pipeline(self, entry: LiveSessionEntry, model: str, body: TwinBody) -> Any:
        """The session's `MirrorSession`, started (on a worker thread: it builds the skinner,
        the collider and the cloth of every garment)."""
        from spatialtwin.live.session import MirrorSession, SessionOptions

        pitch, roll = entry.camera_deg if entry.camera_deg is not None else (None, 0.0)
        options = SessionOptions(
            model=model,
            camera_pitch_deg=pitch,
            camera_roll_deg=roll,
            models_dir=self.options.models_dir,
            pin_cores=entry.pinned,
        )
        pipeline = MirrorSession(
            body,
            [w.live for w in entry.worn],
            options,
            on_result=lambda result: self._on_result(entry, result),
        )
        pipeline.start()
        return pipeline

    async def resume(self, hello: mm.Hello, device: dict[str, Any]) -> LiveSessionEntry:
        """The session a hello's `resume` names, if its key matches, it belongs to this
        device and no socket holds it (404 gone, 401 wrong key, 409 attached)."""
        assert hello.resume is not None
        session_id, key = hello.resume
        entry = self.sessions.get(session_id)
        if entry is None or entry.ended:
            raise _session_error("session_not_found", "no such session (ended or expired)", 404)
        if not _secret_equal(key, entry.resume_key) or entry.device_id != device["id"]:
            raise _session_error("bad_resume_key", "the resume key does not match", 401)
        if entry.mirror is not None:
            raise _session_error("session_attached", "another socket holds this session", 409)
        self.stats.resumed += 1
        return entry

    def attach(self, entry: LiveSessionEntry, receiver: Receiver) -> None:
        """`receiver` takes the session's output; its next result carries key frames."""
        entry.mirror = receiver
        entry.detached_at = None
        if entry.pipeline is not None:
            entry.pipeline.request_key_frames()

    def detach(self, entry: LiveSessionEntry, receiver: Receiver) -> None:
        """The mirror's socket went away without `bye`: the session waits `resume_s`."""
        if entry.mirror is receiver:
            entry.mirror = None
            entry.detached_at = time.monotonic()

    async def end(
        self, entry: LiveSessionEntry, reason: str, close_code: int, close_reason: str
    ) -> None:
        """End the session: its receivers are told (`ended`) and closed — the mirror's socket
        with `close_code`, watchers with 1000 — then its threads stop and its data goes."""
        if entry.ended:
            return
        entry.ended = reason
        self.sessions.pop(entry.id, None)
        for code, (sid, _) in list(self.share_codes.items()):
            if sid == entry.id:
                del self.share_codes[code]
        self.stats.ended[reason] = self.stats.ended.get(reason, 0) + 1
        mirror, watchers = entry.mirror, entry.watchers
        entry.mirror, entry.watchers = None, ()
        if mirror is not None:
            mirror.end(close_code, close_reason, reason)
        # watchers reconnect after a shutdown (1001), else the show is over (1000)
        watcher_code = close_code if close_code == mm.CLOSE_GOING_AWAY else mm.CLOSE_NORMAL
        for feed in watchers:
            feed.receiver.end(watcher_code, "session_ended", reason)
        self._release_cores(entry.id)
        log.info("mirror session ended", extra={"fields": {"session": entry.id, "reason": reason}})
        pipeline, entry.pipeline = entry.pipeline, None
        if pipeline is not None:
            await self._close_pipeline(pipeline)

    async def _close_pipeline(self, pipeline: MirrorSession) -> None:
        """Stop a session's threads on a worker thread. The close is the service's own task:
        a caller cancelled meanwhile (its socket's handler finishing) must not cancel a close
        still waiting for a worker, which would leave the session's threads running."""
        closing = asyncio.ensure_future(asyncio.to_thread(pipeline.close))
        self._closings.add(closing)
        closing.add_done_callback(self._closings.discard)
        await asyncio.shield(closing)

    # --- watchers -----------------------------------------------------------------------------

    def share(self, entry: LiveSessionEntry) -> dict[str, Any]:
        """A share code for a watcher (`share` answer)."""
        now = time.monotonic()
        while True:
            code = "".join(secrets.choice(SHARE_ALPHABET) for _ in range(SHARE_CODE_CHARS))
            if code not in self.share_codes:
                break
        self.share_codes[code] = (entry.id, now + self.options.share_s)
        return {
            "type": "share",
            "code": code,
            "url": f"/web/watch.html?code={code}",
            "expires_s": round(self.options.share_s),
        }

    def watched(self, code: str) -> LiveSessionEntry:
        """The session a share code opens (404 when unknown, expired or ended)."""
        found = self.share_codes.get(code.upper()) if isinstance(code, str) else None
        if found is None or found[1] <= time.monotonic():
            raise _session_error("share_code_not_found", "no such share code (or expired)", 404)
        entry = self.sessions.get(found[0])
        if entry is None or entry.ended:
            raise _session_error("session_not_found", "the shared session has ended", 404)
        return entry

    def add_watcher(self, entry: LiveSessionEntry, receiver: Receiver) -> WatcherFeed:
        if len(entry.watchers) >= self.options.watchers_per_session:
            raise _session_error(
                "too_many_watchers",
                f"a session is watched by at most {self.options.watchers_per_session}",
                429,
            )
        feed = WatcherFeed(receiver)
        if not entry.watchers:
            entry.tap.stop()
            if entry.pipeline is not None:
                entry.pipeline.request_key_frames()  # the tap starts on a key frame
        entry.watchers = (*entry.watchers, feed)
        return feed

    def remove_watcher(self, entry: LiveSessionEntry, feed: WatcherFeed) -> None:
        entry.watchers = tuple(f for f in entry.watchers if f is not feed)

    def request_key(self, entry: LiveSessionEntry, receiver: Receiver) -> None:
        """`receiver` lost a result: its next one must hold key frames."""
        if receiver is entry.mirror:
            if entry.pipeline is not None:
                entry.pipeline.request_key_frames()
            return
        for feed in entry.watchers:
            if feed.receiver is receiver:
                feed.reset = True

    # --- garments switched in -----------------------------------------------------------------

    async def switch(
        self, entry: LiveSessionEntry, wear: mm.WearSpec, progress: Report
    ) -> list[dict[str, Any]]:
        """Wear other garments (new stream ids, so frames of the old ones are told apart);
        returns the `switched` garments and tells the watchers."""
        twin, garments, layer_order, look_id = await self.resolve_wear(wear, entry.twin_id)
        build_key, lives = await self.live_garments(twin, garments, layer_order, progress)
        if entry.ended or entry.pipeline is None:
            raise _session_error("session_closed", "the session ended", 404)
        worn = self._worn(entry.next_stream, garments, build_key, lives)
        entry.next_stream += len(worn)
        entry.pipeline.switch_garments([w.live for w in worn])
        entry.worn, entry.look_id = worn, look_id if look_id is not None else entry.look_id
        listed = self.garments_json(entry)
        for feed in entry.watchers:
            feed.receiver.send_message({"type": "switched", "garments": listed})
        return listed

    # --- messages -----------------------------------------------------------------------------

    def garments_json(self, entry: LiveSessionEntry) -> list[dict[str, Any]]:
        return [
            {
                "stream": w.stream,
                "garment": w.garment_id,
                "name": w.name,
                "vertices": w.live.vertex_count,
                "mesh_url": f"{API}/mirror/sessions/{entry.id}/garments/{w.stream}.glb"
                f"?access={entry.access_key}",
            }
            for w in entry.worn
        ]

    def welcome(self, entry: LiveSessionEntry, watcher: bool = False) -> dict[str, Any]:
        twin = entry.twin
        owner = twin.get("owner") or {}
        pitch_roll = entry.camera_deg
        message: dict[str, Any] = {
            "type": "welcome",
            "version": mm.PROTOCOL_VERSION,
            "session": entry.id,
            "access": entry.access_key,
            "look": entry.look_id,
            "input": entry.input,
            "twin": {
                "id": entry.twin_id,
                "height_m": (twin.get("measurements") or {}).get("height_m"),
                "body_url": f"{API}/twins/{entry.twin_id}/body.glb?access={entry.access_key}",
                "credit": f"{owner.get('model', '')} ({owner.get('agency', '')})",
                "disclosure": twin.get("disclosure"),
            },
            "joints": list(JOINT_NAMES),
            "garments": self.garments_json(entry),
            "camera": None
            if pitch_roll is None
            else {"pitch_deg": pitch_roll[0], "roll_deg": pitch_roll[1]},
            "limits": {
                "max_frame_bytes": self.options.max_frame_bytes,
                "max_rate_hz": self.options.max_rate_hz,
                "max_text_bytes": self.options.max_text_bytes,
            },
            "heartbeat_s": self.options.heartbeat_s,
        }
        if not watcher:
            message["resume_key"] = entry.resume_key
        return message

    def status(self, entry: LiveSessionEntry) -> dict[str, Any]:
        """The once-a-second `status` message."""
        pipeline = entry.pipeline
        stats = pipeline.stats if pipeline is not None else None
        with entry.lock:
            recent = list(entry.recent_ms)
            quality = dict(entry.last_quality)
            rate = entry.last_rate_hz if time.monotonic() - entry.last_result_at < 1.5 else 0.0
        p95: dict[str, float] = {}
        for name in ("track", "landmarks", "cloth", "encode", "total"):
            values = [t[name] for t in recent if name in t]
            if values:
                p95[name] = round(float(np.percentile(values, 95)), 2)
        return {
            "type": "status",
            "effective_rate_hz": round(rate, 2),
            "received": entry.frames_received,
            "dropped": 0 if stats is None else stats.dropped,
            "dropped_rate": entry.dropped_rate,
            "results_dropped": entry.results_dropped,
            "cloth_level": quality.get("cloth_level", 0),
            "reason": quality.get("reason", ""),
            "timings_p95_ms": p95,
        }

    # --- results (cloth thread) ---------------------------------------------------------------

    def _on_result(self, entry: LiveSessionEntry, result: LiveResult) -> None:
        """Pack the result for the mirror and every watcher, hand it to the loop. Runs on the
        session's cloth thread; nothing here blocks."""
        if entry.ended:
            return
        now = time.monotonic()
        with entry.lock:
            entry.recent_ms.append(dict(result.timings_ms))
            entry.last_quality = dict(result.quality)
            entry.last_rate_hz = float(result.effective_rate_hz)
            entry.last_result_at = now
            dropped = int(result.dropped_frames) - entry.dropped_counted
            entry.dropped_counted = int(result.dropped_frames)
        metrics.observe_mirror_result(result.timings_ms, dropped)
        rotations = np.array([result.rotations[name] for name in JOINT_NAMES])
        info = mm.info_json(
            {
                "timings_ms": {k: round(float(v), 2) for k, v in result.timings_ms.items()},
                "quality": result.quality,
                "effective_rate_hz": round(float(result.effective_rate_hz), 2),
                "dropped_frames": int(result.dropped_frames),
            }
        )
        # the session echoes the capture time untouched: it carries the client's milliseconds
        t_ms = float(result.capture_t_s) if result.capture_t_s is not None else 0.0
        rate_limited = bool(result.quality.get("rate_limited"))
        streams = sorted(result.garments)

        def packet(frames: list[bytes]) -> tuple[bytes, bool]:
            data = mm.result_frame(
                result.frame_id,
                t_ms,
                result.tracked,
                rate_limited,
                result.root_m,
                rotations,
                info,
                frames,
            )
            return data, all(mm.is_key_stream(f) for f in frames)

        deliveries: list[tuple[Receiver, bytes, bool]] = []
        mirror = entry.mirror
        if mirror is not None:
            deliveries.append((mirror, *packet([result.garments[s] for s in streams])))
        watchers = entry.watchers
        if watchers:
            positions = entry.tap.positions(result.garments)
            if positions is None:
                if entry.pipeline is not None and now - entry.key_requested_at > 0.5:
                    entry.key_requested_at = now
                    entry.pipeline.request_key_frames()
            else:
                for feed in watchers:
                    deliveries.append((feed.receiver, *packet(feed.encode(positions, streams))))
        else:
            entry.tap.stop()
        if deliveries:
            loop = self._loop
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed at shutdown
                    loop.call_soon_threadsafe(self._dispatch, entry, deliveries)

    def _dispatch(
        self, entry: LiveSessionEntry, deliveries: list[tuple[Receiver, bytes, bool]]
    ) -> None:
        if entry.ended:
            return
        for receiver, data, is_key in deliveries:
            receiver.offer_result(data, is_key)

    # --- the meshes a page loads --------------------------------------------------------------

    def _by_access(self, session_id: str, access_key: str) -> LiveSessionEntry:
        entry = self.sessions.get(session_id)
        if entry is None or entry.ended or not _secret_equal(access_key, entry.access_key):
            raise _session_error(
                "session_not_found", "no live session with this id and access key", 404
            )
        return entry

    async def garment_glb(self, session_id: str, stream: int, access_key: str) -> bytes:
        """The display mesh of a stream of a live session (404 once it ended)."""
        entry = self._by_access(session_id, access_key)
        await self.services.access.twin_for_use(entry.twin_id, CHANNEL)
        worn = next((w for w in entry.worn if w.stream == stream), None)
        if worn is None:
            raise _session_error(
                "stream_not_found", "the session wears no such stream", 404, {"stream": stream}
            )
        cached = self.glbs.get(worn.glb_key)
        if cached is not None:
            return cached
        record = await self.services.garments.get(worn.garment_id)
        appearance = await self.services.garments.appearance(record)
        from spatialtwin.gltf.stream_mesh_glb import stream_mesh_glb

        live = worn.live
        extras = {
            "garmentId": worn.garment_id,
            "twinId": entry.twin_id,
            "digitalTwin": True,
            "disclosure": entry.twin.get("disclosure"),
        }
        glb = await self.services.run(
            stream_mesh_glb,
            f"garment:{worn.garment_id}",
            live.drape_positions_m,
            live.display_faces,
            live.display_corner_uvs,
            appearance,
            extras,
        )
        return self.glbs.put(worn.glb_key, glb, len(glb))

    def check_body_access(self, twin_id: str, access_key: str) -> None:
        """A live session of this twin holds this access key, else 404."""
        for entry in self.sessions.values():
            if (
                not entry.ended
                and entry.twin_id == twin_id
                and _secret_equal(access_key, entry.access_key)
            ):
                return
        raise _session_error(
            "session_not_found", "no live session of this twin holds this access key", 404
        )
