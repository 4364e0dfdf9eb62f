"""The pose landmarker bundles built at install time from npm @mediapipe/pose."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from spatialtwin.errors import SpatialTwinError
from spatialtwin.tracking.bundle import (
    BUILD_COMMAND,
    DETECTOR_FILE,
    DETECTOR_SIZE,
    build_bundles,
    default_npm_dir,
    model_path,
)
from spatialtwin.tracking.tflite_metadata import read_image_normalisation

NPM = default_npm_dir()


@pytest.fixture
def small_npm(tmp_path: Path) -> Path:
    """A copy of the two files the lite bundle needs, to change inputs freely."""
    pkg = tmp_path / "node_modules" / "@mediapipe" / "pose"
    pkg.mkdir(parents=True)
    for name in (DETECTOR_FILE, "pose_landmark_lite.tflite"):
        shutil.copy(NPM / name, pkg / name)
    return tmp_path / "node_modules"


def test_bundle_is_an_uncompressed_zip_of_both_models_with_their_normalisation(tmp_path):
    (report,) = build_bundles(("lite",), None, tmp_path)
    assert report.built and report.path == tmp_path / "pose_landmarker_lite.task"
    with zipfile.ZipFile(report.path) as z:
        infos = {i.filename: i for i in z.infolist()}
        assert sorted(infos) == ["pose_detector.tflite", "pose_landmarks_detector.tflite"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos.values())
        detector = z.read("pose_detector.tflite")
        landmarker = z.read("pose_landmarks_detector.tflite")
    assert read_image_normalisation(detector) == (127.5, 127.5)
    assert read_image_normalisation(landmarker) == (0.0, 255.0)
    # The models themselves are the npm ones: same size give or take the metadata (<8 KiB).
    assert abs(len(detector) - DETECTOR_SIZE) < 8192
    lite = (NPM / "pose_landmark_lite.tflite").stat().st_size
    assert abs(len(landmarker) - lite) < 8192
    assert hashlib.sha256(report.path.read_bytes()).hexdigest() == report.sha256


def test_build_is_idempotent_and_rebuilds_when_an_input_changes(tmp_path, small_npm):
    out = tmp_path / "models"
    (first,) = build_bundles(("lite",), small_npm, out)
    stamp = first.path.stat().st_mtime_ns
    (again,) = build_bundles(("lite",), small_npm, out)
    assert first.built and not again.built and first.path.stat().st_mtime_ns == stamp
    assert {p.name for p in out.iterdir()} == {"pose_landmarker_lite.task", "manifest.json"}
    # Same inputs, byte-identical bundle (fixed zip timestamps).
    (forced,) = build_bundles(("lite",), small_npm, out, force=True)
    assert forced.built and forced.sha256 == first.sha256
    # A changed input is noticed by its checksum (trailing bytes the repack then drops).
    recorded = json.loads((out / "manifest.json").read_text())["bundles"]["lite"]
    model = small_npm / "@mediapipe" / "pose" / "pose_landmark_lite.tflite"
    model.write_bytes(model.read_bytes() + b"\0")
    (changed,) = build_bundles(("lite",), small_npm, out)
    assert changed.built
    now = json.loads((out / "manifest.json").read_text())["bundles"]["lite"]
    assert now["inputs_sha256"] != recorded["inputs_sha256"]
    # A damaged bundle is rebuilt even if the manifest matches.
    changed.path.write_bytes(b"truncated")
    (repaired,) = build_bundles(("lite",), small_npm, out)
    assert repaired.built and repaired.sha256 == changed.sha256


def test_missing_bundle_error_names_the_install_step(tmp_path):
    with pytest.raises(SpatialTwinError) as info:
        model_path("full", tmp_path)
    assert info.value.code == "pose_model_not_built"
    assert BUILD_COMMAND in info.value.message
    with pytest.raises(SpatialTwinError) as info:
        model_path("gigantic", tmp_path)
    assert info.value.code == "unknown_pose_model"


def test_missing_npm_package_is_a_clear_error(tmp_path):
    with pytest.raises(SpatialTwinError) as info:
        build_bundles(("lite",), tmp_path, tmp_path / "models")
    assert info.value.code == "mediapipe_npm_missing" and "npm install" in info.value.message
    assert not (tmp_path / "models").exists()


def test_build_command_line_writes_to_the_models_env_dir(tmp_path):
    env_dir = tmp_path / "from_env"
    run = subprocess.run(
        [sys.executable, "-m", "spatialtwin.tracking.bundle", "build", "--model", "lite"],
        env={"SPATIALTWIN_MODELS": str(env_dir), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert (env_dir / "pose_landmarker_lite.task").stat().st_size > 2_000_000
    assert "built" in run.stdout
