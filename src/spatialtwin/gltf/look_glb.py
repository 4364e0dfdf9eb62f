"""A look as one GLB: the skinned twin in its pose and each draped garment as a static mesh.

Node names are the contract with clients: the twin's mesh node is `twin`, each garment's
`garment:<id or file stem>`. The twin keeps its bind-pose mesh with the pose on its joint
nodes (see `twin_glb`); the garments are already in world coordinates of that pose (metres,
+Y up), so the two line up in any viewer. Node extras carry `{"spatialtwin": {"role": ...}}`
(`body` or `garment`), which is how the LOD reader tells them apart.

Each garment is its **render mesh** — the upload's own triangles, UVs and materials (base
colour, normal map, metallic/roughness, alpha, double-sidedness, textures embedded), rebuilt
on the settled cloth (`garment.render_mesh`) — one primitive per material. The fit map rides
on it as an optional overlay, never as colour: two application-specific attributes (leading
underscore, as glTF 2.0 allows) that a viewer may colour by instead of the material:

- `_STRAIN` (float): the fabric's stretch, length / rest − 1 (≥ 0), a fraction;
- `_EASE` (float): distance from the body's surface, metres, positive outside.

The legend — bands, labels, colours, display units — is in `asset.extras.spatialtwin.fitMap`
(`cloth.fit_map.FIT_LEGEND`; its calibration is documented there).

Example:
    glb = look_to_glb(body, look.garments, pose=pose, provenance={"twinId": "twn_1", ...})
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from spatialtwin import __version__
from spatialtwin.body.pose import Pose
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.cloth.fit_map import EASE_SCALE, STRAIN_SCALE, fit_legend_json
from spatialtwin.garment.render_mesh import RenderBinding
from spatialtwin.gltf.builder import GlbBuilder
from spatialtwin.gltf.garment_io import GarmentGltfWriter
from spatialtwin.gltf.glb_reader import parse_glb
from spatialtwin.gltf.twin_glb import add_skinned_twin, provenance_extras

STRAIN_ATTRIBUTE = STRAIN_SCALE.attribute
EASE_ATTRIBUTE = EASE_SCALE.attribute


class DrapedLayer(Protocol):
    """What the writer needs of a draped garment (`garment.look.DrapedGarment` is one)."""

    node_name: str
    positions_m: NDArray[np.float64]  # (N, 3) settled simulation mesh, world, metres
    strain: NDArray[np.float64]  # (N,) fraction
    ease_m: NDArray[np.float64] | None  # (N,) metres, + outside the body

    def render_binding(self) -> RenderBinding: ...

    def render_positions_m(self) -> NDArray[np.float64]: ...


def add_draped_garment(
    writer: GarmentGltfWriter, layer: DrapedLayer, extras: dict[str, Any] | None = None
) -> int:
    """Add one garment node: its render mesh and materials, with the fit-map attributes."""
    render = layer.render_binding()
    scalars = {STRAIN_ATTRIBUTE: render.values(layer.strain)}
    if layer.ease_m is not None:
        scalars[EASE_ATTRIBUTE] = render.values(layer.ease_m)
    return writer.garment(
        layer.node_name,
        layer.render_positions_m(),
        render.faces,
        render.corner_uvs,
        render.face_material,
        render.appearance,
        scalars=scalars,
        extras=extras,
    )


def look_to_glb(
    body: TwinBody,
    layers: Sequence[DrapedLayer],
    *,
    pose: Pose | None = None,
    provenance: dict[str, Any] | None = None,
    garment_extras: Sequence[dict[str, Any]] | None = None,
) -> bytes:
    """The twin (skinned, posed by its joints) wearing `layers`; provenance and the fit-map
    legend in `asset.extras.spatialtwin`."""
    builder = GlbBuilder(generator=f"SpatialTwin {__version__}")
    twin_node, hips = add_skinned_twin(builder, body, pose=pose, mesh_name="twin")
    builder.gltf.nodes[twin_node].extras = {"spatialtwin": {"role": "body"}}
    roots = [twin_node, hips]
    writer = GarmentGltfWriter(builder)
    for i, layer in enumerate(layers):
        extra = dict(garment_extras[i]) if garment_extras is not None else {}
        roots.append(
            add_draped_garment(writer, layer, {"spatialtwin": {"role": "garment", **extra}})
        )
    builder.scene(roots, name="look")
    builder.set_extras(provenance_extras({**(provenance or {}), "fitMap": fit_legend_json()}))
    return builder.to_bytes()


def glb_provenance(data: bytes) -> dict[str, Any] | None:
    """`asset.extras.spatialtwin` of a GLB the project wrote, or None for any other file."""
    if data[:4] != b"glTF":
        return None
    extras = parse_glb(data, "body.glb").json["asset"].get("extras")
    found = extras.get("spatialtwin") if isinstance(extras, dict) else None
    return found if isinstance(found, dict) else None
