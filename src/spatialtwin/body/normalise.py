"""Units, up axis and facing of an imported body: into metres, +Y up, facing +Z.

Every decision is explicit and reported, because a wrong guess (a body in centimetres read as
metres, a Z-up scan lying on its back) ruins everything downstream yet is easy to see once named:
- units: a standing adult is 1.3–2.3 m tall, and the unit ranges that fit that span do not
  overlap (17 → dm, 170 → cm, 1700 → mm, 67 → inches), so stature decides when asked to;
- up: glTF is +Y up by specification; OBJ/PLY scans may be Z-up, and the taller of the Y and Z
  extents is the body's height; which end is the head is decided by the footprint (two feet
  cover more floor than the crown of a head);
- facing: for a rig, from its left/right joints (left = +X when facing +Z); for a scan, from the
  feet, whose toes reach forward of the shins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from spatialtwin.errors import SpatialTwinError

Array = NDArray[np.float64]

UNIT_TO_M: dict[str, float] = {"m": 1.0, "dm": 0.1, "cm": 0.01, "mm": 0.001, "in": 0.0254}
HUMAN_HEIGHT_M = (1.3, 2.3)
UNIT_CHOICES = ("auto", *UNIT_TO_M)


@dataclass(frozen=True)
class AxisDecision:
    """A rotation (3, 3) applied to source coordinates, and why it was chosen."""

    rotation: Array
    reason: str


def resolve_units(height_in_file_units: float, units: str) -> tuple[str, float]:
    """(unit name, metres per file unit) for a body this tall in its file's units."""
    if units not in UNIT_CHOICES:
        raise SpatialTwinError(
            "invalid_units",
            f"units must be one of {', '.join(UNIT_CHOICES)}, not {units!r}",
            {"units": units, "allowed": list(UNIT_CHOICES)},
        )
    lo, hi = HUMAN_HEIGHT_M
    if units != "auto":
        height_m = height_in_file_units * UNIT_TO_M[units]
        if not lo <= height_m <= hi:
            raise SpatialTwinError(
                "implausible_size",
                f"the body is {height_m:.3g} m tall when read in {units}; a person is "
                f"{lo}–{hi} m tall: check the units",
                {
                    "height_in_file_units": height_in_file_units,
                    "units": units,
                    "height_m": height_m,
                    "allowed_m": [lo, hi],
                },
                status=422,
            )
        return units, UNIT_TO_M[units]
    for name, scale in UNIT_TO_M.items():
        if lo <= height_in_file_units * scale <= hi:
            return name, scale
    raise SpatialTwinError(
        "implausible_size",
        f"the body is {height_in_file_units:.4g} units tall, which is no human height in "
        f"{', '.join(UNIT_TO_M)} ({lo}–{hi} m); pass the units explicitly",
        {"height_in_file_units": height_in_file_units, "allowed_m": [lo, hi]},
        status=422,
    )


