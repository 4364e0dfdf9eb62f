"""A look's garment made ready for the live loop: its settled drape, cloth levels, stream order.

A mirror session starts every garment from the look's static drape (`garment.look.drape_look`,
at the twin's bind pose), so the first live frame is cloth at rest on a body at rest and nothing
has to settle or explode. Built once per garment per session, in steps:

1. **stream order**: the draped cloth's vertices reordered so that consecutive vertices are
   mesh neighbours (`gltf.vertex_stream.coherent_vertex_order`); this is the display mesh the
   client is sent and the order of every vertex-stream frame,
2. **level 0**: the cloth model of that mesh (the garment's own rest shape and pins, as the
   drape had them),
3. **coarser levels** for adaptive quality: the rest mesh coarsened to longer edges by edge
   collapse and Delaunay flips (`garment.remesh`: hems and openings keep their vertices, the
   surface stays where it was; a level is kept only if it has clearly fewer vertices),
   each bound both ways to the display mesh on the rest shapes (`garment.embedding`'s
   binding, applied by a compiled kernel, `Binding`): its
   vertices on the display mesh (to start it from the state of a finer level) and the display
   vertices on it (so the client always gets the same mesh, whatever level simulates it).
   Pins carry over where a coarse vertex sits mostly on pinned display vertices,
4. **settle for the live solver**: the look was draped with the static drape's settings (20
   substeps, self-collision, extra damping); the live loop steps with fewer substeps, whose
   cloth is a little softer, so left as it is the drape would sag and swing for a second as
   the session starts (9 cm at 10 substeps). A second of live steps on the body at rest
   (`settle_frames`) starts the session at the live solver's own equilibrium,
5. **skin weights** of the drape (`garment.look.transfer_skin_weights`), to carry it into the
   current pose when the garment is switched in mid-session.

Example:
    look = drape_look(body, [look_garment])
    live = build_live_garment(look_garment, look.garments[0], body, stream=0)
    live.levels[1].vertex_count  # the coarser simulation mesh
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np
from numpy.typing import NDArray

from spatialtwin.body.pose import Pose
from spatialtwin.body.skinning import SkinWeights
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.cloth.fabric import Fabric
from spatialtwin.cloth.kernels import vertex_normals
from spatialtwin.cloth.model import ClothModel, build_cloth_model
from spatialtwin.cloth.solver import ClothSim, SolverSettings
from spatialtwin.errors import SpatialTwinError
from spatialtwin.garment.embedding import embed_points
from spatialtwin.garment.look import DrapedGarment, LookGarment, transfer_skin_weights
from spatialtwin.garment.mesh import GarmentMesh, triangle_areas
from spatialtwin.garment.remesh import collapse_short_edges, flip_to_delaunay
from spatialtwin.gltf.vertex_stream import coherent_vertex_order
from spatialtwin.live.body import WeldedSkinner

LIVE_SUBSTEPS = 15  # SolverSettings' live budget


@dataclass(frozen=True)
class LevelOptions:
    """Coarser cloth levels: target edge lengths as multiples of the display mesh's median
    edge, coarse last; a level is kept only when it has at most `max_vertex_ratio` of the
    previous kept level's vertices. Vertex count goes as 1/edge², so (1.4, 2.0) makes levels
    of about 1/2 and 1/4 of the vertices."""

    coarse_edge_factors: tuple[float, ...] = (1.4, 2.0)
    max_vertex_ratio: float = 0.8
    collapse_rounds: int = 24
    # the live solver's substeps (a session must step with the same) and the settling
    substeps: int = LIVE_SUBSTEPS
    settle_frames: int = 30


LEVEL_DEFAULTS = LevelOptions()


@nb.njit(cache=True, nogil=True)
def _frame_at(v, n, faces, f, w0, w1, w2, out):
    """Rows tangent, bitangent, normal (3, 3) of the local frame at a bound point: the normal
    blended from the corners' vertex normals (the face's where that cancels), the tangent the
    triangle's first edge made orthogonal to it (as `garment.embedding` defines the frame)."""
    a = faces[f, 0]
    b = faces[f, 1]
    c = faces[f, 2]
    nx = w0 * n[a, 0] + w1 * n[b, 0] + w2 * n[c, 0]
    ny = w0 * n[a, 1] + w1 * n[b, 1] + w2 * n[c, 1]
    nz = w0 * n[a, 2] + w1 * n[b, 2] + w2 * n[c, 2]
    length = math.sqrt(nx * nx + ny * ny + nz * nz)
    if length < 1e-12:
        ux, uy, uz = v[b, 0] - v[a, 0], v[b, 1] - v[a, 1], v[b, 2] - v[a, 2]
        wx, wy, wz = v[c, 0] - v[a, 0], v[c, 1] - v[a, 1], v[c, 2] - v[a, 2]
        nx, ny, nz = uy * wz - uz * wy, uz * wx - ux * wz, ux * wy - uy * wx
        length = math.sqrt(nx * nx + ny * ny + nz * nz)
        if length < 1e-12:
            nx, ny, nz, length = 0.0, 1.0, 0.0, 1.0
    nx /= length
    ny /= length
    nz /= length
    ex, ey, ez = v[b, 0] - v[a, 0], v[b, 1] - v[a, 1], v[b, 2] - v[a, 2]
    d = ex * nx + ey * ny + ez * nz
    ex -= d * nx
    ey -= d * ny
    ez -= d * nz
    el = math.sqrt(ex * ex + ey * ey + ez * ez)
    if el < 1e-12:
        hx, hy, hz = (1.0, 0.0, 0.0) if abs(nx) < 0.9 else (0.0, 0.0, 1.0)
        ex, ey, ez = ny * hz - nz * hy, nz * hx - nx * hz, nx * hy - ny * hx
        el = math.sqrt(ex * ex + ey * ey + ez * ez)
    ex /= el
    ey /= el
    ez /= el
    out[0, 0], out[0, 1], out[0, 2] = ex, ey, ez
    out[1, 0], out[1, 1], out[1, 2] = ny * ez - nz * ey, nz * ex - nx * ez, nx * ey - ny * ex
    out[2, 0], out[2, 1], out[2, 2] = nx, ny, nz


