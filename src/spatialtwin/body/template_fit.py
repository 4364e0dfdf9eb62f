"""Twins from tape measurements: the hm08 template human deformed to a tailor's numbers.

A generated twin is the template body (MakeHuman's CC0 hm08 skin with its own rig and weights,
`body.template`) in the canonical A-pose, stretched segment by segment to the asked stature,
inseam and shoulder breadth, then widened or narrowed around the trunk's and the limbs' axes
until the chest, waist and hip girths measured back from the mesh with the tailor's tape of
`measure` match. The template's vertex order, triangles, UVs and skin weights are kept, so the
face, the fingers and the toes are the template's, only scaled.

    body = fit_template_to_measurements(shipped_template().body, measurements)

The steps, each a function over plain arrays:

1. **A-pose** (`a_pose`): skin the template so that both arms point 45° below horizontal in
   the frontal plane, forearm and hand in line with the upper arm, the legs a little closer
   (hm08 stands with its feet 44 cm apart), the feet flat; the posed vertices and joints are
   the new bind pose, with the same weights. The elbows, unbent by linear-blend skinning,
   are relaxed by delta mush where upper arm and forearm share a vertex.
2. **Proportions** (`segment_scales`, `scale_segments`): one affine map per joint — along
   its bone by the bone's length ratio, across it uniformly — blended by the skin weights, as
   skinning blends rotations. Legs are scaled to the inseam, the trunk to the remaining
   stature, the head by stature^½ (heads vary less than bodies: an adult's head height is
   about a fifth of a metre in short and tall people alike), the clavicles to the shoulder
   breadth, arms, hands and feet with stature (Drillis & Contini 1966: segment lengths are
   fractions of stature). Where two maps blend they agree at the joint, so the surface stays
   continuous and smooth.
3. **Girths** (`widen`): every vertex is scaled away from the axis of the parts its weights
   name: the trunk horizontally about its centre line by a profile of height (monotone cubic
   through the hips, waist and chest levels, easing to the neck), the limbs perpendicular to
   their bones by factors that follow the trunk's (thighs with the hips, arms with the chest
   and waist), never the head, hands or feet. The three trunk factors are calibrated against
   `measure` (taut-tape convex-hull girths at the levels it finds), as a tailor would check.
4. **Floor and stature**: feet on y = 0, exactly the asked height (a sub-millimetre vertical
   correction), hips over the origin; normals recomputed across UV seams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy import ndimage
from scipy.interpolate import PchipInterpolator
from scipy.spatial.transform import Rotation

from spatialtwin.body.autorig import UP
from spatialtwin.body.measure import (
    CHEST_BAND,
    BodyMeasurements,
    crotch_height,
    girth_at_height,
    measure_body,
    midline_xz,
)
from spatialtwin.body.pose import Pose, forward_kinematics, skinning_matrices
from spatialtwin.body.skeleton import BONE_CHILD, JOINT_INDEX, JOINT_NAMES, PARENTS, Skeleton
from spatialtwin.body.skinning import Skinner
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.geometry import vertex_normals

if TYPE_CHECKING:
    from spatialtwin.body.measurements import Measurements

Array = NDArray[np.float64]

TRUNK = ("hips", "spine", "chest", "upperChest")
UNDERBUST_FRACTION = 0.4  # of the way from the waist level to the bust level (hm08: 0.40)
PROFILE_STEP_M = 0.01  # girth profile sampling
PROFILE_MARGIN_M = 0.04
PROFILE_SMOOTH_M = 0.01  # removes the mesh's facets from the template's girth profile
FACTOR_SMOOTH_M = 0.02  # no visible crease where the profile's pieces meet
ARMPIT_SHARE = 0.6  # of the chest's widening kept at the armpits
NECK_SHARE = 0.4  # ... and at the base of the neck
BUST_LEAD_M = 0.004  # the bust stands at least this far in front of the ribs below it
BUST_SIGMA_M = 0.02
TAPE_MARGIN_M = 0.05
ARMPIT_BELOW_SHOULDER_H = 0.018  # of stature (hm08: 3 cm below the upper-arm joint)
SIDES = ("left", "right")


@dataclass(frozen=True)
class FitOptions:
    """How the template is posed and proportioned; `DEFAULTS` is what twins are made with."""

    arm_drop_rad: float = float(np.deg2rad(45.0))  # the house A-pose (README, skeleton.py)
    leg_spread_rad: float = float(np.deg2rad(3.0))  # hip-to-ankle line from vertical
    head_exponent: float = 0.5  # head scale = (stature ratio) ** head_exponent
    elbow_relax_iterations: int = 10
    quick_tolerance_m: float = 0.001  # quick rounds (3 sections each) stop below this
    girth_tolerance_m: float = 0.004  # a full tape check accepts below this (tests: 15 mm)
    max_rounds: int = 8
    max_tape_checks: int = 3  # full `measure_body` runs (each ~0.4 s)


DEFAULTS = FitOptions()


# ---------------------------------------------------------------------------------------------
# (1) A-pose


def _rotation_between(a: Array, b: Array) -> Array:
    """The smallest rotation (3×3) taking direction `a` to direction `b`."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    axis = np.cross(a, b)
    s = float(np.linalg.norm(axis))
    if s < 1e-12:
        return np.eye(3)
    return Rotation.from_rotvec(axis / s * np.arctan2(s, float(a @ b))).as_matrix()


