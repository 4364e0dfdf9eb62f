"""The one glTF 2.0 reader: GLB or embedded .gltf bytes in, world-space triangle primitives out.

Body import (`read_scene`), LOD (`read_glb`) and looks read every glTF file through here, so
they agree on what a file holds and refuse the same bad files. Outside bytes are hostile, so
every size is checked against the bytes actually present *before* anything is allocated:

- the container: magic, version 2, a declared length equal to the bytes present (a truncated
  upload is refused, not read as far as it goes), chunk lengths inside the file;
- the JSON: no NaN/Infinity, every index inside its array, every count and offset an integer
  in range, matrices and TRS finite;
- buffers no longer than their bytes; buffer views inside their buffer; accessors inside their
  view (offset + stride × (count − 1) + element ≤ view length), sparse indices increasing and
  in range, accessors without a view charged to a budget of `ZERO_FILL_PER_BYTE` bytes per
  byte of the file;
- EXT/KHR_meshopt_compression views decoded only when their claimed size is within
  `MESHOPT_MAX_RATIO` of their compressed bytes (the codec cannot do better);
- the node graph a forest: one parent per node, no cycles, no node twice in a scene;
- indices below the vertex count, joints below the skin's joint count.

Quantised attributes (KHR_mesh_quantization) are read as the spec says: normalised integers
scaled to [0, 1] or [−1, 1], the rest dequantised by the node or inverse bind matrices, UVs by
KHR_texture_transform. Skinned primitives are posed by their joints' world transforms (the
bind pose in any sane file), others by their node's; normals go through the inverse transpose
of the same matrix, so a sheared or non-uniformly scaled skin keeps them perpendicular to the
surface.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.meshopt_codec import EXT, KHR_EXT, decode_view
from spatialtwin.lod.scene import LodMaterial

Array = NDArray[np.float64]
Resolver = Callable[[str], "bytes | None"]

GLB_MAGIC = b"glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
# The meshopt vertex codec spends at least 2 bits on 16 bytes (64:1), the index codecs at
# least a byte per triangle or index: no honest payload decodes to more than 64 times its size.
MESHOPT_MAX_RATIO = 64
# Accessors without a buffer view are zeros (or sparse values over zeros) of any claimed
# count: they may make at most this many bytes per byte of the file.
ZERO_FILL_PER_BYTE = 4
MAX_STRIDE = 252
MAX_COUNT = 2**31 - 1

COMPONENT_DTYPES = {
    5120: np.dtype("<i1"),
    5121: np.dtype("<u1"),
    5122: np.dtype("<i2"),
    5123: np.dtype("<u2"),
    5125: np.dtype("<u4"),
    5126: np.dtype("<f4"),
}
TYPE_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
TRIANGLES = 4
# The per-vertex scalars read beside the standard attributes: the fit map a look GLB carries
# (`gltf.look_glb`, `cloth.fit_map`), so levels and AR files made from a look keep it.
SCALAR_ATTRIBUTES = ("_STRAIN", "_EASE")
UNSIGNED_INTEGERS = (5121, 5123, 5125)
# Extensions a file may require that this reader honours (or that only change shading).
SUPPORTED_REQUIRED = {"KHR_mesh_quantization", EXT, KHR_EXT, "KHR_texture_transform"}
_MESHOPT_MODES = {"ATTRIBUTES", "TRIANGLES", "INDICES"}
_MESHOPT_FILTERS = {"NONE", "OCTAHEDRAL", "QUATERNION", "EXPONENTIAL"}


# ---------------------------------------------------------------- what the reader returns


def gltf_material(name: str | None = None) -> LodMaterial:
    """A material with glTF's defaults (white, fully rough, fully metallic, one-sided)."""
    return LodMaterial(
        name=name or "material",
        base_color=(1.0, 1.0, 1.0, 1.0),
        roughness=1.0,
        metallic=1.0,
        double_sided=False,
    )


@dataclass
class GltfPrimitive:
    """One triangle primitive in world space (the file's units).

    `joints` index `GltfRig.nodes`; they and `weights` are set for skinned primitives only.
    """

    mesh_index: int
    primitive_index: int
    mesh_name: str | None
    node_name: str | None
    extras: list[Any]  # the node's and the mesh's `extras`, in that order
    positions: Array
    faces: NDArray[np.int64]
    normals: Array | None
    uvs: Array | None
    joints: NDArray[np.int64] | None
    weights: Array | None
    material: LodMaterial | None  # what looks and LOD draw; body import ignores it
    # Application-specific per-vertex scalars the project writes (the fit map's `_STRAIN`,
    # `_EASE`), by attribute name; other custom attributes are not read.
    scalars: dict[str, Array] = field(default_factory=dict)

    @property
    def skinned(self) -> bool:
        return self.joints is not None


@dataclass
class GltfRig:
    """The union of every skin's joints: names, parents (−1 for roots), world rest matrices."""

    nodes: list[int]
    names: list[str]
    parents: NDArray[np.int64]  # nearest joint ancestor, as an index into `nodes`
    rest_world: NDArray[np.float64]  # (J, 4, 4)


@dataclass
class GltfScene:
    """Every triangle primitive of the default scene, the rig, and the asset's extras."""

    primitives: list[GltfPrimitive]
    rig: GltfRig | None
    asset_extras: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- entry points


