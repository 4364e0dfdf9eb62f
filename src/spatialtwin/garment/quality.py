"""When a draped garment is not good enough to show without a word: the thresholds, in one place.

A drape always returns a result; a result that misses any threshold below carries a warning
(`code`, `message`, `detail` with the measured value and the limit) which the look record, the
job and `spatialtwin drape` (exit status 3) pass on to the merchandiser. The limits:

- `not_settled`: it stopped on the frame or time limit, not at rest (see `cloth.drape`);
- `max_stretch`: an edge is stretched more than `max_edge_stretch` (15 %) past its rest length;
- `mean_stretch`: the cloth is stretched more than `mean_edge_stretch` (2 %) on average;
- `inside_body`: more than `deep_vertex_fraction` (0.5 %) of its vertices are deeper than
  `deep_vertex_depth_m` (1 mm) inside the body;
- `deep_inside_body`: its deepest point is more than `deepest_m` (1 cm) inside the body;
- `under_inner_layer`: more than `deep_vertex_fraction` of its vertices are deeper than
  `deep_vertex_depth_m` beneath a garment it is worn over (see `cloth.collider`).

Stretch is edge length over rest length minus one on the simulation mesh; depth is the signed
distance to the posed body's surface (the solver's closest-triangle query, Phong-normal side).
The stretch limits are those of issue 9 for a garment that fits; 1 mm is the contact offset's
order, so a vertex that deep is visibly in the skin.

Example:
    warnings = drape_warnings(result, key="tee")
    [w.code for w in warnings]  # e.g. ["not_settled"]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from spatialtwin.cloth.drape import DrapeResult
from spatialtwin.errors import SpatialTwinError


@dataclass(frozen=True)
class QualityThresholds:
    """Limits a draped garment must meet to be shown without a warning (see the module doc)."""

    max_edge_stretch: float = 0.15
    mean_edge_stretch: float = 0.02
    deep_vertex_depth_m: float = 0.001
    deep_vertex_fraction: float = 0.005
    deepest_m: float = 0.01

    def __post_init__(self) -> None:
        values = {
            "max_edge_stretch": self.max_edge_stretch,
            "mean_edge_stretch": self.mean_edge_stretch,
            "deep_vertex_depth_m": self.deep_vertex_depth_m,
            "deep_vertex_fraction": self.deep_vertex_fraction,
            "deepest_m": self.deepest_m,
        }
        if not all(np.isfinite(v) and v >= 0 for v in values.values()):
            raise SpatialTwinError(
                "invalid_quality_thresholds", "thresholds must be finite and ≥ 0", values
            )

    def to_json(self) -> dict[str, float]:
        return {
            "max_edge_stretch": self.max_edge_stretch,
            "mean_edge_stretch": self.mean_edge_stretch,
            "deep_vertex_depth_m": self.deep_vertex_depth_m,
            "deep_vertex_fraction": self.deep_vertex_fraction,
            "deepest_m": self.deepest_m,
        }


QUALITY_DEFAULTS = QualityThresholds()


@dataclass(frozen=True)
class QualityWarning:
    """A threshold a look missed: a stable `code`, a sentence for people, the numbers."""

    code: str
    message: str
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "detail": self.detail}


@dataclass(frozen=True)
class DrapeQuality:
    """The measures the thresholds are checked against, for one draped garment."""

    settled: bool
    stop_reason: str
    frames: int
    residual_ke_j_per_vertex: float
    mean_stretch: float
    max_stretch: float
    deep_fraction: float  # share of vertices deeper than the threshold depth inside the body
    deepest_m: float  # ≥ 0: how far the deepest vertex is inside the body
    under_layer_fraction: float  # share deeper than the threshold depth beneath inner layers

    @classmethod
    def of(
        cls, result: DrapeResult, thresholds: QualityThresholds = QUALITY_DEFAULTS
    ) -> DrapeQuality:
        depth = -np.asarray(result.body_clearance_m)
        under = -np.asarray(result.layer_clearance_m)
        n = max(len(depth), 1)
        return cls(
            settled=result.settled,
            stop_reason=result.stop_reason,
            frames=result.frames,
            residual_ke_j_per_vertex=result.residual_ke_j_per_vertex,
            mean_stretch=result.mean_stretch,
            max_stretch=result.max_stretch,
            deep_fraction=float(np.sum(depth > thresholds.deep_vertex_depth_m)) / n,
            deepest_m=float(max(np.max(depth, initial=0.0), 0.0)),
            under_layer_fraction=float(np.sum(under > thresholds.deep_vertex_depth_m)) / n,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "settled": self.settled,
            "stop_reason": self.stop_reason,
            "residual_ke_j_per_vertex": float(f"{self.residual_ke_j_per_vertex:.3e}"),
            "deep_vertex_fraction": round(self.deep_fraction, 5),
            "deepest_m": round(self.deepest_m, 5),
            "under_layer_fraction": round(self.under_layer_fraction, 5),
        }


def quality_warnings(
    quality: DrapeQuality,
    key: str,
    thresholds: QualityThresholds = QUALITY_DEFAULTS,
) -> list[QualityWarning]:
    """Every threshold `quality` misses, as warnings naming garment `key`."""
    t = thresholds
    out: list[QualityWarning] = []

    def warn(code: str, message: str, **detail: Any) -> None:
        out.append(QualityWarning(code, f"garment {key}: {message}", {"garment": key, **detail}))

    if not quality.settled:
        warn(
            "not_settled",
            f"the drape stopped on its {quality.stop_reason.replace('_', ' ')} after "
            f"{quality.frames} frames without coming to rest",
            stop_reason=quality.stop_reason,
            frames=quality.frames,
            residual_ke_j_per_vertex=float(f"{quality.residual_ke_j_per_vertex:.3e}"),
        )
    if quality.max_stretch > t.max_edge_stretch:
        warn(
            "max_stretch",
            f"an edge is stretched {100 * quality.max_stretch:.1f} % "
            f"(limit {100 * t.max_edge_stretch:.0f} %)",
            max_stretch=round(quality.max_stretch, 4),
            limit=t.max_edge_stretch,
        )
    if quality.mean_stretch > t.mean_edge_stretch:
        warn(
            "mean_stretch",
            f"the cloth is stretched {100 * quality.mean_stretch:.1f} % on average "
            f"(limit {100 * t.mean_edge_stretch:.0f} %)",
            mean_stretch=round(quality.mean_stretch, 4),
            limit=t.mean_edge_stretch,
        )
    if quality.deep_fraction > t.deep_vertex_fraction:
        warn(
            "inside_body",
            f"{100 * quality.deep_fraction:.1f} % of the cloth is more than "
            f"{1000 * t.deep_vertex_depth_m:.0f} mm inside the body "
            f"(limit {100 * t.deep_vertex_fraction:.1f} %)",
            fraction=round(quality.deep_fraction, 5),
            depth_m=t.deep_vertex_depth_m,
            limit=t.deep_vertex_fraction,
        )
    if quality.deepest_m > t.deepest_m:
        warn(
            "deep_inside_body",
            f"its deepest point is {1000 * quality.deepest_m:.1f} mm inside the body "
            f"(limit {1000 * t.deepest_m:.0f} mm)",
            deepest_m=round(quality.deepest_m, 5),
            limit=t.deepest_m,
        )
    if quality.under_layer_fraction > t.deep_vertex_fraction:
        warn(
            "under_inner_layer",
            f"{100 * quality.under_layer_fraction:.1f} % of the cloth is more than "
            f"{1000 * t.deep_vertex_depth_m:.0f} mm beneath a garment it is worn over",
            fraction=round(quality.under_layer_fraction, 5),
            depth_m=t.deep_vertex_depth_m,
            limit=t.deep_vertex_fraction,
        )
    return out


def drape_warnings(
    result: DrapeResult, key: str, thresholds: QualityThresholds = QUALITY_DEFAULTS
) -> list[QualityWarning]:
    """The warnings of one drape result (see `quality_warnings`)."""
    return quality_warnings(DrapeQuality.of(result, thresholds), key, thresholds)
