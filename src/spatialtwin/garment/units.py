"""True scale: which unit and which up-axis a garment file was authored in.

A file states neither reliably (OBJ has no units; MakeHuman exports decimetres; glTF promises
metres but exporters get it wrong), so both are inferred from the garment's extent: a garment is
thin front-to-back, so its smallest extent is its depth, and its height must be a plausible
length for its category (a T-shirt is ~0.6–0.8 m long: 70 in centimetres, 7 in decimetres). The
decision is recorded and reported; an explicit unit always wins. Converting units is not
rescaling: a garment is never scaled to fit a body.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from spatialtwin.errors import SpatialTwinError

UNIT_M = {"m": 1.0, "dm": 0.1, "cm": 0.01, "mm": 0.001, "in": 0.0254}
UNITS = ("auto", *UNIT_M)

# Plausible garment height range and typical height (metres) per category, from apparel size
# charts: T-shirt body length 0.6–0.8 m, knee skirt ~0.6 m, full-length trousers ~1.0 m
# (shorts from ~0.25 m), a dress 0.8–1.4 m, an outfit of top and trousers ~1.3 m.
CATEGORY_HEIGHT_M: dict[str, tuple[float, float, float]] = {
    "top": (0.25, 1.05, 0.70),
    "outerwear": (0.35, 1.50, 0.80),
    "dress": (0.55, 1.75, 1.00),
    "skirt": (0.20, 1.20, 0.60),
    "trousers": (0.20, 1.35, 1.00),
    "outfit": (0.50, 2.00, 1.30),
}
CATEGORIES = tuple(CATEGORY_HEIGHT_M)


@dataclass(frozen=True)
class UnitDecision:
    units: str
    detected: bool
    up_axis: str  # "+Y" or "+Z" as authored
    height_m: float  # vertical extent after conversion
    reason: str


def detect_up_axis(vertices: NDArray[np.float64]) -> str:
    """'+Z' when the thinnest extent is along Y (a Z-up file lying on its back), else '+Y'."""
    extent = np.ptp(vertices, axis=0)
    return "+Z" if int(np.argmin(extent)) == 1 else "+Y"


def to_y_up(vertices: NDArray[np.float64], up_axis: str) -> NDArray[np.float64]:
    """Rotate a Z-up (front −Y) file into glTF's +Y up, front +Z: (x, y, z) → (x, z, −y)."""
    if up_axis == "+Y":
        return vertices
    return np.column_stack([vertices[:, 0], vertices[:, 2], -vertices[:, 1]])


def decide_units(height_file_units: float, category: str, requested: str = "auto") -> UnitDecision:
    """Pick the unit that makes the garment a plausible height for its category."""
    lo, hi, typical = CATEGORY_HEIGHT_M[category]
    if requested != "auto":
        if requested not in UNIT_M:
            raise SpatialTwinError(
                "invalid_units", f"units must be one of {list(UNITS)}", {"units": requested}
            )
        return UnitDecision(
            requested,
            False,
            "+Y",
            height_file_units * UNIT_M[requested],
            f"given explicitly ({requested})",
        )
    candidates = []
    for unit, scale in UNIT_M.items():
        height = height_file_units * scale
        if lo <= height <= hi:
            candidates.append((abs(np.log(height / typical)), unit, height))
    if not candidates:
        raise SpatialTwinError(
            "units_undetected",
            f"the garment is {height_file_units:g} file units tall; no unit "
            f"({', '.join(UNIT_M)}) makes that a plausible {category} ({lo}–{hi} m); "
            "give the units explicitly",
            {"height_file_units": height_file_units, "category": category, "range_m": [lo, hi]},
            status=422,
        )
    _, unit, height = min(candidates)
    return UnitDecision(
        unit,
        True,
        "+Y",
        height,
        f"{height_file_units:g} units tall: {height:.3f} m in {unit} is the plausible "
        f"{category} height closest to {typical} m",
    )
