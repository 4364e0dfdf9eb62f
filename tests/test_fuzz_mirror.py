"""Fuzzing what a mirror (or a watcher, or the server to a Python client) sends: STMF camera
frames and their headers, landmark payloads and the landmark checks, the encoded camera
images themselves (header checks, then the decode the tracking thread does), the hello and
control messages, STMR result frames and STVS vertex-stream frames.

Seeds are real: MediaPipe's pose.jpg (and the same photo as PNG and WebP), BlazePose's
landmarks of the squat video (pose_squats*.full.json: image pixels of 720 × 1280 and world
metres), hellos as docs/mirror-protocol.md writes them, vertex streams of a MakeHuman outfit
moving. Binary headers are rebuilt from every field drawn from its valid values and its edges
(magic, version, kind, reserved, ids, NaN/Infinity times, payload lengths off by one or
huge), then byte-mutated.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import struct
import zlib
from functools import cache
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from spatialtwin.gltf.mirror_messages import (
    FRAME_HEADER,
    FRAME_MAGIC,
    KIND_IMAGE,
    KIND_LANDMARKS,
    LANDMARK_PAYLOAD_BYTES,
    MAX_FRAME_BYTES,
    RESULT_HEADER,
    RESULT_HEADER_BYTES,
    CameraFrame,
    check_client_message,
    check_hello,
    landmark_payload,
    parse_text,
    read_camera_frame,
    read_landmark_payload,
    read_result_frame,
    result_frame,
)
from spatialtwin.gltf.vertex_stream import HEADER, VertexStreamDecoder, VertexStreamEncoder
from spatialtwin.live.frames import FrameInput, check_frame, check_landmarks, decode_checked
from tests.conftest import shared
from tests.fuzz_strategies import (
    FuzzInput,
    as_input,
    dump_hostile_json,
    exercise,
    fuzz_settings,
    fuzz_summary,  # noqa: F401  (the per-parser summary at the end of the run)
    json_paths,
    mutated_bytes,
    mutated_json,
    obj_slice,
)

VIDEO_PX = (720, 1280)


@cache
def images() -> list[bytes]:
    """pose.jpg as it is, and re-encoded as PNG and WebP (the three frame formats)."""
    jpeg = shared("people", "pose.jpg").read_bytes()
    out = [jpeg]
    with Image.open(io.BytesIO(jpeg)) as im:
        small = im.convert("RGB").resize((im.width // 4, im.height // 4))
    for fmt in ("PNG", "WEBP"):
        buf = io.BytesIO()
        small.save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


@cache
def squat_landmarks() -> list[tuple[np.ndarray, np.ndarray]]:
    """(image (33, 5), world (33, 4)) of every fifth frame of the squat video."""
    px = np.asarray(json.loads(shared("motion", "pose_squats.full.json").read_text()))
    world = np.asarray(json.loads(shared("motion", "pose_squats_3d.full.json").read_text()))
    out = []
    for k in range(0, len(px), 5):
        image = np.zeros((33, 5))
        image[:, 0] = px[k, :, 0] / VIDEO_PX[0]
        image[:, 1] = px[k, :, 1] / VIDEO_PX[1]
        image[:, 2] = px[k, :, 2] / VIDEO_PX[0]
        image[:, 3:] = 0.95
        w = np.zeros((33, 4))
        w[:, :3] = world[k]
        w[:, 3] = 0.95
        out.append((image, w))
    return out


@cache
def landmark_payloads() -> list[bytes]:
    return [landmark_payload(VIDEO_PX, image, world) for image, world in squat_landmarks()]


# ---------------------------------------------------------------- STMF camera frames


@st.composite
def stmf_frames(draw: st.DrawFn) -> bytes:
    """An STMF frame of a real image or landmark payload with 0-2 header fields replaced by
    an edge value (magic, version, kind, reserved, id, time, length), the payload maybe cut,
    then maybe byte-mutated."""
    kind = draw(st.sampled_from([KIND_IMAGE, KIND_LANDMARKS]))
    payload = draw(st.sampled_from(landmark_payloads() if kind == KIND_LANDMARKS else images()))
    if draw(st.integers(0, 3)) == 0:
        payload = payload[: draw(st.sampled_from([len(payload) - 1, 0, 24]))]
    fields: list[Any] = [FRAME_MAGIC, 1, kind, 0, 17, 1234.5, len(payload)]
    edges: list[list[Any]] = [
        [b"STMR", b"STVS", b"\0\0\0\0"],
        [0, 2, 255],
        [0, 3, 255, KIND_IMAGE + KIND_LANDMARKS - kind],
        [1, 0xFFFF],
        [0, 2**32 - 1],
        [0.0, -1.0, math.nan, math.inf, -math.inf, 1e300],
        [len(payload) + 1, max(len(payload) - 1, 0), 0, 2**32 - 1],
    ]
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, len(fields) - 1))
        fields[i] = draw(st.sampled_from(edges[i]))
    data = FRAME_HEADER.pack(*fields) + payload
    if draw(st.integers(0, 2)) == 0:
        data = draw(mutated_bytes([data], hot=64, max_ops=2))
    return data


def _camera_frame_then_payload(data: bytes) -> tuple[CameraFrame, FrameInput]:
    frame = read_camera_frame(data, MAX_FRAME_BYTES)
    if frame.kind == KIND_LANDMARKS:
        landmarks = read_landmark_payload(frame.payload)
        checked = check_landmarks(
            frame.frame_id,
            landmarks.image,
            landmarks.world,
            list(landmarks.size_px),
            frame.capture_t_ms / 1000.0,
        )
    else:
        checked = check_frame(frame.frame_id, bytes(frame.payload), frame.capture_t_ms / 1000.0)
    return frame, checked


def check_camera_frame(result: tuple[CameraFrame, FrameInput]) -> None:
    frame, checked = result
    assert math.isfinite(frame.capture_t_ms) and len(frame.payload) <= MAX_FRAME_BYTES
    if frame.kind == KIND_LANDMARKS:
        assert len(frame.payload) == LANDMARK_PAYLOAD_BYTES
        lm = checked.landmarks
        assert lm is not None and np.isfinite(lm.image).all() and np.isfinite(lm.world).all()


@fuzz_settings(2.0)
@given(as_input(stmf_frames, "frame.stmf"))
def test_camera_frames_are_read_or_refused_from_their_header(item: FuzzInput) -> None:
    exercise(
        "mirror_messages.read_camera_frame+payload",
        lambda: _camera_frame_then_payload(item.data),
        len(item),
        check_camera_frame,
    )


# ---------------------------------------------------------------- landmark values


def hostile_landmark_values() -> st.SearchStrategy[Any]:
    edge = st.sampled_from([math.nan, math.inf, -math.inf, 1e30, -5.0, 4.0001, 3.0001, 1.0001])
    return edge


@st.composite
def landmark_arrays(draw: st.DrawFn) -> tuple[Any, Any, Any]:
    """Real landmarks with values, shapes and types edited as a client could send them."""
    image, world = (a.copy() for a in draw(st.sampled_from(squat_landmarks())))
    size: Any = list(VIDEO_PX)
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(["image", "world", "size", "shape"]))
        if target in ("image", "world"):
            arr = image if target == "image" else world
            i, j = draw(st.integers(0, 32)), draw(st.integers(0, arr.shape[1] - 1))
            arr[i, j] = draw(hostile_landmark_values())
        elif target == "size":
            size = draw(
                st.sampled_from(
                    [
                        [0, 0],
                        [15, 1280],
                        [4097, 4097],
                        [720],
                        "720x1280",
                        [7.5, 9],
                        [True, 1],
                        [2**40, 2**40],
                        None,
                    ]
                )
            )
        else:
            which = draw(st.sampled_from(["image", "world"]))
            cut = draw(
                st.sampled_from(
                    [
                        (slice(0, 32), slice(None)),
                        (slice(None), slice(0, 3)),
                        (slice(None), slice(0, 2)),
                    ]
                )
            )
            if which == "image":
                image = image[cut]
            else:
                world = world[cut]
    as_list = draw(st.booleans())
    return (image.tolist() if as_list else image), (world.tolist() if as_list else world), size


@fuzz_settings(1.0)
@given(landmark_arrays())
def test_client_landmarks_are_checked_or_refused(values: tuple[Any, Any, Any]) -> None:
    image, world, size = values
    exercise(
        "live.frames.check_landmarks",
        lambda: check_landmarks(7, image, world, size, 0.5),
        33 * 9 * 8,
    )


# ---------------------------------------------------------------- camera images


@st.composite
def image_with_edited_size(draw: st.DrawFn) -> bytes:
    """A real image whose header claims another size: PNG IHDR (CRC fixed or not), JPEG SOF."""
    png, jpeg = images()[1], images()[0]
    width = draw(st.sampled_from([0, 1, 15, 16, 4096, 4097, 65535, 0x7FFFFFFF]))
    height = draw(st.sampled_from([0, 1, 16, 4096, 4097, 65535]))
    if draw(st.booleans()):
        ihdr = bytearray(png[8:33])
        ihdr[8:16] = struct.pack(">II", width, height)
        if draw(st.booleans()):
            ihdr[21:25] = struct.pack(">I", zlib.crc32(bytes(ihdr[4:21])))
        return png[:8] + bytes(ihdr) + png[33:]
    sof = max(jpeg.find(b"\xff\xc0"), jpeg.find(b"\xff\xc2"))
    out = bytearray(jpeg)
    out[sof + 5 : sof + 9] = struct.pack(">HH", min(height, 65535), min(width, 65535))
    return bytes(out)


def _check_then_decode(data: bytes) -> tuple[FrameInput, np.ndarray]:
    checked = check_frame(3, data, 1.0)
    return checked, decode_checked(checked.frame)


def check_decoded(result: tuple[FrameInput, np.ndarray]) -> None:
    _, rgb = result
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[0] * rgb.shape[1] <= 4096 * 4096


@fuzz_settings(1.0)
@given(
    as_input(
        lambda: st.one_of(image_with_edited_size(), mutated_bytes(images(), hot=1024)), "frame.img"
    )
)
def test_camera_images_are_checked_from_their_header_then_decode(item: FuzzInput) -> None:
    exercise(
        "live.frames.check_frame+decode",
        lambda: _check_then_decode(item.data),
        len(item),
        check_decoded,
    )


# ---------------------------------------------------------------- text messages

HELLOS: list[dict[str, Any]] = [
    {
        "type": "hello",
        "version": 1,
        "token": "stm_a1b2c3",
        "look": "lk_9f8e",
        "input": "frames",
        "model": "full",
    },
    {
        "type": "hello",
        "version": 1,
        "token": "stm_a1b2c3",
        "garments": ["gm_skirt", "gm_top"],
        "twin": "closest",
        "height_m": 1.72,
        "input": "landmarks",
        "model": "lite",
        "camera": {"pitch_deg": 4.5, "roll_deg": -1.0},
    },
    {
        "type": "hello",
        "version": 1,
        "token": "stm_a1b2c3",
        "resume": {"session": "ms_1234", "key": "k_abcdef"},
    },
]
CONTROLS: list[dict[str, Any]] = [
    {"type": "switch", "look": "lk_2"},
    {"type": "switch", "garments": ["gm_dress"]},
    {"type": "key_frame"},
    {"type": "share"},
    {"type": "ping", "t_ms": 123456.5},
    {"type": "bye"},
]
TEXT_VOCABULARY = (
    "type",
    "version",
    "token",
    "look",
    "garments",
    "twin",
    "height_m",
    "input",
    "model",
    "camera",
    "resume",
    "pitch_deg",
    "roll_deg",
    "session",
    "key",
    "t_ms",
)


@st.composite
def text_messages(draw: st.DrawFn) -> bytes:
    doc = draw(st.sampled_from(HELLOS + CONTROLS))
    edited = draw(mutated_json(doc, json_paths(doc), TEXT_VOCABULARY, max_ops=2, min_ops=0))
    text = dump_hostile_json(edited, deep_levels=draw(st.sampled_from([10, 100_000])))
    if draw(st.integers(0, 4)) == 0:
        text = draw(mutated_bytes([text], max_ops=2))
    return text


def _read_message(data: bytes) -> Any:
    message = parse_text(data)
    if message.get("type") == "hello":
        return check_hello(message)
    return check_client_message(message, watcher=message.get("type") == "ping")


@fuzz_settings(2.0)
@given(as_input(text_messages, "message.json"))
def test_hello_and_control_messages_are_checked_or_refused(item: FuzzInput) -> None:
    exercise("mirror_messages.parse_text+check", lambda: _read_message(item.data), len(item))


# ---------------------------------------------------------------- vertex streams


@cache
def outfit_motion_m() -> list[np.ndarray]:
    """A MakeHuman outfit's vertices (decimetres → metres) swaying over eight frames."""
    text = obj_slice(shared("garments", "female_sportsuit01.obj").read_bytes(), 400)
    rows = [ln.split()[1:4] for ln in text.splitlines() if ln.startswith(b"v ")]
    rest = np.asarray(rows, dtype=np.float64) * 0.1
    return [rest + np.array([0.01 * math.sin(k / 2), 0.0, 0.004 * k]) for k in range(8)]


