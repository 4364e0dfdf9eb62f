"""Numba kernels of the XPBD cloth step: plain functions over arrays, no objects.

One call of `simulate_frame` advances a whole frame (all substeps) so Python is touched once
per frame. The method is small-step XPBD (Macklin et al. 2019, "Small Steps in Physics
Simulation"): many substeps of one Gauss–Seidel sweep each, which converges faster per unit of
work than few substeps with many iterations, plus unilateral long-range tethers that carry
stretch corrections across the sheet in one sweep. Sweeps run in graph-colour order (see
`topology.colour_order`). Units: metres, seconds, kilograms.

Every kernel here and in `collider`, `self_collision` and `topology` is compiled with
`nogil=True`: they touch only arrays, so a live session's cloth step on one core runs while the
tracking thread (MediaPipe, which releases the GIL too) works on the next frame on the other.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numpy.typing import NDArray


@nb.njit(cache=True, nogil=True, inline="always")
def closest_point_on_triangle(
    px: float,
    py: float,
    pz: float,
    ax: float,
    ay: float,
    az: float,
    bx: float,
    by: float,
    bz: float,
    cx: float,
    cy: float,
    cz: float,
) -> tuple[float, float, float]:
    """Barycentric weights (u, v, w) of the point of triangle abc closest to p (Ericson 5.1.5)."""
    abx, aby, abz = bx - ax, by - ay, bz - az
    acx, acy, acz = cx - ax, cy - ay, cz - az
    apx, apy, apz = px - ax, py - ay, pz - az
    d1 = abx * apx + aby * apy + abz * apz
    d2 = acx * apx + acy * apy + acz * apz
    if d1 <= 0.0 and d2 <= 0.0:
        return 1.0, 0.0, 0.0
    bpx, bpy, bpz = px - bx, py - by, pz - bz
    d3 = abx * bpx + aby * bpy + abz * bpz
    d4 = acx * bpx + acy * bpy + acz * bpz
    if d3 >= 0.0 and d4 <= d3:
        return 0.0, 1.0, 0.0
    vc = d1 * d4 - d3 * d2
    if vc <= 0.0 and d1 >= 0.0 and d3 <= 0.0:
        t = d1 / (d1 - d3)
        return 1.0 - t, t, 0.0
    cpx, cpy, cpz = px - cx, py - cy, pz - cz
    d5 = abx * cpx + aby * cpy + abz * cpz
    d6 = acx * cpx + acy * cpy + acz * cpz
    if d6 >= 0.0 and d5 <= d6:
        return 0.0, 0.0, 1.0
    vb = d5 * d2 - d1 * d6
    if vb <= 0.0 and d2 >= 0.0 and d6 <= 0.0:
        t = d2 / (d2 - d6)
        return 1.0 - t, 0.0, t
    va = d3 * d6 - d5 * d4
    if va <= 0.0 and (d4 - d3) >= 0.0 and (d5 - d6) >= 0.0:
        t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        return 0.0, 1.0 - t, t
    denom = 1.0 / (va + vb + vc)
    v = vb * denom
    w = vc * denom
    return 1.0 - v - w, v, w


@nb.njit(cache=True, nogil=True, inline="always")
def _solve_distance(x, inv_mass, i, j, rest, alpha_t, unilateral, omega):
    wi = inv_mass[i]
    wj = inv_mass[j]
    w = wi + wj
    if w == 0.0:
        return
    dx = x[i, 0] - x[j, 0]
    dy = x[i, 1] - x[j, 1]
    dz = x[i, 2] - x[j, 2]
    length = math.sqrt(dx * dx + dy * dy + dz * dz)
    if length < 1e-12:
        return
    c = length - rest
    if unilateral and c <= 0.0:
        return
    s = -omega * c / ((w + alpha_t) * length)
    x[i, 0] += wi * s * dx
    x[i, 1] += wi * s * dy
    x[i, 2] += wi * s * dz
    x[j, 0] -= wj * s * dx
    x[j, 1] -= wj * s * dy
    x[j, 2] -= wj * s * dz


@nb.njit(cache=True, nogil=True)
def _solve_tethers(x, inv_mass, tethers, max_length_m):
    """Unilateral |xi - xj| <= max: branch-free (a slack tether gets a zero correction), since
    whether a tether is slack is a coin flip the CPU's branch predictor loses on."""
    for c in range(tethers.shape[0]):
        i = tethers[c, 0]
        j = tethers[c, 1]
        wi = inv_mass[i]
        wj = inv_mass[j]
        dx = x[i, 0] - x[j, 0]
        dy = x[i, 1] - x[j, 1]
        dz = x[i, 2] - x[j, 2]
        length = math.sqrt(dx * dx + dy * dy + dz * dz) + 1e-12
        s = -max(length - max_length_m[c], 0.0) / ((wi + wj + 1e-30) * length)
        x[i, 0] += wi * s * dx
        x[i, 1] += wi * s * dy
        x[i, 2] += wi * s * dz
        x[j, 0] -= wj * s * dx
        x[j, 1] -= wj * s * dy
        x[j, 2] -= wj * s * dz


