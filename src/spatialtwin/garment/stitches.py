"""Stitches: where a game garment's free edges lie on its own cloth, sewn as they would be.

A game or MakeHuman outfit is modelled to be looked at, not sewn: an overall's back straps end
on the back panel's top edge a millimetre above it instead of sharing its vertices, a patch
pocket's rim rests on the panel under it. Welding cannot join them (they are not coincident)
and the cloth solver would let them fall apart: MakeHuman's worksuit, hung from its straps,
drops its whole back panel to the hips and its crotch to the knees, tearing the front buckles
(edges stretched 380 %) because they alone carry the trousers.

`overlap_stitches` finds, in the garment's rest shape, each free-edge (boundary) vertex with a
vertex of the same piece within `STITCH_GAP_M` that is far from it along the cloth (more than
`STITCH_MIN_PATH_M` over the mesh's edges, or not connected at all within that): the two lie on
each other without being neighbours in the fabric, which on a garment made in one piece means
they are sewn there. Each such vertex is stitched to its nearest partner, and the pairs go to
the solver as seams (zero-length constraints, `cloth.model.build_cloth_model`). The gap is a
couple of millimetres, so closing it moves nothing visibly; separate pieces (a shirt's hem lying
on the jeans' waistband) are never stitched together — they are two garments.

Example:
    pairs = overlap_stitches(rest_m, faces, vertex_piece)  # (S, 2) vertex pairs
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from spatialtwin.geometry import boundary_vertices, unique_edges

STITCH_GAP_M = 0.003  # free edge on its own cloth: as close as a fabric's thickness or two
STITCH_MIN_PATH_M = 0.05  # … yet this far away along the cloth (a fold-back hem is nearer)


def overlap_stitches(
    rest_m: NDArray[np.floating],
    faces: NDArray[np.integer],
    vertex_piece: NDArray[np.integer],
    gap_m: float = STITCH_GAP_M,
    min_path_m: float = STITCH_MIN_PATH_M,
) -> NDArray[np.int64]:
    """(S, 2) vertex pairs to sew: free-edge vertices lying on the same piece's cloth far from
    them along it (see the module doc), each with its nearest such partner, sorted, unique."""
    x = np.asarray(rest_m, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    piece = np.asarray(vertex_piece, dtype=np.int64)
    n = len(x)
    free = np.flatnonzero(boundary_vertices(f, n))
    if len(free) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    # (1) candidates: any vertex of the same piece within the gap of a free-edge vertex
    tree = cKDTree(x)
    near = tree.query_ball_point(x[free], gap_m)
    rows = np.repeat(free, [len(c) for c in near])
    cols = np.fromiter((j for c in near for j in c), dtype=np.int64, count=len(rows))
    keep = (rows != cols) & (piece[rows] == piece[cols]) & (piece[rows] >= 0)
    rows, cols = rows[keep], cols[keep]
    if len(rows) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    # (2) far along the cloth: edge-path distance beyond `min_path_m` (or none within it)
    e = unique_edges(f)
    w = np.linalg.norm(x[e[:, 0]] - x[e[:, 1]], axis=1)
    ends = (np.concatenate([e[:, 0], e[:, 1]]), np.concatenate([e[:, 1], e[:, 0]]))
    graph = sp.coo_matrix((np.concatenate([w, w]), ends), shape=(n, n)).tocsr()
    sources, inverse = np.unique(rows, return_inverse=True)
    path = dijkstra(graph, indices=sources, limit=min_path_m)
    far = ~np.isfinite(path[inverse, cols])
    rows, cols = rows[far], cols[far]
    if len(rows) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    # (3) each free-edge vertex to its nearest partner
    gap = np.linalg.norm(x[rows] - x[cols], axis=1)
    order = np.lexsort((gap, rows))
    rows, cols = rows[order], cols[order]
    first = np.concatenate([[True], rows[1:] != rows[:-1]])
    pairs = np.sort(np.stack([rows[first], cols[first]], axis=1), axis=1)
    return np.unique(pairs, axis=0).astype(np.int64)
