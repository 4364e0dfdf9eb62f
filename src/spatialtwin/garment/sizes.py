"""Size runs: one garment (one SKU) in several sizes, and the size that fits a twin best.

A size run is every stored garment with the same `sku`, each with its own `size_label` and its
own mesh (a size is a different garment, never a rescale). Sizes sort by `size_sort_key`:
letter sizes XXS < XS < S < M < L < XL < XXL (also 2XL, 3XL …), then numeric ones by their
numbers (38 < 40; "W28 L30" < "W28 L32" < "W30 L30"), then anything else alphabetically.

The best size for a twin is chosen by **ease**, garment girth minus body girth (metres), at the
chest, waist and hips:

1. the body's levels and girths come from `body.measure.measure_body` on the twin's bind pose;
2. each size is placed on the twin (`placement.place_garment`; its translated shape, before
   the push out of the body, so a small size is not measured after being forced over it);
3. at each level the garment spans, the garment girth is the taut-tape perimeter of the
   horizontal cross-section of that shape enclosing the body's axis (`body.measure.
   girth_at_height`, the same tape as the body's), and the body girth is measured at the same
   height. A waistband sits at the waist, where the section through its top edge is
   undefined, so a level within `band_m` below or above a garment's top edge is measured
   `band_m` below the edge, on the band; a chest level that falls in a top's armholes
   (the section there runs into the sleeves and does not close around the body) is measured
   at the first closed section below it, within `armhole_m`, as garment specs measure the
   chest just below the armhole;
4. the smallest size whose ease is at least `MINIMUM_EASE_M[category][level]` at every level
   it covers is chosen; if none is, the largest, with a `no_size_fits` warning saying where
   and by how much the largest is short.

Minimum ease (metres of girth), after common wearing-ease tables for woven and jersey
garments (a top needs room to breathe at the chest; a waistband may sit at body size):

| category | chest | waist | hips |
|---|---|---|---|
| top | 0.02 | 0.00 | 0.00 |
| dress, outfit | 0.02 | 0.00 | 0.02 |
| outerwear | 0.06 | 0.04 | 0.04 |
| skirt, trousers | – | 0.00 | 0.02 |

Example:
    choice = choose_size(body, [small, medium, large])
    choice.chosen_label, choice.to_json()["sizes"]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spatialtwin.body.measure import BodyMeasurements, girth_at_height, measure_body, midline_xz
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.errors import SpatialTwinError
from spatialtwin.garment.look import LookGarment
from spatialtwin.garment.placement import BodyLandmarks, place_garment
from spatialtwin.garment.quality import QualityWarning

LEVELS = ("chest", "waist", "hips")
MINIMUM_EASE_M: dict[str, dict[str, float]] = {
    "top": {"chest": 0.02, "waist": 0.0, "hips": 0.0},
    "dress": {"chest": 0.02, "waist": 0.0, "hips": 0.02},
    "outfit": {"chest": 0.02, "waist": 0.0, "hips": 0.02},
    "outerwear": {"chest": 0.06, "waist": 0.04, "hips": 0.04},
    "skirt": {"waist": 0.0, "hips": 0.02},
    "trousers": {"waist": 0.0, "hips": 0.02},
}
MAX_SIZES = 24
_LETTER_RANK = {"XXS": -2, "XS": -1, "S": 0, "M": 1, "L": 2, "XL": 3}
_WORDS = {"SMALL": "S", "MEDIUM": "M", "LARGE": "L", "EXTRA SMALL": "XS", "EXTRA LARGE": "XL"}
_MULTI_X = re.compile(r"^(\d+)X([SL])$")  # 2XL, 3XS
_REPEATED_X = re.compile(r"^(X+)([SL])$")  # XXL, XXXS
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def size_sort_key(label: str | None) -> tuple[int, tuple[float, ...], str]:
    """Sort key putting size labels smallest first (see the module doc)."""
    text = (label or "").strip().upper().replace("-", " ").replace("_", " ")
    text = _WORDS.get(text, text)
    compact = text.replace(" ", "")
    if compact in _LETTER_RANK:
        return (0, (float(_LETTER_RANK[compact]),), text)
    m = _MULTI_X.match(compact) or _REPEATED_X.match(compact)
    if m is not None:
        xs = int(m.group(1)) if m.group(1).isdigit() else len(m.group(1))
        rank = _LETTER_RANK["XL"] + xs - 1 if m.group(2) == "L" else _LETTER_RANK["XS"] - xs + 1
        return (0, (float(rank),), text)
    numbers = tuple(float(n) for n in _NUMBER.findall(text))
    if numbers:
        return (1, numbers, text)
    return (2, (), text)


def sort_size_run(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Garment records of one size run (dicts with `size_label`), smallest size first."""
    return sorted(records, key=lambda r: size_sort_key(r.get("size_label")))


