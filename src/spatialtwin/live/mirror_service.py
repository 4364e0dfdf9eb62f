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

5. **A fleet** (`MirrorOptions.fleet`, set by `spatialtwin serve --redis`): every session is
   described in the store and its live garments are stored once (`live.session_registry`,
   `live.stored_builds`), so any server resumes it (`_take_over`: the holder lets go or is
   gone, the cloth restarts from the static drape), watches it (`open_watch`: the holder
   relays its results on pub/sub) and serves its meshes (`garment_glb`, `check_body_access`).
   Without a fleet none of this runs and nothing is written.

Camera frames never pass through here: they go from the socket straight into
`MirrorSession.submit_frame`, which keeps them in memory on its tracking thread only.
"""

from __future__ import annotations

import asyncio
import base64
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
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from spatialtwin import metrics
from spatialtwin.body.skeleton import JOINT_NAMES
from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf import mirror_messages as mm
from spatialtwin.gltf.vertex_stream import VertexStreamDecoder, VertexStreamEncoder
from spatialtwin.live.session_registry import (
    SCHEMA_VERSION,
    FleetLink,
    FleetOptions,
    Receiver,
    RemoteRelay,
    RemoteWatch,
    key_sha256,
)
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
    # a fleet (`spatialtwin serve --redis` sets `mirror_fleet`): sessions are described in
    # the store, so any server resumes, watches and serves them (`live.session_registry`)
    fleet: bool = False
    fleet_heartbeat_s: float = FleetOptions.heartbeat_s
    fleet_stale_s: float = FleetOptions.stale_s
    fleet_release_wait_s: float = FleetOptions.release_wait_s
    fleet_sweep_s: float = FleetOptions.sweep_s

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> MirrorOptions:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            key = f"mirror_{f.name}"
            if key in settings:
                values[f.name] = settings[key]
        if isinstance(values.get("level_options"), dict):  # from `--setting` JSON
            from spatialtwin.live.garments import LevelOptions

            given = dict(values["level_options"])
            if "coarse_edge_factors" in given:
                given["coarse_edge_factors"] = tuple(given["coarse_edge_factors"])
            try:
                values["level_options"] = LevelOptions(**given)
            except TypeError as exc:
                raise ValueError(f"mirror_level_options: {exc}") from exc
        values["fleet"] = bool(values.get("fleet", False))
        options = cls(**values)
        timers = ("hello_timeout_s", "heartbeat_s", "resume_s", "share_s", "send_over_s")
        fleet_timers = ("fleet_heartbeat_s", "fleet_stale_s", "fleet_release_wait_s")
        for name in (*timers, *fleet_timers, "fleet_sweep_s"):
            value = getattr(options, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"mirror_{name} must be a positive number of seconds")
        return options

    def fleet_options(self) -> FleetOptions:
        return FleetOptions(
            heartbeat_s=self.fleet_heartbeat_s,
            stale_s=self.fleet_stale_s,
            release_wait_s=self.fleet_release_wait_s,
            sweep_s=self.fleet_sweep_s,
        )


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


def warm_live_kernels() -> None:
    """Import the live loop and make numba load its compiled kernels: a process's first
    dispatch of a cached kernel builds numba's typing context (about 1.3 s, more on a busy
    machine), which would otherwise land on the first session, or a session taken over."""
    import spatialtwin.live.session  # noqa: F401
    from spatialtwin.cloth.kernels import vertex_normals

    triangle = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    vertex_normals(triangle, np.array([[0, 1, 2]], dtype=np.int32))


def _no_progress(stage: str, fraction: float, message: str) -> None:
    """A resume sends no `progress` (its garments are cached or stored)."""


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
    model: str = "full"  # the server-side tracking model
    layer_order: str = "category"
    build_key: str = ""  # content key of the live garments worn
    share_codes: list[str] = field(default_factory=list)  # written to a fleet's store
    relay: RemoteRelay | None = None  # a fleet: the watchers on other servers
    relay_feed: WatcherFeed | None = None
    relay_status_at: float = 0.0

    @property
    def twin_id(self) -> str:
        return str(self.twin["id"])

    @property
    def local_watchers(self) -> int:
        return sum(1 for f in self.watchers if f is not self.relay_feed)


@dataclass
class MirrorStats:
    """Counts since the process started (what an operator or a test reads)."""

    opened: int = 0
    resumed: int = 0
    ended: dict[str, int] = field(default_factory=dict)
    closes: dict[int, int] = field(default_factory=dict)
    results_dropped: int = 0  # results not sent to a receiver that did not read them
    taken_over: int = 0  # sessions resumed here that another server of the fleet held

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


def access_key_for(session_id: str, resume_key: str) -> str:
    """The session's access key (meshes, body GLB): its id's hex, then a digest of the id
    and the resume key. Any server that checked a resume key can make it again (a session
    taken over keeps its URLs) and find the session from it; the digest is one-way, so the
    watchers who get the access key learn nothing of the resume key."""
    digest = hashlib.sha256(f"spatialtwin-mirror-access\0{session_id}\0{resume_key}".encode())
    return session_id[3:] + base64.urlsafe_b64encode(digest.digest()).decode()[:32]


def session_of_access(access_key: str) -> str | None:
    """The session id an access key names (None for a key of another shape)."""
    head = access_key[:24]
    if len(access_key) != 56 or any(c not in "0123456789abcdef" for c in head):
        return None
    return f"ms_{head}"


def license_close_reason(exc: SpatialTwinError) -> str:
    """The 4403 close reason for a license refusal (`docs/mirror-protocol.md` §5)."""
    return {
        "license_revoked": "revoked",
        "channel_not_licensed": "license_channel",
        "license_expired": "license_expired",
        "license_not_yet_valid": "license_not_yet_valid",
    }.get(exc.code, exc.code)


def _code_shape(code: Any) -> bool:
    """A share code as `share` makes them (before it names a record in the store)."""
    return (
        isinstance(code, str)
        and len(code) == SHARE_CODE_CHARS
        and all(c in SHARE_ALPHABET for c in code.upper())
    )


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
        self.fleet: FleetLink | None = None
        self.warmed: asyncio.Future[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._watch(), name="mirror-watch"),
            asyncio.create_task(self._listen("twins"), name="mirror-listen-twins"),
            asyncio.create_task(self._listen(DEVICE_CHANNEL), name="mirror-listen-devices"),
        ]
        if self.options.fleet:
            self.fleet = FleetLink(self, self.options.fleet_options())
            await self.fleet.start()
            # a server of a fleet may have to take a session over within 2 s: load the live
            # loop's modules and compiled kernels now, not under the first resume
            self.warmed = asyncio.ensure_future(asyncio.to_thread(warm_live_kernels))

    async def close(self) -> None:
        """End every session ("server_shutdown", close 1001) and stop watching; in a fleet
        the sessions stay resumable through the other servers."""
        self._closing = True
        if self.fleet is not None:
            await self.fleet.mark_closing()
        for entry in list(self.sessions.values()):
            await self.end(entry, "server_shutdown", mm.CLOSE_GOING_AWAY, "server_shutdown")
        if self.fleet is not None:
            await self.fleet.close()
        if self.warmed is not None:
            with contextlib.suppress(Exception):
                await self.warmed
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
            if self.fleet is not None and not await self._still_held(entry):
                await self.end(entry, "moved", mm.CLOSE_GOING_AWAY, "session_moved")
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

    async def _still_held(self, entry: LiveSessionEntry) -> bool:
        """Whether the fleet's descriptor still names this server as the session's holder (a
        session another server took over ends here: `moved`); a descriptor lost from the
        store is written again."""
        assert self.fleet is not None
        descriptor = await self.fleet.registry.session(entry.id)
        if descriptor is None:
            await self.fleet.registry.create_session(self._descriptor(entry))
            return True
        return descriptor.get("holder") == self.fleet.server_id

    async def keep_relays(self) -> None:
        """(A fleet's heartbeat, 4 times a second.) A relay nobody has listened to for
        `relay_grace_s` stops; one in use gets the `status` message once a second, as a
        local watcher does."""
        if self.fleet is None:
            return
        now = time.monotonic()
        for entry in list(self.sessions.values()):
            relay = entry.relay
            if relay is None or entry.ended:
                continue
            if not relay.watchers or relay.unheard_s > self.fleet.options.relay_grace_s:
                await self._drop_relay(entry)
            elif now - entry.relay_status_at >= 1.0:
                entry.relay_status_at = now
                status = self.status(entry)
                if status is not None:
                    relay.send_message(status)

    async def _describe(self, entry: LiveSessionEntry, **changes: Any) -> None:
        """Write changes of a session to the fleet's descriptor (nothing without a fleet);
        the session goes on if the store is away."""
        if self.fleet is None:
            return
        try:
            await self.fleet.registry.update_session(entry.id, changes)
        except SpatialTwinError as exc:
            log.warning(
                "mirror descriptor not written",
                extra={"fields": {"session": entry.id, "code": exc.code}},
            )

    def _descriptor(self, entry: LiveSessionEntry) -> dict[str, Any]:
        """What the fleet keeps of a session (`live.session_registry`): no key in the clear."""
        assert self.fleet is not None
        camera = entry.camera_deg
        now_s = time.time()
        return {
            "id": entry.id,
            "schema_version": SCHEMA_VERSION,
            "holder": self.fleet.server_id,
            "resume_key_sha256": key_sha256(entry.resume_key),
            "access_key_sha256": key_sha256(entry.access_key),
            "device": entry.device_id,
            "twin": entry.twin_id,
            "look": entry.look_id,
            "garments": [w.garment_id for w in entry.worn],
            "layer_order": entry.layer_order,
            "build_key": entry.build_key,
            "first_stream": entry.worn[0].stream if entry.worn else entry.next_stream,
            "next_stream": entry.next_stream,
            "input": entry.input,
            "model": entry.model,
            "camera": None if camera is None else {"pitch_deg": camera[0], "roll_deg": camera[1]},
            "started_at_s": now_s - (time.monotonic() - entry.started_at),
            "minutes_metered": entry.minutes_metered,
            "share_codes": list(entry.share_codes),
            "updated_at_s": now_s,
        }

    async def _meter_minutes(
        self, entry: LiveSessionEntry, twin: dict[str, Any], lic: dict[str, Any], now: float
    ) -> None:
        """Each started minute of an attached session is a usage event (`mirror_minute`),
        written at most 0.5 s into the minute (the check's period)."""
        due = int((now - entry.started_at) // 60) + 1
        while entry.minutes_metered < due:
            entry.minutes_metered += 1
            # a fleet's descriptor counts the minute first: a server taking the session over
            # goes on from there (a holder killed in between loses a minute, never bills two)
            await self._describe(entry, minutes_metered=entry.minutes_metered)
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
        await self._describe(entry, camera={"pitch_deg": pitch, "roll_deg": roll})
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
            if self.fleet is not None:
                stored = await self._stored_build(key)
                if stored is not None:
                    return stored
            body = await services.twins.body(twin)
            wearing = [await services.garments.stored_look_garment(g) for g in garments]
            marks = await services.garments.landmarks(body, body_key(twin))
            lives: tuple[LiveGarment, ...] = await services.run(
                build_live_look,
                body,
                wearing,
                layer_order,
                look_options,
                self.options.level_options,
                marks,
                report,
            )
            if self.fleet is not None:
                await self._store_build(key, lives)
            return lives

        return key, await self.builds.get(key, build, progress)

    async def _stored_build(self, key: str) -> tuple[LiveGarment, ...] | None:
        """The live garments another server of the fleet built and stored under `key`
        (`live.stored_builds`), or None: not stored, or not readable (then built here)."""
        from spatialtwin.live.stored_builds import live_build_from_npz

        assert self.fleet is not None
        try:
            record = await self.fleet.registry.build(key)
            if record is None:
                return None
            data = await self.services.store.get_blob(str(record["blob"]))
            if data is None or hashlib.sha256(data).hexdigest() != record["blob"]:
                return None
            lives = await asyncio.to_thread(live_build_from_npz, data, key)
            await self.fleet.registry.touch_build(record)
        except SpatialTwinError as exc:
            log.warning("stored live build not used", extra={"fields": {"code": exc.code}})
            return None
        return lives

    async def _store_build(self, key: str, lives: tuple[LiveGarment, ...]) -> None:
        """Keep a fresh build for the fleet (before the session's welcome, so another
        server can serve its meshes and take it over); a failure only costs them a build."""
        from spatialtwin.live.stored_builds import live_build_to_npz

        assert self.fleet is not None
        try:
            data = await asyncio.to_thread(live_build_to_npz, key, lives)
            blob, _ = await self.services.store.put_blob(data)
            await self.fleet.registry.put_build(key, blob, len(data), [g.key for g in lives])
        except (TypeError, ValueError, SpatialTwinError) as exc:
            log.warning("live build not stored", extra={"fields": {"error": str(exc)[:200]}})

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

    def _check_room(self, device_id: str) -> None:
        """Refuse a new or taken-over session past the device's or this server's limit (429)."""
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
        self._check_room(device_id)
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
            session_id = f"ms_{secrets.token_hex(12)}"
            resume_key = secrets.token_urlsafe(24)
            entry = LiveSessionEntry(
                id=session_id,
                resume_key=resume_key,
                access_key=access_key_for(session_id, resume_key),
                device_id=device_id,
                twin=twin,
                look_id=look_id,
                input=hello.input,
                camera_deg=camera,
                worn=self._worn(0, garments, build_key, lives),
                model=hello.model,
                layer_order=layer_order,
                build_key=build_key,
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
        if self.fleet is not None:
            try:
                await self.fleet.registry.create_session(self._descriptor(entry))
            except BaseException:
                self._release_cores(entry.id)
                await self._close_pipeline(entry.pipeline)
                raise
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

    async def resume(
        self, hello: mm.Hello, device: dict[str, Any], progress: Report | None = None
    ) -> LiveSessionEntry:
        """The session a hello's `resume` names, if its key matches, it belongs to this
        device and no socket holds it (404 gone, 401 wrong key, 409 attached). In a fleet a
        session this server does not hold is taken over from its holder (`_take_over`)."""
        assert hello.resume is not None
        session_id, key = hello.resume
        entry = self.sessions.get(session_id)
        if (entry is None or entry.ended) and self.fleet is not None:
            return await self._take_over(hello, device, progress or _no_progress)
        if entry is None or entry.ended:
            raise _session_error("session_not_found", "no such session (ended or expired)", 404)
        if not _secret_equal(key, entry.resume_key) or entry.device_id != device["id"]:
            raise _session_error("bad_resume_key", "the resume key does not match", 401)
        if entry.mirror is not None:
            raise _session_error("session_attached", "another socket holds this session", 409)
        self.stats.resumed += 1
        return entry

    async def _take_over(
        self, hello: mm.Hello, device: dict[str, Any], progress: Report
    ) -> LiveSessionEntry:
        """Resume a session another server of the fleet held: check the key against the
        descriptor's hash, have the holder let go (or find it gone), claim the descriptor
        (compare-and-set), restart the cloth here from the look's static drape."""
        assert hello.resume is not None and self.fleet is not None
        fleet = self.fleet
        session_id, key = hello.resume
        started = time.perf_counter()
        descriptor = await fleet.registry.session(session_id)
        if descriptor is None:
            raise _session_error("session_not_found", "no such session (ended or expired)", 404)
        wanted = str(descriptor.get("resume_key_sha256", ""))
        if not _secret_equal(key_sha256(key), wanted) or descriptor.get("device") != device["id"]:
            raise _session_error("bad_resume_key", "the resume key does not match", 401)
        if self._closing:
            raise _session_error("server_shutdown", "the server is shutting down", 503)
        if session_id in fleet.taking:
            raise _session_error("session_attached", "another socket holds this session", 409)
        fleet.taking.add(session_id)
        try:
            holder = descriptor.get("holder")
            if holder == fleet.server_id:  # ended here, its record not yet gone
                raise _session_error("session_not_found", "no such session (ended)", 404)
            state, server = await fleet.release(holder, session_id)
            if state == "attached":
                raise _session_error("session_attached", "another socket holds this session", 409)
            if state == "busy":
                raise _session_error("session_moving", "the session's server is busy", 503)
            if state == "gone" and fleet.registry.expired(server):
                raise _session_error("session_not_found", "no such session (expired)", 404)
            claimed = await fleet.registry.claim(session_id, holder)
            if claimed is None:
                raise _session_error("session_attached", "another server took this session", 409)
            try:
                entry = await self._restore(claimed, key, device, progress)
            except BaseException:
                await fleet.registry.give_back(session_id, holder)
                raise
        finally:
            fleet.taking.discard(session_id)
        self.stats.resumed += 1
        self.stats.taken_over += 1
        fields = {
            "session": session_id,
            "from": holder,
            "holder": state,
            "ms": round((time.perf_counter() - started) * 1e3, 1),
        }
        log.info("mirror session taken over", extra={"fields": fields})
        return entry

    async def _restore(
        self,
        descriptor: dict[str, Any],
        resume_key: str,
        device: dict[str, Any],
        progress: Report,
    ) -> LiveSessionEntry:
        """A session of the fleet started here as its descriptor says: same id, keys,
        garments and stream ids, its cloth from the look's static drape (the stored build)."""
        device_id = str(descriptor["device"])
        self._check_room(device_id)
        session_id = str(descriptor["id"])
        self._opening[device_id] = self._opening.get(device_id, 0) + 1
        try:
            twin = await self.services.access.twin_for_use(str(descriptor["twin"]), CHANNEL)
            garments = [await self.services.garments.get(str(g)) for g in descriptor["garments"]]
            layer_order = str(descriptor.get("layer_order", "category"))
            build_key, lives = await self.live_garments(twin, garments, layer_order, progress)
            body = await self.services.twins.body(twin)
            tilt = descriptor.get("camera") or device.get("camera") or None
            camera = None if not tilt else (float(tilt["pitch_deg"]), float(tilt["roll_deg"]))
            entry = LiveSessionEntry(
                id=session_id,
                resume_key=resume_key,
                access_key=access_key_for(session_id, resume_key),
                device_id=device_id,
                twin=twin,
                look_id=descriptor.get("look"),
                input=str(descriptor["input"]),
                camera_deg=camera,
                worn=self._worn(int(descriptor["first_stream"]), garments, build_key, lives),
                model=str(descriptor.get("model", "full")),
                layer_order=layer_order,
                build_key=build_key,
                share_codes=[str(c) for c in descriptor.get("share_codes", [])],
            )
            last = entry.worn[-1].stream + 1 if entry.worn else 0
            entry.next_stream = max(int(descriptor.get("next_stream", 0)), last)
            entry.minutes_metered = int(descriptor.get("minutes_metered", 0))
            age_s = max(0.0, time.time() - float(descriptor.get("started_at_s", time.time())))
            entry.started_at = time.monotonic() - age_s
            entry.camera_saved = camera is not None
            entry.pinned = entry.input == "frames" and self._take_cores(session_id)
            try:
                entry.pipeline = await asyncio.to_thread(
                    self._new_pipeline, entry, entry.model, body
                )
            except BaseException:
                self._release_cores(session_id)
                raise
        finally:
            self._opening[device_id] -= 1
            if not self._opening[device_id]:
                del self._opening[device_id]
        if self._closing:
            self._release_cores(session_id)
            await self._close_pipeline(entry.pipeline)
            raise _session_error("server_shutdown", "the server is shutting down", 503)
        self.sessions[session_id] = entry
        if build_key != descriptor.get("build_key"):
            await self._describe(entry, build_key=build_key)
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
        with `close_code`, watchers with 1000 — then its threads stop and its data goes.

        In a fleet its descriptor and share codes go too, except when it goes on elsewhere:
        `moved` (another server took it over: sockets closed 1001 `session_moved`, no
        `ended`) and `server_shutdown` (resumable through another server)."""
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
        told = None if reason == "moved" else reason
        if mirror is not None:
            mirror.end(close_code, close_reason, told)
        # watchers reconnect after a shutdown or a move (1001), else the show is over (1000)
        watcher_code = close_code if close_code == mm.CLOSE_GOING_AWAY else mm.CLOSE_NORMAL
        watcher_reason = "session_moved" if reason == "moved" else "session_ended"
        for feed in watchers:
            feed.receiver.end(watcher_code, watcher_reason, told)
        self._release_cores(entry.id)
        log.info("mirror session ended", extra={"fields": {"session": entry.id, "reason": reason}})
        relay, entry.relay, entry.relay_feed = entry.relay, None, None
        if relay is not None:
            await relay.close()
        if self.fleet is not None and reason not in ("moved", "server_shutdown"):
            try:
                await self.fleet.registry.end_session(entry.id, entry.share_codes)
            except SpatialTwinError as exc:  # the sweep removes it after the resume window
                log.warning("mirror descriptor kept", extra={"fields": {"code": exc.code}})
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

    async def share(self, entry: LiveSessionEntry) -> dict[str, Any]:
        """A share code for a watcher (`share` answer); in a fleet also a record, so the
        code opens the session through any server."""
        now = time.monotonic()
        while True:
            code = "".join(secrets.choice(SHARE_ALPHABET) for _ in range(SHARE_CODE_CHARS))
            if code in self.share_codes:
                continue
            if self.fleet is None:
                break
            expires_at_s = time.time() + self.options.share_s
            if await self.fleet.registry.create_share(code, entry.id, expires_at_s):
                entry.share_codes.append(code)
                await self._describe(entry, share_codes=list(entry.share_codes))
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

    async def open_watch(
        self, code: str, receiver: Receiver
    ) -> tuple[LiveSessionEntry | RemoteWatch, WatcherFeed | str, dict[str, Any]]:
        """A watcher of the session a share code opens: (the session, the watcher's handle
        for `remove_watcher`, its `welcome`). A session held here is watched as always; in a
        fleet a code made on another server is read from the store and a session another
        server holds is watched through it (`live.session_registry.RemoteWatch`)."""
        try:
            entry = self.watched(code)
        except SpatialTwinError:
            if self.fleet is None:
                raise
            shared = await self.fleet.registry.share(code.upper()) if _code_shape(code) else None
            if shared is None:
                raise _session_error(
                    "share_code_not_found", "no such share code (or expired)", 404
                ) from None
            local = self.sessions.get(str(shared["session"]))
            if local is None or local.ended:
                remote, watcher, welcome = await self.fleet.watch(str(shared["session"]), receiver)
                return remote, watcher, welcome
            entry = local
        feed = self.add_watcher(entry, receiver)
        return entry, feed, self.welcome(entry, watcher=True)

    def watcher_count(self, entry: LiveSessionEntry) -> int:
        """Watchers on this server and, in a fleet, on the others."""
        remote = len(entry.relay.watchers) if entry.relay is not None else 0
        return entry.local_watchers + remote

    def add_watcher(self, entry: LiveSessionEntry, receiver: Receiver) -> WatcherFeed:
        if self.watcher_count(entry) >= self.options.watchers_per_session:
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

    def remove_watcher(
        self, entry: LiveSessionEntry | RemoteWatch, feed: WatcherFeed | str
    ) -> None:
        if isinstance(entry, RemoteWatch):
            if self.fleet is not None and isinstance(feed, str):
                self.fleet.unwatch(entry, feed)
            return
        entry.watchers = tuple(f for f in entry.watchers if f is not feed)

    # --- watchers on other servers (a fleet) --------------------------------------------------

    def join_remote(self, entry: LiveSessionEntry, watcher_id: str, server_id: str) -> None:
        """A watcher on `server_id` joins (the holder's side): counted against the
        session's watchers, fed by the session's relay (made on the first), whose next
        result is a key frame."""
        assert self.fleet is not None
        relay = entry.relay
        if relay is not None and watcher_id in relay.watchers:
            return
        if self.watcher_count(entry) >= self.options.watchers_per_session:
            raise _session_error(
                "too_many_watchers",
                f"a session is watched by at most {self.options.watchers_per_session}",
                429,
            )
        if relay is None:
            feed_box: list[WatcherFeed] = []

            def rekey() -> None:
                if feed_box:
                    feed_box[0].reset = True

            relay = RemoteRelay(self.services.store, entry.id, rekey, self.fleet.options)
            feed = WatcherFeed(relay)
            feed_box.append(feed)
            if not entry.watchers:
                entry.tap.stop()
                if entry.pipeline is not None:
                    entry.pipeline.request_key_frames()  # the tap starts on a key frame
            entry.relay, entry.relay_feed = relay, feed
            entry.watchers = (*entry.watchers, feed)
        relay.watchers[watcher_id] = server_id
        self.relay_key(entry)

    def leave_remote(self, entry: LiveSessionEntry, watcher_id: str) -> None:
        if entry.relay is not None:
            entry.relay.watchers.pop(watcher_id, None)

    def relay_key(self, entry: LiveSessionEntry) -> None:
        """The relay's next result holds key frames (a remote watcher joined or lost one)."""
        if entry.relay_feed is not None:
            entry.relay_feed.reset = True

    async def _drop_relay(self, entry: LiveSessionEntry) -> None:
        relay, feed = entry.relay, entry.relay_feed
        entry.relay, entry.relay_feed = None, None
        entry.watchers = tuple(f for f in entry.watchers if f is not feed)
        if relay is not None:
            await relay.close()

    def request_key(self, entry: LiveSessionEntry | RemoteWatch, receiver: Receiver) -> None:
        """`receiver` lost a result: its next one must hold key frames."""
        if isinstance(entry, RemoteWatch):
            if self.fleet is not None:
                entry.ask_key(self.fleet.server_id)
            return
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
        entry.layer_order, entry.build_key = layer_order, build_key
        listed = self.garments_json(entry)
        for feed in entry.watchers:
            feed.receiver.send_message({"type": "switched", "garments": listed})
        await self._describe(
            entry,
            look=entry.look_id,
            garments=[w.garment_id for w in worn],
            layer_order=layer_order,
            build_key=build_key,
            first_stream=worn[0].stream if worn else entry.next_stream,
            next_stream=entry.next_stream,
        )
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

    def status(self, entry: LiveSessionEntry | RemoteWatch) -> dict[str, Any] | None:
        """The once-a-second `status` message (None for a session held by another server:
        its holder sends it)."""
        if isinstance(entry, RemoteWatch):
            return None
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

    def _no_session(self) -> SpatialTwinError:
        return _session_error(
            "session_not_found", "no live session with this id and access key", 404
        )

    async def _described(self, session_id: str, access_key: str) -> dict[str, Any]:
        """The fleet's descriptor of a session another server holds, if `access_key` is its
        key and the session may still go on (its holder alive, or gone within the resume
        window); 404 otherwise."""
        assert self.fleet is not None
        registry = self.fleet.registry
        descriptor = await registry.session(session_id)
        wanted = "" if descriptor is None else str(descriptor.get("access_key_sha256", ""))
        if descriptor is None or not _secret_equal(key_sha256(access_key), wanted):
            raise self._no_session()
        server = await registry.server(str(descriptor.get("holder")))
        if registry.is_stale(server) and registry.expired(server):
            raise self._no_session()
        return descriptor

    async def garment_glb(self, session_id: str, stream: int, access_key: str) -> bytes:
        """The display mesh of a stream of a live session (404 once it ended); in a fleet,
        of a session any server holds (its live garments from the stored build)."""
        entry = self.sessions.get(session_id)
        if entry is not None and not entry.ended:
            if not _secret_equal(access_key, entry.access_key):
                raise self._no_session()
            await self.services.access.twin_for_use(entry.twin_id, CHANNEL)
            worn = next((w for w in entry.worn if w.stream == stream), None)
            twin = entry.twin
        elif self.fleet is not None:
            descriptor = await self._described(session_id, access_key)
            twin = await self.services.access.twin_for_use(str(descriptor["twin"]), CHANNEL)
            garments = [await self.services.garments.get(str(g)) for g in descriptor["garments"]]
            layer_order = str(descriptor.get("layer_order", "category"))
            build_key, lives = await self.live_garments(twin, garments, layer_order, _no_progress)
            first = int(descriptor["first_stream"])
            worn = next(
                (w for w in self._worn(first, garments, build_key, lives) if w.stream == stream),
                None,
            )
        else:
            raise self._no_session()
        if worn is None:
            raise _session_error(
                "stream_not_found", "the session wears no such stream", 404, {"stream": stream}
            )
        return await self._stream_glb(worn, twin)

    async def _stream_glb(self, worn: Worn, twin: dict[str, Any]) -> bytes:
        cached = self.glbs.get(worn.glb_key)
        if cached is not None:
            return cached
        record = await self.services.garments.get(worn.garment_id)
        appearance = await self.services.garments.appearance(record)
        from spatialtwin.gltf.stream_mesh_glb import stream_mesh_glb

        live = worn.live
        extras = {
            "garmentId": worn.garment_id,
            "twinId": str(twin["id"]),
            "digitalTwin": True,
            "disclosure": twin.get("disclosure"),
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

    async def check_body_access(self, twin_id: str, access_key: str) -> None:
        """A live session of this twin holds this access key, else 404 (in a fleet, a
        session on any server: the key names its session)."""
        for entry in self.sessions.values():
            if (
                not entry.ended
                and entry.twin_id == twin_id
                and _secret_equal(access_key, entry.access_key)
            ):
                return
        session_id = session_of_access(access_key)
        if self.fleet is not None and session_id is not None:
            local = self.sessions.get(session_id)
            if local is None or local.ended:
                descriptor = await self._described(session_id, access_key)
                if descriptor.get("twin") == twin_id:
                    return
        raise _session_error(
            "session_not_found", "no live session of this twin holds this access key", 404
        )
