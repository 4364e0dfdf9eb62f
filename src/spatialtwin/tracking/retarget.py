"""World landmarks (metres) → joint rotations of the canonical skeleton.

Works for any `Skeleton`: every bone's rest direction comes from the twin's own rest joint
positions, and each local rotation is the one that takes the rest bone direction to the
observed direction, expressed in the parent's frame, so rotations compose down the chain.
Joint frames are world-aligned at rest (see `spatialtwin.body.skeleton`), so a local
rotation is `W_parent^T @ W_joint` with W the world rotations.

How each part is found (landmarks already in the twin's axes, see `landmarks`):
1. Hips: the frame of the hip line (left hip - right hip) and the torso's up (hip midpoint to
   shoulder midpoint), against the same frame at rest.
2. Spine, chest, upper chest: the shoulder line's frame against the hips', split evenly over
   the three joints, so a turn of the shoulders against the hips (the spine's twist) spreads
   along the spine.
3. Upper arms and legs: swing from the rest direction to the observed one, plus a twist about
   the bone set by the plane the limb bends in, so that elbows and knees bend about their
   own hinge axes; the twist fades out for a nearly straight limb (where the plane is noise)
   and is clipped to human limits.
4. Forearms and shins: a hinge about the rest hinge axis (elbow flexion brings the forearm
   forward, knee flexion takes the shin back), clipped to human flexion limits.
5. Hands and feet: swing toward the knuckles / toe tip, with a capped angle.
6. Neck and head: the frame of the ear line and the ears→eyes direction, half on each.
7. Root: the twin's feet are kept on the floor (y keeps the lower ankle at its rest height), the hip
   midpoint's offset from the frame centre moves the twin sideways (metres, from the ratio of
   the torso's world and image lengths). Depth is not estimated.

Limbs whose landmarks are not visible are reported in `observed` so the tracker can hold them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
from numpy.typing import NDArray

from spatialtwin.body.pose import Pose
from spatialtwin.body.skeleton import JOINT_INDEX, JOINT_NAMES, Skeleton
from spatialtwin.tracking.landmarks import LM, LandmarkFrame
from spatialtwin.tracking.rotations import (
    axis_angle_matrix,
    cross,
    fractional_rotation,
    frame_from_x_and_y,
    frame_from_x_and_z,
    matrix_to_quat,
    normalize,
    signed_angle,
    swing_matrix,
)

J = JOINT_INDEX
LIMBS: tuple[tuple[str, str, str], ...] = (
    ("leftUpperArm", "leftLowerArm", "leftHand"),
    ("rightUpperArm", "rightLowerArm", "rightHand"),
    ("leftUpperLeg", "leftLowerLeg", "leftFoot"),
    ("rightUpperLeg", "rightLowerLeg", "rightFoot"),
)
LIMB_ROOT_LM = np.array(
    [LM["left_shoulder"], LM["right_shoulder"], LM["left_hip"], LM["right_hip"]]
)
LIMB_MID_LM = np.array([LM["left_elbow"], LM["right_elbow"], LM["left_knee"], LM["right_knee"]])
LIMB_END_LM = np.array([LM["left_wrist"], LM["right_wrist"], LM["left_ankle"], LM["right_ankle"]])
# Hands point at the knuckles' midpoint (index, pinky); feet at the toe tip.
LIMB_TIP_LMS = np.array(
    [
        [LM["left_index"], LM["left_pinky"]],
        [LM["right_index"], LM["right_pinky"]],
        [LM["left_foot_index"], LM["left_foot_index"]],
        [LM["right_foot_index"], LM["right_foot_index"]],
    ]
)
# The way each limb's distal bone moves when its hinge flexes: forearms forward, shins back.
FLEX_TOWARD = np.array([[0, 0, 1.0], [0, 0, 1.0], [0, 0, -1.0], [0, 0, -1.0]])
TORSO_LMS = [LM["left_shoulder"], LM["right_shoulder"], LM["left_hip"], LM["right_hip"]]
HEAD_LMS = [LM["left_ear"], LM["right_ear"], LM["left_eye"], LM["right_eye"]]


@dataclass(frozen=True)
class RetargetLimits:
    """Human joint limits (degrees) and thresholds used while retargeting."""

    elbow_flexion_deg: tuple[float, float] = (0.0, 150.0)
    knee_flexion_deg: tuple[float, float] = (0.0, 155.0)
    # Twist of the upper arm/leg about its own axis, relative to the plain swing.
    arm_twist_deg: tuple[float, float] = (-100.0, 100.0)
    leg_twist_deg: tuple[float, float] = (-60.0, 60.0)
    # Below the first bend angle a limb's bending plane is noise: no twist; full above the second.
    twist_bend_deg: tuple[float, float] = (12.0, 30.0)
    hand_swing_max_deg: float = 80.0
    foot_swing_max_deg: float = 60.0
    head_max_deg: float = 80.0
    spine_max_deg: float = 90.0
    # Eyes above the ear line by this angle when the head is level (MediaPipe landmarks).
    neutral_head_pitch_deg: float = 7.0
    min_visibility: float = 0.5


@dataclass(frozen=True)
class RetargetModel:
    """What retargeting needs from a skeleton's rest pose, computed once per twin."""

    skeleton: Skeleton
    limits: RetargetLimits
    hips_rest_frame: NDArray[np.float64]
    chest_rest_frame: NDArray[np.float64]
    head_rest_frame: NDArray[np.float64]
    upper_dir: NDArray[np.float64]  # (4, 3) rest direction of upper arms/legs
    lower_dir: NDArray[np.float64]  # (4, 3) rest direction of forearms/shins
    end_dir: NDArray[np.float64]  # (4, 3) rest direction of hands/feet (to their tips)
    hinge_axis: NDArray[np.float64]  # (4, 3) rest hinge axis of elbows/knees
    rest_flexion: NDArray[np.float64]  # (4,) rest flexion (radians) of elbows/knees
    flexion_range: NDArray[np.float64]  # (4, 2) allowed hinge angle relative to rest (radians)
    twist_range: NDArray[np.float64]  # (4, 2) allowed upper-bone twist (radians)
    leg_offsets: NDArray[np.float64] = field(repr=False)  # rest offsets for the ground contact
    rest_ankle_y_m: float = 0.0


