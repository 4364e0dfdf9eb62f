"""Garment files in and out: OBJ/MTL, glTF/GLB, PLY, STL (bare or zipped), NPZ, preview GLB.

Every garment format is parsed here and nowhere else (trimesh's loaders do the parsing; this
module checks what they cannot: truncated OBJ lines, out-of-range indices, empty files). The
result is plain arrays in the file's own units and axes: deciding units, axes and fit is the
garment stage's job.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pygltflib as g
import trimesh
from numpy.typing import NDArray

from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.archive import ARCHIVE_DEFAULTS, ArchiveLimits, is_zip, read_zip
from spatialtwin.gltf.builder import GlbBuilder

MESH_EXTENSIONS = {".obj": "obj", ".glb": "glb", ".gltf": "gltf", ".ply": "ply", ".stl": "stl"}
SUPPORTED = (*sorted(MESH_EXTENSIONS), ".zip")
DEFAULT_COLOUR = (0.55, 0.60, 0.70, 1.0)


@dataclass
class MeshSource:
    """A garment file's triangles in file units, with per-corner UVs and per-face materials."""

    vertices: NDArray[np.float64]  # (N, 3) file units, file axes
    faces: NDArray[np.int64]  # (F, 3) triangles (quads and n-gons fanned)
    corner_uvs: NDArray[np.float32] | None  # (F, 3, 2) UV of each face corner, or None
    face_material: NDArray[np.int32]  # (F,) index into `materials`
    materials: list[dict[str, Any]] = field(default_factory=list)  # {name, base_color}
    format: str = "obj"
    source_polygons: int = 0  # faces as authored (a quad counts once)


def _format_of(filename: str, data: bytes) -> str:
    if is_zip(data):
        return "zip"
    ext = PurePosixPath(filename.lower()).suffix
    if data[:4] == b"glTF":
        return "glb"
    if ext == ".zip":
        return "zip"
    if ext not in MESH_EXTENSIONS:
        raise SpatialTwinError(
            "unsupported_format",
            f"{filename!r} is not a supported garment format; send one of {', '.join(SUPPORTED)}",
            {"filename": filename, "supported": list(SUPPORTED)},
            status=415,
        )
    return MESH_EXTENSIONS[ext]


def _corrupt(filename: str, why: str, **detail: Any) -> SpatialTwinError:
    return SpatialTwinError(
        "corrupt_file",
        f"{filename!r} is corrupt or truncated: {why}",
        {"filename": filename, **detail},
        status=422,
    )


def _check_obj_text(data: bytes, filename: str) -> int:
    """Refuse OBJ lines trimesh would silently drop; returns the number of polygons."""
    vertex_count = 0
    polygons = 0
    for number, line in enumerate(data.splitlines(), start=1):
        if line.startswith(b"v "):
            vertex_count += 1
            parts = line.split()
            if len(parts) < 4:
                raise _corrupt(filename, f"line {number} is an incomplete vertex", line=number)
        elif line.startswith(b"f "):
            polygons += 1
            parts = line.split()[1:]
            if len(parts) < 3:
                raise _corrupt(filename, f"line {number} is a face with < 3 corners", line=number)
            if len({token.count(b"/") for token in parts}) > 1:
                # OBJ requires one index format per face; a mix is a line cut short.
                raise _corrupt(filename, f"line {number} mixes face index formats", line=number)
            for token in parts:
                head = token.split(b"/")[0]
                try:
                    index = int(head)
                except ValueError:
                    raise _corrupt(
                        filename, f"line {number} has a malformed face index", line=number
                    ) from None
                if index == 0 or index > vertex_count or -index > vertex_count:
                    raise _corrupt(
                        filename,
                        f"line {number} refers to vertex {index} of {vertex_count}",
                        line=number,
                    )
    return polygons


class _DictResolver(trimesh.resolvers.Resolver):
    """Lets the OBJ loader find its MTL and textures among already-checked zip entries."""

    def __init__(self, entries: dict[str, bytes], folder: str) -> None:
        self.entries = entries
        self.folder = folder

    def get(self, name: str) -> bytes:
        key = str(PurePosixPath(self.folder) / name.replace("\\", "/")).lstrip("./")
        for candidate in (key, name, PurePosixPath(name).name):
            if candidate in self.entries:
                return self.entries[candidate]
        raise FileNotFoundError(name)

    def keys(self):  # type: ignore[no-untyped-def]
        return self.entries.keys()

    def write(self, name: str, data: bytes) -> None:
        raise PermissionError("archives are read-only")

    def namespaced(self, namespace: str) -> _DictResolver:
        return _DictResolver(self.entries, str(PurePosixPath(self.folder) / namespace))