def a_pose_rotations(skeleton: Skeleton, options: FitOptions = DEFAULTS) -> Pose:
    """The pose that takes `skeleton` (facing +Z) into the canonical A-pose.

    World rotations are chosen per bone (the smallest rotation from its rest direction to the
    target, so a forearm's twist is kept) and turned into local ones for the pose.
    """
    P = skeleton.rest_positions_m
    world = {n: np.eye(3) for n in JOINT_NAMES}
    drop = options.arm_drop_rad
    for side, sign in zip(SIDES, (1.0, -1.0), strict=True):
        arm = np.array([sign * np.cos(drop), -np.sin(drop), 0.0])
        ua, la, hand = (P[JOINT_INDEX[f"{side}{b}"]] for b in ("UpperArm", "LowerArm", "Hand"))
        tip = np.asarray(skeleton.leaf_tips_m[f"{side}Hand"], dtype=np.float64)
        w_ua = _rotation_between(la - ua, arm)
        w_la = _rotation_between(w_ua @ (hand - la), arm) @ w_ua
        w_hand = _rotation_between(w_la @ (tip - hand), arm) @ w_la
        world[f"{side}UpperArm"], world[f"{side}LowerArm"], world[f"{side}Hand"] = (
            w_ua,
            w_la,
            w_hand,
        )
        hip, ankle = P[JOINT_INDEX[f"{side}UpperLeg"]], P[JOINT_INDEX[f"{side}Foot"]]
        now = np.arctan2(sign * (ankle[0] - hip[0]), hip[1] - ankle[1])  # outward from vertical
        turn = Rotation.from_rotvec([0.0, 0.0, -sign * (now - options.leg_spread_rad)]).as_matrix()
        world[f"{side}UpperLeg"] = world[f"{side}LowerLeg"] = turn
        # Feet and toes keep their world orientation: soles stay flat on the floor.
    rotations = {}
    for j, name in enumerate(JOINT_NAMES):
        parent = np.eye(3) if PARENTS[j] < 0 else world[JOINT_NAMES[PARENTS[j]]]
        local = parent.T @ world[name]
        if not np.allclose(local, np.eye(3), atol=1e-12):
            rotations[name] = Rotation.from_matrix(local).as_quat()
    return Pose(np.zeros(3), rotations)


@dataclass(frozen=True)
class _Welded:
    """The fit's working mesh: one closed surface, no UV-seam duplicates."""

    keep: NDArray[np.int64]  # welded vertex -> its representative in the body
    inverse: NDArray[np.int64]  # body vertex -> welded vertex
    faces: NDArray[np.int64]

    @classmethod
    def of(cls, body: TwinBody) -> _Welded:
        weld = body.weld_map if body.weld_map is not None else np.arange(body.vertex_count)
        keep, inverse = np.unique(weld, return_inverse=True)
        return cls(keep, inverse, inverse[body.faces])

    def smoother(self) -> sp.csr_matrix:
        """Row-normalised vertex adjacency: one application averages each vertex's ring."""
        f = self.faces
        n = len(self.keep)
        rows = np.concatenate([f[:, 0], f[:, 1], f[:, 2], f[:, 1], f[:, 2], f[:, 0]])
        cols = np.concatenate([f[:, 1], f[:, 2], f[:, 0], f[:, 0], f[:, 1], f[:, 2]])
        adj = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
        adj.data[:] = 1.0
        degree = np.asarray(adj.sum(axis=1)).ravel()
        return sp.diags(1.0 / np.maximum(degree, 1.0)) @ adj


