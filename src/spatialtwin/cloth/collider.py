"""Collision geometry the garment is simulated against: the posed body surface and spheres.

`BodyCollider` keeps the body's previous and current posed vertices (and area-weighted vertex
normals), and nothing else that changes: once per frame `detect_contacts` finds, for every
garment vertex near the body, the closest body triangle. Garment vertices resting on the skin
start from last frame's answer (a short walk over the body's vertex graph), which the caller
carries in the garment's own `Contacts` (see `cloth.contacts`), so one collider serves several
garments; the rest search a uniform grid over body vertices, then the one-ring triangles of the
nearest vertex. The kernels then move that triangle from the previous to the current pose
substep by substep, so a limb that moves several centimetres in a frame pushes the cloth
instead of tunnelling through; the contact normal is the Phong (vertex-normal) blend, which a
decimated body's sliver triangles cannot flip. The body mesh changes every frame, so the grid
is rebuilt per frame over the garment's neighbourhood only, in O(vertices).

Layers: `LayeredCollider` is the static posed body plus garments already draped on it
(`DrapeLayer`s), their triangles wound away from the body and moved out by their thickness
(`layer_shell`), so the next garment rests on them as on skin; `push_over_layers` lifts a
garment's start positions over them and `under_layers` measures what ended up beneath one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix, diags
from scipy.sparse.csgraph import connected_components

from spatialtwin.cloth.contacts import RECHECK_PERIOD, Contacts
from spatialtwin.cloth.kernels import closest_point_on_triangle, vertex_normals
from spatialtwin.errors import SpatialTwinError
from spatialtwin.geometry import coincident_groups


def vertex_vertex_adjacency(
    faces: NDArray[np.integer], n_vertices: int, vertices_m: NDArray[np.floating] | None = None
) -> tuple[NDArray[np.int64], NDArray[np.int32]]:
    """CSR (offsets (N+1,), neighbour ids) of the vertices sharing an edge with each vertex.

    With `vertices_m`, vertices at the same place (UV-seam duplicates) are neighbours too, so a
    walk over the graph crosses seams.
    """
    f = np.asarray(faces, dtype=np.int64)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    if vertices_m is not None:
        _, group = coincident_groups(vertices_m, decimals=6)
        order = np.argsort(group, kind="stable")
        same = group[order][1:] == group[order][:-1]
        e = np.concatenate([e, np.stack([order[:-1][same], order[1:][same]], axis=1)])
    e = np.concatenate([e, e[:, ::-1]])
    key = np.unique(e[:, 0] * n_vertices + e[:, 1])
    src, dst = key // n_vertices, key % n_vertices
    offsets = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n_vertices))])
    return offsets.astype(np.int64), dst.astype(np.int32)


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


@nb.njit(cache=True, nogil=True)
def _body_grid(x, body, cell_m, search_radius):
    """Uniform grid (CSR) over the body vertices within the garment's box grown by the search
    radius, in cells of `cell_m` searched shell by shell: contact vertices find their nearest
    body vertex in the first shell, only far ones pay for the full radius.
    """
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
    cell = cell_m
    for k in range(3):
        lo[k] -= search_radius
        hi[k] += search_radius
    dims = np.empty(3, dtype=np.int64)
    total = 1
    for k in range(3):
        dims[k] = max(1, math.ceil((hi[k] - lo[k]) / cell))
        total *= dims[k]
    while total > 4_000_000:  # bounded memory for a huge box
        cell *= 1.5
        total = 1
        for k in range(3):
            dims[k] = max(1, math.ceil((hi[k] - lo[k]) / cell))
            total *= dims[k]
    m = body.shape[0]
    cell_of = np.full(m, -1, dtype=np.int64)
    counts = np.zeros(total + 1, dtype=np.int64)
    for j in range(m):
        if body[j, 0] < lo[0] or body[j, 1] < lo[1] or body[j, 2] < lo[2]:
            continue
        ix = int((body[j, 0] - lo[0]) / cell)
        iy = int((body[j, 1] - lo[1]) / cell)
        iz = int((body[j, 2] - lo[2]) / cell)
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
    return lo, cell, dims, counts, items


@nb.njit(cache=True, nogil=True)
def _grid_nearest(px, py, pz, body, lo, cell, dims, counts, items, radius):
    """Nearest body vertex within about radius (−1 if none) and its squared distance."""
    ix = math.floor((px - lo[0]) / cell)
    iy = math.floor((py - lo[1]) / cell)
    iz = math.floor((pz - lo[2]) / cell)
    best = -1
    best_d2 = 4.0 * radius * radius
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
                        dx = px - body[j, 0]
                        dy = py - body[j, 1]
                        dz = pz - body[j, 2]
                        d2 = dx * dx + dy * dy + dz * dz
                        if d2 < best_d2:
                            best_d2 = d2
                            best = j
        # anything in an outer shell is at least k·cell away
        if best >= 0 and best_d2 <= (k * cell) ** 2:
            return best, best_d2
    return best, best_d2


@nb.njit(cache=True, nogil=True)
def _walk_nearest(px, py, pz, body, vv_off, vv_idx, start):
    """Greedy descent over the body's vertex graph to a vertex nearer than all its neighbours.

    Last frame's nearest vertex is a few edges at most from this frame's, so this costs a
    handful of distance checks instead of a grid search.
    """
    j = start
    dx = px - body[j, 0]
    dy = py - body[j, 1]
    dz = pz - body[j, 2]
    d2 = dx * dx + dy * dy + dz * dz
    for _ in range(16):
        best = j
        for q in range(vv_off[j], vv_off[j + 1]):
            k = vv_idx[q]
            ex = px - body[k, 0]
            ey = py - body[k, 1]
            ez = pz - body[k, 2]
            e2 = ex * ex + ey * ey + ez * ez
            if e2 < d2:
                d2 = e2
                best = k
        if best == j:
            break
        j = best
    return j, d2


@nb.njit(cache=True, nogil=True, inline="always")
def _point_triangle(px, py, pz, body, faces, f):
    """Barycentric weights of the point of triangle f closest to p, and its squared distance."""
    a = faces[f, 0]
    b = faces[f, 1]
    c = faces[f, 2]
    u, v, w = closest_point_on_triangle(
        px,
        py,
        pz,
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
    qx = u * body[a, 0] + v * body[b, 0] + w * body[c, 0]
    qy = u * body[a, 1] + v * body[b, 1] + w * body[c, 1]
    qz = u * body[a, 2] + v * body[b, 2] + w * body[c, 2]
    return u, v, w, (px - qx) ** 2 + (py - qy) ** 2 + (pz - qz) ** 2


@nb.njit(cache=True, nogil=True)
def _closest_in_ring(px, py, pz, body, faces, vf_off, vf_idx, j):
    """Closest triangle among the faces around body vertex j, and its squared distance."""
    tbest = -1
    tbest_d2 = np.inf
    for q in range(vf_off[j], vf_off[j + 1]):
        f = vf_idx[q]
        _, _, _, d2 = _point_triangle(px, py, pz, body, faces, f)
        if d2 < tbest_d2:
            tbest_d2 = d2
            tbest = f
    return tbest, tbest_d2


@nb.njit(cache=True, nogil=True)
def _phong_at(px, py, pz, body, normals, faces, f):
    """Closest point's squared distance on triangle f and the Phong normal there."""
    u, v, w, d2 = _point_triangle(px, py, pz, body, faces, f)
    a = faces[f, 0]
    b = faces[f, 1]
    c = faces[f, 2]
    nx = u * normals[a, 0] + v * normals[b, 0] + w * normals[c, 0]
    ny = u * normals[a, 1] + v * normals[b, 1] + w * normals[c, 1]
    nz = u * normals[a, 2] + v * normals[b, 2] + w * normals[c, 2]
    nl = math.sqrt(nx * nx + ny * ny + nz * nz)
    if nl < 1e-12:
        return d2, 0.0, 0.0, 0.0
    return d2, nx / nl, ny / nl, nz / nl


