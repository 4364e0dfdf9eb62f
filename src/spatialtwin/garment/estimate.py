"""A garment with no authoring body: estimate one, so it refits like any other.

A bare OBJ says nothing of the body it was made on, but its sleeves and legs say how that
body stood. The estimate takes the template human (hm08), turns its arms and legs to the
garment's own sleeve and leg axes (abduction in the frontal plane; the angles are what the
record reports), puts the garment on it by translation only (`placement.place_garment`: neck
and waist anchors, never a rescale) and binds every garment vertex to its closest point on
that posed template. From there the garment refits onto any twin through the template's
correspondence, as a `.mhclo` garment does, and the solver resolves the rest.

1. gather: the garment placed on the template as it stands,
2. run: per side, the sleeve (leg) vertices, those nearest the template's arm (leg), give an
   axis by PCA; the template's upper arm (upper leg) turns to it; twice, since a better pose
   finds the sleeve better. Only cloth that goes round that limb alone is a sleeve (leg): a
   skirt's halves lie nearest the legs too, and once turned the legs to 62-68° apart (the
   elegant suit's skirt then refitted across both legs, 20-38 % on the same leg),
3. write: the posed template as a new bind pose (same weights), the garment placed on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import ConvexHull, QhullError, cKDTree
from scipy.spatial.transform import Rotation

from spatialtwin.body.measure import cross_section_loops
from spatialtwin.body.pose import Pose, forward_kinematics, skinning_matrices
from spatialtwin.body.skeleton import JOINT_INDEX, Skeleton
from spatialtwin.body.skinning import Skinner
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.garment.binding import AuthoringBody
from spatialtwin.garment.mesh import GarmentMesh
from spatialtwin.garment.pieces import Piece
from spatialtwin.garment.placement import place_garment

Array = NDArray[np.float64]
LIMBS = {
    "leftUpperArm": ("leftUpperArm", "leftLowerArm", "leftHand"),
    "rightUpperArm": ("rightUpperArm", "rightLowerArm", "rightHand"),
    "leftUpperLeg": ("leftUpperLeg", "leftLowerLeg"),
    "rightUpperLeg": ("rightUpperLeg", "rightLowerLeg"),
}
# What a sleeve (trouser leg) must go round without also going round: the torso for an arm,
# the other leg for a leg. A skirt's halves lie nearest the legs but wrap both.
APART_FROM = {
    "leftUpperArm": "hips",
    "rightUpperArm": "hips",
    "leftUpperLeg": "rightUpperLeg",
    "rightUpperLeg": "leftUpperLeg",
}
TUBE_QUANTILES = (0.25, 0.5, 0.75)  # heights of the limb's cloth where a tube is looked for


@dataclass(frozen=True)
class EstimateOptions:
    """`min_limb_vertices`: a sleeve (leg) with fewer cloth vertices is not used;
    `max_turn_deg` bounds how far a limb is turned (a cape is not a sleeve)."""

    rounds: int = 2
    min_limb_vertices: int = 40
    max_turn_deg: float = 40.0
    min_turn_deg: float = 2.0


ESTIMATE_DEFAULTS = EstimateOptions()


def _frontal_angle(direction: Array) -> float:
    """Angle (radians) of a direction in the frontal (x, y) plane, from straight down."""
    return float(np.arctan2(direction[0], -direction[1]))


def _limb_axis(points: Array, start: Array) -> Array | None:
    """Unit axis of a limb's cloth, pointing away from `start` (its root joint)."""
    if len(points) < 3:
        return None
    centre = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
    axis = vt[0]
    return axis if np.dot(axis, centre - start) >= 0 else -axis


def _bone_point_at(skeleton: Skeleton, joint: str, y_m: float) -> Array:
    """(x, z) where the bone starting at `joint` (the hips: straight up) is at height y."""
    start = skeleton.rest_positions_m[JOINT_INDEX[joint]]
    if joint == "hips":
        return start[[0, 2]]
    tip = skeleton.bone_tip(joint)
    span = tip[1] - start[1]
    t = 0.0 if abs(span) < 1e-9 else float(np.clip((y_m - start[1]) / span, 0.0, 1.0))
    return (start + t * (tip - start))[[0, 2]]


def _hull_encloses(loop: Array, point: Array) -> bool:
    """Whether `point` (x, z) lies within the convex hull of a section loop's points."""
    try:
        hull = ConvexHull(loop)
    except QhullError:
        return False
    return bool(np.all(hull.equations[:, :2] @ point + hull.equations[:, 2] <= 1e-9))