@cache
def stream_frames() -> list[bytes]:
    encoder = VertexStreamEncoder(stream=2)
    return [encoder.encode(p) for p in outfit_motion_m()]


@st.composite
def stream_frame(draw: st.DrawFn) -> FuzzInput:
    """A frame of the stream with header fields or bytes edited (its index in the name)."""
    frames = stream_frames()
    k = draw(st.integers(0, len(frames) - 1))
    data = frames[k]
    if draw(st.booleans()):
        fields = list(HEADER.unpack_from(data))
        i = draw(st.integers(0, len(fields) - 1))
        fields[i] = draw(
            st.sampled_from(
                {
                    0: [b"STVS", b"STMF", b"\0\0\0\0"],
                    1: [0, 1, 2, 255],
                    2: [0, 1, 2, 255],
                    3: [0, 2, 3, 0xFFFF],
                }.get(i, [0, 1, k - 1, 2**31, 2**32 - 1, 1_000_000, 1_000_001])
                if i < 6
                else [0.0, -0.001, 1e-30, 1e30, math.nan, math.inf]
                if i < 10
                else [0, len(data) - 36, len(data) - 35, 2**32 - 1]
            )
        )
        with contextlib.suppress(struct.error):  # a value the field cannot hold: leave it
            data = HEADER.pack(*fields) + data[HEADER.size :]
    if draw(st.booleans()):
        data = draw(mutated_bytes([data], hot=64, max_ops=2))
    return FuzzInput(data, f"stream-frame-{k}.stvs")


