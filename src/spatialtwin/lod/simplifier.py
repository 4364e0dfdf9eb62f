"""Attribute-aware simplification with meshoptimizer 1.x (WASM build from npm) or PyPI's binding.

Why two backends: the PyPI binding (`meshoptimizer==0.2.30a0`) wraps an older C core without
meshoptimizer's Regularize mode, which keeps triangles well shaped, and that matters for skinned
meshes: long slivers bend badly at elbows and knees. The npm `meshoptimizer` package ships the
current core compiled to WASM (no native build), so one short-lived `node` process simplifies a
whole batch of meshes and levels. Both run the same algorithm family (quadric error with
attribute metrics and seam preservation), so the PyPI binding is the fallback when node or
the npm package is missing; `backend_name()` says which one ran.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from spatialtwin.errors import SpatialTwinError

PROJECT_ROOT = Path(__file__).resolve().parents[3]
NPM_MESHOPTIMIZER = PROJECT_ROOT / "node_modules" / "meshoptimizer"

# Reads jobs (JSON header + packed arrays) on stdin, answers with the same framing on stdout.
_WORKER_JS = r"""
import { MeshoptSimplifier as S } from 'meshoptimizer/simplifier';
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const input = Buffer.concat(chunks);
const hlen = input.readUInt32LE(0);
const header = JSON.parse(input.subarray(4, 4 + hlen).toString());
const base = 4 + hlen;
const view = (T, [off, len]) => {
  const copy = new Uint8Array(len);
  copy.set(input.subarray(base + off, base + off + len));
  return new T(copy.buffer);
};
await S.ready;
const results = [];
const out = [];
let offset = 0;
for (const job of header.jobs) {
  const indices = view(Uint32Array, job.indices);
  const positions = view(Float32Array, job.positions);
  const attrs = job.stride > 0 ? view(Float32Array, job.attributes) : new Float32Array(0);
  const lock = job.lock ? view(Uint8Array, job.lock) : null;
  const [res, err] = job.stride > 0
    ? S.simplifyWithAttributes(indices, positions, 3, attrs, job.stride, job.weights, lock,
        job.target, job.error, job.flags)
    : S.simplify(indices, positions, 3, job.target, job.error, job.flags);
  const bytes = new Uint8Array(res.buffer, res.byteOffset, res.byteLength);
  results.push({ offset, length: bytes.length, error: err });
  out.push(Buffer.from(bytes));
  offset += bytes.length;
}
const head = Buffer.from(JSON.stringify({ results, scale: 0 }));
const len = Buffer.alloc(4);
len.writeUInt32LE(head.length, 0);
process.stdout.write(Buffer.concat([len, head, ...out]));
"""


@dataclass
class SimplifyJob:
    """One mesh to one triangle target; `attributes` (N, A) are weighted by `weights`."""

    faces: NDArray[np.int64]
    positions: NDArray[np.float64]
    target_triangles: int
    attributes: NDArray[np.float64] | None = None
    weights: list[float] = field(default_factory=list)
    lock: NDArray[np.bool_] | None = None
    target_error: float = 1.0
    regularize: bool | Literal["light"] = True  # meshoptimizer's Regularize / RegularizeLight


@dataclass
class SimplifyResult:
    faces: NDArray[np.int64]
    relative_error: float  # meshoptimizer's error, relative to the mesh extent


def backend_name() -> str:
    return "meshoptimizer-wasm" if _wasm_available() else "meshoptimizer-pypi"


def _wasm_available() -> bool:
    return shutil.which("node") is not None and (NPM_MESHOPTIMIZER / "package.json").is_file()


def simplify_batch(jobs: list[SimplifyJob]) -> list[SimplifyResult]:
    """Simplify every job; one node process for the whole batch when WASM is available."""
    if not jobs:
        return []
    if _wasm_available():
        return _simplify_wasm(jobs)
    return [_simplify_pypi(job) for job in jobs]


def _job_arrays(job: SimplifyJob) -> tuple[bytes, bytes, bytes, bytes | None, int]:
    idx = np.ascontiguousarray(job.faces, dtype=np.uint32).tobytes()
    pos = np.ascontiguousarray(job.positions, dtype=np.float32).tobytes()
    stride = 0 if job.attributes is None else int(job.attributes.shape[1])
    attrs = (
        b""
        if job.attributes is None
        else np.ascontiguousarray(job.attributes, np.float32).tobytes()
    )
    lock = None if job.lock is None else np.ascontiguousarray(job.lock, dtype=np.uint8).tobytes()
    return idx, pos, attrs, lock, stride


def _simplify_wasm(jobs: list[SimplifyJob]) -> list[SimplifyResult]:
    blob = bytearray()
    header_jobs = []

    def put(data: bytes) -> list[int]:
        while len(blob) % 4:
            blob.append(0)
        off = len(blob)
        blob.extend(data)
        return [off, len(data)]

    for job in jobs:
        idx, pos, attrs, lock, stride = _job_arrays(job)
        flags = {"light": ["RegularizeLight"], True: ["Regularize"]}.get(job.regularize, [])
        header_jobs.append(
            {
                "indices": put(idx),
                "positions": put(pos),
                "attributes": put(attrs) if stride else None,
                "stride": stride,
                "weights": [float(w) for w in job.weights],
                "lock": put(lock) if lock is not None else None,
                "target": int(min(job.target_triangles, len(job.faces))) * 3,
                "error": float(job.target_error),
                "flags": flags,
            }
        )
    head = json.dumps({"jobs": header_jobs}).encode()
    payload = struct.pack("<I", len(head)) + head + bytes(blob)
    proc = subprocess.run(
        ["node", "--input-type=module", "-e", _WORKER_JS],
        input=payload,
        capture_output=True,
        cwd=PROJECT_ROOT,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"meshoptimizer WASM simplifier failed: {proc.stderr.decode()[-2000:]}")
    out = proc.stdout
    hlen = struct.unpack_from("<I", out, 0)[0]
    results = json.loads(out[4 : 4 + hlen])["results"]
    base = 4 + hlen
    done = []
    for r in results:
        idx = np.frombuffer(out, dtype=np.uint32, count=r["length"] // 4, offset=base + r["offset"])
        done.append(SimplifyResult(idx.reshape(-1, 3).astype(np.int64), float(r["error"])))
    return done


def _simplify_pypi(job: SimplifyJob) -> SimplifyResult:
    import meshoptimizer as mo

    idx = np.ascontiguousarray(job.faces, dtype=np.uint32).ravel()
    pos = np.ascontiguousarray(job.positions, dtype=np.float32)
    dest = np.zeros_like(idx)
    err = np.zeros(1, dtype=np.float32)
    target = int(min(job.target_triangles, len(job.faces))) * 3
    if job.attributes is None:
        n = mo.simplify(
            dest,
            idx,
            pos,
            target_index_count=target,
            target_error=job.target_error,
            result_error=err,
        )
    else:
        attrs = np.ascontiguousarray(job.attributes, dtype=np.float32)
        lock = None if job.lock is None else np.ascontiguousarray(job.lock, dtype=np.uint8)
        n = mo.simplify_with_attributes(
            dest,
            idx,
            pos,
            attrs,
            np.asarray(job.weights, dtype=np.float32),
            vertex_lock=lock,
            target_index_count=target,
            target_error=job.target_error,
            result_error=err,
        )
    return SimplifyResult(dest[:n].reshape(-1, 3).astype(np.int64), float(err[0]))


def check_faces(faces: NDArray[np.int64], vertex_count: int, name: str) -> None:
    if faces.size == 0 or faces.min() < 0 or faces.max() >= vertex_count:
        raise SpatialTwinError(
            "invalid_mesh",
            f"mesh {name!r} has no triangles or indexes missing vertices",
            {"mesh": name, "vertices": vertex_count},
            status=422,
        )
