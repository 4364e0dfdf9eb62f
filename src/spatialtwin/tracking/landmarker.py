"""MediaPipe PoseLandmarker in VIDEO mode over a stream of camera frames.

Frames are NumPy RGB images (H, W, 3) uint8 (grey (H, W) and RGBA are accepted) or encoded
JPEG/WebP/PNG bytes, decoded in memory. Camera frames are biometric data: nothing here writes a
frame to disk or to a log; only landmarks leave this module.

VIDEO mode lets MediaPipe track the person from frame to frame (the detector runs only while
fewer than `max_people` people are tracked) and smooth the landmarks; it needs strictly
increasing timestamps, which `detect` enforces. With `max_people` > 1 every person in view is
returned and `select_person` keeps the shopper: the one already being tracked, else the nearest
(largest) and most centred.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np
from mediapipe.tasks.python.core.base_options import BaseOptions
from mediapipe.tasks.python.vision import pose_landmarker as mp_pose
from mediapipe.tasks.python.vision.core import image as mp_image
from mediapipe.tasks.python.vision.core.vision_task_running_mode import (
    VisionTaskRunningMode,
)
from numpy.typing import NDArray

from spatialtwin.errors import SpatialTwinError
from spatialtwin.tracking.bundle import DEFAULT_VARIANT, model_path
from spatialtwin.tracking.landmarks import LM, LandmarkFrame

Frame = NDArray[np.uint8] | bytes | bytearray | memoryview


@dataclass(frozen=True)
class LandmarkerOptions:
    """Which bundle to run, in which mode, and MediaPipe's confidence thresholds (0..1).

    `video=False` runs IMAGE mode: every frame on its own, no tracking or smoothing, for
    unrelated photos.
    """

    model: str = DEFAULT_VARIANT
    video: bool = True
    max_people: int = 2
    min_detection_confidence: float = 0.5
    min_presence_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    models_dir: Path | None = None


def decode_frame(frame: Frame) -> NDArray[np.uint8]:
    """A contiguous RGB uint8 image from an RGB/grey/RGBA array or encoded image bytes."""
    if isinstance(frame, bytes | bytearray | memoryview):
        buf = np.frombuffer(frame, dtype=np.uint8)
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
        if bgr is None:
            raise SpatialTwinError(
                "bad_frame",
                "frame bytes are not a decodable image (JPEG, WebP or PNG)",
                {"bytes": int(buf.size)},
            )
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    arr = np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or min(arr.shape[:2]) < 16:
        raise SpatialTwinError(
            "bad_frame",
            "a frame array must be uint8 (H, W), (H, W, 3) RGB or (H, W, 4) RGBA",
            {"shape": list(arr.shape), "dtype": str(arr.dtype)},
        )
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    elif arr.shape[2] != 3:
        raise SpatialTwinError(
            "bad_frame", "a frame array needs 1, 3 or 4 channels", {"shape": list(arr.shape)}
        )
    return np.ascontiguousarray(arr)


def _to_arrays(landmarks: list, world: list, size_px: tuple[int, int]) -> LandmarkFrame:
    image = np.array([[p.x, p.y, p.z, p.visibility or 0.0] for p in landmarks], dtype=np.float64)
    presence = np.array([p.presence or 0.0 for p in landmarks], dtype=np.float64)
    world_arr = np.array([[p.x, p.y, p.z, p.visibility or 0.0] for p in world], dtype=np.float64)
    return LandmarkFrame(image, world_arr, presence, size_px)


def select_person(
    people: list[LandmarkFrame], previous_centre: NDArray[np.float64] | None = None
) -> int | None:
    """Index of the shopper among `people`: the one nearest the previous pick, if close,
    else the largest and most centred. None if nobody is there."""
    if not people:
        return None
    centres = np.array([_torso_centre(p) for p in people])
    if previous_centre is not None:
        dist = np.linalg.norm(centres - previous_centre, axis=1)
        best = int(np.argmin(dist))
        if dist[best] < 0.15:
            return best
    scores = []
    for person, centre in zip(people, centres, strict=True):
        xy = person.image[:, :2]
        seen = person.visibility > 0.5
        pts = xy[seen] if seen.sum() >= 4 else xy
        extent = float(np.max(pts[:, 1]) - np.min(pts[:, 1]))
        scores.append(extent - abs(float(centre[0]) - 0.5))
    return int(np.argmax(scores))


def _torso_centre(person: LandmarkFrame) -> NDArray[np.float64]:
    idx = [LM["left_shoulder"], LM["right_shoulder"], LM["left_hip"], LM["right_hip"]]
    return person.image[idx, :2].mean(axis=0)


class PoseLandmarkerStream:
    """One MediaPipe PoseLandmarker (VIDEO mode unless told); feed frames in time order."""

    def __init__(self, options: LandmarkerOptions | None = None) -> None:
        self.options = options or LandmarkerOptions()
        if self.options.max_people < 1:
            raise SpatialTwinError(
                "bad_option",
                "max_people must be at least 1",
                {"max_people": self.options.max_people},
            )
        path = model_path(self.options.model, self.options.models_dir)
        mp_options = mp_pose.PoseLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=(
                VisionTaskRunningMode.VIDEO if self.options.video else VisionTaskRunningMode.IMAGE
            ),
            num_poses=self.options.max_people,
            min_pose_detection_confidence=self.options.min_detection_confidence,
            min_pose_presence_confidence=self.options.min_presence_confidence,
            min_tracking_confidence=self.options.min_tracking_confidence,
        )
        self._landmarker: mp_pose.PoseLandmarker | None = (
            mp_pose.PoseLandmarker.create_from_options(mp_options)
        )
        self._last_ms: int | None = None
        self._last_t_s: float | None = None

    def detect(self, frame: Frame, t_s: float) -> list[LandmarkFrame]:
        """Everyone's landmarks in `frame`, taken at `t_s` seconds (non-decreasing)."""
        if self._landmarker is None:
            raise SpatialTwinError("landmarker_closed", "the pose landmarker has been closed")
        if not np.isfinite(t_s):
            raise SpatialTwinError("bad_timestamp", "frame time must be finite", {"t": t_s})
        if self._last_t_s is not None and t_s < self._last_t_s:
            raise SpatialTwinError(
                "non_monotonic_timestamp",
                "frame times must not go backwards",
                {"t": t_s, "previous": self._last_t_s},
            )
        t_ms = round(t_s * 1000.0)
        if self._last_ms is not None and t_ms <= self._last_ms:
            t_ms = self._last_ms + 1  # MediaPipe needs strictly increasing milliseconds
        rgb = decode_frame(frame)
        image = mp_image.Image(image_format=mp_image.ImageFormat.SRGB, data=rgb)
        if self.options.video:
            result = self._landmarker.detect_for_video(image, t_ms)
        else:
            result = self._landmarker.detect(image)
        self._last_ms, self._last_t_s = t_ms, t_s
        size = (int(rgb.shape[1]), int(rgb.shape[0]))
        return [
            _to_arrays(lms, world, size)
            for lms, world in zip(result.pose_landmarks, result.pose_world_landmarks, strict=True)
        ]

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> PoseLandmarkerStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # At interpreter shutdown MediaPipe's library, and this module's globals (contextlib
        # among them), may already be gone: no name lookups here beyond the object itself.
        try:  # noqa: SIM105 - contextlib may be None here
            self.close()
        except Exception:
            pass
