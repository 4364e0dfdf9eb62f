"""Body-to-body correspondence: where each point of one rigged body lands on another.

Refitting a garment authored on one body (MakeHuman's hm08, or an avatar exported beside the
garment) onto a twin needs, for every point of the authoring body that the garment is bound to,
its counterpart on the twin. Three steps, each cheap and deterministic:

1. **Pose alike** (`pose_alike`): rotate the authoring body's limbs so that its upper and lower
   arms and legs point where the twin's do (an A-pose at 30° and one at 45° differ by the
   shoulders' rotation only); feet stay flat, hands follow the forearms, the trunk is not
   rotated (rigs place trunk joints too differently for their directions to mean anything).
2. **Proportions** (`map_points`): every point is carried in the frame of the parts its skin
   weights name — along each limb bone by its fraction of the bone's length and around it by
   the ratio of the two bodies' radii at that fraction and angle; on the trunk by height
   between matching landmarks (crotch, hips, waist, chest, neck) and the ratio of the two
   trunks' radii at that height and angle. Parts blend by the skin weights, as in skinning.
3. **Snap** (`snap_to_surface`): the mapped skin is moved onto the twin's surface along the
   twin's normals where the two surfaces face alike, and that displacement, smoothed over the
   authoring body, moves every other bound point (helper shells, garment anchors) with it.

The result keeps the twin's true size: nothing of the garment is scaled here, only the body
it was bound to is matched to the twin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from spatialtwin.body.measure import crotch_height, measure_body, midline_xz
from spatialtwin.body.pose import Pose, forward_kinematics
from spatialtwin.body.skeleton import BONE_CHILD, JOINT_INDEX, JOINT_NAMES, Skeleton
from spatialtwin.body.skinning import SkinWeights
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.geometry import vertex_normals

Array = NDArray[np.float64]

# Limbs whose directions are matched, parent first; the rest keep their rest orientation in
# the parent's frame (hands, head) or in the world (feet: flat on the floor).
ALIGNED_BONES = (
    "leftUpperArm",
    "leftLowerArm",
    "rightUpperArm",
    "rightLowerArm",
    "leftUpperLeg",
    "leftLowerLeg",
    "rightUpperLeg",
    "rightLowerLeg",
)
WORLD_ALIGNED = ("leftFoot", "rightFoot")
TRUNK_JOINTS = ("hips", "spine", "chest", "upperChest", "leftShoulder", "rightShoulder")
T_BINS = 10
ANGLE_BINS = 12
TRUNK_BINS = 24
RATIO_LIMITS = (0.5, 2.0)
SNAP_MAX_M = 0.06
SNAP_MIN_NORMAL_DOT = 0.3
SMOOTH_RADIUS_M = 0.05
FIELD_SMOOTH_M = 0.06
FIELD_NEIGHBOURS = 96
SURFACE_SAMPLES = 150_000


def _align(a: Array, b: Array) -> Array:
    """Smallest rotation (3×3) taking direction `a` to direction `b`."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    axis = np.cross(a, b)
    s, c = float(np.linalg.norm(axis)), float(np.dot(a, b))
    if s < 1e-9:
        if c > 0:
            return np.eye(3)
        perp = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(perp) < 1e-6:
            perp = np.cross(a, [0.0, 1.0, 0.0])
        return Rotation.from_rotvec(np.pi * perp / np.linalg.norm(perp)).as_matrix()
    return Rotation.from_rotvec(axis / s * np.arctan2(s, c)).as_matrix()


def pose_alike(source: BodyFrame, target: BodyFrame) -> Pose:
    """A pose of the source body whose arms and legs point like the target's at rest.

    Directions come from each limb's own skin (`BodyFrame`), not from where two rigs happen to
    put their joints (an auto-rig and MakeHuman's rig of the same mesh differ by 20° at the arm).
    """
    world = {n: np.eye(3) for n in JOINT_NAMES}
    rotations: dict[str, Array] = {}
    parent_of = {
        "leftLowerArm": "leftUpperArm",
        "rightLowerArm": "rightUpperArm",
        "leftLowerLeg": "leftUpperLeg",
        "rightLowerLeg": "rightUpperLeg",
        "leftFoot": "leftLowerLeg",
        "rightFoot": "rightLowerLeg",
    }
    for name in ALIGNED_BONES:
        j = JOINT_INDEX[name]
        d_src = source.tips[j] - source.joints[j]
        d_tgt = target.tips[j] - target.joints[j]
        world[name] = _align(d_src, d_tgt)
        parent = world.get(parent_of.get(name, ""), np.eye(3))
        rotations[name] = Rotation.from_matrix(parent.T @ world[name]).as_quat()
    for name in WORLD_ALIGNED:
        rotations[name] = Rotation.from_matrix(world[parent_of[name]].T).as_quat()
    return Pose(np.zeros(3), rotations)


