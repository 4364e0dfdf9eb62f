"""Bent poses and linear-blend skinning for any `LodRig`, to judge levels under deformation.

A simplifier that only sees the bind pose will happily merge vertices that sit close at rest but
part when an elbow or a knee bends (the inside of a joint, the armpit, the crotch). Levels are
therefore simplified with posed positions as extra attributes and measured in these poses too.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from spatialtwin.lod.scene import LodMesh, LodRig

# Local rotations (degrees about world-at-rest axes, VRM convention) of three bent poses.
VRM_BENT_POSES: dict[str, dict[str, tuple[str, float]]] = {
    "elbows_knees_bent": {
        "leftLowerArm": ("x", -85.0),
        "rightLowerArm": ("x", -85.0),
        "leftUpperLeg": ("x", -45.0),
        "rightUpperLeg": ("x", -45.0),
        "leftLowerLeg": ("x", 80.0),
        "rightLowerLeg": ("x", 80.0),
    },
    "arms_raised_twist": {
        "leftUpperArm": ("z", 80.0),
        "rightUpperArm": ("z", -80.0),
        "spine": ("y", 25.0),
        "chest": ("y", 15.0),
        "neck": ("x", 20.0),
    },
    "seated": {
        "leftUpperLeg": ("x", -90.0),
        "rightUpperLeg": ("x", -90.0),
        "leftLowerLeg": ("x", 90.0),
        "rightLowerLeg": ("x", 90.0),
        "spine": ("x", 15.0),
        "leftUpperArm": ("x", -40.0),
        "rightUpperArm": ("x", -40.0),
    },
}
GENERIC_BEND_DEG = 35.0


def bent_poses(rig: LodRig) -> dict[str, NDArray[np.float64]]:
    """Named poses as per-joint local rotation matrices (J, 3, 3).

    A VRM-named rig gets the anatomical poses above; any other rig gets every non-root joint
    bent by 35° about its local x and then z axis, which still opens every joint crease.
    """
    eye = np.tile(np.eye(3), (rig.joint_count, 1, 1))
    index = {n: i for i, n in enumerate(rig.joint_names)}
    named = {}
    for pose_name, spec in VRM_BENT_POSES.items():
        if not all(j in index for j in spec):
            continue
        rots = eye.copy()
        for joint, (axis, deg) in spec.items():
            rots[index[joint]] = Rotation.from_euler(axis, deg, degrees=True).as_matrix()
        named[pose_name] = rots
    if named:
        return named
    non_root = rig.parents >= 0
    out = {}
    for axis in ("x", "z"):
        rots = eye.copy()
        rots[non_root] = Rotation.from_euler(axis, GENERIC_BEND_DEG, degrees=True).as_matrix()
        out[f"generic_bend_{axis}"] = rots
    return out


def skinning_matrices(rig: LodRig, local_rotations: NDArray[np.float64]) -> NDArray[np.float64]:
    """(J, 4, 4) matrices taking bind-pose world points to posed world points."""
    posed_local = rig.rest_local.copy()
    posed_local[:, :3, :3] = rig.rest_local[:, :3, :3] @ local_rotations
    world = np.empty_like(posed_local)
    done = np.zeros(rig.joint_count, dtype=bool)
    while not done.all():
        for j, p in enumerate(rig.parents):
            if done[j] or (p >= 0 and not done[p]):
                continue
            world[j] = posed_local[j] if p < 0 else world[p] @ posed_local[j]
            done[j] = True
    return world @ np.linalg.inv(rig.rest_world())


def posed_positions(mesh: LodMesh, mats: NDArray[np.float64] | None) -> NDArray[np.float64]:
    """Linear-blend skinned positions (metres); unskinned meshes do not move."""
    if mats is None or not mesh.skinned:
        return mesh.positions_m
    assert mesh.joints is not None and mesh.weights is not None
    w = mesh.weights / np.maximum(mesh.weights.sum(axis=1, keepdims=True), 1e-12)
    blended = np.einsum("nk,nkab->nab", w, mats[mesh.joints][:, :, :3, :])
    return np.einsum("nab,nb->na", blended[:, :, :3], mesh.positions_m) + blended[:, :, 3]
