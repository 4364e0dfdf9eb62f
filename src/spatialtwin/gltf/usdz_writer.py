"""A scene as an ARKit-compatible USDZ: the file iOS AR Quick Look places in a room at 1:1.

AR Quick Look reads no glTF, so the AR level of a look (or of a twin) is written again as USD
with Pixar's `usd-core` and packaged by `UsdUtils.CreateNewARKitUsdzPackage`:

- **Stage**: `metersPerUnit = 1`, `upAxis = Y` (the project's own units and axes, so nothing is
  scaled or turned), `defaultPrim = /Look`, an Xform of kind `component`. The twin's provenance
  (`asset.extras.spatialtwin` of the GLBs: twin, owner, license, the digital-twin disclosure)
  is the root layer's `customLayerData["spatialtwin"]` as JSON text, and its `documentation`
  says in words that this is a digital twin.
- **Meshes**: one `Mesh` per scene mesh (body, each garment primitive), triangles, float
  points in metres, `normals` per vertex, `subdivisionScheme = "none"` (a body is not a cage
  to be smoothed), an authored `extent`, `doubleSided` from the material. Texture
  coordinates are `primvars:st` (`texCoord2f[]`) with t up (`t = 1 − v` of glTF); a
  `LodMesh` holds one UV per vertex (seams are split vertices), so they are written with
  `vertex` interpolation, and `faceVarying` with indices when UVs come per corner
  (`corner_uvs`), the mesh then welded at its seams. Only meshes whose material has a texture
  get UVs at all, as in the levels; the others are welded back into one point per corner
  position (`welded`).
- **Materials**: `UsdPreviewSurface` (the one surface ARKit renders) with `diffuseColor`,
  `roughness`, `metallic` and, below 1, `opacity`; a base colour texture is a `UsdUVTexture`
  (sRGB, wrap repeat, `scale` = the glTF base colour factor, so texture × factor as in glTF)
  reading `st` through a `UsdPrimvarReader_float2`. Textures are stored in the package as
  `textures/<sha256 prefix>.png|jpg`, their longer side at most `texture_max_px`.
- **Fit map** (optional, `fit_map=True`): a variant set `fitMap` on `/Look` with the
  variants `garment` (selected: the garment's own materials, what AR Quick Look shows) and
  `strain` / `ease`, which bind each garment face to a material of its band colour through
  `GeomSubset`s of family `materialBind` (a partition of the faces). A face reads the band
  of the mean of its vertices' values; bands and colours are `cloth.fit_map.FIT_LEGEND`, the
  legend of the GLBs. Subsets and preview surfaces are all ARKit allows, so the variant
  survives the packaging; a viewer with a variant menu (Reality Composer, usdview, Blender)
  switches it, AR Quick Look shows the default.

The package is made in a temporary folder and read back as bytes; `write_usdz` writes them to
a path atomically (temp file + rename). `usd-core` is imported on first use, so importing this
module costs nothing until a USDZ is written.

    data = scene_to_usdz(level.scene, UsdzOptions(texture_max_px=1024), provenance=extras)
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spatialtwin import __version__
from spatialtwin.cloth.fit_map import FIT_LEGEND, FitScale
from spatialtwin.files import write_bytes_atomic
from spatialtwin.gltf.level_glb import resized_image
from spatialtwin.lod.scene import LodMaterial, LodMesh, LodScene

ROOT = "/Look"
MATERIALS = f"{ROOT}/Materials"
FIT_VARIANT_SET = "fitMap"
FIT_DEFAULT = "garment"
MEDIA_TYPE = "model/vnd.usdz+zip"
DISCLOSURE = (
    "This is a digital twin: a 3D replica of a real person, used under the license they "
    "consented to. It is not a photograph."
)
_EXT = {"image/png": "png", "image/jpeg": "jpg"}


@dataclass(frozen=True)
class UsdzOptions:
    """How a scene is written: texture size cap (pixels, longer side; None keeps it) and
    whether garments carrying a fit map get the `fitMap` variant set."""

    texture_max_px: int | None = 1024
    fit_map: bool = True
    root_layer_name: str = "look.usdc"


DEFAULTS = UsdzOptions()


def srgb_to_linear(hex_colour: str) -> tuple[float, float, float]:
    """An sRGB "#rrggbb" as linear RGB (USD shading inputs are linear, glTF factors too)."""
    c = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.float64) / 255
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return (float(lin[0]), float(lin[1]), float(lin[2]))


def prim_name(name: str, taken: set[str]) -> str:
    """A valid, unused USD prim name for `name` (`garment:g_1` -> `garment_g_1`)."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", name) or "mesh"
    if base[0].isdigit():
        base = f"_{base}"
    out, k = base, 1
    while out in taken:
        k += 1
        out = f"{base}_{k}"
    taken.add(out)
    return out


