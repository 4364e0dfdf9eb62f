"""Static drape: settle a garment on a posed body and report where it is tight.

`drape_garment` is the service function behind `spatialtwin drape` and `POST /api/v1/looks`:
garment mesh + fabric + pins in, settled positions + per-vertex strain out. Settling is the
dynamic solver run until the garment stops moving, with self-collision on; the body is static.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from spatialtwin.cloth.collider import BodyCollider
from spatialtwin.cloth.fabric import Fabric
from spatialtwin.cloth.fit_map import vertex_strain
from spatialtwin.cloth.model import ClothModel, build_cloth_model
from spatialtwin.cloth.solver import ClothState, SolverSettings, edge_stretch, step
from spatialtwin.errors import SpatialTwinError

DRAPE_SETTINGS = SolverSettings(substeps=20, self_collision=True, extra_damping_per_s=2.0)


@dataclass(frozen=True)
class DrapeResult:
    """Settled garment (metres) and how it fits."""

    positions_m: NDArray[np.float64]  # (N, 3)
    strain: NDArray[np.float64]  # (N,) per-vertex stretch ≥ 0 (see fit_map.vertex_strain)
    mean_stretch: float  # mean over edges of length / rest − 1
    max_stretch: float
    min_body_clearance_m: float  # smallest signed distance of a vertex to the body surface
    frames: int  # frames simulated
    settled: bool  # True if the garment stopped moving before the frame limit
    max_speed_m_s: float  # fastest vertex at the end


def drape_garment(
    garment_vertices_m: NDArray[np.floating],
    garment_faces: NDArray[np.integer],
    fabric: Fabric,
    body_vertices_m: NDArray[np.floating],
    body_faces: NDArray[np.integer],
    *,
    pinned: NDArray[np.integer] | list[int] | None = None,
    seams: NDArray[np.integer] | list[tuple[int, int]] | None = None,
    rest_positions_m: NDArray[np.floating] | None = None,
    settings: SolverSettings = DRAPE_SETTINGS,
    dt: float = 1.0 / 30.0,
    max_frames: int = 240,
    min_frames: int = 30,
    settle_speed_m_s: float = 0.01,
    model: ClothModel | None = None,
) -> DrapeResult:
    """Settle a garment, placed around the body, under gravity on the static posed body.

    Vertices and the body are in metres, +Y up. The garment must start outside the body (it is
    never rescaled to fit); `pinned` vertices stay where they are (waistbands, hangers),
    `seams` are vertex pairs sewn together, `rest_positions_m` the flat pattern if the
    garment's stress-free shape differs from its placement. Stops when every vertex moves slower
    than `settle_speed_m_s` (after `min_frames`) or after `max_frames`.
    """
    if max_frames < 1 or min_frames < 0:
        raise SpatialTwinError(
            "bad_drape_request", "max_frames must be ≥ 1", {"max_frames": max_frames}
        )
    x0 = np.asarray(garment_vertices_m, dtype=np.float64)
    if model is None:
        model = build_cloth_model(
            x0, garment_faces, fabric, pinned=pinned, seams=seams, rest_positions_m=rest_positions_m
        )
    collider = BodyCollider(body_vertices_m, body_faces)
    start = collider.signed_distance(x0, radius_m=0.05)
    inside = start < -0.005
    if np.mean(inside) > 0.01:
        raise SpatialTwinError(
            "garment_inside_body",
            "the garment starts inside the body; place it around the body first",
            {"vertices_inside": int(np.sum(inside)), "deepest_m": float(-np.min(start))},
            status=422,
        )
    state = ClothState.at_rest(x0)
    frames = 0
    settled = False
    speed = np.inf
    for frames in range(1, max_frames + 1):
        step(model, state, state, None, collider, dt, settings)
        v = state.velocities_m_s
        speed = float(np.sqrt(np.max(np.einsum("ij,ij->i", v, v))))
        if not np.isfinite(speed):
            raise SpatialTwinError(
                "drape_diverged", "cloth simulation diverged", {"frame": frames}, status=422
            )
        if frames >= min_frames and speed < settle_speed_m_s:
            settled = True
            break
    x = state.positions_m
    stretch = edge_stretch(model, x)
    clearance = collider.signed_distance(x, radius_m=0.05)
    return DrapeResult(
        positions_m=x.copy(),
        strain=vertex_strain(x, model.mesh_edges, model.mesh_edge_rest_m, model.vertex_count),
        mean_stretch=float(stretch.mean()),
        max_stretch=float(stretch.max()),
        min_body_clearance_m=float(np.min(clearance)),
        frames=frames,
        settled=settled,
        max_speed_m_s=speed,
    )