@nb.njit(cache=True, nogil=True)
def _solve_hinges(x, inv_mass, hinges, hinge_k, alpha_t):
    for b in range(hinges.shape[0]):
        denom = alpha_t[b]
        cx = 0.0
        cy = 0.0
        cz = 0.0
        for k in range(4):
            vi = hinges[b, k]
            kk = hinge_k[b, k]
            denom += inv_mass[vi] * kk * kk
            cx += kk * x[vi, 0]
            cy += kk * x[vi, 1]
            cz += kk * x[vi, 2]
        if denom <= 0.0:
            continue
        sx = -cx / denom
        sy = -cy / denom
        sz = -cz / denom
        for k in range(4):
            vi = hinges[b, k]
            f = inv_mass[vi] * hinge_k[b, k]
            x[vi, 0] += f * sx
            x[vi, 1] += f * sy
            x[vi, 2] += f * sz


@nb.njit(cache=True, nogil=True, inline="always")
def _friction(x, x_prev, i, nx, ny, nz, bdx, bdy, bdz, penetration, mu):
    """Coulomb friction as a position correction (Macklin et al. 2014, Unified Particle Physics).

    (bdx, bdy, bdz) is how far the touched surface point moved in this substep; the cloth
    vertex's tangential motion relative to it is cancelled while it is within the friction
    cone (static) and shortened by μ·penetration otherwise (kinetic).
    """
    rx = x[i, 0] - x_prev[i, 0] - bdx
    ry = x[i, 1] - x_prev[i, 1] - bdy
    rz = x[i, 2] - x_prev[i, 2] - bdz
    rn = rx * nx + ry * ny + rz * nz
    tx = rx - rn * nx
    ty = ry - rn * ny
    tz = rz - rn * nz
    tl = math.sqrt(tx * tx + ty * ty + tz * tz)
    if tl < 1e-15:
        return
    limit = mu * penetration
    f = 1.0 if tl <= limit else limit / tl
    x[i, 0] -= f * tx
    x[i, 1] -= f * ty
    x[i, 2] -= f * tz


