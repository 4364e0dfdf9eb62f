"""Mesh topology over welded positions: UV seams split vertices but are not borders."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def weld_map(positions: NDArray[np.float64], decimals: int = 7) -> NDArray[np.int64]:
    """Each vertex's representative: the first vertex at the same position (to 0.1 µm)."""
    _, first, inverse = np.unique(
        np.round(positions, decimals), axis=0, return_index=True, return_inverse=True
    )
    return first[inverse.reshape(-1)].astype(np.int64)


def border_vertices(positions: NDArray[np.float64], faces: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Vertices on an open edge of the welded surface: hems, necklines, cuffs, cut lines."""
    welded = weld_map(positions)[faces]
    edges = np.sort(
        np.concatenate([welded[:, [0, 1]], welded[:, [1, 2]], welded[:, [2, 0]]]), axis=1
    )
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    open_welded = np.zeros(len(positions), dtype=bool)
    open_welded[uniq[counts == 1].ravel()] = True
    return open_welded[weld_map(positions)]


def face_normals(positions: NDArray[np.float64], faces: NDArray[np.int64]) -> NDArray[np.float64]:
    tri = positions[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)
