"""Upright and level: undo the mirror camera's pitch, and stand the twin's feet on the floor.

MediaPipe's world landmarks are metres in the camera's axes (origin at the hip midpoint). A
camera that looks down at the shopper by an angle a sees their up direction tilted toward it by
a, so a shopper standing straight comes out leaning forward; a camera looking up, backward.
Two steps make a standing shopper's twin stand straight with both feet on the floor:

1. **Level** (`CameraTilt`): the camera's pitch (and roll) is set once per mirror, or
   estimated from a standing shopper over the first second. A standing person's ankles,
   knees, hips and shoulders lie on one vertical line (the plumb line of standing posture);
   the pitch is the tilt, about the camera's x axis, of the least-squares line through the
   midpoints of those four pairs seen from the side, the roll its tilt seen from the front,
   medians over standing frames. The line through all four, not the trunk alone: MediaPipe's
   hip depth moves with the arms (the same camera's trunk tilt reads 13° to 20° on three
   standing photos, the four-point line 12° to 14°), which `hips_over_feet` mends.
2. **Plant the feet** (`plant_feet`): a foot whose lowest landmark (ankle, heel, toe) is near
   the lower foot's is on the floor. Its sole is turned level (only its turn about the
   vertical is kept: a foot's pitch from MediaPipe is the noisiest part of the skeleton and
   would sink the toes through the floor or lift the heel), and if the other foot is planted
   too, its leg is bent or stretched at the knee and swung at the hip (two-bone IK) so its
   ankle reaches the floor as well: a twin's bones are not the shopper's, and the same angles
   put one foot a few centimetres up in a lunge.

Angles in degrees at the interfaces, radians inside; landmarks in metres.

Example:
    tilt = CameraTilt()                        # or CameraTilt(fixed_pitch_deg=12.0)
    tilt.observe(frame.world[:, :3], frame.visibility, t_s)
    levelled = frame.world[:, :3] @ levelling_matrix(tilt.pitch_deg, tilt.roll_deg).T
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from spatialtwin.body.skeleton import JOINT_INDEX
from spatialtwin.tracking.landmarks import LM
from spatialtwin.tracking.rotations import (
    axis_angle_matrix,
    fractional_rotation,
    normalize,
    swing_matrix,
)

J = JOINT_INDEX
MIDPOINT_PAIRS = (
    ("left_ankle", "right_ankle"),
    ("left_knee", "right_knee"),
    ("left_hip", "right_hip"),
    ("left_shoulder", "right_shoulder"),
)
_PAIRS = np.array([[LM[a], LM[b]] for a, b in MIDPOINT_PAIRS])
_LEGS = np.array(
    [
        [LM["left_hip"], LM["left_knee"], LM["left_ankle"]],
        [LM["right_hip"], LM["right_knee"], LM["right_ankle"]],
    ]
)
_FOOT_LMS = np.array(
    [
        [LM["left_ankle"], LM["left_heel"], LM["left_foot_index"]],
        [LM["right_ankle"], LM["right_heel"], LM["right_foot_index"]],
    ]
)


@dataclass(frozen=True)
class UprightOptions:
    """Thresholds of standing and of a foot on the floor (degrees, metres, seconds).

    - ``standing_line_fit_m``: the largest distance, seen from the side, of the ankles',
      knees', hips' and shoulders' midpoints from their line for a frame to estimate the
      pitch, and of the ankles', knees' and shoulders' for the hips to be put over the feet
      (`hips_over_feet`, fading out by twice the distance). ``straight_knee_deg``: both knees
      straighter than this for a frame to estimate the roll.
    - ``calibration_s``: how much standing the pitch estimate takes before it is fixed;
      ``min_samples`` frames at least. ``max_pitch_deg`` bounds a plausible mirror camera.
    - ``planted_m`` / ``lifted_m``: a foot whose lowest landmark is within ``planted_m`` of the
      lower foot's is on the floor, one above ``lifted_m`` is off it, in between it is blended
      (no pop when a foot lifts).
    - ``max_leg_reach_m``: the farthest the IK moves a planted ankle; more means the landmarks
      disagree with the twin's legs too much to trust.
    """

    standing_line_fit_m: float = 0.06
    straight_knee_deg: float = 20.0
    calibration_s: float = 1.0
    min_samples: int = 3
    max_pitch_deg: float = 45.0
    planted_m: float = 0.05
    lifted_m: float = 0.12
    max_leg_reach_m: float = 0.15
    min_visibility: float = 0.5


UPRIGHT_DEFAULTS = UprightOptions()


def levelling_matrix(camera_pitch_deg: float, camera_roll_deg: float = 0.0) -> NDArray:
    """Rotation in MediaPipe world axes (+x right, +y down, +z away) that undoes a camera
    pitched down by `camera_pitch_deg` (negative: looking up) and rolled so that a standing
    person's up leans `camera_roll_deg` toward +x; apply as `world @ M.T`."""
    a = np.radians(camera_pitch_deg)
    # A downward-looking camera sees the body's up (-y) tilted toward it (-z); a rotation about
    # x by -a brings it back to vertical; then one about z takes out the sideways lean.
    c, s = np.cos(a), np.sin(a)
    pitch = np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])
    r = np.radians(camera_roll_deg)
    cr, sr = np.cos(r), np.sin(r)
    roll = np.array([[cr, sr, 0.0], [-sr, cr, 0.0], [0.0, 0.0, 1.0]])
    return roll @ pitch


