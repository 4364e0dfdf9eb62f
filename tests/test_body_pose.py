"""Poses and skinning: rest is identity, bones rotate rigidly, the mesh does not tear."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from spatialtwin.body.pose import Pose, PoseError, forward_kinematics
from spatialtwin.body.skeleton import JOINT_INDEX, JOINT_NAMES


def quat(axis: str, degrees: float) -> np.ndarray:
    return Rotation.from_euler(axis, degrees, degrees=True).as_quat()


def test_rest_pose_reproduces_the_bind_mesh(average_body):
    posed = average_body.posed_vertices(Pose.rest())
    assert np.abs(posed - average_body.vertices_m).max() < 1e-12


def test_root_translation_moves_every_vertex(average_body):
    posed = average_body.posed_vertices(Pose(np.array([0.1, 0.0, -0.2])))
    assert np.allclose(posed - average_body.vertices_m, [0.1, 0.0, -0.2], atol=1e-9)


def test_elbow_bend_moves_the_hand_on_a_circle_about_the_elbow(average_body):
    skel = average_body.skeleton
    pose = Pose(rotations={"leftLowerArm": quat("z", 90)})
    _, world = forward_kinematics(skel, pose)
    elbow, hand = skel.position("leftLowerArm"), skel.position("leftHand")
    forearm = np.linalg.norm(hand - elbow)
    assert np.linalg.norm(world[JOINT_INDEX["leftHand"]] - elbow) == pytest.approx(forearm)
    # 90° about +Z turns the forearm's direction by 90°.
    before = (hand - elbow) / forearm
    after = (world[JOINT_INDEX["leftHand"]] - elbow) / forearm
    assert np.degrees(np.arccos(np.clip(before @ after, -1, 1))) == pytest.approx(90, abs=1e-6)


def test_skinned_hand_vertices_move_rigidly_with_the_hand(average_body):
    body = average_body
    pose = Pose(rotations={"leftUpperArm": quat("z", 40), "leftLowerArm": quat("y", 60)})
    posed = body.posed_vertices(pose)
    w, j = body.skin.weights, body.skin.joints
    hand_only = (j[:, 0] == JOINT_INDEX["leftHand"]) & (w[:, 0] > 0.999)
    assert hand_only.sum() > 50
    rest_d = np.linalg.norm(
        body.vertices_m[hand_only][:, None] - body.vertices_m[hand_only][None], axis=2
    )
    posed_d = np.linalg.norm(posed[hand_only][:, None] - posed[hand_only][None], axis=2)
    assert np.abs(rest_d - posed_d).max() < 1e-9


@pytest.mark.parametrize(
    "rotations",
    [
        {"leftUpperArm": quat("z", 80), "rightUpperArm": quat("z", -80)},  # arms raised
        {"leftUpperLeg": quat("x", -90), "leftLowerLeg": quat("x", 90)},  # knee raised
        {"spine": quat("y", 30), "chest": quat("x", 15), "neck": quat("y", 40)},  # twist
    ],
    ids=["arms-up", "knee-up", "twist"],
)
def test_posing_does_not_tear_the_surface(average_body, rotations):
    body = average_body
    posed = body.posed_vertices(Pose(rotations=rotations))
    e = np.concatenate([body.faces[:, [0, 1]], body.faces[:, [1, 2]], body.faces[:, [2, 0]]])
    rest_len = np.linalg.norm(body.vertices_m[e[:, 0]] - body.vertices_m[e[:, 1]], axis=1)
    posed_len = np.linalg.norm(posed[e[:, 0]] - posed[e[:, 1]], axis=1)
    assert rest_len.min() > 1e-6, "the bind mesh has degenerate edges"
    stretch_m = posed_len - rest_len
    assert stretch_m.max() < 0.06, f"an edge stretched by {stretch_m.max() * 100:.1f} cm"
    assert np.percentile(posed_len / rest_len, 95) < 1.3
    assert np.isfinite(posed).all()


def test_pose_json_round_trip_and_errors():
    pose = Pose(np.array([0.0, 0.01, 0.2]), {"head": quat("y", 20)})
    again = Pose.from_json(pose.to_json())
    assert np.allclose(again.root_m, pose.root_m)
    assert np.allclose(again.rotations["head"], pose.rotations["head"], atol=1e-6)
    with pytest.raises(PoseError, match="unknown joint"):
        Pose.from_json({"joints": {"leftElbow": [0, 0, 0, 1]}})
    with pytest.raises(PoseError, match="finite"):
        Pose.from_json({"joints": {"head": [0, 0, float("nan"), 1]}})
    with pytest.raises(PoseError, match="zero quaternion"):
        Pose.from_json({"joints": {"head": [0, 0, 0, 0]}})


def test_mirrored_pose_swaps_sides_and_reflects_rotations(average_body):
    skel = average_body.skeleton
    pose = Pose(rotations={"leftUpperArm": quat("z", 60), "spine": quat("y", 25)})
    _, world = forward_kinematics(skel, pose)
    _, mirrored = forward_kinematics(skel, pose.mirrored())
    flip = np.array([-1.0, 1.0, 1.0])
    for name in JOINT_NAMES:
        other = name.replace("left", "#").replace("right", "left").replace("#", "right")
        assert np.allclose(mirrored[JOINT_INDEX[other]], world[JOINT_INDEX[name]] * flip, atol=1e-6)