def build_retarget_model(skeleton: Skeleton, limits: RetargetLimits | None = None) -> RetargetModel:
    """Precompute rest frames, bone directions and hinge axes of `skeleton`."""
    limits = limits or RetargetLimits()
    pos = skeleton.rest_positions_m

    def p(name: str) -> NDArray[np.float64]:
        return pos[J[name]]

    torso_up = (p("leftUpperArm") + p("rightUpperArm")) / 2 - (
        p("leftUpperLeg") + p("rightUpperLeg")
    ) / 2
    hips_rest = frame_from_x_and_y(p("leftUpperLeg") - p("rightUpperLeg"), torso_up)
    chest_rest = frame_from_x_and_y(p("leftUpperArm") - p("rightUpperArm"), torso_up)
    pitch = np.radians(limits.neutral_head_pitch_deg)
    head_rest = frame_from_x_and_z(
        np.array([1.0, 0, 0]), np.array([0, np.sin(pitch), np.cos(pitch)])
    )

    upper = np.array([skeleton.bone_tip(u) - p(u) for u, _, _ in LIMBS])
    lower = np.array([skeleton.bone_tip(m) - p(m) for _, m, _ in LIMBS])
    ends = []
    for _, _, e in LIMBS:
        tip_name = e if e.endswith("Hand") else e.replace("Foot", "Toes")
        tip = skeleton.leaf_tips_m.get(tip_name)
        ends.append((np.asarray(tip) if tip is not None else skeleton.bone_tip(e)) - p(e))
    upper_dir, lower_dir, end_dir = normalize(upper), normalize(lower), normalize(np.array(ends))
    hinge = normalize(cross(upper_dir, FLEX_TOWARD))
    rest_flex = signed_angle(upper_dir, lower_dir, hinge)
    flex_deg = np.array([limits.elbow_flexion_deg] * 2 + [limits.knee_flexion_deg] * 2)
    flexion_range = np.radians(flex_deg) - rest_flex[:, None]
    twist_range = np.radians(np.array([limits.arm_twist_deg] * 2 + [limits.leg_twist_deg] * 2))

    # Offsets down each leg: hips -> upper leg -> lower leg -> foot (ankle).
    offsets = []
    for side in ("left", "right"):
        chain = ["hips", f"{side}UpperLeg", f"{side}LowerLeg", f"{side}Foot"]
        offsets.append([p(b) - p(a) for a, b in pairwise(chain)])
    return RetargetModel(
        skeleton=skeleton,
        limits=limits,
        hips_rest_frame=hips_rest,
        chest_rest_frame=chest_rest,
        head_rest_frame=head_rest,
        upper_dir=upper_dir,
        lower_dir=lower_dir,
        end_dir=end_dir,
        hinge_axis=hinge,
        rest_flexion=rest_flex,
        flexion_range=flexion_range,
        twist_range=twist_range,
        leg_offsets=np.array(offsets),
        rest_ankle_y_m=float(min(p("leftFoot")[1], p("rightFoot")[1])),
    )


