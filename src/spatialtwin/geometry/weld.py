"""Welding: which vertices sit at the same place (UV seams and exporters split them).

A weld map gives every vertex its representative, the first vertex (lowest index) at the same
position once rounded to `decimals` places of the file's unit (6 → 1 µm for metres).
`welded` turns a map into one closed surface: representatives only, faces renumbered.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def coincident_groups(
    positions: ArrayLike, decimals: int = 6
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(first, group): each group's first vertex and each vertex's group.

    Groups are numbered in the order of their rounded positions (as `np.unique` sorts
    them), so `positions[first]` with faces `group[faces]` is the welded mesh.
    """
    key = np.round(np.asarray(positions, dtype=np.float64), decimals)
    _, first, group = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return first.astype(np.int64), group.reshape(-1).astype(np.int64)


def weld_map(positions: ArrayLike, decimals: int = 6) -> NDArray[np.int64]:
    """(N,) each vertex's representative: the first vertex at the same rounded position."""
    first, group = coincident_groups(positions, decimals)
    return first[group]


def welded(
    vertices: ArrayLike, faces: ArrayLike, weld: ArrayLike | None
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Vertices and faces with every vertex replaced by its representative in `weld`.

    The welded vertices keep their order of first index; without a map the mesh is returned
    as it is.
    """
    v = np.asarray(vertices)
    f = np.asarray(faces, dtype=np.int64)
    if weld is None:
        return v, f
    keep, inverse = np.unique(np.asarray(weld, dtype=np.int64), return_inverse=True)
    return v[keep], inverse.reshape(-1)[f]