def face_bands(mesh: LodMesh, scale: FitScale) -> NDArray[np.int64] | None:
    """The fit-map band of each face (mean of its vertices' values), or None without data."""
    values = mesh.scalars.get(scale.attribute)
    if values is None or len(values) != len(mesh.positions_m):
        return None
    return scale.band_index(values[mesh.faces].mean(axis=1))


def _first_use_unique(rows: NDArray[Any]) -> tuple[NDArray[Any], NDArray[np.int64]]:
    """(distinct rows in order of first use, index of each input row into them)."""
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rows[first[order]], rank[inverse.reshape(-1)]


def _unit(v: NDArray[np.float64]) -> NDArray[np.float64]:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def welded(
    mesh: LodMesh,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int32]]:
    """(points, unit normals, triangles) with the copies of a vertex that glTF needs at UV
    seams merged back into one point: same position (within 0.1 µm) and the same normal
    (within 1e-4), so a
    hard edge stays split. Each merged point is 24 bytes fewer (hm08's skin at the AR level:
    11 % of its vertices). Textured meshes with UVs per vertex are not welded: face-varying st
    with their indices cost more than the points saved (MakeHuman's sports suit at the AR
    level: 109 kB against 84 kB; USD crate files store float arrays uncompressed)."""
    points = np.ascontiguousarray(mesh.positions_m, dtype=np.float32)
    normals = _unit(mesh.normals)
    key = np.hstack(  # positions to 0.1 µm, so -0.0 and 1e-17 are 0 too
        [np.round(mesh.positions_m * 1e7), np.round(normals * 1e4)]
    ).astype(np.int64)
    _, index = _first_use_unique(key)
    keep = np.zeros(index.max() + 1, dtype=np.int64)
    keep[index[::-1]] = np.arange(len(index))[::-1]  # the first vertex of each group
    return points[keep], normals[keep].astype(np.float32), index[mesh.faces].astype(np.int32)