@nb.njit(cache=True, nogil=True, inline="always")
def _push_from_triangle(
    x,
    x_prev,
    i,
    f,
    body_prev,
    body_cur,
    normal_prev,
    normal_cur,
    body_faces,
    a0,
    a1,
    offset,
    mu,
    max_depth,
    hit,
    record,
):
    """Push vertex i out of body triangle f at substep time a1 (see `_collide_body`)."""
    b0 = 1.0 - a1
    p0 = 1.0 - a0
    ia = body_faces[f, 0]
    ib = body_faces[f, 1]
    ic = body_faces[f, 2]
    ax = b0 * body_prev[ia, 0] + a1 * body_cur[ia, 0]
    ay = b0 * body_prev[ia, 1] + a1 * body_cur[ia, 1]
    az = b0 * body_prev[ia, 2] + a1 * body_cur[ia, 2]
    bx = b0 * body_prev[ib, 0] + a1 * body_cur[ib, 0]
    by = b0 * body_prev[ib, 1] + a1 * body_cur[ib, 1]
    bz = b0 * body_prev[ib, 2] + a1 * body_cur[ib, 2]
    cx = b0 * body_prev[ic, 0] + a1 * body_cur[ic, 0]
    cy = b0 * body_prev[ic, 1] + a1 * body_cur[ic, 1]
    cz = b0 * body_prev[ic, 2] + a1 * body_cur[ic, 2]
    u, v, w = closest_point_on_triangle(
        x[i, 0], x[i, 1], x[i, 2], ax, ay, az, bx, by, bz, cx, cy, cz
    )
    # Phong normal: barycentric blend of area-weighted vertex normals. A sliver
    # triangle's own normal is noise; its corners' normals are not.
    nx = 0.0
    ny = 0.0
    nz = 0.0
    for corner, wt in ((ia, u), (ib, v), (ic, w)):
        nx += wt * (b0 * normal_prev[corner, 0] + a1 * normal_cur[corner, 0])
        ny += wt * (b0 * normal_prev[corner, 1] + a1 * normal_cur[corner, 1])
        nz += wt * (b0 * normal_prev[corner, 2] + a1 * normal_cur[corner, 2])
    nl = math.sqrt(nx * nx + ny * ny + nz * nz)
    if nl < 1e-12:
        return
    nx /= nl
    ny /= nl
    nz /= nl
    qx = u * ax + v * bx + w * cx
    qy = u * ay + v * by + w * cy
    qz = u * az + v * bz + w * cz
    d = (x[i, 0] - qx) * nx + (x[i, 1] - qy) * ny + (x[i, 2] - qz) * nz
    if d >= offset or d < -max_depth:
        return
    pen = offset - d
    x[i, 0] += pen * nx
    x[i, 1] += pen * ny
    x[i, 2] += pen * nz
    # where the touched surface point was at the start of this substep
    ox = (
        u * (p0 * body_prev[ia, 0] + a0 * body_cur[ia, 0])
        + v * (p0 * body_prev[ib, 0] + a0 * body_cur[ib, 0])
        + w * (p0 * body_prev[ic, 0] + a0 * body_cur[ic, 0])
    )
    oy = (
        u * (p0 * body_prev[ia, 1] + a0 * body_cur[ia, 1])
        + v * (p0 * body_prev[ib, 1] + a0 * body_cur[ib, 1])
        + w * (p0 * body_prev[ic, 1] + a0 * body_cur[ic, 1])
    )
    oz = (
        u * (p0 * body_prev[ia, 2] + a0 * body_cur[ia, 2])
        + v * (p0 * body_prev[ib, 2] + a0 * body_cur[ib, 2])
        + w * (p0 * body_prev[ic, 2] + a0 * body_cur[ic, 2])
    )
    _friction(x, x_prev, i, nx, ny, nz, qx - ox, qy - oy, qz - oz, pen, mu)
    if record:
        hit[i, 0] = nx
        hit[i, 1] = ny
        hit[i, 2] = nz
        hit[i, 3] = qx - ox
        hit[i, 4] = qy - oy
        hit[i, 5] = qz - oz
        hit[i, 6] = 1.0


@nb.njit(cache=True, nogil=True)
def _collide_body(
    x,
    x_prev,
    inv_mass,
    contact_tri,
    contact_extra,
    body_prev,
    body_cur,
    normal_prev,
    normal_cur,
    body_faces,
    a0,
    a1,
    offset,
    mu,
    max_depth,
    hit,
):
    """Push vertices out of their contact triangles, interpolated to substep time a1 ∈ (0, 1].

    The triangle is the one closest to the vertex at the frame start; moving it linearly from
    the previous to the current body pose substep by substep lets a fast limb sweep cloth
    ahead of it instead of jumping past it between frames. `contact_extra` (N, k) are the
    vertex's contacts on other sides of the body (a crease: the thigh and the belly), pushed
    from first and the closest last, so cloth caught between two sides is pushed out of both
    in turn instead of through one of them. Where `hit` has a row per vertex, a pushed
    vertex's row gets the contact normal, the touched surface point's displacement in this
    substep (metres) and a 1 (for the inelastic velocity update); a 0-row `hit` records
    nothing.
    """
    record = hit.shape[0] == x.shape[0]
    sides = contact_extra.shape[1] if contact_extra.shape[0] == x.shape[0] else 0
    for i in range(x.shape[0]):
        if inv_mass[i] == 0.0:  # pins go where the caller puts them
            continue
        for k in range(sides + 1):
            f = contact_extra[i, k] if k < sides else contact_tri[i]
            if f < 0:
                continue
            _push_from_triangle(
                x,
                x_prev,
                i,
                f,
                body_prev,
                body_cur,
                normal_prev,
                normal_cur,
                body_faces,
                a0,
                a1,
                offset,
                mu,
                max_depth,
                hit,
                record,
            )


