"""Assemble glTF 2.0 binaries from NumPy arrays with pygltflib.

One `GlbBuilder` collects typed arrays into a single 4-byte-aligned binary chunk and records the
accessors the spec requires (POSITION min/max, targets on vertex and index views), so every
writer in the project produces files the Khronos validator accepts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pygltflib as g
from numpy.typing import NDArray

_COMPONENT = {
    np.dtype(np.float32): g.FLOAT,
    np.dtype(np.uint32): g.UNSIGNED_INT,
    np.dtype(np.uint16): g.UNSIGNED_SHORT,
    np.dtype(np.uint8): g.UNSIGNED_BYTE,
    np.dtype(np.int16): g.SHORT,
    np.dtype(np.int8): g.BYTE,
}
_TYPE = {1: g.SCALAR, 2: g.VEC2, 3: g.VEC3, 4: g.VEC4, 16: g.MAT4}


class GlbBuilder:
    """Collects buffers, accessors, meshes and nodes, then writes one GLB."""

    def __init__(self, generator: str = "SpatialTwin") -> None:
        self.gltf = g.GLTF2(asset=g.Asset(version="2.0", generator=generator))
        self.gltf.buffers = [g.Buffer(byteLength=0)]
        self._blob = bytearray()

    def _view(self, data: bytes, target: int | None, stride: int | None = None) -> int:
        while len(self._blob) % 4:
            self._blob.append(0)
        offset = len(self._blob)
        self._blob.extend(data)
        view = g.BufferView(buffer=0, byteOffset=offset, byteLength=len(data), target=target)
        if stride is not None:
            view.byteStride = stride
        self.gltf.bufferViews.append(view)
        return len(self.gltf.bufferViews) - 1

    def accessor(
        self,
        array: NDArray[Any],
        *,
        target: int | None = g.ARRAY_BUFFER,
        with_bounds: bool = False,
        normalized: bool = False,
        matrix: bool = False,
    ) -> int:
        """Add `array` (N,) or (N, k) as an accessor; returns its index."""
        arr = np.ascontiguousarray(array)
        if arr.dtype not in _COMPONENT:
            raise TypeError(f"unsupported dtype {arr.dtype} for glTF")
        count = arr.shape[0]
        width = 16 if matrix else (1 if arr.ndim == 1 else int(np.prod(arr.shape[1:])))
        element_bytes = width * arr.dtype.itemsize
        stride = None
        data = arr.tobytes()
        if target == g.ARRAY_BUFFER and element_bytes % 4:
            # Vertex attributes need 4-byte aligned strides: pad each element.
            padded = (element_bytes + 3) // 4 * 4
            raw = np.zeros((count, padded), dtype=np.uint8)
            raw[:, :element_bytes] = arr.reshape(count, -1).view(np.uint8).reshape(count, -1)
            data = raw.tobytes()
            stride = padded
        view = self._view(data, target, stride)
        acc = g.Accessor(
            bufferView=view,
            componentType=_COMPONENT[arr.dtype],
            count=count,
            type=_TYPE[width],
            normalized=normalized or None,
        )
        if with_bounds:
            flat = arr.reshape(count, -1)
            acc.min = [float(x) for x in flat.min(axis=0)]
            acc.max = [float(x) for x in flat.max(axis=0)]
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def indices(self, faces: NDArray[np.integer], vertex_count: int) -> int:
        dtype = np.uint16 if vertex_count < 65_535 else np.uint32
        return self.accessor(np.asarray(faces, dtype=dtype).ravel(), target=g.ELEMENT_ARRAY_BUFFER)

    def material(
        self,
        name: str,
        base_color: tuple[float, float, float, float],
        roughness: float = 0.7,
        metallic: float = 0.0,
        double_sided: bool = False,
    ) -> int:
        self.gltf.materials.append(
            g.Material(
                name=name,
                pbrMetallicRoughness=g.PbrMetallicRoughness(
                    baseColorFactor=list(base_color),
                    metallicFactor=metallic,
                    roughnessFactor=roughness,
                ),
                doubleSided=double_sided,
            )
        )
        return len(self.gltf.materials) - 1

    def image(self, data: bytes, mime: str, name: str | None = None) -> int:
        """Embed encoded image bytes (PNG/JPEG) in the binary chunk; returns the image index."""
        view = self._view(data, None)
        self.gltf.images.append(g.Image(bufferView=view, mimeType=mime, name=name))
        return len(self.gltf.images) - 1

    def mesh(self, name: str, primitives: list[g.Primitive]) -> int:
        self.gltf.meshes.append(g.Mesh(name=name, primitives=primitives))
        return len(self.gltf.meshes) - 1

    def node(self, **kwargs: Any) -> int:
        self.gltf.nodes.append(g.Node(**kwargs))
        return len(self.gltf.nodes) - 1

    def scene(self, roots: list[int], name: str = "scene") -> None:
        self.gltf.scenes = [g.Scene(name=name, nodes=roots)]
        self.gltf.scene = 0

    def set_extras(self, extras: dict[str, Any]) -> None:
        self.gltf.asset.extras = extras

    def to_bytes(self) -> bytes:
        while len(self._blob) % 4:
            self._blob.append(0)
        self.gltf.buffers[0].byteLength = len(self._blob)
        self.gltf.set_binary_blob(bytes(self._blob))
        out = self.gltf.save_to_bytes()
        return b"".join(out) if isinstance(out, list) else bytes(out)