def _midpoints(world_mp_m: NDArray[np.float64]) -> NDArray[np.float64]:
    """(4, 3) midpoints of the ankles, knees, hips and shoulders."""
    return world_mp_m[_PAIRS].mean(axis=1)


def standing_tilt_deg(
    world_mp_m: NDArray[np.float64],
    visibility: NDArray[np.float64],
    options: UprightOptions = UPRIGHT_DEFAULTS,
) -> tuple[float | None, float | None]:
    """The camera pitch and roll (degrees) one frame of a standing person implies; None for
    either when the person is not seen whole or does not stand straight in that view.

    Pitch from the side view (the camera's y-z plane: a pitch turns about x), so legs spread
    sideways (a T-pose, a warrior lunge) still count while a squat or a bow, which put the
    knees or the shoulders off the line, do not. Roll from the front view of the pitch-levelled
    landmarks, only on two straight legs (a lunge leans the body line sideways on purpose).
    """
    if world_mp_m.shape != (33, 3) or not np.isfinite(world_mp_m).all():
        return None, None
    if not (visibility[_PAIRS.ravel()] >= options.min_visibility).all():
        return None, None
    side = _midpoints(world_mp_m)[:, 1:3]  # (y, z) of ankles, knees, hips, shoulders
    up, off_line = _side_line_fit_m(side)
    if off_line > options.standing_line_fit_m:
        return None, None
    # MediaPipe axes: up is -y; a forward tilt toward the camera is -z.
    pitch = float(np.degrees(np.arctan2(-up[1], -up[0])))
    if abs(pitch) > options.max_pitch_deg:
        return None, None
    if _knee_bend_deg(world_mp_m) > options.straight_knee_deg:
        return pitch, None
    level = _midpoints(world_mp_m @ levelling_matrix(pitch).T)
    front, off_front = _side_line_fit_m(level[:, [1, 0]])  # (y, x)
    if off_front > options.standing_line_fit_m:
        return pitch, None
    roll = float(np.degrees(np.arctan2(front[1], -front[0])))
    return pitch, roll if abs(roll) <= options.max_pitch_deg else None


def _knee_bend_deg(world_mp_m: NDArray[np.float64]) -> float:
    """The larger knee bend (degrees between thigh and shin) of the two legs."""
    thigh = world_mp_m[_LEGS[:, 1]] - world_mp_m[_LEGS[:, 0]]
    shin = world_mp_m[_LEGS[:, 2]] - world_mp_m[_LEGS[:, 1]]
    cos = np.sum(normalize(thigh) * normalize(shin), axis=1)
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))).max())


def _side_line_fit_m(side_yz: NDArray[np.float64]) -> tuple[NDArray[np.float64], float]:
    """Unit up direction (y, z) of the least-squares line through side-view points and the
    largest distance of a point from it (metres)."""
    centre = side_yz.mean(axis=0)
    rel = side_yz - centre
    _, _, vt = np.linalg.svd(rel)
    up = vt[0] if np.dot(vt[0], side_yz[-1] - side_yz[0]) > 0 else -vt[0]
    return up, float(np.abs(rel[:, 0] * up[1] - rel[:, 1] * up[0]).max())


