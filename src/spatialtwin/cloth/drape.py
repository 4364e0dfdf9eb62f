"""Static drape: settle a garment on a posed body and report where it is tight.

`drape_garment` is the service function behind `spatialtwin drape` and `POST /api/v1/looks`:
garment mesh + fabric + pins in, settled positions + per-vertex strain out. Settling is the
dynamic solver run until the garment stops moving, with self-collision on; the body is static.

When it stops, and why (`DrapeResult.stop_reason`):

- ``"settled"``: the garment's kinetic energy per vertex, ½·Σ mᵢ|vᵢ|² / N with the masses of
  the cloth model, stayed below `SettleOptions.settle_ke_j_per_vertex` for
  `settle_window_frames` frames in a row (one quiet frame may be the turning point of a swing),
  after at least `min_frames`;
- ``"frame_limit"``: `max_frames` frames were simulated first;
- ``"time_limit"``: `time_limit_s` seconds of wall-clock time were spent first.

Only the first is `settled`; the residual energy is reported either way. The default threshold,
1e-10 J per vertex, is an rms speed of about 3 mm/s for the 20–30 mg vertices of a garment
remeshed at about 1 cm (0.1 mm of motion per frame at 30 fps): the solver's contact and
self-collision jitter on a garment at rest stays below it, a hem still swinging does not.

The model (`drape_model`) is `cloth.model`'s with one change for a garment that hangs: the
long-range attachments from every vertex to its nearest pin are as long as the cloth between
them (`surface_pin_tethers`), not as a zigzag of edges, so the garment cannot sag into the
difference (5–8 % of its length) while the solver converges.

Layers: with `layers` (garments already draped, inner first) the collider is the body plus
their outward-offset surface (`cloth.collider.LayeredCollider`), and the start positions are
first pushed out over them, so an outer garment lies over the inner one instead of cutting
through it.

Example:
    r = drape_garment(x, faces, fabric, body_v, body_f, pinned=waistband)
    r.settled, r.stop_reason, r.residual_ke_j_per_vertex
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.sparse.csgraph import dijkstra

from spatialtwin.cloth.collider import BodyCollider, DrapeLayer, LayeredCollider
from spatialtwin.cloth.contacts import Contacts
from spatialtwin.cloth.fabric import Fabric
from spatialtwin.cloth.fit_map import vertex_strain
from spatialtwin.cloth.model import ClothModel, build_cloth_model
from spatialtwin.cloth.solver import ClothSim, ClothState, SolverSettings, edge_stretch, step
from spatialtwin.cloth.topology import colour_order, hinge_stencils, long_range_tethers
from spatialtwin.errors import SpatialTwinError
from spatialtwin.geometry import unique_edges

DRAPE_SETTINGS = SolverSettings(substeps=20, self_collision=True, extra_damping_per_s=2.0)
STOP_REASONS = ("settled", "frame_limit", "time_limit")
# How far from the body (and beneath a layer) the final report looks for the body surface.
REPORT_RADIUS_M = 0.1
# Extra clearance, beyond the fabric's thickness and the contact margin, an outer garment is
# given over an inner one at the start, so the first frames do not begin in contact.
LAYER_START_MARGIN_M = 0.002


def _hinge_chords(
    rest_m: NDArray[np.float64], faces: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Pairs (c, d) of the vertices opposite each interior edge and the length of the straight
    line between them over the two triangles unfolded flat; left out where that line misses
    the shared edge (the way round its end is already a path of two edges).

    Unfolded, the line is a path on the cloth itself, so it is never shorter than the geodesic
    however the two triangles are folded (a 3D chord across a folded hem would be).
    """
    _, corners = hinge_stencils(faces)
    a, b, c, d = (rest_m[corners[:, k]] for k in (0, 1, 2, 5))
    ab = b - a
    length = np.linalg.norm(ab, axis=1)
    e = ab / np.maximum(length, 1e-12)[:, None]
    cx, dx = np.einsum("ij,ij->i", c - a, e), np.einsum("ij,ij->i", d - a, e)
    cy = np.linalg.norm(c - a - cx[:, None] * e, axis=1)
    dy = np.linalg.norm(d - a - dx[:, None] * e, axis=1)
    cross = cx + (dx - cx) * cy / np.maximum(cy + dy, 1e-12)
    ok = (cross > 0) & (cross < length) & (cy > 0) & (dy > 0)
    pairs = np.stack([corners[ok, 2], corners[ok, 5]], axis=1).astype(np.int64)
    return pairs, np.hypot(dx[ok] - cx[ok], cy[ok] + dy[ok])