@nb.njit(cache=True, nogil=True)
def _other_sides(
    px,
    py,
    pz,
    primary,
    body,
    normals,
    faces,
    vf_off,
    vf_idx,
    lo,
    cell,
    dims,
    counts,
    items,
    radius,
    cos_sep,
    out_row,
    cand_tri,
    cand_d2,
    cand_n,
):
    """Contacts on other sides of the body than the primary triangle's: the closest triangles
    within `radius` whose surface faces away from the primary's by more than acos(cos_sep)
    (the thigh and the belly in a hip crease, the arm and the ribs in an armpit), at most
    `out_row`'s length of them, each facing away from the ones kept before it. Body vertices
    whose own normal agrees with the primary's are skipped before any triangle is tested:
    near a flat patch of skin that is all of them.
    """
    for k in range(out_row.shape[0]):
        out_row[k] = -1
    _, n0x, n0y, n0z = _phong_at(px, py, pz, body, normals, faces, primary)
    ix = math.floor((px - lo[0]) / cell)
    iy = math.floor((py - lo[1]) / cell)
    iz = math.floor((pz - lo[2]) / cell)
    reach = math.ceil(radius / cell)
    # the ring of a vertex this far away can still hold a triangle within radius
    r2 = (2.0 * radius) * (2.0 * radius)
    found = 0
    for ax in range(max(ix - reach, 0), min(ix + reach + 1, dims[0])):
        for ay in range(max(iy - reach, 0), min(iy + reach + 1, dims[1])):
            for az in range(max(iz - reach, 0), min(iz + reach + 1, dims[2])):
                c = (ax * dims[1] + ay) * dims[2] + az
                for q in range(counts[c], counts[c + 1]):
                    j = items[q]
                    if normals[j, 0] * n0x + normals[j, 1] * n0y + normals[j, 2] * n0z >= cos_sep:
                        continue
                    dx = px - body[j, 0]
                    dy = py - body[j, 1]
                    dz = pz - body[j, 2]
                    if dx * dx + dy * dy + dz * dz > r2:
                        continue
                    f, d2 = _closest_in_ring(px, py, pz, body, faces, vf_off, vf_idx, j)
                    if f < 0 or d2 > radius * radius:
                        continue
                    d2f, nx, ny, nz = _phong_at(px, py, pz, body, normals, faces, f)
                    if nx * n0x + ny * n0y + nz * n0z >= cos_sep:
                        continue
                    seen = False
                    for m in range(found):
                        if cand_tri[m] == f:
                            seen = True
                    if seen or found >= cand_tri.shape[0]:
                        continue
                    cand_tri[found] = f
                    cand_d2[found] = d2f
                    cand_n[found, 0] = nx
                    cand_n[found, 1] = ny
                    cand_n[found, 2] = nz
                    found += 1
    # keep the nearest candidate, then the nearest facing away from all kept, and so on
    kept = 0
    while kept < out_row.shape[0]:
        best = -1
        best_d2 = np.inf
        for m in range(found):
            if cand_d2[m] >= best_d2:
                continue
            apart = True
            for k in range(kept):
                g = out_row[k]
                for mm in range(found):
                    if cand_tri[mm] == g:
                        dot = (
                            cand_n[m, 0] * cand_n[mm, 0]
                            + cand_n[m, 1] * cand_n[mm, 1]
                            + cand_n[m, 2] * cand_n[mm, 2]
                        )
                        if dot >= cos_sep:
                            apart = False
            if apart:
                best = m
                best_d2 = cand_d2[m]
        if best < 0:
            break
        out_row[kept] = cand_tri[best]
        kept += 1


