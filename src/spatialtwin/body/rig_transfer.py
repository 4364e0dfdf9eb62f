"""Template rig transfer: an unrigged human scan takes the template's skin weights.

Bone-heat weights grown from an auto-placed skeleton split a scan's shoulders and hips where
its own geometry says, not where MakeHuman's artist-painted weights do; a garment bound on the
template then reads 10 % of its vertices as "on another body part" on the very body it was made
for, and the scan bends differently from every generated twin. Carrying the template's weights
over a body-to-body correspondence gives every human twin the same, hand-made partition.

The correspondence goes by way of a *stand-in*: the template made to the scan's own tape
measurements, so that the last step onto the scan's surface is small and smooth. Mapping the
template straight onto a body of other proportions blends trunk and limb maps at the armpits
and crotch.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from spatialtwin.body.correspondence import Correspondence, correspond, same_mesh
from spatialtwin.body.measurements import Measurements
from spatialtwin.body.parametric import create_twin_body, measured
from spatialtwin.body.skinning import SkinWeights
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.errors import SpatialTwinError

Array = NDArray[np.float64]

# Scan vertices take the weights of this many nearest mapped template vertices, blended by
# inverse squared distance, so a vertex between two template vertices of different parts
# follows both (the template's own vertex spacing is about 1 cm).
TRANSFER_NEIGHBOURS = 4


def stand_in(template: TwinBody, twin: TwinBody) -> TwinBody | None:
    """The template made to the twin's tape measurements (None where they cannot be met)."""
    try:
        m = measured(twin)
    except ValueError:
        return None
    limits = Measurements.LIMITS
    # A stylised body (CesiumMan: 22 cm shoulders) still gets the nearest plausible stand-in.
    values = {name: float(np.clip(getattr(m, name), *limits[name])) for name in limits}
    try:
        wanted = Measurements(**values)
        wanted.validate()
        return create_twin_body(wanted, template)
    except (SpatialTwinError, ValueError):
        return None


def template_points_on(
    source: TwinBody,
    points_m: Array,
    point_skin: SkinWeights,
    skin_index: NDArray[np.int64],
    twin: TwinBody,
    template: TwinBody | None,
) -> Correspondence:
    """Where points bound to `source` lie on `twin` (metres, bind pose).

    `source` made from `template` (hm08, or hm08 posed to a bare garment) goes by way of a
    stand-in of the template made to the twin's measurements; any other source (an avatar
    exported beside a garment) straight onto the twin.
    """
    if template is not None and not same_mesh(source, twin):
        proxy = stand_in(template, twin)
        if proxy is not None:
            onto_proxy = correspond(source, points_m, point_skin, skin_index, proxy)
            return correspond(proxy, onto_proxy.points_m, point_skin, skin_index, twin, True)
    return correspond(source, points_m, point_skin, skin_index, twin)


def transfer_template_skin(template: TwinBody, scan: TwinBody) -> SkinWeights:
    """Skin weights for every vertex of `scan` (already auto-rigged) from `template`'s.

    The template's vertices are carried onto the scan's surface (`template_points_on`); each
    scan vertex then blends the weights of its nearest carried template vertices.
    """
    points = template.vertices_m
    on_scan = template_points_on(
        template,
        points,
        template.skin,
        np.arange(template.vertex_count, dtype=np.int64),
        scan,
        template,
    ).points_m
    k = min(TRANSFER_NEIGHBOURS, len(on_scan))
    dist, idx = cKDTree(on_scan).query(scan.vertices_m, k=k)
    dist, idx = dist.reshape(scan.vertex_count, k), idx.reshape(scan.vertex_count, k)
    w = 1.0 / np.maximum(dist, 1e-4) ** 2
    w /= w.sum(axis=1, keepdims=True)
    joints = template.skeleton.joint_count
    dense_template = np.asarray(template.skin.as_sparse(joints).todense())
    dense = np.einsum("vk,vkj->vj", w, dense_template[idx])
    return SkinWeights.from_dense(dense)
