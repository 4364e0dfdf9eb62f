"""The live mirror session: real frames of the squat video (and a T-pose photo) in, the twin's
pose and the sample skirt's vertex stream out; latest frame wins; the two stages overlap;
adaptive quality goes coarser and back and says so; lost tracking eases to rest and a new
shopper is picked up; a garment switched mid-session starts without an explosion; the cloth
holds up in creases and under flung arms; bad input is refused; no camera bytes reach disk or
logs."""

from __future__ import annotations

import json
import logging
import os
import struct
import tempfile
import time
import zlib
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest

from spatialtwin.body.parametric import Measurements, create_twin_body, measured
from spatialtwin.body.pose import Pose
from spatialtwin.body.skeleton import JOINT_NAMES
from spatialtwin.cloth.collider import BodyCollider
from spatialtwin.cloth.fabric_params import DENIM
from spatialtwin.cloth.model import build_cloth_model
from spatialtwin.cloth.solver import ClothSim, SolverSettings
from spatialtwin.errors import SpatialTwinError
from spatialtwin.garment.fabrics import preset
from spatialtwin.garment.look import LookGarment, drape_look
from spatialtwin.gltf.bvh import read_bvh
from spatialtwin.gltf.template_npz import shipped_template
from spatialtwin.gltf.vertex_stream import KEY, VertexStreamDecoder
from spatialtwin.live.body import WeldedSkinner
from spatialtwin.live.cloth_stage import GarmentCloth
from spatialtwin.live.frames import MAX_FRAME_BYTES
from spatialtwin.live.garments import LevelOptions, build_live_garment
from spatialtwin.live.quality import QualityOptions
from spatialtwin.live.session import LiveResult, MirrorSession, SessionOptions
from spatialtwin.services.ingest import prepare_garment
from spatialtwin.tracking.motion import (
    SkinnedMotion,
    from_rest,
    retarget_bvh,
    with_turns_and_arm_raises,
)
from tests.cloth_scenes import flared_skirt
from tests.conftest import generated_twin, shared
from tests.test_cloth_drape import signed_distance_to_body
from tests.test_tracking_video import squat_frames
from tests.tracking_fixtures.models import (  # noqa: F401  (pytest fixtures)
    PEOPLE,
    new_landmarker,
    pose_models_dir,
)

REPO = Path(__file__).resolve().parents[1]
AVA = json.loads((REPO / "assets" / "twins" / "ava.json").read_text())
GARMENTS = REPO / "assets" / "garments"
LEVELS = LevelOptions(coarse_edge_factors=(2.0,))  # one coarser level keeps the build short


def look_garment(name: str) -> LookGarment:
    path = GARMENTS / f"{name}.glb"
    meta = json.loads(path.with_suffix(".json").read_text())
    prepared = prepare_garment(path.read_bytes(), path.name, meta["category"], "m")
    fabric = preset(meta["fabric"]).to_solver()
    return LookGarment(name, prepared.simulation, prepared.pieces, fabric, meta=meta)


@pytest.fixture(scope="module")
def ava():
    return generated_twin(Measurements.from_json(AVA["measurements"]))


@pytest.fixture(scope="module")
def wardrobe(ava):
    """The sample skirt and T-shirt, each draped on Ava at rest and made live."""
    out = {}
    for stream, name in enumerate(("skirt_a_line", "tshirt")):
        garment = look_garment(name)
        look = drape_look(ava, [garment])
        out[name] = build_live_garment(garment, look.garments[0], ava, stream, LEVELS)
    return out


@pytest.fixture(scope="module")
def squat_rgb() -> list[np.ndarray]:
    return squat_frames()


def run_paced(
    session: MirrorSession, frames: list, fps: float = 30.0, settle_s: float = 1.0
) -> list[LiveResult]:
    """Submit frames at `fps` as a camera would and collect every result."""
    results = []
    t0 = time.perf_counter()
    for i, frame in enumerate(frames):
        while time.perf_counter() < t0 + i / fps:
            time.sleep(0.0005)
        session.submit_frame(i, frame, i / fps)
        while (r := session.next_result(0.0)) is not None:
            results.append(r)
    end = time.perf_counter() + settle_s
    while time.perf_counter() < end:
        r = session.next_result(0.05)
        if r is not None:
            results.append(r)
    return results


