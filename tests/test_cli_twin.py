"""`spatialtwin twin create`: a GLB on disk, or exit status 2 and nothing written."""

from __future__ import annotations

import json
import subprocess
import sys

import pygltflib
import pytest

from spatialtwin.body.skeleton import JOINT_NAMES

ARGS = [
    "--height",
    "1.68",
    "--chest",
    "0.90",
    "--waist",
    "0.72",
    "--hips",
    "0.97",
    "--inseam",
    "0.77",
    "--shoulder",
    "0.38",
]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spatialtwin", *args], capture_output=True, text=True, timeout=300
    )


def test_twin_create_writes_a_true_scale_rigged_glb(tmp_path):
    out = tmp_path / "twin.glb"
    result = run_cli("twin", "create", *ARGS, "--model", "Kim Test", "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["measured"]["height_m"] == pytest.approx(1.68, abs=0.005)
    assert report["measured"]["waist_m"] == pytest.approx(0.72, abs=0.015)
    assert report["bytes"] == out.stat().st_size
    gltf = pygltflib.GLTF2.load(str(out))
    assert [gltf.nodes[j].name for j in gltf.skins[0].joints] == list(JOINT_NAMES)
    pos = gltf.accessors[gltf.meshes[0].primitives[0].attributes.POSITION]
    assert pos.max[1] - pos.min[1] == pytest.approx(1.68, abs=0.001)
    assert gltf.asset.extras["spatialtwin"]["owner"]["model"] == "Kim Test"
    assert gltf.asset.extras["spatialtwin"]["digitalTwin"] is True


@pytest.mark.parametrize("height", ["0.2", "4", "168"])
def test_absurd_height_exits_2_and_writes_nothing(tmp_path, height):
    out = tmp_path / "twin.glb"
    args = list(ARGS)
    args[1] = height
    result = run_cli("twin", "create", *args, "-o", str(out))
    assert result.returncode == 2
    assert "height_m" in result.stderr and "metres" in result.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_twin_import_normalises_a_decimetre_scan(tmp_path):
    from tests.conftest import shared

    out = tmp_path / "base.glb"
    result = run_cli("twin", "import", str(shared("bodies", "base.obj")), "--json", "-o", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["units"] == "dm"
    assert report["measured"]["height_m"] == pytest.approx(1.67, abs=0.01)
    gltf = pygltflib.GLTF2.load(str(out))
    pos = gltf.accessors[gltf.meshes[0].primitives[0].attributes.POSITION]
    assert pos.min[1] == pytest.approx(0.0, abs=1e-4)
    assert [gltf.nodes[j].name for j in gltf.skins[0].joints] == list(JOINT_NAMES)


def test_twin_import_of_a_wrong_unit_exits_2(tmp_path):
    from tests.conftest import shared

    out = tmp_path / "x.glb"
    result = run_cli(
        "twin", "import", str(shared("bodies", "base.obj")), "--units", "m", "-o", str(out)
    )
    assert result.returncode == 2
    assert "implausible" in result.stderr or "tall" in result.stderr
    assert not out.exists()
