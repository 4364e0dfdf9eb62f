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

from spatialtwin.body.correspondence import Correspondence
from spatialtwin.body.rig_transfer import template_points_on
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.cloth.fabric import Fabric
from spatialtwin.garment.binding import AuthoringBody, GarmentBinding
from spatialtwin.garment.embedding import embed_points
from spatialtwin.garment.mesh import GarmentMesh
from spatialtwin.garment.pieces import Piece
from spatialtwin.garment.placement import (
    CLEARANCE_MARGIN_M,
    WAISTBAND_DEPTH_M,
    PlacedGarment,
    push_out_of_body,
)
from spatialtwin.geometry import boundary_vertices


@dataclass(frozen=True)
class GarmentRefit:
    """A stored garment's render mesh, its binding and the body it was authored on."""

    render: GarmentMesh
    binding: GarmentBinding
    authoring: AuthoringBody


def correspond_authoring(authoring: AuthoringBody, twin: TwinBody) -> Correspondence:
    """Where the authoring body's bound points lie on `twin` (metres, bind pose).

    A template-made authoring body (hm08, or hm08 posed to a bare garment) goes by way of a
    stand-in (`body.rig_transfer.template_points_on`): hm08 made to the twin's own
    measurements, so that the step onto the twin's surface is small and smooth.
    """
    return template_points_on(
        authoring.body,
        authoring.points_m,
        authoring.point_skin,
        authoring.skin_index,
        twin,
        authoring.template_body,
    )


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


def follow_render(
    sim: GarmentMesh, render: GarmentMesh, render_moved_m: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Simulation vertices carried by the render mesh's move, piece by piece.

    A shirt's hem lies over the jeans' waistband in an outfit file: embedded in the nearest
    render triangle regardless of piece, a hem vertex would ride on the jeans and be torn
    from its neighbours wherever the two pieces refit differently.
    """
    out = np.empty_like(sim.vertices_m)
    done = np.zeros(sim.vertex_count, dtype=bool)
    sim_piece = np.full(sim.vertex_count, -1, dtype=np.int64)
    sim_piece[sim.faces.ravel()] = np.repeat(sim.face_piece, 3)
    for piece in np.unique(sim_piece):
        rows = np.flatnonzero(sim_piece == piece)
        faces = render.faces[render.face_piece == piece] if piece >= 0 else render.faces
        if len(faces) == 0:
            faces = render.faces
        embedding = embed_points(sim.vertices_m[rows], render.vertices_m, faces)
        out[rows] = embedding.apply(render_moved_m)
        done[rows] = True
    if not done.all():  # vertices no face uses: carried by the nearest render vertex
        _, nearest = cKDTree(render.vertices_m).query(sim.vertices_m[~done])
        out[~done] = sim.vertices_m[~done] + (render_moved_m - render.vertices_m)[nearest]
    return out


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
    render_on_twin = binding.place(correspondence.points_m)
    start = follow_render(sim, render, render_on_twin)
    thickness = fabric.thickness_m if fabric is not None else 0.001
    positions, pushed, clearance = push_out_of_body(
        start, sim.faces, twin, thickness + CLEARANCE_MARGIN_M
    )
    n = sim.vertex_count
    vertex_piece = np.full(n, -1, dtype=np.int32)
    vertex_piece[sim.faces.ravel()] = np.repeat(sim.face_piece, 3)
    pinned = support_pins(sim.vertices_m, positions, vertex_piece, twin)
    # A waistband holds whether or not it touches (a belt): its whole top edge is pinned.
    boundary = boundary_vertices(sim.faces, n)
    for piece in pieces:
        if piece.hangs_from == "waist":
            sel = vertex_piece == piece.index
            top = sim.vertices_m[sel, 1].max()
            band = sel & boundary & (sim.vertices_m[:, 1] > top - WAISTBAND_DEPTH_M)
            pinned = np.union1d(pinned, np.flatnonzero(band))
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