@nb.njit(cache=True, nogil=True)
def _detect(
    x,
    body,
    normals,
    faces,
    vf_off,
    vf_idx,
    vv_off,
    vv_idx,
    radius,
    trust,
    seed,
    seed_tri,
    body_motion,
    recheck_phase,
    out_tri,
    out_dist,
    out_extra,
    cos_sep,
):
    """Closest body triangle within radius for every garment vertex, using last frame's work.

    1. A vertex that was in the contact band (within `trust` of the skin) last frame walks
       greedily over the body's vertex graph from last frame's nearest vertex, then keeps last
       frame's triangle if it still holds the projection and has the vertex reached as a
       corner, else takes the closest triangle around that vertex. A walk ends in a local
       minimum, so its answer is kept only inside the band: farther out another body part
       (the other leg, the arm over the ribs) may be nearer.
    2. Everything else, and every 8th band vertex in turn (`RECHECK_PERIOD`: a walk that slid
       into a wrong local minimum is corrected within 8 frames): a uniform grid over the body
       vertices, searched shell by shell out to the vertex's radius.
    3. Where `out_extra` has a row per vertex, a vertex with a contact also gets up to its
       width of contacts on other sides of the body (`_other_sides`, within `radius`): cloth in
       a crease touches both sides, and pushed out of one only it is pushed into the other.
    `body_motion` (N,) widens each vertex's radius by how far the body moves relative to it
    this frame (empty: no widening), so a flung hand does not make the whole garment search
    15 cm around. With `seed` of length 0 every vertex takes the grid (a one-off query).
    """
    n = x.shape[0]
    cached = seed.shape[0] == n
    moving = body_motion.shape[0] == n
    widest = radius
    if moving:
        for i in range(n):
            widest = max(widest, radius + body_motion[i])
    # two grids: 2 cm cells for most vertices, and 5 cm cells (built only if needed) for
    # those whose search a fast body part or fast fabric widens past 4 fine cells
    fine = min(radius, 0.02)
    grid_ready = False
    lo = np.zeros(3)
    cell = 1.0
    dims = np.ones(3, dtype=np.int64)
    counts = np.zeros(2, dtype=np.int64)
    items = np.zeros(0, dtype=np.int64)
    coarse_ready = False
    c_lo = np.zeros(3)
    c_cell = 1.0
    c_dims = np.ones(3, dtype=np.int64)
    c_counts = np.zeros(2, dtype=np.int64)
    c_items = np.zeros(0, dtype=np.int64)
    sides = out_extra.shape[0] == n and out_extra.shape[1] > 0
    cand_tri = np.full(24, -1, dtype=np.int64)
    cand_d2 = np.zeros(24)
    cand_n = np.zeros((24, 3))
    if sides:
        lo, cell, dims, counts, items = _body_grid(x, body, fine, widest)
        grid_ready = True
    for i in range(n):
        out_tri[i] = -1
        out_dist[i] = np.inf
        px = x[i, 0]
        py = x[i, 1]
        pz = x[i, 2]
        r_i = radius + body_motion[i] if moving else radius
        tri = -1
        t2 = np.inf
        j = -1
        walked = False
        if cached and seed[i] >= 0 and (i + recheck_phase) % RECHECK_PERIOD != 0:
            j, _ = _walk_nearest(px, py, pz, body, vv_off, vv_idx, seed[i])
            f = seed_tri[i]
            if f >= 0 and (j == faces[f, 0] or j == faces[f, 1] or j == faces[f, 2]):
                u, v, w, q2 = _point_triangle(px, py, pz, body, faces, f)
                if u > 1e-6 and v > 1e-6 and w > 1e-6:
                    tri, t2 = f, q2
            if tri < 0:
                tri, t2 = _closest_in_ring(px, py, pz, body, faces, vf_off, vf_idx, j)
            walked = t2 <= trust * trust
        if not walked:
            if r_i <= 4.0 * fine:
                if not grid_ready:
                    lo, cell, dims, counts, items = _body_grid(x, body, fine, widest)
                    grid_ready = True
                j, _ = _grid_nearest(px, py, pz, body, lo, cell, dims, counts, items, r_i)
            else:
                if not coarse_ready:
                    c_lo, c_cell, c_dims, c_counts, c_items = _body_grid(x, body, 0.05, widest)
                    coarse_ready = True
                j, _ = _grid_nearest(px, py, pz, body, c_lo, c_cell, c_dims, c_counts, c_items, r_i)
            tri = -1
            t2 = np.inf
            if j >= 0:
                tri, t2 = _closest_in_ring(px, py, pz, body, faces, vf_off, vf_idx, j)
        if cached:
            # only vertices in the contact band walk next frame
            close = tri >= 0 and t2 <= trust * trust
            seed[i] = j if close else -1
            seed_tri[i] = tri if close else -1
        if tri >= 0 and t2 <= r_i * r_i:
            out_tri[i] = tri
            out_dist[i] = math.sqrt(t2)
        if sides:
            if tri >= 0 and t2 <= radius * radius:
                _other_sides(
                    px,
                    py,
                    pz,
                    tri,
                    body,
                    normals,
                    faces,
                    vf_off,
                    vf_idx,
                    lo,
                    cell,
                    dims,
                    counts,
                    items,
                    radius,
                    cos_sep,
                    out_extra[i],
                    cand_tri,
                    cand_d2,
                    cand_n,
                )
            else:
                for k in range(out_extra.shape[1]):
                    out_extra[i, k] = -1


