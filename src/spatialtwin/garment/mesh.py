"""`GarmentMesh`: the one in-memory garment document every preparation step takes and returns.

Geometry is welded (one vertex per point of cloth); texture seams live on the face corners
(`corner_uvs`), so welding never tears the cloth at a UV seam and remeshing interpolates UVs per
corner. Faces carry their material and the piece (connected panel set) they belong to.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class GarmentMesh:
    vertices_m: NDArray[np.float64]  # (N, 3) metres, +Y up, garment front towards +Z
    faces: NDArray[np.int64]  # (F, 3)
    corner_uvs: NDArray[np.float32] | None  # (F, 3, 2)
    face_material: NDArray[np.int32]  # (F,)
    face_piece: NDArray[np.int32]  # (F,) piece index; -1 before pieces are found

    @property
    def vertex_count(self) -> int:
        return len(self.vertices_m)

    @property
    def triangle_count(self) -> int:
        return len(self.faces)

    def keep_faces(self, mask: NDArray[np.bool_]) -> GarmentMesh:
        """The faces selected by `mask`, with vertices no face uses dropped."""
        faces = self.faces[mask]
        used = np.unique(faces)
        remap = np.full(len(self.vertices_m), -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        return GarmentMesh(
            vertices_m=self.vertices_m[used],
            faces=remap[faces],
            corner_uvs=None if self.corner_uvs is None else self.corner_uvs[mask],
            face_material=self.face_material[mask],
            face_piece=self.face_piece[mask],
        )

    def replace(self, **changes: Any) -> GarmentMesh:
        return replace(self, **changes)


def edge_lengths_m(
    vertices_m: NDArray[np.float64], faces: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Length (metres) of every unique edge."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    edges = np.unique(edges, axis=0)
    return np.linalg.norm(vertices_m[edges[:, 0]] - vertices_m[edges[:, 1]], axis=1)


def triangle_areas(vertices: NDArray[np.float64], faces: NDArray[np.int64]) -> NDArray[np.float64]:
    tri = vertices[faces]
    return 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
