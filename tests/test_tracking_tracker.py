"""The tracker over time: a lost person holds, then eases back to rest; hidden limbs hold;
mirror mode; One Euro smoothing; shopper height; frames never touch the disk."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from spatialtwin.body.pose import Pose
from spatialtwin.tracking.landmarks import LM, LandmarkFrame
from spatialtwin.tracking.one_euro import OneEuroFilter, OneEuroParams
from spatialtwin.tracking.shopper_scale import closest_twin_size, height_from_landmarks_m
from spatialtwin.tracking.tracker import PoseFromLandmarks, TrackerOptions
from tests.tracking_fixtures.models import PEOPLE
from tests.tracking_fixtures.synthetic import HEIGHT_M, adult_a_pose_skeleton, synthetic_landmarks

REPO = Path(__file__).resolve().parents[1]


def raised_arms() -> Pose:
    q = Rotation.from_rotvec([0, 0, np.radians(120)]).as_quat()
    return Pose(rotations={"leftUpperArm": q, "rightUpperArm": q * [-1, -1, 1, 1]})


def angle_deg(pose: Pose, joint: str) -> float:
    return float(np.degrees(Rotation.from_quat(pose.rotations[joint]).magnitude()))


def test_a_lost_person_holds_the_last_pose_then_eases_back_to_rest():
    skeleton = adult_a_pose_skeleton()
    tracker = PoseFromLandmarks(skeleton, TrackerOptions(hold_s=0.5, ease_s=1.0))
    seen = tracker.update(synthetic_landmarks(skeleton, raised_arms()), 0.0)
    assert seen.tracked and abs(angle_deg(seen.pose, "leftUpperArm") - 120) < 1
    held = tracker.update(None, 0.4)
    assert not held.tracked and abs(angle_deg(held.pose, "leftUpperArm") - 120) < 1
    halfway = tracker.update(None, 1.0)  # 0.5 s into a 1 s ease: smoothstep(0.5) = 0.5
    assert abs(angle_deg(halfway.pose, "leftUpperArm") - 60) < 1
    rest = tracker.update(None, 1.6)
    assert max(angle_deg(rest.pose, j) for j in rest.pose.rotations) < 1e-6
    assert np.allclose(rest.pose.root_m, 0.0)


def test_a_hidden_arm_holds_while_the_rest_of_the_body_follows():
    skeleton = adult_a_pose_skeleton()
    tracker = PoseFromLandmarks(skeleton)
    tracker.update(synthetic_landmarks(skeleton, raised_arms()), 0.0)
    # Next frame: arms down, but the left elbow and wrist are occluded (visibility 0.1).
    frame = synthetic_landmarks(skeleton, Pose())
    image = frame.image.copy()
    image[[LM["left_elbow"], LM["left_wrist"]], 3] = 0.1
    hidden = LandmarkFrame(image, frame.world, frame.presence, frame.size_px)
    out = tracker.update(hidden, 0.1)
    assert abs(angle_deg(out.pose, "leftUpperArm") - 120) < 1  # held
    assert angle_deg(out.pose, "rightUpperArm") < 1  # followed


def test_mirror_option_swaps_the_raised_arm():
    skeleton = adult_a_pose_skeleton()
    q = Rotation.from_rotvec([0, 0, np.radians(100)]).as_quat()
    frame = synthetic_landmarks(skeleton, Pose(rotations={"leftUpperArm": q}))
    plain = PoseFromLandmarks(skeleton).update(frame, 0.0).pose
    mirrored = PoseFromLandmarks(skeleton, TrackerOptions(mirror=True)).update(frame, 0.0).pose
    assert abs(angle_deg(plain, "leftUpperArm") - 100) < 1 and angle_deg(plain, "rightUpperArm") < 1
    assert abs(angle_deg(mirrored, "rightUpperArm") - 100) < 1
    assert angle_deg(mirrored, "leftUpperArm") < 1


def test_camera_pitch_levels_a_body_that_seems_to_lean_toward_the_camera():
    skeleton = adult_a_pose_skeleton()
    lean = Pose(rotations={"hips": Rotation.from_rotvec([np.radians(20), 0, 0]).as_quat()})
    frame = synthetic_landmarks(skeleton, lean)  # top of the body 20° toward the camera (+Z)
    levelled = PoseFromLandmarks(skeleton, TrackerOptions(camera_pitch_deg=20)).update(frame, 0)
    assert angle_deg(levelled.pose, "hips") < 1.0
    assert abs(angle_deg(PoseFromLandmarks(skeleton).update(frame, 0).pose, "hips") - 20) < 1


def test_one_euro_filter_cuts_jitter_at_rest_and_follows_fast_moves():
    rng = np.random.default_rng(7)
    f = OneEuroFilter(OneEuroParams(min_cutoff_hz=1.0, beta=0.5))
    t = np.arange(300) / 30.0
    noisy = 0.3 + rng.normal(0, 0.01, size=(300, 33, 3))
    out = np.array([f(ti, x) for ti, x in zip(t, noisy, strict=True)])
    assert out[30:].std() < noisy[30:].std() / 3  # jitter at rest cut at least 3×
    # A 1 m/s sweep: higher beta lags less.
    sweep = t[:, None, None] * np.ones((1, 33, 3))
    lags = []
    for beta in (0.0, 5.0):
        g = OneEuroFilter(OneEuroParams(min_cutoff_hz=1.0, beta=beta))
        lags.append(
            float(np.mean([x[0, 0] - g(ti, x)[0, 0] for ti, x in zip(t, sweep, strict=True)][60:]))
        )
    assert lags[1] < lags[0] / 3
    assert 0.1 < lags[0] < 0.2  # a 1 Hz first-order low-pass lags a ramp by 1/(2π) s


def test_tracker_can_smooth_landmarks_with_one_euro_when_asked():
    skeleton = adult_a_pose_skeleton()
    rng = np.random.default_rng(3)
    opts = TrackerOptions(landmark_filter=OneEuroParams(min_cutoff_hz=0.5, beta=0.0))
    raw, smooth = PoseFromLandmarks(skeleton), PoseFromLandmarks(skeleton, opts)
    base = synthetic_landmarks(skeleton, raised_arms())
    a_raw, a_smooth = [], []
    for i in range(60):
        world = base.world.copy()
        world[:, :3] += rng.normal(0, 0.01, size=(33, 3))
        frame = LandmarkFrame(base.image, world, base.presence, base.size_px)
        a_raw.append(angle_deg(raw.update(frame, i / 30).pose, "leftLowerArm"))
        a_smooth.append(angle_deg(smooth.update(frame, i / 30).pose, "leftLowerArm"))
    assert np.std(a_smooth[20:]) < np.std(a_raw[20:]) / 2


def test_shopper_height_from_landmarks_and_the_closest_twin():
    skeleton = adult_a_pose_skeleton()
    frame = synthetic_landmarks(skeleton, Pose())
    h = height_from_landmarks_m(frame.world_twin_m(), frame.visibility)
    assert h is not None and abs(h - HEIGHT_M) / HEIGHT_M < 0.05
    assert closest_twin_size(h, {"S": 1.58, "M": 1.75, "L": 1.92}) == "M"
    hidden = frame.visibility.copy()
    hidden[[LM["left_ankle"], LM["right_ankle"]]] = 0.0
    assert height_from_landmarks_m(frame.world_twin_m(), hidden) is None


def test_tracking_leaves_the_data_dir_cwd_and_tmpdir_unchanged(tmp_path):
    """Frames are biometric data: a run leaves nothing behind but poses.json."""
    cwd, tmpdir, out = tmp_path / "cwd", tmp_path / "tmp", tmp_path / "out"
    for d in (cwd, tmpdir, out):
        d.mkdir()

    def snapshot(root: Path) -> dict[str, tuple[int, int]]:
        return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}

    before = [snapshot(d) for d in (PEOPLE, cwd, tmpdir)]
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "spatialtwin",
            "track",
            str(PEOPLE / "pose_squats.mp4"),
            "-o",
            str(out / "poses.json"),
            "--model",
            "lite",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert [snapshot(d) for d in (PEOPLE, cwd, tmpdir)] == before
    assert [p.name for p in out.iterdir()] == ["poses.json"]
    assert "pose_squats" not in run.stderr  # no frame or input named in the logs either
