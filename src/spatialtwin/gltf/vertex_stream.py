"""The live vertex stream: a garment's vertex positions, frame after frame, in a few kilobytes.

A mirror session sends every garment's positions (metres) every frame. Floats as JSON would be
~270 KB a frame for a 10k-vertex garment; this codec sends 12–15 KB (a key frame ~26 KB):

1. **quantise** each coordinate to a grid of `step_m` (1 mm by default: every point within
   √3/2 mm of where it was, under the 1 mm the live figures allow),
2. **predict** from the previous frame: a delta frame carries q(t) − q(t−1) per coordinate, a
   key frame the grid coordinates themselves (the first frame, after `reset`, when the vertex
   count changes, whenever a delta would not fit in 16 bits, and every `key_interval` frames
   if one is set: each receiver has its own encoder over a reliable transport, so by default
   none are repeated); deltas are taken against the previous *quantised* frame, the one the
   decoder holds, so errors never accumulate,
3. **lay out** each vertex as four 16-bit words: the key frame's grid coordinates (uint16) or
   the delta frame's deltas (int16, two's complement), then 0,
4. **meshopt vertex codec** (`meshoptimizer`, vertex format version 1, which meshopt's
   decoders since 0.23 read, three.js's copy included): byte-wise deltas between consecutive
   vertices, bit-packed. Cloth moves as a sheet, so neighbouring vertices' frame deltas are
   nearly equal and most bytes code to a few bits. Vertices should be in a spatially coherent
   order (`coherent_vertex_order`); the stream's order is the order of the mesh the client was
   sent. (Measured on a 10k-vertex skirt on a walking twin: version 1 on plain int16 deltas
   codes to 12–15 KB a frame, version 0 or zigzagged deltas to 15–20 KB.)

Frame layout (little-endian; `HEADER` and `HEADER_BYTES`):

    offset  size  field
    0       4     magic b"STVS"
    4       1     version (1)
    5       1     kind: 0 key frame, 1 delta frame
    6       2     stream: which garment of the session (uint16)
    8       4     sequence: frame number in this stream; a delta applies to sequence − 1
    12      4     vertex_count (uint32, ≤ MAX_VERTICES)
    16      4     step_m (float32): the grid step in metres
    20      12    origin_m (3 × float32): the key frame's grid origin, repeated in deltas
    32      4     payload_bytes (uint32)
    36      …     payload: meshopt vertex buffer of vertex_count × 8 bytes (4 × 16-bit words
                  per vertex: key: uint16 grid x, y, z, 0; delta: int16 Δx, Δy, Δz, 0)

Decoded position = origin_m + q · step_m with q the int32 grid coordinate the decoder keeps.
The JavaScript decoder for pages is `web_client/lib/vertex-stream.js` (same layout).

An encoder is one receiver's: if a frame it made is not delivered (a slow client skipped),
`reset()` it so the next frame is a key frame.

Example:
    enc = VertexStreamEncoder(stream=0)
    dec = VertexStreamDecoder()
    for positions_m in frames:
        data = enc.encode(positions_m)
        assert np.abs(dec.decode(data).positions_m - positions_m).max() <= enc.step_m / 2
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import meshoptimizer as mo
import numpy as np
from numpy.typing import NDArray

from spatialtwin.errors import SpatialTwinError

MAGIC = b"STVS"
VERSION = 1
KEY, DELTA = 0, 1
HEADER = struct.Struct("<4sBBHIIf3fI")
HEADER_BYTES = HEADER.size  # 36
STRIDE = 8  # four 16-bit words per vertex: x, y, z, 0
CODEC_VERSION = 1  # meshopt vertex codec format
MAX_VERTICES = 1_000_000
DEFAULT_STEP_M = 0.001
# Grid coordinates of a key frame are uint16: a garment may span 65 m at 1 mm.
MAX_KEY_SPAN = 65535
MAX_DELTA = 32767


@dataclass(frozen=True)
class StreamFrame:
    """One decoded frame: which stream, its sequence number, key or delta, and positions."""

    stream: int
    sequence: int
    kind: int
    positions_m: NDArray[np.float64]  # (N, 3)


class VertexStreamEncoder:
    """Encodes one garment's positions for one receiver, frame after frame."""

    def __init__(
        self, stream: int = 0, step_m: float = DEFAULT_STEP_M, key_interval: int | None = None
    ) -> None:
        if not 0 <= stream <= 0xFFFF:
            raise ValueError("stream must fit in 16 bits")
        if not (1e-5 <= step_m <= 0.01):
            raise ValueError("step_m must be 0.01 mm .. 10 mm")
        if key_interval is not None and key_interval < 1:
            raise ValueError("key_interval must be ≥ 1 (or None: key frames only when needed)")
        self.stream = stream
        self.step_m = float(np.float32(step_m))
        self.key_interval = key_interval
        self.sequence = 0
        self._grid: NDArray[np.int32] | None = None
        self._origin = np.zeros(3, dtype=np.float32)
        self._since_key = 0

    def reset(self) -> None:
        """Forget the receiver's state: the next frame is a key frame."""
        self._grid = None

    def encode(self, positions_m: NDArray[np.floating]) -> bytes:
        """The next frame of the stream (key or delta) for positions (N, 3) in metres."""
        x = np.asarray(positions_m, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != 3 or not 0 < len(x) <= MAX_VERTICES:
            raise SpatialTwinError(
                "bad_vertex_stream",
                f"positions must be (N, 3) with 0 < N ≤ {MAX_VERTICES}",
                {"shape": list(x.shape)},
            )
        if not np.isfinite(x).all():
            raise SpatialTwinError("bad_vertex_stream", "positions must be finite", None)
        if self._grid is not None and len(self._grid) != len(x):
            self._grid = None  # a new mesh (garment switched): start over
        due = self.key_interval is not None and self._since_key + 1 >= self.key_interval
        key = self._grid is None or due
        grid = None
        if not key:
            grid = np.rint((x - self._origin) / self.step_m).astype(np.int64)
            delta = grid - self._grid
            if np.abs(delta).max() > MAX_DELTA:
                key = True
        if key:
            self._origin = np.floor(x.min(axis=0) / self.step_m).astype(np.float32) * np.float32(
                self.step_m
            )
            grid = np.rint((x - self._origin) / self.step_m).astype(np.int64)
            if grid.min() < 0 or grid.max() > MAX_KEY_SPAN:
                raise SpatialTwinError(
                    "bad_vertex_stream",
                    "positions span more than the key frame's grid holds",
                    {"span_m": float(np.ptp(x, axis=0).max()), "step_m": self.step_m},
                )
            rows = np.zeros((len(x), 4), dtype=np.uint16)
            rows[:, :3] = grid.astype(np.uint16)
            self._since_key = 0
        else:
            rows = np.zeros((len(x), 4), dtype=np.int16)
            rows[:, :3] = (grid - self._grid).astype(np.int16)
            self._since_key += 1
        self._grid = grid.astype(np.int32)
        mo.encode_vertex_version(CODEC_VERSION)
        raw = rows.view(np.uint8).reshape(len(x), STRIDE)
        payload = bytes(mo.encode_vertex_buffer(raw, len(x), STRIDE))
        header = HEADER.pack(
            MAGIC,
            VERSION,
            KEY if key else DELTA,
            self.stream,
            self.sequence,
            len(x),
            self.step_m,
            *(float(c) for c in self._origin),
            len(payload),
        )
        self.sequence = (self.sequence + 1) & 0xFFFFFFFF
        return header + payload


@dataclass(frozen=True)
class FrameHeader:
    """The fixed fields in front of every frame (see the module doc for the layout)."""

    kind: int
    stream: int
    sequence: int
    vertex_count: int
    step_m: float
    origin_m: NDArray[np.float32]  # (3,)
    payload_bytes: int


def read_header(data: bytes) -> FrameHeader:
    """The header fields of one frame, checked against the bytes present (hostile input)."""
    if len(data) < HEADER_BYTES:
        raise SpatialTwinError(
            "bad_vertex_stream", "frame shorter than its header", {"bytes": len(data)}
        )
    magic, version, kind, stream, seq, count, step, ox, oy, oz, size = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION or kind not in (KEY, DELTA):
        raise SpatialTwinError(
            "bad_vertex_stream",
            "not a version-1 SpatialTwin vertex stream frame",
            {"magic": magic.hex(), "version": version, "kind": kind},
        )
    if not 0 < count <= MAX_VERTICES or not (np.isfinite(step) and step > 0):
        raise SpatialTwinError(
            "bad_vertex_stream",
            "bad vertex count or step",
            # The detail goes out as strict JSON: a NaN or infinite step as its name.
            {"count": count, "step_m": step if np.isfinite(step) else str(step)},
        )
    if size != len(data) - HEADER_BYTES:
        raise SpatialTwinError(
            "bad_vertex_stream",
            "payload length does not match the frame",
            {"payload_bytes": size, "present": len(data) - HEADER_BYTES},
        )
    if not np.isfinite([ox, oy, oz]).all():
        raise SpatialTwinError("bad_vertex_stream", "origin must be finite", None)
    return FrameHeader(kind, stream, seq, count, step, np.array([ox, oy, oz], np.float32), size)


class VertexStreamDecoder:
    """Decodes frames of any number of streams (one state per stream id)."""

    def __init__(self) -> None:
        self._state: dict[int, tuple[int, NDArray[np.int32]]] = {}

    def decode(self, data: bytes | bytearray | memoryview) -> StreamFrame:
        data = bytes(data)
        h = read_header(data)
        count, stream, seq = h.vertex_count, h.stream, h.sequence
        try:
            out = mo.decode_vertex_buffer(
                count, STRIDE, data[HEADER_BYTES:], dtype=np.dtype((np.void, STRIDE))
            )
        except Exception as exc:  # the binding raises RuntimeError/ValueError on bad bytes
            raise SpatialTwinError(
                "bad_vertex_stream", "payload is not a meshopt vertex buffer", {"error": str(exc)}
            ) from exc
        words = np.ascontiguousarray(out).tobytes()[: count * STRIDE]
        if len(words) != count * STRIDE:
            raise SpatialTwinError("bad_vertex_stream", "payload decoded short", {"count": count})
        if h.kind == KEY:
            grid = np.frombuffer(words, dtype=np.uint16).reshape(count, 4)[:, :3].astype(np.int32)
        else:
            previous = self._state.get(stream)
            if previous is None or previous[0] != (seq - 1) & 0xFFFFFFFF:
                raise SpatialTwinError(
                    "vertex_stream_gap",
                    "a delta frame without the frame before it; a key frame is needed",
                    {"stream": stream, "sequence": seq},
                )
            if len(previous[1]) != count:
                raise SpatialTwinError(
                    "bad_vertex_stream", "delta frame vertex count changed", {"count": count}
                )
            delta = np.frombuffer(words, dtype=np.int16).reshape(count, 4)[:, :3]
            grid = previous[1] + delta.astype(np.int32)
        self._state[stream] = (seq, grid)
        positions = h.origin_m.astype(np.float64) + grid * np.float64(h.step_m)
        return StreamFrame(stream, seq, h.kind, positions)


def coherent_vertex_order(faces: NDArray[np.integer], vertex_count: int) -> NDArray[np.int64]:
    """A vertex order for the stream in which consecutive vertices are mesh neighbours:
    the order of first use after meshopt's vertex-cache triangle ordering (what
    `optimize_vertex_fetch` does). Returns `order` with `positions[order]` the stream's rows;
    vertices no face uses go last."""
    f = np.ascontiguousarray(faces, dtype=np.uint32).ravel()
    if len(f) == 0 or int(f.max()) >= vertex_count:
        raise SpatialTwinError(
            "bad_garment_mesh", "faces must index the vertices", {"vertices": vertex_count}
        )
    cached = np.empty_like(f)
    mo.optimize_vertex_cache(cached, f, len(f), vertex_count)
    remap = np.empty(vertex_count, dtype=np.uint32)
    mo.optimize_vertex_fetch_remap(remap, cached, len(cached), vertex_count)
    # remap[old] = new (0xFFFFFFFF for unused vertices): invert it, unused ones at the end
    new = remap.astype(np.int64)
    used = new != 0xFFFFFFFF
    order = np.empty(vertex_count, dtype=np.int64)
    order[new[used]] = np.flatnonzero(used)
    order[int(used.sum()) :] = np.flatnonzero(~used)
    return order
