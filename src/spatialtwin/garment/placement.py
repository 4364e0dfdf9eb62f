"""Put a garment where it belongs on a twin, outside the body, ready for the cloth solver.

Placement only translates (a garment is never scaled to fit): each piece that hangs from the
shoulders has its centre-back neckline put at the twin's neck joint; each piece that hangs from
the waist has its waistband put at the twin's waist level (the narrowest girth, from
`spatialtwin.body.measure`). Pieces are centred left-right on the body's midline and front-back
on the torso at the height they cover. What still intersects the body is then pushed out along
the body's normals to a clearance of the fabric's thickness plus a margin, with the push
diffused over neighbouring cloth so the garment moves as a sheet, not as spikes. The
translated (un-pushed) shape is the rest geometry, so the solver pulls the garment back
towards its authored shape while the body holds it out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import trimesh
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from spatialtwin.body.measure import measure_body
from spatialtwin.body.skeleton import JOINT_INDEX
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.cloth.collider import BodyCollider
from spatialtwin.cloth.fabric import Fabric
from spatialtwin.garment.mesh import GarmentMesh
from spatialtwin.garment.pieces import Piece
from spatialtwin.geometry import boundary_vertices

CLEARANCE_MARGIN_M = 0.004
NECKLINE_HALF_WIDTH_M = 0.06
TORSO_HALF_WIDTH_M = 0.12
WAISTBAND_DEPTH_M = 0.02
EXACT_CHECK_RADIUS_M = 0.05


@dataclass(frozen=True)
class BodyLandmarks:
    """Heights (metres above the floor) and centre of a twin's torso, from its rig and girths."""

    neck_y: float
    waist_y: float
    midline_x: float

    @classmethod
    def of(cls, body: TwinBody) -> BodyLandmarks:
        joints = body.skeleton.rest_positions_m
        vertices, faces = body.welded()
        waist = measure_body(vertices, faces).waist_level_m
        return cls(
            neck_y=float(joints[JOINT_INDEX["neck"], 1]),
            waist_y=float(waist),
            midline_x=float(joints[JOINT_INDEX["hips"], 0]),
        )


@dataclass
class PlacedGarment:
    """A garment state for the cloth solver: metres, +Y up, around the twin's bind pose."""

    positions_m: NDArray[np.float64]  # (N, 3) start positions, outside the body
    rest_positions_m: NDArray[np.float64]  # (N, 3) the garment's own shape, only translated
    faces: NDArray[np.int64]  # (F, 3)
    corner_uvs: NDArray[np.float32] | None  # (F, 3, 2)
    vertex_piece: NDArray[np.int32]  # (N,)
    pinned: NDArray[np.int64]  # waistband vertices of waist-hung pieces
    fabric: Fabric | None
    translations_m: list[list[float]]  # per piece
    max_push_m: float  # largest push-out along body normals
    min_clearance_m: float  # smallest distance to the body after placement (approx.)
    report: dict[str, Any] = field(default_factory=dict)


def _body_frame(
    body: TwinBody,
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64], cKDTree]:
    vertices, faces = body.welded()
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    normals = np.asarray(mesh.vertex_normals, dtype=np.float64)
    return vertices, faces, normals, cKDTree(vertices)


def _torso_centre_z(body_v: NDArray[np.float64], lo: float, hi: float, cx: float) -> float:
    band = body_v[
        (body_v[:, 1] >= lo)
        & (body_v[:, 1] <= hi)
        & (np.abs(body_v[:, 0] - cx) < TORSO_HALF_WIDTH_M)
    ]
    if len(band) == 0:
        return float(np.median(body_v[:, 2]))
    return float(0.5 * (band[:, 2].min() + band[:, 2].max()))


