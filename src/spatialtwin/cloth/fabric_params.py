"""Two reference fabrics at the extremes of apparel drape, for the solver's own tests and bench.

The garment stage owns the full preset catalogue; these two exist so the cloth package can show,
on its own, that a light limp fabric and a heavy stiff one of the same cut drape measurably
differently. Values are typical mid-range figures, converted to SI:

- Unit conversions: 1 momme = 4.3056 g/m² (silk trade weight); 1 oz/yd² = 33.906 g/m²;
  Kawabata KES-FB bending rigidity B: 1 gf·cm²/cm = 9.807e-5 N·m; shear rigidity G:
  1 gf/(cm·deg) = 56.2 N/m per radian; tensile: 1 gf/cm = 0.0981 N/m.
- Silk charmeuse 16 momme ≈ 69 g/m². KES-FB bending rigidity of silk filament weaves is about
  0.02–0.05 gf·cm²/cm and their shear rigidity G about 0.2–0.5 gf/(cm·deg)
  (M. Matsudaira, "Characteristics of mechanical properties and handles of silk filament
  weaves", Kanazawa University repository; S. Kawabata, "The Standardization and Analysis of
  Hand Evaluation", Textile Machinery Society of Japan, 1980).
- Denim 12 oz/yd² ≈ 407 g/m², thickness ≈ 0.7 mm. Heavy cotton twills measure
  B ≈ 1–3 gf·cm²/cm and G ≈ 2–5 gf/(cm·deg) on KES-FB (Kawabata 1980; the denim sample of
  H. Wang, J. O'Brien, R. Ramamoorthi, "Data-Driven Elastic Models for Cloth", SIGGRAPH 2011,
  is among the stiffest of their ten measured fabrics).
- Tensile stiffness from the initial slope of KES-FB load–extension curves: woven fabrics
  reach 500 gf/cm at a few per cent strain, i.e. ~1–3 kN/m; denim higher.
- Friction on skin: fabric-on-skin Coulomb coefficients 0.2–0.6, silk at the low end and
  cotton denim mid-range (S. Derler, L.-C. Gerhardt, "Tribology of skin: review and analysis
  of experimental results for the friction coefficient of human skin", Tribology Letters 45,
  2012).
"""

from __future__ import annotations

from spatialtwin.cloth.fabric import Fabric

GF_CM2_PER_CM_TO_N_M = 9.807e-5
GF_PER_CM_DEG_TO_N_M = 56.2

SILK_CHARMEUSE = Fabric(
    name="silk-charmeuse",
    areal_density_kg_m2=16 * 4.3056e-3,
    stretch_stiffness_n_m=1500.0,
    shear_stiffness_n_m=0.3 * GF_PER_CM_DEG_TO_N_M,
    bending_stiffness_n_m=0.03 * GF_CM2_PER_CM_TO_N_M,
    friction=0.25,
    thickness_m=0.00015,
    damping_per_s=0.3,
    drag_coefficient=1.2,
)

DENIM = Fabric(
    name="denim-12oz",
    areal_density_kg_m2=12 * 33.906e-3,
    stretch_stiffness_n_m=8000.0,
    shear_stiffness_n_m=3.0 * GF_PER_CM_DEG_TO_N_M,
    bending_stiffness_n_m=2.0 * GF_CM2_PER_CM_TO_N_M,
    friction=0.45,
    thickness_m=0.0007,
    damping_per_s=0.5,
    drag_coefficient=1.0,
)
