"""Garment files in and out: OBJ/MTL, glTF/GLB, PLY, STL (bare or zipped), NPZ, preview GLB.

Every garment format is parsed here and nowhere else (trimesh's loaders do the parsing; this
module checks what they cannot: truncated OBJ lines, out-of-range indices, empty files). The
result is plain arrays in the file's own units and axes: deciding units, axes and fit is the
garment stage's job.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pygltflib as g
import trimesh
from numpy.typing import NDArray

from spatialtwin.errors import SpatialTwinError
from spatialtwin.garment.appearance import Appearance, GarmentMaterial, TextureImage, TextureRef
from spatialtwin.garment.render_mesh import RenderBinding
from spatialtwin.garment.source import MeshSource
from spatialtwin.gltf.archive import ARCHIVE_DEFAULTS, ArchiveLimits, is_zip, read_zip
from spatialtwin.gltf.builder import GlbBuilder
from spatialtwin.gltf.garment_material import (
    IMAGE_DEFAULTS,
    ImageLimits,
    ReadAppearance,
    data_uri_bytes,
    entry_lookup,
    gltf_appearance,
    is_image_name,
    join_glb,
    material_index,
    mtl_appearance,
    tagged_for_trimesh,
)
from spatialtwin.gltf.glb_reader import parse_glb, parse_gltf_json
from spatialtwin.gltf.obj_mesh import read_obj_blocks
from spatialtwin.gltf.obj_text import as_utf8

MESH_EXTENSIONS = {".obj": "obj", ".glb": "glb", ".gltf": "gltf", ".ply": "ply", ".stl": "stl"}
SUPPORTED = (*sorted(MESH_EXTENSIONS), ".zip")
DEFAULT_COLOUR = (0.55, 0.60, 0.70, 1.0)


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
    data: bytes,
    filename: str,
    limits: ArchiveLimits = ARCHIVE_DEFAULTS,
    image_limits: ImageLimits = IMAGE_DEFAULTS,
) -> MeshSource:
    """Parse an uploaded garment (bytes + original filename) into triangles in file units,
    with its materials and texture images (checked against `image_limits`)."""
    if not data:
        raise SpatialTwinError("empty_file", f"{filename!r} is empty", {"filename": filename})
    fmt = _format_of(filename, data)
    entries: dict[str, bytes] | None = None
    folder = ""
    if fmt == "zip":
        entries = read_zip(data, limits)
        filename = _pick_mesh_entry(entries)
        data = entries[filename]
        fmt = _format_of(filename, data)
        folder = str(PurePosixPath(filename).parent)
    find = entry_lookup(entries, folder) if entries is not None else data_uri_bytes
    # (1) materials and images, read and checked before trimesh sees the file
    polygons = 0
    resolver: trimesh.resolvers.Resolver | None = None
    if fmt in ("glb", "gltf"):
        appearance, data = _gltf_appearance(data, filename, fmt, find, image_limits)
        if entries is not None:
            resolver = _DictResolver(entries, folder)
    elif fmt == "obj":
        data = as_utf8(data)  # a Latin-1 comment must not reach trimesh's encoding guess
        polygons = _check_obj_text(data, filename)
        appearance = mtl_appearance(data, find if entries is not None else None, image_limits)
        if entries is not None:
            # trimesh would decode every texture: it only needs the MTL.
            shown = {
                k: as_utf8(v) if k.lower().endswith(".mtl") else v
                for k, v in entries.items()
                if not is_image_name(k)
            }
            resolver = _DictResolver(shown, folder)
    else:
        appearance = ReadAppearance()
    # (2) geometry: OBJ corner by corner (every UV of a seam vertex kept), the rest by trimesh
    if fmt == "obj":
        blocks = [
            _Block(b.material, b.vertices, b.faces, b.corner_uvs)
            for b in read_obj_blocks(data, filename)
        ]
        source = _assemble(blocks, filename, fmt, appearance)
        source.source_polygons = polygons or len(source.faces)
        return source
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
            source = _to_source(loaded, filename, fmt, appearance)  # trimesh's scene graph
    except SpatialTwinError:
        raise
    except Exception as exc:  # trimesh raises many types for bad bytes
        raise _corrupt(filename, f"{type(exc).__name__}: {exc}", format=fmt) from exc
    source.source_polygons = polygons or len(source.faces)
    return source


def _gltf_appearance(
    data: bytes,
    filename: str,
    fmt: str,
    find: Callable[[str], bytes | None],
    image_limits: ImageLimits,
) -> tuple[ReadAppearance, bytes]:
    """Materials and images of a GLB/glTF, and the file as trimesh should read it (tagged).

    The one glTF reader checks the container and every accessor's claims against the bytes
    present first, so trimesh never allocates more than the file holds.
    """
    try:
        checked = (parse_glb if fmt == "glb" else parse_gltf_json)(data, filename, find)
        checked.check_accessors()
        # The node graph a forest (trimesh loops on a cycle until its iteration limit).
        checked.scene_nodes(checked.node_forest()[1])
    except SpatialTwinError as exc:
        status = 422 if exc.status == 400 else exc.status  # garment uploads answer 422
        raise SpatialTwinError(exc.code, exc.message, exc.detail, status=status) from None
    doc = checked.json
    blob = bytes(checked.binary) if checked.binary is not None else None
    buffers = doc.get("buffers") or []

    def buffer_bytes(index: int) -> bytes | None:
        buffer = buffers[index] if 0 <= index < len(buffers) else None
        if not isinstance(buffer, dict):
            return None
        uri = buffer.get("uri")
        if uri is None:
            return blob if index == 0 else None
        return find(uri) if isinstance(uri, str) else None

    appearance = gltf_appearance(doc, buffer_bytes, find, filename, image_limits)
    tagged = tagged_for_trimesh(doc)
    if fmt == "glb":
        return appearance, join_glb(tagged, blob)
    return appearance, json.dumps(tagged).encode()


def _to_source(loaded: Any, filename: str, fmt: str, appearance: ReadAppearance) -> MeshSource:
    if isinstance(loaded, trimesh.Scene):
        meshes = [m for m in loaded.dump(concatenate=False) if isinstance(m, trimesh.Trimesh)]
    elif isinstance(loaded, trimesh.Trimesh):
        meshes = [loaded]
    else:
        meshes = []
    blocks = [
        _Block(
            getattr(getattr(m.visual, "material", None), "name", None),
            np.asarray(m.vertices, dtype=np.float64),
            np.asarray(m.faces, dtype=np.int64),
            None if _uv_of(m) is None else _uv_of(m)[np.asarray(m.faces)].astype(np.float32),
        )
        for m in meshes
        if len(m.faces)
    ]
    return _assemble(blocks, filename, fmt, appearance)


@dataclass(frozen=True)
class _Block:
    """Faces wearing one material: own vertices (file units), triangles, corner UVs or None."""

    material: str | None
    vertices: NDArray[np.float64]
    faces: NDArray[np.int64]
    corner_uvs: NDArray[np.float32] | None


def _assemble(
    meshes: list[_Block], filename: str, fmt: str, appearance: ReadAppearance
) -> MeshSource:
    if not meshes:
        raise SpatialTwinError(
            "no_geometry",
            f"{filename!r} holds no triangles or polygons",
            {"filename": filename, "format": fmt},
            status=422,
        )
    # (1) which of the file's materials each trimesh mesh wears
    known = list(appearance.materials)
    plain: dict[str, int] = {}
    wears: list[int] = []
    for k, mesh in enumerate(meshes):
        name = mesh.material
        index = (
            material_index(name) if fmt in ("glb", "gltf") else appearance.by_name.get(name or "")
        )
        if index is None or not 0 <= index < len(known):
            # No material in the file for these faces: one plain cloth material per name.
            label = str(name or f"material_{k}")[:120]
            if label not in plain:
                plain[label] = len(known)
                known.append(GarmentMaterial(name=label))
            index = plain[label]
        wears.append(index)
    # (2) keep the materials worn and the images they use, renumbered in order of use
    used = sorted(set(wears))
    material_remap = {old: new for new, old in enumerate(used)}
    kept = [known[i] for i in used]
    image_order = sorted({ref.image for m in kept for ref in m.textures().values()})
    image_remap = {old: new for new, old in enumerate(image_order)}
    materials = [m.with_images_remapped(image_remap).to_json() for m in kept]
    images = [appearance.images[i] for i in image_order]
    # (3) geometry, one block per mesh
    verts, faces, uvs, mats = [], [], [], []
    offset = 0
    any_uv = any(m.corner_uvs is not None for m in meshes)
    for mesh, index in zip(meshes, wears, strict=True):
        v, f = mesh.vertices, mesh.faces
        verts.append(v)
        faces.append(f + offset)
        if any_uv:
            uvs.append(
                np.zeros((len(f), 3, 2), np.float32)
                if mesh.corner_uvs is None
                else mesh.corner_uvs.astype(np.float32)
            )
        mats.append(np.full(len(f), material_remap[index], dtype=np.int32))
        offset += len(v)
    return MeshSource(
        vertices=np.concatenate(verts),
        faces=np.concatenate(faces),
        corner_uvs=np.concatenate(uvs) if any_uv else None,
        face_material=np.concatenate(mats),
        materials=materials,
        format=fmt,
        images=images,
        warnings=appearance.warnings,
    )


def _uv_of(mesh: trimesh.Trimesh) -> NDArray[np.float64] | None:
    uv = getattr(mesh.visual, "uv", None)
    if uv is None or len(uv) != len(mesh.vertices):
        return None
    return np.asarray(uv, dtype=np.float64)


# --- prepared garments as NPZ (the working copy the store keeps) ---------------------------------


def arrays_to_npz(arrays: dict[str, NDArray[Any]]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def arrays_from_npz(data: bytes) -> dict[str, NDArray[Any]]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


# --- garments in GLBs (previews, looks) ----------------------------------------------------------


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


def gltf_uvs(uv: NDArray[np.floating]) -> NDArray[np.float32]:
    """OBJ-convention UVs (v up, as `MeshSource` holds them) in glTF's (v down)."""
    out = np.array(uv, dtype=np.float32, copy=True)
    out[..., 1] = 1.0 - out[..., 1]
    return out


