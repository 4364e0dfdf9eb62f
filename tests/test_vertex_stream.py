"""The live vertex stream: a 10k-vertex skirt simulated on a twin walking the CMU clip streams
in ≤ 20 KB a frame within 1 mm, decodes the same in Python and in the page's JavaScript, and
refuses what is not a stream frame."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from spatialtwin.body.parametric import Measurements, create_twin_body, measured
from spatialtwin.cloth.fabric_params import DENIM
from spatialtwin.cloth.model import build_cloth_model
from spatialtwin.cloth.solver import ClothSim, SolverSettings
from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.bvh import read_bvh
from spatialtwin.gltf.template_npz import shipped_template
from spatialtwin.gltf.vertex_stream import (
    DELTA,
    HEADER_BYTES,
    KEY,
    VertexStreamDecoder,
    VertexStreamEncoder,
    coherent_vertex_order,
    read_header,
)
from spatialtwin.tracking.motion import (
    SkinnedMotion,
    from_rest,
    retarget_bvh,
    with_turns_and_arm_raises,
)
from tests.cloth_scenes import flared_skirt
from tests.conftest import shared

REPO = Path(__file__).resolve().parents[1]
FRAMES = 75  # 2.5 s: the clip's first arm fling starts at 1.75 s
MAX_ERROR_M = 0.001
MAX_FRAME_BYTES = 20 * 1024


@pytest.fixture(scope="module")
def skirt_frames() -> tuple[list[np.ndarray], np.ndarray]:
    """(positions per frame in stream order, faces in stream order) of a ~10k-vertex denim
    skirt simulated on a twin walking, turning and flinging its arms (CMU 131_01)."""
    twin = create_twin_body(
        Measurements(
            height_m=1.70, chest_m=0.95, waist_m=0.80, hips_m=1.00, inseam_m=0.78, shoulder_m=0.42
        ),
        shipped_template().body,
    )
    clip = retarget_bvh(read_bvh(shared("motion", "scaled_131_01.bvh")), twin.skeleton)
    motion = SkinnedMotion(twin, with_turns_and_arm_raises(from_rest(clip, seconds=0.5)))
    body0 = motion.vertices(0)
    sk = flared_skirt(body0, 10000, waist_height_m=measured(twin).waist_level_m, flare_deg=18.0)
    model = build_cloth_model(
        sk.positions_m,
        sk.faces,
        DENIM,
        pinned=sk.waistband,
        seams=sk.seams,
        rest_positions_m=sk.rest_positions_m,
    )
    sim = ClothSim(model, body0, motion.faces, sk.positions_m, SolverSettings(substeps=10))
    order = coherent_vertex_order(sk.faces, len(sk.positions_m))
    frames = [sim.state.positions_m[order].copy()]
    for f in range(1, FRAMES):
        frames.append(sim.step(motion.vertices(f), 1 / 30).positions_m[order].copy())
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.arange(len(order))
    return frames, inverse[np.asarray(sk.faces, dtype=np.int64)]


@pytest.fixture(scope="module")
def encoded(skirt_frames) -> list[bytes]:
    frames, _ = skirt_frames
    enc = VertexStreamEncoder(stream=3)
    return [enc.encode(x) for x in frames]


def test_skirt_is_ten_thousand_vertices_and_moves(skirt_frames):
    frames, _ = skirt_frames
    assert 9500 <= len(frames[0]) <= 10500
    moved = np.linalg.norm(frames[-1] - frames[0], axis=1)
    assert np.median(moved) > 0.02  # the twin walked: this is not a still garment


def test_frames_are_under_20_kb_and_within_1_mm(skirt_frames, encoded):
    frames, _ = skirt_frames
    dec = VertexStreamDecoder()
    kinds, sizes, errors = [], [], []
    for x, data in zip(frames, encoded, strict=True):
        out = dec.decode(data)
        assert out.stream == 3
        kinds.append(out.kind)
        sizes.append(len(data))
        errors.append(float(np.linalg.norm(out.positions_m - x, axis=1).max()))
    assert kinds[0] == KEY and set(kinds[1:]) == {DELTA}
    assert max(errors) <= np.sqrt(3) / 2 * 0.001 + 1e-9  # half a grid step along each axis
    assert max(errors) <= MAX_ERROR_M
    assert max(sizes[1:]) <= MAX_FRAME_BYTES, max(sizes[1:])
    assert sizes[0] < 3 * MAX_FRAME_BYTES  # one key frame per receiver
    # against the floats as JSON would send them (~270 KB), a fifteenth or less
    assert np.median(sizes[1:]) < 0.07 * len(json.dumps(frames[1].round(4).tolist()))


def test_stream_order_matters(skirt_frames):
    """Neighbouring vertices next to each other in the stream is what makes frames small."""
    frames, _ = skirt_frames
    shuffled = np.random.default_rng(1).permutation(len(frames[0]))
    coherent, scrambled = VertexStreamEncoder(), VertexStreamEncoder()
    a = [len(coherent.encode(x)) for x in frames[:20]]
    b = [len(scrambled.encode(x[shuffled])) for x in frames[:20]]
    assert np.median(a[1:]) < 0.8 * np.median(b[1:])


def test_order_is_a_permutation_with_neighbours_next_to_each_other(skirt_frames):
    frames, faces = skirt_frames
    order = coherent_vertex_order(faces, len(frames[0]))
    assert sorted(order.tolist()) == list(range(len(frames[0])))
    # the skirt is already in that order: consecutive vertices are mostly a few cm apart
    step = np.linalg.norm(np.diff(frames[0], axis=0), axis=1)
    assert np.median(step) < 0.03


def test_javascript_decoder_gives_the_same_positions(skirt_frames, encoded):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    decoder_js = REPO / "node_modules" / "three" / "examples" / "jsm" / "libs"
    decoder_js = decoder_js / "meshopt_decoder.module.js"
    if not decoder_js.exists():
        pytest.skip("three.js is not installed (npm)")
    script = f"""
