"""Motion that drives a twin under live cloth: mocap retargeted onto the canonical skeleton.

A mocap clip (`tracking.mocap_clip.BvhClip`: plain data, which the caller reads from a BVH file
with `spatialtwin.gltf.bvh`) is mapped joint by joint onto the twin's VRM bones.
Both rest poses face +Z with +X on the left, but their limbs rest differently (the CMU
skeleton's arms hang straight down, a twin stands in an A-pose), so every bone gets a fixed
rest alignment C: the smallest rotation taking the twin's rest bone direction onto the BVH's.
A BVH world rotation is relative to the BVH rest pose (identity there), so the twin bone's world
rotation is W = R_bvh · C, which points it exactly along the captured bone and keeps the
captured twist; locals follow from the rest convention (world-aligned joint frames) as
Wₚₐᵣₑₙₜᵀ · W. The root translation is the captured hips' path scaled by the ratio of leg
lengths, so strides fit the twin's legs. `with_turns_and_arm_raises` overlays the fast
motions the live solver must survive (90° turns on the spot, arms flung overhead).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from spatialtwin.body.pose import Pose
from spatialtwin.body.skeleton import JOINT_INDEX, JOINT_NAMES, PARENTS, Skeleton
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.errors import SpatialTwinError
from spatialtwin.tracking.mocap_clip import BvhClip

# Canonical bone ← the CMU BVH joint whose rotation moves the same bone, and the BVH joint its
# tip sits on (None: trunk and head bones, upright in both rest poses, need no alignment).
CMU_BONES: dict[str, tuple[str, str | None]] = {
    "hips": ("Hips", None),
    "spine": ("lowerback", None),
    "chest": ("Chest", None),
    "upperChest": ("Chest2", None),
    "neck": ("Neck", None),
    "head": ("Head", None),
    "leftShoulder": ("LeftCollar", "LeftShoulder"),
    "leftUpperArm": ("LeftShoulder", "LeftElbow"),
    "leftLowerArm": ("LeftElbow", "LeftWrist"),
    "leftHand": ("LeftWrist", "LFingers"),
    "rightShoulder": ("RightCollar", "RightShoulder"),
    "rightUpperArm": ("RightShoulder", "RightElbow"),
    "rightLowerArm": ("RightElbow", "RightWrist"),
    "rightHand": ("RightWrist", "RFingers"),
    "leftUpperLeg": ("LeftHip", "LeftKnee"),
    "leftLowerLeg": ("LeftKnee", "LeftAnkle"),
    "leftFoot": ("LeftAnkle", "LeftToe"),
    "leftToes": ("LeftToe", "LeftToe_end"),
    "rightUpperLeg": ("RightHip", "RightKnee"),
    "rightLowerLeg": ("RightKnee", "RightAnkle"),
    "rightFoot": ("RightAnkle", "RightToe"),
    "rightToes": ("RightToe", "RightToe_end"),
}


@dataclass(frozen=True)
class MotionClip:
    """Poses of the canonical skeleton at a fixed rate: root (F, 3) m, world rotations."""

    root_m: NDArray[np.float64]  # (F, 3)
    world_rotations: NDArray[np.float64]  # (F, J, 3, 3) world rotation of every joint
    fps: float

    @property
    def frame_count(self) -> int:
        return int(self.root_m.shape[0])

    def frame_index(self, frame: int) -> int:
        """Played forwards then backwards (ping-pong), so any frame count runs without jumps."""
        n = self.frame_count
        if n == 1:
            return 0
        period = 2 * (n - 1)
        f = frame % period
        return f if f < n else period - f

    def local_rotations(self, frame: int) -> NDArray[np.float64]:
        """(J, 3, 3) local rotations: Wₚₐᵣₑₙₜᵀ · W (joint frames are world-aligned at rest)."""
        w = self.world_rotations[self.frame_index(frame)]
        local = w.copy()
        has_parent = PARENTS >= 0
        local[has_parent] = np.einsum("jba,jbc->jac", w[PARENTS[has_parent]], w[has_parent])
        return local

    def pose(self, frame: int) -> Pose:
        quats = Rotation.from_matrix(self.local_rotations(frame)).as_quat()
        return Pose(
            self.root_m[self.frame_index(frame)].copy(),
            dict(zip(JOINT_NAMES, quats, strict=True)),
        )


def _swing(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Smallest rotation matrix turning direction a onto direction b."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    axis = np.cross(a, b)
    s = float(np.linalg.norm(axis))
    angle = float(np.arctan2(s, float(np.dot(a, b))))
    if s < 1e-9:
        if angle < 1.0:
            return np.eye(3)
        perp = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(perp) < 1e-6:
            perp = np.cross(a, [0.0, 1.0, 0.0])
        return Rotation.from_rotvec(np.pi * perp / np.linalg.norm(perp)).as_matrix()
    return Rotation.from_rotvec(axis / s * angle).as_matrix()


def _leg_length(positions: NDArray[np.float64], hip: int, knee: int, ankle: int) -> float:
    return float(
        np.linalg.norm(positions[knee] - positions[hip])
        + np.linalg.norm(positions[ankle] - positions[knee])
    )


def retarget_bvh(
    clip: BvhClip,
    skeleton: Skeleton,
    *,
    fps: float = 30.0,
    scale_to_m: float = 1.0,
    bones: dict[str, tuple[str, str | None]] = CMU_BONES,
    arm_abduction_rad: float = np.radians(15.0),
) -> MotionClip:
    """The BVH's motion on `skeleton`, resampled to `fps` (nearest captured frame).

    The BVH is taken as +Y up, facing +Z at rest, in units of `scale_to_m` metres, floor at
    y = 0 (true of the CMU clips rescaled by bvh11). The captured arms hang close to a slim
    actor's hips; on a twin with wider hips they would pass through them (and pinch any
    garment there to shreds), so the upper arms are turned out by `arm_abduction_rad` about
    the chest's forward axis.
    """
    missing = [name for name in JOINT_NAMES if name not in bones]
    if missing:
        raise SpatialTwinError(
            "bad_motion_mapping", "every canonical joint needs a BVH joint", {"missing": missing}
        )
    step = max(1, round(1.0 / (fps * clip.frame_time_s)))
    rot_all, pos_all = clip.world_transforms(scale_to_m)
    rot_all, pos_all = rot_all[::step], pos_all[::step]
    rest_rot = np.zeros((1, *clip.values.shape[1:]))
    rest_clip = BvhClip(
        clip.names, clip.parents, clip.offsets, clip.channels, clip.frame_time_s, rest_rot
    )
    _, rest_pos = rest_clip.world_transforms(scale_to_m)
    rest_pos = rest_pos[0]

    ours = skeleton.rest_positions_m
    world = np.zeros((len(rot_all), len(JOINT_NAMES), 3, 3))
    for name, (src, tip) in bones.items():
        j = JOINT_INDEX[name]
        align = np.eye(3)
        if tip is not None:
            bvh_dir = rest_pos[clip.index(tip)] - rest_pos[clip.index(src)]
            our_dir = skeleton.bone_tip(name) - ours[j]
            align = _swing(our_dir, bvh_dir)
        world[:, j] = rot_all[:, clip.index(src)] @ align
    if arm_abduction_rad:
        world = _abduct_arms(world, np.full(len(world), arm_abduction_rad))

    # root: the hips' path, strides scaled to the twin's legs
    bvh_leg = _leg_length(
        rest_pos, clip.index("LeftHip"), clip.index("LeftKnee"), clip.index("LeftAnkle")
    )
    our_leg = _leg_length(
        ours,
        JOINT_INDEX["leftUpperLeg"],
        JOINT_INDEX["leftLowerLeg"],
        JOINT_INDEX["leftFoot"],
    )
    s = our_leg / bvh_leg
    hips = pos_all[:, clip.index(bones["hips"][0])] * s
    root = np.empty_like(hips)
    root[:, [0, 2]] = hips[:, [0, 2]] - hips[0, [0, 2]]
    root[:, 1] = hips[:, 1] - ours[JOINT_INDEX["hips"], 1]
    return MotionClip(root, world, fps)


def from_rest(clip: MotionClip, seconds: float = 1.0) -> MotionClip:
    """The clip preceded by a smooth blend from the rest pose into its first frame.

    A garment is placed around the twin in its rest pose; easing into the motion lets it come
    along instead of starting with the body already turned inside it.
    """
    n = max(2, round(seconds * clip.fps))
    u = np.linspace(0.0, 1.0, n, endpoint=False)
    u = u * u * (3.0 - 2.0 * u)
    first = Rotation.from_matrix(clip.world_rotations[0])
    rotvec = first.as_rotvec()  # (J, 3): rest is the identity
    blend = Rotation.from_rotvec(u[:, None, None] * rotvec[None]).as_matrix()
    rest_root = np.zeros(3)
    root = rest_root + u[:, None] * (clip.root_m[0] - rest_root)
    return MotionClip(
        np.concatenate([root, clip.root_m]),
        np.concatenate([blend, clip.world_rotations]),
        clip.fps,
    )


def _abduct_arms(world: NDArray[np.float64], angle_rad: NDArray[np.float64]) -> NDArray:
    """World rotations with both arms turned out (up) by angle_rad (F,) about the chest's
    forward axis: left arm about +Z, right arm about −Z."""
    world = world.copy()
    chest = JOINT_INDEX["upperChest"]
    wc = world[:, chest]
    for side, sign in (("left", 1.0), ("right", -1.0)):
        arm = [JOINT_INDEX[f"{side}{b}"] for b in ("UpperArm", "LowerArm", "Hand")]
        rz = Rotation.from_rotvec(np.outer(sign * angle_rad, [0.0, 0.0, 1.0])).as_matrix()
        lift = wc @ rz @ np.transpose(wc, (0, 2, 1))
        world[:, arm] = lift[:, None] @ world[:, arm]
    return world


def _smooth_pulse(t: NDArray[np.float64], start: float, rise: float, hold: float) -> NDArray:
    """0 → 1 over `rise` seconds from `start`, held `hold` s, back to 0 over `rise` (C¹)."""

    def ramp(u: NDArray[np.float64]) -> NDArray[np.float64]:
        u = np.clip(u, 0.0, 1.0)
        return u * u * (3.0 - 2.0 * u)

    return ramp((t - start) / rise) - ramp((t - start - rise - hold) / rise)


def with_turns_and_arm_raises(
    clip: MotionClip,
    *,
    turn_every_s: float = 6.0,
    turn_time_s: float = 0.4,
    arm_every_s: float = 4.0,
    arm_raise_s: float = 0.25,
    arm_hold_s: float = 0.3,
    arm_angle_rad: float = np.radians(110.0),
) -> MotionClip:
    """The clip with 90° turns on the spot and both arms flung overhead, periodically.

    Every `turn_every_s` the body turns 90° about the vertical through the hips in
    `turn_time_s` (≈ 4 rad/s), alternately left and right, holding the new heading; every
    `arm_every_s` both upper arms swing up by `arm_angle_rad` in `arm_raise_s` (≈ 8 rad/s at
    the defaults, hands moving ~5 m/s) and back. Applied on top of the captured motion, with
    the clip's ping-pong unrolled to the longer of the two periods' multiple.
    """
    n_loop = 2 * (clip.frame_count - 1)
    frames = max(n_loop, 1)
    idx = np.array([clip.frame_index(f) for f in range(frames)])
    t = np.arange(frames) / clip.fps
    world = clip.world_rotations[idx].copy()
    root = clip.root_m[idx].copy()

    yaw = np.zeros(frames)
    k = 0
    while (start := (k + 0.5) * turn_every_s) < t[-1]:
        sign = 1.0 if k % 2 == 0 else -1.0
        yaw += sign * 0.5 * np.pi * _smooth_pulse(t, start, turn_time_s, 1e9)
        k += 1
    raise_amount = np.zeros(frames)
    k = 0
    while (start := (k + 0.25) * arm_every_s) < t[-1]:
        raise_amount += _smooth_pulse(t, start, arm_raise_s, arm_hold_s)
        k += 1

    world = _abduct_arms(world, arm_angle_rad * raise_amount)
    turn = Rotation.from_rotvec(np.outer(yaw, [0.0, 1.0, 0.0])).as_matrix()
    world = turn[:, None] @ world
    # turning on the spot: the hips' path keeps going in the new heading
    step = np.diff(root[:, [0, 2]], axis=0, prepend=root[:1, [0, 2]])
    c, s = np.cos(yaw), np.sin(yaw)
    step = np.stack([c * step[:, 0] + s * step[:, 1], -s * step[:, 0] + c * step[:, 1]], axis=1)
    root[:, [0, 2]] = np.cumsum(step, axis=0) + root[0, [0, 2]]
    return MotionClip(root, world, clip.fps)


class SkinnedMotion:
    """A twin moving through a clip: posed body vertices per frame, ready for a collider.

    The twin's UV-seam duplicates are welded away (one closed surface for collision), so
    `faces` index `vertices(frame)`.
    """

    def __init__(self, twin: TwinBody, clip: MotionClip) -> None:
        self.twin = twin
        self.clip = clip
        if twin.weld_map is None:
            self._keep = np.arange(twin.vertex_count)
            self.faces = np.asarray(twin.faces, dtype=np.int64)
        else:
            self._keep, inverse = np.unique(twin.weld_map, return_inverse=True)
            self.faces = inverse[twin.faces]

    def vertices(self, frame: int) -> NDArray[np.float64]:
        """Posed, welded body vertices (N, 3) in metres at a frame (any non-negative int)."""
        return self.twin.posed_vertices(self.clip.pose(frame))[self._keep]
