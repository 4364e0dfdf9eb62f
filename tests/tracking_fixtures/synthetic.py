"""A plausible adult skeleton and MediaPipe-style landmarks made from it by forward kinematics.

Until the lead's parametric body exists, the retargeting tests need some `Skeleton`: this one is
a 1.75 m adult in the generated twins' A-pose (upper arms 45° below horizontal), feet on y = 0,
facing +Z, metres. Landmarks are placed where MediaPipe puts them on a body (shoulder, elbow,
wrist at the joints; knuckles, ears, eyes at fixed offsets carried by their bone), converted to
MediaPipe's world axes (origin at the hip midpoint, +y down, -z toward the camera), so a test can
pose the skeleton with known angles and ask retargeting to recover them.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from spatialtwin.body.pose import Pose, forward_kinematics
from spatialtwin.body.skeleton import JOINT_INDEX, JOINT_NAMES, Skeleton
from spatialtwin.tracking.landmarks import LM, MP_TO_TWIN, LandmarkFrame

HEIGHT_M = 1.75
S45 = np.sqrt(0.5)


def adult_a_pose_skeleton() -> Skeleton:
    """A 1.75 m adult skeleton in A-pose (arms 45° down), feet on y = 0, facing +Z."""
    left = {
        "leftShoulder": (0.03, 1.43, -0.02),
        "leftUpperArm": (0.18, 1.43, -0.03),
        "leftLowerArm": (0.18 + 0.29 * S45, 1.43 - 0.29 * S45, -0.03),
        "leftHand": (0.18 + 0.55 * S45, 1.43 - 0.55 * S45, -0.03),
        "leftUpperLeg": (0.09, 0.92, 0.0),
        "leftLowerLeg": (0.095, 0.50, 0.01),
        "leftFoot": (0.10, 0.08, -0.02),
        "leftToes": (0.11, 0.02, 0.12),
    }
    joints = {
        "hips": (0.0, 0.96, 0.0),
        "spine": (0.0, 1.06, -0.01),
        "chest": (0.0, 1.19, -0.01),
        "upperChest": (0.0, 1.33, -0.01),
        "neck": (0.0, 1.48, -0.02),
        "head": (0.0, 1.58, 0.0),
        **left,
        **{k.replace("left", "right"): (-x, y, z) for k, (x, y, z) in left.items()},
    }
    pos = np.array([joints[n] for n in JOINT_NAMES], dtype=np.float64)
    hand_tip = (0.18 + 0.74 * S45, 1.43 - 0.74 * S45, -0.03)
    tips = {
        "head": np.array([0.0, HEIGHT_M, 0.0]),
        "leftHand": np.array(hand_tip),
        "rightHand": np.array([-hand_tip[0], hand_tip[1], hand_tip[2]]),
        "leftToes": np.array([0.115, 0.0, 0.19]),
        "rightToes": np.array([-0.115, 0.0, 0.19]),
    }
    return Skeleton(pos, tips)


def _at(world_rot, world_pos, joint: str, offset) -> NDArray[np.float64]:
    j = JOINT_INDEX[joint]
    return world_pos[j] + world_rot[j] @ np.asarray(offset, dtype=np.float64)


def synthetic_landmarks(
    skeleton: Skeleton, pose: Pose, *, head_pitch_deg: float = 7.0, visibility: float = 1.0
) -> LandmarkFrame:
    """MediaPipe-convention landmarks of `skeleton` posed by `pose` (an orthographic camera)."""
    rot, pos = forward_kinematics(skeleton, pose)
    P = np.zeros((33, 3))

    def put(name: str, point) -> None:
        P[LM[name]] = point

    for side in ("left", "right"):
        sx = 1.0 if side == "left" else -1.0
        put(f"{side}_shoulder", pos[JOINT_INDEX[f"{side}UpperArm"]])
        put(f"{side}_elbow", pos[JOINT_INDEX[f"{side}LowerArm"]])
        put(f"{side}_wrist", pos[JOINT_INDEX[f"{side}Hand"]])
        put(f"{side}_hip", pos[JOINT_INDEX[f"{side}UpperLeg"]])
        put(f"{side}_knee", pos[JOINT_INDEX[f"{side}LowerLeg"]])
        put(f"{side}_ankle", pos[JOINT_INDEX[f"{side}Foot"]])
        hand = f"{side}Hand"
        d = skeleton.leaf_tips_m[hand] - skeleton.position(hand)
        d = d / np.linalg.norm(d)
        # Palm faces the thigh at rest: the index knuckle is forward (+Z) of the pinky's.
        put(f"{side}_index", _at(rot, pos, hand, 0.09 * d + [0, 0, 0.025]))
        put(f"{side}_pinky", _at(rot, pos, hand, 0.09 * d - [0, 0, 0.025]))
        put(f"{side}_thumb", _at(rot, pos, hand, 0.04 * d + [0, 0, 0.04]))
        toes = f"{side}Toes"
        put(
            f"{side}_foot_index",
            _at(rot, pos, toes, skeleton.leaf_tips_m[toes] - skeleton.position(toes)),
        )
        put(f"{side}_heel", _at(rot, pos, f"{side}Foot", [0.0, -0.06, -0.07]))
        # Face points carried by the head: ears level, eyes forward and a little above them.
        pitch = np.radians(head_pitch_deg)
        ear = np.array([0.075 * sx, 0.07, 0.0])
        eye = np.array([0.032 * sx, 0.07 + 0.09 * np.sin(pitch), 0.09 * np.cos(pitch)])
        put(f"{side}_ear", _at(rot, pos, "head", ear))
        put(f"{side}_eye", _at(rot, pos, "head", eye))
        put(f"{side}_eye_inner", _at(rot, pos, "head", eye - np.array([0.012 * sx, 0, 0])))
        put(f"{side}_eye_outer", _at(rot, pos, "head", eye + np.array([0.012 * sx, 0, 0])))
    put("nose", _at(rot, pos, "head", [0.0, 0.04, 0.11]))
    put("mouth_left", _at(rot, pos, "head", [0.025, 0.0, 0.095]))
    put("mouth_right", _at(rot, pos, "head", [-0.025, 0.0, 0.095]))

    hip_mid = (P[LM["left_hip"]] + P[LM["right_hip"]]) / 2
    rel = P - hip_mid
    world = np.zeros((33, 4))
    world[:, :3] = rel @ MP_TO_TWIN  # the diagonal change of axes is its own inverse
    world[:, 3] = visibility
    # Orthographic view of a 1000 px square frame, hip midpoint at the centre, 400 px per metre.
    image = np.zeros((33, 4))
    image[:, 0] = 0.5 + 0.4 * rel[:, 0]
    image[:, 1] = 0.5 - 0.4 * rel[:, 1]
    image[:, 2] = -0.4 * rel[:, 2]
    image[:, 3] = visibility
    return LandmarkFrame(image, world, np.full(33, visibility), (1000, 1000))
