"""A twin body's arrays as one compressed NPZ blob: the store's working copy of a body.

GLBs are what clients get; the server re-reads bodies far more often than it writes them, and
an NPZ round-trips every array bit-exactly without a glTF parser on the hot path.
"""

from __future__ import annotations

import io

import numpy as np

from spatialtwin.body.skeleton import LEAF_JOINTS, Skeleton
from spatialtwin.body.skinning import SkinWeights
from spatialtwin.body.twin_body import TwinBody


def body_to_npz(body: TwinBody) -> bytes:
    buf = io.BytesIO()
    tips = np.stack([body.skeleton.leaf_tips_m[n] for n in LEAF_JOINTS])
    np.savez_compressed(
        buf,
        vertices_m=body.vertices_m,
        faces=body.faces.astype(np.int32),
        normals=body.normals.astype(np.float32),
        uvs=body.uvs.astype(np.float32),
        skin_joints=body.skin.joints,
        skin_weights=body.skin.weights,
        rest_positions_m=body.skeleton.rest_positions_m,
        leaf_tips_m=tips,
        weld_map=(np.arange(body.vertex_count) if body.weld_map is None else body.weld_map),
    )
    return buf.getvalue()


def body_from_npz(data: bytes) -> TwinBody:
    with np.load(io.BytesIO(data)) as z:
        skeleton = Skeleton(
            z["rest_positions_m"], {n: z["leaf_tips_m"][i] for i, n in enumerate(LEAF_JOINTS)}
        )
        return TwinBody(
            vertices_m=z["vertices_m"].astype(np.float64),
            faces=z["faces"].astype(np.int64),
            normals=z["normals"].astype(np.float64),
            uvs=z["uvs"].astype(np.float64),
            skin=SkinWeights(z["skin_joints"].astype(np.uint16), z["skin_weights"]),
            skeleton=skeleton,
            weld_map=z["weld_map"].astype(np.int64),
        )