def _pick_mesh_entry(entries: dict[str, bytes]) -> str:
    meshes = [
        name
        for name in entries
        if PurePosixPath(name.lower()).suffix in MESH_EXTENSIONS
        and not PurePosixPath(name).name.startswith("._")
    ]
    if len(meshes) != 1:
        raise SpatialTwinError(
            "no_geometry" if not meshes else "ambiguous_archive",
            "the archive must hold exactly one mesh file "
            f"({', '.join(sorted(MESH_EXTENSIONS))}); found {len(meshes)}",
            {"meshes": sorted(meshes)},
            status=422,
        )
    return meshes[0]


def read_garment_file(
    data: bytes, filename: str, limits: ArchiveLimits = ARCHIVE_DEFAULTS
) -> MeshSource:
    """Parse an uploaded garment (bytes + original filename) into triangles in file units."""
    if not data:
        raise SpatialTwinError("empty_file", f"{filename!r} is empty", {"filename": filename})
    fmt = _format_of(filename, data)
    resolver: trimesh.resolvers.Resolver | None = None
    if fmt == "zip":
        entries = read_zip(data, limits)
        filename = _pick_mesh_entry(entries)
        data = entries[filename]
        fmt = _format_of(filename, data)
        resolver = _DictResolver(entries, str(PurePosixPath(filename).parent))
    polygons = 0
    if fmt == "obj":
        polygons = _check_obj_text(data, filename)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # trimesh's texture probing
            loaded = trimesh.load(
                io.BytesIO(data),
                file_type=fmt,
                resolver=resolver,
                process=False,
                maintain_order=True,
                skip_materials=False,
            )
    except SpatialTwinError:
        raise
    except Exception as exc:  # trimesh raises many types for bad bytes
        raise _corrupt(filename, f"{type(exc).__name__}: {exc}", format=fmt) from exc
    source = _to_source(loaded, filename, fmt)
    source.source_polygons = polygons or len(source.faces)
    return source


def _to_source(loaded: Any, filename: str, fmt: str) -> MeshSource:
    if isinstance(loaded, trimesh.Scene):
        meshes = [m for m in loaded.dump(concatenate=False) if isinstance(m, trimesh.Trimesh)]
    elif isinstance(loaded, trimesh.Trimesh):
        meshes = [loaded]
    else:
        meshes = []
    meshes = [m for m in meshes if len(m.faces)]
    if not meshes:
        raise SpatialTwinError(
            "no_geometry",
            f"{filename!r} holds no triangles or polygons",
            {"filename": filename, "format": fmt},
            status=422,
        )
    verts, faces, uvs, mats, materials = [], [], [], [], []
    offset = 0
    any_uv = any(_uv_of(m) is not None for m in meshes)
    for k, mesh in enumerate(meshes):
        v = np.asarray(mesh.vertices, dtype=np.float64)
        f = np.asarray(mesh.faces, dtype=np.int64)
        verts.append(v)
        faces.append(f + offset)
        uv = _uv_of(mesh)
        if any_uv:
            uvs.append(
                np.zeros((len(f), 3, 2), np.float32) if uv is None else uv[f].astype(np.float32)
            )
        mats.append(np.full(len(f), k, dtype=np.int32))
        materials.append(_material_of(mesh, k))
        offset += len(v)
    return MeshSource(
        vertices=np.concatenate(verts),
        faces=np.concatenate(faces),
        corner_uvs=np.concatenate(uvs) if any_uv else None,
        face_material=np.concatenate(mats),
        materials=materials,
        format=fmt,
    )


def _uv_of(mesh: trimesh.Trimesh) -> NDArray[np.float64] | None:
    uv = getattr(mesh.visual, "uv", None)
    if uv is None or len(uv) != len(mesh.vertices):
        return None
    return np.asarray(uv, dtype=np.float64)


def _material_of(mesh: trimesh.Trimesh, k: int) -> dict[str, Any]:
    material = getattr(mesh.visual, "material", None)
    name = getattr(material, "name", None) or f"material_{k}"
    colour = DEFAULT_COLOUR
    for attr in ("baseColorFactor", "diffuse", "main_color"):
        value = getattr(material, attr, None)
        if value is not None:
            arr = np.asarray(value, dtype=np.float64).ravel()
            if arr.size >= 3:
                arr = arr / 255.0 if arr.max() > 1.0 else arr
                rgba = [*arr[:3], arr[3] if arr.size > 3 else 1.0]
                colour = tuple(float(np.clip(c, 0, 1)) for c in rgba)  # type: ignore[assignment]
                break
    return {"name": str(name), "base_color": list(colour)}