def _piece_translation(
    pts: NDArray[np.float64], piece: Piece, marks: BodyLandmarks, body_v: NDArray[np.float64]
) -> NDArray[np.float64]:
    cx = 0.5 * (pts[:, 0].min() + pts[:, 0].max())
    if piece.hangs_from == "shoulders":
        near_mid = pts[np.abs(pts[:, 0] - cx) < NECKLINE_HALF_WIDTH_M]
        anchor = float((near_mid if len(near_mid) else pts)[:, 1].max())
        target = marks.neck_y
        band = (0.10, 0.30)  # chest: this far below the anchor
    else:
        anchor = float(pts[:, 1].max())
        target = marks.waist_y
        band = (0.02, 0.15)
    dy = target - anchor
    sel = pts[
        (pts[:, 1] <= anchor - band[0])
        & (pts[:, 1] >= anchor - band[1])
        & (np.abs(pts[:, 0] - cx) < TORSO_HALF_WIDTH_M)
    ]
    garment_z = 0.5 * (sel[:, 2].min() + sel[:, 2].max()) if len(sel) else float(pts[:, 2].mean())
    body_z = _torso_centre_z(body_v, target - band[1], target - band[0], marks.midline_x)
    return np.array([marks.midline_x - cx, dy, body_z - garment_z])


def _neighbour_average(faces: NDArray[np.int64], n: int) -> sp.csr_matrix:
    rows = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    adj = sp.coo_matrix((np.ones(len(rows)), (rows[:, 0], rows[:, 1])), shape=(n, n))
    adj = ((adj + adj.T) > 0).astype(np.float64)
    degree = np.asarray(adj.sum(axis=1)).ravel()
    return sp.diags(1.0 / np.maximum(degree, 1)) @ adj