def vertex_tangents(
    positions: NDArray[np.floating],
    normals: NDArray[np.floating],
    uvs: NDArray[np.floating],
    faces: NDArray[np.integer],
) -> NDArray[np.float32]:
    """glTF TANGENT (N, 4): +u direction of the UV chart per vertex, orthogonal to the normal,
    w = ±1 the bitangent's handedness, so normal maps are read in the tangent space the file
    defines instead of one each viewer derives (Lengyel's per-triangle UV derivatives,
    accumulated per vertex; vertices are split at UV seams, so charts never mix)."""
    p = np.asarray(positions, np.float64)
    n = np.asarray(normals, np.float64)
    uv = np.asarray(uvs, np.float64)
    f = np.asarray(faces, np.int64)
    e1, e2 = p[f[:, 1]] - p[f[:, 0]], p[f[:, 2]] - p[f[:, 0]]
    d1, d2 = uv[f[:, 1]] - uv[f[:, 0]], uv[f[:, 2]] - uv[f[:, 0]]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    r = np.divide(1.0, det, out=np.zeros_like(det), where=np.abs(det) > 1e-12)[:, None]
    t_face = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * r
    b_face = (e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * r
    t = np.zeros_like(p)
    b = np.zeros_like(p)
    for corner in range(3):
        np.add.at(t, f[:, corner], t_face)
        np.add.at(b, f[:, corner], b_face)
    # Gram-Schmidt against the normal; a vertex with no usable UV area gets any orthogonal axis.
    t -= np.einsum("ij,ij->i", t, n)[:, None] * n
    length = np.linalg.norm(t, axis=1, keepdims=True)
    helper = np.where(np.abs(n[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    fallback = np.cross(n, helper)
    fallback /= np.maximum(np.linalg.norm(fallback, axis=1, keepdims=True), 1e-12)
    t = np.where(length > 1e-12, t / np.maximum(length, 1e-12), fallback)
    w = np.where(np.einsum("ij,ij->i", np.cross(n, t), b) < 0.0, -1.0, 1.0)
    return np.column_stack([t, w]).astype(np.float32)


class GarmentGltfWriter:
    """Writes garments — the render mesh, its materials and embedded textures — into one
    `GlbBuilder`; an image worn by several garments (or materials) is embedded once."""

    def __init__(self, builder: GlbBuilder) -> None:
        self.builder = builder
        self._images: dict[str, int] = {}  # sha256 → glTF image
        self._textures: dict[tuple[int, int, int], int] = {}  # (image, wrapS, wrapT) → texture
        self._samplers: dict[tuple[int, int], int] = {}

    def _texture(self, ref: TextureRef, images: list[TextureImage]) -> int | None:
        if not 0 <= ref.image < len(images):
            return None
        image = images[ref.image]
        gltf = self.builder.gltf
        if image.sha256 not in self._images:
            self._images[image.sha256] = self.builder.image(image.data, image.mime)
        image_index = self._images[image.sha256]
        wrap = (ref.wrap_s, ref.wrap_t)
        if wrap not in self._samplers:
            gltf.samplers.append(
                g.Sampler(
                    magFilter=g.LINEAR,
                    minFilter=g.LINEAR_MIPMAP_LINEAR,
                    wrapS=ref.wrap_s,
                    wrapT=ref.wrap_t,
                )
            )
            self._samplers[wrap] = len(gltf.samplers) - 1
        key = (image_index, *wrap)
        if key not in self._textures:
            gltf.textures.append(g.Texture(source=image_index, sampler=self._samplers[wrap]))
            self._textures[key] = len(gltf.textures) - 1
        return self._textures[key]

    def material(
        self,
        material: GarmentMaterial,
        images: list[TextureImage],
        name: str,
        textured: bool = True,
    ) -> int:
        """The glTF material for `material`, its textures embedded; returns its index.

        Without UVs on the mesh (`textured=False`) a texture cannot be sampled and glTF forbids
        it (MESH_PRIMITIVE_TOO_FEW_TEXCOORDS): the material keeps its factors only."""
        base = normal = mr = None
        if not textured:
            material = material.untextured()
        if material.base_color_texture is not None:
            base = self._texture(material.base_color_texture, images)
        if material.normal_texture is not None:
            normal = self._texture(material.normal_texture, images)
        if material.metallic_roughness_texture is not None:
            mr = self._texture(material.metallic_roughness_texture, images)
        normal_scale = material.normal_texture.scale if material.normal_texture else 1.0
        self.builder.gltf.materials.append(
            g.Material(
                name=name,
                pbrMetallicRoughness=g.PbrMetallicRoughness(
                    baseColorFactor=list(material.base_color_factor),
                    metallicFactor=material.metallic_factor,
                    roughnessFactor=material.roughness_factor,
                    baseColorTexture=g.TextureInfo(index=base) if base is not None else None,
                    metallicRoughnessTexture=g.TextureInfo(index=mr) if mr is not None else None,
                ),
                normalTexture=(
                    g.NormalMaterialTexture(index=normal, scale=normal_scale)
                    if normal is not None
                    else None
                ),
                alphaMode=material.alpha_mode,
                alphaCutoff=material.alpha_cutoff if material.alpha_mode == "MASK" else None,
                doubleSided=material.double_sided,
            )
        )
        return len(self.builder.gltf.materials) - 1

    def garment(
        self,
        name: str,
        positions_m: NDArray[np.floating],
        faces: NDArray[np.integer],
        corner_uvs: NDArray[Any] | None,
        face_material: NDArray[np.integer],
        appearance: Appearance,
        *,
        scalars: dict[str, NDArray[np.floating]] | None = None,
        extras: dict[str, Any] | None = None,
    ) -> int:
        """Add a static garment node (metres, +Y up), one primitive per material it wears.

        `scalars` are per-vertex application attributes (`{"_STRAIN": (N,)}`); normals are
        taken on the welded mesh, so UV seams split vertices without a shading seam.
        """
        # (1) gather: position, normal and scalars per welded vertex, split where UVs differ
        positions = np.asarray(positions_m, dtype=np.float64)
        f = np.asarray(faces, dtype=np.int64)
        normals = np.asarray(trimesh.Trimesh(positions, f, process=False).vertex_normals)
        named = dict(scalars or {})
        columns = [
            positions,
            normals,
            *(np.asarray(v, np.float64)[:, None] for v in named.values()),
        ]
        uvs = gltf_uvs(corner_uvs) if corner_uvs is not None else None
        rows, split_faces, split_uvs = unweld_corners(np.column_stack(columns), f, uvs)
        normal_rows = rows[:, 3:6].astype(np.float64)
        length = np.linalg.norm(normal_rows, axis=1, keepdims=True)
        normal_rows = np.where(length > 1e-9, normal_rows / np.maximum(length, 1e-12), [0, 1, 0])
        # (2) attributes, shared by every primitive
        attrs = g.Attributes(
            POSITION=self.builder.accessor(
                np.ascontiguousarray(rows[:, 0:3], np.float32), with_bounds=True
            ),
            NORMAL=self.builder.accessor(normal_rows.astype(np.float32)),
        )
        if split_uvs is not None:
            attrs.TEXCOORD_0 = self.builder.accessor(np.ascontiguousarray(split_uvs, np.float32))
            worn_materials = {int(i) for i in np.unique(np.asarray(face_material))}
            if any(appearance.material(i).normal_texture for i in worn_materials):
                tangents = vertex_tangents(rows[:, 0:3], normal_rows, split_uvs, split_faces)
                attrs.TANGENT = self.builder.accessor(tangents)
        for k, attribute in enumerate(named):
            column = np.ascontiguousarray(rows[:, 6 + k], dtype=np.float32)
            setattr(attrs, attribute, self.builder.accessor(column))
        # (3) materials and indices: one primitive per material worn
        worn = np.asarray(face_material, dtype=np.int64)
        primitives = []
        for index in np.unique(worn):
            material = appearance.material(int(index))
            gltf_material = self.material(
                material, appearance.images, f"{name}:{material.name}", split_uvs is not None
            )
            primitives.append(
                g.Primitive(
                    attributes=attrs,
                    indices=self.builder.indices(split_faces[worn == index], len(rows)),
                    material=gltf_material,
                    mode=g.TRIANGLES,
                )
            )
        mesh_index = self.builder.mesh(name, primitives)
        return self.builder.node(name=name, mesh=mesh_index, extras=extras)


logging.getLogger("trimesh").setLevel(logging.ERROR)


def garment_on_twin_glb(
    body: Any,
    garment: dict[str, Any],
    placed: Any,
    twin_provenance: dict[str, Any],
    render: RenderBinding | None = None,
) -> bytes:
    """The twin (skinned, node `twin`) wearing the placed garment (node `garment:<id>`).

    `body` is a `TwinBody`, `placed` a `PlacedGarment`; with `render` the upload's own mesh and
    materials ride on the placed cloth, else the simulation mesh is shown in the record's
    first colour. Provenance names both the twin's rights and the garment, in
    `asset.extras.spatialtwin`.
    """
    from spatialtwin import __version__
    from spatialtwin.gltf.twin_glb import add_skinned_twin, provenance_extras

    builder = GlbBuilder(generator=f"SpatialTwin {__version__}")
    mesh_node, hips = add_skinned_twin(builder, body, mesh_name="twin")
    writer = GarmentGltfWriter(builder)
    name = f"garment:{garment['id']}"
    extras = {"spatialtwin": {"role": "garment", "garmentId": garment["id"]}}
    if render is not None:
        garment_node = writer.garment(
            name,
            render.positions_m(placed.positions_m),
            render.faces,
            render.corner_uvs,
            render.face_material,
            render.appearance,
            extras=extras,
        )
    else:
        materials = garment.get("materials") or []
        colour = tuple(materials[0]["base_color"]) if materials else DEFAULT_COLOUR
        garment_node = writer.garment(
            name,
            placed.positions_m,
            placed.faces,
            placed.corner_uvs,
            np.zeros(len(placed.faces), dtype=np.int32),
            Appearance.plain(colour),  # type: ignore[arg-type]
            extras=extras,
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