def a_pose(template: TwinBody, options: FitOptions = DEFAULTS) -> TwinBody:
    """The template re-posed into the A-pose, taken as its new bind pose (same weights)."""
    pose = a_pose_rotations(template.skeleton, options)
    world_rot, world_pos = forward_kinematics(template.skeleton, pose)
    skinner = Skinner(template.vertices_m, template.skin, template.skeleton.joint_count)
    blended = skinner.blended(skinning_matrices(template.skeleton, pose))
    posed = skinner.vertices(skinning_matrices(template.skeleton, pose))
    # Relax the elbows. Unbending hm08's elbows by linear blending folds the skin behind the
    # joint; delta mush (Mancewicz et al., "Delta Mush: smoothing deformations while
    # preserving detail", DigiPro 2014) smooths the posed elbow and adds back the rest pose's
    # detail (its offset from its own smoothing), carried by each vertex's blended matrix.
    mesh = _Welded.of(template)
    keep, inverse, smoother = mesh.keep, mesh.inverse, mesh.smoother()
    dense = template.skin.to_dense(template.skeleton.joint_count)[keep]
    share = np.zeros(len(keep))
    for side in SIDES:
        a = dense[:, JOINT_INDEX[f"{side}UpperArm"]]
        b = dense[:, JOINT_INDEX[f"{side}LowerArm"]]
        share = np.maximum(share, 4.0 * a * b)  # 1 where the two bones share a vertex equally

    def smooth(x: Array, iterations: int) -> Array:
        for _ in range(iterations):
            x = 0.5 * x + 0.5 * (smoother @ x)
        return x

    rest = template.vertices_m[keep]
    detail = rest - smooth(rest, options.elbow_relax_iterations)
    linear = blended[keep][:, :9].reshape(-1, 3, 3).transpose(0, 2, 1)
    mushed = smooth(posed[keep], options.elbow_relax_iterations)
    mushed += np.einsum("nij,nj->ni", linear, detail)
    alpha = smooth(np.clip(2.0 * share, 0.0, 1.0)[:, None], 5)
    vertices = ((1.0 - alpha) * posed[keep] + alpha * mushed)[inverse]
    tips = {}
    for name, tip in template.skeleton.leaf_tips_m.items():
        j = JOINT_INDEX[name]
        tips[name] = world_pos[j] + world_rot[j] @ (tip - template.skeleton.rest_positions_m[j])
    # The hips joint goes to the middle of the pelvis, between the hip joints (MakeHuman's
    # root sits on the skin of the buttocks), and the body moves to put it over the origin.
    hips = JOINT_INDEX["hips"]
    legs = [JOINT_INDEX["leftUpperLeg"], JOINT_INDEX["rightUpperLeg"]]
    world_pos[hips, [0, 2]] = world_pos[legs][:, [0, 2]].mean(axis=0)
    shift = np.array([world_pos[hips, 0], 0.0, world_pos[hips, 2]])
    vertices = vertices - shift
    skeleton = Skeleton(world_pos - shift, {k: t - shift for k, t in tips.items()})
    return TwinBody(
        vertices_m=vertices,
        faces=template.faces,
        normals=template.normals,  # recomputed at the end of the fit
        uvs=template.uvs,
        skin=template.skin,
        skeleton=skeleton,
        weld_map=template.weld_map,
    )


# ---------------------------------------------------------------------------------------------
# (2) Proportions