@dataclass(frozen=True)
class SizeOptions:
    """Minimum ease per category and level (metres), and the waistband allowance."""

    minimum_ease_m: dict[str, dict[str, float]] = field(default_factory=lambda: MINIMUM_EASE_M)
    band_m: float = 0.02
    armhole_m: float = 0.08

    def minimum_for(self, category: str | None) -> dict[str, float]:
        if category not in self.minimum_ease_m:
            raise SpatialTwinError(
                "invalid_category",
                "no ease rule for this category",
                {"category": category, "allowed": sorted(self.minimum_ease_m)},
                status=422,
            )
        return self.minimum_ease_m[category]


SIZE_DEFAULTS = SizeOptions()


@dataclass(frozen=True)
class SizeEase:
    """One size measured on the twin: girths and ease (metres) per level it covers."""

    key: str
    label: str
    measured_at_m: dict[str, float]  # height of each covered level's section
    garment_girth_m: dict[str, float]
    body_girth_m: dict[str, float]
    ease_m: dict[str, float]
    short_m: dict[str, float]  # levels where ease < minimum: by how much
    fits: bool

    def to_json(self) -> dict[str, Any]:
        def r(d: dict[str, float]) -> dict[str, float]:
            return {k: round(v, 4) for k, v in d.items()}

        return {
            "garment": self.key,
            "size_label": self.label,
            "measured_at_m": r(self.measured_at_m),
            "garment_girth_m": r(self.garment_girth_m),
            "body_girth_m": r(self.body_girth_m),
            "ease_m": r(self.ease_m),
            "short_m": r(self.short_m),
            "fits": self.fits,
        }


@dataclass(frozen=True)
class SizeChoice:
    """The size chosen for a twin, the ease table it was chosen from and any warning."""

    category: str
    chosen: int  # index into `sizes`
    sizes: list[SizeEase]  # smallest first
    minimum_ease_m: dict[str, float]
    warning: QualityWarning | None

    @property
    def chosen_key(self) -> str:
        return self.sizes[self.chosen].key

    @property
    def chosen_label(self) -> str:
        return self.sizes[self.chosen].label

    def to_json(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "chosen": self.chosen_key,
            "chosen_size": self.chosen_label,
            "rule": "smallest size with at least the minimum ease at every level it covers",
            "minimum_ease_m": self.minimum_ease_m,
            "sizes": [s.to_json() for s in self.sizes],
            "warning": self.warning.to_json() if self.warning is not None else None,
        }


def section_height(level_m: float, lo_m: float, hi_m: float, band_m: float) -> float | None:
    """Where a garment spanning [lo, hi] is measured for a body level (None: not covered)."""
    if hi_m - band_m <= level_m <= hi_m + band_m:
        return hi_m - band_m  # on the waistband (or collar) just below the top edge
    if lo_m < level_m < hi_m:
        return level_m
    return None


