"""Real photos of people: MediaPipe's own golden landmarks, and the bone directions a person
reads off the yogait photos (T-pose, A-pose, arms up, lunge, side bend)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from spatialtwin.body.pose import forward_kinematics
from spatialtwin.body.skeleton import JOINT_INDEX
from spatialtwin.errors import SpatialTwinError
from spatialtwin.tracking.landmarker import decode_frame, select_person
from spatialtwin.tracking.landmarks import LM, LandmarkFrame
from spatialtwin.tracking.shopper_scale import height_from_landmarks_m
from spatialtwin.tracking.tracker import PoseFromLandmarks
from tests.tracking_fixtures.models import (  # noqa: F401  (pytest fixtures)
    PEOPLE,
    photo_landmarker,
    pose_models_dir,
)
from tests.tracking_fixtures.synthetic import adult_a_pose_skeleton

MEDIAPIPE_TOLERANCE = 0.03  # MediaPipe's PoseLandmarker test tolerance (normalised x, y)


def golden_landmarks() -> np.ndarray:
    """(33, 5) x, y, z, visibility, presence from MediaPipe's pose_landmarks.pbtxt."""
    text = (PEOPLE / "pose_landmarks.pbtxt").read_text()
    blocks = re.findall(r"landmark \{(.*?)\}", text, re.S)
    keys = ("x", "y", "z", "visibility", "presence")
    rows = [[float(re.search(rf"\b{k}: ([-\d.e]+)", b).group(1)) for k in keys] for b in blocks]
    return np.array(rows)


@pytest.fixture(scope="module")
def photo_people(photo_landmarker) -> dict[str, LandmarkFrame]:  # noqa: F811
    out = {}
    for name in ("pose", "t5", "tada_photo", "y1", "war0", "side_lunge_left"):
        suffix = ".jpg"
        people = photo_landmarker.detect((PEOPLE / f"{name}{suffix}").read_bytes(), 0.0)
        pick = select_person(people)
        assert pick is not None, f"nobody found in {name}"
        out[name] = people[pick]
    return out


def twin_positions(person: LandmarkFrame) -> dict[str, np.ndarray]:
    skeleton = adult_a_pose_skeleton()
    pose = PoseFromLandmarks(skeleton).update(person, 0.0).pose
    _, pos = forward_kinematics(skeleton, pose)
    return {name: pos[i] for name, i in JOINT_INDEX.items()}


def direction(p: dict[str, np.ndarray], a: str, b: str) -> np.ndarray:
    d = p[b] - p[a]
    return d / np.linalg.norm(d)


def elevation_deg(d: np.ndarray) -> float:
    """Angle above the horizontal plane (twin +Y up), degrees."""
    return float(np.degrees(np.arcsin(np.clip(d[1], -1, 1))))


def test_pose_jpg_matches_mediapipes_golden_landmarks(photo_people):
    got = photo_people["pose"]
    want = golden_landmarks()
    assert got.image.shape == (33, 4) and got.size_px == (1000, 667)
    err = np.abs(got.image[:, :2] - want[:, :2])
    assert err.max() < MEDIAPIPE_TOLERANCE, f"worst landmark {int(err.max(1).argmax())}"
    # In pixels: the typical landmark is within 1% of the image's larger side.
    px = np.linalg.norm(err * [1000, 667], axis=1)
    assert np.median(px) < 10.0
    assert (got.visibility[[11, 12, 23, 24]] > 0.9).all()


def test_frames_are_decoded_in_memory_and_bad_bytes_are_refused():
    rgb = decode_frame((PEOPLE / "pose.jpg").read_bytes())
    assert rgb.shape == (667, 1000, 3) and rgb.dtype == np.uint8
    with pytest.raises(SpatialTwinError) as info:
        decode_frame(b"not an image at all")
    assert info.value.code == "bad_frame"
    with pytest.raises(SpatialTwinError):
        decode_frame(np.zeros((100, 100, 3), dtype=np.float32))


def test_t_pose_photo_has_both_arms_out_to_the_correct_side(photo_people):
    p = twin_positions(photo_people["t5"])
    left = direction(p, "leftUpperArm", "leftHand")
    right = direction(p, "rightUpperArm", "rightHand")
    assert left[0] > 0.7 and right[0] < -0.7  # the person's left arm is the twin's +X arm
    # His "T" droops: the arms are about 30° below horizontal in the photo, 35° above his A-pose.
    for d in (left, right):
        assert -45.0 < elevation_deg(d) < -15.0
    for leg in ("left", "right"):
        assert elevation_deg(direction(p, f"{leg}UpperLeg", f"{leg}Foot")) < -75.0


