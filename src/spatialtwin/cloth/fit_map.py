"""Fit map: how much each part of a garment is stretched and how far it sits from the body.

Two per-vertex quantities, both overlays a client may show instead of the garment's own look:

- **strain** (fraction): the engineering strain of the garment's edges (length / rest length
  − 1, ≥ 0), the largest of the edges meeting at the vertex. For woven fabrics this is what a
  shopper feels as tightness: 0 where the garment hangs free, a few per cent where it is pulled
  over the body.
- **ease** (metres): the signed distance from the vertex to the body's surface, positive
  outside (the tailor's "ease": room between garment and body). Cloth resting on the body
  sits at its thickness plus the solver's contact margin, about 3–5 mm.

The legend (`FIT_LEGEND`) is calibrated on the sample garments draped on the sample twin Ava
they were cut for, so a garment that fits reads mostly neutral, and checked against the same
garments on a larger twin (1.76 m, chest 1.04, waist 0.90, hips 1.10 m), where they are a size
too small. Share of the cloth's vertices per band, default drapes (`LookOptions()`), measured
with the hm08-template twins:

| garment on twin | strain < 3 % | 3–8 % | ≥ 8 % | ease < 0.5 cm | 0.5–3 cm | 3–8 cm | ≥ 8 cm |
|---|---|---|---|---|---|---|---|
| T-shirt on Ava | 68 % | 29 % | 3 % | 41 % | 47 % | 12 % | 0 % |
| A-line skirt on Ava | 79 % | 21 % | 0 % | 16 % | 46 % | 27 % | 11 % |
| trousers on Ava | 76 % | 24 % | 0 % | 10 % | 77 % | 13 % | 0 % |
| T-shirt on the larger twin | 42 % | 52 % | 6 % | 81 % | 19 % | 1 % | 0 % |
| trousers on the larger twin | 60 % | 26 % | 14 % | 47 % | 49 % | 4 % | 0 % |

Strain bands: below 3 % **relaxed** (neutral): woven cloth takes that in ordinary wear; 3–8 %
**snug** (warm): pulled over the body; from 8 % **tight** (red): beyond what the solver lets
an edge stretch (its strain limit is 5 %), so only where the body forces it — the size is too
small there. Ease bands: below 0.5 cm **on the body** (touching: normal at shoulders and
waistbands, a warning only together with strain), 0.5–3 cm **close** (neutral), 3–8 cm
**relaxed**, from 8 cm **loose** (flares, hems, a size too big). Ease is measured up to
`EASE_SEARCH_M` from the body; cloth farther out reads as that distance.

Colours are sRGB hex strings, so web clients use them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spatialtwin.cloth.collider import BodyCollider

EASE_SEARCH_M = 0.30


@dataclass(frozen=True)
class FitBand:
    """Values below `below` (and at or above the previous band's) read as `label`."""

    below: float | None  # None: no upper bound
    label: str
    colour: str  # sRGB "#rrggbb"


@dataclass(frozen=True)
class FitScale:
    """One fit-map quantity: the glTF attribute that carries it, its unit and its bands."""

    attribute: str  # custom vertex attribute on the garment primitive
    unit: str  # the unit of the stored values
    display_unit: str  # the unit a legend shows
    display_factor: float  # stored value × factor = displayed value
    bands: tuple[FitBand, ...]

    def band_index(self, values: NDArray[np.floating]) -> NDArray[np.int64]:
        """The band each value falls in (0-based)."""
        edges = np.array([b.below for b in self.bands if b.below is not None], dtype=np.float64)
        return np.searchsorted(edges, np.asarray(values, dtype=np.float64), side="right")

    def shares(self, values: NDArray[np.floating]) -> dict[str, float]:
        """Fraction of `values` in each band, by label."""
        index = self.band_index(values)
        total = max(len(index), 1)
        return {
            b.label: round(float(np.count_nonzero(index == i)) / total, 4)
            for i, b in enumerate(self.bands)
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "attribute": self.attribute,
            "unit": self.unit,
            "displayUnit": self.display_unit,
            "displayFactor": self.display_factor,
            "bands": [{"below": b.below, "label": b.label, "colour": b.colour} for b in self.bands],
        }


STRAIN_SCALE = FitScale(
    attribute="_STRAIN",
    unit="fraction",
    display_unit="%",
    display_factor=100.0,
    bands=(
        FitBand(0.03, "relaxed", "#d9d4cc"),
        FitBand(0.08, "snug", "#f2a541"),
        FitBand(None, "tight", "#d7263d"),
    ),
)
EASE_SCALE = FitScale(
    attribute="_EASE",
    unit="m",
    display_unit="cm",
    display_factor=100.0,
    bands=(
        FitBand(0.005, "on the body", "#e8c07d"),
        FitBand(0.03, "close", "#d9d4cc"),
        FitBand(0.08, "relaxed", "#9cc3e4"),
        FitBand(None, "loose", "#3d7fc1"),
    ),
)
FIT_LEGEND = {"strain": STRAIN_SCALE, "ease": EASE_SCALE}


def fit_legend_json() -> dict[str, Any]:
    """The legend as GLB extras and API records carry it."""
    return {name: scale.to_json() for name, scale in FIT_LEGEND.items()}


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


def vertex_ease(
    positions_m: NDArray[np.floating],
    body_vertices_m: NDArray[np.floating],
    body_faces: NDArray[np.integer],
    search_m: float = EASE_SEARCH_M,
) -> NDArray[np.float64]:
    """Signed distance (metres, + outside) from each garment vertex to the body's surface.

    The body is the posed, welded twin surface; the side comes from the closest triangle's
    interpolated normal. Values are clipped to ±`search_m` (a vertex farther out is loose).
    """
    collider = BodyCollider(
        np.asarray(body_vertices_m, dtype=np.float64), np.asarray(body_faces, dtype=np.int64)
    )
    ease = collider.signed_distance(np.asarray(positions_m, dtype=np.float64), search_m)
    return np.clip(np.where(np.isfinite(ease), ease, search_m), -search_m, search_m)


def strain_to_rgba(strain: NDArray[np.floating], tight_strain: float = 0.05) -> NDArray[np.float32]:
    """Vertex colours (N, 4) RGBA in 0..1: green when relaxed, yellow, then red at `tight_strain`.

    A continuous ramp for tools that want one (the looks use the banded `FIT_LEGEND`).
    """
    if tight_strain <= 0:
        raise ValueError("tight_strain must be positive")
    t = np.clip(np.asarray(strain, dtype=np.float64) / tight_strain, 0.0, 1.0)
    r = np.clip(2.0 * t, 0.0, 1.0)
    g = np.clip(2.0 * (1.0 - t), 0.0, 1.0) * 0.8
    b = np.full_like(t, 0.1)
    a = np.ones_like(t)
    return np.stack([r, g, b, a], axis=1).astype(np.float32)