@nb.njit(cache=True, nogil=True)
def _relative_body_motion(x, v, dt, prev, cur, cap, out):
    """How far (m) the body may move relative to each garment vertex during this frame.

    Body vertices are binned in `cap`-sized cells; per cell, the mean displacement and the
    largest deviation from it (a body part moves nearly rigidly within a cell). For a garment
    vertex moving v·dt, the bound is the largest |v·dt − mean| + deviation over the 3×3×3
    cells around it: a walking body carries its garment along, so only relative motion widens
    the contact search. Capped at `cap` (faster parts may tunnel).
    """
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
    for k in range(3):
        lo[k] -= 2.0 * cap
        hi[k] += 2.0 * cap
    dims = np.empty(3, dtype=np.int64)
    for k in range(3):
        dims[k] = max(1, math.ceil((hi[k] - lo[k]) / cap))
    cells = dims[0] * dims[1] * dims[2]
    mean = np.zeros((cells, 3))
    count = np.zeros(cells)
    dev = np.zeros(cells)
    cell_of = np.full(prev.shape[0], -1, dtype=np.int64)
    for j in range(prev.shape[0]):
        ix = math.floor((prev[j, 0] - lo[0]) / cap)
        iy = math.floor((prev[j, 1] - lo[1]) / cap)
        iz = math.floor((prev[j, 2] - lo[2]) / cap)
        if ix < 0 or iy < 0 or iz < 0 or ix >= dims[0] or iy >= dims[1] or iz >= dims[2]:
            continue
        c = (ix * dims[1] + iy) * dims[2] + iz
        cell_of[j] = c
        count[c] += 1.0
        for k in range(3):
            mean[c, k] += cur[j, k] - prev[j, k]
    for c in range(cells):
        if count[c] > 0.0:
            for k in range(3):
                mean[c, k] /= count[c]
    for j in range(prev.shape[0]):
        c = cell_of[j]
        if c < 0:
            continue
        dx = cur[j, 0] - prev[j, 0] - mean[c, 0]
        dy = cur[j, 1] - prev[j, 1] - mean[c, 1]
        dz = cur[j, 2] - prev[j, 2] - mean[c, 2]
        dev[c] = max(dev[c], math.sqrt(dx * dx + dy * dy + dz * dz))
    for i in range(n):
        ix = math.floor((x[i, 0] - lo[0]) / cap)
        iy = math.floor((x[i, 1] - lo[1]) / cap)
        iz = math.floor((x[i, 2] - lo[2]) / cap)
        best = 0.0
        for ax in range(max(ix - 1, 0), min(ix + 2, dims[0])):
            for ay in range(max(iy - 1, 0), min(iy + 2, dims[1])):
                for az in range(max(iz - 1, 0), min(iz + 2, dims[2])):
                    c = (ax * dims[1] + ay) * dims[2] + az
                    if count[c] == 0.0:
                        continue
                    rx = v[i, 0] * dt - mean[c, 0]
                    ry = v[i, 1] * dt - mean[c, 1]
                    rz = v[i, 2] * dt - mean[c, 2]
                    best = max(best, math.sqrt(rx * rx + ry * ry + rz * rz) + dev[c])
        out[i] = min(best, cap)


@nb.njit(cache=True, nogil=True)
def _max_displacement(prev, cur, lo, hi):
    """Largest distance (m) a body vertex inside the box [lo, hi] moved between two poses."""
    best = 0.0
    for j in range(prev.shape[0]):
        inside = True
        for k in range(3):
            if prev[j, k] < lo[k] or prev[j, k] > hi[k]:
                inside = False
        if not inside:
            continue
        dx = cur[j, 0] - prev[j, 0]
        dy = cur[j, 1] - prev[j, 1]
        dz = cur[j, 2] - prev[j, 2]
        best = max(best, dx * dx + dy * dy + dz * dz)
    return math.sqrt(best)


@nb.njit(cache=True, nogil=True)
def _signed_distance_to_tri(x, body, normals, faces, tri, out):
    for i in range(x.shape[0]):
        f = tri[i]
        if f < 0:
            out[i] = np.inf
            continue
        u, v, w, d2 = _point_triangle(x[i, 0], x[i, 1], x[i, 2], body, faces, f)
        a = faces[f, 0]
        b = faces[f, 1]
        c = faces[f, 2]
        # side from the Phong normal (sliver triangles have meaningless face normals)
        nx = u * normals[a, 0] + v * normals[b, 0] + w * normals[c, 0]
        ny = u * normals[a, 1] + v * normals[b, 1] + w * normals[c, 1]
        nz = u * normals[a, 2] + v * normals[b, 2] + w * normals[c, 2]
        dx = x[i, 0] - (u * body[a, 0] + v * body[b, 0] + w * body[c, 0])
        dy = x[i, 1] - (u * body[a, 1] + v * body[b, 1] + w * body[c, 1])
        dz = x[i, 2] - (u * body[a, 2] + v * body[b, 2] + w * body[c, 2])
        dist = math.sqrt(d2)
        side = dx * nx + dy * ny + dz * nz
        out[i] = dist if side >= 0.0 else -dist


# A walk over the body's vertex graph is trusted for vertices this close to the surface (the
# contact band: fabric thickness plus margin); farther ones may be nearer another body part.
WALK_TRUST_M = 0.006
_NO_MOTION = np.zeros(0)  # read only by `_detect`: no widening of the search
MAX_BODY_STEP_M = 0.15  # a body part faster than this per frame may tunnel through cloth
# Contacts per garment vertex at most (the closest and others on other sides of the body), and
# how far apart (degrees between surface normals) two contacts must face to count as two sides.
MAX_CONTACTS = 4
SIDE_SEPARATION_DEG = 60.0
_NO_EXTRA = np.zeros((0, 0), dtype=np.int32)