@dataclass(frozen=True)
class SegmentScales:
    """Length ratios of the body's segments and the uniform scale of the end parts."""

    stature: float  # arms, hands, feet, limb cross-sections
    legs: float  # thighs and shins, along the bone
    trunk: float  # hips to neck, vertically
    head: float  # neck and head, uniformly
    clavicle: float  # shoulder to upper-arm joint, along the bone


def _bone_map(direction: Array, along: float, across: float) -> Array:
    u = direction / np.linalg.norm(direction)
    return across * np.eye(3) + (along - across) * np.outer(u, u)


def joint_maps(skeleton: Skeleton, scales: SegmentScales) -> tuple[Array, Array]:
    """Per-joint linear maps (J, 3, 3) and the new joint positions (J, 3), root at the origin.

    A joint's map scales the part that follows it (its bone); each child joint lands where its
    parent's map takes it, so neighbouring maps agree at the joint between them.
    """
    P = skeleton.rest_positions_m
    s = scales.stature
    maps = np.tile(np.eye(3) * s, (len(JOINT_NAMES), 1, 1))
    for name in TRUNK:
        maps[JOINT_INDEX[name]] = np.diag([s, scales.trunk, s])
    for name in ("neck", "head"):
        maps[JOINT_INDEX[name]] = np.eye(3) * scales.head
    for side in SIDES:
        for bone, along in (("Shoulder", scales.clavicle), ("UpperLeg", scales.legs)):
            j = JOINT_INDEX[f"{side}{bone}"]
            maps[j] = _bone_map(P[JOINT_INDEX[BONE_CHILD[f"{side}{bone}"]]] - P[j], along, s)
        j = JOINT_INDEX[f"{side}LowerLeg"]
        maps[j] = _bone_map(P[JOINT_INDEX[f"{side}Foot"]] - P[j], scales.legs, s)
    new = np.zeros_like(P)
    for j, p in enumerate(PARENTS):
        new[j] = P[j] if p < 0 else new[p] + maps[p] @ (P[j] - P[p])
    return maps, new


def scale_segments(body: TwinBody, scales: SegmentScales) -> tuple[Array, Skeleton]:
    """The body's vertices and skeleton with every segment scaled (weights blend the maps)."""
    maps, joints = joint_maps(body.skeleton, scales)
    P = body.skeleton.rest_positions_m
    mats = np.empty((len(JOINT_NAMES), 3, 4))
    mats[:, :, :3] = maps
    mats[:, :, 3] = joints - np.einsum("jab,jb->ja", maps, P)
    vertices = body.skinner().vertices(mats)
    tips = {}
    for name, tip in body.skeleton.leaf_tips_m.items():
        j = JOINT_INDEX[name]
        tips[name] = joints[j] + maps[j] @ (np.asarray(tip) - P[j])
    return vertices, Skeleton(joints, tips)


def segment_scales(
    body: TwinBody, m: Measurements, legs: float, options: FitOptions = DEFAULTS
) -> SegmentScales:
    """Scales for stature, head and clavicles given the legs' ratio; the trunk takes the rest
    of the stature (solved exactly for the top of the head, which follows the head joint)."""
    P = body.skeleton.rest_positions_m
    v = body.vertices_m
    height0 = float(v[:, 1].max() - v[:, 1].min())
    s = m.height_m / height0
    head = s**options.head_exponent
    half_breadth0 = abs(float(P[JOINT_INDEX["leftUpperArm"], 0]))
    shoulder0 = abs(float(P[JOINT_INDEX["leftShoulder"], 0]))
    # Shoulder breadth is measured as the upper-arm joints' distance plus 4 cm (`measure`).
    clavicle = (m.shoulder_m / 2.0 - 0.02 - s * shoulder0) / (half_breadth0 - shoulder0)
    probe = SegmentScales(s, legs, 1.0, head, clavicle)
    a, _ = scale_segments(body, probe)
    b, _ = scale_segments(body, SegmentScales(s, legs, 2.0, head, clavicle))
    # The top of the head moves linearly with the trunk's ratio; solve for the stature.
    top_a = float(a[:, 1].max() - a[:, 1].min())
    top_b = float(b[:, 1].max() - b[:, 1].min())
    trunk = 1.0 + (m.height_m - top_a) / (top_b - top_a)
    return SegmentScales(s, legs, trunk, head, clavicle)


