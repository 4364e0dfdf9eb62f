"""The template body's arrays (`body.template.TemplateBody`) as one compressed NPZ file."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np

from spatialtwin.body.skinning import SkinWeights
from spatialtwin.body.template import TemplateBody
from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.body_arrays import body_from_npz, body_to_npz


def template_to_npz(template: TemplateBody) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        name=np.array(template.name),
        body_npz=np.frombuffer(body_to_npz(template.body), dtype=np.uint8),
        base_vertices_m=template.base_vertices_m,
        base_skin_joints=template.base_skin.joints,
        base_skin_weights=template.base_skin.weights,
        body_base_index=template.body_base_index.astype(np.int32),
        skin_mask=template.skin_mask,
    )
    return buf.getvalue()


def template_from_npz(data: bytes) -> TemplateBody:
    with np.load(io.BytesIO(data)) as z:
        return TemplateBody(
            name=str(z["name"]),
            body=body_from_npz(z["body_npz"].tobytes()),
            base_vertices_m=z["base_vertices_m"].astype(np.float64),
            base_skin=SkinWeights(z["base_skin_joints"].astype(np.uint16), z["base_skin_weights"]),
            body_base_index=z["body_base_index"].astype(np.int64),
            skin_mask=z["skin_mask"].astype(bool),
        )


TEMPLATE_PATH = Path(__file__).resolve().parents[3] / "assets" / "bodies" / "hm08_template.npz"


@lru_cache(maxsize=1)
def shipped_template() -> TemplateBody:
    """The hm08 template shipped in `assets/bodies/` (read once per process)."""
    if not TEMPLATE_PATH.is_file():
        raise SpatialTwinError(
            "template_missing",
            f"the hm08 template body is missing at {TEMPLATE_PATH}; "
            "run `spatialtwin template build`",
            status=500,
        )
    return template_from_npz(TEMPLATE_PATH.read_bytes())
