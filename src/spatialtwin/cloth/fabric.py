"""Physical fabric parameters the cloth solver consumes.

Everything is in SI units so a garment drapes at true scale: the solver turns areal density into
vertex masses and the stiffnesses into XPBD compliances (inverse stiffness per constraint), so the
same fabric behaves the same at any mesh resolution up to discretisation error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from spatialtwin.errors import SpatialTwinError


@dataclass(frozen=True)
class Fabric:
    """A woven or knitted fabric as the solver sees it.

    - ``areal_density_kg_m2``: mass per unit area (kg/m²), e.g. 0.07 for silk charmeuse.
    - ``stretch_stiffness_n_m``: tensile membrane stiffness along warp/weft (N/m = force per unit
      width per unit strain).
    - ``shear_stiffness_n_m``: in-plane shear stiffness (N/m per radian of shear).
    - ``bending_stiffness_n_m``: bending rigidity (N·m = moment per unit width per unit curvature).
    - ``friction``: Coulomb friction coefficient of the fabric on skin (dimensionless).
    - ``thickness_m``: fabric thickness (m); the body contact offset is at least this.
    - ``damping_per_s``: mass-proportional velocity damping rate (1/s).
    - ``drag_coefficient``: aerodynamic drag coefficient of the sheet normal to its surface.
    """

    name: str
    areal_density_kg_m2: float
    stretch_stiffness_n_m: float
    shear_stiffness_n_m: float
    bending_stiffness_n_m: float
    friction: float
    thickness_m: float
    damping_per_s: float = 0.5
    drag_coefficient: float = 1.0

    def __post_init__(self) -> None:
        positive = (
            "areal_density_kg_m2",
            "stretch_stiffness_n_m",
            "shear_stiffness_n_m",
            "thickness_m",
        )
        for f in fields(self):
            if f.name == "name":
                continue
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise SpatialTwinError(
                    "bad_fabric",
                    f"fabric {f.name} must be a finite number",
                    {"field": f.name, "value": repr(value)},
                )
            if value < 0 or (f.name in positive and value <= 0):
                raise SpatialTwinError(
                    "bad_fabric",
                    f"fabric {f.name} must be positive",
                    {"field": f.name, "value": value},
                )
        if self.thickness_m > 0.02:
            raise SpatialTwinError(
                "bad_fabric",
                "fabric thickness above 2 cm is not cloth",
                {"field": "thickness_m", "value": self.thickness_m},
            )

    def to_json(self) -> dict[str, float | str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: object) -> Fabric:
        if not isinstance(data, dict):
            raise SpatialTwinError("bad_fabric", "fabric must be a JSON object", None)
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SpatialTwinError("bad_fabric", "unknown fabric fields", {"fields": unknown})
        try:
            return cls(**data)
        except TypeError as exc:
            raise SpatialTwinError("bad_fabric", "fabric is missing fields", str(exc)) from exc