@dataclass(frozen=True)
class RetargetResult:
    """A pose, the world rotations behind it, and which joints the landmarks determined."""

    pose: Pose
    quaternions: NDArray[np.float64]  # (J, 4) local rotations [x, y, z, w], w >= 0
    local_rotations: NDArray[np.float64]  # (J, 3, 3)
    observed: NDArray[np.bool_]  # (J,)


def retarget(model: RetargetModel, frame: LandmarkFrame, *, lateral: bool = True) -> RetargetResult:
    """Joint rotations and root translation of the twin for one frame of landmarks."""
    lim = model.limits
    P = frame.world_twin_m()
    vis = frame.visibility
    seen = vis >= lim.min_visibility
    local = np.tile(np.eye(3), (len(JOINT_NAMES), 1, 1))
    observed = np.zeros(len(JOINT_NAMES), dtype=bool)

    # (1) hips and (2) spine from the hip and shoulder lines.
    hip_mid = (P[LM["left_hip"]] + P[LM["right_hip"]]) / 2
    shoulder_mid = (P[LM["left_shoulder"]] + P[LM["right_shoulder"]]) / 2
    up = shoulder_mid - hip_mid
    hips_w = (
        frame_from_x_and_y(P[LM["left_hip"]] - P[LM["right_hip"]], up) @ model.hips_rest_frame.T
    )
    chest_w = (
        frame_from_x_and_y(P[LM["left_shoulder"]] - P[LM["right_shoulder"]], up)
        @ model.chest_rest_frame.T
    )
    spine_step = fractional_rotation(hips_w.T @ chest_w, 1.0 / 3.0, np.radians(lim.spine_max_deg))
    chest_w = hips_w @ spine_step @ spine_step @ spine_step
    local[J["hips"]] = hips_w
    for name in ("spine", "chest", "upperChest"):
        local[J[name]] = spine_step
    torso_seen = bool(seen[TORSO_LMS].all())
    observed[[J[n] for n in ("hips", "spine", "chest", "upperChest")]] = torso_seen
    observed[[J["leftShoulder"], J["rightShoulder"]]] = torso_seen

    # (6) head: ear line and ears -> eyes, half on the neck, half on the head.
    ear_mid = (P[LM["left_ear"]] + P[LM["right_ear"]]) / 2
    eye_mid = (P[LM["left_eye"]] + P[LM["right_eye"]]) / 2
    head_w = frame_from_x_and_z(P[LM["left_ear"]] - P[LM["right_ear"]], eye_mid - ear_mid)
    head_w = head_w @ model.head_rest_frame.T
    half = fractional_rotation(chest_w.T @ head_w, 0.5, np.radians(lim.head_max_deg))
    local[J["neck"]] = half
    local[J["head"]] = half
    observed[[J["neck"], J["head"]]] = bool(seen[HEAD_LMS].all()) and torso_seen

    # (3) upper arms/legs: swing + twist from the bending plane, in the parent's frame.
    parents = np.stack([chest_w, chest_w, hips_w, hips_w])
    u = P[LIMB_MID_LM] - P[LIMB_ROOT_LM]
    v = P[LIMB_END_LM] - P[LIMB_MID_LM]
    u_l = normalize(np.einsum("kji,kj->ki", parents, u))
    v_l = normalize(np.einsum("kji,kj->ki", parents, v))
    swing = swing_matrix(model.upper_dir, u_l)
    hinge_swung = np.einsum("kij,kj->ki", swing, model.hinge_axis)
    bend_axis = cross(u_l, v_l)
    bend = np.arctan2(np.linalg.norm(bend_axis, axis=-1), np.sum(u_l * v_l, axis=-1))
    twist = signed_angle(hinge_swung, normalize(bend_axis), u_l)
    b0, b1 = np.radians(lim.twist_bend_deg)
    weight = np.clip((bend - b0) / (b1 - b0), 0.0, 1.0) * seen[LIMB_END_LM]
    twist = np.clip(twist * weight, model.twist_range[:, 0], model.twist_range[:, 1])
    upper_local = axis_angle_matrix(u_l, twist) @ swing
    upper_w = parents @ upper_local

    # (4) elbows and knees as hinges about their rest axes.
    v_upper = np.einsum("kji,kj->ki", upper_w, v)
    flex = signed_angle(model.lower_dir, v_upper, model.hinge_axis)
    flex = np.clip(flex, model.flexion_range[:, 0], model.flexion_range[:, 1])
    lower_local = axis_angle_matrix(model.hinge_axis, flex)
    lower_w = upper_w @ lower_local

    # (5) hands and feet: capped swing toward the tip landmarks.
    tip = P[LIMB_TIP_LMS].mean(axis=1) - P[LIMB_END_LM]
    tip_l = normalize(np.einsum("kji,kj->ki", lower_w, tip))
    caps = np.radians([lim.hand_swing_max_deg] * 2 + [lim.foot_swing_max_deg] * 2)
    end_local = swing_matrix(model.end_dir, tip_l, caps)

    for k, (upper_name, lower_name, end_name) in enumerate(LIMBS):
        local[J[upper_name]] = upper_local[k]
        local[J[lower_name]] = lower_local[k]
        local[J[end_name]] = end_local[k]
        limb_seen = bool(seen[LIMB_ROOT_LM[k]] and seen[LIMB_MID_LM[k]])
        observed[J[upper_name]] = limb_seen
        observed[J[lower_name]] = limb_seen and bool(seen[LIMB_END_LM[k]])
        observed[J[end_name]] = observed[J[lower_name]] and bool(seen[LIMB_TIP_LMS[k]].all())
    observed[[J["leftToes"], J["rightToes"]]] = observed[[J["leftFoot"], J["rightFoot"]]]

    # (7) root: feet on the floor, sideways offset from the image.
    root = np.zeros(3)
    root[1] = _floor_offset_m(model, hips_w, upper_w[2:], lower_w[2:])
    if lateral:
        root[0] = _lateral_offset_m(frame, P)

    quats = matrix_to_quat(local)
    pose = Pose(root, dict(zip(JOINT_NAMES, quats, strict=True)))
    return RetargetResult(pose, quats, local, observed)


