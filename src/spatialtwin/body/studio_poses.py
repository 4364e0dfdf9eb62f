"""A small library of named poses for studio stills: standing, walking, hand on hip, and a
three-quarter turn.

Each is a `Pose` in the house convention (local rotations in world-aligned joint frames, from
the A-pose every twin rests in; bodies face +Z, their left is +X), written as rotations about
world axes in degrees so a reader can see what each joint does:

- `standing`: the twin's rest pose (the A-pose, upper arms 45° below horizontal), exactly
  as a product look is draped, so a poster needs no second drape;
- `walking`: mid-stride: left thigh 20° forward with the knee bent 25°, right thigh 12° back,
  the left forearm swung in, the trunk turned 8°;
- `hand_on_hip`: the left hand on the hip, the elbow out to the side and a little back
  (fitted on the average twin: the hand ~10 cm above the hip joint, just outside the body);
  the right arm 20° lower than at rest;
- `three_quarter`: the whole body turned 35° to its left about the vertical (a three-quarter
  view from a front camera), arms 15° lower than at rest.

    pose = named_pose("walking")
    NAMED_POSES  # the names, in the table's order
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.spatial.transform import Rotation

from spatialtwin.body.pose import Pose

# joint -> rotation as (x, y, z) degrees about the world axes, applied in that order.
_DEGREES: dict[str, dict[str, tuple[float, float, float]]] = {
    "standing": {},
    "walking": {
        "leftUpperLeg": (-20.0, 0.0, 0.0),
        "leftLowerLeg": (25.0, 0.0, 0.0),
        "rightUpperLeg": (12.0, 0.0, 0.0),
        "leftLowerArm": (0.0, 60.0, 0.0),
        "rightUpperArm": (0.0, 0.0, -10.0),
        "spine": (0.0, 8.0, 0.0),
    },
    "hand_on_hip": {
        "leftUpperArm": (-2.1, 23.0, -11.9),
        "leftLowerArm": (-3.2, -13.0, -58.7),
        "rightUpperArm": (0.0, 0.0, 20.0),
    },
    "three_quarter": {
        "hips": (0.0, 35.0, 0.0),
        "leftUpperArm": (0.0, 0.0, -15.0),
        "rightUpperArm": (0.0, 0.0, 15.0),
    },
}
NAMED_POSES: tuple[str, ...] = tuple(_DEGREES)
DEFAULT_POSE = "standing"


def _pose(degrees: Mapping[str, tuple[float, float, float]]) -> Pose:
    rotations = {
        joint: Rotation.from_euler("xyz", angles, degrees=True).as_quat()
        for joint, angles in degrees.items()
    }
    return Pose(np.zeros(3), {k: np.asarray(q, dtype=np.float64) for k, q in rotations.items()})


def named_pose(name: str) -> Pose:
    """The pose called `name` (one of `NAMED_POSES`); raises KeyError for any other name."""
    return _pose(_DEGREES[name])


def is_rest(pose: Pose | None) -> bool:
    """Whether `pose` is the rest pose (no pose, or no joint turned and no root moved)."""
    if pose is None:
        return True
    identity = np.array([0.0, 0.0, 0.0, 1.0])
    turned = any(
        not np.allclose(np.abs(q @ identity), 1.0, atol=1e-9) for q in pose.rotations.values()
    )
    return not turned and bool(np.allclose(pose.root_m, 0.0))
