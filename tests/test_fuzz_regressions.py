"""Inputs the fuzz tests found that crashed a parser with something other than the project's
error, each cut down to the edit that did it and replayed here, with the refusal it now gets.

Each test starts from the real file the fuzzer started from (../shared/data) and applies the
one field or line edit of the found input, so the case reads as what a broken exporter or an
attacker would send.
"""

from __future__ import annotations

import io
import json
import math
import struct
import zipfile
from typing import Any

import numpy as np
import pytest

from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.archive import read_zip
from spatialtwin.gltf.bvh import parse_bvh
from spatialtwin.gltf.garment_io import read_garment_file
from spatialtwin.gltf.glb_reader import parse_glb
from spatialtwin.gltf.makehuman import (
    HM08_VERTEX_COUNT,
    obj_vertex_positions,
    read_mhskel,
    read_mhw,
)
from spatialtwin.gltf.mirror_messages import read_result_frame, result_frame
from spatialtwin.gltf.vertex_stream import VertexStreamDecoder, VertexStreamEncoder
from tests.conftest import shared
from tests.fuzz_strategies import pack_glb, split_glb


def cesium_with(edit: Any) -> bytes:
    """CesiumMan.glb with `edit(gltf_json)` applied to its JSON chunk."""
    doc, binary = split_glb(shared("bodies", "CesiumMan.glb").read_bytes())
    edit(doc)
    return pack_glb(json.dumps(doc).encode(), binary)


def refusal(call: Any) -> SpatialTwinError:
    with pytest.raises(SpatialTwinError) as caught:
        call()
    assert 400 <= caught.value.status < 500
    return caught.value


# ---------------------------------------------------------------- glTF


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["accessors"][0].update(componentType=[5123]),
        lambda d: d["accessors"][0].update(type={"SCALAR": 1}),
        lambda d: d.update(extensionsRequired=[["KHR_mesh_quantization"]]),
    ],
    ids=["componentType-a-list", "type-an-object", "extensionsRequired-a-list-in-a-list"],
)
def test_a_glb_field_of_an_unhashable_type_is_refused_not_a_type_error(edit) -> None:
    """Found as `TypeError: unhashable type: 'list'` (a list looked up in the reader's tables)."""
    data = cesium_with(edit)
    error = refusal(lambda: parse_glb(data, "cesium.glb").scene())
    assert error.code in ("corrupt_file", "unsupported_format")
    assert error.detail["filename"] == "cesium.glb"


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["nodes"][3]["children"].append(0),
        lambda d: d["nodes"][2].update(children=[2]),
    ],
    ids=["joint-parent-of-the-root", "mesh-node-its-own-child"],
)
def test_a_garment_glb_with_a_node_cycle_is_refused_before_trimesh_loops(edit) -> None:
    """Found as `ValueError: Iteration limit exceeded!` from trimesh's scene graph: garment
    ingest checked the accessors but not the node graph before handing the file on."""
    data = cesium_with(edit)
    error = refusal(lambda: read_garment_file(data, "cesium.glb"))
    assert error.code == "corrupt_file" and error.status == 422
    assert "node" in error.message


# ---------------------------------------------------------------- BVH


def standing_bvh() -> str:
    return shared("motion", "standing01.bvh").read_text(encoding="ascii")


ROOT_LINES = "HIERARCHY\nROOT root\n{\n\tOFFSET 0.000000 0.639400 0.631400\n"


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t.replace(ROOT_LINES, "HIERARCHY\n{\n", 1),  # CHANNELS in no joint
        lambda t: t.replace("OFFSET 0.000000 0.639400 0.631400", "OFFSET 0.0 0.6394", 1),
        lambda t: t.rstrip("\n") + " 0.5\n",  # the last motion line one value longer
        lambda t: t.replace("Frame Time: 0.041667", "Frame Time: nan"),
        lambda t: t.replace("OFFSET 0.000000 0.639400 0.631400", "OFFSET 0 nan 0", 1),
    ],
    ids=[
        "brace-opens-nothing",
        "offset-of-two-numbers",
        "ragged-motion",
        "nan-frame-time",
        "nan-offset",
    ],
)
def test_a_malformed_bvh_is_bad_bvh_not_an_index_or_value_error(edit) -> None:
    """Found as `IndexError: list assignment index out of range` ('{' before any ROOT, then
    CHANNELS) and `ValueError: ... inhomogeneous shape` (an OFFSET of two numbers, stacked
    with the others at the end); NaN frame times and offsets passed as clips."""
    text = edit(standing_bvh())
    assert text != standing_bvh()
    error = refusal(lambda: parse_bvh(text))
    assert error.code == "bad_bvh"