# ---------------------------------------------------------------- part frames


@dataclass(frozen=True)
class BodyFrame:
    """Where a body's parts are: joint positions, bone ends and trunk landmarks (metres)."""

    joints: Array  # (J, 3)
    tips: Array  # (J, 3) end of the bone starting at each joint
    trunk_levels: Array  # (L,) heights: floor, crotch, hips, waist, chest, neck, top
    trunk_centre: Array  # (2,) x, z of the trunk's vertical axis

    @classmethod
    def of(
        cls,
        skeleton: Skeleton,
        vertices: Array,
        faces: NDArray[np.int64],
        skin: SkinWeights,
        pose: Pose | None,
    ) -> BodyFrame:
        """Frames of a body (welded `vertices` with their `skin`), its skeleton in `pose`.

        A limb's axis is the principal direction of the skin its bone dominates; its ends are
        the joint and the bone's tip projected onto that axis.
        """
        if pose is None:
            joints = skeleton.rest_positions_m.copy()
            rot = np.tile(np.eye(3), (len(JOINT_NAMES), 1, 1))
        else:
            rot, joints = forward_kinematics(skeleton, pose)
        tips = np.empty_like(joints)
        for j, name in enumerate(JOINT_NAMES):
            if name in BONE_CHILD:
                tips[j] = joints[JOINT_INDEX[BONE_CHILD[name]]]
            else:
                rest_tip = skeleton.leaf_tips_m[name] - skeleton.rest_positions_m[j]
                tips[j] = joints[j] + rot[j] @ rest_tip
        dominant = _dominant_joint(skin)
        starts, ends = joints.copy(), tips.copy()
        for j in set(PART_OF_JOINT.tolist()) - {-1}:
            region = (
                vertices[dominant == j]
                if j != JOINT_INDEX["neck"]
                else vertices[np.isin(dominant, [JOINT_INDEX["neck"], JOINT_INDEX["head"]])]
            )
            tip = tips[JOINT_INDEX["head"]] if j == JOINT_INDEX["neck"] else tips[j]
            rig_axis = tip - joints[j]
            if len(region) < 8 or np.linalg.norm(rig_axis) < 1e-6:
                continue
            centre = region.mean(axis=0)
            _, _, vt = np.linalg.svd(region - centre, full_matrices=False)
            axis = vt[0] if np.dot(vt[0], rig_axis) >= 0 else -vt[0]
            if abs(np.dot(axis, rig_axis / np.linalg.norm(rig_axis))) < 0.7:
                axis = rig_axis / np.linalg.norm(rig_axis)  # a blob, not a limb: trust the rig
            starts[j] = centre + axis * np.dot(joints[j] - centre, axis)
            ends[j] = centre + axis * np.dot(tip - centre, axis)
        m = measure_body(vertices, faces, joints)
        centre = midline_xz(vertices)
        crotch = crotch_height(vertices, centre)
        neck = float(joints[JOINT_INDEX["neck"], 1])
        levels = np.array(
            [
                0.0,
                crotch,
                m.hips_level_m,
                m.waist_level_m,
                m.chest_level_m,
                neck,
                float(vertices[:, 1].max()),
            ]
        )
        levels = np.maximum.accumulate(levels + np.arange(len(levels)) * 1e-4)
        return cls(starts, ends, levels, np.asarray(centre, dtype=np.float64))


