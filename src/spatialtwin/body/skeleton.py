"""The canonical humanoid skeleton every twin is rigged to.

Joint names are the VRM 1.0 humanoid bone names, which three-vrm, UniVRM and most avatar tools
share, so a twin's GLB can be read by those tools and body tracking has one fixed target.
"Left" is the body's own left: +X in glTF's frame for a body facing +Z.

Rest-pose convention (the VRM "normalised bone" convention): at rest every joint's local rotation
is the identity and every joint frame is aligned with the world axes, so a pose quaternion on a
joint is a rotation expressed in axes that, at rest, are the world's. A twin keeps the bind pose
its body was built or scanned in: generated twins stand in an A-pose with the upper arms 45°
below horizontal (GarmentCode's mean body uses the same), imported twins keep their own.
Bone directions at rest therefore come from each twin's joint positions, never from a table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

JOINT_NAMES: tuple[str, ...] = (
    "hips",
    "spine",
    "chest",
    "upperChest",
    "neck",
    "head",
    "leftShoulder",
    "leftUpperArm",
    "leftLowerArm",
    "leftHand",
    "rightShoulder",
    "rightUpperArm",
    "rightLowerArm",
    "rightHand",
    "leftUpperLeg",
    "leftLowerLeg",
    "leftFoot",
    "leftToes",
    "rightUpperLeg",
    "rightLowerLeg",
    "rightFoot",
    "rightToes",
)

PARENT_NAMES: dict[str, str | None] = {
    "hips": None,
    "spine": "hips",
    "chest": "spine",
    "upperChest": "chest",
    "neck": "upperChest",
    "head": "neck",
    "leftShoulder": "upperChest",
    "leftUpperArm": "leftShoulder",
    "leftLowerArm": "leftUpperArm",
    "leftHand": "leftLowerArm",
    "rightShoulder": "upperChest",
    "rightUpperArm": "rightShoulder",
    "rightLowerArm": "rightUpperArm",
    "rightHand": "rightLowerArm",
    "leftUpperLeg": "hips",
    "leftLowerLeg": "leftUpperLeg",
    "leftFoot": "leftLowerLeg",
    "leftToes": "leftFoot",
    "rightUpperLeg": "hips",
    "rightLowerLeg": "rightUpperLeg",
    "rightFoot": "rightLowerLeg",
    "rightToes": "rightFoot",
}

JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(JOINT_NAMES)}
PARENTS: NDArray[np.int64] = np.array(
    [-1 if PARENT_NAMES[n] is None else JOINT_INDEX[PARENT_NAMES[n]] for n in JOINT_NAMES],
    dtype=np.int64,
)

# The joint a bone points at, for the bones whose direction tracking and auto-rigging use.
# Leaf joints (head, hands, toes) have no child joint; their tip is stored separately.
BONE_CHILD: dict[str, str] = {
    "hips": "spine",
    "spine": "chest",
    "chest": "upperChest",
    "upperChest": "neck",
    "neck": "head",
    "leftShoulder": "leftUpperArm",
    "leftUpperArm": "leftLowerArm",
    "leftLowerArm": "leftHand",
    "rightShoulder": "rightUpperArm",
    "rightUpperArm": "rightLowerArm",
    "rightLowerArm": "rightHand",
    "leftUpperLeg": "leftLowerLeg",
    "leftLowerLeg": "leftFoot",
    "leftFoot": "leftToes",
    "rightUpperLeg": "rightLowerLeg",
    "rightLowerLeg": "rightFoot",
    "rightFoot": "rightToes",
}

MIRROR_NAME: dict[str, str] = {
    n: (
        n.replace("left", "right", 1)
        if n.startswith("left")
        else n.replace("right", "left", 1)
        if n.startswith("right")
        else n
    )
    for n in JOINT_NAMES
}


def _check_topological(parents: NDArray[np.int64]) -> None:
    for i, p in enumerate(parents):
        if p >= i:
            raise ValueError(f"joint {i} has parent {p}: parents must come first")


_check_topological(PARENTS)


@dataclass(frozen=True)
class Skeleton:
    """A twin's canonical skeleton in its rest (bind) pose.

    `rest_positions_m` are world-space joint positions in metres (+Y up, body facing +Z);
    `leaf_tips_m` are the end points of the leaf bones (top of the head, fingertips, toe tips),
    which tracking needs for head and hand directions.
    """

    rest_positions_m: NDArray[np.float64]
    leaf_tips_m: dict[str, NDArray[np.float64]]

    def __post_init__(self) -> None:
        pos = np.asarray(self.rest_positions_m, dtype=np.float64)
        if pos.shape != (len(JOINT_NAMES), 3) or not np.isfinite(pos).all():
            raise ValueError(f"rest positions must be finite, shape ({len(JOINT_NAMES)}, 3)")
        object.__setattr__(self, "rest_positions_m", pos)

    @property
    def joint_count(self) -> int:
        return len(JOINT_NAMES)

    def position(self, name: str) -> NDArray[np.float64]:
        return self.rest_positions_m[JOINT_INDEX[name]]

    def bone_tip(self, name: str) -> NDArray[np.float64]:
        """End point of the bone that starts at joint `name` (its child or stored leaf tip)."""
        if name in BONE_CHILD:
            return self.position(BONE_CHILD[name])
        return np.asarray(self.leaf_tips_m[name], dtype=np.float64)

    def rest_local_offsets(self) -> NDArray[np.float64]:
        """Each joint's offset from its parent in metres (the hips' offset is its position)."""
        pos = self.rest_positions_m
        offsets = pos.copy()
        has_parent = PARENTS >= 0
        offsets[has_parent] = pos[has_parent] - pos[PARENTS[has_parent]]
        return offsets

    def inverse_bind_matrices(self) -> NDArray[np.float64]:
        """(J, 4, 4) inverse bind matrices: joints are world-aligned, so a pure translation."""
        inv = np.tile(np.eye(4), (self.joint_count, 1, 1))
        inv[:, :3, 3] = -self.rest_positions_m
        return inv

    def to_json(self) -> dict[str, object]:
        return {
            "joints": {
                n: [round(float(c), 6) for c in p]
                for n, p in zip(JOINT_NAMES, self.rest_positions_m, strict=True)
            },
            "leafTips": {n: [round(float(c), 6) for c in p] for n, p in self.leaf_tips_m.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Skeleton:
        joints = data["joints"]
        tips = data.get("leafTips", {})
        if not isinstance(joints, dict) or not isinstance(tips, dict):
            raise ValueError("skeleton JSON needs 'joints' and 'leafTips' objects")
        missing = [n for n in JOINT_NAMES if n not in joints]
        if missing:
            raise ValueError(f"skeleton JSON lacks joints {missing}")
        pos = np.array([joints[n] for n in JOINT_NAMES], dtype=np.float64)
        return cls(pos, {k: np.asarray(v, dtype=np.float64) for k, v in tips.items()})

    def mirrored(self) -> Skeleton:
        """The skeleton reflected across the body's sagittal plane (x -> -x, left <-> right)."""
        pos = self.rest_positions_m.copy()
        pos[:, 0] *= -1
        order = [JOINT_INDEX[MIRROR_NAME[n]] for n in JOINT_NAMES]
        tips = {}
        for n, p in self.leaf_tips_m.items():
            q = np.asarray(p, dtype=np.float64).copy()
            q[0] *= -1
            tips[MIRROR_NAME[n]] = q
        return Skeleton(pos[order], tips)


LEAF_JOINTS: tuple[str, ...] = ("head", "leftHand", "rightHand", "leftToes", "rightToes")
