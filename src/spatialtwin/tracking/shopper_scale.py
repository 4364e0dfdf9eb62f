"""The shopper's height from world landmarks, so a mirror can pick the closest twin size.

This is advice for choosing among existing twins; it never rescales a garment or a twin.

Stature is estimated from 3D segment lengths, which do not change as the person bends:
ankle→knee→hip (mean of the legs), hip midpoint→shoulder midpoint, shoulder midpoint→eye
midpoint. In standard anthropometric proportions (Drillis & Contini 1966; Winter,
"Biomechanics and Motor Control of Human Movement") the ankle is at 0.039 H and the eyes at
about 0.936 H, so that chain spans about (0.936 - 0.039) H = 0.897 H. MediaPipe's world
landmarks are metric estimates from a single camera, so a single frame is noisy; take the
median over frames (`ShopperHeight`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from spatialtwin.tracking.landmarks import LM

CHAIN_FRACTION_OF_HEIGHT = 0.936 - 0.039
PLAUSIBLE_HEIGHT_M = (1.0, 2.4)


def height_from_landmarks_m(
    world_m: NDArray[np.float64], visibility: NDArray[np.float64], min_visibility: float = 0.6
) -> float | None:
    """Stature (metres) from one frame's world landmarks (33, 3), or None if not all seen."""
    legs = []
    for side in ("left", "right"):
        ids = [LM[f"{side}_ankle"], LM[f"{side}_knee"], LM[f"{side}_hip"]]
        if (visibility[ids] >= min_visibility).all():
            pts = world_m[ids]
            legs.append(float(np.linalg.norm(np.diff(pts, axis=0), axis=1).sum()))
    upper = [
        LM[n]
        for n in (
            "left_shoulder",
            "right_shoulder",
            "left_hip",
            "right_hip",
            "left_eye",
            "right_eye",
        )
    ]
    if not legs or not (visibility[upper] >= min_visibility).all():
        return None
    hip_mid = (world_m[LM["left_hip"]] + world_m[LM["right_hip"]]) / 2
    shoulder_mid = (world_m[LM["left_shoulder"]] + world_m[LM["right_shoulder"]]) / 2
    eye_mid = (world_m[LM["left_eye"]] + world_m[LM["right_eye"]]) / 2
    chain = (
        float(np.mean(legs))
        + float(np.linalg.norm(shoulder_mid - hip_mid))
        + float(np.linalg.norm(eye_mid - shoulder_mid))
    )
    height = chain / CHAIN_FRACTION_OF_HEIGHT
    lo, hi = PLAUSIBLE_HEIGHT_M
    return height if lo <= height <= hi else None


class ShopperHeight:
    """Running median of per-frame stature estimates (metres) over the last `window` frames."""

    def __init__(self, window: int = 90) -> None:
        self._samples: deque[float] = deque(maxlen=window)

    def add(self, height_m: float | None) -> None:
        if height_m is not None:
            self._samples.append(height_m)

    def reset(self) -> None:
        self._samples.clear()

    @property
    def samples(self) -> int:
        return len(self._samples)

    @property
    def height_m(self) -> float | None:
        return float(np.median(self._samples)) if self._samples else None


def closest_twin_size(height_m: float, twin_heights_m: Mapping[str, float]) -> str:
    """The twin size whose height (metres) is closest to the shopper's."""
    if not twin_heights_m:
        raise ValueError("no twin sizes to choose from")
    return min(twin_heights_m, key=lambda k: abs(twin_heights_m[k] - height_m))
