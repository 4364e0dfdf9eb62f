"""Retargeting recovers known joint angles from synthetic MediaPipe landmarks.

Each case poses a skeleton with known rotations, places landmarks on it by forward kinematics,
converts them to MediaPipe's conventions, retargets, and compares the twin's bones.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from spatialtwin.body.parametric import Measurements
from spatialtwin.body.pose import Pose, forward_kinematics
from spatialtwin.body.skeleton import JOINT_INDEX, JOINT_NAMES, Skeleton
from spatialtwin.tracking.anthropometric import anthropometric_skeleton
from spatialtwin.tracking.landmarks import LM, MP_TO_TWIN, LandmarkFrame
from spatialtwin.tracking.retarget import RetargetLimits, build_retarget_model, retarget
from tests.conftest import generated_twin
from tests.tracking_fixtures.synthetic import adult_a_pose_skeleton, synthetic_landmarks

TOLERANCE_DEG = 10.0


def q(axis, degrees: float) -> np.ndarray:
    return Rotation.from_rotvec(np.radians(degrees) * np.asarray(axis, dtype=float)).as_quat()


def hinge(skeleton: Skeleton, joint: str) -> np.ndarray:
    limbs = ["leftLowerArm", "rightLowerArm", "leftLowerLeg", "rightLowerLeg"]
    return build_retarget_model(skeleton).hinge_axis[limbs.index(joint)]


def known_poses(skeleton: Skeleton) -> dict[str, Pose]:
    t_pose = {"leftUpperArm": q([0, 0, 1], 45), "rightUpperArm": q([0, 0, -1], 45)}
    return {
        "A-pose": Pose(),
        "T-pose": Pose(rotations=t_pose),
        "arms raised": Pose(
            rotations={"leftUpperArm": q([0, 0, 1], 120), "rightUpperArm": q([0, 0, -1], 120)}
        ),
        "elbows bent 90": Pose(
            rotations={
                **t_pose,
                "leftLowerArm": q(hinge(skeleton, "leftLowerArm"), 90),
                "rightLowerArm": q(hinge(skeleton, "rightLowerArm"), 90),
            }
        ),
        "knee raised 90": Pose(
            rotations={
                "leftUpperLeg": q([1, 0, 0], -90),
                "leftLowerLeg": q(hinge(skeleton, "leftLowerLeg"), 90),
            }
        ),
        "body turned 30": Pose(rotations={"hips": q([0, 1, 0], 30)}),
        "shoulders turned 30": Pose(
            rotations={n: q([0, 1, 0], 10) for n in ("spine", "chest", "upperChest")}
        ),
        "head turned and nodding": Pose(
            rotations={"neck": q([0, 1, 0], 25), "head": q([1, 0, 0], 15)}
        ),
    }


def world_angle_errors_deg(skeleton: Skeleton, truth: Pose, got: Pose) -> dict[str, float]:
    """Angle between true and recovered world rotation of every joint, degrees.

    The neck is left out: landmarks see only the head's orientation, and how it splits between
    neck and head is the retargeting's choice (half each), not something to recover.
    """
    r_true, _ = forward_kinematics(skeleton, truth)
    r_got, _ = forward_kinematics(skeleton, got)
    rel = np.einsum("jba,jbc->jac", r_true, r_got)
    ang = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    return {n: a for n, a in zip(JOINT_NAMES, ang, strict=True) if n != "neck"}


@cache
def parametric_twin_skeleton() -> Skeleton:
    """The skeleton of a twin generated from measurements (made once per test session)."""
    m = Measurements(
        height_m=1.62, chest_m=0.88, waist_m=0.70, hips_m=0.98, inseam_m=0.74, shoulder_m=0.37
    )
    return generated_twin(m).skeleton


SKELETONS = {
    "fixture adult 1.75 m": adult_a_pose_skeleton,
    "anthropometric 1.60 m": lambda: anthropometric_skeleton(1.6),
    "parametric twin 1.62 m": parametric_twin_skeleton,
}


@pytest.mark.parametrize("skeleton_name", list(SKELETONS))
@pytest.mark.parametrize("case", list(known_poses(adult_a_pose_skeleton())))
def test_retargeting_recovers_known_angles_within_10_degrees(case, skeleton_name):
    skeleton = SKELETONS[skeleton_name]()
    truth = known_poses(skeleton)[case]
    model = build_retarget_model(skeleton)
    result = retarget(model, synthetic_landmarks(skeleton, truth))
    errors = world_angle_errors_deg(skeleton, truth, result.pose)
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOLERANCE_DEG, f"{case}: {worst} off by {errors[worst]:.1f}°"
    assert result.observed.all()


def test_elbow_flexion_and_knee_flexion_come_back_as_hinge_angles():
    skeleton = adult_a_pose_skeleton()
    poses = known_poses(skeleton)
    model = build_retarget_model(skeleton)
    elbow = retarget(model, synthetic_landmarks(skeleton, poses["elbows bent 90"])).pose
    knee = retarget(model, synthetic_landmarks(skeleton, poses["knee raised 90"])).pose
    for pose, joint in ((elbow, "leftLowerArm"), (elbow, "rightLowerArm"), (knee, "leftLowerLeg")):
        angle = np.degrees(Rotation.from_quat(pose.rotations[joint]).magnitude())
        assert abs(angle - 90.0) < TOLERANCE_DEG, (joint, angle)
    # The forearms point forward (+Z, toward the camera), the raised thigh too.
    _, pos = forward_kinematics(skeleton, elbow)
    forearm = pos[JOINT_INDEX["leftHand"]] - pos[JOINT_INDEX["leftLowerArm"]]
    assert forearm[2] / np.linalg.norm(forearm) > 0.95
    _, pos = forward_kinematics(skeleton, knee)
    thigh = pos[JOINT_INDEX["leftLowerLeg"]] - pos[JOINT_INDEX["leftUpperLeg"]]
    assert thigh[2] / np.linalg.norm(thigh) > 0.95


def test_t_pose_recovers_45_degrees_of_arm_lift_not_a_fraction():
    skeleton = adult_a_pose_skeleton()
    pose = retarget(
        build_retarget_model(skeleton),
        synthetic_landmarks(skeleton, known_poses(skeleton)["T-pose"]),
    ).pose
    _, pos = forward_kinematics(skeleton, pose)
    arm = pos[JOINT_INDEX["leftLowerArm"]] - pos[JOINT_INDEX["leftUpperArm"]]
    elevation = np.degrees(np.arcsin(arm[1] / np.linalg.norm(arm)))
    assert abs(elevation) < 2.0  # horizontal: the full 45° lift from the A-pose rest
    angle = np.degrees(Rotation.from_quat(pose.rotations["leftUpperArm"]).magnitude())
    assert abs(angle - 45.0) < 2.0


def test_rest_pose_landmarks_give_identity_rotations_and_no_root_motion():
    skeleton = adult_a_pose_skeleton()
    pose = retarget(build_retarget_model(skeleton), synthetic_landmarks(skeleton, Pose())).pose
    angles = np.degrees(Rotation.from_quat(pose.quaternions()).magnitude())
    assert angles.max() < 0.5
    assert np.abs(pose.root_m).max() < 1e-6


def test_person_raising_their_left_arm_moves_the_twins_left_arm():
    """MediaPipe's +x (image right) is a camera-facing person's left, the twin's +X."""
    skeleton = adult_a_pose_skeleton()
    model = build_retarget_model(skeleton)
    frame = synthetic_landmarks(skeleton, Pose())
    world = frame.world.copy()
    # In MediaPipe axes: the left elbow and wrist go straight up (-y) from the left shoulder.
    shoulder = world[LM["left_shoulder"], :3]
    assert shoulder[0] > 0, "the person's left shoulder is on the image's right (+x)"
    world[LM["left_elbow"], :3] = shoulder + np.array([0, -0.29, 0])
    world[LM["left_wrist"], :3] = shoulder + np.array([0, -0.55, 0])
    frame = LandmarkFrame(frame.image, world, frame.presence, frame.size_px)
    pose = retarget(model, frame).pose
    left = np.degrees(Rotation.from_quat(pose.rotations["leftUpperArm"]).magnitude())
    right = np.degrees(Rotation.from_quat(pose.rotations["rightUpperArm"]).magnitude())
    assert left > 120 and right < 1
    _, pos = forward_kinematics(skeleton, pose)
    hand = pos[JOINT_INDEX["leftHand"]] - pos[JOINT_INDEX["leftUpperArm"]]
    assert hand[1] > 0.5  # twin's left hand up, +Y


