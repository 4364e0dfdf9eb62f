"""A prepared garment's meshes (and binding) as the NPZ blob the store keeps."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from spatialtwin.garment.binding import GarmentBinding
from spatialtwin.garment.mesh import GarmentMesh
from spatialtwin.garment.pipeline import PreparedGarment
from spatialtwin.gltf.garment_io import arrays_from_npz, arrays_to_npz

_MESH_FIELDS = ("vertices_m", "faces", "corner_uvs", "face_material", "face_piece")


def prepared_to_npz(prepared: PreparedGarment) -> bytes:
    """The meshes as NPZ (the store's working copy); the record holds everything else."""
    arrays: dict[str, NDArray[Any]] = {}
    for prefix, mesh in (("render", prepared.render), ("sim", prepared.simulation)):
        for name in _MESH_FIELDS:
            value = getattr(mesh, name)
            if value is not None:
                arrays[f"{prefix}_{name}"] = value
    if prepared.binding is not None:
        arrays["bind_ref"] = prepared.binding.ref.astype(np.int32)
        arrays["bind_weights"] = prepared.binding.weights
        arrays["bind_local_offset_m"] = prepared.binding.local_offset_m
        arrays["bind_authoring"] = np.array(prepared.binding.authoring)
    return arrays_to_npz(arrays)


def binding_from_npz(data: bytes) -> GarmentBinding | None:
    """The render vertices' binding stored by `prepared_to_npz`, if the garment has one."""
    arrays = arrays_from_npz(data)
    if "bind_ref" not in arrays:
        return None
    return GarmentBinding(
        arrays["bind_ref"].astype(np.int64),
        arrays["bind_weights"].astype(np.float64),
        arrays["bind_local_offset_m"].astype(np.float64),
        str(arrays["bind_authoring"]),
    )


def meshes_from_npz(data: bytes) -> tuple[GarmentMesh, GarmentMesh]:
    """(render mesh, simulation mesh) from `prepared_to_npz` bytes."""
    arrays = arrays_from_npz(data)

    def mesh(prefix: str) -> GarmentMesh:
        return GarmentMesh(
            vertices_m=arrays[f"{prefix}_vertices_m"].astype(np.float64),
            faces=arrays[f"{prefix}_faces"].astype(np.int64),
            corner_uvs=arrays.get(f"{prefix}_corner_uvs"),
            face_material=arrays[f"{prefix}_face_material"].astype(np.int32),
            face_piece=arrays[f"{prefix}_face_piece"].astype(np.int32),
        )

    return mesh("render"), mesh("sim")
