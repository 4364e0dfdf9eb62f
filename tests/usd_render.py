"""Render a USDZ as the file says it looks, to a PNG a person can check: tests' own eyes.

The package is opened with `pxr.Usd` only (nothing of the writer is reused): each `Mesh` is
drawn with the `UsdPreviewSurface` bound to each face — the mesh's binding, or a
`materialBind` subset's in the selected variant — coloured by its `diffuseColor`, or by its
`UsdUVTexture` sampled at the face's mean `primvars:st` (t up, as USD has it) and multiplied by
the texture's `scale`. Shading is `tests.software_render`'s z-buffer with a Lambert term; the
view is orthographic at true scale, so a centimetre is the same number of pixels everywhere.

    image = render_usdz(path, "front", pixels_per_m=300, variant="strain")
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from tests.software_render import VIEW_ANGLE, _raster


def _linear(srgb: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _srgb(linear: NDArray[np.float64]) -> NDArray[np.float64]:
    c = np.clip(linear, 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


def _surface_colour(material, package: zipfile.ZipFile, st_face: NDArray[np.float64] | None):
    """Linear RGB per face for `material` (a colour, or the texture at each face's st)."""
    from pxr import UsdShade

    surface = material.ComputeSurfaceSource()[0]
    diffuse = surface.GetInput("diffuseColor")
    sources = diffuse.GetConnectedSources()[0] if diffuse.HasConnectedSource() else []
    if sources and st_face is not None:
        texture = UsdShade.Shader(sources[0].source.GetPrim())
        file_path = texture.GetInput("file").Get().path
        scale = np.array(texture.GetInput("scale").Get() or (1, 1, 1, 1))[:3]
        image = np.asarray(Image.open(io.BytesIO(package.read(file_path))).convert("RGB"))
        h, w = image.shape[:2]
        s = np.mod(st_face[:, 0], 1.0)
        t = np.mod(st_face[:, 1], 1.0)
        px = np.clip((s * w).astype(int), 0, w - 1)
        py = np.clip(((1.0 - t) * h).astype(int), 0, h - 1)  # t runs up the image
        return _linear(image[py, px] / 255.0) * scale
    return np.tile(np.array(diffuse.Get(), dtype=np.float64), (1, 1))


def usdz_faces(path: str | Path, variant: str | None = None):
    """(positions (V, 3), triangles (F, 3), linear RGB per face (F, 3)) of every mesh."""
    from pxr import Usd, UsdGeom, UsdShade

    stage = Usd.Stage.Open(str(path))
    root = stage.GetDefaultPrim()
    if variant is not None:
        root.GetVariantSets().GetVariantSet("fitMap").SetVariantSelection(variant)
    verts, faces, colours, base = [], [], [], 0
    with zipfile.ZipFile(path) as package:
        for prim in stage.Traverse():
            if not prim.IsA(UsdGeom.Mesh):
                continue
            mesh = UsdGeom.Mesh(prim)
            points = np.asarray(mesh.GetPointsAttr().Get(), dtype=np.float64)
            tris = np.asarray(mesh.GetFaceVertexIndicesAttr().Get(), dtype=np.int64)
            tris = tris.reshape(-1, 3)
            st_face = None
            st = UsdGeom.PrimvarsAPI(mesh).GetPrimvar("st")
            if st and st.HasValue():
                values = np.asarray(st.ComputeFlattened(), dtype=np.float64)
                if st.GetInterpolation() == UsdGeom.Tokens.faceVarying:
                    st_face = values.reshape(-1, 3, 2).mean(axis=1)
                else:
                    st_face = values[tris].mean(axis=1)
            per_face = np.zeros((len(tris), 3))
            own = UsdShade.MaterialBindingAPI(prim).ComputeBoundMaterial()[0]
            per_face[:] = _surface_colour(own, package, st_face)
            for subset in UsdShade.MaterialBindingAPI(prim).GetMaterialBindSubsets():
                index = np.asarray(subset.GetIndicesAttr().Get(), dtype=np.int64)
                bound = UsdShade.MaterialBindingAPI(subset.GetPrim()).ComputeBoundMaterial()[0]
                if bound:
                    colour = _surface_colour(bound, package, None if st_face is None else st_face)
                    per_face[index] = colour if len(colour) == 1 else colour[index]
            verts.append(points)
            faces.append(tris + base)
            colours.append(per_face)
            base += len(points)
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(colours)


def render_usdz(
    path: str | Path,
    view: str = "front",
    *,
    pixels_per_m: float = 300.0,
    variant: str | None = None,
    margin_m: float = 0.05,
) -> Image.Image:
    """An orthographic picture of the package (white background), sRGB."""
    positions, faces, colours = usdz_faces(path, variant)
    angle = VIEW_ANGLE[view]
    rot = np.array(
        [[np.cos(angle), 0, -np.sin(angle)], [0, 1, 0], [np.sin(angle), 0, np.cos(angle)]]
    )
    w = positions @ rot.T
    lo, hi = w.min(axis=0) - margin_m, w.max(axis=0) + margin_m
    width = int((hi[0] - lo[0]) * pixels_per_m)
    height = int((hi[1] - lo[1]) * pixels_per_m)
    px = (w[:, 0] - lo[0]) * pixels_per_m
    py = (hi[1] - w[:, 1]) * pixels_per_m
    depth = np.full((height, width), -np.inf)
    ids = np.full((height, width), -1, dtype=np.int32)
    face_of = np.full((height, width), -1, dtype=np.int64)
    owner = np.zeros(len(faces), dtype=np.int32)
    _raster(px, py, w[:, 2].copy(), faces, owner, width, height, depth, ids, face_of)
    tri = w[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    light = np.array([0.3, 0.4, 0.85]) / np.linalg.norm([0.3, 0.4, 0.85])
    lambert = 0.3 + 0.7 * np.abs(n @ light)
    rgb = np.ones((height, width, 3))
    seen = face_of >= 0
    rgb[seen] = _srgb(colours[face_of[seen]] * lambert[face_of[seen], None])
    return Image.fromarray((rgb * 255).round().astype(np.uint8))
