"""Garment self-collision: vertices of distant cloth regions kept a minimum distance apart.

Vertex–vertex separation through a spatial hash (Teschner et al. 2003, "Optimized Spatial
Hashing for Collision Detection of Deformable Objects"): a table of 2N buckets indexed by a
hash of the integer cell, rebuilt each call in O(N). Pairs within two edges of each other on the
sewn garment (seams included) are neighbours in the fabric, not collisions, and are skipped;
so are pairs that lie closer than the separation in the garment's rest shape (an outfit's
shirt hem authored lying on its waistband): pushing those apart fights the pins and the body
for ever and keeps the drape from settling. Vertices of separate sewn components (the shirt
and the jeans of one outfit file) are not separated vertex against vertex either: a hem lying
on a waistband one vertex spacing apart pops through and back every frame; such layers stay
as authored.
This keeps folds of a settled drape from passing through each other; it runs once per frame.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numpy.typing import NDArray

from spatialtwin.cloth.model import ClothModel


@nb.njit(cache=True, nogil=True, inline="always")
def _hash(ix: int, iy: int, iz: int, size: int) -> int:
    h = (ix * 92837111) ^ (iy * 689287499) ^ (iz * 283923481)
    return abs(h) % size


@nb.njit(cache=True, nogil=True)
def _in_ring(ring_off, ring_idx, i, j):
    lo = ring_off[i]
    hi = ring_off[i + 1]
    while lo < hi:  # binary search in the sorted ring of i
        mid = (lo + hi) // 2
        if ring_idx[mid] < j:
            lo = mid + 1
        else:
            hi = mid
    return lo < ring_off[i + 1] and ring_idx[lo] == j


@nb.njit(cache=True, nogil=True)
def _separate(x, v, rest, component, inv_mass, ring_off, ring_idx, min_dist):
    n = x.shape[0]
    size = 2 * n + 1
    inv_cell = 1.0 / min_dist
    start = np.zeros(size + 1, dtype=np.int64)
    keys = np.empty(n, dtype=np.int64)
    for i in range(n):
        h = _hash(
            math.floor(x[i, 0] * inv_cell),
            math.floor(x[i, 1] * inv_cell),
            math.floor(x[i, 2] * inv_cell),
            size,
        )
        keys[i] = h
        start[h + 1] += 1
    for k in range(size):
        start[k + 1] += start[k]
    fill = start[:-1].copy()
    items = np.empty(n, dtype=np.int64)
    for i in range(n):
        items[fill[keys[i]]] = i
        fill[keys[i]] += 1
    d2min = min_dist * min_dist
    pushed = 0
    for i in range(n):
        cx = math.floor(x[i, 0] * inv_cell)
        cy = math.floor(x[i, 1] * inv_cell)
        cz = math.floor(x[i, 2] * inv_cell)
        for ax in range(cx - 1, cx + 2):
            for ay in range(cy - 1, cy + 2):
                for az in range(cz - 1, cz + 2):
                    h = _hash(ax, ay, az, size)
                    for q in range(start[h], start[h + 1]):
                        j = items[q]
                        if j <= i:
                            continue
                        dx = x[i, 0] - x[j, 0]
                        dy = x[i, 1] - x[j, 1]
                        dz = x[i, 2] - x[j, 2]
                        d2 = dx * dx + dy * dy + dz * dz
                        if d2 >= d2min or d2 < 1e-24:
                            continue
                        if _in_ring(ring_off, ring_idx, i, j):
                            continue
                        if component[i] != component[j]:
                            continue  # separate garments of one outfit: layered as authored
                        rx = rest[i, 0] - rest[j, 0]
                        ry = rest[i, 1] - rest[j, 1]
                        rz = rest[i, 2] - rest[j, 2]
                        if rx * rx + ry * ry + rz * rz < d2min:
                            continue  # together as authored (a tucked hem): not a collision
                        w = inv_mass[i] + inv_mass[j]
                        if w == 0.0:
                            continue
                        d = math.sqrt(d2)
                        s = (min_dist - d) / (d * w)
                        x[i, 0] += inv_mass[i] * s * dx
                        x[i, 1] += inv_mass[i] * s * dy
                        x[i, 2] += inv_mass[i] * s * dz
                        x[j, 0] -= inv_mass[j] * s * dx
                        x[j, 1] -= inv_mass[j] * s * dy
                        x[j, 2] -= inv_mass[j] * s * dz
                        # Inelastic: the pair stops approaching (a pushed pair that keeps its
                        # velocity comes back next frame, and the cloth never settles).
                        nx, ny, nz = dx / d, dy / d, dz / d
                        vn = (
                            (v[i, 0] - v[j, 0]) * nx
                            + (v[i, 1] - v[j, 1]) * ny
                            + (v[i, 2] - v[j, 2]) * nz
                        )
                        if vn < 0.0:
                            k = vn / w
                            v[i, 0] -= inv_mass[i] * k * nx
                            v[i, 1] -= inv_mass[i] * k * ny
                            v[i, 2] -= inv_mass[i] * k * nz
                            v[j, 0] += inv_mass[j] * k * nx
                            v[j, 1] += inv_mass[j] * k * ny
                            v[j, 2] += inv_mass[j] * k * nz
                        pushed += 1
    return pushed


def separate_self_contacts(
    model: ClothModel,
    positions_m: NDArray[np.float64],
    min_distance_m: float,
    velocities_m_s: NDArray[np.float64] | None = None,
) -> int:
    """Push apart (in place) non-neighbouring vertex pairs closer than min_distance_m, and
    stop them approaching (`velocities_m_s`, changed in place when given).

    Returns how many pairs were separated.
    """
    return int(
        _separate(
            positions_m,
            np.zeros_like(positions_m) if velocities_m_s is None else velocities_m_s,
            model.rest_positions_m,
            model.vertex_component
            if len(model.vertex_component) == len(positions_m)
            else np.zeros(len(positions_m), dtype=np.int32),
            model.inv_mass,
            model.ring_offsets,
            model.ring_indices,
            float(min_distance_m),
        )
    )
