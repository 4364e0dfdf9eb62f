"""`spatialtwin drape`: the sample A-line skirt settled on the sample twin Ava in a pose, written
as one valid GLB with its material and the fit map as an overlay; bad input exits 2 and writes
nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from spatialtwin.body.parametric import Measurements
from spatialtwin.body.pose import Pose
from spatialtwin.body.skeleton import JOINT_INDEX
from spatialtwin.cli import main
from spatialtwin.garment.fabrics import preset
from spatialtwin.garment.placement import place_garment
from spatialtwin.gltf.twin_glb import twin_to_glb
from spatialtwin.rights.license import Rights
from spatialtwin.services.context import Services
from spatialtwin.services.ingest import prepare_garment
from spatialtwin.services.twins import import_body
from spatialtwin.store.embedded import EmbeddedStore
from tests.conftest import generated_twin
from tests.gltf_validation import assert_valid_glb

REPO = Path(__file__).resolve().parents[1]
AVA = json.loads((REPO / "assets" / "twins" / "ava.json").read_text())
SKIRT = REPO / "assets" / "garments" / "skirt_a_line.glb"
SKIRT_META = json.loads(SKIRT.with_suffix(".json").read_text())
# Turned 20° about +Y, moved 10 cm to +X and 5 cm to +Z, left thigh 10° forward.
POSE = {
    "root": [0.1, 0.0, 0.05],
    "joints": {
        "hips": [0.0, 0.17364818, 0.0, 0.98480775],
        "leftUpperLeg": [-0.08715574, 0.0, 0.0, 0.9961947],
    },
}
FRAMES = 60


def read_accessor(gltf: pygltflib.GLTF2, index: int) -> np.ndarray:
    acc = gltf.accessors[index]
    view = gltf.bufferViews[acc.bufferView]
    blob = gltf.binary_blob()
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[acc.type]
    dtype = {pygltflib.FLOAT: np.float32, pygltflib.UNSIGNED_SHORT: np.uint16}[acc.componentType]
    item = np.dtype(dtype).itemsize * width
    stride = view.byteStride or item
    start = view.byteOffset + (acc.byteOffset or 0)
    raw = np.frombuffer(blob, np.uint8, count=stride * acc.count, offset=start)
    rows = raw.reshape(acc.count, stride)[:, :item].copy()
    return rows.view(dtype).reshape(acc.count, width).squeeze()


@pytest.fixture(scope="module")
def ava_body():
    return generated_twin(Measurements.from_json(AVA["measurements"]))


@pytest.fixture(scope="module")
def ava_glb(ava_body, tmp_path_factory) -> Path:
    body = ava_body
    path = tmp_path_factory.mktemp("twin") / "ava.glb"
    path.write_bytes(twin_to_glb(body, provenance={"twinId": AVA["id"], "owner": AVA["owner"]}))
    return path


@pytest.fixture(scope="module")
def skirt_look(ava_glb, tmp_path_factory):
    out = tmp_path_factory.mktemp("look")
    (out / "pose.json").write_text(json.dumps(POSE))
    code = main(
        [
            "drape",
            "--twin",
            str(ava_glb),
            "--garment",
            str(SKIRT),
            "--category",
            SKIRT_META["category"],
            "--fabric",
            SKIRT_META["fabric"],
            "--pose",
            str(out / "pose.json"),
            "--data",
            str(out / "no-store"),
            "--max-frames",
            str(FRAMES),
            "-o",
            str(out / "look.glb"),
        ]
    )
    data = (out / "look.glb").read_bytes()
    gltf = pygltflib.GLTF2.load_from_bytes(data)
    # A 60-frame budget may end before the skirt is at rest: then the look is written with
    # warnings (exit 3), which the GLB's provenance lists.
    warnings = gltf.asset.extras["spatialtwin"]["look"]["warnings"]
    assert code == (3 if warnings else 0)
    return data, gltf


def garment_arrays(gltf: pygltflib.GLTF2, name: str = "garment:skirt_a_line"):
    node = next(n for n in gltf.nodes if n.name == name)
    attrs = gltf.meshes[node.mesh].primitives[0].attributes
    return attrs, read_accessor(gltf, attrs.POSITION).astype(np.float64)


@pytest.fixture(scope="module")
def posed_ava(ava_glb):
    """Ava as the CLI reads her (imported from the GLB), skinned into POSE."""
    body = import_body(ava_glb).body
    v, f = body.with_vertices(body.posed_vertices(Pose.from_json(POSE))).welded()
    return body, trimesh.Trimesh(v, f, process=False)


def test_look_glb_passes_the_validator_with_named_nodes(skirt_look):
    data, gltf = skirt_look
    report = assert_valid_glb(data)
    assert report["numErrors"] == 0
    meshes = [n.name for n in gltf.nodes if n.mesh is not None]
    assert meshes == ["twin", "garment:skirt_a_line"]
    twin = next(n for n in gltf.nodes if n.name == "twin")
    assert twin.skin is not None
    roles = {n.name: n.extras["spatialtwin"]["role"] for n in gltf.nodes if n.mesh is not None}
    assert roles == {"twin": "body", "garment:skirt_a_line": "garment"}
    prov = gltf.asset.extras["spatialtwin"]
    assert prov["twinId"] == AVA["id"]
    assert prov["garments"][0]["fabric"] == "cotton-poplin"
    assert prov["garments"][0]["frames"] <= FRAMES


def test_twin_joints_carry_the_pose(skirt_look):
    _, gltf = skirt_look
    nodes = {n.name: n for n in gltf.nodes}
    np.testing.assert_allclose(nodes["hips"].rotation, POSE["joints"]["hips"], atol=1e-6)
    np.testing.assert_allclose(
        nodes["leftUpperLeg"].rotation, POSE["joints"]["leftUpperLeg"], atol=1e-6
    )
    assert nodes["rightUpperLeg"].rotation is None


def test_fit_map_is_an_overlay_of_strain_and_ease_on_the_garment(skirt_look):
    """The garment keeps its own material (no vertex colours); the fit map rides on it as the
    custom attributes `_STRAIN` (fraction) and `_EASE` (metres), with its legend in extras."""
    _, gltf = skirt_look
    attrs, positions = garment_arrays(gltf)
    assert attrs.COLOR_0 is None
    assert attrs.TEXCOORD_0 is not None and attrs.NORMAL is not None
    strain = read_accessor(gltf, attrs._STRAIN)
    ease = read_accessor(gltf, attrs._EASE)
    assert strain.shape == (len(positions),) and ease.shape == (len(positions),)
    assert strain.min() >= 0.0 and 0.0 < strain.max() < 1.0
    # The waistband rests on the body (ease of a few millimetres), the flared hem hangs free.
    assert 0.0 < np.percentile(ease, 5) < 0.01 and ease.max() > 0.05
    legend = gltf.asset.extras["spatialtwin"]["fitMap"]
    assert legend["strain"]["attribute"] == "_STRAIN" and legend["ease"]["attribute"] == "_EASE"
    relaxed_below = legend["strain"]["bands"][0]["below"]
    # The skirt hangs mostly slack: most of it reads "relaxed", not tight.
    assert np.mean(strain < relaxed_below) > 0.5
    node = next(n for n in gltf.nodes if n.name == "garment:skirt_a_line")
    material = gltf.materials[gltf.meshes[node.mesh].primitives[0].material]
    assert material.pbrMetallicRoughness.baseColorFactor == pytest.approx(
        [0.62, 0.19, 0.22, 1.0], abs=0.01
    )


def test_draped_skirt_stays_outside_the_posed_body(skirt_look, posed_ava):
    _, gltf = skirt_look
    _, positions = garment_arrays(gltf)
    _, posed = posed_ava
    assert posed.is_watertight
    depth_inside = trimesh.proximity.signed_distance(posed, positions)  # > 0 inside
    assert depth_inside.max() < 0.001
    # …and rests on the hips: part of it within 1 cm of the skin.
    assert np.sum(depth_inside > -0.01) > 20


def test_hem_falls_below_its_placed_start(skirt_look, posed_ava):
    _, gltf = skirt_look
    _, positions = garment_arrays(gltf)
    body, _ = posed_ava
    prepared = prepare_garment(SKIRT.read_bytes(), SKIRT.name, "skirt", "m")
    placed = place_garment(
        prepared.simulation, prepared.pieces, body, preset("cotton-poplin").to_solver()
    )
    assert positions[:, 1].min() < placed.positions_m[:, 1].min() - 0.01


def test_garment_is_in_world_metres_of_the_pose(skirt_look, ava_body):
    _, gltf = skirt_look
    _, positions = garment_arrays(gltf)
    lo, hi = positions.min(axis=0), positions.max(axis=0)
    sidecar_lo, sidecar_hi = (np.array(SKIRT_META["bounds_m"][k]) for k in ("min", "max"))
    # Never rescaled: height within 5 cm of the authored skirt's, waist at Ava's waist.
    assert hi[1] - lo[1] == pytest.approx(sidecar_hi[1] - sidecar_lo[1], abs=0.05)
    assert hi[1] == pytest.approx(sidecar_hi[1], abs=0.02)
    # Moved with the pose: the waistband ring (which the drape pins) sits where the hips'
    # 20° turn and the root's 10 cm / 5 cm shift carry the authored ring. The hem's flare
    # swings with the thigh, so the bounding box is not a fair measure.
    authored = pygltflib.GLTF2.load(str(SKIRT))
    rest = read_accessor(authored, authored.meshes[0].primitives[0].attributes.POSITION)
    rest_ring = rest[rest[:, 1] > rest[:, 1].max() - 0.03].astype(np.float64)
    ring = positions[positions[:, 1] > hi[1] - 0.03]
    turn = Rotation.from_quat(POSE["joints"]["hips"])
    hips = JOINT_INDEX["hips"]
    pivot = ava_body.skeleton.rest_positions_m[hips]
    expected = turn.apply(rest_ring.mean(axis=0) - pivot) + pivot + np.array(POSE["root"])
    got = ring.mean(axis=0)
    assert got[[0, 2]] == pytest.approx(expected[[0, 2]], abs=0.015)
    assert np.all(hi - lo < 1.0)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unknown-twin-id", "twin_not_found"),
        ("missing-garment-file", "file_not_found"),
        ("bad-pose", "invalid_pose"),
        ("no-category", "missing_metadata"),
        ("unknown-fabric", "unknown_fabric"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(ava_glb, tmp_path, capsys, case, expected):
    out = tmp_path / "look.glb"
    (tmp_path / "pose.json").write_text(json.dumps({"joints": {"tail": [0, 0, 0, 1]}}))
    (tmp_path / "store").mkdir()
    bare = tmp_path / "bare_skirt.glb"
    bare.write_bytes(SKIRT.read_bytes())  # no sidecar, so no category
    args = {
        "--twin": str(ava_glb),
        "--garment": str(SKIRT),
        "--data": str(tmp_path / "store"),
        "--max-frames": "5",
        "-o": str(out),
    }
    extra: list[str] = ["--json"]
    if case == "unknown-twin-id":
        args["--twin"] = "twn_nobody"
    elif case == "missing-garment-file":
        args["--garment"] = str(tmp_path / "nope.obj")
    elif case == "bad-pose":
        extra += ["--pose", str(tmp_path / "pose.json")]
    elif case == "no-category":
        args["--garment"] = str(bare)
    elif case == "unknown-fabric":
        extra += ["--fabric", "kevlar"]
    argv = ["drape", *[x for kv in args.items() for x in kv], *extra]
    assert main(argv) == 2
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["code"] == expected and error["message"]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare_skirt.glb", "pose.json", "store"]
    assert not list((tmp_path / "store").rglob("*.json"))


def test_stored_twin_and_garment_by_id(ava_body, tmp_path, capsys):
    """Ids from `--data`: Ava stored with a license for ecommerce and mirror only, the tee added
    with `spatialtwin garment add`; the license is checked for `--channel`."""
    data = tmp_path / "store"
    rights = {**AVA, "license": {**AVA["license"], "channels": ["ecommerce", "mirror"]}}

    async def store_twin() -> str:
        twins = Services(EmbeddedStore(data)).twins
        return (await twins.create_from_body("Ava", ava_body, Rights.from_json(rights), {}))["id"]

    twin_id = asyncio.run(store_twin())
    tee = REPO / "assets" / "garments" / "tshirt.glb"
    argv = ["garment", "add", str(tee), "--category", "top", "--fabric", "cotton-jersey"]
    assert main([*argv, "--data", str(data), "--json"]) == 0
    garment_id = json.loads(capsys.readouterr().out)["id"]
    out = tmp_path / "look.glb"
    drape = ["drape", "--twin", twin_id, "--garment", garment_id, "--data", str(data)]
    drape += ["--max-frames", "20", "-o", str(out), "--json"]
    assert main([*drape, "--channel", "ar"]) == 2
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["code"] == "channel_not_licensed" and not out.exists()
    code = main(drape)
    report = json.loads(capsys.readouterr().out)
    assert code == (3 if report["warnings"] else 0)  # 20 frames: written, maybe with warnings
    assert report["stats"][garment_id]["frames"] <= 20
    gltf = pygltflib.GLTF2.load(out)
    assert [n.name for n in gltf.nodes if n.mesh is not None] == ["twin", f"garment:{garment_id}"]
    prov = gltf.asset.extras["spatialtwin"]
    assert prov["twinId"] == twin_id and prov["licenseId"] == AVA["license"]["id"]
    assert prov["garments"][0]["id"] == garment_id
    _, positions = garment_arrays(gltf, f"garment:{garment_id}")
    neck_y = ava_body.skeleton.rest_positions_m[JOINT_INDEX["neck"], 1]
    assert positions[:, 1].max() == pytest.approx(neck_y, abs=0.05)  # collar at the neck
