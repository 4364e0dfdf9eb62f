"""The smart mirror's pages in Debian chromium: the twin skinned in the page from the pose the
tracker makes (the same joints, to the tenth of a millimetre, as the Python forward
kinematics), and the squat video through a real server — the twin's knees following hers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spatialtwin.body.parametric import Measurements
from spatialtwin.body.pose import Pose, forward_kinematics
from spatialtwin.body.skeleton import JOINT_INDEX, JOINT_NAMES
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.live.session import SessionOptions
from spatialtwin.tracking.tracker import TwinPoseTracker
from tests.browser_harness import RunningServer, page_problems
from tests.conftest import generated_twin
from tests.test_tracking_video import squat_frames
from tests.tracking_fixtures.models import (  # noqa: F401  (pytest fixtures)
    new_landmarker,
    pose_models_dir,
)
from tests.y4m import read_y4m, write_y4m

REPO = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "_out" / "mirror"
AVA = json.loads((REPO / "assets" / "twins" / "ava.json").read_text())
VIDEO_FPS = 5  # pose_squats.mp4
CAMERA_FPS = 15  # the fake camera plays each video frame three times
CAMERA_SIZE_PX = (360, 640)  # portrait, as a mirror's camera is mounted
HARNESS_PATH = "/web/_harness/mirror-lib.html"  # served by the test (page.route), not the server
HARNESS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script src="/web/lib/importmap.js"></script>
<style>html,body{margin:0;height:100%;background:#000} #stage{width:600px;height:900px}</style>
</head><body><div id="stage"></div>
<script type="module">
  import * as client from '/web/lib/mirror-client.js';
  import * as view from '/web/lib/mirror-view.js';
  window.mirrorLib = { client, view };
  window.mirrorLibReady = true;
</script></body></html>"""


def knee_flexion_deg(positions_m: np.ndarray, side: str) -> float:
    """Angle between thigh and shin (0 straight), from joint world positions."""
    hip, knee, ankle = (
        positions_m[JOINT_INDEX[f"{side}{part}"]] for part in ("UpperLeg", "LowerLeg", "Foot")
    )
    thigh, shin = knee - hip, ankle - knee
    cos = thigh @ shin / (np.linalg.norm(thigh) * np.linalg.norm(shin))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


# ---------------------------------------------------------------------------------------------
# Fixtures: Ava as the server makes her, the camera file, the tracker run offline.


@pytest.fixture(scope="module")
def ava() -> TwinBody:
    """The sample twin Ava, generated here from her measurements exactly as the server seeds
    her (same template, same measurements: the same skeleton and mesh)."""
    return generated_twin(Measurements.from_json(AVA["measurements"]))