@nb.njit(cache=True, nogil=True)
def vertex_normals(vertices, faces):
    """Area-weighted unit vertex normals (N, 3) of a triangle mesh (outward for CCW faces)."""
    n = np.zeros_like(vertices)
    for f in range(faces.shape[0]):
        a = faces[f, 0]
        b = faces[f, 1]
        c = faces[f, 2]
        ux = vertices[b, 0] - vertices[a, 0]
        uy = vertices[b, 1] - vertices[a, 1]
        uz = vertices[b, 2] - vertices[a, 2]
        vx = vertices[c, 0] - vertices[a, 0]
        vy = vertices[c, 1] - vertices[a, 1]
        vz = vertices[c, 2] - vertices[a, 2]
        cx = uy * vz - uz * vy
        cy = uz * vx - ux * vz
        cz = ux * vy - uy * vx
        for k in (a, b, c):
            n[k, 0] += cx
            n[k, 1] += cy
            n[k, 2] += cz
    for i in range(n.shape[0]):
        length = math.sqrt(n[i, 0] ** 2 + n[i, 1] ** 2 + n[i, 2] ** 2)
        if length > 0.0:
            n[i, 0] /= length
            n[i, 1] /= length
            n[i, 2] /= length
    return n


@nb.njit(cache=True, nogil=True)
def _collide_spheres(x, x_prev, inv_mass, spheres, offset, mu):
    for s in range(spheres.shape[0]):
        sx = spheres[s, 0]
        sy = spheres[s, 1]
        sz = spheres[s, 2]
        r = spheres[s, 3] + offset
        for i in range(x.shape[0]):
            if inv_mass[i] == 0.0:
                continue
            dx = x[i, 0] - sx
            dy = x[i, 1] - sy
            dz = x[i, 2] - sz
            d2 = dx * dx + dy * dy + dz * dz
            if d2 >= r * r or d2 < 1e-24:
                continue
            d = math.sqrt(d2)
            nx = dx / d
            ny = dy / d
            nz = dz / d
            pen = r - d
            x[i, 0] += pen * nx
            x[i, 1] += pen * ny
            x[i, 2] += pen * nz
            _friction(x, x_prev, i, nx, ny, nz, 0.0, 0.0, 0.0, pen, mu)


