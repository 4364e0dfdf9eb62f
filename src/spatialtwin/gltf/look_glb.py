"""A look as one GLB: the skinned twin in its pose and each draped garment as a static mesh.

Node names are the contract with clients: the twin's mesh node is `twin`, each garment's
`garment:<id or file stem>`. The twin keeps its bind-pose mesh with the pose on its joint
nodes (see `twin_glb`); the garments are already in world coordinates of that pose (metres,
+Y up), so the two line up in any viewer. Node extras carry `{"spatialtwin": {"role": ...}}`
(`body` or `garment`), which is how the LOD reader tells them apart.

The fit map rides on each garment primitive twice:
- `COLOR_0`: RGBA float colours from the strain (green relaxed → red tight). glTF multiplies
  vertex colours with the material's base colour; a client showing the garment's own colour
  simply turns vertex colours off.
- `_STRAIN`: the strain itself (float scalar, length / rest − 1, ≥ 0), an application-specific
  attribute (leading underscore, as the glTF 2.0 spec allows), for a client's own colour ramp.

Example:
    glb = look_to_glb(body, layers, pose=pose, provenance={"twinId": "twn_1", ...})
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pygltflib as g
import trimesh
from numpy.typing import NDArray

from spatialtwin import __version__
from spatialtwin.body.pose import Pose
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.builder import GlbBuilder
from spatialtwin.gltf.garment_io import unweld_corners
from spatialtwin.gltf.twin_glb import add_skinned_twin, provenance_extras

STRAIN_ATTRIBUTE = "_STRAIN"


class DrapedLayer(Protocol):
    """What the writer needs of a draped garment (`garment.look.DrapedGarment` is one)."""

    node_name: str
    positions_m: NDArray[np.float64]  # (N, 3) world, metres
    faces: NDArray[np.int64]  # (F, 3)
    corner_uvs: NDArray[np.float32] | None  # (F, 3, 2)
    strain: NDArray[np.float64]  # (N,)
    fit_rgba: NDArray[np.float32]  # (N, 4)
    base_color: tuple[float, float, float, float]


def add_draped_garment(
    builder: GlbBuilder, layer: DrapedLayer, extras: dict[str, Any] | None = None
) -> int:
    """Add one static, double-sided garment node with its fit map; returns the node index."""
    # (1) gather: one row per vertex (position, strain, colour), split where UVs differ
    per_vertex = np.column_stack(
        [
            np.asarray(layer.positions_m, dtype=np.float64),
            np.asarray(layer.strain, dtype=np.float64),
            np.asarray(layer.fit_rgba, dtype=np.float64),
        ]
    )
    rows, faces, uvs = unweld_corners(per_vertex, layer.faces, layer.corner_uvs)
    positions = np.ascontiguousarray(rows[:, 0:3], dtype=np.float32)
    strain = np.ascontiguousarray(rows[:, 3], dtype=np.float32)
    colours = np.ascontiguousarray(np.clip(rows[:, 4:8], 0.0, 1.0), dtype=np.float32)
    normals = np.asarray(
        trimesh.Trimesh(positions, faces, process=False).vertex_normals, dtype=np.float32
    )
    # (2) attributes
    attrs = g.Attributes(
        POSITION=builder.accessor(positions, with_bounds=True),
        NORMAL=builder.accessor(normals),
        COLOR_0=builder.accessor(colours),
    )
    if uvs is not None:
        attrs.TEXCOORD_0 = builder.accessor(uvs)
    setattr(attrs, STRAIN_ATTRIBUTE, builder.accessor(strain))
    # (3) material and indices
    material = builder.material(
        f"{layer.node_name}:cloth", layer.base_color, roughness=0.85, double_sided=True
    )
    mesh = builder.mesh(
        layer.node_name,
        [
            g.Primitive(
                attributes=attrs,
                indices=builder.indices(faces, len(positions)),
                material=material,
                mode=g.TRIANGLES,
            )
        ],
    )
    return builder.node(name=layer.node_name, mesh=mesh, extras=extras)


def look_to_glb(
    body: TwinBody,
    layers: Sequence[DrapedLayer],
    *,
    pose: Pose | None = None,
    provenance: dict[str, Any] | None = None,
    garment_extras: Sequence[dict[str, Any]] | None = None,
) -> bytes:
    """The twin (skinned, posed by its joints) wearing `layers`, provenance in asset.extras."""
    builder = GlbBuilder(generator=f"SpatialTwin {__version__}")
    twin_node, hips = add_skinned_twin(builder, body, pose=pose, mesh_name="twin")
    builder.gltf.nodes[twin_node].extras = {"spatialtwin": {"role": "body"}}
    roots = [twin_node, hips]
    for i, layer in enumerate(layers):
        extra = dict(garment_extras[i]) if garment_extras is not None else {}
        roots.append(
            add_draped_garment(
                builder,
                layer,
                {"spatialtwin": {"role": "garment", **extra}},
            )
        )
    builder.scene(roots, name="look")
    builder.set_extras(provenance_extras(provenance))
    return builder.to_bytes()


def glb_provenance(data: bytes) -> dict[str, Any] | None:
    """`asset.extras.spatialtwin` of a GLB the project wrote, or None for any other file."""
    if data[:4] != b"glTF" or len(data) < 20:
        return None
    json_length = int.from_bytes(data[12:16], "little")
    if data[16:20] != b"JSON" or 20 + json_length > len(data):
        raise SpatialTwinError(
            "corrupt_file", "the GLB's JSON chunk is cut short", {"bytes": len(data)}, status=422
        )
    try:
        doc = json.loads(data[20 : 20 + json_length])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpatialTwinError("corrupt_file", f"the GLB's JSON is invalid: {exc}") from exc
    extras = (doc.get("asset") or {}).get("extras")
    found = extras.get("spatialtwin") if isinstance(extras, dict) else None
    return found if isinstance(found, dict) else None