def standing_weight(
    world_mp_m: NDArray[np.float64],
    visibility: NDArray[np.float64],
    options: UprightOptions = UPRIGHT_DEFAULTS,
) -> float:
    """How much a frame is a person standing straight seen from the side, 0..1.

    Ankles, knees and shoulders (midpoints, in the camera's y-z plane) on one line within
    `standing_line_fit_m` gives 1, off it by twice that 0, smooth in between: a squat puts the
    knees forward, a bow the shoulders, while a T-pose or a sideways lunge (legs apart in x)
    still stands. The hips are left out: their depth is what `hips_over_feet` mends.
    """
    if not (visibility[_PAIRS.ravel()] >= options.min_visibility).all():
        return 0.0
    side = _midpoints(world_mp_m)[[0, 1, 3], 1:3]
    _, off = _side_line_fit_m(side)
    tol = options.standing_line_fit_m
    t = float(np.clip((2.0 * tol - off) / tol, 0.0, 1.0))
    return t * t * (3.0 - 2.0 * t)


def hips_over_feet(
    world_mp_m: NDArray[np.float64],
    visibility: NDArray[np.float64],
    options: UprightOptions = UPRIGHT_DEFAULTS,
) -> NDArray[np.float64]:
    """World landmarks (MediaPipe axes) with the hips' depth put on the ankle-to-shoulder line
    when the person stands straight (by `standing_weight`).

    Depth (z) is the coordinate a single camera estimates worst, and the hip joints are the
    landmarks with the least to see: no skin mark sits on them. On three standing photos from
    one camera MediaPipe's hip-to-shoulder line reads 13° to 20° from the camera's vertical
    while its ankle-to-shoulder line reads 13° to 15°: the hips wander back and forth in depth
    with the arms. A person standing on straight legs keeps the pelvis over the feet (the
    plumb line of standing posture), so only their depth is moved, both hips alike, onto the
    line; x and y, which the image pins down, are kept.
    """
    out = np.array(world_mp_m, dtype=np.float64, copy=True)
    w = standing_weight(out, visibility, options)
    if w <= 0.0:
        return out
    ankle, _, hip, shoulder = _midpoints(out)
    span = shoulder[1] - ankle[1]
    if abs(span) < 1e-3:
        return out
    t = (hip[1] - ankle[1]) / span
    on_line = ankle[2] + t * (shoulder[2] - ankle[2])
    out[_PAIRS[2], 2] += w * (on_line - hip[2])
    return out


class CameraTilt:
    """The mirror camera's pitch and roll: fixed, or the medians over the first
    `calibration_s` seconds of standing frames, then held (they are the camera's, not the
    shopper's: a new shopper does not reset them). Until a standing frame is seen both are 0
    (nothing levelled)."""

    def __init__(
        self,
        fixed_pitch_deg: float | None = None,
        fixed_roll_deg: float = 0.0,
        options: UprightOptions = UPRIGHT_DEFAULTS,
    ) -> None:
        for value in (fixed_pitch_deg, fixed_roll_deg):
            if value is not None and not (
                np.isfinite(value) and abs(value) <= options.max_pitch_deg
            ):
                raise ValueError(f"camera pitch and roll must be within ±{options.max_pitch_deg}°")
        self.options = options
        self._fixed = None if fixed_pitch_deg is None else (fixed_pitch_deg, fixed_roll_deg)
        self._pitch: deque[float] = deque(maxlen=600)
        self._roll: deque[float] = deque(maxlen=600)
        self._first_t_s: float | None = None
        self._frozen: tuple[float, float] | None = None

    @property
    def is_fixed(self) -> bool:
        """True once the tilt no longer changes (set, or calibrated)."""
        return self._fixed is not None or self._frozen is not None

    @property
    def pitch_deg(self) -> float:
        return self._angles()[0]

    @property
    def roll_deg(self) -> float:
        return self._angles()[1]

    def _angles(self) -> tuple[float, float]:
        if self._fixed is not None:
            return self._fixed
        if self._frozen is not None:
            return self._frozen
        pitch = float(np.median(self._pitch)) if self._pitch else 0.0
        roll = float(np.median(self._roll)) if self._roll else 0.0
        return pitch, roll

    @property
    def samples(self) -> int:
        """Standing frames seen so far (before the estimate was fixed)."""
        return len(self._pitch)

    def levelling(self) -> NDArray[np.float64] | None:
        """The levelling rotation for the current estimate, None while it is the identity."""
        pitch, roll = self._angles()
        return None if pitch == 0.0 and roll == 0.0 else levelling_matrix(pitch, roll)

    def observe(
        self, world_mp_m: NDArray[np.float64], visibility: NDArray[np.float64], t_s: float
    ) -> None:
        """Take one frame of landmarks (MediaPipe world axes, not yet levelled)."""
        if self.is_fixed:
            return
        pitch, roll = standing_tilt_deg(world_mp_m, visibility, self.options)
        if pitch is None:
            return
        self._pitch.append(pitch)
        if roll is not None:
            self._roll.append(roll)
        self._first_t_s = t_s if self._first_t_s is None else self._first_t_s
        enough_time = t_s - self._first_t_s >= self.options.calibration_s
        if enough_time and len(self._pitch) >= self.options.min_samples:
            self._frozen = self._angles()


