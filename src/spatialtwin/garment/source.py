"""A garment file as read: the plain type every garment reader in `gltf/` returns.

The ingest (`garment.pipeline`) works on this, never on bytes: reading is the format layer's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spatialtwin.garment.appearance import TextureImage


@dataclass
class MeshSource:
    """A garment file's triangles in file units, with per-corner UVs and per-face materials.

    UVs follow OBJ's convention (v runs up the image), which is what trimesh returns for every
    format (it flips glTF's); writers of glTF flip them back (`gltf_uvs`). `materials` are the
    JSON form of `garment.appearance.GarmentMaterial` (what the garment record stores), their
    texture references index `images`.
    """

    vertices: NDArray[np.float64]  # (N, 3) file units, file axes
    faces: NDArray[np.int64]  # (F, 3) triangles (quads and n-gons fanned)
    corner_uvs: NDArray[np.float32] | None  # (F, 3, 2) UV of each face corner, or None
    face_material: NDArray[np.int32]  # (F,) index into `materials`
    materials: list[dict[str, Any]] = field(default_factory=list)  # GarmentMaterial.to_json()
    format: str = "obj"
    source_polygons: int = 0  # faces as authored (a quad counts once)
    images: list[TextureImage] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
