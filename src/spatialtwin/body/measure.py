"""Tape-measure body measurements taken from a mesh, as a tailor would take them.

A girth is the length of a tape pulled taut around the torso at one height: the perimeter of
the convex hull of the torso's horizontal cross-section, which bridges hollows (between the
breasts, the small of the back) exactly as a tape does. Arms are excluded by keeping only the
cross-section loop that encloses the body's midline. Levels are found by search (largest chest,
smallest waist, largest hips) within height bands taken from anthropometric proportions, so the
same code measures generated twins and scans in any A- or T-pose.

Input: vertices in metres, +Y up, feet on y = 0, facing +Z.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import ConvexHull, QhullError

# Height bands as fractions of stature, from adult anthropometric proportions (bust point
# ≈ 0.72 H, natural waist ≈ 0.62 H, hip level ≈ 0.52 H; Drillis & Contini 1966, ISO 8559-1).
CHEST_BAND = (0.68, 0.76)
WAIST_BAND = (0.57, 0.67)
HIPS_BAND_ABOVE_CROTCH_M = (0.03, 0.16)


@dataclass(frozen=True)
class BodyMeasurements:
    """Measurements in metres; girths are taut-tape perimeters."""

    height_m: float
    chest_m: float
    waist_m: float
    hips_m: float
    inseam_m: float
    shoulder_m: float
    chest_level_m: float
    waist_level_m: float
    hips_level_m: float

    def to_json(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def cross_section_loops(
    vertices: NDArray[np.floating], faces: NDArray[np.integer], height_m: float
) -> list[NDArray[np.float64]]:
    """Points (K, 2) in (x, z) of each connected loop where the plane y = height cuts the mesh."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    d = v[:, 1] - height_m
    d = np.where(np.abs(d) < 1e-9, 1e-9, d)
    df = d[f]
    above = df > 0
    count = above.sum(axis=1)
    crossing = (count == 1) | (count == 2)
    if not crossing.any():
        return []
    fc = f[crossing]
    dc = df[crossing]
    ac = above[crossing]
    # Each crossing triangle has exactly two edges with a sign change; intersect them.
    edges = np.stack([fc[:, [0, 1]], fc[:, [1, 2]], fc[:, [2, 0]]], axis=1)  # (T, 3, 2)
    de = np.stack([dc[:, [0, 1]], dc[:, [1, 2]], dc[:, [2, 0]]], axis=1)
    ae = np.stack([ac[:, [0, 1]], ac[:, [1, 2]], ac[:, [2, 0]]], axis=1)
    cut = ae[:, :, 0] != ae[:, :, 1]  # (T, 3), two True per row
    e = edges[cut].reshape(-1, 2, 2)  # (T, 2 edges, 2 verts)
    de = de[cut].reshape(-1, 2, 2)
    t = de[:, :, 0] / (de[:, :, 0] - de[:, :, 1])
    p = v[e[:, :, 0]] + t[:, :, None] * (v[e[:, :, 1]] - v[e[:, :, 0]])  # (T, 2, 3)
    # Connect segments through shared mesh edges: key each point by its sorted edge.
    keys = np.sort(e, axis=2).reshape(-1, 2)
    _, point_id = np.unique(keys, axis=0, return_inverse=True)
    point_id = point_id.reshape(-1, 2)
    n_points = int(point_id.max()) + 1
    graph = coo_matrix(
        (np.ones(len(point_id)), (point_id[:, 0], point_id[:, 1])), shape=(n_points, n_points)
    )
    n_comp, label = connected_components(graph, directed=False)
    xz = np.empty((n_points, 2))
    flat = p.reshape(-1, 3)
    xz[point_id.ravel()] = flat[:, [0, 2]]
    return [xz[label == c] for c in range(n_comp)]


def _hull_contains(points: NDArray[np.float64], q: NDArray[np.float64]) -> bool:
    try:
        hull = ConvexHull(points)
    except QhullError:
        return False
    return bool(np.all(hull.equations[:, :2] @ q + hull.equations[:, 2] <= 1e-9))


def torso_loop(
    vertices: NDArray[np.floating],
    faces: NDArray[np.integer],
    height_m: float,
    centre_xz: NDArray[np.float64],
) -> NDArray[np.float64] | None:
    """The cross-section loop at `height_m` whose hull encloses the body's midline point."""
    loops = [lp for lp in cross_section_loops(vertices, faces, height_m) if len(lp) >= 3]
    enclosing = [lp for lp in loops if _hull_contains(lp, centre_xz)]
    if not enclosing:
        return None
    return max(enclosing, key=len)


def girth_at_height(
    vertices: NDArray[np.floating],
    faces: NDArray[np.integer],
    height_m: float,
    centre_xz: NDArray[np.float64] | None = None,
) -> float:
    """Taut-tape girth (metres) of the torso at `height_m`; 0.0 where no loop encloses it."""
    v = np.asarray(vertices, dtype=np.float64)
    if centre_xz is None:
        centre_xz = midline_xz(v)
    loop = torso_loop(v, faces, height_m, centre_xz)
    if loop is None:
        return 0.0
    return float(ConvexHull(loop).area)  # a 2-D hull's "area" is its perimeter


def midline_xz(vertices: NDArray[np.floating]) -> NDArray[np.float64]:
    """(x, z) of the body's vertical axis: the centre of the torso at mid-height."""
    v = np.asarray(vertices, dtype=np.float64)
    h = v[:, 1].max()
    band = v[(v[:, 1] > 0.55 * h) & (v[:, 1] < 0.65 * h)]
    x = 0.5 * (v[:, 0].min() + v[:, 0].max())  # the body is left-right symmetric overall
    # Depth from the trunk alone: hands held in front of the body must not shift the axis.
    trunk = band[np.abs(band[:, 0] - x) < 0.05]
    trunk = trunk if len(trunk) else band
    z = 0.5 * (trunk[:, 2].min() + trunk[:, 2].max())
    return np.array([x, z])


