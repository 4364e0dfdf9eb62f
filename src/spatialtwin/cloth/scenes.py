"""Reference garments for the solver's tests and bench: a square sheet and a flared skirt.

Both are built the way real garments are: a flat panel in pattern space (the rest shape, metres)
placed in 3D by an isometric embedding, so they start stress-free. The skirt's panel is an
annular sector rolled into a cone and closed by a seam, sized from the body it is put on (with
ease: it is a size that fits, never rescaled to the body afterwards).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from spatialtwin.errors import SpatialTwinError


def grid_faces(rows: int, cols: int, closed_cols: bool = False) -> NDArray[np.int32]:
    """Triangles of a rows × cols vertex grid, alternating diagonals (no preferred shear)."""
    idx = np.arange(rows * cols).reshape(rows, cols)
    c_end = cols if closed_cols else cols - 1
    i, j = np.meshgrid(np.arange(rows - 1), np.arange(c_end), indexing="ij")
    i, j = i.ravel(), j.ravel()
    a = idx[i, j]
    b = idx[i + 1, j]
    c = idx[i + 1, (j + 1) % cols]
    d = idx[i, (j + 1) % cols]
    flip = (i + j) % 2 == 1
    t1 = np.where(flip[:, None], np.stack([a, b, d], 1), np.stack([a, b, c], 1))
    t2 = np.where(flip[:, None], np.stack([b, c, d], 1), np.stack([a, c, d], 1))
    return np.concatenate([t1, t2]).astype(np.int32)


def square_sheet(
    resolution: int, side_m: float, height_m: float
) -> tuple[NDArray[np.float64], NDArray[np.int32]]:
    """A horizontal resolution × resolution sheet of side_m metres centred above the origin."""
    s = np.linspace(-side_m / 2, side_m / 2, resolution)
    x, z = np.meshgrid(s, s, indexing="ij")
    v = np.stack([x.ravel(), np.full(x.size, height_m), z.ravel()], axis=1)
    return v, grid_faces(resolution, resolution)


@dataclass(frozen=True)
class SkirtPattern:
    """A flared skirt: pattern (rest) coordinates, 3D start positions, seam and waistband."""

    rest_positions_m: NDArray[np.float64]  # (N, 3) flat panel, z = 0
    positions_m: NDArray[np.float64]  # (N, 3) rolled into a cone around the body
    faces: NDArray[np.int32]
    seams: NDArray[np.int32]  # (S, 2) first column stitched to last column
    waistband: NDArray[np.int64]  # vertex indices of the top row
    hem: NDArray[np.int64]  # vertex indices of the bottom row
    rows: int
    cols: int


def torso_radius_m(
    body_vertices_m: NDArray[np.floating],
    height_m: float,
    half_width_m: float = 0.26,
    slab_m: float = 0.01,
) -> tuple[float, float, float]:
    """Centre (x, z) and largest radius of the trunk's cross-section at a height (arms cut off)."""
    v = np.asarray(body_vertices_m)
    s = v[(np.abs(v[:, 1] - height_m) < slab_m) & (np.abs(v[:, 0]) < half_width_m)]
    if len(s) < 8:
        raise SpatialTwinError(
            "bad_body_mesh", "body has no trunk at that height", {"height_m": height_m}
        )
    cx, cz = s[:, 0].mean(), s[:, 2].mean()
    r = float(np.max(np.hypot(s[:, 0] - cx, s[:, 2] - cz)))
    return float(cx), float(cz), r


