"""The garment as the shopper sees it: the upload's own mesh, driven by the simulation mesh.

The cloth solver moves the simulation mesh (remeshed to even 1.5 cm edges); the render mesh
is the upload's welded mesh with its corner UVs and materials. `RenderBinding.of` embeds every
render vertex in the simulation mesh on the undeformed shapes (`garment.embedding`: closest
triangle, barycentric coordinates, offset in a local frame), so after the drape the render
mesh is rebuilt from the deformed simulation mesh, textures and all; per-vertex fit values
(strain, ease) are blended the same way.

A render mesh coarser than the cloth (a low-poly upload whose triangles span several
simulation triangles) would cut straight across the folds the drape makes, so its long edges
are first split at their midpoints — on the surface, UVs interpolated per corner
(`remesh.refine_to_edge_length`) — down to the simulation mesh's edge length. The look at rest
is the upload's exactly; draped, it follows every fold. A finer render mesh is kept as it is.

Example:
    binding = RenderBinding.of(prepared.render, prepared.simulation, appearance)
    render_positions_m = binding.positions_m(draped_sim_positions_m)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from spatialtwin.garment.appearance import Appearance
from spatialtwin.garment.embedding import Embedding, embed_points
from spatialtwin.garment.mesh import GarmentMesh, edge_lengths_m
from spatialtwin.garment.remesh import refine_to_edge_length


@dataclass(frozen=True)
class RenderBinding:
    """A render mesh (rest shape, metres) bound to the simulation mesh it rides on."""

    mesh: GarmentMesh  # the upload's mesh: faces, corner UVs (OBJ convention), face materials
    embedding: Embedding  # its vertices in the simulation mesh
    appearance: Appearance

    @classmethod
    def of(
        cls, render: GarmentMesh, simulation: GarmentMesh, appearance: Appearance
    ) -> RenderBinding:
        """Embed `render`'s vertices in `simulation` (both as prepared, undeformed), after
        splitting render edges longer than the simulation mesh's (see the module docstring)."""
        if render is not simulation and simulation.triangle_count:
            cloth_edge_m = float(np.median(edge_lengths_m(simulation.vertices_m, simulation.faces)))
            render = refine_to_edge_length(render, cloth_edge_m)
        embedding = embed_points(render.vertices_m, simulation.vertices_m, simulation.faces)
        return cls(render, embedding, appearance)

    @property
    def faces(self) -> NDArray[np.int64]:
        return self.mesh.faces

    @property
    def corner_uvs(self) -> NDArray[np.float32] | None:
        return self.mesh.corner_uvs

    @property
    def face_material(self) -> NDArray[np.int32]:
        return self.mesh.face_material

    def positions_m(self, simulation_positions_m: NDArray[np.floating]) -> NDArray[np.float64]:
        """Render vertices (metres) for the simulation mesh in `simulation_positions_m`."""
        return self.embedding.apply(simulation_positions_m)

    def values(self, per_simulation_vertex: NDArray[np.floating]) -> NDArray[np.float64]:
        """A per-vertex quantity of the simulation mesh, at the render vertices."""
        return self.embedding.interpolate(per_simulation_vertex)
