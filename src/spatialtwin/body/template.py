"""The authoring body of MakeHuman garments (hm08), as a rigged twin plus its helper geometry.

MakeHuman clothes are bound (`.mhclo`) to vertices of the hm08 base mesh, most of them to the
`helper-tights` shell that hugs the skin, so refitting such a garment onto another twin needs
every base-mesh vertex, not only the skin a twin keeps. `TemplateBody` holds both: `body` is
the skin as the importer makes a twin of it (metres, feet on y = 0, canonical skeleton,
MakeHuman's own weights mapped onto it), and `base_vertices_m` are all hm08 vertices in the
same frame with skin weights of their own, so the helpers follow any pose of the skin.

The shipped file `assets/bodies/hm08_template.npz` is derived from MakeHuman's CC0 `base.obj`,
`default.mhskel` and `default_weights.mhw` by `spatialtwin template build` (see its NOTICE).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from spatialtwin.body.pose import Pose, skinning_matrices
from spatialtwin.body.skinning import Skinner, SkinWeights
from spatialtwin.body.twin_body import TwinBody

HM08 = "hm08"


@dataclass
class TemplateBody:
    """hm08 as a twin (`body`) and every base-mesh vertex in the twin's frame (metres)."""

    name: str
    body: TwinBody
    base_vertices_m: NDArray[np.float64]  # (19158, 3) every hm08 vertex, twin frame
    base_skin: SkinWeights  # weights of every base vertex on the canonical skeleton
    body_base_index: NDArray[np.int64]  # (body vertices,) base index of each skin vertex
    skin_mask: NDArray[np.bool_]  # (19158,) True for the `body` group (the skin)

    def posed_base_vertices(self, pose: Pose | None) -> NDArray[np.float64]:
        """All base-mesh vertices skinned into `pose` (the bind pose when None)."""
        if pose is None:
            return self.base_vertices_m.copy()
        skinner = Skinner(self.base_vertices_m, self.base_skin, self.body.skeleton.joint_count)
        return skinner.vertices(skinning_matrices(self.body.skeleton, pose))
