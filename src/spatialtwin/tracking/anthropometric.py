"""A canonical skeleton from stature alone, for retargeting when no twin skeleton is given.

Joint heights and segment lengths are the classic fractions of stature H from Drillis &
Contini (1966), as tabulated in Winter, "Biomechanics and Motor Control of Human Movement"
(4th ed., fig. 4.1): ankle 0.039 H, knee 0.285 H, hip 0.530 H, shoulder 0.818 H, chin 0.870 H,
upper arm 0.186 H, forearm 0.146 H, hand 0.108 H, foot 0.152 H, shoulder width 0.259 H.
The arms hang 45° below horizontal (the generated twins' A-pose), feet on y = 0, facing +Z.

Poses are local rotations relative to a skeleton's rest bone directions, so a pose retargeted
onto this skeleton plays back correctly on any twin with the same A-pose; pass the twin's own
skeleton when there is one.
"""

from __future__ import annotations

import numpy as np

from spatialtwin.body.skeleton import JOINT_NAMES, Skeleton
from spatialtwin.errors import SpatialTwinError

ARM_DROP_RAD = np.radians(45.0)


def anthropometric_skeleton(height_m: float = 1.70) -> Skeleton:
    """An adult A-pose skeleton of stature `height_m` (metres)."""
    if not 1.0 <= height_m <= 2.5:
        raise SpatialTwinError(
            "bad_height", "stature must be between 1.0 and 2.5 metres", {"height_m": height_m}
        )
    H = height_m
    arm = np.array([np.cos(ARM_DROP_RAD), -np.sin(ARM_DROP_RAD), 0.0])
    shoulder = np.array([0.110 * H, 0.818 * H, -0.015 * H])
    elbow = shoulder + 0.186 * H * arm
    wrist = elbow + 0.146 * H * arm
    left = {
        "leftShoulder": np.array([0.020 * H, 0.810 * H, -0.010 * H]),
        "leftUpperArm": shoulder,
        "leftLowerArm": elbow,
        "leftHand": wrist,
        "leftUpperLeg": np.array([0.052 * H, 0.530 * H, 0.0]),
        "leftLowerLeg": np.array([0.055 * H, 0.285 * H, 0.005 * H]),
        "leftFoot": np.array([0.058 * H, 0.039 * H, -0.010 * H]),
        "leftToes": np.array([0.062 * H, 0.012 * H, 0.075 * H]),
    }
    joints = {
        "hips": np.array([0.0, 0.550 * H, 0.0]),
        "spine": np.array([0.0, 0.610 * H, -0.005 * H]),
        "chest": np.array([0.0, 0.685 * H, -0.005 * H]),
        "upperChest": np.array([0.0, 0.760 * H, -0.005 * H]),
        "neck": np.array([0.0, 0.845 * H, -0.012 * H]),
        "head": np.array([0.0, 0.900 * H, 0.0]),
        **left,
        **{k.replace("left", "right"): v * [-1.0, 1.0, 1.0] for k, v in left.items()},
    }
    hand_tip = wrist + 0.108 * H * arm
    toe_tip = np.array([0.064 * H, 0.0, 0.117 * H])
    tips = {
        "head": np.array([0.0, H, 0.0]),
        "leftHand": hand_tip,
        "rightHand": hand_tip * [-1.0, 1.0, 1.0],
        "leftToes": toe_tip,
        "rightToes": toe_tip * [-1.0, 1.0, 1.0],
    }
    return Skeleton(np.array([joints[n] for n in JOINT_NAMES]), tips)