# --- feet on the floor -------------------------------------------------------------------------

_LEG_JOINTS = (
    ("leftUpperLeg", "leftLowerLeg", "leftFoot"),
    ("rightUpperLeg", "rightLowerLeg", "rightFoot"),
)


def planted_weights(
    landmarks_twin_m: NDArray[np.float64],
    visibility: NDArray[np.float64],
    options: UprightOptions = UPRIGHT_DEFAULTS,
) -> NDArray[np.float64]:
    """(2,) how much each foot (left, right) stands on the floor, 0..1, from the height of its
    lowest landmark above the other foot's (levelled landmarks in twin axes, +Y up)."""
    lows = np.empty(2)
    for k in range(2):
        idx = _FOOT_LMS[k]
        seen = visibility[idx] >= options.min_visibility
        if not seen[0]:  # no ankle: the foot is out of the frame
            return np.zeros(2)
        lows[k] = landmarks_twin_m[idx[seen], 1].min()
    height = lows - lows.min()
    span = max(options.lifted_m - options.planted_m, 1e-6)
    return np.clip((options.lifted_m - height) / span, 0.0, 1.0)


def _yaw_only(foot_w: NDArray[np.float64], rest_toe_dir: NDArray[np.float64]) -> NDArray:
    """The foot's world rotation with its sole level: only its turn about +Y is kept."""
    now = foot_w @ rest_toe_dir
    a = np.arctan2(rest_toe_dir[0], rest_toe_dir[2])
    b = np.arctan2(now[0], now[2])
    if np.hypot(now[0], now[2]) < 1e-6:  # toes straight down or up: no yaw to read
        return np.eye(3)
    return axis_angle_matrix(np.array([0.0, 1.0, 0.0]), b - a)


def _blend(a: NDArray[np.float64], b: NDArray[np.float64], w: float) -> NDArray[np.float64]:
    """Rotation matrix a moved the fraction w of the way to b."""
    return a @ fractional_rotation(a.T @ b, w)


def _knee_flex_for_reach(
    thigh_m: NDArray[np.float64],
    shin_m: NDArray[np.float64],
    hinge: NDArray[np.float64],
    flex_now: float,
    reach_m: float,
    flex_range: NDArray[np.float64],
) -> float:
    """Hinge angle (radians, about `hinge` in the thigh's frame) putting the ankle `reach_m`
    from the hip: |thigh + R(f)·shin| = reach, the solution nearest `flex_now`.

    |thigh + R(f) shin|² = |thigh|² + |shin|² + 2 thigh·R(f) shin, and thigh·R(f)shin is
    A cos f + B sin f + C by Rodrigues, so f has a closed form.
    """
    par = hinge * np.dot(hinge, shin_m)
    perp = shin_m - par
    A = float(np.dot(thigh_m, perp))
    B = float(np.dot(thigh_m, np.cross(hinge, perp)))
    C = float(np.dot(thigh_m, par))
    rhs = (reach_m**2 - np.dot(thigh_m, thigh_m) - np.dot(shin_m, shin_m)) / 2.0 - C
    amp = float(np.hypot(A, B))
    if amp < 1e-9:
        return flex_now
    phi = float(np.arctan2(B, A))
    delta = float(np.arccos(np.clip(rhs / amp, -1.0, 1.0)))
    options = np.array([phi + delta, phi - delta])
    options = (options - flex_now + np.pi) % (2 * np.pi) - np.pi + flex_now
    best = float(options[np.argmin(np.abs(options - flex_now))])
    return float(np.clip(best, flex_range[0], flex_range[1]))


