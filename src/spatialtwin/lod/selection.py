"""Picking a level by the size of a pixel on the target display, as 3D Tiles picks tiles.

A level whose geometric error is at most `max_pixel_error` pixels, when one pixel covers
`mm_per_px` millimetres of the body at its viewing distance, is indistinguishable from the
full mesh on that display; the coarsest such level is the one to send.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Millimetres of body surface per screen pixel on the displays SpatialTwin targets.
# 75-inch 16:9 4K mirror, body at the glass: 1.66 m wide / 3840 px ≈ 0.43 mm/px.
# Product page on a phone: a 1.8 m figure in ~900 device pixels ≈ 2 mm/px.
DISPLAY_PROFILES: dict[str, dict[str, Any]] = {
    "mirror-75in-4k": {"mmPerPx": 0.43, "description": "75-inch 4K smart mirror, life size"},
    "desktop-page": {"mmPerPx": 1.2, "description": "product page, desktop, full-height figure"},
    "phone-page": {"mmPerPx": 2.0, "description": "product page on a phone"},
}
# 3D Tiles renderers default to 16 px of screen-space error; a Hausdorff maximum is far more
# conservative than their per-tile errors, so 4 px keeps silhouettes visually exact.
DEFAULT_MAX_PIXEL_ERROR = 4.0


def pick_level(
    levels: Sequence[dict[str, Any]],
    mm_per_px: float,
    max_pixel_error: float = DEFAULT_MAX_PIXEL_ERROR,
) -> int:
    """Index of the coarsest level whose `geometricError_m` is under the pixel budget."""
    if mm_per_px <= 0:
        raise ValueError("mm_per_px must be positive")
    budget_m = max_pixel_error * mm_per_px / 1000.0
    fitting = [i for i, lv in enumerate(levels) if lv["geometricError_m"] <= budget_m]
    return max(fitting) if fitting else 0
