"""What a tailor measures, as a checked request: the input of a generated twin.

Kept apart from `parametric` (which builds the twin) so that the template fit can take it
without importing its caller.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from spatialtwin.errors import SpatialTwinError


@dataclass(frozen=True)
class Measurements:
    """What a tailor measures, in metres: stature, chest/waist/hip girths, inseam, shoulders."""

    height_m: float
    chest_m: float
    waist_m: float
    hips_m: float
    inseam_m: float
    shoulder_m: float

    # Plausible adult ranges (ISO 8559-2 / ANSUR II extremes, widened): outside these the
    # numbers are almost certainly in the wrong unit or mistyped.
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "height_m": (1.30, 2.30),
        "chest_m": (0.60, 1.70),
        "waist_m": (0.50, 1.70),
        "hips_m": (0.65, 1.80),
        "inseam_m": (0.55, 1.10),
        "shoulder_m": (0.28, 0.60),
    }

    def to_json(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: object) -> Measurements:
        if not isinstance(data, dict):
            raise SpatialTwinError("invalid_measurements", "measurements must be a JSON object")
        missing = [k for k in cls.LIMITS if k not in data]
        if missing:
            raise SpatialTwinError(
                "missing_measurements",
                f"missing measurements: {', '.join(missing)}",
                {"missing": missing},
                status=422,
            )
        try:
            values = {k: float(data[k]) for k in cls.LIMITS}
        except (TypeError, ValueError) as exc:
            raise SpatialTwinError(
                "invalid_measurements", "measurements must be numbers in metres", status=422
            ) from exc
        m = cls(**values)
        m.validate()
        return m

    def validate(self) -> None:
        problems = {}
        for key, (lo, hi) in self.LIMITS.items():
            value = getattr(self, key)
            if not np.isfinite(value) or not lo <= value <= hi:
                problems[key] = {"value": value, "allowed_m": [lo, hi]}
        if problems:
            first = next(iter(problems))
            raise SpatialTwinError(
                "measurement_out_of_range",
                f"{first} = {getattr(self, first)} m is outside the human range "
                f"{self.LIMITS[first][0]}–{self.LIMITS[first][1]} m (all values are metres)",
                problems,
                status=422,
            )
        ratio = self.inseam_m / self.height_m
        if not 0.38 <= ratio <= 0.56:
            raise SpatialTwinError(
                "implausible_proportions",
                f"inseam is {ratio:.0%} of height; adults measure 38–56 %",
                {"inseam_m": self.inseam_m, "height_m": self.height_m},
                status=422,
            )
        if self.waist_m > 1.35 * self.hips_m or self.chest_m > 1.6 * self.hips_m:
            raise SpatialTwinError(
                "implausible_proportions",
                "chest/waist/hips girths do not describe one body",
                {"chest_m": self.chest_m, "waist_m": self.waist_m, "hips_m": self.hips_m},
                status=422,
            )