def test_the_real_bvh_clips_still_read() -> None:
    clip = parse_bvh(standing_bvh())
    assert clip.values.shape == (1, sum(len(c) for c in clip.channels))
    assert clip.frame_time_s == pytest.approx(0.041667)


# ---------------------------------------------------------------- MakeHuman skeleton, weights


def mhw_with(edit: Any) -> bytes:
    doc = json.loads(shared("bodies", "default_weights.mhw").read_bytes())
    first = next(iter(doc["weights"]))
    edit(doc["weights"], first)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "data",
    [
        lambda: mhw_with(lambda w, b: w.update({b: [[1, {"x": 1}]]})),
        lambda: mhw_with(lambda w, b: w.update({b: [[1, 0.5], [2]]})),
        lambda: b'{"weights": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
    ids=["an-object-for-a-weight", "a-ragged-pair", "nested-past-the-stack"],
)
def test_a_malformed_mhw_is_corrupt_file_not_a_type_value_or_recursion_error(data) -> None:
    """Found as `TypeError: float() argument must be ... not 'dict'`, `ValueError: ...
    inhomogeneous shape` and `RecursionError` from `read_mhw` on default_weights.mhw."""
    raw = data()
    bones = list(json.loads(shared("bodies", "default_weights.mhw").read_bytes())["weights"])
    error = refusal(lambda: read_mhw(raw, bones, HM08_VERTEX_COUNT))
    assert error.code == "corrupt_file"


def mhskel_with(edit: Any) -> bytes:
    doc = json.loads(shared("bodies", "default.mhskel").read_bytes())
    edit(doc)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["bones"].update(root=[1, 2]),
        lambda d: d["bones"]["root"].update(head=["a"]),
        lambda d: d["bones"]["spine05"].update(parent={"x": 1}),
        lambda d: d["joints"].update({d["bones"]["root"]["head"]: [1.5, "x"]}),
    ],
    ids=["a-bone-not-an-object", "a-list-for-a-head", "an-object-for-a-parent", "bad-indices"],
)
def test_a_malformed_mhskel_is_corrupt_file(edit) -> None:
    """A bone that is not an object, or a head or parent of the wrong JSON type, was an
    AttributeError or TypeError in `read_mhskel` (the fuzz test's field mutations)."""
    raw = mhskel_with(edit)
    base = obj_vertex_positions(shared("bodies", "base.obj").read_bytes())
    error = refusal(lambda: read_mhskel(raw, base))
    assert error.code == "corrupt_file"


def test_the_real_makehuman_skeleton_and_weights_still_read() -> None:
    base = obj_vertex_positions(shared("bodies", "base.obj").read_bytes())
    rig = read_mhskel(shared("bodies", "default.mhskel").read_bytes(), base)
    weights = read_mhw(
        shared("bodies", "default_weights.mhw").read_bytes(), rig.bone_names, len(base)
    )
    assert len(rig.bone_names) == 163 and rig.parents[0] == -1
    assert weights.shape == (19158, 163)
    assert np.allclose(weights.sum(axis=1)[weights.sum(axis=1) > 0], 1.0)


# ---------------------------------------------------------------- mirror protocol


def outfit_stream_frames() -> list[bytes]:
    """Two vertex-stream frames (key, delta) of a real MakeHuman outfit, in metres."""
    rows = [
        ln.split()[1:4]
        for ln in shared("garments", "female_sportsuit01.obj").read_bytes().splitlines()
        if ln.startswith(b"v ")
    ]
    rest_m = np.asarray(rows, dtype=np.float64) * 0.1  # MakeHuman's decimetres
    encoder = VertexStreamEncoder(stream=1)
    return [encoder.encode(rest_m), encoder.encode(rest_m + np.array([0.0, 0.002, 0.0]))]