def crotch_height(vertices: NDArray[np.floating], centre_xz: NDArray[np.float64]) -> float:
    """Height (metres) of the crotch: the lowest surface point on the midline above the knees."""
    v = np.asarray(vertices, dtype=np.float64)
    h = v[:, 1].max()
    for half_width in (0.01, 0.02, 0.035):
        near = (np.abs(v[:, 0] - centre_xz[0]) < half_width) & (v[:, 1] > 0.3 * h)
        if near.sum() > 10:
            return float(v[near, 1].min())
    raise ValueError("no midline vertices: cannot find the crotch")


def armpit_height(
    vertices: NDArray[np.floating], faces: NDArray[np.integer], height_m: float
) -> float:
    """Lowest height (metres) above mid-chest where the arms' loops join the torso's."""
    levels = np.arange(0.64 * height_m, 0.86 * height_m, 0.004)
    counts = np.array([len(cross_section_loops(vertices, faces, y)) for y in levels])
    base = counts[0]
    merged = np.flatnonzero(counts < base)
    return float(levels[merged[0]]) if len(merged) else float(0.76 * height_m)


def bust_height(
    vertices: NDArray[np.float64], centre_xz: NDArray[np.float64], lo_m: float, hi_m: float
) -> float:
    """Height of the bust points: the most forward chest points beside the midline."""
    dx = np.abs(vertices[:, 0] - centre_xz[0])
    sel = (dx > 0.04) & (dx < 0.15) & (vertices[:, 1] > lo_m) & (vertices[:, 1] < hi_m)
    if not sel.any():
        return 0.5 * (lo_m + hi_m)
    return float(vertices[sel][np.argmax(vertices[sel, 2]), 1])


def shoulder_breadth(rest_joints_m: NDArray[np.floating]) -> float:
    """Biacromial breadth (metres): between the acromion points over the upper-arm joints.

    The acromion sits about 2 cm outside the centre of the humeral head, so the breadth is the
    distance between the upper-arm joints plus 4 cm; both sides use the same rule, so a scan's
    value and a generated twin's agree.
    """
    from spatialtwin.body.skeleton import JOINT_INDEX

    j = np.asarray(rest_joints_m, dtype=np.float64)
    left, right = j[JOINT_INDEX["leftUpperArm"]], j[JOINT_INDEX["rightUpperArm"]]
    return float(abs(left[0] - right[0]) + 0.04)


def _search(
    vertices: NDArray[np.float64],
    faces: NDArray[np.int64],
    lo: float,
    hi: float,
    centre: NDArray[np.float64],
    largest: bool,
    steps: int = 33,
) -> tuple[float, float]:
    levels = np.linspace(lo, hi, steps)
    girths = np.array([girth_at_height(vertices, faces, y, centre) for y in levels])
    valid = girths > 0
    if not valid.any():
        raise ValueError(f"no torso cross-section between {lo:.3f} m and {hi:.3f} m")
    idx = np.flatnonzero(valid)
    best = idx[np.argmax(girths[idx])] if largest else idx[np.argmin(girths[idx])]
    # Refine around the best coarse level.
    step = levels[1] - levels[0]
    fine = np.linspace(levels[best] - step, levels[best] + step, 9)
    fg = np.array([girth_at_height(vertices, faces, y, centre) for y in fine])
    fv = fg > 0
    fi = np.flatnonzero(fv)
    k = fi[np.argmax(fg[fi])] if largest else fi[np.argmin(fg[fi])]
    return float(fine[k]), float(fg[k])


def measure_body(
    vertices: NDArray[np.floating],
    faces: NDArray[np.integer],
    rest_joints_m: NDArray[np.floating] | None = None,
) -> BodyMeasurements:
    """Height, chest, waist and hip girths, inseam and shoulder breadth of a standing body.

    Shoulder breadth needs the rig's joints (`rest_joints_m`, canonical order); without them
    it is reported as 0.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    floor = v[:, 1].min()
    if abs(floor) > 1e-3:
        v = v - np.array([0.0, floor, 0.0])
    height = float(v[:, 1].max())
    centre = midline_xz(v)
    crotch = crotch_height(v, centre)
    armpit = armpit_height(v, f, height)
    chest_y = bust_height(
        v, centre, CHEST_BAND[0] * height, min(CHEST_BAND[1] * height, armpit - 0.02)
    )
    chest = girth_at_height(v, f, chest_y, centre)
    waist_lo = max(WAIST_BAND[0] * height, crotch + 0.12)
    waist_y, waist = _search(
        v, f, waist_lo, min(WAIST_BAND[1] * height, chest_y - 0.05), centre, False
    )
    hips_lo = crotch + HIPS_BAND_ABOVE_CROTCH_M[0]
    hips_hi = min(crotch + HIPS_BAND_ABOVE_CROTCH_M[1], waist_y - 0.03)
    hips_y, hips = _search(v, f, hips_lo, hips_hi, centre, True)
    return BodyMeasurements(
        height_m=height,
        chest_m=chest,
        waist_m=waist,
        hips_m=hips,
        inseam_m=crotch,
        shoulder_m=0.0 if rest_joints_m is None else shoulder_breadth(rest_joints_m),
        chest_level_m=chest_y,
        waist_level_m=waist_y,
        hips_level_m=hips_y,
    )