def _rotation_y(angle_rad: float) -> Array:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rotation_taking(a: Array, b: Array) -> Array:
    """The smallest rotation taking unit vector a onto unit vector b."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(a @ b)
    if c < -1 + 1e-9:  # opposite: half a turn about any axis perpendicular to a
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 0.0, 1.0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1 + c)


def _snap_axis(v: Array) -> Array:
    out = np.zeros(3)
    k = int(np.argmax(np.abs(v)))
    out[k] = np.sign(v[k])
    return out


def scan_up_axis(vertices: Array) -> AxisDecision:
    """Up axis of an OBJ/PLY scan: the taller of Y and Z, head end away from the feet."""
    extent = vertices.max(axis=0) - vertices.min(axis=0)
    if extent[2] > extent[1]:
        rot = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # Z-up -> Y-up
        reason = f"Z-up scan (Z extent {extent[2]:.4g} > Y extent {extent[1]:.4g})"
    else:
        rot = np.eye(3)
        reason = f"Y-up (Y extent {extent[1]:.4g} ≥ Z extent {extent[2]:.4g})"
    v = vertices @ rot.T
    if _footprint(v, top=True) > _footprint(v, top=False):
        rot = np.diag([1.0, -1.0, -1.0]) @ rot
        reason += "; upside down (the wider footprint was on top), turned over"
    return AxisDecision(rot, reason)


def _footprint(v: Array, top: bool) -> float:
    """Horizontal bounding-box area of the top or bottom 4 % of the body."""
    lo, hi = v[:, 1].min(), v[:, 1].max()
    cut = 0.04 * (hi - lo)
    band = v[v[:, 1] > hi - cut] if top else v[v[:, 1] < lo + cut]
    ext = band.max(axis=0) - band.min(axis=0)
    return float(ext[0] * ext[2])


def scan_facing(vertices_y_up: Array) -> AxisDecision:
    """Turn about +Y so the feet point to +Z: toes reach forward of the shins."""
    v = vertices_y_up
    lo, hi = v[:, 1].min(), v[:, 1].max()
    h = hi - lo
    feet = v[v[:, 1] < lo + 0.03 * h]
    shins = v[(v[:, 1] > lo + 0.12 * h) & (v[:, 1] < lo + 0.22 * h)]
    if len(feet) == 0 or len(shins) == 0:
        return AxisDecision(np.eye(3), "facing +Z assumed (no feet found)")

    def centre(p: Array) -> Array:
        return 0.5 * (p.min(axis=0) + p.max(axis=0))

    forward = centre(feet) - centre(shins)
    forward[1] = 0.0
    if np.linalg.norm(forward) < 0.005 * h:
        return AxisDecision(np.eye(3), "facing +Z assumed (feet do not point clearly)")
    axis = _snap_axis(forward)
    rot = _rotation_taking(axis, np.array([0.0, 0.0, 1.0]))
    names = {(0, 1): "+X", (0, -1): "-X", (2, 1): "+Z", (2, -1): "-Z"}
    k = int(np.argmax(np.abs(axis)))
    label = names[(k, int(axis[k]))]
    return AxisDecision(rot, f"toes point {label} (feet reach forward of the shins)")


def rig_up_axis(hips: Array, top: Array) -> AxisDecision:
    """glTF's +Y unless the rig's hips→head direction says otherwise (a mis-exported file)."""
    up = top - hips
    if np.linalg.norm(up) < 1e-9:
        return AxisDecision(np.eye(3), "+Y (glTF)")
    up = up / np.linalg.norm(up)
    if up[1] > np.cos(np.deg2rad(45.0)):
        return AxisDecision(np.eye(3), "+Y (glTF; the rig's spine agrees)")
    axis = _snap_axis(up)
    rot = _rotation_taking(axis, np.array([0.0, 1.0, 0.0]))
    return AxisDecision(
        rot, f"the rig's spine points along {axis.astype(int).tolist()}: rotated to +Y"
    )


def rig_facing(left_minus_right: Array) -> AxisDecision:
    """Turn about +Y so the rig's left side is +X (hence it faces +Z)."""
    left = np.array([left_minus_right[0], 0.0, left_minus_right[2]])
    if np.linalg.norm(left) < 1e-9:
        return AxisDecision(np.eye(3), "facing +Z assumed (left and right joints coincide)")
    facing = np.cross(left / np.linalg.norm(left), [0.0, 1.0, 0.0])
    angle = float(np.arctan2(facing[0], facing[2]))  # angle of facing from +Z about +Y
    quarter = np.pi / 2 * np.round(angle / (np.pi / 2))
    if abs(angle - quarter) < np.deg2rad(5.0):
        angle = quarter
    rot = _rotation_y(-angle)
    return AxisDecision(
        rot,
        f"left joints lie {np.degrees(angle):+.0f}° from +X about +Y: turned to face +Z"
        if abs(angle) > 1e-9
        else "left joints at +X: faces +Z already",
    )
