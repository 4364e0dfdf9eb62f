"""Twin services: what the server and the CLI both call to make a twin from a file.

An unrigged human scan is auto-rigged and then takes the shipped hm08 template's skin weights
(`body.rig_transfer`), so garments bound on hm08 read the same body parts on it as on every
generated twin; the template is a format concern (`gltf.template_npz`), so it is joined to the
importer here rather than in `body/`.
"""

from __future__ import annotations

from pathlib import Path

from spatialtwin.body.importer import ImportedTwin, import_scene
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.read_scene import read_scene
from spatialtwin.gltf.template_npz import shipped_template


def import_twin(
    data: bytes,
    filename: str,
    *,
    units: str = "auto",
    joint_map: dict[str, str] | None = None,
) -> ImportedTwin:
    """A GLB/glTF/OBJ/PLY body as a canonical twin (metres, +Y up, facing +Z, feet on y = 0)."""
    return import_body(
        data,
        filename=filename,
        units=units,
        joint_map=joint_map,
        template=shipped_template().body,
    )


def import_body(
    path_or_bytes: str | Path | bytes,
    *,
    filename: str | None = None,
    units: str = "auto",
    joint_map: dict[str, str] | None = None,
    template: TwinBody | None = None,
) -> ImportedTwin:
    """Read a GLB/glTF/OBJ/PLY body file and import it as a canonical twin (metres, +Y up,
    facing +Z): the format is read in `gltf`, the arrays imported in `body.importer`.

    An unrigged scan is auto-rigged; with `template` (the shipped hm08 body) it then takes the
    template's skin weights (`body.rig_transfer`), so every human twin shares one partition.
    """
    # (1) Read.
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        if not filename:
            raise SpatialTwinError(
                "missing_filename",
                "a filename is needed to tell the format "
                "of uploaded bytes (.glb, .gltf, .obj, .ply)",
            )
        data = bytes(path_or_bytes)
    else:
        path = Path(path_or_bytes)
        data = path.read_bytes()
        filename = filename or path.name
    return import_scene(
        read_scene(data, filename), filename, units=units, joint_map=joint_map, template=template
    )
