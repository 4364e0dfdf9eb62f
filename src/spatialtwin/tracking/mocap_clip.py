"""A motion-capture clip as plain data: a joint tree, its channels and one row per frame.

`gltf.bvh` parses BVH files into this; the retargeting stages map it onto a twin's skeleton.
Rotations are Euler angles in degrees applied in the order the channels are listed (intrinsic,
so "Zrotation Xrotation Yrotation" is R = Rz · Rx · Ry); lengths are in the file's unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from spatialtwin.errors import SpatialTwinError

AXES = {"X": 0, "Y": 1, "Z": 2}


@dataclass(frozen=True)
class BvhClip:
    """A parsed BVH file. End sites are joints named ``<parent>_end`` with no channels."""

    names: tuple[str, ...]
    parents: NDArray[np.int64]  # (J,) −1 for the root; parents come first
    offsets: NDArray[np.float64]  # (J, 3) rest offset from the parent, file units
    channels: tuple[tuple[str, ...], ...]  # per joint, e.g. ("Zrotation", "Xrotation", ...)
    frame_time_s: float
    values: NDArray[np.float64]  # (F, total channels)

    @property
    def frame_count(self) -> int:
        return int(self.values.shape[0])

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise SpatialTwinError(
                "bad_bvh", f"BVH has no joint {name!r}", {"joints": list(self.names)}
            ) from None

    def world_transforms(self, scale: float = 1.0) -> tuple[NDArray[np.float64], NDArray]:
        """World rotations (F, J, 3, 3) and positions (F, J, 3) of every joint and end site.

        Positions are multiplied by `scale` (e.g. 0.01 for a file in centimetres). At the rest
        pose (all channels zero) every world rotation is the identity.
        """
        nf, nj = self.frame_count, len(self.names)
        rot = np.zeros((nf, nj, 3, 3))
        pos = np.zeros((nf, nj, 3))
        col = 0
        for j, ch in enumerate(self.channels):
            local_p = np.broadcast_to(self.offsets[j] * scale, (nf, 3)).copy()
            local_r = np.broadcast_to(np.eye(3), (nf, 3, 3))
            if ch:
                block = self.values[:, col : col + len(ch)]
                col += len(ch)
                order = "".join(c[0] for c in ch if c.endswith("rotation"))
                rot_cols = [k for k, c in enumerate(ch) if c.endswith("rotation")]
                for k, c in enumerate(ch):
                    if c.endswith("position"):
                        local_p[:, AXES[c[0]]] += block[:, k] * scale
                if order:
                    # upper-case axes: intrinsic rotations, applied in the listed order
                    local_r = Rotation.from_euler(
                        order.upper(), block[:, rot_cols], degrees=True
                    ).as_matrix()
            p = self.parents[j]
            if p < 0:
                rot[:, j], pos[:, j] = local_r, local_p
            else:
                pos[:, j] = pos[:, p] + np.einsum("fij,fj->fi", rot[:, p], local_p)
                rot[:, j] = rot[:, p] @ local_r
        return rot, pos