def parse_glb(data: bytes, filename: str, resolve: Resolver | None = None) -> GltfDocument:
    """The GLB container checked against the bytes present, and its JSON.

    `resolve` gives the bytes of a buffer's relative uri (a zip's other entries), or None.
    """
    fail = _Refuser(filename)
    if len(data) < 20 or data[:4] != GLB_MAGIC:
        raise fail("is not a GLB file (no 'glTF' magic)")
    version, length = struct.unpack_from("<II", data, 4)
    if version != 2:
        raise fail(f"is glTF version {version}; only version 2 is read", version=version)
    if length != len(data):
        why = "is truncated" if length > len(data) else "has bytes after its end"
        raise fail(
            f"{why}: the header says {length} bytes, the file has {len(data)}",
            declared_bytes=length,
            present_bytes=len(data),
        )
    chunks: list[tuple[int, memoryview]] = []
    offset = 12
    view = memoryview(data)
    while offset < length:
        if offset + 8 > length:
            raise fail("ends inside a chunk header", offset=offset)
        size, kind = struct.unpack_from("<II", data, offset)
        if offset + 8 + size > length:
            raise fail(
                "has a chunk that runs past the end of the file",
                offset=offset,
                chunk_bytes=size,
                present_bytes=length - offset - 8,
            )
        chunks.append((kind, view[offset + 8 : offset + 8 + size]))
        offset += 8 + size  # chunk lengths include their padding
    if not chunks or chunks[0][0] != CHUNK_JSON:
        raise fail("does not start with a JSON chunk")
    binary = chunks[1][1] if len(chunks) > 1 and chunks[1][0] == CHUNK_BIN else None
    gltf = _load_json(bytes(chunks[0][1]), fail)
    return GltfDocument(gltf, binary, len(data), fail, resolve)


def parse_gltf_json(data: bytes, filename: str, resolve: Resolver | None = None) -> GltfDocument:
    """A `.gltf` whose buffers are data URIs or files `resolve` can give (else refused)."""
    fail = _Refuser(filename)
    return GltfDocument(_load_json(data, fail), None, len(data), fail, resolve)


# ---------------------------------------------------------------- checking helpers


class _Refuser:
    """Makes the reader's errors: code, a message naming the file, the offending detail."""

    def __init__(self, filename: str) -> None:
        self.filename = filename

    def __call__(self, why: str, *, code: str = "corrupt_file", status: int = 400, **detail: Any):
        return SpatialTwinError(
            code, f"{self.filename!r} {why}", {"filename": self.filename, **detail}, status=status
        )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _load_json(raw: bytes, fail: _Refuser) -> dict[str, Any]:
    try:
        gltf = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise fail(f"has a JSON part that is not valid JSON: {exc}") from None
    if not isinstance(gltf, dict):
        raise fail("has a JSON part that is not an object")
    version = _obj(gltf.get("asset"), "asset", fail).get("version")
    if not isinstance(version, str) or not version.startswith("2."):
        raise fail(f"declares glTF version {version!r}; only 2.x is read", version=str(version))
    return gltf


def _known(value: Any, table: set[Any] | dict[Any, Any]) -> bool:
    """`value in table` for a JSON value of any type (a list or object is in no table, and
    would raise TypeError as a set or dict key)."""
    return isinstance(value, str | int | float) and value in table


def _obj(value: Any, where: str, fail: _Refuser) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(f"has a {where} that is not a JSON object", where=where)
    return value


def _items(gltf: dict[str, Any], key: str, fail: _Refuser) -> list[dict[str, Any]]:
    value = gltf.get(key, [])
    if not isinstance(value, list):
        raise fail(f"has '{key}' that is not a list", where=key)
    return [_obj(item, f"{key}[{i}]", fail) for i, item in enumerate(value)]


def _int(
    obj: dict[str, Any],
    key: str,
    where: str,
    fail: _Refuser,
    *,
    lo: int = 0,
    hi: int = MAX_COUNT,
    default: int | None = None,
) -> int:
    value = obj.get(key, default)
    if value is None:
        raise fail(f"lacks {where}.{key}", where=f"{where}.{key}")
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise fail(
            f"has {where}.{key} = {value!r}, not an integer in [{lo}, {hi}]",
            where=f"{where}.{key}",
        )
    return value


def _index(obj: dict[str, Any], key: str, where: str, size: int, fail: _Refuser) -> int | None:
    if obj.get(key) is None:
        return None
    if size == 0:
        raise fail(f"has {where}.{key} pointing into an empty list", where=f"{where}.{key}")
    return _int(obj, key, where, fail, hi=size - 1)