def proportion(
    body: TwinBody, m: Measurements, options: FitOptions = DEFAULTS
) -> tuple[Array, Skeleton, SegmentScales]:
    """Step (2): segment scales that give the asked stature and inseam (crotch height)."""
    v0 = body.vertices_m
    crotch0 = crotch_height(v0 - [0.0, v0[:, 1].min(), 0.0], midline_xz(v0))
    legs = m.inseam_m / crotch0
    for _ in range(4):  # the crotch follows the legs' ratio almost linearly: a few secant steps
        scales = segment_scales(body, m, legs, options)
        v, skeleton = scale_segments(body, scales)
        floor = np.array([0.0, v[:, 1].min(), 0.0])
        v = v - floor
        skeleton = Skeleton(
            skeleton.rest_positions_m - floor,
            {k: t - floor for k, t in skeleton.leaf_tips_m.items()},
        )
        crotch = crotch_height(v, midline_xz(v))
        if abs(crotch - m.inseam_m) < 2e-4:
            break
        legs *= m.inseam_m / crotch
    return v, skeleton, scales


# ---------------------------------------------------------------------------------------------
# (3) Girths


@dataclass(frozen=True)
class TrunkShape:
    """The proportioned template's trunk, read once: tape levels, centre line, girth profile.

    Levels are heights in metres where `measure` found the hips, waist and chest (bust) of the
    proportioned template; the girth profile is its taut-tape girth between the hips and the
    chest, lightly smoothed, which the target profile is divided by to give the scale factor.
    """

    crotch_m: float
    hips_m: float
    waist_m: float
    underbust_m: float
    chest_m: float
    armpit_m: float
    neck_m: float
    profile_y_m: Array
    profile_girth_m: Array
    centre_y_m: Array
    centre_z_m: Array

    def girth(self, y_m: float) -> float:
        return float(np.interp(y_m, self.profile_y_m, self.profile_girth_m))


@dataclass(frozen=True)
class GirthTargets:
    """Girths (metres) the trunk is shaped to at the hips, waist and chest levels; the fit
    calibrates them until the tape reads what was asked."""

    hips_m: float
    waist_m: float
    chest_m: float

    def corrected(self, asked: Array, got: Array) -> GirthTargets:
        r = asked / got
        return GirthTargets(self.hips_m * r[0], self.waist_m * r[1], self.chest_m * r[2])


def _trunk_weight(dense_weights: Array) -> Array:
    w = dense_weights
    names = (*TRUNK, "leftShoulder", "rightShoulder")
    return np.asarray(sum(w[:, JOINT_INDEX[n]] for n in names), dtype=np.float64)


def read_trunk(
    v: Array,
    faces: NDArray[np.int64],
    trunk_weight: Array,
    skeleton: Skeleton,
    tape: BodyMeasurements,
) -> TrunkShape:
    """The trunk of the proportioned (not yet widened) body."""
    J = skeleton.rest_positions_m
    centre = midline_xz(v)
    lo, hi = tape.hips_level_m - PROFILE_MARGIN_M, tape.chest_level_m + PROFILE_MARGIN_M
    ys = np.arange(lo, hi + 1e-9, PROFILE_STEP_M)
    girths = np.array([girth_at_height(v, faces, y, centre) for y in ys])
    ok = girths > 0
    girths = np.interp(ys, ys[ok], girths[ok])
    girths = ndimage.gaussian_filter1d(girths, PROFILE_SMOOTH_M / PROFILE_STEP_M, mode="nearest")
    # The trunk's centre line: the middle of front and back near the body's midline.
    core = (trunk_weight > 0.5) & (np.abs(v[:, 0] - centre[0]) < 0.06)
    cy = np.arange(tape.inseam_m, float(J[JOINT_INDEX["neck"], 1]) + 1e-9, PROFILE_STEP_M)
    cz = np.empty(len(cy))
    for i, y in enumerate(cy):
        near = core & (np.abs(v[:, 1] - y) < 0.02)
        cz[i] = 0.5 * (v[near, 2].min() + v[near, 2].max()) if near.any() else np.nan
    good = np.isfinite(cz)
    cz = ndimage.gaussian_filter1d(np.interp(cy, cy[good], cz[good]), 3.0, mode="nearest")
    waist, chest = tape.waist_level_m, tape.chest_level_m
    # Just below the shoulder joint: where the arms leave the trunk in the A-pose.
    armpit = max(
        float(J[JOINT_INDEX["leftUpperArm"], 1]) - ARMPIT_BELOW_SHOULDER_H * tape.height_m,
        chest + 0.02,
    )
    return TrunkShape(
        crotch_m=tape.inseam_m,
        hips_m=tape.hips_level_m,
        waist_m=waist,
        underbust_m=waist + UNDERBUST_FRACTION * (chest - waist),
        chest_m=chest,
        armpit_m=armpit,
        neck_m=max(float(J[JOINT_INDEX["neck"], 1]), armpit + 0.02),
        profile_y_m=ys,
        profile_girth_m=girths,
        centre_y_m=cy,
        centre_z_m=cz,
    )


