"""The in-memory twin body every stage passes around: a skinned mesh in metres."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from spatialtwin.body.pose import Pose, skinning_matrices
from spatialtwin.body.skeleton import Skeleton
from spatialtwin.body.skinning import Skinner, SkinWeights
from spatialtwin.geometry import welded

# The colour a twin is drawn in where it has no texture (linear RGBA), in every GLB and level.
SKIN_TONE = (0.80, 0.66, 0.56, 1.0)


@dataclass
class TwinBody:
    """A rigged body in its bind pose: metres, +Y up, facing +Z, feet on y = 0.

    `vertices_m` may carry UV-seam duplicates; `weld_map` maps each vertex to its welded
    representative so that topology checks (watertightness, measurements) see one surface.
    """

    vertices_m: NDArray[np.float64]
    faces: NDArray[np.int64]
    normals: NDArray[np.float64]
    uvs: NDArray[np.float64]
    skin: SkinWeights
    skeleton: Skeleton
    weld_map: NDArray[np.int64] | None = None
    _skinner: Skinner | None = field(default=None, repr=False, compare=False)

    @property
    def vertex_count(self) -> int:
        return int(self.vertices_m.shape[0])

    def skinner(self) -> Skinner:
        if self._skinner is None:
            self._skinner = Skinner(
                self.vertices_m, self.skin, self.skeleton.joint_count, self.normals
            )
        return self._skinner

    def posed_vertices(self, pose: Pose) -> NDArray[np.float64]:
        return self.skinner().vertices(skinning_matrices(self.skeleton, pose))

    def posed(self, pose: Pose) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Posed vertices and normals."""
        return self.skinner().vertices_and_normals(skinning_matrices(self.skeleton, pose))

    def welded(self) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """Vertices and faces with UV-seam duplicates merged: one closed surface."""
        return welded(self.vertices_m, self.faces, self.weld_map)

    def with_vertices(self, vertices_m: NDArray[np.float64]) -> TwinBody:
        return replace(self, vertices_m=vertices_m, _skinner=None)