def decoded_streams(results: list[LiveResult], stream: int) -> list[np.ndarray]:
    dec = VertexStreamDecoder()
    return [dec.decode(r.garments[stream]).positions_m for r in results]


def inside_share(body, pose: Pose, positions: np.ndarray, pinned: np.ndarray, depth_m=0.005):
    """Share of free (unpinned) cloth vertices more than `depth_m` inside the posed twin,
    measured with trimesh's closest points (not the solver's collider)."""
    skinner = WeldedSkinner(body)
    sd = signed_distance_to_body(positions, skinner.posed(pose), skinner.faces)
    free = np.ones(len(positions), dtype=bool)
    free[pinned] = False
    return float(np.mean(sd[free] < -depth_m)), float(-sd[free].min())


def result_pose(r: LiveResult) -> Pose:
    return Pose(r.root_m, dict(r.rotations))


def knee_deg(rotations) -> float:
    return float(np.degrees(2 * np.arccos(min(1.0, abs(rotations["leftLowerLeg"][3])))))


@pytest.fixture(scope="module")
def squat_session(ava, wardrobe, squat_rgb, pose_models_dir):  # noqa: F811
    """The squat video through a session with server-side tracking (lite model), one frame at
    a time (each waits for its result), at the finest cloth level (adaptive quality has its
    own test: on a loaded machine it would go coarser here)."""
    options = SessionOptions(model="lite", models_dir=pose_models_dir, adaptive=False)
    results = []
    with MirrorSession(ava, [wardrobe["skirt_a_line"]], options) as session:
        for i, rgb in enumerate(squat_rgb):
            session.submit_frame(i, rgb, i / 5.0)
            r = session.next_result(5.0)
            assert r is not None, i
            results.append(r)
            time.sleep(0.05)
        levels = session.garment_levels
    return results, levels


def test_squat_frames_give_a_pose_and_a_skirt_per_frame(ava, wardrobe, squat_session):
    results, levels = squat_session
    assert levels == [0]
    assert [r.frame_id for r in results] == list(range(len(results)))
    assert all(r.tracked for r in results[1:])
    for r in results:
        assert set(r.rotations) == set(JOINT_NAMES)
        q = np.array(list(r.rotations.values()))
        np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-6)
        for key in ("decode", "landmarks", "track", "skin", "cloth", "encode", "total"):
            assert r.timings_ms[key] >= 0.0
        assert r.timings_ms["total"] >= r.timings_ms["landmarks"] + r.timings_ms["cloth"]
        assert r.quality["cloth_level"] == 0 and r.quality["cloth_vertices"] == 3788
    skirt = wardrobe["skirt_a_line"]
    positions = decoded_streams(results, skirt.stream)
    assert all(p.shape == (skirt.vertex_count, 3) and np.isfinite(p).all() for p in positions)
    pins = skirt.levels[0].model.pinned
    for r, x in list(zip(results, positions, strict=True))[::8]:
        share, _ = inside_share(ava, result_pose(r), x, pins)
        assert share <= 0.005


def test_the_twin_squats_with_her(squat_session):
    results, _ = squat_session
    ref = np.array(json.loads((shared("motion") / "pose_squats.full.json").read_text()))
    hip_px = ref[:, [23, 24], 1].mean(axis=1)  # down the image: larger is deeper
    knee = np.array([knee_deg(r.rotations) for r in results])
    root_y = np.array([r.root_m[1] for r in results])
    deep = hip_px > np.percentile(hip_px, 85)
    standing = hip_px < np.percentile(hip_px, 30)
    # the first frames blend the twin in from rest (acquire_s): judge from the second on
    deep[:2] = standing[:2] = False
    assert knee[deep].min() > 60.0 and np.median(knee[standing]) < 25.0
    assert root_y[deep].max() < -0.15
    assert np.corrcoef(hip_px[2:], knee[2:])[0, 1] > 0.85