def wraps_limb_alone(
    cloth_m: Array,
    faces: NDArray[np.integer],
    skeleton: Skeleton,
    root: str,
    heights_m: Array,
) -> bool:
    """Whether the cloth goes round the limb from `root` by itself at one of `heights_m`: a
    horizontal section loop that encloses the limb's bone and not what it must be apart from
    (`APART_FROM`). A sleeve or a trouser leg does; a skirt's half, a cape's side do not."""
    for y in heights_m:
        inside = _bone_point_at(skeleton, root, float(y))
        other = _bone_point_at(skeleton, APART_FROM[root], float(y))
        for loop in cross_section_loops(cloth_m, faces, float(y)):
            if len(loop) >= 3 and _hull_encloses(loop, inside) and not _hull_encloses(loop, other):
                return True
    return False


def _rebound(body: TwinBody, points: Array, point_skin: Any, pose: Pose) -> tuple[TwinBody, Array]:
    """`body` and its bound `points` skinned into `pose`, taken as the new bind pose."""
    mats = skinning_matrices(body.skeleton, pose)
    vertices = body.skinner().vertices(mats)
    moved_points = Skinner(points, point_skin, body.skeleton.joint_count).vertices(mats)
    world_rot, world_pos = forward_kinematics(body.skeleton, pose)
    tips = {}
    for name, tip in body.skeleton.leaf_tips_m.items():
        j = JOINT_INDEX[name]
        tips[name] = world_pos[j] + world_rot[j] @ (tip - body.skeleton.rest_positions_m[j])
    rebound = TwinBody(
        vertices_m=vertices,
        faces=body.faces,
        normals=body.normals,
        uvs=body.uvs,
        skin=body.skin,
        skeleton=Skeleton(world_pos, tips),
        weld_map=body.weld_map,
    )
    return rebound, moved_points


def estimate_authoring(
    mesh: GarmentMesh,
    pieces: list[Piece],
    template: AuthoringBody,
    options: EstimateOptions = ESTIMATE_DEFAULTS,
) -> tuple[AuthoringBody, Array, dict[str, Any]]:
    """(the estimated authoring body, the garment's positions on it, what was estimated)."""
    body = template.body
    dominant = body.skin.joints[np.arange(body.vertex_count), np.argmax(body.skin.weights, 1)]
    turns_deg: dict[str, float] = {}
    rotations: dict[str, Array] = {}
    posed_body = body
    for _ in range(options.rounds):
        placed = place_garment(mesh, pieces, posed_body, together=True)
        _, nearest = cKDTree(posed_body.vertices_m).query(placed.rest_positions_m)
        cloth_joint = dominant[nearest]
        changed = False
        for root, chain in LIMBS.items():
            on_limb = np.isin(cloth_joint, [JOINT_INDEX[n] for n in chain])
            if on_limb.sum() < options.min_limb_vertices:
                continue
            heights = np.quantile(placed.rest_positions_m[on_limb, 1], TUBE_QUANTILES)
            if not wraps_limb_alone(
                placed.rest_positions_m, mesh.faces, posed_body.skeleton, root, heights
            ):
                continue
            j = JOINT_INDEX[root]
            start = posed_body.skeleton.rest_positions_m[j]
            axis = _limb_axis(placed.rest_positions_m[on_limb], start)
            if axis is None:
                continue
            limb = posed_body.skeleton.bone_tip(root) - start
            turn = _frontal_angle(axis) - _frontal_angle(limb)
            bound = np.radians(options.max_turn_deg)
            turn = float(np.clip(turn, -bound, bound))
            if abs(np.degrees(turn)) < options.min_turn_deg:
                continue
            # A turn about +Z (the body's forward axis) in the frontal plane.
            previous = Rotation.from_quat(rotations.get(root, [0.0, 0.0, 0.0, 1.0]))
            rotations[root] = (Rotation.from_rotvec([0.0, 0.0, turn]) * previous).as_quat()
            turns_deg[root] = round(turns_deg.get(root, 0.0) + float(np.degrees(turn)), 2)
            changed = True
        if not changed:
            break
        posed_body = posed_template(template, rotations).body
    placed = place_garment(mesh, pieces, posed_body, together=True)
    report = {
        "template": template.kind,
        "limb_turns_deg": turns_deg,
        "rotations": {k: [round(float(c), 7) for c in q] for k, q in rotations.items()},
        "placement": placed.report,
    }
    return posed_template(template, rotations), placed.rest_positions_m, report


def posed_template(template: AuthoringBody, rotations: dict[str, Any]) -> AuthoringBody:
    """The template with its limbs turned by `rotations` (joint → quaternion), as a new bind
    pose: the estimated authoring body, rebuilt the same way for every look."""
    pose = Pose(np.zeros(3), {k: np.asarray(q, dtype=np.float64) for k, q in rotations.items()})
    body, points = template.body, template.points_m
    if rotations:
        body, points = _rebound(template.body, template.points_m, template.point_skin, pose)
    return AuthoringBody(
        kind="estimated",
        body=body,
        points_m=points,
        point_skin=template.point_skin,
        skin_index=template.skin_index,
        template_body=template.template_body,
    )
