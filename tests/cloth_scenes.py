"""Reference garments for the solver's tests and bench: a square sheet and a flared skirt.

Test fixtures, not product: no service drapes them. They live with the tests (imported as
`tests.cloth_scenes`, like the other shared helpers here); bench/cloth.py puts the repository
root on its path to import the same module, so bench figures and test assertions are about the
same garments.

Both are built the way real garments are: a flat panel in pattern space (the rest shape, metres)
placed in 3D by an isometric embedding, so they start stress-free. The skirt's panel is an
annular sector rolled into a cone and closed by a seam, sized from the body it is put on (with
ease: it is a size that fits, never rescaled to the body afterwards).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from spatialtwin.errors import SpatialTwinError


def grid_faces(rows: int, cols: int, closed_cols: bool = False) -> NDArray[np.int32]:
    """Triangles of a rows × cols vertex grid, alternating diagonals (no preferred shear)."""
    idx = np.arange(rows * cols).reshape(rows, cols)
    c_end = cols if closed_cols else cols - 1
    i, j = np.meshgrid(np.arange(rows - 1), np.arange(c_end), indexing="ij")
    i, j = i.ravel(), j.ravel()
    a = idx[i, j]
    b = idx[i + 1, j]
    c = idx[i + 1, (j + 1) % cols]
    d = idx[i, (j + 1) % cols]
    flip = (i + j) % 2 == 1
    t1 = np.where(flip[:, None], np.stack([a, b, d], 1), np.stack([a, b, c], 1))
    t2 = np.where(flip[:, None], np.stack([b, c, d], 1), np.stack([a, c, d], 1))
    return np.concatenate([t1, t2]).astype(np.int32)


def square_sheet(
    resolution: int, side_m: float, height_m: float
) -> tuple[NDArray[np.float64], NDArray[np.int32]]:
    """A horizontal resolution × resolution sheet of side_m metres centred above the origin."""
    s = np.linspace(-side_m / 2, side_m / 2, resolution)
    x, z = np.meshgrid(s, s, indexing="ij")
    v = np.stack([x.ravel(), np.full(x.size, height_m), z.ravel()], axis=1)
    return v, grid_faces(resolution, resolution)


@dataclass(frozen=True)
class SkirtPattern:
    """A flared skirt: pattern (rest) coordinates, 3D start positions, seam and waistband."""

    rest_positions_m: NDArray[np.float64]  # (N, 3) flat panel, z = 0
    positions_m: NDArray[np.float64]  # (N, 3) rolled into a cone around the body
    faces: NDArray[np.int32]
    seams: NDArray[np.int32]  # (S, 2) first column stitched to last column
    waistband: NDArray[np.int64]  # vertex indices of the top row
    hem: NDArray[np.int64]  # vertex indices of the bottom row
    rows: int
    cols: int


def torso_radius_m(
    body_vertices_m: NDArray[np.floating],
    height_m: float,
    half_width_m: float = 0.26,
    slab_m: float = 0.01,
) -> tuple[float, float, float]:
    """Centre (x, z) and largest radius of the trunk's cross-section at a height (arms cut off)."""
    v = np.asarray(body_vertices_m)
    s = v[(np.abs(v[:, 1] - height_m) < slab_m) & (np.abs(v[:, 0]) < half_width_m)]
    if len(s) < 8:
        raise SpatialTwinError(
            "bad_body_mesh", "body has no trunk at that height", {"height_m": height_m}
        )
    # box centre, not the mean: a decimated body has uneven vertex density around its trunk
    cx = 0.5 * (s[:, 0].min() + s[:, 0].max())
    cz = 0.5 * (s[:, 2].min() + s[:, 2].max())
    r = float(np.max(np.hypot(s[:, 0] - cx, s[:, 2] - cz)))
    return float(cx), float(cz), r


def flared_skirt(
    body_vertices_m: NDArray[np.floating],
    target_vertices: int,
    waist_height_m: float = 1.08,
    length_m: float = 0.55,
    flare_deg: float = 14.0,
    ease_m: float = 0.012,
) -> SkirtPattern:
    """A one-panel A-line skirt hung around the body's waist, about `target_vertices` vertices.

    The panel is an annular sector (rest shape); rolled up it is a cone of half-angle
    `flare_deg` whose top circle clears the trunk at `waist_height_m` by `ease_m`. The cone is
    checked to clear the trunk all the way down so the skirt starts outside the body.
    """
    if target_vertices < 64:
        raise SpatialTwinError(
            "bad_skirt", "a skirt needs at least 64 vertices", {"target_vertices": target_vertices}
        )
    cx, cz, r_body = torso_radius_m(body_vertices_m, waist_height_m)
    r_top = r_body + ease_m
    sin_f = np.sin(np.radians(flare_deg))
    theta = 2 * np.pi * sin_f  # sector angle of the flat panel
    rho_top = r_top / sin_f
    rho_bot = rho_top + length_m
    # rows × cols with near-square cells at mid-length
    mid_circ = theta * 0.5 * (rho_top + rho_bot)
    cols = max(8, round(np.sqrt(target_vertices * mid_circ / length_m)))
    rows = max(4, round(target_vertices / cols))
    rho = np.linspace(rho_top, rho_bot, rows)
    phi = np.linspace(0.0, theta, cols)
    R, P = np.meshgrid(rho, phi, indexing="ij")
    rest = np.stack(
        [R.ravel() * np.cos(P.ravel()), R.ravel() * np.sin(P.ravel()), np.zeros(R.size)], axis=1
    )
    # isometric embedding as a cone: slant distance rho → radius rho·sinf, drop rho·cosf
    radius = R * sin_f
    ang = P / sin_f  # goes once around
    y = waist_height_m - (R - rho_top) * np.cos(np.radians(flare_deg))
    pos = np.stack(
        [
            cx + radius.ravel() * np.sin(ang.ravel()),
            y.ravel(),
            cz + radius.ravel() * np.cos(ang.ravel()),
        ],
        axis=1,
    )
    for row in range(0, rows, max(1, rows // 12)):
        yy = float(y[row, 0])
        try:
            _, _, rb = torso_radius_m(body_vertices_m, yy)
        except SpatialTwinError:
            continue
        if radius[row, 0] <= rb:
            raise SpatialTwinError(
                "bad_skirt",
                "skirt cone would start inside the body",
                {"height_m": yy, "skirt_radius_m": float(radius[row, 0]), "body_radius_m": rb},
            )
    faces = grid_faces(rows, cols)
    idx = np.arange(rows * cols).reshape(rows, cols)
    seams = np.stack([idx[:, 0], idx[:, -1]], axis=1).astype(np.int32)
    return SkirtPattern(
        rest, pos, faces, seams, idx[0].astype(np.int64), idx[-1].astype(np.int64), rows, cols
    )
