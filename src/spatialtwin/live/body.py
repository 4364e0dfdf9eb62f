"""The twin's surface for the cloth, posed every frame: only the welded vertices are skinned.

The client skins the twin itself from the streamed pose; the server needs the posed surface
only to collide the cloth with, and only one vertex per point of skin (UV-seam duplicates would
be skinned twice for nothing and split the collider's surface).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from spatialtwin.body.pose import Pose, skinning_matrices
from spatialtwin.body.skinning import Skinner, SkinWeights
from spatialtwin.body.twin_body import TwinBody


class WeldedSkinner:
    """Skins a twin's welded vertices (metres) for any pose of its skeleton."""

    def __init__(self, body: TwinBody) -> None:
        self.body = body
        if body.weld_map is None:
            keep = np.arange(body.vertex_count)
            self.faces = np.asarray(body.faces, dtype=np.int64)
        else:
            keep, inverse = np.unique(np.asarray(body.weld_map, np.int64), return_inverse=True)
            self.faces = inverse.reshape(-1)[np.asarray(body.faces, dtype=np.int64)]
        skin = SkinWeights(body.skin.joints[keep], body.skin.weights[keep])
        self._skinner = Skinner(body.vertices_m[keep], skin, body.skeleton.joint_count)
        self.rest_m = np.ascontiguousarray(body.vertices_m[keep], dtype=np.float64)

    @property
    def vertex_count(self) -> int:
        return len(self.rest_m)

    def posed(self, pose: Pose) -> NDArray[np.float64]:
        """(V, 3) welded vertices in `pose`."""
        return self._skinner.vertices(skinning_matrices(self.body.skeleton, pose))
