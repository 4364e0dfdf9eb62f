"""Fabric presets with physical parameters, and custom fabrics, converted for the cloth solver.

Values are mid-range figures of published measurements, in SI units:

- Areal density. Trade units: 1 oz/yd² = 33.906 g/m²; silk is sold by momme, 1 momme =
  4.3056 g/m² (the weight in momme of a 45 in × 100 yd piece; often rounded to 4.34 g/m²).
  Single jersey T-shirt knits weigh 140–200 g/m², plain cotton (poplin/shirting) 100–150 g/m²,
  plain-weave wool ≈ 235 g/m², denim 10–14 oz/yd² (339–475 g/m²; 11 oz/yd² = 373 g/m²), silk
  charmeuse 12–40 momme (52–174 g/m²). (ASTM D3776 defines mass per unit area; weight ranges
  from trade tables, e.g. Cone Mills / Levi's denim weight classes.)
- Bending rigidity B, shear rigidity G and the tensile curve from the Kawabata Evaluation System
  (KES-FB): S. Kawabata, "The Standardization and Analysis of Hand Evaluation", 2nd ed., Textile
  Machinery Society of Japan, 1980; silk weaves after M. Matsudaira, "Characteristics of
  mechanical properties and handles of silk filament weaves"; knits are an order of magnitude
  softer in tension than wovens and softest along the course (weft), see K. Kawabata & M. Niwa,
  "Fabric performance in clothing and clothing manufacture", J. Text. Inst. 80 (1989).
  Conversions (as in `spatialtwin.cloth.fabric_params`): B 1 gf·cm²/cm = 9.807e-5 N·m;
  G 1 gf/(cm·deg) = 56.2 N/m per radian; tensile slope 1 gf/cm per unit strain = 0.0981 N/m.
- Denim is the stiffest and most anisotropic: its twill warp is nearly twice as stiff as its
  weft, and it is among the stiffest of the ten fabrics measured by H. Wang, J. O'Brien,
  R. Ramamoorthi, "Data-Driven Elastic Models for Cloth", SIGGRAPH 2011.
- Friction on skin: Coulomb coefficients 0.2–0.6, silk lowest (S. Derler, L.-C. Gerhardt,
  "Tribology of skin", Tribology Letters 45, 2012).
- Thickness at 0.5 gf/cm² pressure (KES-FB3 T0).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from spatialtwin.cloth.fabric import Fabric
from spatialtwin.errors import SpatialTwinError

GF_CM2_PER_CM_TO_N_M = 9.807e-5  # KES bending rigidity → N·m
GF_PER_CM_DEG_TO_N_M = 56.2  # KES shear rigidity → N/m per radian
OZ_YD2_TO_GSM = 33.906
MOMME_TO_GSM = 4.3056

_FABRIC_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,47}$")


@dataclass(frozen=True)
class FabricSpec:
    """A fabric as merchandisers and textile labs describe it (warp/weft, KES-derived)."""

    id: str
    name: str
    construction: str  # "knit" or "woven"
    areal_density_gsm: float  # g/m²
    thickness_mm: float
    stretch_warp_n_m: float  # tensile stiffness along warp/wale, N/m
    stretch_weft_n_m: float  # along weft/course, N/m
    shear_n_m: float  # in-plane shear stiffness, N/m per radian
    bending_n_m: float  # bending rigidity, N·m
    friction: float  # on skin, dimensionless
    sources: list[str] = field(default_factory=list)
    preset: bool = False

    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "areal_density_gsm": (10.0, 1500.0),
        "thickness_mm": (0.02, 20.0),
        "stretch_warp_n_m": (1.0, 1e6),
        "stretch_weft_n_m": (1.0, 1e6),
        "shear_n_m": (0.01, 1e5),
        "bending_n_m": (1e-9, 1e-2),
        "friction": (0.0, 2.0),
    }

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["anisotropy"] = round(self.stretch_warp_n_m / self.stretch_weft_n_m, 3)
        return out

    def to_solver(self) -> Fabric:
        """The cloth solver's `Fabric`.

        The solver has one tensile stiffness for warp and weft edges, so the two are combined
        by their geometric mean (the stiffness of a bias-free square of the fabric stretched
        equally both ways); the anisotropy stays in this spec and in the record.
        """
        return Fabric(
            name=self.id,
            areal_density_kg_m2=self.areal_density_gsm / 1000.0,
            stretch_stiffness_n_m=math.sqrt(self.stretch_warp_n_m * self.stretch_weft_n_m),
            shear_stiffness_n_m=self.shear_n_m,
            bending_stiffness_n_m=self.bending_n_m,
            friction=self.friction,
            thickness_m=self.thickness_mm / 1000.0,
        )

    @classmethod
    def from_json(cls, data: object) -> FabricSpec:
        """A custom fabric from JSON; every physical field is required and range-checked."""
        if not isinstance(data, dict):
            raise SpatialTwinError("invalid_fabric", "a fabric must be a JSON object", status=422)
        fabric_id = str(data.get("id", ""))
        if not _FABRIC_ID.match(fabric_id):
            raise SpatialTwinError(
                "invalid_fabric",
                "fabric id must be 2–48 lower-case letters, digits or '-'",
                {"id": fabric_id},
                status=422,
            )
        values: dict[str, float] = {}
        problems: dict[str, Any] = {}
        for key, (lo, hi) in cls.LIMITS.items():
            raw = data.get(key)
            try:
                value = float(raw)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                problems[key] = {"value": raw, "allowed": [lo, hi]}
                continue
            if not (math.isfinite(value) and lo <= value <= hi):
                problems[key] = {"value": value, "allowed": [lo, hi]}
            values[key] = value
        if problems:
            first = next(iter(problems))
            raise SpatialTwinError(
                "invalid_fabric",
                f"fabric {first} must be a number in {problems[first]['allowed']}",
                problems,
                status=422,
            )
        construction = str(data.get("construction", "woven"))
        if construction not in ("knit", "woven"):
            raise SpatialTwinError(
                "invalid_fabric", "construction must be 'knit' or 'woven'", status=422
            )
        sources = data.get("sources", [])
        if not isinstance(sources, list):
            sources = [str(sources)]
        return cls(
            id=fabric_id,
            name=str(data.get("name") or fabric_id)[:120],
            construction=construction,
            sources=[str(s)[:300] for s in sources][:10],
            preset=False,
            **values,
        )


_KES = "Kawabata 1980 (KES-FB)"
_SKIN = "Derler & Gerhardt 2012 (friction on skin)"

PRESETS: dict[str, FabricSpec] = {
    spec.id: spec
    for spec in (
        FabricSpec(
            id="cotton-jersey",
            name="Cotton single jersey, 160 g/m²",
            construction="knit",
            areal_density_gsm=160.0,
            thickness_mm=0.6,
            stretch_warp_n_m=400.0,
            stretch_weft_n_m=120.0,
            shear_n_m=0.4 * GF_PER_CM_DEG_TO_N_M,
            bending_n_m=0.03 * GF_CM2_PER_CM_TO_N_M,
            friction=0.40,
            sources=["jersey 140–200 g/m² (trade)", _KES, "Kawabata & Niwa 1989 (knits)", _SKIN],
            preset=True,
        ),
        FabricSpec(
            id="cotton-poplin",
            name="Cotton poplin shirting, 120 g/m²",
            construction="woven",
            areal_density_gsm=120.0,
            thickness_mm=0.25,
            stretch_warp_n_m=3000.0,
            stretch_weft_n_m=2000.0,
            shear_n_m=0.8 * GF_PER_CM_DEG_TO_N_M,
            bending_n_m=0.08 * GF_CM2_PER_CM_TO_N_M,
            friction=0.35,
            sources=["plain cotton 100–150 g/m² (trade)", _KES, _SKIN],
            preset=True,
        ),
        FabricSpec(
            id="denim",
            name="Cotton denim 3/1 twill, 11 oz/yd²",
            construction="woven",
            areal_density_gsm=round(11 * OZ_YD2_TO_GSM, 1),
            thickness_mm=0.75,
            stretch_warp_n_m=9000.0,
            stretch_weft_n_m=5000.0,
            shear_n_m=3.0 * GF_PER_CM_DEG_TO_N_M,
            bending_n_m=2.0 * GF_CM2_PER_CM_TO_N_M,
            friction=0.45,
            sources=["11 oz/yd² × 33.906", _KES, "Wang, O'Brien & Ramamoorthi 2011", _SKIN],
            preset=True,
        ),
        FabricSpec(
            id="silk-charmeuse",
            name="Silk charmeuse, 16 momme",
            construction="woven",
            areal_density_gsm=round(16 * MOMME_TO_GSM, 1),
            thickness_mm=0.15,
            stretch_warp_n_m=1500.0,
            stretch_weft_n_m=1200.0,
            shear_n_m=0.3 * GF_PER_CM_DEG_TO_N_M,
            bending_n_m=0.03 * GF_CM2_PER_CM_TO_N_M,
            friction=0.25,
            sources=["16 momme × 4.3056 g/m²", "Matsudaira (silk weaves, KES-FB)", _SKIN],
            preset=True,
        ),
        FabricSpec(
            id="wool-knit",
            name="Wool jersey knit, 250 g/m²",
            construction="knit",
            areal_density_gsm=250.0,
            thickness_mm=1.2,
            stretch_warp_n_m=300.0,
            stretch_weft_n_m=100.0,
            shear_n_m=0.5 * GF_PER_CM_DEG_TO_N_M,
            bending_n_m=0.15 * GF_CM2_PER_CM_TO_N_M,
            friction=0.45,
            sources=[_KES, "Kawabata & Niwa 1989 (knits)", _SKIN],
            preset=True,
        ),
        FabricSpec(
            id="wool-plain",
            name="Plain-weave wool suiting, 235 g/m²",
            construction="woven",
            areal_density_gsm=235.0,
            thickness_mm=0.5,
            stretch_warp_n_m=2000.0,
            stretch_weft_n_m=1600.0,
            shear_n_m=0.6 * GF_PER_CM_DEG_TO_N_M,
            bending_n_m=0.10 * GF_CM2_PER_CM_TO_N_M,
            friction=0.40,
            sources=["plain wool ≈ 235 g/m²", _KES, _SKIN],
            preset=True,
        ),
        FabricSpec(
            id="polyester",
            name="Polyester plain weave, 110 g/m²",
            construction="woven",
            areal_density_gsm=110.0,
            thickness_mm=0.2,
            stretch_warp_n_m=2500.0,
            stretch_weft_n_m=2200.0,
            shear_n_m=0.5 * GF_PER_CM_DEG_TO_N_M,
            bending_n_m=0.05 * GF_CM2_PER_CM_TO_N_M,
            friction=0.30,
            sources=[_KES, _SKIN],
            preset=True,
        ),
    )
}


def preset(fabric_id: str) -> FabricSpec:
    try:
        return PRESETS[fabric_id]
    except KeyError:
        raise SpatialTwinError(
            "unknown_fabric",
            f"no fabric preset {fabric_id!r}; presets: {', '.join(PRESETS)}",
            {"fabric": fabric_id, "presets": list(PRESETS)},
            status=422,
        ) from None