def test_mirror_mode_swaps_sides_for_a_mirror_display():
    skeleton = adult_a_pose_skeleton()
    truth = Pose(rotations={"leftUpperArm": q([0, 0, 1], 120)})
    pose = retarget(build_retarget_model(skeleton), synthetic_landmarks(skeleton, truth)).pose
    mirrored = pose.mirrored()
    _, pos = forward_kinematics(skeleton, mirrored)
    # In the mirror image the raised arm is the twin's right one, up and on -X.
    right_hand = pos[JOINT_INDEX["rightHand"]]
    left_hand = pos[JOINT_INDEX["leftHand"]]
    assert right_hand[1] > 1.7 and right_hand[0] < 0
    assert left_hand[1] < 1.2


def test_an_elbow_never_bends_backward():
    skeleton = adult_a_pose_skeleton()
    frame = synthetic_landmarks(skeleton, known_poses(skeleton)["T-pose"])
    world = frame.world.copy()
    # Bend the forearm 40° backward (away from the camera, +z in MediaPipe axes).
    elbow = world[LM["left_elbow"], :3]
    world[LM["left_wrist"], :3] = elbow + 0.26 * np.array(
        [np.cos(np.radians(40)), 0, np.sin(np.radians(40))]
    )
    frame = LandmarkFrame(frame.image, world, frame.presence, frame.size_px)
    # Without upper-arm twist the only way to reach is a straight elbow.
    no_twist = build_retarget_model(skeleton, RetargetLimits(arm_twist_deg=(0.0, 0.0)))
    flex = Rotation.from_quat(retarget(no_twist, frame).pose.rotations["leftLowerArm"])
    assert np.degrees(flex.magnitude()) < 1.0
    # With the default limits the arm may twist (within ±100°) and the elbow flexes forward.
    model = build_retarget_model(skeleton)
    rotvec = Rotation.from_quat(retarget(model, frame).pose.rotations["leftLowerArm"]).as_rotvec()
    hinge_axis = model.hinge_axis[0]
    assert np.dot(rotvec, hinge_axis) >= -1e-9
    assert np.linalg.norm(np.cross(rotvec, hinge_axis)) < 1e-6  # a pure hinge rotation


