"""The garment ingest pipeline: file bytes → validated, true-scale, welded, remeshed garment.

Steps run in order over one `GarmentMesh` (read → check → units/axes → weld → islands →
pieces/category → remesh), each a plain function elsewhere in this package; the CLI, HTTP jobs
and tests all call `prepare_garment`. `progress(stage, fraction)` is called between steps so a
job can report where it is. Nothing is written here: storing is the repository's job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spatialtwin.errors import SpatialTwinError
from spatialtwin.garment.appearance import TextureImage
from spatialtwin.garment.binding import AuthoringBody, GarmentBinding
from spatialtwin.garment.checks import (
    check_degenerate,
    check_finite,
    check_has_geometry,
    check_triangle_budget,
    degenerate_faces,
)
from spatialtwin.garment.estimate import estimate_authoring
from spatialtwin.garment.mesh import GarmentMesh, edge_lengths_m
from spatialtwin.garment.pieces import Piece, check_category, describe_pieces
from spatialtwin.garment.placement import CLEARANCE_MARGIN_M, push_out_of_body
from spatialtwin.garment.remesh import RemeshOptions, remesh_for_cloth
from spatialtwin.garment.source import MeshSource
from spatialtwin.garment.units import (
    CATEGORIES,
    UNIT_M,
    UnitDecision,
    decide_units,
    detect_up_axis,
    to_y_up,
)
from spatialtwin.garment.weld import WELD_TOLERANCE_M, remove_small_islands, weld_vertices

Progress = Callable[[str, float], None]
AUTHORED_CLEARANCE_M = 0.001 + CLEARANCE_MARGIN_M  # a jersey's thickness plus the margin


@dataclass(frozen=True)
class IngestOptions:
    """Limits and targets of one ingest; `target_edge_m` is the simulation mesh's edge."""

    max_triangles: int = 200_000
    max_simulation_triangles: int = 400_000
    max_degenerate_fraction: float = 0.01
    weld_tolerance_m: float = WELD_TOLERANCE_M
    min_island_area_m2: float = 0.0025  # 25 cm²: buttons and labels, not panels
    target_edge_m: float = 0.015

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> IngestOptions:
        names = {
            "garment_max_triangles": "max_triangles",
            "garment_max_simulation_triangles": "max_simulation_triangles",
            "garment_target_edge_m": "target_edge_m",
            "garment_min_island_area_m2": "min_island_area_m2",
        }
        return cls(**{field: settings[key] for key, field in names.items() if key in settings})


INGEST_DEFAULTS = IngestOptions()


@dataclass
class PreparedGarment:
    """A garment ready to store and to place: the render mesh and the simulation mesh."""

    category: str
    units: str
    units_detected: bool
    up_axis: str
    units_reason: str
    render: GarmentMesh  # welded source mesh, metres
    simulation: GarmentMesh  # remeshed for cloth, metres
    pieces: list[Piece]
    source_triangles: int
    source_polygons: int
    source_format: str
    materials: list[dict[str, Any]]
    target_edge_m: float
    warnings: list[dict[str, Any]] = field(default_factory=list)
    binding: GarmentBinding | None = None  # per render vertex, when an authoring body came
    authoring: str | None = None  # "hm08" | "avatar" | "estimated"
    estimate: dict[str, Any] | None = None  # what was estimated of a bare garment's body
    images: list[TextureImage] = field(default_factory=list)  # materials' textures, as uploaded

    @property
    def extent_m(self) -> list[float]:
        return [float(e) for e in np.ptp(self.render.vertices_m, axis=0)]

    def summary(self) -> dict[str, Any]:
        """The record fields the pipeline decides (the repository adds id, sku, links …)."""
        edges = edge_lengths_m(self.simulation.vertices_m, self.simulation.faces)
        return {
            "category": self.category,
            "units": self.units,
            "units_detected": self.units_detected,
            "units_reason": self.units_reason,
            "up_axis": self.up_axis,
            "extent_m": [round(e, 4) for e in self.extent_m],
            "triangles": self.source_triangles,
            "vertices": self.render.vertex_count,
            "source": {"format": self.source_format, "polygons": self.source_polygons},
            "pieces": [p.to_json() for p in self.pieces],
            "edge_length_m": self.target_edge_m,
            "simulation": {
                "triangles": self.simulation.triangle_count,
                "vertices": self.simulation.vertex_count,
                "edge_length_m": {
                    "target": self.target_edge_m,
                    "mean": round(float(edges.mean()), 5),
                    "min": round(float(edges.min()), 5),
                    "max": round(float(edges.max()), 5),
                },
            },
            "materials": self.materials,
            "warnings": self.warnings,
            "authoring_body": (
                {
                    "kind": self.authoring,
                    "bound_vertices": self.render.vertex_count,
                    **({"estimate": self.estimate} if self.estimate else {}),
                }
                if self.authoring
                else None
            ),
        }


def _noop(stage: str, fraction: float) -> None:
    return None