def plant_feet(
    model,  # tracking.retarget.RetargetModel (not imported: retarget imports nothing here)
    local: NDArray[np.float64],
    landmarks_twin_m: NDArray[np.float64],
    visibility: NDArray[np.float64],
    observed: NDArray[np.bool_],
    options: UprightOptions = UPRIGHT_DEFAULTS,
) -> tuple[NDArray[np.float64], float]:
    """Local rotations (J, 3, 3) with planted feet level and both planted ankles on the floor,
    and the root height (metres) that stands the lower ankle at its rest height."""
    out = local.copy()
    weights = planted_weights(landmarks_twin_m, visibility, options)
    skel = model.skeleton
    hips_w = out[J["hips"]]
    offs = model.leg_offsets  # (2 legs, 3 segments: hip, knee, ankle offsets, 3)
    hips_y = skel.position("hips")[1]
    world = []
    # (1) level the planted feet's soles
    for k, (up_name, low_name, foot_name) in enumerate(_LEG_JOINTS):
        upper_w = hips_w @ out[J[up_name]]
        lower_w = upper_w @ out[J[low_name]]
        foot_w = lower_w @ out[J[foot_name]]
        if weights[k] > 0.0 and observed[J[foot_name]]:
            level = _blend(foot_w, _yaw_only(foot_w, model.end_dir[2 + k]), float(weights[k]))
            out[J[foot_name]] = lower_w.T @ level
        hip = hips_w @ offs[k, 0]
        ankle = hip + upper_w @ offs[k, 1] + lower_w @ offs[k, 2]
        world.append((upper_w, lower_w, hip, ankle))
    ankle_y = np.array([w[3][1] for w in world])
    low = int(np.argmin(ankle_y))
    # (2) the other planted ankle down (or up) to the floor: knee by reach, hip by direction
    k = 1 - low
    lift = float(ankle_y[k] - ankle_y[low])
    if (
        weights[k] > 0.0
        and weights[low] > 0.0
        and observed[J[_LEG_JOINTS[k][1]]]
        and 1e-4 < lift <= options.max_leg_reach_m
    ):
        up_name, low_name, foot_name = _LEG_JOINTS[k]
        upper_w, lower_w, hip, ankle = world[k]
        foot_w = lower_w @ out[J[foot_name]]
        target = ankle - np.array([0.0, weights[k] * lift, 0.0])
        flex_now = _current_flex(out[J[low_name]], model.hinge_axis[2 + k])
        flex = _knee_flex_for_reach(
            offs[k, 1],
            offs[k, 2],
            model.hinge_axis[2 + k],
            flex_now,
            float(np.linalg.norm(target - hip)),
            model.flexion_range[2 + k],
        )
        lower_local = axis_angle_matrix(model.hinge_axis[2 + k], flex)
        reach_dir = upper_w @ (offs[k, 1] + lower_local @ offs[k, 2])
        swing = swing_matrix(normalize(reach_dir), normalize(target - hip))
        upper_w = swing @ upper_w
        lower_w = upper_w @ lower_local
        out[J[up_name]] = hips_w.T @ upper_w
        out[J[low_name]] = lower_local
        out[J[foot_name]] = lower_w.T @ foot_w
    root_y = float(model.rest_ankle_y_m - hips_y - ankle_y[low])
    return out, root_y


def _current_flex(lower_local: NDArray[np.float64], hinge: NDArray[np.float64]) -> float:
    """The hinge angle (radians) of a knee's local rotation about its hinge axis."""
    # lower_local is axis_angle(hinge, f): sin f = (skew part)·hinge, cos f from the trace.
    skew = np.array(
        [
            lower_local[2, 1] - lower_local[1, 2],
            lower_local[0, 2] - lower_local[2, 0],
            lower_local[1, 0] - lower_local[0, 1],
        ]
    )
    return float(np.arctan2(0.5 * np.dot(skew, hinge), (np.trace(lower_local) - 1.0) / 2.0))
