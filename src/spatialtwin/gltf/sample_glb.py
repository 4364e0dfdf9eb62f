"""The project's sample garments as static GLBs: one double-sided primitive and provenance.

The meshes are made by `garment.samples` (plain arrays in metres); only the file lives here.
"""

from __future__ import annotations

import numpy as np
import pygltflib as g

from spatialtwin import __version__
from spatialtwin.garment.samples import TARGET_EDGE_M, SampleMesh, SampleSpec
from spatialtwin.gltf.builder import GlbBuilder


def garment_glb(mesh: SampleMesh, spec: SampleSpec, fitted_to: str) -> bytes:
    """A static GLB: one double-sided primitive with positions, normals, UVs; provenance."""
    builder = GlbBuilder(generator=f"SpatialTwin {__version__}")
    attrs = g.Attributes(
        POSITION=builder.accessor(mesh.vertices_m.astype(np.float32), with_bounds=True),
        NORMAL=builder.accessor(mesh.normals.astype(np.float32)),
        TEXCOORD_0=builder.accessor(mesh.uvs.astype(np.float32)),
    )
    material = builder.material(spec.fabric, spec.colour_rgba, roughness=0.85, double_sided=True)
    mesh_index = builder.mesh(
        spec.name,
        [
            g.Primitive(
                attributes=attrs,
                indices=builder.indices(mesh.faces, len(mesh.vertices_m)),
                material=material,
                mode=g.TRIANGLES,
            )
        ],
    )
    node = builder.node(name=spec.file_stem, mesh=mesh_index)
    builder.scene([node], name=spec.name)
    builder.set_extras(
        {
            "spatialtwin": {
                "version": __version__,
                "kind": "sample_garment",
                "sku": spec.sku,
                "fitted_to": fitted_to,
                "target_edge_m": TARGET_EDGE_M,
            }
        }
    )
    return builder.to_bytes()