def trunk_factor(shape: TrunkShape, targets: GirthTargets, y_m: Array) -> Array:
    """Horizontal scale factor of the trunk at heights `y_m`.

    Between the hips and the bust the factor is the target girth profile over the template's,
    where the target profile is a monotone cubic through the asked girths: so the waist stays
    the narrowest and the hips the widest level whatever the proportions (a factor profile
    alone would, for a full waist over narrow hips, make a belly wider than both). Below the
    hips and above the bust the factor itself is carried on, easing to the neck; the whole
    profile is smoothed over a few centimetres so that no level shows a crease.
    """
    k_h = targets.hips_m / shape.girth(shape.hips_m)
    k_c = targets.chest_m / shape.girth(shape.chest_m)
    # The underbust keeps the template's place between waist and chest girths.
    g_w, g_c = shape.girth(shape.waist_m), shape.girth(shape.chest_m)
    u0 = float(np.clip((shape.girth(shape.underbust_m) - g_w) / max(g_c - g_w, 1e-6), 0.05, 0.95))
    underbust = targets.waist_m + u0 * (targets.chest_m - targets.waist_m)
    target = PchipInterpolator(
        [shape.hips_m, shape.waist_m, shape.underbust_m, shape.chest_m],
        [targets.hips_m, targets.waist_m, underbust, targets.chest_m],
    )
    upper = PchipInterpolator(
        [shape.chest_m, shape.armpit_m, shape.neck_m],
        [k_c, 1.0 + ARMPIT_SHARE * (k_c - 1.0), 1.0 + NECK_SHARE * (k_c - 1.0)],
    )
    grid = np.arange(shape.crotch_m - 0.1, shape.neck_m + 0.1, PROFILE_STEP_M / 2)
    k = np.full(len(grid), k_h)
    mid = (grid > shape.hips_m) & (grid < shape.chest_m)
    k[mid] = target(grid[mid]) / np.interp(grid[mid], shape.profile_y_m, shape.profile_girth_m)
    top = grid >= shape.chest_m
    k[top] = upper(np.minimum(grid[top], shape.neck_m))
    k = ndimage.gaussian_filter1d(k, FACTOR_SMOOTH_M / (PROFILE_STEP_M / 2), mode="nearest")
    return np.interp(y_m, grid, k)


def _segment_projection(p: Array, a: Array, b: Array) -> tuple[Array, Array]:
    """Closest points on segment a–b to points p, and their fraction t along it."""
    ab = b - a
    t = np.clip((p - a) @ ab / float(ab @ ab), 0.0, 1.0)
    return a + t[:, None] * ab, t