# --- prepared garments as NPZ (the working copy the store keeps) -------------------------------


def arrays_to_npz(arrays: dict[str, NDArray[Any]]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def arrays_from_npz(data: bytes) -> dict[str, NDArray[Any]]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


# --- preview GLB ---------------------------------------------------------------------------------


def unweld_corners(
    vertices: NDArray[np.floating], faces: NDArray[np.integer], corner_uvs: NDArray[Any] | None
) -> tuple[NDArray[np.float32], NDArray[np.uint32], NDArray[np.float32] | None]:
    """Split vertices where UVs differ (glTF has one UV per vertex); returns v, f, uv."""
    f = np.asarray(faces, dtype=np.int64)
    if corner_uvs is None:
        return np.asarray(vertices, np.float32), f.astype(np.uint32), None
    uv = np.asarray(corner_uvs, dtype=np.float32).reshape(-1, 2)
    key = np.column_stack([f.ravel(), uv.view(np.int32).reshape(-1, 2)])
    unique, inverse = np.unique(key, axis=0, return_inverse=True)
    first = np.zeros(len(unique), dtype=np.int64)
    first[inverse.ravel()] = np.arange(len(inverse.ravel()))
    verts = np.asarray(vertices, np.float32)[unique[:, 0]]
    return verts, inverse.reshape(-1, 3).astype(np.uint32), uv[first]


def add_garment_mesh(
    builder: GlbBuilder,
    name: str,
    vertices_m: NDArray[np.floating],
    faces: NDArray[np.integer],
    corner_uvs: NDArray[Any] | None,
    base_color: tuple[float, float, float, float] = DEFAULT_COLOUR,
) -> int:
    """Add a static, double-sided garment mesh node (metres, +Y up); returns the node index."""
    v, f, uv = unweld_corners(vertices_m, faces, corner_uvs)
    mesh = trimesh.Trimesh(v, f, process=False)
    attrs = g.Attributes(
        POSITION=builder.accessor(v, with_bounds=True),
        NORMAL=builder.accessor(np.asarray(mesh.vertex_normals, dtype=np.float32)),
    )
    if uv is not None:
        attrs.TEXCOORD_0 = builder.accessor(uv)
    material = builder.material(f"{name}:cloth", base_color, roughness=0.85, double_sided=True)
    mesh_index = builder.mesh(
        name,
        [
            g.Primitive(
                attributes=attrs,
                indices=builder.indices(f, len(v)),
                material=material,
                mode=g.TRIANGLES,
            )
        ],
    )
    return builder.node(name=name, mesh=mesh_index)


logging.getLogger("trimesh").setLevel(logging.ERROR)


def garment_on_twin_glb(
    body: Any, garment: dict[str, Any], placed: Any, twin_provenance: dict[str, Any]
) -> bytes:
    """The twin (skinned, node `twin`) wearing the placed garment (node `garment:<id>`).

    `body` is a `TwinBody`, `placed` a `PlacedGarment`; provenance names both the twin's rights
    and the garment, in `asset.extras.spatialtwin`.
    """
    from spatialtwin import __version__
    from spatialtwin.gltf.twin_glb import add_skinned_twin, provenance_extras

    builder = GlbBuilder(generator=f"SpatialTwin {__version__}")
    mesh_node, hips = add_skinned_twin(builder, body, mesh_name="twin")
    materials = garment.get("materials") or [{"base_color": list(DEFAULT_COLOUR)}]
    colour = tuple(materials[0].get("base_color", DEFAULT_COLOUR))
    garment_node = add_garment_mesh(
        builder,
        f"garment:{garment['id']}",
        placed.positions_m,
        placed.faces,
        placed.corner_uvs,
        colour,  # type: ignore[arg-type]
    )
    builder.scene([mesh_node, hips, garment_node], name="preview")
    builder.set_extras(
        provenance_extras(
            {
                **twin_provenance,
                "garment": {
                    "id": garment["id"],
                    "sku": garment.get("sku"),
                    "fabric": garment.get("fabric", {}).get("id"),
                    "units": garment.get("units"),
                    "translations_m": placed.translations_m,
                    "max_push_m": round(float(placed.max_push_m), 4),
                },
            }
        )
    )
    return builder.to_bytes()
