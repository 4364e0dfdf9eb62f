"""What a mirror sends, checked before any work: camera frames and client-side landmarks.

Outside input is hostile. A frame is refused, with a `SpatialTwinError` the protocol layer can
answer, before it costs memory or time: encoded bytes over `MAX_FRAME_BYTES`, or an image whose
header claims more than `MAX_FRAME_PIXELS` (read from the header alone, without decoding: a
small JPEG can claim a gigapixel), arrays of the wrong type or shape, landmarks that are not
finite or not where a person can be. Frames are decoded in memory only (`decode_checked`);
nothing here writes or logs their bytes.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from spatialtwin.errors import SpatialTwinError
from spatialtwin.tracking.landmarker import decode_frame
from spatialtwin.tracking.landmarks import LANDMARK_COUNT, LandmarkFrame

MAX_FRAME_BYTES = 4 * 1024 * 1024
MAX_FRAME_PIXELS = 4096 * 4096
MIN_FRAME_SIDE_PX = 16
MAX_WORLD_M = 3.0  # a landmark this far from the hips is not on a person
MAX_FRAME_ID = 2**53


@dataclass
class FrameInput:
    """One frame as it waits for the tracking thread: the camera frame or the landmarks."""

    frame_id: int
    capture_t_s: float | None
    frame: Any  # encoded bytes or an RGB array; dropped once decoded
    landmarks: LandmarkFrame | None
    arrived_at_s: float = 0.0


def _check_id_and_time(frame_id: Any, capture_t_s: Any) -> tuple[int, float | None]:
    if isinstance(frame_id, bool) or not isinstance(frame_id, int | np.integer):
        raise SpatialTwinError(
            "bad_frame", "frame id must be an integer", {"type": type(frame_id).__name__}
        )
    if not 0 <= int(frame_id) < MAX_FRAME_ID:
        raise SpatialTwinError("bad_frame", "frame id out of range", {"frame_id": int(frame_id)})
    if capture_t_s is not None:
        if isinstance(capture_t_s, bool) or not isinstance(capture_t_s, int | float | np.floating):
            raise SpatialTwinError("bad_frame", "capture time must be a number of seconds", None)
        if not math.isfinite(float(capture_t_s)):
            raise SpatialTwinError("bad_frame", "capture time must be finite", None)
        capture_t_s = float(capture_t_s)
    return int(frame_id), capture_t_s


def check_frame(frame_id: Any, frame: Any, capture_t_s: Any = None) -> FrameInput:
    """A camera frame checked for size and type (not yet decoded)."""
    fid, t = _check_id_and_time(frame_id, capture_t_s)
    if isinstance(frame, bytes | bytearray | memoryview):
        size = len(frame)
        if not 0 < size <= MAX_FRAME_BYTES:
            raise SpatialTwinError(
                "frame_too_large" if size else "bad_frame",
                f"an encoded frame must be 1 byte .. {MAX_FRAME_BYTES} bytes",
                {"bytes": size, "limit": MAX_FRAME_BYTES},
                status=413 if size else 400,
            )
        width, height = _encoded_size_px(bytes(frame))
        _check_pixels(width, height)
        return FrameInput(fid, t, bytes(frame), None)
    if isinstance(frame, np.ndarray):
        if frame.dtype != np.uint8 or frame.ndim not in (2, 3):
            raise SpatialTwinError(
                "bad_frame",
                "a frame array must be uint8 (H, W) or (H, W, 3|4)",
                {"shape": list(frame.shape), "dtype": str(frame.dtype)},
            )
        if frame.ndim == 3 and frame.shape[2] not in (3, 4):
            raise SpatialTwinError("bad_frame", "a frame array needs 1, 3 or 4 channels", None)
        _check_pixels(int(frame.shape[1]), int(frame.shape[0]))
        return FrameInput(fid, t, frame, None)
    raise SpatialTwinError(
        "bad_frame",
        "a frame is encoded image bytes or a uint8 array",
        {"type": type(frame).__name__},
    )


def _encoded_size_px(data: bytes) -> tuple[int, int]:
    """(width, height) from an image's header, without decoding its pixels."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format not in ("JPEG", "WEBP", "PNG"):
                raise SpatialTwinError(
                    "bad_frame", "frames are JPEG, WebP or PNG", {"format": im.format}
                )
            return int(im.width), int(im.height)
    except SpatialTwinError:
        raise
    except Exception as exc:  # PIL raises many kinds on garbage
        raise SpatialTwinError(
            "bad_frame", "frame bytes are not a JPEG, WebP or PNG image", {"bytes": len(data)}
        ) from exc


def _check_pixels(width: int, height: int) -> None:
    if min(width, height) < MIN_FRAME_SIDE_PX or width * height > MAX_FRAME_PIXELS:
        raise SpatialTwinError(
            "bad_frame",
            f"a frame must be at least {MIN_FRAME_SIDE_PX} px a side and at most "
            f"{MAX_FRAME_PIXELS} pixels",
            {"width": width, "height": height},
        )


def decode_checked(frame: Any) -> NDArray[np.uint8]:
    """The RGB pixels of a checked frame, decoded in memory."""
    return decode_frame(frame)


def check_landmarks(
    frame_id: Any, image: Any, world: Any, size_px: Any, capture_t_s: Any = None
) -> FrameInput:
    """Client-side landmarks checked and wrapped as the tracker takes them."""
    fid, t = _check_id_and_time(frame_id, capture_t_s)
    img = _float_rows(image, (4, 5), "image")
    wld = _float_rows(world, (3, 4), "world")
    if np.abs(img[:, :2]).max() > 4.0 or not ((img[:, 3] >= 0) & (img[:, 3] <= 1)).all():
        raise SpatialTwinError(
            "bad_landmarks", "image landmarks must be normalised, visibility in 0..1", None
        )
    if np.abs(wld[:, :3]).max() > MAX_WORLD_M:
        raise SpatialTwinError(
            "bad_landmarks", f"world landmarks must lie within {MAX_WORLD_M} m of the hips", None
        )
    if (
        not isinstance(size_px, list | tuple)
        or len(size_px) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in size_px)
    ):
        raise SpatialTwinError("bad_landmarks", "size_px must be [width, height] integers", None)
    _check_pixels(int(size_px[0]), int(size_px[1]))
    presence = img[:, 4] if img.shape[1] == 5 else np.ones(LANDMARK_COUNT)
    world4 = np.zeros((LANDMARK_COUNT, 4))
    world4[:, :3] = wld[:, :3]
    world4[:, 3] = wld[:, 3] if wld.shape[1] == 4 else img[:, 3]
    frame = LandmarkFrame(
        img[:, :4].copy(), world4, presence.copy(), (int(size_px[0]), int(size_px[1]))
    )
    return FrameInput(fid, t, None, frame)


def _float_rows(values: Any, widths: tuple[int, ...], what: str) -> NDArray[np.float64]:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SpatialTwinError("bad_landmarks", f"{what} landmarks must be numbers", None) from exc
    if arr.shape[0:1] != (LANDMARK_COUNT,) or arr.ndim != 2 or arr.shape[1] not in widths:
        raise SpatialTwinError(
            "bad_landmarks",
            f"{what} landmarks must be ({LANDMARK_COUNT}, {'|'.join(map(str, widths))})",
            {"shape": list(arr.shape)},
        )
    if not np.isfinite(arr).all():
        raise SpatialTwinError("bad_landmarks", f"{what} landmarks must be finite", None)
    return arr