@nb.njit(cache=True, nogil=True)
def _carry(v, faces, triangle, bary, offset, inverse, points, out):
    """Bound points on the mesh `v` (`inverse` False: out = base + frameᵀ·offset), or the
    offsets of `points` in those frames (`inverse` True: out = frame·(point − base))."""
    n = vertex_normals(v, faces)
    frame = np.empty((3, 3))
    for p in range(triangle.shape[0]):
        f = triangle[p]
        w0, w1, w2 = bary[p, 0], bary[p, 1], bary[p, 2]
        _frame_at(v, n, faces, f, w0, w1, w2, frame)
        a = faces[f, 0]
        b = faces[f, 1]
        c = faces[f, 2]
        for k in range(3):
            base = w0 * v[a, k] + w1 * v[b, k] + w2 * v[c, k]
            if inverse:
                out[p, k] = 0.0
            else:
                out[p, k] = base
        if inverse:
            for r in range(3):
                acc = 0.0
                for k in range(3):
                    base = w0 * v[a, k] + w1 * v[b, k] + w2 * v[c, k]
                    acc += frame[r, k] * (points[p, k] - base)
                out[p, r] = acc
        else:
            for k in range(3):
                out[p, k] += (
                    offset[p, 0] * frame[0, k]
                    + offset[p, 1] * frame[1, k]
                    + offset[p, 2] * frame[2, k]
                )


