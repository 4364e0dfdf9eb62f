"""The squat video (5 fps, 720×1280): landmarks against the tfjs BlazePose reference, and the
twin squatting with it."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from spatialtwin.errors import SpatialTwinError
from spatialtwin.tracking.tracker import TwinPoseTracker
from tests.tracking_fixtures.models import (  # noqa: F401  (pytest fixtures)
    MOTION,
    PEOPLE,
    new_landmarker,
    pose_models_dir,
)
from tests.tracking_fixtures.synthetic import adult_a_pose_skeleton

FPS = 5.0


def squat_frames() -> list[np.ndarray]:
    """The video's frames as RGB arrays, decoded in memory only."""
    cap = cv2.VideoCapture(str(PEOPLE / "pose_squats.mp4"))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


@pytest.fixture(scope="module")
def squats(new_landmarker):  # noqa: F811
    frames = squat_frames()
    assert len(frames) == 65 and frames[0].shape == (1280, 720, 3)
    tracker = TwinPoseTracker(adult_a_pose_skeleton(), landmarker=new_landmarker("full"))
    tracked = [tracker.track(rgb, i / FPS) for i, rgb in enumerate(frames)]
    return tracked, tracker.shopper_height_m


def test_image_landmarks_follow_the_reference_frame_by_frame(squats):
    tracked, _ = squats
    ref = np.array(json.loads((MOTION / "pose_squats.full.json").read_text()))  # (65, 33, 3) px
    assert all(f.tracked for f in tracked)
    err = np.array(
        [
            np.linalg.norm(f.landmarks.image_px() - r[:, :2], axis=1)
            for f, r in zip(tracked, ref, strict=True)
        ]
    )
    # 1280 px tall: the median landmark is within 1% of the height, every frame within 2%.
    assert np.median(err) < 12.8
    assert np.median(err, axis=1).max() < 25.6


def test_world_landmarks_follow_the_reference_in_metres(squats):
    tracked, _ = squats
    ref = np.array(json.loads((MOTION / "pose_squats_3d.full.json").read_text()))
    err = np.array(
        [
            np.linalg.norm(f.landmarks.world[:, :3] - r, axis=1)
            for f, r in zip(tracked, ref, strict=True)
        ]
    )
    assert np.median(err) < 0.08


def test_the_twin_squats_when_she_squats(squats):
    tracked, _ = squats
    ref = np.array(json.loads((MOTION / "pose_squats.full.json").read_text()))
    hip_px = ref[:, [23, 24], 1].mean(axis=1)  # reference hip height in the image (px, down)
    root_y = np.array([f.pose.root_m[1] for f in tracked])
    standing = hip_px < np.percentile(hip_px, 30)
    deep = hip_px > np.percentile(hip_px, 85)
    assert np.abs(root_y[standing]).max() < 0.05  # feet on the floor, not floating
    assert root_y[deep].max() < -0.15  # hips well down in a squat
    assert np.corrcoef(hip_px, root_y)[0, 1] < -0.9  # and following her all the way
    knee = np.array(
        [
            np.degrees(2 * np.arccos(min(1.0, abs(f.pose.rotations["leftLowerLeg"][3]))))
            for f in tracked
        ]
    )
    assert knee[deep].min() > 60.0 and np.median(knee[standing]) < 25.0


def test_her_height_is_plausible(squats):
    _, height = squats
    assert height is not None and 1.5 < height < 1.85


def test_timestamps_must_not_go_backwards(new_landmarker):  # noqa: F811
    stream = new_landmarker("lite")
    frame = squat_frames()[0]
    stream.detect(frame, 1.0)
    stream.detect(frame, 1.0)  # the same time again is accepted (nudged by 1 ms)
    with pytest.raises(SpatialTwinError) as info:
        stream.detect(frame, 0.5)
    assert info.value.code == "non_monotonic_timestamp"
