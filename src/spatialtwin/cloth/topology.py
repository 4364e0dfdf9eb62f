"""Mesh topology the cloth constraints are built from: edges, hinges, colours, tethers.

All functions take plain arrays (vertices in metres, int faces) and return arrays; they run
once per garment when a `ClothModel` is built, never per frame.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.sparse.csgraph import dijkstra


def hinge_stencils(
    faces: NDArray[np.integer], weld: NDArray[np.integer] | None = None
) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    """Interior edges as (B, 4) stencils [a, b, c, d]: shared edge a–b, opposite vertices c, d.

    `weld` maps each vertex to the representative of its seam group, so hinges also span
    seams (a sewn seam bends like the cloth around it instead of folding freely). Returns the
    stencils in welded indices and (B, 6) original corners [a₁, b₁, c, a₂, b₂, d] of the two
    triangles, whose rest shapes give the bending weights. Only edges with exactly two incident
    triangles bend; boundary and non-manifold edges don't.
    """
    f = np.asarray(faces, dtype=np.int64)
    rep = np.arange(f.max() + 1) if weld is None else np.asarray(weld, dtype=np.int64)
    half = np.concatenate([f[:, [0, 1, 2]], f[:, [1, 2, 0]], f[:, [2, 0, 1]]])
    wk = rep[half[:, :2]]
    swap = wk[:, 0] > wk[:, 1]
    key = np.sort(wk, axis=1)
    orig_ab = np.where(swap[:, None], half[:, [1, 0]], half[:, :2])
    order = np.lexsort((key[:, 1], key[:, 0]))
    key, half, orig_ab = key[order], half[order], orig_ab[order]
    same = np.all(key[1:] == key[:-1], axis=1)
    run_start = np.concatenate([[True], ~same])
    run_id = np.cumsum(run_start) - 1
    counts = np.bincount(run_id)
    first = np.flatnonzero(same)
    first = first[counts[run_id[first]] == 2]
    a, b = key[first, 0], key[first, 1]
    c = rep[half[first, 2]]
    d = rep[half[first + 1, 2]]
    stencils = np.stack([a, b, c, d], axis=1).astype(np.int32)
    corners = np.stack(
        [
            orig_ab[first, 0],
            orig_ab[first, 1],
            half[first, 2],
            orig_ab[first + 1, 0],
            orig_ab[first + 1, 1],
            half[first + 1, 2],
        ],
        axis=1,
    ).astype(np.int32)
    return stencils, corners


def _cot(u: NDArray[np.float64], v: NDArray[np.float64]) -> NDArray[np.float64]:
    cross = np.linalg.norm(np.cross(u, v), axis=1)
    return np.einsum("ij,ij->i", u, v) / np.maximum(cross, 1e-20)


def isometric_bending_weights(
    rest_m: NDArray[np.float64], corners: NDArray[np.int32]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Cotangent weights K (B, 4) and summed triangle areas (B,) of each hinge.

    The quadratic bending energy of Bergou et al. (2006) / Wardetzky et al. (2007) for a flat
    rest state is E ∝ B / (A₁ + A₂) · |Σₖ Kₖ xₖ|², so Σₖ Kₖ xₖ is a *linear* vector constraint
    (zero when the hinge is flat), solved exactly by one XPBD projection with no square roots.
    Each triangle's angles come from its own rest corners, so hinges across seams work.
    """
    p = rest_m[corners]  # (B, 6, 3)
    a1, b1, c = p[:, 0], p[:, 1], p[:, 2]
    a2, b2, d = p[:, 3], p[:, 4], p[:, 5]
    cot_a_c = _cot(b1 - a1, c - a1)  # angle at a in triangle (a, b, c)
    cot_b_c = _cot(a1 - b1, c - b1)
    cot_a_d = _cot(b2 - a2, d - a2)
    cot_b_d = _cot(a2 - b2, d - b2)
    k = np.stack(
        [cot_b_c + cot_b_d, cot_a_c + cot_a_d, -(cot_a_c + cot_b_c), -(cot_a_d + cot_b_d)], axis=1
    )
    area = 0.5 * (
        np.linalg.norm(np.cross(b1 - a1, c - a1), axis=1)
        + np.linalg.norm(np.cross(b2 - a2, d - a2), axis=1)
    )
    return k, area


@nb.njit(cache=True, nogil=True)
def _greedy_colours(constraints: NDArray[np.int32], n_vertices: int) -> NDArray[np.int32]:
    arity = constraints.shape[1]
    used = np.zeros(n_vertices, dtype=np.int64)  # bitmask of colours touching each vertex
    colour = np.empty(constraints.shape[0], dtype=np.int32)
    overflow = 64
    for c in range(constraints.shape[0]):
        mask = np.int64(0)
        for k in range(arity):
            mask |= used[constraints[c, k]]
        col = 0
        while col < 63 and (mask >> col) & 1:
            col += 1
        if (mask >> col) & 1:
            colour[c] = overflow  # more than 63 colours: rare; bucket kept correct below
            overflow += 1
            continue
        colour[c] = col
        bit = np.int64(1) << col
        for k in range(arity):
            used[constraints[c, k]] |= bit
    return colour


