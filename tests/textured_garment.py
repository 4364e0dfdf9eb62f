"""A textured garment made here, as a merchandiser's tool would export it: an A-line skirt GLB
with a checkerboard PNG base colour texture, a PNG normal map and a material of its own.

The skirt is deliberately coarse (48 segments around, 5 cm rows) so the simulation mesh
(1.5 cm edges) differs from the render mesh and the render mesh has to ride on it; its UVs
are a cylindrical unwrap with a seam at the back (angle 0), so UVs differ across that seam.
Sized for the sample twin Ava (waist 0.72 m, hips 0.98 m girth): a little ease at the waist,
more at the hips, flaring to the hem.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import pygltflib as g
from PIL import Image

SEGMENTS = 48
HEIGHT_M = 0.55
ROW_M = 0.05
BASE_COLOUR_FACTOR = [0.95, 0.9, 0.85, 1.0]
METALLIC = 0.0
ROUGHNESS = 0.7
NORMAL_SCALE = 0.8
CHECKER_SQUARES = 8
CHECKER_PX = 256
NORMAL_PX = 128
SKIRT_META = {
    "sku": "TEST-CHECKER-SKIRT",
    "name": "Checkerboard test skirt",
    "category": "skirt",
    "fabric": "cotton-poplin",
    "units": "m",
}


def radius_at(depth_m: np.ndarray) -> np.ndarray:
    """Radius (m) of the skirt `depth_m` below the waistband: waist ease, hips, A-line flare."""
    d = np.asarray(depth_m, dtype=np.float64)
    return np.where(d < 0.2, 0.125 + d / 0.2 * 0.07, 0.195 + (d - 0.2) / 0.35 * 0.06)


def checkerboard_png() -> bytes:
    """An 8 × 8 checkerboard, warm red on cream, 256 px square."""
    cell = CHECKER_PX // CHECKER_SQUARES
    ij = np.indices((CHECKER_PX, CHECKER_PX)) // cell
    dark = (ij[0] + ij[1]) % 2 == 1
    rgb = np.where(dark[..., None], [178, 34, 52], [246, 236, 214]).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, format="PNG")
    return out.getvalue()


def normal_map_png() -> bytes:
    """A tangent-space normal map of a fine horizontal rib (a knit's texture), 128 px square."""
    y = np.arange(NORMAL_PX) / NORMAL_PX
    slope = 0.5 * np.cos(2 * np.pi * 16 * y)  # d(height)/dv
    n = np.stack([np.zeros_like(slope), -slope, np.ones_like(slope)], axis=1)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    rgb = np.repeat(((n * 0.5 + 0.5) * 255).round().astype(np.uint8)[:, None, :], NORMAL_PX, 1)
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, format="PNG")
    return out.getvalue()


@dataclass(frozen=True)
class TexturedGarment:
    glb: bytes
    base_color_png: bytes
    normal_png: bytes
    vertices_m: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray  # glTF convention: v runs down the image


