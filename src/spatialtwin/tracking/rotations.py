"""Small batched rotation helpers over (..., 3) vectors and (..., 3, 3) matrices.

Retargeting runs every camera frame on a handful of bones, where a scipy `Rotation` object per
bone costs more than the maths; these are plain NumPy over the last axes.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

EPS = 1e-9


def cross(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Cross product over the last axis (np.cross spends most of its time moving axes)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = np.empty(a.shape if a.shape == b.shape else np.broadcast_shapes(a.shape, b.shape))
    out[..., 0] = a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1]
    out[..., 1] = a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2]
    out[..., 2] = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    return out


def normalize(v: NDArray[np.float64]) -> NDArray[np.float64]:
    n = np.sqrt(np.sum(v * v, axis=-1, keepdims=True))
    return v / np.maximum(n, EPS)


def matrix_to_quat(m: NDArray[np.float64]) -> NDArray[np.float64]:
    """Unit quaternions [x, y, z, w] with w >= 0 of rotation matrices (..., 3, 3).

    Each component's magnitude comes from the diagonal, its sign from the off-diagonal
    differences (relative to w >= 0); the largest component fixes the others' signs where
    w is near zero (a half turn).
    """
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    w = np.sqrt(np.maximum(0.0, 1.0 + m00 + m11 + m22)) / 2
    x = np.sqrt(np.maximum(0.0, 1.0 + m00 - m11 - m22)) / 2
    y = np.sqrt(np.maximum(0.0, 1.0 - m00 + m11 - m22)) / 2
    z = np.sqrt(np.maximum(0.0, 1.0 - m00 - m11 + m22)) / 2
    x = np.copysign(x, m[..., 2, 1] - m[..., 1, 2])
    y = np.copysign(y, m[..., 0, 2] - m[..., 2, 0])
    z = np.copysign(z, m[..., 1, 0] - m[..., 0, 1])
    q = np.stack([x, y, z, w], axis=-1)
    half_turn = w < 1e-3
    if np.any(half_turn):
        from scipy.spatial.transform import Rotation

        exact = Rotation.from_matrix(m[half_turn]).as_quat()
        q[half_turn] = exact * np.where(exact[:, 3:4] < 0, -1.0, 1.0)
    return q / np.sqrt(np.sum(q * q, axis=-1, keepdims=True))


def axis_angle_matrix(axis: NDArray[np.float64], angle_rad: NDArray[np.float64]) -> NDArray:
    """Rotation matrices about unit `axis` (..., 3) by `angle_rad` (...) (Rodrigues)."""
    axis = np.asarray(axis, dtype=np.float64)
    angle = np.asarray(angle_rad, dtype=np.float64)[..., None, None]
    k = np.zeros((*axis.shape, 3))
    k[..., 0, 1], k[..., 0, 2] = -axis[..., 2], axis[..., 1]
    k[..., 1, 0], k[..., 1, 2] = axis[..., 2], -axis[..., 0]
    k[..., 2, 0], k[..., 2, 1] = -axis[..., 1], axis[..., 0]
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def signed_angle(a: NDArray, b: NDArray, axis: NDArray) -> NDArray[np.float64]:
    """Angle (radians) from a to b about `axis`, of their projections on the plane ⟂ axis."""
    c = cross(a, b)
    return np.arctan2(np.sum(c * axis, axis=-1), np.sum(a * b, axis=-1))


def orthogonal_to(v: NDArray[np.float64]) -> NDArray[np.float64]:
    """Some unit vector perpendicular to each unit `v`."""
    pick = np.where(np.abs(v[..., :1]) < 0.9, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    return normalize(cross(v, pick))


def swing_matrix(a: NDArray, b: NDArray, max_angle_rad: float | NDArray = np.pi) -> NDArray:
    """Shortest-arc rotation taking unit a to unit b, its angle capped at `max_angle_rad`."""
    c = cross(a, b)
    sin = np.linalg.norm(c, axis=-1)
    cos = np.sum(a * b, axis=-1)
    angle = np.minimum(np.arctan2(sin, cos), max_angle_rad)
    axis = c / np.maximum(sin, EPS)[..., None]
    degenerate = sin <= 1e-8
    if np.any(degenerate):
        axis = np.where(degenerate[..., None], orthogonal_to(np.asarray(a, dtype=np.float64)), axis)
    return axis_angle_matrix(axis, angle)


def frame_from_x_and_y(x: NDArray, y: NDArray) -> NDArray[np.float64]:
    """Orthonormal frame (columns x̂, ŷ, ẑ) with x̂ along `x` and ŷ in the plane of x, y."""
    xh = normalize(x)
    yh = normalize(y - np.sum(y * xh, axis=-1, keepdims=True) * xh)
    return np.stack([xh, yh, cross(xh, yh)], axis=-1)


def frame_from_x_and_z(x: NDArray, z: NDArray) -> NDArray[np.float64]:
    """Orthonormal frame (columns x̂, ŷ, ẑ) with x̂ along `x` and ẑ in the plane of x, z."""
    xh = normalize(x)
    zh = normalize(z - np.sum(z * xh, axis=-1, keepdims=True) * xh)
    return np.stack([xh, cross(zh, xh), zh], axis=-1)


def rotation_angle(m: NDArray[np.float64]) -> NDArray[np.float64]:
    """Rotation angle (radians, 0..π) of rotation matrices."""
    tr = np.trace(m, axis1=-2, axis2=-1)
    return np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0))


def matrix_to_rotvec(m: NDArray[np.float64]) -> NDArray[np.float64]:
    """Rotation vector (axis × angle, radians) of one rotation matrix."""
    angle = float(rotation_angle(m))
    skew = np.array([m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]])
    if angle < 1e-7:
        return skew / 2.0
    if np.pi - angle < 1e-4:
        # Near a half turn the skew part vanishes; the axis is the dominant column of m + I.
        s = m + np.eye(3)
        col = s[:, int(np.argmax(np.diag(s)))]
        return normalize(col) * angle
    return skew / (2.0 * np.sin(angle)) * angle


def rotvec_to_matrix(r: NDArray[np.float64]) -> NDArray[np.float64]:
    angle = float(np.linalg.norm(r))
    if angle < 1e-12:
        return np.eye(3)
    return axis_angle_matrix(r / angle, angle)


def fractional_rotation(m: NDArray[np.float64], fraction: float, max_angle_rad: float = np.pi):
    """The rotation `m` scaled to `fraction` of its angle, after capping its angle."""
    r = matrix_to_rotvec(m)
    angle = float(np.linalg.norm(r))
    if angle > max_angle_rad:
        r = r * (max_angle_rad / angle)
    return rotvec_to_matrix(r * fraction)