def colour_order(
    constraints: NDArray[np.int32], n_vertices: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """A Gauss–Seidel order: constraints grouped so no two in a group share a vertex.

    Returns (permutation, group start offsets). Within a colour no constraint touches another's
    vertices, so a colour can be swept in any order or in parallel with the same result; the
    sweep order is colour by colour, vertex-sorted inside a colour for cache locality.
    """
    constraints = np.ascontiguousarray(constraints, dtype=np.int32)
    if len(constraints) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
    colour = _greedy_colours(constraints, n_vertices)
    perm = np.lexsort((constraints[:, 0], colour))
    counts = np.bincount(colour)
    starts = np.concatenate([[0], np.cumsum(counts[counts > 0])])
    return perm.astype(np.int64), starts.astype(np.int64)


def two_ring_csr(
    edges: NDArray[np.int32], n_vertices: int
) -> tuple[NDArray[np.int64], NDArray[np.int32]]:
    """CSR (offsets, sorted indices) of every vertex's neighbours up to two edges away.

    Seam stitches count as edges, so the rings run across seams like the sewn garment does.
    """
    a = sp.coo_matrix(
        (np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n_vertices, n_vertices)
    ).tocsr()
    a = a + a.T
    r = (a + a @ a).tocsr()
    r.sort_indices()
    return r.indptr.astype(np.int64), r.indices.astype(np.int32)


def pin_attachments(
    edges: NDArray[np.int32],
    edge_length_m: NDArray[np.float64],
    n_vertices: int,
    pinned: NDArray[np.int64],
) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
    """Long-range attachments (Kim, Chentanez, Müller 2012): every free vertex tethered to its
    nearest pin by the shortest edge path (an upper bound of the rest geodesic), so a garment
    hanging from a waistband cannot sag further than its cut however few iterations run."""
    if len(pinned) == 0:
        return np.zeros((0, 2), dtype=np.int32), np.zeros(0)
    w = np.maximum(np.asarray(edge_length_m, dtype=np.float64), 1e-9)
    graph = sp.coo_matrix(
        (
            np.concatenate([w, w]),
            (
                np.concatenate([edges[:, 0], edges[:, 1]]),
                np.concatenate([edges[:, 1], edges[:, 0]]),
            ),
        ),
        shape=(n_vertices, n_vertices),
    ).tocsr()
    dist, _, source = dijkstra(graph, indices=pinned, min_only=True, return_predecessors=True)
    free = np.setdiff1d(np.flatnonzero(np.isfinite(dist) & (source >= 0)), pinned)
    pairs = np.stack([source[free], free], axis=1).astype(np.int32)
    return pairs, dist[free]


def long_range_tethers(
    rest_m: NDArray[np.float64],
    edges: NDArray[np.int32],
    edge_length_m: NDArray[np.float64],
    hops: tuple[int, ...] = (3, 9, 27),
    straightness: float = 0.99,
    per_source: int = 3,
    seed: int = 0,
) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
    """Unilateral long-range stretch limits (T, 2) and their maximum lengths (T,) in metres.

    For vertex pairs a few rings apart the shortest edge path on the rest mesh is an upper bound
    of their geodesic rest distance, so |xᵢ − xⱼ| ≤ path length can never resist a stretch-free
    (isometric) deformation — folds, wrinkles and drape stay free — while one Gauss–Seidel
    sweep pulls back stretch that single-edge constraints relay only a ring per sweep. Only
    near-straight paths (Euclidean rest distance ≥ `straightness` × path length) are kept so
    the limit is tight. This generalises the long-range attachments of Kim, Chentanez and
    Müller (2012) from pins to the whole sheet, at a few scales as in a multigrid.
    """
    n = len(rest_m)
    w = np.maximum(np.asarray(edge_length_m, dtype=np.float64), 1e-9)
    graph = sp.coo_matrix(
        (
            np.concatenate([w, w]),
            (
                np.concatenate([edges[:, 0], edges[:, 1]]),
                np.concatenate([edges[:, 1], edges[:, 0]]),
            ),
        ),
        shape=(n, n),
    ).tocsr()
    mean_edge = float(np.mean(edge_length_m[edge_length_m > 0]))
    rng = np.random.default_rng(seed)
    pairs: list[NDArray[np.int64]] = []
    lengths: list[NDArray[np.float64]] = []
    for hop in hops:
        sources = np.flatnonzero(rng.random(n) < 2.0 / hop)
        lo, hi = (hop - 0.5) * mean_edge, (hop + 0.5) * mean_edge
        for chunk in np.array_split(sources, max(1, len(sources) // 200)):
            if len(chunk) == 0:
                continue
            dist = dijkstra(graph, indices=chunk, limit=hi)
            rows, cols = np.nonzero((dist >= lo) & np.isfinite(dist))
            if len(rows) == 0:
                continue
            src = chunk[rows]
            path = dist[rows, cols]
            eu = np.linalg.norm(rest_m[cols] - rest_m[src], axis=1)
            ok = eu >= straightness * path
            rows, src, cols, path = rows[ok], src[ok], cols[ok], path[ok]
            # a few random partners per source
            order = np.lexsort((rng.random(len(rows)), rows))
            rows, src, cols, path = rows[order], src[order], cols[order], path[order]
            first = np.searchsorted(rows, rows, side="left")
            keep = (np.arange(len(rows)) - first) < per_source
            pairs.append(np.stack([src[keep], cols[keep]], axis=1))
            lengths.append(path[keep])
    if not pairs:
        return np.zeros((0, 2), dtype=np.int32), np.zeros(0)
    p = np.sort(np.concatenate(pairs), axis=1)
    ln = np.concatenate(lengths)
    _, keep = np.unique(p, axis=0, return_index=True)
    return p[keep].astype(np.int32), ln[keep]