def _perpendicular_basis(axis: Array) -> tuple[Array, Array]:
    """Two unit vectors perpendicular to `axis`: the first towards +Z (the front) if possible."""
    ref = np.array([0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = ref - axis * np.dot(ref, axis)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(axis, e1)


def _limb_coordinates(points: Array, start: Array, tip: Array) -> tuple[Array, Array, Array]:
    """(t along the bone as a fraction of its length, angle around it, radius in metres)."""
    axis = tip - start
    length = max(float(np.linalg.norm(axis)), 1e-6)
    axis = axis / length
    rel = points - start
    t = rel @ axis / length
    radial = rel - np.outer(t * length, axis)
    e1, e2 = _perpendicular_basis(axis)
    angle = np.arctan2(radial @ e2, radial @ e1)
    return t, angle, np.linalg.norm(radial, axis=1)


def _trunk_coordinates(points: Array, frame: BodyFrame) -> tuple[Array, Array, Array]:
    """(t: height as a piecewise fraction between landmarks, angle, radius) on the trunk."""
    levels = frame.trunk_levels
    t = np.interp(points[:, 1], levels, np.arange(len(levels), dtype=np.float64))
    below, above = points[:, 1] < levels[0], points[:, 1] > levels[-1]
    span0, span1 = levels[1] - levels[0], levels[-1] - levels[-2]
    t[below] = (points[below, 1] - levels[0]) / span0
    t[above] = len(levels) - 1 + (points[above, 1] - levels[-1]) / span1
    dx = points[:, 0] - frame.trunk_centre[0]
    dz = points[:, 2] - frame.trunk_centre[1]
    return t, np.arctan2(dx, dz), np.hypot(dx, dz)


def _trunk_point(t: Array, angle: Array, radius: Array, frame: BodyFrame) -> Array:
    levels = frame.trunk_levels
    idx = np.arange(len(levels), dtype=np.float64)
    y = np.interp(t, idx, levels)
    lo, hi = t < 0, t > len(levels) - 1
    y[lo] = levels[0] + t[lo] * (levels[1] - levels[0])
    y[hi] = levels[-1] + (t[hi] - (len(levels) - 1)) * (levels[-1] - levels[-2])
    x = frame.trunk_centre[0] + radius * np.sin(angle)
    z = frame.trunk_centre[1] + radius * np.cos(angle)
    return np.stack([x, y, z], axis=1)


def _radius_grid(
    t: Array, angle: Array, radius: Array, t_range: tuple[float, float], t_bins: int
) -> tuple[Array, Array]:
    """Median radius per (t, angle) bin and how many samples each bin had."""
    ti = np.clip(((t - t_range[0]) / (t_range[1] - t_range[0]) * t_bins).astype(int), 0, t_bins - 1)
    ai = ((angle + np.pi) / (2 * np.pi) * ANGLE_BINS).astype(int) % ANGLE_BINS
    grid = np.full((t_bins, ANGLE_BINS), np.nan)
    counts = np.zeros((t_bins, ANGLE_BINS), dtype=np.int64)
    key = ti * ANGLE_BINS + ai
    order = np.argsort(key, kind="stable")
    keys, starts = np.unique(key[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    for k, s, e in zip(keys, starts, ends, strict=True):
        grid.flat[k] = np.median(radius[order[s:e]])
        counts.flat[k] = e - s
    return grid, counts


def _ratio_grid(src: tuple[Array, Array], tgt: tuple[Array, Array]) -> Array:
    """Target-to-source radius ratios per bin, filled and smoothed where samples are few."""
    (gs, cs), (gt, ct) = src, tgt
    ok = (cs >= 3) & (ct >= 3) & (gs > 1e-4)
    ratio = np.full(gs.shape, np.nan)
    ratio[ok] = gt[ok] / gs[ok]
    if not ok.any():
        return np.ones_like(ratio)
    # Fill empty bins from the row's median, then from the whole part's median.
    overall = float(np.nanmedian(ratio))
    for r in range(ratio.shape[0]):
        row = ratio[r]
        fill = np.nanmedian(row) if np.isfinite(row).any() else overall
        row[~np.isfinite(row)] = fill
    ratio = np.clip(ratio, *RATIO_LIMITS)
    # Smooth: one pass of a 3×3 box, circular in angle, clamped in t.
    padded = np.pad(ratio, ((1, 1), (0, 0)), mode="edge")
    smooth = sum(
        np.roll(padded, da, axis=1)[1 + dt : 1 + dt + ratio.shape[0]]
        for dt in (-1, 0, 1)
        for da in (-1, 0, 1)
    )
    return smooth / 9.0


def _lookup(grid: Array, t: Array, angle: Array, t_range: tuple[float, float]) -> Array:
    """Bilinear interpolation of a (t, angle) grid, circular in angle."""
    nt, na = grid.shape
    ft = np.clip((t - t_range[0]) / (t_range[1] - t_range[0]) * nt - 0.5, 0, nt - 1)
    fa = (angle + np.pi) / (2 * np.pi) * na - 0.5
    t0 = np.floor(ft).astype(int)
    t1 = np.minimum(t0 + 1, nt - 1)
    a0 = np.floor(fa).astype(int)
    wt, wa = ft - t0, fa - a0
    a0m, a1m = a0 % na, (a0 + 1) % na
    return (
        grid[t0, a0m] * (1 - wt) * (1 - wa)
        + grid[t1, a0m] * wt * (1 - wa)
        + grid[t0, a1m] * (1 - wt) * wa
        + grid[t1, a1m] * wt * wa
    )


def _dominant_joint(skin: SkinWeights) -> NDArray[np.int64]:
    return np.asarray(skin.joints[np.arange(len(skin.joints)), np.argmax(skin.weights, axis=1)])


def _part_of_joint() -> NDArray[np.int64]:
    """Each joint's mapping part: −1 for the trunk, else the joint whose bone frame is used."""
    part = np.arange(len(JOINT_NAMES))
    for name in TRUNK_JOINTS:
        part[JOINT_INDEX[name]] = -1
    part[JOINT_INDEX["head"]] = JOINT_INDEX["neck"]
    return part


PART_OF_JOINT = _part_of_joint()
TRUNK_RANGE = (-0.5, 6.5)


@dataclass(frozen=True)
class PartMaps:
    """Per part (trunk and each limb bone): the radius ratio grids from source to target."""

    source: BodyFrame
    target: BodyFrame
    limb_ratio: dict[int, Array]
    trunk_ratio: Array


def fit_part_maps(
    source_vertices: Array,
    source_faces: NDArray[np.int64],
    source_skin: SkinWeights,
    source_frame: BodyFrame,
    target: TwinBody,
) -> PartMaps:
    """Radius ratios between the two bodies, part by part (skin vertices by dominant joint)."""
    tv, tf = target.welded()
    t_skin = _welded_skin(target)
    target_frame = BodyFrame.of(target.skeleton, tv, tf, t_skin, None)
    src_part = PART_OF_JOINT[_dominant_joint(source_skin)]
    tgt_part = PART_OF_JOINT[_dominant_joint(t_skin)]
    limb_ratio: dict[int, Array] = {}
    for j in sorted(set(PART_OF_JOINT.tolist()) - {-1}):
        grids = []
        for verts, parts, frame in (
            (source_vertices, src_part, source_frame),
            (tv, tgt_part, target_frame),
        ):
            sel = parts == j
            t, a, r = _limb_coordinates(verts[sel], frame.joints[j], frame.tips[j])
            grids.append(_radius_grid(t, a, r, (0.0, 1.0), T_BINS))
        limb_ratio[j] = _ratio_grid(grids[0], grids[1])
    grids = []
    for verts, parts, frame in (
        (source_vertices, src_part, source_frame),
        (tv, tgt_part, target_frame),
    ):
        sel = parts == -1
        t, a, r = _trunk_coordinates(verts[sel], frame)
        grids.append(_radius_grid(t, a, r, TRUNK_RANGE, TRUNK_BINS))
    return PartMaps(source_frame, target_frame, limb_ratio, _ratio_grid(grids[0], grids[1]))


def map_points(points: Array, skin: SkinWeights, maps: PartMaps) -> Array:
    """Carry points of the (posed-alike) source body into the target body's proportions."""
    out = np.zeros_like(points)
    total = np.zeros(len(points))
    parts = PART_OF_JOINT[skin.joints.astype(np.int64)]  # (N, 4)
    weights = skin.weights.astype(np.float64)
    for part in np.unique(parts[weights > 0]):
        rows, cols = np.nonzero((parts == part) & (weights > 0))
        w = np.zeros(len(points))
        np.add.at(w, rows, weights[rows, cols])
        sel = np.flatnonzero(w > 0)
        p = points[sel]
        if part == -1:
            t, a, r = _trunk_coordinates(p, maps.source)
            r2 = r * _lookup(maps.trunk_ratio, t, a, TRUNK_RANGE)
            mapped = _trunk_point(t, a, r2, maps.target)
        else:
            src_s, src_e = maps.source.joints[part], maps.source.tips[part]
            tgt_s, tgt_e = maps.target.joints[part], maps.target.tips[part]
            t, a, r = _limb_coordinates(p, src_s, src_e)
            ratio = _lookup(maps.limb_ratio[part], t, a, (0.0, 1.0))
            axis_s = (src_e - src_s) / max(np.linalg.norm(src_e - src_s), 1e-9)
            rel = p - src_s
            radial = rel - np.outer(rel @ axis_s, axis_s)
            turn = _align(src_e - src_s, tgt_e - tgt_s)
            mapped = tgt_s + np.outer(t, tgt_e - tgt_s) + (radial @ turn.T) * ratio[:, None]
        out[sel] += w[sel, None] * mapped
        total[sel] += w[sel]
    return out / np.maximum(total, 1e-12)[:, None]


def _surface_samples(vertices: Array, faces: NDArray[np.int64], count: int) -> tuple[Array, Array]:
    """Evenly spread surface points and their normals (deterministic)."""
    tri = vertices[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = 0.5 * np.linalg.norm(cross, axis=1)
    normal = cross / np.maximum(2 * area, 1e-18)[:, None]
    rng = np.random.default_rng(0)
    pick = rng.choice(len(faces), size=count, p=area / area.sum())
    u, v = rng.random(count), rng.random(count)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[pick]
    points = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    # Add the vertices so thin parts (fingers) are never missed.
    return np.vstack([points, vertices]), np.vstack([normal[pick], vertex_normals(vertices, faces)])


def snap_to_surface(
    skin_points: Array,
    skin_normals: Array,
    target: TwinBody,
) -> tuple[Array, NDArray[np.bool_]]:
    """Displacements (metres) that put each skin point on the target surface, and which were
    trusted (close enough, and the surfaces face alike there)."""
    tv, tf = target.welded()
    samples, normals = _surface_samples(tv, tf, SURFACE_SAMPLES)
    tree = cKDTree(samples)
    dist, idx = tree.query(skin_points, k=4)
    n = normals[idx]  # (N, 4, 3)
    along = np.einsum("nkd,nkd->nk", skin_points[:, None, :] - samples[idx], n)
    facing = np.einsum("nkd,nd->nk", n, skin_normals)
    score = np.where(facing > SNAP_MIN_NORMAL_DOT, dist, np.inf)
    best = np.argmin(score, axis=1)
    rows = np.arange(len(skin_points))
    ok = np.isfinite(score[rows, best]) & (dist[rows, best] < SNAP_MAX_M)
    disp = -along[rows, best, None] * n[rows, best]
    # Tangential error of the nearest sample stays; the plane projection removes the gap.
    disp[~ok] = 0.0
    return disp, ok


def smooth_field(points: Array, field: Array, radius_m: float = FIELD_SMOOTH_M) -> Array:
    """A vector field over points, Gaussian-averaged over neighbours within ~`radius_m`."""
    k = min(FIELD_NEIGHBOURS, len(points))
    dist, idx = cKDTree(points).query(points, k=k)
    w = np.exp(-((dist / radius_m) ** 2))
    return np.einsum("nk,nkd->nd", w, field[idx]) / w.sum(axis=1)[:, None]


def spread_displacements(
    from_points: Array, displacement: Array, trusted: NDArray[np.bool_], to_points: Array
) -> Array:
    """Smooth displacement at `to_points`: a Gaussian blend of trusted nearby displacements."""
    src = from_points[trusted]
    if len(src) == 0:
        return np.zeros_like(to_points)
    # A common shift moves everything; only what varies is blended locally and fades out.
    common = np.median(displacement[trusted], axis=0)
    disp = displacement[trusted] - common
    k = min(FIELD_NEIGHBOURS, len(src))
    dist, idx = cKDTree(src).query(to_points, k=k)
    w = np.exp(-((dist / SMOOTH_RADIUS_M) ** 2))
    w_sum = w.sum(axis=1)
    out = np.einsum("nk,nkd->nd", w, disp[idx]) / np.maximum(w_sum, 1e-12)[:, None]
    # Far from any trusted point: fade out rather than extrapolate.
    return common + out * np.minimum(w_sum, 1.0)[:, None]


@dataclass(frozen=True)
class Correspondence:
    """Where the authoring body's points land on the twin (metres, twin bind pose)."""

    points_m: Array  # (P, 3) every bound point of the authoring body, on the twin
    pose: Pose  # the pose-alike of the authoring body
    snapped_fraction: float  # share of skin points moved onto the twin surface
    residual_m: float  # median skin-to-twin distance after the snap


def _exact_skin_match(source: TwinBody, target: TwinBody) -> NDArray[np.float64] | None:
    """Target positions of the source's skin vertices when the two are the same mesh: the
    same topology (a twin generated from the template), or the same surface up to a shift
    (a twin imported from the authoring body itself). None otherwise."""
    if source.vertex_count == target.vertex_count and np.array_equal(source.faces, target.faces):
        return target.vertices_m.copy()
    sv, tv = source.vertices_m, target.vertices_m
    shift = np.median(tv, axis=0) - np.median(sv, axis=0)
    dist, idx = cKDTree(tv).query(sv + shift)
    if np.percentile(dist, 99) < 1e-3:
        return tv[idx]
    return None


def same_mesh(source: TwinBody, target: TwinBody) -> bool:
    """Whether `target` is `source`'s mesh (same topology, or the same surface shifted)."""
    return _exact_skin_match(source, target) is not None


def correspond(
    source: TwinBody,
    source_points: Array,
    source_point_skin: SkinWeights,
    source_skin_index: NDArray[np.int64],
    target: TwinBody,
    match_proportions: bool = True,
) -> Correspondence:
    """Map `source_points` (any points bound to the source body: its skin, helper shells) onto
    `target`. `source_skin_index[i]` is the row of `source_points` of source vertex i.
    `match_proportions=False` skips step 2 (the part maps) for a source already made to the
    target's measurements: only the pose and the snap are left to do."""
    from spatialtwin.body.pose import skinning_matrices
    from spatialtwin.body.skinning import Skinner

    exact = _exact_skin_match(source, target)
    if exact is not None:
        # the skin lands exactly; the other bound points (helper shells) move with it
        skin_points = source_points[source_skin_index]
        disp = exact - skin_points
        others = np.setdiff1d(np.arange(len(source_points)), source_skin_index)
        points = source_points.copy()
        points[others] += spread_displacements(
            skin_points, disp, np.ones(len(disp), dtype=bool), source_points[others]
        )
        points[source_skin_index] = exact
        return Correspondence(points, Pose.rest(), 1.0, 0.0)

    skin_of_welded = _welded_skin(source)
    rest_v, rest_f = source.welded()
    tv, tf = target.welded()
    pose = pose_alike(
        BodyFrame.of(source.skeleton, rest_v, rest_f, skin_of_welded, None),
        BodyFrame.of(target.skeleton, tv, tf, _welded_skin(target), None),
    )
    posed_points = Skinner(source_points, source_point_skin, source.skeleton.joint_count).vertices(
        skinning_matrices(source.skeleton, pose)
    )
    posed_skin = posed_points[source_skin_index]
    sv, sf = _welded(source, posed_skin)
    frame = BodyFrame.of(source.skeleton, sv, sf, skin_of_welded, pose)
    if match_proportions:
        maps = fit_part_maps(sv, sf, skin_of_welded, frame, target)
        mapped = map_points(posed_points, source_point_skin, maps)
        # Where two parts blend (armpits, crotch) their maps can disagree by centimetres
        # between neighbouring points; a garment bound there would tear. Smooth the field.
        mapped = posed_points + smooth_field(posed_points, mapped - posed_points)
    else:
        # Same measurements, but each rig puts the hips over the origin its own way: line up
        # the two trunks' axes (x, z); both stand on y = 0.
        tv, tf = target.welded()
        target_frame = BodyFrame.of(target.skeleton, tv, tf, _welded_skin(target), None)
        shift = target_frame.trunk_centre - frame.trunk_centre
        mapped = posed_points + np.array([shift[0], 0.0, shift[1]])
    mapped_skin = mapped[source_skin_index]
    mv, mf = _welded(source, mapped_skin)
    disp, ok = snap_to_surface(mv, vertex_normals(mv, mf), target)
    keep = _weld_keep(source)
    moved = spread_displacements(mv, disp, ok, mapped)
    points = mapped + moved
    tree = cKDTree(_surface_samples(tv, tf, SURFACE_SAMPLES // 3)[0])
    residual = float(np.median(tree.query(points[source_skin_index][keep])[0]))
    return Correspondence(points, pose, float(ok.mean()), residual)


def _weld_keep(body: TwinBody) -> NDArray[np.int64]:
    """Representative vertex of each welded vertex, in `body.welded()`'s order."""
    if body.weld_map is None:
        return np.arange(body.vertex_count)
    return np.unique(body.weld_map)


def _welded(body: TwinBody, vertices: Array) -> tuple[Array, NDArray[np.int64]]:
    """`vertices` (one per body vertex) welded the way `body.welded()` welds its own."""
    if body.weld_map is None:
        return vertices, body.faces
    keep, inverse = np.unique(body.weld_map, return_inverse=True)
    return vertices[keep], inverse[body.faces]


def _welded_skin(body: TwinBody) -> SkinWeights:
    keep = _weld_keep(body)
    return SkinWeights(body.skin.joints[keep], body.skin.weights[keep])
