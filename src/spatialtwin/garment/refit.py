"""Refit: a garment bound to its authoring body, carried onto a twin, ready to drape.

1. the authoring body's bound points are found on the twin (`body.correspondence`),
2. each render vertex is put back on those points by its binding (surface point plus the
   offset in the local frame, MakeHuman's proxy fitting with turning offsets),
3. the simulation mesh follows the render mesh (it was embedded in it at the garment's own,
   authored shape), then what still touches the twin is pushed out along its normals,
4. the rest shape of the cloth stays the garment as authored: the solver pulls the refitted
   cloth back to its true size, so a garment too small for the twin shows as strain (reported
   by the fit map), never as a rescale.

Each piece's top band, where it touches the twin (waistband, shoulders, straps), is pinned
where the refit put it (`support_pins`); in a posed look those pins ride on the body.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from spatialtwin.body.correspondence import Correspondence, correspond
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.cloth.fabric import Fabric
from spatialtwin.garment.binding import AuthoringBody, GarmentBinding
from spatialtwin.garment.embedding import embed_points
from spatialtwin.garment.mesh import GarmentMesh
from spatialtwin.garment.pieces import Piece
from spatialtwin.garment.placement import (
    CLEARANCE_MARGIN_M,
    PlacedGarment,
    push_out_of_body,
)


@dataclass(frozen=True)
class GarmentRefit:
    """A stored garment's render mesh, its binding and the body it was authored on."""

    render: GarmentMesh
    binding: GarmentBinding
    authoring: AuthoringBody


def correspond_authoring(authoring: AuthoringBody, twin: TwinBody) -> Correspondence:
    """Where the authoring body's bound points lie on `twin` (metres, bind pose)."""
    return correspond(
        authoring.body, authoring.points_m, authoring.point_skin, authoring.skin_index, twin
    )


def refit_render(binding: GarmentBinding, correspondence: Correspondence) -> NDArray[np.float64]:
    """Render vertices of the garment on the twin (metres)."""
    return binding.place(correspondence.points_m)


SUPPORT_BAND_M = 0.03  # the top of each piece, as authored, where it rests on the body
SUPPORT_CONTACT_M = 0.015  # … and only where it touches the twin


def support_pins(
    authored_m: NDArray[np.float64],
    positions_m: NDArray[np.float64],
    vertex_piece: NDArray[np.int32],
    twin: TwinBody,
) -> NDArray[np.int64]:
    """Where each piece hangs from the twin: its top band (as authored) that touches the twin.

    A refitted garment starts where it was made to sit; what holds it there on a real body is
    the contact at its top — a waistband on the hips, a yoke on the shoulders, the straps of
    overalls. Pinning those vertices to the body (they ride on it in posed looks) keeps thin
    straps from sliding off a sloped shoulder and the whole garment from dropping.
    """
    body_v, _ = twin.welded()
    dist, _ = cKDTree(body_v).query(positions_m)
    pins = []
    for piece in np.unique(vertex_piece[vertex_piece >= 0]):
        sel = vertex_piece == piece
        top = authored_m[sel, 1].max()
        band = sel & (authored_m[:, 1] > top - SUPPORT_BAND_M) & (dist < SUPPORT_CONTACT_M)
        pins.append(np.flatnonzero(band))
    return np.unique(np.concatenate(pins)).astype(np.int64) if pins else np.zeros(0, np.int64)


def refit_garment(
    render: GarmentMesh,
    sim: GarmentMesh,
    pieces: list[Piece],
    binding: GarmentBinding,
    correspondence: Correspondence,
    twin: TwinBody,
    fabric: Fabric | None,
) -> PlacedGarment:
    """The simulation mesh refitted onto `twin` and outside it (steps 2–4 of the module doc)."""
    render_on_twin = refit_render(binding, correspondence)
    sim_in_render = embed_points(sim.vertices_m, render.vertices_m, render.faces)
    start = sim_in_render.apply(render_on_twin)
    thickness = fabric.thickness_m if fabric is not None else 0.001
    positions, pushed, clearance = push_out_of_body(
        start, sim.faces, twin, thickness + CLEARANCE_MARGIN_M
    )
    n = sim.vertex_count
    vertex_piece = np.full(n, -1, dtype=np.int32)
    vertex_piece[sim.faces.ravel()] = np.repeat(sim.face_piece, 3)
    pinned = support_pins(sim.vertices_m, positions, vertex_piece, twin)
    moved = np.linalg.norm(positions - sim.vertices_m, axis=1)
    return PlacedGarment(
        positions_m=positions,
        rest_positions_m=sim.vertices_m.copy(),
        faces=sim.faces,
        corner_uvs=sim.corner_uvs,
        vertex_piece=vertex_piece,
        pinned=pinned.astype(np.int64),
        fabric=fabric,
        translations_m=[],
        max_push_m=pushed,
        min_clearance_m=clearance,
        report={
            "method": f"refit from {binding.authoring}",
            "correspondence": {
                "snapped_fraction": round(correspondence.snapped_fraction, 4),
                "residual_m": round(correspondence.residual_m, 5),
            },
            "refit_move_m": {
                "median": round(float(np.median(moved)), 4),
                "max": round(float(moved.max()), 4),
            },
            "max_push_m": round(pushed, 4),
            "pinned": len(pinned),
        },
    )
