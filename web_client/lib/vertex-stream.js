// Decoder of the live vertex stream (the server's src/spatialtwin/gltf/vertex_stream.py): one
// garment's vertex positions per frame, quantised to a grid, delta-coded against the previous
// frame and meshopt vertex-coded (vertex codec version 1). Same layout as the Python module:
//
//   offset size field
//   0      4    magic "STVS"
//   4      1    version (1)
//   5      1    kind: 0 key frame, 1 delta frame
//   6      2    stream (uint16): which garment of the session
//   8      4    sequence (uint32): a delta applies to sequence - 1
//   12     4    vertex_count (uint32)
//   16     4    step_m (float32)
//   20     12   origin_m (3 x float32)
//   32     4    payload_bytes (uint32)
//   36     ...  meshopt vertex buffer (vertex codec version 1) of vertex_count x 8 bytes:
//               4 x 16-bit words per vertex, key: uint16 grid x, y, z, 0; delta: int16 dx, dy, dz, 0
//
// position = origin_m + q * step_m, q the int32 grid coordinate kept per stream.
//
// The meshopt decoder is passed in (the page imports three's copy,
// 'three/addons/libs/meshopt_decoder.module.js', and awaits its `ready`):
//
//   const streams = new VertexStreamDecoder(MeshoptDecoder);
//   await MeshoptDecoder.ready;
//   const frame = streams.decode(new Uint8Array(message));   // {stream, sequence, kind, positions}
//   geometry.attributes.position.array.set(frame.positions); // Float32Array, x y z per vertex
//
// A delta frame whose predecessor this decoder has not seen throws a VertexStreamError with
// code 'vertex_stream_gap': ask the server for a key frame.

export const MAGIC = 'STVS';
export const VERSION = 1;
export const KEY = 0;
export const DELTA = 1;
export const HEADER_BYTES = 36;
export const STRIDE = 8;
export const MAX_VERTICES = 1000000;

export class VertexStreamError extends Error {
  constructor(code, message, detail = null) {
    super(message);
    this.name = 'VertexStreamError';
    this.code = code;
    this.detail = detail;
  }
}

// The header of one frame, checked against the bytes present.
export function readHeader(bytes) {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength < HEADER_BYTES) {
    throw new VertexStreamError('bad_vertex_stream', 'frame shorter than its header');
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = String.fromCharCode(bytes[0], bytes[1], bytes[2], bytes[3]);
  const header = {
    version: view.getUint8(4),
    kind: view.getUint8(5),
    stream: view.getUint16(6, true),
    sequence: view.getUint32(8, true),
    vertexCount: view.getUint32(12, true),
    stepM: view.getFloat32(16, true),
    originM: [view.getFloat32(20, true), view.getFloat32(24, true), view.getFloat32(28, true)],
    payloadBytes: view.getUint32(32, true),
  };
  if (magic !== MAGIC || header.version !== VERSION || (header.kind !== KEY && header.kind !== DELTA)) {
    throw new VertexStreamError('bad_vertex_stream', 'not a version-1 SpatialTwin vertex stream frame', { magic, version: header.version });
  }
  if (!(header.vertexCount > 0 && header.vertexCount <= MAX_VERTICES) || !(header.stepM > 0)) {
    throw new VertexStreamError('bad_vertex_stream', 'bad vertex count or step', { vertexCount: header.vertexCount });
  }
  if (header.payloadBytes !== bytes.byteLength - HEADER_BYTES) {
    throw new VertexStreamError('bad_vertex_stream', 'payload length does not match the frame', { payloadBytes: header.payloadBytes });
  }
  if (!header.originM.every(Number.isFinite)) {
    throw new VertexStreamError('bad_vertex_stream', 'origin must be finite');
  }
  return header;
}

export class VertexStreamDecoder {
  constructor(meshoptDecoder) {
    this.meshopt = meshoptDecoder;
    this.state = new Map(); // stream -> {sequence, grid: Int32Array(3 n)}
  }

  // Forget a stream (a garment switched, a reconnect): its next frame must be a key frame.
  forget(stream) {
    this.state.delete(stream);
  }

  decode(bytes) {
    const h = readHeader(bytes);
    const n = h.vertexCount;
    const rows = new Uint8Array(n * STRIDE);
    try {
      this.meshopt.decodeVertexBuffer(rows, n, STRIDE, bytes.subarray(HEADER_BYTES));
    } catch (err) {
      throw new VertexStreamError('bad_vertex_stream', 'payload is not a meshopt vertex buffer', { error: String(err) });
    }
    const words = new Uint16Array(rows.buffer, rows.byteOffset, n * 4);
    const deltas = new Int16Array(rows.buffer, rows.byteOffset, n * 4);
    let grid;
    if (h.kind === KEY) {
      grid = new Int32Array(n * 3);
      for (let i = 0; i < n; i += 1) {
        grid[3 * i] = words[4 * i];
        grid[3 * i + 1] = words[4 * i + 1];
        grid[3 * i + 2] = words[4 * i + 2];
      }
    } else {
      const previous = this.state.get(h.stream);
      if (!previous || previous.sequence !== ((h.sequence - 1) >>> 0)) {
        throw new VertexStreamError('vertex_stream_gap', 'a delta frame without the frame before it; a key frame is needed', { stream: h.stream, sequence: h.sequence });
      }
      if (previous.grid.length !== n * 3) {
        throw new VertexStreamError('bad_vertex_stream', 'delta frame vertex count changed', { vertexCount: n });
      }
      grid = previous.grid;
      for (let i = 0; i < n; i += 1) {
        grid[3 * i] += deltas[4 * i];
        grid[3 * i + 1] += deltas[4 * i + 1];
        grid[3 * i + 2] += deltas[4 * i + 2];
      }
    }
    this.state.set(h.stream, { sequence: h.sequence, grid });
    const positions = new Float32Array(n * 3);
    const step = h.stepM;
    const [ox, oy, oz] = h.originM;
    for (let i = 0; i < n; i += 1) {
      positions[3 * i] = ox + grid[3 * i] * step;
      positions[3 * i + 1] = oy + grid[3 * i + 1] * step;
      positions[3 * i + 2] = oz + grid[3 * i + 2] * step;
    }
    return { stream: h.stream, sequence: h.sequence, kind: h.kind, positions };
  }
}
