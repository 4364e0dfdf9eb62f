"""Cloth stage: XPBD garment simulation on posed twins (static drape, live stepping, fit map)."""

from spatialtwin.cloth.collider import BodyCollider
from spatialtwin.cloth.contacts import Contacts
from spatialtwin.cloth.drape import DrapeResult, drape_garment
from spatialtwin.cloth.fabric import Fabric
from spatialtwin.cloth.fit_map import strain_to_rgba, vertex_strain
from spatialtwin.cloth.model import ClothModel, build_cloth_model
from spatialtwin.cloth.solver import ClothControl, ClothSim, ClothState, SolverSettings, step

__all__ = [
    "BodyCollider",
    "ClothControl",
    "ClothModel",
    "ClothSim",
    "ClothState",
    "Contacts",
    "DrapeResult",
    "Fabric",
    "SolverSettings",
    "build_cloth_model",
    "drape_garment",
    "step",
    "strain_to_rgba",
    "vertex_strain",
]