def test_latest_frame_wins_and_latency_stays_bounded(ava, wardrobe, squat_rgb, pose_models_dir):  # noqa: F811
    """Sixty frames at once: most are dropped (counted), the newest is the one processed, the
    rate is reported, and no result waited behind more than a frame or two."""
    options = SessionOptions(model="lite", models_dir=pose_models_dir)
    with MirrorSession(ava, [wardrobe["skirt_a_line"]], options) as session:
        results = run_paced(session, [squat_rgb[i % 65] for i in range(60)], fps=1e6)
        stats = session.stats
    assert stats.received == 60
    assert stats.dropped >= 40
    assert len(results) + stats.dropped + stats.results_dropped == 60
    assert results[-1].frame_id == 59  # the latest frame wins
    assert results[-1].dropped_frames >= 40
    for r in results:
        stage = r.timings_ms["landmarks"] + r.timings_ms["track"] + r.timings_ms["cloth"]
        assert r.timings_ms["wait_track"] < 3.0 * stage + 50.0


def test_tracking_of_the_next_frame_overlaps_the_cloth_step(
    ava,
    wardrobe,
    squat_rgb,
    pose_models_dir,  # noqa: F811
):
    """At 30 fps the tracking thread works on frame n+1 while the cloth thread steps frame n."""
    options = SessionOptions(model="lite", models_dir=pose_models_dir)
    with MirrorSession(ava, [wardrobe["skirt_a_line"]], options) as session:
        results = run_paced(session, [squat_rgb[(i // 6) % 65] for i in range(90)])
    assert len(results) >= 30
    overlaps = [
        a.spans_s["cloth"][0] < b.spans_s["track"][1]
        and b.spans_s["track"][0] < a.spans_s["cloth"][1]
        for a, b in pairwise(results)
    ]
    assert np.mean(overlaps) > 0.5
    assert results[-1].effective_rate_hz > 5.0


def test_adaptive_quality_goes_coarser_and_back_and_says_so(ava, wardrobe, squat_rgb):
    """Client-side landmarks (no MediaPipe on the server): a 4 ms budget the cloth cannot
    keep sends it to the coarser level, saying why, and the cloth goes on without a jump; a
    generous budget brings a session started coarse back to the finest level."""
    skirt = wardrobe["skirt_a_line"]
    landmarks = standing_landmarks(ava)
    tight = SessionOptions(quality=QualityOptions(budget_s=0.004, dwell_frames=5))
    with MirrorSession(ava, [skirt], tight) as session:
        results = feed_landmarks(session, [landmarks] * 45)
    levels = [r.quality["cloth_level"] for r in results]
    assert levels[0] == 0 and levels[-1] == 1
    switched = next(i for i, lv in enumerate(levels) if lv == 1)
    assert (
        "coarser" in results[switched - 1].quality["reason"]
        or "coarser" in (results[switched].quality["reason"])
    )
    assert results[-1].quality["cloth_vertices"] == skirt.levels[1].vertex_count
    assert results[-1].quality["rate_limited"]  # the coarsest level is over 4 ms as well
    positions = decoded_streams(results, skirt.stream)
    jump = float(np.linalg.norm(positions[switched] - positions[switched - 1], axis=1).max())
    assert jump < 0.01  # the same cloth, carried onto the coarser mesh (then it settles)
    roomy = SessionOptions(start_level=1, quality=QualityOptions(budget_s=0.5, dwell_frames=5))
    with MirrorSession(ava, [skirt], roomy) as session:
        results = feed_landmarks(session, [landmarks] * 15)
    assert results[0].quality["cloth_level"] == 1 and results[-1].quality["cloth_level"] == 0
    assert "finer" in results[-1].quality["reason"]


def feed_landmarks(session: MirrorSession, frames: list, fps: float = 30.0) -> list[LiveResult]:
    out = []
    t0 = time.perf_counter()
    for i, (image, world, size) in enumerate(frames):
        while time.perf_counter() < t0 + i / fps:
            time.sleep(0.0005)
        session.submit_landmarks(i, image, world, size, i / fps)
        r = session.next_result(2.0)
        assert r is not None, i
        out.append(r)
    return out


def standing_landmarks(ava) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """MediaPipe-convention landmarks of Ava's own skeleton standing at rest."""
    from tests.tracking_fixtures.synthetic import synthetic_landmarks

    frame = synthetic_landmarks(ava.skeleton, Pose.rest())
    return frame.image.copy(), frame.world.copy(), list(frame.size_px)


def test_lost_tracking_eases_to_rest_and_a_new_shopper_is_picked_up(ava, wardrobe, pose_models_dir):  # noqa: F811
    """A T-pose for a second, then nobody (black frames): after the hold the arms ease back to
    rest; then the T-pose again: she is picked up and blended in."""
    t_pose = cv2.cvtColor(cv2.imread(str(PEOPLE / "t5.jpg")), cv2.COLOR_BGR2RGB)
    empty = np.zeros_like(t_pose)
    frames = [t_pose] * 30 + [empty] * 60 + [t_pose] * 30
    options = SessionOptions(model="lite", models_dir=pose_models_dir)
    with MirrorSession(ava, [wardrobe["tshirt"]], options) as session:
        results = run_paced(session, frames)
    by_id = {r.frame_id: r for r in results}

    def arm_deg(r: LiveResult) -> float:
        return float(np.degrees(2 * np.arccos(min(1.0, abs(r.rotations["leftUpperArm"][3])))))

    raised = [arm_deg(by_id[i]) for i in range(20, 30) if i in by_id]
    assert raised and min(raised) > 20.0  # the T-pose lifts the arms well above the A-pose
    lost = [by_id[i] for i in range(80, 90) if i in by_id]
    assert lost and not any(r.tracked for r in lost)
    assert max(arm_deg(r) for r in lost) < 2.0  # eased to rest after hold + ease
    back = [by_id[i] for i in range(90, 120) if i in by_id and by_id[i].tracked]
    assert len(back) >= 5
    angles = [arm_deg(r) for r in back]
    assert angles[0] < angles[-1] - 5.0  # blended in, not snapped
    assert angles[-1] > 20.0


def shirt_stream(results: list[LiveResult], stream: int, skip: int = 0):
    """Decoded positions from result `skip` on, and the largest vertex move between frames."""
    dec = VertexStreamDecoder()
    positions = [dec.decode(r.garments[stream]).positions_m for r in results][skip:]
    moves = [float(np.linalg.norm(b - a, axis=1).max()) for a, b in pairwise(positions)]
    return positions, moves


def p99_stretch(model, x: np.ndarray) -> float:
    length = np.linalg.norm(x[model.mesh_edges[:, 0]] - x[model.mesh_edges[:, 1]], axis=1)
    return float(np.percentile(length / model.mesh_edge_rest_m - 1.0, 99))


def test_switching_garments_mid_session_starts_without_an_explosion(ava, wardrobe, squat_rgb):
    """The T-shirt on while she goes down into a squat (client landmarks at the video's own
    5 fps), then the skirt instead: it starts from its static drape carried into her pose,
    outside the body, and moves and stretches like the same skirt worn from the start of a
    session through the same frames."""
    tee, skirt = wardrobe["tshirt"], wardrobe["skirt_a_line"]
    frames = squat_landmark_frames(squat_rgb)
    with MirrorSession(ava, [tee], SessionOptions()) as session:
        before = feed_landmarks(session, frames[:12], fps=5.0)
        session.switch_garments([skirt])
        after = feed_landmarks(session, frames[12:32], fps=5.0)
    with MirrorSession(ava, [skirt], SessionOptions()) as session:
        worn = feed_landmarks(session, frames[:32], fps=5.0)
    assert set(before[-1].garments) == {tee.stream}
    assert set(after[0].garments) == {skirt.stream}
    first = VertexStreamDecoder().decode(after[0].garments[skirt.stream])
    assert first.kind == KEY and first.positions_m.shape == (skirt.vertex_count, 3)
    switched, switched_moves = shirt_stream(after, skirt.stream)
    reference, reference_moves = shirt_stream(worn, skirt.stream, skip=12)
    assert all(np.isfinite(p).all() for p in switched)
    assert max(reference_moves) > 0.1  # she squats: this is not a still scene
    assert max(switched_moves) < max(reference_moves) + 0.03  # no vertex flies off
    model = skirt.levels[0].model
    stretch_switched = [p99_stretch(model, x) for x in switched]
    stretch_worn = [p99_stretch(model, x) for x in reference]
    assert max(stretch_switched[:3]) <= max(stretch_worn)  # it did not start torn
    assert np.median(stretch_switched) <= np.median(stretch_worn) + 0.03
    pins = model.pinned
    for r, x in list(zip(after, switched, strict=True))[:3]:
        share, _ = inside_share(ava, result_pose(r), x, pins)
        assert share <= 0.005


_SQUAT_LANDMARKS: list = []


def squat_landmark_frames(squat_rgb) -> list:
    """The squat video's landmarks (full model, VIDEO mode) as a client would send them."""
    if not _SQUAT_LANDMARKS:
        from spatialtwin.tracking.landmarker import LandmarkerOptions, PoseLandmarkerStream

        with PoseLandmarkerStream(LandmarkerOptions(model="full", max_people=1)) as stream:
            for i, rgb in enumerate(squat_rgb):
                person = stream.detect(rgb, i / 5.0)[0]
                _SQUAT_LANDMARKS.append(
                    (person.image.copy(), person.world.copy(), list(person.size_px))
                )
    return _SQUAT_LANDMARKS


def test_client_landmarks_drive_the_twin_without_server_detection(ava, wardrobe, squat_rgb):
    frames = squat_landmark_frames(squat_rgb)
    with MirrorSession(ava, [wardrobe["skirt_a_line"]], SessionOptions()) as session:
        results = feed_landmarks(session, frames, fps=15.0)
    assert all(r.timings_ms["landmarks"] == 0.0 for r in results)
    ref = np.array(json.loads((shared("motion") / "pose_squats.full.json").read_text()))
    hip_px = ref[:, [23, 24], 1].mean(axis=1)
    knee = np.array([knee_deg(r.rotations) for r in results])
    assert np.corrcoef(hip_px[2:], knee[2:])[0, 1] > 0.85


def tiny_png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` × `height` pixels (and holds almost nothing)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


def test_bad_input_is_refused_before_any_work(ava, wardrobe):
    image, world, size = standing_landmarks(ava)
    with MirrorSession(ava, [wardrobe["skirt_a_line"]], SessionOptions()) as session:
        cases = [
            (lambda: session.submit_frame(0, b"\x00garbage" * 10), "bad_frame"),
            (lambda: session.submit_frame(0, bytes(MAX_FRAME_BYTES + 1)), "frame_too_large"),
            (lambda: session.submit_frame(0, bytes(20 * 1024 * 1024)), "frame_too_large"),
            (lambda: session.submit_frame(0, tiny_png_claiming(60000, 60000)), "bad_frame"),
            (lambda: session.submit_frame(0, np.zeros((480, 640, 3), np.float32)), "bad_frame"),
            (lambda: session.submit_frame(0, np.zeros((480, 640, 2), np.uint8)), "bad_frame"),
            (lambda: session.submit_frame(True, np.zeros((480, 640, 3), np.uint8)), "bad_frame"),
            (lambda: session.submit_frame(-1, np.zeros((480, 640, 3), np.uint8)), "bad_frame"),
            (lambda: session.submit_frame(0, "frame"), "bad_frame"),
            (lambda: session.submit_frame(0, np.zeros((8, 8, 3), np.uint8)), "bad_frame"),
            (
                lambda: session.submit_frame(0, np.zeros((48, 64, 3), np.uint8), float("nan")),
                "bad_frame",
            ),
            (lambda: session.submit_landmarks(0, image[:20], world, size), "bad_landmarks"),
            (lambda: session.submit_landmarks(0, image, world * np.nan, size), "bad_landmarks"),
            (lambda: session.submit_landmarks(0, image, world * 100.0, size), "bad_landmarks"),
            (lambda: session.submit_landmarks(0, image, world, [640]), "bad_landmarks"),
            (lambda: session.submit_landmarks(0, image, world, [True, 480]), "bad_landmarks"),
            (lambda: session.submit_landmarks(0, [["x"] * 4] * 33, world, size), "bad_landmarks"),
        ]
        for call, code in cases:
            with pytest.raises(SpatialTwinError) as info:
                call()
            assert info.value.code == code
        assert session.stats.received == 0  # nothing was queued
        session.submit_landmarks(0, image, world, size)  # and a good one still works
        assert session.next_result(5.0) is not None
    with pytest.raises(SpatialTwinError) as info:
        session.submit_landmarks(1, image, world, size)
    assert info.value.code == "session_closed"


def busiest_run(data: bytes, size: int = 48) -> bytes:
    """The run of `size` bytes with the most distinct values (a needle that means something)."""
    best = max(range(0, len(data) - size, 7), key=lambda k: len(set(data[k : k + size])))
    return data[best : best + size]


def test_no_camera_bytes_reach_disk_or_logs(
    ava,
    wardrobe,
    squat_rgb,
    pose_models_dir,  # noqa: F811
    tmp_path,
    monkeypatch,
    caplog,
    capfd,
):
    """A session on JPEG frames and raw frames, with DEBUG logging: afterwards no file under
    the working directory or the temp directory, and no log line or output, holds a run of
    any frame's bytes; the session keeps nothing of the shopper."""
    monkeypatch.chdir(tmp_path)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    caplog.set_level(logging.DEBUG)
    raw = [squat_rgb[i] for i in range(0, 40, 4)]
    jpegs = [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1].tobytes() for f in raw]
    started = time.time()
    options = SessionOptions(model="lite", models_dir=pose_models_dir)
    with MirrorSession(ava, [wardrobe["skirt_a_line"]], options) as session:
        results = run_paced(session, jpegs + raw, fps=15.0)
    assert len(results) >= 5
    assert session.next_result(0.0) is None and session.garment_levels == []
    # 48-byte runs from the middle of each JPEG and of each frame's pixel rows
    needles = [j[len(j) // 2 : len(j) // 2 + 48] for j in jpegs]
    needles += [busiest_run(f[640].tobytes()) for f in raw]
    assert all(len(set(n)) > 8 for n in needles)  # not a flat run that could occur anywhere
    scanned = 0
    for root in {tmp_path, Path(tempfile.gettempdir()), Path(os.getcwd())}:
        for path in root.rglob("*"):
            if path.is_file() and path.stat().st_mtime >= started - 1:
                data = path.read_bytes()
                scanned += 1
                assert not any(n in data for n in needles), path
    out, err = capfd.readouterr()
    texts = [caplog.text, out, err]
    for needle in needles:
        for text in texts:
            assert needle.hex() not in text and repr(needle)[2:-1] not in text
    assert any("mirror session" in r.getMessage() for r in caplog.records)  # it did log


@pytest.fixture(scope="module")
def walking_twin():
    twin = create_twin_body(
        Measurements(
            height_m=1.70, chest_m=0.95, waist_m=0.80, hips_m=1.00, inseam_m=0.78, shoulder_m=0.42
        ),
        shipped_template().body,
    )
    clip = retarget_bvh(read_bvh(shared("motion", "scaled_131_01.bvh")), twin.skeleton)
    return twin, SkinnedMotion(twin, with_turns_and_arm_raises(from_rest(clip)))


def crease_run(walking_twin, max_contacts: int, frames: int) -> np.ndarray:
    """(depth mm of the deepest free vertex, % of free vertices > 5 mm inside) every 5 frames
    of a 3k denim skirt on the twin walking, turning and flinging its arms."""
    twin, motion = walking_twin
    body0 = motion.vertices(0)
    sk = flared_skirt(body0, 3000, waist_height_m=measured(twin).waist_level_m, flare_deg=18.0)
    model = build_cloth_model(
        sk.positions_m,
        sk.faces,
        DENIM,
        pinned=sk.waistband,
        seams=sk.seams,
        rest_positions_m=sk.rest_positions_m,
    )
    settings = SolverSettings(substeps=10, max_contacts=max_contacts)
    sim = ClothSim(model, body0, motion.faces, sk.positions_m, settings)
    rows = []
    for f in range(1, frames + 1):
        st = sim.step(motion.vertices(f), 1 / 30)
        if f % 5 == 0:
            sd = sim.collider.signed_distance(st.positions_m)
            sd[model.pinned] = 1.0  # the waistband rides the hips like a belt
            rows.append((-1e3 * sd.min(), 100.0 * np.mean(sd < -0.005)))
    return np.array(rows)


@pytest.mark.slow
def test_cloth_in_creases_stays_out_with_several_contacts(walking_twin):
    """Hips flexed against the belly and bent knees pinch the skirt; with one contact per
    vertex it is pushed out of one side into the other. Three contacts per vertex keep it out:
    at every sampled frame at most 0.5 % of the cloth is more than 5 mm inside, and the depth of
    the deepest vertex over the run (its 95th percentile over the 140 sampled frames) and the
    count of frames with cloth that deep both drop. Measured: p95 11.1 -> 4.8 mm, frames > 5 mm
    18 -> 7. The single deepest frame is no measure: one pinch each (16.2 and 16.5 mm, at frames
    675 and 125) decides it."""
    one = crease_run(walking_twin, 1, 700)
    three = crease_run(walking_twin, 3, 700)
    assert three[:, 1].max() <= 0.5
    assert np.percentile(three[:, 0], 95) < 0.6 * np.percentile(one[:, 0], 95)
    assert three[:, 0].max() < 20.0
    assert np.sum(three[:, 0] > 5.0) < 0.7 * np.sum(one[:, 0] > 5.0)


@pytest.mark.slow
def test_flung_arms_do_not_tear_through_the_shirt(ava, wardrobe):
    """The T-shirt live on Ava flinging both arms overhead (hands at up to 29 cm a frame) and
    turning: at every frame at most 0.5 % of it is more than 5 mm inside the body."""
    tee = wardrobe["tshirt"]
    clip = retarget_bvh(read_bvh(shared("motion", "scaled_131_01.bvh")), ava.skeleton)
    motion = SkinnedMotion(ava, with_turns_and_arm_raises(from_rest(clip, seconds=0.5)))
    collider = BodyCollider(motion.vertices(0), motion.faces)
    live = SessionOptions()
    settings = SolverSettings(substeps=live.substeps, max_body_step_m=live.max_body_step_m)
    cloth = GarmentCloth(tee, collider, settings)
    fastest, worst = 0.0, 0.0
    for f in range(1, 150):
        collider.update(motion.vertices(f))
        fastest = max(
            fastest, float(np.linalg.norm(collider.current_m - collider.previous_m, axis=1).max())
        )
        cloth.advance(1 / 30)
        x = cloth.sim.state.positions_m
        assert np.isfinite(x).all()
        sd = collider.signed_distance(x)
        worst = max(worst, float(np.mean(sd < -0.005)))
    assert fastest > 0.2  # the hands really fly
    assert worst <= 0.005


def test_adaptive_quality_jumps_to_the_level_that_fits_and_does_not_oscillate():
    """The controller alone, on the stage times a slow machine gives the 10k skirt's levels."""
    from spatialtwin.live.quality import AdaptiveQuality

    counts = (9365, 6827, 4091)
    q = AdaptiveQuality(counts)
    t = 0.0
    states = []
    for _ in range(10):  # 60 ms a frame at level 0: far over the 33 ms budget
        t += 1 / 30
        states.append(q.observe(0.060, t))
    assert q.level == 2  # straight to the level whose scaled cost (26 ms) fits
    assert any(s.changed and "coarser" in s.reason for s in states)
    for _ in range(25):  # level 2 runs at 10 ms: room for level 1 (scaled: 17 ms)
        t += 1 / 30
        q.observe(0.010, t)
    assert q.level == 1
    for _ in range(60):  # level 1 at 15 ms; level 0 was measured at 60 ms: stay
        t += 1 / 30
        state = q.observe(0.015, t)
    assert q.level == 1 and not state.rate_limited
    slow = AdaptiveQuality(counts)
    for k in range(40):  # even the coarsest level over budget: rate-limited, said so
        state = slow.observe(0.2, k / 30)
    assert slow.level == 2 and state.rate_limited and "lower rate" in state.reason


@pytest.fixture(scope="module")
def skirt_under_tee(ava):
    """The skirt and the T-shirt draped together on Ava (the shirt over the skirt), live."""
    garments = {name: look_garment(name) for name in ("skirt_a_line", "tshirt")}
    look = drape_look(ava, list(garments.values()))
    assert [g.key for g in look.garments] == ["skirt_a_line", "tshirt"]  # inner first
    return [
        build_live_garment(garments[d.key], d, ava, i, LEVELS) for i, d in enumerate(look.garments)
    ]


def beneath_share(body_v, faces, inner: GarmentCloth, outer: GarmentCloth) -> float:
    """% of the outer garment's display vertices more than 3 mm beneath the inner garment's
    surface (where it covers them), measured on a fresh static collider, not the session's."""
    from spatialtwin.cloth.collider import DrapeLayer, LayeredCollider

    layer = DrapeLayer(inner.shell_positions(), inner.garment.display_faces, 0.0)
    under = LayeredCollider(body_v, faces, [layer]).under_layers(outer.display_positions(), 0.05)
    return 100.0 * float(np.mean(under < -0.003))


@pytest.mark.slow
def test_two_garments_keep_their_layers_apart_live(ava, skirt_under_tee):
    """The shirt over the skirt, Ava walking, turning and raising her arms (150 frames at
    30 fps, stepped as the session steps them): on the body alone the shirt's hem sinks under
    the skirt's waistband (measured: 6-16 % of the shirt more than 3 mm beneath the skirt);
    colliding with the skirt as it moves, it stays over it (measured: median 0 %, at most
    2.2 % in any frame)."""
    from spatialtwin.live.garments import LIVE_SUBSTEPS

    clip = with_turns_and_arm_raises(
        from_rest(retarget_bvh(read_bvh(shared("motion", "scaled_131_01.bvh")), ava.skeleton))
    )
    skinner = WeldedSkinner(ava)

    def run(layered: bool) -> np.ndarray:
        collider = BodyCollider(skinner.posed(Pose.rest()), skinner.faces)
        settings = SolverSettings(substeps=LIVE_SUBSTEPS)
        skirt = GarmentCloth(skirt_under_tee[0], collider, settings)
        tee = GarmentCloth(skirt_under_tee[1], collider, settings, under=(skirt,) * layered)
        shares = []
        for f in range(1, 151):
            body = skinner.posed(clip.pose(f))
            collider.update(body)
            for cloth in (skirt, tee):
                cloth.follow_layers()
                cloth.advance(1 / 30)
            if f % 5 == 0:
                shares.append(beneath_share(body, skinner.faces, skirt, tee))
        return np.array(shares)

    plain, layered = run(False), run(True)
    assert np.median(plain) > 4.0, plain  # the problem is real on this look
    assert np.median(layered) < 0.5 and layered.max() < 3.0, layered
    assert np.isfinite(layered).all()