def test_feet_stay_on_the_floor_and_a_squat_lowers_the_root():
    skeleton = adult_a_pose_skeleton()
    model = build_retarget_model(skeleton)
    knee = known_poses(skeleton)["knee raised 90"]
    raised = retarget(model, synthetic_landmarks(skeleton, knee)).pose
    assert abs(raised.root_m[1]) < 0.01  # the standing leg still reaches the floor
    squat = Pose(
        rotations={
            "leftUpperLeg": q([1, 0, 0], -60),
            "rightUpperLeg": q([1, 0, 0], -60),
            "leftLowerLeg": q(hinge(skeleton, "leftLowerLeg"), 120),
            "rightLowerLeg": q(hinge(skeleton, "rightLowerLeg"), 120),
            "leftFoot": q([1, 0, 0], -60),
            "rightFoot": q([1, 0, 0], -60),
        }
    )
    got = retarget(model, synthetic_landmarks(skeleton, squat)).pose
    _, pos = forward_kinematics(skeleton, Pose(got.root_m, got.rotations))
    ankle_y = pos[JOINT_INDEX["leftFoot"], 1]
    assert abs(ankle_y - skeleton.position("leftFoot")[1]) < 0.01
    # Thigh 0.42 m and shin 0.42 m at 60° either side of vertical: hips drop ~0.42 m.
    assert -0.5 < got.root_m[1] < -0.3


def test_axis_change_is_a_rotation_not_a_reflection():
    assert np.isclose(np.linalg.det(MP_TO_TWIN), 1.0)
