"""A live garment's display mesh as GLB, in vertex-stream order: what a mirror page loads once
and then moves with the session's vertex-stream frames (`gltf.vertex_stream`).

glTF holds one UV per vertex, the display mesh one per triangle corner, so vertices are split
where a seam gives one vertex two UVs. The split keeps the stream's order where a client needs
it: **vertices 0 … N−1 are the N stream vertices, in stream order** (each with the UV of its
first corner); the seam copies follow, and the application attribute `_STREAM_VERTEX` (a float
scalar per glTF vertex holding an integer, exact below 2²⁴; glTF allows no 32-bit integer
attributes) names the stream vertex each glTF vertex shows, so a page sets glTF vertex
i to stream position `_STREAM_VERTEX[i]` (the identity for the first N). N is also in
`asset.extras.spatialtwin.streamVertices`. Positions are the garment's drape at the twin's bind
pose (metres, +Y up); the material is the garment's first, its textures embedded when the mesh
has UVs (`GarmentGltfWriter.material`).

Example:
    glb = stream_mesh_glb("garment:gar_1", drape_m, faces, corner_uvs, appearance, extras)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pygltflib as g
import trimesh
from numpy.typing import NDArray

from spatialtwin import __version__
from spatialtwin.garment.appearance import Appearance
from spatialtwin.gltf.builder import GlbBuilder
from spatialtwin.gltf.garment_io import GarmentGltfWriter, gltf_uvs

STREAM_VERTEX_ATTRIBUTE = "_STREAM_VERTEX"


def split_seams(
    faces: NDArray[np.integer], vertex_count: int, corner_uvs: NDArray[np.floating] | None
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32] | None]:
    """(stream vertex of each glTF vertex, glTF faces, glTF UVs): the first `vertex_count`
    glTF vertices are the stream vertices themselves, seam copies come after them."""
    f = np.asarray(faces, dtype=np.int64)
    n = int(vertex_count)
    if corner_uvs is None:
        return np.arange(n, dtype=np.int64), f, None
    uv = np.ascontiguousarray(gltf_uvs(np.asarray(corner_uvs)).reshape(-1, 2), dtype=np.float32)
    corner_vertex = f.ravel()
    key = np.column_stack([corner_vertex, uv.view(np.int32).reshape(-1, 2)])
    unique, first_corner, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    unique_vertex = unique[:, 0]
    # each vertex keeps, as its own glTF vertex, the UV of the first corner that uses it
    by_first = np.argsort(first_corner, kind="stable")
    _, first_of_vertex = np.unique(unique_vertex[by_first], return_index=True)
    primary = np.zeros(len(unique), dtype=bool)
    primary[by_first[first_of_vertex]] = True
    row = np.empty(len(unique), dtype=np.int64)
    row[primary] = unique_vertex[primary]
    copies = np.flatnonzero(~primary)
    row[copies] = n + np.arange(len(copies))
    stream_vertex = np.concatenate([np.arange(n, dtype=np.int64), unique_vertex[copies]])
    uvs = np.zeros((n + len(copies), 2), dtype=np.float32)
    uvs[row] = uv[first_corner]
    return stream_vertex, row[inverse].reshape(-1, 3), uvs


def stream_mesh_glb(
    name: str,
    positions_m: NDArray[np.floating],
    faces: NDArray[np.integer],
    corner_uvs: NDArray[np.floating] | None,
    appearance: Appearance,
    extras: dict[str, Any] | None = None,
) -> bytes:
    """The display mesh (N stream vertices, faces, per-corner UVs) as a one-node GLB whose
    first N vertices are the stream's (see the module doc); `extras` go into
    `asset.extras.spatialtwin` beside `streamVertices`."""
    positions = np.asarray(positions_m, dtype=np.float64)
    n = len(positions)
    f = np.asarray(faces, dtype=np.int64)
    # (1) split at UV seams, the stream vertices first
    stream_vertex, split_faces, uvs = split_seams(f, n, corner_uvs)
    normals = np.asarray(trimesh.Trimesh(positions, f, process=False).vertex_normals)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.where(length > 1e-9, normals / np.maximum(length, 1e-12), [0.0, 1.0, 0.0])
    # (2) attributes
    builder = GlbBuilder(generator=f"SpatialTwin {__version__}")
    attrs = g.Attributes(
        POSITION=builder.accessor(positions[stream_vertex].astype(np.float32), with_bounds=True),
        NORMAL=builder.accessor(normals[stream_vertex].astype(np.float32)),
    )
    if uvs is not None:
        attrs.TEXCOORD_0 = builder.accessor(uvs)
    setattr(attrs, STREAM_VERTEX_ATTRIBUTE, builder.accessor(stream_vertex.astype(np.float32)))
    # (3) material and indices
    material = GarmentGltfWriter(builder).material(
        appearance.material(0),
        appearance.images,
        f"{name}:{appearance.material(0).name}",
        uvs is not None,
    )
    primitive = g.Primitive(
        attributes=attrs,
        indices=builder.indices(split_faces, len(stream_vertex)),
        material=material,
        mode=g.TRIANGLES,
    )
    node = builder.node(name=name, mesh=builder.mesh(name, [primitive]))
    builder.scene([node], name="garment")
    builder.set_extras({"spatialtwin": {**(extras or {}), "streamVertices": n}})
    return builder.to_bytes()
