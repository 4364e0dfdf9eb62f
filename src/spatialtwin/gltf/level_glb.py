"""One LOD level as a GLB: KHR_mesh_quantization attributes, optional EXT_meshopt_compression.

Quantisation (why each choice):
- Positions: unsigned 16-bit integers on one grid shared by every mesh of the scene (a uniform
  step, `max_step_m` or finer), so body and garment vertices that touch stay touching and a
  1 mm garment clearance can never collapse; the grid-to-metres transform is folded into the
  inverse bind matrices for skinned meshes (glTF ignores a skinned mesh node's transform) and
  into the node transform otherwise.
- Normals: signed bytes; UVs: unsigned 16-bit normalised when inside [0, 1], else floats.
- Skin: joints as bytes, weights as normalised bytes rounded by largest remainder so every
  vertex's weights sum to exactly 255/255 after quantisation.

With `fallback_uri`, vertex and index views point at an external uncompressed buffer (marked
`fallback: true`) and carry compressed copies inside the GLB, so the extension goes in
`extensionsUsed` only: a loader with a meshopt decoder never fetches the fallback, one without
fetches it and still draws the level. Without it, the GLB is self-contained and uncompressed
(the AR hand-off variant: Scene Viewer cannot decode meshopt).
"""

from __future__ import annotations

import copy
import io
import math
from dataclasses import dataclass
from typing import Any

import meshoptimizer as mo
import numpy as np
import pygltflib as g
from numpy.typing import NDArray
from PIL import Image
from scipy.spatial.transform import Rotation

from spatialtwin.gltf.glb_reader import parse_glb
from spatialtwin.gltf.meshopt_codec import (
    EXT,
    KHR_EXT,
    MODE_ATTRIBUTES,
    MODE_TRIANGLES,
    encode_attributes,
    encode_filter_oct,
    encode_triangles,
    pack_glb,
)
from spatialtwin.lod.scene import LodMesh, LodScene

QUANTIZATION = "KHR_mesh_quantization"
MAX_STEP_M = 0.0002
MIN_POSITION_BITS = 12


@dataclass(frozen=True)
class PositionGrid:
    """q = round((p - origin) / step); p = origin + q * step (metres)."""

    origin_m: NDArray[np.float64]
    step_m: float

    @classmethod
    def for_scene(cls, scene: LodScene, max_step_m: float = MAX_STEP_M) -> PositionGrid:
        lo, hi = scene.bounds_m()
        extent = float((hi - lo).max()) or 1.0
        bits = min(16, max(MIN_POSITION_BITS, math.ceil(math.log2(extent / max_step_m + 1))))
        return cls(lo, extent / (2**bits - 1))

    def quantize(self, p: NDArray[np.float64]) -> NDArray[np.uint16]:
        q = np.round((p - self.origin_m) / self.step_m)
        return np.clip(q, 0, 65535).astype(np.uint16)

    def dequantize_matrix(self) -> NDArray[np.float64]:
        m = np.diag([self.step_m, self.step_m, self.step_m, 1.0])
        m[:3, 3] = self.origin_m
        return m


def quantize_weights(weights: NDArray[np.float64]) -> NDArray[np.uint8]:
    """Byte weights summing to exactly 255 per vertex (largest-remainder rounding)."""
    w = np.clip(np.asarray(weights, dtype=np.float64), 0, None)
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12) * 255.0
    base = np.floor(w)
    short = (255 - base.sum(axis=1)).astype(np.int64)
    order = np.argsort(-(w - base), axis=1, kind="stable")
    ranks = np.argsort(order, axis=1)
    base += ranks < short[:, None]
    return base.astype(np.uint8)


def decode_view_rows(oct_rows: NDArray[np.int8]) -> bytes:
    """What a meshopt decoder makes of OCTAHEDRAL rows: the plain int8 normals."""
    return bytes(
        mo.decode_filter_oct(
            np.ascontiguousarray(oct_rows).view(np.uint8).reshape(-1).copy(), len(oct_rows), 4
        )
        .view(np.uint8)
        .tobytes()
    )


def quantize_normals(n: NDArray[np.float64]) -> NDArray[np.int8]:
    unit = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return np.clip(np.round(unit * 127.0), -127, 127).astype(np.int8)


def _padded(arr: NDArray[Any], stride: int) -> NDArray[np.uint8]:
    raw = np.ascontiguousarray(arr).view(np.uint8).reshape(len(arr), -1)
    out = np.zeros((len(arr), stride), dtype=np.uint8)
    out[:, : raw.shape[1]] = raw
    return out