def measure_ease(
    key: str,
    label: str,
    shape_m: NDArray[np.float64],
    faces: NDArray[np.integer],
    body_v: NDArray[np.float64],
    body_f: NDArray[np.integer],
    body: BodyMeasurements,
    minimum_m: dict[str, float],
    band_m: float = SIZE_DEFAULTS.band_m,
    armhole_m: float = SIZE_DEFAULTS.armhole_m,
) -> SizeEase:
    """Girths and ease of one garment shape on the twin (see the module doc, step 3)."""
    centre = midline_xz(body_v)
    lo, hi = float(shape_m[:, 1].min()), float(shape_m[:, 1].max())
    levels = {"chest": body.chest_level_m, "waist": body.waist_level_m, "hips": body.hips_level_m}
    at, garment, girth, ease, short = {}, {}, {}, {}, {}
    for level in LEVELS:
        if level not in minimum_m:
            continue
        y = section_height(levels[level], lo, hi, band_m)
        if y is None:
            continue
        g = girth_at_height(shape_m, faces, y, centre)
        below = 0.0
        while g <= 0.0 and level == "chest" and below < armhole_m and y - below > lo:
            below += 0.005  # in the armholes: the first closed section below
            g = girth_at_height(shape_m, faces, y - below, centre)
        if g <= 0.0:  # no section around the body's axis here: the garment does not cover it
            continue
        y -= below
        b = girth_at_height(body_v, body_f, y, centre)
        if b <= 0.0:
            continue
        at[level], garment[level], girth[level], ease[level] = y, g, b, g - b
        if g - b < minimum_m[level]:
            short[level] = minimum_m[level] - (g - b)
    return SizeEase(key, label, at, garment, girth, ease, short, fits=not short and bool(ease))


def choose_size(
    body: TwinBody,
    sizes: Sequence[LookGarment],
    landmarks: BodyLandmarks | None = None,
    options: SizeOptions = SIZE_DEFAULTS,
) -> SizeChoice:
    """The best of `sizes` (one garment's size run, any order) for `body` (module doc)."""
    if not sizes or len(sizes) > MAX_SIZES:
        raise SpatialTwinError(
            "invalid_size_run",
            f"a size run has 1–{MAX_SIZES} sizes",
            {"sizes": len(sizes)},
            status=422,
        )
    categories = {g.meta.get("category") for g in sizes}
    if len(categories) != 1:
        raise SpatialTwinError(
            "invalid_size_run",
            "every size of a run must have the same category",
            {"categories": sorted(str(c) for c in categories)},
            status=422,
        )
    category = str(categories.pop())
    minimum = options.minimum_for(category)
    ordered = sorted(sizes, key=lambda g: size_sort_key(g.meta.get("size_label")))
    # (1) the body
    body_v, body_f = body.welded()
    measured = measure_body(body_v, body_f)
    marks = landmarks or BodyLandmarks.of(body)
    # (2)–(3) every size on it
    table = []
    for g in ordered:
        placed = place_garment(g.mesh, g.pieces, body, g.fabric, marks)
        label = str(g.meta.get("size_label") or "")
        table.append(
            measure_ease(
                g.key,
                label,
                placed.rest_positions_m,
                placed.faces,
                body_v,
                body_f,
                measured,
                minimum,
                options.band_m,
                options.armhole_m,
            )
        )
    # (4) the rule
    fitting = [i for i, s in enumerate(table) if s.fits]
    if fitting:
        return SizeChoice(category, fitting[0], table, minimum, None)
    largest = table[-1]
    sku = ordered[-1].meta.get("sku")
    short = {k: round(v, 4) for k, v in largest.short_m.items()}
    where = ", ".join(f"{k} by {100 * v:.1f} cm" for k, v in short.items()) or "not measurable"
    warning = QualityWarning(
        "no_size_fits",
        f"no size of {sku} has the minimum ease on this twin; the largest ({largest.label}) "
        f"is short at {where}",
        {"sku": sku, "garment": largest.key, "size_label": largest.label, "short_m": short},
    )
    return SizeChoice(category, len(table) - 1, table, minimum, warning)


def size_run(records: Sequence[dict[str, Any]], sku: str) -> list[dict[str, Any]]:
    """The garment records (dicts with `sku`, `size_label`) of `sku`'s size run, smallest
    first; empty when no garment has that sku."""
    return sort_size_run([r for r in records if r.get("sku") == sku])