def flared_skirt(
    body_vertices_m: NDArray[np.floating],
    target_vertices: int,
    waist_height_m: float = 1.08,
    length_m: float = 0.55,
    flare_deg: float = 14.0,
    ease_m: float = 0.012,
) -> SkirtPattern:
    """A one-panel A-line skirt hung around the body's waist, about `target_vertices` vertices.

    The panel is an annular sector (rest shape); rolled up it is a cone of half-angle
    `flare_deg` whose top circle clears the trunk at `waist_height_m` by `ease_m`. The cone is
    checked to clear the trunk all the way down so the skirt starts outside the body.
    """
    if target_vertices < 64:
        raise SpatialTwinError(
            "bad_skirt", "a skirt needs at least 64 vertices", {"target_vertices": target_vertices}
        )
    cx, cz, r_body = torso_radius_m(body_vertices_m, waist_height_m)
    r_top = r_body + ease_m
    sin_f = np.sin(np.radians(flare_deg))
    theta = 2 * np.pi * sin_f  # sector angle of the flat panel
    rho_top = r_top / sin_f
    rho_bot = rho_top + length_m
    # rows × cols with near-square cells at mid-length
    mid_circ = theta * 0.5 * (rho_top + rho_bot)
    cols = max(8, round(np.sqrt(target_vertices * mid_circ / length_m)))
    rows = max(4, round(target_vertices / cols))
    rho = np.linspace(rho_top, rho_bot, rows)
    phi = np.linspace(0.0, theta, cols)
    R, P = np.meshgrid(rho, phi, indexing="ij")
    rest = np.stack(
        [R.ravel() * np.cos(P.ravel()), R.ravel() * np.sin(P.ravel()), np.zeros(R.size)], axis=1
    )
    # isometric embedding as a cone: slant distance rho → radius rho·sinf, drop rho·cosf
    radius = R * sin_f
    ang = P / sin_f  # goes once around
    y = waist_height_m - (R - rho_top) * np.cos(np.radians(flare_deg))
    pos = np.stack(
        [
            cx + radius.ravel() * np.sin(ang.ravel()),
            y.ravel(),
            cz + radius.ravel() * np.cos(ang.ravel()),
        ],
        axis=1,
    )
    for row in range(0, rows, max(1, rows // 12)):
        yy = float(y[row, 0])
        try:
            _, _, rb = torso_radius_m(body_vertices_m, yy)
        except SpatialTwinError:
            continue
        if radius[row, 0] <= rb:
            raise SpatialTwinError(
                "bad_skirt",
                "skirt cone would start inside the body",
                {"height_m": yy, "skirt_radius_m": float(radius[row, 0]), "body_radius_m": rb},
            )
    faces = grid_faces(rows, cols)
    idx = np.arange(rows * cols).reshape(rows, cols)
    seams = np.stack([idx[:, 0], idx[:, -1]], axis=1).astype(np.int32)
    return SkirtPattern(
        rest, pos, faces, seams, idx[0].astype(np.int64), idx[-1].astype(np.int64), rows, cols
    )


# --- a moving body for the live solver: real motion on the mean body --------------------------
#
# The cloth tests and bench need posed body vertices every frame. Until a rigged twin is at
# hand, the GarmentCode mean body is split into trunk, legs and arms with smooth blend weights
# around estimated joint centres, and linear-blend skinned from real motion: the CMU walk (BVH,
# metres) drives the root and the legs, the MediaPipe squat landmarks drive the upper arms.

_HIP_JOINTS_M = np.array([[0.09, 0.88, 0.0], [-0.09, 0.88, 0.0]])  # left (+x), right
_SHOULDER_JOINTS_M = np.array([[0.19, 1.41, -0.01], [-0.19, 1.41, -0.01]])


def _smoothstep(t: NDArray[np.float64]) -> NDArray[np.float64]:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _swing(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Smallest rotation matrix turning direction a onto direction b."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if c < -0.999999:
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def read_bvh_joint_positions(
    path: str, joints: tuple[str, ...]
) -> tuple[dict[str, NDArray[np.float64]], NDArray[np.float64], float]:
    """World positions (F, 3) of named BVH joints, root rotations (F, 3, 3), frame time (s)."""
    from scipy.spatial.transform import Rotation

    with open(path, encoding="ascii") as fh:
        lines = fh.read().split("\n")
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[list[str]] = []
    stack: list[int] = []
    i = 0
    while not lines[i].strip().startswith("MOTION"):
        tok = lines[i].split()
        if tok and tok[0] in ("ROOT", "JOINT"):
            names.append(tok[1])
            parents.append(stack[-1] if stack else -1)
            channels.append([])
            offsets.append([0.0, 0.0, 0.0])
        elif tok and tok[0] == "End":
            names.append("_end")
            parents.append(stack[-1])
            channels.append([])
            offsets.append([0.0, 0.0, 0.0])
        elif tok and tok[0] == "{":
            stack.append(len(names) - 1)
        elif tok and tok[0] == "}":
            stack.pop()
        elif tok and tok[0] == "OFFSET":
            offsets[stack[-1]] = [float(t) for t in tok[1:4]]
        elif tok and tok[0] == "CHANNELS":
            channels[stack[-1]] = tok[2:]
        i += 1
    frame_time = float(lines[i + 2].split()[-1])
    data = np.array([[float(t) for t in ln.split()] for ln in lines[i + 3 :] if ln.strip()])
    nf = len(data)
    world_r = np.zeros((len(names), nf, 3, 3))
    world_p = np.zeros((len(names), nf, 3))
    col = 0
    for j, ch in enumerate(channels):
        pos = np.zeros((nf, 3))
        rot = np.repeat(np.eye(3)[None], nf, axis=0)
        if ch:
            block = data[:, col : col + len(ch)]
            col += len(ch)
            rot_axes = [c[0] for c in ch if c.endswith("rotation")]
            rot_cols = [k for k, c in enumerate(ch) if c.endswith("rotation")]
            for k, c in enumerate(ch):
                if c.endswith("position"):
                    pos[:, "XYZ".index(c[0])] = block[:, k]
            rot = Rotation.from_euler(
                "".join(rot_axes), block[:, rot_cols], degrees=True
            ).as_matrix()
        local_p = np.asarray(offsets[j]) + pos
        if parents[j] < 0:
            world_r[j], world_p[j] = rot, local_p
        else:
            pr, pp = world_r[parents[j]], world_p[parents[j]]
            world_p[j] = pp + np.einsum("fij,fj->fi", pr, local_p)
            world_r[j] = pr @ rot
    out = {n: world_p[names.index(n)] for n in joints}
    return out, world_r[0], frame_time


def _resample(track: NDArray[np.float64], src_dt: float, dst_dt: float) -> NDArray[np.float64]:
    t_src = np.arange(len(track)) * src_dt
    t_dst = np.arange(0.0, t_src[-1], dst_dt)
    flat = track.reshape(len(track), -1)
    out = np.stack([np.interp(t_dst, t_src, flat[:, k]) for k in range(flat.shape[1])], axis=1)
    return out.reshape((len(t_dst), *track.shape[1:]))


@dataclass
class MotionDrivenBody:
    """The mean body skinned per frame from real motion; `vertices(frame)` loops forever.

    The motion is played forwards then backwards (ping-pong) so a 10,000-frame run has no
    jumps; the MediaPipe arm track is played `arm_speedup` times faster than recorded to give
    fast arm raises (the squat's arms swing up to shoulder height and beyond).
    """

    rest_vertices_m: NDArray[np.float64]
    weights: NDArray[np.float64]  # (N, 5): trunk, left leg, right leg, left arm, right arm
    root_translation_m: NDArray[np.float64]  # (F, 3)
    root_rotation: NDArray[np.float64]  # (F, 3, 3)
    leg_swing: NDArray[np.float64]  # (F, 2, 3, 3)
    arm_swing: NDArray[np.float64]  # (G, 2, 3, 3)

    @classmethod
    def from_motion_files(
        cls,
        body_vertices_m: NDArray[np.floating],
        bvh_path: str,
        landmarks_path: str,
        fps: float = 30.0,
        arm_speedup: float = 1.5,
    ) -> MotionDrivenBody:
        import json

        v = np.asarray(body_vertices_m, dtype=np.float64)
        side = np.where(v[:, 0] >= 0, 0, 1)
        w = np.zeros((len(v), 5))
        leg = _smoothstep((0.90 - v[:, 1]) / 0.08)
        arm = _smoothstep((np.abs(v[:, 0]) - 0.19) / 0.05) * (v[:, 1] > 0.75)
        w[np.arange(len(v)), 1 + side] = leg * (1 - arm)
        w[np.arange(len(v)), 3 + side] = arm
        w[:, 0] = 1.0 - w[:, 1:].sum(axis=1)

        pos, root_r, frame_time = read_bvh_joint_positions(
            bvh_path, ("Hips", "LeftHip", "LeftKnee", "RightHip", "RightKnee")
        )
        step = max(1, round(1.0 / (fps * frame_time)))
        sl = slice(0, None, step)
        hips = pos["Hips"][sl]
        rr = root_r[sl]
        # root motion relative to the first frame, yaw-only rotation (the body stays upright)
        yaw = np.arctan2(rr[:, 0, 2], rr[:, 2, 2])
        yaw -= yaw[0]
        c, s = np.cos(yaw), np.sin(yaw)
        root_rot = np.zeros((len(yaw), 3, 3))
        root_rot[:, 0, 0], root_rot[:, 0, 2], root_rot[:, 1, 1] = c, s, 1.0
        root_rot[:, 2, 0], root_rot[:, 2, 2] = -s, c
        trans = hips - hips[0]
        trans[:, 1] = hips[:, 1] - hips[0, 1]
        legs = np.zeros((len(yaw), 2, 3, 3))
        for k, (hip, knee) in enumerate((("LeftHip", "LeftKnee"), ("RightHip", "RightKnee"))):
            d = pos[knee][sl] - pos[hip][sl]
            rest_d = d[0]
            for f in range(len(d)):
                # leg direction in the root's (yaw-removed) frame relative to the first frame
                legs[f, k] = _swing(root_rot[f].T @ rest_d, root_rot[f].T @ d[f])
        with open(landmarks_path, encoding="ascii") as fh:
            lm = np.asarray(json.load(fh), dtype=np.float64)
        lm[..., 1] *= -1.0  # MediaPipe world y points down
        lm[..., 2] *= -1.0  # and z away from the camera; the body faces +z
        lm = _resample(lm, 1.0 / (5.0 * arm_speedup), 1.0 / fps)
        arms = np.zeros((len(lm), 2, 3, 3))
        # MediaPipe 11/13 = left shoulder/elbow (on the image's right: x < 0 in world), 12/14
        for k, (sh, el) in enumerate(((11, 13), (12, 14))):
            d = lm[:, el] - lm[:, sh]
            d[:, 0] *= -1.0  # mirror the camera's x so the subject's left is +x
            rest_d = d[0]
            for f in range(len(d)):
                arms[f, k] = _swing(rest_d, d[f])
        return cls(v, w, trans, root_rot, legs, arms)

    def vertices(self, frame: int) -> NDArray[np.float64]:
        """Posed body vertices (N, 3) in metres at a frame index (any non-negative int)."""

        def pingpong(f: int, n: int) -> int:
            period = 2 * (n - 1)
            f = f % period
            return f if f < n else period - f

        fr = pingpong(frame, len(self.root_translation_m))
        fa = pingpong(frame, len(self.arm_swing))
        v = self.rest_vertices_m
        posed = self.weights[:, 0:1] * v
        for k in range(2):
            r = self.leg_swing[fr, k]
            j = _HIP_JOINTS_M[k]
            posed += self.weights[:, 1 + k : 2 + k] * ((v - j) @ r.T + j)
            r = self.arm_swing[fa, k]
            j = _SHOULDER_JOINTS_M[k]
            posed += self.weights[:, 3 + k : 4 + k] * ((v - j) @ r.T + j)
        centre = _HIP_JOINTS_M.mean(axis=0)
        return (posed - centre) @ self.root_rotation[fr].T + centre + self.root_translation_m[fr]