@nb.njit(cache=True, nogil=True)
def simulate_frame(
    x: NDArray[np.float64],
    v: NDArray[np.float64],
    x_prev: NDArray[np.float64],
    inv_mass: NDArray[np.float64],
    edges: NDArray[np.int32],
    edge_rest_m: NDArray[np.float64],
    edge_compliance: NDArray[np.float64],
    tethers: NDArray[np.int32],
    tether_max_m: NDArray[np.float64],
    hinges: NDArray[np.int32],
    hinge_k: NDArray[np.float64],
    hinge_compliance: NDArray[np.float64],
    pin_idx: NDArray[np.int64],
    pin_from_m: NDArray[np.float64],
    pin_to_m: NDArray[np.float64],
    gravity: NDArray[np.float64],
    dt: float,
    substeps: int,
    iterations: int,
    damping_per_s: float,
    omega: float,
    contact_tri: NDArray[np.int32],
    contact_extra: NDArray[np.int32],
    body_prev: NDArray[np.float64],
    body_cur: NDArray[np.float64],
    normal_prev: NDArray[np.float64],
    normal_cur: NDArray[np.float64],
    body_faces: NDArray[np.int32],
    spheres: NDArray[np.float64],
    contact_offset_m: float,
    friction: float,
    max_depth_m: float,
    strain_limit: float,
    strain_limit_every: int,
    strain_limit_sweeps: int,
) -> None:
    """Advance positions x and velocities v (both (N, 3), in place) by one frame of dt seconds."""
    n = x.shape[0]
    h = dt / substeps
    inv_h2 = 1.0 / (h * h)
    edge_alpha = edge_compliance * inv_h2
    hinge_alpha = hinge_compliance * inv_h2
    damp = max(0.0, 1.0 - damping_per_s * h)
    gx = gravity[0] * h
    gy = gravity[1] * h
    gz = gravity[2] * h
    hit = np.zeros((n if body_faces.shape[0] > 0 else 0, 7))
    no_hit = np.zeros((0, 7))
    for s in range(substeps):
        a0 = s / substeps
        a1 = (s + 1.0) / substeps
        for i in range(hit.shape[0]):
            hit[i, 6] = 0.0
        for i in range(n):
            x_prev[i, 0] = x[i, 0]
            x_prev[i, 1] = x[i, 1]
            x_prev[i, 2] = x[i, 2]
            if inv_mass[i] == 0.0:
                continue
            v[i, 0] = (v[i, 0] + gx) * damp
            v[i, 1] = (v[i, 1] + gy) * damp
            v[i, 2] = (v[i, 2] + gz) * damp
            x[i, 0] += h * v[i, 0]
            x[i, 1] += h * v[i, 1]
            x[i, 2] += h * v[i, 2]
        for p in range(pin_idx.shape[0]):
            i = pin_idx[p]
            for k in range(3):
                x[i, k] = (1.0 - a1) * pin_from_m[p, k] + a1 * pin_to_m[p, k]
        for _ in range(iterations):
            # tethers first: the edge sweep after them spreads their end-point corrections
            # over the neighbouring edges instead of leaving kinks for friction to lock in
            _solve_tethers(x, inv_mass, tethers, tether_max_m)
            for c in range(edges.shape[0]):
                _solve_distance(
                    x,
                    inv_mass,
                    edges[c, 0],
                    edges[c, 1],
                    edge_rest_m[c],
                    edge_alpha[c],
                    False,
                    omega,
                )
            _solve_hinges(x, inv_mass, hinges, hinge_k, hinge_alpha)
        if body_faces.shape[0] > 0:
            _collide_body(
                x,
                x_prev,
                inv_mass,
                contact_tri,
                contact_extra,
                body_prev,
                body_cur,
                normal_prev,
                normal_cur,
                body_faces,
                a0,
                a1,
                contact_offset_m,
                friction,
                max_depth_m,
                hit,
            )
        if spheres.shape[0] > 0:
            _collide_spheres(x, x_prev, inv_mass, spheres, contact_offset_m, friction)
        if strain_limit > 0.0 and (s + 1) % strain_limit_every == 0:
            # Strain limiting (Provot 1995): stretch beyond the limit is pulled back even where
            # static friction holds both ends, so impact stretch cannot stay locked in by
            # friction; contacts are then re-projected without friction. The correction is
            # geometric only: x_prev moves with x, so it adds no velocity (no energy).
            for i in range(n):
                for k in range(3):
                    x_prev[i, k] -= x[i, k]
            for _ in range(strain_limit_sweeps):
                for c in range(edges.shape[0]):
                    _solve_distance(
                        x,
                        inv_mass,
                        edges[c, 0],
                        edges[c, 1],
                        edge_rest_m[c] * (1.0 + strain_limit),
                        0.0,
                        True,
                        1.0,
                    )
            if body_faces.shape[0] > 0:
                _collide_body(
                    x,
                    x_prev,
                    inv_mass,
                    contact_tri,
                    contact_extra,
                    body_prev,
                    body_cur,
                    normal_prev,
                    normal_cur,
                    body_faces,
                    a0,
                    a1,
                    contact_offset_m,
                    0.0,
                    max_depth_m,
                    no_hit,
                )
            if spheres.shape[0] > 0:
                _collide_spheres(x, x_prev, inv_mass, spheres, contact_offset_m, 0.0)
            for i in range(n):
                for k in range(3):
                    x_prev[i, k] += x[i, k]
        inv_h = 1.0 / h
        for i in range(n):
            v[i, 0] = (x[i, 0] - x_prev[i, 0]) * inv_h
            v[i, 1] = (x[i, 1] - x_prev[i, 1]) * inv_h
            v[i, 2] = (x[i, 2] - x_prev[i, 2]) * inv_h
        # Inelastic contact: a vertex pushed out of the body leaves with no more normal speed
        # than the surface it touches. The push itself is a position correction; taken as
        # velocity it throws the vertex off the skin, and in a skin crease (armpit, elbow
        # of a raised arm) the two sides throw it back and forth for ever.
        for i in range(hit.shape[0]):
            if hit[i, 6] == 0.0:
                continue
            rx = v[i, 0] - hit[i, 3] * inv_h
            ry = v[i, 1] - hit[i, 4] * inv_h
            rz = v[i, 2] - hit[i, 5] * inv_h
            vn = rx * hit[i, 0] + ry * hit[i, 1] + rz * hit[i, 2]
            if vn > 0.0:
                v[i, 0] -= vn * hit[i, 0]
                v[i, 1] -= vn * hit[i, 1]
                v[i, 2] -= vn * hit[i, 2]