class _StageWriter:
    """One stage being authored: materials by content, texture files, prim names."""

    def __init__(self, folder: Path, options: UsdzOptions) -> None:
        from pxr import Kind, Usd, UsdGeom

        self.folder = folder
        self.options = options
        self.stage = Usd.Stage.CreateNew(str(folder / options.root_layer_name))
        UsdGeom.SetStageUpAxis(self.stage, UsdGeom.Tokens.y)
        UsdGeom.SetStageMetersPerUnit(self.stage, 1.0)
        root = UsdGeom.Xform.Define(self.stage, ROOT)
        self.stage.SetDefaultPrim(root.GetPrim())
        Usd.ModelAPI(root.GetPrim()).SetKind(Kind.Tokens.component)
        self.stage.DefinePrim(MATERIALS, "Scope")
        self.mesh_names: set[str] = set()
        self.material_names: set[str] = set()
        self.materials: dict[tuple[Any, ...], Any] = {}
        self.textures: dict[str, str] = {}  # sha256 of the source image -> package path

    # --- materials ---------------------------------------------------------------------

    def texture_path(self, data: bytes, mime: str) -> str:
        key = hashlib.sha256(data).hexdigest()
        if key not in self.textures:
            scaled, mime = resized_image(data, mime, self.options.texture_max_px)
            ext = _EXT.get(mime)
            if ext is None:  # the levels keep PNG/JPEG only; anything else is re-encoded
                from io import BytesIO

                from PIL import Image

                out = BytesIO()
                Image.open(BytesIO(scaled)).save(out, format="PNG")
                scaled, ext = out.getvalue(), "png"
            path = f"textures/{hashlib.sha256(scaled).hexdigest()[:16]}.{ext}"
            (self.folder / "textures").mkdir(exist_ok=True)
            (self.folder / path).write_bytes(scaled)
            self.textures[key] = path
        return self.textures[key]

    def material(self, mat: LodMaterial, textured: bool) -> Any:
        """A UsdPreviewSurface material for `mat` (one per distinct material)."""
        key = (
            mat.name,
            tuple(mat.base_color),
            mat.roughness,
            mat.metallic,
            hashlib.sha256(mat.base_color_image).hexdigest()
            if textured and mat.base_color_image
            else None,
        )
        if key in self.materials:
            return self.materials[key]
        image = mat.base_color_image if textured else None
        path = f"{MATERIALS}/{prim_name(mat.name or 'material', self.material_names)}"
        material = self.preview_material(
            path,
            tuple(float(c) for c in mat.base_color[:3]),
            float(mat.base_color[3]),
            float(mat.roughness),
            float(mat.metallic),
            None if image is None else self.texture_path(image, mat.image_mime),
        )
        self.materials[key] = material
        return material

    def preview_material(
        self,
        path: str,
        rgb: tuple[float, float, float],
        alpha: float,
        roughness: float,
        metallic: float,
        texture: str | None,
    ) -> Any:
        from pxr import Gf, Sdf, UsdShade

        stage = self.stage
        material = UsdShade.Material.Define(stage, path)
        surface = UsdShade.Shader.Define(stage, f"{path}/PreviewSurface")
        surface.CreateIdAttr("UsdPreviewSurface")
        diffuse = surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f)
        diffuse.Set(Gf.Vec3f(*rgb))
        surface.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(roughness)
        surface.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(metallic)
        surface.CreateInput("useSpecularWorkflow", Sdf.ValueTypeNames.Int).Set(0)
        if alpha < 1.0:
            surface.CreateInput("opacity", Sdf.ValueTypeNames.Float).Set(alpha)
        material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
        if texture is not None:
            reader = UsdShade.Shader.Define(stage, f"{path}/TexCoordReader")
            reader.CreateIdAttr("UsdPrimvarReader_float2")
            reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("st")
            reader.CreateOutput("result", Sdf.ValueTypeNames.Float2)
            tex = UsdShade.Shader.Define(stage, f"{path}/BaseColorTexture")
            tex.CreateIdAttr("UsdUVTexture")
            tex.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(Sdf.AssetPath(texture))
            tex.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(
                reader.ConnectableAPI(), "result"
            )
            tex.CreateInput("wrapS", Sdf.ValueTypeNames.Token).Set("repeat")
            tex.CreateInput("wrapT", Sdf.ValueTypeNames.Token).Set("repeat")
            tex.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB")
            tex.CreateInput("scale", Sdf.ValueTypeNames.Float4).Set(Gf.Vec4f(*rgb, alpha))
            tex.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
            diffuse.ConnectToSource(tex.ConnectableAPI(), "rgb")
            if alpha < 1.0:
                tex.CreateOutput("a", Sdf.ValueTypeNames.Float)
                surface.GetInput("opacity").ConnectToSource(tex.ConnectableAPI(), "a")
        return material

    # --- meshes ------------------------------------------------------------------------

    def mesh(self, mesh: LodMesh, corner_uvs: NDArray[np.float64] | None = None) -> Any:
        """Author one mesh with its material bound; `corner_uvs` (F, 3, 2), glTF convention,
        replace the mesh's per-vertex UVs when given."""
        from pxr import Gf, Sdf, UsdGeom, UsdShade, Vt

        path = f"{ROOT}/{prim_name(mesh.name, self.mesh_names)}"
        usd_mesh = UsdGeom.Mesh.Define(self.stage, path)
        textured = mesh.material.base_color_image is not None and (
            mesh.uvs is not None or corner_uvs is not None
        )
        # A textured mesh with UVs per vertex keeps its vertices as they are (st per point);
        # without UVs, or with UVs per corner, the seam copies are welded (`welded`: why).
        per_vertex_st = textured and corner_uvs is None
        if per_vertex_st:
            points = np.ascontiguousarray(mesh.positions_m, dtype=np.float32)
            normals = _unit(mesh.normals).astype(np.float32)
            faces = np.ascontiguousarray(mesh.faces, dtype=np.int32)
        else:
            points, normals, faces = welded(mesh)
        usd_mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(points))
        counts = np.full(len(faces), 3, np.int32)
        usd_mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(counts))
        usd_mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(faces.reshape(-1)))
        usd_mesh.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(normals))
        usd_mesh.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
        usd_mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
        lo, hi = points.min(axis=0), points.max(axis=0)
        usd_mesh.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*lo.tolist()), Gf.Vec3f(*hi.tolist())]))
        usd_mesh.CreateDoubleSidedAttr(bool(mesh.material.double_sided))
        if textured:
            primvars = UsdGeom.PrimvarsAPI(usd_mesh)
            if per_vertex_st:
                assert mesh.uvs is not None
                pv = primvars.CreatePrimvar(
                    "st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex
                )
                st = (mesh.uvs * [1.0, -1.0] + [0.0, 1.0]).astype(np.float32)
                pv.Set(Vt.Vec2fArray.FromNumpy(st))
            else:
                assert corner_uvs is not None
                corners = (corner_uvs.reshape(-1, 2) * [1.0, -1.0] + [0.0, 1.0]).astype(np.float32)
                st, index = _first_use_unique(corners)
                pv = primvars.CreatePrimvar(
                    "st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.faceVarying
                )
                pv.Set(Vt.Vec2fArray.FromNumpy(st))
                pv.SetIndices(Vt.IntArray.FromNumpy(index.astype(np.int32)))
        binding = UsdShade.MaterialBindingAPI.Apply(usd_mesh.GetPrim())
        binding.Bind(self.material(mesh.material, textured))
        return usd_mesh

    def fit_variants(self, meshes: list[tuple[LodMesh, Any]]) -> None:
        """The `fitMap` variant set: `garment` (selected) and one variant per fit-map scale
        whose data some garment carries, binding band materials through face subsets."""
        from pxr import UsdGeom, UsdShade, Vt

        scales = {
            name: scale
            for name, scale in FIT_LEGEND.items()
            if any(face_bands(m, scale) is not None for m, _ in meshes if m.role == "garment")
        }
        if not scales:
            return
        root = self.stage.GetPrimAtPath(ROOT)
        variants = root.GetVariantSets().AddVariantSet(FIT_VARIANT_SET)
        variants.AddVariant(FIT_DEFAULT)
        for name, scale in scales.items():
            variants.AddVariant(name)
            variants.SetVariantSelection(name)
            with variants.GetVariantEditContext():
                band_materials = []
                for k, band in enumerate(scale.bands):
                    path = f"{MATERIALS}/fit_{name}_{k}"
                    band_materials.append(
                        self.preview_material(
                            path, srgb_to_linear(band.colour), 1.0, 0.8, 0.0, None
                        )
                    )
                for mesh, usd_mesh in meshes:
                    bands = face_bands(mesh, scale) if mesh.role == "garment" else None
                    if bands is None:
                        continue
                    api = UsdShade.MaterialBindingAPI(usd_mesh.GetPrim())
                    for k, band in enumerate(scale.bands):
                        faces = np.flatnonzero(bands == k).astype(np.int32)
                        if len(faces) == 0:
                            continue
                        subset = api.CreateMaterialBindSubset(
                            f"fit_{name}_{re.sub(r'[^A-Za-z0-9_]', '_', band.label)}",
                            Vt.IntArray.FromNumpy(faces),
                            UsdGeom.Tokens.face,
                        )
                        UsdShade.MaterialBindingAPI.Apply(subset.GetPrim()).Bind(band_materials[k])
                    api.SetMaterialBindSubsetsFamilyType(UsdGeom.Tokens.partition)
        variants.SetVariantSelection(FIT_DEFAULT)

    def provenance(self, provenance: dict[str, Any] | None) -> None:
        layer = self.stage.GetRootLayer()
        layer.documentation = f"SpatialTwin {__version__}. {DISCLOSURE}"
        data = {"version": __version__, "digitalTwin": True, **(provenance or {})}
        layer.customLayerData = {
            "spatialtwin": json.dumps(data, sort_keys=True, separators=(",", ":"))
        }


