"""Twins generated from measurements: true size, human shape, valid skinning."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from spatialtwin.body.parametric import Measurements, create_twin_body, measured
from spatialtwin.body.skeleton import JOINT_INDEX, JOINT_NAMES
from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.template_npz import shipped_template
from tests.conftest import AVERAGE, generated_twin


def _assert_matches(body, m: Measurements) -> None:
    got = measured(body)
    assert abs(got.height_m - m.height_m) <= 0.005
    assert abs(got.chest_m - m.chest_m) <= 0.015
    assert abs(got.waist_m - m.waist_m) <= 0.015
    assert abs(got.hips_m - m.hips_m) <= 0.015


def test_average_body_measures_back_to_the_request(average_body):
    _assert_matches(average_body, AVERAGE)


@pytest.mark.parametrize(
    "m",
    [
        Measurements(1.58, 0.84, 0.66, 0.92, 0.72, 0.35),  # petite
        Measurements(1.93, 1.12, 1.02, 1.10, 0.90, 0.47),  # tall and broad
    ],
    ids=["petite", "tall-broad"],
)
def test_other_sizes_measure_back_to_the_request(m):
    _assert_matches(generated_twin(m), m)


def test_body_is_a_watertight_dense_mesh_standing_on_the_floor(average_body):
    v, f = average_body.welded()
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight
    assert mesh.volume > 0.05  # m³: an adult of 1.76 m displaces ~65 litres
    # hm08's skin, vertex for vertex (UV-seam copies included), triangle for triangle.
    template = shipped_template().body
    assert average_body.vertex_count == template.vertex_count == 14517
    np.testing.assert_array_equal(average_body.faces, template.faces)
    assert v[:, 1].min() == pytest.approx(0.0, abs=1e-9)
    assert v[:, 1].max() == pytest.approx(AVERAGE.height_m, abs=1e-6)
    # Faces +Z: the toes are in front of the heels.
    toes = average_body.skeleton.leaf_tips_m["leftToes"]
    assert toes[2] > v[v[:, 1] < 0.05, 2].min() + 0.2


def test_body_is_left_right_symmetric_with_left_at_plus_x(average_body):
    skel = average_body.skeleton
    assert skel.position("leftHand")[0] > 0.4
    assert skel.position("rightHand")[0] == pytest.approx(-skel.position("leftHand")[0])
    v = average_body.vertices_m
    assert v[:, 0].max() == pytest.approx(-v[:, 0].min(), abs=0.01)


def test_normals_are_unit_and_point_outward(average_body):
    v, n = average_body.vertices_m, average_body.normals
    assert np.allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
    # Step out along the normal: the point must be outside the closed surface.
    wv, wf = average_body.welded()
    mesh = trimesh.Trimesh(wv, wf, process=False)
    sample = np.random.default_rng(0).choice(len(v), 300, replace=False)
    outside = v[sample] + 0.004 * n[sample]
    inside = v[sample] - 0.004 * n[sample]
    assert (~mesh.contains(outside)).mean() > 0.97
    assert mesh.contains(inside).mean() > 0.97


def test_uvs_lie_in_the_unit_square(average_body):
    uv = average_body.uvs
    assert uv.shape == (average_body.vertex_count, 2)
    assert uv.min() >= 0.0 and uv.max() <= 1.0


def test_skin_weights_are_normalised_with_at_most_four_influences(average_body):
    w = average_body.skin.weights
    j = average_body.skin.joints
    assert w.shape[1] == 4 and j.shape[1] == 4
    assert np.allclose(w.sum(axis=1), 1.0, atol=1e-6)
    assert (w >= 0).all() and (j < len(JOINT_NAMES)).all()


def test_vertices_follow_the_nearest_bones(average_body):
    v = average_body.vertices_m
    w, j = average_body.skin.weights, average_body.skin.joints
    dominant = j[np.arange(len(j)), np.argmax(w, axis=1)]
    head_top = np.argmax(v[:, 1])
    assert dominant[head_top] == JOINT_INDEX["head"]
    left_tip = np.argmax(v[:, 0])
    assert dominant[left_tip] == JOINT_INDEX["leftHand"]
    lowest_front = np.argmax(np.where(v[:, 1] < 0.03, v[:, 2], -np.inf))
    assert dominant[lowest_front] in (JOINT_INDEX["leftToes"], JOINT_INDEX["rightToes"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("height_m", 0.2),
        ("height_m", 4.0),
        ("chest_m", 92.0),
        ("inseam_m", 1.5),
        ("waist_m", float("nan")),
    ],
)
def test_absurd_measurements_are_refused(field, value):
    values = AVERAGE.to_json() | {field: value}
    with pytest.raises(SpatialTwinError) as err:
        Measurements.from_json(values)
    assert err.value.status == 422
    assert err.value.code in {"measurement_out_of_range", "implausible_proportions"}
    assert field in str(err.value.detail) or err.value.code == "implausible_proportions"


def test_a_template_that_is_not_a_rigged_body_is_refused():
    with pytest.raises(TypeError, match="TemplateBody"):
        create_twin_body(AVERAGE, shipped_template())  # the TemplateBody, not its .body
