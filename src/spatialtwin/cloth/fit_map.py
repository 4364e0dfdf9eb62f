"""Fit map: how much each part of a garment is stretched over the body, and its colours.

Strain here is the engineering strain of the garment's edges (length / rest length − 1), which
for woven fabrics is what a shopper feels as tightness: 0 where the garment hangs free,
a few per cent where it is pulled over the body.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def vertex_strain(
    positions_m: NDArray[np.floating],
    edges: NDArray[np.integer],
    rest_length_m: NDArray[np.floating],
    vertex_count: int,
) -> NDArray[np.float64]:
    """Per vertex, the largest stretch (length / rest − 1, ≥ 0) of the edges meeting there.

    The maximum, not the mean, so a tight band across a vertex is not averaged away by the
    slack edges along it.
    """
    x = np.asarray(positions_m, dtype=np.float64)
    e = np.asarray(edges, dtype=np.int64)
    stretch = np.linalg.norm(x[e[:, 0]] - x[e[:, 1]], axis=1) / rest_length_m - 1.0
    stretch = np.maximum(stretch, 0.0)
    out = np.zeros(vertex_count)
    np.maximum.at(out, e[:, 0], stretch)
    np.maximum.at(out, e[:, 1], stretch)
    return out


def strain_to_rgba(strain: NDArray[np.floating], tight_strain: float = 0.05) -> NDArray[np.float32]:
    """Vertex colours (N, 4) RGBA in 0..1: green when relaxed, yellow, then red at `tight_strain`.

    5 % is the default tight point: woven fabrics rarely stretch more than a few per cent in
    wear, so beyond it the size is too small there.
    """
    if tight_strain <= 0:
        raise ValueError("tight_strain must be positive")
    t = np.clip(np.asarray(strain, dtype=np.float64) / tight_strain, 0.0, 1.0)
    r = np.clip(2.0 * t, 0.0, 1.0)
    g = np.clip(2.0 * (1.0 - t), 0.0, 1.0) * 0.8
    b = np.full_like(t, 0.1)
    a = np.ones_like(t)
    return np.stack([r, g, b, a], axis=1).astype(np.float32)
