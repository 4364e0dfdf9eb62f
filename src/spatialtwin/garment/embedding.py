"""Points carried by a triangle mesh: embed once on the rest shapes, follow every deformation.

A garment's render mesh (the upload's own vertices and UVs) rides on its simulation mesh (the
remeshed cloth the solver moves); the refit carries garment vertices on a body surface the same
way. Each point is bound to its closest triangle of the driving mesh, on the undeformed shapes:

1. the closest point on the mesh (`trimesh.proximity.closest_point`) gives the triangle and the
   point's barycentric coordinates in it (`trimesh.triangles.points_to_barycentric`),
2. the offset from that surface point to the point is stored in a local orthonormal frame of
   the triangle at that spot: the normal is the barycentric blend of the driving mesh's
   area-weighted vertex normals (smooth across triangles, so points on neighbouring triangles
   stay together when the sheet bends), the tangent is the triangle's first edge made
   orthogonal to it.

`Embedding.apply(deformed_vertices_m)` rebuilds the surface point from the deformed triangle and
re-applies the offset in the deformed frame: on the rest shape it returns the points exactly;
under a rigid motion it moves them rigidly; under bending the offset turns with the surface.
The offset keeps its length in metres (no scaling with the triangle's stretch): cloth
thickness and a sleeve's distance from the skin do not grow when the fabric stretches, and a
garment is never rescaled.

Example:
    embedding = embed_points(render.vertices_m, sim.vertices_m, sim.faces)
    render_draped_m = embedding.apply(draped_sim_m)
    strain_at_render = embedding.interpolate(strain_at_sim)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from numpy.typing import NDArray

from spatialtwin.errors import SpatialTwinError
from spatialtwin.geometry import vertex_normals

# Below this length a blended normal or an edge is treated as degenerate (metres or unitless).
_TINY = 1e-12


@dataclass(frozen=True)
class Embedding:
    """Each point as (triangle, barycentric weights, offset in that triangle's local frame).

    `faces` are the driving mesh's triangles; `apply` takes that mesh's vertices, rest or
    deformed (same count and order), in metres.
    """

    faces: NDArray[np.int64]  # (F, 3) triangles of the driving mesh
    vertex_count: int  # vertices of the driving mesh
    triangle: NDArray[np.int64]  # (P,) triangle each point is bound to
    barycentric: NDArray[np.float64]  # (P, 3) weights of that triangle's corners, sum 1
    offset_local_m: NDArray[np.float64]  # (P, 3) offset along (tangent, bitangent, normal)

    @property
    def point_count(self) -> int:
        return len(self.triangle)

    @property
    def distance_m(self) -> NDArray[np.float64]:
        """How far each point was from the driving surface when embedded (metres, ≥ 0)."""
        return np.linalg.norm(self.offset_local_m, axis=1)

    @property
    def normal_offset_m(self) -> NDArray[np.float64]:
        """The signed offset along the surface normal (metres; + on the normal's side)."""
        return self.offset_local_m[:, 2].copy()

    def surface_points(self, vertices_m: NDArray[np.floating]) -> NDArray[np.float64]:
        """The bound points on the (deformed) surface itself, without their offsets."""
        v = self._checked(vertices_m)
        corners = v[self.faces[self.triangle]]  # (P, 3, 3)
        return np.einsum("pk,pkd->pd", self.barycentric, corners)

    def apply(self, vertices_m: NDArray[np.floating]) -> NDArray[np.float64]:
        """The points carried by the driving mesh in the shape `vertices_m` (metres)."""
        v = self._checked(vertices_m)
        frames = _frames_at(v, self.faces, self.triangle, self.barycentric)
        base = np.einsum("pk,pkd->pd", self.barycentric, v[self.faces[self.triangle]])
        return base + np.einsum("pj,pjd->pd", self.offset_local_m, frames)

    def interpolate(self, values: NDArray[np.floating]) -> NDArray[np.float64]:
        """Per-vertex values of the driving mesh (N,) or (N, k), blended at each point."""
        x = np.asarray(values, dtype=np.float64)
        if x.shape[0] != self.vertex_count:
            raise SpatialTwinError(
                "embedding_mismatch",
                "values must have one row per vertex of the driving mesh",
                {"rows": int(x.shape[0]), "vertices": self.vertex_count},
                status=500,
            )
        corners = x[self.faces[self.triangle]]  # (P, 3, ...)
        return np.einsum("pk,pk...->p...", self.barycentric, corners)

    def _checked(self, vertices_m: NDArray[np.floating]) -> NDArray[np.float64]:
        v = np.asarray(vertices_m, dtype=np.float64)
        if v.shape != (self.vertex_count, 3):
            raise SpatialTwinError(
                "embedding_mismatch",
                "the driving mesh changed its vertex count since it was embedded in",
                {"shape": list(v.shape), "vertices": self.vertex_count},
                status=500,
            )
        return v


def _unit(x: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    length = np.linalg.norm(x, axis=1, keepdims=True)
    ok = length[:, 0] > _TINY
    return np.divide(x, length, out=np.zeros_like(x), where=length > _TINY), ok


def _frames_at(
    vertices: NDArray[np.float64],
    faces: NDArray[np.int64],
    triangle: NDArray[np.int64],
    barycentric: NDArray[np.float64],
) -> NDArray[np.float64]:
    """(P, 3, 3) rows tangent, bitangent, normal of the local frame at each bound point."""
    vn = vertex_normals(vertices, faces)
    corners = faces[triangle]
    tri = vertices[corners]
    face_n, face_ok = _unit(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]))
    normal, ok = _unit(np.einsum("pk,pkd->pd", barycentric, vn[corners]))
    # Where the blend cancels (a fold whose corners face opposite ways) use the face's normal;
    # where the face is degenerate as well, fall back to +Y so the frame stays orthonormal.
    normal = np.where(ok[:, None], normal, face_n)
    normal[~ok & ~face_ok] = (0.0, 1.0, 0.0)
    edge = tri[:, 1] - tri[:, 0]
    edge -= np.einsum("pd,pd->p", edge, normal)[:, None] * normal
    tangent, edge_ok = _unit(edge)
    if not edge_ok.all():
        # A collapsed edge: any direction orthogonal to the normal will do.
        helper = np.where(np.abs(normal[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]])
        alt, _ = _unit(np.cross(normal, helper))
        tangent = np.where(edge_ok[:, None], tangent, alt)
    bitangent = np.cross(normal, tangent)
    return np.stack([tangent, bitangent, normal], axis=1)


def embed_points(
    points_m: NDArray[np.floating], vertices_m: NDArray[np.floating], faces: NDArray[np.integer]
) -> Embedding:
    """Bind `points_m` (P, 3) to the closest triangles of the mesh (`vertices_m`, `faces`).

    Both in metres, in the same (rest) frame. Points may lie off the surface (a render mesh a
    few millimetres from its remeshed cloth, a garment centimetres outside a body).
    """
    p = np.asarray(points_m, dtype=np.float64)
    v = np.asarray(vertices_m, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if p.ndim != 2 or p.shape[1] != 3 or v.ndim != 2 or v.shape[1] != 3:
        raise SpatialTwinError(
            "invalid_embedding_input",
            "points and vertices must be (n, 3) arrays",
            {"points": list(p.shape), "vertices": list(v.shape)},
            status=422,
        )
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise SpatialTwinError(
            "invalid_embedding_input",
            "faces must be a non-empty (f, 3) array",
            {"faces": list(f.shape)},
            status=422,
        )
    if f.min() < 0 or f.max() >= len(v):
        raise SpatialTwinError(
            "invalid_embedding_input",
            "faces refer to vertices that do not exist",
            {"vertices": len(v), "max_index": int(f.max()), "min_index": int(f.min())},
            status=422,
        )
    if not (np.isfinite(p).all() and np.isfinite(v).all()):
        raise SpatialTwinError(
            "invalid_embedding_input", "points and vertices must be finite", status=422
        )
    if len(p) == 0:
        empty = np.zeros((0, 3))
        return Embedding(f, len(v), np.zeros(0, np.int64), empty, empty.copy())
    # (1) closest triangle and barycentric coordinates on the rest shapes
    mesh = trimesh.Trimesh(v, f, process=False, validate=False)
    closest, _, triangle = trimesh.proximity.closest_point(mesh, p)
    triangle = np.asarray(triangle, dtype=np.int64)
    bary = trimesh.triangles.points_to_barycentric(v[f[triangle]], closest)
    # Degenerate triangles give NaN weights: put the point at the triangle's first corner.
    bad = ~np.isfinite(bary).all(axis=1)
    bary[bad] = (1.0, 0.0, 0.0)
    bary = np.clip(bary, 0.0, None)
    bary /= bary.sum(axis=1, keepdims=True)
    # (2) the offset in the local frame there
    frames = _frames_at(v, f, triangle, bary)
    base = np.einsum("pk,pkd->pd", bary, v[f[triangle]])
    offset = np.einsum("pjd,pd->pj", frames, p - base)
    return Embedding(f, len(v), triangle, bary, offset)
