"""How a garment sits on the body it was authored on, so it can be carried onto any twin.

A binding gives every garment vertex a point on its authoring body (three body points and
barycentric weights, as MakeHuman's `.mhclo` does) and an offset from that point. MakeHuman adds
the offset in world axes, which is right on its own morphs of one body in one pose; a twin
stands otherwise (arms at 45°, a lunge), so here the offset is kept in the frame of the three
body points (edge, in-plane perpendicular, normal) and turns with the body surface.

Bindings come from a `.mhclo` (`from_proxy_fit`), or from the closest points of an avatar mesh
exported beside the garment (`bind_to_surface`); `place` puts the garment on the authoring
body's points as they lie on the twin (`body.correspondence`). The placed garment keeps its
true size: the rest shape of the cloth stays the garment as authored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

Array = NDArray[np.float64]
DEGENERATE_AREA_M2 = 1e-12


@dataclass(frozen=True)
class ProxyBinding:
    """Where each garment vertex sits on the authoring body, in the authoring body's units.

    `ref_vertices` (N, 3) index the base mesh, `weights` (N, 3) blend them, `offsets` (N, 3) are
    added after scaling by `scale_refs`: per axis (x, y, z) a pair of base vertices and the
    distance between them that the offsets were authored for (None: scale 1).
    """

    basemesh: str
    ref_vertices: NDArray[np.int64]
    weights: NDArray[np.float64]
    offsets: NDArray[np.float64]
    scale_refs: tuple[tuple[int, int, float] | None, ...]
    name: str = ""
    obj_file: str = ""
    delete_vertices: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def vertex_count(self) -> int:
        return len(self.ref_vertices)

    def axis_scales(self, base_vertices: NDArray[np.floating]) -> NDArray[np.float64]:
        """Per-axis offset scale on a body whose base-mesh vertices are `base_vertices`."""
        scales = np.ones(3)
        for axis, ref in enumerate(self.scale_refs):
            if ref is None:
                continue
            i, j, authored = ref
            scales[axis] = abs(float(base_vertices[i, axis] - base_vertices[j, axis])) / authored
        return scales

    def fit(self, base_vertices: NDArray[np.floating]) -> NDArray[np.float64]:
        """Garment vertex positions on a body given as base-mesh vertices (MakeHuman's fit)."""
        v = np.asarray(base_vertices, dtype=np.float64)
        points = np.einsum("nk,nkd->nd", self.weights, v[self.ref_vertices])
        return points + self.offsets * self.axis_scales(v)

    def to_json(self) -> dict[str, Any]:
        return {
            "basemesh": self.basemesh,
            "name": self.name,
            "vertices": self.vertex_count,
            "scale_refs": [list(r) if r else None for r in self.scale_refs],
        }


def _frames(points: Array, ref: NDArray[np.int64]) -> tuple[Array, NDArray[np.bool_]]:
    """(N, 3, 3) orthonormal frames (rows: edge, in-plane, normal) of each triangle of points,
    and which triangles were too small to have one (their frame is the world's)."""
    a, b, c = points[ref[:, 0]], points[ref[:, 1]], points[ref[:, 2]]
    e1 = b - a
    n = np.cross(e1, c - a)
    area2 = np.linalg.norm(n, axis=1)
    len1 = np.linalg.norm(e1, axis=1)
    bad = (area2 < 2 * DEGENERATE_AREA_M2) | (len1 < 1e-9)
    e1 = e1 / np.maximum(len1, 1e-12)[:, None]
    n = n / np.maximum(area2, 1e-12)[:, None]
    e2 = np.cross(n, e1)
    frames = np.stack([e1, e2, n], axis=1)
    frames[bad] = np.eye(3)
    return frames, bad


@dataclass(frozen=True)
class GarmentBinding:
    """Per garment vertex: authoring-body point indices, weights and a local offset (metres)."""

    ref: NDArray[np.int64]  # (N, 3) rows into the authoring body's bound points
    weights: Array  # (N, 3) barycentric, summing to 1
    local_offset_m: Array  # (N, 3) offset in the (edge, in-plane, normal) frame of `ref`
    authoring: str  # "hm08" (MakeHuman base mesh) or "avatar"

    @property
    def vertex_count(self) -> int:
        return len(self.ref)

    @classmethod
    def from_positions(
        cls,
        positions_m: Array,
        body_points_m: Array,
        ref: NDArray[np.int64],
        weights: Array,
        authoring: str,
    ) -> GarmentBinding:
        """The binding that reproduces `positions_m` on the authoring body's `body_points_m`."""
        anchor = np.einsum("nk,nkd->nd", weights, body_points_m[ref])
        frames, _ = _frames(body_points_m, ref)
        local = np.einsum("nij,nj->ni", frames, positions_m - anchor)
        return cls(ref.astype(np.int64), weights.astype(np.float64), local, authoring)

    def place(self, body_points_m: Array) -> Array:
        """Garment vertex positions on a body whose bound points are `body_points_m`."""
        anchor = np.einsum("nk,nkd->nd", self.weights, body_points_m[self.ref])
        frames, _ = _frames(body_points_m, self.ref)
        return anchor + np.einsum("nij,ni->nj", frames, self.local_offset_m)

    def subset(self, rows: NDArray[np.int64]) -> GarmentBinding:
        """The binding of the garment vertices `rows` (after a weld or a vertex selection)."""
        return GarmentBinding(
            self.ref[rows], self.weights[rows], self.local_offset_m[rows], self.authoring
        )


def from_proxy_fit(
    fitted_m: Array,
    body_points_m: Array,
    ref: NDArray[np.int64],
    weights: Array,
) -> GarmentBinding:
    """A `.mhclo` fit (positions it gives on hm08) as a binding with local-frame offsets."""
    return GarmentBinding.from_positions(fitted_m, body_points_m, ref, weights, "hm08")


def bind_to_surface(
    positions_m: Array, body_vertices_m: Array, body_faces: NDArray[np.int64]
) -> GarmentBinding:
    """Bind each garment vertex to the closest point of an avatar surface (its triangle's
    corners and barycentric weights), the offset being the rest of the way to the vertex."""
    from spatialtwin.garment.embedding import embed_points

    embedding = embed_points(positions_m, body_vertices_m, body_faces)
    corners = np.asarray(body_faces, dtype=np.int64)[embedding.triangle]
    return GarmentBinding.from_positions(
        positions_m, body_vertices_m, corners, embedding.barycentric, "avatar"
    )


def match_vertices(points: Array, reference: Array, tolerance: float) -> NDArray[np.int64]:
    """Index into `reference` of each point (same positions, any order); raises ValueError
    when a point has no reference within `tolerance` (units of the arrays)."""
    dist, idx = cKDTree(reference).query(points)
    if len(dist) and float(dist.max()) > tolerance:
        raise ValueError(f"{int(np.sum(dist > tolerance))} points have no match")
    return np.asarray(idx, dtype=np.int64)


@dataclass(frozen=True)
class AuthoringBody:
    """The body a garment was made on, rigged, in the twin frame (metres, feet on y = 0).

    `points_m` are the points a garment can be bound to (hm08: every base-mesh vertex, helper
    shells included; an avatar: its own vertices), `point_skin` their skin weights on the
    canonical skeleton and `skin_index[i]` the row of `points_m` of `body` vertex i.
    For hm08, `proxy` is the garment's `.mhclo` and `proxy_source_positions` the garment OBJ's
    `v` lines in file order (what the `.mhclo` indexes). For an avatar, `source_transform` takes
    the garment file's coordinates into the twin frame (the avatar's own import transform).
    """

    kind: str  # "hm08" | "avatar"
    body: Any  # TwinBody (kept untyped here to avoid a cycle with body.correspondence)
    points_m: Array
    point_skin: Any  # SkinWeights
    skin_index: NDArray[np.int64]
    proxy: ProxyBinding | None = None
    proxy_source_positions: Array | None = None
    source_transform: Array = field(default_factory=lambda: np.eye(4))
    # hm08 in its own bind pose, for template-made bodies (hm08, estimated): the refit makes
    # a stand-in of the twin's measurements from it, so the two bodies share one topology.
    template_body: Any = None

    @classmethod
    def from_template(
        cls,
        template: Any,
        proxy: ProxyBinding | None = None,
        obj_positions: Array | None = None,
    ) -> AuthoringBody:
        """hm08 (a `body.template.TemplateBody`) as an authoring body, with a `.mhclo`."""
        return cls(
            kind=template.name,
            body=template.body,
            points_m=template.base_vertices_m,
            point_skin=template.base_skin,
            skin_index=template.body_base_index,
            proxy=proxy,
            proxy_source_positions=obj_positions,
            template_body=template.body,
        )

    @classmethod
    def from_avatar(cls, body: Any, transform: Array) -> AuthoringBody:
        """An avatar imported as a twin (`body`), `transform` its file-to-twin transform."""
        return cls(
            kind="avatar",
            body=body,
            points_m=body.vertices_m,
            point_skin=body.skin,
            skin_index=np.arange(body.vertex_count),
            source_transform=np.asarray(transform, dtype=np.float64),
        )

    def garment_positions(self, source_vertices: Array) -> tuple[Array, str]:
        """The garment's vertices (file units) as worn on this body, metres; and why."""
        if self.proxy is not None:
            if self.proxy_source_positions is None:
                raise ValueError("a .mhclo binding needs the OBJ's vertex positions")
            if len(self.proxy_source_positions) != self.proxy.vertex_count:
                raise ValueError(
                    f"the .mhclo binds {self.proxy.vertex_count} vertices but the OBJ has "
                    f"{len(self.proxy_source_positions)}"
                )
            extent = float(np.ptp(self.proxy_source_positions, axis=0).max())
            rows = match_vertices(source_vertices, self.proxy_source_positions, 1e-6 * extent)
            fitted = self.proxy.fit(self.points_m)
            return fitted[rows], f"fitted by its .mhclo onto {self.proxy.basemesh} (metres)"
        t = self.source_transform
        return source_vertices @ t[:3, :3].T + t[:3, 3], "in the authoring body's frame"

    def bind(self, positions_m: Array, tolerance_m: float) -> GarmentBinding:
        """The binding of garment vertices at `positions_m` (as worn on this body)."""
        if self.proxy is not None:
            fitted = self.proxy.fit(self.points_m)
            rows = match_vertices(positions_m, fitted, tolerance_m)
            return GarmentBinding.from_positions(
                positions_m,
                self.points_m,
                self.proxy.ref_vertices[rows],
                self.proxy.weights[rows],
                self.kind,
            )
        welded_v, welded_f = self.body.welded()
        keep = np.unique(self.body.weld_map) if self.body.weld_map is not None else None
        binding = bind_to_surface(positions_m, welded_v, welded_f)
        if keep is not None:  # welded rows back to body vertex → point rows
            binding = GarmentBinding(
                self.skin_index[keep][binding.ref],
                binding.weights,
                binding.local_offset_m,
                self.kind,
            )
        return binding
