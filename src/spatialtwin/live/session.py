"""A smart-mirror session: camera frames (or landmarks) in, the twin's pose and its garments'
vertex streams out, frame after frame, on two threads.

Stages per frame:

1. **track** (tracking thread): decode the frame in memory (JPEG/WebP/PNG bytes or an RGB
   array), MediaPipe landmarks (`tracking.landmarker`), then the tracker (`tracking.tracker`:
   levelled by the camera tilt, hips over feet, feet planted, retargeted to the twin's
   skeleton, lost limbs held then eased to rest). A client that runs MediaPipe itself sends
   the 33 landmarks instead and this stage is only the tracker.
2. **cloth** (cloth thread): the pose the twin takes (the tracked one, blended in over
   `acquire_s` when a shopper is picked up, so the cloth is never yanked), the twin's welded
   surface skinned into it (`live.body`), one cloth step of every garment on it
   (`live.cloth_stage`), the display positions, each garment's vertex-stream frame
   (`gltf.vertex_stream`), then the result.

Threads: the stages run on their own threads, so frame n+1 is tracked while frame n's cloth
steps; MediaPipe and the numba cloth kernels (`nogil=True`) release the GIL, so the two use
both cores. Between the stages and in front of the first there is one slot each (latest wins):
a frame that arrives while the slot is full replaces the waiting one, which is counted as
dropped, so latency never grows without bound. Results wait in a small bounded queue (a reader
that falls behind loses the backlog and the next frame is a key frame) or go to `on_result`,
called on the cloth thread (a caller that then drops one must `request_key_frames`).

Adaptive quality (`live.quality`) picks the cloth level from the cloth stage's time.

Privacy: a camera frame lives only in the slot and the tracking thread's locals, is decoded in
memory and is dropped after detection; nothing here writes or logs frame bytes. `close` drops
the session's derived data (poses, cloth, encoders).

Example:
    session = MirrorSession(body, [live_garment], SessionOptions(model="lite"))
    session.start()
    session.submit_frame(0, jpeg_bytes)
    result = session.next_result(timeout_s=1.0)
    session.close()
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spatialtwin.body.pose import Pose
from spatialtwin.body.skeleton import JOINT_NAMES
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.cloth.collider import BodyCollider
from spatialtwin.cloth.solver import SolverSettings
from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.vertex_stream import DEFAULT_STEP_M, VertexStreamEncoder
from spatialtwin.live.body import WeldedSkinner
from spatialtwin.live.cloth_stage import GarmentCloth, carried_drape
from spatialtwin.live.frames import FrameInput, check_frame, check_landmarks, decode_checked
from spatialtwin.live.garments import LIVE_SUBSTEPS, LiveGarment
from spatialtwin.live.quality import QUALITY_DEFAULTS, AdaptiveQuality, QualityOptions
from spatialtwin.tracking.landmarker import LandmarkerOptions, PoseLandmarkerStream
from spatialtwin.tracking.landmarks import LandmarkFrame
from spatialtwin.tracking.tracker import TrackedFrame, TrackerOptions, TwinPoseTracker
from spatialtwin.tracking.upright import UprightOptions

log = logging.getLogger(__name__)
IDENTITY = np.array([0.0, 0.0, 0.0, 1.0])
MAX_GARMENTS = 4


@dataclass(frozen=True)
class SessionOptions:
    """How a session runs (seconds, metres, degrees).

    - ``model``: MediaPipe bundle for server-side tracking ("full", "lite", "heavy").
    - ``camera_pitch_deg``/``camera_roll_deg``: the mirror camera's tilt when known; None
      estimates it from the standing shopper over the first second (`tracking.upright`).
    - ``substeps``: cloth substeps per frame (the live garments were settled with as many:
      `LevelOptions.substeps`); ``quality`` the adaptive-quality budget;
      ``max_body_step_m`` how fast (metres a frame) a body part may move and still be found
      by the cloth's contact search (a flung hand moves 20–30 cm a frame; measured on the
      T-shirt under arm flings, widening the search to 0.3 m did not keep more of the cloth
      out, so the solver's 0.15 m stays).
    - ``acquire_s``: a shopper picked up (again) is blended in over this long.
    - ``min_dt_s``/``max_dt_s``: the cloth steps by the real time between processed frames,
      clamped to these (a stall must not become one huge step); ``cloth_dt_s``: the longest
      cloth step: a longer interval (a 5 fps camera, dropped frames) is cut into steps of at
      most this, with the pose interpolated between the two frames, up to
      ``max_steps_per_frame`` (a body that jumps 0.2 s of motion in one step tears through
      the cloth; at 30 fps input this is one step a frame).
    - ``results``: results kept for `next_result` (the oldest dropped beyond that).
    - ``pin_cores``: with server-side tracking, keep the tracking thread (and MediaPipe's
      workers) on one core and the cloth thread on another (`_open_landmarker`).
    """

    model: str = "full"
    camera_pitch_deg: float | None = None
    camera_roll_deg: float = 0.0
    substeps: int = LIVE_SUBSTEPS
    max_body_step_m: float = 0.15
    quality: QualityOptions = QUALITY_DEFAULTS
    adaptive: bool = True
    start_level: int = 0
    acquire_s: float = 0.4
    min_dt_s: float = 1.0 / 120.0
    max_dt_s: float = 0.25
    cloth_dt_s: float = 1.0 / 30.0
    max_steps_per_frame: int = 6
    step_m: float = DEFAULT_STEP_M
    results: int = 2
    models_dir: Path | None = None
    pin_cores: bool = True

    def __post_init__(self) -> None:
        if not (1.0 / 240.0 <= self.cloth_dt_s <= 0.1 and self.max_steps_per_frame >= 1):
            raise SpatialTwinError(
                "bad_session_options",
                "cloth_dt_s must be 1/240 .. 0.1 s and max_steps_per_frame ≥ 1",
                {"cloth_dt_s": self.cloth_dt_s, "max_steps_per_frame": self.max_steps_per_frame},
            )
        if not (0.0 < self.min_dt_s <= self.max_dt_s <= 1.0) or self.results < 1:
            raise SpatialTwinError(
                "bad_session_options",
                "need 0 < min_dt_s ≤ max_dt_s ≤ 1 s and results ≥ 1",
                {"min_dt_s": self.min_dt_s, "max_dt_s": self.max_dt_s, "results": self.results},
            )

    def tracker_options(self) -> TrackerOptions:
        pitch = self.camera_pitch_deg
        return TrackerOptions(
            camera_pitch_deg=0.0 if pitch is None else float(pitch),
            camera_roll_deg=self.camera_roll_deg,
            estimate_camera_pitch=pitch is None,
            upright=UprightOptions(),
        )


SESSION_DEFAULTS = SessionOptions()


@dataclass
class LiveResult:
    """One frame's result: the pose the twin takes, its garments' stream frames, timings.

    `rotations` are local joint rotations [x, y, z, w] by VRM bone name, `root_m` the root
    translation (metres); `garments` maps each garment's stream id to its vertex-stream frame
    (bytes, `gltf.vertex_stream`). `timings_ms` per stage: decode, landmarks, track (the
    tracker), wait_track (in the first slot), wait_cloth (between the stages), skin, cloth,
    display, encode, total (arrival to result).
    """

    frame_id: int
    capture_t_s: float | None
    tracked: bool
    root_m: NDArray[np.float64]
    rotations: dict[str, NDArray[np.float64]]
    garments: dict[int, bytes]
    timings_ms: dict[str, float]
    quality: dict[str, Any]
    effective_rate_hz: float
    dropped_frames: int
    camera: dict[str, float]
    sent_at_s: float = 0.0  # perf_counter when the result was ready
    # perf_counter (start, end) of this frame's stages: "track" and "cloth"
    spans_s: dict[str, tuple[float, float]] = field(default_factory=dict)

    def header_json(self) -> dict[str, Any]:
        """Everything but the vertex streams, as JSON-ready values."""
        return {
            "frame_id": self.frame_id,
            "capture_t_s": self.capture_t_s,
            "tracked": self.tracked,
            "root_m": [round(float(c), 5) for c in self.root_m],
            "rotations": {k: [round(float(c), 6) for c in q] for k, q in self.rotations.items()},
            "garment_bytes": {str(k): len(v) for k, v in self.garments.items()},
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            "quality": self.quality,
            "effective_rate_hz": round(self.effective_rate_hz, 2),
            "dropped_frames": self.dropped_frames,
            "camera": self.camera,
        }


@dataclass
class _Tracked:
    frame: FrameInput
    tracked: TrackedFrame
    timings_ms: dict[str, float]
    started_at_s: float
    done_at_s: float


class _Slot:
    """A one-item mailbox: `put` replaces what waits (returns True if it did)."""

    def __init__(self) -> None:
        self._item: Any = None
        self._cv = threading.Condition()
        self._closed = False

    def put(self, item: Any) -> bool:
        with self._cv:
            replaced = self._item is not None
            self._item = item
            self._cv.notify()
            return replaced

    def take(self, timeout_s: float) -> Any:
        with self._cv:
            if self._item is None and not self._closed:
                self._cv.wait(timeout_s)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._item = None
            self._cv.notify_all()


@dataclass
class SessionStats:
    """Counts since the session started. `errors` counts frames that failed by error code
    (or exception class): a bounded map however long a bad camera keeps sending."""

    received: int = 0
    dropped_before_tracking: int = 0
    dropped_before_cloth: int = 0
    results: int = 0
    results_dropped: int = 0
    level_changes: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def dropped(self) -> int:
        return self.dropped_before_tracking + self.dropped_before_cloth


def _nlerp(a: NDArray[np.float64], b: NDArray[np.float64], w: float) -> NDArray[np.float64]:
    """Normalised lerp of quaternion rows (J, 4) along the short way."""
    sign = np.where(np.sum(a * b, axis=1, keepdims=True) < 0.0, -1.0, 1.0)
    q = (1.0 - w) * a + w * sign * b
    return q / np.linalg.norm(q, axis=1, keepdims=True)


class MirrorSession:
    """One shopper before one mirror: see the module doc. Thread-safe `submit_*`."""

    def __init__(
        self,
        body: TwinBody,
        garments: Sequence[LiveGarment],
        options: SessionOptions = SESSION_DEFAULTS,
        on_result: Callable[[LiveResult], None] | None = None,
        landmarker: PoseLandmarkerStream | None = None,
    ) -> None:
        _check_garments(garments)
        self.body = body
        self.options = options
        self.on_result = on_result
        self.stats = SessionStats()
        self._landmarker = landmarker
        self._own_landmarker = landmarker is None
        # the tracker's own landmarker is never used: `_open_landmarker` detects, the tracker
        # takes the people found (`track_people`)
        self._tracker = TwinPoseTracker(
            body.skeleton, options.tracker_options(), landmarker=_NoLandmarker()
        )
        self._skinner = WeldedSkinner(body)
        rest = self._skinner.posed(Pose.rest())
        self._collider = BodyCollider(rest, self._skinner.faces)
        self._settings = SolverSettings(
            substeps=options.substeps, max_body_step_m=options.max_body_step_m
        )
        self._cloth = self._dress(garments, options.start_level)
        self._encoders = {g.stream: VertexStreamEncoder(g.stream, options.step_m) for g in garments}
        self._quality = AdaptiveQuality(
            self._level_counts(), options.quality, options.start_level, options.adaptive
        )
        self._frames = _Slot()
        self._tracked = _Slot()
        self._results: deque[LiveResult] = deque()
        self._results_cv = threading.Condition()
        self._commands: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()
        self._running = False
        self._threads: list[threading.Thread] = []
        self._t0 = time.perf_counter()
        self._last_mp_t_s = -1.0
        self._pose = Pose.rest()
        self._quats = np.tile(IDENTITY, (len(JOINT_NAMES), 1))
        self._blend_from: tuple[NDArray, NDArray] | None = None
        self._blend_t0 = 0.0
        self._was_tracked = False
        self._last_step_at: float | None = None
        self._last_arrival_s: float | None = None
        self._input_interval_s: float | None = None  # moving average of the camera's interval
        self._step_cost_s: float | None = None  # moving average of one skin + cloth step
        self._result_times: deque[float] = deque(maxlen=120)
        self._cloth_core: int | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._threads = [
            threading.Thread(target=self._track_loop, name="live-track", daemon=True),
            threading.Thread(target=self._cloth_loop, name="live-cloth", daemon=True),
        ]
        for t in self._threads:
            t.start()
        log.info("mirror session started with %d garment(s)", len(self._cloth))

    def close(self) -> None:
        """Stop both threads and drop everything derived from the shopper."""
        self._running = False
        self._frames.close()
        self._tracked.close()
        for t in self._threads:
            t.join(timeout=5.0)
        self._threads = []
        if self._own_landmarker and self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None
        self._tracker.poses.reset()
        with self._results_cv:
            self._results.clear()
        self._cloth = []
        self._encoders = {}
        self._pose = Pose.rest()
        log.info("mirror session closed after %d results", self.stats.results)

    def __enter__(self) -> MirrorSession:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- input ----------------------------------------------------------------------------

    def submit_frame(self, frame_id: int, frame: Any, capture_t_s: float | None = None) -> None:
        """A camera frame (RGB/RGBA/grey uint8 array, or JPEG/WebP/PNG bytes), checked now
        (type, size) and decoded on the tracking thread. Never stored."""
        self._submit(check_frame(frame_id, frame, capture_t_s))

    def submit_landmarks(
        self,
        frame_id: int,
        image: Any,
        world: Any,
        size_px: tuple[int, int],
        capture_t_s: float | None = None,
    ) -> None:
        """33 landmarks from a client's own MediaPipe: `image` (33, 4) normalised x, y, z,
        visibility; `world` (33, 3 or 4) metres in MediaPipe's world axes."""
        self._submit(check_landmarks(frame_id, image, world, size_px, capture_t_s))

    def _submit(self, item: FrameInput) -> None:
        if not self._running:
            raise SpatialTwinError("session_closed", "the mirror session is not running")
        item.arrived_at_s = time.perf_counter()
        with self._lock:
            self.stats.received += 1
            if self._last_arrival_s is not None:
                gap = item.arrived_at_s - self._last_arrival_s
                prev = self._input_interval_s
                self._input_interval_s = gap if prev is None else 0.9 * prev + 0.1 * gap
            self._last_arrival_s = item.arrived_at_s
        if self._frames.put(item):
            with self._lock:
                self.stats.dropped_before_tracking += 1

    def _dress(
        self, garments: Sequence[LiveGarment], level: int, pose: Pose | None = None
    ) -> list[GarmentCloth]:
        """Each garment's cloth, inner first (the streams are in draping order), each outer
        one colliding with those under it; from the static drape, or with `pose` from it
        carried into that pose (a switch mid-session)."""
        cloths: list[GarmentCloth] = []
        for g in garments:
            start = None if pose is None else carried_drape(g, self.body, pose)
            cloths.append(
                GarmentCloth(
                    g,
                    self._collider,
                    self._settings,
                    min(level, len(g.levels) - 1),
                    start,
                    under=tuple(cloths),
                )
            )
        return cloths

    def switch_garments(self, garments: Sequence[LiveGarment]) -> None:
        """Wear other garments (another item or size) from the next frame on: each starts from
        its static drape carried into the twin's current pose."""
        _check_garments(garments)

        def switch() -> None:
            pose = self._pose
            level = self._quality.level
            self._cloth = self._dress(garments, level, pose)
            self._encoders = {
                g.stream: VertexStreamEncoder(g.stream, self.options.step_m) for g in garments
            }
            counts = self._level_counts()
            self._quality = AdaptiveQuality(
                counts, self.options.quality, min(level, len(counts) - 1), self.options.adaptive
            )

        with self._lock:
            self._commands.append(switch)

    def request_key_frames(self) -> None:
        """The client lost its stream state (reconnect): every garment's next frame is a key."""

        def reset() -> None:
            for enc in self._encoders.values():
                enc.reset()

        with self._lock:
            self._commands.append(reset)

    # --- output ---------------------------------------------------------------------------

    def next_result(self, timeout_s: float = 1.0) -> LiveResult | None:
        """The oldest waiting result, or None after `timeout_s`."""
        with self._results_cv:
            if not self._results:
                self._results_cv.wait(timeout_s)
            return self._results.popleft() if self._results else None

    @property
    def camera_tilt_deg(self) -> tuple[float, float]:
        """(pitch, roll) the landmarks are levelled by; store it per mirror once fixed."""
        cam = self._tracker.poses.camera
        return cam.pitch_deg, cam.roll_deg

    @property
    def camera_tilt_is_fixed(self) -> bool:
        """True once the tilt is set or calibrated (then worth storing for the mirror)."""
        return self._tracker.poses.camera.is_fixed

    @property
    def garment_levels(self) -> list[int]:
        return [c.level for c in self._cloth]

    # --- the tracking thread --------------------------------------------------------------

    def _mediapipe_time_s(self, arrived_at_s: float) -> float:
        # the server's clock, not the client's: MediaPipe needs increasing timestamps
        t = max(arrived_at_s - self._t0, self._last_mp_t_s + 0.001)
        self._last_mp_t_s = t
        return t

    def _open_landmarker(self) -> PoseLandmarkerStream:
        """MediaPipe, opened on the first camera frame (a session on client landmarks never
        loads a model). With `pin_cores`, the tracking thread (and with it the worker threads
        MediaPipe starts from it, which inherit its CPU affinity) keeps to the first core and
        the cloth thread to the second: MediaPipe's two workers would otherwise take both
        cores for every detection and stall the cloth step that should overlap it."""
        if self._landmarker is None:
            cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
            if self.options.pin_cores and len(cores) >= 2:
                os.sched_setaffinity(0, {cores[0]})  # this (the tracking) thread only
                self._cloth_core = cores[1]
            self._landmarker = PoseLandmarkerStream(
                LandmarkerOptions(
                    model=self.options.model, max_people=1, models_dir=self.options.models_dir
                )
            )
        return self._landmarker

    def _track_loop(self) -> None:
        while self._running:
            item: FrameInput | None = self._frames.take(0.1)
            if item is None:
                continue
            try:
                started = time.perf_counter()
                timings = {"wait_track": 1e3 * (started - item.arrived_at_s)}
                t_s = self._mediapipe_time_s(item.arrived_at_s)
                if item.landmarks is not None:
                    timings["decode"] = 0.0
                    timings["landmarks"] = 0.0
                    t1 = time.perf_counter()
                    tracked = self._tracker.poses.update(item.landmarks, t_s)
                else:
                    rgb = decode_checked(item.frame)
                    item.frame = None  # the frame bytes go as soon as they are decoded
                    t1 = time.perf_counter()
                    timings["decode"] = 1e3 * (t1 - started)
                    people = self._open_landmarker().detect(rgb, t_s)
                    del rgb
                    t2 = time.perf_counter()
                    timings["landmarks"] = 1e3 * (t2 - t1)
                    t1 = t2
                    tracked = self._tracker.track_people(people, t_s)
                done = time.perf_counter()
                timings["track"] = 1e3 * (done - t1)
                if self._tracked.put(_Tracked(item, tracked, timings, started, done)):
                    with self._lock:
                        self.stats.dropped_before_cloth += 1
            except SpatialTwinError as exc:
                with self._lock:
                    self.stats.errors[exc.code] += 1
            except Exception as exc:  # a failed frame must not end the session
                log.exception("tracking failed on a frame: %s", type(exc).__name__)
                with self._lock:
                    self.stats.errors[type(exc).__name__] += 1

    # --- the cloth thread -----------------------------------------------------------------

    def _level_counts(self) -> tuple[int, ...]:
        """Vertices per level summed over garments (a level a garment lacks: its coarsest)."""
        if not self._cloth:
            return (1,)
        depth = max(len(c.garment.levels) for c in self._cloth)
        return tuple(
            sum(
                c.garment.levels[min(k, len(c.garment.levels) - 1)].vertex_count
                for c in self._cloth
            )
            for k in range(depth)
        )

    def _driving_pose(self, tracked: TrackedFrame, now_s: float) -> Pose:
        """The pose the twin takes: the tracked one, blended in after a pick-up."""
        quats = tracked.pose.quaternions()
        root = np.asarray(tracked.pose.root_m, dtype=np.float64)
        if tracked.tracked and not self._was_tracked:
            self._blend_from = (self._quats.copy(), np.asarray(self._pose.root_m).copy())
            self._blend_t0 = now_s
        self._was_tracked = tracked.tracked
        if self._blend_from is not None:
            t = (now_s - self._blend_t0) / max(self.options.acquire_s, 1e-6)
            if t >= 1.0:
                self._blend_from = None
            else:
                w = t * t * (3.0 - 2.0 * t)
                quats = _nlerp(self._blend_from[0], quats, w)
                root = (1.0 - w) * self._blend_from[1] + w * root
        self._quats = quats
        return Pose(root, dict(zip(JOINT_NAMES, quats, strict=True)))

    def _cloth_loop(self) -> None:
        pinned = False
        while self._running:
            item: _Tracked | None = self._tracked.take(0.1)
            if item is None:
                continue
            if self._cloth_core is not None and not pinned:
                os.sched_setaffinity(0, {self._cloth_core})  # this (the cloth) thread only
                pinned = True
            try:
                self._cloth_frame(item)
            except Exception as exc:  # a failed frame must not end the session
                log.exception("cloth step failed on a frame: %s", type(exc).__name__)
                with self._lock:
                    self.stats.errors[type(exc).__name__] += 1

    def _cloth_steps(self, dt: float) -> int:
        """Cloth steps for an interval of `dt` seconds: enough that none is longer than
        `cloth_dt_s`, but only as many as fit in the camera's frame interval (frames dropped
        because the cloth is slow must not make it slower still). A step is never longer than
        `cloth_dt_s` either (see `_cloth_frame`): a cloth that cannot keep up runs slower than
        real time rather than in longer steps, whose softer cloth sags and bounces."""
        wanted = int(np.ceil(dt / self.options.cloth_dt_s - 0.25))
        interval = self._input_interval_s
        if self._step_cost_s is not None and interval is not None:
            wanted = min(wanted, int(0.8 * interval / max(self._step_cost_s, 1e-4)))
        return int(np.clip(wanted, 1, self.options.max_steps_per_frame))

    def _cloth_frame(self, item: _Tracked) -> None:
        started = time.perf_counter()
        with self._lock:
            commands = list(self._commands)
            self._commands.clear()
        for command in commands:
            command()
        timings = dict(item.timings_ms)
        timings["wait_cloth"] = 1e3 * (started - item.done_at_s)
        arrived = item.frame.arrived_at_s
        dt = self.options.cloth_dt_s if self._last_step_at is None else arrived - self._last_step_at
        dt = float(np.clip(dt, self.options.min_dt_s, self.options.max_dt_s))
        self._last_step_at = arrived
        steps = self._cloth_steps(dt)
        # (1) pose and body, (2) cloth: in `steps` steps from the last pose to this one
        before = (self._quats.copy(), np.asarray(self._pose.root_m, dtype=np.float64).copy())
        pose = self._driving_pose(item.tracked, arrived)
        self._pose = pose
        skin_s = cloth_s = 0.0
        for k in range(1, steps + 1):
            w = k / steps
            if k < steps:
                quats = _nlerp(before[0], self._quats, w)
                root = (1.0 - w) * before[1] + w * np.asarray(pose.root_m)
                step_pose = Pose(root, dict(zip(JOINT_NAMES, quats, strict=True)))
            else:
                step_pose = pose
            t0 = time.perf_counter()
            self._collider.update(self._skinner.posed(step_pose))
            t1 = time.perf_counter()
            for cloth in self._cloth:  # inner first: an outer garment follows them
                cloth.follow_layers()
                cloth.advance(min(dt / steps, self.options.cloth_dt_s))
            skin_s += t1 - t0
            cloth_s += time.perf_counter() - t1
        step_cost = (skin_s + cloth_s) / steps
        self._step_cost_s = (
            step_cost if self._step_cost_s is None else (0.8 * self._step_cost_s + 0.2 * step_cost)
        )
        t2 = time.perf_counter()
        display = [cloth.display_positions() for cloth in self._cloth]
        t3 = time.perf_counter()
        self._drop_backlog()
        frames = {
            c.garment.stream: self._encoders[c.garment.stream].encode(x)
            for c, x in zip(self._cloth, display, strict=True)
        }
        t4 = time.perf_counter()
        timings.update(
            skin=1e3 * skin_s,
            cloth=1e3 * cloth_s,
            display=1e3 * (t3 - t2),
            encode=1e3 * (t4 - t3),
        )
        # (3) adaptive quality on the cloth-thread stage, per cloth step of `cloth_dt_s`
        stage_s = (t4 - started) - (skin_s + cloth_s) * (steps - 1) / steps
        state = self._quality.observe(stage_s, t4)
        if state.changed:
            for cloth in self._cloth:
                cloth.set_level(min(state.level, len(cloth.garment.levels) - 1))
            with self._lock:
                self.stats.level_changes += 1
            log.info("mirror session cloth level %d: %s", state.level, state.reason)
        done = time.perf_counter()
        timings["total"] = 1e3 * (done - arrived)
        self._result_times.append(done)
        recent = [t for t in self._result_times if done - t <= 1.0]
        rate = (len(recent) - 1) / max(done - recent[0], 1e-6) if len(recent) > 1 else 0.0
        with self._lock:
            dropped = self.stats.dropped
        pitch, roll = self.camera_tilt_deg
        result = LiveResult(
            frame_id=item.frame.frame_id,
            capture_t_s=item.frame.capture_t_s,
            tracked=item.tracked.tracked,
            root_m=np.asarray(pose.root_m, dtype=np.float64).copy(),
            rotations={n: q.copy() for n, q in pose.rotations.items()},
            garments=frames,
            timings_ms=timings,
            quality={**state.to_json(), "cloth_steps": steps},
            effective_rate_hz=rate,
            dropped_frames=dropped,
            camera={"pitch_deg": round(pitch, 2), "roll_deg": round(roll, 2)},
            sent_at_s=done,
            spans_s={"track": (item.started_at_s, item.done_at_s), "cloth": (started, done)},
        )
        self._deliver(result)

    def _drop_backlog(self) -> None:
        """Before encoding: when the reader has fallen `results` behind, drop what waits and
        start every stream over, so this frame is a key frame and the reader never gets a
        delta whose predecessor it missed."""
        if self.on_result is not None:
            return
        with self._results_cv:
            if len(self._results) < max(1, self.options.results):
                return
            dropped = len(self._results)
            self._results.clear()
        for enc in self._encoders.values():
            enc.reset()
        with self._lock:
            self.stats.results_dropped += dropped

    def _deliver(self, result: LiveResult) -> None:
        with self._lock:
            self.stats.results += 1
        if self.on_result is not None:
            self.on_result(result)
            return
        with self._results_cv:
            self._results.append(result)
            self._results_cv.notify()


class _NoLandmarker:
    """The tracker's landmarker slot: the session detects itself (`_open_landmarker`)."""

    def detect(self, frame: Any, t_s: float) -> list[LandmarkFrame]:
        raise SpatialTwinError("no_landmarker", "the session detects, not its tracker")

    def close(self) -> None:
        return None


def _check_garments(garments: Sequence[LiveGarment]) -> None:
    if not 1 <= len(garments) <= MAX_GARMENTS:
        raise SpatialTwinError(
            "bad_session",
            f"a session wears 1..{MAX_GARMENTS} garments",
            {"garments": len(garments)},
        )
    streams = [g.stream for g in garments]
    if len(set(streams)) != len(streams):
        raise SpatialTwinError("bad_session", "garment streams must differ", {"streams": streams})