def _depth_below(
    points: NDArray[np.float64],
    clearance: float,
    body_v: NDArray[np.float64],
    normals: NDArray[np.float64],
    tree: cKDTree,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """How far each point must move out (≥ 0, metres) and along which body normal."""
    _, idx = tree.query(points, k=4)
    # Plane distance to the nearest body vertices, the most outward of four (stable in hollows).
    d = np.einsum("ikj,ikj->ik", points[:, None, :] - body_v[idx], normals[idx])
    best = np.argmax(d, axis=1)
    signed = d[np.arange(len(points)), best]
    n = normals[idx[np.arange(len(points)), best]]
    return np.maximum(clearance - signed, 0.0), n


def push_out_of_body(
    positions_m: NDArray[np.float64],
    faces: NDArray[np.int64],
    body: TwinBody,
    clearance_m: float,
    rounds: int = 8,
    smoothing: int = 4,
) -> tuple[NDArray[np.float64], float, float]:
    """Move cloth inside (or closer than `clearance_m` to) the body out along body normals.

    Returns (positions, largest push in metres, smallest clearance left in metres).
    """
    body_v, body_faces, normals, tree = _body_frame(body)
    x = positions_m.copy()
    average = _neighbour_average(faces, len(x))
    total = np.zeros_like(x)
    for r in range(rounds):
        depth, n = _depth_below(x + total, clearance_m, body_v, normals, tree)
        if not np.any(depth > 0):
            break
        push = depth[:, None] * n
        total = total + push
        if r < rounds - 1:
            for _ in range(smoothing):
                # Diffuse, but never lose the push a vertex itself needs.
                spread = average @ total
                grow = np.einsum("ij,ij->i", spread, spread) > np.einsum("ij,ij->i", total, total)
                total = np.where(grow[:, None], spread, total)
    # Final pass without smoothing: every vertex ends at least at the clearance.
    depth, n = _depth_below(x + total, clearance_m, body_v, normals, tree)
    final = x + total + depth[:, None] * n
    # Exact check where the nearest-vertex planes can be fooled (armpits, crotch): the cloth
    # collider's closest-triangle signed distance; vertices still too close move out to the
    # clearance along the mean of that triangle's and the nearest body vertex's normals.
    collider = BodyCollider(body_v, body_faces)
    for _ in range(8):
        tri, _ = collider.detect_contacts(final, EXACT_CHECK_RADIUS_M, at_current=True)
        signed = collider.signed_distance(final, EXACT_CHECK_RADIUS_M)
        bad = np.flatnonzero((tri >= 0) & (signed < clearance_m - 1e-6))
        if len(bad) == 0:
            break
        corners = body_v[body_faces[tri[bad]]]
        face_n = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        face_n /= np.linalg.norm(face_n, axis=1, keepdims=True)
        _, nearest = tree.query(final[bad])
        direction = face_n + normals[nearest]
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        final[bad] += (clearance_m * 1.05 - signed[bad])[:, None] * direction
    moved = final - x
    signed = collider.signed_distance(final, EXACT_CHECK_RADIUS_M)
    pushed = float(np.sqrt(np.einsum("ij,ij->i", moved, moved)).max())
    return final, pushed, float(signed.min())


def _anchor_piece(mesh: GarmentMesh, pieces: list[Piece], vertex_piece: NDArray[np.int32]) -> Piece:
    """The piece a file's pieces are placed by together: the one hanging from the shoulders
    whose top reaches highest (a shirt's collar, over the straps of overalls), else the
    highest."""

    def top(piece: Piece) -> float:
        return float(mesh.vertices_m[vertex_piece == piece.index, 1].max())

    hung = [p for p in pieces if p.hangs_from == "shoulders"] or pieces
    return max(hung, key=top)


def place_garment(
    mesh: GarmentMesh,
    pieces: list[Piece],
    body: TwinBody,
    fabric: Fabric | None = None,
    landmarks: BodyLandmarks | None = None,
    together: bool = False,
) -> PlacedGarment:
    """Translate each piece to its anchor on `body`, then push the cloth out of the body.

    `together`: every piece moves with the anchor piece (`_anchor_piece`), as the file has
    them: for a garment put back on the body it was made on (`garment.estimate`), where each
    piece on its own anchor would part an outfit's layers (a worksuit's overalls went 2.7 cm
    up, its shirt 3 cm down)."""
    marks = landmarks or BodyLandmarks.of(body)
    body_v = body.vertices_m
    n = mesh.vertex_count
    vertex_piece = np.full(n, -1, dtype=np.int32)
    vertex_piece[mesh.faces.ravel()] = np.repeat(mesh.face_piece, 3)
    rest = mesh.vertices_m.copy()
    translations = []
    pins = []
    boundary = boundary_vertices(mesh.faces, n)
    shared = None
    if together and pieces:
        anchor = _anchor_piece(mesh, pieces, vertex_piece)
        sel = vertex_piece == anchor.index
        shared = _piece_translation(mesh.vertices_m[sel], anchor, marks, body_v)
    for piece in pieces:
        sel = vertex_piece == piece.index
        t = (
            shared
            if shared is not None
            else _piece_translation(mesh.vertices_m[sel], piece, marks, body_v)
        )
        rest[sel] += t
        translations.append([round(float(c), 5) for c in t])
        if piece.hangs_from == "waist":
            top = rest[sel, 1].max()
            band = sel & boundary & (rest[:, 1] > top - WAISTBAND_DEPTH_M)
            pins.append(np.flatnonzero(band))
    thickness = fabric.thickness_m if fabric is not None else 0.001
    positions, pushed, clearance = push_out_of_body(
        rest, mesh.faces, body, thickness + CLEARANCE_MARGIN_M
    )
    pinned = np.unique(np.concatenate(pins)) if pins else np.zeros(0, dtype=np.int64)
    return PlacedGarment(
        positions_m=positions,
        rest_positions_m=rest,
        faces=mesh.faces,
        corner_uvs=mesh.corner_uvs,
        vertex_piece=vertex_piece,
        pinned=pinned.astype(np.int64),
        fabric=fabric,
        translations_m=translations,
        max_push_m=pushed,
        min_clearance_m=clearance,
        report={
            "neck_y_m": round(marks.neck_y, 4),
            "waist_y_m": round(marks.waist_y, 4),
            "translations_m": translations,
            "max_push_m": round(pushed, 4),
            "pinned": len(pinned),
        },
    )
