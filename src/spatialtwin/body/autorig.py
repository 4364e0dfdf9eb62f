"""Rigging an unrigged scan: place the canonical skeleton from geometry, then skin by heat.

Skeleton: a standing scan (metres, +Y up, facing +Z, feet on y = 0, arms away from the body in
an A- or T-pose) is read like a tailor reads a figure. Legs are followed by horizontal
cross-sections below the crotch; the trunk's joints sit at the centres of its cross-sections at
fixed fractions of stature (`TRUNK_LEVELS`); each arm is followed from its fingertip by
geodesic rings, whose centres trace the arm's axis whatever its angle, and the wrist, elbow and
shoulder sit at anthropometric distances along it (hand 0.108 H, forearm 0.150 H, upper arm
0.172 H; Drillis & Contini 1966).

Weights: Baran & Popović's bone heat (Pinocchio, SIGGRAPH 2007). For each bone j the weights
solve (−Δ + H) w_j = H p_j, where H_ii = 1/d_i² for the distance d_i from vertex i to its
nearest bone *visible* from it (the straight segment stays inside the body) and p_ij = 1 if that
bone is j. With a cotangent Laplacian whose weights are clamped at zero the system is an M-matrix,
so every w lies in [0, 1] and they sum to one, on any triangle soup: non-manifold scans, holes
and separate shells included (every vertex has H > 0, so no shell is left undetermined).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.sparse.csgraph import dijkstra
from scipy.sparse.linalg import splu
from scipy.spatial import ConvexHull, QhullError, cKDTree

from spatialtwin.body.measure import (
    armpit_height,
    cross_section_loops,
    crotch_height,
    midline_xz,
    torso_loop,
)
from spatialtwin.body.skeleton import JOINT_INDEX, JOINT_NAMES, Skeleton
from spatialtwin.body.skinning import SkinWeights
from spatialtwin.errors import SpatialTwinError
from spatialtwin.geometry import vertex_normals

UP = (0.0, 1.0, 0.0)  # the normal of a vertex whose triangles have no area

Array = NDArray[np.float64]

# Trunk joint heights as fractions of stature: the generated bodies' layout (parametric.py).
TRUNK_LEVELS = {"spine": 0.60, "chest": 0.68, "upperChest": 0.74, "neck": 0.835, "head": 0.875}
HAND_LEN, FOREARM_LEN, UPPER_ARM_LEN = 0.108, 0.150, 0.172  # fractions of stature
VISIBILITY_SAMPLES = (0.2, 0.35, 0.5, 0.65, 0.8, 0.95)
CANDIDATE_BONES = 4
MIN_BONE_DISTANCE_M = 0.005
# Pinocchio uses 1; larger values narrow the blend (length d/sqrt(c)) so that the ≤ 4 influences
# glTF allows keep (nearly) all of a vertex's weight and truncation leaves no visible seams.
HEAT_SHARPNESS = 6.0


def _fail(message: str, detail: object = None) -> SpatialTwinError:
    return SpatialTwinError("autorig_failed", message, detail, status=422)


def _polygon_centre(points: Array) -> Array:
    """Area centroid of the convex hull of 2-D points (x, z)."""
    try:
        hull = ConvexHull(points)
    except (QhullError, ValueError):
        return points.mean(axis=0)
    p = points[hull.vertices]
    q = np.roll(p, -1, axis=0)
    cross = p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1]
    area = cross.sum() / 2
    if abs(area) < 1e-12:
        return p.mean(axis=0)
    return np.array([((p[:, 0] + q[:, 0]) * cross).sum(), ((p[:, 1] + q[:, 1]) * cross).sum()]) / (
        6 * area
    )


def _leg_centre(v: Array, f: NDArray[np.int64], y: float, cx: float, sign: float) -> Array:
    """(x, z) centre of one leg's cross-section at height y."""
    loops = [lp for lp in cross_section_loops(v, f, y) if len(lp) >= 3]
    side = [lp for lp in loops if sign * (lp[:, 0].mean() - cx) > 0]
    if not side:
        raise _fail(
            f"no {'left' if sign > 0 else 'right'} leg cross-section at {y:.3f} m: "
            "is this a standing body with separate legs?"
        )
    return _polygon_centre(max(side, key=len))


