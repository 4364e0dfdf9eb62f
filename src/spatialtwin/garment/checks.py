"""Refusals that name the problem: what makes an uploaded mesh unusable as cloth.

Each check raises `SpatialTwinError` with a stable code and the offending numbers, before
anything is stored. Checks take plain arrays in file units (finite, budget) or metres
(degenerate), so they run the same from the CLI, a request handler or a job.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from spatialtwin.errors import SpatialTwinError
from spatialtwin.garment.mesh import triangle_areas


def check_has_geometry(vertices: NDArray[np.float64], faces: NDArray[np.int64]) -> None:
    if len(faces) == 0 or len(vertices) < 3:
        raise SpatialTwinError(
            "no_geometry",
            "the file holds no triangles",
            {"vertices": len(vertices), "triangles": len(faces)},
            status=422,
        )
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise SpatialTwinError(
            "corrupt_file",
            "a face refers to a vertex the file does not have",
            {"max_index": int(faces.max()), "vertices": len(vertices)},
            status=422,
        )


def check_finite(vertices: NDArray[np.float64], faces: NDArray[np.int64]) -> None:
    """Refuse NaN/inf coordinates on vertices that faces use."""
    bad = ~np.all(np.isfinite(vertices), axis=1)
    used_bad = np.unique(faces[bad[faces].any(axis=1)])
    if len(used_bad):
        raise SpatialTwinError(
            "non_finite_vertices",
            f"{len(used_bad)} vertices have NaN or infinite coordinates",
            {"count": len(used_bad), "first": used_bad[:10].tolist()},
            status=422,
        )


def check_triangle_budget(triangles: int, budget: int) -> None:
    if triangles > budget:
        raise SpatialTwinError(
            "too_many_triangles",
            f"the garment has {triangles} triangles; the limit is {budget}",
            {"triangles": int(triangles), "limit": int(budget)},
            status=413,
        )


def degenerate_faces(
    vertices_m: NDArray[np.float64], faces: NDArray[np.int64], min_area_m2: float
) -> NDArray[np.bool_]:
    """Faces that repeat a vertex or have (near-)zero area: they carry no cloth."""
    repeated = (
        (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 2] == faces[:, 0])
    )
    return repeated | (triangle_areas(vertices_m, faces) <= min_area_m2)


def check_degenerate(mask: NDArray[np.bool_], max_fraction: float) -> tuple[int, list[int]]:
    """Refuse a mesh whose degenerate share exceeds `max_fraction`; else return what to drop."""
    count = int(mask.sum())
    first = np.flatnonzero(mask)[:10].tolist()
    if count > max_fraction * len(mask):
        raise SpatialTwinError(
            "degenerate_triangles",
            f"{count} of {len(mask)} triangles are degenerate (zero area or a repeated vertex)",
            {"count": count, "triangles": len(mask), "first": first},
            status=422,
        )
    return count, first
