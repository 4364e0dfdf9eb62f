"""OBJ geometry read corner by corner: positions, fanned faces, each corner's own UV.

trimesh's OBJ loader, asked to keep the file's vertex order, keeps one UV per vertex: every
vertex on a UV seam (a sleeve's cut, 180-390 in each MakeHuman outfit) loses all but one of
its UVs, seam faces stretch across the whole texture, and where the seams are many it drops
the UVs altogether (the garment then shows one flat colour). A garment's texture is what the
shopper sees, so the OBJ is read here, `f v/vt/vn` corner by corner, in file order.

The text must already have passed `garment_io._check_obj_text` (vertex lines complete, face
vertex indices in range, one index format per face); texture indices are checked here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from spatialtwin.errors import SpatialTwinError


@dataclass(frozen=True)
class ObjBlock:
    """The faces of one `usemtl` material: its own vertices (file units), triangles, UVs."""

    material: str | None
    vertices: NDArray[np.float64]  # (N, 3)
    faces: NDArray[np.int64]  # (F, 3), quads and n-gons fanned from their first corner
    corner_uvs: NDArray[np.float32] | None  # (F, 3, 2), OBJ convention (v up), or None


def _corrupt(filename: str, message: str, line: int) -> SpatialTwinError:
    return SpatialTwinError(
        "corrupt_file",
        f"{filename!r} cannot be read: {message}",
        {"filename": filename, "format": "obj", "line": line},
        status=422,
    )


def _index(token: bytes, count: int, filename: str, line: int, what: str) -> int:
    try:
        i = int(token)
    except ValueError:
        raise _corrupt(filename, f"line {line} has a malformed {what} index", line) from None
    if i == 0 or i > count or -i > count:
        raise _corrupt(filename, f"line {line} refers to {what} {i} of {count}", line)
    return i - 1 if i > 0 else count + i


def read_obj_blocks(data: bytes, filename: str) -> list[ObjBlock]:
    """The OBJ's faces grouped by material, in order of first use."""
    positions: list[tuple[float, float, float]] = []
    uvs: list[tuple[float, float]] = []
    groups: dict[str | None, tuple[list[list[int]], list[list[int]]]] = {}
    material: str | None = None
    for number, raw in enumerate(data.splitlines(), start=1):
        line = raw.strip()
        if line.startswith(b"v "):
            p = line.split()
            try:
                positions.append((float(p[1]), float(p[2]), float(p[3])))
            except (ValueError, IndexError):
                raise _corrupt(filename, f"line {number} is not a vertex", number) from None
        elif line.startswith(b"vt "):
            p = line.split()
            try:
                uvs.append((float(p[1]), float(p[2]) if len(p) > 2 else 0.0))
            except (ValueError, IndexError):
                raise _corrupt(filename, f"line {number} is not a texture vertex", number) from None
        elif line.startswith(b"usemtl"):
            name = line[6:].strip().decode("utf-8", "replace")
            material = name or None
        elif line.startswith(b"f "):
            corners = line.split()[1:]
            vi, ti = [], []
            for token in corners:
                parts = token.split(b"/")
                vi.append(_index(parts[0], len(positions), filename, number, "vertex"))
                if len(parts) > 1 and parts[1]:
                    ti.append(_index(parts[1], len(uvs), filename, number, "texture vertex"))
            faces, face_uvs = groups.setdefault(material, ([], []))
            for k in range(1, len(vi) - 1):  # fan from the first corner, as trimesh does
                faces.append([vi[0], vi[k], vi[k + 1]])
                face_uvs.append([ti[0], ti[k], ti[k + 1]] if len(ti) == len(vi) else [])
    # Non-finite coordinates are the ingest checks' to refuse (`non_finite_vertices`).
    all_v = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    all_t = np.asarray(uvs, dtype=np.float64).reshape(-1, 2)
    blocks = []
    for name, (faces, face_uvs) in groups.items():
        f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
        if not len(f):
            continue
        used, local = np.unique(f, return_inverse=True)
        corner_uvs = None
        if any(face_uvs):
            corner_uvs = np.zeros((len(f), 3, 2), dtype=np.float32)
            for row, t in enumerate(face_uvs):
                if t:
                    corner_uvs[row] = all_t[t]
        blocks.append(ObjBlock(name, all_v[used], local.reshape(-1, 3), corner_uvs))
    return blocks