class BodyCollider:
    """The posed twin's surface at the previous and the current frame (metres, outward faces).

    Holds the body's pose and its fixed adjacency only; what detection learns about a garment
    is that garment's `Contacts`, so any number of garments may share one collider.
    """

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
        self.normals_current = vertex_normals(v, f)
        self.normals_previous = self.normals_current
        self.vf_offsets, self.vf_faces = vertex_face_adjacency(f, len(v))
        self.vv_offsets, self.vv_vertices = vertex_vertex_adjacency(f, len(v), v)

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
        self.normals_previous = self.normals_current
        self.normals_current = vertex_normals(self.current_m, self.faces)

    def max_displacement_m(
        self, near_m: NDArray[np.float64] | None = None, reach_m: float = 0.1
    ) -> float:
        """Largest distance a body vertex moved since the previous frame.

        With `near_m` (garment positions) only body vertices within the garment's bounding box
        grown by `reach_m` count: a waving hand far from a skirt must not widen its search.
        """
        if near_m is not None and len(near_m):
            lo = near_m.min(axis=0) - reach_m
            hi = near_m.max(axis=0) + reach_m
        else:
            lo = np.full(3, -np.inf)
            hi = np.full(3, np.inf)
        return float(_max_displacement(self.previous_m, self.current_m, lo, hi))

    @property
    def surface_vertex_counts(self) -> tuple[int, ...]:
        """Vertex counts of the surfaces searched separately for contacts: here the body."""
        return (len(self.current_m),)

    def detect_contacts(
        self,
        positions_m: NDArray[np.float64],
        radius_m: float,
        at_current: bool = False,
        *,
        contacts: Contacts | None = None,
        velocities_m_s: NDArray[np.float64] | None = None,
        dt: float = 0.0,
    ) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
        """Closest body triangle (−1 if none within radius) and its distance, per garment vertex.

        With `contacts` (the garment's own, see `cloth.contacts`) the search starts from what
        the previous detection with them found, and leaves this one's answer in them: the
        per-frame call of the solver. Without them every vertex is searched from scratch. With
        `velocities_m_s` and `dt` each vertex's radius grows by how far the body near it moves
        relative to it between the previous and the current pose (up to `MAX_BODY_STEP_M`), so
        a limb that sweeps up to the garment within the frame is found while a garment riding
        along with a walking body searches little.
        """
        tri, dist, _ = self.detect_contact_sets(
            positions_m,
            radius_m,
            at_current,
            contacts=contacts,
            velocities_m_s=velocities_m_s,
            dt=dt,
        )
        return tri, dist

    def detect_contact_sets(
        self,
        positions_m: NDArray[np.float64],
        radius_m: float,
        at_current: bool = False,
        *,
        contacts: Contacts | None = None,
        velocities_m_s: NDArray[np.float64] | None = None,
        dt: float = 0.0,
        max_contacts: int = 1,
        separation_deg: float = SIDE_SEPARATION_DEG,
        max_body_step_m: float = MAX_BODY_STEP_M,
    ) -> tuple[NDArray[np.int32], NDArray[np.float64], NDArray[np.int32]]:
        """`detect_contacts`, plus up to `max_contacts` − 1 contacts per vertex on other sides
        of the body (N, max_contacts − 1; −1 where none): triangles within `radius_m` whose
        surface turns more than `separation_deg` away from the closest one's and from each
        other's, as in a crease or an armpit. Stored in `contacts` too (`extra_triangle`).
        `max_body_step_m` caps how far the body's relative motion widens a vertex's search."""
        if not 1 <= max_contacts <= MAX_CONTACTS:
            raise SpatialTwinError(
                "bad_solver_settings",
                f"max_contacts must be 1..{MAX_CONTACTS}",
                {"max_contacts": max_contacts},
            )
        x = np.ascontiguousarray(positions_m, dtype=np.float64)
        if contacts is not None:
            contacts.bind(len(x), self.surface_vertex_counts)
        args = (x, radius_m, at_current, contacts)
        extra = np.full((len(x), max_contacts - 1), -1, dtype=np.int32)
        cos_sep = float(np.cos(np.radians(separation_deg)))
        tri, dist = self._closest_triangles(
            *args, 0, velocities_m_s, dt, extra, cos_sep, max_body_step_m
        )
        if contacts is not None:
            contacts.record(tri, dist, extra)
        return tri, dist, extra

    def _closest_triangles(
        self,
        x: NDArray[np.float64],
        radius_m: float,
        at_current: bool,
        contacts: Contacts | None,
        surface: int,
        velocities_m_s: NDArray[np.float64] | None,
        dt: float,
        extra: NDArray[np.int32] = _NO_EXTRA,
        cos_sep: float = 0.5,
        max_body_step_m: float = MAX_BODY_STEP_M,
    ) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
        """This surface's search (see `detect_contact_sets`), seeded by and updating row
        `surface` of bound `contacts`, filling `extra` (N, k) with contacts on other sides;
        the caller counts the detection (`Contacts.record`)."""
        body = self.current_m if at_current else self.previous_m
        normals = self.normals_current if at_current else self.normals_previous
        n = len(x)
        tri = np.empty(n, dtype=np.int32)
        dist = np.empty(n)
        if contacts is None:
            seed_vertex = np.full(0, -1, dtype=np.int32)
            seed_triangle = np.full(0, -1, dtype=np.int32)
            phase = 0
        else:
            seed_vertex = contacts.walk_vertex[surface]
            seed_triangle = contacts.walk_triangle[surface]
            phase = contacts.recheck_phase
        motion = _NO_MOTION
        if velocities_m_s is not None:
            motion = np.empty(n)
            _relative_body_motion(
                x,
                np.ascontiguousarray(velocities_m_s, dtype=np.float64),
                float(dt),
                self.previous_m,
                self.current_m,
                max_body_step_m,
                motion,
            )
        _detect(
            x,
            body,
            normals,
            self.faces,
            self.vf_offsets,
            self.vf_faces,
            self.vv_offsets,
            self.vv_vertices,
            float(radius_m),
            min(float(radius_m), WALK_TRUST_M),
            seed_vertex,
            seed_triangle,
            motion,
            phase,
            tri,
            dist,
            extra,
            cos_sep,
        )
        return tri, dist

    def signed_distance(
        self, positions_m: NDArray[np.float64], radius_m: float = 0.05
    ) -> NDArray[np.float64]:
        """Signed distance (m, negative inside) to the current surface; +inf beyond radius."""
        x = np.ascontiguousarray(positions_m, dtype=np.float64)
        tri, _ = self.detect_contacts(x, radius_m, at_current=True)
        out = np.empty(len(x))
        _signed_distance_to_tri(x, self.current_m, self.normals_current, self.faces, tri, out)
        return out