@pytest.fixture(scope="module")
def camera_y4m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pose_squats.mp4 as the fake camera's file: 360×640 at 15 fps, each frame three times
    (same speed as the 5 fps video). Written to a temporary directory, never the repository."""
    path = tmp_path_factory.mktemp("camera") / "squats.y4m"
    write_y4m(
        path, squat_frames(), fps=CAMERA_FPS, repeat=CAMERA_FPS // VIDEO_FPS, size_px=CAMERA_SIZE_PX
    )
    return path


@pytest.fixture(scope="module")
def offline_squat(camera_y4m: Path, ava: TwinBody, new_landmarker: Any) -> dict[str, Any]:  # noqa: F811
    """The tracker run offline on the camera's own frames (one per video frame) with the options
    a mirror session uses: the poses, and the knee flexion of Ava's skeleton in each."""
    fps, frames = read_y4m(camera_y4m)
    assert fps == CAMERA_FPS
    frames = frames[:: CAMERA_FPS // VIDEO_FPS]
    tracker = TwinPoseTracker(
        ava.skeleton,
        SessionOptions().tracker_options(),
        landmarker=new_landmarker("full", max_people=1),
    )
    poses, knees = [], []
    for i, rgb in enumerate(frames):
        tracked = tracker.track(rgb, i / VIDEO_FPS)
        assert tracked.tracked, i
        _, positions = forward_kinematics(ava.skeleton, tracked.pose)
        poses.append(tracked.pose)
        knees.append([knee_flexion_deg(positions, "left"), knee_flexion_deg(positions, "right")])
    return {"poses": poses, "knee_deg": np.array(knees)}


def open_harness(page: Any, server: RunningServer) -> None:
    page.route(
        server.url(HARNESS_PATH),
        lambda route: route.fulfill(status=200, content_type="text/html", body=HARNESS_HTML),
    )
    page.goto(server.url(HARNESS_PATH))
    page.wait_for_function("() => window.mirrorLibReady === true", timeout=30_000)


# ---------------------------------------------------------------------------------------------
# The camera file


def test_the_camera_file_plays_the_squat_video_at_its_own_speed(camera_y4m: Path) -> None:
    fps, frames = read_y4m(camera_y4m)
    video = squat_frames()
    assert fps == 15 and len(frames) == 3 * len(video) == 195
    assert frames[0].shape == (640, 360, 3)
    # Three copies of each video frame, and each is the video frame (downscaled; 4:2:0 chroma).
    assert np.array_equal(frames[3], frames[4]) and np.array_equal(frames[4], frames[5])
    import cv2

    small = cv2.resize(video[1], CAMERA_SIZE_PX, interpolation=cv2.INTER_AREA).astype(np.int16)
    assert np.abs(frames[3].astype(np.int16) - small).mean() < 4.0
    assert np.abs(frames[0].astype(np.int16) - small).mean() > np.abs(frames[3] - small).mean()


# ---------------------------------------------------------------------------------------------
# The pose applied in the page


@pytest.mark.browser
def test_the_page_skins_the_twin_as_the_python_kinematics_do(
    spatialtwin_server: RunningServer, browser_page: Any, ava: TwinBody, offline_squat: dict
) -> None:
    """The deepest squat the tracker found, applied to Ava's body.glb by lib/skinned-twin.js:
    every joint where body.pose.forward_kinematics puts it, and the skinned mesh (three.js's
    own skinning) where body.skinning puts it."""
    knees = offline_squat["knee_deg"]
    deep = int(np.argmax(knees.mean(axis=1)))
    pose: Pose = offline_squat["poses"][deep]
    assert knees[deep].min() > 60.0  # a real squat, not a rest pose
    open_harness(browser_page, spatialtwin_server)
    sample = np.linspace(0, ava.vertex_count - 1, 400).astype(int)
    got = browser_page.evaluate(
        """async ([bodyUrl, joints, pose, sample]) => {
          const { view } = window.mirrorLib;
          const stage = document.getElementById('stage');
          const v = await view.openMirrorView(stage, { pxPerMetre: 400 });
          const twin = await v.setTwin(bodyUrl, joints);
          const mesh = twin.skinnedMeshes[0];
          const skinned = () => sample.map(
            (i) => mesh.getVertexPosition(i, new mesh.position.constructor()).toArray());
          const rest = skinned();
          twin.applyPoseJson(pose);
          const posed = skinned();
          return {
            joints: joints.map((n) => twin.jointWorldPosition(n)),
            knees: [twin.kneeFlexionDeg('left'), twin.kneeFlexionDeg('right')],
            rest, posed, vertices: mesh.geometry.attributes.position.count,
          };
        }""",
        [
            f"/api/v1/twins/{AVA['id']}/body.glb?channel=mirror",
            list(JOINT_NAMES),
            pose.to_json(),
            sample.tolist(),
        ],
    )
    # Same body: the GLB's rest mesh is the one generated here.
    assert got["vertices"] == ava.vertex_count
    assert np.abs(np.array(got["rest"]) - ava.vertices_m[sample]).max() < 1e-5
    # The joints where the Python kinematics put them (the pose went through JSON at 1e-7).
    _, expected = forward_kinematics(ava.skeleton, Pose.from_json(pose.to_json()))
    assert np.abs(np.array(got["joints"]) - expected).max() < 1e-4
    assert got["knees"] == pytest.approx(knees[deep].tolist(), abs=0.05)
    # And three.js's GPU-style skinning moves the mesh as body.skinning does.
    posed = ava.posed_vertices(Pose.from_json(pose.to_json()))[sample]
    assert np.abs(np.array(got["posed"]) - posed).max() < 1e-4
    assert page_problems(browser_page) == []


# ---------------------------------------------------------------------------------------------
# The protocol client against the server's own byte layouts (gltf/mirror_messages.py)


def stmr_frames() -> dict[str, Any]:
    """Result frames as the server builds them: a pose, timings and two garments' streams (a
    key frame each, then a delta of the first), with what each should read back as."""
    from spatialtwin.gltf.mirror_messages import result_frame
    from spatialtwin.gltf.vertex_stream import VertexStreamEncoder

    rng = np.random.default_rng(8)
    quats = rng.normal(size=(len(JOINT_NAMES), 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    root = np.array([0.031, -0.254, 0.112])
    skirt = rng.uniform(-0.4, 1.1, size=(900, 3))
    tee = rng.uniform(-0.4, 1.5, size=(700, 3))
    enc0, enc1 = VertexStreamEncoder(0), VertexStreamEncoder(1)
    key = [enc0.encode(skirt), enc1.encode(tee)]
    moved = skirt + rng.normal(scale=0.004, size=skirt.shape)
    info = {"timings_ms": {"total": 41.25, "landmarks": 22.5}, "quality": {"cloth_level": 1}}
    first = result_frame(7, 123456.75, True, False, root, quats, info, key)
    second = result_frame(8, 123490.5, False, True, root * 2, quats, {}, [enc0.encode(moved)])
    return {
        "first": first,
        "second": second,
        "quats": quats,
        "root": root,
        "info": info,
        "positions": [skirt, tee, moved],
    }


def b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


PARSE_JS = """async ([first, second]) => {
  const { client } = window.mirrorLib;
  const { VertexStreamDecoder } = await import('/web/lib/vertex-stream.js');
  const { MeshoptDecoder } = await import('three/addons/libs/meshopt_decoder.module.js');
  await MeshoptDecoder.ready;
  const bytes = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const decoder = new VertexStreamDecoder(MeshoptDecoder);
  const read = (frame) => {
    const r = client.parseResultFrame(bytes(frame), 22);
    return { ...r, rotations: Array.from(r.rotations),
             streams: r.streams.map((s) => Array.from(decoder.decode(s).positions)) };
  };
  const refused = (data, joints = 22) => {
    try { client.parseResultFrame(data, joints); return null; } catch (e) { return e.code; }
  };
  const whole = bytes(first);
  const longer = new Uint8Array(whole.length + 1); longer.set(whole);
  const badMagic = whole.slice(); badMagic[3] = 0x58;
  return {
    first: read(first), second: read(second),
    refusals: [refused(whole.subarray(0, whole.length - 1)), refused(longer),
               refused(whole, 21), refused(badMagic), refused(whole.subarray(0, 30))],
    camera: btoa(String.fromCharCode(...client.buildCameraFrame({
      frameId: 4294967295, captureTMs: 98765.125, payload: new Uint8Array([255, 216, 255, 217]),
    }))),
  };
}"""


@pytest.mark.browser
def test_the_page_reads_result_frames_as_the_server_writes_them(
    spatialtwin_server: RunningServer, browser_page: Any
) -> None:
    import base64

    from spatialtwin.gltf.mirror_messages import read_camera_frame

    frames = stmr_frames()
    open_harness(browser_page, spatialtwin_server)
    got = browser_page.evaluate(PARSE_JS, [b64(frames["first"]), b64(frames["second"])])
    first, second = got["first"], got["second"]
    assert (first["frameId"], first["captureTMs"]) == (7, 123456.75)
    assert (first["tracked"], first["rateLimited"]) == (True, False)
    assert (second["tracked"], second["rateLimited"]) == (False, True)
    assert np.allclose(first["rootM"], frames["root"], atol=1e-7)
    assert np.allclose(second["rootM"], 2 * frames["root"], atol=1e-7)
    # float32 on the wire, joint order kept
    assert np.array_equal(
        np.array(first["rotations"], dtype=np.float32), frames["quats"].astype(np.float32).ravel()
    )
    assert first["info"] == frames["info"] and second["info"] == {}
    # the garment streams come out whole: decoded in the page, within the codec's √3/2 mm,
    # the delta applied on top of the key frame it follows
    decoded = [*first["streams"], *second["streams"]]
    for positions, expected in zip(decoded, frames["positions"], strict=True):
        err = np.abs(np.array(positions).reshape(-1, 3) - expected).max()
        assert err < 0.00087, err
    # truncated, one byte too long, another joint count, another magic, a torn header
    assert got["refusals"] == ["bad_result_frame"] * 5
    # and the page's camera frames are what the server reads
    frame = read_camera_frame(base64.b64decode(got["camera"]), 1 << 20)
    assert (frame.kind, frame.frame_id, frame.capture_t_ms) == (1, 4294967295, 98765.125)
    assert bytes(frame.payload) == bytes([255, 216, 255, 217])
    assert page_problems(browser_page) == []