def prepare_source(
    source: MeshSource,
    filename: str,
    category: str,
    units: str = "auto",
    options: IngestOptions = INGEST_DEFAULTS,
    progress: Progress = _noop,
    authoring: AuthoringBody | None = None,
    estimate_from: AuthoringBody | None = None,
) -> PreparedGarment:
    """Run the whole ingest; raises `SpatialTwinError` naming the first problem found.

    With an `authoring` body (a `.mhclo` onto hm08, or an avatar exported beside the garment)
    the garment is taken as worn on that body — its positions from the binding or the avatar's
    frame, in metres — and every render vertex gets its binding, so looks can refit it onto any
    twin. Without one, units and axes are decided from the garment's own extent, and with
    `estimate_from` (the template human) an authoring body is estimated from the garment's own
    sleeves and legs (`garment.estimate`) so that it refits the same way.
    """
    if category not in CATEGORIES:
        raise SpatialTwinError(
            "invalid_category",
            f"category must be one of {', '.join(CATEGORIES)}",
            {"category": category},
            status=422,
        )
    if units != "auto" and units not in UNIT_M:
        raise SpatialTwinError(
            "invalid_units",
            f"units must be auto or one of {', '.join(UNIT_M)}",
            {"units": units},
            status=422,
        )
    warnings: list[dict[str, Any]] = []
    # (1) check the file as authored (read by `gltf.garment_io`, see `services.ingest`)
    warnings.extend(source.warnings)  # textures or material files that could not be kept
    progress("validating", 0.2)
    check_has_geometry(source.vertices, source.faces)
    check_triangle_budget(len(source.faces), options.max_triangles)
    check_finite(source.vertices, source.faces)
    # (2) axes and units from the extent (never a rescale: a unit conversion)
    used = np.unique(source.faces)
    if authoring is not None:
        try:
            vertices_m, how = authoring.garment_positions(source.vertices)
        except ValueError as exc:
            raise SpatialTwinError(
                "binding_mismatch",
                f"the garment does not match its authoring body's binding: {exc}",
                {"authoring": authoring.kind},
                status=422,
            ) from None
        up_axis = "+Y (authoring body)"
        decision = UnitDecision(
            units="dm" if authoring.proxy is not None else "m",
            detected=True,
            up_axis="+Y",
            height_m=float(np.ptp(vertices_m[used, 1])),
            reason=f"{how}; never rescaled",
        )
    else:
        up_axis = detect_up_axis(source.vertices[used])
        vertices = to_y_up(source.vertices, up_axis)
        height_units = float(np.ptp(vertices[used, 1]))
        decision = decide_units(height_units, category, units)
        vertices_m = vertices * UNIT_M[decision.units]
    mesh = GarmentMesh(
        vertices_m=vertices_m,
        faces=source.faces,
        corner_uvs=source.corner_uvs,
        face_material=source.face_material,
        face_piece=np.full(len(source.faces), -1, dtype=np.int32),
    )
    edge_scale = float(np.median(edge_lengths_m(vertices_m, source.faces)))
    bad = degenerate_faces(vertices_m, source.faces, 1e-10 * max(edge_scale, 1e-6) ** 2)
    count, first = check_degenerate(bad, options.max_degenerate_fraction)
    if count:
        mesh = mesh.keep_faces(~bad)
        warnings.append({"code": "degenerate_triangles_removed", "count": count, "first": first})
    # (3) weld seams, drop islands, find pieces and check they make the category
    progress("welding", 0.35)
    mesh = weld_vertices(mesh, options.weld_tolerance_m)
    mesh, islands = remove_small_islands(mesh, options.min_island_area_m2)
    if islands["removed_islands"]:
        warnings.append({"code": "small_islands_removed", **islands})
    if mesh.triangle_count == 0:
        raise SpatialTwinError(
            "no_geometry",
            f"nothing is left after removing specks smaller than {options.min_island_area_m2} m²",
            islands,
            status=422,
        )
    pieces = describe_pieces(mesh, category)
    check_category(pieces, category, float(np.ptp(mesh.vertices_m[:, 1])))
    estimate_report = None
    if authoring is None and estimate_from is not None:
        progress("estimating its body", 0.45)
        try:
            authoring, vertices_on, estimate_report = estimate_authoring(
                mesh, pieces, estimate_from
            )
            mesh = mesh.replace(vertices_m=vertices_on)
        except (SpatialTwinError, ValueError) as exc:
            # Placement on the twin by translation still works without one.
            authoring, estimate_report = None, None
            warnings.append(
                {
                    "code": "authoring_body_not_estimated",
                    "message": f"no authoring body could be estimated: {exc}",
                }
            )
    # (4) the simulation mesh
    progress("remeshing", 0.5)
    sim = remesh_for_cloth(mesh, RemeshOptions(target_edge_m=options.target_edge_m))
    check_triangle_budget(sim.triangle_count, options.max_simulation_triangles)
    binding = None
    if authoring is not None:
        progress("binding", 0.8)
        binding = authoring.bind(mesh.vertices_m, 2 * options.weld_tolerance_m + 1e-6)
        # The cloth's rest shape is the garment as worn on its own body: game-ready proxies
        # cut into their body at collars and cuffs, and a rest shape that does would stretch
        # those openings by half on every twin. The render mesh stays as authored.
        worn, _, _ = push_out_of_body(
            sim.vertices_m, sim.faces, authoring.body, AUTHORED_CLEARANCE_M
        )
        sim = sim.replace(vertices_m=worn)
    progress("prepared", 0.85)
    return PreparedGarment(
        category=category,
        units=decision.units,
        units_detected=decision.detected,
        up_axis=up_axis,
        units_reason=decision.reason,
        render=mesh,
        simulation=sim,
        pieces=pieces,
        source_triangles=len(source.faces),
        source_polygons=int(source.source_polygons),
        source_format=source.format,
        materials=source.materials,
        images=source.images,
        target_edge_m=options.target_edge_m,
        warnings=warnings,
        binding=binding,
        authoring=authoring.kind if authoring is not None else None,
        estimate=estimate_report,
    )
