"""Keep a simplified garment outside the simplified body it is shown with.

Simplification keeps garment vertices where they were, but a coarse body triangle bridging a
concave spot bulges outward, and a coarse garment triangle cuts inward across a convex one;
either way skin pokes through cloth. Points on each garment level (vertices, edge midpoints,
face centroids) closer than `min_clearance_m` to the level's body, measured along the body's
normal, push their garment vertices out along that normal until the cloth clears the skin.

Pushing one vertex tilts its neighbouring faces, which can sink another probe, so the push is
repeated until no probe is inside (at most `max_iterations` rounds; a coarse level needs ~8).
The depth still inside after the last round is returned, so a caller can report it rather
than trust that the loop converged.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from spatialtwin.geometry import face_normals, weld_map
from spatialtwin.lod.distance import SurfaceDistance
from spatialtwin.lod.topology import WELD_DECIMALS

_PROBES = np.array(
    [
        [1, 0, 0], [0, 1, 0], [0, 0, 1],
        [0.5, 0.5, 0], [0, 0.5, 0.5], [0.5, 0, 0.5],
        [1 / 3, 1 / 3, 1 / 3],
    ]
)  # fmt: skip
NEAR_M = 0.03


def signed_clearance(
    points: NDArray[np.float64], body: SurfaceDistance, body_normals: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """(signed distance along the body normal (m), that normal, whether it is a real contact)."""
    dist, near, face = body.closest(points)
    n = body_normals[face]
    sd = np.einsum("ij,ij->i", points - near, n)
    contact = (dist < NEAR_M) & ((np.abs(sd) >= 0.7 * dist) | (dist < 1e-4))
    return sd, n, contact


def garment_probes(positions: NDArray[np.float64], faces: NDArray[np.int64]) -> NDArray[np.float64]:
    return np.einsum("pk,fkd->fpd", _PROBES, positions[faces]).reshape(-1, 3)


def push_out(
    garment_pos: NDArray[np.float64],
    garment_faces: NDArray[np.int64],
    body_pos: NDArray[np.float64],
    body_faces: NDArray[np.int64],
    min_clearance_m: float,
    max_iterations: int = 32,
) -> tuple[NDArray[np.float64], int, float]:
    """Garment positions moved out of the body: (positions, vertices moved, deepest probe
    still inside the body after the last round in metres, 0 when every probe clears it)."""
    body = SurfaceDistance(body_pos, body_faces)
    normals = face_normals(body_pos, body_faces)
    pos = garment_pos.copy()
    welded = weld_map(garment_pos, WELD_DECIMALS)
    moved = np.zeros(len(pos), dtype=bool)
    residual_m = 0.0
    for round_index in range(max_iterations + 1):
        probes = garment_probes(pos, garment_faces)
        sd, n, contact = signed_clearance(probes, body, normals)
        need = contact & (sd < min_clearance_m)
        inside = contact & (sd < 0)
        residual_m = float(-sd[inside].min()) if inside.any() else 0.0
        if not need.any() or round_index == max_iterations:
            break
        depth = np.where(need, min_clearance_m - sd, 0.0).reshape(len(garment_faces), -1)
        dirs = (n.reshape(len(garment_faces), -1, 3)) * depth[..., None]
        amount = np.zeros(len(pos))
        direction = np.zeros_like(pos)
        for k in range(len(_PROBES)):
            for c in np.flatnonzero(_PROBES[k] > 0):
                np.maximum.at(amount, garment_faces[:, c], depth[:, k])
                np.add.at(direction, garment_faces[:, c], dirs[:, k])
        # UV-seam copies of a vertex move together, or the seam would open into a crack.
        group_amount = np.zeros(len(pos))
        np.maximum.at(group_amount, welded, amount)
        group_dir = np.zeros_like(pos)
        np.add.at(group_dir, welded, direction)
        amount, direction = group_amount[welded], group_dir[welded]
        hit = amount > 0
        unit = direction[hit] / np.maximum(
            np.linalg.norm(direction[hit], axis=1, keepdims=True), 1e-12
        )
        pos[hit] += unit * amount[hit, None] * 1.05
        moved |= hit
    return pos, int(moved.sum()), residual_m