@dataclass(frozen=True)
class Binding:
    """Points carried by a mesh (closest triangle, barycentric weights, offset in the local
    frame: `garment.embedding`'s binding), applied by a compiled kernel because a live frame
    carries thousands of them (numpy: 20 ms for 9k points; this: well under 1 ms)."""

    faces: NDArray[np.int32]  # (F, 3) of the driving mesh
    vertex_count: int
    triangle: NDArray[np.int64]  # (P,)
    barycentric: NDArray[np.float64]  # (P, 3)
    offset_local_m: NDArray[np.float64]  # (P, 3)

    @classmethod
    def of(
        cls, points_m: NDArray[np.float64], vertices_m: NDArray[np.float64], faces: NDArray
    ) -> Binding:
        e = embed_points(points_m, vertices_m, faces)
        f = np.ascontiguousarray(faces, dtype=np.int32)
        v = np.ascontiguousarray(vertices_m, dtype=np.float64)
        offset = np.empty((len(e.triangle), 3))
        none = np.zeros((0, 3))
        p = np.ascontiguousarray(points_m, dtype=np.float64)
        _carry(v, f, e.triangle, e.barycentric, none, True, p, offset)
        return cls(f, len(v), e.triangle, np.ascontiguousarray(e.barycentric), offset)

    def apply(self, vertices_m: NDArray[np.float64]) -> NDArray[np.float64]:
        v = np.ascontiguousarray(vertices_m, dtype=np.float64)
        if v.shape != (self.vertex_count, 3):
            raise SpatialTwinError(
                "binding_mismatch", "the driving mesh changed", {"shape": list(v.shape)}
            )
        out = np.empty((len(self.triangle), 3))
        _carry(v, self.faces, self.triangle, self.barycentric, self.offset_local_m, False, v, out)
        return out

    def interpolate(self, values: NDArray[np.float64]) -> NDArray[np.float64]:
        """Per-vertex values of the driving mesh (N,) or (N, k), blended at each point."""
        x = np.asarray(values, dtype=np.float64)
        corners = x[self.faces[self.triangle]]
        return np.einsum("pk,pk...->p...", self.barycentric, corners)


@dataclass(frozen=True)
class ClothLevel:
    """One simulation mesh of a garment. Level 0 is the display mesh itself (no bindings)."""

    index: int
    model: ClothModel
    edge_m: float  # median rest edge length
    on_display: Binding | None  # this level's vertices bound to the display rest mesh
    display_on_level: Binding | None  # the display vertices bound to this level's rest mesh

    @property
    def vertex_count(self) -> int:
        return self.model.vertex_count


