"""Twin services: what the server and the CLI both call to make a twin from a file.

An unrigged human scan is auto-rigged and then takes the shipped hm08 template's skin weights
(`body.rig_transfer`), so garments bound on hm08 read the same body parts on it as on every
generated twin; the template is a format concern (`gltf.template_npz`), so it is joined to the
importer here rather than in `body/`.
"""

from __future__ import annotations

from spatialtwin.body.importer import ImportedTwin, import_body
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