# --- layers: garments already draped, as a surface the next garment rests on ------------------


@dataclass(frozen=True)
class DrapeLayer:
    """A garment already settled on the body, which the next (outer) garment is draped over.

    Positions in metres (N, 3), faces (F, 3) in any winding; `thickness_m` is its fabric's
    thickness, by which its surface is moved outward before the outer garment collides with it.
    """

    positions_m: NDArray[np.float64]
    faces: NDArray[np.int64]
    thickness_m: float


@nb.njit(cache=True, nogil=True)
def _surface_frames(x, surface, normals, faces, tri, out_q, out_n, out_d, out_dist):
    """Closest point on triangle `tri[i]`, its Phong normal, signed and plain distance.

    Vertices without a triangle (−1) get NaN point/normal and +inf distances.
    """
    for i in range(x.shape[0]):
        f = tri[i]
        if f < 0:
            for k in range(3):
                out_q[i, k] = np.nan
                out_n[i, k] = np.nan
            out_d[i] = np.inf
            out_dist[i] = np.inf
            continue
        u, v, w, d2 = _point_triangle(x[i, 0], x[i, 1], x[i, 2], surface, faces, f)
        a = faces[f, 0]
        b = faces[f, 1]
        c = faces[f, 2]
        length = 0.0
        for k in range(3):
            out_q[i, k] = u * surface[a, k] + v * surface[b, k] + w * surface[c, k]
            out_n[i, k] = u * normals[a, k] + v * normals[b, k] + w * normals[c, k]
            length += out_n[i, k] ** 2
        length = math.sqrt(length)
        side = 0.0
        for k in range(3):
            out_n[i, k] /= max(length, 1e-12)
            side += (x[i, k] - out_q[i, k]) * out_n[i, k]
        out_dist[i] = math.sqrt(d2)
        out_d[i] = side


