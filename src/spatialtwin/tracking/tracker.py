"""Camera frames (or landmarks) in, a smooth twin pose out: the body-tracking stage.

Per frame: (1) landmarks of the shopper (`landmarker`, one person, VIDEO mode), (2) optional One
Euro filtering (`one_euro`; off by default, MediaPipe already smooths in VIDEO mode), then
levelling by the camera's tilt, set or estimated from a standing shopper, with the hips put over
the feet and planted feet stood on the floor when `upright` is given (`upright`), (3)
retargeting to the twin's skeleton (`retarget`), (4) holding what was not seen: a joint whose
landmarks are not visible keeps its last rotation for `hold_s`, then eases back to rest over
`ease_s`; a shopper who leaves the frame does the same with the whole pose, (5) mirroring for
a mirror display, (6) a running estimate of the shopper's height (`shopper_scale`).

Only derived poses and landmarks leave the tracker; frames are never stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from spatialtwin.body.pose import Pose
from spatialtwin.body.skeleton import JOINT_NAMES, Skeleton
from spatialtwin.tracking.landmarker import (
    Frame,
    LandmarkerOptions,
    PoseLandmarkerStream,
    select_person,
)
from spatialtwin.tracking.landmarks import LM, LandmarkFrame
from spatialtwin.tracking.one_euro import OneEuroFilter, OneEuroParams
from spatialtwin.tracking.retarget import RetargetLimits, build_retarget_model, retarget
from spatialtwin.tracking.rotations import matrix_to_quat
from spatialtwin.tracking.shopper_scale import ShopperHeight, height_from_landmarks_m
from spatialtwin.tracking.upright import (
    CameraTilt,
    UprightOptions,
    hips_over_feet,
    plant_feet,
)

IDENTITY = np.array([0.0, 0.0, 0.0, 1.0])
HEIGHT_EVERY = 4


@dataclass(frozen=True)
class TrackerOptions:
    """How the tracker turns landmarks into a pose (times in seconds)."""

    mirror: bool = False
    landmark_filter: OneEuroParams | None = None
    hold_s: float = 0.5
    ease_s: float = 1.0
    lateral: bool = True
    # How far the camera looks down (degrees); people then seem to lean toward it. Set once per
    # mirror install; the world landmarks are levelled by it before retargeting.
    camera_pitch_deg: float = 0.0
    # And how far it is turned about its axis (degrees; + leans people toward the image's right).
    camera_roll_deg: float = 0.0
    limits: RetargetLimits = field(default_factory=RetargetLimits)
    # Estimate pitch and roll from a standing shopper over the first second instead
    # (`upright.CameraTilt`); `camera_pitch_deg` and `camera_roll_deg` are then ignored.
    estimate_camera_pitch: bool = False
    # Stand planted feet level on the floor (`upright.plant_feet`); None: ankles only, as before.
    upright: UprightOptions | None = None


@dataclass(frozen=True)
class TrackedFrame:
    """The tracker's output for one frame: the twin's pose and the landmarks behind it."""

    t_s: float
    pose: Pose
    landmarks: LandmarkFrame | None
    tracked: bool


def _ease_to_rest(quats: NDArray[np.float64], fraction: NDArray[np.float64]) -> NDArray:
    """Rotations moved `fraction` (0..1, per joint) of the way back to the identity."""
    smooth = fraction * fraction * (3.0 - 2.0 * fraction)  # smoothstep: no jolt at either end
    rotvec = Rotation.from_quat(quats).as_rotvec() * (1.0 - smooth)[:, None]
    return Rotation.from_rotvec(rotvec).as_quat()


class PoseFromLandmarks:
    """Steps (2)–(6) on landmark frames, so it runs without a camera or a model."""

    def __init__(self, skeleton: Skeleton, options: TrackerOptions | None = None) -> None:
        self.options = options or TrackerOptions()
        self.model = build_retarget_model(skeleton, self.options.limits)
        self._filter = (
            OneEuroFilter(self.options.landmark_filter) if self.options.landmark_filter else None
        )
        count = len(JOINT_NAMES)
        self._held = np.tile(IDENTITY, (count, 1))  # last observed local rotations
        self._seen_at = np.full(count, -np.inf)  # when each joint was last observed
        self._root = np.zeros(3)
        self._root_seen_at = -np.inf
        self.height = ShopperHeight()
        self._observed_frames = 0
        upright = self.options.upright or UprightOptions()
        self.camera = CameraTilt(
            None if self.options.estimate_camera_pitch else self.options.camera_pitch_deg,
            self.options.camera_roll_deg,
            upright,
        )

    def reset(self) -> None:
        """Forget the shopper (e.g. a new session on the mirror)."""
        self._held[:] = IDENTITY
        self._seen_at[:] = -np.inf
        self._root[:] = 0.0
        self._root_seen_at = -np.inf
        self.height.reset()
        if self._filter:
            self._filter.reset()

    def update(self, landmarks: LandmarkFrame | None, t_s: float) -> TrackedFrame:
        """The twin's pose at `t_s` given this frame's landmarks (None: nobody in view)."""
        if landmarks is not None and self._filter is not None:
            both = np.concatenate([landmarks.image[:, :3], landmarks.world[:, :3]])
            smoothed = self._filter(t_s, both)
            landmarks = landmarks.replace_xyz(smoothed[:33], smoothed[33:])
        elif landmarks is None and self._filter is not None:
            self._filter.reset()

        if landmarks is not None:
            self.camera.observe(landmarks.world[:, :3], landmarks.visibility, t_s)
            world = landmarks.world[:, :3]
            if self.options.upright is not None:
                world = hips_over_feet(world, landmarks.visibility, self.options.upright)
            level = self.camera.levelling()
            if level is not None:
                world = world @ level.T
            if world is not landmarks.world[:, :3]:
                landmarks = landmarks.replace_xyz(landmarks.image[:, :3], world)
        if landmarks is not None:
            result = retarget(self.model, landmarks, lateral=self.options.lateral)
            quats = result.quaternions
            obs = result.observed
            root = result.pose.root_m
            if self.options.upright is not None:
                local, root_y = plant_feet(
                    self.model,
                    result.local_rotations,
                    landmarks.world_twin_m(),
                    landmarks.visibility,
                    obs,
                    self.options.upright,
                )
                quats = matrix_to_quat(local)
                root = np.array([root[0], root_y, root[2]])
            self._held[obs] = quats[obs]
            self._seen_at[obs] = t_s
            self._root = root
            self._root_seen_at = t_s
            # Stature changes slowly: every HEIGHT_EVERY-th observed frame is sample enough.
            if self._observed_frames % HEIGHT_EVERY == 0:
                world = landmarks.world_twin_m()
                self.height.add(height_from_landmarks_m(world, landmarks.visibility))
            self._observed_frames += 1

        out = self._held.copy()
        lost_for = t_s - self._seen_at
        easing = lost_for > self.options.hold_s
        if easing.any():
            fraction = np.clip(
                (lost_for[easing] - self.options.hold_s) / max(self.options.ease_s, 1e-6), 0, 1
            )
            out[easing] = _ease_to_rest(self._held[easing], fraction)
        root = self._root.copy()
        root_lost = t_s - self._root_seen_at
        if root_lost > self.options.hold_s:
            f = min(1.0, (root_lost - self.options.hold_s) / max(self.options.ease_s, 1e-6))
            root *= 1.0 - f * f * (3.0 - 2.0 * f)

        pose = Pose(root, dict(zip(JOINT_NAMES, out, strict=True)))
        if self.options.mirror:
            pose = pose.mirrored()
        return TrackedFrame(t_s, pose, landmarks, landmarks is not None)

    @property
    def shopper_height_m(self) -> float | None:
        """Median stature estimate so far (metres), advice for choosing a twin size."""
        return self.height.height_m

    @property
    def camera_pitch_deg(self) -> float:
        """The camera pitch (degrees) the landmarks are levelled by: set, or estimated so far
        (a mirror stores it, and `camera_roll_deg`, once `camera.is_fixed`)."""
        return self.camera.pitch_deg

    @property
    def camera_roll_deg(self) -> float:
        return self.camera.roll_deg


class TwinPoseTracker:
    """Camera frames → twin poses: a VIDEO-mode landmarker plus `PoseFromLandmarks`."""

    def __init__(
        self,
        skeleton: Skeleton,
        options: TrackerOptions | None = None,
        landmarker: PoseLandmarkerStream | None = None,
        landmarker_options: LandmarkerOptions | None = None,
    ) -> None:
        self.poses = PoseFromLandmarks(skeleton, options)
        self._own_landmarker = landmarker is None
        self.landmarker = landmarker or PoseLandmarkerStream(landmarker_options)
        self._centre: NDArray[np.float64] | None = None

    def track(self, frame: Frame, t_s: float) -> TrackedFrame:
        """The twin's pose for a camera frame taken at `t_s` seconds (non-decreasing)."""
        return self.track_people(self.landmarker.detect(frame, t_s), t_s)

    def track_people(self, people: list[LandmarkFrame], t_s: float) -> TrackedFrame:
        """The twin's pose from everyone the landmarker found in a frame (the shopper is the
        one tracked so before, else the nearest and most centred): `track` without detection,
        for a caller that times or runs the landmarker itself."""
        pick = select_person(people, self._centre)
        person = people[pick] if pick is not None else None
        if person is not None:
            idx = [LM["left_shoulder"], LM["right_shoulder"], LM["left_hip"], LM["right_hip"]]
            self._centre = person.image[idx, :2].mean(axis=0)
        else:
            self._centre = None
        return self.poses.update(person, t_s)

    @property
    def shopper_height_m(self) -> float | None:
        return self.poses.shopper_height_m

    def close(self) -> None:
        if self._own_landmarker:
            self.landmarker.close()

    def __enter__(self) -> TwinPoseTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
