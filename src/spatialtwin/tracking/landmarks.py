"""The 33 BlazePose landmarks and the change of axes from MediaPipe's world to the twin's.

MediaPipe world landmarks are metres with the origin at the hip midpoint, +x toward the image's
right, +y down and -z toward the camera. The twin is glTF: +Y up, facing +Z (toward the viewer
and camera), its own left on +X. A person facing the camera has their left on the image's right,
i.e. on MediaPipe's +x, which is the twin's left (+X) too: so X = x, Y = -y, Z = -z, a rotation of
180° about x (no reflection). Mirror displays are handled after retargeting (`Pose.mirrored`);
the landmarker always runs on the un-mirrored frame, because a mirrored frame swaps MediaPipe's
left/right labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

LANDMARK_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye_inner",
    "left_eye",
    "left_eye_outer",
    "right_eye_inner",
    "right_eye",
    "right_eye_outer",
    "left_ear",
    "right_ear",
    "mouth_left",
    "mouth_right",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_pinky",
    "right_pinky",
    "left_index",
    "right_index",
    "left_thumb",
    "right_thumb",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "left_heel",
    "right_heel",
    "left_foot_index",
    "right_foot_index",
)
LANDMARK_COUNT = len(LANDMARK_NAMES)
LM: dict[str, int] = {name: i for i, name in enumerate(LANDMARK_NAMES)}

# MediaPipe world axes -> twin axes (X = x, Y = -y, Z = -z).
MP_TO_TWIN: NDArray[np.float64] = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class LandmarkFrame:
    """One person's landmarks in one frame, as MediaPipe gives them.

    `image`: (33, 4) x, y normalised to the frame's width and height, z (relative depth, same
    scale as x), visibility. `world`: (33, 4) x, y, z in metres (MediaPipe axes, origin at the
    hip midpoint) and visibility. `presence`: (33,) probability each landmark is in the frame.
    `size_px`: (width, height) of the frame the landmarks were found in.
    """

    image: NDArray[np.float64]
    world: NDArray[np.float64]
    presence: NDArray[np.float64]
    size_px: tuple[int, int]

    @property
    def visibility(self) -> NDArray[np.float64]:
        return self.image[:, 3]

    def world_twin_m(self) -> NDArray[np.float64]:
        """(33, 3) world landmarks in the twin's axes (metres, +Y up, facing +Z)."""
        return self.world[:, :3] @ MP_TO_TWIN

    def image_px(self) -> NDArray[np.float64]:
        """(33, 2) image landmarks in pixels."""
        return self.image[:, :2] * np.asarray(self.size_px, dtype=np.float64)

    def replace_xyz(
        self, image_xyz: NDArray[np.float64], world_xyz: NDArray[np.float64]
    ) -> LandmarkFrame:
        """The same frame with new coordinates (visibility and presence kept), e.g. filtered."""
        image = self.image.copy()
        world = self.world.copy()
        image[:, :3] = image_xyz
        world[:, :3] = world_xyz
        return LandmarkFrame(image, world, self.presence, self.size_px)