def _decode_after(k: int, data: bytes) -> Any:
    decoder = VertexStreamDecoder()
    for before in stream_frames()[:k]:  # the decoder holds the stream up to the edited frame
        decoder.decode(before)
    return decoder.decode(data)


@fuzz_settings(1.5)
@given(stream_frame())
def test_vertex_stream_frames_decode_or_are_refused(item: FuzzInput) -> None:
    k = int(item.name.split("-")[2].split(".")[0])

    def check(frame: Any) -> None:
        n = frame.positions_m.shape[0]
        assert frame.positions_m.shape == (n, 3) and 0 < n <= 1_000_000

    exercise("vertex_stream.decode", lambda: _decode_after(k, item.data), len(item), check)


# ---------------------------------------------------------------- STMR result frames


@cache
def result_frames() -> list[bytes]:
    quats = np.tile([0.0, 0.0, 0.0, 1.0], (55, 1))
    info = {"timings_ms": {"track": 4.2, "cloth": 6.1}, "cloth_level": 0}
    return [
        result_frame(k, 1000.0 + 33.3 * k, True, False, [0.0, 0.9, 0.0], quats, info, [s])
        for k, s in enumerate(stream_frames()[:2])
    ]


@st.composite
def stmr_frames(draw: st.DrawFn) -> bytes:
    data = draw(st.sampled_from(result_frames()))
    fields = list(RESULT_HEADER.unpack_from(data))
    i = draw(st.integers(0, len(fields) - 1))
    if i in (3, 6, 7):  # joint count, JSON bytes, stream count
        fields[i] = draw(st.sampled_from([0, 1, fields[i] + 1, fields[i] - 1, 0xFFFF]))
        if i == 6:
            fields[i] = draw(st.sampled_from([fields[i], 2**32 - 1]))
        data = RESULT_HEADER.pack(*fields) + data[RESULT_HEADER_BYTES:]
    return draw(mutated_bytes([data], hot=RESULT_HEADER_BYTES + 55 * 16 + 80, max_ops=2))


@fuzz_settings(1.0)
@given(as_input(stmr_frames, "result.stmr"))
def test_result_frames_decode_or_are_refused(item: FuzzInput) -> None:
    exercise("mirror_messages.read_result_frame", lambda: read_result_frame(item.data), len(item))