def body_axis_xz(v: Array, f: NDArray[np.int64]) -> Array:
    """(x, z) of the trunk's axis: the centre of the waist-level section around the midline.

    Unlike a bounding box of a height band, this ignores hands held in front of the body.
    """
    H = float(v[:, 1].max())
    cx = 0.5 * (v[:, 0].min() + v[:, 0].max())
    for frac in (0.62, 0.58, 0.66):
        loops = [lp for lp in cross_section_loops(v, f, frac * H) if len(lp) >= 3]
        around = [lp for lp in loops if lp[:, 0].min() < cx < lp[:, 0].max()]
        if around:
            return _polygon_centre(max(around, key=len))
    return midline_xz(v)


def _trunk_centre(v: Array, f: NDArray[np.int64], y: float, centre: Array) -> Array:
    loop = torso_loop(v, f, y, centre)
    return centre if loop is None else _polygon_centre(loop)


def _edge_graph(v: Array, f: NDArray[np.int64]) -> sp.csr_matrix:
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    length = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)
    n = len(v)
    g = sp.coo_matrix((length, (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    return g.maximum(g.T)


def _arm_axis_points(
    v: Array, graph: sp.csr_matrix, tip: int, height: float
) -> tuple[Array, Array]:
    """Centres of geodesic rings around the fingertip and their distance along the arm."""
    reach = 0.5 * height
    dist = dijkstra(graph, indices=tip, limit=reach)
    step = 0.01 * height
    ok = np.isfinite(dist)
    bins = (dist[ok] / step).astype(np.int64)
    counts = np.bincount(bins)
    sums = np.stack([np.bincount(bins, weights=v[ok, k]) for k in range(3)], axis=1)
    filled = counts > 0
    centres = sums[filled] / counts[filled, None]
    if filled.sum() < 30:
        raise _fail(
            "the arm could not be followed from the fingertip (is the hand a separate "
            "piece of mesh?)"
        )
    # Distance along the arm: straight-line distance of each ring centre from the fingertip
    # (a polyline through noisy centres would overstate it), made non-decreasing.
    along = np.maximum.accumulate(np.linalg.norm(centres - v[tip], axis=1))
    return centres, along


def _point_at(centres: Array, along: Array, s: float) -> Array:
    return np.array([np.interp(s, along, centres[:, k]) for k in range(3)])


def place_skeleton(vertices_m: Array, faces: NDArray[np.int64]) -> Skeleton:
    """Canonical joints for a standing scan (metres, +Y up, facing +Z, feet on y = 0)."""
    v = np.asarray(vertices_m, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    H = float(v[:, 1].max())
    s = H / 1.75
    centre = body_axis_xz(v, f)
    cx = float(centre[0])
    try:
        crotch = crotch_height(v, centre)
    except ValueError as exc:
        raise _fail(f"no crotch found: {exc}") from exc
    if not 0.3 * H < crotch < 0.6 * H:
        raise _fail(
            f"the crotch at {crotch:.3f} m is not at 30–60 % of the {H:.3f} m stature",
            {"crotch_m": crotch, "height_m": H},
        )
    armpit = armpit_height(v, f, H)
    j = np.zeros((len(JOINT_NAMES), 3))
    tips: dict[str, Array] = {}

    def put(name: str, p: Array) -> None:
        j[JOINT_INDEX[name]] = p

    # (1) Legs, by horizontal cross-sections.
    upper_leg_y = crotch + 0.04 * H
    ankle_y = 0.045 * H
    knee_y = ankle_y + 0.5 * (upper_leg_y - ankle_y) + 0.01 * s
    for side, sign in (("left", 1.0), ("right", -1.0)):
        thigh = _leg_centre(v, f, crotch - 0.03 * H, cx, sign)
        knee = _leg_centre(v, f, knee_y, cx, sign)
        shin = _leg_centre(v, f, 0.085 * H, cx, sign)
        put(f"{side}UpperLeg", np.array([thigh[0], upper_leg_y, thigh[1]]))
        put(f"{side}LowerLeg", np.array([knee[0], knee_y, knee[1]]))
        put(f"{side}Foot", np.array([shin[0], ankle_y, shin[1]]))
        foot = v[(v[:, 1] < 0.06 * H) & (sign * (v[:, 0] - cx) > 0)]
        if len(foot) == 0:
            raise _fail(f"no {side} foot near the floor")
        toe_tip = foot[np.argmax(foot[:, 2])]
        front = foot[foot[:, 2] > toe_tip[2] - 0.05 * s]
        toes_z = shin[1] + 0.67 * (toe_tip[2] - shin[1])
        put(f"{side}Toes", np.array([front[:, 0].mean(), 0.011 * H, toes_z]))
        tips[f"{side}Toes"] = np.array([front[:, 0].mean(), 0.0086 * H, toe_tip[2]])

    # (2) Trunk, at the centres of its cross-sections.
    hips_y = upper_leg_y + 0.017 * H
    hc = _trunk_centre(v, f, hips_y, centre)
    put("hips", np.array([hc[0], hips_y, hc[1]]))
    for name, frac in TRUNK_LEVELS.items():
        # The neck's section is taken low and the head follows it: higher sections catch the
        # chin and jaw, whose centre lies well in front of the cervical spine.
        section_y = {"neck": 0.815 * H, "head": 0.815 * H}.get(name, frac * H)
        c = _trunk_centre(v, f, section_y, centre)
        put(name, np.array([c[0], frac * H, c[1]]))
    head = j[JOINT_INDEX["head"]]
    tips["head"] = np.array([head[0], H, head[2]])

    # (3) Arms, followed from the fingertips along geodesic rings. The rings' centres trace the
    # arm's axis until they spill onto the torso; that junction gives the arm's length, and the
    # joints sit at Drillis & Contini's fractions of it.
    graph = _edge_graph(v, f)
    above = v[:, 1] > 0.25 * H
    chest_loop = torso_loop(v, f, armpit - 0.03 * H, centre)
    half_width = 0.5 * float(np.ptp(chest_loop[:, 0])) if chest_loop is not None else 0.09 * H
    arm_total = HAND_LEN + FOREARM_LEN + UPPER_ARM_LEN
    for side, sign in (("left", 1.0), ("right", -1.0)):
        cand = np.flatnonzero(above & (sign * (v[:, 0] - cx) > 0))
        if len(cand) == 0:
            raise _fail(f"no {side} arm found")
        tip = int(cand[np.argmax(sign * (v[cand, 0] - cx))])
        centres, along = _arm_axis_points(v, graph, tip, H)
        inside = np.flatnonzero(sign * (centres[:, 0] - cx) < half_width)
        if len(inside) == 0 or along[inside[0]] < 0.15 * H:
            raise _fail(
                f"the {side} arm could not be told from the torso: are the arms away "
                "from the body (A- or T-pose)?"
            )
        length = float(along[inside[0]])
        wrist = _point_at(centres, along, length * HAND_LEN / arm_total)
        elbow_s = length * (HAND_LEN + FOREARM_LEN) / arm_total
        elbow = _point_at(centres, along, elbow_s)
        # Rings near the armpit spill onto the torso: extend the upper arm's lower part instead.
        mid = (along > elbow_s) & (along < elbow_s + 0.6 * (length - elbow_s))
        if mid.sum() >= 3:
            pts = np.vstack([elbow, centres[mid]])
            axis = np.linalg.svd(pts - pts.mean(axis=0))[2][0]
            direction = axis if axis @ (pts[-1] - elbow) > 0 else -axis
        else:
            direction = (elbow - wrist) / np.linalg.norm(elbow - wrist)
        shoulder_joint = elbow + direction * (length - elbow_s)
        put(f"{side}UpperArm", shoulder_joint)
        put(f"{side}LowerArm", elbow)
        put(f"{side}Hand", wrist)
        put(
            f"{side}Shoulder",
            np.array(
                [
                    cx + 0.15 * (shoulder_joint[0] - cx),
                    shoulder_joint[1] + 0.005 * H,
                    shoulder_joint[2],
                ]
            ),
        )
        tips[f"{side}Hand"] = v[tip].copy()
    return Skeleton(j, tips)


# ---------------------------------------------------------------- skin weights


def _bone_segments(skeleton: Skeleton) -> tuple[Array, Array]:
    starts = skeleton.rest_positions_m
    ends = np.array([skeleton.bone_tip(n) for n in JOINT_NAMES])
    return starts, ends


def _closest_on_segments(p: Array, a: Array, b: Array) -> tuple[Array, Array]:
    """Closest points (N, B, 3) on each of B segments to each of N points, and distances."""
    ab = b - a
    denom = np.maximum((ab * ab).sum(axis=1), 1e-12)
    t = np.clip(((p[:, None, :] - a[None]) * ab[None]).sum(axis=2) / denom, 0.0, 1.0)
    q = a[None] + t[..., None] * ab[None]
    return q, np.linalg.norm(p[:, None, :] - q, axis=2)


def cotangent_laplacian(vertices: Array, faces: NDArray[np.int64]) -> tuple[sp.csr_matrix, Array]:
    """Stiffness matrix K (positive semi-definite; cotangents clamped at 0) and lumped areas.

    Clamping keeps K an M-matrix on obtuse or degenerate triangles of scans, which is what the
    maximum principle (weights within [0, 1]) needs.
    """
    n = len(vertices)
    tri = vertices[faces]
    rows, cols, vals = [], [], []
    for k in range(3):
        i, jj, o = faces[:, (k + 1) % 3], faces[:, (k + 2) % 3], faces[:, k]
        u = vertices[i] - vertices[o]
        w = vertices[jj] - vertices[o]
        cross = np.linalg.norm(np.cross(u, w), axis=1)
        cot = (u * w).sum(axis=1) / np.maximum(cross, 1e-12)
        cot = np.clip(cot, 0.0, 1e3) / 2
        rows += [i, jj]
        cols += [jj, i]
        vals += [cot, cot]
    off = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    ).tocsr()
    K = sp.diags(np.asarray(off.sum(axis=1)).ravel()) - off
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    mass = np.bincount(faces.ravel(), weights=np.repeat(area / 3, 3), minlength=n)
    return K.tocsr(), np.maximum(mass, 1e-12)


def nearest_visible_bone(
    vertices: Array, normals: Array, skeleton: Skeleton
) -> tuple[NDArray[np.int64], Array]:
    """Each vertex's nearest bone whose segment stays inside the body, and its distance (m).

    Inside-ness of a sample point is judged against the nearest surface vertex: the point is
    outside when it lies well in front of that vertex's tangent plane. A vertex that sees no
    bone (a fold, a stray shell) falls back to its nearest bone.
    """
    a, b = _bone_segments(skeleton)
    closest, dist = _closest_on_segments(vertices, a, b)
    order = np.argsort(dist, axis=1)[:, :CANDIDATE_BONES]
    n = len(vertices)
    tree = cKDTree(vertices)
    rows = np.arange(n)
    chosen = order[:, 0].copy()
    decided = np.zeros(n, dtype=bool)
    t = np.asarray(VISIBILITY_SAMPLES)
    for c in range(CANDIDATE_BONES):
        todo = np.flatnonzero(~decided)
        if len(todo) == 0:
            break
        bone = order[todo, c]
        q = closest[todo, bone]
        p = vertices[todo]
        flat = (p[:, None, :] + t[None, :, None] * (q - p)[:, None, :]).reshape(-1, 3)
        _, near = tree.query(flat, workers=-1)
        offset = flat - vertices[near]
        ahead = (offset * normals[near]).sum(axis=1)
        outside = ahead > 0.25 * np.linalg.norm(offset, axis=1) + 1e-4
        visible = ~outside.reshape(len(todo), len(t)).any(axis=1)
        chosen[todo[visible]] = bone[visible]
        decided[todo[visible]] = True
    return chosen, dist[rows, chosen]


def heat_weights(vertices_m: Array, faces: NDArray[np.int64], skeleton: Skeleton) -> SkinWeights:
    """Bone-heat skin weights (Baran & Popović 2007) of a welded mesh, ≤ 4 per vertex."""
    v = np.asarray(vertices_m, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    normals = vertex_normals(v, f, fallback=UP)
    bone, d = nearest_visible_bone(v, normals, skeleton)
    K, mass = cotangent_laplacian(v, f)
    h = HEAT_SHARPNESS * mass / np.maximum(d, MIN_BONE_DISTANCE_M) ** 2
    A = (K + sp.diags(h)).tocsc()
    rhs = np.zeros((len(v), len(JOINT_NAMES)))
    rhs[np.arange(len(v)), bone] = h
    w = splu(A).solve(rhs)
    w = np.clip(w, 0.0, 1.0)
    w[w < 0.01] = 0.0
    # Every vertex keeps at least its own bone.
    w[np.arange(len(v)), bone] += 1e-6
    return SkinWeights.from_dense(w, min_weight=1e-5)


def autorig(vertices_m: Array, faces: NDArray[np.int64]) -> tuple[Skeleton, SkinWeights]:
    """Skeleton and skin weights for a welded scan mesh in the canonical frame."""
    skeleton = place_skeleton(vertices_m, faces)
    return skeleton, heat_weights(vertices_m, faces, skeleton)
