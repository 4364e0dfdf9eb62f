"""Mesh geometry every stage shares: normals, edges, boundaries, welding.

The ground layer: functions over plain `(vertices, faces)` NumPy arrays that import nothing
of SpatialTwin but `errors`, written once so that body, cloth, garment and lod agree on what
a vertex normal, an open edge or a welded vertex is.

    from spatialtwin.geometry import vertex_normals, boundary_loops, weld_map
    normals = vertex_normals(vertices_m, faces)
"""

from spatialtwin.geometry.edges import (
    boundary_edges,
    boundary_loops,
    boundary_vertices,
    unique_edges,
)
from spatialtwin.geometry.normals import face_normals, vertex_normals
from spatialtwin.geometry.weld import coincident_groups, weld_map, welded

__all__ = [
    "boundary_edges",
    "boundary_loops",
    "boundary_vertices",
    "coincident_groups",
    "face_normals",
    "unique_edges",
    "vertex_normals",
    "weld_map",
    "welded",
]