def _floor_offset_m(model: RetargetModel, hips_w, upper_w, lower_w) -> float:
    """Root height (metres) that puts the lower ankle at its rest height.

    Ankles rather than toes: MediaPipe's foot landmarks are the noisiest, and a foot pitched by
    that noise would lift or sink the whole twin; standing on tiptoe is rare before a mirror.
    """
    offs = model.leg_offsets  # (2 legs, 5 segments, 3)
    hips_y = model.skeleton.position("hips")[1]
    lowest = np.inf
    for leg in range(2):
        hip = hips_w @ offs[leg, 0]
        knee = hip + upper_w[leg] @ offs[leg, 1]
        ankle = knee + lower_w[leg] @ offs[leg, 2]
        lowest = min(lowest, ankle[1])
    # Points are relative to the hips joint; posed height = root_y + hips_y + relative y.
    return float(model.rest_ankle_y_m - hips_y - lowest)


def _lateral_offset_m(frame: LandmarkFrame, P: NDArray[np.float64]) -> float:
    """Sideways offset (metres, twin +X) of the hip midpoint from the frame's centre line."""
    width, height = frame.size_px
    if width <= 0 or height <= 0:
        return 0.0
    px = frame.image_px()
    hip_px = (px[LM["left_hip"]] + px[LM["right_hip"]]) / 2
    shoulder_px = (px[LM["left_shoulder"]] + px[LM["right_shoulder"]]) / 2
    torso_px = float(np.linalg.norm(shoulder_px - hip_px))
    hip_m = (P[LM["left_hip"]] + P[LM["right_hip"]]) / 2
    shoulder_m = (P[LM["left_shoulder"]] + P[LM["right_shoulder"]]) / 2
    torso_m = float(np.linalg.norm(shoulder_m - hip_m))
    if torso_px < 1.0:
        return 0.0
    # Image +x is the person's left for a person facing the camera: the twin's +X.
    return float((hip_px[0] - width / 2.0) * torso_m / torso_px)
