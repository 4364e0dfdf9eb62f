"""Twins from tape measurements: what a tailor measures, and the twin made from it.

`Measurements` are the numbers a twin is generated from (stature, chest, waist and hip girths,
inseam, shoulder breadth; metres), checked against plausible adult ranges before any work.
`create_twin_body` turns them into a rigged body by deforming a template human (MakeHuman's
CC0 hm08, shipped in `assets/bodies/`; see `template_fit`): the template is passed in, because
this package does numerics only and the file is read at the edge:

    from spatialtwin.gltf.template_npz import shipped_template
    body = create_twin_body(measurements, shipped_template().body)

`measured` reads the numbers back from a body with the same tape (`measure`), which is how the
generated twins are checked and how imported scans get theirs.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from spatialtwin.body.measure import BodyMeasurements, measure_body
from spatialtwin.body.measurements import Measurements
from spatialtwin.body.template_fit import fit_template_to_measurements
from spatialtwin.body.twin_body import TwinBody

Array = NDArray[np.float64]


def cylindrical_uvs(
    vertices: Array, faces: NDArray[np.int64], height_m: float
) -> tuple[Array, NDArray[np.int64], NDArray[np.int64]]:
    """UVs wrapped around the body's axis; vertices on the back seam are duplicated.

    Returns (uvs, faces, vertex_source) where vertex_source maps each output vertex to the
    input vertex it copies.
    """
    u = np.arctan2(vertices[:, 0], vertices[:, 2]) / (2 * np.pi) + 0.5
    v = vertices[:, 1] / height_m
    fu = u[faces]
    wraps = (fu.max(axis=1) - fu.min(axis=1)) > 0.5
    source = np.arange(len(vertices))
    uv = np.stack([u, v], axis=1)
    faces = faces.copy()
    if wraps.any():
        wrap_faces = np.flatnonzero(wraps)
        low = fu[wrap_faces] < 0.5
        needs = np.unique(faces[wrap_faces][low])
        new_index = np.full(len(vertices), -1)
        new_index[needs] = len(vertices) + np.arange(len(needs))
        extra_uv = uv[needs].copy()
        extra_uv[:, 0] += 1.0
        uv = np.concatenate([uv, extra_uv])
        source = np.concatenate([source, needs])
        sub = faces[wrap_faces]
        sub[low] = new_index[sub[low]]
        faces[wrap_faces] = sub
    uv[:, 0] *= 0.5  # keep u in [0, 1] after the seam copies (u spans 0..2 before)
    uv[:, 1] = 1.0 - uv[:, 1]  # glTF's v runs down the image
    np.clip(uv, 0.0, 1.0, out=uv)
    return uv, faces, source


def create_twin_body(measurements: Measurements, template: TwinBody) -> TwinBody:
    """A rigged twin whose tape measurements are `measurements`, made from `template`.

    `template` is the template human as a rigged body in its own bind pose (for the shipped
    one, `spatialtwin.gltf.template_npz.shipped_template().body`). Height comes out within
    0.5 mm, chest, waist and hips within 4 mm, inseam and shoulder breadth within a few mm.
    """
    measurements.validate()
    if not isinstance(template, TwinBody):
        raise TypeError(f"template must be a rigged TwinBody, not {type(template).__name__}")
    return fit_template_to_measurements(template, measurements)


def measured(body: TwinBody) -> BodyMeasurements:
    """Measure a twin back from its own mesh."""
    v, f = body.welded()
    return measure_body(v, f, body.skeleton.rest_positions_m)