# Hops up the tree of shortest paths from the pins at which a vertex is also tethered.
LOAD_PATH_HOPS = (4, 16, 64)


def surface_pin_tethers(
    rest_m: NDArray[np.floating],
    faces: NDArray[np.integer],
    pinned: NDArray[np.integer],
    seams: NDArray[np.integer] | None = None,
    hops: tuple[int, ...] = LOAD_PATH_HOPS,
) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
    """Long-range attachments (Kim, Chentanez and Müller 2012) at the cloth's own distance:
    every free vertex tethered to its nearest pin, and to the vertices `hops` steps up its
    shortest path towards it, each no farther than that path over the rest mesh's edges *and*
    across its triangle pairs unfolded flat (`_hinge_chords`).

    Over edges alone a path zigzags: on a 1.5 cm mesh it is 5–8 % longer than the cloth between
    the two points, and one Gauss–Seidel sweep per substep lets a hanging garment sag into that
    slack (an overall hung from its straps dropped 4–6 cm, the same with any fabric stiffness).
    The chords cut the zigzag to a couple of per cent while every path is still one the cloth
    could lie along, so the limit never resists a stretch-free drape. A tether to the pin alone
    holds only where the path is straight: one that curves over a shoulder or a chest lets the
    cloth below sag until the straight line is as long as the path. The tethers along the way
    (the load path: a trouser leg to its hip, a bib to its straps) hold each stretch of it.
    """
    x = np.asarray(rest_m, dtype=np.float64)
    pins = np.unique(np.asarray(pinned, dtype=np.int64))
    n = len(x)
    if len(pins) == 0:
        return np.zeros((0, 2), dtype=np.int32), np.zeros(0)
    pairs, weight = cloth_paths(x, faces, seams)
    weight = np.maximum(weight, 1e-9)
    ends = (np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]]))
    graph = sp.coo_matrix((np.concatenate([weight, weight]), ends), shape=(n, n)).tocsr()
    dist, parent, source = dijkstra(graph, indices=pins, min_only=True, return_predecessors=True)
    reached = np.isfinite(dist) & (source >= 0)
    free = np.setdiff1d(np.flatnonzero(reached), pins)
    out = [np.stack([source[free], free], axis=1)]
    lengths = [dist[free]]
    up = np.where(parent >= 0, parent, np.arange(n))  # a pin is its own parent
    ancestor = np.arange(n)
    for hop in range(1, max(hops, default=0) + 1):
        ancestor = up[ancestor]
        if hop in hops:
            # ancestors that are pins are tethered already (by the pin attachment above)
            sel = free[~np.isin(ancestor[free], pins)]
            out.append(np.stack([ancestor[sel], sel], axis=1))
            lengths.append(dist[sel] - dist[ancestor[sel]])
    return np.concatenate(out).astype(np.int32), np.concatenate(lengths)