def optimized_order(mesh: LodMesh) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(vertex order, remapped faces): vertex-cache then vertex-fetch order, which also makes
    the meshopt codecs compress best."""
    idx = np.ascontiguousarray(mesh.faces, dtype=np.uint32).ravel()
    n = len(mesh.positions_m)
    cache = np.zeros_like(idx)
    mo.optimize_vertex_cache(cache, idx, len(idx), n)
    remap = np.zeros(n, dtype=np.uint32)
    unique = mo.optimize_vertex_fetch_remap(remap, cache, len(cache), n)
    order = np.zeros(unique, dtype=np.int64)
    used = remap != 0xFFFFFFFF
    order[remap[used]] = np.flatnonzero(used)
    return order, remap[cache].astype(np.int64).reshape(-1, 3)


def resized_image(data: bytes, mime: str, max_size: int | None) -> tuple[bytes, str]:
    """The texture scaled so its longer side is at most `max_size` pixels."""
    if max_size is None:
        return data, mime
    img = Image.open(io.BytesIO(data))
    if max(img.size) <= max_size:
        return data, mime
    scale = max_size / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    out = io.BytesIO()
    resized = img.resize(size, Image.Resampling.LANCZOS)
    if mime == "image/jpeg":
        resized.convert("RGB").save(out, format="JPEG", quality=85)
    else:
        resized.save(out, format="PNG", optimize=True)
    return out.getvalue(), mime


@dataclass
class LevelFiles:
    glb: bytes
    fallback: bytes | None  # uncompressed vertex/index data for decoder-less clients


class _Writer:
    def __init__(self, compress: bool, fallback_uri: str | None) -> None:
        self.doc = g.GLTF2(asset=g.Asset(version="2.0", generator="SpatialTwin LOD"))
        self.compress = compress
        self.bin = bytearray()
        self.fallback = bytearray()
        self.doc.buffers = [g.Buffer(byteLength=0)]
        if compress:
            self.doc.buffers.append(
                g.Buffer(byteLength=0, uri=fallback_uri, extensions={EXT: {"fallback": True}})
            )

    @staticmethod
    def _append(buf: bytearray, data: bytes) -> int:
        while len(buf) % 4:
            buf.append(0)
        off = len(buf)
        buf.extend(data)
        return off

    def plain_view(self, data: bytes, target: int | None = None) -> int:
        off = self._append(self.bin, data)
        self.doc.bufferViews.append(
            g.BufferView(buffer=0, byteOffset=off, byteLength=len(data), target=target)
        )
        return len(self.doc.bufferViews) - 1

    def vertex_view(self, rows: NDArray[np.uint8], filter_name: str | None = None) -> int:
        stride = rows.shape[1]
        data = rows.tobytes()
        if not self.compress:
            view = self.plain_view(data, g.ARRAY_BUFFER)
            self.doc.bufferViews[view].byteStride = stride
            return view
        packed = encode_attributes(rows)
        return self._compressed_view(
            packed, data, stride, MODE_ATTRIBUTES, len(rows), g.ARRAY_BUFFER, filter_name
        )

    def normal_view(self, normals: NDArray[np.float64], plain: NDArray[np.uint8]) -> int:
        """Normals: OCTAHEDRAL-filtered when compressed; the fallback holds the plain bytes
        the filter decodes to, so both paths give the same vectors."""
        if not self.compress:
            return self.vertex_view(plain)
        oct_rows = encode_filter_oct(normals)
        decoded = decode_view_rows(oct_rows)
        packed = encode_attributes(oct_rows.view(np.uint8))
        return self._compressed_view(
            packed, decoded, 4, MODE_ATTRIBUTES, len(oct_rows), g.ARRAY_BUFFER, "OCTAHEDRAL"
        )

    def index_view(self, faces: NDArray[np.int64], vertex_count: int) -> tuple[int, int]:
        dtype = np.uint16 if vertex_count <= 65535 else np.uint32
        flat = np.ascontiguousarray(faces, dtype=dtype).ravel()
        data = flat.tobytes()
        comp = g.UNSIGNED_SHORT if dtype == np.uint16 else g.UNSIGNED_INT
        if not self.compress:
            return self.plain_view(data, g.ELEMENT_ARRAY_BUFFER), comp
        packed = encode_triangles(flat, vertex_count)
        view = self._compressed_view(
            packed, data, flat.itemsize, MODE_TRIANGLES, len(flat), g.ELEMENT_ARRAY_BUFFER
        )
        return view, comp

    def _compressed_view(
        self,
        packed: bytes,
        plain: bytes,
        stride: int,
        mode: str,
        count: int,
        target: int,
        filter_name: str | None = None,
    ) -> int:
        """A view whose compressed copy sits in the GLB and whose plain bytes in the fallback."""
        coff = self._append(self.bin, packed)
        foff = self._append(self.fallback, plain)
        ext: dict[str, Any] = {
            "buffer": 0,
            "byteOffset": coff,
            "byteLength": len(packed),
            "byteStride": stride,
            "mode": mode,
            "count": count,
        }
        if filter_name:
            ext["filter"] = filter_name
        self.doc.bufferViews.append(
            g.BufferView(
                buffer=1,
                byteOffset=foff,
                byteLength=len(plain),
                byteStride=stride if target == g.ARRAY_BUFFER else None,
                target=target,
                extensions={EXT: ext},
            )
        )
        return len(self.doc.bufferViews) - 1

    def accessor(
        self,
        view: int,
        comp: int,
        count: int,
        kind: str,
        *,
        normalized: bool = False,
        lo: list[float] | None = None,
        hi: list[float] | None = None,
    ) -> int:
        self.doc.accessors.append(
            g.Accessor(
                bufferView=view,
                componentType=comp,
                count=count,
                type=kind,
                normalized=normalized or None,
                min=lo,
                max=hi,
            )
        )
        return len(self.doc.accessors) - 1

    def finish(self, extras: dict[str, Any]) -> LevelFiles:
        used = [QUANTIZATION] + ([EXT] if self.compress else [])
        self.doc.extensionsUsed = used
        self.doc.extensionsRequired = [QUANTIZATION]
        self.doc.asset.extras = extras
        while len(self.bin) % 4:
            self.bin.append(0)
        self.doc.buffers[0].byteLength = len(self.bin)
        fallback = None
        if self.compress:
            while len(self.fallback) % 4:
                self.fallback.append(0)
            self.doc.buffers[1].byteLength = len(self.fallback)
            fallback = bytes(self.fallback)
        return LevelFiles(pack_glb(self.doc, bytes(self.bin)), fallback)


def _trs(m: NDArray[np.float64]) -> dict[str, list[float]]:
    t = m[:3, 3]
    scale = np.linalg.norm(m[:3, :3], axis=0)
    rot = m[:3, :3] / np.where(scale > 0, scale, 1.0)
    out: dict[str, list[float]] = {}
    if np.abs(t).max() > 0:
        out["translation"] = [float(x) for x in t]
    q = Rotation.from_matrix(rot).as_quat()
    if not np.allclose(q, [0, 0, 0, 1], atol=1e-9):
        out["rotation"] = [float(x) for x in q]
    if not np.allclose(scale, 1.0, atol=1e-9):
        out["scale"] = [float(x) for x in scale]
    return out


def write_level(
    scene: LodScene,
    grid: PositionGrid,
    *,
    compress: bool,
    fallback_uri: str | None = None,
    texture_max_px: int | None = None,
    extras: dict[str, Any] | None = None,
) -> LevelFiles:
    """Serialise a level; `grid` should be shared by every level of a scene (same bounds)."""
    w = _Writer(compress, fallback_uri if compress else None)
    doc = w.doc
    roots: list[int] = []
    skin_index = None
    if scene.rig is not None and any(m.skinned for m in scene.meshes):
        rig = scene.rig
        first = len(doc.nodes)
        for j, name in enumerate(rig.joint_names):
            doc.nodes.append(g.Node(name=name, **_trs(rig.rest_local[j])))
        for j, p in enumerate(rig.parents):
            if p >= 0:
                doc.nodes[first + p].children.append(first + j)
            else:
                roots.append(first + j)
        ibm = np.linalg.inv(rig.rest_world()) @ grid.dequantize_matrix()
        ibm_view = w.plain_view(ibm.transpose(0, 2, 1).astype(np.float32).tobytes())
        ibm_acc = w.accessor(ibm_view, g.FLOAT, rig.joint_count, g.MAT4)
        doc.skins.append(
            g.Skin(
                name="rig",
                joints=list(range(first, first + rig.joint_count)),
                inverseBindMatrices=ibm_acc,
                skeleton=roots[0],
            )
        )
        skin_index = 0
    for mesh in scene.meshes:
        order, faces = optimized_order(mesh)
        n = len(order)
        q = grid.quantize(mesh.positions_m[order])
        pos_acc = w.accessor(
            w.vertex_view(_padded(q, 8)),
            g.UNSIGNED_SHORT,
            n,
            g.VEC3,
            lo=[float(x) for x in q.min(axis=0)],
            hi=[float(x) for x in q.max(axis=0)],
        )
        attrs = g.Attributes(POSITION=pos_acc)
        nrm = quantize_normals(mesh.normals[order])
        attrs.NORMAL = w.accessor(
            w.normal_view(mesh.normals[order], _padded(nrm, 4)), g.BYTE, n, g.VEC3, normalized=True
        )
        if mesh.uvs is not None and mesh.material.base_color_image is not None:
            uv = mesh.uvs[order]
            if uv.min() >= 0 and uv.max() <= 1:
                quv = np.round(uv * 65535).astype(np.uint16)
                attrs.TEXCOORD_0 = w.accessor(
                    w.vertex_view(_padded(quv, 4)), g.UNSIGNED_SHORT, n, g.VEC2, normalized=True
                )
            else:
                attrs.TEXCOORD_0 = w.accessor(
                    w.vertex_view(_padded(uv.astype(np.float32), 8)), g.FLOAT, n, g.VEC2
                )
        skinned = skin_index is not None and mesh.skinned
        if skinned:
            assert mesh.joints is not None and mesh.weights is not None
            qw = quantize_weights(mesh.weights[order])
            joints = np.where(qw > 0, mesh.joints[order], 0).astype(np.uint8)
            attrs.JOINTS_0 = w.accessor(
                w.vertex_view(_padded(joints, 4)), g.UNSIGNED_BYTE, n, g.VEC4
            )
            attrs.WEIGHTS_0 = w.accessor(
                w.vertex_view(_padded(qw, 4)), g.UNSIGNED_BYTE, n, g.VEC4, normalized=True
            )
        iview, icomp = w.index_view(faces, n)
        indices = w.accessor(iview, icomp, faces.size, g.SCALAR)
        material = _material(w, mesh, texture_max_px)
        doc.meshes.append(
            g.Mesh(
                name=mesh.name,
                primitives=[
                    g.Primitive(
                        attributes=attrs, indices=indices, material=material, mode=g.TRIANGLES
                    )
                ],
            )
        )
        node = g.Node(name=mesh.name, mesh=len(doc.meshes) - 1)
        if skinned:
            node.skin = skin_index
        else:
            node.translation = [float(x) for x in grid.origin_m]
            node.scale = [grid.step_m] * 3
        doc.nodes.append(node)
        roots.insert(0, len(doc.nodes) - 1)
    doc.scenes = [g.Scene(name=scene.name, nodes=roots)]
    doc.scene = 0
    return w.finish(extras or {})


def _material(w: _Writer, mesh: LodMesh, texture_max_px: int | None) -> int:
    mat = mesh.material
    pbr = g.PbrMetallicRoughness(
        baseColorFactor=list(mat.base_color),
        metallicFactor=mat.metallic,
        roughnessFactor=mat.roughness,
    )
    if mat.base_color_image is not None and mesh.uvs is not None:
        data, mime = resized_image(mat.base_color_image, mat.image_mime, texture_max_px)
        view = w.plain_view(data)
        w.doc.images.append(g.Image(bufferView=view, mimeType=mime))
        if not w.doc.samplers:
            w.doc.samplers.append(g.Sampler(magFilter=g.LINEAR, minFilter=g.LINEAR_MIPMAP_LINEAR))
        w.doc.textures.append(g.Texture(sampler=0, source=len(w.doc.images) - 1))
        pbr.baseColorTexture = g.TextureInfo(index=len(w.doc.textures) - 1)
    w.doc.materials.append(
        g.Material(name=mat.name, pbrMetallicRoughness=pbr, doubleSided=mat.double_sided or None)
    )
    return len(w.doc.materials) - 1


def decode_meshopt_glb(glb: bytes) -> bytes:
    """A plain GLB with every compressed view decoded into one buffer and the extension gone.

    The Khronos validator does not look inside meshopt payloads; this copy lets it check what
    a decoder would see. Views are decoded by the one reader, with its checks.
    """
    checked = parse_glb(glb, "level.glb")
    doc = g.GLTF2.load_from_bytes(glb)
    out = bytearray()
    new_views = []
    for i, view in enumerate(doc.bufferViews):
        data = bytes(checked.view_bytes(i))
        while len(out) % 4:
            out.append(0)
        nv = copy.deepcopy(view)
        nv.buffer, nv.byteOffset, nv.byteLength = 0, len(out), len(data)
        nv.extensions = {
            k: v for k, v in (view.extensions or {}).items() if k not in (EXT, KHR_EXT)
        }
        out.extend(data)
        new_views.append(nv)
    while len(out) % 4:
        out.append(0)
    doc.bufferViews = new_views
    doc.buffers = [g.Buffer(byteLength=len(out))]
    doc.extensionsUsed = [e for e in doc.extensionsUsed or [] if e not in (EXT, KHR_EXT)]
    doc.extensionsRequired = [e for e in doc.extensionsRequired or [] if e not in (EXT, KHR_EXT)]
    return pack_glb(doc, bytes(out))