def scene_to_usdz(
    scene: LodScene,
    options: UsdzOptions = DEFAULTS,
    *,
    provenance: dict[str, Any] | None = None,
    corner_uvs: dict[int, NDArray[np.float64]] | None = None,
) -> bytes:
    """The scene's meshes where they are shown (a skin's bind pose, a posed look's pose) as
    USDZ bytes; `corner_uvs` maps a mesh index to per-corner UVs (F, 3, 2), glTF convention."""
    from pxr import Sdf, UsdUtils

    if not scene.meshes:
        raise ValueError("a USDZ needs at least one mesh")
    with tempfile.TemporaryDirectory(prefix="spatialtwin-usdz-") as tmp:
        folder = Path(tmp)
        writer = _StageWriter(folder, options)
        authored = [
            (mesh, writer.mesh(mesh, (corner_uvs or {}).get(i)))
            for i, mesh in enumerate(scene.meshes)
        ]
        if options.fit_map:
            writer.fit_variants(authored)
        writer.provenance(provenance if provenance is not None else scene.extras)
        writer.stage.GetRootLayer().Save()
        root_layer = folder / options.root_layer_name
        package = folder / "package.usdz"
        if not UsdUtils.CreateNewARKitUsdzPackage(Sdf.AssetPath(str(root_layer)), str(package)):
            raise RuntimeError("UsdUtils could not package the USDZ")
        return package.read_bytes()


def write_usdz(
    scene: LodScene,
    path: str | Path,
    options: UsdzOptions = DEFAULTS,
    *,
    provenance: dict[str, Any] | None = None,
) -> int:
    """Write the scene's USDZ to `path` atomically (temp file + rename); returns its bytes."""
    data = scene_to_usdz(scene, options, provenance=provenance)
    write_bytes_atomic(path, data)
    return len(data)
