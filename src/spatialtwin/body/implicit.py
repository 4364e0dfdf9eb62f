"""Signed-distance primitives for building bodies as smooth unions of anatomical parts.

Distances are in metres, negative inside. The primitives are the classic closed-form
approximations (Quilez, "distance functions", 2008–2023): exact enough near the surface, which
is all that marching cubes and skin-weight blending need. Each primitive knows its bounding box
so that a grid is evaluated only where a part can reach.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.interpolate import PchipInterpolator

Array = NDArray[np.float64]


def smooth_min(a: Array, b: Array, k_m: float) -> Array:
    """Polynomial smooth minimum: a union whose seam is rounded over about `k_m` metres."""
    if k_m <= 0:
        return np.minimum(a, b)
    h = np.clip(0.5 + 0.5 * (b - a) / k_m, 0.0, 1.0)
    return b + (a - b) * h - k_m * h * (1.0 - h)


@dataclass(frozen=True)
class RoundCone:
    """A capsule whose radius goes linearly from `r_a` at `a` to `r_b` at `b` (limb segment)."""

    a: Array
    b: Array
    r_a: float
    r_b: float

    def distance(self, p: Array) -> Array:
        ab = self.b - self.a
        length2 = float(ab @ ab)
        t = np.clip(((p - self.a) @ ab) / length2, 0.0, 1.0)
        closest = self.a + t[:, None] * ab
        return np.linalg.norm(p - closest, axis=1) - (self.r_a + (self.r_b - self.r_a) * t)

    def bounds(self) -> tuple[Array, Array]:
        r = max(self.r_a, self.r_b)
        return np.minimum(self.a, self.b) - r, np.maximum(self.a, self.b) + r


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid with semi-axes `radii` along the columns of `axes` (orthonormal 3×3)."""

    centre: Array
    radii: Array
    axes: Array

    def distance(self, p: Array) -> Array:
        q = (p - self.centre) @ self.axes
        k0 = np.linalg.norm(q / self.radii, axis=1)
        k1 = np.linalg.norm(q / (self.radii**2), axis=1)
        return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)

    def bounds(self) -> tuple[Array, Array]:
        extent = np.abs(self.axes) @ self.radii
        return self.centre - extent, self.centre + extent


@dataclass(frozen=True)
class RoundBox:
    """A box with rounded edges (feet): half sizes `half_m`, edge radius `round_m`."""

    centre: Array
    half_m: Array
    round_m: float
    axes: Array

    def distance(self, p: Array) -> Array:
        q = np.abs((p - self.centre) @ self.axes) - (self.half_m - self.round_m)
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
        inside = np.minimum(q.max(axis=1), 0.0)
        return outside + inside - self.round_m

    def bounds(self) -> tuple[Array, Array]:
        extent = np.abs(self.axes) @ self.half_m
        return self.centre - extent, self.centre + extent


@dataclass(frozen=True)
class LoftedTorso:
    """A vertical loft of elliptical cross-sections, closed with rounded caps.

    `levels_m` are heights; `half_width_m`, `half_depth_m` and `centre_z_m` the section's
    semi-axes and forward offset there, interpolated monotonically (PCHIP) so that the profile
    never overshoots between the levels a tailor would measure at.
    """

    levels_m: Array
    half_width_m: Array
    half_depth_m: Array
    centre_z_m: Array
    cap_round_m: float = 0.03

    def __post_init__(self) -> None:
        object.__setattr__(self, "_a", PchipInterpolator(self.levels_m, self.half_width_m))
        object.__setattr__(self, "_b", PchipInterpolator(self.levels_m, self.half_depth_m))
        object.__setattr__(self, "_cz", PchipInterpolator(self.levels_m, self.centre_z_m))

    def distance(self, p: Array) -> Array:
        y0, y1 = float(self.levels_m[0]), float(self.levels_m[-1])
        y = np.clip(p[:, 1], y0, y1)
        a = self._a(y)  # type: ignore[attr-defined]
        b = self._b(y)  # type: ignore[attr-defined]
        cz = self._cz(y)  # type: ignore[attr-defined]
        qx = p[:, 0] / a
        qz = (p[:, 2] - cz) / b
        k0 = np.hypot(qx, qz)
        k1 = np.hypot(qx / a, qz / b)
        d_section = k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)
        d_caps = np.maximum(y0 - p[:, 1], p[:, 1] - y1)
        # Rounded intersection of the infinite loft with the slab between the caps.
        r = self.cap_round_m
        w = np.maximum(np.stack([d_section + r, d_caps + r]), 0.0)
        outside = np.sqrt((w**2).sum(axis=0))
        inside = np.minimum(np.maximum(d_section + r, d_caps + r), 0.0)
        return outside + inside - r

    def bounds(self) -> tuple[Array, Array]:
        a = float(np.max(self.half_width_m))
        b = float(np.max(self.half_depth_m))
        cz = self.centre_z_m
        return (
            np.array([-a, self.levels_m[0], float(cz.min()) - b]),
            np.array([a, self.levels_m[-1], float(cz.max()) + b]),
        )

    def section(self, y_m: float) -> tuple[float, float, float]:
        return (
            float(self._a(y_m)),  # type: ignore[attr-defined]
            float(self._b(y_m)),  # type: ignore[attr-defined]
            float(self._cz(y_m)),  # type: ignore[attr-defined]
        )


