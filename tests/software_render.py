"""A small z-buffer rasteriser for tests: orthographic views of meshes, a colour image to look
at and an id buffer (which mesh each pixel shows) to count what is visible.

Views look at the body from its front (+Z), left (+X), back (−Z) or right (−X); +Y is up.
"""

from __future__ import annotations

from pathlib import Path

import numba as nb
import numpy as np
from numpy.typing import NDArray
from PIL import Image

VIEW_ANGLE = {"front": 0.0, "left": np.pi / 2, "back": np.pi, "right": -np.pi / 2}


@nb.njit(cache=True)
def _raster(px, py, pz, faces, face_mesh, width, height, depth, ids, face_of):
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        x0, y0, x1, y1, x2, y2 = px[a], py[a], px[b], py[b], px[c], py[c]
        den = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)
        if abs(den) < 1e-12:
            continue
        lo_x = max(int(min(x0, x1, x2)), 0)
        hi_x = min(int(max(x0, x1, x2)) + 1, width - 1)
        lo_y = max(int(min(y0, y1, y2)), 0)
        hi_y = min(int(max(y0, y1, y2)) + 1, height - 1)
        for yy in range(lo_y, hi_y + 1):
            for xx in range(lo_x, hi_x + 1):
                sx = xx + 0.5
                sy = yy + 0.5
                l0 = ((y1 - y2) * (sx - x2) + (x2 - x1) * (sy - y2)) / den
                l1 = ((y2 - y0) * (sx - x2) + (x0 - x2) * (sy - y2)) / den
                l2 = 1.0 - l0 - l1
                if l0 < 0.0 or l1 < 0.0 or l2 < 0.0:
                    continue
                z = l0 * pz[a] + l1 * pz[b] + l2 * pz[c]
                if z > depth[yy, xx]:
                    depth[yy, xx] = z
                    ids[yy, xx] = face_mesh[f]
                    face_of[yy, xx] = f


def render(
    meshes: list[tuple[NDArray[np.floating], NDArray[np.integer]]],
    view: str,
    box_m: tuple[tuple[float, float], tuple[float, float]],
    pixels_per_m: float = 500.0,
) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
    """(id buffer: index of the mesh seen at each pixel or −1, Lambert shade 0..1 per pixel)
    of `meshes` seen from `view`; `box_m` is ((x_lo, x_hi), (y_lo, y_hi)) in view coordinates."""
    angle = VIEW_ANGLE[view]
    rot = np.array(
        [[np.cos(angle), 0, -np.sin(angle)], [0, 1, 0], [np.sin(angle), 0, np.cos(angle)]]
    )
    verts, faces, owner, base = [], [], [], 0
    for i, (v, f) in enumerate(meshes):
        verts.append(np.asarray(v, dtype=np.float64) @ rot.T)
        faces.append(np.asarray(f, dtype=np.int64) + base)
        owner.append(np.full(len(f), i, dtype=np.int32))
        base += len(v)
    w, f, face_mesh = np.concatenate(verts), np.concatenate(faces), np.concatenate(owner)
    (x_lo, x_hi), (y_lo, y_hi) = box_m
    width = int((x_hi - x_lo) * pixels_per_m)
    height = int((y_hi - y_lo) * pixels_per_m)
    px = (w[:, 0] - x_lo) * pixels_per_m
    py = (y_hi - w[:, 1]) * pixels_per_m
    depth = np.full((height, width), -np.inf)
    ids = np.full((height, width), -1, dtype=np.int32)
    face_of = np.full((height, width), -1, dtype=np.int64)
    _raster(px, py, w[:, 2].copy(), f, face_mesh, width, height, depth, ids, face_of)
    tri = w[f]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    light = np.array([0.3, 0.4, 0.85]) / np.linalg.norm([0.3, 0.4, 0.85])
    shade = np.where(face_of >= 0, 0.25 + 0.75 * np.abs(n @ light)[face_of], 1.0)
    return ids, shade


def save_png(
    ids: NDArray[np.int32],
    shade: NDArray[np.float64],
    colours: list[tuple[float, float, float]],
    path: Path,
) -> None:
    """Write the render as a PNG: each mesh in its colour, shaded, white background."""
    palette = np.vstack([np.asarray(colours, dtype=np.float64), [[1.0, 1.0, 1.0]]])
    rgb = palette[ids] * shade[:, :, None]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)).save(path)


def shows_through(ids: NDArray[np.int32], inner: int, outer: int) -> int:
    """Pixels where mesh `inner` is seen with mesh `outer` seen below it in the same column:
    the inner garment showing through the outer one above the outer one's hem."""
    rows = np.arange(ids.shape[0])[:, None]
    outer_rows = np.where(ids == outer, rows, -1)
    lowest_outer = outer_rows.max(axis=0)  # image rows grow downwards
    return int(np.sum((ids == inner) & (rows < lowest_outer[None, :])))
