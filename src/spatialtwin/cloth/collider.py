"""Collision geometry the garment is simulated against: the posed body surface and spheres.

`BodyCollider` keeps the body's previous and current posed vertices; once per frame
`detect_contacts` finds, for every garment vertex near the body, the closest body triangle
(uniform grid over body vertices, then the one-ring triangles of the nearest vertex). The
kernels then move that triangle from the previous to the current pose substep by substep, so a
limb that moves several centimetres in a frame pushes the cloth instead of tunnelling through.
The body mesh changes every frame, so nothing here is built once: the grid is rebuilt per
frame over the garment's neighbourhood only, in O(vertices).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numpy.typing import NDArray

from spatialtwin.cloth.kernels import closest_point_on_triangle
from spatialtwin.errors import SpatialTwinError


def vertex_face_adjacency(
    faces: NDArray[np.integer], n_vertices: int
) -> tuple[NDArray[np.int64], NDArray[np.int32]]:
    """CSR (offsets (N+1,), face ids) of the faces around each vertex."""
    f = np.asarray(faces, dtype=np.int64)
    corner_vertex = f.ravel()
    corner_face = np.repeat(np.arange(len(f), dtype=np.int32), 3)
    order = np.argsort(corner_vertex, kind="stable")
    counts = np.bincount(corner_vertex, minlength=n_vertices)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return offsets, corner_face[order]


@nb.njit(cache=True)
def _detect(x, body, faces, vf_off, vf_idx, radius, out_tri, out_dist):
    n = x.shape[0]
    lo = np.empty(3)
    hi = np.empty(3)
    for k in range(3):
        lo[k] = x[0, k]
        hi[k] = x[0, k]
    for i in range(n):
        for k in range(3):
            lo[k] = min(lo[k], x[i, k])
            hi[k] = max(hi[k], x[i, k])
    # small cells searched shell by shell: contact vertices find their nearest body vertex in
    # the first shell, only far ones pay for the full radius
    cell = min(radius, 0.02)
    for k in range(3):
        lo[k] -= radius
        hi[k] += radius
    dims = np.empty(3, dtype=np.int64)
    total = 1
    for k in range(3):
        dims[k] = max(1, math.ceil((hi[k] - lo[k]) / cell))
        total *= dims[k]
    # grow cells if the box is huge relative to the radius (bounded memory)
    while total > 4_000_000:
        cell *= 1.5
        total = 1
        for k in range(3):
            dims[k] = max(1, math.ceil((hi[k] - lo[k]) / cell))
            total *= dims[k]
    m = body.shape[0]
    cell_of = np.full(m, -1, dtype=np.int64)
    counts = np.zeros(total + 1, dtype=np.int64)
    for j in range(m):
        ix = int((body[j, 0] - lo[0]) / cell)
        iy = int((body[j, 1] - lo[1]) / cell)
        iz = int((body[j, 2] - lo[2]) / cell)
        if body[j, 0] < lo[0] or body[j, 1] < lo[1] or body[j, 2] < lo[2]:
            continue
        if ix >= dims[0] or iy >= dims[1] or iz >= dims[2]:
            continue
        c = (ix * dims[1] + iy) * dims[2] + iz
        cell_of[j] = c
        counts[c + 1] += 1
    for c in range(total):
        counts[c + 1] += counts[c]
    fill = counts[:-1].copy()
    items = np.empty(counts[total], dtype=np.int64)
    for j in range(m):
        c = cell_of[j]
        if c >= 0:
            items[fill[c]] = j
            fill[c] += 1
    r2 = radius * radius
    for i in range(n):
        out_tri[i] = -1
        out_dist[i] = np.inf
        ix = int((x[i, 0] - lo[0]) / cell)
        iy = int((x[i, 1] - lo[1]) / cell)
        iz = int((x[i, 2] - lo[2]) / cell)
        best = -1
        best_d2 = r2 * 4.0
        shells = math.ceil(radius / cell)
        for k in range(shells + 1):
            for ax in range(max(ix - k, 0), min(ix + k + 1, dims[0])):
                for ay in range(max(iy - k, 0), min(iy + k + 1, dims[1])):
                    rim = abs(ax - ix) == k or abs(ay - iy) == k
                    az_step = 1 if (rim or k == 0) else 2 * k  # inner cells: earlier shells
                    for az in range(iz - k, iz + k + 1, az_step):
                        if az < 0 or az >= dims[2]:
                            continue
                        c = (ax * dims[1] + ay) * dims[2] + az
                        for q in range(counts[c], counts[c + 1]):
                            j = items[q]
                            dx = x[i, 0] - body[j, 0]
                            dy = x[i, 1] - body[j, 1]
                            dz = x[i, 2] - body[j, 2]
                            d2 = dx * dx + dy * dy + dz * dz
                            if d2 < best_d2:
                                best_d2 = d2
                                best = j
            # anything in an outer shell is at least k·cell away
            if best >= 0 and best_d2 <= (k * cell) ** 2:
                break
        if best < 0:
            continue
        tbest = -1
        tbest_d2 = np.inf
        for q in range(vf_off[best], vf_off[best + 1]):
            f = vf_idx[q]
            a = faces[f, 0]
            b = faces[f, 1]
            cc = faces[f, 2]
            u, v, w = closest_point_on_triangle(
                x[i, 0],
                x[i, 1],
                x[i, 2],
                body[a, 0],
                body[a, 1],
                body[a, 2],
                body[b, 0],
                body[b, 1],
                body[b, 2],
                body[cc, 0],
                body[cc, 1],
                body[cc, 2],
            )
            px = u * body[a, 0] + v * body[b, 0] + w * body[cc, 0]
            py = u * body[a, 1] + v * body[b, 1] + w * body[cc, 1]
            pz = u * body[a, 2] + v * body[b, 2] + w * body[cc, 2]
            d2 = (x[i, 0] - px) ** 2 + (x[i, 1] - py) ** 2 + (x[i, 2] - pz) ** 2
            if d2 < tbest_d2:
                tbest_d2 = d2
                tbest = f
        if tbest_d2 <= r2:
            out_tri[i] = tbest
            out_dist[i] = math.sqrt(tbest_d2)


@nb.njit(cache=True)
def _signed_distance_to_tri(x, body, faces, tri, out):
    for i in range(x.shape[0]):
        f = tri[i]
        if f < 0:
            out[i] = np.inf
            continue
        a = faces[f, 0]
        b = faces[f, 1]
        c = faces[f, 2]
        u, v, w = closest_point_on_triangle(
            x[i, 0],
            x[i, 1],
            x[i, 2],
            body[a, 0],
            body[a, 1],
            body[a, 2],
            body[b, 0],
            body[b, 1],
            body[b, 2],
            body[c, 0],
            body[c, 1],
            body[c, 2],
        )
        ex = body[b, 0] - body[a, 0]
        ey = body[b, 1] - body[a, 1]
        ez = body[b, 2] - body[a, 2]
        gx = body[c, 0] - body[a, 0]
        gy = body[c, 1] - body[a, 1]
        gz = body[c, 2] - body[a, 2]
        nx = ey * gz - ez * gy
        ny = ez * gx - ex * gz
        nz = ex * gy - ey * gx
        nl = math.sqrt(nx * nx + ny * ny + nz * nz)
        dx = x[i, 0] - (u * body[a, 0] + v * body[b, 0] + w * body[c, 0])
        dy = x[i, 1] - (u * body[a, 1] + v * body[b, 1] + w * body[c, 1])
        dz = x[i, 2] - (u * body[a, 2] + v * body[b, 2] + w * body[c, 2])
        dist = math.sqrt(dx * dx + dy * dy + dz * dz)
        side = dx * nx + dy * ny + dz * nz
        out[i] = dist if side >= 0.0 or nl == 0.0 else -dist


class BodyCollider:
    """The posed twin's surface at the previous and the current frame (metres, outward faces)."""

    def __init__(self, vertices_m: NDArray[np.floating], faces: NDArray[np.integer]) -> None:
        v = np.ascontiguousarray(vertices_m, dtype=np.float64)
        f = np.ascontiguousarray(faces, dtype=np.int32)
        if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
            raise SpatialTwinError(
                "bad_body_mesh",
                "body must be (N, 3) vertices and (F, 3) faces",
                {"vertices": list(v.shape), "faces": list(f.shape)},
            )
        if f.min() < 0 or f.max() >= len(v):
            raise SpatialTwinError(
                "bad_body_mesh",
                "body face index out of range",
                {"max_index": int(f.max()), "vertices": len(v)},
            )
        if not np.all(np.isfinite(v)):
            raise SpatialTwinError("bad_body_mesh", "body vertices contain NaN or inf", None)
        self.faces = f
        self.previous_m = v.copy()
        self.current_m = v.copy()
        self.vf_offsets, self.vf_faces = vertex_face_adjacency(f, len(v))

    def update(self, vertices_m: NDArray[np.floating]) -> None:
        """Advance one frame: the current pose becomes the previous one."""
        v = np.ascontiguousarray(vertices_m, dtype=np.float64)
        if v.shape != self.current_m.shape:
            raise SpatialTwinError(
                "bad_body_mesh",
                "posed body must keep its vertex count",
                {"expected": list(self.current_m.shape), "got": list(v.shape)},
            )
        if not np.all(np.isfinite(v)):
            raise SpatialTwinError("bad_body_mesh", "body vertices contain NaN or inf", None)
        self.previous_m, self.current_m = self.current_m, v.copy()

    def max_displacement_m(
        self, near_m: NDArray[np.float64] | None = None, reach_m: float = 0.1
    ) -> float:
        """Largest distance a body vertex moved since the previous frame.

        With `near_m` (garment positions) only body vertices within the garment's bounding box
        grown by `reach_m` count: a waving hand far from a skirt must not widen its search.
        """
        prev, cur = self.previous_m, self.current_m
        if near_m is not None and len(near_m):
            lo = near_m.min(axis=0) - reach_m
            hi = near_m.max(axis=0) + reach_m
            keep = np.all((prev >= lo) & (prev <= hi), axis=1)
            if not np.any(keep):
                return 0.0
            prev, cur = prev[keep], cur[keep]
        d = cur - prev
        return float(np.sqrt(np.max(np.einsum("ij,ij->i", d, d))))

    def detect_contacts(
        self, positions_m: NDArray[np.float64], radius_m: float, at_current: bool = False
    ) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
        """Closest body triangle (−1 if none within radius) and its distance, per garment vertex."""
        body = self.current_m if at_current else self.previous_m
        tri = np.empty(len(positions_m), dtype=np.int32)
        dist = np.empty(len(positions_m))
        _detect(
            np.ascontiguousarray(positions_m),
            body,
            self.faces,
            self.vf_offsets,
            self.vf_faces,
            float(radius_m),
            tri,
            dist,
        )
        return tri, dist

    def signed_distance(
        self, positions_m: NDArray[np.float64], radius_m: float = 0.05
    ) -> NDArray[np.float64]:
        """Signed distance (m, negative inside) to the current surface; +inf beyond radius."""
        x = np.ascontiguousarray(positions_m, dtype=np.float64)
        tri, _ = self.detect_contacts(x, radius_m, at_current=True)
        out = np.empty(len(x))
        _signed_distance_to_tri(x, self.current_m, self.faces, tri, out)
        return out