import {{ MeshoptDecoder }} from {json.dumps(decoder_js.as_uri())};
import {{ VertexStreamDecoder, VertexStreamError }} from {
        json.dumps((REPO / "web_client" / "lib" / "vertex-stream.js").as_uri())
    };
let input = '';
for await (const chunk of process.stdin) input += chunk;
const frames = JSON.parse(input).map((b) => new Uint8Array(Buffer.from(b, 'base64')));
await MeshoptDecoder.ready;
const dec = new VertexStreamDecoder(MeshoptDecoder);
const out = frames.map((f) => dec.decode(f));
let gap = null;
try {{ new VertexStreamDecoder(MeshoptDecoder).decode(frames[5]); }}
catch (e) {{ gap = e instanceof VertexStreamError ? e.code : String(e); }}
const last = out[out.length - 1];
process.stdout.write(JSON.stringify({{
  kinds: out.map((o) => o.kind), streams: out.map((o) => o.stream),
  last: Buffer.from(last.positions.buffer).toString('base64'), gap,
}}));
"""
    payload = json.dumps([base64.b64encode(b).decode() for b in encoded])
    run = subprocess.run(
        [node, "--input-type=module", "-e", script],
        input=payload,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["kinds"] == [KEY] + [DELTA] * (len(encoded) - 1)
    assert set(got["streams"]) == {3}
    assert got["gap"] == "vertex_stream_gap"
    js_last = np.frombuffer(base64.b64decode(got["last"]), dtype=np.float32).reshape(-1, 3)
    py_dec = VertexStreamDecoder()
    for data in encoded:
        py_last = py_dec.decode(data).positions_m
    np.testing.assert_allclose(js_last, py_last, atol=2e-6)  # float32 of the same grid
    frames, _ = skirt_frames
    assert np.linalg.norm(js_last - frames[-1], axis=1).max() <= MAX_ERROR_M


def test_key_frames_come_when_the_receiver_needs_one(skirt_frames):
    frames, _ = skirt_frames
    enc = VertexStreamEncoder()
    kinds = [read_header(enc.encode(x)).kind for x in frames[:3]]
    enc.reset()
    kinds.append(read_header(enc.encode(frames[3])).kind)
    kinds.append(read_header(enc.encode(frames[4][:5000])).kind)  # another mesh
    kinds.append(read_header(enc.encode(frames[4][:5000] + 40.0)).kind)  # a 40 m jump
    assert kinds == [KEY, DELTA, DELTA, KEY, KEY, KEY]
    periodic = VertexStreamEncoder(key_interval=3)
    assert [read_header(periodic.encode(x)).kind for x in frames[:6]] == [
        KEY,
        DELTA,
        DELTA,
        KEY,
        DELTA,
        DELTA,
    ]


def test_a_delta_without_its_predecessor_is_refused(encoded):
    dec = VertexStreamDecoder()
    dec.decode(encoded[0])
    with pytest.raises(SpatialTwinError) as info:
        dec.decode(encoded[2])
    assert info.value.code == "vertex_stream_gap"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b[:20],  # shorter than the header
        lambda b: b"XXXX" + b[4:],  # not our magic
        lambda b: b[:4] + bytes([9]) + b[5:],  # unknown version
        lambda b: b[:-10],  # payload shorter than the header says
        lambda b: b[:12] + struct.pack("<I", 50_000_000) + b[16:],  # absurd vertex count
        lambda b: b[:HEADER_BYTES] + bytes(len(b) - HEADER_BYTES),  # zeros for a payload
    ],
)
def test_bad_frames_are_refused(encoded, mangle):
    with pytest.raises(SpatialTwinError) as info:
        VertexStreamDecoder().decode(mangle(encoded[0]))
    assert info.value.code == "bad_vertex_stream"


def test_bad_positions_are_refused():
    enc = VertexStreamEncoder()
    for bad in (np.zeros((0, 3)), np.zeros((10, 2)), np.full((10, 3), np.nan)):
        with pytest.raises(SpatialTwinError):
            enc.encode(bad)
    with pytest.raises(SpatialTwinError):
        enc.encode(np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0]]))  # beyond a key's grid
