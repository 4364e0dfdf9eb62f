"""Poses of the canonical skeleton, and forward kinematics.

A `Pose` is a root translation plus one local rotation per joint. Rotations follow the
skeleton's rest-pose convention (see `skeleton`): identity everywhere is the rest pose, and a
joint's quaternion `[x, y, z, w]` rotates in axes that are the world's at rest. The root
translation moves the whole body, in metres, in world axes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from spatialtwin.body.skeleton import JOINT_INDEX, JOINT_NAMES, PARENTS, Skeleton

IDENTITY_QUAT = np.array([0.0, 0.0, 0.0, 1.0])


class PoseError(ValueError):
    """A pose that cannot be applied: unknown joints, non-finite values, malformed JSON."""


@dataclass
class Pose:
    """Root translation (metres) and per-joint local rotations (unit quaternions, xyzw)."""

    root_m: NDArray[np.float64] = field(default_factory=lambda: np.zeros(3))
    rotations: dict[str, NDArray[np.float64]] = field(default_factory=dict)

    @classmethod
    def rest(cls) -> Pose:
        return cls()

    def quaternions(self) -> NDArray[np.float64]:
        """(J, 4) local quaternions in canonical joint order, identity where unset."""
        quats = np.tile(IDENTITY_QUAT, (len(JOINT_NAMES), 1))
        for name, q in self.rotations.items():
            quats[JOINT_INDEX[name]] = q
        return quats

    def to_json(self) -> dict[str, object]:
        return {
            "root": [round(float(c), 6) for c in self.root_m],
            "joints": {
                name: [round(float(c), 7) for c in self.rotations[name]]
                for name in JOINT_NAMES
                if name in self.rotations
            },
        }

    @classmethod
    def from_json(cls, data: object) -> Pose:
        if not isinstance(data, Mapping):
            raise PoseError("a pose is a JSON object with 'root' and 'joints'")
        root = np.asarray(data.get("root", [0.0, 0.0, 0.0]), dtype=np.float64)
        if root.shape != (3,) or not np.isfinite(root).all():
            raise PoseError("pose 'root' must be three finite numbers (metres)")
        joints = data.get("joints", {})
        if not isinstance(joints, Mapping):
            raise PoseError("pose 'joints' must map joint names to [x, y, z, w]")
        rotations: dict[str, NDArray[np.float64]] = {}
        for name, value in joints.items():
            if name not in JOINT_INDEX:
                raise PoseError(f"unknown joint {name!r}; joints are {', '.join(JOINT_NAMES)}")
            q = np.asarray(value, dtype=np.float64)
            if q.shape != (4,) or not np.isfinite(q).all():
                raise PoseError(f"joint {name!r} needs a quaternion [x, y, z, w] of finite numbers")
            norm = float(np.linalg.norm(q))
            if norm < 1e-6:
                raise PoseError(f"joint {name!r} has a zero quaternion")
            rotations[name] = q / norm
        return cls(root, rotations)

    def mirrored(self) -> Pose:
        """The pose seen in a mirror across the body's sagittal plane (x -> -x)."""
        from spatialtwin.body.skeleton import MIRROR_NAME

        root = self.root_m * np.array([-1.0, 1.0, 1.0])
        rotations = {}
        for name, q in self.rotations.items():
            # Reflecting x negates the rotation's y and z components (axis is a pseudovector).
            rotations[MIRROR_NAME[name]] = np.array([q[0], -q[1], -q[2], q[3]])
        return Pose(root, rotations)


def forward_kinematics(
    skeleton: Skeleton, pose: Pose
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """World rotation matrices (J, 3, 3) and world joint positions (J, 3) in metres."""
    local = Rotation.from_quat(pose.quaternions()).as_matrix()
    offsets = skeleton.rest_local_offsets()
    world_rot = np.empty_like(local)
    world_pos = np.empty_like(offsets)
    for j, p in enumerate(PARENTS):
        if p < 0:
            world_rot[j] = local[j]
            world_pos[j] = offsets[j] + pose.root_m
        else:
            world_rot[j] = world_rot[p] @ local[j]
            world_pos[j] = world_pos[p] + world_rot[p] @ offsets[j]
    return world_rot, world_pos


def skinning_matrices(skeleton: Skeleton, pose: Pose) -> NDArray[np.float64]:
    """(J, 3, 4) matrices taking a rest-pose point bound to joint j to its posed place."""
    world_rot, world_pos = forward_kinematics(skeleton, pose)
    mats = np.empty((skeleton.joint_count, 3, 4))
    mats[:, :, :3] = world_rot
    mats[:, :, 3] = world_pos - np.einsum("jab,jb->ja", world_rot, skeleton.rest_positions_m)
    return mats