def surface_frames(
    positions_m: NDArray[np.float64],
    collider: BodyCollider,
    radius_m: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Per point: the closest point on `collider`'s current surface within `radius_m`, the
    Phong normal there, the signed distance along it and the plain distance (metres).

    Points with nothing within the radius get NaN points and normals and +inf distances.
    """
    x = np.ascontiguousarray(positions_m, dtype=np.float64)
    tri, _ = collider.detect_contacts(x, radius_m, at_current=True)
    q, n = np.empty_like(x), np.empty_like(x)
    signed, dist = np.empty(len(x)), np.empty(len(x))
    _surface_frames(
        x, collider.current_m, collider.normals_current, collider.faces, tri, q, n, signed, dist
    )
    return q, n, signed, dist


def pushed_out(
    positions_m: NDArray[np.float64],
    collider: BodyCollider,
    offset_m: float,
    radius_m: float,
    contacts: Contacts | None = None,
    max_depth_m: float = 0.04,
) -> NDArray[np.float64]:
    """Points closer to the current body surface than `offset_m` (or up to `max_depth_m`
    behind it) moved out along the Phong normal to `offset_m`; the rest as they are.

    For points that are not simulated themselves but carried by cloth that is (a display
    mesh on a coarser simulation mesh: between the coarse vertices the fine surface can cut
    into a curved body). `contacts` are the points' own, carried frame to frame (fast walks).
    """
    x = np.ascontiguousarray(positions_m, dtype=np.float64)
    tri, _ = collider.detect_contacts(x, radius_m, at_current=True, contacts=contacts)
    q, n = np.empty_like(x), np.empty_like(x)
    signed, dist = np.empty(len(x)), np.empty(len(x))
    _surface_frames(
        x, collider.current_m, collider.normals_current, collider.faces, tri, q, n, signed, dist
    )
    push = np.isfinite(signed) & (signed < offset_m) & (signed > -max_depth_m)
    out = x.copy()
    out[push] += (offset_m - signed[push])[:, None] * n[push]
    return out


# A point is *under* a layer when the closest point of the layer lies along the layer's normal
# from it (within this cosine), not off the layer's edge: past a skirt's waistband the closest
# skirt point is on the band's rim and the point is simply not covered.
COVERED_COSINE = 0.7
LAYER_ORIENT_RADIUS_M = 0.3


def _orient_outward(
    body: BodyCollider, vertices_m: NDArray[np.float64], faces: NDArray[np.int64]
) -> NDArray[np.int64]:
    """Faces of one draped garment wound so their normals point away from the body.

    Each connected piece votes by area (face normal · body normal at the closest body point)
    and is flipped as a whole when most of it faces the body, which keeps a consistently wound
    mesh smooth. Faces that still disagree with the body over more than a fifth of a piece's
    area mean the mesh is not consistently wound; those pieces are oriented face by face.
    """
    tri = vertices_m[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    centroid = tri.mean(axis=1)
    _, body_n, _, dist = surface_frames(centroid, body, LAYER_ORIENT_RADIUS_M)
    found = np.isfinite(dist)
    vote = np.where(found, np.einsum("ij,ij->i", cross, np.nan_to_num(body_n)), 0.0)
    n = len(vertices_m)
    e = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    piece = label[faces[:, 0]]
    out = faces.copy()
    for p in np.unique(piece):
        sel = piece == p
        total = float(np.sum(vote[sel]))
        flip = total < 0.0
        signed = -vote[sel] if flip else vote[sel]
        disagree = float(np.sum(np.abs(signed[signed < 0.0])))
        if disagree > 0.2 * float(np.sum(np.abs(signed))):
            per_face = sel & (vote < 0.0)  # inconsistent winding: face by face
            out[per_face] = out[per_face][:, ::-1]
        elif flip:
            out[sel] = out[sel][:, ::-1]
    return out


def layer_shell(
    body: BodyCollider, layers: list[DrapeLayer] | tuple[DrapeLayer, ...]
) -> tuple[NDArray[np.float64], NDArray[np.int32]]:
    """The draped inner garments as one outward-facing surface (metres): every layer's
    triangles wound away from the body and its vertices moved out by its thickness along
    their normals, which is where the next garment's own contact offset starts from."""
    vertices, faces, base = [], [], 0
    for layer in layers:
        v = np.ascontiguousarray(layer.positions_m, dtype=np.float64)
        f = np.ascontiguousarray(layer.faces, dtype=np.int64)
        if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
            raise SpatialTwinError(
                "bad_layer_mesh",
                "a layer must be (N, 3) positions and (F, 3) faces",
                {"positions": list(v.shape), "faces": list(f.shape)},
            )
        if f.min() < 0 or f.max() >= len(v) or not np.all(np.isfinite(v)):
            raise SpatialTwinError(
                "bad_layer_mesh", "layer faces out of range or positions not finite", None
            )
        if not 0.0 <= layer.thickness_m <= 0.05:
            raise SpatialTwinError(
                "bad_layer_mesh",
                "layer thickness must be 0–5 cm",
                {"thickness_m": layer.thickness_m},
            )
        f = _orient_outward(body, v, f)
        v = v + layer.thickness_m * vertex_normals(v, f.astype(np.int32))
        vertices.append(v)
        faces.append(f + base)
        base += len(v)
    return np.concatenate(vertices), np.concatenate(faces).astype(np.int32)


class LayeredCollider(BodyCollider):
    """The static posed body plus the garments already draped on it, as one collider.

    The kernels see one surface (the body's triangles followed by the layers' shell, see
    `layer_shell`), so the outer garment is pushed out over the inner one exactly as it is over
    the skin. Contacts are searched in the body and in the shell separately (each with its own
    grid and contact walk, one row of the garment's `Contacts` each: a nearest-vertex search
    over a mixed mesh would let a fine body vertex hide a coarse garment triangle) and the
    nearer triangle wins. Static only: the inner garments do not follow a moving body, so
    `update` is refused.
    """

    def __init__(
        self,
        vertices_m: NDArray[np.floating],
        faces: NDArray[np.integer],
        layers: list[DrapeLayer] | tuple[DrapeLayer, ...],
    ) -> None:
        if not layers:
            raise SpatialTwinError("bad_layer_mesh", "a layered collider needs a layer", None)
        self.body = BodyCollider(vertices_m, faces)
        shell_v, shell_f = layer_shell(self.body, layers)
        self.shell = BodyCollider(shell_v, shell_f)
        self.body_face_count = len(self.body.faces)
        super().__init__(
            np.concatenate([self.body.current_m, shell_v]),
            np.concatenate([self.body.faces, shell_f + len(self.body.current_m)]),
        )

    def update(self, vertices_m: NDArray[np.floating]) -> None:
        raise SpatialTwinError(
            "static_layers",
            "a layered collider holds settled garments and serves static drapes only",
            None,
        )

    @property
    def surface_vertex_counts(self) -> tuple[int, ...]:
        """The body's and the layers' shell's vertex counts: two searches per detection."""
        return (len(self.body.current_m), len(self.shell.current_m))

    def detect_contacts(
        self,
        positions_m: NDArray[np.float64],
        radius_m: float,
        at_current: bool = False,
        *,
        contacts: Contacts | None = None,
        velocities_m_s: NDArray[np.float64] | None = None,
        dt: float = 0.0,
    ) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
        """Nearest triangle of body or layers (index into the combined faces) and distance."""
        x = np.ascontiguousarray(positions_m, dtype=np.float64)
        if contacts is not None:
            contacts.bind(len(x), self.surface_vertex_counts)
        args = (x, radius_m, at_current, contacts)
        body_tri, body_d = self.body._closest_triangles(*args, 0, velocities_m_s, dt)
        shell_tri, shell_d = self.shell._closest_triangles(*args, 1, velocities_m_s, dt)
        use_shell = (shell_tri >= 0) & (shell_d < body_d)
        tri = np.where(use_shell, shell_tri + self.body_face_count, body_tri).astype(np.int32)
        dist = np.minimum(body_d, shell_d)
        if contacts is not None:
            contacts.record(tri, dist)
        return tri, dist

    def detect_contact_sets(
        self,
        positions_m: NDArray[np.float64],
        radius_m: float,
        at_current: bool = False,
        *,
        contacts: Contacts | None = None,
        velocities_m_s: NDArray[np.float64] | None = None,
        dt: float = 0.0,
        max_contacts: int = 1,
        separation_deg: float = SIDE_SEPARATION_DEG,
        max_body_step_m: float = MAX_BODY_STEP_M,
    ) -> tuple[NDArray[np.int32], NDArray[np.float64], NDArray[np.int32]]:
        """One contact per vertex (the nearer of body and layers): a layer lies over the body,
        so the two face the same way and are not two sides of a crease."""
        tri, dist = self.detect_contacts(
            positions_m,
            radius_m,
            at_current,
            contacts=contacts,
            velocities_m_s=velocities_m_s,
            dt=dt,
        )
        return tri, dist, np.full((len(tri), max(max_contacts - 1, 0)), -1, dtype=np.int32)

    def under_layers(
        self, positions_m: NDArray[np.float64], radius_m: float = 0.1
    ) -> NDArray[np.float64]:
        """Signed distance (m) to the layers' shell where a layer covers the point (negative:
        beneath it, on the body's side), +inf where no layer lies over or under it."""
        _, _, signed, dist = surface_frames(positions_m, self.shell, radius_m)
        covered = np.isfinite(dist) & (np.abs(signed) >= COVERED_COSINE * dist)
        return np.where(covered, signed, np.inf)

    def push_over_layers(
        self,
        positions_m: NDArray[np.float64],
        faces: NDArray[np.integer],
        clearance_m: float,
        reach_m: float = 0.1,
        rounds: int = 6,
    ) -> tuple[NDArray[np.float64], float]:
        """Move a garment's vertices that lie beneath (or closer than `clearance_m` over) a
        layer out along the layer's normal to `clearance_m` over it, the push spread over
        neighbouring cloth so the garment moves as a sheet; returns (positions, largest push).

        Only points the layer covers move (see `under_layers`): cloth past a layer's edge
        stays on the body. `reach_m` bounds how far beneath a layer a point may be found.
        """
        x = np.ascontiguousarray(positions_m, dtype=np.float64).copy()
        f = np.asarray(faces, dtype=np.int64)
        e = f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
        adj = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(len(x), len(x)))
        adj = ((adj + adj.T) > 0).astype(np.float64)
        average = diags(1.0 / np.maximum(np.asarray(adj.sum(axis=1)).ravel(), 1.0)) @ adj
        start = x.copy()
        for _ in range(rounds):
            _, normal, signed, dist = surface_frames(x, self.shell, reach_m)
            covered = np.isfinite(dist) & (np.abs(signed) >= COVERED_COSINE * dist)
            need = covered & (signed < clearance_m - 1e-6)
            if not np.any(need):
                break
            push = np.zeros_like(x)
            push[need] = (clearance_m - signed[need])[:, None] * normal[need]
            for _ in range(4):  # diffuse, never losing the push a vertex itself needs
                spread = average @ push
                grow = np.einsum("ij,ij->i", spread, spread) > np.einsum("ij,ij->i", push, push)
                push = np.where(grow[:, None], spread, push)
            x += push
        moved = np.sqrt(np.einsum("ij,ij->i", x - start, x - start))
        return x, float(moved.max()) if len(moved) else 0.0


