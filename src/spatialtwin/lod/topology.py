"""Mesh topology over welded positions: UV seams split vertices but are not borders."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from spatialtwin.geometry import boundary_vertices, weld_map

# LOD welds at 0.1 µm: levels are read back from float32 GLBs, whose seam copies are equal.
WELD_DECIMALS = 7


def border_vertices(positions: NDArray[np.float64], faces: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Vertices on an open edge of the welded surface: hems, necklines, cuffs, cut lines."""
    weld = weld_map(positions, WELD_DECIMALS)
    return boundary_vertices(weld[faces], len(positions))[weld]
