"""Pieces of a garment file and whether they fit the category it was uploaded as.

A piece is a connected set of panels (after welding): a T-shirt is one piece, MakeHuman's
outfits are two (top and bottom) in one file. A piece hangs from the shoulders when it reaches
the top of the garment (tops, dresses, overalls' bibs) and from the waist otherwise (trousers,
skirts under a top), which is what placement on a twin needs to know.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from spatialtwin.errors import SpatialTwinError
from spatialtwin.garment.mesh import GarmentMesh, triangle_areas
from spatialtwin.garment.units import CATEGORY_HEIGHT_M

MAJOR_PIECE_SHARE = 0.05  # a piece under 5 % of the cloth area is trim, not a garment
SHOULDER_HUNG_WITHIN_M = 0.12  # a piece whose top is this close to the garment's top
SINGLE_PIECE = ("top", "outerwear", "dress", "skirt", "trousers")
WAIST_HUNG = ("skirt", "trousers")


@dataclass(frozen=True)
class Piece:
    index: int
    vertices: int
    triangles: int
    area_m2: float
    y_range_m: tuple[float, float]
    extent_m: tuple[float, float, float]
    hangs_from: str  # "shoulders" or "waist"

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "vertices": self.vertices,
            "triangles": self.triangles,
            "area_m2": round(self.area_m2, 5),
            "y_range_m": [round(y, 4) for y in self.y_range_m],
            "extent_m": [round(e, 4) for e in self.extent_m],
            "hangs_from": self.hangs_from,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Piece:
        return cls(
            index=int(data["index"]),
            vertices=int(data["vertices"]),
            triangles=int(data["triangles"]),
            area_m2=float(data["area_m2"]),
            y_range_m=(float(data["y_range_m"][0]), float(data["y_range_m"][1])),
            extent_m=tuple(float(e) for e in data["extent_m"]),  # type: ignore[arg-type]
            hangs_from=str(data["hangs_from"]),
        )


def describe_pieces(mesh: GarmentMesh, category: str) -> list[Piece]:
    """One `Piece` per piece index in `mesh.face_piece` (largest first)."""
    areas = triangle_areas(mesh.vertices_m, mesh.faces)
    top = float(mesh.vertices_m[:, 1].max())
    pieces = []
    for k in range(int(mesh.face_piece.max()) + 1):
        sel = mesh.face_piece == k
        vids = np.unique(mesh.faces[sel])
        pts = mesh.vertices_m[vids]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        if category in WAIST_HUNG:
            hangs = "waist"
        elif category == "outfit":
            hangs = "shoulders" if top - hi[1] < SHOULDER_HUNG_WITHIN_M else "waist"
        else:
            hangs = "shoulders"
        pieces.append(
            Piece(
                index=k,
                vertices=len(vids),
                triangles=int(sel.sum()),
                area_m2=float(areas[sel].sum()),
                y_range_m=(float(lo[1]), float(hi[1])),
                extent_m=tuple(float(e) for e in hi - lo),  # type: ignore[arg-type]
                hangs_from=hangs,
            )
        )
    return pieces


def _stacked(a: Piece, b: Piece) -> bool:
    """True when one piece sits mostly above the other (a top over trousers)."""
    overlap = min(a.y_range_m[1], b.y_range_m[1]) - max(a.y_range_m[0], b.y_range_m[0])
    shorter = min(a.extent_m[1], b.extent_m[1])
    return overlap < 0.5 * shorter


def check_category(pieces: list[Piece], category: str, height_m: float) -> None:
    """Refuse files whose pieces do not make the garment they are uploaded as."""
    total = sum(p.area_m2 for p in pieces)
    major = [p for p in pieces if p.area_m2 >= MAJOR_PIECE_SHARE * total]
    lo, hi, _ = CATEGORY_HEIGHT_M[category]
    detail = {
        "category": category,
        "pieces": len(pieces),
        "major_pieces": len(major),
        "height_m": round(height_m, 4),
        "height_range_m": [lo, hi],
    }
    if not lo <= height_m <= hi:
        raise SpatialTwinError(
            "category_mismatch",
            f"a {category} is {lo}–{hi} m tall; this garment is {height_m:.3f} m",
            detail,
            status=422,
        )
    if category == "outfit" and len(major) < 2:
        raise SpatialTwinError(
            "category_mismatch",
            "an outfit is several pieces worn together; this file has one piece: "
            "upload it as top, dress, skirt, trousers or outerwear",
            detail,
            status=422,
        )
    if category in SINGLE_PIECE:
        stacked = [
            (a.index, b.index)
            for i, a in enumerate(major)
            for b in major[i + 1 :]
            if _stacked(a, b)
        ]
        if stacked:
            raise SpatialTwinError(
                "category_mismatch",
                f"this file holds {len(major)} pieces worn one above the other (e.g. a top "
                f"and trousers), not a single {category}: upload it as an outfit",
                {**detail, "stacked_pieces": stacked},
                status=422,
            )