class MovingLayeredCollider(LayeredCollider):
    """The body and the inner garments of a live look as they move, for the outer garment.

    A live session steps the inner garments first; before the outer one steps, `follow` moves
    the body to this frame's pose and the shell to where the inner garments are now (their
    thickness out along their current normals), so the outer garment stays over them as it
    does in the static drape instead of sinking through to the skin. The shell's winding,
    which takes a search to find (`_orient_outward`), is found once on the settled drape and
    kept: garments do not turn inside out between frames. Both surfaces keep their previous
    frame, so contacts see the layers move as they see the body move.
    """

    def __init__(
        self,
        vertices_m: NDArray[np.floating],
        faces: NDArray[np.integer],
        layers: list[DrapeLayer] | tuple[DrapeLayer, ...],
    ) -> None:
        super().__init__(vertices_m, faces, layers)
        self._layer_faces: list[NDArray[np.int32]] = []
        self._layer_sizes: list[int] = []
        self._thickness_m = [float(layer.thickness_m) for layer in layers]
        face_at = vertex_at = 0
        for layer in layers:
            n, m = len(layer.positions_m), len(layer.faces)
            local = self.shell.faces[face_at : face_at + m] - vertex_at
            self._layer_faces.append(np.ascontiguousarray(local, dtype=np.int32))
            self._layer_sizes.append(n)
            face_at, vertex_at = face_at + m, vertex_at + n

    def follow(
        self,
        body_vertices_m: NDArray[np.floating],
        layer_positions_m: list[NDArray[np.float64]] | tuple[NDArray[np.float64], ...],
    ) -> None:
        """This frame: the posed body's vertices and each inner garment's positions (metres,
        the layers' own vertex order and counts)."""
        if len(layer_positions_m) != len(self._layer_sizes):
            raise SpatialTwinError(
                "bad_layer_mesh",
                "one position array per layer",
                {"layers": len(self._layer_sizes), "got": len(layer_positions_m)},
            )
        shells = []
        for x, f, n, t in zip(
            layer_positions_m, self._layer_faces, self._layer_sizes, self._thickness_m, strict=True
        ):
            v = np.ascontiguousarray(x, dtype=np.float64)
            if v.shape != (n, 3) or not np.all(np.isfinite(v)):
                raise SpatialTwinError(
                    "bad_layer_mesh",
                    "a layer keeps its vertex count and finite positions",
                    {"expected": [n, 3], "got": list(v.shape)},
                )
            shells.append(v + t * vertex_normals(v, f))
        shell = np.concatenate(shells)
        self.body.update(body_vertices_m)
        self.shell.update(shell)
        BodyCollider.update(self, np.concatenate([self.body.current_m, shell]))