def cloth_paths(
    rest_m: NDArray[np.float64],
    faces: NDArray[np.integer],
    seams: NDArray[np.integer] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Vertex pairs and the length of a path between them on the rest cloth: its edges, the
    unfolded chords across its triangle pairs (`_hinge_chords`) and its seams (length 0)."""
    f = np.asarray(faces, dtype=np.int64)
    edges = unique_edges(f)
    chords, chord_m = _hinge_chords(rest_m, f)
    sewn = np.zeros((0, 2), dtype=np.int64) if seams is None else np.asarray(seams, np.int64)
    pairs = np.concatenate([edges, chords, sewn.reshape(-1, 2)])
    length = np.concatenate(
        [
            np.linalg.norm(rest_m[edges[:, 0]] - rest_m[edges[:, 1]], axis=1),
            chord_m,
            np.zeros(len(sewn)),
        ]
    )
    return pairs, length


# The sheet's own long-range tethers depend on its rest shape alone, and one garment is draped
# on many twins: kept for the last few garments, by content (0.9 s of a 1.5 cm outfit's drape).
_TETHER_CACHE: OrderedDict[str, tuple[NDArray[np.int32], NDArray[np.float64]]] = OrderedDict()
_TETHER_CACHE_SIZE = 8
_TETHER_LOCK = threading.Lock()


def _long_range_tethers(
    rest_m: NDArray[np.float64], edges: NDArray[np.int32], rest_length_m: NDArray[np.float64]
) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
    """`cloth.topology.long_range_tethers` of a sheet, from the cache when it was seen."""
    order = np.lexsort((edges[:, 1], edges[:, 0]))  # the model's colour order is its own
    digest = hashlib.sha256()
    for part in (rest_m, edges[order], rest_length_m[order]):
        digest.update(np.ascontiguousarray(part).tobytes())
    key = digest.hexdigest()
    with _TETHER_LOCK:
        if key in _TETHER_CACHE:
            _TETHER_CACHE.move_to_end(key)
            pairs, lengths = _TETHER_CACHE[key]
            return pairs.copy(), lengths.copy()
    pairs, lengths = long_range_tethers(rest_m, edges, rest_length_m)
    with _TETHER_LOCK:
        _TETHER_CACHE[key] = (pairs.copy(), lengths.copy())
        while len(_TETHER_CACHE) > _TETHER_CACHE_SIZE:
            _TETHER_CACHE.popitem(last=False)
    return pairs, lengths


def drape_model(
    vertices_m: NDArray[np.floating],
    faces: NDArray[np.integer],
    fabric: Fabric,
    *,
    pinned: NDArray[np.integer] | list[int] | None = None,
    seams: NDArray[np.integer] | list[tuple[int, int]] | None = None,
    rest_positions_m: NDArray[np.floating] | None = None,
) -> ClothModel:
    """The cloth model of a static drape: `build_cloth_model`'s, its pins' long-range
    attachments measured over the cloth itself and along the way to each pin
    (`surface_pin_tethers`) instead of over edges to the pin alone."""
    model = build_cloth_model(
        vertices_m,
        faces,
        fabric,
        pinned=pinned,
        seams=seams,
        rest_positions_m=rest_positions_m,
        tethers=False,
    )
    rest = model.rest_positions_m
    t_pairs, t_len = _long_range_tethers(rest, model.edges, model.edge_rest_m)
    a_pairs, a_len = surface_pin_tethers(rest, model.faces, model.pinned, model.seams)
    # Never tighter than where the cloth starts: a garment the twin holds stretched (a size too
    # small) is not yanked towards its pins through the body; only further sag is stopped.
    start = np.asarray(vertices_m, dtype=np.float64)
    a_len = np.maximum(a_len, np.linalg.norm(start[a_pairs[:, 0]] - start[a_pairs[:, 1]], axis=1))
    t_pairs = np.concatenate([t_pairs, a_pairs])
    t_len = np.concatenate([t_len, a_len])
    order, _ = colour_order(t_pairs, model.vertex_count)
    return replace(
        model,
        tethers=np.ascontiguousarray(t_pairs[order], dtype=np.int32),
        tether_max_m=np.ascontiguousarray(t_len[order]),
    )


@dataclass(frozen=True)
class SettleOptions:
    """When a static drape stops (see the module doc). Frames are `dt` seconds long."""

    max_frames: int = 240
    min_frames: int = 30
    settle_ke_j_per_vertex: float = 1e-10
    settle_window_frames: int = 5
    time_limit_s: float = 60.0
    # Strain limiting (SolverSettings.strain_limit) runs for the first this many frames of the
    # static settle only: it removes the impact stretch friction would lock in, which happens
    # as the cloth lands. Later, where an edge cannot meet the limit (a row of pins a pose has
    # pulled apart), its once-a-frame snap fights the cloth's own equilibrium: the garment then
    # moves a little every frame and never settles.
    strain_limit_frames: int = 60

    def __post_init__(self) -> None:
        if not (1 <= self.max_frames <= 100_000 and self.min_frames >= 0):
            raise SpatialTwinError(
                "bad_drape_request",
                "max_frames must be 1..100000 and min_frames ≥ 0",
                {"max_frames": self.max_frames, "min_frames": self.min_frames},
            )
        if not (self.settle_ke_j_per_vertex > 0 and self.settle_window_frames >= 1):
            raise SpatialTwinError(
                "bad_drape_request",
                "settle_ke_j_per_vertex must be > 0 and settle_window_frames ≥ 1",
                {
                    "settle_ke_j_per_vertex": self.settle_ke_j_per_vertex,
                    "settle_window_frames": self.settle_window_frames,
                },
            )
        if self.strain_limit_frames < 0:
            raise SpatialTwinError(
                "bad_drape_request",
                "strain_limit_frames must be ≥ 0",
                {"strain_limit_frames": self.strain_limit_frames},
            )
        if not self.time_limit_s > 0:
            raise SpatialTwinError(
                "bad_drape_request", "time_limit_s must be > 0", {"time_limit_s": self.time_limit_s}
            )


SETTLE_DEFAULTS = SettleOptions()


@dataclass(frozen=True)
class DrapeResult:
    """Settled garment (metres), how it fits and how the settling ended."""

    positions_m: NDArray[np.float64]  # (N, 3)
    start_positions_m: NDArray[np.float64]  # (N, 3) after the push over inner layers
    strain: NDArray[np.float64]  # (N,) per-vertex stretch ≥ 0 (see fit_map.vertex_strain)
    mean_stretch: float  # mean over edges of length / rest − 1
    max_stretch: float
    body_clearance_m: NDArray[np.float64]  # (N,) signed distance to the body, < 0 inside
    min_body_clearance_m: float  # smallest of body_clearance_m
    layer_clearance_m: NDArray[np.float64]  # (N,) to the inner layers where they cover, +inf
    frames: int  # frames simulated
    settled: bool  # stop_reason == "settled"
    stop_reason: str  # "settled" | "frame_limit" | "time_limit"
    residual_ke_j_per_vertex: float  # kinetic energy per vertex at the end, joules
    max_speed_m_s: float  # fastest vertex at the end
    elapsed_s: float  # wall-clock time of the settling loop
    layer_push_m: float  # largest start push over inner layers (0 without layers)


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
    max_frames: int | None = None,
    min_frames: int | None = None,
    settle: SettleOptions = SETTLE_DEFAULTS,
    layers: Sequence[DrapeLayer] = (),
    model: ClothModel | None = None,
    motion_m: Sequence[NDArray[np.floating]] = (),
) -> DrapeResult:
    """Settle a garment, placed around the body, under gravity on the static posed body.

    Vertices and the body are in metres, +Y up. The garment must start outside the body (it is
    never rescaled to fit); `pinned` vertices stay where they are (waistbands, hangers),
    `seams` are vertex pairs sewn together, `rest_positions_m` the flat pattern if the
    garment's stress-free shape differs from its placement. `layers` are garments already
    draped beneath this one. Stops as `settle` says (`max_frames`/`min_frames` override its
    frame counts); a garment that does not settle is returned all the same, with
    `settled=False` and the reason, for the caller to report.

    `motion_m` are body vertex positions (same topology as `body_vertices_m`) the body passes
    through, one per frame, before it stands still in `body_vertices_m`: the garment starts
    around `motion_m[0]` and is simulated along the way (pins ride on the body like a belt), so
    a pose reached by moving carries the cloth with it instead of cutting through it.
    """
    if max_frames is not None or min_frames is not None:
        settle = SettleOptions(
            max_frames=settle.max_frames if max_frames is None else max_frames,
            min_frames=settle.min_frames if min_frames is None else min_frames,
            settle_ke_j_per_vertex=settle.settle_ke_j_per_vertex,
            settle_window_frames=settle.settle_window_frames,
            time_limit_s=settle.time_limit_s,
            strain_limit_frames=settle.strain_limit_frames,
        )
    # (1) gather: colliders, start positions over inner layers, the model
    x0 = np.asarray(garment_vertices_m, dtype=np.float64)
    body = BodyCollider(body_vertices_m, body_faces)
    layered = LayeredCollider(body_vertices_m, body_faces, tuple(layers)) if layers else None
    layer_push = 0.0
    if layered is not None:
        clearance = fabric.thickness_m + settings.contact_margin_m + LAYER_START_MARGIN_M
        x0, layer_push = layered.push_over_layers(x0, garment_faces, clearance)
    if model is None:
        model = drape_model(
            x0, garment_faces, fabric, pinned=pinned, seams=seams, rest_positions_m=rest_positions_m
        )
    motion_frames = 0
    if len(motion_m):
        began = time.perf_counter()
        # Pins ride on their own body triangles: shoulders and hips move apart in a pose.
        travel = ClothSim(
            model,
            motion_m[0],
            body_faces,
            positions_m=x0,
            settings=settings,
            pin_attachment="surface",
        )
        for frame_body in (*motion_m[1:], body_vertices_m):
            travel.step(frame_body, dt)
            motion_frames += 1
            if not np.isfinite(travel.state.positions_m).all():
                raise SpatialTwinError(
                    "drape_diverged",
                    "cloth simulation diverged while the body moved",
                    {"frame": motion_frames},
                    status=422,
                )
        x0 = travel.state.positions_m.copy()
        if layered is not None:
            x0, push = layered.push_over_layers(x0, garment_faces, clearance)
            layer_push = max(layer_push, push)
    start = body.signed_distance(x0, radius_m=0.05)
    inside = start < -0.005
    if np.mean(inside) > 0.01:
        raise SpatialTwinError(
            "garment_inside_body",
            "the garment starts inside the body; place it around the body first",
            {"vertices_inside": int(np.sum(inside)), "deepest_m": float(-np.min(start))},
            status=422,
        )
    # (2) run until settled or out of frames or time; the contacts are this drape's own
    collider = layered if layered is not None else body
    state = ClothState.at_rest(x0)
    contacts = Contacts()
    mass = model.vertex_mass_kg
    frames, quiet = 0, 0
    stop_reason = "frame_limit"
    ke = np.inf
    began = time.perf_counter()
    unlimited = replace(settings, strain_limit=0.0)
    for frames in range(1, settle.max_frames + 1):
        frame_settings = settings if frames <= settle.strain_limit_frames else unlimited
        step(model, state, state, None, collider, contacts, dt, frame_settings)
        v = state.velocities_m_s
        ke = float(0.5 * np.dot(mass, np.einsum("ij,ij->i", v, v)) / model.vertex_count)
        if not np.isfinite(ke):
            raise SpatialTwinError(
                "drape_diverged", "cloth simulation diverged", {"frame": frames}, status=422
            )
        quiet = quiet + 1 if ke < settle.settle_ke_j_per_vertex else 0
        if frames >= settle.min_frames and quiet >= settle.settle_window_frames:
            stop_reason = "settled"
            break
        if time.perf_counter() - began > settle.time_limit_s:
            stop_reason = "time_limit"
            break
    elapsed = time.perf_counter() - began
    # (3) measure the result against the body (not the layers) and the layers
    x = state.positions_m
    v = state.velocities_m_s
    stretch = edge_stretch(model, x)
    clearance = body.signed_distance(x, radius_m=REPORT_RADIUS_M)
    under = (
        layered.under_layers(x, REPORT_RADIUS_M) if layered is not None else np.full(len(x), np.inf)
    )
    return DrapeResult(
        positions_m=x.copy(),
        start_positions_m=x0,
        strain=vertex_strain(x, model.mesh_edges, model.mesh_edge_rest_m, model.vertex_count),
        mean_stretch=float(stretch.mean()),
        max_stretch=float(stretch.max()),
        body_clearance_m=clearance,
        min_body_clearance_m=float(np.min(clearance)),
        layer_clearance_m=under,
        frames=frames,
        settled=stop_reason == "settled",
        stop_reason=stop_reason,
        residual_ke_j_per_vertex=ke,
        max_speed_m_s=float(np.sqrt(np.max(np.einsum("ij,ij->i", v, v)))),
        elapsed_s=elapsed,
        layer_push_m=layer_push,
    )