@dataclass(frozen=True)
class LiveGarment:
    """What a session needs of one garment; vertex arrays are in stream order."""

    key: str
    stream: int
    fabric: Fabric
    levels: tuple[ClothLevel, ...]
    drape_positions_m: NDArray[np.float64]  # (N, 3) the look's cloth settled live, bind pose
    display_faces: NDArray[np.int64]  # (F, 3) the mesh the client draws
    display_corner_uvs: NDArray[np.float32] | None  # (F, 3, 2)
    base_color: tuple[float, float, float, float]
    skin: SkinWeights  # of the drape, borrowed from the body under it
    meta: dict

    @property
    def vertex_count(self) -> int:
        return len(self.drape_positions_m)

    def level_positions(
        self, level: int, display_positions_m: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """A level's vertex positions from display positions (e.g. another level's output)."""
        binding = self.levels[level].on_display
        return display_positions_m.copy() if binding is None else binding.apply(display_positions_m)

    def level_values(self, level: int, display_values: NDArray[np.float64]) -> NDArray:
        """Per-vertex values (velocities) of the display mesh carried onto a level."""
        binding = self.levels[level].on_display
        return display_values.copy() if binding is None else binding.interpolate(display_values)

    def display_positions(self, level: int, positions_m: NDArray[np.float64]) -> NDArray:
        """Display vertex positions from a level's simulated positions."""
        binding = self.levels[level].display_on_level
        return positions_m if binding is None else binding.apply(positions_m)


def _median_edge_m(vertices: NDArray[np.float64], faces: NDArray[np.int64]) -> float:
    e = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    return float(np.median(np.linalg.norm(vertices[e[:, 0]] - vertices[e[:, 1]], axis=1)))


def _settled(
    model: ClothModel, positions_m: NDArray[np.float64], body: TwinBody, options: LevelOptions
) -> NDArray[np.float64]:
    """The drape after `settle_frames` live steps on the body at rest (its live equilibrium)."""
    skinner = WeldedSkinner(body)
    rest = skinner.posed(Pose.rest())
    settings = SolverSettings(substeps=options.substeps)
    sim = ClothSim(model, rest, skinner.faces, positions_m, settings)
    for _ in range(options.settle_frames):
        sim.advance(1.0 / 30.0)
    return sim.state.positions_m.copy()


def build_live_garment(
    garment: LookGarment,
    draped: DrapedGarment,
    body: TwinBody,
    stream: int = 0,
    options: LevelOptions = LEVEL_DEFAULTS,
) -> LiveGarment:
    """Steps 1–5 of the module doc for one garment of a look draped at `body`'s bind pose."""
    if draped.rest_positions_m is None or draped.pinned is None:
        raise SpatialTwinError(
            "live_garment_incomplete",
            "the draped garment lacks its rest shape and pins; drape it with drape_look",
            {"garment": draped.key},
        )
    n = len(draped.positions_m)
    # (1) stream order
    order = coherent_vertex_order(draped.faces, n)
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    faces = inverse[np.asarray(draped.faces, dtype=np.int64)]
    rest = np.asarray(draped.rest_positions_m, dtype=np.float64)[order]
    drape = np.asarray(draped.positions_m, dtype=np.float64)[order]
    pinned = np.sort(inverse[np.asarray(draped.pinned, dtype=np.int64)])
    # (2) level 0: the display mesh
    fabric = garment.fabric
    model0 = build_cloth_model(rest, faces, fabric, pinned=pinned, rest_positions_m=rest)
    levels = [ClothLevel(0, model0, _median_edge_m(rest, faces), None, None)]
    # (3) coarser levels
    is_pinned = np.zeros(n)
    is_pinned[pinned] = 1.0
    sheet = GarmentMesh(
        vertices_m=rest,
        faces=faces,
        corner_uvs=None,
        face_material=np.zeros(len(faces), dtype=np.int32),
        face_piece=np.zeros(len(faces), dtype=np.int32),
    )
    edge0 = levels[0].edge_m
    for factor in options.coarse_edge_factors:
        target = factor * edge0
        coarse = collapse_short_edges(
            sheet, 0.8 * target, 4.0 / 3.0 * target, rounds=options.collapse_rounds
        )
        coarse = flip_to_delaunay(coarse)
        coarse = coarse.keep_faces(triangle_areas(coarse.vertices_m, coarse.faces) > 1e-12)
        if coarse.vertex_count > options.max_vertex_ratio * levels[-1].vertex_count:
            continue
        cv, cf = coarse.vertices_m, np.asarray(coarse.faces, dtype=np.int64)
        on_display = Binding.of(cv, rest, faces)
        pin_share = on_display.interpolate(is_pinned)
        coarse_pins = np.flatnonzero(pin_share >= 0.5)
        if len(pinned) and not len(coarse_pins):
            coarse_pins = np.array([int(np.argmax(pin_share))])
        model = build_cloth_model(cv, cf, fabric, pinned=coarse_pins, rest_positions_m=cv)
        display_on = Binding.of(rest, cv, cf)
        levels.append(
            ClothLevel(len(levels), model, _median_edge_m(cv, cf), on_display, display_on)
        )
    # (4) settle with the live solver on the body at rest
    if options.settle_frames > 0:
        drape = _settled(model0, drape, body, options)
    # (5) skin weights of the drape
    skin = transfer_skin_weights(body, drape)
    uvs = draped.corner_uvs
    return LiveGarment(
        key=draped.key,
        stream=stream,
        fabric=fabric,
        levels=tuple(levels),
        drape_positions_m=drape,
        display_faces=faces,
        display_corner_uvs=None if uvs is None else np.asarray(uvs, dtype=np.float32),
        base_color=tuple(draped.base_color),  # type: ignore[arg-type]
        skin=skin,
        meta=dict(draped.meta),
    )