def test_a_pose_photo_has_arms_down_and_out(photo_people):
    p = twin_positions(photo_people["tada_photo"])
    left = direction(p, "leftUpperArm", "leftHand")
    right = direction(p, "rightUpperArm", "rightHand")
    assert left[0] > 0.3 and right[0] < -0.3
    for d in (left, right):
        assert -80.0 < elevation_deg(d) < -40.0


def test_arms_up_photo_has_both_hands_above_the_shoulders(photo_people):
    p = twin_positions(photo_people["y1"])
    left = direction(p, "leftUpperArm", "leftHand")
    right = direction(p, "rightUpperArm", "rightHand")
    assert left[0] > 0.5 and right[0] < -0.5
    for d in (left, right):
        assert 15.0 < elevation_deg(d) < 60.0
    assert min(p["leftHand"][1], p["rightHand"][1]) > p["head"][1]


@pytest.mark.parametrize("name", ["t5", "tada_photo", "y1"])
def test_twin_arm_angles_match_the_arm_angles_in_the_photo(photo_people, name):
    """For arms in the picture plane, the twin's shoulder→wrist elevation is what a protractor
    on the photo reads (from the image landmarks), within 10°."""
    person = photo_people[name]
    p = twin_positions(person)
    px = person.image_px()
    for side in ("left", "right"):
        s, w = px[LM[f"{side}_shoulder"]], px[LM[f"{side}_wrist"]]
        in_photo = np.degrees(np.arctan2(s[1] - w[1], abs(w[0] - s[0])))  # image y points down
        twin = elevation_deg(direction(p, f"{side}UpperArm", f"{side}Hand"))
        assert abs(twin - in_photo) < 10.0, (side, twin, in_photo)


def test_warrior_lunge_photo_has_a_bent_front_knee_and_level_arms(photo_people):
    p = twin_positions(photo_people["war0"])
    # The person lunges onto their right leg (image left): thigh near horizontal, shin upright.
    assert abs(elevation_deg(direction(p, "rightUpperLeg", "rightLowerLeg"))) < 30.0
    assert elevation_deg(direction(p, "rightLowerLeg", "rightFoot")) < -65.0
    thigh = direction(p, "rightUpperLeg", "rightLowerLeg")
    shin = direction(p, "rightLowerLeg", "rightFoot")
    assert np.degrees(np.arccos(np.dot(thigh, shin))) > 60.0
    for side in ("left", "right"):
        assert abs(elevation_deg(direction(p, f"{side}UpperArm", f"{side}Hand"))) < 25.0
    assert p["hips"][1] < adult_a_pose_skeleton().position("hips")[1] - 0.2  # hips drop


def test_side_bend_photo_tilts_the_torso_to_the_right_with_hands_overhead(photo_people):
    p = twin_positions(photo_people["side_lunge_left"])
    torso = direction(p, "hips", "neck")
    # He bends toward the image's left, which is his right: the twin's -X.
    assert np.degrees(np.arcsin(-torso[0])) > 15.0
    # Both hands are overhead: beyond the neck along the (tilted) torso.
    for hand in ("leftHand", "rightHand"):
        assert np.dot(p[hand] - p["neck"], torso) > 0.0


def test_the_same_man_gets_a_consistent_plausible_height(photo_people):
    heights = []
    for name in ("t5", "tada_photo", "y1"):
        person = photo_people[name]
        h = height_from_landmarks_m(person.world_twin_m(), person.visibility)
        assert h is not None
        heights.append(h)
    assert 1.55 < np.median(heights) < 1.95
    assert (max(heights) - min(heights)) / np.median(heights) < 0.08


def test_the_centred_person_is_picked_over_a_bystander(photo_people):
    shopper = photo_people["tada_photo"]
    # A bystander: the same landmarks shrunk and moved to the frame's edge.
    image = shopper.image.copy()
    image[:, 0] = 0.92 + (image[:, 0] - 0.5) * 0.3
    image[:, 1] = 0.5 + (image[:, 1] - 0.5) * 0.3
    bystander = LandmarkFrame(image, shopper.world, shopper.presence, shopper.size_px)
    assert select_person([bystander, shopper]) == 1
    # Once tracked, the shopper stays picked even when someone larger walks in.
    centre = shopper.image[[LM["left_hip"], LM["right_hip"]], :2].mean(axis=0)
    big = shopper.image.copy()
    big[:, 0] = 0.2 + (big[:, 0] - 0.5) * 1.5
    big[:, 1] = 0.5 + (big[:, 1] - 0.5) * 1.5
    intruder = LandmarkFrame(big, shopper.world, shopper.presence, shopper.size_px)
    assert select_person([intruder, shopper], centre) == 1