def _ref(value: Any, where: str, size: int, fail: _Refuser) -> int:
    """`value` as an index into a list of `size` items."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < size:
        raise fail(f"has {where} = {value!r}, not an index below {size}", where=where)
    return value


def _numbers(value: Any, n: int, where: str, fail: _Refuser) -> list[float]:
    if (
        not isinstance(value, list)
        or len(value) != n
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
        or not np.all(np.isfinite(np.asarray(value, dtype=np.float64)))
    ):
        raise fail(f"has {where} that is not {n} finite numbers", where=where)
    return [float(x) for x in value]


def _data_uri(uri: str, where: str, fail: _Refuser) -> bytes | None:
    """The bytes of a `data:` URI; None for a reference to an external file."""
    if not uri.startswith("data:"):
        return None
    head, sep, payload = uri.partition(",")
    if not sep or not head.endswith(";base64"):
        raise fail(f"has {where} with a data URI that is not base64", where=where)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise fail(f"has {where} with a data URI that is not valid base64", where=where) from None


# ---------------------------------------------------------------- the document


class GltfDocument:
    """A glTF whose buffers, views and accessors are checked as they are first read."""

    def __init__(
        self,
        gltf: dict[str, Any],
        binary: memoryview | None,
        file_bytes: int,
        fail: _Refuser,
        resolve: Resolver | None = None,
    ) -> None:
        self.json = gltf
        self.binary = binary  # the GLB's BIN chunk as it is, padding included
        self.fail = fail
        self._resolve = resolve
        self._zero_budget = ZERO_FILL_PER_BYTE * max(file_bytes, 64)
        self.buffers = _items(gltf, "buffers", fail)
        self.views = _items(gltf, "bufferViews", fail)
        self.accessors = _items(gltf, "accessors", fail)
        self.nodes = _items(gltf, "nodes", fail)
        self.meshes = _items(gltf, "meshes", fail)
        self.skins = _items(gltf, "skins", fail)
        self.materials = _items(gltf, "materials", fail)
        self.textures = _items(gltf, "textures", fail)
        self.images = _items(gltf, "images", fail)
        self.scenes = _items(gltf, "scenes", fail)
        required = gltf.get("extensionsRequired", [])
        if not isinstance(required, list):
            raise fail("has 'extensionsRequired' that is not a list")
        unknown = [
            e
            for e in required
            if not _known(e, SUPPORTED_REQUIRED) and not str(e).startswith("KHR_materials_")
        ]
        if unknown:
            raise fail(
                f"requires {', '.join(map(str, unknown))}, which this reader does not decode",
                code="unsupported_format",
                status=415,
                extensions=[str(e) for e in unknown],
            )
        self._blobs: list[memoryview | None] = [
            self._buffer(i, b, binary) for i, b in enumerate(self.buffers)
        ]
        self._view_cache: dict[int, memoryview] = {}
        self._accessor_cache: dict[int, Array] = {}

    # ------------------------------------------------ buffers, views, accessors

    def _buffer(self, i: int, buf: dict[str, Any], binary: memoryview | None) -> memoryview | None:
        where = f"buffers[{i}]"
        length = _int(buf, "byteLength", where, self.fail, lo=1)
        uri = buf.get("uri")
        if uri is None:
            data = binary if i == 0 else None
            if data is None:
                raise self.fail(f"has {where} without a uri and no binary chunk", where=where)
        elif not isinstance(uri, str):
            raise self.fail(f"has {where}.uri that is not a string", where=where)
        else:
            decoded = _data_uri(uri, where, self.fail)
            if decoded is None and self._resolve is not None:
                decoded = self._resolve(uri)
            if decoded is None:
                return None  # an external file: fine while nothing reads from it
            data = memoryview(decoded)
        if len(data) < length:
            raise self.fail(
                f"has {where} of {length} bytes but only {len(data)} are present",
                where=where,
                declared_bytes=length,
                present_bytes=len(data),
            )
        return data[:length]

    def _blob(self, index: int, where: str) -> memoryview:
        blob = self._blobs[index]
        if blob is None:
            raise self.fail(
                f"refers to an external buffer ({where}); upload a .glb or a .gltf with "
                "embedded (data URI) buffers",
                code="unsupported_format",
                status=415,
                where=where,
                uri=str(self.buffers[index].get("uri")),
            )
        return blob

    def view_bytes(self, index: int) -> memoryview:
        """A buffer view's bytes, decompressed when it carries the meshopt extension."""
        if index in self._view_cache:
            return self._view_cache[index]
        where = f"bufferViews[{index}]"
        view = self.views[index]
        exts = _obj(view.get("extensions"), f"{where}.extensions", self.fail)
        length = _int(view, "byteLength", where, self.fail, lo=1)
        ext = exts.get(EXT, exts.get(KHR_EXT))
        if ext is not None:
            out = memoryview(self._meshopt_view(index, _obj(ext, f"{where}.meshopt", self.fail)))
            if len(out) < length:
                raise self.fail(f"has {where} that decodes to fewer bytes than it claims")
            out = out[:length]
        else:
            buffer = _ref(view.get("buffer"), f"{where}.buffer", len(self.buffers), self.fail)
            offset = _int(view, "byteOffset", where, self.fail, default=0)
            blob = self._blob(buffer, where)
            if offset + length > len(blob):
                raise self.fail(
                    f"has {where} running past its buffer ({offset} + {length} > {len(blob)})",
                    where=where,
                )
            out = blob[offset : offset + length]
        self._view_cache[index] = out
        return out

    def _meshopt_view(self, index: int, ext: dict[str, Any]) -> bytes:
        where = f"bufferViews[{index}].extensions.meshopt"
        buffer = _ref(ext.get("buffer"), f"{where}.buffer", len(self.buffers), self.fail)
        offset = _int(ext, "byteOffset", where, self.fail, default=0)
        length = _int(ext, "byteLength", where, self.fail, lo=1)
        stride = _int(ext, "byteStride", where, self.fail, lo=1, hi=256)
        count = _int(ext, "count", where, self.fail, lo=1)
        mode = ext.get("mode", "ATTRIBUTES")
        flt = ext.get("filter", "NONE")
        if not _known(mode, _MESHOPT_MODES) or not _known(flt, _MESHOPT_FILTERS):
            raise self.fail(f"has {where} with mode {mode!r} / filter {flt!r}", where=where)
        if mode == "ATTRIBUTES" and stride % 4:
            raise self.fail(f"has {where}: attribute strides are multiples of 4", where=where)
        if mode != "ATTRIBUTES" and (stride not in (2, 4) or flt != "NONE"):
            raise self.fail(f"has {where}: index streams are 2 or 4 bytes wide", where=where)
        if mode == "TRIANGLES" and count % 3:
            raise self.fail(f"has {where}: a triangle stream of {count} indices", where=where)
        if (flt == "OCTAHEDRAL" and stride not in (4, 8)) or (flt == "QUATERNION" and stride != 8):
            raise self.fail(f"has {where}: filter {flt} with stride {stride}", where=where)
        blob = self._blob(buffer, where)
        if offset + length > len(blob):
            raise self.fail(f"has {where} running past its buffer", where=where)
        if count * stride > MESHOPT_MAX_RATIO * length + 256:
            raise self.fail(
                f"has {where} claiming {count * stride} bytes from {length} compressed bytes",
                where=where,
                claimed_bytes=count * stride,
                compressed_bytes=length,
            )
        ext_checked = dict(ext, buffer=buffer, byteOffset=0, mode=mode, filter=flt)
        try:
            return decode_view(ext_checked, bytes(blob[offset : offset + length]))
        except (RuntimeError, ValueError) as exc:
            raise self.fail(f"has {where} that does not decode: {exc}", where=where) from None

    def check_accessors(self) -> None:
        """Every accessor's claims checked against the bytes present, none of them decoded.

        For callers that hand the file to another parser afterwards (garments go on to
        trimesh): nothing that parser allocates can then exceed what the file holds.
        """
        for view_index in range(len(self.views)):
            self.view_bytes(view_index)  # inside its buffer (meshopt views decode, bounded)
        for index, acc in enumerate(self.accessors):
            where = f"accessors[{index}]"
            comp, kind, _ = self.accessor_kind(index)
            dtype, width = COMPONENT_DTYPES[comp], TYPE_WIDTH[kind]
            count = _int(acc, "count", where, self.fail, lo=1)
            view_index = _index(acc, "bufferView", where, len(self.views), self.fail)
            if view_index is None:
                self._charge_zero_fill(count * dtype.itemsize * width, where)
            else:
                offset = _int(acc, "byteOffset", where, self.fail, default=0)
                stride = self._stride(view_index, dtype, width)
                self._check_span(view_index, offset, stride, count, dtype.itemsize * width, where)
            sparse = _obj(acc.get("sparse"), f"{where}.sparse", self.fail)
            if sparse:
                self._sparse_parts(sparse, comp, width, count, where)

    def accessor(self, index: int) -> Array:
        """An accessor's elements as float64 (count, width); normalised integers scaled."""
        if index not in self._accessor_cache:
            self._accessor_cache[index] = self._read_accessor(index)
        return self._accessor_cache[index]

    def accessor_kind(self, index: int) -> tuple[int, str, bool]:
        """(componentType, type, normalized) of an accessor."""
        acc = self.accessors[index]
        where = f"accessors[{index}]"
        comp = acc.get("componentType")
        kind = acc.get("type")
        if not _known(comp, COMPONENT_DTYPES) or not _known(kind, TYPE_WIDTH):
            raise self.fail(f"has {where} of unknown type {comp!r}/{kind!r}", where=where)
        normalized = acc.get("normalized", False)
        if not isinstance(normalized, bool):
            raise self.fail(f"has {where}.normalized that is not true/false", where=where)
        return int(comp), str(kind), normalized

    def _read_accessor(self, index: int) -> Array:
        where = f"accessors[{index}]"
        acc = self.accessors[index]
        comp, kind, normalized = self.accessor_kind(index)
        dtype, width = COMPONENT_DTYPES[comp], TYPE_WIDTH[kind]
        count = _int(acc, "count", where, self.fail, lo=1)
        view_index = _index(acc, "bufferView", where, len(self.views), self.fail)
        sparse = _obj(acc.get("sparse"), f"{where}.sparse", self.fail)
        if view_index is None:
            self._charge_zero_fill(count * dtype.itemsize * width, where)
            raw = np.zeros((count, width), dtype=dtype)
        else:
            offset = _int(acc, "byteOffset", where, self.fail, default=0)
            stride = self._stride(view_index, dtype, width)
            raw = self._strided(view_index, offset, stride, count, dtype, width, where)
        if sparse:
            raw = self._sparse(raw, sparse, comp, width, where)
        out = raw.astype(np.float64)
        if normalized and dtype.kind in "iu":
            out = np.maximum(out / float(np.iinfo(dtype).max), -1.0)
        if dtype.kind == "f" and not np.all(np.isfinite(out)):
            raise self.fail(
                f"has {where} with NaN or infinite values",
                code="non_finite_vertices" if kind == "VEC3" else "corrupt_file",
                status=422 if kind == "VEC3" else 400,
                where=where,
            )
        return out

    def _charge_zero_fill(self, nbytes: int, where: str) -> None:
        if nbytes > self._zero_budget:
            raise self.fail(
                f"has {where} claiming {nbytes} bytes of zeros, more than "
                f"{ZERO_FILL_PER_BYTE} per byte of the file allows",
                where=where,
                claimed_bytes=nbytes,
            )
        self._zero_budget -= nbytes

    def _stride(self, view_index: int, dtype: np.dtype, width: int) -> int:
        view = self.views[view_index]
        if view.get("byteStride") is None:
            return dtype.itemsize * width
        where = f"bufferViews[{view_index}]"
        return _int(view, "byteStride", where, self.fail, lo=4, hi=MAX_STRIDE)

    def _check_span(
        self, view_index: int, offset: int, stride: int, count: int, elem: int, where: str
    ) -> int:
        """The bytes `count` elements need from `offset`; refused beyond the view's length."""
        view_length = _int(self.views[view_index], "byteLength", where, self.fail, lo=1)
        need = offset + stride * (count - 1) + elem
        if stride < elem or need > view_length:
            raise self.fail(
                f"has {where} running past its buffer view "
                f"({count} × {stride} bytes from {offset} > {view_length})",
                where=where,
                claimed_bytes=need,
                view_bytes=view_length,
            )
        return need

    def _strided(
        self,
        view_index: int,
        offset: int,
        stride: int,
        count: int,
        dtype: np.dtype,
        width: int,
        where: str,
    ) -> NDArray[Any]:
        elem = dtype.itemsize * width
        need = self._check_span(view_index, offset, stride, count, elem, where)
        data = self.view_bytes(view_index)
        raw = np.frombuffer(data, dtype=np.uint8, count=need - offset, offset=offset)
        if stride != elem:
            raw = np.lib.stride_tricks.as_strided(raw, (count, elem), (stride, 1))
        return np.ascontiguousarray(raw).reshape(count, elem).view(dtype).reshape(count, width)

    def _sparse_parts(
        self, sparse: dict[str, Any], comp: int, width: int, count: int, where: str
    ) -> tuple[int, tuple[int, int, np.dtype], tuple[int, int, np.dtype]]:
        """(n, (view, offset, dtype) of the indices, the same of the values), spans checked."""
        n = _int(sparse, "count", f"{where}.sparse", self.fail, lo=1, hi=count)
        ind = _obj(sparse.get("indices"), f"{where}.sparse.indices", self.fail)
        val = _obj(sparse.get("values"), f"{where}.sparse.values", self.fail)
        ind_comp = ind.get("componentType")
        if ind_comp not in UNSIGNED_INTEGERS:
            raise self.fail(f"has {where}.sparse.indices of type {ind_comp!r}", where=where)
        idx_view = _index(ind, "bufferView", f"{where}.sparse.indices", len(self.views), self.fail)
        val_view = _index(val, "bufferView", f"{where}.sparse.values", len(self.views), self.fail)
        if idx_view is None or val_view is None:
            raise self.fail(f"has {where}.sparse without buffer views", where=where)
        idx_dtype = COMPONENT_DTYPES[int(ind_comp)]
        idx_offset = _int(ind, "byteOffset", where, self.fail, default=0)
        self._check_span(idx_view, idx_offset, idx_dtype.itemsize, n, idx_dtype.itemsize, where)
        dtype = COMPONENT_DTYPES[comp]
        val_offset = _int(val, "byteOffset", where, self.fail, default=0)
        elem = dtype.itemsize * width
        self._check_span(val_view, val_offset, elem, n, elem, where)
        return n, (idx_view, idx_offset, idx_dtype), (val_view, val_offset, dtype)

    def _sparse(
        self, base: NDArray[Any], sparse: dict[str, Any], comp: int, width: int, where: str
    ) -> NDArray[Any]:
        count = len(base)
        n, (iv, io, idt), (vv, vo, vdt) = self._sparse_parts(sparse, comp, width, count, where)
        idx = self._strided(iv, io, idt.itemsize, n, idt, 1, where)[:, 0].astype(np.int64)
        if np.any(np.diff(idx) <= 0) or idx[-1] >= count:
            raise self.fail(
                f"has {where}.sparse indices that are not increasing and below {count}",
                where=where,
            )
        values = self._strided(vv, vo, vdt.itemsize * width, n, vdt, width, where)
        out = np.array(base, copy=True)
        out[idx] = values
        return out

    # ------------------------------------------------ nodes

    def local_matrix(self, i: int) -> Array:
        node = self.nodes[i]
        where = f"nodes[{i}]"
        if node.get("matrix") is not None:
            m = np.asarray(_numbers(node["matrix"], 16, f"{where}.matrix", self.fail))
            return m.reshape(4, 4).T  # column-major
        m = np.eye(4)
        if node.get("rotation") is not None:
            q = np.asarray(_numbers(node["rotation"], 4, f"{where}.rotation", self.fail))
            if np.linalg.norm(q) < 1e-6:
                raise self.fail(f"has {where}.rotation that is not a rotation", where=where)
            m[:3, :3] = Rotation.from_quat(q).as_matrix()
        if node.get("scale") is not None:
            m[:3, :3] = m[:3, :3] * np.asarray(
                _numbers(node["scale"], 3, f"{where}.scale", self.fail)
            )
        if node.get("translation") is not None:
            m[:3, 3] = _numbers(node["translation"], 3, f"{where}.translation", self.fail)
        return m

    def node_forest(self) -> tuple[dict[int, Array], dict[int, int]]:
        """World matrix of every node and each child's parent; refuses cycles and shared nodes."""
        parent: dict[int, int] = {}
        for i, node in enumerate(self.nodes):
            children = node.get("children", [])
            if not isinstance(children, list):
                raise self.fail(f"has nodes[{i}].children that is not a list")
            for k, child in enumerate(children):
                c = _ref(child, f"nodes[{i}].children[{k}]", len(self.nodes), self.fail)
                if c in parent or c == i:
                    raise self.fail(
                        f"has node {c} with more than one parent (the node graph must be a tree)",
                        where=f"nodes[{i}].children",
                    )
                parent[c] = i
        world: dict[int, Array] = {}
        stack = [(r, np.eye(4)) for r in range(len(self.nodes)) if r not in parent]
        while stack:
            i, above = stack.pop()
            world[i] = above @ self.local_matrix(i)
            stack.extend((c, world[i]) for c in self.nodes[i].get("children", []))
        if len(world) < len(self.nodes):
            cycle = sorted(set(range(len(self.nodes))) - set(world))
            raise self.fail("has a cycle in its node hierarchy", where="nodes", nodes=cycle[:16])
        return world, parent

    def scene_nodes(self, parent: dict[int, int]) -> list[int]:
        """Nodes of the default scene, depth first (the order viewers draw them in)."""
        if self.scenes:
            scene = _index(self.json, "scene", "gltf", len(self.scenes), self.fail) or 0
            roots = self.scenes[scene].get("nodes", [])
            if not isinstance(roots, list):
                raise self.fail(f"has scenes[{scene}].nodes that is not a list")
            roots = [_ref(r, f"scenes[{scene}].nodes", len(self.nodes), self.fail) for r in roots]
        else:
            roots = [i for i in range(len(self.nodes)) if i not in parent]
        order: list[int] = []
        seen: set[int] = set()
        stack = list(roots)
        while stack:
            i = stack.pop()
            if i in seen:
                raise self.fail(f"lists node {i} twice in its scene", where="scenes")
            seen.add(i)
            order.append(i)
            stack.extend(self.nodes[i].get("children", []))
        return order

    # ------------------------------------------------ the scene

    def scene(self) -> GltfScene:
        world, parent = self.node_forest()
        rig, rig_index = self._rig(world, parent)
        primitives: list[GltfPrimitive] = []
        for node_index in self.scene_nodes(parent):
            node = self.nodes[node_index]
            where = f"nodes[{node_index}]"
            mesh_index = _index(node, "mesh", where, len(self.meshes), self.fail)
            if mesh_index is None:
                continue
            skin_index = _index(node, "skin", where, len(self.skins), self.fail)
            mesh = self.meshes[mesh_index]
            prims = mesh.get("primitives", [])
            if not isinstance(prims, list):
                raise self.fail(f"has meshes[{mesh_index}].primitives that is not a list")
            for pi, prim in enumerate(prims):
                prim = _obj(prim, f"meshes[{mesh_index}].primitives[{pi}]", self.fail)
                read = self._primitive(
                    prim,
                    f"meshes[{mesh_index}].primitives[{pi}]",
                    world[node_index],
                    skin_index,
                    world,
                    rig_index,
                )
                if read is None:
                    continue
                positions, faces, normals, uvs, joints, weights, material, scalars = read
                primitives.append(
                    GltfPrimitive(
                        mesh_index=mesh_index,
                        primitive_index=pi,
                        mesh_name=_name(mesh),
                        node_name=_name(node),
                        extras=[node.get("extras"), mesh.get("extras")],
                        positions=positions,
                        faces=faces,
                        normals=normals,
                        uvs=uvs,
                        joints=joints,
                        weights=weights,
                        material=material,
                        scalars=scalars,
                    )
                )
        asset = _obj(self.json.get("asset"), "asset", self.fail)
        extras = asset.get("extras")
        return GltfScene(primitives, rig, extras if isinstance(extras, dict) else {})

    def _rig(
        self, world: dict[int, Array], parent: dict[int, int]
    ) -> tuple[GltfRig | None, dict[int, int]]:
        joint_set: set[int] = set()
        for s, skin in enumerate(self.skins):
            joint_set.update(self._skin_joints(s, skin))
        joint_nodes = sorted(joint_set)
        rig_index = {n: k for k, n in enumerate(joint_nodes)}
        if not joint_nodes:
            return None, rig_index
        parents = []
        for n in joint_nodes:
            p = parent.get(n)
            while p is not None and p not in rig_index:
                p = parent.get(p)
            parents.append(-1 if p is None else rig_index[p])
        names = [_name(self.nodes[n]) or f"joint{n}" for n in joint_nodes]
        rig = GltfRig(
            joint_nodes,
            names,
            np.asarray(parents, dtype=np.int64),
            np.stack([world[n] for n in joint_nodes]),
        )
        return rig, rig_index

    def _skin_joints(self, s: int, skin: dict[str, Any]) -> list[int]:
        joints = skin.get("joints")
        if not isinstance(joints, list) or not joints:
            raise self.fail(f"has skins[{s}] without joints", where=f"skins[{s}]")
        return [_ref(j, f"skins[{s}].joints", len(self.nodes), self.fail) for j in joints]

    def _attribute(
        self,
        attrs: dict[str, Any],
        name: str,
        where: str,
        count: int | None,
        kinds: tuple[str, ...],
    ) -> Array | None:
        index = _index(attrs, name, f"{where}.attributes", len(self.accessors), self.fail)
        if index is None:
            return None
        _, kind, _ = self.accessor_kind(index)
        if kind not in kinds:
            raise self.fail(f"has {where}.{name} of type {kind}", where=f"{where}.{name}")
        values = self.accessor(index)
        if count is not None and len(values) != count:
            raise self.fail(
                f"has {where}.{name} with {len(values)} elements for {count} vertices",
                where=f"{where}.{name}",
            )
        return values

    def _primitive(
        self,
        prim: dict[str, Any],
        where: str,
        node_world: Array,
        skin_index: int | None,
        world: dict[int, Array],
        rig_index: dict[int, int],
    ) -> tuple[Any, ...] | None:
        mode = _int(prim, "mode", where, self.fail, hi=6, default=TRIANGLES)
        attrs = _obj(prim.get("attributes"), f"{where}.attributes", self.fail)
        if mode != TRIANGLES or attrs.get("POSITION") is None:
            return None
        # (1) Gather attributes, each the length of POSITION.
        pos = self._attribute(attrs, "POSITION", where, None, ("VEC3",))
        assert pos is not None
        n = len(pos)
        nrm = self._attribute(attrs, "NORMAL", where, n, ("VEC3",))
        uvs = self._attribute(attrs, "TEXCOORD_0", where, n, ("VEC2",))
        scalars = {}
        for name in SCALAR_ATTRIBUTES:
            values = self._attribute(attrs, name, where, n, ("SCALAR",))
            if values is not None and np.isfinite(values).all():  # an overlay: bad ones dropped
                scalars[name] = np.asarray(values, dtype=np.float64).reshape(-1)
        faces = self._faces(prim, where, n)
        material = self._material(prim, where)
        if uvs is not None and material is not None:
            uvs = self._texture_transform(uvs, prim)
        material_out = material[0] if material is not None else None
        # (2) Pose: skinned by the joints' world matrices, otherwise by the node's.
        joints = weights = None
        skin = self.skins[skin_index] if skin_index is not None else None
        if (
            skin is not None
            and attrs.get("JOINTS_0") is not None
            and attrs.get("WEIGHTS_0") is not None
        ):
            skin_joints = self._skin_joints(skin_index or 0, skin)
            local_joints = self._joints(attrs, where, n, len(skin_joints))
            weights = self._attribute(attrs, "WEIGHTS_0", where, n, ("VEC4",))
            assert weights is not None
            totals = weights.sum(axis=1, keepdims=True)
            weights = weights / np.where(totals > 0, totals, 1.0)
            ibm = self._inverse_binds(skin, skin_index or 0, len(skin_joints))
            mats = np.stack([world[j] @ ibm[k] for k, j in enumerate(skin_joints)])
            blended = np.einsum("nk,nkab->nab", weights, mats[local_joints])
            pos = np.einsum("nab,nb->na", blended[:, :3, :3], pos) + blended[:, :3, 3]
            if nrm is not None:
                nrm = np.einsum("nab,nb->na", normal_matrices(blended[:, :3, :3]), nrm)
            joints = np.asarray([rig_index[j] for j in skin_joints])[local_joints]
        else:
            pos = pos @ node_world[:3, :3].T + node_world[:3, 3]
            if nrm is not None:
                nrm = nrm @ normal_matrices(node_world[None, :3, :3])[0].T
            if np.linalg.det(node_world[:3, :3]) < 0:
                faces = faces[:, ::-1]
        return pos, faces, nrm, uvs, joints, weights, material_out, scalars

    def _faces(self, prim: dict[str, Any], where: str, n: int) -> NDArray[np.int64]:
        index = _index(prim, "indices", where, len(self.accessors), self.fail)
        if index is None:
            return np.arange(n - n % 3, dtype=np.int64).reshape(-1, 3)
        comp, kind, _ = self.accessor_kind(index)
        if comp not in UNSIGNED_INTEGERS or kind != "SCALAR":
            raise self.fail(f"has {where}.indices that are not unsigned integers", where=where)
        idx = self.accessor(index).astype(np.int64).reshape(-1)
        if len(idx) and idx.max() >= n:
            raise self.fail(
                f"has {where}.indices up to {int(idx.max())} for {n} vertices",
                where=f"{where}.indices",
            )
        return idx[: len(idx) // 3 * 3].reshape(-1, 3)

    def _joints(self, attrs: dict[str, Any], where: str, n: int, joint_count: int) -> Any:
        index = _index(attrs, "JOINTS_0", f"{where}.attributes", len(self.accessors), self.fail)
        assert index is not None
        comp, kind, normalized = self.accessor_kind(index)
        if comp not in (5121, 5123) or kind != "VEC4" or normalized:
            raise self.fail(f"has {where}.JOINTS_0 that are not unsigned VEC4", where=where)
        joints = self.accessor(index).astype(np.int64)
        if len(joints) != n:
            raise self.fail(f"has {where}.JOINTS_0 of another length than POSITION")
        if joints.max(initial=0) >= joint_count:
            raise self.fail(
                f"has {where}.JOINTS_0 up to {int(joints.max())} for a skin of "
                f"{joint_count} joints",
                where=f"{where}.JOINTS_0",
            )
        return joints

    def _inverse_binds(self, skin: dict[str, Any], s: int, joint_count: int) -> Array:
        index = _index(skin, "inverseBindMatrices", f"skins[{s}]", len(self.accessors), self.fail)
        if index is None:
            return np.tile(np.eye(4), (joint_count, 1, 1))
        _, kind, _ = self.accessor_kind(index)
        values = self.accessor(index)
        if kind != "MAT4" or len(values) < joint_count:
            raise self.fail(
                f"has skins[{s}].inverseBindMatrices that are not {joint_count} MAT4",
                where=f"skins[{s}]",
            )
        return values[:joint_count].reshape(-1, 4, 4).transpose(0, 2, 1)

    def _material(self, prim: dict[str, Any], where: str) -> tuple[LodMaterial, Any] | None:
        index = _index(prim, "material", where, len(self.materials), self.fail)
        if index is None:
            return None
        mat = self.materials[index]
        mwhere = f"materials[{index}]"
        pbr = _obj(mat.get("pbrMetallicRoughness"), f"{mwhere}.pbrMetallicRoughness", self.fail)
        out = gltf_material(_name(mat))
        if pbr.get("baseColorFactor") is not None:
            c = _numbers(pbr["baseColorFactor"], 4, f"{mwhere}.baseColorFactor", self.fail)
            out.base_color = (c[0], c[1], c[2], c[3])
        for key, attr in (("roughnessFactor", "roughness"), ("metallicFactor", "metallic")):
            if pbr.get(key) is not None:
                setattr(out, attr, _numbers([pbr[key]], 1, f"{mwhere}.{key}", self.fail)[0])
        double = mat.get("doubleSided", False)
        if not isinstance(double, bool):
            raise self.fail(f"has {mwhere}.doubleSided that is not true/false", where=mwhere)
        out.double_sided = double
        info = _obj(pbr.get("baseColorTexture"), f"{mwhere}.baseColorTexture", self.fail)
        if info:
            out.base_color_image, out.image_mime = self._texture_image(info, mwhere)
        return out, info

    def _texture_image(self, info: dict[str, Any], where: str) -> tuple[bytes | None, str]:
        tex = _index(info, "index", f"{where}.baseColorTexture", len(self.textures), self.fail)
        if tex is None:
            return None, "image/png"
        src = _index(self.textures[tex], "source", f"textures[{tex}]", len(self.images), self.fail)
        if src is None:
            return None, "image/png"
        image = self.images[src]
        mime = image.get("mimeType", "image/png")
        if not isinstance(mime, str):
            raise self.fail(f"has images[{src}].mimeType that is not a string")
        view = _index(image, "bufferView", f"images[{src}]", len(self.views), self.fail)
        if view is not None:
            return bytes(self.view_bytes(view)), mime
        uri = image.get("uri")
        if isinstance(uri, str):
            data = _data_uri(uri, f"images[{src}].uri", self.fail)
            if data is not None:
                head = uri.split(",", 1)[0]
                return data, head[5:].split(";", 1)[0] or mime
        return None, mime

    def _texture_transform(self, uvs: Array, prim: dict[str, Any]) -> Array:
        """UVs through the base colour texture's KHR_texture_transform (gltfpack's dequantiser)."""
        index = prim.get("material")
        pbr = _obj(self.materials[index].get("pbrMetallicRoughness"), "pbr", self.fail)
        info = _obj(pbr.get("baseColorTexture"), "baseColorTexture", self.fail)
        exts = _obj(info.get("extensions"), "baseColorTexture.extensions", self.fail)
        tt = _obj(exts.get("KHR_texture_transform"), "KHR_texture_transform", self.fail)
        if not tt:
            return uvs
        offset = _numbers(tt.get("offset", [0.0, 0.0]), 2, "KHR_texture_transform", self.fail)
        scale = _numbers(tt.get("scale", [1.0, 1.0]), 2, "KHR_texture_transform", self.fail)
        angle = _numbers([tt.get("rotation", 0.0)], 1, "KHR_texture_transform", self.fail)[0]
        c, s = np.cos(angle), np.sin(angle)
        scaled = uvs * np.asarray(scale)
        rotated = np.stack(
            [c * scaled[:, 0] + s * scaled[:, 1], -s * scaled[:, 0] + c * scaled[:, 1]], axis=1
        )
        return rotated + np.asarray(offset)


def _name(obj: dict[str, Any]) -> str | None:
    name = obj.get("name")
    return name if isinstance(name, str) and name else None


def normal_matrices(m: Array) -> Array:
    """(…, 3, 3) matrices that carry normals through the linear maps `m`: the inverse transpose.

    Computed as the cofactor matrix times the sign of the determinant, which is the inverse
    transpose up to a positive factor (normals are renormalised after) and stays defined for
    singular blends, where a plain inverse would fail.
    """
    r0, r1, r2 = m[..., 0, :], m[..., 1, :], m[..., 2, :]
    cof = np.stack([np.cross(r1, r2), np.cross(r2, r0), np.cross(r0, r1)], axis=-2)
    det = np.einsum("...i,...i->...", r0, np.cross(r1, r2))
    return cof * np.where(det < 0, -1.0, 1.0)[..., None, None]