def widen(
    v: Array,
    dense_weights: Array,
    skeleton: Skeleton,
    shape: TrunkShape,
    targets: GirthTargets,
) -> Array:
    """Step (3): scale every vertex away from the axis of its parts by the parts' factors."""
    J = skeleton.rest_positions_m
    w = dense_weights
    trunk_w = _trunk_weight(w)
    k_trunk = trunk_factor(shape, targets, v[:, 1])
    offset = np.zeros_like(v)
    offset[:, 0] = v[:, 0]
    offset[:, 2] = v[:, 2] - np.interp(v[:, 1], shape.centre_y_m, shape.centre_z_m)
    out = v + (trunk_w * (k_trunk - 1.0))[:, None] * offset
    out = _keep_bust_in_front(out, shape, trunk_w)
    # Limbs: perpendicular to the bone, about its axis; factors ease towards hands and feet.
    k_h = targets.hips_m / shape.girth(shape.hips_m)
    k_c = targets.chest_m / shape.girth(shape.chest_m)
    k_w = targets.waist_m / shape.girth(shape.waist_m)
    fat = float((k_h * k_w * k_c) ** (1.0 / 3.0))
    knee = 1.0 + 0.55 * (k_h - 1.0)
    limbs = {
        "UpperLeg": (k_h, knee),
        "LowerLeg": (knee, 1.0 + 0.25 * (k_h - 1.0)),
        "UpperArm": (1.0 + 0.7 * (fat - 1.0), 1.0 + 0.55 * (fat - 1.0)),
        "LowerArm": (1.0 + 0.55 * (fat - 1.0), 1.0 + 0.15 * (fat - 1.0)),
    }
    neck_k = 1.0 + NECK_SHARE * (k_c - 1.0)
    on_axis, _ = _segment_projection(v, J[JOINT_INDEX["neck"]], J[JOINT_INDEX["head"]])
    out += (w[:, JOINT_INDEX["neck"]] * (neck_k - 1.0))[:, None] * (v - on_axis)
    for side in SIDES:
        for bone, (k0, k1) in limbs.items():
            j = JOINT_INDEX[f"{side}{bone}"]
            a, b = J[j], J[JOINT_INDEX[BONE_CHILD[f"{side}{bone}"]]]
            on_axis, t = _segment_projection(v, a, b)
            t = t * t * (3.0 - 2.0 * t)  # smoothstep: no crease where two bones meet
            k = k0 + (k1 - k0) * t
            out += (w[:, j] * (k - 1.0))[:, None] * (v - on_axis)
    return out


def _front_points(v: Array, lo_m: float, hi_m: float) -> NDArray[np.bool_]:
    """Where a tape's bust search looks: beside the midline (4–15 cm), between two heights."""
    dx = np.abs(v[:, 0])
    return (dx > 0.04) & (dx < 0.15) & (v[:, 1] > lo_m) & (v[:, 1] < hi_m)


def _keep_bust_in_front(out: Array, shape: TrunkShape, trunk_w: Array) -> Array:
    """Bring the bust forward where the ribs below it would otherwise stand further out.

    A tape finds the chest level at the bust's most forward point; hm08's lower ribs stand
    only 2 mm behind it, so a full waist would move the chest level down to the ribs. The
    bust (a smooth bump around its level, on the front half) is moved forward just enough to
    lead by `BUST_LEAD_M`.
    """
    height = float(out[:, 1].max())
    lo = CHEST_BAND[0] * height
    bust_zone = _front_points(out, shape.chest_m - 0.015, shape.chest_m + 0.015)
    below = _front_points(out, lo, shape.chest_m - 0.035)
    if not bust_zone.any() or not below.any():
        return out
    lead = float(out[bust_zone, 2].max() - out[below, 2].max())
    if lead >= BUST_LEAD_M:
        return out
    centre_z = np.interp(out[:, 1], shape.centre_y_m, shape.centre_z_m)
    front = np.clip((out[:, 2] - centre_z) / 0.05, 0.0, 1.0)
    bump = np.exp(-0.5 * ((out[:, 1] - shape.chest_m) / BUST_SIGMA_M) ** 2)
    # The highest point of the ribs searched still gets part of the bump: lift by its rest.
    amplitude = (BUST_LEAD_M - lead) / (1.0 - np.exp(-0.5 * (0.035 / BUST_SIGMA_M) ** 2))
    push = amplitude * trunk_w * front * bump
    result = out.copy()
    result[:, 2] += push
    return result


# ---------------------------------------------------------------------------------------------
# Together


def _tape_girths(tape: BodyMeasurements) -> Array:
    return np.array([tape.hips_m, tape.waist_m, tape.chest_m])


