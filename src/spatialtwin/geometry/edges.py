"""Edges of triangle meshes: every edge once, the open ones, and the loops they form.

An edge is open (a boundary edge) when exactly one triangle uses it: the hems, necklines and
cuffs of a garment, the cut lines of a mesh. Pass welded faces (`weld.welded`) when UV seams
split vertices, or every seam counts as an opening.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _corner_edges(faces: NDArray[np.int64]) -> NDArray[np.int64]:
    """(3F, 2) edges 0–1, 1–2, 2–0 of every face, as the faces run."""
    return np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])


def unique_edges(faces: ArrayLike) -> NDArray[np.int64]:
    """Undirected edges (E, 2), each once with the smaller index first, sorted by rows."""
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    return np.unique(np.sort(_corner_edges(f), axis=1), axis=0)


def boundary_edges(faces: ArrayLike) -> NDArray[np.int64]:
    """Edges (B, 2) used by one triangle only, smaller index first, sorted by rows."""
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    edges, counts = np.unique(np.sort(_corner_edges(f), axis=1), axis=0, return_counts=True)
    return edges[counts == 1]


def boundary_vertices(faces: ArrayLike, vertex_count: int) -> NDArray[np.bool_]:
    """(N,) True for every vertex on an open edge."""
    out = np.zeros(int(vertex_count), dtype=bool)
    out[boundary_edges(faces).ravel()] = True
    return out


def boundary_loops(faces: ArrayLike) -> list[NDArray[np.int64]]:
    """Every opening as its vertices in order, walked the way the triangles run.

    Each open edge is followed from the face that owns it (a counter-clockwise face walks
    its openings with the surface on the left). Where two openings touch at one vertex (a
    bow tie) the walk takes the edges in file order, so every open edge lands in exactly one
    loop. Loops come longest first; a loop does not repeat its first vertex at the end.
    """
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    directed = _corner_edges(f)
    open_keys = {tuple(e) for e in boundary_edges(f).tolist()}
    outgoing: dict[int, list[int]] = {}
    for a, b in directed.tolist():
        if (min(a, b), max(a, b)) in open_keys:
            outgoing.setdefault(a, []).append(b)
    loops: list[NDArray[np.int64]] = []
    for start in list(outgoing):
        while outgoing.get(start):
            loop = [start]
            here = outgoing[start].pop(0)
            while here != start:
                loop.append(here)
                nexts = outgoing.get(here)
                if not nexts:  # an open chain on a non-manifold edge: stop where it ends
                    break
                here = nexts.pop(0)
            loops.append(np.asarray(loop, dtype=np.int64))
    loops.sort(key=len, reverse=True)
    return loops