@nb.njit(cache=True, nogil=True)
def apply_air_drag(x, v, faces, inv_mass, vertex_mass, air_density, drag_coefficient, dt):
    """Quadratic normal air drag, ½ ρ C_d A (v·n)|v·n|, as one implicit-clamped velocity update.

    Applied once per frame; the change is clamped so drag can stop, never reverse, the normal
    motion of a vertex (no energy injection however large dt is).
    """
    n = x.shape[0]
    fx = np.zeros(n)
    fy = np.zeros(n)
    fz = np.zeros(n)
    for t in range(faces.shape[0]):
        a = faces[t, 0]
        b = faces[t, 1]
        c = faces[t, 2]
        ux, uy, uz = x[b, 0] - x[a, 0], x[b, 1] - x[a, 1], x[b, 2] - x[a, 2]
        wx, wy, wz = x[c, 0] - x[a, 0], x[c, 1] - x[a, 1], x[c, 2] - x[a, 2]
        nx = uy * wz - uz * wy
        ny = uz * wx - ux * wz
        nz = ux * wy - uy * wx
        area2 = math.sqrt(nx * nx + ny * ny + nz * nz)
        if area2 < 1e-20:
            continue
        nx /= area2
        ny /= area2
        nz /= area2
        vx = (v[a, 0] + v[b, 0] + v[c, 0]) / 3.0
        vy = (v[a, 1] + v[b, 1] + v[c, 1]) / 3.0
        vz = (v[a, 2] + v[b, 2] + v[c, 2]) / 3.0
        vn = vx * nx + vy * ny + vz * nz
        f = -0.5 * air_density * drag_coefficient * 0.5 * area2 * vn * abs(vn) / 3.0
        for k in range(3):
            vi = faces[t, k]
            fx[vi] += f * nx
            fy[vi] += f * ny
            fz[vi] += f * nz
    for i in range(n):
        if inv_mass[i] == 0.0:
            continue
        dvx = fx[i] * inv_mass[i] * dt
        dvy = fy[i] * inv_mass[i] * dt
        dvz = fz[i] * inv_mass[i] * dt
        dv2 = dvx * dvx + dvy * dvy + dvz * dvz
        v2 = v[i, 0] * v[i, 0] + v[i, 1] * v[i, 1] + v[i, 2] * v[i, 2]
        if dv2 > v2 and dv2 > 0.0:
            s = math.sqrt(v2 / dv2)
            dvx *= s
            dvy *= s
            dvz *= s
        v[i, 0] += dvx
        v[i, 1] += dvy
        v[i, 2] += dvz
