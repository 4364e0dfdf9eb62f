"""The mirror protocol's messages byte for byte (`docs/mirror-protocol.md`): STMF camera frames
and hello/control messages are checked before any work and refused with the doc's close code;
STMR result frames are laid out at the documented offsets and read back."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf import mirror_messages as mm
from spatialtwin.gltf.vertex_stream import VertexStreamDecoder, VertexStreamEncoder
from spatialtwin.live.frames import MAX_FRAME_BYTES

TOKEN = "stm_" + "A" * 43


def refused(call, close_code: int, code: str | None = None) -> mm.MirrorProtocolError:
    with pytest.raises(mm.MirrorProtocolError) as info:
        call()
    assert info.value.close_code == close_code, (info.value.code, info.value.message)
    if code is not None:
        assert info.value.code == code
    return info.value


# --- STMF -------------------------------------------------------------------------------------


def test_camera_frame_header_is_24_bytes_at_the_documented_offsets():
    payload = b"\xff\xd8jpeg bytes\xff\xd9"
    data = mm.camera_frame(mm.KIND_IMAGE, 7, 1234.5, payload)
    expected = (
        b"STMF"
        + bytes([1, 1, 0, 0])
        + (7).to_bytes(4, "little")
        + struct.pack("<d", 1234.5)
        + len(payload).to_bytes(4, "little")
        + payload
    )
    assert data == expected
    frame = mm.read_camera_frame(data, MAX_FRAME_BYTES)
    assert (frame.kind, frame.frame_id, frame.capture_t_ms) == (1, 7, 1234.5)
    assert bytes(frame.payload) == payload


def test_landmark_payload_is_1196_bytes_and_reads_back_exactly():
    rng = np.random.default_rng(3)
    image = rng.random((33, 5)).astype(np.float32)
    world = rng.normal(size=(33, 4)).astype(np.float32)
    payload = mm.landmark_payload((640, 480), image, world)
    assert len(payload) == mm.LANDMARK_PAYLOAD_BYTES == 1196
    assert payload[:8] == struct.pack("<II", 640, 480)
    assert payload[8:12] == struct.pack("<f", image[0, 0])
    assert payload[8 + 660 : 8 + 664] == struct.pack("<f", world[0, 0])
    frame = mm.read_camera_frame(mm.camera_frame(2, 9, 0.0, payload), MAX_FRAME_BYTES)
    marks = mm.read_landmark_payload(frame.payload)
    assert marks.size_px == (640, 480)
    np.testing.assert_array_equal(marks.image, image)
    np.testing.assert_array_equal(marks.world, world)


def test_bad_camera_frames_are_refused_from_the_header_alone():
    good = mm.camera_frame(mm.KIND_IMAGE, 1, 0.0, b"x" * 100)
    refused(lambda: mm.read_camera_frame(good[:23], MAX_FRAME_BYTES), 4400, "bad_frame_header")
    refused(lambda: mm.read_camera_frame(b"JUNK" + good[4:], MAX_FRAME_BYTES), 4400)
    refused(lambda: mm.read_camera_frame(good[:4] + b"\x02" + good[5:], MAX_FRAME_BYTES), 4406)
    refused(lambda: mm.read_camera_frame(good[:5] + b"\x03" + good[6:], MAX_FRAME_BYTES), 4400)
    refused(lambda: mm.read_camera_frame(good[:6] + b"\x01\x00" + good[8:], MAX_FRAME_BYTES), 4400)
    refused(lambda: mm.read_camera_frame(good + b"!", MAX_FRAME_BYTES), 4400)  # length mismatch
    refused(lambda: mm.read_camera_frame(good[:-1], MAX_FRAME_BYTES), 4400)
    nan = mm.camera_frame(1, 1, float("nan"), b"x")
    refused(lambda: mm.read_camera_frame(nan, MAX_FRAME_BYTES), 4400)
    short_marks = mm.camera_frame(mm.KIND_LANDMARKS, 1, 0.0, b"\x00" * 1195)
    refused(lambda: mm.read_camera_frame(short_marks, MAX_FRAME_BYTES), 4400)
    # a header claiming 20 MB with 20 MB present is too big (1009) before the payload is read
    big = mm.FRAME_HEADER.pack(b"STMF", 1, 1, 0, 1, 0.0, 20 << 20)
    refused(lambda: mm.read_camera_frame(memoryview(big + bytes(20 << 20)), 4 << 20), 1009)


def test_the_frame_limit_is_the_live_pipeline_limit():
    assert mm.MAX_FRAME_BYTES == MAX_FRAME_BYTES


# --- STMR -------------------------------------------------------------------------------------


def test_result_frame_layout_and_read_back_with_vertex_streams():
    rng = np.random.default_rng(1)
    quats = rng.normal(size=(22, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    root = np.array([0.01, -0.2, 0.3])
    positions = [rng.random((50, 3)), rng.random((80, 3))]
    streams = [VertexStreamEncoder(s).encode(p) for s, p in enumerate(positions)]
    info = {"timings_ms": {"total": 12.5}, "quality": {"cloth_level": 1}, "dropped_frames": 2}
    data = mm.result_frame(41, 987.25, True, True, root, quats, info, streams)
    text = mm.info_json(info)
    assert data[:4] == b"STMR" and data[4] == 1 and data[5] == 0b11
    assert struct.unpack_from("<H", data, 6)[0] == 22
    assert struct.unpack_from("<I", data, 8)[0] == 41
    assert struct.unpack_from("<d", data, 12)[0] == 987.25
    assert struct.unpack_from("<I", data, 20)[0] == len(text)
    assert struct.unpack_from("<HH", data, 24) == (2, 0)
    np.testing.assert_array_equal(struct.unpack_from("<3f", data, 28), root.astype(np.float32))
    np.testing.assert_array_equal(
        np.frombuffer(data[40 : 40 + 16 * 22], "<f4").reshape(22, 4), quats.astype(np.float32)
    )
    at = 40 + 16 * 22
    assert json.loads(data[at : at + len(text)]) == info
    at += len(text)
    assert struct.unpack_from("<I", data, at)[0] == len(streams[0])
    frame = mm.read_result_frame(data)
    assert (frame.frame_id, frame.capture_t_ms, frame.tracked, frame.rate_limited) == (
        41,
        987.25,
        True,
        True,
    )
    assert frame.info == info and frame.streams == streams
    decoder = VertexStreamDecoder()
    for s, stream in enumerate(frame.streams):
        assert mm.is_key_stream(stream)
        np.testing.assert_allclose(decoder.decode(stream).positions_m, positions[s], atol=0.00087)
    untracked = mm.read_result_frame(mm.result_frame(1, 0.0, False, False, root, quats, b"{}", []))
    assert not untracked.tracked and not untracked.rate_limited and untracked.streams == []


def test_a_truncated_result_frame_is_refused():
    root, quats = np.zeros(3), np.tile([0.0, 0.0, 0.0, 1.0], (22, 1))
    stream = VertexStreamEncoder(0).encode(np.zeros((10, 3)))
    data = mm.result_frame(1, 0.0, True, False, root, quats, {"a": 1}, [stream])
    for cut in (10, 100, len(data) - 1):
        with pytest.raises(SpatialTwinError, match=r"STMR|past|left|shorter"):
            mm.read_result_frame(data[:cut])


# --- text messages ----------------------------------------------------------------------------


def test_text_must_be_one_strict_json_object_within_the_limit():
    assert mm.parse_text(b'{"type": "ping", "t_ms": 1}') == {"type": "ping", "t_ms": 1}
    refused(lambda: mm.parse_text(b'{"type": "ping", "t_ms": NaN}'), 4400, "bad_json")
    refused(lambda: mm.parse_text(b'{"type": "ping", "t_ms": Infinity}'), 4400, "bad_json")
    refused(lambda: mm.parse_text(b"\xff\xfe"), 4400, "bad_json")
    refused(lambda: mm.parse_text(b"[1, 2]"), 4400, "bad_message")
    refused(lambda: mm.parse_text(b'{"t_ms": 1}'), 4400, "bad_message")
    refused(lambda: mm.parse_text(b'{"type": 5}'), 4400, "bad_message")
    refused(lambda: mm.parse_text(b"[" * 60_000), 4400, "bad_json")  # too deep
    too_big = json.dumps({"type": "ping", "pad": "x" * 70_000}).encode()
    refused(lambda: mm.parse_text(too_big), 1009, "message_too_large")


def hello(**fields):
    return {"type": "hello", "version": 1, "token": TOKEN, **fields}


def test_a_hello_for_a_look_and_for_garments_on_the_closest_twin():
    h = mm.check_hello(hello(look="look_1", input="landmarks", model="lite"))
    assert h.wear == mm.WearSpec(look="look_1") and (h.input, h.model) == ("landmarks", "lite")
    assert h.camera_deg is None and h.resume is None
    h = mm.check_hello(
        hello(
            garments=["gar_a", "gar_b"],
            twin="closest",
            height_m=1.64,
            camera={"pitch_deg": -8, "roll_deg": 1.5},
        )
    )
    assert h.wear == mm.WearSpec(garments=("gar_a", "gar_b"), twin="closest", height_m=1.64)
    assert h.camera_deg == (-8.0, 1.5) and (h.input, h.model) == ("frames", "full")
    h = mm.check_hello(hello(resume={"session": "ms_" + "0" * 24, "key": "k-_9"}))
    assert h.wear is None and h.resume == ("ms_" + "0" * 24, "k-_9")


def test_a_hello_of_another_version_is_4406_whatever_else_it_holds():
    refused(lambda: mm.check_hello(hello(version=2, future_field=True)), 4406)
    refused(lambda: mm.check_hello(hello(version=True, look="l")), 4400)
    refused(lambda: mm.check_hello(hello(version="1", look="l")), 4400)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"look": "l", "colour": "red"}, "colour"),
        ({}, "look"),
        ({"look": "l", "garments": ["g"]}, "garments"),
        ({"garments": ["g"]}, "twin"),
        ({"garments": ["g"], "twin": "closest"}, "height_m"),
        ({"garments": ["g"], "twin": "closest", "height_m": 3.0}, "height_m"),
        ({"garments": ["g"], "twin": "closest", "height_m": True}, "height_m"),
        ({"garments": ["g"], "twin": "twn_1", "height_m": 1.7}, "height_m"),
        ({"garments": [], "twin": "twn_1"}, "garments"),
        ({"garments": ["g"] * 2, "twin": "twn_1"}, "garments"),
        ({"garments": ["a", "b", "c", "d", "e"], "twin": "twn_1"}, "garments"),
        ({"garments": ["../etc"], "twin": "twn_1"}, "garments"),
        ({"look": "l", "height_m": 1.7}, "height_m"),
        ({"look": 5}, "look"),
        ({"look": "l", "input": "video"}, "input"),
        ({"look": "l", "model": "huge"}, "model"),
        ({"look": "l", "camera": {"pitch_deg": 50, "roll_deg": 0}}, "camera.pitch_deg"),
        ({"look": "l", "camera": {"pitch_deg": 5}}, "camera"),
        ({"look": "l", "resume": {"session": "ms_1"}}, "resume"),
    ],
)
def test_a_bad_hello_is_4400_naming_the_field(fields, field):
    exc = refused(lambda: mm.check_hello(hello(**fields)), 4400)
    assert exc.detail["field"] == field
    assert field in exc.close_reason and len(exc.close_reason.encode()) <= 123


def test_control_messages_of_a_mirror_and_of_a_watcher():
    check = mm.check_client_message
    assert check({"type": "key_frame"}).type == "key_frame"
    assert check({"type": "ping", "t_ms": 12.5}).t_ms == 12.5
    assert check({"type": "switch", "look": "look_2"}).wear == mm.WearSpec(look="look_2")
    assert check({"type": "switch", "garments": ["g"]}).wear == mm.WearSpec(garments=("g",))
    refused(lambda: check({"type": "switch", "garments": ["g"], "twin": "twn_1"}), 4400)
    refused(lambda: check({"type": "switch"}), 4400)
    refused(lambda: check({"type": "bye", "now": True}), 4400, "unknown_field")
    refused(lambda: check({"type": "ping"}), 4400)
    refused(lambda: check({"type": "hello", "version": 1}), 4400, "unknown_type")
    assert check({"type": "bye"}, watcher=True).type == "bye"
    refused(lambda: check({"type": "share"}, watcher=True), 4400, "unknown_type")
    refused(lambda: check({"type": "key_frame"}, watcher=True), 4400, "unknown_type")


def test_close_reasons_fit_a_close_frame():
    assert mm.close_reason("é" * 100) == "é" * 61  # 122 bytes: whole characters only
