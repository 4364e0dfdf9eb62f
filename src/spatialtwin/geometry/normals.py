"""Face and vertex normals of triangle meshes (counter-clockwise faces point outwards)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

# Below this length (m² for vertices in metres: twice a triangle's area) a normal has no
# direction; it becomes the zero vector, or the caller's fallback.
_DEGENERATE = 1e-20


def _cross(vertices: NDArray[np.float64], faces: NDArray[np.int64]) -> NDArray[np.float64]:
    tri = vertices[faces]
    return np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 × area


def face_normals(vertices: ArrayLike, faces: ArrayLike) -> NDArray[np.float64]:
    """Unit normal (F, 3) of every triangle; zero for a triangle without area."""
    n = _cross(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64))
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), _DEGENERATE)


def vertex_normals(
    vertices: ArrayLike, faces: ArrayLike, *, fallback: ArrayLike | None = None
) -> NDArray[np.float64]:
    """Area-weighted unit vertex normals (N, 3).

    Each triangle adds its cross product (twice its area along its normal) to its three
    corners, so large triangles count more than slivers, then every sum is normalised. A
    vertex in no triangle, or whose triangles cancel, gets the zero vector, or `fallback`
    (e.g. +Y) when the caller needs a direction everywhere.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    fn = _cross(v, f)
    # Corner 0 of every face, then corner 1, then corner 2: the same order of additions as
    # np.add.at per corner, at a fraction of its cost.
    corners = f.T.reshape(-1)
    n = np.empty_like(v)
    for axis in range(3):
        n[:, axis] = np.bincount(corners, np.tile(fn[:, axis], 3), minlength=len(v))
    length = np.linalg.norm(n, axis=1, keepdims=True)
    ok = length > _DEGENERATE
    out = np.divide(n, length, out=np.zeros_like(n), where=ok)
    if fallback is not None:
        out[~ok[:, 0]] = np.asarray(fallback, dtype=np.float64)
    return out