def skirt_mesh(waist_y_m: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices, faces, uvs) of the skirt; the back seam column is duplicated for its UVs."""
    rows = round(HEIGHT_M / ROW_M) + 1
    depth = np.linspace(0.0, HEIGHT_M, rows)
    angle = np.linspace(0.0, 2 * np.pi, SEGMENTS + 1)  # last column = first, other UV
    a, d = np.meshgrid(angle, depth, indexing="xy")  # (rows, SEGMENTS + 1)
    r = radius_at(d)
    # Angle 0 at the back (−Z), running through the wearer's left (+X) to the front (+Z).
    v = np.stack([r * np.sin(a), waist_y_m - d, -r * np.cos(a)], axis=-1).reshape(-1, 3)
    uv = np.stack([a / (2 * np.pi), d / HEIGHT_M], axis=-1).reshape(-1, 2)
    idx = np.arange(rows * (SEGMENTS + 1)).reshape(rows, SEGMENTS + 1)
    p, q = idx[:-1, :-1], idx[:-1, 1:]
    s, t = idx[1:, :-1], idx[1:, 1:]
    # Outward normals: (p, s, q) and (q, s, t) wind counter-clockwise seen from outside.
    faces = np.concatenate(
        [np.stack([p, s, q], -1).reshape(-1, 3), np.stack([q, s, t], -1).reshape(-1, 3)]
    )
    return v, faces, uv


def textured_skirt_glb(waist_y_m: float = 1.0) -> TexturedGarment:
    """The skirt as a GLB with an embedded checkerboard base colour texture and normal map."""
    v, f, uv = skirt_mesh(waist_y_m)
    base_png, normal_png = checkerboard_png(), normal_map_png()
    blob = bytearray()

    def view(data: bytes, target: int | None = None) -> int:
        while len(blob) % 4:
            blob.append(0)
        gltf.bufferViews.append(
            g.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(data), target=target)
        )
        blob.extend(data)
        return len(gltf.bufferViews) - 1

    gltf = g.GLTF2(asset=g.Asset(version="2.0", generator="tests/textured_garment.py"))
    positions = v.astype(np.float32)
    gltf.accessors = [
        g.Accessor(
            bufferView=view(positions.tobytes(), g.ARRAY_BUFFER),
            componentType=g.FLOAT,
            count=len(v),
            type=g.VEC3,
            min=positions.min(axis=0).tolist(),
            max=positions.max(axis=0).tolist(),
        ),
        g.Accessor(
            bufferView=view(uv.astype(np.float32).tobytes(), g.ARRAY_BUFFER),
            componentType=g.FLOAT,
            count=len(v),
            type=g.VEC2,
        ),
        g.Accessor(
            bufferView=view(f.astype(np.uint16).ravel().tobytes(), g.ELEMENT_ARRAY_BUFFER),
            componentType=g.UNSIGNED_SHORT,
            count=f.size,
            type=g.SCALAR,
        ),
    ]
    gltf.images = [
        g.Image(name="checker", bufferView=view(base_png), mimeType="image/png"),
        g.Image(name="rib-normal", bufferView=view(normal_png), mimeType="image/png"),
    ]
    gltf.samplers = [g.Sampler(wrapS=g.REPEAT, wrapT=g.CLAMP_TO_EDGE)]
    gltf.textures = [g.Texture(source=0, sampler=0), g.Texture(source=1, sampler=0)]
    gltf.materials = [
        g.Material(
            name="checker-cotton",
            pbrMetallicRoughness=g.PbrMetallicRoughness(
                baseColorFactor=BASE_COLOUR_FACTOR,
                baseColorTexture=g.TextureInfo(index=0),
                metallicFactor=METALLIC,
                roughnessFactor=ROUGHNESS,
            ),
            normalTexture=g.NormalMaterialTexture(index=1, scale=NORMAL_SCALE),
            doubleSided=True,
            alphaMode="OPAQUE",
        )
    ]
    gltf.meshes = [
        g.Mesh(
            name="skirt",
            primitives=[
                g.Primitive(
                    attributes=g.Attributes(POSITION=0, TEXCOORD_0=1),
                    indices=2,
                    material=0,
                    mode=g.TRIANGLES,
                )
            ],
        )
    ]
    gltf.nodes = [g.Node(name="skirt", mesh=0)]
    gltf.scenes = [g.Scene(nodes=[0])]
    gltf.scene = 0
    while len(blob) % 4:
        blob.append(0)
    gltf.buffers = [g.Buffer(byteLength=len(blob))]
    gltf.set_binary_blob(bytes(blob))
    out = gltf.save_to_bytes()
    glb = b"".join(out) if isinstance(out, list) else bytes(out)
    return TexturedGarment(glb, base_png, normal_png, v, f, uv)


def metadata_json() -> str:
    return json.dumps(SKIRT_META)
