"""The body a garment was authored on, from what came with the upload.

A garment may come with MakeHuman's `.mhclo` (inside a zip beside the OBJ, as a second
multipart part, or as the CLI's sibling file), with an avatar mesh exported beside it from
CLO/Marvelous/Browzwear (`authoring_body`: GLB/glTF/OBJ/PLY, imported like a twin), or with
nothing. This module turns those bytes into a `garment.binding.AuthoringBody` and back (an
avatar is stored as a body NPZ blob beside the garment; hm08 is shipped in `assets/`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from spatialtwin.errors import SpatialTwinError
from spatialtwin.garment.binding import AuthoringBody
from spatialtwin.garment.estimate import posed_template
from spatialtwin.gltf.archive import is_zip, read_zip
from spatialtwin.gltf.body_arrays import body_from_npz, body_to_npz
from spatialtwin.gltf.makehuman import obj_vertex_positions, read_mhclo
from spatialtwin.gltf.template_npz import shipped_template
from spatialtwin.services.twins import import_twin

AVATAR_SUFFIXES = (".glb", ".gltf", ".obj", ".ply")
MAX_AVATAR_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Attachment:
    """A file sent with the garment: its name and bytes."""

    filename: str
    data: bytes

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.filename.lower()).suffix


def _mhclo_authoring(mhclo: bytes, obj: bytes) -> AuthoringBody:
    template = shipped_template()
    proxy = read_mhclo(mhclo, len(template.base_vertices_m))
    if proxy.basemesh != template.name:
        raise SpatialTwinError(
            "unsupported_basemesh",
            f"the .mhclo binds to base mesh {proxy.basemesh!r}; only {template.name!r} is known",
            {"basemesh": proxy.basemesh},
            status=422,
        )
    return AuthoringBody.from_template(template, proxy, obj_vertex_positions(obj))


def resolve_authoring(
    data: bytes, filename: str, attachment: Attachment | None
) -> tuple[AuthoringBody | None, dict[str, Any], bytes | None]:
    """(authoring body or None, what the record says of it, avatar body NPZ to store or None).

    Raises a 4xx `SpatialTwinError` for an attachment that cannot be used (a `.mhclo` with a
    garment that is not an OBJ, an avatar that does not import as a body).
    """
    if attachment is None and is_zip(data):
        entries = read_zip(data)
        mhclo = [n for n in entries if n.lower().endswith(".mhclo")]
        objs = [n for n in entries if n.lower().endswith(".obj")]
        if len(mhclo) == 1 and len(objs) == 1:
            authoring = _mhclo_authoring(entries[mhclo[0]], entries[objs[0]])
            return authoring, {"kind": authoring.kind, "binding": mhclo[0]}, None
        return None, {}, None
    if attachment is None:
        return None, {}, None
    if attachment.suffix == ".mhclo":
        if PurePosixPath(filename.lower()).suffix != ".obj":
            raise SpatialTwinError(
                "binding_needs_obj",
                "a .mhclo binds the vertices of an OBJ; upload the garment as .obj",
                {"filename": filename},
                status=422,
            )
        authoring = _mhclo_authoring(attachment.data, data)
        return authoring, {"kind": authoring.kind, "binding": attachment.filename}, None
    if attachment.suffix in AVATAR_SUFFIXES:
        if len(attachment.data) > MAX_AVATAR_BYTES:
            raise SpatialTwinError(
                "file_too_large",
                f"the authoring body is larger than {MAX_AVATAR_BYTES} bytes",
                {"limit_bytes": MAX_AVATAR_BYTES},
                status=413,
            )
        imported = import_twin(attachment.data, attachment.filename)
        authoring = AuthoringBody.from_avatar(imported.body, imported.transform)
        record = {
            "kind": "avatar",
            "filename": attachment.filename[:200],
            "height_m": imported.report.height_m,
            "units": imported.report.units,
        }
        return authoring, record, body_to_npz(imported.body)
    raise SpatialTwinError(
        "unsupported_authoring_body",
        "the authoring body must be a .mhclo or a body mesh (.glb, .gltf, .obj, .ply)",
        {"filename": attachment.filename},
        status=415,
    )


def stored_authoring(record: dict[str, Any], avatar_npz: bytes | None) -> AuthoringBody | None:
    """The authoring body of a stored garment (hm08 from assets, an avatar from its blob)."""
    info = record.get("authoring_body") or {}
    kind = info.get("kind")
    if kind is None:
        return None
    if kind == "avatar":
        if avatar_npz is None:
            raise SpatialTwinError(
                "authoring_body_missing",
                "the garment's authoring body is missing from the store",
                {"id": record.get("id")},
                status=500,
            )
        import numpy as np

        return AuthoringBody.from_avatar(body_from_npz(avatar_npz), np.eye(4))
    template = AuthoringBody.from_template(shipped_template())
    if kind == "estimated":
        return posed_template(template, (info.get("estimate") or {}).get("rotations") or {})
    return template


def estimation_template() -> AuthoringBody:
    """The body a bare garment's authoring body is estimated from (hm08, shipped)."""
    return AuthoringBody.from_template(shipped_template())
