"""Placement on a generated twin: outside the body, collar at the neck, waistband at the waist."""

from __future__ import annotations

import numpy as np
import pytest

from spatialtwin.body.measure import measure_body
from spatialtwin.body.skeleton import JOINT_INDEX
from spatialtwin.cloth.collider import BodyCollider
from spatialtwin.garment.fabrics import preset
from spatialtwin.garment.pieces import describe_pieces
from spatialtwin.garment.placement import place_garment
from spatialtwin.garment.units import decide_units
from spatialtwin.services.ingest import prepare_garment
from tests.conftest import shared


@pytest.fixture(scope="module")
def casualsuit():
    data = shared("garments", "female_casualsuit01.obj").read_bytes()
    return prepare_garment(data, "female_casualsuit01.obj", "outfit")


def _single(prepared, hangs_from, category):
    """The tee (shoulder-hung piece) or the jeans (waist-hung piece) as a one-piece garment."""
    index = next(p.index for p in prepared.pieces if p.hangs_from == hangs_from)
    mesh = prepared.simulation.keep_faces(prepared.simulation.face_piece == index)
    mesh = mesh.replace(face_piece=np.zeros(mesh.triangle_count, dtype=np.int32))
    return mesh, describe_pieces(mesh, category)


def _outside(body, placed):
    v, f = body.welded()
    signed = BodyCollider(v, f).signed_distance(placed.positions_m, radius_m=0.05)
    return signed


@pytest.mark.parametrize("name", ["female_casualsuit01", "male_worksuit01"])
def test_placed_outfit_is_outside_the_body_and_not_scaled(average_body, name):
    data = shared("garments", f"{name}.obj").read_bytes()
    prepared = prepare_garment(data, f"{name}.obj", "outfit")
    fabric = preset("denim").to_solver()
    placed = place_garment(prepared.simulation, prepared.pieces, average_body, fabric)
    signed = _outside(average_body, placed)
    assert signed.min() >= fabric.thickness_m  # every vertex at least a fabric thickness out
    for piece in prepared.pieces:
        sel = placed.vertex_piece == piece.index
        np.testing.assert_allclose(
            np.ptp(placed.rest_positions_m[sel], axis=0),
            np.ptp(prepared.simulation.vertices_m[sel], axis=0),
            atol=1e-9,
        )
    assert placed.positions_m.shape == placed.rest_positions_m.shape


def test_top_collar_sits_at_the_neck(average_body, casualsuit):
    mesh, pieces = _single(casualsuit, "shoulders", "top")
    placed = place_garment(mesh, pieces, average_body)
    neck_y = average_body.skeleton.rest_positions_m[JOINT_INDEX["neck"], 1]
    mid = np.abs(placed.rest_positions_m[:, 0]) < 0.06
    assert placed.rest_positions_m[mid, 1].max() == pytest.approx(neck_y, abs=0.005)
    assert placed.positions_m[mid, 1].max() == pytest.approx(neck_y, abs=0.05)
    assert _outside(average_body, placed).min() > 0
    assert len(placed.pinned) == 0


def test_trousers_waistband_at_waist_level_and_pinned(average_body, casualsuit):
    mesh, pieces = _single(casualsuit, "waist", "trousers")
    placed = place_garment(mesh, pieces, average_body)
    v, f = average_body.welded()
    waist = measure_body(v, f).waist_level_m
    assert placed.rest_positions_m[:, 1].max() == pytest.approx(waist, abs=0.005)
    assert len(placed.pinned) >= 20
    assert np.all(placed.rest_positions_m[placed.pinned, 1] > waist - 0.025)
    assert _outside(average_body, placed).min() > 0
    np.testing.assert_allclose(np.ptp(placed.rest_positions_m, 0), np.ptp(mesh.vertices_m, 0))


@pytest.mark.parametrize(
    ("height", "category", "unit"),
    [
        (70, "top", "cm"),
        (7, "top", "dm"),
        (0.7, "top", "m"),
        (27.6, "top", "in"),
        (700, "top", "mm"),
        (12.85, "outfit", "dm"),
        (100, "trousers", "cm"),
    ],
)
def test_units_detected_from_plausible_height(height, category, unit):
    decision = decide_units(height, category)
    assert decision.units == unit and decision.detected
    assert decide_units(height, category, "m").units == "m"
