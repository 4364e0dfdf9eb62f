"""EXT_meshopt_compression: encoding buffer views and decoding whole GLBs.

Encoding uses the PyPI meshoptimizer binding's vertex codec (format version 0, the one the
EXT_meshopt_compression specification defines) and index codec (version 1). `decode_view`
decodes one view whose extension fields the caller has checked (`glb_reader` does, against
the bytes present); it serves reading any compressed GLB (gltfpack's, ours) into arrays and
writing a plain copy of a level for the Khronos validator (`level_glb.decode_meshopt_glb`).
"""

from __future__ import annotations

import json
import struct
from typing import Any

import meshoptimizer as mo
import numpy as np
import pygltflib as g
from numpy.typing import NDArray

EXT = "EXT_meshopt_compression"
KHR_EXT = "KHR_meshopt_compression"
MODE_ATTRIBUTES = "ATTRIBUTES"
MODE_TRIANGLES = "TRIANGLES"
MODE_INDICES = "INDICES"


def encode_attributes(rows: NDArray[Any]) -> bytes:
    """Compress (count, stride) bytes-per-vertex data; stride must be a multiple of 4."""
    raw = np.ascontiguousarray(rows).view(np.uint8).reshape(len(rows), -1)
    if raw.shape[1] % 4:
        raise ValueError("meshopt vertex streams need a stride that is a multiple of 4")
    mo.encode_vertex_version(0)
    return bytes(mo.encode_vertex_buffer(raw, len(raw), raw.shape[1]))


def encode_filter_oct(normals: NDArray[np.floating]) -> NDArray[np.int8]:
    """Unit vectors as the spec's OCTAHEDRAL filter input: (N, 4) bytes [u, v, 127, 0].

    The decoder reconstructs z = 1 - |u| - |v| (folded for the lower hemisphere) and
    renormalises, which keeps 8-bit normals far more accurate than x, y, z bytes and leaves a
    constant third byte the vertex codec compresses to nearly nothing.
    """
    n = np.asarray(normals, dtype=np.float64)
    n = n / np.maximum(np.abs(n).sum(axis=1, keepdims=True), 1e-20)
    x, y, z = n[:, 0], n[:, 1], n[:, 2]
    sx = np.where(x >= 0, 1.0, -1.0)
    sy = np.where(y >= 0, 1.0, -1.0)
    u = np.where(z >= 0, x, (1 - np.abs(y)) * sx)
    v = np.where(z >= 0, y, (1 - np.abs(x)) * sy)
    out = np.zeros((len(n), 4), dtype=np.int8)
    out[:, 0] = np.clip(np.round(u * 127), -127, 127)
    out[:, 1] = np.clip(np.round(v * 127), -127, 127)
    out[:, 2] = 127
    return out


def encode_triangles(indices: NDArray[np.integer], vertex_count: int) -> bytes:
    mo.encode_index_version(1)
    flat = np.ascontiguousarray(indices, dtype=np.uint32).ravel()
    return bytes(mo.encode_index_buffer(flat, len(flat), vertex_count))


def pack_glb(doc: g.GLTF2, binary: bytes) -> bytes:
    """A GLB container: the JSON chunk and `binary` as buffer 0.

    pygltflib's own GLB writer drops the binary chunk when another buffer has an external uri
    (our uncompressed fallback), so the two chunks are framed here as the glTF spec lays out.
    """
    text = json.dumps(
        json.loads(doc.to_json(separators=(",", ":"))), separators=(",", ":")
    ).encode()
    text += b" " * (-len(text) % 4)
    body = bytes(binary) + b"\0" * (-len(binary) % 4)
    total = 12 + 8 + len(text) + (8 + len(body) if body else 0)
    out = bytearray(struct.pack("<4sII", b"glTF", 2, total))
    out += struct.pack("<I4s", len(text), b"JSON") + text
    if body:
        out += struct.pack("<I4s", len(body), b"BIN\0") + body
    return bytes(out)


def decode_view(ext: dict[str, Any], source: bytes) -> bytes:
    """The uncompressed bytes of one compressed buffer view."""
    count, stride = int(ext["count"]), int(ext["byteStride"])
    start = int(ext.get("byteOffset", 0))
    data = np.frombuffer(source, dtype=np.uint8, count=int(ext["byteLength"]), offset=start)
    mode = ext.get("mode", MODE_ATTRIBUTES)
    if mode == MODE_ATTRIBUTES:
        # The binding sizes its output by `dtype` items, so ask for one item per vertex.
        out = mo.decode_vertex_buffer(
            count, stride, data.tobytes(), dtype=np.dtype((np.void, stride))
        )
        out = np.ascontiguousarray(out).view(np.uint8).reshape(-1)
        flt = ext.get("filter", "NONE")
        if flt == "OCTAHEDRAL":
            out = mo.decode_filter_oct(out.copy(), count, stride)
        elif flt == "QUATERNION":
            out = mo.decode_filter_quat(out.copy(), count, stride)
        elif flt == "EXPONENTIAL":
            out = mo.decode_filter_exp(out.copy(), count, stride)
        elif flt not in ("NONE", None):
            raise ValueError(f"unknown meshopt filter {flt}")
        return np.ascontiguousarray(out).view(np.uint8).tobytes()[: count * stride]
    dtype = np.uint16 if stride == 2 else np.uint32
    # The binding always decodes into uint32 items, so decode 4-byte indices and narrow after.
    if mode == MODE_TRIANGLES:
        idx = mo.decode_index_buffer(count, 4, data.tobytes())
    else:
        idx = mo.decode_index_sequence(count, 4, data.tobytes())
    return np.asarray(idx).astype(dtype).tobytes()