Primitive = RoundCone | Ellipsoid | RoundBox | LoftedTorso


@dataclass(frozen=True)
class Part:
    """One anatomical part: its shape, the joint it moves with, and its blend radius."""

    name: str
    shape: Primitive
    joint: str
    blend_m: float = 0.025


def evaluate_on_grid(
    parts: list[Part], origin_m: Array, spacing_m: float, shape: tuple[int, int, int]
) -> Array:
    """Signed distance of the smooth union of `parts` on a regular grid (x, y, z order)."""
    field = np.full(shape, 1.0)
    for part in parts:
        lo, hi = part.shape.bounds()
        pad = part.blend_m + 2 * spacing_m
        i0 = np.maximum(np.floor((lo - pad - origin_m) / spacing_m).astype(int), 0)
        i1 = np.minimum(np.ceil((hi + pad - origin_m) / spacing_m).astype(int) + 1, shape)
        if np.any(i1 <= i0):
            continue
        axes = [origin_m[k] + spacing_m * np.arange(i0[k], i1[k]) for k in range(3)]
        gx, gy, gz = np.meshgrid(*axes, indexing="ij")
        pts = np.stack([gx.ravel(), gy.ravel(), gz.ravel()], axis=1)
        d = part.shape.distance(pts).reshape(gx.shape)
        block = field[i0[0] : i1[0], i0[1] : i1[1], i0[2] : i1[2]]
        field[i0[0] : i1[0], i0[1] : i1[1], i0[2] : i1[2]] = smooth_min(block, d, part.blend_m)
    return field


def evaluate_at_points(parts: list[Part], points_m: Array) -> Array:
    """Signed distance of the smooth union at arbitrary points (N, 3)."""
    d = np.full(len(points_m), 1.0)
    for part in parts:
        d = smooth_min(d, part.shape.distance(points_m), part.blend_m)
    return d


def part_distances(parts: list[Part], points_m: Array) -> Array:
    """(N, P) distance of each point to each part on its own: the basis of skin weights."""
    return np.stack([part.shape.distance(points_m) for part in parts], axis=1)


def project_to_surface(parts: list[Part], points_m: Array, iterations: int = 4) -> Array:
    """Newton steps along the field's gradient that put points back on the zero level set."""
    p = np.array(points_m, dtype=np.float64)
    h = 1e-4
    offsets = np.eye(3) * h
    for _ in range(iterations):
        d = evaluate_at_points(parts, p)
        grad = np.stack(
            [
                (
                    evaluate_at_points(parts, p + offsets[k])
                    - evaluate_at_points(parts, p - offsets[k])
                )
                / (2 * h)
                for k in range(3)
            ],
            axis=1,
        )
        g2 = np.maximum((grad**2).sum(axis=1), 1e-8)
        p -= (d / g2)[:, None] * grad
    return p


def surface_normals(parts: list[Part], points_m: Array) -> Array:
    """Unit outward normals from the field's gradient (smooth, unlike face normals)."""
    h = 1e-4
    offsets = np.eye(3) * h
    grad = np.stack(
        [
            evaluate_at_points(parts, points_m + offsets[k])
            - evaluate_at_points(parts, points_m - offsets[k])
            for k in range(3)
        ],
        axis=1,
    )
    return grad / np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-12)
