"""Shared checks for the import tests: posing an imported twin must not tear it."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from spatialtwin.body.pose import Pose
from spatialtwin.body.skeleton import JOINT_INDEX, JOINT_NAMES, PARENTS
from spatialtwin.body.twin_body import TwinBody


def descendants(name: str) -> set[int]:
    out = {JOINT_INDEX[name]}
    for j in range(len(JOINT_NAMES)):  # parents come first
        if PARENTS[j] in out:
            out.add(j)
    return out


def assert_poses_without_tearing(
    body: TwinBody,
    joint: str,
    axis: tuple[float, float, float],
    angle_deg: float,
    max_stretch: float = 4.0,
) -> None:
    """Rotate one joint and check every vertex stays within what its bone chain allows.

    A vertex none of whose influences descend from the rotated joint must not move; any other
    moves at most as far as a point rigidly carried by the rotation (2 sin(θ/2) times its
    distance from the pivot); edges are neither torn apart nor collapsed.
    """
    q = Rotation.from_rotvec(np.deg2rad(angle_deg) * np.asarray(axis)).as_quat()
    pose = Pose(rotations={joint: q})
    rest = body.vertices_m
    posed = body.posed_vertices(pose)
    moved = np.linalg.norm(posed - rest, axis=1)
    chain = descendants(joint)
    influenced = np.isin(body.skin.joints, list(chain)) & (body.skin.weights > 0)
    follows = influenced.any(axis=1)
    assert follows.sum() > 50, f"no vertex follows {joint}"
    assert moved[~follows].max(initial=0.0) < 1e-9
    pivot = body.skeleton.position(joint)
    bound = 2 * abs(np.sin(np.deg2rad(angle_deg) / 2)) * np.linalg.norm(rest - pivot, axis=1)
    assert np.all(moved <= bound + 1e-6)
    # The joint's own leaf region really moves: its most-weighted vertices travel far.
    own = (body.skin.joints[:, 0] == JOINT_INDEX[joint]) & (body.skin.weights[:, 0] > 0.9)
    if own.any():
        assert np.median(moved[own] / np.maximum(bound[own], 1e-9)) > 0.7
    e = np.concatenate([body.faces[:, [0, 1]], body.faces[:, [1, 2]], body.faces[:, [2, 0]]])
    rest_len = np.linalg.norm(rest[e[:, 0]] - rest[e[:, 1]], axis=1)
    ok = rest_len > 2e-3  # sliver edges of scans say nothing about tearing
    ratio = np.linalg.norm(posed[e[ok, 0]] - posed[e[ok, 1]], axis=1) / rest_len[ok]
    assert ratio.max() < max_stretch and ratio.min() > 0.05, (ratio.min(), ratio.max())
    assert np.mean((ratio > 0.5) & (ratio < 2.0)) > 0.995


STANDARD_POSES = (
    ("leftUpperArm", (0.0, 0.0, 1.0), 80.0),  # left arm raised towards horizontal and beyond
    ("rightUpperArm", (0.0, 0.0, -1.0), 80.0),
    ("leftLowerArm", (0.0, 1.0, 0.0), 90.0),
    ("leftUpperLeg", (1.0, 0.0, 0.0), -70.0),  # hip flexion: knee forwards
    ("rightLowerLeg", (1.0, 0.0, 0.0), 90.0),  # knee bend: foot backwards
    ("spine", (1.0, 0.0, 0.0), 30.0),
)


def test_the_tearing_check_catches_a_torn_skin(average_body):
    """The check must fail when half of an arm is bound to the wrong joint."""
    import dataclasses

    import pytest

    from spatialtwin.body.skinning import SkinWeights

    body = average_body
    joints = body.skin.joints.copy()
    weights = body.skin.weights.copy()
    forearm = np.flatnonzero(joints[:, 0] == JOINT_INDEX["leftLowerArm"])
    torn = forearm[::2]
    joints[torn] = JOINT_INDEX["chest"]
    weights[torn] = [1.0, 0.0, 0.0, 0.0]
    broken = dataclasses.replace(body, skin=SkinWeights(joints, weights), _skinner=None)
    # An elbow bend, which moves the forearm: the sound twin passes, the torn one does not.
    assert_poses_without_tearing(body, "leftLowerArm", (0.0, 1.0, 0.0), 90.0)
    with pytest.raises(AssertionError):
        assert_poses_without_tearing(broken, "leftLowerArm", (0.0, 1.0, 0.0), 90.0)
