"""The project's sample garments are real cloth meshes cut around the sample twin Ava.

The samples are regenerated from scratch into a temporary folder (`python -m
spatialtwin.cli.samples --out …`) and measured against Ava's own body in metres: where the
hems, waistband and collar sit, that no vertex is inside her, that the fitted zones are snug,
that the triangles have the edge length a cloth solver was promised, and that the files
committed under `assets/garments/` are what the generator makes today.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import trimesh
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import ConvexHull

from spatialtwin.cli import samples as sample_cli
from spatialtwin.garment import samples
from tests.gltf_validation import assert_valid_glbs

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "assets" / "garments"
FABRIC_PRESETS = {"cotton-jersey", "cotton-poplin", "denim", "silk", "wool-knit", "polyester"}
CATEGORIES = {"top", "skirt", "dress", "trousers"}
STEMS = {"tshirt": "tshirt", "skirt": "skirt_a_line", "trousers": "trousers"}


@dataclass(frozen=True)
class Garment:
    vertices_m: np.ndarray
    faces: np.ndarray
    meta: dict[str, object]
    glb_path: Path

    def edges(self) -> np.ndarray:
        f = self.faces
        return np.unique(np.sort(f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), axis=0)

    def openings(self) -> list[np.ndarray]:
        """The boundary loops (hems, collar, cuffs), each as its vertex positions."""
        e = np.sort(self.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        edges, counts = np.unique(e, axis=0, return_counts=True)
        boundary = edges[counts == 1]
        n = len(self.vertices_m)
        graph = coo_matrix((np.ones(len(boundary)), (boundary[:, 0], boundary[:, 1])), (n, n))
        _, label = connected_components(graph, directed=False)
        on_boundary = np.unique(boundary)
        return [
            self.vertices_m[on_boundary[label[on_boundary] == c]]
            for c in np.unique(label[on_boundary])
        ]


def read_garment(glb_path: Path) -> Garment:
    mesh = trimesh.load(glb_path, force="mesh", process=False)
    meta = json.loads(glb_path.with_suffix(".json").read_text())
    return Garment(
        np.asarray(mesh.vertices, dtype=np.float64),
        np.asarray(mesh.faces, dtype=np.int64),
        meta,
        glb_path,
    )


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Garment]:
    out = tmp_path_factory.mktemp("garment-samples")
    assert sample_cli.main(["--out", str(out)]) == 0
    return {key: read_garment(out / f"{stem}.glb") for key, stem in STEMS.items()}


@pytest.fixture(scope="module")
def ava() -> samples.FittingBody:
    _, body = sample_cli.sample_twin_body()
    return samples.FittingBody.from_body(body)


@pytest.fixture(scope="module")
def ava_solid(ava: samples.FittingBody) -> trimesh.Trimesh:
    solid = trimesh.Trimesh(ava.vertices_m, ava.faces, process=False)
    assert solid.is_watertight  # hm08's skin is closed: inside/outside is defined everywhere
    return solid


def test_every_sample_is_a_small_valid_glb_with_its_catalogue_sidecar(
    regenerated: dict[str, Garment],
) -> None:
    reports = assert_valid_glbs([g.glb_path for g in regenerated.values()])
    for garment, report in zip(regenerated.values(), reports, strict=True):
        assert report["numErrors"] == 0
        size = garment.glb_path.stat().st_size
        assert 20_000 < size < 600_000, f"{garment.glb_path.name}: {size} bytes"
        meta = garment.meta
        assert meta["fabric"] in FABRIC_PRESETS
        assert meta["category"] in CATEGORIES
        assert meta["fitted_to"] == "twn_sample_ava"
        assert meta["sku"] and meta["name"] and meta["size_label"]
        assert meta["vertices"] == len(garment.vertices_m)
        gltf = pygltflib.GLTF2().load_binary(garment.glb_path)
        attributes = gltf.meshes[0].primitives[0].attributes
        assert attributes.NORMAL is not None and attributes.TEXCOORD_0 is not None
        assert gltf.skins == [], "samples are static meshes"
    assert {g.meta["category"] for g in regenerated.values()} == {"top", "skirt", "trousers"}


def test_samples_are_single_layer_open_sheets_with_their_openings(
    regenerated: dict[str, Garment],
) -> None:
    # T-shirt: hem, collar, two cuffs. Skirt: waist, hem. Trousers: waist, two leg hems.
    expected_openings = {"tshirt": 4, "skirt": 2, "trousers": 3}
    for key, garment in regenerated.items():
        mesh = trimesh.Trimesh(garment.vertices_m, garment.faces, process=False)
        assert not mesh.is_watertight
        assert mesh.body_count == 1, f"{key} is in pieces"
        _, uses = np.unique(
            np.sort(garment.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1),
            axis=0,
            return_counts=True,
        )
        assert uses.max() == 2, f"{key} has non-manifold edges"
        assert len(garment.openings()) == expected_openings[key], key
        # One sheet without handles: Euler characteristic 2 − number of openings.
        assert mesh.euler_number == 2 - expected_openings[key], key


def test_tshirt_hem_sits_below_the_waist_and_collar_around_the_neck(
    regenerated: dict[str, Garment], ava: samples.FittingBody
) -> None:
    tee = regenerated["tshirt"]
    m = ava.measurements
    openings = sorted(tee.openings(), key=lambda loop: loop[:, 1].mean())
    hem, collar = openings[0], openings[-1]
    assert hem[:, 1].max() < m.waist_level_m - 0.10
    assert hem[:, 1].max() - hem[:, 1].min() < 0.002, "the hem is a straight cut"
    assert tee.vertices_m[:, 1].min() == pytest.approx(m.hips_level_m + 0.02, abs=0.005)
    neck = ava.joint("neck")
    assert np.linalg.norm(collar.mean(axis=0) - neck) < 0.07
    collar_width = collar[:, 0].max() - collar[:, 0].min()
    assert 0.12 < collar_width < 0.22, f"collar {collar_width:.3f} m wide"
    # The two cuffs ring the upper arms, left and right.
    for cuff in openings[1:-1]:
        side = "left" if cuff[:, 0].mean() > 0 else "right"
        upper, lower = ava.joint(f"{side}UpperArm"), ava.joint(f"{side}LowerArm")
        assert np.linalg.norm(cuff.mean(axis=0) - (upper + 0.5 * (lower - upper))) < 0.03


def test_trousers_waistband_at_measured_waist_and_hems_at_the_ankles(
    regenerated: dict[str, Garment], ava: samples.FittingBody
) -> None:
    trousers = regenerated["trousers"]
    waist_level = ava.measurements.waist_level_m
    openings = sorted(trousers.openings(), key=lambda loop: loop[:, 1].mean())
    *hems, waistband = openings
    assert waistband[:, 1].mean() == pytest.approx(waist_level, abs=0.03)
    assert trousers.vertices_m[:, 1].max() == pytest.approx(waist_level, abs=0.03)
    assert len(hems) == 2
    for hem in hems:
        side = "left" if hem[:, 0].mean() > 0 else "right"
        ankle = ava.joint(f"{side}Foot")
        assert hem[:, 1].mean() == pytest.approx(ankle[1], abs=0.04)
        assert np.hypot(*(hem.mean(axis=0) - ankle)[[0, 2]]) < 0.04


def test_skirt_flares_from_the_waist_to_a_hem_below_the_hips(
    regenerated: dict[str, Garment], ava: samples.FittingBody
) -> None:
    skirt = regenerated["skirt"]
    m = ava.measurements
    hem, waistband = sorted(skirt.openings(), key=lambda loop: loop[:, 1].mean())
    assert waistband[:, 1].mean() == pytest.approx(m.waist_level_m, abs=0.03)
    assert hem[:, 1].max() < m.hips_level_m - 0.25
    hem_girth = ConvexHull(hem[:, [0, 2]]).area  # a 2-D hull's area is its perimeter
    assert hem_girth > m.hips_m + 0.3, "an A-line hem is much wider than the hips"


def test_no_garment_vertex_is_inside_the_body(
    regenerated: dict[str, Garment], ava_solid: trimesh.Trimesh
) -> None:
    for key, garment in regenerated.items():
        inside = ava_solid.contains(garment.vertices_m)
        assert inside.sum() == 0, f"{key}: {inside.sum()} vertices inside Ava"


def test_fitted_zones_are_snug(
    regenerated: dict[str, Garment], ava: samples.FittingBody, ava_solid: trimesh.Trimesh
) -> None:
    m = ava.measurements
    fitted_band = {
        "tshirt": (m.hips_level_m + 0.02, m.chest_level_m),
        "skirt": (m.hips_level_m, m.waist_level_m),
        "trousers": (m.hips_level_m, m.waist_level_m),
    }
    for key, (lo, hi) in fitted_band.items():
        v = regenerated[key].vertices_m
        zone = v[(v[:, 1] >= lo) & (v[:, 1] <= hi)]
        assert len(zone) > 200, key
        _, clearance, _ = trimesh.proximity.closest_point(ava_solid, zone)
        assert clearance.min() > 0.008, f"{key} touches the skin"
        assert np.percentile(clearance, 95) < 0.03, f"{key}: loose over its fitted zone"


def test_triangles_have_the_target_edge_length(regenerated: dict[str, Garment]) -> None:
    target = samples.TARGET_EDGE_M
    for key, garment in regenerated.items():
        e = garment.edges()
        length = np.linalg.norm(garment.vertices_m[e[:, 0]] - garment.vertices_m[e[:, 1]], axis=1)
        assert np.median(length) == pytest.approx(target, rel=0.1), key
        within = (length > 0.6 * target) & (length < 1.5 * target)
        assert within.mean() > 0.97, f"{key}: {1 - within.mean():.1%} edges far from target"


def test_committed_assets_match_a_regeneration(regenerated: dict[str, Garment]) -> None:
    for key, fresh in regenerated.items():
        committed = read_garment(COMMITTED / fresh.glb_path.name)
        assert len(committed.vertices_m) == len(fresh.vertices_m), key
        assert len(committed.faces) == len(fresh.faces), key
        np.testing.assert_allclose(
            committed.vertices_m.min(axis=0), fresh.vertices_m.min(axis=0), atol=0.001
        )
        np.testing.assert_allclose(
            committed.vertices_m.max(axis=0), fresh.vertices_m.max(axis=0), atol=0.001
        )
        assert committed.meta == fresh.meta, key
