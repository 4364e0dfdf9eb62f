"""Weld seams and duplicate vertices, and drop islands too small to be cloth.

Exporters split vertices wherever UVs or normals differ, and panels sewn together arrive as
coincident but separate vertices; a cloth solver would see those as cuts. Welding merges points
closer than a tolerance (a k-d tree finds the pairs, connected components merge chains of them);
the UVs stay per face corner, so texture seams survive as attributes.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from spatialtwin.garment.mesh import GarmentMesh, triangle_areas

WELD_TOLERANCE_M = 1e-5


def weld_vertices(mesh: GarmentMesh, tolerance_m: float = WELD_TOLERANCE_M) -> GarmentMesh:
    """Merge vertices within `tolerance_m`; faces that collapse or repeat are removed."""
    v = mesh.vertices_m
    # (1) gather coincident pairs
    pairs = cKDTree(v).query_pairs(tolerance_m, output_type="ndarray")
    n = len(v)
    graph = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    # (2) one representative per group, in first-occurrence order
    _, first = np.unique(label, return_index=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    new_index = rank[label]
    vertices = v[first[order]]
    faces = new_index[mesh.faces]
    # (3) drop faces that collapsed or duplicate another face
    ok = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 2] != faces[:, 0])
    key = np.sort(faces, axis=1)
    _, unique_rows = np.unique(key, axis=0, return_index=True)
    keep = np.zeros(len(faces), dtype=bool)
    keep[unique_rows] = True
    keep &= ok
    welded = mesh.replace(vertices_m=vertices, faces=faces)
    return welded.keep_faces(keep)


def face_components(faces: np.ndarray, vertex_count: int) -> np.ndarray:
    """Connected component of every face (faces sharing a vertex are connected)."""
    f = len(faces)
    rows = np.repeat(np.arange(f), 3)
    graph = sp.coo_matrix((np.ones(3 * f), (rows, faces.ravel())), shape=(f, vertex_count))
    adjacency = (graph @ graph.T).tocsr()
    _, label = connected_components(adjacency, directed=False)
    return label.astype(np.int32)


def remove_small_islands(
    mesh: GarmentMesh, min_area_m2: float
) -> tuple[GarmentMesh, dict[str, float]]:
    """Drop connected pieces smaller than `min_area_m2` (buttons, labels, stray quads)."""
    label = face_components(mesh.faces, mesh.vertex_count)
    area = np.bincount(label, weights=triangle_areas(mesh.vertices_m, mesh.faces))
    small = area < min_area_m2
    report = {"removed_islands": int(small.sum()), "removed_area_m2": float(area[small].sum())}
    if not small.any():
        return mesh.replace(face_piece=_ranked(label, area)), report
    keep = ~small[label]
    kept = mesh.replace(face_piece=label).keep_faces(keep)
    area_kept = np.bincount(kept.face_piece, weights=triangle_areas(kept.vertices_m, kept.faces))
    return kept.replace(face_piece=_ranked(kept.face_piece, area_kept)), report


def _ranked(label: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Renumber pieces 0..P-1, largest area first."""
    present = np.unique(label)
    order = present[np.argsort(-area[present], kind="stable")]
    rank = np.full(int(label.max()) + 1, -1, dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return rank[label]
