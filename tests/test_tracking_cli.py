"""`spatialtwin track`: poses.json from an image, a folder of images or a video."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spatialtwin.body.pose import Pose
from spatialtwin.body.skeleton import JOINT_NAMES
from spatialtwin.cli import main
from spatialtwin.tracking.poses_json import read_poses_document
from tests.tracking_fixtures.models import PEOPLE, pose_models_dir  # noqa: F401


def test_track_an_image_writes_the_documented_poses_json(tmp_path, pose_models_dir):  # noqa: F811
    out = tmp_path / "poses.json"
    assert main(["track", str(PEOPLE / "t5.jpg"), "-o", str(out), "--model", "lite"]) == 0
    doc = json.loads(out.read_text())
    assert doc["model"] == "lite" and doc["mirror"] is False and doc["source"] == "image"
    (frame,) = doc["frames"]
    assert frame["t"] == 0.0
    assert np.asarray(frame["landmarks"]).shape == (33, 4)
    assert np.asarray(frame["world"]).shape == (33, 4)
    assert set(frame["pose"]["joints"]) == set(JOINT_NAMES)
    quats = np.array(list(frame["pose"]["joints"].values()))
    assert np.allclose(np.linalg.norm(quats, axis=1), 1.0, atol=1e-5)
    # World landmarks in metres: shoulders 0.25-0.5 m apart.
    world = np.asarray(frame["world"])
    assert 0.25 < np.linalg.norm(world[11, :3] - world[12, :3]) < 0.5
    ((t, pose),) = read_poses_document(doc)
    assert isinstance(pose, Pose) and t == 0.0


def test_mirror_flag_swaps_left_and_right(tmp_path, pose_models_dir):  # noqa: F811
    plain, mirrored = tmp_path / "plain.json", tmp_path / "mirror.json"
    main(["track", str(PEOPLE / "y1.jpg"), "-o", str(plain), "--model", "lite"])
    main(["track", str(PEOPLE / "y1.jpg"), "-o", str(mirrored), "--model", "lite", "--mirror"])
    a = json.loads(plain.read_text())["frames"][0]["pose"]["joints"]
    b = json.loads(mirrored.read_text())["frames"][0]["pose"]["joints"]
    x, y, z, w = a["leftUpperArm"]
    assert np.allclose(b["rightUpperArm"], [x, -y, -z, w], atol=1e-6)


def test_track_a_folder_of_images(tmp_path, pose_models_dir):  # noqa: F811
    out = tmp_path / "poses.json"
    assert main(["track", str(PEOPLE), "-o", str(out), "--model", "lite", "--fps", "2"]) == 0
    doc = json.loads(out.read_text())
    images = sorted(p for p in PEOPLE.iterdir() if p.suffix in {".jpg", ".png"})
    assert doc["source"] == "folder" and len(doc["frames"]) == len(images)
    assert [f["t"] for f in doc["frames"]] == [i / 2 for i in range(len(images))]


@pytest.mark.parametrize(
    "make_input",
    [
        lambda d: d / "missing.mp4",
        lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt",
        lambda d: (d / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg") and d / "broken.jpg",
        lambda d: (d / "empty").mkdir() or d / "empty",
    ],
    ids=["missing", "not an image", "corrupt image", "empty folder"],
)
def test_bad_input_exits_2_without_writing(tmp_path, capsys, make_input):
    source = make_input(tmp_path)
    out = tmp_path / "poses.json"
    assert main(["track", str(source), "-o", str(out)]) == 2
    assert "spatialtwin: error:" in capsys.readouterr().err
    assert not out.exists()