@pytest.mark.parametrize("step", [math.nan, math.inf])
def test_a_non_finite_vertex_stream_step_is_refused_with_a_json_detail(step) -> None:
    """Found as an error whose detail held NaN: `json.dumps(..., allow_nan=False)` of the
    refusal raised ValueError, so the error message itself could not be sent."""
    key = outfit_stream_frames()[0]
    bad = key[:16] + struct.pack("<f", step) + key[20:]
    error = refusal(lambda: VertexStreamDecoder().decode(bad))
    assert error.code == "bad_vertex_stream"
    assert error.detail["step_m"] == str(step)
    json.dumps(error.to_json(), allow_nan=False)


@pytest.mark.parametrize(
    "json_part", [b"", b'{"timings_ms": {"track', "\xe0".encode("latin-1") + b"  ", b"[1, 2]"]
)
def test_a_result_frame_whose_json_part_is_not_an_object_is_bad_result_frame(json_part) -> None:
    """Found as `JSONDecodeError` / `UnicodeDecodeError` from `read_result_frame` (what a
    Python client of the mirror protocol reads every result frame with)."""
    streams = outfit_stream_frames()[:1]
    quats = np.tile([0.0, 0.0, 0.0, 1.0], (55, 1))
    frame = result_frame(9, 1000.0, True, False, [0, 0.9, 0], quats, json_part, streams)
    error = refusal(lambda: read_result_frame(frame))
    assert error.code == "bad_result_frame"
    good = result_frame(9, 1000.0, True, False, [0, 0.9, 0], quats, {"ok": 1}, streams)
    assert read_result_frame(good).info == {"ok": 1}


# ---------------------------------------------------------------- zip archives


def outfit_zip() -> bytes:
    """A MakeHuman outfit's OBJ and thumbnail, deflated, as a merchandiser would zip them."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "outfit/outfit.obj", shared("garments", "female_sportsuit01.obj").read_bytes()
        )
        archive.writestr(
            "outfit/sportsuit.png", shared("garments", "female_sportsuit01.thumb").read_bytes()
        )
    return buf.getvalue()


def test_a_zip_missing_its_first_byte_is_corrupt_file_not_a_negative_seek() -> None:
    """Found as `ValueError: negative seek value -1`: the central directory sits one byte
    before where its end record says, so zipfile puts the first entry at offset -1."""
    error = refusal(lambda: read_zip(outfit_zip()[1:]))
    assert error.code == "corrupt_file" and error.status == 422


def test_an_encrypted_zip_entry_is_refused_by_name_not_a_runtime_error() -> None:
    """Found as `RuntimeError: ... is encrypted, password required for extraction` (the
    flag bit set in the central directory)."""
    data = bytearray(outfit_zip())
    central = data.find(b"PK\x01\x02")
    data[central + 8] |= 0x1
    error = refusal(lambda: read_zip(bytes(data)))
    assert error.code == "encrypted_archive" and error.status == 422
    assert error.detail == {"entry": "outfit/outfit.obj"}
    assert set(read_zip(outfit_zip())) == {"outfit/outfit.obj", "outfit/sportsuit.png"}


def test_a_zip_entry_whose_deflate_stream_is_broken_is_corrupt_file_not_a_zlib_error() -> None:
    """Found as `zlib.error: Error -3 while decompressing data: invalid block type`: the first
    byte of a deflated entry set so its block type is 3 (reserved)."""
    data = bytearray(outfit_zip())
    name_bytes, extra_bytes = struct.unpack_from("<HH", data, 26)
    data[30 + name_bytes + extra_bytes] = 0xFF  # BFINAL 1, BTYPE 11
    error = refusal(lambda: read_zip(bytes(data)))
    assert error.code == "corrupt_file"
    assert error.detail == {"entry": "outfit/outfit.obj"}


def test_a_zip_entry_with_an_empty_name_is_corrupt_file_not_an_index_error() -> None:
    """Found as `IndexError: string index out of range` in `ZipInfo.is_dir()`: the first
    central directory entry's name length set to 0, its name bytes read as its comment."""
    data = bytearray(outfit_zip())
    central = data.find(b"PK\x01\x02")
    (name_bytes,) = struct.unpack_from("<H", data, central + 28)
    struct.pack_into("<HHH", data, central + 28, 0, 0, name_bytes)
    error = refusal(lambda: read_zip(bytes(data)))
    assert error.code == "corrupt_file" and "without a name" in error.message