def _quick_girths(v: Array, faces: NDArray[np.int64], at: BodyMeasurements) -> Array:
    """Hips, waist and chest girths at the levels a full tape measurement found last time."""
    centre = midline_xz(v)
    levels = (at.hips_level_m, at.waist_level_m, at.chest_level_m)
    return np.array([girth_at_height(v, faces, y, centre) for y in levels])


def _faces_near_trunk(v: Array, faces: NDArray[np.int64], m: Measurements) -> NDArray[np.int64]:
    """The faces a tape measurement can cut: those reaching between the crotch and 0.9 H.

    `measure_body` reads height, midline, crotch and bust from the vertices alone and cuts
    sections only between the hips band (above the crotch) and the armpit search's top
    (0.86 H), so on these faces, with all vertices, it measures what it measures on the whole
    mesh, in half the time (head, hands and feet hold most of hm08's triangles).
    """
    lo, hi = m.inseam_m - TAPE_MARGIN_M, 0.9 * m.height_m + TAPE_MARGIN_M
    y = v[faces, 1]
    return faces[(y.max(axis=1) >= lo) & (y.min(axis=1) <= hi)]


def calibrate_girths(
    v: Array,
    faces: NDArray[np.int64],
    dense_weights: Array,
    skeleton: Skeleton,
    m: Measurements,
    options: FitOptions = DEFAULTS,
) -> Array:
    """Step (3) with its calibration: the widened vertices whose tape girths match `m`.

    Quick rounds correct the targets from girths at the last measured levels (3 sections);
    a full tape measurement then checks that the levels have not moved, and the best full
    measurement wins.
    """
    trunk_faces = _faces_near_trunk(v, faces, m)
    tape = measure_body(v, trunk_faces)
    shape = read_trunk(v, trunk_faces, _trunk_weight(dense_weights), skeleton, tape)
    asked = np.array([m.hips_m, m.waist_m, m.chest_m])
    targets = GirthTargets(*asked)
    best: tuple[float, Array] | None = None
    for _ in range(options.max_tape_checks):
        for _ in range(options.max_rounds):
            widened = widen(v, dense_weights, skeleton, shape, targets)
            got = _quick_girths(widened, trunk_faces, tape)
            if np.abs(got - asked).max() < options.quick_tolerance_m or (got <= 0).any():
                break
            targets = targets.corrected(asked, got)
        tape = measure_body(widened, trunk_faces)
        got = _tape_girths(tape)
        worst = float(np.abs(got - asked).max())
        if best is None or worst < best[0]:
            best = (worst, widened)
        if worst < options.girth_tolerance_m:
            break
        targets = targets.corrected(asked, got)
    assert best is not None
    return best[1]


def fit_template_to_measurements(
    template: TwinBody, m: Measurements, options: FitOptions = DEFAULTS
) -> TwinBody:
    """The template deformed to `m`: stature, girths, inseam and shoulders (see module doc)."""
    # (1) A-pose, hips over the origin.
    posed = a_pose(template, options)
    mesh = _Welded.of(posed)
    dense = posed.skin.to_dense(posed.skeleton.joint_count)[mesh.keep]
    # (2) Proportions.
    v_all, skeleton, _ = proportion(posed, m, options)
    # (3) Girths.
    widened = calibrate_girths(v_all[mesh.keep], mesh.faces, dense, skeleton, m, options)
    # (4) Floor, stature, hips over the origin; normals across the seams.
    J = skeleton.rest_positions_m
    floor = widened[:, 1].min()
    stretch = m.height_m / float(widened[:, 1].max() - floor)
    hips = J[JOINT_INDEX["hips"]]

    def place(p: Array) -> Array:
        q = np.asarray(p, dtype=np.float64) - [hips[0], floor, hips[2]]
        return q * [1.0, stretch, 1.0]

    welded = place(widened)
    normals = vertex_normals(welded, mesh.faces, fallback=UP)
    skeleton = Skeleton(place(J), {k: place(t) for k, t in skeleton.leaf_tips_m.items()})
    return TwinBody(
        vertices_m=welded[mesh.inverse],
        faces=template.faces,
        normals=normals[mesh.inverse],
        uvs=template.uvs,
        skin=template.skin,
        skeleton=skeleton,
        weld_map=template.weld_map,
    )
